//! Logs (readable text in dev, JSON lines when asked) and traces (OTLP export when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set). W3C trace context crosses gRPC metadata and event
//! headers.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_subscriber::{EnvFilter, layer::SubscriberExt, util::SubscriberInitExt};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Flushes and stops trace export when dropped (at the end of `main`).
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// Installs the global subscriber. Call once, inside the tokio runtime; later calls (tests)
/// keep the first subscriber.
pub fn init(service_name: &str, format: LogFormat) -> TelemetryGuard {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,opentelemetry_sdk=warn,h2=warn,sqlx=warn"));

    let provider = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
        .and_then(|endpoint| match otlp_provider(service_name, &endpoint) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("OTLP export disabled: {e}");
                None
            }
        });
    let otel_layer = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(service_name.to_string())));

    let registry = tracing_subscriber::registry().with(filter).with(otel_layer);
    let _ = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(tracing_subscriber::fmt::layer()).try_init(),
    };
    TelemetryGuard { provider }
}

fn otlp_provider(service_name: &str, endpoint: &str) -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_string())
                .build(),
        )
        .build())
}

pub use connectability_events::trace::{current_traceparent, set_parent_from};

/// Inserts the current span's `traceparent` into an outgoing request's metadata.
pub fn inject_traceparent<T>(req: &mut tonic::Request<T>) {
    if let Some(tp) = current_traceparent().and_then(|tp| tp.parse().ok()) {
        req.metadata_mut().insert("traceparent", tp);
    }
}

/// The interceptor on every service-to-service client: the calling service's token and the
/// caller's trace context, so the callee's spans join the caller's trace.
/// The token is read for every call, so a rotated token file is used as soon as it is seen.
#[derive(Clone)]
pub struct ServiceCall(crate::service_identity::ServiceToken);

impl ServiceCall {
    pub fn new(service_token: impl Into<crate::service_identity::ServiceToken>) -> Self {
        Self(service_token.into())
    }
}

impl tonic::service::Interceptor for ServiceCall {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let value = format!("Bearer {}", self.0.current())
            .parse()
            .map_err(|_| {
                tonic::Status::internal("the service token is not valid ASCII metadata")
            })?;
        req.metadata_mut().insert("authorization", value);
        inject_traceparent(&mut req);
        Ok(req)
    }
}
