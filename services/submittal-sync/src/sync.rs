//! The one-way copy of submittals (S1-S6) on the shared engine (libs/sync). Events only say
//! *which* upstream submittal changed; [`reconcile`] then makes each connection's copy match
//! the upstream now: a distributed submittal shared with the downstream company is copied
//! with every distribution (S1, S2), each distribution's cover sheet byte for byte (S3) and
//! only its selected attachments (S4); the copy's general information is the last
//! distribution's; a newer undistributed revision marks it outdated, and status changes show
//! (S5). Each copy records the upstream version it reflects, so repeated or reordered events
//! change nothing.

use std::collections::HashMap;

use async_trait::async_trait;
use connectability_blobs::Blobs;
use connectability_events::Envelope;
use connectability_platform::{events::decode, input::Id};
use connectability_proto::{connections::v1::Feature, submittals::v1 as pb};
use connectability_store::Tx;
use connectability_sync::{Change, Copied, Engine, SyncedTool, files::CopiedFiles};

use crate::{
    db::{self, Copy, DistributionRow, SubmittalRow, SyncRow},
    domain::{self, DISTRIBUTION, FILE, SUBMITTAL, SubmittalStatus},
    events,
};

/// Submittals on the shared sync engine.
pub struct SubmittalSync(pub Engine);

fn copy_of(s: &SyncRow, origin_id: &str) -> Copy {
    Copy {
        connection_id: s.connection_id.clone(),
        origin_id: origin_id.to_string(),
        origin_project_id: s.upstream_project_id.clone(),
    }
}

/// Copies the distributions `todo` of upstream submittal `u` to the copy `copy_id`: their
/// cover sheets and selected attachments as files of the downstream project. Returns the
/// new rows and the copied files.
async fn copy_distributions(
    tx: &mut Tx,
    blobs: &Blobs,
    s: &SyncRow,
    todo: &[DistributionRow],
    copy_id: &str,
    now: i64,
) -> anyhow::Result<(Vec<DistributionRow>, CopiedFiles)> {
    let mut wanted: Vec<String> = Vec::new();
    for d in todo {
        wanted.extend(d.attachment_file_ids.iter().cloned());
        wanted.push(d.cover_file_id.clone());
    }
    let mut files = CopiedFiles::default();
    files
        .copy(
            tx,
            blobs,
            &s.copy_target(SubmittalSync::CONTEXT),
            &wanted,
            FILE,
            now,
        )
        .await?;
    let rows = todo
        .iter()
        .map(|d| DistributionRow {
            id: Id::generate(DISTRIBUTION).to_string(),
            submittal_id: copy_id.to_string(),
            project_id: s.downstream_project_id.clone(),
            attachment_file_ids: files.mapped(&d.attachment_file_ids),
            cover_file_id: files.single(&d.cover_file_id),
            // S4: approvers' attachments only where the distribution selected them.
            general: domain::general_with_files(&d.general, |ids| files.mapped(ids)),
            copy: copy_of(s, &d.id),
            ..d.clone()
        })
        .collect();
    Ok((rows, files))
}

/// Makes connection `s`'s copies of `upstream_ids` match the upstream submittals now.
pub async fn reconcile(
    tx: &mut Tx,
    blobs: &Blobs,
    s: &SyncRow,
    upstream_ids: &[String],
    now: i64,
) -> anyhow::Result<Copied> {
    let mut out = Copied::default();
    let upstream = db::originals::<SubmittalRow>(tx, &s.upstream_project_id, upstream_ids).await?;
    let ids: Vec<String> = upstream.iter().map(|u| u.id.clone()).collect();
    let copies: HashMap<String, SubmittalRow> =
        db::copies::<SubmittalRow>(tx, &s.connection_id, &ids)
            .await?
            .into_iter()
            .map(|c| (c.copy.origin_id.clone(), c))
            .collect();
    let (mut new_rows, mut new_dists, mut new_files) = (Vec::new(), Vec::new(), Vec::new());
    for u in &upstream {
        let dists = db::distributions_of(tx, &u.id).await?;
        let shared = u.deleted_ms.is_none()
            && domain::shared_with(
                !dists.is_empty(),
                &u.participant_company_ids,
                &s.downstream_company_id,
            );
        let existing = copies.get(&u.id);
        if existing.is_none() && !shared {
            continue;
        }
        if let Some(c) = existing
            && u.version <= c.origin_version
        {
            continue;
        }
        let copy_id = existing
            .map(|c| c.id.clone())
            .unwrap_or_else(|| Id::generate(SUBMITTAL).to_string());
        // Distributions not copied yet (all of them for a new copy).
        let dist_ids: Vec<String> = dists.iter().map(|d| d.id.clone()).collect();
        let done: Vec<String> = db::copies::<DistributionRow>(tx, &s.connection_id, &dist_ids)
            .await?
            .into_iter()
            .map(|d| d.copy.origin_id)
            .collect();
        let todo: Vec<DistributionRow> = dists
            .iter()
            .filter(|d| !done.contains(&d.id))
            .cloned()
            .collect();
        let (rows, files) = if u.deleted_ms.is_some() {
            (Vec::new(), CopiedFiles::default())
        } else {
            copy_distributions(tx, blobs, s, &todo, &copy_id, now).await?
        };
        let latest = dists.last();
        let mut copy = match existing {
            Some(c) => c.clone(),
            None => SubmittalRow {
                id: copy_id.clone(),
                project_id: s.downstream_project_id.clone(),
                version: 0,
                deleted_ms: None,
                copy: copy_of(s, &u.id),
                disconnected: false,
                create_ms: now,
                ..u.clone()
            },
        };
        // The general information and attachments are the last distribution's (S2, S4).
        if let Some(d) = latest
            && (existing.is_none() || todo.iter().any(|t| t.id == d.id))
        {
            copy.general = domain::general_with_files(&d.general, |ids| files.mapped(ids));
            copy.revision = d.revision;
            copy.distributed_revision = d.revision;
            copy.attachment_file_ids = files.mapped(&d.attachment_file_ids);
            copy.cover_file_id = files.single(&d.cover_file_id);
        }
        copy.number = u.number;
        copy.status = if u.deleted_ms.is_some() {
            SubmittalStatus::Deleted as i64
        } else {
            u.status
        };
        // S5: a newer upstream revision not distributed yet.
        copy.outdated = u.revision > copy.distributed_revision;
        copy.participant_company_ids = u.participant_company_ids.clone();
        copy.origin_version = u.version;
        copy.update_ms = now;
        match existing {
            None => {
                copy.version = 1;
                new_rows.push(copy);
                out.items += 1;
                out.records += 1;
            }
            Some(c) => {
                copy.version = c.version + 1;
                if !db::update_submittal(tx, &copy, c.version).await? {
                    anyhow::bail!("copy {} changed during the sync; retrying", c.id);
                }
            }
        }
        new_dists.extend(rows);
        new_files.extend(files.rows);
    }
    // Many rows per statement, all in the caller's one transaction; parents first.
    db::insert(tx, &new_files).await?;
    db::insert(tx, &new_rows).await?;
    db::insert(tx, &new_dists).await?;
    Ok(out)
}

#[async_trait]
impl SyncedTool for SubmittalSync {
    const FEATURE: Feature = Feature::Submittals;
    const CONTEXT: &'static str = "submittals";
    const WITHDRAW: &'static [&'static str] = db::WITHDRAW_COPIES;
    /// S6: copies stay, marked disconnected.
    const MARKS_DISCONNECTED: Option<&'static str> = Some("submittals");

    fn engine(&self) -> &Engine {
        &self.0
    }

    async fn backfill_batch(
        &self,
        tx: &mut Tx,
        s: &SyncRow,
        cursor: &str,
        limit: Option<i64>,
    ) -> anyhow::Result<Vec<String>> {
        Ok(db::shared_submittal_ids(
            tx,
            &s.upstream_project_id,
            &s.downstream_company_id,
            cursor,
            limit,
        )
        .await?)
    }

    async fn reconcile(
        &self,
        tx: &mut Tx,
        s: &SyncRow,
        record_ids: &[String],
        now_ms: i64,
    ) -> anyhow::Result<Copied> {
        reconcile(tx, &self.0.blobs, s, record_ids, now_ms).await
    }

    fn changed(&self, e: &Envelope) -> anyhow::Result<Option<Change>> {
        let (project_id, submittal_id) = match e.event_type.rsplit('.').next().unwrap_or_default() {
            "SubmittalDistributed" => {
                let m: pb::SubmittalDistributed = decode(e)?;
                (m.project_id, m.submittal_id)
            }
            "SubmittalRevised" => {
                let m: pb::SubmittalRevised = decode(e)?;
                (m.project_id, m.submittal_id)
            }
            "SubmittalStatusChanged" => {
                let m: pb::SubmittalStatusChanged = decode(e)?;
                (m.project_id, m.submittal_id)
            }
            _ => return Ok(None),
        };
        Ok(Some(Change {
            project_id,
            record_ids: vec![submittal_id],
            action_id: None,
        }))
    }

    /// No rule asks for a message per live copy; the initial sync is announced (N5).
    fn announce(&self, _: &SyncRow, _: &Change, _: &Copied, _: bool) -> Vec<Envelope> {
        Vec::new()
    }

    fn initial_sync_completed(&self, s: &SyncRow) -> Envelope {
        events::initial_sync_completed(s)
    }
}
