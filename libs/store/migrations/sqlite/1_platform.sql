-- Platform tables every service database has: outbox, inbox, dead letters, request ids.
CREATE TABLE outbox (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT NOT NULL UNIQUE,
    event_type  TEXT NOT NULL,
    source      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    time_ms     BIGINT NOT NULL,
    traceparent TEXT,
    data        BLOB NOT NULL,
    sent_ms     BIGINT
);
CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_ms IS NULL;

CREATE TABLE inbox (
    consumer   TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    handled_ms BIGINT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);

CREATE TABLE dead_letters (
    id          TEXT PRIMARY KEY,
    consumer    TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    source      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    time_ms     BIGINT NOT NULL,
    traceparent TEXT,
    data        BLOB NOT NULL,
    error       TEXT NOT NULL,
    attempts    BIGINT NOT NULL,
    created_ms  BIGINT NOT NULL,
    -- Set by an operator (`connectability dead-letters replay`); the running consumer
    -- re-applies the event and deletes the row.
    replay_requested_ms BIGINT,
    UNIQUE (consumer, event_id)
);

CREATE TABLE request_ids (
    scope      TEXT NOT NULL,
    request_id TEXT NOT NULL,
    response   BLOB NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (scope, request_id)
);
