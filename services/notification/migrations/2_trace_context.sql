-- The W3C trace context of the event that queued the email, so sending it joins its trace.
ALTER TABLE emails ADD COLUMN traceparent TEXT;
