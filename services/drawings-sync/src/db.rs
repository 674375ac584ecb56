//! Every SQL statement of drawings-sync, written once for Postgres and SQLite.

use connectability_store::{
    placeholders, table,
    table::{Result, V, fetch, select},
};
use sqlx::{AnyConnection, AssertSqlSafe, Row, any::AnyRow};

pub use connectability_blobs::files::FileRow;
pub use connectability_store::table::{Table, by_ids, get, insert, list_in_project};
pub use connectability_sync::{Copy, SyncRow, copies_in, originals};

fn in_list(first: usize, n: usize) -> String {
    placeholders(first, n)
}

table!(AreaRow, "areas", AREA_COLUMNS);
table!(SetRow, "sets", SET_COLUMNS);
table!(DrawingRow, "drawings", DRAWING_COLUMNS);
table!(RevisionRow, "revisions", REVISION_COLUMNS);

#[derive(Debug, Clone)]
pub struct AreaRow {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub description: String,
    pub copy: Copy,
    pub create_ms: i64,
}

pub const AREA_COLUMNS: &[&str] = &[
    "id",
    "project_id",
    "name",
    "description",
    "connection_id",
    "origin_id",
    "origin_project_id",
    "create_ms",
];

impl AreaRow {
    fn read_row(r: &AnyRow) -> Result<Self> {
        Ok(Self {
            id: r.try_get("id")?,
            project_id: r.try_get("project_id")?,
            name: r.try_get("name")?,
            description: r.try_get("description")?,
            copy: Copy::read(r)?,
            create_ms: r.try_get("create_ms")?,
        })
    }
    fn row_values(&self) -> Vec<V> {
        vec![
            V::T(self.id.clone()),
            V::T(self.project_id.clone()),
            V::T(self.name.clone()),
            V::T(self.description.clone()),
            V::T(self.copy.connection_id.clone()),
            V::T(self.copy.origin_id.clone()),
            V::T(self.copy.origin_project_id.clone()),
            V::I(self.create_ms),
        ]
    }
}

#[derive(Debug, Clone)]
pub struct SetRow {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub set_date: String,
    pub copy: Copy,
    pub create_ms: i64,
}

pub const SET_COLUMNS: &[&str] = &[
    "id",
    "project_id",
    "name",
    "set_date",
    "connection_id",
    "origin_id",
    "origin_project_id",
    "create_ms",
];

impl SetRow {
    fn read_row(r: &AnyRow) -> Result<Self> {
        Ok(Self {
            id: r.try_get("id")?,
            project_id: r.try_get("project_id")?,
            name: r.try_get("name")?,
            set_date: r.try_get("set_date")?,
            copy: Copy::read(r)?,
            create_ms: r.try_get("create_ms")?,
        })
    }
    fn row_values(&self) -> Vec<V> {
        vec![
            V::T(self.id.clone()),
            V::T(self.project_id.clone()),
            V::T(self.name.clone()),
            V::T(self.set_date.clone()),
            V::T(self.copy.connection_id.clone()),
            V::T(self.copy.origin_id.clone()),
            V::T(self.copy.origin_project_id.clone()),
            V::I(self.create_ms),
        ]
    }
}

#[derive(Debug, Clone)]
pub struct DrawingRow {
    pub id: String,
    pub project_id: String,
    pub area_id: String,
    pub number: String,
    pub title: String,
    pub discipline_name: String,
    pub discipline_position: i64,
    pub obsolete: bool,
    pub version: i64,
    pub deleted_ms: Option<i64>,
    pub copy: Copy,
    pub origin_version: i64,
    pub create_ms: i64,
    pub update_ms: i64,
}

pub const DRAWING_COLUMNS: &[&str] = &[
    "id",
    "project_id",
    "area_id",
    "number",
    "title",
    "discipline_name",
    "discipline_position",
    "obsolete",
    "version",
    "deleted_ms",
    "connection_id",
    "origin_id",
    "origin_project_id",
    "origin_version",
    "create_ms",
    "update_ms",
];

impl DrawingRow {
    fn read_row(r: &AnyRow) -> Result<Self> {
        Ok(Self {
            id: r.try_get("id")?,
            project_id: r.try_get("project_id")?,
            area_id: r.try_get("area_id")?,
            number: r.try_get("number")?,
            title: r.try_get("title")?,
            discipline_name: r.try_get("discipline_name")?,
            discipline_position: r.try_get("discipline_position")?,
            obsolete: r.try_get::<i64, _>("obsolete")? != 0,
            version: r.try_get("version")?,
            deleted_ms: r.try_get("deleted_ms")?,
            copy: Copy::read(r)?,
            origin_version: r.try_get("origin_version")?,
            create_ms: r.try_get("create_ms")?,
            update_ms: r.try_get("update_ms")?,
        })
    }
    fn row_values(&self) -> Vec<V> {
        vec![
            V::T(self.id.clone()),
            V::T(self.project_id.clone()),
            V::T(self.area_id.clone()),
            V::T(self.number.clone()),
            V::T(self.title.clone()),
            V::T(self.discipline_name.clone()),
            V::I(self.discipline_position),
            V::I(i64::from(self.obsolete)),
            V::I(self.version),
            V::N(self.deleted_ms),
            V::T(self.copy.connection_id.clone()),
            V::T(self.copy.origin_id.clone()),
            V::T(self.copy.origin_project_id.clone()),
            V::I(self.origin_version),
            V::I(self.create_ms),
            V::I(self.update_ms),
        ]
    }
}

#[derive(Debug, Clone)]
pub struct RevisionRow {
    pub id: String,
    pub drawing_id: String,
    pub project_id: String,
    pub set_id: String,
    pub revision_number: String,
    pub revision_status: String,
    pub drawing_date: String,
    pub received_date: String,
    pub file_id: String,
    pub custom_fields: String,
    pub published: bool,
    pub publish_ms: Option<i64>,
    pub copy: Copy,
    pub create_ms: i64,
}

pub const REVISION_COLUMNS: &[&str] = &[
    "id",
    "drawing_id",
    "project_id",
    "set_id",
    "revision_number",
    "revision_status",
    "drawing_date",
    "received_date",
    "file_id",
    "custom_fields",
    "published",
    "publish_ms",
    "connection_id",
    "origin_id",
    "origin_project_id",
    "create_ms",
];

impl RevisionRow {
    fn read_row(r: &AnyRow) -> Result<Self> {
        Ok(Self {
            id: r.try_get("id")?,
            drawing_id: r.try_get("drawing_id")?,
            project_id: r.try_get("project_id")?,
            set_id: r.try_get("set_id")?,
            revision_number: r.try_get("revision_number")?,
            revision_status: r.try_get("revision_status")?,
            drawing_date: r.try_get("drawing_date")?,
            received_date: r.try_get("received_date")?,
            file_id: r.try_get("file_id")?,
            custom_fields: r.try_get("custom_fields")?,
            published: r.try_get::<i64, _>("published")? != 0,
            publish_ms: r.try_get("publish_ms")?,
            copy: Copy::read(r)?,
            create_ms: r.try_get("create_ms")?,
        })
    }
    fn row_values(&self) -> Vec<V> {
        vec![
            V::T(self.id.clone()),
            V::T(self.drawing_id.clone()),
            V::T(self.project_id.clone()),
            V::T(self.set_id.clone()),
            V::T(self.revision_number.clone()),
            V::T(self.revision_status.clone()),
            V::T(self.drawing_date.clone()),
            V::T(self.received_date.clone()),
            V::T(self.file_id.clone()),
            V::T(self.custom_fields.clone()),
            V::I(i64::from(self.published)),
            V::N(self.publish_ms),
            V::T(self.copy.connection_id.clone()),
            V::T(self.copy.origin_id.clone()),
            V::T(self.copy.origin_project_id.clone()),
            V::I(self.create_ms),
        ]
    }
}

#[derive(Debug, Clone)]
pub struct MarkupRow {
    pub id: String,
    pub project_id: String,
    pub revision_id: String,
    pub author_id: String,
    pub body: String,
    pub create_ms: i64,
}

// --- the tool ------------------------------------------------------------------------------

/// True when a published revision of a live drawing shows this file.
pub async fn file_is_published(conn: &mut AnyConnection, file_id: &str) -> Result<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM revisions r JOIN drawings d ON d.id = r.drawing_id
         WHERE r.file_id = $1 AND r.published = 1 AND d.deleted_ms IS NULL",
    )
    .bind(file_id)
    .fetch_one(conn)
    .await?;
    Ok(n > 0)
}

/// The live drawing with this number in this area, if any.
pub async fn find_drawing(
    conn: &mut AnyConnection,
    project: &str,
    area: &str,
    number: &str,
) -> Result<Option<DrawingRow>> {
    let sql = format!(
        "{} WHERE project_id = $1 AND area_id = $2 AND number = $3 AND deleted_ms IS NULL",
        select::<DrawingRow>()
    );
    Ok(fetch(
        conn,
        sql,
        &[project, area, number],
        <DrawingRow as Table>::read,
    )
    .await?
    .pop())
}

/// Writes a drawing's mutable fields.
pub async fn update_drawing(conn: &mut AnyConnection, d: &DrawingRow) -> Result<()> {
    sqlx::query(
        "UPDATE drawings SET area_id = $2, number = $3, title = $4, discipline_name = $5, discipline_position = $6,
            obsolete = $7, version = $8, deleted_ms = $9, origin_version = $10, update_ms = $11 WHERE id = $1",
    )
    .bind(&d.id)
    .bind(&d.area_id)
    .bind(&d.number)
    .bind(&d.title)
    .bind(&d.discipline_name)
    .bind(d.discipline_position)
    .bind(i64::from(d.obsolete))
    .bind(d.version)
    .bind(d.deleted_ms)
    .bind(d.origin_version)
    .bind(d.update_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// Live drawings of a project in (number, id) order after `after` = "number\nid".
/// `published_only`: only drawings with a published revision.
pub async fn list_drawings(
    conn: &mut AnyConnection,
    project: &str,
    area: &str,
    published_only: bool,
    unpublished_only: bool,
    after: &str,
    limit: i64,
) -> Result<Vec<DrawingRow>> {
    let (after_number, after_id) = after.split_once('\n').unwrap_or(("", ""));
    let filter = if published_only {
        "AND EXISTS (SELECT 1 FROM revisions r WHERE r.drawing_id = d.id AND r.published = 1)"
    } else if unpublished_only {
        "AND EXISTS (SELECT 1 FROM revisions r WHERE r.drawing_id = d.id AND r.published = 0)"
    } else {
        ""
    };
    let columns: Vec<String> = DRAWING_COLUMNS.iter().map(|c| format!("d.{c}")).collect();
    let sql = format!(
        "SELECT {} FROM drawings d WHERE d.project_id = $1 AND d.deleted_ms IS NULL AND ($2 = '' OR d.area_id = $2) {filter}
           AND (d.number > $3 OR (d.number = $3 AND d.id > $4))
         ORDER BY d.number, d.id LIMIT {limit}",
        columns.join(", ")
    );
    fetch(
        conn,
        sql,
        &[project, area, after_number, after_id],
        <DrawingRow as Table>::read,
    )
    .await
}

/// Revisions of these drawings, oldest first.
pub async fn revisions_of(
    conn: &mut AnyConnection,
    drawing_ids: &[String],
    published_only: bool,
) -> Result<Vec<RevisionRow>> {
    if drawing_ids.is_empty() {
        return Ok(Vec::new());
    }
    let only = if published_only {
        "AND published = 1"
    } else {
        ""
    };
    let sql = format!(
        "{} WHERE drawing_id IN ({}) {only} ORDER BY id",
        select::<RevisionRow>(),
        in_list(1, drawing_ids.len())
    );
    let binds: Vec<&str> = drawing_ids.iter().map(String::as_str).collect();
    fetch(conn, sql, &binds, <RevisionRow as Table>::read).await
}

/// Marks these revisions published; returns the ones that were not yet.
pub async fn publish(
    conn: &mut AnyConnection,
    project: &str,
    ids: &[String],
    now_ms: i64,
) -> Result<Vec<RevisionRow>> {
    let sql = format!(
        "{} WHERE project_id = $1 AND published = 0 AND id IN ({})",
        select::<RevisionRow>(),
        in_list(2, ids.len())
    );
    let mut binds = vec![project];
    binds.extend(ids.iter().map(String::as_str));
    let newly = fetch(&mut *conn, sql, &binds, <RevisionRow as Table>::read).await?;
    if newly.is_empty() {
        return Ok(newly);
    }
    let sql = format!(
        "UPDATE revisions SET published = 1, publish_ms = $1 WHERE id IN ({})",
        in_list(2, newly.len())
    );
    let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now_ms);
    for r in &newly {
        q = q.bind(r.id.clone());
    }
    q.execute(conn).await?;
    Ok(newly)
}

/// Revisions of deleted drawings (the Deleted Drawing Revisions report), newest deletion first.
pub async fn deleted_revisions(
    conn: &mut AnyConnection,
    project: &str,
    after: &str,
    limit: i64,
) -> Result<Vec<(RevisionRow, DrawingRow)>> {
    let rev_cols: Vec<String> = REVISION_COLUMNS.iter().map(|c| format!("r.{c}")).collect();
    let sql = format!(
        "SELECT {}, d.deleted_ms AS d_deleted_ms FROM revisions r JOIN drawings d ON d.id = r.drawing_id
         WHERE d.project_id = $1 AND d.deleted_ms IS NOT NULL AND r.id > $2 ORDER BY r.id LIMIT {limit}",
        rev_cols.join(", ")
    );
    let revisions = fetch(
        &mut *conn,
        sql,
        &[project, after],
        <RevisionRow as Table>::read,
    )
    .await?;
    let mut out = Vec::with_capacity(revisions.len());
    for r in revisions {
        if let Some(d) = get::<DrawingRow>(&mut *conn, &r.drawing_id).await? {
            out.push((r, d));
        }
    }
    Ok(out)
}

pub async fn published_revision_count(conn: &mut AnyConnection, project: &str) -> Result<i64> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM revisions r JOIN drawings d ON d.id = r.drawing_id
         WHERE r.project_id = $1 AND r.published = 1 AND d.deleted_ms IS NULL",
    )
    .bind(project)
    .fetch_one(conn)
    .await
}

pub async fn insert_markup(conn: &mut AnyConnection, m: &MarkupRow) -> Result<()> {
    sqlx::query("INSERT INTO markups (id, project_id, revision_id, author_id, body, create_ms) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&m.id)
        .bind(&m.project_id)
        .bind(&m.revision_id)
        .bind(&m.author_id)
        .bind(&m.body)
        .bind(m.create_ms)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn list_markups(
    conn: &mut AnyConnection,
    project: &str,
    revision: &str,
    published_only: bool,
    after: &str,
    limit: i64,
) -> Result<Vec<MarkupRow>> {
    let only = if published_only {
        "AND r.published = 1"
    } else {
        ""
    };
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT m.id, m.project_id, m.revision_id, m.author_id, m.body, m.create_ms FROM markups m
         JOIN revisions r ON r.id = m.revision_id
         WHERE m.project_id = $1 AND ($2 = '' OR m.revision_id = $2) AND m.id > $3 {only} ORDER BY m.id LIMIT {limit}"
    )))
    .bind(project)
    .bind(revision)
    .bind(after)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(MarkupRow {
                id: r.try_get("id")?,
                project_id: r.try_get("project_id")?,
                revision_id: r.try_get("revision_id")?,
                author_id: r.try_get("author_id")?,
                body: r.try_get("body")?,
                create_ms: r.try_get("create_ms")?,
            })
        })
        .collect()
}

// --- the sync ------------------------------------------------------------------------------

/// Upstream drawings (ids after `cursor`) that have a published revision: the backfill's next batch.
pub async fn backfill_batch(
    conn: &mut AnyConnection,
    upstream: &str,
    cursor: &str,
    limit: Option<i64>,
) -> Result<Vec<String>> {
    let limit = limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default();
    sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT d.id FROM drawings d WHERE d.project_id = $1 AND d.id > $2 AND d.deleted_ms IS NULL
           AND EXISTS (SELECT 1 FROM revisions r WHERE r.drawing_id = d.id AND r.published = 1)
         ORDER BY d.id{limit}"
    )))
    .bind(upstream)
    .bind(cursor)
    .fetch_all(conn)
    .await
}

pub async fn update_area(conn: &mut AnyConnection, a: &AreaRow) -> Result<()> {
    sqlx::query("UPDATE areas SET name = $2, description = $3 WHERE id = $1")
        .bind(&a.id)
        .bind(&a.name)
        .bind(&a.description)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn update_set(conn: &mut AnyConnection, s: &SetRow) -> Result<()> {
    sqlx::query("UPDATE sets SET name = $2, set_date = $3 WHERE id = $1")
        .bind(&s.id)
        .bind(&s.name)
        .bind(&s.set_date)
        .execute(conn)
        .await?;
    Ok(())
}

/// Removes every copy a connection made, with the links to them (an undone connection leaves
/// none, C12): the engine runs these in order with the connection id and then removes
/// the connection's files.
pub const WITHDRAW_COPIES: &[&str] = &[
    "DELETE FROM markups WHERE revision_id IN (SELECT id FROM revisions WHERE connection_id = $1)",
    "DELETE FROM revisions WHERE connection_id = $1",
    "DELETE FROM drawings WHERE connection_id = $1",
    "DELETE FROM sets WHERE connection_id = $1",
    "DELETE FROM areas WHERE connection_id = $1",
];
