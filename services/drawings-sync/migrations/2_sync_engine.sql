-- The sync engine (libs/sync) names the per-record count the same for every tool.
ALTER TABLE sync_connections RENAME COLUMN drawings_copied TO records_copied;
