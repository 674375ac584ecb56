//! Domain events: the [`Envelope`] (CloudEvents 1.0 attributes, protobuf payload) and one
//! publish/subscribe interface, [`EventBus`], with two adapters chosen by `EVENTS_URL`:
//! `nats://…` (JetStream) and `inproc:` (every service in one process).
//!
//! Delivery is at least once on both: a handler error is retried with backoff, and after the
//! configured attempts the event goes to the handler's dead-letter record. Exactly-once
//! *effects* come from the consumer's inbox (see the store crate).

mod bus;
mod envelope;
mod inproc;
mod nats;
pub mod trace;

use std::sync::Arc;

pub use bus::{
    DEFAULT_MAX_EVENT_BYTES, Delivery, EventBus, EventHandler, RetryPolicy, Subscription,
    SubscriptionSpec, Transient, is_transient,
};
pub use envelope::{Envelope, EnvelopeError};
pub use inproc::InprocBus;
pub use nats::{NatsBus, NatsCredentials};

/// Opens the bus named by an `EVENTS_URL`: `inproc:` or `nats://host:port`.
///
/// `prefix` is the first token of every subject and stream name (`connectability` in
/// production; tests use a unique one so runs never collide).
pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<Arc<dyn EventBus>> {
    connect_as(url, prefix, None).await
}

/// [`connect`] as a NATS user (each service has its own, with permissions for exactly its
/// subjects: deploy/nats/nats.conf).
pub async fn connect_as(
    url: &str,
    prefix: &str,
    credentials: Option<&NatsCredentials>,
) -> anyhow::Result<Arc<dyn EventBus>> {
    if url == "inproc:" || url == "inproc" {
        Ok(Arc::new(InprocBus::new()))
    } else if url.starts_with("nats://") || url.starts_with("tls://") {
        Ok(Arc::new(NatsBus::connect(url, prefix, credentials).await?))
    } else {
        anyhow::bail!("EVENTS_URL must be `inproc:` or `nats://host:port`, got `{url}`")
    }
}
