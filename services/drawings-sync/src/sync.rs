//! The one-way sync. Events only say *which* upstream drawings changed; [`reconcile`] then
//! makes each connection's copies match the upstream's current published state. Replaying
//! an event, or applying two out of order, therefore changes nothing: every copy records the
//! upstream version it reflects and is rewritten only for a newer one.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use connectability_blobs::Blobs;
use connectability_events::Envelope;
use connectability_platform::{events::decode, input::Id};
use connectability_proto::{connections::v1::Feature, drawings::v1 as pb};
use connectability_store::Tx;
use connectability_sync::{Change, Copied, Engine, SyncedTool};

use crate::{
    db::{self, AreaRow, Copy, DrawingRow, FileRow, RevisionRow, SetRow, SyncRow},
    domain::{AREA, DRAWING, FILE, REVISION, SET},
    events,
};

fn copy_of(s: &SyncRow, origin_id: &str) -> Copy {
    Copy {
        connection_id: s.connection_id.clone(),
        origin_id: origin_id.to_string(),
        origin_project_id: s.upstream_project_id.clone(),
    }
}

/// Makes connection `s`'s copies of `upstream_ids` match the upstream drawings now (see
/// [`reconcile_many`]).
pub async fn reconcile(
    tx: &mut Tx,
    blobs: &Blobs,
    s: &SyncRow,
    upstream_ids: &[String],
    now: i64,
) -> anyhow::Result<Copied> {
    let mut out = reconcile_many(tx, blobs, std::slice::from_ref(s), upstream_ids, now).await?;
    Ok(out.pop().unwrap_or_default())
}

/// Copies of one connection's records, by upstream id.
fn by_connection<T>(
    rows: Vec<T>,
    copy: impl Fn(&T) -> &Copy,
) -> HashMap<String, HashMap<String, T>> {
    let mut out: HashMap<String, HashMap<String, T>> = HashMap::new();
    for r in rows {
        let c = copy(&r);
        let (connection, origin) = (c.connection_id.clone(), c.origin_id.clone());
        out.entry(connection).or_default().insert(origin, r);
    }
    out
}

/// Makes every connection's copies of `upstream_ids` (all from one upstream project) match
/// the upstream drawings now: areas, sets, drawing metadata (D8), published revisions with
/// their files (D1, D2, D3), deletions (D9). Never markups or custom fields (D4); copies
/// arrive unpublished (D5). The upstream is read once and each table's new rows for every
/// connection are written by one multi-row statement, so one change to fifty downstreams
/// costs about what it costs for one.
pub async fn reconcile_many(
    tx: &mut Tx,
    blobs: &Blobs,
    syncs: &[SyncRow],
    upstream_ids: &[String],
    now: i64,
) -> anyhow::Result<Vec<Copied>> {
    let Some(first) = syncs.first() else {
        return Ok(Vec::new());
    };
    let mut out = vec![Copied::default(); syncs.len()];
    let connection_ids: Vec<String> = syncs.iter().map(|s| s.connection_id.clone()).collect();
    let upstream =
        db::originals::<DrawingRow>(tx, &first.upstream_project_id, upstream_ids).await?;
    let ids: Vec<String> = upstream.iter().map(|d| d.id.clone()).collect();
    let published = db::revisions_of(tx, &ids, true).await?;
    let mut drawing_copies = by_connection(
        db::copies_in::<DrawingRow>(tx, &connection_ids, &ids).await?,
        |d| &d.copy,
    );
    // Only drawings with something published, or already copied, take part.
    let with_published: HashSet<&str> = published.iter().map(|r| r.drawing_id.as_str()).collect();
    let live_of = |copies: Option<&HashMap<String, DrawingRow>>| -> Vec<&DrawingRow> {
        upstream
            .iter()
            .filter(|d| {
                copies.is_some_and(|c| c.contains_key(&d.id))
                    || (d.deleted_ms.is_none() && with_published.contains(d.id.as_str()))
            })
            .collect()
    };

    // Areas (of any connection's live drawings) and sets, read once for every connection.
    let mut all_area_ids: Vec<String> = upstream
        .iter()
        .filter(|d| d.deleted_ms.is_none())
        .map(|d| d.area_id.clone())
        .collect();
    all_area_ids.sort();
    all_area_ids.dedup();
    let mut set_ids: Vec<String> = published.iter().map(|r| r.set_id.clone()).collect();
    set_ids.sort();
    set_ids.dedup();
    let areas: HashMap<String, AreaRow> = db::by_ids::<AreaRow>(tx, &all_area_ids)
        .await?
        .into_iter()
        .map(|a| (a.id.clone(), a))
        .collect();
    let sets: Vec<SetRow> = db::by_ids::<SetRow>(tx, &set_ids).await?;
    let area_copies = by_connection(
        db::copies_in::<AreaRow>(tx, &connection_ids, &all_area_ids).await?,
        |a| &a.copy,
    );
    let set_copies = by_connection(
        db::copies_in::<SetRow>(tx, &connection_ids, &set_ids).await?,
        |x| &x.copy,
    );

    // Areas and sets of every connection: create missing copies, follow renames.
    let mut area_maps: Vec<HashMap<String, String>> = Vec::with_capacity(syncs.len());
    let mut set_maps: Vec<HashMap<String, String>> = Vec::with_capacity(syncs.len());
    let (mut new_areas, mut new_sets) = (Vec::new(), Vec::new());
    for s in syncs {
        let mut area_ids: Vec<&str> = live_of(drawing_copies.get(&s.connection_id))
            .iter()
            .filter(|d| d.deleted_ms.is_none())
            .map(|d| d.area_id.as_str())
            .collect();
        area_ids.sort();
        area_ids.dedup();
        let copies = area_copies.get(&s.connection_id);
        let mut area_map = HashMap::new();
        for a in area_ids.iter().filter_map(|id| areas.get(*id)) {
            match copies.and_then(|c| c.get(&a.id)) {
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
                        ..a.clone()
                    });
                }
            }
        }
        area_maps.push(area_map);
        let copies = set_copies.get(&s.connection_id);
        let mut set_map = HashMap::new();
        for x in &sets {
            match copies.and_then(|c| c.get(&x.id)) {
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
                        ..x.clone()
                    });
                }
            }
        }
        set_maps.push(set_map);
    }
    // Areas and sets first: drawing rows and updates below refer to them.
    db::insert(tx, &new_areas).await?;
    db::insert(tx, &new_sets).await?;

    // Revisions already copied, and the files of those that may need copying.
    let rev_ids: Vec<String> = published.iter().map(|r| r.id.clone()).collect();
    let revision_copies = by_connection(
        db::copies_in::<RevisionRow>(tx, &connection_ids, &rev_ids).await?,
        |r| &r.copy,
    );
    let mut file_ids: Vec<String> = published.iter().map(|r| r.file_id.clone()).collect();
    file_ids.sort();
    file_ids.dedup();
    let files: HashMap<String, FileRow> = db::by_ids::<FileRow>(tx, &file_ids)
        .await?
        .into_iter()
        .map(|f| (f.id.clone(), f))
        .collect();

    let (mut new_drawings, mut new_files, mut new_revisions) = (Vec::new(), Vec::new(), Vec::new());
    let mut blob_copies = Vec::new();
    for (i, s) in syncs.iter().enumerate() {
        let out = &mut out[i];
        let mut copies = drawing_copies.remove(&s.connection_id).unwrap_or_default();
        let live: Vec<DrawingRow> = live_of(Some(&copies)).into_iter().cloned().collect();
        // Drawings: create, follow newer versions, mirror deletions.
        for d in &live {
            let copy = copies.get(&d.id).cloned();
            if d.deleted_ms.is_some() {
                if let Some(mut c) = copy.filter(|c| c.deleted_ms.is_none()) {
                    c.deleted_ms = Some(now);
                    c.origin_version = d.version;
                    c.update_ms = now;
                    db::update_drawing(tx, &c).await?;
                    out.deleted.push(c.number.clone());
                    copies.insert(d.id.clone(), c);
                }
                continue;
            }
            let area_id = area_maps[i].get(&d.area_id).cloned().unwrap_or_default();
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
                        ..d.clone()
                    };
                    copies.insert(d.id.clone(), c.clone());
                    new_drawings.push(c);
                    out.records += 1;
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
        let copied = revision_copies.get(&s.connection_id);
        for r in &published {
            if copied.is_some_and(|c| c.contains_key(&r.id)) {
                out.held += 1;
                continue;
            }
            let Some(drawing) = copies.get(&r.drawing_id).filter(|c| c.deleted_ms.is_none()) else {
                continue;
            };
            let Some(file) = files.get(&r.file_id) else {
                continue;
            };
            let file_id = Id::generate(FILE).to_string();
            let copy = file.copied_to(file_id.clone(), &s.copy_target(DrawingSync::CONTEXT), now);
            blob_copies.push((file.object_key.clone(), copy.object_key.clone()));
            new_files.push(copy);
            new_revisions.push(RevisionRow {
                id: Id::generate(REVISION).to_string(),
                drawing_id: drawing.id.clone(),
                project_id: s.downstream_project_id.clone(),
                set_id: set_maps[i].get(&r.set_id).cloned().unwrap_or_default(),
                file_id,
                custom_fields: "{}".into(),
                published: false,
                publish_ms: None,
                copy: copy_of(s, &r.id),
                create_ms: now,
                ..r.clone()
            });
            out.items += 1;
        }
    }

    // The files first, many at a time; then many rows per statement, all in the caller's
    // one transaction.
    blobs.copy_many(&blob_copies).await?;
    db::insert(tx, &new_files).await?;
    db::insert(tx, &new_drawings).await?;
    db::insert(tx, &new_revisions).await?;
    Ok(out)
}

/// Drawings on the shared sync engine.
pub struct DrawingSync(pub Engine);

#[async_trait]
impl SyncedTool for DrawingSync {
    const FEATURE: Feature = Feature::Drawings;
    const CONTEXT: &'static str = "drawings";
    const WITHDRAW: &'static [&'static str] = db::WITHDRAW_COPIES;

    fn engine(&self) -> &Engine {
        &self.0
    }

    /// Every published revision of the upstream project (D1).
    async fn shareable_count(&self, tx: &mut Tx, s: &SyncRow) -> anyhow::Result<i64> {
        Ok(db::published_revision_count(tx, &s.upstream_project_id).await?)
    }

    async fn backfill_batch(
        &self,
        tx: &mut Tx,
        s: &SyncRow,
        cursor: &str,
        limit: Option<i64>,
    ) -> anyhow::Result<Vec<String>> {
        Ok(db::backfill_batch(tx, &s.upstream_project_id, cursor, limit).await?)
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

    async fn reconcile_many(
        &self,
        tx: &mut Tx,
        syncs: &[SyncRow],
        record_ids: &[String],
        now_ms: i64,
    ) -> anyhow::Result<Vec<Copied>> {
        reconcile_many(tx, &self.0.blobs, syncs, record_ids, now_ms).await
    }

    fn changed(&self, e: &Envelope) -> anyhow::Result<Option<Change>> {
        let (project_id, record_ids, action_id) =
            match e.event_type.rsplit('.').next().unwrap_or_default() {
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
                _ => return Ok(None),
            };
        Ok(Some(Change {
            project_id,
            record_ids,
            action_id,
        }))
    }

    /// N6: one message per publish per downstream; N7: one per delete.
    fn announce(&self, s: &SyncRow, change: &Change, copied: &Copied, live: bool) -> Vec<Envelope> {
        let mut out = Vec::new();
        // A publish whose revisions an earlier publish's copy already brought (that copy
        // takes every published revision of its drawings) still gets its message, counting a
        // revision per drawing it published.
        let revisions = match copied.items {
            0 if copied.held > 0 => change.record_ids.len() as i64,
            n => n,
        };
        if let Some(publish_id) = &change.action_id
            && revisions > 0
            && live
        {
            out.push(events::drawings_copied(s, publish_id, revisions));
        }
        if !copied.deleted.is_empty() {
            out.push(events::drawings_deleted_upstream(s, &copied.deleted));
        }
        out
    }

    fn initial_sync_completed(&self, s: &SyncRow) -> Envelope {
        events::initial_sync_completed(s)
    }
}

/// Consumes the service's own drawing events and copies upstream changes downstream (the
/// engine's consumer, under the name drawings-sync has always used).
pub use connectability_sync::ToolEvents as DrawingEvents;
