-- The RFIs tool of every project (R1-R6).
-- Portable types only; the sync engine's tables (files, sync_connections, sync_work) come
-- from libs/sync/migrations; lists of ids are JSON arrays in TEXT. A copy made for a connection
-- has connection_id and origin_id (the upstream RFI's id) set; originals have them empty.

-- status: 1 OPEN, 2 CLOSED, 3 REOPENED, 4 DELETED.
CREATE TABLE rfis (
    id                      TEXT PRIMARY KEY,
    project_id              TEXT NOT NULL,
    number                  BIGINT NOT NULL,
    subject                 TEXT NOT NULL,
    question                TEXT NOT NULL,
    question_file_ids       TEXT NOT NULL,
    status                  SMALLINT NOT NULL,
    manager_id              TEXT NOT NULL,
    received_from_id        TEXT NOT NULL,
    responsible_contractor  TEXT NOT NULL,
    assignee_ids            TEXT NOT NULL,
    distribution_ids        TEXT NOT NULL,
    creator_id              TEXT NOT NULL,
    -- The companies of the creator, manager, assignees and distribution list (R2).
    participant_company_ids TEXT NOT NULL,
    date_initiated          TEXT NOT NULL,
    due_date                TEXT NOT NULL,
    private                 SMALLINT NOT NULL,
    drawing_revision_ids    TEXT NOT NULL,
    cover_file_id           TEXT NOT NULL,
    drawings_file_id        TEXT NOT NULL,
    -- Bumped by every change; copies apply only newer versions.
    version                 BIGINT NOT NULL,
    close_ms                BIGINT,
    deleted_ms              BIGINT,
    connection_id           TEXT NOT NULL,
    origin_id               TEXT NOT NULL,
    origin_project_id       TEXT NOT NULL,
    -- For a copy: the upstream version it reflects.
    origin_version          BIGINT NOT NULL,
    -- For a copy: its connection was disconnected (R6).
    disconnected            SMALLINT NOT NULL,
    create_ms               BIGINT NOT NULL,
    update_ms               BIGINT NOT NULL
);
CREATE INDEX rfis_by_project ON rfis (project_id, id);
CREATE UNIQUE INDEX rfis_number ON rfis (project_id, number) WHERE connection_id = '';
CREATE UNIQUE INDEX rfis_copy ON rfis (connection_id, origin_id) WHERE connection_id <> '';

CREATE TABLE rfi_responses (
    id        TEXT PRIMARY KEY,
    rfi_id    TEXT NOT NULL REFERENCES rfis (id),
    author_id TEXT NOT NULL,
    body      TEXT NOT NULL,
    file_ids  TEXT NOT NULL,
    official  SMALLINT NOT NULL,
    create_ms BIGINT NOT NULL
);
CREATE INDEX rfi_responses_by_rfi ON rfi_responses (rfi_id, id);

-- A downstream RFI linked to a connected copy in the same project (R5); never copied.
CREATE TABLE rfi_links (
    rfi_id           TEXT NOT NULL REFERENCES rfis (id),
    connected_rfi_id TEXT NOT NULL REFERENCES rfis (id),
    project_id       TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    create_ms        BIGINT NOT NULL,
    PRIMARY KEY (rfi_id, connected_rfi_id)
);
CREATE INDEX rfi_links_by_copy ON rfi_links (connected_rfi_id);

CREATE TABLE rfi_settings (
    project_id    TEXT PRIMARY KEY,
    official_only SMALLINT NOT NULL,
    update_ms     BIGINT NOT NULL
);

-- The last RFI number given in each project: a create takes the next one inside its
-- transaction (the row lock queues concurrent creates; none fails).
CREATE TABLE rfi_numbers (
    project_id TEXT PRIMARY KEY,
    last       BIGINT NOT NULL
);
