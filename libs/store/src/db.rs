use std::{str::FromStr, time::Duration};

use anyhow::Context as _;
use sqlx::{AnyPool, Executor, any::AnyPoolOptions, migrate::Migrator};

pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// A service's migrations: one folder for both backends when its DDL is portable
/// (`sqlx::migrate!("./migrations")` twice), or one folder per backend where it differs.
pub struct ServiceMigrations {
    pub postgres: Migrator,
    pub sqlite: Migrator,
    /// Tables of libraries the service embeds (the sync engine's), applied before the
    /// service's own migrations, each set with its own history table.
    pub libraries: Vec<LibraryMigrations>,
}

/// A library's migrations, kept in one folder of the library and applied by every service
/// that embeds it (see [`ServiceMigrations::libraries`]).
pub struct LibraryMigrations {
    history_table: &'static str,
    postgres: Migrator,
    sqlite: Migrator,
}

impl LibraryMigrations {
    /// `history_table` (`_sync_migrations`) keeps the library's history apart from the
    /// service's and the platform's.
    pub fn new(history_table: &'static str, mut postgres: Migrator, mut sqlite: Migrator) -> Self {
        postgres.dangerous_set_table_name(history_table);
        sqlite.dangerous_set_table_name(history_table);
        Self {
            history_table,
            postgres,
            sqlite,
        }
    }
}

/// The longest one SQL statement may run on Postgres (`statement_timeout`).
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(60);

/// A connection pool to one service's database.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

impl Db {
    /// Connects to `sqlite://path` (the file and its folder are created) or `postgres://…`;
    /// on Postgres every session has a [`STATEMENT_TIMEOUT`].
    pub async fn connect(url: &str) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            anyhow::bail!(
                "DATABASE_URL must start with sqlite:// or postgres://, got `{}`",
                redact(url)
            );
        };
        let url = match backend {
            Backend::Sqlite => sqlite_url(url)?,
            Backend::Postgres => url.to_string(),
        };
        let options = AnyPoolOptions::new()
            .acquire_timeout(Duration::from_secs(10))
            .max_connections(match backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 10,
            });
        let options = if backend == Backend::Sqlite {
            options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    // WAL lets readers run beside the one writer; writers queue on busy_timeout.
                    conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000;")
                        .await?;
                    Ok(())
                })
            })
        } else {
            options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    // No statement runs longer than this, whatever a caller or a tenant's
                    // data makes it do; the transaction fails and is retried or reported.
                    conn.execute(sqlx::AssertSqlSafe(format!(
                        "SET statement_timeout = {}",
                        STATEMENT_TIMEOUT.as_millis()
                    )))
                    .await?;
                    Ok(())
                })
            })
        };
        let pool = options
            .connect(&url)
            .await
            .with_context(|| format!("connecting to {}", redact(&url)))?;
        Ok(Db { pool, backend })
    }

    /// Applies the platform tables (outbox, inbox, dead letters, request ids), then the
    /// libraries' tables, then the service's own migrations. Running it again is a no-op.
    pub async fn migrate(&self, service: &ServiceMigrations) -> anyhow::Result<()> {
        let mut platform = match self.backend {
            Backend::Postgres => sqlx::migrate!("migrations/postgres"),
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite"),
        };
        // The platform's history lives in its own table so it never collides with a service's.
        platform.dangerous_set_table_name("_platform_migrations");
        platform
            .run(&self.pool)
            .await
            .context("platform migrations")?;
        for library in &service.libraries {
            let migrator = match self.backend {
                Backend::Postgres => &library.postgres,
                Backend::Sqlite => &library.sqlite,
            };
            migrator
                .run(&self.pool)
                .await
                .with_context(|| format!("{} migrations", library.history_table))?;
        }
        let service = match self.backend {
            Backend::Postgres => &service.postgres,
            Backend::Sqlite => &service.sqlite,
        };
        service
            .run(&self.pool)
            .await
            .context("service migrations")?;
        Ok(())
    }

    /// Starts a transaction. On SQLite it takes the write lock up front (`BEGIN IMMEDIATE`),
    /// so two writers queue instead of failing to upgrade a read lock.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn sqlite_url(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" {
        anyhow::bail!(
            "DATABASE_URL: use a file (sqlite://data/directory.db); in-memory SQLite is per connection"
        );
    }
    if let Some(parent) = std::path::Path::new(path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let query = if query.is_empty() {
        "mode=rwc".to_string()
    } else {
        query.to_string()
    };
    Ok(format!("sqlite://{path}?{query}"))
}

/// The URL without its password, for logs and errors.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl FromStr for Backend {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "postgres" => Ok(Backend::Postgres),
            "sqlite" => Ok(Backend::Sqlite),
            other => anyhow::bail!("unknown backend `{other}`"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn sqlite_urls_create_files() {
        assert!(sqlite_url("sqlite::memory:").is_err());
        assert!(
            sqlite_url("sqlite://x.db")
                .unwrap()
                .ends_with("x.db?mode=rwc")
        );
    }
}
