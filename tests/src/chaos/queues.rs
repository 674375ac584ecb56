//! The fault suite's two queue phases (issue 18). A poisoned connection, whose every copy
//! fails, is parked, alerted, listed by `connectability dead-letters` and replayed while
//! the faults run and every other connection stays in sync. On slow storage, one copy item
//! that outlives its lease several times still copies each object once.

use std::{
    collections::HashSet,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use connectability_proto::drawings::v1 as dpb;
use connectability_testkit::s3::S3Store;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Api, TOOL_DBS, retry, wait_for};

/// What the poisoned connection went through.
#[derive(Debug, Default, Clone)]
pub struct PoisonReport {
    /// Its work item was parked (attempts used up).
    pub parked: bool,
    /// GetSyncStatus said FAILED, with this reason.
    pub failed: bool,
    pub failure: String,
    /// `connectability dead-letters list` showed the parked item.
    pub listed: bool,
    /// `connectability_dead_letters` (the alert's metric) on a drawings-sync replica while
    /// parked, and once replayed.
    pub alert: i64,
    pub alert_after: i64,
    /// Parked items of any other connection, in any tool, while the poisoned one was parked.
    pub others_parked: Vec<String>,
    /// Copies the connection holds once replayed, and how many it should.
    pub copies: i64,
    pub copies_expected: i64,
}

impl PoisonReport {
    pub fn ok(&self) -> bool {
        self.parked
            && self.failed
            && self.listed
            && self.alert > 0
            && self.alert_after == 0
            && self.others_parked.is_empty()
            && self.copies == self.copies_expected
    }
}

/// Makes every revision copy into `connection` fail, as a permanent fault would (a bug, a
/// corrupt row): a trigger in the drawings database refuses them. Not a dependency outage,
/// so each failure counts as an attempt.
pub async fn poison(dwg: &PgPool, connection: &str) -> anyhow::Result<()> {
    let id = connection.replace('\'', "");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE FUNCTION chaos_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
           IF NEW.connection_id = '{id}' THEN RAISE EXCEPTION 'poisoned by the fault suite'; END IF;
           RETURN NEW; END $$;
         CREATE TRIGGER chaos_poison BEFORE INSERT ON revisions
           FOR EACH ROW EXECUTE FUNCTION chaos_poison()"
    )))
    .execute(dwg)
    .await?;
    Ok(())
}

/// Once the faulted workload is done: checks that the poisoned connection's item is parked
/// and shows everywhere an operator looks (status, dead letters, the alert's metric), that
/// no other connection has a parked item, then removes the fault and replays it the way the
/// runbook says (`connectability dead-letters replay`). Its copies are counted later.
pub async fn check_and_replay(
    api: &Api,
    user: &str,
    pools: &std::collections::BTreeMap<String, PgPool>,
    connection: &str,
    bin: &Path,
    dwg_url: &str,
    metrics: &[u16],
) -> anyhow::Result<PoisonReport> {
    let dwg = &pools["drawings_sync"];
    let mut report = PoisonReport::default();
    let parked_item = || async {
        sqlx::query_scalar::<_, String>(
            "SELECT id FROM sync_work WHERE connection_id = $1 AND parked_ms IS NOT NULL",
        )
        .bind(connection)
        .fetch_optional(dwg)
        .await
        .ok()
        .flatten()
    };
    wait_for(
        "the poisoned connection's copy parked",
        Duration::from_secs(180),
        || async { parked_item().await.is_some() },
    )
    .await?;
    let item = parked_item().await.context("the parked item")?;
    report.parked = true;

    let status = retry("GetSyncStatus", |a| {
        let mut client = api.drawings(user, a);
        let r = dpb::GetSyncStatusRequest {
            connection_id: connection.into(),
        };
        async move { client.get_sync_status(r).await }
    })
    .await?
    .into_inner();
    report.failed = status.state() == dpb::SyncState::Failed;
    report.failure = status.failure;

    for db in TOOL_DBS {
        let others: Vec<String> = sqlx::query_scalar(
            "SELECT connection_id FROM sync_work WHERE parked_ms IS NOT NULL AND connection_id <> $1",
        )
        .bind(connection)
        .fetch_all(&pools[db])
        .await?;
        report
            .others_parked
            .extend(others.into_iter().map(|c| format!("{db} {c}")));
    }

    let listed = cli(bin, dwg_url, &["list", "--consumer", "drawings-copy-work"])?;
    let letter = listed
        .lines()
        .find(|l| l.contains(&format!("event={item} ")))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_string);
    report.listed = letter.is_some();

    // Sampled when scraped; a replica may still be starting after the last kill.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        report.alert = dead_letters_metric(metrics).await;
        if report.alert > 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    sqlx::raw_sql("DROP TRIGGER chaos_poison ON revisions; DROP FUNCTION chaos_poison()")
        .execute(dwg)
        .await?;
    let Some(letter) = letter else {
        bail!("the parked item {item} is not in `dead-letters list`:\n{listed}");
    };
    cli(bin, dwg_url, &["replay", &letter])?;
    Ok(report)
}

/// `connectability dead-letters ARGS` on the drawings database; its output.
fn cli(bin: &Path, database_url: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new(bin)
        .arg("dead-letters")
        .args(args)
        .env("DATABASE_URL", database_url)
        .output()
        .context("running connectability dead-letters")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "connectability dead-letters {args:?}: {}\n{text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(text)
}

/// `connectability_dead_letters` for drawings-sync, from the first replica that answers a
/// scrape of `/metrics` (they all read the same database); -1 when none answers.
pub async fn dead_letters_metric(ports: &[u16]) -> i64 {
    for port in ports {
        let Ok(text) = scrape(*port).await else {
            continue;
        };
        return text
            .lines()
            .filter(|l| l.starts_with("connectability_dead_letters{"))
            .filter(|l| l.contains("service=\"drawings-sync\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|v| v as i64)
            .sum();
    }
    -1
}

/// `GET /metrics` over plain HTTP/1.1, as Prometheus scrapes it.
async fn scrape(port: u16) -> anyhow::Result<String> {
    let mut s = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    )
    .await??;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n")
        .await?;
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut body)).await??;
    Ok(body)
}

/// One copy item on slow storage.
#[derive(Debug, Default, Clone)]
pub struct SlowReport {
    /// Revisions (each its own file) in the one publish, so one work item.
    pub revisions: usize,
    /// Publish to every copy readable.
    pub elapsed: Duration,
    /// The shortest `elapsed` the plan asks for (a multiple of the 10 s copy lease).
    pub at_least: Duration,
    /// CopyObject requests into the connection's prefix, and distinct destinations.
    pub copy_requests: usize,
    pub copied_objects: usize,
    /// Revision rows the connection holds, and distinct origins.
    pub rows: i64,
    pub distinct_rows: i64,
}

impl SlowReport {
    pub fn ok(&self) -> bool {
        let n = self.revisions;
        self.elapsed >= self.at_least
            && self.copy_requests == n
            && self.copied_objects == n
            && self.rows == n as i64
            && self.distinct_rows == n as i64
    }
}

/// Publishes `revisions` (each with its own file) of `project` at once, to the one
/// connection `connection`, and measures the copy: one work item, which on storage at 50 ms
/// a request outlives the copy lease several times; its claim must hold throughout (no
/// other worker copies the same objects) and each object is copied once.
#[allow(clippy::too_many_arguments)]
pub async fn slow_copy(
    api: &Api,
    user: &str,
    project: &str,
    revisions: &[String],
    connection: &str,
    s3: &S3Store,
    dwg: &PgPool,
    at_least: Duration,
) -> anyhow::Result<SlowReport> {
    s3.proxy.clear_requests();
    let started = Instant::now();
    let r = dpb::PublishDrawingRevisionsRequest {
        project_id: project.into(),
        revision_ids: revisions.to_vec(),
    };
    retry("PublishDrawingRevisions (slow storage)", |a| {
        let mut client = api.drawings(user, a);
        let r = r.clone();
        async move { client.publish_drawing_revisions(r).await }
    })
    .await?;
    let rows = || async {
        sqlx::query_as::<_, (i64, i64)>(
            "SELECT COUNT(*), COUNT(DISTINCT origin_id) FROM revisions WHERE connection_id = $1",
        )
        .bind(connection)
        .fetch_one(dwg)
        .await
        .unwrap_or((-1, -1))
    };
    let n = revisions.len() as i64;
    wait_for(
        "the slow-storage copy",
        Duration::from_secs(900),
        || async { rows().await.1 >= n },
    )
    .await?;
    let elapsed = started.elapsed();
    // Late duplicates (a takeover finishing second) would show now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rows, distinct_rows) = rows().await;
    let copies: Vec<String> = s3
        .proxy
        .requests()
        .into_iter()
        .filter(|r| r.copy && r.line.contains(connection))
        .map(|r| r.line)
        .collect();
    let copied_objects = copies.iter().collect::<HashSet<_>>().len();
    Ok(SlowReport {
        revisions: revisions.len(),
        elapsed,
        at_least,
        copy_requests: copies.len(),
        copied_objects,
        rows,
        distinct_rows,
    })
}
