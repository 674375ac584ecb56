//! `make bench` (fan-out): how fast one upstream's drawings reach many downstream projects,
//! against the database's own speed measured in the same run. Goals (issue 10):
//!
//! 1. N sheets published at once to D downstreams: all N x D copies readable in <= 10 s.
//! 2. Copy throughput >= 50 % of a raw multi-row INSERT of the same rows (files, drawings,
//!    revisions) into the same database, measured here.
//! 3. One sheet to D downstreams: publish-return -> readable in every downstream, p50 <=
//!    100 ms and p99 <= 1 s over S samples.
//! 4. Embedded (SQLite + in-process) within 2x of Postgres + NATS on every line.
//! 5. Two drawings-sync replicas copy faster than one, and no copy is made twice.
//!
//! "Readable" is observed in a loop (every 2 ms) on the per-connection copy counters, which
//! commit in the same transaction as the copies: a 50-row query, so observing costs little
//! and adds at most one query's time to a figure.
//!
//! `--quick` (CI) runs small sizes so the bench cannot rot; it never fails on speed.
//! `BENCH_SHEETS`, `BENCH_DOWNSTREAMS` and `BENCH_SAMPLES` override the sizes.
//! Results: a table on stdout, `bench/results/fanout.json` and `bench/results/fanout.svg`.

use std::time::{Duration, Instant};

use connectability_store::{
    Db,
    table::{V, insert_many},
};
use connectability_testkit::Backend;
use connectability_tests::fanout::{Fanout, wait_until};

struct Sizes {
    sheets: usize,
    downstreams: usize,
    samples: usize,
    /// Publishes the sheets are split into for the replica goal (so there is work to share).
    publishes: usize,
}

const FULL: Sizes = Sizes {
    sheets: 1000,
    downstreams: 50,
    samples: 200,
    publishes: 10,
};
const QUICK: Sizes = Sizes {
    sheets: 20,
    downstreams: 4,
    samples: 5,
    publishes: 2,
};

/// The fan-out world with a 100 KB PDF per sheet.
async fn fanout(backend: Backend, downstreams: usize) -> anyhow::Result<Fanout> {
    Fanout::new(backend, downstreams, 100 * 1024).await
}

/// The machine's CPU time so far, (busy, total) in clock ticks, from /proc/stat (zeros
/// elsewhere): whether a figure was bound by the two cores.
fn cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    let total: u64 = ticks.iter().take(8).sum();
    // idle and iowait
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Share of the machine's CPU that was busy since `since` (0..=1).
fn cpu_busy(since: (u64, u64)) -> f64 {
    let now = cpu_ticks();
    let total = now.1.saturating_sub(since.1);
    if total == 0 {
        return f64::NAN;
    }
    now.0.saturating_sub(since.0) as f64 / total as f64
}

/// Copies committed so far, over every connection (a few rows, cheap to poll).
const COPIED: &str = "SELECT CAST(COALESCE(SUM(items_copied), 0) AS BIGINT) FROM sync_connections";

async fn copied_now(db: &Db) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar::<_, i64>(COPIED)
        .fetch_one(db.pool())
        .await?)
}

/// Goal 1 (and the copy side of goal 2): seconds until N x D copies are readable.
async fn publish_at_once(backend: Backend, s: &Sizes) -> anyhow::Result<f64> {
    let mut f = fanout(backend, s.downstreams).await?;
    let ids = f.revisions(s.sheets).await?;
    let before = copied_now(&f.db()).await?;
    let start = Instant::now();
    f.publish(ids).await?;
    wait_until(&f.db(), COPIED, before + (s.sheets * s.downstreams) as i64).await?;
    let secs = start.elapsed().as_secs_f64();
    f.app.stop().await;
    Ok(secs)
}

/// Goal 3: publish-return -> readable in all D downstreams, per sample, in ms.
async fn one_sheet_latency(backend: Backend, s: &Sizes) -> anyhow::Result<Vec<f64>> {
    let mut f = fanout(backend, s.downstreams).await?;
    let db = f.db();
    let mut samples = Vec::with_capacity(s.samples);
    for _ in 0..s.samples {
        let id = f.revisions(1).await?.remove(0);
        let before = copied_now(&db).await?;
        let start = Instant::now();
        f.publish(vec![id.clone()]).await?;
        wait_until(&db, COPIED, before + s.downstreams as i64).await?;
        samples.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    f.app.stop().await;
    Ok(samples)
}

/// Goal 5: the sheets in several publishes, with one or two drawings-sync replicas.
/// Returns seconds and whether every copy exists exactly once.
async fn with_replicas(
    backend: Backend,
    s: &Sizes,
    replicas: usize,
) -> anyhow::Result<(f64, bool, f64)> {
    let mut f = fanout(backend, s.downstreams).await?;
    let mut extra = Vec::new();
    for _ in 1..replicas {
        extra.push(f.app.drawings_replica().await);
    }
    let per = s.sheets / s.publishes;
    let mut batches = Vec::new();
    for _ in 0..s.publishes {
        batches.push(f.revisions(per).await?);
    }
    let want = (per * s.publishes * s.downstreams) as i64;
    let db = f.db();
    let before = copied_now(&db).await?;
    let start = Instant::now();
    let cpu = cpu_ticks();
    for ids in batches {
        f.publish(ids).await?;
    }
    wait_until(&db, COPIED, before + want).await?;
    let secs = start.elapsed().as_secs_f64();
    let busy = cpu_busy(cpu);
    // Let any late duplicate show up before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (all, distinct): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT connection_id || '/' || origin_id) FROM revisions WHERE connection_id <> ''",
    )
    .fetch_one(db.pool())
    .await?;
    for r in extra {
        r.stop().await;
    }
    f.app.stop().await;
    Ok((secs, all == want && distinct == want, busy))
}

/// Goal 2's yardstick: the same rows (files, drawings, revisions for N x D copies) by
/// multi-row INSERT into same-shaped tables of the same database, one transaction per
/// downstream. Returns rows per second.
async fn raw_insert(backend: Backend, s: &Sizes) -> anyhow::Result<f64> {
    let f = fanout(backend, 0).await?;
    let db = f.db();
    for t in ["files", "drawings", "revisions"] {
        let ddl = if db.backend() == connectability_store::Backend::Postgres {
            format!("CREATE TABLE raw_{t} (LIKE {t} INCLUDING ALL)")
        } else {
            format!("CREATE TABLE raw_{t} AS SELECT * FROM {t} WHERE 1 = 0")
        };
        sqlx::raw_sql(sqlx::AssertSqlSafe(ddl))
            .execute(db.pool())
            .await?;
    }
    const FILES: &[&str] = &[
        "id",
        "project_id",
        "company_id",
        "filename",
        "content_type",
        "size_bytes",
        "sha256",
        "object_key",
        "create_ms",
    ];
    const DRAWINGS: &[&str] = &[
        "id",
        "project_id",
        "area_id",
        "number",
        "title",
        "discipline_name",
        "discipline_position",
        "obsolete",
        "version",
        "deleted_ms",
        "connection_id",
        "origin_id",
        "origin_project_id",
        "origin_version",
        "create_ms",
        "update_ms",
    ];
    const REVISIONS: &[&str] = &[
        "id",
        "drawing_id",
        "project_id",
        "set_id",
        "revision_number",
        "revision_status",
        "drawing_date",
        "received_date",
        "file_id",
        "custom_fields",
        "published",
        "publish_ms",
        "connection_id",
        "origin_id",
        "origin_project_id",
        "create_ms",
    ];
    let t = |x: String| V::T(x);
    let start = Instant::now();
    for d in 0..s.downstreams {
        let mut tx = db.begin().await?;
        let (mut files, mut drawings, mut revisions) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..s.sheets {
            let k = format!("{d}_{i}");
            files.push(vec![
                t(format!("fil_{k}")),
                t(format!("prj_{d}")),
                t("co_sub".into()),
                t("sheet.pdf".into()),
                t("application/pdf".into()),
                V::I(102_400),
                t("0".repeat(64)),
                t(format!("co_sub/prj_{d}/fil_{k}")),
                V::I(0),
            ]);
            drawings.push(vec![
                t(format!("dwg_{k}")),
                t(format!("prj_{d}")),
                t(format!("area_{d}")),
                t(format!("A-{i:05}")),
                t(format!("Sheet {i}")),
                t("Architectural".into()),
                V::I(1),
                V::I(0),
                V::I(1),
                V::N(None),
                t(format!("con_{d}")),
                t(format!("dwg_up_{i}")),
                t("prj_up".into()),
                V::I(1),
                V::I(0),
                V::I(0),
            ]);
            revisions.push(vec![
                t(format!("rev_{k}")),
                t(format!("dwg_{k}")),
                t(format!("prj_{d}")),
                t(format!("dset_{d}")),
                t("0".into()),
                t("Issued".into()),
                t("2026-02-14".into()),
                t("2026-02-20".into()),
                t(format!("fil_{k}")),
                t("{}".into()),
                V::I(0),
                V::N(None),
                t(format!("con_{d}")),
                t(format!("rev_up_{i}")),
                t("prj_up".into()),
                V::I(0),
            ]);
        }
        insert_many(&mut tx, "raw_files", FILES, &files).await?;
        insert_many(&mut tx, "raw_drawings", DRAWINGS, &drawings).await?;
        insert_many(&mut tx, "raw_revisions", REVISIONS, &revisions).await?;
        tx.commit().await?;
    }
    let rows = (3 * s.sheets * s.downstreams) as f64;
    let per_sec = rows / start.elapsed().as_secs_f64();
    f.app.stop().await;
    Ok(per_sec)
}

fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[idx.min(v.len() - 1)]
}

/// One backend's figures.
#[derive(Debug, Clone, Default, serde::Serialize)]
struct Figures {
    backend: String,
    publish_at_once_secs: f64,
    copies_per_sec: f64,
    raw_rows_per_sec: f64,
    copy_rows_per_sec: f64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    one_replica_secs: Option<f64>,
    two_replicas_secs: Option<f64>,
    exactly_once: Option<bool>,
    /// Share of the machine's CPU busy during the runs of goal 5 (one, two replicas).
    one_replica_cpu_busy: Option<f64>,
    two_replicas_cpu_busy: Option<f64>,
}

async fn measure(backend: Backend, s: &Sizes) -> anyhow::Result<Figures> {
    let name = backend.name().to_string();
    eprintln!(
        "[{name}] goal 1: {} sheets at once to {} downstreams",
        s.sheets, s.downstreams
    );
    let secs = publish_at_once(backend.clone(), s).await?;
    eprintln!("[{name}] goal 2: raw multi-row INSERT of the same rows");
    let raw = raw_insert(backend.clone(), s).await?;
    eprintln!("[{name}] goal 3: {} one-sheet publishes", s.samples);
    let lat = one_sheet_latency(backend.clone(), s).await?;
    let copies = (s.sheets * s.downstreams) as f64;
    let mut f = Figures {
        backend: name.clone(),
        publish_at_once_secs: secs,
        copies_per_sec: copies / secs,
        raw_rows_per_sec: raw,
        // Three rows per copy: the file, the drawing and the revision.
        copy_rows_per_sec: 3.0 * copies / secs,
        latency_p50_ms: percentile(&lat, 50.0),
        latency_p99_ms: percentile(&lat, 99.0),
        ..Default::default()
    };
    // In-process events reach every subscriber of a durable; replicas are a production
    // (NATS) matter.
    if name != "sqlite+inproc" {
        eprintln!("[{name}] goal 5: one replica, then two");
        let (one, ok1, busy1) = with_replicas(backend.clone(), s, 1).await?;
        let (two, ok2, busy2) = with_replicas(backend, s, 2).await?;
        f.one_replica_secs = Some(one);
        f.two_replicas_secs = Some(two);
        f.one_replica_cpu_busy = Some(busy1);
        f.two_replicas_cpu_busy = Some(busy2);
        f.exactly_once = Some(ok1 && ok2);
    }
    Ok(f)
}

struct Line {
    goal: &'static str,
    figure: String,
    target: String,
    ratio: f64,
    met: bool,
}

fn lines(s: &Sizes, emb: &Figures, prod: &Figures) -> Vec<Line> {
    let mut out = vec![
        Line {
            goal: "1 publish at once (postgres+nats)",
            figure: format!(
                "{} copies in {:.2} s ({:.0}/s)",
                s.sheets * s.downstreams,
                prod.publish_at_once_secs,
                prod.copies_per_sec
            ),
            target: "<= 10 s".into(),
            ratio: 10.0 / prod.publish_at_once_secs,
            met: prod.publish_at_once_secs <= 10.0,
        },
        Line {
            goal: "2 copy vs raw INSERT (postgres+nats)",
            figure: format!(
                "{:.0} rows/s vs {:.0} rows/s raw",
                prod.copy_rows_per_sec, prod.raw_rows_per_sec
            ),
            target: ">= 50 %".into(),
            ratio: prod.copy_rows_per_sec / prod.raw_rows_per_sec,
            met: prod.copy_rows_per_sec >= 0.5 * prod.raw_rows_per_sec,
        },
    ];
    for f in [prod, emb] {
        out.push(Line {
            goal: if f.backend == "sqlite+inproc" {
                "3 one sheet p50 / p99 (sqlite+inproc)"
            } else {
                "3 one sheet p50 / p99 (postgres+nats)"
            },
            figure: format!(
                "p50 {:.0} ms, p99 {:.0} ms ({} samples)",
                f.latency_p50_ms, f.latency_p99_ms, s.samples
            ),
            target: "p50 <= 100 ms, p99 <= 1000 ms".into(),
            ratio: (100.0 / f.latency_p50_ms).min(1000.0 / f.latency_p99_ms),
            met: f.latency_p50_ms <= 100.0 && f.latency_p99_ms <= 1000.0,
        });
    }
    let worst = (emb.publish_at_once_secs / prod.publish_at_once_secs)
        .max(emb.latency_p50_ms / prod.latency_p50_ms)
        .max(emb.latency_p99_ms / prod.latency_p99_ms);
    out.push(Line {
        goal: "4 embedded vs postgres+nats (worst line)",
        figure: format!(
            "embedded {:.2} s at once ({:.0}/s); worst ratio {worst:.2}x",
            emb.publish_at_once_secs, emb.copies_per_sec
        ),
        target: "<= 2x".into(),
        ratio: 2.0 / worst,
        met: worst <= 2.0,
    });
    if let (Some(one), Some(two), Some(ok)) = (
        prod.one_replica_secs,
        prod.two_replicas_secs,
        prod.exactly_once,
    ) {
        out.push(Line {
            goal: "5 two replicas (postgres+nats)",
            figure: format!(
                "1 replica {one:.2} s (CPU {:.0} % busy), 2 replicas {two:.2} s (CPU {:.0} % busy), each copy once: {ok}",
                100.0 * prod.one_replica_cpu_busy.unwrap_or(f64::NAN),
                100.0 * prod.two_replicas_cpu_busy.unwrap_or(f64::NAN)
            ),
            target: "2 faster than 1, no duplicates".into(),
            ratio: one / two,
            met: two < one && ok,
        });
    }
    out
}

fn chart(path: &std::path::Path, lines: &[Line]) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (760, 60 + 40 * lines.len() as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    root.draw(&Text::new(
        "make bench: figure / goal (1.0 = exactly the goal; right of the line = met)",
        (10, 15),
        ("sans-serif", 14),
    ))?;
    let max = lines
        .iter()
        .map(|l| l.ratio)
        .fold(2.0_f64, f64::max)
        .min(10.0);
    let x0 = 330;
    let width = 400.0;
    let scale = |r: f64| x0 + (r.min(max) / max * width) as i32;
    for (i, l) in lines.iter().enumerate() {
        let y = 45 + 40 * i as i32;
        root.draw(&Text::new(l.goal, (10, y + 8), ("sans-serif", 12)))?;
        let color = if l.met { GREEN.mix(0.7) } else { RED.mix(0.7) };
        root.draw(&Rectangle::new(
            [(x0, y), (scale(l.ratio), y + 22)],
            color.filled(),
        ))?;
        root.draw(&Text::new(
            format!("{:.2}", l.ratio),
            (scale(l.ratio) + 4, y + 6),
            ("sans-serif", 11),
        ))?;
    }
    let one = scale(1.0);
    root.draw(&PathElement::new(
        vec![(one, 35), (one, 45 + 40 * lines.len() as i32)],
        BLACK,
    ))?;
    root.present()?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let quick = std::env::args().any(|a| a == "--quick") || std::env::var("BENCH_QUICK").is_ok();
    let base = if quick { QUICK } else { FULL };
    // BENCH_SHEETS, BENCH_DOWNSTREAMS, BENCH_SAMPLES override the sizes (for profiling).
    let size = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let sizes = Sizes {
        sheets: size("BENCH_SHEETS", base.sheets),
        downstreams: size("BENCH_DOWNSTREAMS", base.downstreams),
        samples: size("BENCH_SAMPLES", base.samples),
        publishes: base.publishes,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let emb = measure(Backend::Embedded, &sizes).await?;
        let Some(prod) = Backend::production().await else {
            println!("postgres+nats not reachable: fan-out bench ran on sqlite+inproc only");
            println!("{emb:#?}");
            return Ok(());
        };
        let prod = measure(prod, &sizes).await?;
        let table = lines(&sizes, &emb, &prod);
        println!();
        println!(
            "fan-out bench{} ({} sheets x {} downstreams, {} latency samples)",
            if quick { " (quick mode: small sizes, figures not comparable to goals)" } else { "" },
            sizes.sheets,
            sizes.downstreams,
            sizes.samples
        );
        println!("| goal | figure | target | figure/target | met |");
        println!("|---|---|---|---|---|");
        for l in &table {
            println!(
                "| {} | {} | {} | {:.2} | {} |",
                l.goal,
                l.figure,
                l.target,
                l.ratio,
                if l.met { "yes" } else { "no" }
            );
        }
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/results");
        std::fs::create_dir_all(&dir)?;
        let stem = if quick { "fanout-quick" } else { "fanout" };
        let json = serde_json::json!({
            "quick": quick,
            "sizes": { "sheets": sizes.sheets, "downstreams": sizes.downstreams, "samples": sizes.samples, "publishes": sizes.publishes },
            "figures": [emb, prod],
            "goals": table.iter().map(|l| serde_json::json!({
                "goal": l.goal, "figure": l.figure, "target": l.target, "ratio": l.ratio, "met": l.met,
            })).collect::<Vec<_>>(),
        });
        std::fs::write(dir.join(format!("{stem}.json")), serde_json::to_string_pretty(&json)?)?;
        chart(&dir.join(format!("{stem}.svg")), &table)?;
        println!("written: bench/results/{stem}.json, bench/results/{stem}.svg");
        anyhow::Ok(())
    })
}
