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

on_both_backends!(one_change_to_many_connections_is_copied_once_to_each);

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
