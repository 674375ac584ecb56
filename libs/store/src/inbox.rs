//! Inbox consumers: each event's id is recorded in the same transaction as its effect, so a
//! redelivered event has no second effect. Events that keep failing become dead letters,
//! which an operator can list and replay.

use std::sync::Arc;

use async_trait::async_trait;
use connectability_events::{
    Delivery, Envelope, EventBus, EventHandler, Subscription, SubscriptionSpec,
};
use sqlx::Row;

use crate::{Db, Tx, now_ms};

/// A consumer's effect, applied inside the inbox transaction.
#[async_trait]
pub trait InboxHandler: Send + Sync + 'static {
    async fn handle(&self, tx: &mut Tx, event: &Envelope) -> anyhow::Result<()>;
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
}

impl InboxConsumer {
    pub fn new(db: Db, consumer: impl Into<String>, handler: Arc<dyn InboxHandler>) -> Self {
        Self {
            db,
            consumer: consumer.into(),
            handler,
        }
    }

    /// Applies the event unless this consumer already did.
    pub async fn apply(&self, event: &Envelope) -> anyhow::Result<Applied> {
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
        Ok(Applied::Now)
    }
}

#[async_trait]
impl EventHandler for InboxConsumer {
    async fn handle(&self, delivery: &Delivery) -> anyhow::Result<()> {
        self.apply(&delivery.envelope).await.map(|_| ())
    }

    async fn dead_letter(&self, delivery: &Delivery, error: &anyhow::Error) -> anyhow::Result<()> {
        let e = &delivery.envelope;
        sqlx::query(
            "INSERT INTO dead_letters (id, consumer, event_id, event_type, source, subject, time_ms,
                traceparent, data, error, attempts, created_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (consumer, event_id) DO NOTHING",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(&self.consumer)
        .bind(&e.id)
        .bind(&e.event_type)
        .bind(&e.source)
        .bind(&e.subject)
        .bind(e.time_ms)
        .bind(e.traceparent.clone())
        .bind(e.data.clone())
        .bind(format!("{error:#}"))
        .bind(i64::from(delivery.attempt))
        .bind(now_ms())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }
}

/// Starts a durable inbox consumer: `spec.durable` is also the inbox's consumer name.
pub async fn subscribe(
    bus: &dyn EventBus,
    db: Db,
    spec: SubscriptionSpec,
    handler: Arc<dyn InboxHandler>,
) -> anyhow::Result<Subscription> {
    let consumer = Arc::new(InboxConsumer::new(db, spec.durable.clone(), handler));
    bus.subscribe(spec, consumer).await
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
                envelope: Envelope {
                    id: r.try_get("event_id")?,
                    event_type: r.try_get("event_type")?,
                    source: r.try_get("source")?,
                    subject: r.try_get("subject")?,
                    time_ms: r.try_get("time_ms")?,
                    traceparent: r.try_get("traceparent")?,
                    data: r.try_get("data")?,
                },
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
