//! The `directory` service: companies (file storage location, GovCloud), projects (active or
//! not), users, project directories with a level per tool, and company admins (Y1-Y3).
//!
//! Layout, the same in every service: `api` (thin gRPC layer), `domain` (rules as plain
//! functions and parsed input types), `db` (all SQL), `events` (what it publishes and
//! consumes).

mod api;
mod db;
pub mod demo;
pub mod domain;
mod events;

use std::sync::Arc;

use connectability_events::EventBus;
use connectability_platform::{CommonConfig, GrpcServer, standalone::Standalone};
use connectability_proto::directory::v1::directory_service_server::DirectoryServiceServer;
use connectability_store::{Db, ServiceMigrations, outbox::Relay};

pub use api::DirectoryApi;

pub const NAME: &str = "directory";

/// The directory's DDL is portable, so both backends share one folder.
pub fn migrations() -> ServiceMigrations {
    ServiceMigrations {
        postgres: sqlx::migrate!("./migrations"),
        sqlite: sqlx::migrate!("./migrations"),
        libraries: Vec::new(),
    }
}

/// The service's parts, ready to mount on a server and run.
pub struct Directory {
    pub api: DirectoryApi,
    /// Publishes the outbox; run it beside the server.
    pub relay: Relay,
}

impl Directory {
    /// Wires the service to its (migrated) database and the bus.
    pub fn new(db: Db, bus: Arc<dyn EventBus>) -> Self {
        let relay = Relay::new(db.clone(), bus);
        Self {
            api: DirectoryApi::new(db, relay.waker()),
            relay,
        }
    }

    /// Mounts the gRPC service (with the configured message-size limits) and its relay.
    pub fn mount(self, server: &mut GrpcServer, max_message_bytes: usize) {
        server.add_relay(NAME, self.relay);
        server.add_service(
            DirectoryServiceServer::new(self.api.clone())
                .max_decoding_message_size(max_message_bytes)
                .max_encoding_message_size(max_message_bytes),
        );
    }
}

/// Settings of the standalone `directory` binary (and `connectability serve directory`).
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// The directory's own database: `sqlite://data/directory.db` or `postgres://…`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://data/directory.db"
    )]
    pub database_url: String,
    #[command(flatten)]
    pub common: CommonConfig,
}

/// Runs the directory alone until SIGTERM or Ctrl-C.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let mut app =
        Standalone::start(NAME, &config.common, &config.database_url, &migrations()).await?;
    let max = app.max_message_bytes();
    Directory::new(app.db.clone(), app.bus.clone()).mount(&mut app.server, max);
    app.serve().await
}
