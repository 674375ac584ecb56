//! The `rfi-sync` service: the RFIs tool of every project (RFIs, responses, attachments,
//! cover sheets, linked drawings PDFs) and the one-way copy of closed RFIs to connected
//! downstream projects (rules R1-R6) on the shared sync engine (`libs/sync`).
//!
//! Layout as in every service: `api` (thin gRPC layer), `domain` (rules, parsed input),
//! `db` (all SQL), `events` (what it publishes), `sync` (the tool's side of the engine:
//! what is shared and how a copy is made), `pdf` (cover sheet and linked drawings),
//! `demo` (dev data). Linked drawing files come from drawings-sync through
//! `connectability_platform::drawings::DrawingsGateway`.

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
use connectability_proto::rfis::v1::rfi_service_server::RfiServiceServer;
use connectability_store::{Db, ServiceMigrations};

pub use api::{Limits, RfiApi};
pub use connectability_platform::drawings::DrawingsGateway;

pub const NAME: &str = "rfi-sync";

/// The DDL is portable, so both backends share one folder.
pub fn migrations() -> ServiceMigrations {
    ServiceMigrations {
        postgres: sqlx::migrate!("./migrations"),
        sqlite: sqlx::migrate!("./migrations"),
        libraries: vec![connectability_sync::migrations()],
    }
}

/// The services rfi-sync calls, each with rfi-sync's identity.
pub struct Peers {
    pub directory: DirectoryGateway,
    /// Confirms connection events.
    pub connections: ConnectionsGateway,
    /// Linked drawing files.
    pub drawings: DrawingsGateway,
}

/// The service's parts: the API, and the engine's relay, consumers and workers.
pub struct RfiSync {
    pub api: RfiApi,
    workers: connectability_sync::Workers<sync::RfiSync>,
}

impl RfiSync {
    /// Wires the service and subscribes its consumers (before any relay runs, so in-process
    /// events are not missed).
    pub async fn start(
        db: Db,
        bus: Arc<dyn EventBus>,
        blobs: Blobs,
        peers: Peers,
        clock: Arc<dyn Clock>,
        limits: Limits,
    ) -> anyhow::Result<Self> {
        let Peers {
            directory,
            connections,
            drawings,
        } = peers;
        let base = connectability_sync::Foundation {
            db: db.clone(),
            bus,
            blobs: blobs.clone(),
            clock: clock.clone(),
            connections,
        };
        let workers = connectability_sync::Workers::start(NAME, base, sync::RfiSync).await?;
        let api = RfiApi::new(
            db,
            blobs,
            workers.relay_waker(),
            directory,
            drawings,
            clock,
            limits,
        );
        Ok(Self { api, workers })
    }

    /// Mounts the gRPC service and the engine's relay, consumers and workers on `server`.
    pub fn mount(self, server: &mut GrpcServer, max_message_bytes: usize) {
        self.workers.mount(server);
        server.add_service(
            RfiServiceServer::new(self.api)
                .max_decoding_message_size(max_message_bytes)
                .max_encoding_message_size(max_message_bytes),
        );
    }
}

/// Settings of the standalone binary (and `connectability serve rfi-sync`).
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// This service's own database: `sqlite://data/rfi-sync.db` or `postgres://…`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://data/rfi-sync.db"
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
    /// Where drawings-sync answers (linked drawing files for the linked drawings PDF).
    #[arg(long, env = "DRAWINGS_URL", default_value = "http://127.0.0.1:50051")]
    pub drawings_url: String,
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

/// Runs rfi-sync alone until SIGTERM or Ctrl-C.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let mut app =
        Standalone::start(NAME, &config.common, &config.database_url, &migrations()).await?;
    let directory = app.directory(
        &config.directory_url,
        Duration::from_millis(config.directory_cache_ttl_ms),
    )?;
    let drawings = DrawingsGateway::new(
        connectability_platform::directory::channel(&config.drawings_url)?,
        &app.service_token()?,
    );
    let max = app.max_message_bytes();
    RfiSync::start(
        app.db.clone(),
        app.bus.clone(),
        Blobs::from_url(&config.blobs_url)?,
        Peers {
            directory,
            connections: app.connections(&config.connections_url)?,
            drawings,
        },
        Arc::new(SystemClock),
        Limits {
            max_upload_bytes: config.max_upload_bytes,
        },
    )
    .await?
    .mount(&mut app.server, max);
    app.serve().await
}
