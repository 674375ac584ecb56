//! The standalone `directory` binary. Settings: `directory --help`.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "directory",
    version,
    about = "Connectability directory service: companies, projects, users, project directories"
)]
struct Cli {
    #[command(flatten)]
    config: directory::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let _telemetry =
        connectability_platform::telemetry::init(directory::NAME, cli.config.common.log_format);
    directory::serve(cli.config).await
}
