-- The sync engine's tables (libs/sync), the same in every tool service's database and
-- applied by each tool service's `migrate` from this one folder (history in
-- `_sync_migrations`). The DDL is portable: SQLite and Postgres run it as written.

-- Stored files: a tool's originals (connection_id empty) and the copies a connection made
-- (connection_id set), so undoing a connection finds every file a copy ever had.
CREATE TABLE files (
    id            TEXT PRIMARY KEY,
    project_id    TEXT NOT NULL,
    company_id    TEXT NOT NULL,
    filename      TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    size_bytes    BIGINT NOT NULL,
    sha256        TEXT NOT NULL,
    object_key    TEXT NOT NULL,
    create_ms     BIGINT NOT NULL,
    connection_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX files_by_connection ON files (connection_id) WHERE connection_id <> '';

-- The connections that carry the tool's feature, from connection events confirmed with
-- connection-manager. state: 1 BACKFILLING, 2 IN_SYNC, 3 STOPPED.
CREATE TABLE sync_connections (
    connection_id         TEXT PRIMARY KEY,
    upstream_project_id   TEXT NOT NULL,
    downstream_project_id TEXT NOT NULL,
    downstream_company_id TEXT NOT NULL,
    state                 SMALLINT NOT NULL,
    -- Items (revisions, RFIs, submittals) to copy and copied; records holding them.
    items_total           BIGINT NOT NULL,
    items_copied          BIGINT NOT NULL,
    records_copied        BIGINT NOT NULL,
    -- The backfill's position: upstream record ids up to here are copied.
    backfill_cursor       TEXT NOT NULL,
    -- When copying started: earlier upstream changes belong to the backfill.
    start_ms              BIGINT NOT NULL,
    last_copy_ms          BIGINT,
    update_ms             BIGINT NOT NULL,
    -- The connection's version (from connection-manager) of the last event applied: an
    -- event with a lower version is stale, whatever the producers' clocks say.
    connection_version    BIGINT NOT NULL
);
CREATE INDEX sync_by_upstream ON sync_connections (upstream_project_id);

-- One connection's share of a tool event, waiting to be copied: the inbox transaction only
-- queues them, and workers in every replica copy them, a connection's items in order.
CREATE TABLE sync_work (
    id            TEXT PRIMARY KEY,
    connection_id TEXT NOT NULL,
    -- Comma-separated upstream record ids.
    record_ids    TEXT NOT NULL,
    action_id     TEXT NOT NULL,
    event_ms      BIGINT NOT NULL,
    -- The worker holding it, and since when (a claim older than the stale limit is free).
    claimed_by    TEXT NOT NULL,
    claim_ms      BIGINT NOT NULL,
    -- The W3C trace context of the event that queued the work, so the copy joins its trace.
    traceparent   TEXT
);
CREATE INDEX sync_work_by_connection ON sync_work (connection_id, id);
