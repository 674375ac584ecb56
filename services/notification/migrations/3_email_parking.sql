-- Issue 18: an email that fails every attempt is parked (kept, not retried) until an
-- operator replays it (`connectability dead-letters`).
ALTER TABLE emails ADD COLUMN parked_ms BIGINT;
