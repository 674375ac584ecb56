-- Connections, their history, project roles and company approval settings (C1-C18).
-- Portable types only: ids TEXT, times BIGINT Unix ms, enums SMALLINT (proto values).

CREATE TABLE company_settings (
    company_id    TEXT PRIMARY KEY,
    approval_mode SMALLINT NOT NULL,
    updated_by    TEXT NOT NULL,
    update_ms     BIGINT NOT NULL
);

CREATE TABLE connections (
    id                    TEXT PRIMARY KEY,
    upstream_project_id   TEXT NOT NULL,
    upstream_company_id   TEXT NOT NULL,
    downstream_project_id TEXT NOT NULL,
    downstream_company_id TEXT NOT NULL,
    -- Feature numbers, ascending, comma-separated: '1,3'.
    features              TEXT NOT NULL,
    -- 1 PENDING, 2 ACTIVE, 3 REJECTED, 4 UNDONE, 5 DISCONNECTED.
    status                SMALLINT NOT NULL,
    requested_by          TEXT NOT NULL,
    request_ms            BIGINT NOT NULL,
    -- Empty with approve_ms set: auto-approved.
    approved_by           TEXT NOT NULL,
    approve_ms            BIGINT,
    disconnected_by       TEXT NOT NULL,
    disconnect_reason     TEXT NOT NULL,
    disconnect_ms         BIGINT,
    update_ms             BIGINT NOT NULL
);
-- C8 and C14 held by the database, whatever the number of replicas: a downstream project
-- has at most one connection that is pending, active or disconnected, ever.
CREATE UNIQUE INDEX connections_one_per_downstream ON connections (downstream_project_id)
    WHERE status IN (1, 2, 5);
CREATE INDEX connections_by_upstream ON connections (upstream_project_id, id);
CREATE INDEX connections_by_downstream ON connections (downstream_project_id, id);

-- C10 held by the database: a project's role (1 UPSTREAM, 2 DOWNSTREAM) is fixed by its
-- first connection that counts; it is released only when no such connection remains.
CREATE TABLE project_roles (
    project_id TEXT PRIMARY KEY,
    role       SMALLINT NOT NULL
);

CREATE TABLE connection_history (
    id            TEXT PRIMARY KEY,
    connection_id TEXT NOT NULL REFERENCES connections (id),
    action        SMALLINT NOT NULL,
    from_status   SMALLINT NOT NULL,
    to_status     SMALLINT NOT NULL,
    actor_id      TEXT NOT NULL,
    time_ms       BIGINT NOT NULL,
    reason        TEXT NOT NULL,
    features      TEXT NOT NULL
);
CREATE INDEX connection_history_by_connection ON connection_history (connection_id, id);
