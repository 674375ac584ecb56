use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One event: CloudEvents 1.0 attributes and a protobuf payload.
///
/// `event_type` is the payload's full protobuf name, `connectability.<context>.v1.<Name>`;
/// the context (second segment) picks the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Unique id (UUIDv7); also the JetStream `Nats-Msg-Id` and the inbox key.
    pub id: String,
    /// The producing service, e.g. `connectability/directory`.
    pub source: String,
    pub event_type: String,
    /// The resource the event is about, e.g. `projects/prj_tower`.
    pub subject: String,
    /// When the change committed, Unix milliseconds.
    pub time_ms: i64,
    /// W3C trace context of the request that caused the event, if any.
    pub traceparent: Option<String>,
    /// The encoded protobuf message.
    pub data: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("event type `{0}` is not `connectability.<context>.v1.<Name>`")]
    BadType(String),
    #[error("missing header `{0}`")]
    MissingHeader(&'static str),
    #[error("bad header `{0}`: {1}")]
    BadHeader(&'static str, String),
}

impl Envelope {
    /// A new event with a fresh id and the current time.
    pub fn new(
        source: impl Into<String>,
        event_type: impl Into<String>,
        subject: impl Into<String>,
        data: Vec<u8>,
    ) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            source: source.into(),
            event_type: event_type.into(),
            subject: subject.into(),
            time_ms: now_ms(),
            traceparent: None,
            data,
        }
    }

    /// The bounded context (stream) this event belongs to, e.g. `directory`.
    pub fn context(&self) -> Result<&str, EnvelopeError> {
        context_of(&self.event_type)
    }

    /// The CloudEvents `time` attribute (RFC 3339).
    pub fn time_rfc3339(&self) -> String {
        let ts = prost_types::Timestamp {
            seconds: self.time_ms.div_euclid(1000),
            nanos: (self.time_ms.rem_euclid(1000) * 1_000_000) as i32,
        };
        ts.to_string()
    }

    /// The `ce-*` headers of CloudEvents' binary content mode.
    /// The bytes the event takes on the bus: payload plus headers (what a NATS server's
    /// `max_payload` is compared with).
    pub fn wire_size(&self) -> usize {
        self.data.len()
            + self
                .headers()
                .iter()
                .map(|(k, v)| k.len() + v.len() + 4)
                .sum::<usize>()
            + 16
    }

    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            ("ce-specversion", "1.0".to_string()),
            ("ce-id", self.id.clone()),
            ("ce-source", self.source.clone()),
            ("ce-type", self.event_type.clone()),
            ("ce-subject", self.subject.clone()),
            ("ce-time", self.time_rfc3339()),
            ("content-type", "application/protobuf".to_string()),
        ];
        if let Some(tp) = &self.traceparent {
            headers.push(("ce-traceparent", tp.clone()));
        }
        headers
    }

    /// Rebuilds an envelope from `ce-*` headers and the payload.
    pub fn from_headers<'a>(
        get: impl Fn(&str) -> Option<&'a str>,
        data: Vec<u8>,
    ) -> Result<Self, EnvelopeError> {
        let need = |name: &'static str| get(name).ok_or(EnvelopeError::MissingHeader(name));
        let time: prost_types::Timestamp = need("ce-time")?
            .parse()
            .map_err(|e| EnvelopeError::BadHeader("ce-time", format!("{e:?}")))?;
        let event_type = need("ce-type")?.to_string();
        context_of(&event_type)?;
        Ok(Self {
            id: need("ce-id")?.to_string(),
            source: need("ce-source")?.to_string(),
            event_type,
            subject: get("ce-subject").unwrap_or_default().to_string(),
            time_ms: time.seconds * 1000 + i64::from(time.nanos) / 1_000_000,
            traceparent: get("ce-traceparent").map(str::to_string),
            data,
        })
    }
}

fn context_of(event_type: &str) -> Result<&str, EnvelopeError> {
    let mut parts = event_type.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("connectability"), Some(ctx), Some(_version), Some(name))
            if !ctx.is_empty() && !name.is_empty() =>
        {
            Ok(ctx)
        }
        _ => Err(EnvelopeError::BadType(event_type.to_string())),
    }
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn headers_round_trip() {
        let mut env = Envelope::new(
            "connectability/test",
            "connectability.test.v1.Thing",
            "things/1",
            vec![1, 2, 3],
        );
        env.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        let headers: HashMap<_, _> = env.headers().into_iter().collect();
        let back = Envelope::from_headers(|k| headers.get(k).map(String::as_str), env.data.clone())
            .unwrap();
        assert_eq!(back, env);
        assert_eq!(back.context().unwrap(), "test");
    }

    #[test]
    fn bad_types_are_refused() {
        let env = Envelope::new("s", "nope", "x", vec![]);
        assert!(env.context().is_err());
    }
}
