//! Building event envelopes from protobuf payloads, with the current trace attached.

use connectability_events::Envelope;
use connectability_proto::EventMessage;

/// An envelope for `message`, typed by its protobuf name and carrying the current trace.
pub fn envelope<M: EventMessage>(
    source: &str,
    subject: impl Into<String>,
    message: &M,
) -> Envelope {
    let mut env = Envelope::new(source, M::EVENT_TYPE, subject, message.encode_to_vec());
    env.traceparent = crate::telemetry::current_traceparent();
    env
}

/// Decodes an envelope's payload as `M`, checking the type first.
pub fn decode<M: EventMessage>(env: &Envelope) -> anyhow::Result<M> {
    anyhow::ensure!(
        env.event_type == M::EVENT_TYPE,
        "event {} is a {}, not a {}",
        env.id,
        env.event_type,
        M::EVENT_TYPE
    );
    Ok(M::decode(env.data.as_slice())?)
}
