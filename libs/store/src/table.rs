//! Generic row access shared by every service that stores tools' records: one
//! multi-row `INSERT` per batch (within the databases' bind limits), and the usual reads by
//! id, all through one [`Table`] description per row type.

use sqlx::{AnyConnection, AssertSqlSafe, any::AnyRow};

use crate::placeholders;

pub type Result<T> = std::result::Result<T, sqlx::Error>;

/// A value for a batch insert.
pub enum V {
    T(String),
    I(i64),
    N(Option<i64>),
    /// Text or NULL.
    NT(Option<String>),
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
    // SQLite looks each `$N` up by name in a list, so a statement of n of them costs n²/2
    // comparisons (a 1,000-row insert of 16 columns: over 100 million). Plain `?` binds in
    // order and costs nothing to look up; Postgres wants `$N`.
    let sqlite = conn.backend_name() == "SQLite";
    let row_placeholders = |first: usize| {
        if sqlite {
            vec!["?"; columns.len()].join(", ")
        } else {
            placeholders(first, columns.len())
        }
    };
    for chunk in rows.chunks(per_statement) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| format!("({})", row_placeholders(i * columns.len() + 1)))
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
                    V::NT(t) => q.bind(t.clone()),
                };
            }
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// A row type and its table: one generic accessor per operation serves every table.
pub trait Table: Sized {
    const NAME: &'static str;
    const COLUMNS: &'static [&'static str];
    fn read(r: &AnyRow) -> Result<Self>;
    fn values(&self) -> Vec<V>;
}

/// `impl Table` for a row type with inherent `read_row` and `row_values` functions.
#[macro_export]
macro_rules! table {
    ($row:ty, $name:literal, $columns:expr) => {
        impl $crate::table::Table for $row {
            const NAME: &'static str = $name;
            const COLUMNS: &'static [&'static str] = $columns;
            fn read(r: &sqlx::any::AnyRow) -> $crate::table::Result<Self> {
                <$row>::read_row(r)
            }
            fn values(&self) -> Vec<$crate::table::V> {
                <$row>::row_values(self)
            }
        }
    };
}

/// Inserts rows of one table, many per statement.
pub async fn insert<T: Table>(conn: &mut AnyConnection, rows: &[T]) -> Result<()> {
    let values: Vec<Vec<V>> = rows.iter().map(T::values).collect();
    insert_many(conn, T::NAME, T::COLUMNS, &values).await
}

/// `SELECT <columns> FROM <table>`.
pub fn select<T: Table>() -> String {
    format!("SELECT {} FROM {}", T::COLUMNS.join(", "), T::NAME)
}

/// One row by id.
pub async fn get<T: Table>(conn: &mut AnyConnection, id: &str) -> Result<Option<T>> {
    let sql = format!("{} WHERE id = $1", select::<T>());
    Ok(fetch(conn, sql, &[id], T::read).await?.pop())
}

/// Rows by id (any order).
pub async fn by_ids<T: Table>(conn: &mut AnyConnection, ids: &[String]) -> Result<Vec<T>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "{} WHERE id IN ({})",
        select::<T>(),
        placeholders(1, ids.len())
    );
    let binds: Vec<&str> = ids.iter().map(String::as_str).collect();
    fetch(conn, sql, &binds, T::read).await
}

/// A project's rows in id order after `after`.
pub async fn list_in_project<T: Table>(
    conn: &mut AnyConnection,
    project: &str,
    after: &str,
    limit: i64,
) -> Result<Vec<T>> {
    let sql = format!(
        "{} WHERE project_id = $1 AND id > $2 ORDER BY id LIMIT {limit}",
        select::<T>()
    );
    fetch(conn, sql, &[project, after], T::read).await
}

/// Runs `sql` with text binds and reads every row with `read`.
pub async fn fetch<T>(
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

/// Deletes rows by id.
pub async fn delete_by_ids<T: Table>(conn: &mut AnyConnection, ids: &[String]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "DELETE FROM {} WHERE id IN ({})",
        T::NAME,
        placeholders(1, ids.len())
    );
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for id in ids {
        q = q.bind(id.clone());
    }
    q.execute(conn).await?;
    Ok(())
}

/// Rewrites every column of `row` (found by its first column, `id`) if the stored `version`
/// is still `expected_version`; false when another writer changed it first (optimistic
/// concurrency for tables with a `version` column).
pub async fn update_if_version<T: Table>(
    conn: &mut AnyConnection,
    row: &T,
    expected_version: i64,
) -> Result<bool> {
    let sets: Vec<String> = T::COLUMNS
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, c)| format!("{c} = ${}", i + 1))
        .collect();
    let sql = format!(
        "UPDATE {} SET {} WHERE {} = $1 AND version = ${}",
        T::NAME,
        sets.join(", "),
        T::COLUMNS[0],
        T::COLUMNS.len() + 1
    );
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for v in row.values() {
        q = match v {
            V::T(s) => q.bind(s),
            V::I(i) => q.bind(i),
            V::N(n) => q.bind(n),
            V::NT(t) => q.bind(t),
        };
    }
    let n = q
        .bind(expected_version)
        .execute(conn)
        .await?
        .rows_affected();
    Ok(n == 1)
}
