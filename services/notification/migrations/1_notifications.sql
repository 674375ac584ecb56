-- Distribution lists, the notification inbox and the email delivery log (N1-N8).

-- tool: the directory's Tool values. Absent row: the default (all tool admins).
CREATE TABLE distribution_lists (
    project_id        TEXT NOT NULL,
    tool              SMALLINT NOT NULL,
    narrowed          SMALLINT NOT NULL,
    -- Comma-separated user ids.
    selected_admins   TEXT NOT NULL,
    company_admins    TEXT NOT NULL,
    updated_by        TEXT NOT NULL,
    update_ms         BIGINT NOT NULL,
    PRIMARY KEY (project_id, tool)
);

-- One row per (event, recipient, kind): the database holds "once per recipient" (N8).
CREATE TABLE notifications (
    id            TEXT PRIMARY KEY,
    recipient_id  TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    kind          SMALLINT NOT NULL,
    subject       TEXT NOT NULL,
    body          TEXT NOT NULL,
    project_id    TEXT NOT NULL,
    connection_id TEXT NOT NULL,
    create_ms     BIGINT NOT NULL,
    read_ms       BIGINT,
    UNIQUE (event_id, recipient_id, kind)
);
CREATE INDEX notifications_inbox ON notifications (recipient_id, id);

-- Emails to send, one per notification; a sent one is never sent again.
CREATE TABLE emails (
    id              TEXT PRIMARY KEY REFERENCES notifications (id),
    to_address      TEXT NOT NULL,
    subject         TEXT NOT NULL,
    text_body       TEXT NOT NULL,
    html_body       TEXT NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_ms BIGINT NOT NULL,
    sent_ms         BIGINT,
    last_error      TEXT NOT NULL,
    create_ms       BIGINT NOT NULL
);
CREATE INDEX emails_due ON emails (next_attempt_ms) WHERE sent_ms IS NULL;
