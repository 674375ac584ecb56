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

use connectability_proto::submittals::v1::submittal_service_server::SubmittalServiceServer;
use connectability_store::ServiceMigrations;
use connectability_sync::service::ToolConfig;

pub use api::{Limits, SubmittalApi};

pub const NAME: &str = "submittal-sync";

/// The tool's migrations, after the engine's.
pub fn migrations() -> ServiceMigrations {
    connectability_sync::tool_migrations!()
}

connectability_sync::tool_service! {
    SubmittalSync(sync::SubmittalSync, SubmittalApi, SubmittalServiceServer)
    start(limits: Limits) => |base, relay| SubmittalApi::new(base, relay, limits)
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
