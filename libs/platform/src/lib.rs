//! What every Connectability service shares: configuration from the environment
//! ([`config`]), logs and traces ([`telemetry`]), the gRPC server with reflection, health,
//! auth, limits and graceful shutdown ([`server`]), Prometheus [`metrics`], gRPC error
//! helpers ([`errors`]) and page tokens ([`paging`]).

pub mod clock;
pub mod config;
pub mod connections;
pub mod directory;
pub mod drawings;
pub mod errors;
pub mod events;
pub mod input;
pub mod metrics;
pub mod paging;
pub mod requests;
pub mod server;
pub mod service_identity;
pub mod standalone;
pub mod telemetry;
pub mod time;
pub mod tls;

pub use config::{AuthConfig, CommonConfig, DEV_ONLY_HS256_SECRET};
pub use server::GrpcServer;

/// Resolves when the process receives SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received");
}
