//! The files a connection copies: every tool copies stored files the same way (the bytes
//! under the downstream company's prefix, a row marked with the connection), and undoing a
//! connection removes every file it ever copied, whichever copy row still names it.

use std::collections::{HashMap, HashSet};

use connectability_blobs::{Blobs, CopyTarget, files::FileRow};
use connectability_platform::input::Id;
use connectability_store::{
    Tx, placeholders,
    table::{Table, by_ids, fetch, select},
};
use futures::StreamExt;
use sqlx::Row;

/// Upstream-to-downstream file ids of what one reconcile copied, and the new rows.
#[derive(Debug, Default)]
pub struct CopiedFiles {
    map: HashMap<String, String>,
    pub rows: Vec<FileRow>,
}

impl CopiedFiles {
    /// The copy of upstream file `id`, or empty when it was not copied.
    pub fn single(&self, id: &str) -> String {
        self.map.get(id).cloned().unwrap_or_default()
    }

    /// The copies of `ids`, in order; ids not copied are left out.
    pub fn mapped(&self, ids: &[String]) -> Vec<String> {
        ids.iter()
            .filter_map(|id| self.map.get(id).cloned())
            .collect()
    }

    /// Copies `file_ids` (files of the connection's upstream project; empty ids and ids
    /// already copied by this reconcile skipped) `to` the downstream project, new ids with
    /// `prefix`. The bytes are copied now; the rows are written by the caller with its copies.
    pub async fn copy(
        &mut self,
        tx: &mut Tx,
        blobs: &Blobs,
        to: &CopyTarget<'_>,
        file_ids: &[String],
        prefix: &str,
        now_ms: i64,
    ) -> anyhow::Result<()> {
        let mut todo: Vec<String> = file_ids
            .iter()
            .filter(|id| !id.is_empty() && !self.map.contains_key(*id))
            .cloned()
            .collect();
        todo.sort();
        todo.dedup();
        let mut pairs = Vec::new();
        for f in by_ids::<FileRow>(tx, &todo).await? {
            let copy = f.copied_to(Id::generate(prefix).to_string(), to, now_ms);
            pairs.push((f.object_key.clone(), copy.object_key.clone()));
            self.map.insert(f.id.clone(), copy.id.clone());
            self.rows.push(copy);
        }
        blobs.copy_many(&pairs).await
    }
}

/// C12: removes every file the tool copied over the connection (rows and bytes), including
/// files of copies that were replaced since (an RFI closed again gets new files), and
/// anything an interrupted copy left under the tool's prefix of the connection.
pub async fn withdraw(tx: &mut Tx, blobs: &Blobs, to: &CopyTarget<'_>) -> anyhow::Result<()> {
    let files: Vec<FileRow> = fetch(
        tx,
        format!("{} WHERE connection_id = $1", select::<FileRow>()),
        &[to.connection_id],
        FileRow::read,
    )
    .await?;
    sqlx::query("DELETE FROM files WHERE connection_id = $1")
        .bind(to.connection_id)
        .execute(&mut **tx)
        .await?;
    // Copies made before keys were derived (`CopyTarget::key`) live outside the prefix.
    for f in files {
        blobs.delete(&f.object_key).await?;
    }
    sweep(tx, blobs, to).await?;
    Ok(())
}

/// Keys checked against the files table per statement while sweeping.
const SWEEP_BATCH: usize = 500;

/// Deletes the objects under the tool's copies prefix of the connection that no file row
/// of the tool names: bytes an attempt copied before it rolled back (a killed replica, a
/// lost claim) and that no retry will reuse because the connection stopped first. Run once
/// the connection is stopped, under its locked row, so no copy can add to the prefix
/// meanwhile. Only the tool's own prefix: another tool's copies are named by rows in its
/// own database, which this one cannot see. Answers how many objects went.
pub async fn sweep(tx: &mut Tx, blobs: &Blobs, to: &CopyTarget<'_>) -> anyhow::Result<u64> {
    let prefix = to.prefix();
    // Listed in pages and checked a batch at a time: a connection may hold 100,000 files.
    let mut keys = blobs.list(&prefix);
    let mut batch = Vec::with_capacity(SWEEP_BATCH);
    let mut swept = 0;
    loop {
        let next = keys.next().await.transpose()?;
        let done = next.is_none();
        batch.extend(next);
        if batch.len() == SWEEP_BATCH || (done && !batch.is_empty()) {
            swept += sweep_unnamed(tx, blobs, &batch).await?;
            batch.clear();
        }
        if done {
            break;
        }
    }
    if swept > 0 {
        tracing::info!(connection = %to.connection_id, tool = to.tool, swept, "swept copies no row names");
    }
    Ok(swept)
}

async fn sweep_unnamed(tx: &mut Tx, blobs: &Blobs, keys: &[String]) -> anyhow::Result<u64> {
    let sql = format!(
        "SELECT object_key FROM files WHERE object_key IN ({})",
        placeholders(1, keys.len())
    );
    let binds: Vec<&str> = keys.iter().map(String::as_str).collect();
    let named: HashSet<String> = fetch(tx, sql, &binds, |r| r.try_get("object_key"))
        .await?
        .into_iter()
        .collect();
    let mut swept = 0;
    for key in keys.iter().filter(|k| !named.contains(*k)) {
        blobs.delete(key).await?;
        swept += 1;
    }
    Ok(swept)
}
