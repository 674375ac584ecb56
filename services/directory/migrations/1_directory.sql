-- Companies, users, projects, project directories and company admins (Y1-Y3).
-- Portable types only (see STACK.md): ids TEXT, times BIGINT Unix ms, flags SMALLINT 0/1.
CREATE TABLE companies (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    storage_location TEXT NOT NULL,
    govcloud         SMALLINT NOT NULL,
    create_ms        BIGINT NOT NULL
);

CREATE TABLE users (
    id           TEXT PRIMARY KEY,
    company_id   TEXT NOT NULL REFERENCES companies (id),
    display_name TEXT NOT NULL,
    email        TEXT NOT NULL UNIQUE,
    create_ms    BIGINT NOT NULL
);
CREATE INDEX users_company ON users (company_id, id);

CREATE TABLE company_admins (
    company_id TEXT NOT NULL REFERENCES companies (id),
    user_id    TEXT NOT NULL REFERENCES users (id),
    PRIMARY KEY (company_id, user_id)
);

CREATE TABLE projects (
    id         TEXT PRIMARY KEY,
    company_id TEXT NOT NULL REFERENCES companies (id),
    name       TEXT NOT NULL,
    active     SMALLINT NOT NULL,
    create_ms  BIGINT NOT NULL,
    update_ms  BIGINT NOT NULL
);
CREATE INDEX projects_company ON projects (company_id, id);

-- Levels: 1 NONE, 2 READ_ONLY, 3 STANDARD, 4 ADMIN (the proto enum values).
CREATE TABLE project_members (
    project_id         TEXT NOT NULL REFERENCES projects (id),
    user_id            TEXT NOT NULL REFERENCES users (id),
    connection_manager SMALLINT NOT NULL,
    drawings           SMALLINT NOT NULL,
    rfis               SMALLINT NOT NULL,
    submittals         SMALLINT NOT NULL,
    create_ms          BIGINT NOT NULL,
    update_ms          BIGINT NOT NULL,
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX project_members_user ON project_members (user_id, project_id);
