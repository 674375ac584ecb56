//! The blob path on a real S3-protocol store (moto's server mode on loopback, started by the
//! harness, behind a proxy that delays each request): copies land at keys derived from the
//! connection and the origin file, a stopped connection leaves no object without a row,
//! and a copy that takes many times its claim's lease on slow storage is done once.

use std::time::{Duration, Instant};

use connectability_blobs::CopyTarget;
use connectability_proto::{
    connections::v1 as cpb, drawings::v1 as dpb, drawings::v1::upload_file_request::Part,
};
use connectability_store::Db;
use connectability_testkit::{
    Backend, FAST_WORK_RETRY, Options, eventually,
    s3::{S3Store, unnamed},
};
use connectability_tests::fanout::{Fanout, wait_drained, wait_until};
use futures::StreamExt;

const WAIT: Duration = Duration::from_secs(60);

/// moto for this test, its log beside the other temp files.
async fn s3_store(name: &str) -> Option<S3Store> {
    let log = std::env::temp_dir().join(format!("moto-{name}-{}.log", std::process::id()));
    S3Store::start("connectability-test", &log).await
}

/// Every object key any `files` row of `db` names.
async fn named_keys(db: &Db) -> Vec<String> {
    sqlx::query_scalar("SELECT object_key FROM files")
        .fetch_all(db.pool())
        .await
        .unwrap()
}

async fn download(world: &Fanout, user: &str, file_id: &str) -> Vec<u8> {
    let mut stream = world
        .app
        .drawings(&world.app.user_token(user))
        .download_file(connectability_proto::sync::v1::DownloadFileRequest { id: file_id.into() })
        .await
        .unwrap()
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(part) = stream.next().await {
        if let Some(connectability_proto::sync::v1::download_file_response::Part::Chunk(c)) =
            part.unwrap().part
        {
            bytes.extend_from_slice(&c);
        }
    }
    bytes
}

/// Where the drawings tool copies over `connection` into project `project` of `company`.
fn target<'a>(company: &'a str, project: &'a str, connection: &'a str) -> CopyTarget<'a> {
    CopyTarget {
        company_id: company,
        project_id: project,
        connection_id: connection,
        tool: "drawings",
    }
}

/// C12 on S3: copies land under the downstream company at the drawings tool's key for the
/// connection and origin file (`CopyTarget::key`; every revision of one file shares the connection's one object) and read back
/// byte for byte; bytes an interrupted attempt left under a connection's prefix (copied,
/// then rolled back, never retried) are swept when the connection is disconnected, while
/// its copies stay, and everything under the prefix goes when it is undone. At the end no
/// object in the bucket lacks a row.
async fn c12_s3_copies_at_derived_keys_leave_no_object_without_a_row(backend: Backend) {
    let Some(s3) = s3_store("derived-keys").await else {
        return;
    };
    s3.proxy.set_delay(Duration::from_millis(10));
    let prefix = format!("t{}", uuid::Uuid::now_v7().simple());
    let blobs = s3.blobs(&prefix);
    let options = Options {
        blobs: Some(blobs.clone()),
        ..Default::default()
    };
    let mut world = Fanout::new_with(backend, 2, 4096, options).await.unwrap();
    let db = world.db();
    let ids = world.revisions(5).await.unwrap();
    world.publish(ids).await.unwrap();
    wait_until(
        &db,
        "SELECT COUNT(*) FROM revisions WHERE connection_id <> ''",
        10,
    )
    .await
    .unwrap();

    let copies: Vec<(String, String, String)> =
        sqlx::query_as("SELECT id, connection_id, object_key FROM files WHERE connection_id <> ''")
            .fetch_all(db.pool())
            .await
            .unwrap();
    assert_eq!(copies.len(), 10, "one file row per copied revision");
    for (_, connection, key) in &copies {
        let down = &world
            .downstreams
            .iter()
            .find(|(_, c)| c == connection)
            .unwrap()
            .0;
        assert_eq!(key, &target(&world.sub, down, connection).key(&world.file));
    }
    let original = download(&world, &world.gina, &world.file).await;
    assert!(original.starts_with(b"%PDF-1.4"));
    assert_eq!(download(&world, &world.raj, &copies[0].0).await, original);
    let keys = s3.keys(&prefix).await;
    assert_eq!(
        keys.len(),
        3,
        "the upload and one object per connection: {keys:?}"
    );
    assert!(unnamed(&keys, &named_keys(&db).await).is_empty());

    // An attempt that copied and then rolled back, in each connection.
    let ((down0, conn0), (down1, conn1)) =
        (world.downstreams[0].clone(), world.downstreams[1].clone());
    for (down, conn) in [(&down0, &conn0), (&down1, &conn1)] {
        blobs
            .put(
                &target(&world.sub, down, conn).key("fil_rolled_back"),
                bytes::Bytes::from_static(b"%PDF-1.4 rolled back"),
            )
            .await
            .unwrap();
    }
    assert_eq!(
        unnamed(&s3.keys(&prefix).await, &named_keys(&db).await).len(),
        2
    );

    let cm = |world: &Fanout| world.app.connections(&world.app.user_token(&world.raj));
    cm(&world)
        .disconnect_connection(cpb::DisconnectConnectionRequest {
            id: conn0.clone(),
            reason: "trade finished".into(),
        })
        .await
        .unwrap();
    let under =
        |down: &str, conn: &str| format!("{prefix}/{}", target(&world.sub, down, conn).prefix());
    let (under0, under1) = (under(&down0, &conn0), under(&down1, &conn1));
    eventually(
        "the disconnected connection's stray bytes swept",
        WAIT,
        || async {
            let keys = s3.keys(&under0).await;
            (keys.len() == 1).then_some(())
        },
    )
    .await;
    assert_eq!(
        download(
            &world,
            &world.raj,
            &copies.iter().find(|c| c.1 == conn0).unwrap().0
        )
        .await,
        original,
        "a disconnected connection keeps its copies"
    );

    cm(&world)
        .undo_connection(cpb::UndoConnectionRequest { id: conn1.clone() })
        .await
        .unwrap();
    eventually(
        "everything the undone connection copied gone",
        WAIT,
        || async { s3.keys(&under1).await.is_empty().then_some(()) },
    )
    .await;
    let keys = s3.keys(&prefix).await;
    assert_eq!(
        keys.len(),
        2,
        "the upload and the disconnected copy: {keys:?}"
    );
    assert!(unnamed(&keys, &named_keys(&db).await).is_empty());
    let _ = &mut world;
}

on_both_backends!(c12_s3_copies_at_derived_keys_leave_no_object_without_a_row);

/// Postgres (SQLite has one writer and one copy worker): with 50 ms added to every S3
/// request, copying 256 distinct files takes several times the claim's 250 ms lease, and the
/// copy is still done once: each object is copied by exactly one request (a takeover would
/// copy them again) and every revision arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_on_slow_storage_outlives_its_lease_and_copies_each_object_once() {
    const FILES: usize = 256;
    let Some(backend) = Backend::production().await else {
        return;
    };
    let Some(s3) = s3_store("slow").await else {
        return;
    };
    let prefix = format!("t{}", uuid::Uuid::now_v7().simple());
    let lease = Duration::from_millis(250);
    let options = Options {
        blobs: Some(s3.blobs(&prefix)),
        work_retry: Some(connectability_sync::WorkRetry {
            lease,
            ..FAST_WORK_RETRY
        }),
        ..Default::default()
    };
    let world = Fanout::new_with(backend, 1, 1024, options).await.unwrap();
    let db = world.db();
    let drawings = world.app.drawings(&world.app.user_token(&world.gina));
    // Distinct files (no delay while setting up): each is one object to copy.
    let uploads = (0..FILES).map(|i| {
        let mut client = drawings.clone();
        let up = world.up.clone();
        async move {
            client
                .upload_file(tokio_stream::iter(vec![
                    dpb::UploadFileRequest {
                        part: Some(Part::Header(dpb::upload_file_request::Header {
                            project_id: up,
                            filename: format!("sheet-{i}.pdf"),
                            content_type: "application/pdf".into(),
                        })),
                    },
                    dpb::UploadFileRequest {
                        part: Some(Part::Chunk(format!("%PDF-1.4\n% sheet {i}\n").into_bytes())),
                    },
                ]))
                .await
                .unwrap()
                .into_inner()
                .id
        }
    });
    let files: Vec<String> = futures::stream::iter(uploads).buffered(8).collect().await;
    let creates = files.iter().enumerate().map(|(i, file)| {
        let mut client = drawings.clone();
        let r = dpb::CreateDrawingRevisionRequest {
            file_id: file.clone(),
            ..world.revision_request(i, "0")
        };
        async move {
            client
                .create_drawing_revision(r)
                .await
                .unwrap()
                .into_inner()
                .id
        }
    });
    let ids: Vec<String> = futures::stream::iter(creates).buffered(8).collect().await;

    s3.proxy.set_delay(Duration::from_millis(50));
    s3.proxy.clear_requests();
    let started = Instant::now();
    world.publish(ids).await.unwrap();
    wait_until(
        &db,
        "SELECT COUNT(*) FROM revisions WHERE connection_id <> ''",
        FILES as i64,
    )
    .await
    .unwrap();
    let took = started.elapsed();
    wait_drained(&db).await.unwrap();
    assert!(
        took > lease * 3,
        "the copy must outlast its lease for this test to mean anything: {took:?}"
    );
    let copies: Vec<String> = s3
        .proxy
        .requests()
        .into_iter()
        .filter(|r| r.copy)
        .map(|r| r.line)
        .collect();
    let distinct: std::collections::HashSet<&String> = copies.iter().collect();
    assert_eq!(
        copies.len(),
        FILES,
        "one copy request per object, never repeated"
    );
    assert_eq!(distinct.len(), FILES);
    let rows: i64 = sqlx::query_scalar(
        "SELECT COUNT(DISTINCT origin_id) FROM revisions WHERE connection_id <> ''",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(rows, FILES as i64, "every revision copied once");
    let keys = s3.keys(&prefix).await;
    assert_eq!(
        keys.len(),
        2 * FILES + 1,
        "the uploads, Fanout's own and the copies"
    );
    assert!(unnamed(&keys, &named_keys(&db).await).is_empty());
}
