//! The standalone `drawings-sync` binary. Settings: `drawings-sync --help`.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "drawings-sync",
    version,
    about = "Connectability drawings: the Drawings tool and its sync to connected projects"
)]
struct Cli {
    #[command(flatten)]
    config: drawings_sync::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let _telemetry = connectability_platform::telemetry::init(
        drawings_sync::NAME,
        cli.config.tool.common.log_format,
    );
    drawings_sync::serve(cli.config).await
}
