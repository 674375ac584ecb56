//! The sync engine (libs/sync) across many connections at once: one change queues one work
//! item per connection, and a copy worker takes the items of one change together, reconciles
//! them in one transaction and counts each connection once.

use std::time::Duration;

use connectability_proto::{
    connections::v1 as cpb,
    drawings::v1::{self as dpb, Drawing},
};
use connectability_testkit::{Backend, eventually};
use connectability_tests::fanout::Fanout;

on_both_backends!(
    one_change_to_many_connections_is_copied_once_to_each,
    a_late_activation_never_restarts_an_undone_connection,
);

/// Six downstreams of one upstream, one of them disconnected; two publishes (three new
/// sheets, then a new revision of one). Every connected downstream gets each revision exactly
/// once with its origin, the disconnected one gets nothing new, each connection's counters
/// count its own copies, and the work queue drains.
async fn one_change_to_many_connections_is_copied_once_to_each(backend: Backend) {
    let mut world = Fanout::new(backend, 6, 64).await.unwrap();
    let raj = world.app.drawings(&world.app.user_token(&world.raj));
    let status = |id: String| {
        let mut client = raj.clone();
        async move {
            client
                .get_sync_status(dpb::GetSyncStatusRequest { connection_id: id })
                .await
                .ok()
                .map(|s| s.into_inner())
        }
    };
    let list = |project: String| {
        let mut client = raj.clone();
        async move {
            client
                .list_drawings(dpb::ListDrawingsRequest {
                    project_id: project,
                    page_size: 100,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .drawings
        }
    };
    let (stopped_down, stopped) = world.downstreams.pop().unwrap();
    world
        .app
        .connections(&world.app.user_token(&world.raj))
        .disconnect_connection(cpb::DisconnectConnectionRequest {
            id: stopped.clone(),
            reason: "trade finished".into(),
        })
        .await
        .unwrap();
    eventually(
        "the disconnection reaches drawings-sync",
        Duration::from_secs(30),
        || async {
            status(stopped.clone())
                .await
                .filter(|s| s.state == dpb::SyncState::Stopped as i32)
        },
    )
    .await;

    let first = world.revisions(3).await.unwrap();
    world.publish(first).await.unwrap();
    let mut gina = world.app.drawings(&world.app.user_token(&world.gina));
    let second = gina
        .create_drawing_revision(world.revision_request(0, "1"))
        .await
        .unwrap()
        .into_inner();
    world.publish(vec![second.id.clone()]).await.unwrap();

    let mut upstream: Vec<String> = list(world.up.clone())
        .await
        .iter()
        .map(|d: &Drawing| d.id.clone())
        .collect();
    upstream.sort();
    assert_eq!(upstream.len(), 3);
    for (down, id) in &world.downstreams {
        let s = eventually("four revisions copied", Duration::from_secs(30), || async {
            status(id.clone()).await.filter(|s| s.items_copied >= 4)
        })
        .await;
        assert_eq!(
            (s.items_copied, s.items_total),
            (4, 4),
            "counted once each: {s:?}"
        );
        let copies = list(down.clone()).await;
        let mut origins: Vec<String> = copies
            .iter()
            .map(|d| d.origin.clone().unwrap_or_default().upstream_id)
            .collect();
        origins.sort();
        assert_eq!(origins, upstream, "one copy per upstream drawing in {down}");
        let sheet0 = copies.iter().find(|d| d.number == "A-00000").unwrap();
        let revisions = raj
            .clone()
            .list_drawing_revisions(dpb::ListDrawingRevisionsRequest {
                drawing_id: sheet0.id.clone(),
                page_size: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .revisions;
        let mut numbers: Vec<&str> = revisions
            .iter()
            .map(|r| r.revision_number.as_str())
            .collect();
        numbers.sort();
        assert_eq!(numbers, ["0", "1"], "each revision once in {down}");
        assert!(
            revisions
                .iter()
                .all(|r| r.project_id == *down && r.file_id != world.file)
        );
    }
    assert!(
        list(stopped_down).await.is_empty(),
        "a disconnected downstream gets no new copies"
    );
    let db = world.db();
    eventually("the work queue drains", Duration::from_secs(30), || async {
        let mut conn = db.pool().acquire().await.unwrap();
        let n = connectability_sync::db::work_count(&mut conn)
            .await
            .unwrap();
        (n == 0).then_some(())
    })
    .await;
    world.app.stop().await;
}

/// Found by the fault suite: a connection's activation, redelivered after a failure, arrived
/// after its undo and restarted copying (the undone connection ended up IN_SYNC with every
/// copy). Events older than the last one applied to a connection now change nothing.
async fn a_late_activation_never_restarts_an_undone_connection(backend: Backend) {
    use connectability_proto::connections::v1::{ConnectionStatus, Feature};
    use connectability_store::inbox::{Applied, InboxConsumer};
    use std::sync::Arc;
    let mut world = Fanout::new(backend, 0, 64).await.unwrap();
    let ids = world.revisions(3).await.unwrap();
    world.publish(ids).await.unwrap();
    let db = world.db();
    let core = Arc::new(drawings_sync::sync::SyncCore {
        db: db.clone(),
        blobs: connectability_blobs::Blobs::from_url(&format!(
            "file://{}",
            world.app.env.dir.join("blobs").display()
        ))
        .unwrap(),
        clock: Arc::new(world.app.clock.clone()),
        relay: Default::default(),
        backfill: Default::default(),
    });
    let connection = cpb::Connection {
        id: "con_late_activation".into(),
        upstream_project_id: world.up.clone(),
        downstream_project_id: "prj_late_activation".into(),
        downstream_company_id: "co_late_activation".into(),
        features: vec![Feature::Drawings as i32],
        status: ConnectionStatus::Active as i32,
        ..Default::default()
    };
    let now = connectability_store::now_ms();
    let mut activated = connectability_platform::events::envelope(
        "connectability/connection-manager",
        "connections/con_late_activation",
        &cpb::ConnectionActivated {
            connection: Some(connection.clone()),
            ..Default::default()
        },
    );
    activated.time_ms = now - 1_000;
    let mut undone = connectability_platform::events::envelope(
        "connectability/connection-manager",
        "connections/con_late_activation",
        &cpb::ConnectionUndone {
            connection: Some(cpb::Connection {
                status: ConnectionStatus::Undone as i32,
                ..connection
            }),
            ..Default::default()
        },
    );
    undone.time_ms = now;
    let consumer = InboxConsumer::new(
        db.clone(),
        "late-activation",
        Arc::new(connectability_sync::ConnectionEvents(core.clone())),
    );
    // The undo first, then the activation it followed.
    assert_eq!(consumer.apply(&undone).await.unwrap(), Applied::Now);
    assert_eq!(consumer.apply(&activated).await.unwrap(), Applied::Now);
    connectability_sync::backfill_once(&*core).await.unwrap();
    let state: i64 = sqlx::query_scalar(
        "SELECT CAST(state AS BIGINT) FROM sync_connections WHERE connection_id = 'con_late_activation'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(state, 3, "the undone connection stays stopped");
    let copies: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM drawings WHERE connection_id = 'con_late_activation'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(copies, 0, "and copies nothing");
    world.app.stop().await;
}
