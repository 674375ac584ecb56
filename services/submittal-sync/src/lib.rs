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

use connectability_platform::GrpcServer;
use connectability_proto::submittals::v1::submittal_service_server::SubmittalServiceServer;
use connectability_store::ServiceMigrations;
use connectability_sync::{Foundation, service::ToolConfig};

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
    pub async fn start(base: Foundation, limits: Limits) -> anyhow::Result<Self> {
        let workers =
            connectability_sync::Workers::start(NAME, base.clone(), sync::SubmittalSync).await?;
        let api = SubmittalApi::new(&base, workers.relay_waker(), limits);
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
    #[command(flatten)]
    pub tool: ToolConfig,
}

/// Runs submittal-sync alone until SIGTERM or Ctrl-C.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let (mut app, base) = config.tool.standalone(NAME, &migrations()).await?;
    let limits = Limits {
        max_upload_bytes: config.tool.max_upload_bytes,
    };
    let max = app.max_message_bytes();
    SubmittalSync::start(base, limits)
        .await?
        .mount(&mut app.server, max);
    app.serve().await
}
