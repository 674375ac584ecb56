//! Bounded work under a tenant's load (issue 16): uploads stream to storage part by part, a
//! few at a time per replica, so many large uploads at once keep the process's memory
//! bounded.

use std::time::Duration;

use connectability_proto::drawings::v1 as dpb;
use connectability_testkit::Backend;
use connectability_tests::fanout::Fanout;

/// `VmHWM` (peak resident set) of this process, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// Eight 64 MB uploads at once (512 MB in all) into one server in this process. Buffered
/// whole, as before, they needed over 512 MB; streamed, the peak stays within a budget of
/// 192 MiB above where it started (the figure is printed for the record). While eight are
/// in progress a ninth is refused with RESOURCE_EXHAUSTED, not queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_parallel_64_mb_uploads_keep_peak_memory_bounded() {
    use connectability_blobs::files::MAX_CONCURRENT_UPLOADS;
    use dpb::upload_file_request::{Header, Part};
    const SIZE: usize = 64_000_000;
    const CHUNK: usize = 256 * 1024;
    const BUDGET: u64 = 192 * 1024 * 1024;
    let world = Fanout::new(Backend::Embedded, 0, 64).await.unwrap();
    let drawings = world.app.drawings(&world.app.user_token(&world.gina));
    let header = |name: String| dpb::UploadFileRequest {
        part: Some(Part::Header(Header {
            project_id: world.up.clone(),
            filename: name,
            content_type: "application/pdf".into(),
        })),
    };
    let chunk = |i: usize, n: usize| {
        let len = CHUNK.min(SIZE - n * CHUNK);
        let mut bytes = vec![i as u8; len];
        if n == 0 {
            bytes[..5].copy_from_slice(b"%PDF-");
        }
        dpb::UploadFileRequest {
            part: Some(Part::Chunk(bytes)),
        }
    };
    // Start the peak over from the current resident set (Linux: `echo 5 > clear_refs`).
    std::fs::write("/proc/self/clear_refs", "5").expect("resetting the peak RSS");
    let before = peak_rss();
    let started = std::time::Instant::now();

    // Eight uploads begin: each sends its header and first chunk, then waits for a go.
    let mut feeds = Vec::new();
    let mut calls = Vec::new();
    for i in 0..MAX_CONCURRENT_UPLOADS {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(header(format!("big-{i}.pdf"))).await.unwrap();
        tx.send(chunk(i, 0)).await.unwrap();
        feeds.push(tx);
        let mut client = drawings.clone();
        calls.push(tokio::spawn(async move {
            client
                .upload_file(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .map(|r| r.into_inner())
        }));
    }
    // Once all eight are under way, a ninth is refused at once.
    connectability_testkit::eventually(
        "eight uploads under way",
        Duration::from_secs(60),
        || async {
            (connectability_blobs::files::uploads_in_progress() == MAX_CONCURRENT_UPLOADS)
                .then_some(())
        },
    )
    .await;
    let messages = vec![header("ninth.pdf".into()), chunk(9, 0)];
    let ninth = drawings
        .clone()
        .upload_file(tokio_stream::iter(messages))
        .await
        .expect_err("a ninth upload is refused");
    assert_eq!(ninth.code(), tonic::Code::ResourceExhausted);
    assert!(ninth.message().contains("retry"), "{}", ninth.message());

    // The eight stream their remaining 63 MB each, all at once.
    let senders = feeds.into_iter().enumerate().map(|(i, tx)| {
        tokio::spawn(async move {
            for n in 1..SIZE.div_ceil(CHUNK) {
                tx.send(chunk(i, n)).await.unwrap();
            }
        })
    });
    futures::future::join_all(senders).await;
    let files = tokio::time::timeout(Duration::from_secs(240), futures::future::join_all(calls))
        .await
        .expect("the uploads finish");
    let elapsed = started.elapsed();
    let peak = peak_rss();
    for f in files {
        let f = f.unwrap().expect("each upload is stored");
        assert_eq!(f.size_bytes, SIZE as i64);
    }
    let grew = peak.saturating_sub(before);
    println!(
        "{MAX_CONCURRENT_UPLOADS} parallel uploads of {SIZE} bytes in {:.1} s: peak RSS {} MiB, {} MiB above the start",
        elapsed.as_secs_f64(),
        peak / (1024 * 1024),
        grew / (1024 * 1024)
    );
    assert!(
        grew < BUDGET,
        "peak RSS grew by {} MiB (budget {} MiB)",
        grew / (1024 * 1024),
        BUDGET / (1024 * 1024)
    );
    world.app.stop().await;
}

on_both_backends!(tables_that_grow_keep_only_what_their_retention_says);

/// The tables that would grow forever (inbox, request ids, notifications, sent emails) lose
/// rows past their retention, and only those: an unsent email keeps its notification.
async fn tables_that_grow_keep_only_what_their_retention_says(backend: Backend) {
    use connectability_store::{now_ms, retention};
    use connectability_testkit::{Service, TestApp};
    let app = TestApp::spawn(backend, &[Service::Directory, Service::Notification]).await;
    let db = app.db(Service::Notification).clone();
    let now = now_ms();
    let days = |n: i64| now - n * 24 * 3600 * 1000;
    for (id, at) in [("old", days(15)), ("new", days(1))] {
        sqlx::query("INSERT INTO inbox (consumer, event_id, handled_ms) VALUES ('c', $1, $2)")
            .bind(id)
            .bind(at)
            .execute(db.pool())
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO request_ids (scope, request_id, response, created_ms) VALUES ('s', $1, $2, $3)",
        )
        .bind(id)
        .bind(vec![1u8])
        .bind(if id == "old" { days(8) } else { days(1) })
        .execute(db.pool())
        .await
        .unwrap();
    }
    // (notification, created, its email's sent time: None = unsent, or no email at all)
    let rows: [(&str, i64, Option<Option<i64>>); 4] = [
        ("ntf_old_sent", days(400), Some(Some(days(100)))),
        ("ntf_old_unsent", days(400), Some(None)),
        ("ntf_old_no_email", days(400), None),
        ("ntf_new", days(1), Some(Some(days(1)))),
    ];
    for (id, created, email) in rows {
        // One transaction: the server's own hourly prune (it runs once at start too) must
        // not see a year-old notification before its email row exists.
        let mut tx = db.pool().begin().await.unwrap();
        sqlx::query(
            "INSERT INTO notifications (id, recipient_id, event_id, kind, subject, body, project_id, connection_id, create_ms)
             VALUES ($1, 'usr_a', $1, 1, 's', 'b', 'prj_a', '', $2)",
        )
        .bind(id)
        .bind(created)
        .execute(&mut *tx)
        .await
        .unwrap();
        if let Some(sent) = email {
            sqlx::query(
                "INSERT INTO emails (id, to_address, subject, text_body, html_body, attempts, next_attempt_ms, sent_ms, last_error, create_ms)
                 VALUES ($1, 'a@example.com', 's', 't', 'h', 1, $2, $3, '', $2)",
            )
            .bind(id)
            .bind(created)
            .bind(sent)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
    }
    let mut rules = retention::platform_rules(retention::INBOX_DAYS, retention::REQUEST_IDS_DAYS);
    rules.extend(notification::Retention::default().rules());
    retention::prune(&db, &rules, now).await.unwrap();
    let ids = |sql: &'static str| {
        let db = db.clone();
        async move {
            let mut v: Vec<String> = sqlx::query_scalar(sql).fetch_all(db.pool()).await.unwrap();
            v.sort();
            v
        }
    };
    assert_eq!(
        ids("SELECT event_id FROM inbox WHERE consumer = 'c'").await,
        ["new"]
    );
    assert_eq!(
        ids("SELECT request_id FROM request_ids WHERE scope = 's'").await,
        ["new"]
    );
    assert_eq!(
        ids("SELECT id FROM emails").await,
        ["ntf_new", "ntf_old_unsent"],
        "a sent email past 90 days goes; an unsent one stays"
    );
    assert_eq!(
        ids("SELECT id FROM notifications").await,
        ["ntf_new", "ntf_old_unsent"],
        "a year-old notification goes once no email refers to it"
    );
    app.stop().await;
}
