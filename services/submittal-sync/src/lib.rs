//! The `submittal-sync` service: the Submittals tool of every project (submittals,
//! revisions, approvers and their responses, distributions, attachments, cover sheets) and
//! the one-way copy of distributed submittals to connected downstream projects (rules S1-S6)
//! on the shared sync engine (`libs/sync`).
//!
//! Layout as in every service: `api` (thin gRPC layer), `domain` (rules, parsed input),
//! `db` (all SQL), `events` (what it publishes), `sync` (the tool's side of the engine:
//! what is shared and how a copy is made), `pdf` (the cover sheet), `demo` (dev data).

mod api;
mod db;
pub mod demo;
pub mod domain;
mod events;
pub mod pdf;
pub mod sync;

use std::{sync::Arc, time::Duration};

use connectability_blobs::Blobs;
use connectability_events::EventBus;
use connectability_platform::{
    CommonConfig, GrpcServer,
    clock::{Clock, SystemClock},
    connections::ConnectionsGateway,
    directory::DirectoryGateway,
    standalone::Standalone,
};
use connectability_proto::submittals::v1::submittal_service_server::SubmittalServiceServer;
use connectability_store::{Db, ServiceMigrations};

pub use api::{Limits, SubmittalApi};

pub const NAME: &str = "submittal-sync";

/// The DDL is portable, so both backends share one folder.
pub fn migrations() -> ServiceMigrations {
    ServiceMigrations {
        postgres: sqlx::migrate!("./migrations"),
        sqlite: sqlx::migrate!("./migrations"),
        libraries: vec![connectability_sync::migrations()],
    }
}

/// The service's parts: the API, and the engine's relay, consumers and workers.
pub struct SubmittalSync {
    pub api: SubmittalApi,
    workers: connectability_sync::Workers<sync::SubmittalSync>,
}

impl SubmittalSync {
    /// Wires the service and subscribes its consumers (before any relay runs, so in-process
    /// events are not missed).
    pub async fn start(
        db: Db,
        bus: Arc<dyn EventBus>,
        blobs: Blobs,
        directory: DirectoryGateway,
        connections: ConnectionsGateway,
        clock: Arc<dyn Clock>,
        limits: Limits,
    ) -> anyhow::Result<Self> {
        let base = connectability_sync::Foundation {
            db: db.clone(),
            bus,
            blobs: blobs.clone(),
            clock: clock.clone(),
            connections,
        };
        let workers = connectability_sync::Workers::start(NAME, base, sync::SubmittalSync).await?;
        let api = SubmittalApi::new(db, blobs, workers.relay_waker(), directory, clock, limits);
        Ok(Self { api, workers })
    }

    /// Mounts the gRPC service and the engine's relay, consumers and workers on `server`.
    pub fn mount(self, server: &mut GrpcServer, max_message_bytes: usize) {
        self.workers.mount(server);
        server.add_service(
            SubmittalServiceServer::new(self.api)
                .max_decoding_message_size(max_message_bytes)
                .max_encoding_message_size(max_message_bytes),
        );
    }
}

/// Settings of the standalone binary (and `connectability serve submittal-sync`).
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// This service's own database: `sqlite://data/submittal-sync.db` or `postgres://…`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://data/submittal-sync.db"
    )]
    pub database_url: String,
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

/// Runs submittal-sync alone until SIGTERM or Ctrl-C.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let mut app =
        Standalone::start(NAME, &config.common, &config.database_url, &migrations()).await?;
    let directory = app.directory(
        &config.directory_url,
        Duration::from_millis(config.directory_cache_ttl_ms),
    )?;
    let max = app.max_message_bytes();
    SubmittalSync::start(
        app.db.clone(),
        app.bus.clone(),
        Blobs::from_url(&config.blobs_url)?,
        directory,
        app.connections(&config.connections_url)?,
        Arc::new(SystemClock),
        Limits {
            max_upload_bytes: config.max_upload_bytes,
        },
    )
    .await?
    .mount(&mut app.server, max);
    app.serve().await
}
