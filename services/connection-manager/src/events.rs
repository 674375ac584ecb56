//! The events the connection manager publishes (through its outbox). It consumes none.

use connectability_events::Envelope;
use connectability_platform::events::envelope;
use connectability_proto::connections::v1::{self as pb, ConnectionStatus, Feature};

pub const SOURCE: &str = "connectability/connection-manager";

fn subject(c: &pb::Connection) -> String {
    format!("connections/{}", c.id)
}

pub fn requested(c: &pb::Connection, actor: &str, requires_review: bool) -> Envelope {
    let msg = pb::ConnectionRequested {
        connection: Some(c.clone()),
        actor_id: actor.into(),
        requires_review,
    };
    envelope(SOURCE, subject(c), &msg)
}

pub fn approved(c: &pb::Connection, actor: &str) -> Envelope {
    let msg = pb::ConnectionApproved {
        connection: Some(c.clone()),
        actor_id: actor.into(),
    };
    envelope(SOURCE, subject(c), &msg)
}

pub fn activated(c: &pb::Connection, actor: &str, auto_approved: bool) -> Envelope {
    let msg = pb::ConnectionActivated {
        connection: Some(c.clone()),
        actor_id: actor.into(),
        auto_approved,
    };
    envelope(SOURCE, subject(c), &msg)
}

pub fn rejected(c: &pb::Connection, actor: &str, message: &str) -> Envelope {
    let msg = pb::ConnectionRejected {
        connection: Some(c.clone()),
        actor_id: actor.into(),
        message: message.into(),
    };
    envelope(SOURCE, subject(c), &msg)
}

pub fn undone(c: &pb::Connection, actor: &str, previous: ConnectionStatus) -> Envelope {
    let msg = pb::ConnectionUndone {
        connection: Some(c.clone()),
        actor_id: actor.into(),
        previous_status: previous as i32,
    };
    envelope(SOURCE, subject(c), &msg)
}

pub fn features_added(c: &pb::Connection, added: &[Feature], actor: &str) -> Envelope {
    let msg = pb::ConnectionFeaturesAdded {
        connection: Some(c.clone()),
        added_features: added.iter().map(|f| *f as i32).collect(),
        actor_id: actor.into(),
    };
    envelope(SOURCE, subject(c), &msg)
}

pub fn disconnected(c: &pb::Connection, actor: &str, reason: &str) -> Envelope {
    let msg = pb::ConnectionDisconnected {
        connection: Some(c.clone()),
        actor_id: actor.into(),
        reason: reason.into(),
    };
    envelope(SOURCE, subject(c), &msg)
}

/// The events a transition publishes (C4 onwards: consumers see every change).
pub fn of(t: &crate::domain::Transition, actor: &str) -> Vec<Envelope> {
    use crate::domain::Happened;
    let c = &t.connection;
    match &t.happened {
        Happened::Approved => vec![approved(c, actor), activated(c, actor, false)],
        Happened::Rejected { message } => vec![rejected(c, actor, message)],
        Happened::Undone { .. } => vec![undone(c, actor, t.from)],
        Happened::Disconnected { reason } => vec![disconnected(c, actor, reason)],
        Happened::FeaturesAdded { added } => vec![features_added(c, added, actor)],
    }
}
