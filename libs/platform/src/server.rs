//! The gRPC server every service runs: server reflection (v1 and v1alpha, which grpcurl
//! 1.8 speaks), `grpc.health.v1`, the auth interceptor on every business service, metrics,
//! tracing, and graceful shutdown (health goes NOT_SERVING, then in-flight calls drain).

use std::{convert::Infallible, time::Duration};

use connectability_auth::{AuthInterceptor, Verifier};
use tokio::net::TcpListener;
use tonic::{
    body::Body,
    server::NamedService,
    service::{RoutesBuilder, interceptor::InterceptedService},
    transport::{Server, server::TcpIncoming},
};
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::metrics::{Metrics, MetricsLayer};
use connectability_store::outbox::Relay;

/// No call runs longer than this, whatever deadline the caller sent.
pub const MAX_CALL_DURATION: Duration = Duration::from_secs(60);
/// HTTP/2 streams (calls) one client connection may have open at once.
pub const MAX_CONCURRENT_STREAMS: u32 = 128;
/// Calls of one client connection handled at once; more wait for a slot.
pub const MAX_CONCURRENT_CALLS_PER_CONNECTION: usize = 64;

pub struct GrpcServer {
    routes: RoutesBuilder,
    auth: AuthInterceptor,
    health: HealthReporter,
    service_names: Vec<&'static str>,
    metrics: Metrics,
    relays: Vec<Relay>,
    tasks: Vec<BackgroundTask>,
    /// Days the inbox and the request ids keep their rows.
    retention_days: (u64, u64),
    tls: Option<tonic::transport::ServerTlsConfig>,
    /// Plaintext health-only listener (for probes that speak no TLS).
    health_addr: Option<std::net::SocketAddr>,
    health_service: HealthService,
}

type HealthService =
    tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>;

/// Work that runs beside the server and ends when told to (consumers, workers).
type BackgroundTask = Box<
    dyn FnOnce(
            tokio::sync::watch::Receiver<bool>,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        + Send,
>;

impl GrpcServer {
    pub fn new(verifier: Verifier, metrics: Metrics) -> Self {
        let health = HealthReporter::new();
        let health_service = tonic_health::pb::health_server::HealthServer::new(
            tonic_health::server::HealthService::from_health_reporter(health.clone()),
        );
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(connectability_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .expect("the embedded descriptor sets are valid");
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(connectability_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .expect("the embedded descriptor sets are valid");
        let mut routes = RoutesBuilder::default();
        routes
            .add_service(health_service.clone())
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
        Self {
            routes,
            auth: AuthInterceptor::new(verifier),
            health,
            service_names: Vec::new(),
            metrics,
            relays: Vec::new(),
            tasks: Vec::new(),
            retention_days: (
                connectability_store::retention::INBOX_DAYS,
                connectability_store::retention::REQUEST_IDS_DAYS,
            ),
            tls: None,
            health_addr: None,
            health_service,
        }
    }

    /// Adds a business service behind the auth interceptor; health reports it by name.
    pub fn add_service<S>(&mut self, service: S) -> &mut Self
    where
        S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.service_names.push(S::NAME);
        self.routes
            .add_service(InterceptedService::new(service, self.auth.clone()));
        self
    }

    /// Serves gRPC over TLS with `tls`; `health_addr` answers health checks in plaintext.
    pub fn set_tls(
        &mut self,
        tls: Option<tonic::transport::ServerTlsConfig>,
        health_addr: Option<std::net::SocketAddr>,
    ) -> &mut Self {
        self.tls = tls;
        self.health_addr = health_addr;
        self
    }

    /// How many days the inbox and request ids keep rows (RETENTION_INBOX_DAYS,
    /// RETENTION_REQUEST_IDS_DAYS).
    pub fn set_retention_days(&mut self, inbox: u64, request_ids: u64) -> &mut Self {
        self.retention_days = (inbox, request_ids);
        self
    }

    /// Deletes `db`'s rows past their retention every hour while the server runs: its inbox
    /// and request ids, and the service's own `extra` rules.
    pub fn add_retention(
        &mut self,
        db: connectability_store::Db,
        extra: Vec<connectability_store::retention::Rule>,
    ) -> &mut Self {
        let (inbox, request_ids) = self.retention_days;
        let mut rules = connectability_store::retention::platform_rules(inbox, request_ids);
        rules.extend(extra);
        self.add_task(move |stop| connectability_store::retention::run(db, rules, stop))
    }

    /// Runs `service`'s outbox relay for as long as the server runs, reports its outbox
    /// and dead letters in the metrics, and keeps its platform tables within their retention.
    pub fn add_relay(&mut self, service: &'static str, relay: Relay) -> &mut Self {
        self.add_retention(relay.db().clone(), Vec::new());
        self.metrics
            .add_sampler(std::sync::Arc::new(crate::metrics::StoreSampler {
                service,
                db: relay.db().clone(),
            }));
        self.relays.push(relay);
        self
    }

    /// The server's metrics, for a service to add its own samplers.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Runs `task` beside the server; its argument turns true once in-flight calls have
    /// drained, and the server waits for the task to end before returning.
    pub fn add_task<F, Fut>(&mut self, task: F) -> &mut Self
    where
        F: FnOnce(tokio::sync::watch::Receiver<bool>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.push(Box::new(move |stop| Box::pin(task(stop))));
        self
    }

    pub fn health(&self) -> HealthReporter {
        self.health.clone()
    }

    /// Serves on `listener` until `shutdown` resolves. Then every service reports
    /// NOT_SERVING, `grace` passes so balancers notice, the listener closes, and in-flight
    /// calls finish before this returns.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send,
        grace: Duration,
    ) -> anyhow::Result<()> {
        let health = self.health.clone();
        for name in &self.service_names {
            health
                .set_service_status(*name, ServingStatus::Serving)
                .await;
        }
        tracing::info!(addr = %listener.local_addr()?, services = ?self.service_names, "gRPC server listening");
        let (stop_relays, relays_stopped) = tokio::sync::watch::channel(false);
        let relays: Vec<_> = self
            .relays
            .into_iter()
            .map(|r| tokio::spawn(r.run(wait_for(relays_stopped.clone()))))
            .chain(
                self.tasks
                    .into_iter()
                    .map(|t| tokio::spawn(t(relays_stopped.clone()))),
            )
            .collect();
        // Probes that speak no TLS ask this plaintext listener, which serves health only.
        let health_listener = match self.health_addr {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("HEALTH_ADDR {addr}: {e}"))?,
            ),
            None => None,
        };
        let health_task = health_listener.map(|listener| {
            let service = self.health_service.clone();
            let stopped = wait_for(relays_stopped.clone());
            tokio::spawn(async move {
                if let Err(e) = Server::builder()
                    .add_service(service)
                    .serve_with_incoming_shutdown(TcpIncoming::from(listener), stopped)
                    .await
                {
                    tracing::warn!(error = %e, "health listener stopped");
                }
            })
        });
        let mut builder = Server::builder();
        if let Some(tls) = self.tls {
            builder = builder.tls_config(tls)?;
        }
        let names = self.service_names.clone();
        let drain = async move {
            shutdown.await;
            for name in names.iter().copied().chain([""]) {
                health
                    .set_service_status(name, ServingStatus::NotServing)
                    .await;
            }
            tracing::info!(
                grace_secs = grace.as_secs_f32(),
                "health NOT_SERVING; draining"
            );
            tokio::time::sleep(grace).await;
        };
        builder
            // The caller's `grpc-timeout` applies when shorter; this caps every call.
            .timeout(MAX_CALL_DURATION)
            // One client cannot hold the server's every task or buffer.
            .max_concurrent_streams(Some(MAX_CONCURRENT_STREAMS))
            .concurrency_limit_per_connection(MAX_CONCURRENT_CALLS_PER_CONNECTION)
            .trace_fn(|req| {
                // Named `package.Service/Method`, as OpenTelemetry's RPC conventions have it.
                let method = req.uri().path();
                let span = tracing::info_span!(
                    "grpc",
                    otel.name = %method.trim_start_matches('/'),
                    otel.kind = "server",
                    method = %method
                );
                crate::telemetry::set_parent_from(
                    &span,
                    req.headers()
                        .get("traceparent")
                        .and_then(|v| v.to_str().ok()),
                );
                span
            })
            .layer(MetricsLayer(self.metrics.clone()))
            .serve_with_incoming_shutdown(
                self.routes.routes(),
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                drain,
            )
            .await?;
        // In-flight calls are done; let the relays publish what they committed, then stop.
        let _ = stop_relays.send(true);
        for relay in relays {
            let _ = relay.await;
        }
        if let Some(task) = health_task {
            let _ = task.await;
        }
        tracing::info!("gRPC server stopped");
        Ok(())
    }
}

/// Resolves once the watch holds true (or its sender is gone).
pub async fn wait_for(mut rx: tokio::sync::watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}
