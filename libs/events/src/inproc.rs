//! In-process adapter: every service in one process (`connectability dev`, most tests).
//!
//! Same guarantees as JetStream where it matters: `publish` returns only once every durable
//! consumer of the context handled (or dead-lettered) the event, so the outbox marks an
//! event sent only after it was handled. A durable keeps its queue while its subscription
//! is stopped, and a new `subscribe` with the same name resumes it. A durable sees events
//! published after it first subscribed, so subscribe before starting relays.

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::{
    Delivery, Envelope, EventBus, EventHandler, Subscription, SubscriptionSpec, bus::dead_letter,
};

struct Pending {
    envelope: Envelope,
    handled: oneshot::Sender<()>,
}

struct Durable {
    context: String,
    queue: mpsc::UnboundedSender<Pending>,
    receiver: Arc<Mutex<mpsc::UnboundedReceiver<Pending>>>,
}

#[derive(Default)]
pub struct InprocBus {
    durables: std::sync::Mutex<HashMap<String, Arc<Durable>>>,
}

impl InprocBus {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl EventBus for InprocBus {
    fn kind(&self) -> &'static str {
        "inproc"
    }

    async fn publish(&self, events: &[Envelope]) -> anyhow::Result<()> {
        let mut waits = Vec::new();
        for env in events {
            let ctx = env.context()?;
            let durables: Vec<Arc<Durable>> = self
                .durables
                .lock()
                .expect("durables lock")
                .values()
                .filter(|d| d.context == ctx)
                .cloned()
                .collect();
            for durable in durables {
                let (tx, rx) = oneshot::channel();
                durable
                    .queue
                    .send(Pending {
                        envelope: env.clone(),
                        handled: tx,
                    })
                    .map_err(|_| anyhow::anyhow!("in-process consumer queue closed"))?;
                waits.push(rx);
            }
        }
        for wait in waits {
            wait.await
                .map_err(|_| anyhow::anyhow!("in-process consumer stopped before handling"))?;
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        spec: SubscriptionSpec,
        handler: Arc<dyn EventHandler>,
    ) -> anyhow::Result<Subscription> {
        let durable = {
            let mut map = self.durables.lock().expect("durables lock");
            map.entry(format!("{}/{}", spec.context, spec.durable))
                .or_insert_with(|| {
                    let (tx, rx) = mpsc::unbounded_channel();
                    Arc::new(Durable {
                        context: spec.context.clone(),
                        queue: tx,
                        receiver: Arc::new(Mutex::new(rx)),
                    })
                })
                .clone()
        };
        Ok(Subscription::spawn(|stop| {
            consume(durable, spec, handler, stop)
        }))
    }
}

async fn consume(
    durable: Arc<Durable>,
    spec: SubscriptionSpec,
    handler: Arc<dyn EventHandler>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    // One live subscription per durable: a second waits here until the first stops.
    let mut receiver = tokio::select! {
        r = durable.receiver.clone().lock_owned() => r,
        _ = stop.changed() => return,
    };
    loop {
        let pending = tokio::select! {
            biased;
            _ = stop.changed() => return,
            p = receiver.recv() => match p { Some(p) => p, None => return },
        };
        let mut attempt = 1;
        loop {
            let delivery = Delivery {
                envelope: pending.envelope.clone(),
                attempt,
            };
            let wait = match handler.handle(&delivery).await {
                Ok(()) => {
                    let _ = pending.handled.send(());
                    break;
                }
                Err(error)
                    if attempt >= spec.retry.max_attempts && !crate::is_transient(&error) =>
                {
                    if dead_letter(handler.as_ref(), &delivery, &error).await {
                        let _ = pending.handled.send(());
                        break;
                    }
                    spec.retry.max_backoff
                }
                Err(error) => {
                    tracing::info!(durable = %spec.durable, event_id = %delivery.envelope.id, attempt, error = %error, "handler failed; will redeliver");
                    crate::bus::retry_after(&spec.retry, attempt, &error)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                // Dropping `pending` tells the publisher it was not handled; the relay
                // publishes it again later and the inbox makes that harmless.
                _ = stop.changed() => return,
            }
            attempt += 1;
        }
    }
}
