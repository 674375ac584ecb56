//! Every SQL statement of drawings-sync, written once for Postgres and SQLite.

use sqlx::{AnyConnection, AssertSqlSafe, Row, any::AnyRow};

type Result<T> = std::result::Result<T, sqlx::Error>;

/// A value for a batch insert.
pub enum V {
    T(String),
    I(i64),
    N(Option<i64>),
}

/// Inserts many rows with as few statements as the databases' bind limits allow.
pub async fn insert_many(
    conn: &mut AnyConnection,
    table: &str,
    columns: &[&str],
    rows: &[Vec<V>],
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let per_statement = (30_000 / columns.len()).max(1);
    for chunk in rows.chunks(per_statement) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                format!(
                    "({})",
                    connectability_store::placeholders(i * columns.len() + 1, columns.len())
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO {table} ({}) VALUES {}",
            columns.join(", "),
            values.join(", ")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for row in chunk {
            for v in row {
                q = match v {
                    V::T(s) => q.bind(s.clone()),
                    V::I(i) => q.bind(*i),
                    V::N(n) => q.bind(*n),
                };
            }
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

fn in_list(first: usize, n: usize) -> String {
    connectability_store::placeholders(first, n)
}

// --- rows ----------------------------------------------------------------------------------

/// A row type and its table: one generic accessor per operation serves every table.
pub trait Table: Sized {
    const NAME: &'static str;
    const COLUMNS: &'static [&'static str];
    fn read(r: &AnyRow) -> Result<Self>;
    fn values(&self) -> Vec<V>;
}

macro_rules! table {
    ($row:ty, $name:literal, $columns:ident) => {
        impl Table for $row {
            const NAME: &'static str = $name;
            const COLUMNS: &'static [&'static str] = $columns;
            fn read(r: &AnyRow) -> Result<Self> {
                <$row>::read_row(r)
            }
            fn values(&self) -> Vec<V> {
                <$row>::row_values(self)
            }
        }
    };
}

table!(AreaRow, "areas", AREA_COLUMNS);
table!(SetRow, "sets", SET_COLUMNS);
table!(DrawingRow, "drawings", DRAWING_COLUMNS);
table!(RevisionRow, "revisions", REVISION_COLUMNS);
table!(FileRow, "files", FILE_COLUMNS);

/// Inserts rows of one table, many per statement.
pub async fn insert<T: Table>(conn: &mut AnyConnection, rows: &[T]) -> Result<()> {
    let values: Vec<Vec<V>> = rows.iter().map(T::values).collect();
    insert_many(conn, T::NAME, T::COLUMNS, &values).await
}

/// One row by id.
pub async fn get<T: Table>(conn: &mut AnyConnection, id: &str) -> Result<Option<T>> {
    let sql = format!(
        "SELECT {} FROM {} WHERE id = $1",
        T::COLUMNS.join(", "),
        T::NAME
    );
    Ok(fetch(conn, sql, &[id], T::read).await?.pop())
}

/// Rows by id (any order).
pub async fn by_ids<T: Table>(conn: &mut AnyConnection, ids: &[String]) -> Result<Vec<T>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {} FROM {} WHERE id IN ({})",
        T::COLUMNS.join(", "),
        T::NAME,
        in_list(1, ids.len())
    );
    let binds: Vec<&str> = ids.iter().map(String::as_str).collect();
    fetch(conn, sql, &binds, T::read).await
}

/// A project's rows in id order after `after` (areas, sets).
pub async fn list_in_project<T: Table>(
    conn: &mut AnyConnection,
    project: &str,
    after: &str,
    limit: i64,
) -> Result<Vec<T>> {
    let sql = format!(
        "SELECT {} FROM {} WHERE project_id = $1 AND id > $2 ORDER BY id LIMIT {limit}",
        T::COLUMNS.join(", "),
        T::NAME
    );
    fetch(conn, sql, &[project, after], T::read).await
}

/// A connection's copies of these upstream items.
pub async fn copies<T: Table>(
    conn: &mut AnyConnection,
    connection_id: &str,
    origin_ids: &[String],
) -> Result<Vec<T>> {
    if origin_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {} FROM {} WHERE connection_id = $1 AND origin_id IN ({})",
        T::COLUMNS.join(", "),
        T::NAME,
        in_list(2, origin_ids.len())
    );
    let mut binds = vec![connection_id];
    binds.extend(origin_ids.iter().map(String::as_str));
    fetch(conn, sql, &binds, T::read).await
}

#[derive(Debug, Clone, Default)]
pub struct Copy {
    pub connection_id: String,
    pub origin_id: String,
    pub origin_project_id: String,
}

impl Copy {
    fn read(r: &AnyRow) -> Result<Copy> {
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
pub struct FileRow {
    pub id: String,
    pub project_id: String,
    pub company_id: String,
    pub filename: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub object_key: String,
    pub create_ms: i64,
}

pub const FILE_COLUMNS: &[&str] = &[
    "id",
    "project_id",
    "company_id",
    "filename",
    "content_type",
    "size_bytes",
    "sha256",
    "object_key",
    "create_ms",
];

impl FileRow {
    fn read_row(r: &AnyRow) -> Result<Self> {
        Ok(Self {
            id: r.try_get("id")?,
            project_id: r.try_get("project_id")?,
            company_id: r.try_get("company_id")?,
            filename: r.try_get("filename")?,
            content_type: r.try_get("content_type")?,
            size_bytes: r.try_get("size_bytes")?,
            sha256: r.try_get("sha256")?,
            object_key: r.try_get("object_key")?,
            create_ms: r.try_get("create_ms")?,
        })
    }
    fn row_values(&self) -> Vec<V> {
        vec![
            V::T(self.id.clone()),
            V::T(self.project_id.clone()),
            V::T(self.company_id.clone()),
            V::T(self.filename.clone()),
            V::T(self.content_type.clone()),
            V::I(self.size_bytes),
            V::T(self.sha256.clone()),
            V::T(self.object_key.clone()),
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

#[derive(Debug, Clone)]
pub struct SyncRow {
    pub connection_id: String,
    pub upstream_project_id: String,
    pub downstream_project_id: String,
    pub downstream_company_id: String,
    pub state: i64,
    pub items_total: i64,
    pub items_copied: i64,
    pub drawings_copied: i64,
    pub backfill_cursor: String,
    pub start_ms: i64,
    pub last_copy_ms: Option<i64>,
    pub update_ms: i64,
}

impl SyncRow {
    fn read(r: &AnyRow) -> Result<Self> {
        Ok(Self {
            connection_id: r.try_get("connection_id")?,
            upstream_project_id: r.try_get("upstream_project_id")?,
            downstream_project_id: r.try_get("downstream_project_id")?,
            downstream_company_id: r.try_get("downstream_company_id")?,
            state: r.try_get("state")?,
            items_total: r.try_get("items_total")?,
            items_copied: r.try_get("items_copied")?,
            drawings_copied: r.try_get("drawings_copied")?,
            backfill_cursor: r.try_get("backfill_cursor")?,
            start_ms: r.try_get("start_ms")?,
            last_copy_ms: r.try_get("last_copy_ms")?,
            update_ms: r.try_get("update_ms")?,
        })
    }
}

macro_rules! select {
    ($table:literal, $columns:expr) => {
        format!("SELECT {} FROM {}", $columns.join(", "), $table)
    };
}

async fn fetch<T>(
    conn: &mut AnyConnection,
    sql: String,
    binds: &[&str],
    read: fn(&AnyRow) -> Result<T>,
) -> Result<Vec<T>> {
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for b in binds {
        q = q.bind(b.to_string());
    }
    q.fetch_all(conn).await?.iter().map(read).collect()
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
        select!("drawings", DRAWING_COLUMNS)
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
        select!("revisions", REVISION_COLUMNS),
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
        select!("revisions", REVISION_COLUMNS),
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

const SYNC_COLUMNS: &str =
    "connection_id, upstream_project_id, downstream_project_id, downstream_company_id, state,
    items_total, items_copied, drawings_copied, backfill_cursor, start_ms, last_copy_ms, update_ms";

pub async fn get_sync(conn: &mut AnyConnection, connection_id: &str) -> Result<Option<SyncRow>> {
    Ok(fetch(
        conn,
        format!("SELECT {SYNC_COLUMNS} FROM sync_connections WHERE connection_id = $1"),
        &[connection_id],
        SyncRow::read,
    )
    .await?
    .pop())
}

/// Connections copying from `upstream` (not stopped).
pub async fn syncs_from(conn: &mut AnyConnection, upstream: &str) -> Result<Vec<SyncRow>> {
    fetch(conn, format!("SELECT {SYNC_COLUMNS} FROM sync_connections WHERE upstream_project_id = $1 AND state <> 3"), &[upstream], SyncRow::read).await
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

/// Starts (or restarts) a connection's backfill.
pub async fn start_sync(conn: &mut AnyConnection, s: &SyncRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO sync_connections (connection_id, upstream_project_id, downstream_project_id, downstream_company_id,
            state, items_total, items_copied, drawings_copied, backfill_cursor, start_ms, last_copy_ms, update_ms)
         VALUES ($1, $2, $3, $4, 1, $5, 0, 0, '', $7, NULL, $6)
         ON CONFLICT (connection_id) DO UPDATE SET state = 1, items_total = excluded.items_total,
            backfill_cursor = '', start_ms = excluded.start_ms, update_ms = excluded.update_ms",
    )
    .bind(&s.connection_id)
    .bind(&s.upstream_project_id)
    .bind(&s.downstream_project_id)
    .bind(&s.downstream_company_id)
    .bind(s.items_total)
    .bind(s.update_ms)
    .bind(s.start_ms)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn stop_sync(conn: &mut AnyConnection, connection_id: &str, now_ms: i64) -> Result<()> {
    sqlx::query("UPDATE sync_connections SET state = 3, update_ms = $2 WHERE connection_id = $1")
        .bind(connection_id)
        .bind(now_ms)
        .execute(conn)
        .await?;
    Ok(())
}

/// Adds copied counts (and, for live publishes, to the total too).
pub async fn count_copies(
    conn: &mut AnyConnection,
    connection_id: &str,
    revisions: i64,
    drawings: i64,
    add_to_total: bool,
    now_ms: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE sync_connections SET items_copied = items_copied + $2, drawings_copied = drawings_copied + $3,
            items_total = items_total + $4, last_copy_ms = $5, update_ms = $5 WHERE connection_id = $1",
    )
    .bind(connection_id)
    .bind(revisions)
    .bind(drawings)
    .bind(if add_to_total { revisions } else { 0 })
    .bind(now_ms)
    .execute(conn)
    .await?;
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
    let n = sqlx::query("UPDATE sync_connections SET state = 2, update_ms = $2 WHERE connection_id = $1 AND state = 1")
        .bind(connection_id)
        .bind(now_ms)
        .execute(conn)
        .await?
        .rows_affected();
    Ok(n == 1)
}

/// Upstream drawings (ids after `cursor`) that have a published revision: the backfill's next batch.
pub async fn backfill_batch(
    conn: &mut AnyConnection,
    upstream: &str,
    cursor: &str,
    limit: i64,
) -> Result<Vec<String>> {
    sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT d.id FROM drawings d WHERE d.project_id = $1 AND d.id > $2 AND d.deleted_ms IS NULL
           AND EXISTS (SELECT 1 FROM revisions r WHERE r.drawing_id = d.id AND r.published = 1)
         ORDER BY d.id LIMIT {limit}"
    )))
    .bind(upstream)
    .bind(cursor)
    .fetch_all(conn)
    .await
}

/// Upstream originals by id.
pub async fn drawings_by_ids(
    conn: &mut AnyConnection,
    project: &str,
    ids: &[String],
) -> Result<Vec<DrawingRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "{} WHERE project_id = $1 AND id IN ({})",
        select!("drawings", DRAWING_COLUMNS),
        in_list(2, ids.len())
    );
    let mut binds = vec![project];
    binds.extend(ids.iter().map(String::as_str));
    fetch(conn, sql, &binds, <DrawingRow as Table>::read).await
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

/// Removes every copy a connection made (an undone connection leaves none, C12); returns
/// the object keys of the copied files.
pub async fn withdraw_copies(conn: &mut AnyConnection, connection_id: &str) -> Result<Vec<String>> {
    let file_ids: Vec<String> =
        sqlx::query_scalar("SELECT file_id FROM revisions WHERE connection_id = $1")
            .bind(connection_id)
            .fetch_all(&mut *conn)
            .await?;
    let files: Vec<FileRow> = by_ids(&mut *conn, &file_ids).await?;
    for sql in [
        "DELETE FROM markups WHERE revision_id IN (SELECT id FROM revisions WHERE connection_id = $1)",
        "DELETE FROM revisions WHERE connection_id = $1",
        "DELETE FROM drawings WHERE connection_id = $1",
        "DELETE FROM sets WHERE connection_id = $1",
        "DELETE FROM areas WHERE connection_id = $1",
    ] {
        sqlx::query(sql)
            .bind(connection_id)
            .execute(&mut *conn)
            .await?;
    }
    if !file_ids.is_empty() {
        let sql = format!(
            "DELETE FROM files WHERE id IN ({})",
            in_list(1, file_ids.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for id in &file_ids {
            q = q.bind(id.clone());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(files.into_iter().map(|f| f.object_key).collect())
}
