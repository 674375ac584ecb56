-- Issue 18: a copy work item counts its failed attempts and waits longer after each; after
-- too many it is parked (kept with its error, not retried), which stops only its own
-- connection until an operator replays it.
ALTER TABLE sync_work ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sync_work ADD COLUMN not_before_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sync_work ADD COLUMN parked_ms BIGINT;
ALTER TABLE sync_work ADD COLUMN last_error TEXT;
