//! Storage for every service: one pool from `DATABASE_URL` (`sqlite://…` embedded default or
//! `postgres://…`) through sqlx `Any`, so SQL is written once; per-service migrations; the
//! transactional [`outbox`] and its relay; [`inbox`] consumers with dead letters; and
//! [`request_ids`] for safe retries (AIP-155).
//!
//! Portable schema rules (see STACK.md): ids TEXT, times BIGINT Unix ms, flags SMALLINT,
//! bytes BYTEA/BLOB; no BOOLEAN, timestamp, UUID or JSONB columns.

mod db;
pub mod inbox;
pub mod metrics;
pub mod outbox;
pub mod request_ids;
pub mod retention;
pub mod table;

pub use connectability_events::Envelope;
pub use db::{Backend, Db, LibraryMigrations, ServiceMigrations, Tx};

/// Unix time in milliseconds, the unit of every stored time.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Ends a mutation: writes its events to the outbox and, for a call with a request id, its
/// response, commits, and wakes the relay. Returns false (and rolls back) when a concurrent
/// call with the same request id committed first.
pub async fn commit(
    mut tx: Tx,
    events: &[Envelope],
    request: Option<(&str, &str, Vec<u8>)>,
    relay: &outbox::RelayWaker,
) -> Result<bool, sqlx::Error> {
    outbox::enqueue(&mut tx, events).await?;
    if let Some((scope, request_id, response)) = request
        && !request_ids::record(&mut tx, scope, request_id, response).await?
    {
        tx.rollback().await?;
        return Ok(false);
    }
    tx.commit().await?;
    relay.wake();
    Ok(true)
}

/// `$first, $first+1, …` placeholders for a batch statement.
pub fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads an [`Envelope`] from a row with the outbox's event columns (`event_id`,
/// `event_type`, `source`, `subject`, `time_ms`, `traceparent`, `data`).
pub(crate) fn envelope_from_row(r: &sqlx::any::AnyRow) -> Result<Envelope, sqlx::Error> {
    use sqlx::Row;
    Ok(Envelope {
        id: r.try_get("event_id")?,
        event_type: r.try_get("event_type")?,
        source: r.try_get("source")?,
        subject: r.try_get("subject")?,
        time_ms: r.try_get("time_ms")?,
        traceparent: r.try_get("traceparent")?,
        data: r.try_get("data")?,
    })
}
