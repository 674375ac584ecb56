//! The `drawings-sync` service: the Drawings tool of every project (areas, sets, drawings,
//! revisions, files, markups) and the one-way copy of published drawings to connected
//! downstream projects (rules D1-D12), plus the revision count the connection manager
//! checks for C17.
//!
//! Layout as in every service: `api` (thin gRPC layer), `domain` (rules, parsed input),
//! `db` (all SQL), `events` (what it publishes), and `sync` (its event handlers: the
//! connections projection, and copying; plus the backfill worker).

mod api;
mod db;
pub mod domain;
mod events;
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
use connectability_proto::drawings::v1::drawing_service_server::DrawingServiceServer;
use connectability_store::{Db, ServiceMigrations};

pub use api::{DrawingApi, Limits};

pub const NAME: &str = "drawings-sync";

/// The DDL is portable, so both backends share one folder.
pub fn migrations() -> ServiceMigrations {
    ServiceMigrations {
        postgres: sqlx::migrate!("./migrations"),
        sqlite: sqlx::migrate!("./migrations"),
        libraries: vec![connectability_sync::migrations()],
    }
}

/// The service's parts: the API, and the engine's relay, consumers and workers.
pub struct DrawingsSync {
    pub api: DrawingApi,
    workers: connectability_sync::Workers<sync::DrawingSync>,
}

impl DrawingsSync {
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
        let workers = connectability_sync::Workers::start(NAME, base, sync::DrawingSync).await?;
        let api = DrawingApi::new(db, blobs, workers.relay_waker(), directory, clock, limits);
        Ok(Self { api, workers })
    }

    /// Mounts the gRPC service and the engine's relay, consumers and workers on `server`.
    pub fn mount(self, server: &mut GrpcServer, max_message_bytes: usize) {
        self.workers.mount(server);
        server.add_service(
            DrawingServiceServer::new(self.api)
                .max_decoding_message_size(max_message_bytes)
                .max_encoding_message_size(max_message_bytes),
        );
    }
}

/// Settings of the standalone binary (and `connectability serve drawings-sync`).
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// This service's own database: `sqlite://data/drawings-sync.db` or `postgres://…`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://data/drawings-sync.db"
    )]
    pub database_url: String,
    /// Where files live: `file://PATH` or `s3://BUCKET/PREFIX`.
    #[arg(long, env = "BLOBS_URL", default_value = "file://data/blobs")]
    pub blobs_url: String,
    /// Largest accepted drawing file, in bytes.
    #[arg(long, env = "MAX_UPLOAD_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_upload_bytes: usize,
    /// Published revisions above which a project cannot connect for drawings (C17). The
    /// documented limit is 100,000; raising it is a deliberate, visible setting.
    #[arg(long, env = "MAX_CONNECTED_REVISIONS", default_value_t = domain::MAX_CONNECTED_REVISIONS)]
    pub max_connected_revisions: i64,
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

/// Runs drawings-sync alone until SIGTERM or Ctrl-C.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let mut app =
        Standalone::start(NAME, &config.common, &config.database_url, &migrations()).await?;
    let directory = app.directory(
        &config.directory_url,
        Duration::from_millis(config.directory_cache_ttl_ms),
    )?;
    let limits = Limits {
        max_upload_bytes: config.max_upload_bytes,
        max_connected_revisions: config.max_connected_revisions,
    };
    let max = app.max_message_bytes();
    DrawingsSync::start(
        app.db.clone(),
        app.bus.clone(),
        Blobs::from_url(&config.blobs_url)?,
        directory,
        app.connections(&config.connections_url)?,
        Arc::new(SystemClock),
        limits,
    )
    .await?
    .mount(&mut app.server, max);
    app.serve().await
}
