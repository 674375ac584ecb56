-- When the last connection event applied to this projection happened: an older event that
-- arrives later (redelivered after a failure) is ignored, so an activation can never
-- restart a connection that a later undo or disconnect stopped (libs/sync).
ALTER TABLE sync_connections ADD COLUMN event_ms BIGINT NOT NULL DEFAULT 0;
