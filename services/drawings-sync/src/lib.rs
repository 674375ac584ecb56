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

use connectability_proto::drawings::v1::drawing_service_server::DrawingServiceServer;
use connectability_store::ServiceMigrations;
use connectability_sync::service::ToolConfig;

pub use api::{DrawingApi, Limits};

pub const NAME: &str = "drawings-sync";

/// The tool's migrations, after the engine's.
pub fn migrations() -> ServiceMigrations {
    connectability_sync::tool_migrations!()
}

connectability_sync::tool_service! {
    DrawingsSync(sync::DrawingSync, DrawingApi, DrawingServiceServer)
    start(limits: Limits) => |base, relay| DrawingApi::new(base, relay, limits)
}

/// Settings of the standalone binary (and `connectability serve drawings-sync`).
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub tool: ToolConfig,
    /// Published revisions above which a project cannot connect for drawings (C17). The
    /// documented limit is 100,000; raising it is a deliberate, visible setting.
    #[arg(long, env = "MAX_CONNECTED_REVISIONS", default_value_t = domain::MAX_CONNECTED_REVISIONS)]
    pub max_connected_revisions: i64,
}

/// Runs drawings-sync alone until SIGTERM or Ctrl-C.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let (mut app, base) = config.tool.standalone(NAME, &migrations()).await?;
    let limits = Limits {
        max_upload_bytes: config.tool.max_upload_bytes,
        max_connected_revisions: config.max_connected_revisions,
    };
    let max = app.max_message_bytes();
    DrawingsSync::start(base, limits)
        .await?
        .mount(&mut app.server, max);
    app.serve().await
}
