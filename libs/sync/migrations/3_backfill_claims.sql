-- Issue 18: a connection's backfill is claimed by one replica at a time (a lease renewed
-- before each batch), so replicas never copy the same batch and leave orphan objects.
CREATE TABLE sync_backfill_claims (
    connection_id TEXT PRIMARY KEY,
    holder        TEXT NOT NULL,
    until_ms      BIGINT NOT NULL
);
