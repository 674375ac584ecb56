-- Each change of a connection increments its version, which every connection event
-- carries: consumers order a connection's events by it, never by a producer's clock.
ALTER TABLE connections ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
