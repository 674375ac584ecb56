//! Inbox consumers: each event's id is recorded in the same transaction as its effect, so a
//! redelivered event has no second effect. Events that keep failing become dead letters,
//! which an operator can list and replay.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use connectability_events::{
    Delivery, Envelope, EventBus, EventHandler, Subscription, SubscriptionSpec,
};
use sqlx::Row;

use crate::{Db, Tx, metrics, now_ms};

/// A consumer's effect, applied inside the inbox transaction.
#[async_trait]
pub trait InboxHandler: Send + Sync + 'static {
    async fn handle(&self, tx: &mut Tx, event: &Envelope) -> anyhow::Result<()>;

    /// Whether this consumer acts on the event at all. Events it does not want are
    /// acknowledged without a transaction (a stream carries every event of its context, and
    /// a consumer busy recording events it ignores delays the ones it needs).
    fn wants(&self, _event: &Envelope) -> bool {
        true
    }

    /// Called once the effect of a newly applied event is committed (e.g. to wake workers
    /// that act on what `handle` wrote).
    fn after_commit(&self) {}
}

/// Adapts an [`InboxHandler`] to the bus: dedup by event id, one transaction per event.
pub struct InboxConsumer {
    db: Db,
    consumer: String,
    handler: Arc<dyn InboxHandler>,
}

/// Whether an event's effect was applied now or had been before.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    Now,
    AlreadyHandled,
    /// The handler does not act on this event ([`InboxHandler::wants`]): nothing recorded.
    NotWanted,
}

impl InboxConsumer {
    pub fn new(db: Db, consumer: impl Into<String>, handler: Arc<dyn InboxHandler>) -> Self {
        let consumer = consumer.into();
        // The consumer's series exist from the start, so a rate reads 0 rather than nothing.
        metrics::REDELIVERIES.with_label_values(&[consumer.as_str()]);
        metrics::DEAD_LETTERED.with_label_values(&[consumer.as_str()]);
        Self {
            db,
            consumer,
            handler,
        }
    }

    /// Applies the event unless this consumer already did.
    pub async fn apply(&self, event: &Envelope) -> anyhow::Result<Applied> {
        if !self.handler.wants(event) {
            return Ok(Applied::NotWanted);
        }
        let mut tx = self.db.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO inbox (consumer, event_id, handled_ms) VALUES ($1, $2, $3)
             ON CONFLICT (consumer, event_id) DO NOTHING",
        )
        .bind(&self.consumer)
        .bind(&event.id)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            return Ok(Applied::AlreadyHandled);
        }
        self.handler.handle(&mut tx, event).await?;
        tx.commit().await?;
        self.handler.after_commit();
        Ok(Applied::Now)
    }
}

/// Whether a failure is about reaching a dependency rather than about the event: the
/// database (connection lost, shutting down, a serialization conflict) or another service
/// (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED).
pub fn is_dependency_failure(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        if let Some(status) = cause.downcast_ref::<tonic::Status>() {
            use tonic::Code::*;
            return matches!(
                status.code(),
                Unavailable | DeadlineExceeded | ResourceExhausted | Aborted
            );
        }
        match cause.downcast_ref::<sqlx::Error>() {
            Some(
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed,
            ) => true,
            // Connection exceptions, shutdowns, serialization failures and deadlocks.
            Some(sqlx::Error::Database(e)) => e.code().is_some_and(|c| {
                c.starts_with("08") || c.starts_with("57P") || c == "40001" || c == "40P01"
            }),
            _ => false,
        }
    })
}

#[async_trait]
impl EventHandler for InboxConsumer {
    async fn handle(&self, delivery: &Delivery) -> anyhow::Result<()> {
        use tracing::Instrument as _;
        let event = &delivery.envelope;
        if !self.handler.wants(event) {
            return Ok(());
        }
        if delivery.attempt > 1 {
            metrics::REDELIVERIES
                .with_label_values(&[self.consumer.as_str()])
                .inc();
        }
        // The handler's work (and what it calls and raises) joins the event's trace.
        let span = tracing::info_span!(
            "event",
            otel.name = %format!("handle {}", event.event_type.rsplit('.').next().unwrap_or_default()),
            consumer = %self.consumer,
            event_type = %event.event_type,
            event_id = %event.id,
        );
        connectability_events::trace::set_parent_from(&span, event.traceparent.as_deref());
        self.apply(event)
            .instrument(span)
            .await
            .map(|_| ())
            .map_err(|e| {
                if is_dependency_failure(&e) {
                    // Retried until the dependency is back; never a dead letter.
                    anyhow::Error::new(connectability_events::Transient(format!("{e:#}")))
                } else {
                    e
                }
            })
    }

    async fn dead_letter(&self, delivery: &Delivery, error: &anyhow::Error) -> anyhow::Result<()> {
        let mut conn = self.db.pool().acquire().await?;
        record_dead_letter(
            &mut conn,
            &self.consumer,
            &delivery.envelope,
            &format!("{error:#}"),
            i64::from(delivery.attempt),
        )
        .await?;
        Ok(())
    }
}

/// How often a consumer looks for dead letters an operator asked to replay.
const REPLAY_POLL: Duration = Duration::from_secs(1);

/// A running inbox consumer: the bus subscription and its dead-letter replayer.
pub struct InboxSubscription {
    subscription: Subscription,
    stop_replayer: tokio::sync::watch::Sender<bool>,
    replayer: tokio::task::JoinHandle<()>,
}

impl InboxSubscription {
    /// Lets the event in hand finish, then stops; the durable keeps its place.
    pub async fn stop(self) {
        let _ = self.stop_replayer.send(true);
        let _ = self.replayer.await;
        self.subscription.stop().await;
    }
}

/// Starts a durable inbox consumer: `spec.durable` is also the inbox's consumer name. It
/// also re-applies the dead letters an operator asked to replay ([`request_replay`]).
pub async fn subscribe(
    bus: &dyn EventBus,
    db: Db,
    spec: SubscriptionSpec,
    handler: Arc<dyn InboxHandler>,
) -> anyhow::Result<InboxSubscription> {
    let consumer_name = spec.durable.clone();
    let consumer = Arc::new(InboxConsumer::new(
        db.clone(),
        consumer_name.clone(),
        handler.clone(),
    ));
    let subscription = bus.subscribe(spec, consumer).await?;
    let (stop_replayer, mut stopped) = tokio::sync::watch::channel(false);
    let replayer = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stopped.changed() => return,
                _ = tokio::time::sleep(REPLAY_POLL) => {}
            }
            if let Err(e) = replay_requested(&db, &consumer_name, handler.clone()).await {
                tracing::warn!(consumer = %consumer_name, error = %e, "dead-letter replay failed");
            }
        }
    });
    Ok(InboxSubscription {
        subscription,
        stop_replayer,
        replayer,
    })
}

/// Records `envelope` as a dead letter of `consumer` (an inbox consumer, or a queue that
/// parked an item: `outbox`, `<tool>-copy-work`, `email`), counted in the dead-letter metric.
/// Recording it again updates its error and attempts and clears a pending replay request.
pub async fn record_dead_letter(
    conn: &mut sqlx::AnyConnection,
    consumer: &str,
    envelope: &Envelope,
    error: &str,
    attempts: i64,
) -> Result<(), sqlx::Error> {
    let e = envelope;
    sqlx::query(
        "INSERT INTO dead_letters (id, consumer, event_id, event_type, source, subject, time_ms,
            traceparent, data, error, attempts, created_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (consumer, event_id) DO UPDATE SET error = $10, attempts = $11,
            replay_requested_ms = NULL",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(consumer)
    .bind(&e.id)
    .bind(&e.event_type)
    .bind(&e.source)
    .bind(&e.subject)
    .bind(e.time_ms)
    .bind(e.traceparent.clone())
    .bind(e.data.clone())
    .bind(error)
    .bind(attempts)
    .bind(now_ms())
    .execute(conn)
    .await?;
    metrics::DEAD_LETTERED.with_label_values(&[consumer]).inc();
    Ok(())
}

/// The dead letters of `consumer` an operator asked to replay: (dead letter id, event id).
pub async fn replays_requested(
    db: &Db,
    consumer: &str,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, event_id FROM dead_letters WHERE consumer = $1 AND replay_requested_ms IS NOT NULL
         ORDER BY created_ms",
    )
    .bind(consumer)
    .fetch_all(db.pool())
    .await
}

/// Asks the running consumer to re-apply a dead letter. Returns false if there is none
/// with this id.
pub async fn request_replay(db: &Db, dead_letter_id: &str) -> Result<bool, sqlx::Error> {
    let n = sqlx::query("UPDATE dead_letters SET replay_requested_ms = $2 WHERE id = $1")
        .bind(dead_letter_id)
        .bind(now_ms())
        .execute(db.pool())
        .await?
        .rows_affected();
    Ok(n == 1)
}

/// Replays this consumer's requested dead letters. One that fails again keeps its record,
/// with the new error, and waits for another request.
async fn replay_requested(
    db: &Db,
    consumer: &str,
    handler: Arc<dyn InboxHandler>,
) -> anyhow::Result<()> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM dead_letters WHERE consumer = $1 AND replay_requested_ms IS NOT NULL ORDER BY created_ms",
    )
    .bind(consumer)
    .fetch_all(db.pool())
    .await?;
    for id in ids {
        if let Err(e) = replay_dead_letter(db, &id, handler.clone()).await {
            sqlx::query(
                "UPDATE dead_letters SET replay_requested_ms = NULL, error = $2, attempts = attempts + 1 WHERE id = $1",
            )
            .bind(&id)
            .bind(format!("replay: {e:#}"))
            .execute(db.pool())
            .await?;
        }
    }
    Ok(())
}

/// An event a consumer gave up on.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub id: String,
    pub consumer: String,
    pub envelope: Envelope,
    pub error: String,
    pub attempts: i64,
    pub created_ms: i64,
}

/// Dead letters waiting for an operator (for metrics).
pub async fn dead_letter_count(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM dead_letters")
        .fetch_one(db.pool())
        .await
}

/// Dead letters, oldest first, optionally of one consumer.
pub async fn list_dead_letters(
    db: &Db,
    consumer: Option<&str>,
) -> Result<Vec<DeadLetter>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, consumer, event_id, event_type, source, subject, time_ms, traceparent, data,
                error, attempts, created_ms
         FROM dead_letters WHERE ($1 = '' OR consumer = $1) ORDER BY created_ms, id",
    )
    .bind(consumer.unwrap_or_default())
    .fetch_all(db.pool())
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(DeadLetter {
                id: r.try_get("id")?,
                consumer: r.try_get("consumer")?,
                envelope: crate::envelope_from_row(&r)?,
                error: r.try_get("error")?,
                attempts: r.try_get("attempts")?,
                created_ms: r.try_get("created_ms")?,
            })
        })
        .collect()
}

/// Runs a dead letter through its consumer again (once the cause is fixed). On success the
/// record is removed; on failure it stays and the error is returned.
pub async fn replay_dead_letter(
    db: &Db,
    dead_letter_id: &str,
    handler: Arc<dyn InboxHandler>,
) -> anyhow::Result<Applied> {
    let letter = list_dead_letters(db, None)
        .await?
        .into_iter()
        .find(|d| d.id == dead_letter_id)
        .ok_or_else(|| anyhow::anyhow!("no dead letter `{dead_letter_id}`"))?;
    let consumer = InboxConsumer::new(db.clone(), letter.consumer.clone(), handler);
    let applied = consumer.apply(&letter.envelope).await?;
    sqlx::query("DELETE FROM dead_letters WHERE id = $1")
        .bind(dead_letter_id)
        .execute(db.pool())
        .await?;
    Ok(applied)
}
