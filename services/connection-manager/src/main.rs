//! The standalone `connection-manager` binary. Settings: `connection-manager --help`.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "connection-manager",
    version,
    about = "Connectability connection manager: connections between projects"
)]
struct Cli {
    #[command(flatten)]
    config: connection_manager::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let _telemetry = connectability_platform::telemetry::init(
        connection_manager::NAME,
        cli.config.common.log_format,
    );
    connection_manager::serve(cli.config).await
}
