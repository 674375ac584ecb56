//! `make chaos` (full) and `make chaos-quick` (CI): the fault suite, see
//! `connectability_tests::chaos`. Exits non-zero unless nothing was lost or doubled.
//!
//! `CHAOS_SEED` replays a run; `CONNECTABILITY_BIN` names the `connectability` binary
//! (default: the debug build in `CARGO_TARGET_DIR`); `PG_BIN` the PostgreSQL server
//! binaries' folder.

use std::path::PathBuf;

use connectability_tests::chaos::{self, Plan};

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let quick = std::env::args().any(|a| a == "--quick");
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(1)
        });
    let plan = if quick {
        Plan::quick(seed)
    } else {
        Plan::full(seed)
    };
    let bin = std::env::var("CONNECTABILITY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            let target = std::env::var("CARGO_TARGET_DIR")
                .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target").to_string());
            PathBuf::from(target).join("debug/connectability")
        });
    anyhow::ensure!(
        bin.exists(),
        "{} not found: build it first (cargo build -p connectability) or set CONNECTABILITY_BIN",
        bin.display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = rt.block_on(chaos::run(plan.clone(), &bin))?;
    report.print(&plan);
    if !report.ok() {
        std::process::exit(1);
    }
    Ok(())
}
