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

use connectability_platform::GrpcServer;
use connectability_proto::rfis::v1::rfi_service_server::RfiServiceServer;
use connectability_store::ServiceMigrations;
use connectability_sync::{Foundation, service::ToolConfig};

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

/// The service's parts: the API, and the engine's relay, consumers and workers.
pub struct RfiSync {
    pub api: RfiApi,
    workers: connectability_sync::Workers<sync::RfiSync>,
}

impl RfiSync {
    /// Wires the service and subscribes its consumers (before any relay runs, so in-process
    /// events are not missed). `drawings` serves linked drawing files, with rfi-sync's
    /// identity.
    pub async fn start(
        base: Foundation,
        drawings: DrawingsGateway,
        limits: Limits,
    ) -> anyhow::Result<Self> {
        let workers =
            connectability_sync::Workers::start(NAME, base.clone(), sync::RfiSync).await?;
        let api = RfiApi::new(&base, workers.relay_waker(), drawings, limits);
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
    #[command(flatten)]
    pub tool: ToolConfig,
    /// Where drawings-sync answers (linked drawing files for the linked drawings PDF).
    #[arg(long, env = "DRAWINGS_URL", default_value = "http://127.0.0.1:50051")]
    pub drawings_url: String,
}

/// Runs rfi-sync alone until SIGTERM or Ctrl-C.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let (mut app, base) = config.tool.standalone(NAME, &migrations()).await?;
    let drawings = DrawingsGateway::new(
        connectability_platform::directory::channel(&config.drawings_url)?,
        &app.service_token()?,
    );
    let limits = Limits {
        max_upload_bytes: config.tool.max_upload_bytes,
    };
    let max = app.max_message_bytes();
    RfiSync::start(base, drawings, limits)
        .await?
        .mount(&mut app.server, max);
    app.serve().await
}
