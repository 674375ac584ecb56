//! Store + events conformance: the same guarantees on SQLite/inproc and Postgres/NATS.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use connectability_events::{Envelope, RetryPolicy, SubscriptionSpec};
use connectability_platform::server::wait_for;
use connectability_store::{
    Db, ServiceMigrations, Tx,
    inbox::{self, Applied, InboxConsumer, InboxHandler},
    outbox::{self, Relay},
};
use connectability_testkit::{Backend, TestEnv, eventually};

const CONTEXT: &str = "conformance";
const WAIT: Duration = Duration::from_secs(20);

fn migrations() -> ServiceMigrations {
    ServiceMigrations {
        postgres: sqlx::migrate!("migrations/postgres"),
        sqlite: sqlx::migrate!("migrations/sqlite"),
        libraries: Vec::new(),
    }
}

fn event(n: usize) -> Envelope {
    Envelope::new(
        "connectability/conformance",
        "connectability.conformance.v1.Ping",
        format!("pings/{n}"),
        format!("ping {n}").into_bytes(),
    )
}

fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        ack_wait: Duration::from_secs(5),
    }
}

/// Records each applied event as a row in `effects`; can be told to fail.
#[derive(Default)]
struct Recorder {
    consumer: String,
    /// Fail this many deliveries of each event before succeeding.
    failures_before_success: u32,
    /// Answer this many deliveries with a dependency's UNAVAILABLE before succeeding.
    unavailable_before_success: u32,
    always_fail: AtomicBool,
    delay: Duration,
    attempts: Mutex<HashMap<String, u32>>,
}

impl Recorder {
    fn new(consumer: &str) -> Self {
        Self {
            consumer: consumer.into(),
            ..Default::default()
        }
    }

    fn attempts(&self, event_id: &str) -> u32 {
        self.attempts
            .lock()
            .unwrap()
            .get(event_id)
            .copied()
            .unwrap_or(0)
    }
}

#[async_trait]
impl InboxHandler for Recorder {
    async fn handle(&self, tx: &mut Tx, event: &Envelope) -> anyhow::Result<()> {
        let attempt = {
            let mut map = self.attempts.lock().unwrap();
            let n = map.entry(event.id.clone()).or_default();
            *n += 1;
            *n
        };
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        anyhow::ensure!(!self.always_fail.load(Ordering::SeqCst), "told to fail");
        if attempt <= self.unavailable_before_success {
            return Err(tonic::Status::unavailable("the directory is down").into());
        }
        anyhow::ensure!(
            attempt > self.failures_before_success,
            "failing attempt {attempt}"
        );
        sqlx::query("INSERT INTO effects (consumer, event_id) VALUES ($1, $2)")
            .bind(&self.consumer)
            .bind(&event.id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

async fn effects(db: &Db, event_id: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM effects WHERE event_id = $1")
        .bind(event_id)
        .fetch_one(db.pool())
        .await
        .unwrap()
}

async fn total_effects(db: &Db) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM effects")
        .fetch_one(db.pool())
        .await
        .unwrap()
}

async fn commit_events(db: &Db, events: &[Envelope]) {
    let mut tx = db.begin().await.unwrap();
    outbox::enqueue(&mut tx, events).await.unwrap();
    tx.commit().await.unwrap();
}

fn spec(durable: &str, retry: RetryPolicy) -> SubscriptionSpec {
    SubscriptionSpec {
        durable: durable.into(),
        context: CONTEXT.into(),
        retry,
    }
}

async fn committed_event_reaches_every_durable_subscriber(backend: Backend) {
    let env = TestEnv::new(backend).await;
    let producer = env.migrated_db("producer", &migrations()).await;
    let mut consumers = Vec::new();
    for name in ["billing", "audit"] {
        let db = env.migrated_db(name, &migrations()).await;
        let sub = inbox::subscribe(
            env.bus.as_ref(),
            db.clone(),
            spec(name, fast_retry(5)),
            Arc::new(Recorder::new(name)),
        )
        .await
        .unwrap();
        consumers.push((db, sub));
    }
    let e = event(1);
    commit_events(&producer, std::slice::from_ref(&e)).await;
    let relay = Relay::new(producer.clone(), env.bus.clone());
    assert_eq!(relay.run_once().await.unwrap(), 1);
    assert_eq!(outbox::backlog(&producer).await.unwrap().0, 0);
    for (db, _) in &consumers {
        eventually("the event at each subscriber", WAIT, || async {
            (effects(db, &e.id).await == 1).then_some(())
        })
        .await;
    }
    for (_, sub) in consumers {
        sub.stop().await;
    }
}

async fn rolled_back_event_is_never_delivered(backend: Backend) {
    let env = TestEnv::new(backend).await;
    let producer = env.migrated_db("producer", &migrations()).await;
    let consumer = env.migrated_db("consumer", &migrations()).await;
    let sub = inbox::subscribe(
        env.bus.as_ref(),
        consumer.clone(),
        spec("c", fast_retry(5)),
        Arc::new(Recorder::new("c")),
    )
    .await
    .unwrap();
    let rolled_back = event(1);
    let mut tx = producer.begin().await.unwrap();
    outbox::enqueue(&mut tx, std::slice::from_ref(&rolled_back))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    // A committed marker after it: once the marker arrives, anything before it would have too.
    let marker = event(2);
    commit_events(&producer, std::slice::from_ref(&marker)).await;
    let relay = Relay::new(producer.clone(), env.bus.clone());
    assert_eq!(
        relay.run_once().await.unwrap(),
        1,
        "only the committed event is in the outbox"
    );
    eventually("the marker", WAIT, || async {
        (effects(&consumer, &marker.id).await == 1).then_some(())
    })
    .await;
    assert_eq!(effects(&consumer, &rolled_back.id).await, 0);
    assert_eq!(total_effects(&consumer).await, 1);
    sub.stop().await;
}

async fn relay_dying_after_publish_causes_no_second_effect(backend: Backend) {
    let env = TestEnv::new(backend).await;
    let producer = env.migrated_db("producer", &migrations()).await;
    let consumer = env.migrated_db("consumer", &migrations()).await;
    let recorder = Arc::new(Recorder::new("c"));
    let sub = inbox::subscribe(
        env.bus.as_ref(),
        consumer.clone(),
        spec("c", fast_retry(5)),
        recorder.clone(),
    )
    .await
    .unwrap();
    let e = event(1);
    commit_events(&producer, std::slice::from_ref(&e)).await;
    // The relay publishes and dies before marking the batch sent.
    let pending = outbox::fetch_unsent(&producer, 10).await.unwrap();
    let batch: Vec<Envelope> = pending.iter().map(|p| p.envelope.clone()).collect();
    env.bus.publish(&batch).await.unwrap();
    assert_eq!(
        outbox::backlog(&producer).await.unwrap().0,
        1,
        "still unsent after the crash"
    );
    // A new relay starts and publishes it again.
    let relay = Relay::new(producer.clone(), env.bus.clone());
    assert_eq!(relay.run_once().await.unwrap(), 1);
    assert_eq!(outbox::backlog(&producer).await.unwrap().0, 0);
    let marker = event(2);
    commit_events(&producer, std::slice::from_ref(&marker)).await;
    relay.run_once().await.unwrap();
    eventually("the marker", WAIT, || async {
        (effects(&consumer, &marker.id).await == 1).then_some(())
    })
    .await;
    assert_eq!(
        effects(&consumer, &e.id).await,
        1,
        "one effect despite two publishes"
    );
    // However the repeat arrives, the inbox refuses a second effect.
    let direct = InboxConsumer::new(consumer.clone(), "c", recorder);
    assert_eq!(direct.apply(&e).await.unwrap(), Applied::AlreadyHandled);
    assert_eq!(effects(&consumer, &e.id).await, 1);
    sub.stop().await;
}

/// One event through a consumer that fails as `recorder` says, with `max_attempts`: waits
/// until it is applied, then returns how many attempts that took and how many dead letters
/// the consumer holds.
async fn applied_after_failures(
    backend: Backend,
    recorder: Recorder,
    max_attempts: u32,
) -> (u32, usize) {
    let env = TestEnv::new(backend).await;
    let producer = env.migrated_db("producer", &migrations()).await;
    let consumer = env.migrated_db("consumer", &migrations()).await;
    let recorder = Arc::new(recorder);
    let sub = inbox::subscribe(
        env.bus.as_ref(),
        consumer.clone(),
        spec("c", fast_retry(max_attempts)),
        recorder.clone(),
    )
    .await
    .unwrap();
    let e = event(1);
    commit_events(&producer, std::slice::from_ref(&e)).await;
    let relay = Relay::new(producer.clone(), env.bus.clone());
    let relaying = tokio::spawn(async move { relay.run_once().await });
    eventually("the event applied", WAIT, || async {
        (effects(&consumer, &e.id).await == 1).then_some(())
    })
    .await;
    relaying.await.unwrap().unwrap();
    let dead = inbox::list_dead_letters(&consumer, None)
        .await
        .unwrap()
        .len();
    sub.stop().await;
    (recorder.attempts(&e.id), dead)
}

async fn handler_error_is_redelivered_then_succeeds(backend: Backend) {
    let recorder = Recorder {
        failures_before_success: 2,
        ..Recorder::new("c")
    };
    let (attempts, dead) = applied_after_failures(backend, recorder, 5).await;
    assert_eq!(attempts, 3);
    assert_eq!(dead, 0);
}

/// Found by the fault suite: the directory down for longer than the retry budget turned
/// notification events into dead letters. A dependency's UNAVAILABLE never counts toward
/// `max_attempts`: the event is retried until it goes through.
async fn a_dependency_outage_longer_than_the_retry_budget_leaves_no_dead_letter(backend: Backend) {
    let recorder = Recorder {
        unavailable_before_success: 6,
        ..Recorder::new("c")
    };
    let (attempts, dead) = applied_after_failures(backend, recorder, 3).await;
    assert_eq!(attempts, 7, "six refusals, then the effect");
    assert_eq!(dead, 0);
}

async fn failing_event_is_dead_lettered_then_replayed(backend: Backend) {
    let env = TestEnv::new(backend).await;
    let producer = env.migrated_db("producer", &migrations()).await;
    let consumer = env.migrated_db("consumer", &migrations()).await;
    let recorder = Arc::new(Recorder::new("c"));
    recorder.always_fail.store(true, Ordering::SeqCst);
    let sub = inbox::subscribe(
        env.bus.as_ref(),
        consumer.clone(),
        spec("c", fast_retry(3)),
        recorder.clone(),
    )
    .await
    .unwrap();
    let e = event(1);
    commit_events(&producer, std::slice::from_ref(&e)).await;
    let relay = Relay::new(producer.clone(), env.bus.clone());
    let relaying = tokio::spawn(async move { relay.run_once().await });
    let letters = eventually("a dead letter", WAIT, || async {
        let letters = inbox::list_dead_letters(&consumer, Some("c"))
            .await
            .unwrap();
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    relaying.await.unwrap().unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].envelope, e);
    assert_eq!(letters[0].attempts, 3);
    assert_eq!(
        recorder.attempts(&e.id),
        3,
        "no delivery after the last attempt"
    );
    assert!(letters[0].error.contains("told to fail"));
    assert_eq!(effects(&consumer, &e.id).await, 0);

    // The operator fixes the cause and asks for a replay; the running consumer applies it.
    recorder.always_fail.store(false, Ordering::SeqCst);
    assert!(
        !inbox::request_replay(&consumer, "no-such-letter")
            .await
            .unwrap()
    );
    assert!(
        inbox::request_replay(&consumer, &letters[0].id)
            .await
            .unwrap()
    );
    eventually("the replayed effect", WAIT, || async {
        (effects(&consumer, &e.id).await == 1).then_some(())
    })
    .await;
    eventually("the dead letter gone", WAIT, || async {
        inbox::list_dead_letters(&consumer, None)
            .await
            .unwrap()
            .is_empty()
            .then_some(())
    })
    .await;
    // Replaying again changes nothing: the inbox has the event.
    let again = InboxConsumer::new(consumer.clone(), "c", recorder.clone());
    assert_eq!(again.apply(&e).await.unwrap(), Applied::AlreadyHandled);
    assert_eq!(effects(&consumer, &e.id).await, 1);
    sub.stop().await;
}

async fn consumer_restarted_mid_stream_loses_nothing(backend: Backend) {
    const EVENTS: usize = 30;
    let env = TestEnv::new(backend).await;
    let producer = env.migrated_db("producer", &migrations()).await;
    let consumer = env.migrated_db("consumer", &migrations()).await;
    let recorder = Arc::new(Recorder {
        delay: Duration::from_millis(20),
        ..Recorder::new("c")
    });
    let first = inbox::subscribe(
        env.bus.as_ref(),
        consumer.clone(),
        spec("c", fast_retry(5)),
        recorder.clone(),
    )
    .await
    .unwrap();
    let events: Vec<Envelope> = (0..EVENTS).map(event).collect();
    commit_events(&producer, &events).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let relay = tokio::spawn(Relay::new(producer.clone(), env.bus.clone()).run(wait_for(stopped)));
    eventually("some events handled", WAIT, || async {
        (total_effects(&consumer).await >= 5).then_some(())
    })
    .await;
    first.stop().await;
    let at_stop = total_effects(&consumer).await;
    assert!(
        at_stop < EVENTS as i64,
        "stopped mid-stream ({at_stop} of {EVENTS})"
    );
    let second = inbox::subscribe(
        env.bus.as_ref(),
        consumer.clone(),
        spec("c", fast_retry(5)),
        recorder.clone(),
    )
    .await
    .unwrap();
    eventually("every event after the restart", WAIT, || async {
        (total_effects(&consumer).await >= EVENTS as i64).then_some(())
    })
    .await;
    for e in &events {
        assert_eq!(
            effects(&consumer, &e.id).await,
            1,
            "event {} exactly once",
            e.subject
        );
    }
    eventually("outbox drained", WAIT, || async {
        (outbox::backlog(&producer).await.unwrap().0 == 0).then_some(())
    })
    .await;
    let _ = stop.send(true);
    relay.await.unwrap();
    second.stop().await;
}

/// Issue 18: no event stops the outbox. `enqueue` refuses an event over the limit (the
/// change rolls back); a row the bus still refuses is parked in `dead_letters` while the rows
/// before and after it are delivered, and an operator's replay puts it back in the outbox.
async fn an_event_the_bus_refuses_is_parked_and_the_rest_flow_on(backend: Backend) {
    let env = TestEnv::new(backend).await;
    let producer = env.migrated_db("producer", &migrations()).await;
    let consumer = env.migrated_db("consumer", &migrations()).await;
    let sub = inbox::subscribe(
        env.bus.as_ref(),
        consumer.clone(),
        spec("c", fast_retry(3)),
        Arc::new(Recorder::new("c")),
    )
    .await
    .unwrap();
    let sized = |n: usize, bytes: usize| {
        Envelope::new(
            "connectability/conformance",
            "connectability.conformance.v1.Ping",
            format!("pings/{n}"),
            vec![b'x'; bytes],
        )
    };

    let mut tx = producer.begin().await.unwrap();
    let refused = outbox::enqueue(&mut tx, &[sized(0, outbox::MAX_EVENT_BYTES)])
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("event limit"),
        "a clear error: {refused}"
    );
    tx.rollback().await.unwrap();
    assert_eq!(outbox::backlog(&producer).await.unwrap().0, 0);

    // A row past enqueue's check (an older version wrote it, or the bus's max_payload is
    // smaller than ours): 1.5 MiB, over any bus's limit here.
    let (before, after) = (event(1), event(2));
    commit_events(&producer, std::slice::from_ref(&before)).await;
    let huge = sized(9, 1536 * 1024);
    sqlx::query(
        "INSERT INTO outbox (event_id, event_type, source, subject, time_ms, traceparent, data)
         VALUES ($1, $2, $3, $4, $5, NULL, $6)",
    )
    .bind(&huge.id)
    .bind(&huge.event_type)
    .bind(&huge.source)
    .bind(&huge.subject)
    .bind(huge.time_ms)
    .bind(huge.data.clone())
    .execute(producer.pool())
    .await
    .unwrap();
    commit_events(&producer, std::slice::from_ref(&after)).await;

    let relay = Relay::new(producer.clone(), env.bus.clone());
    assert_eq!(
        relay.run_once().await.unwrap(),
        3,
        "one pass moves all three"
    );
    assert_eq!(outbox::backlog(&producer).await.unwrap().0, 0);
    for e in [&before, &after] {
        eventually("the events around it delivered", WAIT, || async {
            (effects(&consumer, &e.id).await == 1).then_some(())
        })
        .await;
    }
    let parked = inbox::list_dead_letters(&producer, Some(outbox::PARKED))
        .await
        .unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].envelope.id, huge.id);
    assert!(
        parked[0].error.contains("max_payload"),
        "{}",
        parked[0].error
    );
    assert_eq!(effects(&consumer, &huge.id).await, 0);

    // Replayed, it is back in the outbox; this bus still refuses it, so it is parked again.
    assert!(
        inbox::request_replay(&producer, &parked[0].id)
            .await
            .unwrap()
    );
    relay.replay_parked().await.unwrap();
    assert_eq!(outbox::backlog(&producer).await.unwrap().0, 1);
    assert!(
        inbox::list_dead_letters(&producer, Some(outbox::PARKED))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(relay.run_once().await.unwrap(), 1);
    let again = inbox::list_dead_letters(&producer, Some(outbox::PARKED))
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].envelope.id, huge.id);
    assert_eq!(outbox::backlog(&producer).await.unwrap().0, 0);
    sub.stop().await;
}

/// Issue 18: a consumer handles a fetched batch one event at a time; events waiting their turn
/// (and the one being handled) are kept "in progress", so slow handling — here five events
/// of 600 ms against a 1 s ack wait, with a second, idle replica ready to take any event
/// whose ack wait lapsed — redelivers nothing and a delivery count is an attempt.
async fn slow_handling_is_kept_in_progress_and_never_redelivered(backend: Backend) {
    let env = TestEnv::new(backend).await;
    let producer = env.migrated_db("producer", &migrations()).await;
    let consumer = env.migrated_db("consumer", &migrations()).await;
    let recorder = Arc::new(Recorder {
        consumer: "slow".into(),
        delay: Duration::from_millis(600),
        ..Default::default()
    });
    let retry = RetryPolicy {
        ack_wait: Duration::from_secs(1),
        ..fast_retry(5)
    };
    // Two replicas of the consumer: an idle one would take over whatever the busy one let
    // lapse.
    let mut subs = Vec::new();
    for _ in 0..2 {
        subs.push(
            inbox::subscribe(
                env.bus.as_ref(),
                consumer.clone(),
                spec("slow", retry.clone()),
                recorder.clone(),
            )
            .await
            .unwrap(),
        );
    }
    let events: Vec<Envelope> = (0..5).map(event).collect();
    commit_events(&producer, &events).await;
    let relay = Relay::new(producer.clone(), env.bus.clone());
    let relaying = tokio::spawn(async move { relay.run_once().await });
    eventually("every slow event applied", WAIT, || async {
        (total_effects(&consumer).await == 5).then_some(())
    })
    .await;
    relaying.await.unwrap().unwrap();
    for e in &events {
        assert_eq!(recorder.attempts(&e.id), 1);
    }
    assert_eq!(
        connectability_store::metrics::REDELIVERIES
            .with_label_values(&["slow"])
            .get(),
        0,
        "nothing was redelivered for waiting"
    );
    for sub in subs {
        sub.stop().await;
    }
}

/// Issue 18: of a service's replicas, one relays at a time. While one relayer holds the
/// lease another one running beside it publishes nothing; when the holder stops (releasing
/// the lease) the other takes over at once, and stopping releases it for the next.
async fn one_relayer_holds_the_lease_and_another_takes_over(backend: Backend) {
    let env = TestEnv::new(backend).await;
    let producer = env.migrated_db("producer", &migrations()).await;
    let consumer = env.migrated_db("consumer", &migrations()).await;
    let sub = inbox::subscribe(
        env.bus.as_ref(),
        consumer.clone(),
        spec("c", fast_retry(3)),
        Arc::new(Recorder::new("c")),
    )
    .await
    .unwrap();
    let holder = Relay::new(producer.clone(), env.bus.clone());
    assert!(holder.try_lease().await.unwrap());
    assert!(holder.try_lease().await.unwrap(), "renewed by its holder");
    let standby = Relay::new(producer.clone(), env.bus.clone());
    assert!(!standby.try_lease().await.unwrap(), "held by another");

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let standby = tokio::spawn(standby.run(wait_for(stopped)));
    let e = event(1);
    commit_events(&producer, std::slice::from_ref(&e)).await;
    // For a while (well under the lease), nothing is published by the standby.
    let watch_until = std::time::Instant::now() + Duration::from_millis(1500);
    while std::time::Instant::now() < watch_until {
        assert_eq!(outbox::backlog(&producer).await.unwrap().0, 1);
        assert!(holder.try_lease().await.unwrap(), "still the holder");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    holder.release_lease().await.unwrap();
    eventually("the standby took over and relayed", WAIT, || async {
        (effects(&consumer, &e.id).await == 1).then_some(())
    })
    .await;
    assert!(!holder.try_lease().await.unwrap(), "now the standby's");
    let _ = stop.send(true);
    standby.await.unwrap();
    assert!(
        Relay::new(producer.clone(), env.bus.clone())
            .try_lease()
            .await
            .unwrap(),
        "released on stop"
    );
    sub.stop().await;
}

on_both_backends!(
    one_relayer_holds_the_lease_and_another_takes_over,
    slow_handling_is_kept_in_progress_and_never_redelivered,
    an_event_the_bus_refuses_is_parked_and_the_rest_flow_on,
    committed_event_reaches_every_durable_subscriber,
    rolled_back_event_is_never_delivered,
    relay_dying_after_publish_causes_no_second_effect,
    handler_error_is_redelivered_then_succeeds,
    a_dependency_outage_longer_than_the_retry_budget_leaves_no_dead_letter,
    failing_event_is_dead_lettered_then_replayed,
    consumer_restarted_mid_stream_loses_nothing,
);
