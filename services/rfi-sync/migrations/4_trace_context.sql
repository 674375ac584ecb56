-- The W3C trace context of the event that queued the work, so the copy joins its trace.
ALTER TABLE sync_work ADD COLUMN traceparent TEXT;
