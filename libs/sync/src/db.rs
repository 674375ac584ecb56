//! Every SQL statement of the engine: the `sync_connections` projection (one table of the
//! same shape in each tool service's database) and the lookups of copies.

use connectability_store::{
    placeholders,
    table::{Result, Table, fetch, select},
};
use sqlx::{AnyConnection, Row, any::AnyRow};

/// Where a row came from: set on every copy, empty on originals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Copy {
    pub connection_id: String,
    pub origin_id: String,
    pub origin_project_id: String,
}

impl Copy {
    /// Reads the `connection_id`, `origin_id` and `origin_project_id` columns.
    pub fn read(r: &AnyRow) -> Result<Copy> {
        Ok(Copy {
            connection_id: r.try_get("connection_id")?,
            origin_id: r.try_get("origin_id")?,
            origin_project_id: r.try_get("origin_project_id")?,
        })
    }

    pub fn is_copy(&self) -> bool {
        !self.connection_id.is_empty()
    }
}

/// A connection's copies of these upstream items, from a table with the [`Copy`] columns.
pub async fn copies<T: Table>(
    conn: &mut AnyConnection,
    connection_id: &str,
    origin_ids: &[String],
) -> Result<Vec<T>> {
    copies_in(conn, &[connection_id.to_string()], origin_ids).await
}

/// Many connections' copies of these upstream items (one query for a whole copy batch).
pub async fn copies_in<T: Table>(
    conn: &mut AnyConnection,
    connection_ids: &[String],
    origin_ids: &[String],
) -> Result<Vec<T>> {
    if origin_ids.is_empty() || connection_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "{} WHERE connection_id IN ({}) AND origin_id IN ({})",
        select::<T>(),
        placeholders(1, connection_ids.len()),
        placeholders(1 + connection_ids.len(), origin_ids.len())
    );
    let binds: Vec<&str> = connection_ids
        .iter()
        .chain(origin_ids)
        .map(String::as_str)
        .collect();
    fetch(conn, sql, &binds, T::read).await
}

/// Upstream originals of `project` by id, from a table with the [`Copy`] columns (deleted
/// ones too: copies must learn of the deletion).
pub async fn originals<T: Table>(
    conn: &mut AnyConnection,
    project: &str,
    ids: &[String],
) -> Result<Vec<T>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "{} WHERE project_id = $1 AND connection_id = '' AND id IN ({})",
        select::<T>(),
        placeholders(2, ids.len())
    );
    let mut binds = vec![project];
    binds.extend(ids.iter().map(String::as_str));
    fetch(conn, sql, &binds, T::read).await
}

/// One connection as the tool service sees it, and how far its copying got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRow {
    pub connection_id: String,
    pub upstream_project_id: String,
    pub downstream_project_id: String,
    pub downstream_company_id: String,
    /// A [`crate::SyncState`] value.
    pub state: i64,
    /// Items (the unit the tool counts: revisions, RFIs) to copy, and copied so far.
    pub items_total: i64,
    pub items_copied: i64,
    /// Records holding those items (drawings for revisions; RFIs for RFIs).
    pub records_copied: i64,
    /// The backfill's position: upstream record ids up to here are copied.
    pub backfill_cursor: String,
    /// When copying started (event time): earlier upstream changes belong to the backfill.
    pub start_ms: i64,
    pub last_copy_ms: Option<i64>,
    pub update_ms: i64,
    /// The connection version of the last connection event applied (lower ones are stale).
    pub connection_version: i64,
    /// Why copying stopped, when a work item of the connection is parked (read by
    /// [`get_sync`] only; never stored here).
    pub failure: Option<String>,
}

impl SyncRow {
    /// Where `tool`'s copies over this connection go in the downstream project.
    pub fn copy_target<'a>(&'a self, tool: &'a str) -> connectability_blobs::CopyTarget<'a> {
        connectability_blobs::CopyTarget {
            company_id: &self.downstream_company_id,
            project_id: &self.downstream_project_id,
            connection_id: &self.connection_id,
            tool,
        }
    }

    fn read(r: &AnyRow) -> Result<Self> {
        Ok(Self {
            connection_id: r.try_get("connection_id")?,
            upstream_project_id: r.try_get("upstream_project_id")?,
            downstream_project_id: r.try_get("downstream_project_id")?,
            downstream_company_id: r.try_get("downstream_company_id")?,
            state: r.try_get("state")?,
            items_total: r.try_get("items_total")?,
            items_copied: r.try_get("items_copied")?,
            records_copied: r.try_get("records_copied")?,
            backfill_cursor: r.try_get("backfill_cursor")?,
            start_ms: r.try_get("start_ms")?,
            last_copy_ms: r.try_get("last_copy_ms")?,
            update_ms: r.try_get("update_ms")?,
            connection_version: r.try_get("connection_version")?,
            // Only `get_sync` selects it; other reads leave it out.
            failure: r.try_get("failure").ok().flatten(),
        })
    }
}

const SYNC_COLUMNS: &str =
    "connection_id, upstream_project_id, downstream_project_id, downstream_company_id, state,
    items_total, items_copied, records_copied, backfill_cursor, start_ms, last_copy_ms, update_ms,
    connection_version";

pub async fn get_sync(conn: &mut AnyConnection, connection_id: &str) -> Result<Option<SyncRow>> {
    Ok(fetch(
        conn,
        format!(
            "SELECT {SYNC_COLUMNS},
               (SELECT w.last_error FROM sync_work w WHERE w.connection_id = sync_connections.connection_id
                  AND w.parked_ms IS NOT NULL ORDER BY w.id LIMIT 1) AS failure
             FROM sync_connections WHERE connection_id = $1"
        ),
        &[connection_id],
        SyncRow::read,
    )
    .await?
    .pop())
}

/// These connections' rows, locked until the transaction ends (unknown ids are left out).
/// A copy batch holds them so that a disconnect or undo cannot commit between its check of
/// the state and its commit: the undo waits and then withdraws the batch's copies too, or
/// the batch waits and then sees the connection stopped. Postgres takes the row locks in id
/// order (no deadlock between batches); SQLite's one writer already serializes them.
pub async fn lock_syncs(
    conn: &mut AnyConnection,
    connection_ids: &[String],
) -> Result<Vec<SyncRow>> {
    if connection_ids.is_empty() {
        return Ok(Vec::new());
    }
    let lock = if conn.backend_name() == "PostgreSQL" {
        " FOR UPDATE"
    } else {
        ""
    };
    let binds: Vec<&str> = connection_ids.iter().map(String::as_str).collect();
    fetch(
        conn,
        format!(
            "SELECT {SYNC_COLUMNS} FROM sync_connections WHERE connection_id IN ({}) ORDER BY connection_id{lock}",
            placeholders(1, binds.len())
        ),
        &binds,
        SyncRow::read,
    )
    .await
}

/// Connections copying from `upstream` (not stopped).
pub async fn syncs_from(conn: &mut AnyConnection, upstream: &str) -> Result<Vec<SyncRow>> {
    fetch(
        conn,
        format!(
            "SELECT {SYNC_COLUMNS} FROM sync_connections WHERE upstream_project_id = $1 AND state <> 3"
        ),
        &[upstream],
        SyncRow::read,
    )
    .await
}

pub async fn backfilling(conn: &mut AnyConnection) -> Result<Vec<SyncRow>> {
    fetch(
        conn,
        format!(
            "SELECT {SYNC_COLUMNS} FROM sync_connections WHERE state = 1 ORDER BY connection_id"
        ),
        &[],
        SyncRow::read,
    )
    .await
}

/// Every connection not stopped (for metrics).
pub async fn running(conn: &mut AnyConnection) -> Result<Vec<SyncRow>> {
    fetch(
        conn,
        format!("SELECT {SYNC_COLUMNS} FROM sync_connections WHERE state <> 3"),
        &[],
        SyncRow::read,
    )
    .await
}

/// When the oldest change still queued for each connection happened (for metrics).
pub async fn oldest_work(conn: &mut AnyConnection) -> Result<Vec<(String, i64)>> {
    sqlx::query_as("SELECT connection_id, MIN(event_ms) FROM sync_work GROUP BY connection_id")
        .fetch_all(conn)
        .await
}

/// Starts (or restarts) a connection's backfill. A restart (approved again after an undo,
/// or a feature added) counts from zero: the backfill copies, or finds copied, every
/// shareable item again, so old counts would be counted twice.
pub async fn start_sync(conn: &mut AnyConnection, s: &SyncRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO sync_connections (connection_id, upstream_project_id, downstream_project_id, downstream_company_id,
            state, items_total, items_copied, records_copied, backfill_cursor, start_ms, last_copy_ms, update_ms, connection_version)
         VALUES ($1, $2, $3, $4, 1, $5, 0, 0, '', $7, NULL, $6, $8)
         ON CONFLICT (connection_id) DO UPDATE SET state = 1, items_total = excluded.items_total,
            items_copied = 0, records_copied = 0, last_copy_ms = NULL,
            backfill_cursor = '', start_ms = excluded.start_ms, update_ms = excluded.update_ms,
            connection_version = excluded.connection_version",
    )
    .bind(&s.connection_id)
    .bind(&s.upstream_project_id)
    .bind(&s.downstream_project_id)
    .bind(&s.downstream_company_id)
    .bind(s.items_total)
    .bind(s.update_ms)
    .bind(s.start_ms)
    .bind(s.connection_version)
    .execute(conn)
    .await?;
    Ok(())
}

/// Stops a connection's copying for good (until a later activation). A row is written even
/// for a connection not seen yet, so its activation, should it arrive late, stays stale.
pub async fn stop_sync(conn: &mut AnyConnection, s: &SyncRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO sync_connections (connection_id, upstream_project_id, downstream_project_id, downstream_company_id,
            state, items_total, items_copied, records_copied, backfill_cursor, start_ms, last_copy_ms, update_ms, connection_version)
         VALUES ($1, $2, $3, $4, 3, 0, 0, 0, '', 0, NULL, $5, $6)
         ON CONFLICT (connection_id) DO UPDATE SET state = 3, update_ms = excluded.update_ms,
            connection_version = excluded.connection_version",
    )
    .bind(&s.connection_id)
    .bind(&s.upstream_project_id)
    .bind(&s.downstream_project_id)
    .bind(&s.downstream_company_id)
    .bind(s.update_ms)
    .bind(s.connection_version)
    .execute(conn)
    .await?;
    Ok(())
}

/// Adds copied counts (and, for live changes, to the total too) to connections that copied
/// the same amounts, in one statement.
pub async fn count_copies(
    conn: &mut AnyConnection,
    connection_ids: &[String],
    items: i64,
    records: i64,
    add_to_total: bool,
    now_ms: i64,
) -> Result<()> {
    if connection_ids.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "UPDATE sync_connections SET items_copied = items_copied + $1, records_copied = records_copied + $2,
            items_total = items_total + $3, last_copy_ms = $4, update_ms = $4 WHERE connection_id IN ({})",
        placeholders(5, connection_ids.len())
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(items)
        .bind(records)
        .bind(if add_to_total { items } else { 0 })
        .bind(now_ms);
    for id in connection_ids {
        q = q.bind(id);
    }
    q.execute(conn).await?;
    Ok(())
}

/// Moves the backfill cursor if nobody else did. False: another worker got there first.
pub async fn advance_cursor(
    conn: &mut AnyConnection,
    connection_id: &str,
    from: &str,
    to: &str,
    now_ms: i64,
) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE sync_connections SET backfill_cursor = $3, update_ms = $4 WHERE connection_id = $1 AND backfill_cursor = $2 AND state = 1",
    )
    .bind(connection_id)
    .bind(from)
    .bind(to)
    .bind(now_ms)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// BACKFILLING -> IN_SYNC, once.
pub async fn finish_backfill(
    conn: &mut AnyConnection,
    connection_id: &str,
    now_ms: i64,
) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE sync_connections SET state = 2, update_ms = $2 WHERE connection_id = $1 AND state = 1",
    )
    .bind(connection_id)
    .bind(now_ms)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Takes or renews `holder`'s claim on a connection's backfill until `until_ms`; false
/// while another replica's claim runs.
pub async fn claim_backfill(
    conn: &mut AnyConnection,
    connection_id: &str,
    holder: &str,
    now_ms: i64,
    until_ms: i64,
) -> Result<bool> {
    let got: Option<String> = sqlx::query_scalar(
        "INSERT INTO sync_backfill_claims (connection_id, holder, until_ms) VALUES ($1, $2, $3)
         ON CONFLICT (connection_id) DO UPDATE SET holder = $2, until_ms = $3
         WHERE sync_backfill_claims.holder = $2 OR sync_backfill_claims.until_ms < $4
         RETURNING holder",
    )
    .bind(connection_id)
    .bind(holder)
    .bind(until_ms)
    .bind(now_ms)
    .fetch_optional(conn)
    .await?;
    Ok(got.is_some())
}

/// Ends a finished backfill's claim.
pub async fn release_backfill(conn: &mut AnyConnection, connection_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM sync_backfill_claims WHERE connection_id = $1")
        .bind(connection_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// One connection's share of a tool event, waiting to be copied (see `crate::run_work`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkRow {
    pub id: String,
    pub connection_id: String,
    pub record_ids: Vec<String>,
    /// The change's action id (a publish), or empty.
    pub action_id: String,
    /// When the event happened: changes before the connection started belong to its backfill.
    pub event_ms: i64,
    /// The trace of the event handling that queued it: the copy joins that trace.
    pub traceparent: Option<String>,
}

impl WorkRow {
    fn read(r: &AnyRow) -> Result<Self> {
        let ids: String = r.try_get("record_ids")?;
        Ok(Self {
            id: r.try_get("id")?,
            connection_id: r.try_get("connection_id")?,
            record_ids: ids
                .split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            action_id: r.try_get("action_id")?,
            event_ms: r.try_get("event_ms")?,
            traceparent: r.try_get("traceparent")?,
        })
    }
}

/// Queues work items, many per statement.
pub async fn enqueue_work(conn: &mut AnyConnection, items: &[WorkRow]) -> Result<()> {
    use connectability_store::table::{V, insert_many};
    let rows: Vec<Vec<V>> = items
        .iter()
        .map(|w| {
            vec![
                V::T(w.id.clone()),
                V::T(w.connection_id.clone()),
                // Ids are letters, digits and `_`: a comma joins them unambiguously.
                V::T(w.record_ids.join(",")),
                V::T(w.action_id.clone()),
                V::I(w.event_ms),
                V::T(String::new()),
                V::I(0),
                V::NT(w.traceparent.clone()),
            ]
        })
        .collect();
    insert_many(
        conn,
        "sync_work",
        &[
            "id",
            "connection_id",
            "record_ids",
            "action_id",
            "event_ms",
            "claimed_by",
            "claim_ms",
            "traceparent",
        ],
        &rows,
    )
    .await
}

/// Work that may be taken now: the oldest item of each connection (so a connection's
/// changes apply in order), unclaimed or claimed before `stale_before`.
pub async fn claimable_work(
    conn: &mut AnyConnection,
    now_ms: i64,
    stale_before: i64,
    limit: i64,
) -> Result<Vec<WorkRow>> {
    // A parked head is never taken and, as the head, holds back its connection's later items.
    let sql = format!(
        "SELECT w.id, w.connection_id, w.record_ids, w.action_id, w.event_ms, w.traceparent FROM sync_work w
         WHERE (w.claimed_by = '' OR w.claim_ms < {stale_before})
           AND w.parked_ms IS NULL AND w.not_before_ms <= {now_ms}
           AND NOT EXISTS (SELECT 1 FROM sync_work p WHERE p.connection_id = w.connection_id AND p.id < w.id)
         ORDER BY w.id LIMIT {limit}"
    );
    fetch(conn, sql, &[], WorkRow::read).await
}

/// Takes these work items for `worker`, except those another worker holds; returns the ids
/// it got. One statement, so workers racing for the same heads never both win one.
pub async fn claim_work(
    conn: &mut AnyConnection,
    ids: &[String],
    worker: &str,
    now_ms: i64,
    stale_before: i64,
) -> Result<Vec<String>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "UPDATE sync_work SET claimed_by = $1, claim_ms = $2
         WHERE (claimed_by = '' OR claim_ms < $3) AND parked_ms IS NULL AND id IN ({}) RETURNING id",
        placeholders(4, ids.len())
    );
    let mut q = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(worker)
        .bind(now_ms)
        .bind(stale_before);
    for id in ids {
        q = q.bind(id);
    }
    q.fetch_all(conn).await
}

/// Removes finished items, in the transaction of their effect; false when a claim was lost
/// (another worker took an item over), so the effect must roll back.
pub async fn finish_work(conn: &mut AnyConnection, ids: &[String], worker: &str) -> Result<bool> {
    if ids.is_empty() {
        return Ok(true);
    }
    let sql = format!(
        "DELETE FROM sync_work WHERE claimed_by = $1 AND id IN ({})",
        placeholders(2, ids.len())
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(worker);
    for id in ids {
        q = q.bind(id);
    }
    Ok(q.execute(conn).await?.rows_affected() == ids.len() as u64)
}

/// Extends `worker`'s claim on these items (its heartbeat while it copies them).
pub async fn extend_claim(
    conn: &mut AnyConnection,
    ids: &[String],
    worker: &str,
    now_ms: i64,
) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "UPDATE sync_work SET claim_ms = $2 WHERE claimed_by = $1 AND id IN ({})",
        placeholders(3, ids.len())
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(worker)
        .bind(now_ms);
    for id in ids {
        q = q.bind(id);
    }
    q.execute(conn).await?;
    Ok(())
}

/// Records a failure of an item `worker` holds (an attempt when `counted`) and releases it:
/// tried again from `not_before_ms`, or parked at `parked_ms` (its error kept). The attempts so far; `None`
/// when the claim was lost meanwhile.
pub async fn fail_work(
    conn: &mut AnyConnection,
    id: &str,
    worker: &str,
    error: &str,
    counted: bool,
    not_before_ms: i64,
    parked_ms: Option<i64>,
) -> Result<Option<i64>> {
    sqlx::query_scalar(
        "UPDATE sync_work SET attempts = attempts + $6, last_error = $3, claimed_by = '', claim_ms = 0,
           not_before_ms = $4, parked_ms = $5
         WHERE id = $1 AND claimed_by = $2 RETURNING attempts",
    )
    .bind(id)
    .bind(worker)
    .bind(error)
    .bind(not_before_ms)
    .bind(parked_ms)
    .bind(i64::from(counted))
    .fetch_optional(conn)
    .await
}

/// How many attempts an item has failed so far.
pub async fn work_attempts(conn: &mut AnyConnection, id: &str) -> Result<i64> {
    Ok(
        sqlx::query_scalar::<_, i64>("SELECT attempts FROM sync_work WHERE id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await?
            .unwrap_or(0),
    )
}

/// Takes a parked item back into the queue with a fresh attempt count (an operator's
/// replay); false when no such parked item exists.
pub async fn unpark_work(conn: &mut AnyConnection, id: &str) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE sync_work SET parked_ms = NULL, attempts = 0, not_before_ms = 0, last_error = NULL
         WHERE id = $1 AND parked_ms IS NOT NULL",
    )
    .bind(id)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Work items still queued (for tests and metrics).
pub async fn work_count(conn: &mut AnyConnection) -> Result<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM sync_work")
        .fetch_one(conn)
        .await
}

/// Marks every copy in `table` that connection `connection_id` made as disconnected.
pub async fn mark_disconnected(
    conn: &mut AnyConnection,
    table: &'static str,
    connection_id: &str,
    now_ms: i64,
) -> Result<()> {
    // `table` is a tool's constant, never input.
    let sql =
        format!("UPDATE {table} SET disconnected = 1, update_ms = $2 WHERE connection_id = $1");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(connection_id)
        .bind(now_ms)
        .execute(conn)
        .await?;
    Ok(())
}

/// Runs a tool's withdraw statements (see [`crate::SyncedTool::WITHDRAW`]).
pub async fn withdraw_copies(
    conn: &mut AnyConnection,
    statements: &'static [&'static str],
    connection_id: &str,
) -> Result<()> {
    for sql in statements {
        sqlx::query(sqlx::AssertSqlSafe(*sql))
            .bind(connection_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
