//! Every SQL statement of the connection manager, written once for Postgres and SQLite.

use connectability_platform::time::timestamp;
use connectability_proto::connections::v1::{
    self as pb, ApprovalMode, ConnectionAction, ConnectionRole, ConnectionStatus, Feature,
};
use sqlx::{AnyConnection, AssertSqlSafe, Row, any::AnyRow};

use crate::domain::{ExistingConnections, features_from_text, features_to_text};

type Result<T> = std::result::Result<T, sqlx::Error>;

/// Statuses that make a project downstream or upstream for good (C8, C10, C14).
const COUNTING: &str = "(1, 2, 5)";

/// A connection row with the fields the API does not show.
#[derive(Debug, Clone)]
pub struct Stored {
    pub connection: pb::Connection,
    pub request_ms: i64,
    pub approve_ms: Option<i64>,
}

impl Stored {
    pub fn status(&self) -> ConnectionStatus {
        self.connection.status()
    }
}

fn ts(ms: Option<i64>) -> Option<prost_types::Timestamp> {
    ms.map(timestamp)
}

fn stored(r: &AnyRow) -> Result<Stored> {
    let request_ms: i64 = r.try_get("request_ms")?;
    let approve_ms: Option<i64> = r.try_get("approve_ms")?;
    let status: i64 = r.try_get("status")?;
    Ok(Stored {
        connection: pb::Connection {
            id: r.try_get("id")?,
            upstream_project_id: r.try_get("upstream_project_id")?,
            upstream_company_id: r.try_get("upstream_company_id")?,
            downstream_project_id: r.try_get("downstream_project_id")?,
            downstream_company_id: r.try_get("downstream_company_id")?,
            features: features_from_text(&r.try_get::<String, _>("features")?)
                .into_iter()
                .map(|f| f as i32)
                .collect(),
            status: status as i32,
            requested_by: r.try_get("requested_by")?,
            request_time: Some(timestamp(request_ms)),
            approved_by: r.try_get("approved_by")?,
            approve_time: ts(approve_ms),
            disconnected_by: r.try_get("disconnected_by")?,
            disconnect_reason: r.try_get("disconnect_reason")?,
            disconnect_time: ts(r.try_get("disconnect_ms")?),
            update_time: Some(timestamp(r.try_get("update_ms")?)),
            version: r.try_get("version")?,
        },
        request_ms,
        approve_ms,
    })
}

const COLUMNS: &str = "id, upstream_project_id, upstream_company_id, downstream_project_id, downstream_company_id,
    features, status, requested_by, request_ms, approved_by, approve_ms, disconnected_by, disconnect_reason,
    disconnect_ms, update_ms, version";

pub async fn get(conn: &mut AnyConnection, id: &str) -> Result<Option<Stored>> {
    sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM connections WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(stored)
    .transpose()
}

/// Inserts a new connection. A second open (or any after a disconnection) for the same
/// downstream project fails on the unique index: see [`is_unique_violation`].
pub async fn insert(conn: &mut AnyConnection, c: &Stored) -> Result<()> {
    let p = &c.connection;
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO connections ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, '', '', NULL, $12, $13)"
    )))
    .bind(&p.id)
    .bind(&p.upstream_project_id)
    .bind(&p.upstream_company_id)
    .bind(&p.downstream_project_id)
    .bind(&p.downstream_company_id)
    .bind(features_to_text(&p.features().collect::<Vec<_>>()))
    .bind(p.status as i16)
    .bind(&p.requested_by)
    .bind(c.request_ms)
    .bind(&p.approved_by)
    .bind(c.approve_ms)
    .bind(c.request_ms)
    .bind(p.version)
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes a connection's mutable fields and its version (see [`crate::domain::changed`]), if
/// it is still in `expected` status at the version before. Returns false when another call
/// changed it first.
pub async fn update(
    conn: &mut AnyConnection,
    c: &Stored,
    expected: ConnectionStatus,
    now_ms: i64,
) -> Result<bool> {
    let p = &c.connection;
    let disconnect_ms = p.disconnect_time.as_ref().map(|_| now_ms);
    let n = sqlx::query(
        "UPDATE connections SET features = $2, status = $3, approved_by = $4, approve_ms = $5,
            disconnected_by = $6, disconnect_reason = $7, disconnect_ms = $8, update_ms = $9,
            version = $11
         WHERE id = $1 AND status = $10 AND version = $11 - 1",
    )
    .bind(&p.id)
    .bind(features_to_text(&p.features().collect::<Vec<_>>()))
    .bind(p.status as i16)
    .bind(&p.approved_by)
    .bind(c.approve_ms)
    .bind(&p.disconnected_by)
    .bind(&p.disconnect_reason)
    .bind(disconnect_ms)
    .bind(now_ms)
    .bind(expected as i16)
    .bind(p.version)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// What C8, C10 and C14 need to know about the two projects.
pub async fn existing(
    conn: &mut AnyConnection,
    downstream: &str,
    upstream: &str,
) -> Result<ExistingConnections> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT
            (SELECT COUNT(*) FROM connections WHERE downstream_project_id = $1 AND status IN (1, 2)) AS down_open,
            (SELECT COUNT(*) FROM connections WHERE downstream_project_id = $1 AND status = 5) AS down_disconnected,
            (SELECT COUNT(*) FROM connections WHERE downstream_project_id = $2 AND status IN {COUNTING}) AS up_is_down,
            (SELECT COUNT(*) FROM connections WHERE upstream_project_id = $1 AND status IN {COUNTING}) AS down_is_up"
    )))
    .bind(downstream)
    .bind(upstream)
    .fetch_one(conn)
    .await?;
    Ok(ExistingConnections {
        downstream_open: row.try_get::<i64, _>("down_open")? > 0,
        downstream_disconnected: row.try_get::<i64, _>("down_disconnected")? > 0,
        upstream_is_downstream: row.try_get::<i64, _>("up_is_down")? > 0,
        downstream_is_upstream: row.try_get::<i64, _>("down_is_up")? > 0,
        upstream_revisions: None,
    })
}

/// Claims `role` for a project (C10). Returns the role the project has afterwards: `role`,
/// or the other one if a committed connection fixed it first.
pub async fn claim_role(
    conn: &mut AnyConnection,
    project_id: &str,
    role: ConnectionRole,
) -> Result<ConnectionRole> {
    sqlx::query("INSERT INTO project_roles (project_id, role) VALUES ($1, $2) ON CONFLICT (project_id) DO NOTHING")
        .bind(project_id)
        .bind(role as i16)
        .execute(&mut *conn)
        .await?;
    let held: i64 = sqlx::query_scalar("SELECT role FROM project_roles WHERE project_id = $1")
        .bind(project_id)
        .fetch_one(conn)
        .await?;
    Ok(ConnectionRole::try_from(held as i32).unwrap_or(ConnectionRole::Unspecified))
}

/// Frees the roles of projects left with no counting connection (after a reject or undo).
pub async fn release_roles(conn: &mut AnyConnection, project_ids: &[&str]) -> Result<()> {
    for id in project_ids {
        sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM project_roles WHERE project_id = $1 AND NOT EXISTS (
                SELECT 1 FROM connections
                WHERE (upstream_project_id = $1 OR downstream_project_id = $1) AND status IN {COUNTING})"
        )))
        .bind(*id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Projects in `ids` that are downstream somewhere (cannot be upstream, C10).
pub async fn downstream_projects(conn: &mut AnyConnection, ids: &[String]) -> Result<Vec<String>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT project_id FROM project_roles WHERE role = 2 AND project_id IN ({})",
        connectability_store::placeholders(1, ids.len())
    );
    let mut q = sqlx::query_scalar(AssertSqlSafe(sql));
    for id in ids {
        q = q.bind(id);
    }
    q.fetch_all(conn).await
}

/// A project's connections, newest first, ids below `before` ("" = from the newest).
pub async fn list(
    conn: &mut AnyConnection,
    project_id: &str,
    role: ConnectionRole,
    statuses: &[ConnectionStatus],
    before: &str,
    limit: i64,
) -> Result<Vec<pb::Connection>> {
    let side = match role {
        ConnectionRole::Upstream => "upstream_project_id = $1",
        ConnectionRole::Downstream => "downstream_project_id = $1",
        ConnectionRole::Unspecified => "(upstream_project_id = $1 OR downstream_project_id = $1)",
    };
    let status_filter = if statuses.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = statuses.iter().map(|s| (*s as i32).to_string()).collect();
        format!("AND status IN ({})", list.join(", "))
    };
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM connections WHERE {side} {status_filter} AND ($2 = '' OR id < $2)
         ORDER BY id DESC LIMIT $3"
    )))
    .bind(project_id)
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| stored(r).map(|s| s.connection))
        .collect()
}

pub struct HistoryEntry<'a> {
    pub connection_id: &'a str,
    pub action: ConnectionAction,
    pub from: ConnectionStatus,
    pub to: ConnectionStatus,
    pub actor_id: &'a str,
    pub time_ms: i64,
    pub reason: &'a str,
    pub features: &'a [Feature],
}

/// Appends transitions (C18), in one statement.
pub async fn add_history(conn: &mut AnyConnection, entries: &[HistoryEntry<'_>]) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let values: Vec<String> = (0..entries.len())
        .map(|i| format!("({})", connectability_store::placeholders(i * 9 + 1, 9)))
        .collect();
    let sql = format!(
        "INSERT INTO connection_history (id, connection_id, action, from_status, to_status, actor_id, time_ms, reason, features)
         VALUES {}",
        values.join(", ")
    );
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for e in entries {
        q = q
            .bind(connectability_platform::input::Id::generate("hst").to_string())
            .bind(e.connection_id)
            .bind(e.action as i16)
            .bind(e.from as i16)
            .bind(e.to as i16)
            .bind(e.actor_id)
            .bind(e.time_ms)
            .bind(e.reason)
            .bind(features_to_text(e.features));
    }
    q.execute(conn).await?;
    Ok(())
}

pub async fn history(
    conn: &mut AnyConnection,
    connection_id: &str,
    after: &str,
    limit: i64,
) -> Result<Vec<(String, pb::ConnectionHistoryEntry)>> {
    let rows = sqlx::query(
        "SELECT id, connection_id, action, from_status, to_status, actor_id, time_ms, reason, features
         FROM connection_history WHERE connection_id = $1 AND id > $2 ORDER BY id LIMIT $3",
    )
    .bind(connection_id)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("id")?,
                pb::ConnectionHistoryEntry {
                    connection_id: r.try_get("connection_id")?,
                    action: r.try_get::<i64, _>("action")? as i32,
                    from_status: r.try_get::<i64, _>("from_status")? as i32,
                    to_status: r.try_get::<i64, _>("to_status")? as i32,
                    actor_id: r.try_get("actor_id")?,
                    time: Some(timestamp(r.try_get("time_ms")?)),
                    reason: r.try_get("reason")?,
                    features: features_from_text(&r.try_get::<String, _>("features")?)
                        .into_iter()
                        .map(|f| f as i32)
                        .collect(),
                },
            ))
        })
        .collect()
}

// --- company settings ----------------------------------------------------------------------

pub async fn settings(
    conn: &mut AnyConnection,
    company_id: &str,
) -> Result<pb::CompanyConnectionSettings> {
    let row = sqlx::query(
        "SELECT approval_mode, updated_by, update_ms FROM company_settings WHERE company_id = $1",
    )
    .bind(company_id)
    .fetch_optional(conn)
    .await?;
    Ok(match row {
        Some(r) => pb::CompanyConnectionSettings {
            company_id: company_id.to_string(),
            approval_mode: r.try_get::<i64, _>("approval_mode")? as i32,
            updated_by: r.try_get("updated_by")?,
            update_time: Some(timestamp(r.try_get("update_ms")?)),
        },
        // C11: auto-approve is the recommended default.
        None => pb::CompanyConnectionSettings {
            company_id: company_id.to_string(),
            approval_mode: ApprovalMode::AutoApprove as i32,
            updated_by: String::new(),
            update_time: None,
        },
    })
}

pub async fn save_settings(
    conn: &mut AnyConnection,
    company_id: &str,
    mode: ApprovalMode,
    actor: &str,
    now_ms: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO company_settings (company_id, approval_mode, updated_by, update_ms) VALUES ($1, $2, $3, $4)
         ON CONFLICT (company_id) DO UPDATE SET approval_mode = excluded.approval_mode,
            updated_by = excluded.updated_by, update_ms = excluded.update_ms",
    )
    .bind(company_id)
    .bind(mode as i16)
    .bind(actor)
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}
