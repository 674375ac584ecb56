//! W3C trace context for events: the `traceparent` an event carries (CloudEvents distributed
//! tracing extension, `ce-traceparent` on NATS, a column in outboxes) and the span that
//! handles it, so a handler's work joins the trace of whatever raised the event.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The current span's W3C `traceparent`, to carry into events and outgoing calls.
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove("traceparent")
}

/// Makes `span` a child of the trace named by a `traceparent` header, if any.
pub fn set_parent_from(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(tp) = traceparent {
        let carrier = HashMap::from([("traceparent".to_string(), tp.to_string())]);
        let context = TraceContextPropagator::new().extract(&carrier);
        let _ = span.set_parent(context);
    }
}
