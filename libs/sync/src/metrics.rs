//! What an operator asks of the sync engine: copies per second per tool (a counter), and per
//! connection the lag and the backfill's progress (gauges read from the database when
//! scraped). Names and queries: docs/observability.md.

use std::{
    collections::HashSet,
    sync::{LazyLock, Mutex},
};

use connectability_platform::metrics::Sampler;
use connectability_store::Db;
use prometheus::{
    GaugeVec, IntCounterVec, IntGaugeVec, register_gauge_vec, register_int_counter_vec,
    register_int_gauge_vec,
};

use crate::{SyncState, db};

/// Items (revisions, RFIs, submittals) copied downstream, live or by backfill.
pub static COPIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "connectability_copies_total",
        "Items (revisions, RFIs, submittals) copied into downstream projects, by tool",
        &["tool"]
    )
    .expect("registered once")
});

/// Connection events connection-manager did not confirm (forged, or for a connection that
/// has since changed state), by tool. Ignored; anything above zero outside a race is worth a look.
pub static UNCONFIRMED_EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "connectability_sync_unconfirmed_events_total",
        "Connection events ignored because connection-manager does not hold the connection in the state they claim, by tool",
        &["tool"]
    )
    .expect("registered once")
});

struct Gauges {
    lag: GaugeVec,
    items_total: IntGaugeVec,
    items_copied: IntGaugeVec,
    connections: IntGaugeVec,
}

static GAUGES: LazyLock<Gauges> = LazyLock::new(|| Gauges {
    lag: register_gauge_vec!(
        "connectability_sync_lag_seconds",
        "Per connection: age of the oldest upstream change not yet copied, or while \
         backfilling the time since its last copy; 0 when caught up",
        &["tool", "connection"]
    )
    .expect("registered once"),
    items_total: register_int_gauge_vec!(
        "connectability_sync_items_total",
        "Per connection: items to copy (the backfill's, plus every later change)",
        &["tool", "connection"]
    )
    .expect("registered once"),
    items_copied: register_int_gauge_vec!(
        "connectability_sync_items_copied",
        "Per connection: items copied so far; over items_total it is the backfill's progress",
        &["tool", "connection"]
    )
    .expect("registered once"),
    connections: register_int_gauge_vec!(
        "connectability_sync_connections",
        "Connections by sync state (backfilling, in_sync)",
        &["tool", "state"]
    )
    .expect("registered once"),
});

/// Sets one tool's per-connection gauges at scrape time; the series of connections that
/// stopped are removed.
pub struct SyncSampler {
    pub tool: &'static str,
    pub db: Db,
    seen: Mutex<HashSet<String>>,
}

impl SyncSampler {
    pub fn new(tool: &'static str, db: Db) -> Self {
        COPIES.with_label_values(&[tool]);
        Self {
            tool,
            db,
            seen: Mutex::default(),
        }
    }

    async fn read(&self) -> anyhow::Result<()> {
        let mut conn = self.db.pool().acquire().await?;
        let syncs = db::running(&mut conn).await?;
        let oldest: std::collections::HashMap<String, i64> =
            db::oldest_work(&mut conn).await?.into_iter().collect();
        drop(conn);
        let now = connectability_store::now_ms();
        let g = &*GAUGES;
        let mut backfilling = 0;
        let mut now_seen = HashSet::new();
        for s in &syncs {
            let labels = [self.tool, s.connection_id.as_str()];
            let status_lag_ms = crate::status::lag_ms(s, now);
            let queued_ms = oldest.get(&s.connection_id).map_or(0, |t| (now - t).max(0));
            g.lag
                .with_label_values(&labels)
                .set(status_lag_ms.max(queued_ms) as f64 / 1000.0);
            g.items_total.with_label_values(&labels).set(s.items_total);
            g.items_copied
                .with_label_values(&labels)
                .set(s.items_copied);
            if s.state == SyncState::Backfilling as i64 {
                backfilling += 1;
            }
            now_seen.insert(s.connection_id.clone());
        }
        g.connections
            .with_label_values(&[self.tool, "backfilling"])
            .set(backfilling);
        g.connections
            .with_label_values(&[self.tool, "in_sync"])
            .set(syncs.len() as i64 - backfilling);
        let mut seen = self.seen.lock().unwrap();
        for gone in seen.difference(&now_seen) {
            let labels = [self.tool, gone.as_str()];
            let _ = g.lag.remove_label_values(&labels);
            let _ = g.items_total.remove_label_values(&labels);
            let _ = g.items_copied.remove_label_values(&labels);
        }
        *seen = now_seen;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Sampler for SyncSampler {
    async fn sample(&self) {
        if let Err(e) = self.read().await {
            tracing::warn!(error = %e, tool = self.tool, "metrics: sync state not readable");
        }
    }
}
