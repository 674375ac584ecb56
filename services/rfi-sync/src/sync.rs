//! The one-way copy of RFIs (R1-R6) on the shared engine (libs/sync). Events only say
//! *which* upstream RFI changed; [`reconcile`] then makes each connection's copy match the
//! upstream RFI now: a closed RFI shared with the downstream company is copied whole (R1-R3),
//! a reopened or deleted one shows it (R4). Each copy records the upstream version it
//! reflects and is rewritten only for a newer one, so repeated or reordered events change
//! nothing.

use std::collections::HashMap;

use async_trait::async_trait;
use connectability_blobs::Blobs;
use connectability_events::Envelope;
use connectability_platform::{events::decode, input::Id};
use connectability_proto::{connections::v1::Feature, rfis::v1 as pb};
use connectability_store::Tx;
use connectability_sync::{Change, Copied, Engine, SyncedTool, files::CopiedFiles};

use crate::{
    db::{self, Copy, FileRow, ResponseRow, RfiRow, SyncRow},
    domain::{self, FILE, RESPONSE, RFI, RfiStatus},
    events,
};

/// RFIs on the shared sync engine.
pub struct RfiSync(pub Engine);

/// The copy's content from the upstream RFI `u` (R3): every listed field, the responses
/// (only official ones when the upstream shows standard users only those), attachments and
/// both PDFs, under the downstream company's prefix.
async fn copy_content(
    tx: &mut Tx,
    blobs: &Blobs,
    s: &SyncRow,
    u: &RfiRow,
    copy_id: &str,
    now: i64,
) -> anyhow::Result<(RfiRow, Vec<ResponseRow>, Vec<FileRow>)> {
    let official_only = db::official_only(tx, &s.upstream_project_id).await?;
    let responses: Vec<ResponseRow> = db::responses_of(tx, std::slice::from_ref(&u.id))
        .await?
        .into_iter()
        .filter(|r| r.official || !official_only)
        .collect();
    let mut files = u.question_file_ids.clone();
    files.push(u.cover_file_id.clone());
    files.push(u.drawings_file_id.clone());
    for r in &responses {
        files.extend(r.file_ids.iter().cloned());
    }
    let mut copied = CopiedFiles::default();
    copied
        .copy(
            tx,
            blobs,
            &s.copy_target(RfiSync::CONTEXT),
            &files,
            FILE,
            now,
        )
        .await?;
    let copy = RfiRow {
        id: copy_id.to_string(),
        project_id: s.downstream_project_id.clone(),
        question_file_ids: copied.mapped(&u.question_file_ids),
        // Links to upstream drawing revisions mean nothing downstream: the linked drawings
        // PDF carries them.
        drawing_revision_ids: Vec::new(),
        cover_file_id: copied.single(&u.cover_file_id),
        drawings_file_id: copied.single(&u.drawings_file_id),
        version: 1,
        deleted_ms: None,
        copy: Copy {
            connection_id: s.connection_id.clone(),
            origin_id: u.id.clone(),
            origin_project_id: s.upstream_project_id.clone(),
        },
        origin_version: u.version,
        disconnected: false,
        create_ms: now,
        update_ms: now,
        ..u.clone()
    };
    let responses = responses
        .into_iter()
        .map(|r| ResponseRow {
            id: Id::generate(RESPONSE).to_string(),
            rfi_id: copy_id.to_string(),
            file_ids: copied.mapped(&r.file_ids),
            ..r
        })
        .collect();
    Ok((copy, responses, copied.rows))
}

/// Makes connection `s`'s copies of `upstream_ids` match the upstream RFIs now.
pub async fn reconcile(
    tx: &mut Tx,
    blobs: &Blobs,
    s: &SyncRow,
    upstream_ids: &[String],
    now: i64,
) -> anyhow::Result<Copied> {
    let mut out = Copied::default();
    let upstream = db::originals::<RfiRow>(tx, &s.upstream_project_id, upstream_ids).await?;
    let ids: Vec<String> = upstream.iter().map(|u| u.id.clone()).collect();
    let copies: HashMap<String, RfiRow> = db::copies::<RfiRow>(tx, &s.connection_id, &ids)
        .await?
        .into_iter()
        .map(|c| (c.copy.origin_id.clone(), c))
        .collect();
    let (mut new_rfis, mut new_responses, mut new_files) = (Vec::new(), Vec::new(), Vec::new());
    for u in &upstream {
        let shared = u.deleted_ms.is_none()
            && domain::shared_with(
                u.status,
                u.private,
                &u.participant_company_ids,
                &s.downstream_company_id,
            );
        match copies.get(&u.id) {
            None if shared => {
                let (copy, responses, files) =
                    copy_content(tx, blobs, s, u, &Id::generate(RFI).to_string(), now).await?;
                new_rfis.push(copy);
                new_responses.extend(responses);
                new_files.extend(files);
                out.items += 1;
                out.records += 1;
            }
            None => {}
            Some(c) if u.version > c.origin_version => {
                let updated = if u.deleted_ms.is_some() {
                    out.deleted.push(format!("#{}", c.number));
                    RfiRow {
                        status: RfiStatus::Deleted as i64,
                        ..c.clone()
                    }
                } else if shared {
                    // Closed again after a reopen: the copy takes the new content.
                    let (copy, responses, files) =
                        copy_content(tx, blobs, s, u, &c.id, now).await?;
                    db::delete_responses(tx, &c.id).await?;
                    new_responses.extend(responses);
                    new_files.extend(files);
                    RfiRow {
                        create_ms: c.create_ms,
                        ..copy
                    }
                } else {
                    RfiRow {
                        status: RfiStatus::Reopened as i64,
                        close_ms: None,
                        ..c.clone()
                    }
                };
                let updated = RfiRow {
                    version: c.version + 1,
                    origin_version: u.version,
                    update_ms: now,
                    ..updated
                };
                if !db::update_rfi(tx, &updated, c.version).await? {
                    anyhow::bail!("copy {} changed during the sync; retrying", c.id);
                }
            }
            Some(_) => {}
        }
    }
    // Many rows per statement, all in the caller's one transaction.
    db::insert(tx, &new_files).await?;
    db::insert(tx, &new_rfis).await?;
    db::insert(tx, &new_responses).await?;
    Ok(out)
}

#[async_trait]
impl SyncedTool for RfiSync {
    const FEATURE: Feature = Feature::Rfis;
    const CONTEXT: &'static str = "rfis";
    const WITHDRAW: &'static [&'static str] = db::WITHDRAW_COPIES;
    /// R6: copies stay, marked disconnected.
    const MARKS_DISCONNECTED: Option<&'static str> = Some("rfis");

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
        Ok(db::shared_rfi_ids(
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
        let (project_id, rfi_id) = match e.event_type.rsplit('.').next().unwrap_or_default() {
            "RfiClosed" => {
                let m: pb::RfiClosed = decode(e)?;
                (m.project_id, m.rfi_id)
            }
            "RfiReopened" => {
                let m: pb::RfiReopened = decode(e)?;
                (m.project_id, m.rfi_id)
            }
            "RfiDeleted" => {
                let m: pb::RfiDeleted = decode(e)?;
                (m.project_id, m.rfi_id)
            }
            _ => return Ok(None),
        };
        Ok(Some(Change {
            project_id,
            action_id: Some(rfi_id.clone()),
            record_ids: vec![rfi_id],
        }))
    }

    fn announce(&self, s: &SyncRow, change: &Change, copied: &Copied, live: bool) -> Vec<Envelope> {
        match &change.action_id {
            Some(rfi_id) if copied.items > 0 && live => {
                vec![events::rfis_copied(s, rfi_id, copied.items)]
            }
            _ => Vec::new(),
        }
    }

    fn initial_sync_completed(&self, s: &SyncRow) -> Envelope {
        events::initial_sync_completed(s)
    }
}
