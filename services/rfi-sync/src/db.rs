//! Every SQL statement of rfi-sync, written once for Postgres and SQLite. Lists of ids are
//! JSON arrays in TEXT columns.

use connectability_store::{
    placeholders, table,
    table::{Result, V, fetch, select},
};
use sqlx::{AnyConnection, AssertSqlSafe, Row, any::AnyRow};

pub use connectability_blobs::files::FileRow;
pub use connectability_store::table::{by_ids, get, insert};
pub use connectability_sync::{Copy, SyncRow, copies, originals};

fn list(r: &AnyRow, column: &str) -> Result<Vec<String>> {
    let raw: String = r.try_get(column)?;
    serde_json::from_str(&raw).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn json(ids: &[String]) -> V {
    V::T(serde_json::to_string(ids).unwrap_or_else(|_| "[]".into()))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RfiRow {
    pub id: String,
    pub project_id: String,
    pub number: i64,
    pub subject: String,
    pub question: String,
    pub question_file_ids: Vec<String>,
    pub status: i64,
    pub manager_id: String,
    pub received_from_id: String,
    pub responsible_contractor: String,
    pub assignee_ids: Vec<String>,
    pub distribution_ids: Vec<String>,
    pub creator_id: String,
    pub participant_company_ids: Vec<String>,
    pub date_initiated: String,
    pub due_date: String,
    pub private: bool,
    pub drawing_revision_ids: Vec<String>,
    pub cover_file_id: String,
    pub drawings_file_id: String,
    pub version: i64,
    pub close_ms: Option<i64>,
    pub deleted_ms: Option<i64>,
    pub copy: Copy,
    pub origin_version: i64,
    pub disconnected: bool,
    pub create_ms: i64,
    pub update_ms: i64,
}

pub const RFI_COLUMNS: &[&str] = &[
    "id",
    "project_id",
    "number",
    "subject",
    "question",
    "question_file_ids",
    "status",
    "manager_id",
    "received_from_id",
    "responsible_contractor",
    "assignee_ids",
    "distribution_ids",
    "creator_id",
    "participant_company_ids",
    "date_initiated",
    "due_date",
    "private",
    "drawing_revision_ids",
    "cover_file_id",
    "drawings_file_id",
    "version",
    "close_ms",
    "deleted_ms",
    "connection_id",
    "origin_id",
    "origin_project_id",
    "origin_version",
    "disconnected",
    "create_ms",
    "update_ms",
];

impl RfiRow {
    fn read_row(r: &AnyRow) -> Result<Self> {
        Ok(Self {
            id: r.try_get("id")?,
            project_id: r.try_get("project_id")?,
            number: r.try_get("number")?,
            subject: r.try_get("subject")?,
            question: r.try_get("question")?,
            question_file_ids: list(r, "question_file_ids")?,
            status: r.try_get("status")?,
            manager_id: r.try_get("manager_id")?,
            received_from_id: r.try_get("received_from_id")?,
            responsible_contractor: r.try_get("responsible_contractor")?,
            assignee_ids: list(r, "assignee_ids")?,
            distribution_ids: list(r, "distribution_ids")?,
            creator_id: r.try_get("creator_id")?,
            participant_company_ids: list(r, "participant_company_ids")?,
            date_initiated: r.try_get("date_initiated")?,
            due_date: r.try_get("due_date")?,
            private: r.try_get::<i64, _>("private")? != 0,
            drawing_revision_ids: list(r, "drawing_revision_ids")?,
            cover_file_id: r.try_get("cover_file_id")?,
            drawings_file_id: r.try_get("drawings_file_id")?,
            version: r.try_get("version")?,
            close_ms: r.try_get("close_ms")?,
            deleted_ms: r.try_get("deleted_ms")?,
            copy: Copy::read(r)?,
            origin_version: r.try_get("origin_version")?,
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
            V::T(self.subject.clone()),
            V::T(self.question.clone()),
            json(&self.question_file_ids),
            V::I(self.status),
            V::T(self.manager_id.clone()),
            V::T(self.received_from_id.clone()),
            V::T(self.responsible_contractor.clone()),
            json(&self.assignee_ids),
            json(&self.distribution_ids),
            V::T(self.creator_id.clone()),
            json(&self.participant_company_ids),
            V::T(self.date_initiated.clone()),
            V::T(self.due_date.clone()),
            V::I(i64::from(self.private)),
            json(&self.drawing_revision_ids),
            V::T(self.cover_file_id.clone()),
            V::T(self.drawings_file_id.clone()),
            V::I(self.version),
            V::N(self.close_ms),
            V::N(self.deleted_ms),
            V::T(self.copy.connection_id.clone()),
            V::T(self.copy.origin_id.clone()),
            V::T(self.copy.origin_project_id.clone()),
            V::I(self.origin_version),
            V::I(i64::from(self.disconnected)),
            V::I(self.create_ms),
            V::I(self.update_ms),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseRow {
    pub id: String,
    pub rfi_id: String,
    pub author_id: String,
    pub body: String,
    pub file_ids: Vec<String>,
    pub official: bool,
    pub create_ms: i64,
}

pub const RESPONSE_COLUMNS: &[&str] = &[
    "id",
    "rfi_id",
    "author_id",
    "body",
    "file_ids",
    "official",
    "create_ms",
];

impl ResponseRow {
    fn read_row(r: &AnyRow) -> Result<Self> {
        Ok(Self {
            id: r.try_get("id")?,
            rfi_id: r.try_get("rfi_id")?,
            author_id: r.try_get("author_id")?,
            body: r.try_get("body")?,
            file_ids: list(r, "file_ids")?,
            official: r.try_get::<i64, _>("official")? != 0,
            create_ms: r.try_get("create_ms")?,
        })
    }

    fn row_values(&self) -> Vec<V> {
        vec![
            V::T(self.id.clone()),
            V::T(self.rfi_id.clone()),
            V::T(self.author_id.clone()),
            V::T(self.body.clone()),
            json(&self.file_ids),
            V::I(i64::from(self.official)),
            V::I(self.create_ms),
        ]
    }
}

table!(RfiRow, "rfis", RFI_COLUMNS);
table!(ResponseRow, "rfi_responses", RESPONSE_COLUMNS);

/// Rewrites a n RFI if its stored version is still `expected_version`; false when
/// another writer changed it first.
pub async fn update_rfi(
    conn: &mut AnyConnection,
    row: &RfiRow,
    expected_version: i64,
) -> Result<bool> {
    connectability_store::table::update_if_version(conn, row, expected_version).await
}

/// Every link of a project's RFIs: (own RFI, connected copy).
pub async fn links_in_project(
    conn: &mut AnyConnection,
    project: &str,
) -> Result<Vec<(String, String)>> {
    let rows = sqlx::query("SELECT rfi_id, connected_rfi_id FROM rfi_links WHERE project_id = $1")
        .bind(project)
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("rfi_id")?, r.try_get("connected_rfi_id")?)))
        .collect()
}

/// Takes the project's next RFI number from its counter (started from the highest number
/// in use). The counter's row stays locked until the caller's transaction ends, so
/// concurrent creates in one project queue here instead of colliding.
pub async fn next_number(conn: &mut AnyConnection, project: &str) -> Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO rfi_numbers (project_id, last)
         VALUES ($1, COALESCE((SELECT MAX(number) FROM rfis WHERE project_id = $1 AND connection_id = ''), 0) + 1)
         ON CONFLICT (project_id) DO UPDATE SET last = rfi_numbers.last + 1
         RETURNING last",
    )
    .bind(project)
    .fetch_one(conn)
    .await
}

/// A page of a project's RFIs the caller may see, in id order after `after`. `viewer` is
/// the caller's user id, or empty for someone who sees every private RFI (RFIS admins).
pub async fn list_rfis(
    conn: &mut AnyConnection,
    project: &str,
    statuses: &[i64],
    viewer: &str,
    after: &str,
    limit: i64,
) -> Result<Vec<RfiRow>> {
    let status_filter = if statuses.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = statuses.iter().map(i64::to_string).collect();
        format!(" AND status IN ({})", list.join(", "))
    };
    // Ids are `usr_` plus letters and digits: `_` is escaped so LIKE matches it literally.
    let pattern = format!("%\"{}\"%", viewer.replace('_', "\\_"));
    let sql = format!(
        "{} WHERE project_id = $1 AND id > $2 AND (connection_id <> '' OR deleted_ms IS NULL){status_filter}
           AND (private = 0 OR $3 = '' OR creator_id = $3 OR manager_id = $3 OR received_from_id = $3
                OR assignee_ids LIKE $4 ESCAPE '\\' OR distribution_ids LIKE $4 ESCAPE '\\')
         ORDER BY id LIMIT {limit}",
        select::<RfiRow>()
    );
    fetch(
        conn,
        sql,
        &[project, after, viewer, &pattern],
        RfiRow::read_row,
    )
    .await
}

/// The responses of these RFIs, oldest first.
pub async fn responses_of(
    conn: &mut AnyConnection,
    rfi_ids: &[String],
) -> Result<Vec<ResponseRow>> {
    if rfi_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "{} WHERE rfi_id IN ({}) ORDER BY create_ms, id",
        select::<ResponseRow>(),
        placeholders(1, rfi_ids.len())
    );
    let binds: Vec<&str> = rfi_ids.iter().map(String::as_str).collect();
    fetch(conn, sql, &binds, ResponseRow::read_row).await
}

pub async fn delete_responses(conn: &mut AnyConnection, rfi_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM rfi_responses WHERE rfi_id = $1")
        .bind(rfi_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Makes `response_id` the RFI's one official response.
pub async fn mark_official(
    conn: &mut AnyConnection,
    rfi_id: &str,
    response_id: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE rfi_responses SET official = CASE WHEN id = $2 THEN 1 ELSE 0 END WHERE rfi_id = $1",
    )
    .bind(rfi_id)
    .bind(response_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// The RFIs of `project` that may hold file `file_id` (question or response attachment,
/// cover sheet, linked drawings PDF). The text match is loose; callers check the lists.
pub async fn rfis_holding_file(
    conn: &mut AnyConnection,
    project: &str,
    file_id: &str,
) -> Result<Vec<RfiRow>> {
    let pattern = format!("%\"{}\"%", file_id.replace('_', "\\_"));
    let sql = format!(
        "{} WHERE project_id = $1 AND (cover_file_id = $2 OR drawings_file_id = $2
           OR question_file_ids LIKE $3 ESCAPE '\\'
           OR id IN (SELECT rfi_id FROM rfi_responses WHERE file_ids LIKE $3 ESCAPE '\\'))",
        select::<RfiRow>()
    );
    fetch(conn, sql, &[project, file_id, &pattern], RfiRow::read_row).await
}

/// The closed originals of `upstream` a downstream company receives (R1, R2): public ones,
/// and private ones naming one of its users. `after`/`limit` page them for the backfill.
pub async fn shared_rfi_ids(
    conn: &mut AnyConnection,
    upstream: &str,
    downstream_company: &str,
    after: &str,
    limit: Option<i64>,
) -> Result<Vec<String>> {
    let pattern = format!("%\"{}\"%", downstream_company.replace('_', "\\_"));
    let limit = limit.map(|l| format!(" LIMIT {l}")).unwrap_or_default();
    sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT id FROM rfis WHERE project_id = $1 AND connection_id = '' AND status = 2
           AND deleted_ms IS NULL AND id > $2
           AND (private = 0 OR participant_company_ids LIKE $3 ESCAPE '\\')
         ORDER BY id{limit}"
    )))
    .bind(upstream)
    .bind(after)
    .bind(pattern)
    .fetch_all(conn)
    .await
}

/// The project's "standard users see only official responses" setting.
pub async fn official_only(conn: &mut AnyConnection, project: &str) -> Result<bool> {
    let v: Option<i64> =
        sqlx::query_scalar("SELECT official_only FROM rfi_settings WHERE project_id = $1")
            .bind(project)
            .fetch_optional(conn)
            .await?;
    Ok(v.unwrap_or(0) != 0)
}

pub async fn set_official_only(
    conn: &mut AnyConnection,
    project: &str,
    official_only: bool,
    now_ms: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO rfi_settings (project_id, official_only, update_ms) VALUES ($1, $2, $3)
         ON CONFLICT (project_id) DO UPDATE SET official_only = excluded.official_only, update_ms = excluded.update_ms",
    )
    .bind(project)
    .bind(i64::from(official_only))
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// Links an own RFI to a connected copy; false when already linked.
pub async fn link(
    conn: &mut AnyConnection,
    rfi_id: &str,
    connected_rfi_id: &str,
    project: &str,
    user: &str,
    now_ms: i64,
) -> Result<bool> {
    let n = sqlx::query(
        "INSERT INTO rfi_links (rfi_id, connected_rfi_id, project_id, user_id, create_ms)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (rfi_id, connected_rfi_id) DO NOTHING",
    )
    .bind(rfi_id)
    .bind(connected_rfi_id)
    .bind(project)
    .bind(user)
    .bind(now_ms)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Removes every copy a connection made, with the links to them (an undone connection leaves
/// none, C12): the engine runs these in order with the connection id and then removes
/// the connection's files.
pub const WITHDRAW_COPIES: &[&str] = &[
    "DELETE FROM rfi_links WHERE connected_rfi_id IN (SELECT id FROM rfis WHERE connection_id = $1)",
    "DELETE FROM rfi_responses WHERE rfi_id IN (SELECT id FROM rfis WHERE connection_id = $1)",
    "DELETE FROM rfis WHERE connection_id = $1",
];
