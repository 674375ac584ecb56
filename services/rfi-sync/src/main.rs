//! The standalone `rfi-sync` binary. Settings: `rfi-sync --help`.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "rfi-sync",
    version,
    about = "Connectability RFIs: the RFIs tool and its sync to connected projects"
)]
struct Cli {
    #[command(flatten)]
    config: rfi_sync::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let _telemetry =
        connectability_platform::telemetry::init(rfi_sync::NAME, cli.config.tool.common.log_format);
    rfi_sync::serve(cli.config).await
}
