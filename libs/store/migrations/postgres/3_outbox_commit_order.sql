-- Issue 18: publication in commit order. `seq` is taken when a row is written, not when
-- its transaction commits, so a row can become visible after a later one was relayed. The
-- relayer only takes rows whose transaction is older than every transaction still running
-- (`pg_snapshot_xmin`); then no earlier row can still appear. (SQLite has one writer, so
-- its commit order is `seq` order already.)
ALTER TABLE outbox ADD COLUMN tx_id xid8 NOT NULL DEFAULT pg_current_xact_id();
