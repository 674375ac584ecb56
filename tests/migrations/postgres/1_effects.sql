-- The conformance suite's consumer effect: one row per applied event (duplicates would show).
CREATE TABLE effects (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL
);
