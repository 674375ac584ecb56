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

use connectability_proto::rfis::v1::rfi_service_server::RfiServiceServer;
use connectability_store::ServiceMigrations;
use connectability_sync::service::ToolConfig;

pub use api::{Limits, RfiApi};
pub use connectability_platform::drawings::DrawingsGateway;

pub const NAME: &str = "rfi-sync";

/// The tool's migrations, after the engine's.
pub fn migrations() -> ServiceMigrations {
    connectability_sync::tool_migrations!()
}

// `drawings` serves linked drawing files, with rfi-sync's identity.
connectability_sync::tool_service! {
    RfiSync(sync::RfiSync, RfiApi, RfiServiceServer)
    start(drawings: DrawingsGateway, limits: Limits) => |base, relay| RfiApi::new(base, relay, drawings, limits)
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
