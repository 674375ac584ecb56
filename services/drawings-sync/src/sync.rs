//! The one-way sync. Events only say *which* upstream drawings changed; [`reconcile`] then
//! makes each connection's copies match the upstream's current published state. Replaying
//! an event, or applying two out of order, therefore changes nothing: every copy records the
//! upstream version it reflects and is rewritten only for a newer one.

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use connectability_blobs::{Blobs, key};
use connectability_events::Envelope;
use connectability_platform::{clock::Clock, events::decode, input::Id};
use connectability_proto::{
    connections::v1::{self as cpb, ConnectionStatus, Feature},
    drawings::v1 as pb,
};
use connectability_store::{Db, Tx, inbox::InboxHandler, outbox};
use tokio::sync::Notify;

use crate::{
    db::{self, AreaRow, Copy, DrawingRow, FileRow, RevisionRow, SetRow, SyncRow},
    domain::{AREA, DRAWING, FILE, REVISION, SET, SyncState},
    events,
};

/// Upstream drawings copied per backfill transaction.
const BACKFILL_BATCH: i64 = 200;

/// What one reconcile did downstream.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Copied {
    pub revisions: i64,
    pub drawings: i64,
    /// Numbers of drawings whose copies were deleted because the upstream deleted them.
    pub deleted: Vec<String>,
}

fn copy_of(s: &SyncRow, origin_id: &str) -> Copy {
    Copy {
        connection_id: s.connection_id.clone(),
        origin_id: origin_id.to_string(),
        origin_project_id: s.upstream_project_id.clone(),
    }
}

/// Makes connection `s`'s copies of `upstream_ids` match the upstream drawings now: areas,
/// sets, drawing metadata (D8), published revisions with their files (D1, D2, D3), deletions
/// (D9). Never markups or custom fields (D4); copies arrive unpublished (D5).
pub async fn reconcile(
    tx: &mut Tx,
    blobs: &Blobs,
    s: &SyncRow,
    upstream_ids: &[String],
    now: i64,
) -> anyhow::Result<Copied> {
    let mut out = Copied::default();
    let upstream = db::drawings_by_ids(tx, &s.upstream_project_id, upstream_ids).await?;
    let ids: Vec<String> = upstream.iter().map(|d| d.id.clone()).collect();
    let published = db::revisions_of(tx, &ids, true).await?;
    let mut copies: HashMap<String, DrawingRow> =
        db::copies::<DrawingRow>(tx, &s.connection_id, &ids)
            .await?
            .into_iter()
            .map(|d| (d.copy.origin_id.clone(), d))
            .collect();
    // Only drawings with something published, or already copied, take part.
    let live: Vec<&DrawingRow> = upstream
        .iter()
        .filter(|d| {
            copies.contains_key(&d.id)
                || (d.deleted_ms.is_none() && published.iter().any(|r| r.drawing_id == d.id))
        })
        .collect();

    let mut area_ids: Vec<String> = live
        .iter()
        .filter(|d| d.deleted_ms.is_none())
        .map(|d| d.area_id.clone())
        .collect();
    area_ids.sort();
    area_ids.dedup();
    let mut set_ids: Vec<String> = published.iter().map(|r| r.set_id.clone()).collect();
    set_ids.sort();
    set_ids.dedup();

    // Areas and sets: create missing copies, follow renames.
    let mut area_map = HashMap::new();
    let mut new_areas = Vec::new();
    let area_copies: HashMap<String, AreaRow> =
        db::copies::<AreaRow>(tx, &s.connection_id, &area_ids)
            .await?
            .into_iter()
            .map(|a| (a.copy.origin_id.clone(), a))
            .collect();
    for a in db::by_ids::<AreaRow>(tx, &area_ids).await? {
        match area_copies.get(&a.id) {
            Some(c) => {
                if c.name != a.name || c.description != a.description {
                    db::update_area(
                        tx,
                        &AreaRow {
                            name: a.name.clone(),
                            description: a.description.clone(),
                            ..c.clone()
                        },
                    )
                    .await?;
                }
                area_map.insert(a.id.clone(), c.id.clone());
            }
            None => {
                let id = Id::generate(AREA).to_string();
                area_map.insert(a.id.clone(), id.clone());
                new_areas.push(AreaRow {
                    id,
                    project_id: s.downstream_project_id.clone(),
                    copy: copy_of(s, &a.id),
                    create_ms: now,
                    ..a
                });
            }
        }
    }
    let mut set_map = HashMap::new();
    let mut new_sets = Vec::new();
    let set_copies: HashMap<String, SetRow> = db::copies::<SetRow>(tx, &s.connection_id, &set_ids)
        .await?
        .into_iter()
        .map(|x| (x.copy.origin_id.clone(), x))
        .collect();
    for x in db::by_ids::<SetRow>(tx, &set_ids).await? {
        match set_copies.get(&x.id) {
            Some(c) => {
                if c.name != x.name || c.set_date != x.set_date {
                    db::update_set(
                        tx,
                        &SetRow {
                            name: x.name.clone(),
                            set_date: x.set_date.clone(),
                            ..c.clone()
                        },
                    )
                    .await?;
                }
                set_map.insert(x.id.clone(), c.id.clone());
            }
            None => {
                let id = Id::generate(SET).to_string();
                set_map.insert(x.id.clone(), id.clone());
                new_sets.push(SetRow {
                    id,
                    project_id: s.downstream_project_id.clone(),
                    copy: copy_of(s, &x.id),
                    create_ms: now,
                    ..x
                });
            }
        }
    }

    // Areas and sets first: drawing rows and updates below refer to them.
    db::insert(tx, &new_areas).await?;
    db::insert(tx, &new_sets).await?;

    // Drawings: create, follow newer versions, mirror deletions.
    let mut new_drawings = Vec::new();
    for d in &live {
        let copy = copies.get(&d.id).cloned();
        if d.deleted_ms.is_some() {
            if let Some(mut c) = copy.filter(|c| c.deleted_ms.is_none()) {
                c.deleted_ms = Some(now);
                c.origin_version = d.version;
                c.update_ms = now;
                db::update_drawing(tx, &c).await?;
                out.deleted.push(c.number.clone());
            }
            continue;
        }
        let area_id = area_map.get(&d.area_id).cloned().unwrap_or_default();
        match copy {
            None => {
                let c = DrawingRow {
                    id: Id::generate(DRAWING).to_string(),
                    project_id: s.downstream_project_id.clone(),
                    area_id,
                    version: 1,
                    deleted_ms: None,
                    copy: copy_of(s, &d.id),
                    origin_version: d.version,
                    create_ms: now,
                    update_ms: now,
                    ..(*d).clone()
                };
                copies.insert(d.id.clone(), c.clone());
                new_drawings.push(c);
                out.drawings += 1;
            }
            Some(c) if d.version > c.origin_version => {
                let updated = DrawingRow {
                    area_id,
                    number: d.number.clone(),
                    title: d.title.clone(),
                    discipline_name: d.discipline_name.clone(),
                    discipline_position: d.discipline_position,
                    obsolete: d.obsolete,
                    version: c.version + 1,
                    origin_version: d.version,
                    update_ms: now,
                    ..c
                };
                db::update_drawing(tx, &updated).await?;
                copies.insert(d.id.clone(), updated);
            }
            Some(_) => {}
        }
    }

    // Revisions and their files, under the downstream company's own prefix.
    let rev_ids: Vec<String> = published.iter().map(|r| r.id.clone()).collect();
    let copied: Vec<String> = db::copies::<RevisionRow>(tx, &s.connection_id, &rev_ids)
        .await?
        .into_iter()
        .map(|r| r.copy.origin_id)
        .collect();
    let todo: Vec<&RevisionRow> = published
        .iter()
        .filter(|r| {
            !copied.contains(&r.id)
                && copies
                    .get(&r.drawing_id)
                    .is_some_and(|c| c.deleted_ms.is_none())
        })
        .collect();
    let file_ids: Vec<String> = todo.iter().map(|r| r.file_id.clone()).collect();
    let files: HashMap<String, FileRow> = db::by_ids::<FileRow>(tx, &file_ids)
        .await?
        .into_iter()
        .map(|f| (f.id.clone(), f))
        .collect();
    let mut new_files = Vec::new();
    let mut new_revisions = Vec::new();
    for r in todo {
        let Some(file) = files.get(&r.file_id) else {
            continue;
        };
        let file_id = Id::generate(FILE).to_string();
        let object_key = key(&s.downstream_company_id, &s.downstream_project_id, &file_id);
        blobs.copy(&file.object_key, &object_key).await?;
        new_files.push(FileRow {
            id: file_id.clone(),
            project_id: s.downstream_project_id.clone(),
            company_id: s.downstream_company_id.clone(),
            object_key,
            create_ms: now,
            ..file.clone()
        });
        new_revisions.push(RevisionRow {
            id: Id::generate(REVISION).to_string(),
            drawing_id: copies[&r.drawing_id].id.clone(),
            project_id: s.downstream_project_id.clone(),
            set_id: set_map.get(&r.set_id).cloned().unwrap_or_default(),
            file_id,
            custom_fields: "{}".into(),
            published: false,
            publish_ms: None,
            copy: copy_of(s, &r.id),
            create_ms: now,
            ..r.clone()
        });
        out.revisions += 1;
    }

    // Many rows per statement, all in the caller's one transaction.
    db::insert(tx, &new_files).await?;
    db::insert(tx, &new_drawings).await?;
    db::insert(tx, &new_revisions).await?;
    Ok(out)
}

/// What the handlers and the backfill worker share.
pub struct SyncCore {
    pub db: Db,
    pub blobs: Blobs,
    pub clock: Arc<dyn Clock>,
    pub relay: outbox::RelayWaker,
    pub backfill: Arc<Notify>,
}

/// Consumes connection events: the projection of connections that carry DRAWINGS.
pub struct ConnectionEvents(pub Arc<SyncCore>);

fn has_drawings(features: &[i32]) -> bool {
    features.contains(&(Feature::Drawings as i32))
}

impl SyncCore {
    async fn start(&self, tx: &mut Tx, c: &cpb::Connection) -> anyhow::Result<()> {
        let total = db::published_revision_count(tx, &c.upstream_project_id).await?;
        let row = SyncRow {
            connection_id: c.id.clone(),
            upstream_project_id: c.upstream_project_id.clone(),
            downstream_project_id: c.downstream_project_id.clone(),
            downstream_company_id: c.downstream_company_id.clone(),
            state: SyncState::Backfilling as i64,
            items_total: total,
            items_copied: 0,
            drawings_copied: 0,
            backfill_cursor: String::new(),
            // Event times come from the wall clock; so does this, to compare with them.
            start_ms: connectability_store::now_ms(),
            last_copy_ms: None,
            update_ms: self.clock.now_ms(),
        };
        db::start_sync(tx, &row).await?;
        self.backfill.notify_one();
        Ok(())
    }
}

#[async_trait]
impl InboxHandler for ConnectionEvents {
    async fn handle(&self, tx: &mut Tx, e: &Envelope) -> anyhow::Result<()> {
        let core = &self.0;
        let now = core.clock.now_ms();
        match e.event_type.rsplit('.').next().unwrap_or_default() {
            "ConnectionActivated" => {
                let m: cpb::ConnectionActivated = decode(e)?;
                let c = m.connection.unwrap_or_default();
                if has_drawings(&c.features) {
                    core.start(tx, &c).await?;
                }
            }
            "ConnectionFeaturesAdded" => {
                let m: cpb::ConnectionFeaturesAdded = decode(e)?;
                let c = m.connection.unwrap_or_default();
                if has_drawings(&m.added_features) && c.status() == ConnectionStatus::Active {
                    core.start(tx, &c).await?;
                }
            }
            "ConnectionDisconnected" => {
                // D12, C13: nothing more is applied; copies stay.
                let m: cpb::ConnectionDisconnected = decode(e)?;
                db::stop_sync(tx, &m.connection.unwrap_or_default().id, now).await?;
            }
            "ConnectionUndone" => {
                // C12: an undone connection leaves no copies behind.
                let m: cpb::ConnectionUndone = decode(e)?;
                let id = m.connection.unwrap_or_default().id;
                db::stop_sync(tx, &id, now).await?;
                for key in db::withdraw_copies(tx, &id).await? {
                    core.blobs.delete(&key).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Consumes the service's own drawing events and copies upstream changes downstream.
pub struct DrawingEvents(pub Arc<SyncCore>);

#[async_trait]
impl InboxHandler for DrawingEvents {
    async fn handle(&self, tx: &mut Tx, e: &Envelope) -> anyhow::Result<()> {
        let core = &self.0;
        let now = core.clock.now_ms();
        let (project, drawings, kind) = match e.event_type.rsplit('.').next().unwrap_or_default() {
            "RevisionsPublished" => {
                let m: pb::RevisionsPublished = decode(e)?;
                (m.project_id, m.drawing_ids, Some(m.publish_id))
            }
            "DrawingUpdated" => {
                let m: pb::DrawingUpdated = decode(e)?;
                (m.project_id, vec![m.drawing_id], None)
            }
            "DrawingDeleted" => {
                let m: pb::DrawingDeleted = decode(e)?;
                (m.project_id, vec![m.drawing_id], None)
            }
            _ => return Ok(()),
        };
        let mut out = Vec::new();
        for s in db::syncs_from(tx, &project).await? {
            let copied = reconcile(tx, &core.blobs, &s, &drawings, now).await?;
            // A change made before this connection started copying is the backfill's: it is
            // copied all the same (reconcile is idempotent), but counted and announced once,
            // by the backfill.
            let live = e.time_ms >= s.start_ms;
            if copied.revisions > 0 || copied.drawings > 0 {
                db::count_copies(
                    tx,
                    &s.connection_id,
                    copied.revisions,
                    copied.drawings,
                    live,
                    now,
                )
                .await?;
            }
            if let Some(publish_id) = &kind
                && copied.revisions > 0
                && live
            {
                out.push(events::drawings_copied(&s, publish_id, copied.revisions));
            }
            if !copied.deleted.is_empty() {
                out.push(events::drawings_deleted_upstream(&s, &copied.deleted));
            }
        }
        outbox::enqueue(tx, &out).await?;
        core.relay.wake();
        Ok(())
    }
}

/// Runs backfills until `shutdown`: batches of upstream drawings, one transaction each, until
/// a connection has everything that was published, then IN_SYNC and `InitialSyncCompleted`.
pub async fn run_backfills(core: Arc<SyncCore>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        if let Err(e) = backfill_once(&core).await {
            tracing::warn!(error = %e, "backfill failed; retrying");
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = core.backfill.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// Advances every backfilling connection to completion (or until another worker moves it).
pub async fn backfill_once(core: &SyncCore) -> anyhow::Result<()> {
    let pending = db::backfilling(&mut *core.db.pool().acquire().await?).await?;
    for mut s in pending {
        loop {
            let now = core.clock.now_ms();
            let mut tx = core.db.begin().await?;
            let batch = db::backfill_batch(
                &mut tx,
                &s.upstream_project_id,
                &s.backfill_cursor,
                BACKFILL_BATCH,
            )
            .await?;
            let Some(last) = batch.last().cloned() else {
                if db::finish_backfill(&mut tx, &s.connection_id, now).await? {
                    let done = db::get_sync(&mut tx, &s.connection_id)
                        .await?
                        .unwrap_or(s.clone());
                    outbox::enqueue(&mut tx, &[events::initial_sync_completed(&done)]).await?;
                }
                tx.commit().await?;
                core.relay.wake();
                break;
            };
            let copied = reconcile(&mut tx, &core.blobs, &s, &batch, now).await?;
            if !db::advance_cursor(&mut tx, &s.connection_id, &s.backfill_cursor, &last, now)
                .await?
            {
                tx.rollback().await?;
                break;
            }
            db::count_copies(
                &mut tx,
                &s.connection_id,
                copied.revisions,
                copied.drawings,
                false,
                now,
            )
            .await?;
            tx.commit().await?;
            s.backfill_cursor = last;
        }
    }
    Ok(())
}
