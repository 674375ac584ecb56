use std::time::Duration;

use async_trait::async_trait;

use crate::Envelope;

/// One delivery of an event to a durable consumer.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub envelope: Envelope,
    /// 1 on first delivery, then 2, 3, …
    pub attempt: u32,
}

/// Redelivery with exponential backoff, then a dead-letter record.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Deliveries before the event is dead-lettered (at least 1).
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// How long a delivery may stay unacknowledged before JetStream redelivers it.
    pub ack_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            ack_wait: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before delivery `attempt + 1`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// A failure that says nothing about the event: a dependency (the database, another
/// service) could not be reached. Such an event is retried with the usual backoff, capped at
/// `max_backoff`, for as long as it takes: it never counts toward `max_attempts` nor
/// becomes a dead letter, so an outage of a few seconds or hours loses nothing.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Transient(pub String);

/// Whether `error` is (or wraps) a [`Transient`] failure.
pub fn is_transient(error: &anyhow::Error) -> bool {
    error.chain().any(|c| c.is::<Transient>())
}

/// While a dependency is down its events are tried at least this often, so they flow again
/// within seconds of its return.
pub const TRANSIENT_MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The wait before trying an event again after `error`.
pub fn retry_after(policy: &RetryPolicy, attempt: u32, error: &anyhow::Error) -> Duration {
    let wait = policy.backoff(attempt);
    if is_transient(error) {
        wait.min(TRANSIENT_MAX_BACKOFF)
    } else {
        wait
    }
}

/// A durable consumer of one context's events.
#[derive(Debug, Clone)]
pub struct SubscriptionSpec {
    /// Durable name, unique per consuming service and purpose, e.g. `notification`.
    pub durable: String,
    /// The context whose stream is read, e.g. `connections`.
    pub context: String,
    pub retry: RetryPolicy,
}

/// What a consumer does with an event.
#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    /// Ok acknowledges; an error asks for redelivery after backoff.
    async fn handle(&self, delivery: &Delivery) -> anyhow::Result<()>;
    /// Called once the event failed `max_attempts` times. Ok acknowledges the event for good;
    /// an error keeps it on the bus to be tried again.
    async fn dead_letter(&self, delivery: &Delivery, error: &anyhow::Error) -> anyhow::Result<()>;
}

/// NATS's default `max_payload`.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1024 * 1024;

/// The bus: at-least-once delivery of published events to every durable consumer.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// `nats` or `inproc`, for logs and test output.
    fn kind(&self) -> &'static str;

    /// The largest event (see [`Envelope::wire_size`]) the bus accepts: the NATS server's
    /// `max_payload`; in process the NATS default, 1 MiB, so both backends refuse alike.
    fn max_event_bytes(&self) -> usize {
        DEFAULT_MAX_EVENT_BYTES
    }

    /// Publishes a batch. Returns once the bus holds every event durably (JetStream acked
    /// it) or, in process, once every subscriber handled or dead-lettered it. Publishing an
    /// event id twice is harmless: JetStream drops the duplicate, inboxes ignore it.
    async fn publish(&self, events: &[Envelope]) -> anyhow::Result<()>;

    /// Starts (or resumes) the durable consumer `spec.durable` of `spec.context`.
    async fn subscribe(
        &self,
        spec: SubscriptionSpec,
        handler: std::sync::Arc<dyn EventHandler>,
    ) -> anyhow::Result<Subscription>;
}

/// A running consumer. [`Subscription::stop`] lets the event in hand finish, then stops;
/// the durable keeps its place, so a later `subscribe` resumes where this one left off.
pub struct Subscription {
    pub(crate) stop: tokio::sync::watch::Sender<bool>,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

impl Subscription {
    /// Runs `consume` with a stop signal on its own task.
    pub(crate) fn spawn<F, Fut>(consume: F) -> Self
    where
        F: FnOnce(tokio::sync::watch::Receiver<bool>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        Self {
            stop,
            task: tokio::spawn(consume(stopped)),
        }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Runs the handler's dead-letter step; logs and reports whether it succeeded.
pub(crate) async fn dead_letter(
    handler: &dyn EventHandler,
    delivery: &Delivery,
    error: &anyhow::Error,
) -> bool {
    match handler.dead_letter(delivery, error).await {
        Ok(()) => {
            tracing::warn!(event_id = %delivery.envelope.id, event_type = %delivery.envelope.event_type,
                attempts = delivery.attempt, error = %error, "event dead-lettered");
            true
        }
        Err(e) => {
            tracing::error!(event_id = %delivery.envelope.id, error = %e, "dead-letter record failed; will retry");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            ..Default::default()
        };
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(2), Duration::from_millis(200));
        assert_eq!(p.backoff(3), Duration::from_millis(350));
        assert_eq!(p.backoff(40), Duration::from_millis(350));
    }
}
