-- Issue 18: one outbox relayer per service at a time. The replica holding the lease
-- (renewed while it runs, released when it stops) publishes; the others wait to take over.
CREATE TABLE relay_lease (
    name     TEXT PRIMARY KEY,
    holder   TEXT NOT NULL,
    until_ms BIGINT NOT NULL
);
