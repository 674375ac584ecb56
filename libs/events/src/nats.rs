//! JetStream adapter: a stream per context (`<PREFIX>_<CONTEXT>`, subjects
//! `<prefix>.<context>.>`), durable pull consumers with explicit ack, bounded redelivery with
//! backoff (NAK with delay), then the handler's dead-letter step.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use async_nats::jetstream::{self, AckKind, consumer::pull, stream};
use async_trait::async_trait;
use futures::StreamExt;

use crate::{
    Delivery, Envelope, EventBus, EventHandler, Subscription, SubscriptionSpec, bus::dead_letter,
};

const FETCH_BATCH: usize = 64;
const FETCH_EXPIRES: Duration = Duration::from_millis(500);

pub struct NatsBus {
    js: jetstream::Context,
    prefix: String,
    /// The server's `max_payload`, as it said when we connected.
    max_payload: usize,
}

/// A NATS user and its password.
#[derive(Clone)]
pub struct NatsCredentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for NatsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "NatsCredentials {{ user: {:?}, password: <redacted> }}",
            self.user
        )
    }
}

impl NatsBus {
    /// Connects, as `credentials`' user when given. A user's replies arrive under its own
    /// inbox prefix (`_INBOX_<user>`), the only subjects its permissions let it subscribe to.
    pub async fn connect(
        url: &str,
        prefix: &str,
        credentials: Option<&NatsCredentials>,
    ) -> anyhow::Result<Self> {
        let mut options =
            async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(5));
        if let Some(c) = credentials {
            options = options
                .user_and_password(c.user.clone(), c.password.clone())
                .custom_inbox_prefix(format!("_INBOX_{}", c.user))
                .name(&c.user);
        }
        let client = options
            .connect(url)
            .await
            .with_context(|| format!("connecting to NATS at {url}"))?;
        let max_payload = match client.server_info().max_payload {
            0 => crate::bus::DEFAULT_MAX_EVENT_BYTES,
            n => n,
        };
        Ok(Self {
            js: jetstream::new(client),
            prefix: prefix.to_string(),
            max_payload,
        })
    }

    /// `<PREFIX>_<CONTEXT>`: stream names may not contain dots.
    pub fn stream_name(&self, context: &str) -> String {
        format!("{}_{}", self.prefix, context)
            .replace(['.', '-'], "_")
            .to_uppercase()
    }

    fn subject(&self, env: &Envelope) -> anyhow::Result<String> {
        // `connectability.directory.v1.X` -> `<prefix>.directory.v1.X`
        let rest = env
            .event_type
            .strip_prefix("connectability.")
            .context("event type must start with `connectability.`")?;
        Ok(format!("{}.{}", self.prefix, rest))
    }

    async fn ensure_stream(&self, context: &str) -> anyhow::Result<stream::Stream> {
        let config = stream::Config {
            name: self.stream_name(context),
            subjects: vec![format!("{}.{}.>", self.prefix, context)],
            storage: stream::StorageType::File,
            // JetStream drops a second publish of the same Nats-Msg-Id within this window.
            duplicate_window: Duration::from_secs(120),
            max_age: Duration::from_secs(7 * 24 * 3600),
            ..Default::default()
        };
        self.js
            .get_or_create_stream(config)
            .await
            .map_err(|e| anyhow::anyhow!("creating stream for `{context}`: {e}"))
    }
}

#[async_trait]
impl EventBus for NatsBus {
    fn kind(&self) -> &'static str {
        "nats"
    }

    fn max_event_bytes(&self) -> usize {
        self.max_payload
    }

    async fn publish(&self, events: &[Envelope]) -> anyhow::Result<()> {
        let mut contexts: Vec<&str> = events
            .iter()
            .map(|e| e.context())
            .collect::<Result<_, _>>()?;
        contexts.sort_unstable();
        contexts.dedup();
        for ctx in contexts {
            self.ensure_stream(ctx).await?;
        }
        // Send every publish first, then await the acks: one round trip per batch, not per event.
        let mut acks = Vec::with_capacity(events.len());
        for env in events {
            let mut headers = async_nats::HeaderMap::new();
            for (k, v) in env.headers() {
                headers.insert(k, v.as_str());
            }
            let msg = jetstream::message::PublishMessage::build()
                .payload(env.data.clone().into())
                .headers(headers)
                .message_id(&env.id);
            let ack = self
                .js
                .send_publish(self.subject(env)?, msg)
                .await
                .map_err(|e| anyhow::anyhow!("publishing {}: {e}", env.id))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await.map_err(|e| anyhow::anyhow!("publish ack: {e}"))?;
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        spec: SubscriptionSpec,
        handler: Arc<dyn EventHandler>,
    ) -> anyhow::Result<Subscription> {
        let stream = self.ensure_stream(&spec.context).await?;
        let consumer: jetstream::consumer::Consumer<pull::Config> = stream
            .get_or_create_consumer(
                &spec.durable,
                pull::Config {
                    durable_name: Some(spec.durable.clone()),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: spec.retry.ack_wait,
                    // Unlimited at the server: the client counts attempts and dead-letters.
                    max_deliver: -1,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("creating consumer `{}`: {e}", spec.durable))?;
        Ok(Subscription::spawn(|stop| {
            consume(consumer, spec, handler, stop)
        }))
    }
}

async fn consume(
    consumer: jetstream::consumer::Consumer<pull::Config>,
    spec: SubscriptionSpec,
    handler: Arc<dyn EventHandler>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        let batch = consumer
            .fetch()
            .max_messages(FETCH_BATCH)
            .expires(FETCH_EXPIRES)
            .messages()
            .await;
        let mut batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(durable = %spec.durable, error = %e, "fetch failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
        };
        // Messages of the batch received and not yet answered, oldest first. They are handled
        // one at a time, so while one is handled the others wait: every third of the ack
        // wait each of them is told "in progress", so none is redelivered for waiting, and a
        // delivery count means an attempt.
        let held: std::sync::Mutex<std::collections::VecDeque<jetstream::Message>> =
            Default::default();
        let (queue, mut received) = tokio::sync::mpsc::unbounded_channel();
        let reader = async {
            while let Some(next) = batch.next().await {
                match next {
                    Ok(m) => {
                        held.lock().expect("held lock").push_back(m.clone());
                        let _ = queue.send(m);
                    }
                    Err(e) => {
                        tracing::warn!(durable = %spec.durable, error = %e, "bad message in batch")
                    }
                }
            }
            drop(queue);
        };
        let handling = async {
            while let Some(msg) = received.recv().await {
                if *stop.borrow() {
                    // Hand back what we fetched so the next consumer instance gets it at once.
                    let _ = msg.ack_with(AckKind::Nak(None)).await;
                } else {
                    handle_message(&spec, handler.as_ref(), msg).await;
                }
                held.lock().expect("held lock").pop_front();
            }
        };
        let heartbeat = async {
            loop {
                tokio::time::sleep(spec.retry.ack_wait / 3).await;
                let waiting: Vec<jetstream::Message> =
                    held.lock().expect("held lock").iter().cloned().collect();
                for m in waiting {
                    // A message answered meanwhile ignores it.
                    let _ = m.ack_with(AckKind::Progress).await;
                }
            }
        };
        tokio::select! {
            _ = async { tokio::join!(reader, handling) } => {}
            _ = heartbeat => {}
        }
    }
}

async fn handle_message(
    spec: &SubscriptionSpec,
    handler: &dyn EventHandler,
    msg: jetstream::Message,
) {
    let attempt = msg.info().map(|i| i.delivered.max(1) as u32).unwrap_or(1);
    let envelope = match msg.headers.as_ref() {
        Some(h) => Envelope::from_headers(|k| h.get(k).map(|v| v.as_str()), msg.payload.to_vec()),
        None => Err(crate::EnvelopeError::MissingHeader("ce-id")),
    };
    let envelope = match envelope {
        Ok(e) => e,
        Err(e) => {
            // Not ours to understand; retrying cannot help.
            tracing::error!(durable = %spec.durable, subject = %msg.subject, error = %e, "malformed event terminated");
            let _ = msg.ack_with(AckKind::Term).await;
            return;
        }
    };
    let delivery = Delivery { envelope, attempt };
    let ack = match handler.handle(&delivery).await {
        Ok(()) => AckKind::Ack,
        Err(error) if attempt >= spec.retry.max_attempts && !crate::is_transient(&error) => {
            if dead_letter(handler, &delivery, &error).await {
                AckKind::Ack
            } else {
                AckKind::Nak(Some(spec.retry.max_backoff))
            }
        }
        Err(error) => {
            tracing::info!(durable = %spec.durable, event_id = %delivery.envelope.id, attempt, error = %error, "handler failed; will redeliver");
            AckKind::Nak(Some(crate::bus::retry_after(&spec.retry, attempt, &error)))
        }
    };
    let result = if matches!(ack, AckKind::Ack) {
        msg.double_ack().await
    } else {
        msg.ack_with(ack).await
    };
    if let Err(e) = result {
        // The event comes back after ack_wait; the inbox makes the repeat harmless.
        tracing::warn!(durable = %spec.durable, error = %e, "ack failed");
    }
}
