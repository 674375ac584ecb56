-- The Submittals tool of every project, and the sync's projection of connections (S1-S6).
-- Portable types only; lists and the general information are JSON in TEXT. A copy made for
-- a connection has connection_id and origin_id (the upstream row's id) set; originals have
-- them empty.

CREATE TABLE files (
    id           TEXT PRIMARY KEY,
    project_id   TEXT NOT NULL,
    company_id   TEXT NOT NULL,
    filename     TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes   BIGINT NOT NULL,
    sha256       TEXT NOT NULL,
    object_key   TEXT NOT NULL,
    create_ms    BIGINT NOT NULL
);

-- status: 1 OPEN, 2 CLOSED, 3 REOPENED, 4 DELETED.
CREATE TABLE submittals (
    id                      TEXT PRIMARY KEY,
    project_id              TEXT NOT NULL,
    number                  BIGINT NOT NULL,
    revision                BIGINT NOT NULL,
    status                  SMALLINT NOT NULL,
    -- Title, specification section, type, description, manager, submitter, responsible
    -- contractor, approvers with their responses, distribution list, due and received dates.
    general                 TEXT NOT NULL,
    attachment_file_ids     TEXT NOT NULL,
    cover_file_id           TEXT NOT NULL,
    -- Companies of the manager, submitter, approvers and distribution lists (S1).
    participant_company_ids TEXT NOT NULL,
    -- The last distributed revision; -1 before the first distribution.
    distributed_revision    BIGINT NOT NULL,
    -- Bumped by every change; copies apply only newer versions.
    version                 BIGINT NOT NULL,
    deleted_ms              BIGINT,
    connection_id           TEXT NOT NULL,
    origin_id               TEXT NOT NULL,
    origin_project_id       TEXT NOT NULL,
    origin_version          BIGINT NOT NULL,
    -- For a copy: the upstream has an undistributed newer revision (S5).
    outdated                SMALLINT NOT NULL,
    -- For a copy: its connection was disconnected.
    disconnected            SMALLINT NOT NULL,
    create_ms               BIGINT NOT NULL,
    update_ms               BIGINT NOT NULL
);
CREATE INDEX submittals_by_project ON submittals (project_id, id);
CREATE UNIQUE INDEX submittals_number ON submittals (project_id, number) WHERE connection_id = '';
CREATE UNIQUE INDEX submittals_copy ON submittals (connection_id, origin_id) WHERE connection_id <> '';

-- One distribution of one revision, with the general information as it was (S2).
CREATE TABLE distributions (
    id                  TEXT PRIMARY KEY,
    submittal_id        TEXT NOT NULL REFERENCES submittals (id),
    project_id          TEXT NOT NULL,
    revision            BIGINT NOT NULL,
    distributed_by      TEXT NOT NULL,
    recipient_ids       TEXT NOT NULL,
    message             TEXT NOT NULL,
    responses           TEXT NOT NULL,
    attachment_file_ids TEXT NOT NULL,
    cover_file_id       TEXT NOT NULL,
    general             TEXT NOT NULL,
    connection_id       TEXT NOT NULL,
    origin_id           TEXT NOT NULL,
    origin_project_id   TEXT NOT NULL,
    create_ms           BIGINT NOT NULL
);
CREATE INDEX distributions_by_submittal ON distributions (submittal_id, create_ms, id);
CREATE UNIQUE INDEX distributions_copy ON distributions (connection_id, origin_id) WHERE connection_id <> '';

-- A downstream submittal linked to a connected copy in the same project (S6); never copied.
CREATE TABLE submittal_links (
    submittal_id           TEXT NOT NULL REFERENCES submittals (id),
    connected_submittal_id TEXT NOT NULL REFERENCES submittals (id),
    project_id             TEXT NOT NULL,
    user_id                TEXT NOT NULL,
    create_ms              BIGINT NOT NULL,
    PRIMARY KEY (submittal_id, connected_submittal_id)
);

-- The connections that carry SUBMITTALS, from connection events (libs/sync).
CREATE TABLE sync_connections (
    connection_id         TEXT PRIMARY KEY,
    upstream_project_id   TEXT NOT NULL,
    downstream_project_id TEXT NOT NULL,
    downstream_company_id TEXT NOT NULL,
    state                 SMALLINT NOT NULL,
    items_total           BIGINT NOT NULL,
    items_copied          BIGINT NOT NULL,
    records_copied        BIGINT NOT NULL,
    backfill_cursor       TEXT NOT NULL,
    start_ms              BIGINT NOT NULL,
    last_copy_ms          BIGINT,
    update_ms             BIGINT NOT NULL
);
CREATE INDEX sync_by_upstream ON sync_connections (upstream_project_id);
