-- The Drawings tool of every project (D1-D12).
-- Portable types only; the sync engine's tables (files, sync_connections, sync_work) come
-- from libs/sync/migrations. A copy made for a connection has connection_id and origin_id (the
-- upstream item's id) set; originals have them empty.

CREATE TABLE areas (
    id                TEXT PRIMARY KEY,
    project_id        TEXT NOT NULL,
    name              TEXT NOT NULL,
    description       TEXT NOT NULL,
    connection_id     TEXT NOT NULL,
    origin_id         TEXT NOT NULL,
    origin_project_id TEXT NOT NULL,
    create_ms         BIGINT NOT NULL
);
CREATE INDEX areas_by_project ON areas (project_id, id);
CREATE UNIQUE INDEX areas_copy ON areas (connection_id, origin_id) WHERE connection_id <> '';

CREATE TABLE sets (
    id                TEXT PRIMARY KEY,
    project_id        TEXT NOT NULL,
    name              TEXT NOT NULL,
    set_date          TEXT NOT NULL,
    connection_id     TEXT NOT NULL,
    origin_id         TEXT NOT NULL,
    origin_project_id TEXT NOT NULL,
    create_ms         BIGINT NOT NULL
);
CREATE INDEX sets_by_project ON sets (project_id, id);
CREATE UNIQUE INDEX sets_copy ON sets (connection_id, origin_id) WHERE connection_id <> '';

CREATE TABLE drawings (
    id                  TEXT PRIMARY KEY,
    project_id          TEXT NOT NULL,
    area_id             TEXT NOT NULL REFERENCES areas (id),
    number              TEXT NOT NULL,
    title               TEXT NOT NULL,
    discipline_name     TEXT NOT NULL,
    discipline_position BIGINT NOT NULL,
    obsolete            SMALLINT NOT NULL,
    -- Bumped by every change; copies apply only newer versions.
    version             BIGINT NOT NULL,
    deleted_ms          BIGINT,
    connection_id       TEXT NOT NULL,
    origin_id           TEXT NOT NULL,
    origin_project_id   TEXT NOT NULL,
    -- For a copy: the upstream version it reflects.
    origin_version      BIGINT NOT NULL,
    create_ms           BIGINT NOT NULL,
    update_ms           BIGINT NOT NULL
);
CREATE INDEX drawings_by_project ON drawings (project_id, number, id);
CREATE UNIQUE INDEX drawings_copy ON drawings (connection_id, origin_id) WHERE connection_id <> '';

CREATE TABLE revisions (
    id                TEXT PRIMARY KEY,
    drawing_id        TEXT NOT NULL REFERENCES drawings (id),
    project_id        TEXT NOT NULL,
    set_id            TEXT NOT NULL REFERENCES sets (id),
    revision_number   TEXT NOT NULL,
    revision_status   TEXT NOT NULL,
    drawing_date      TEXT NOT NULL,
    received_date     TEXT NOT NULL,
    file_id           TEXT NOT NULL REFERENCES files (id),
    -- JSON object of strings. Never copied (D4).
    custom_fields     TEXT NOT NULL,
    published         SMALLINT NOT NULL,
    publish_ms        BIGINT,
    connection_id     TEXT NOT NULL,
    origin_id         TEXT NOT NULL,
    origin_project_id TEXT NOT NULL,
    create_ms         BIGINT NOT NULL
);
CREATE INDEX revisions_by_drawing ON revisions (drawing_id, id);
CREATE INDEX revisions_by_project ON revisions (project_id, published);
CREATE UNIQUE INDEX revisions_copy ON revisions (connection_id, origin_id) WHERE connection_id <> '';

CREATE TABLE markups (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL,
    revision_id TEXT NOT NULL REFERENCES revisions (id),
    author_id   TEXT NOT NULL,
    body        TEXT NOT NULL,
    create_ms   BIGINT NOT NULL
);
CREATE INDEX markups_by_project ON markups (project_id, id);
