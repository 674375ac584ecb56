//! The standalone `submittal-sync` binary. Settings: `submittal-sync --help`.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "submittal-sync",
    version,
    about = "Connectability submittals: the Submittals tool and its sync to connected projects"
)]
struct Cli {
    #[command(flatten)]
    config: submittal_sync::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let _telemetry = connectability_platform::telemetry::init(
        submittal_sync::NAME,
        cli.config.tool.common.log_format,
    );
    submittal_sync::serve(cli.config).await
}
