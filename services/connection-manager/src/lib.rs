//! The `connection-manager` service: connections between an upstream and a downstream
//! project, their full history, and each company's approval setting (rules C1-C18).
//!
//! Layout as in every service: `api` (thin gRPC layer), `domain` (rules as plain
//! functions), `db` (all SQL), `events` (what it publishes). Permission facts come from the
//! directory over gRPC (`connectability_platform::directory`), never from its tables.

mod api;
mod db;
pub mod demo;
pub mod domain;
mod events;

use std::{sync::Arc, time::Duration};

use connectability_events::EventBus;
use connectability_platform::{CommonConfig, GrpcServer, clock::Clock, standalone::Standalone};
use connectability_proto::connections::v1::connection_service_server::ConnectionServiceServer;
use connectability_store::{Db, ServiceMigrations, outbox::Relay};

pub use api::ConnectionApi;
pub use connectability_platform::directory::DirectoryGateway;
pub use connectability_platform::drawings::DrawingsGateway;

pub const NAME: &str = "connection-manager";

/// The DDL is portable, so both backends share one folder.
pub fn migrations() -> ServiceMigrations {
    ServiceMigrations {
        postgres: sqlx::migrate!("./migrations"),
        sqlite: sqlx::migrate!("./migrations"),
        libraries: Vec::new(),
    }
}

/// The service's parts, ready to mount on a server and run.
pub struct ConnectionManager {
    pub api: ConnectionApi,
    pub relay: Relay,
}

impl ConnectionManager {
    pub fn new(
        db: Db,
        bus: Arc<dyn EventBus>,
        directory: DirectoryGateway,
        drawings: DrawingsGateway,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let relay = Relay::new(db.clone(), bus);
        Self {
            api: ConnectionApi::new(db, relay.waker(), directory, drawings, clock),
            relay,
        }
    }

    /// Mounts the gRPC service (with the configured message-size limits) and its relay.
    pub fn mount(self, server: &mut GrpcServer, max_message_bytes: usize) {
        server.add_relay(NAME, self.relay);
        server.add_service(
            ConnectionServiceServer::new(self.api)
                .max_decoding_message_size(max_message_bytes)
                .max_encoding_message_size(max_message_bytes),
        );
    }
}

/// Settings of the standalone binary (and `connectability serve connection-manager`).
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// This service's own database: `sqlite://data/connection-manager.db` or `postgres://…`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://data/connection-manager.db"
    )]
    pub database_url: String,
    /// Where the directory service answers.
    #[arg(long, env = "DIRECTORY_URL", default_value = "http://127.0.0.1:50051")]
    pub directory_url: String,
    /// Where drawings-sync answers (revision counts for C17).
    #[arg(long, env = "DRAWINGS_URL", default_value = "http://127.0.0.1:50051")]
    pub drawings_url: String,
    /// How long directory answers (permissions, companies) are cached, in milliseconds.
    #[arg(long, env = "DIRECTORY_CACHE_TTL_MS", default_value_t = 2000)]
    pub directory_cache_ttl_ms: u64,
    #[command(flatten)]
    pub common: CommonConfig,
}

/// Runs the connection manager alone until SIGTERM or Ctrl-C.
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
    ConnectionManager::new(
        app.db.clone(),
        app.bus.clone(),
        directory,
        drawings,
        Arc::new(connectability_platform::clock::SystemClock),
    )
    .mount(&mut app.server, max);
    app.serve().await
}
