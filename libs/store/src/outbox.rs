//! Transactional outbox: events are written in the same transaction as the state change
//! ([`enqueue`]); the [`Relay`] publishes them in order and marks them sent.
//!
//! A relay that dies after publishing but before marking publishes again on restart; the
//! repeat is harmless (JetStream drops the duplicate `Nats-Msg-Id`, inboxes ignore it).
//!
//! No event can stop the outbox: [`enqueue`] refuses one larger than
//! [`MAX_EVENT_BYTES`] (the change rolls back and the caller answers an error), and a row
//! the bus still refuses as too large (a server with a smaller `max_payload`) is *parked*:
//! moved to `dead_letters` under the consumer name [`PARKED`], counted in the dead-letter
//! metric, listed by `connectability dead-letters`, and published again when an operator
//! replays it (`connectability dead-letters replay`), while every other row flows on.

use std::{sync::Arc, time::Duration};

use connectability_events::{Envelope, EventBus};
use sqlx::{AssertSqlSafe, Row};
use tokio::sync::Notify;

use crate::{Db, Tx, now_ms, placeholders};

const COLUMNS: usize = 7;

/// The largest event the outbox takes (payload and headers, [`Envelope::wire_size`]):
/// under NATS's default 1 MiB `max_payload`, with room to spare.
pub const MAX_EVENT_BYTES: usize = 900 * 1024;

/// The `dead_letters.consumer` of outbox rows the bus refused.
pub const PARKED: &str = "outbox";

/// Writes events in the caller's transaction: they exist if and only if it commits. An
/// event over [`MAX_EVENT_BYTES`] is refused (`sqlx::Error::InvalidArgument`) so that the
/// transaction rolls back rather than commit an event no bus would carry.
pub async fn enqueue(tx: &mut Tx, events: &[Envelope]) -> Result<(), sqlx::Error> {
    if let Some(big) = events.iter().find(|e| e.wire_size() > MAX_EVENT_BYTES) {
        return Err(sqlx::Error::InvalidArgument(format!(
            "event {} ({}) is {} bytes, over the {MAX_EVENT_BYTES}-byte event limit",
            big.id,
            big.event_type,
            big.wire_size()
        )));
    }
    // Many rows per statement, within SQLite's and Postgres' bind limits.
    for chunk in events.chunks(500) {
        let values = (0..chunk.len())
            .map(|i| format!("({})", placeholders(i * COLUMNS + 1, COLUMNS)))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO outbox (event_id, event_type, source, subject, time_ms, traceparent, data) VALUES {values}"
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for e in chunk {
            query = query
                .bind(e.id.clone())
                .bind(e.event_type.clone())
                .bind(e.source.clone())
                .bind(e.subject.clone())
                .bind(e.time_ms)
                .bind(e.traceparent.clone())
                .bind(e.data.clone());
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// An unsent outbox row.
#[derive(Debug, Clone)]
pub struct Pending {
    pub seq: i64,
    pub envelope: Envelope,
}

/// The oldest unsent events, in `seq` order.
pub async fn fetch_unsent(db: &Db, limit: i64) -> Result<Vec<Pending>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT seq, event_id, event_type, source, subject, time_ms, traceparent, data
         FROM outbox WHERE sent_ms IS NULL ORDER BY seq LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Pending {
                seq: r.try_get("seq")?,
                envelope: crate::envelope_from_row(r)?,
            })
        })
        .collect()
}

/// Marks a published batch sent, in one statement.
pub async fn mark_sent(db: &Db, seqs: &[i64]) -> Result<(), sqlx::Error> {
    if seqs.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "UPDATE outbox SET sent_ms = $1 WHERE seq IN ({})",
        placeholders(2, seqs.len())
    );
    let mut query = sqlx::query(AssertSqlSafe(sql)).bind(now_ms());
    for s in seqs {
        query = query.bind(*s);
    }
    query.execute(db.pool()).await?;
    Ok(())
}

/// Events not yet sent, and when the oldest of them happened (for tests and metrics).
pub async fn backlog(db: &Db) -> Result<(i64, Option<i64>), sqlx::Error> {
    sqlx::query_as("SELECT COUNT(*), MIN(time_ms) FROM outbox WHERE sent_ms IS NULL")
        .fetch_one(db.pool())
        .await
}

/// Wakes the relay right after a commit, instead of at its next poll.
#[derive(Clone, Default)]
pub struct RelayWaker(Arc<Notify>);

impl RelayWaker {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// Set to `1` (chaos suite only, never in production): the process aborts right after its
/// relay publishes a batch and before it marks the batch sent.
pub const ABORT_AFTER_PUBLISH: &str = "CONNECTABILITY_FAULT_ABORT_AFTER_PUBLISH";

fn abort_after_publish() -> bool {
    static SET: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SET.get_or_init(|| std::env::var(ABORT_AFTER_PUBLISH).is_ok_and(|v| v == "1"))
}

/// How long a relayer's lease lasts unless renewed: the longest a replica's crash leaves
/// its service's events unpublished before another replica takes over.
pub const RELAY_LEASE: Duration = Duration::from_secs(5);

/// Moves events from one service's outbox to the bus. Of a service's replicas, only the one
/// holding the relay lease publishes (so rows go out once, in order); the others take over
/// when it stops or its lease lapses.
pub struct Relay {
    /// This relayer's lease holder id.
    id: String,
    db: Db,
    bus: Arc<dyn EventBus>,
    waker: RelayWaker,
    batch_size: i64,
    poll_interval: Duration,
    /// Sent rows older than this are deleted; the inbox, not the outbox, prevents repeats.
    retention: Duration,
}

impl Relay {
    /// The database whose outbox it relays.
    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn new(db: Db, bus: Arc<dyn EventBus>) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            db,
            bus,
            waker: RelayWaker::default(),
            batch_size: 256,
            poll_interval: Duration::from_millis(500),
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }

    pub fn waker(&self) -> RelayWaker {
        self.waker.clone()
    }

    /// Publishes one batch and marks it sent; returns how many events it moved (parked
    /// ones included).
    pub async fn run_once(&self) -> anyhow::Result<usize> {
        let mut pending = fetch_unsent(&self.db, self.batch_size).await?;
        if pending.is_empty() {
            return Ok(0);
        }
        let max = self.bus.max_event_bytes();
        let (too_large, fits): (Vec<Pending>, Vec<Pending>) = pending
            .drain(..)
            .partition(|p| p.envelope.wire_size() > max);
        for p in &too_large {
            park(
                &self.db,
                p,
                &format!(
                    "{} bytes, over the bus's {max}-byte limit (NATS max_payload)",
                    p.envelope.wire_size()
                ),
            )
            .await?;
        }
        let moved = too_large.len();
        let pending = fits;
        if pending.is_empty() {
            return Ok(moved);
        }
        let envelopes: Vec<Envelope> = pending.iter().map(|p| p.envelope.clone()).collect();
        self.bus.publish(&envelopes).await?;
        if abort_after_publish() {
            // Fault injection for the chaos suite: die in the window between publishing and
            // marking sent, where a real crash would leave published events unmarked.
            tracing::error!(
                events = envelopes.len(),
                "{ABORT_AFTER_PUBLISH}: aborting between publish and mark-sent"
            );
            std::process::abort();
        }
        let seqs: Vec<i64> = pending.iter().map(|p| p.seq).collect();
        mark_sent(&self.db, &seqs).await?;
        Ok(moved + pending.len())
    }

    /// Takes or renews the relay lease; true while this relayer holds it.
    pub async fn try_lease(&self) -> Result<bool, sqlx::Error> {
        let now = now_ms();
        let holder: Option<String> = sqlx::query_scalar(
            "INSERT INTO relay_lease (name, holder, until_ms) VALUES ('outbox', $1, $2)
             ON CONFLICT (name) DO UPDATE SET holder = $1, until_ms = $2
             WHERE relay_lease.holder = $1 OR relay_lease.until_ms < $3
             RETURNING holder",
        )
        .bind(&self.id)
        .bind(now + RELAY_LEASE.as_millis() as i64)
        .bind(now)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(holder.is_some())
    }

    /// Gives the lease up (a graceful stop), so another replica takes over at once.
    pub async fn release_lease(&self) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE relay_lease SET until_ms = 0 WHERE name = 'outbox' AND holder = $1")
            .bind(&self.id)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Puts the parked events an operator asked to replay back in the outbox (the running
    /// relay does this whenever it is idle).
    pub async fn replay_parked(&self) -> Result<(), sqlx::Error> {
        unpark_requested(&self.db).await
    }

    /// Runs until `shutdown` resolves: while it holds the relay lease, drains the outbox, then
    /// waits for a wake-up or the next poll (other replicas of the service may have written
    /// events too); on shutdown it releases the lease.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        self.run_leased(shutdown).await;
        if let Err(e) = self.release_lease().await {
            tracing::warn!(error = %e, "releasing the relay lease failed; it lapses by itself");
        }
    }

    async fn run_leased(&self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut last_prune = 0i64;
        // Renewed when a third of it is gone; while another replica holds it, this one waits.
        let mut renew_at = std::time::Instant::now();
        loop {
            if std::time::Instant::now() >= renew_at {
                let leased = self.try_lease().await;
                if let Err(e) = &leased {
                    tracing::warn!(error = %e, "relay lease failed; retrying");
                }
                if leased.unwrap_or(false) {
                    renew_at = std::time::Instant::now() + RELAY_LEASE / 3;
                } else {
                    tokio::select! {
                        _ = &mut shutdown => return,
                        _ = tokio::time::sleep(self.poll_interval) => {}
                    }
                    continue;
                }
            }
            // A publish may wait on consumers (in process) that are stopping too: shutdown
            // interrupts it. Nothing is lost: unmarked events are published again next time.
            let moved = tokio::select! {
                _ = &mut shutdown => return,
                moved = self.run_once() => match moved {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!(error = %e, "outbox relay failed; retrying");
                        0
                    }
                },
            };
            if moved > 0 {
                continue;
            }
            if let Err(e) = self.replay_parked().await {
                tracing::warn!(error = %e, "replaying parked outbox events failed");
            }
            if now_ms() - last_prune > 3_600_000 {
                last_prune = now_ms();
                let cutoff = now_ms() - self.retention.as_millis() as i64;
                if let Err(e) =
                    sqlx::query("DELETE FROM outbox WHERE sent_ms IS NOT NULL AND sent_ms < $1")
                        .bind(cutoff)
                        .execute(self.db.pool())
                        .await
                {
                    tracing::warn!(error = %e, "outbox prune failed");
                }
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = self.waker.0.notified() => {}
                _ = tokio::time::sleep(self.poll_interval) => {}
            }
        }
    }
}

/// Moves an unpublishable row to `dead_letters` (consumer [`PARKED`]) and marks it sent, in
/// one transaction, so the rows after it flow on.
async fn park(db: &Db, p: &Pending, error: &str) -> Result<(), sqlx::Error> {
    let e = &p.envelope;
    tracing::error!(
        event_id = %e.id,
        event_type = %e.event_type,
        error,
        "outbox event parked: the bus refuses it; see `connectability dead-letters`"
    );
    let mut tx = db.begin().await?;
    crate::inbox::record_dead_letter(&mut tx, PARKED, e, error, 1).await?;
    sqlx::query("UPDATE outbox SET sent_ms = $2 WHERE seq = $1")
        .bind(p.seq)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Puts parked events an operator asked to replay back in the outbox (same event id, so a
/// consumer that somehow saw it ignores the repeat).
async fn unpark_requested(db: &Db) -> Result<(), sqlx::Error> {
    let requested = crate::inbox::replays_requested(db, PARKED).await?;
    for (id, _) in requested {
        let mut tx = db.begin().await?;
        sqlx::query(
            "DELETE FROM outbox WHERE event_id = (SELECT event_id FROM dead_letters WHERE id = $1)",
        )
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO outbox (event_id, event_type, source, subject, time_ms, traceparent, data)
             SELECT event_id, event_type, source, subject, time_ms, traceparent, data
             FROM dead_letters WHERE id = $1",
        )
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM dead_letters WHERE id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(())
}
