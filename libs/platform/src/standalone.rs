//! What every service needs to run as its own process (`<service>` binary or
//! `connectability serve <service>`): its migrated database, the event bus, a gRPC server
//! with metrics, and its service identity for calling other services.

use std::{sync::Arc, time::Duration};

use connectability_events::EventBus;
use connectability_store::{Db, ServiceMigrations};

use crate::{
    CommonConfig, GrpcServer,
    directory::{DirectoryGateway, channel},
    metrics::Metrics,
};

pub struct Standalone {
    name: &'static str,
    common: CommonConfig,
    pub db: Db,
    pub bus: Arc<dyn EventBus>,
    pub server: GrpcServer,
    _metrics: Option<tokio::task::JoinHandle<()>>,
}

impl Standalone {
    /// Checks the auth settings, connects and migrates the database, opens the bus and
    /// starts the metrics endpoint.
    pub async fn start(
        name: &'static str,
        common: &CommonConfig,
        database_url: &str,
        migrations: &ServiceMigrations,
    ) -> anyhow::Result<Self> {
        let verifier = common.auth.verifier().await?;
        let db = Db::connect(database_url).await?;
        db.migrate(migrations).await?;
        let credentials = common.events_credentials(name)?;
        let bus = connectability_events::connect_as(
            &common.events_url,
            &common.events_prefix,
            credentials.as_ref(),
        )
        .await?;
        let metrics = Metrics::new();
        let metrics_task = match common.metrics_addr()? {
            Some(addr) => Some(metrics.clone().serve(addr).await?),
            None => None,
        };
        let tls = crate::tls::load(
            common.grpc_tls_cert_file.as_ref(),
            common.grpc_tls_key_file.as_ref(),
            common.grpc_tls_ca_file.as_ref(),
        )?;
        let mut server = GrpcServer::new(verifier, metrics);
        server.set_tls(tls, common.health_addr()?);
        server.set_retention_days(
            common.retention_inbox_days,
            common.retention_request_ids_days,
        );
        Ok(Self {
            name,
            common: common.clone(),
            db,
            bus,
            server,
            _metrics: metrics_task,
        })
    }

    pub fn max_message_bytes(&self) -> usize {
        self.common.max_message_bytes
    }

    /// The token this service presents to others.
    pub fn service_token(&self) -> anyhow::Result<crate::service_identity::ServiceToken> {
        self.common.auth.service_token(self.name)?.ok_or_else(|| {
            anyhow::anyhow!(
                "set SERVICE_TOKEN_FILE (its projected ServiceAccount token; or AUTH_HS256_SECRET with AUTH_ALLOW_HS256 in development) so {} can call other services",
                self.name
            )
        })
    }

    /// A directory client with this service's identity.
    pub fn directory(&self, url: &str, cache_ttl: Duration) -> anyhow::Result<DirectoryGateway> {
        Ok(DirectoryGateway::new(
            channel(url)?,
            &self.service_token()?,
            cache_ttl,
        ))
    }

    /// A connection-manager client with this service's identity.
    pub fn connections(&self, url: &str) -> anyhow::Result<crate::connections::ConnectionsGateway> {
        Ok(crate::connections::ConnectionsGateway::new(
            channel(url)?,
            self.service_token()?,
        ))
    }

    /// Serves on `GRPC_ADDR` until SIGTERM or Ctrl-C, then shuts down gracefully.
    pub async fn serve(self) -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind(self.common.grpc_addr).await?;
        self.server
            .serve(
                listener,
                crate::shutdown_signal(),
                self.common.shutdown_grace(),
            )
            .await
    }
}
