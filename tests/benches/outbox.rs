//! `make bench`: throughput of the event spine on each backend.
//!
//! 1. enqueue: events written to the outbox in transactions of 500 (many rows per statement);
//! 2. delivery: the relay publishes them and an inbox consumer applies each exactly once.
//!
//! Runs on sqlite+inproc always, and on postgres+nats when they answer.

use std::{sync::Arc, time::Instant};

use async_trait::async_trait;
use connectability_events::{Envelope, RetryPolicy, SubscriptionSpec};
use connectability_store::{
    ServiceMigrations, Tx,
    inbox::{self, InboxHandler},
    outbox::{self, Relay},
};
use connectability_testkit::{Backend, TestEnv};

const EVENTS: usize = 10_000;
const BATCH: usize = 500;

struct Effect;

#[async_trait]
impl InboxHandler for Effect {
    async fn handle(&self, tx: &mut Tx, event: &Envelope) -> anyhow::Result<()> {
        sqlx::query("INSERT INTO effects (consumer, event_id) VALUES ('bench', $1)")
            .bind(&event.id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

fn migrations() -> ServiceMigrations {
    ServiceMigrations {
        postgres: sqlx::migrate!("migrations/postgres"),
        sqlite: sqlx::migrate!("migrations/sqlite"),
        libraries: Vec::new(),
    }
}

async fn run(backend: Backend) -> anyhow::Result<()> {
    let name = backend.name();
    let env = TestEnv::new(backend).await;
    let producer = env.migrated_db("bench_producer", &migrations()).await;
    let consumer = env.migrated_db("bench_consumer", &migrations()).await;
    let sub = inbox::subscribe(
        env.bus.as_ref(),
        consumer.clone(),
        SubscriptionSpec {
            durable: "bench".into(),
            context: "bench".into(),
            retry: RetryPolicy::default(),
        },
        Arc::new(Effect),
    )
    .await?;

    let events: Vec<Envelope> = (0..EVENTS)
        .map(|i| {
            Envelope::new(
                "connectability/bench",
                "connectability.bench.v1.Tick",
                format!("ticks/{i}"),
                vec![0u8; 256],
            )
        })
        .collect();
    let start = Instant::now();
    for chunk in events.chunks(BATCH) {
        let mut tx = producer.begin().await?;
        outbox::enqueue(&mut tx, chunk).await?;
        tx.commit().await?;
    }
    let enqueue = start.elapsed();

    let start = Instant::now();
    let relay = Relay::new(producer.clone(), env.bus.clone());
    let relaying = tokio::spawn(async move {
        while relay.run_once().await? > 0 {}
        anyhow::Ok(())
    });
    loop {
        let done: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM effects")
            .fetch_one(consumer.pool())
            .await?;
        if done as usize >= EVENTS {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let delivery = start.elapsed();
    relaying.await??;
    sub.stop().await;

    let rate = |d: std::time::Duration| EVENTS as f64 / d.as_secs_f64();
    println!(
        "{name:>14}: outbox enqueue {EVENTS} events in {:>6.3}s ({:>8.0}/s, {BATCH} per transaction); \
         relay + inbox delivery in {:>6.3}s ({:>7.0}/s, one transaction per event)",
        enqueue.as_secs_f64(),
        rate(enqueue),
        delivery.as_secs_f64(),
        rate(delivery)
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    run(Backend::Embedded).await?;
    match Backend::production().await {
        Some(b) => run(b).await?,
        None => println!("postgres+nats: unreachable, not measured"),
    }
    Ok(())
}
