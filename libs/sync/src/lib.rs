//! The one-way sync engine that drawings-sync, rfi-sync and submittal-sync share.
//!
//! A tool service describes its tool with [`SyncedTool`]: what counts as shareable upstream,
//! how to make one connection's copies of some upstream records match the upstream now
//! (`reconcile`), what to announce, and how to withdraw or mark copies. The engine does the
//! rest the same way for every tool:
//! - [`ConnectionEvents`]: the projection of connections (`sync_connections`) from
//!   connection events; a connection that gains the tool's feature starts a backfill,
//!   disconnect stops copying (copies stay), undo stops and withdraws every copy;
//! - [`ToolEvents`]: the tool's own events name which upstream records changed; the event's
//!   inbox transaction queues one work item per connection from that project, and copy
//!   workers ([`run_work`], several per replica, shared by all replicas) reconcile each item
//!   in its own transaction, a connection's items in order;
//! - [`run_backfills`]: batches of upstream records per transaction behind a cursor moved by
//!   a conditional update, each connection's backfill claimed by one replica at a time (so
//!   replicas never copy twice), then IN_SYNC and the tool's
//!   "initial sync complete" event;
//! - [`status`]: sync status and the stream `WatchSyncStatus` serves.
//!
//! Events only say *which* records changed, and reconcile copies the upstream's current
//! state, so a repeated or reordered event changes nothing.

pub mod api;
pub mod db;
pub mod domain;
pub mod files;
pub mod messages;
pub mod metrics;
pub mod service;
pub mod status;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use connectability_events::Envelope;
use connectability_platform::{clock::Clock, events::decode};
use connectability_proto::connections::v1::{self as cpb, ConnectionStatus, Feature};
use connectability_store::{Db, Tx, inbox::InboxHandler, outbox};
use tokio::sync::Notify;

pub use db::{Copy, SyncRow, copies, copies_in, originals};

/// Upstream records copied per backfill transaction.
pub const BACKFILL_BATCH: i64 = 200;

/// Copy workers per replica on Postgres.
pub const COPY_WORKERS: usize = 4;

/// The stored sync states (each tool proto's SyncState values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    Backfilling = 1,
    InSync = 2,
    Stopped = 3,
}

/// What one reconcile did downstream.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Copied {
    /// Items newly copied (the unit the tool counts: revisions, RFIs).
    pub items: i64,
    /// Records newly copied (drawings, RFIs).
    pub records: i64,
    /// Names of records whose copies were deleted because the upstream deleted them.
    pub deleted: Vec<String>,
    /// Items of the changed records the downstream already held: with `items` at 0, the
    /// change was copied ahead, by the reconcile of an earlier change to the same records
    /// (which copies everything they have), and still happened for this downstream.
    pub held: i64,
}

/// Which upstream records a tool event changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub project_id: String,
    pub record_ids: Vec<String>,
    /// Set for a publish-like change that the tool announces once per downstream.
    pub action_id: Option<String>,
}

/// What the engine needs from the service around a tool: its database, stored files, clock,
/// outbox relay and the connection-manager client. One per tool service, shared by its
/// handlers, copy workers and backfill.
pub struct Engine {
    pub db: Db,
    pub blobs: connectability_blobs::Blobs,
    pub clock: Arc<dyn Clock>,
    pub relay: outbox::RelayWaker,
    /// Woken when a backfill starts or copy work is queued.
    pub backfill: Arc<Notify>,
    /// Confirms what a connection event claims before copying starts or stops.
    pub connections: connectability_platform::connections::ConnectionsGateway,
    /// How often a failing copy work item is tried before it is parked.
    pub work_retry: WorkRetry,
}

impl Engine {
    pub fn new(
        db: Db,
        blobs: connectability_blobs::Blobs,
        clock: Arc<dyn Clock>,
        relay: outbox::RelayWaker,
        connections: connectability_platform::connections::ConnectionsGateway,
    ) -> Self {
        Self {
            db,
            blobs,
            clock,
            relay,
            backfill: Arc::default(),
            connections,
            work_retry: WorkRetry::default(),
        }
    }
}

/// Attempts at a copy work item: after a failure it waits `first_backoff`, doubling each
/// time up to `max_backoff`; the `max_attempts`-th failure parks it. A worker's claim on an
/// item lasts `lease` unless its heartbeat extends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkRetry {
    pub max_attempts: i64,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    pub lease: Duration,
}

impl Default for WorkRetry {
    /// Ten attempts over about nine minutes: long enough to ride out a storage or database
    /// outage, short enough that a poison item shows (FAILED, a dead letter, the alert) the
    /// same hour.
    fn default() -> Self {
        Self {
            max_attempts: 10,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            lease: Duration::from_secs(10),
        }
    }
}

impl WorkRetry {
    /// The wait after the `attempts`-th failure.
    pub fn backoff(&self, attempts: i64) -> Duration {
        let doublings = attempts.saturating_sub(1).clamp(0, 30) as u32;
        self.first_backoff
            .saturating_mul(2u32.saturating_pow(doublings))
            .min(self.max_backoff)
    }
}

/// The `dead_letters.consumer` under which a tool's parked copy work is listed (and from
/// which an operator's replay takes it back): `<context>-copy-work`.
pub fn parked_work_consumer(context: &str) -> String {
    format!("{context}-copy-work")
}

/// One tool's side of the sync. Every method that takes a transaction runs inside the
/// engine's transaction for the event or backfill batch.
#[async_trait]
pub trait SyncedTool: Send + Sync + 'static {
    /// The connection feature that carries this tool.
    const FEATURE: Feature;
    /// The events context of the tool's own events (`drawings`, `rfis`), and the tool's part
    /// of its copies' object keys ([`connectability_blobs::CopyTarget`]).
    const CONTEXT: &'static str;

    fn engine(&self) -> &Engine;

    /// The backfill's next upstream records for `s`: shareable ids after `cursor`, in id
    /// order, at most `limit` (every one with `None`).
    async fn backfill_batch(
        &self,
        tx: &mut Tx,
        s: &SyncRow,
        cursor: &str,
        limit: Option<i64>,
    ) -> anyhow::Result<Vec<String>>;

    /// How many items a new connection's backfill will copy: by default one per shareable
    /// record (a tool whose records hold several items, as drawings hold revisions, says).
    async fn shareable_count(&self, tx: &mut Tx, s: &SyncRow) -> anyhow::Result<i64> {
        Ok(self.backfill_batch(tx, s, "", None).await?.len() as i64)
    }

    /// Makes connection `s`'s copies of `record_ids` match the upstream records now.
    async fn reconcile(
        &self,
        tx: &mut Tx,
        s: &SyncRow,
        record_ids: &[String],
        now_ms: i64,
    ) -> anyhow::Result<Copied>;

    /// [`SyncedTool::reconcile`] for several connections from one upstream project at once,
    /// one [`Copied`] per connection in `syncs`' order. This default reconciles them one after
    /// another; a tool overrides it to read the upstream once and write every connection's
    /// rows with one statement per table.
    async fn reconcile_many(
        &self,
        tx: &mut Tx,
        syncs: &[SyncRow],
        record_ids: &[String],
        now_ms: i64,
    ) -> anyhow::Result<Vec<Copied>> {
        let mut out = Vec::with_capacity(syncs.len());
        for s in syncs {
            out.push(self.reconcile(tx, s, record_ids, now_ms).await?);
        }
        Ok(out)
    }

    /// Which upstream records a tool event changed; `None` for events that copy nothing.
    fn changed(&self, e: &Envelope) -> anyhow::Result<Option<Change>>;

    /// Events that tell people what a change copied to `s` (`live`: made after `s` started).
    fn announce(&self, s: &SyncRow, change: &Change, copied: &Copied, live: bool) -> Vec<Envelope>;

    /// The event that says `s`'s backfill is complete (N5).
    fn initial_sync_completed(&self, s: &SyncRow) -> Envelope;

    /// Statements that remove every row a connection's copies made, run in order with the
    /// connection id as `$1` when it is undone (C12); the engine then removes every file
    /// the connection copied (see [`files::withdraw`]).
    const WITHDRAW: &'static [&'static str];

    /// The table whose copies are marked `disconnected` (with `update_ms`) when their
    /// connection is disconnected; with `None` copies stay exactly as they are.
    const MARKS_DISCONNECTED: Option<&'static str> = None;
}

fn carries(features: &[i32], f: Feature) -> bool {
    features.contains(&(f as i32))
}

/// The projection row of connection `c` as its event of `version` leaves it.
fn row_of(c: &cpb::Connection, state: SyncState, now_ms: i64, version: i64) -> SyncRow {
    SyncRow {
        connection_id: c.id.clone(),
        upstream_project_id: c.upstream_project_id.clone(),
        downstream_project_id: c.downstream_project_id.clone(),
        downstream_company_id: c.downstream_company_id.clone(),
        state: state as i64,
        items_total: 0,
        items_copied: 0,
        records_copied: 0,
        backfill_cursor: String::new(),
        // Event times come from the wall clock; so does this, to compare with them.
        start_ms: connectability_store::now_ms(),
        last_copy_ms: None,
        update_ms: now_ms,
        connection_version: version,
        failure: None,
    }
}

async fn start<T: SyncedTool>(
    tool: &T,
    tx: &mut Tx,
    c: &cpb::Connection,
    version: i64,
) -> anyhow::Result<()> {
    let parts = tool.engine();
    let mut row = row_of(c, SyncState::Backfilling, parts.clock.now_ms(), version);
    row.items_total = tool.shareable_count(tx, &row).await?;
    db::start_sync(tx, &row).await?;
    parts.backfill.notify_one();
    Ok(())
}

/// Consumes connection events: the projection of the connections that carry the tool.
pub struct ConnectionEvents<T>(pub Arc<T>);

#[async_trait]
impl<T: SyncedTool> InboxHandler for ConnectionEvents<T> {
    async fn handle(&self, tx: &mut Tx, e: &Envelope) -> anyhow::Result<()> {
        apply_connection_event(&*self.0, tx, e).await
    }
}

/// Applies one connection event to the projection (see [`ConnectionEvents`]). Delivery
/// order is not trusted: an event whose connection version (connection-manager counts each
/// change of a connection) is not above the last one applied changes nothing: one
/// redelivered after a failure, or a late activation after an undo or disconnect. Producers'
/// clocks play no part, so skew between connection-manager replicas cannot reorder them.
pub async fn apply_connection_event<T: SyncedTool>(
    tool: &T,
    tx: &mut Tx,
    e: &Envelope,
) -> anyhow::Result<()> {
    let now = tool.engine().clock.now_ms();
    let kind = e.event_type.rsplit('.').next().unwrap_or_default();
    let (c, carried) = match kind {
        "ConnectionActivated" => {
            let m: cpb::ConnectionActivated = decode(e)?;
            let c = m.connection.unwrap_or_default();
            let carried = carries(&c.features, T::FEATURE);
            (c, carried)
        }
        "ConnectionFeaturesAdded" => {
            let m: cpb::ConnectionFeaturesAdded = decode(e)?;
            let c = m.connection.unwrap_or_default();
            let carried =
                carries(&m.added_features, T::FEATURE) && c.status() == ConnectionStatus::Active;
            (c, carried)
        }
        "ConnectionDisconnected" => {
            let m: cpb::ConnectionDisconnected = decode(e)?;
            let c = m.connection.unwrap_or_default();
            let carried = carries(&c.features, T::FEATURE);
            (c, carried)
        }
        "ConnectionUndone" => {
            let m: cpb::ConnectionUndone = decode(e)?;
            let c = m.connection.unwrap_or_default();
            let carried = carries(&c.features, T::FEATURE);
            (c, carried)
        }
        _ => return Ok(()),
    };
    let version = c.version;
    let known = db::get_sync(tx, &c.id).await?;
    if known
        .as_ref()
        .is_some_and(|s| s.connection_version >= version)
    {
        tracing::info!(connection = %c.id, event = kind, "stale connection event ignored");
        return Ok(());
    }
    let acts = match kind {
        "ConnectionActivated" | "ConnectionFeaturesAdded" => carried,
        _ => carried || known.is_some(),
    };
    if !acts {
        return Ok(());
    }
    // An event on the bus is a claim; connection-manager holds the truth. Copying starts or
    // stops only for a connection it holds, with the same projects, in the state the event
    // says (a forged or replayed event changes nothing).
    let current = tool.engine().connections.current(&c.id).await?;
    let Some(c) = current.filter(|now| domain::confirms(kind, &c, now, T::FEATURE)) else {
        metrics::UNCONFIRMED_EVENTS
            .with_label_values(&[T::CONTEXT])
            .inc();
        tracing::warn!(
            connection = %c.id,
            event = kind,
            event_id = %e.id,
            "connection event not confirmed by connection-manager; ignored"
        );
        return Ok(());
    };
    match kind {
        "ConnectionActivated" | "ConnectionFeaturesAdded" => {
            start(tool, tx, &c, version).await?;
        }
        "ConnectionDisconnected" => {
            // Nothing more is applied; copies stay, and bytes no copy names go.
            let stopped = row_of(&c, SyncState::Stopped, now, version);
            db::stop_sync(tx, &stopped).await?;
            if let Some(table) = T::MARKS_DISCONNECTED {
                db::mark_disconnected(tx, table, &c.id, now).await?;
            }
            files::sweep(tx, &tool.engine().blobs, &stopped.copy_target(T::CONTEXT)).await?;
        }
        "ConnectionUndone" => {
            // C12: an undone connection leaves no copies behind.
            let stopped = row_of(&c, SyncState::Stopped, now, version);
            db::stop_sync(tx, &stopped).await?;
            db::withdraw_copies(tx, T::WITHDRAW, &c.id).await?;
            files::withdraw(tx, &tool.engine().blobs, &stopped.copy_target(T::CONTEXT)).await?;
        }
        _ => {}
    }
    Ok(())
}

/// Consumes the tool's own events and copies upstream changes to every connection.
pub struct ToolEvents<T>(pub Arc<T>);

#[async_trait]
impl<T: SyncedTool> InboxHandler for ToolEvents<T> {
    async fn handle(&self, tx: &mut Tx, e: &Envelope) -> anyhow::Result<()> {
        apply_tool_event(&*self.0, tx, e).await
    }

    /// Only events that change upstream records (not, say, the copies' own announcements);
    /// one that cannot be read goes through `handle`, so it is retried and dead-lettered.
    fn wants(&self, e: &Envelope) -> bool {
        self.0.changed(e).map_or(true, |c| c.is_some())
    }

    fn after_commit(&self) {
        self.0.engine().backfill.notify_waiters();
    }
}

/// Applies one tool event: one work item per connection copying from the event's project,
/// queued in the event's inbox transaction (see [`run_work`] for the copying).
pub async fn apply_tool_event<T: SyncedTool>(
    tool: &T,
    tx: &mut Tx,
    e: &Envelope,
) -> anyhow::Result<()> {
    let Some(change) = tool.changed(e)? else {
        return Ok(());
    };
    let traceparent = connectability_platform::telemetry::current_traceparent();
    let work: Vec<db::WorkRow> = db::syncs_from(tx, &change.project_id)
        .await?
        .into_iter()
        .map(|s| db::WorkRow {
            id: connectability_platform::input::Id::generate("wrk").to_string(),
            connection_id: s.connection_id,
            record_ids: change.record_ids.clone(),
            action_id: change.action_id.clone().unwrap_or_default(),
            event_ms: e.time_ms,
            traceparent: traceparent.clone(),
        })
        .collect();
    // The workers are woken once this commits (`after_commit`); they also poll.
    db::enqueue_work(tx, &work).await?;
    Ok(())
}

/// Copies queued work until `shutdown`: batches of the oldest item of many connections, each
/// batch reconciled, counted and announced in one transaction that also removes its items
/// ([`work_once`]). Several workers (and replicas) share the queue; a connection's items
/// apply in order.
pub async fn run_work<T: SyncedTool>(
    tool: Arc<T>,
    worker: String,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut last_replay_check = std::time::Instant::now();
    loop {
        if last_replay_check.elapsed() >= Duration::from_secs(1) {
            last_replay_check = std::time::Instant::now();
            if let Err(e) = replay_parked_work(&*tool).await {
                tracing::warn!(error = %e, context = T::CONTEXT, "replaying parked copy work failed");
            }
        }
        match work_once(&*tool, &worker).await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, context = T::CONTEXT, "copy failed; retrying"),
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tool.engine().backfill.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// Work items one copy transaction takes at most.
pub const WORK_BATCH_ITEMS: i64 = 64;

/// Upstream records (summed over its items) one copy transaction reconciles at most: enough
/// that one change to many connections is one transaction, small enough that a large change
/// still spreads over every worker.
pub const WORK_BATCH_RECORDS: usize = 5_000;

/// Claims a batch of work items (the heads of up to [`WORK_BATCH_ITEMS`] connections) and
/// applies them in one transaction; false when there was nothing to take. Should that
/// transaction fail, each item is tried again alone, so one failing item never holds back
/// the others.
pub async fn work_once<T: SyncedTool>(tool: &T, worker: &str) -> anyhow::Result<bool> {
    let parts = tool.engine();
    let now = connectability_store::now_ms();
    let stale_before = now - parts.work_retry.lease.as_millis() as i64;
    let mut conn = parts.db.pool().acquire().await?;
    let mut wanted = Vec::new();
    let mut records = 0;
    for w in db::claimable_work(&mut conn, now, stale_before, WORK_BATCH_ITEMS).await? {
        if !wanted.is_empty() && records + w.record_ids.len() > WORK_BATCH_RECORDS {
            break;
        }
        records += w.record_ids.len();
        wanted.push(w);
    }
    let ids: Vec<String> = wanted.iter().map(|w| w.id.clone()).collect();
    let got: std::collections::HashSet<String> =
        db::claim_work(&mut conn, &ids, worker, now, stale_before)
            .await?
            .into_iter()
            .collect();
    drop(conn);
    let mine: Vec<db::WorkRow> = wanted.into_iter().filter(|w| got.contains(&w.id)).collect();
    if mine.is_empty() {
        return Ok(false);
    }
    let lease = parts.work_retry.lease;
    match with_heartbeat(
        &parts.db,
        lease,
        &mine,
        worker,
        apply_work(tool, worker, &mine),
    )
    .await
    {
        Ok(()) => {}
        Err(e) if mine.len() > 1 => {
            tracing::warn!(error = %e, context = T::CONTEXT, items = mine.len(), "copy batch failed; applying its items one by one");
            for w in &mine {
                let one = std::slice::from_ref(w);
                let work = apply_work(tool, worker, one);
                if let Err(e) = with_heartbeat(&parts.db, lease, one, worker, work).await {
                    fail_work(tool, worker, w, &e).await?;
                }
            }
        }
        Err(e) => fail_work(tool, worker, &mine[0], &e).await?,
    }
    Ok(true)
}

/// Runs `work` on claimed `items` while extending the claim every third of the `lease`,
/// so a copy that takes longer than the lease (thousands of objects on slow storage) is
/// never taken over while it runs; a worker that dies stops extending it and another takes
/// the items over once the lease ends. (SQLite has one writer and one worker.)
async fn with_heartbeat<F: std::future::Future>(
    db: &Db,
    lease: Duration,
    items: &[db::WorkRow],
    worker: &str,
    work: F,
) -> F::Output {
    if db.backend() == connectability_store::Backend::Sqlite {
        return work.await;
    }
    let ids: Vec<String> = items.iter().map(|w| w.id.clone()).collect();
    let beat = async {
        loop {
            tokio::time::sleep(lease / 3).await;
            let extended = async {
                let mut conn = db.pool().acquire().await?;
                db::extend_claim(&mut conn, &ids, worker, connectability_store::now_ms()).await
            };
            if let Err(e) = extended.await {
                tracing::warn!(error = %e, "extending a copy claim failed");
            }
        }
    };
    tokio::pin!(work);
    tokio::select! {
        out = &mut work => out,
        never = beat => never,
    }
}

/// Records a failed attempt at `w`: it is tried again after a backoff, or parked after
/// [`WorkRetry::max_attempts`]. A parked item holds back only its own connection, whose
/// status then says FAILED with the error; it is listed as a dead letter (consumer
/// [`parked_work_consumer`]) and replayed from there.
async fn fail_work<T: SyncedTool>(
    tool: &T,
    worker: &str,
    w: &db::WorkRow,
    e: &anyhow::Error,
) -> anyhow::Result<()> {
    let parts = tool.engine();
    let retry = parts.work_retry;
    let now = connectability_store::now_ms();
    let error: String = format!("{e:#}").chars().take(2_000).collect();
    // A dependency that is down (the database, a service answering UNAVAILABLE) says
    // nothing about the item: not an attempt, and tried again soon, as consumers do.
    let counted = !connectability_store::inbox::is_dependency_failure(e);
    let mut conn = parts.db.pool().acquire().await?;
    let attempts = db::work_attempts(&mut conn, &w.id).await? + i64::from(counted);
    let park = counted && attempts >= retry.max_attempts;
    let wait = if counted {
        retry.backoff(attempts)
    } else {
        retry.first_backoff
    };
    let not_before = now + wait.as_millis() as i64;
    let recorded = db::fail_work(
        &mut conn,
        &w.id,
        worker,
        &error,
        counted,
        not_before,
        park.then_some(now),
    )
    .await?;
    if recorded.is_none() {
        return Ok(()); // Another worker took the item over meanwhile.
    }
    if !park {
        tracing::warn!(error = %error, context = T::CONTEXT, item = %w.id, connection = %w.connection_id, attempts, "copy failed; retrying");
        return Ok(());
    }
    tracing::error!(error = %error, context = T::CONTEXT, item = %w.id, connection = %w.connection_id, attempts, "copy parked: its connection is FAILED until an operator replays it (`connectability dead-letters`)");
    let parked = connectability_events::Envelope {
        id: w.id.clone(),
        source: "connectability/sync".into(),
        event_type: "connectability.sync.v1.CopyWork".into(),
        subject: format!("connections/{}", w.connection_id),
        time_ms: w.event_ms,
        traceparent: w.traceparent.clone(),
        data: w.record_ids.join(",").into_bytes(),
    };
    let consumer = parked_work_consumer(T::CONTEXT);
    connectability_store::inbox::record_dead_letter(
        &mut conn, &consumer, &parked, &error, attempts,
    )
    .await?;
    Ok(())
}

/// Takes back into the queue the parked items an operator asked to replay.
pub async fn replay_parked_work<T: SyncedTool>(tool: &T) -> anyhow::Result<()> {
    let db = &tool.engine().db;
    let consumer = parked_work_consumer(T::CONTEXT);
    let letters = connectability_store::inbox::replays_requested(db, &consumer).await?;
    for (letter, item) in letters {
        let mut tx = db.begin().await?;
        // An item gone meanwhile (its connection was undone) just drops the letter.
        db::unpark_work(&mut tx, &item).await?;
        sqlx::query("DELETE FROM dead_letters WHERE id = $1")
            .bind(&letter)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(item = %item, context = T::CONTEXT, "parked copy work replayed");
    }
    Ok(())
}

/// A work item and its connection, in a group of items reconciled together.
type Member<'a> = (&'a db::WorkRow, &'a SyncRow);

/// Applies claimed work items in one transaction: the items of one change are reconciled
/// together across their connections ([`SyncedTool::reconcile_many`]), then counted,
/// announced and removed, all committed at once (or nothing, if a claim was lost).
async fn apply_work<T: SyncedTool>(
    tool: &T,
    worker: &str,
    items: &[db::WorkRow],
) -> anyhow::Result<()> {
    let parts = tool.engine();
    let now = parts.clock.now_ms();
    let mut tx = parts.db.begin().await?;
    let connection_ids: Vec<String> = items.iter().map(|w| w.connection_id.clone()).collect();
    // Nothing more is applied once a connection stopped (disconnected or undone); the rows
    // stay locked until this commits, so a stop cannot slip in between.
    let syncs: std::collections::HashMap<String, SyncRow> =
        db::lock_syncs(&mut tx, &connection_ids)
            .await?
            .into_iter()
            .filter(|s| s.state != SyncState::Stopped as i64)
            .map(|s| (s.connection_id.clone(), s))
            .collect();
    // Items of one change (the same upstream project and records) reconcile together.
    let mut groups: Vec<(&[String], Vec<Member>)> = Vec::new();
    for w in items {
        let Some(s) = syncs.get(&w.connection_id) else {
            continue;
        };
        match groups.iter_mut().find(|(ids, members)| {
            *ids == w.record_ids.as_slice()
                && members[0].1.upstream_project_id == s.upstream_project_id
        }) {
            Some((_, members)) => members.push((w, s)),
            None => groups.push((&w.record_ids, vec![(w, s)])),
        }
    }
    let mut counts: Vec<((i64, i64, bool), Vec<String>)> = Vec::new();
    let mut out = Vec::new();
    for (record_ids, members) in groups {
        let group: Vec<SyncRow> = members.iter().map(|(_, s)| (*s).clone()).collect();
        // One change's copies join the trace of the event that queued them; so do the
        // events they raise.
        let span = tracing::info_span!(
            "copy",
            context = T::CONTEXT,
            connections = group.len(),
            records = record_ids.len()
        );
        connectability_platform::telemetry::set_parent_from(
            &span,
            members[0].0.traceparent.as_deref(),
        );
        let copied = tracing::Instrument::instrument(
            tool.reconcile_many(&mut tx, &group, record_ids, now),
            span.clone(),
        )
        .await?;
        let _in_copy_span = span.enter();
        anyhow::ensure!(
            copied.len() == group.len(),
            "reconcile_many answered for {} of {} connections",
            copied.len(),
            group.len()
        );
        for ((w, s), copied) in members.into_iter().zip(copied) {
            // A change made before this connection started copying is the backfill's: it is
            // copied all the same (reconcile is idempotent), but counted and announced once,
            // by the backfill.
            let live = w.event_ms >= s.start_ms;
            if copied.items > 0 || copied.records > 0 {
                let key = (copied.items, copied.records, live);
                match counts.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, ids)) => ids.push(s.connection_id.clone()),
                    None => counts.push((key, vec![s.connection_id.clone()])),
                }
            }
            let change = Change {
                project_id: s.upstream_project_id.clone(),
                record_ids: w.record_ids.clone(),
                action_id: (!w.action_id.is_empty()).then(|| w.action_id.clone()),
            };
            out.extend(tool.announce(s, &change, &copied, live));
        }
    }
    let copied_items: i64 = counts
        .iter()
        .map(|((items, _, _), ids)| items * ids.len() as i64)
        .sum();
    // Connections that copied the same amounts are counted by one statement.
    for ((items, records, live), ids) in counts {
        db::count_copies(&mut tx, &ids, items, records, live, now).await?;
    }
    let ids: Vec<String> = items.iter().map(|w| w.id.clone()).collect();
    if !db::finish_work(&mut tx, &ids, worker).await? {
        // Another worker took an item over after our claim went stale: its effect counts.
        tx.rollback().await?;
        return Ok(());
    }
    outbox::enqueue(&mut tx, &out).await?;
    tx.commit().await?;
    metrics::COPIES
        .with_label_values(&[T::CONTEXT])
        .inc_by(copied_items.max(0) as u64);
    parts.relay.wake();
    Ok(())
}

/// Runs backfills until `shutdown`: batches of upstream records, one transaction each, until
/// a connection has everything, then IN_SYNC and the tool's initial-sync event.
pub async fn run_backfills<T: SyncedTool>(
    tool: Arc<T>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let holder = uuid::Uuid::now_v7().to_string();
    loop {
        if let Err(e) = backfill_once(&*tool, &holder).await {
            tracing::warn!(error = %e, context = T::CONTEXT, "backfill failed; retrying");
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tool.engine().backfill.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// How long a replica's claim on a connection's backfill lasts; renewed before each batch.
pub const BACKFILL_LEASE: Duration = Duration::from_secs(30);

/// Advances every backfilling connection that `holder` can claim to completion (or until
/// another worker moves it); a connection another replica is backfilling is left to it.
pub async fn backfill_once<T: SyncedTool>(tool: &T, holder: &str) -> anyhow::Result<()> {
    let parts = tool.engine();
    let pending = db::backfilling(&mut *parts.db.pool().acquire().await?).await?;
    for mut s in pending {
        loop {
            // Wall clock, like every lease: replicas compare these times.
            let wall = connectability_store::now_ms();
            let until = wall + BACKFILL_LEASE.as_millis() as i64;
            let mut conn = parts.db.pool().acquire().await?;
            if !db::claim_backfill(&mut conn, &s.connection_id, holder, wall, until).await? {
                break;
            }
            drop(conn);
            let now = parts.clock.now_ms();
            let mut tx = parts.db.begin().await?;
            // The connection's row is held as a copy batch holds it: a live copy of the same
            // records and this batch never run at once (both would copy the files, one would
            // fail on the copy's unique key and leave its objects behind), and a stop cannot
            // commit in between.
            let current = db::lock_syncs(&mut tx, std::slice::from_ref(&s.connection_id))
                .await?
                .pop();
            if !current.is_some_and(|c| {
                c.state == SyncState::Backfilling as i64 && c.backfill_cursor == s.backfill_cursor
            }) {
                tx.rollback().await?;
                break;
            }
            let batch = tool
                .backfill_batch(&mut tx, &s, &s.backfill_cursor, Some(BACKFILL_BATCH))
                .await?;
            let Some(last) = batch.last().cloned() else {
                if db::finish_backfill(&mut tx, &s.connection_id, now).await? {
                    let done = db::get_sync(&mut tx, &s.connection_id)
                        .await?
                        .unwrap_or(s.clone());
                    outbox::enqueue(&mut tx, &[tool.initial_sync_completed(&done)]).await?;
                }
                db::release_backfill(&mut tx, &s.connection_id).await?;
                tx.commit().await?;
                parts.relay.wake();
                break;
            };
            let copied = tool.reconcile(&mut tx, &s, &batch, now).await?;
            if !db::advance_cursor(&mut tx, &s.connection_id, &s.backfill_cursor, &last, now)
                .await?
            {
                tx.rollback().await?;
                break;
            }
            db::count_copies(
                &mut tx,
                std::slice::from_ref(&s.connection_id),
                copied.items,
                copied.records,
                false,
                now,
            )
            .await?;
            tx.commit().await?;
            metrics::COPIES
                .with_label_values(&[T::CONTEXT])
                .inc_by(copied.items.max(0) as u64);
            s.backfill_cursor = last;
        }
    }
    Ok(())
}

/// A tool service's sync workers: its outbox relay, its two inbox consumers (connection
/// events, and the tool's own events), the copy workers and the backfill worker, started
/// and mounted the same way in every tool service.
pub struct Workers<T> {
    service: &'static str,
    relay: outbox::Relay,
    core: Arc<T>,
    subscriptions: Vec<connectability_store::inbox::InboxSubscription>,
}

/// What a tool service's engine and API run on.
#[derive(Clone)]
pub struct Foundation {
    pub db: Db,
    pub bus: Arc<dyn connectability_events::EventBus>,
    pub blobs: connectability_blobs::Blobs,
    pub clock: Arc<dyn Clock>,
    /// Confirms connection events.
    pub connections: connectability_platform::connections::ConnectionsGateway,
    /// Who may do what in which project.
    pub directory: connectability_platform::directory::DirectoryGateway,
    /// How often a failing copy is tried before it is parked.
    pub work_retry: WorkRetry,
}

impl<T: SyncedTool> Workers<T> {
    /// Starts the engine of tool service `service`: its outbox relay, the tool on the
    /// engine (`tool`), and its consumers, subscribed before any relay runs so in-process
    /// events are not missed.
    pub async fn start(
        service: &'static str,
        base: Foundation,
        tool: fn(Engine) -> T,
    ) -> anyhow::Result<Self> {
        let relay = outbox::Relay::new(base.db.clone(), base.bus.clone());
        let engine = Engine {
            work_retry: base.work_retry,
            ..Engine::new(
                base.db.clone(),
                base.blobs,
                base.clock,
                relay.waker(),
                base.connections,
            )
        };
        let core = Arc::new(tool(engine));
        let subscriptions = Self::subscribe(base.bus.as_ref(), base.db, service, &core).await?;
        Ok(Self {
            service,
            relay,
            core,
            subscriptions,
        })
    }

    /// Wakes the relay after a commit that enqueued events (for the tool's API).
    pub fn relay_waker(&self) -> outbox::RelayWaker {
        self.core.engine().relay.clone()
    }

    /// Subscribes the consumers `<service>-connections` and `<service>-copies`.
    async fn subscribe(
        bus: &dyn connectability_events::EventBus,
        db: Db,
        service: &str,
        core: &Arc<T>,
    ) -> anyhow::Result<Vec<connectability_store::inbox::InboxSubscription>> {
        use connectability_events::{RetryPolicy, SubscriptionSpec};
        use connectability_store::inbox::subscribe;
        let spec = |durable: String, context: &str| SubscriptionSpec {
            durable,
            context: context.into(),
            retry: RetryPolicy::default(),
        };
        Ok(vec![
            subscribe(
                bus,
                db.clone(),
                spec(format!("{service}-connections"), "connections"),
                Arc::new(ConnectionEvents(core.clone())),
            )
            .await?,
            subscribe(
                bus,
                db,
                spec(format!("{service}-copies"), T::CONTEXT),
                Arc::new(ToolEvents(core.clone())),
            )
            .await?,
        ])
    }

    /// Runs the relay, the backfill worker and the copy workers, and stops the consumers
    /// with `server`.
    pub fn mount(self, server: &mut connectability_platform::GrpcServer) {
        server.add_relay(self.service, self.relay);
        let core = self.core;
        server
            .metrics()
            .add_sampler(Arc::new(metrics::SyncSampler::new(
                T::CONTEXT,
                core.engine().db.clone(),
            )));
        // SQLite has one writer: more workers would only queue on its lock.
        let workers = match core.engine().db.backend() {
            connectability_store::Backend::Sqlite => 1,
            connectability_store::Backend::Postgres => COPY_WORKERS,
        };
        let replica = connectability_platform::input::Id::generate("wkr").to_string();
        for i in 0..workers {
            let (core, name) = (core.clone(), format!("{replica}_{i}"));
            server.add_task(move |stop| run_work(core, name, stop));
        }
        server.add_task(move |stop| run_backfills(core, stop));
        for sub in self.subscriptions {
            server.add_task(move |stop| async move {
                connectability_platform::server::wait_for(stop).await;
                sub.stop().await;
            });
        }
    }
}

/// The engine's tables (`files`, `sync_connections`, `sync_work`), one portable folder that
/// every tool service applies before its own migrations.
pub fn migrations() -> connectability_store::LibraryMigrations {
    connectability_store::LibraryMigrations::new(
        "_sync_migrations",
        sqlx::migrate!("./migrations"),
        sqlx::migrate!("./migrations"),
    )
}

/// The envelope of a tool event about connection `$sync` (a [`SyncRow`]): message `$msg`
/// with the connection's four ids filled in from the row, the given fields, and the
/// connection as its subject. Every tool announces its copies this way.
///
/// ```ignore
/// connection_event!(SOURCE, pb::RfisCopied, s, { rfi_id: id.into(), rfis_copied: n })
/// ```
#[macro_export]
macro_rules! connection_event {
    ($source:expr, $($msg:ident)::+, $sync:expr, { $($field:ident : $value:expr),* $(,)? }) => {{
        let sync: &$crate::SyncRow = $sync;
        let message = $($msg)::+ {
            connection_id: sync.connection_id.clone(),
            upstream_project_id: sync.upstream_project_id.clone(),
            downstream_project_id: sync.downstream_project_id.clone(),
            downstream_company_id: sync.downstream_company_id.clone(),
            $($field: $value),*
        };
        ::connectability_platform::events::envelope(
            $source,
            format!("connections/{}", sync.connection_id),
            &message,
        )
    }};
}
