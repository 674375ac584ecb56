//! Plain checks the handlers share: who may do what, in which state; errors as statuses.

use super::*;

pub(super) fn db_err(e: sqlx::Error) -> Status {
    internal(e)
}

pub(super) fn rules(violations: &[Violation]) -> Status {
    let pairs: Vec<(&str, String)> = violations
        .iter()
        .map(|v| (v.reason, v.message.clone()))
        .collect();
    failed_preconditions(&pairs)
}

pub(super) fn rule(reason: &'static str, message: &str) -> Status {
    rules(&[Violation {
        reason,
        message: message.to_string(),
    }])
}

/// Connections are requested and managed by people: operators and services only read.
pub(super) fn acting_user(caller: &Caller) -> Result<&str, Status> {
    match caller {
        Caller::User { user_id } => Ok(user_id),
        _ => Err(permission_denied(
            "connections are requested and managed by project members",
        )),
    }
}

/// Everything the rules need to judge a request.
pub(super) struct Facts {
    pub(super) down: ProjectAccess,
    pub(super) up: ProjectAccess,
    pub(super) down_company: Company,
    pub(super) up_company: Company,
    pub(super) existing: domain::ExistingConnections,
}

/// A connection as the caller sees it, with their access on each side (None for operators
/// and services).
pub(super) struct Visible {
    pub(super) stored: Stored,
    pub(super) up: Option<ProjectAccess>,
    pub(super) down: Option<ProjectAccess>,
}

pub(super) fn history<'a>(
    c: &'a pb::Connection,
    action: ConnectionAction,
    from: ConnectionStatus,
    actor: &'a str,
    time_ms: i64,
    reason: &'a str,
    features: &'a [Feature],
) -> HistoryEntry<'a> {
    HistoryEntry {
        connection_id: &c.id,
        action,
        from,
        to: c.status(),
        actor_id: actor,
        time_ms,
        reason,
        features,
    }
}
