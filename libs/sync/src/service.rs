//! How a tool service starts on its own (`connectability serve <tool>`): the settings every
//! synced tool takes, and the [`Foundation`] they give.

use std::{sync::Arc, time::Duration};

use connectability_blobs::Blobs;
use connectability_platform::{CommonConfig, clock::SystemClock, standalone::Standalone};
use connectability_store::ServiceMigrations;

use crate::Foundation;

/// Settings of every synced tool service; a tool's `Config` flattens these and adds its own.
#[derive(Debug, Clone, clap::Args)]
pub struct ToolConfig {
    /// This service's own database: `postgres://…`, or a SQLite file (default
    /// `sqlite://data/<service>.db`).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Where files live: `file://PATH` or `s3://BUCKET/PREFIX`.
    #[arg(long, env = "BLOBS_URL", default_value = "file://data/blobs")]
    pub blobs_url: String,
    /// Largest accepted file, in bytes.
    #[arg(long, env = "MAX_UPLOAD_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_upload_bytes: usize,
    /// Where the directory service answers.
    #[arg(long, env = "DIRECTORY_URL", default_value = "http://127.0.0.1:50051")]
    pub directory_url: String,
    /// Where connection-manager answers (connection events are confirmed with it).
    #[arg(
        long,
        env = "CONNECTIONS_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub connections_url: String,
    /// How long directory answers are cached, in milliseconds.
    #[arg(long, env = "DIRECTORY_CACHE_TTL_MS", default_value_t = 2000)]
    pub directory_cache_ttl_ms: u64,
    #[command(flatten)]
    pub common: CommonConfig,
}

impl ToolConfig {
    /// Starts the standalone process of tool service `name` (auth, migrated database, bus,
    /// metrics) and the foundation its engine and API run on, with `name`'s identity
    /// towards the directory and connection-manager.
    pub async fn standalone(
        &self,
        name: &'static str,
        migrations: &ServiceMigrations,
    ) -> anyhow::Result<(Standalone, Foundation)> {
        let database_url = self
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://data/{name}.db"));
        let app = Standalone::start(name, &self.common, &database_url, migrations).await?;
        let base = Foundation {
            db: app.db.clone(),
            bus: app.bus.clone(),
            blobs: Blobs::from_url(&self.blobs_url)?,
            clock: Arc::new(SystemClock),
            connections: app.connections(&self.connections_url)?,
            directory: app.directory(
                &self.directory_url,
                Duration::from_millis(self.directory_cache_ttl_ms),
            )?,
        };
        Ok((app, base))
    }
}
