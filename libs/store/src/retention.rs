//! What the tables that grow forever keep. Every hour a service deletes the rows its
//! [`Rule`]s say are past their retention, a bounded batch at a time so no delete holds
//! locks or runs long. The durations are settings (README: `RETENTION_*`).

use std::time::Duration;

use crate::{Db, now_ms};

/// How often the rules run.
pub const EVERY: Duration = Duration::from_secs(3600);
/// Rows one delete statement removes at most; a rule repeats until none are left.
pub const BATCH: i64 = 5_000;

/// One table's retention: `delete` removes up to `$2` rows whose time is before `$1`.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: &'static str,
    pub delete: &'static str,
    pub keep: Duration,
}

/// Defaults: inbox entries outlive JetStream's 7-day stream age twice over (an event that
/// can still be redelivered still finds its entry); retried calls come within minutes.
pub const INBOX_DAYS: u64 = 14;
pub const REQUEST_IDS_DAYS: u64 = 7;

fn days(n: u64) -> Duration {
    Duration::from_secs(n * 24 * 3600)
}

/// The platform tables every service has: its consumers' inbox and its request ids.
pub fn platform_rules(inbox_days: u64, request_ids_days: u64) -> Vec<Rule> {
    vec![
        Rule {
            name: "inbox",
            delete: "DELETE FROM inbox WHERE (consumer, event_id) IN
                       (SELECT consumer, event_id FROM inbox WHERE handled_ms < $1 LIMIT $2)",
            keep: days(inbox_days),
        },
        Rule {
            name: "request_ids",
            delete: "DELETE FROM request_ids WHERE (scope, request_id) IN
                       (SELECT scope, request_id FROM request_ids WHERE created_ms < $1 LIMIT $2)",
            keep: days(request_ids_days),
        },
    ]
}

/// Runs every rule once as of `now_ms`; the rows deleted per rule.
pub async fn prune(
    db: &Db,
    rules: &[Rule],
    now_ms: i64,
) -> Result<Vec<(&'static str, u64)>, sqlx::Error> {
    let mut out = Vec::with_capacity(rules.len());
    for rule in rules {
        let cutoff = now_ms - rule.keep.as_millis() as i64;
        let mut total = 0;
        loop {
            let n = sqlx::query(rule.delete)
                .bind(cutoff)
                .bind(BATCH)
                .execute(db.pool())
                .await?
                .rows_affected();
            total += n;
            if n < BATCH as u64 {
                break;
            }
        }
        out.push((rule.name, total));
    }
    Ok(out)
}

/// Prunes every [`EVERY`] until `stop` turns true.
pub async fn run(db: Db, rules: Vec<Rule>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        match prune(&db, &rules, now_ms()).await {
            Ok(deleted) => {
                for (name, n) in deleted.into_iter().filter(|(_, n)| *n > 0) {
                    tracing::info!(table = name, rows = n, "retention: old rows deleted");
                }
            }
            Err(e) => tracing::warn!(error = %e, "retention prune failed; trying again later"),
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
    }
}
