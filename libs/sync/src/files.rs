//! The files a connection copies: every tool copies stored files the same way (the bytes
//! under the downstream company's prefix, a row marked with the connection), and undoing a
//! connection removes every file it ever copied, whichever copy row still names it.

use std::collections::HashMap;

use connectability_blobs::{Blobs, files::FileRow};
use connectability_platform::input::Id;
use connectability_store::{
    Tx,
    table::{Table, by_ids, fetch, select},
};

use crate::SyncRow;

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

    /// Copies `file_ids` (files of `s`'s upstream project; empty ids and ids already copied
    /// by this reconcile skipped) as files of the downstream project, new ids with `prefix`.
    /// The bytes are copied now; the rows are written by the caller with its copies.
    pub async fn copy(
        &mut self,
        tx: &mut Tx,
        blobs: &Blobs,
        s: &SyncRow,
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
            let copy = f.copied_to(
                Id::generate(prefix).to_string(),
                &s.downstream_project_id,
                &s.downstream_company_id,
                &s.connection_id,
                now_ms,
            );
            pairs.push((f.object_key.clone(), copy.object_key.clone()));
            self.map.insert(f.id.clone(), copy.id.clone());
            self.rows.push(copy);
        }
        blobs.copy_many(&pairs).await
    }
}

/// C12: removes every file connection `connection_id` copied (rows and bytes), including
/// files of copies that were replaced since (an RFI closed again gets new files).
pub async fn withdraw(tx: &mut Tx, blobs: &Blobs, connection_id: &str) -> anyhow::Result<()> {
    let files: Vec<FileRow> = fetch(
        tx,
        format!("{} WHERE connection_id = $1", select::<FileRow>()),
        &[connection_id],
        FileRow::read,
    )
    .await?;
    sqlx::query("DELETE FROM files WHERE connection_id = $1")
        .bind(connection_id)
        .execute(&mut **tx)
        .await?;
    for f in files {
        blobs.delete(&f.object_key).await?;
    }
    Ok(())
}
