//! The delivery core (issue 18): bounded bulk calls, and copy work that fails for good is
//! parked without holding back any other connection. (The outbox's parking of events the
//! bus refuses is in `conformance`.)

use std::time::Duration;

use connectability_proto::drawings::v1 as dpb;
use connectability_store::{Backend as Db, inbox};
use connectability_testkit::{Backend, FAST_WORK_RETRY, Options, eventually};
use connectability_tests::fanout::{Fanout, wait_drained, wait_until};

const WAIT: Duration = Duration::from_secs(60);

/// A 20,000-revision publish (which once committed, then failed to answer, and wedged the
/// outbox with a 1.5 MB event) is refused before anything happens, with INVALID_ARGUMENT
/// naming `revision_ids` and the limit; a repeated id is published and answered once; the
/// answer says how many the call published; and copies keep flowing afterwards.
async fn a_publish_is_bounded_answered_once_per_revision_and_never_stops_the_outbox(
    backend: Backend,
) {
    let mut world = Fanout::new(backend, 1, 2048).await.unwrap();
    let ids = world.revisions(2).await.unwrap();
    let mut drawings = world.app.drawings(&world.app.user_token(&world.gina));
    let publish = |revision_ids: Vec<String>| dpb::PublishDrawingRevisionsRequest {
        project_id: world.up.clone(),
        revision_ids,
    };

    let too_many: Vec<String> = (0..20_000).map(|i| format!("rev_{i:026}")).collect();
    let refused = drawings
        .publish_drawing_revisions(publish(too_many))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("revision_ids") && refused.message().contains("at most 5000"),
        "{}",
        refused.message()
    );
    let db = world.db();
    let published = "SELECT COUNT(*) FROM revisions WHERE published = 1 AND connection_id = ''";
    assert_eq!(
        sqlx::query_scalar::<_, i64>(published)
            .fetch_one(db.pool())
            .await
            .unwrap(),
        0,
        "nothing of the refused call happened"
    );

    let answer = drawings
        .publish_drawing_revisions(publish(vec![
            ids[0].clone(),
            ids[0].clone(),
            ids[1].clone(),
        ]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.newly_published, 2);
    assert!(!answer.publish_id.is_empty());
    let answered: Vec<&str> = answer.revisions.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(answered, vec![ids[0].as_str(), ids[1].as_str()]);
    assert!(answer.revisions.iter().all(|r| r.published));

    // Both reach the downstream, once each.
    wait_until(
        &db,
        "SELECT COUNT(*) FROM revisions WHERE connection_id <> ''",
        2,
    )
    .await
    .unwrap();

    let again = drawings
        .publish_drawing_revisions(publish(vec![ids[0].clone()]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.newly_published, 0, "already published");
    assert_eq!(again.revisions.len(), 1);
}

/// One connection's copies always fail (a database trigger refuses its revision rows, as a
/// permanent fault would). Its work item is tried with backoff, then parked: its status says
/// FAILED with the error and it is listed as a dead letter, while the other connection gets
/// both publishes. Replayed once the fault is gone, it catches up and is IN_SYNC again.
async fn a_copy_that_always_fails_is_parked_and_replayed_while_others_stay_in_sync(
    backend: Backend,
) {
    let mut world = Fanout::new(backend, 2, 2048).await.unwrap();
    let (_, poisoned) = world.downstreams[0].clone();
    let (_, healthy) = world.downstreams[1].clone();
    let db = world.db();
    let poison: Vec<String> = match db.backend() {
        Db::Sqlite => vec![format!(
            "CREATE TRIGGER poison BEFORE INSERT ON revisions WHEN NEW.connection_id = '{poisoned}'
             BEGIN SELECT RAISE(ABORT, 'poisoned by the test'); END"
        )],
        Db::Postgres => vec![
            format!(
                "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
                   IF NEW.connection_id = '{poisoned}' THEN RAISE EXCEPTION 'poisoned by the test'; END IF;
                   RETURN NEW; END $$"
            ),
            "CREATE TRIGGER poison BEFORE INSERT ON revisions FOR EACH ROW EXECUTE FUNCTION poison()"
                .into(),
        ],
    };
    for sql in &poison {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
            .execute(db.pool())
            .await
            .unwrap();
    }
    let copies = |connection: String| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM revisions WHERE connection_id = $1")
                .bind(connection)
                .fetch_one(db.pool())
                .await
                .unwrap()
        }
    };
    let raj = world.app.drawings(&world.app.user_token(&world.raj));
    let status = |id: String| {
        let mut client = raj.clone();
        async move {
            client
                .get_sync_status(dpb::GetSyncStatusRequest { connection_id: id })
                .await
                .unwrap()
                .into_inner()
        }
    };

    let first = world.revisions(1).await.unwrap();
    world.publish(first).await.unwrap();
    let failed = eventually("the poisoned connection FAILED", WAIT, || async {
        let s = status(poisoned.clone()).await;
        (s.state == dpb::SyncState::Failed as i32).then_some(s)
    })
    .await;
    assert!(
        failed.failure.contains("poisoned by the test"),
        "{}",
        failed.failure
    );
    let letters = inbox::list_dead_letters(&db, Some("drawings-copy-work"))
        .await
        .unwrap();
    assert_eq!(letters.len(), 1, "one parked item");
    assert_eq!(letters[0].attempts, 10, "every attempt made");
    assert_eq!(
        letters[0].envelope.subject,
        format!("connections/{poisoned}")
    );

    // The other connection is not held back, now or for the next publish.
    let second = world.revisions(1).await.unwrap();
    world.publish(second).await.unwrap();
    eventually("both publishes at the healthy connection", WAIT, || async {
        (copies(healthy.clone()).await == 2).then_some(())
    })
    .await;
    assert_eq!(
        status(healthy.clone()).await.state,
        dpb::SyncState::InSync as i32
    );
    assert_eq!(copies(poisoned.clone()).await, 0);

    // The fault is repaired; the operator replays; the connection catches up in order.
    for sql in ["DROP TRIGGER poison ON revisions", "DROP FUNCTION poison()"] {
        let sql = match db.backend() {
            Db::Sqlite if sql.starts_with("DROP FUNCTION") => continue,
            Db::Sqlite => "DROP TRIGGER poison",
            Db::Postgres => sql,
        };
        sqlx::raw_sql(sql).execute(db.pool()).await.unwrap();
    }
    assert!(inbox::request_replay(&db, &letters[0].id).await.unwrap());
    eventually("the replayed connection caught up", WAIT, || async {
        (copies(poisoned.clone()).await == 2).then_some(())
    })
    .await;
    let s = status(poisoned.clone()).await;
    assert_eq!(s.state, dpb::SyncState::InSync as i32);
    assert!(s.failure.is_empty());
    assert!(
        inbox::list_dead_letters(&db, Some("drawings-copy-work"))
            .await
            .unwrap()
            .is_empty()
    );
    wait_until(
        &db,
        "SELECT COUNT(*) FROM revisions WHERE connection_id <> ''",
        4,
    )
    .await
    .unwrap();
}

/// A connection's backfill is claimed by one replica at a time: while another replica's
/// claim runs, this service's backfill worker leaves the connection to it (it stays
/// BACKFILLING); once that claim lapses (its replica died), this one takes over and finishes.
async fn a_backfill_claimed_by_another_replica_is_left_to_it(backend: Backend) {
    let world = Fanout::new(backend, 1, 64).await.unwrap();
    let (_, connection) = world.downstreams[0].clone();
    let db = world.db();
    let now = connectability_store::now_ms();
    let mut tx = db.begin().await.unwrap();
    assert!(
        connectability_sync::db::claim_backfill(
            &mut tx,
            &connection,
            "another replica",
            now,
            now + 600_000
        )
        .await
        .unwrap()
    );
    sqlx::query(
        "UPDATE sync_connections SET state = 1, backfill_cursor = '' WHERE connection_id = $1",
    )
    .bind(&connection)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let state = || {
        let db = db.clone();
        let connection = connection.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT state FROM sync_connections WHERE connection_id = $1",
            )
            .bind(connection)
            .fetch_one(db.pool())
            .await
            .unwrap()
        }
    };
    // The backfill worker runs at least every 500 ms: for four of its rounds it leaves the
    // claimed connection alone.
    let watch_until = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < watch_until {
        assert_eq!(state().await, 1, "left to the replica that claimed it");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sqlx::query("UPDATE sync_backfill_claims SET until_ms = 0 WHERE connection_id = $1")
        .bind(&connection)
        .execute(db.pool())
        .await
        .unwrap();
    eventually("taken over and finished", WAIT, || async {
        (state().await == 2).then_some(())
    })
    .await;
    let claims: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sync_backfill_claims")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(claims, 0, "a finished backfill's claim is released");
}

/// N6 when one publish's copy brings a later one's revisions: a publish's copy takes every
/// published revision of its drawings, so when copies lag (slow storage, a stalled worker)
/// the first publish of a sheet can copy the revision a second publish added, and the second
/// copy finds nothing new. Each publish still gets its one message per downstream. (Copies
/// are held back by a trigger until both publishes are queued.)
async fn n06_a_publish_copied_ahead_by_an_earlier_one_still_gets_its_message(backend: Backend) {
    let mut world = Fanout::new(backend, 1, 2048).await.unwrap();
    let db = world.db();
    let hold = match db.backend() {
        Db::Postgres => vec![
            "CREATE FUNCTION hold_copies() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
               IF NEW.connection_id <> '' THEN RAISE EXCEPTION 'held'; END IF;
               RETURN NEW; END $$",
            "CREATE TRIGGER hold_copies BEFORE INSERT ON revisions FOR EACH ROW EXECUTE FUNCTION hold_copies()",
        ],
        Db::Sqlite => vec![
            "CREATE TRIGGER hold_copies BEFORE INSERT ON revisions WHEN NEW.connection_id <> ''
               BEGIN SELECT RAISE(ABORT, 'held'); END",
        ],
    };
    for sql in hold {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(db.pool())
            .await
            .unwrap();
    }
    let first = world.revisions(1).await.unwrap();
    world.publish(first).await.unwrap();
    let second = world
        .app
        .drawings(&world.app.user_token(&world.gina))
        .create_drawing_revision(world.revision_request(0, "1"))
        .await
        .unwrap()
        .into_inner()
        .id;
    world.publish(vec![second]).await.unwrap();
    wait_until(&db, "SELECT COUNT(*) FROM sync_work", 2)
        .await
        .unwrap();
    sqlx::raw_sql("DROP TRIGGER hold_copies ON revisions")
        .execute(db.pool())
        .await
        .or(sqlx::raw_sql("DROP TRIGGER hold_copies")
            .execute(db.pool())
            .await)
        .unwrap();
    wait_until(
        &db,
        "SELECT COUNT(*) FROM revisions WHERE connection_id <> ''",
        2,
    )
    .await
    .unwrap();
    wait_drained(&db).await.unwrap();
    let announced: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM outbox WHERE event_type = 'connectability.drawings.v1.DrawingsCopied'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(
        announced, 2,
        "one DrawingsCopied per publish for the downstream"
    );
    let _ = &mut world;
}

on_both_backends!(
    n06_a_publish_copied_ahead_by_an_earlier_one_still_gets_its_message,
    a_backfill_claimed_by_another_replica_is_left_to_it,
    a_publish_is_bounded_answered_once_per_revision_and_never_stops_the_outbox,
    a_copy_that_always_fails_is_parked_and_replayed_while_others_stay_in_sync,
);

/// Postgres (SQLite has one writer and one copy worker): a copy that takes three times the
/// claim's lease (a trigger sleeps 3 s on the copied row; the lease is 1 s) completes once,
/// because its worker's heartbeat keeps the claim while it runs. Without the heartbeat another
/// worker takes the item over each time the lease ends, and the copy never finishes; the
/// sequence counts how many times the copy was attempted (it is not rolled back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_longer_than_its_lease_is_kept_by_the_heartbeat_and_done_once() {
    let Some(backend) = Backend::production().await else {
        return;
    };
    let options = Options {
        work_retry: Some(connectability_sync::WorkRetry {
            lease: Duration::from_secs(1),
            ..FAST_WORK_RETRY
        }),
        ..Default::default()
    };
    let mut world = Fanout::new_with(backend, 1, 2048, options).await.unwrap();
    let (_, connection) = world.downstreams[0].clone();
    let db = world.db();
    for sql in [
        "CREATE SEQUENCE copy_attempts".to_string(),
        format!(
            "CREATE FUNCTION slow_copy() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
               IF NEW.connection_id = '{connection}' THEN
                 PERFORM nextval('copy_attempts'); PERFORM pg_sleep(3);
               END IF;
               RETURN NEW; END $$"
        ),
        "CREATE TRIGGER slow_copy BEFORE INSERT ON revisions FOR EACH ROW EXECUTE FUNCTION slow_copy()"
            .to_string(),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(db.pool())
            .await
            .unwrap();
    }
    let ids = world.revisions(1).await.unwrap();
    world.publish(ids).await.unwrap();
    eventually(
        "the slow copy done (a takeover loop never finishes)",
        WAIT,
        || async {
            let copies: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM revisions WHERE connection_id <> ''")
                    .fetch_one(db.pool())
                    .await
                    .unwrap();
            (copies == 1).then_some(())
        },
    )
    .await;
    let attempts: i64 = sqlx::query_scalar("SELECT last_value FROM copy_attempts")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(attempts, 1, "the copy ran once, never taken over");
    wait_drained(&db).await.unwrap();
    assert!(
        inbox::list_dead_letters(&db, None)
            .await
            .unwrap()
            .is_empty()
    );
}
