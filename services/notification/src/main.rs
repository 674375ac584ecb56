//! The standalone `notification` binary. Settings: `notification --help`.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "notification",
    version,
    about = "Connectability notifications: inbox and email"
)]
struct Cli {
    #[command(flatten)]
    config: notification::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let _telemetry =
        connectability_platform::telemetry::init(notification::NAME, cli.config.common.log_format);
    notification::serve(cli.config).await
}
