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
    watch_streams_are_capped_per_user_and_end_when_access_goes,
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
/// copy). Events older than the last one applied to a connection now change nothing, and
/// connection-manager (which holds the connection undone) does not confirm it either.
async fn a_late_activation_never_restarts_an_undone_connection(backend: Backend) {
    use connectability_store::inbox::{Applied, InboxConsumer};
    use std::sync::Arc;
    let mut world = Fanout::new(backend, 0, 64).await.unwrap();
    let ids = world.revisions(3).await.unwrap();
    world.publish(ids).await.unwrap();
    let db = world.db();
    let (_, id) = world
        .world
        .connect(&world.app, "Late activation")
        .await
        .unwrap();
    let connections = world.app.connections(&world.app.user_token(&world.raj));
    let active = connections
        .clone()
        .get_connection(cpb::GetConnectionRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    // The requester withdraws the auto-approved connection within the undo window (C12).
    connections
        .clone()
        .undo_connection(cpb::UndoConnectionRequest { id: id.clone() })
        .await
        .unwrap();
    let state_and_copies = || async {
        let mut conn = db.pool().acquire().await.unwrap();
        let state: Option<i64> = sqlx::query_scalar(
            "SELECT CAST(state AS BIGINT) FROM sync_connections WHERE connection_id = $1",
        )
        .bind(&id)
        .fetch_optional(&mut *conn)
        .await
        .unwrap();
        let copies: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM drawings WHERE connection_id = $1")
                .bind(&id)
                .fetch_one(&mut *conn)
                .await
                .unwrap();
        (state, copies)
    };
    eventually("the undo applied", Duration::from_secs(30), || async {
        (state_and_copies().await == (Some(3), 0)).then_some(())
    })
    .await;
    // The activation it followed, delivered again late (an older event time), to a fresh inbox.
    let core = Arc::new(drawings_sync::sync::DrawingSync(
        connectability_sync::Engine::new(
            db.clone(),
            connectability_blobs::Blobs::from_url(&format!(
                "file://{}",
                world.app.env.dir.join("blobs").display()
            ))
            .unwrap(),
            Arc::new(world.app.clock.clone()),
            Default::default(),
            world.app.connections_gateway(drawings_sync::NAME),
        ),
    ));
    let mut activated = connectability_platform::events::envelope(
        "connectability/connection-manager",
        format!("connections/{id}"),
        &cpb::ConnectionActivated {
            connection: Some(active),
            ..Default::default()
        },
    );
    activated.time_ms = connectability_store::now_ms() - 60_000;
    let consumer = InboxConsumer::new(
        db.clone(),
        "late-activation",
        Arc::new(connectability_sync::ConnectionEvents(core.clone())),
    );
    assert_eq!(consumer.apply(&activated).await.unwrap(), Applied::Now);
    connectability_sync::backfill_once(&*core, "test-backfill")
        .await
        .unwrap();
    assert_eq!(
        state_and_copies().await,
        (Some(3), 0),
        "the undone connection stays stopped and copies nothing"
    );
    world.app.stop().await;
}

/// Issue 16: `WatchSyncStatus` streams are bounded per user (and per replica), and an open
/// stream ends with NOT_FOUND once its watcher loses access to the downstream project.
async fn watch_streams_are_capped_per_user_and_end_when_access_goes(backend: Backend) {
    use connectability_proto::directory::v1::{self as pb, PermissionLevel};
    use connectability_sync::status::{MAX_WATCHES_PER_USER, RECHECK_ACCESS};
    let world = Fanout::new(backend, 1, 64).await.unwrap();
    let (down, connection) = world.downstreams[0].clone();
    let mut op = world.app.directory_as_operator();
    let wes = op
        .create_user(pb::CreateUserRequest {
            company_id: world.sub.clone(),
            display_name: "wes".into(),
            email: "wes@sub.example".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .id;
    op.add_project_member(pb::AddProjectMemberRequest {
        project_id: down.clone(),
        user_id: wes.clone(),
        permissions: Some(pb::ToolPermissions {
            drawings: PermissionLevel::ReadOnly as i32,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let drawings = world.app.drawings(&world.app.user_token(&wes));
    let request = || dpb::WatchSyncStatusRequest {
        connection_id: connection.clone(),
    };
    let mut streams = Vec::new();
    for _ in 0..MAX_WATCHES_PER_USER {
        streams.push(
            drawings
                .clone()
                .watch_sync_status(request())
                .await
                .unwrap()
                .into_inner(),
        );
    }
    let over = drawings.clone().watch_sync_status(request()).await;
    assert_eq!(
        over.err().map(|s| s.code()),
        Some(tonic::Code::ResourceExhausted)
    );
    // A stream the client closes frees its place.
    drop(streams.pop());
    let again = eventually("a freed place", Duration::from_secs(10), || async {
        drawings.clone().watch_sync_status(request()).await.ok()
    })
    .await;
    streams.push(again.into_inner());

    // Access goes: the open streams end, within the recheck period, with NOT_FOUND.
    op.remove_project_member(pb::RemoveProjectMemberRequest {
        project_id: down,
        user_id: wes,
    })
    .await
    .unwrap();
    let mut first = streams.remove(0);
    let ended = tokio::time::timeout(RECHECK_ACCESS * 3, async {
        loop {
            match first.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => break None,
                Err(s) => break Some(s.code()),
            }
        }
    })
    .await
    .expect("the stream ends once access is gone");
    assert_eq!(ended, Some(tonic::Code::NotFound));
    drop(streams);
    world.app.stop().await;
}
