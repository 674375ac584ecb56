-- Each tool event becomes one work item per connection from its project (libs/sync): the
-- inbox transaction only queues them, and workers in every replica copy them in parallel,
-- each item in its own transaction, a connection's items in order.
CREATE TABLE sync_work (
    id            TEXT PRIMARY KEY,
    connection_id TEXT NOT NULL,
    -- Comma-separated upstream record ids.
    record_ids    TEXT NOT NULL,
    action_id     TEXT NOT NULL,
    event_ms      BIGINT NOT NULL,
    -- The worker holding it, and since when (a claim older than the stale limit is free).
    claimed_by    TEXT NOT NULL,
    claim_ms      BIGINT NOT NULL
);
CREATE INDEX sync_work_by_connection ON sync_work (connection_id, id);
