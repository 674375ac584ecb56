//! Prometheus metrics: a tower layer that counts and times every gRPC call, gauges read
//! from the database when scraped ([`Sampler`]), and a small HTTP server for `GET /metrics`.
//! Counters the libraries keep (copies, redeliveries, emails) live in the process's default
//! registry and are served beside these. docs/observability.md lists every metric.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use http_body_util::Full;
use hyper::{Response, body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// Sets gauges from the current state (a database count, say) just before a scrape, so they
/// cost nothing when nobody looks and are never stale when someone does.
#[async_trait::async_trait]
pub trait Sampler: Send + Sync + 'static {
    async fn sample(&self);
}

/// The process's metrics. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    handled: IntCounterVec,
    latency: HistogramVec,
    samplers: Arc<std::sync::Mutex<Vec<Arc<dyn Sampler>>>>,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let handled = IntCounterVec::new(
            Opts::new(
                "grpc_server_handled_total",
                "gRPC calls completed, by method and status code",
            ),
            &["grpc_method", "grpc_code"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "grpc_server_handling_seconds",
                "gRPC call latency until response headers",
            ),
            &["grpc_method"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(handled.clone()))
            .expect("register once");
        registry
            .register(Box::new(latency.clone()))
            .expect("register once");
        Self {
            registry,
            handled,
            latency,
            samplers: Arc::default(),
        }
    }

    /// Runs `sampler` before every scrape.
    pub fn add_sampler(&self, sampler: Arc<dyn Sampler>) {
        self.samplers.lock().unwrap().push(sampler);
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition format: this server's metrics and the process's default registry.
    pub fn render(&self) -> String {
        let mut families = self.registry.gather();
        families.extend(prometheus::gather());
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&families, &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// What `GET /metrics` answers: every sampler run, then [`Metrics::render`].
    pub async fn scrape(&self) -> String {
        let samplers = self.samplers.lock().unwrap().clone();
        futures::future::join_all(samplers.iter().map(|s| s.sample())).await;
        self.render()
    }

    /// Serves `GET /metrics` on `addr` until the task is dropped.
    pub async fn serve(self, addr: SocketAddr) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        Ok(self.serve_on(listener))
    }

    /// Serves `GET /metrics` on `listener` until the task is dropped.
    pub fn serve_on(self, listener: tokio::net::TcpListener) -> tokio::task::JoinHandle<()> {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "metrics on /metrics");
        }
        let metrics = Arc::new(self);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let metrics = metrics.clone();
                        async move {
                            let resp = if req.uri().path() == "/metrics" {
                                Response::builder()
                                    .header("content-type", "text/plain; version=0.0.4")
                                    .body(Full::new(Bytes::from(metrics.scrape().await)))
                            } else {
                                Response::builder()
                                    .status(404)
                                    .body(Full::new(Bytes::from("not found\n")))
                            };
                            Ok::<_, Infallible>(resp.expect("static response parts are valid"))
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        })
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Every gRPC method any Connectability server routes (`/package.Service/Method`): the
/// business services, health and reflection, read from the embedded descriptor sets.
static KNOWN_METHODS: std::sync::LazyLock<std::collections::HashSet<String>> =
    std::sync::LazyLock::new(|| {
        use prost::Message as _;
        let mut methods = std::collections::HashSet::new();
        for set in [
            connectability_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ] {
            let set = prost_types::FileDescriptorSet::decode(set)
                .expect("the embedded descriptor sets are valid");
            for file in set.file {
                for service in &file.service {
                    for method in &service.method {
                        methods.insert(format!(
                            "/{}.{}/{}",
                            file.package(),
                            service.name(),
                            method.name()
                        ));
                    }
                }
            }
        }
        methods
    });

/// The `grpc_method` label of a request path: the path itself when it names a routed
/// method, else `unknown`. The metrics layer runs before routing and authentication, so a
/// client sending random paths must not create a label (and a series) per path.
pub fn method_label(path: &str) -> &'static str {
    match KNOWN_METHODS.get(path) {
        Some(known) => known.as_str(),
        None => "unknown",
    }
}

/// Tower layer recording `grpc_server_handled_total` and `grpc_server_handling_seconds`.
/// The status code is read from the response headers (trailers-only errors); calls whose
/// status arrives only in trailers count as `OK`.
#[derive(Clone)]
pub struct MetricsLayer(pub Metrics);

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct MetricsService<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, B, RB> tower::Service<http::Request<B>> for MetricsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // Take the service that was polled ready; leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let metrics = self.metrics.clone();
        let method = method_label(req.uri().path());
        Box::pin(async move {
            let start = Instant::now();
            let result = inner.call(req).await;
            let code = match &result {
                Ok(resp) => resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map(|c| format!("{:?}", tonic::Code::from_i32(c)))
                    .unwrap_or_else(|| "Ok".to_string()),
                Err(_) => "Transport".to_string(),
            };
            metrics
                .latency
                .with_label_values(&[method])
                .observe(start.elapsed().as_secs_f64());
            metrics
                .handled
                .with_label_values(&[method, code.as_str()])
                .inc();
            result
        })
    }
}

/// Gauges of a service's stored event state, read at scrape time: the outbox's unsent
/// events and the age of the oldest, and the dead letters per consumer.
pub struct StoreSampler {
    pub service: &'static str,
    pub db: connectability_store::Db,
}

struct StoreGauges {
    outbox_pending: prometheus::IntGaugeVec,
    outbox_age: prometheus::GaugeVec,
    dead_letters: prometheus::IntGaugeVec,
}

static STORE_GAUGES: std::sync::LazyLock<StoreGauges> = std::sync::LazyLock::new(|| {
    use prometheus::{register_gauge_vec, register_int_gauge_vec};
    StoreGauges {
        outbox_pending: register_int_gauge_vec!(
            "connectability_outbox_pending",
            "Events committed to the outbox and not yet published, by service",
            &["service"]
        )
        .expect("registered once"),
        outbox_age: register_gauge_vec!(
            "connectability_outbox_oldest_age_seconds",
            "Age of the oldest unpublished outbox event (0 when none), by service",
            &["service"]
        )
        .expect("registered once"),
        dead_letters: register_int_gauge_vec!(
            "connectability_dead_letters",
            "Dead letters waiting for an operator (`connectability dead-letters list`), by service",
            &["service"]
        )
        .expect("registered once"),
    }
});

#[async_trait::async_trait]
impl Sampler for StoreSampler {
    async fn sample(&self) {
        let g = &*STORE_GAUGES;
        match connectability_store::outbox::backlog(&self.db).await {
            Ok((pending, oldest_ms)) => {
                g.outbox_pending
                    .with_label_values(&[self.service])
                    .set(pending);
                let age_ms = oldest_ms.map_or(0, |t| (connectability_store::now_ms() - t).max(0));
                g.outbox_age
                    .with_label_values(&[self.service])
                    .set(age_ms as f64 / 1000.0);
            }
            Err(e) => tracing::warn!(error = %e, "metrics: outbox not readable"),
        }
        match connectability_store::inbox::dead_letter_count(&self.db).await {
            Ok(n) => g.dead_letters.with_label_values(&[self.service]).set(n),
            Err(e) => tracing::warn!(error = %e, "metrics: dead letters not readable"),
        }
    }
}
