//! The event bus as a trust boundary (issue 16). NATS, started with the configuration the
//! project ships (deploy/nats/nats.conf), refuses anonymous clients and a service publishing
//! another context's events or reading another service's consumer; and a connection event
//! that connection-manager does not confirm copies and deletes nothing, even when it was
//! published with valid credentials.

use std::{sync::Arc, time::Duration};

use connectability_events::{Delivery, EventHandler, RetryPolicy, SubscriptionSpec, connect_as};
use connectability_proto::connections::v1::{self as cpb, ConnectionStatus, Feature};
use connectability_testkit::{Backend, eventually};
use connectability_tests::{chaos::infra::Nats, fanout::Fanout};

on_both_backends!(a_connection_event_connection_manager_does_not_confirm_changes_nothing);

/// Hands every delivered event's type to a channel.
struct Collect(tokio::sync::mpsc::UnboundedSender<String>);

#[async_trait::async_trait]
impl EventHandler for Collect {
    async fn handle(&self, delivery: &Delivery) -> anyhow::Result<()> {
        let _ = self.0.send(delivery.envelope.event_type.clone());
        Ok(())
    }
    async fn dead_letter(&self, _: &Delivery, _: &anyhow::Error) -> anyhow::Result<()> {
        Ok(())
    }
}

fn activation(id: &str, upstream: &str, downstream: &str) -> connectability_events::Envelope {
    connectability_platform::events::envelope(
        "connectability/connection-manager",
        format!("connections/{id}"),
        &cpb::ConnectionActivated {
            connection: Some(cpb::Connection {
                id: id.into(),
                upstream_project_id: upstream.into(),
                downstream_project_id: downstream.into(),
                downstream_company_id: "co_forger".into(),
                features: vec![Feature::Drawings as i32],
                status: ConnectionStatus::Active as i32,
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_refuses_anonymous_clients_and_foreign_subjects() {
    if std::process::Command::new("nats-server")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("CI").is_err(),
            "CI=true: nats-server is required"
        );
        eprintln!("nats-server not found: skipped");
        return;
    }
    let dir = std::env::temp_dir().join(format!("bus-trust-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let nats = Nats::start(&dir).unwrap();
    let url = nats.url();
    let prefix = "trust";

    // No credentials, or wrong ones: no connection at all.
    assert!(
        async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .connect(&url)
            .await
            .is_err(),
        "an anonymous client"
    );
    let wrong = connectability_events::NatsCredentials {
        user: "connection-manager".into(),
        password: "guessed".into(),
    };
    assert!(connect_as(&url, prefix, Some(&wrong)).await.is_err());

    let manager = connect_as(&url, prefix, Some(&nats.credentials("connection-manager")))
        .await
        .unwrap();
    let drawings = connect_as(&url, prefix, Some(&nats.credentials("drawings-sync")))
        .await
        .unwrap();
    // drawings-sync reads connection events through its own durable.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let subscription = drawings
        .subscribe(
            SubscriptionSpec {
                durable: "drawings-sync-connections".into(),
                context: "connections".into(),
                retry: RetryPolicy::default(),
            },
            Arc::new(Collect(tx.clone())),
        )
        .await
        .unwrap();
    // ...but not through another service's.
    assert!(
        drawings
            .subscribe(
                SubscriptionSpec {
                    durable: "notification-connections".into(),
                    context: "connections".into(),
                    retry: RetryPolicy::default(),
                },
                Arc::new(Collect(tx)),
            )
            .await
            .is_err(),
        "drawings-sync reading notification's consumer"
    );
    // A service publishing another context's event is refused by NATS.
    let forged = activation("con_forged", "prj_victim", "prj_forger");
    assert!(
        drawings
            .publish(std::slice::from_ref(&forged))
            .await
            .is_err(),
        "drawings-sync publishing a connections event"
    );
    // The owner publishes its own; the consumer receives it.
    let genuine = activation("con_genuine", "prj_up", "prj_down");
    manager
        .publish(std::slice::from_ref(&genuine))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("the genuine event arrives")
        .unwrap();
    assert!(got.ends_with("ConnectionActivated"), "{got}");
    // The refused publish never reached the stream: nothing else arrives.
    assert!(
        tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .is_err(),
        "only the genuine event"
    );
    subscription.stop().await;
    drop(nats);
    std::fs::remove_dir_all(dir).ok();
}

/// A `ConnectionActivated` naming a victim's upstream and a made-up connection, published on
/// the bus as connection-manager could (valid credentials): drawings-sync takes it off the
/// bus, asks connection-manager, and copies nothing. A forged `ConnectionUndone` of a real,
/// active connection deletes nothing.
async fn a_connection_event_connection_manager_does_not_confirm_changes_nothing(backend: Backend) {
    let mut world = Fanout::new(backend, 1, 64).await.unwrap();
    let ids = world.revisions(2).await.unwrap();
    world.publish(ids).await.unwrap();
    let db = world.db();
    let (_, real) = world.downstreams[0].clone();
    let count = |sql: &'static str, id: String| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .bind(id)
                .fetch_one(db.pool())
                .await
                .unwrap()
        }
    };
    const COPIES: &str = "SELECT COUNT(*) FROM revisions WHERE connection_id = $1";
    eventually(
        "the real connection's copies",
        Duration::from_secs(30),
        || async { (count(COPIES, real.clone()).await == 2).then_some(()) },
    )
    .await;

    let forged = activation("con_forged", &world.up, "prj_forger");
    let undo = connectability_platform::events::envelope(
        "connectability/connection-manager",
        format!("connections/{real}"),
        &cpb::ConnectionUndone {
            connection: Some(cpb::Connection {
                id: real.clone(),
                upstream_project_id: world.up.clone(),
                downstream_project_id: world.downstreams[0].0.clone(),
                downstream_company_id: world.sub.clone(),
                features: vec![Feature::Drawings as i32],
                status: ConnectionStatus::Undone as i32,
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    world
        .app
        .env
        .bus
        .publish(&[forged.clone(), undo.clone()])
        .await
        .unwrap();
    // Both are taken off the bus (the consumer's inbox records them)...
    const HANDLED: &str =
        "SELECT COUNT(*) FROM inbox WHERE consumer = 'drawings-sync-connections' AND event_id = $1";
    for e in [&forged, &undo] {
        eventually("the event handled", Duration::from_secs(30), || async {
            (count(HANDLED, e.id.clone()).await == 1).then_some(())
        })
        .await;
    }
    // ...and change nothing: no projection for the made-up connection, no copies for it,
    // the real one still has its copies and still syncs.
    const SYNCS: &str = "SELECT COUNT(*) FROM sync_connections WHERE connection_id = $1";
    assert_eq!(count(SYNCS, "con_forged".into()).await, 0);
    assert_eq!(count(COPIES, "con_forged".into()).await, 0);
    assert_eq!(count(COPIES, real.clone()).await, 2);
    let state: i64 = sqlx::query_scalar(
        "SELECT CAST(state AS BIGINT) FROM sync_connections WHERE connection_id = $1",
    )
    .bind(&real)
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_ne!(state, 3, "the real connection is not stopped");
    world.app.stop().await;
}
