-- The Submittals tool of every project (S1-S6).
-- Portable types only; the sync engine's tables (files, sync_connections, sync_work) come
-- from libs/sync/migrations; lists and the general information are JSON in TEXT. A copy made for
-- a connection has connection_id and origin_id (the upstream row's id) set; originals have
-- them empty.

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

-- The last submittal number given in each project: a create takes the next one inside its
-- transaction (the row lock queues concurrent creates; none fails).
CREATE TABLE submittal_numbers (
    project_id TEXT PRIMARY KEY,
    last       BIGINT NOT NULL
);
