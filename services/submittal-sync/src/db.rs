//! Every SQL statement of submittal-sync, written once for Postgres and SQLite. Lists and
//! the general information are JSON in TEXT columns.

use connectability_store::{
    table,
    table::{Result, V, fetch, select},
};
use serde::{Serialize, de::DeserializeOwned};
use sqlx::{AnyConnection, AssertSqlSafe, Row, any::AnyRow};

use crate::domain::General;

pub use connectability_blobs::files::FileRow;
pub use connectability_store::table::{by_ids, get, insert};
pub use connectability_sync::{Copy, SyncRow, copies, originals};

fn json_of<T: DeserializeOwned>(r: &AnyRow, column: &str) -> Result<T> {
    let raw: String = r.try_get(column)?;
    serde_json::from_str(&raw).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn json<T: Serialize>(value: &T) -> V {
    V::T(serde_json::to_string(value).unwrap_or_else(|_| "null".into()))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmittalRow {
    pub id: String,
    pub project_id: String,
    pub number: i64,
    pub revision: i64,
    pub status: i64,
    pub general: General,
    pub attachment_file_ids: Vec<String>,
    pub cover_file_id: String,
    pub participant_company_ids: Vec<String>,
    pub distributed_revision: i64,
    pub version: i64,
    pub deleted_ms: Option<i64>,
    pub copy: Copy,
    pub origin_version: i64,
    pub outdated: bool,
    pub disconnected: bool,
    pub create_ms: i64,
    pub update_ms: i64,
}

pub const SUBMITTAL_COLUMNS: &[&str] = &[
    "id",
    "project_id",
    "number",
    "revision",
    "status",
    "general",
    "attachment_file_ids",
    "cover_file_id",
    "participant_company_ids",
    "distributed_revision",
    "version",
    "deleted_ms",
    "connection_id",
    "origin_id",
    "origin_project_id",
    "origin_version",
    "outdated",
    "disconnected",
    "create_ms",
    "update_ms",
];

impl SubmittalRow {
    fn read_row(r: &AnyRow) -> Result<Self> {
        Ok(Self {
            id: r.try_get("id")?,
            project_id: r.try_get("project_id")?,
            number: r.try_get("number")?,
            revision: r.try_get("revision")?,
            status: r.try_get("status")?,
            general: json_of(r, "general")?,
            attachment_file_ids: json_of(r, "attachment_file_ids")?,
            cover_file_id: r.try_get("cover_file_id")?,
            participant_company_ids: json_of(r, "participant_company_ids")?,
            distributed_revision: r.try_get("distributed_revision")?,
            version: r.try_get("version")?,
            deleted_ms: r.try_get("deleted_ms")?,
            copy: Copy::read(r)?,
            origin_version: r.try_get("origin_version")?,
            outdated: r.try_get::<i64, _>("outdated")? != 0,
            disconnected: r.try_get::<i64, _>("disconnected")? != 0,
            create_ms: r.try_get("create_ms")?,
            update_ms: r.try_get("update_ms")?,
        })
    }

    fn row_values(&self) -> Vec<V> {
        vec![
            V::T(self.id.clone()),
            V::T(self.project_id.clone()),
            V::I(self.number),
            V::I(self.revision),
            V::I(self.status),
            json(&self.general),
            json(&self.attachment_file_ids),
            V::T(self.cover_file_id.clone()),
            json(&self.participant_company_ids),
            V::I(self.distributed_revision),
            V::I(self.version),
            V::N(self.deleted_ms),
            V::T(self.copy.connection_id.clone()),
            V::T(self.copy.origin_id.clone()),
            V::T(self.copy.origin_project_id.clone()),
            V::I(self.origin_version),
            V::I(i64::from(self.outdated)),
            V::I(i64::from(self.disconnected)),
            V::I(self.create_ms),
            V::I(self.update_ms),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistributionRow {
    pub id: String,
    pub submittal_id: String,
    pub project_id: String,
    pub revision: i64,
    pub distributed_by: String,
    pub recipient_ids: Vec<String>,
    pub message: String,
    pub responses: Vec<String>,
    pub attachment_file_ids: Vec<String>,
    pub cover_file_id: String,
    /// The general information as distributed.
    pub general: General,
    pub copy: Copy,
    pub create_ms: i64,
}

pub const DISTRIBUTION_COLUMNS: &[&str] = &[
    "id",
    "submittal_id",
    "project_id",
    "revision",
    "distributed_by",
    "recipient_ids",
    "message",
    "responses",
    "attachment_file_ids",
    "cover_file_id",
    "general",
    "connection_id",
    "origin_id",
    "origin_project_id",
    "create_ms",
];

impl DistributionRow {
    fn read_row(r: &AnyRow) -> Result<Self> {
        Ok(Self {
            id: r.try_get("id")?,
            submittal_id: r.try_get("submittal_id")?,
            project_id: r.try_get("project_id")?,
            revision: r.try_get("revision")?,
            distributed_by: r.try_get("distributed_by")?,
            recipient_ids: json_of(r, "recipient_ids")?,
            message: r.try_get("message")?,
            responses: json_of(r, "responses")?,
            attachment_file_ids: json_of(r, "attachment_file_ids")?,
            cover_file_id: r.try_get("cover_file_id")?,
            general: json_of(r, "general")?,
            copy: Copy::read(r)?,
            create_ms: r.try_get("create_ms")?,
        })
    }

    fn row_values(&self) -> Vec<V> {
        vec![
            V::T(self.id.clone()),
            V::T(self.submittal_id.clone()),
            V::T(self.project_id.clone()),
            V::I(self.revision),
            V::T(self.distributed_by.clone()),
            json(&self.recipient_ids),
            V::T(self.message.clone()),
            json(&self.responses),
            json(&self.attachment_file_ids),
            V::T(self.cover_file_id.clone()),
            json(&self.general),
            V::T(self.copy.connection_id.clone()),
            V::T(self.copy.origin_id.clone()),
            V::T(self.copy.origin_project_id.clone()),
            V::I(self.create_ms),
        ]
    }
}

table!(SubmittalRow, "submittals", SUBMITTAL_COLUMNS);
table!(DistributionRow, "distributions", DISTRIBUTION_COLUMNS);

/// Rewrites a  submittal if its stored version is still `expected_version`; false when
/// another writer changed it first.
pub async fn update_submittal(
    conn: &mut AnyConnection,
    row: &SubmittalRow,
    expected_version: i64,
) -> Result<bool> {
    connectability_store::table::update_if_version(conn, row, expected_version).await
}

/// Takes the project's next submittal number from its counter (started from the highest number
/// in use). The counter's row stays locked until the caller's transaction ends, so
/// concurrent creates in one project queue here instead of colliding.
pub async fn next_number(conn: &mut AnyConnection, project: &str) -> Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO submittal_numbers (project_id, last)
         VALUES ($1, COALESCE((SELECT MAX(number) FROM submittals WHERE project_id = $1 AND connection_id = ''), 0) + 1)
         ON CONFLICT (project_id) DO UPDATE SET last = submittal_numbers.last + 1
         RETURNING last",
    )
    .bind(project)
    .fetch_one(conn)
    .await
}

/// A page of a project's submittals in id order after `after` (deleted originals left out).
pub async fn list_submittals(
    conn: &mut AnyConnection,
    project: &str,
    statuses: &[i64],
    after: &str,
    limit: i64,
) -> Result<Vec<SubmittalRow>> {
    let status_filter = if statuses.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = statuses.iter().map(i64::to_string).collect();
        format!(" AND status IN ({})", list.join(", "))
    };
    let sql = format!(
        "{} WHERE project_id = $1 AND id > $2 AND (connection_id <> '' OR deleted_ms IS NULL){status_filter}
         ORDER BY id LIMIT {limit}",
        select::<SubmittalRow>()
    );
    fetch(conn, sql, &[project, after], SubmittalRow::read_row).await
}

/// A submittal's distributions, oldest first.
pub async fn distributions_of(
    conn: &mut AnyConnection,
    submittal_id: &str,
) -> Result<Vec<DistributionRow>> {
    fetch(
        conn,
        format!(
            "{} WHERE submittal_id = $1 ORDER BY create_ms, id",
            select::<DistributionRow>()
        ),
        &[submittal_id],
        DistributionRow::read_row,
    )
    .await
}

/// The distributed originals of `upstream` a downstream company receives (S1).
/// `after`/`limit` page them for the backfill.
pub async fn shared_submittal_ids(
    conn: &mut AnyConnection,
    upstream: &str,
    downstream_company: &str,
    after: &str,
    limit: Option<i64>,
) -> Result<Vec<String>> {
    let pattern = format!("%\"{}\"%", downstream_company.replace('_', "\\_"));
    let limit = limit.map(|l| format!(" LIMIT {l}")).unwrap_or_default();
    sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT id FROM submittals WHERE project_id = $1 AND connection_id = ''
           AND distributed_revision >= 0 AND deleted_ms IS NULL AND id > $2
           AND participant_company_ids LIKE $3 ESCAPE '\\'
         ORDER BY id{limit}"
    )))
    .bind(upstream)
    .bind(after)
    .bind(pattern)
    .fetch_all(conn)
    .await
}

/// Links an own submittal to a connected copy; false when already linked.
pub async fn link(
    conn: &mut AnyConnection,
    submittal_id: &str,
    connected_id: &str,
    project: &str,
    user: &str,
    now_ms: i64,
) -> Result<bool> {
    let n = sqlx::query(
        "INSERT INTO submittal_links (submittal_id, connected_submittal_id, project_id, user_id, create_ms)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (submittal_id, connected_submittal_id) DO NOTHING",
    )
    .bind(submittal_id)
    .bind(connected_id)
    .bind(project)
    .bind(user)
    .bind(now_ms)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Every link of a project's submittals: (own submittal, connected copy).
pub async fn links_in_project(
    conn: &mut AnyConnection,
    project: &str,
) -> Result<Vec<(String, String)>> {
    let rows = sqlx::query(
        "SELECT submittal_id, connected_submittal_id FROM submittal_links WHERE project_id = $1",
    )
    .bind(project)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("submittal_id")?,
                r.try_get("connected_submittal_id")?,
            ))
        })
        .collect()
}

/// Removes every copy a connection made, with the links to them (an undone connection leaves
/// none, C12): the engine runs these in order with the connection id and then removes
/// the connection's files.
pub const WITHDRAW_COPIES: &[&str] = &[
    "DELETE FROM submittal_links WHERE connected_submittal_id IN (SELECT id FROM submittals WHERE connection_id = $1)",
    "DELETE FROM distributions WHERE connection_id = $1",
    "DELETE FROM submittals WHERE connection_id = $1",
];
