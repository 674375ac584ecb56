//! Connection rules (C1-C18) as plain functions over facts gathered beforehand: no network,
//! no database.

pub use connectability_platform::directory::sees_project;
use connectability_platform::time::timestamp;
use connectability_platform::{
    directory::{Tool, at_least, tool_level},
    errors::invalid_argument,
};
use connectability_proto::{
    connections::v1::{self as pb, ConnectionAction, ConnectionStatus, Feature},
    directory::v1::{Company, PermissionLevel, ProjectAccess},
};
use tonic::Status;

pub const CONNECTION: &str = "con";
pub const PROJECT: &str = "prj";
pub const COMPANY: &str = "co";

/// C12: how long a request, auto-approval or approval can be undone.
pub const UNDO_WINDOW_MS: i64 = 5 * 60 * 1000;

/// The ErrorInfo reasons clients match on.
pub mod reason {
    connectability_platform::reasons!(
        NO_FEATURES_SELECTED,
        NOT_DOWNSTREAM_ADMIN,
        NOT_UPSTREAM_MEMBER,
        FEATURE_ACCESS_REQUIRED,
        PROJECT_INACTIVE,
        STORAGE_LOCATION_MISMATCH,
        GOVCLOUD_NOT_SUPPORTED,
        SAME_PROJECT,
        DOWNSTREAM_ALREADY_CONNECTED,
        DOWNSTREAM_PREVIOUSLY_DISCONNECTED,
        PROJECT_IS_DOWNSTREAM,
        PROJECT_IS_UPSTREAM,
        UNDO_WINDOW_EXPIRED,
        INVALID_STATE,
        TOO_MANY_DRAWING_REVISIONS,
    );
}

/// A broken rule: its reason code and an explanation for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub reason: &'static str,
    pub message: String,
}

fn violation(reason: &'static str, message: impl Into<String>) -> Violation {
    Violation {
        reason,
        message: message.into(),
    }
}

/// Parses requested features: unknown or UNSPECIFIED values are INVALID_ARGUMENT; repeats
/// collapse; the result is sorted. Empty is allowed here (it is C1's NO_FEATURES_SELECTED).
pub fn parse_features(raw: &[i32]) -> Result<Vec<Feature>, Status> {
    let mut features = Vec::with_capacity(raw.len());
    for &value in raw {
        match Feature::try_from(value) {
            Ok(Feature::Unspecified) | Err(_) => {
                return Err(invalid_argument(
                    "features",
                    format!("{value} is not a Feature (DRAWINGS, RFIS, SUBMITTALS)"),
                ));
            }
            Ok(f) => features.push(f),
        }
    }
    features.sort_by_key(|f| *f as i32);
    features.dedup();
    Ok(features)
}

pub fn features_to_text(features: &[Feature]) -> String {
    features
        .iter()
        .map(|f| (*f as i32).to_string())
        .collect::<Vec<_>>()
        .join(",")
}

pub fn features_from_text(text: &str) -> Vec<Feature> {
    text.split(',')
        .filter_map(|s| s.parse::<i32>().ok())
        .filter_map(|n| Feature::try_from(n).ok())
        .collect()
}

/// The tool a feature shares.
pub fn tool_of(f: Feature) -> Tool {
    match f {
        Feature::Drawings | Feature::Unspecified => Tool::Drawings,
        Feature::Rfis => Tool::Rfis,
        Feature::Submittals => Tool::Submittals,
    }
}

/// C18: may see a project's connections and their history.
pub fn sees_connections(access: &ProjectAccess) -> bool {
    at_least(
        tool_level(access, Tool::ConnectionManager),
        PermissionLevel::ReadOnly,
    )
}

/// May approve, reject or disconnect on the project's side.
pub fn is_connection_admin(access: &ProjectAccess) -> bool {
    tool_level(access, Tool::ConnectionManager) == PermissionLevel::Admin
}

/// C2 and C3: what the caller needs to request (or extend, C16) a connection.
pub fn permission_violations(
    features: &[Feature],
    down: &ProjectAccess,
    up: &ProjectAccess,
) -> Vec<Violation> {
    let mut out = Vec::new();
    if !is_connection_admin(down) {
        out.push(violation(
            reason::NOT_DOWNSTREAM_ADMIN,
            format!(
                "you need ADMIN on Connection Manager in the downstream project `{}`",
                down.project_id
            ),
        ));
    }
    if !up.member {
        out.push(violation(
            reason::NOT_UPSTREAM_MEMBER,
            format!(
                "you must be in the directory of the upstream project `{}`",
                up.project_id
            ),
        ));
    }
    let missing: Vec<&str> = features
        .iter()
        .filter(|f| {
            let tool = tool_of(**f);
            !at_least(tool_level(down, tool), PermissionLevel::ReadOnly)
                || !at_least(tool_level(up, tool), PermissionLevel::ReadOnly)
        })
        .map(|f| f.as_str_name())
        .collect();
    if !missing.is_empty() {
        out.push(violation(
            reason::FEATURE_ACCESS_REQUIRED,
            format!(
                "you need at least READ_ONLY in both projects on: {}",
                missing.join(", ")
            ),
        ));
    }
    out
}

/// What the store knows about the two projects' connections.
#[derive(Debug, Clone, Default)]
pub struct ExistingConnections {
    /// The downstream project has a PENDING or ACTIVE connection (C8).
    pub downstream_open: bool,
    /// The downstream project was disconnected before (C14).
    pub downstream_disconnected: bool,
    /// The would-be upstream is downstream somewhere (C10).
    pub upstream_is_downstream: bool,
    /// The would-be downstream is upstream somewhere (C10).
    pub downstream_is_upstream: bool,
    /// Published drawing revisions of the upstream and the limit, when DRAWINGS is asked (C17).
    pub upstream_revisions: Option<(i64, i64)>,
}

/// C17: a project with more published drawing revisions than the limit cannot connect for
/// drawings.
pub fn revision_limit_violation(
    project_id: &str,
    revisions: Option<(i64, i64)>,
) -> Option<Violation> {
    match revisions {
        Some((count, limit)) if count > limit => Some(violation(
            reason::TOO_MANY_DRAWING_REVISIONS,
            format!(
                "`{project_id}` has {count} published drawing revisions; connections for drawings allow {limit}"
            ),
        )),
        _ => None,
    }
}

/// Every rule a request breaks, in rule order (C1-C10; C11 decides only the outcome).
pub fn eligibility(
    features: &[Feature],
    down: &ProjectAccess,
    up: &ProjectAccess,
    down_company: &Company,
    up_company: &Company,
    existing: &ExistingConnections,
) -> Vec<Violation> {
    let mut out = Vec::new();
    if features.is_empty() {
        out.push(violation(
            reason::NO_FEATURES_SELECTED,
            "select at least one feature: DRAWINGS, RFIS or SUBMITTALS",
        ));
    }
    out.extend(permission_violations(features, down, up));
    for access in [down, up] {
        if !access.project_active {
            out.push(violation(
                reason::PROJECT_INACTIVE,
                format!("project `{}` is inactive", access.project_id),
            ));
        }
    }
    if down_company.storage_location != up_company.storage_location {
        out.push(violation(
            reason::STORAGE_LOCATION_MISMATCH,
            format!(
                "`{}` stores files in {}, `{}` in {}",
                down_company.name,
                down_company.storage_location,
                up_company.name,
                up_company.storage_location
            ),
        ));
    }
    if down_company.govcloud || up_company.govcloud {
        out.push(violation(
            reason::GOVCLOUD_NOT_SUPPORTED,
            "GovCloud companies cannot take part in connections",
        ));
    }
    if down.project_id == up.project_id {
        out.push(violation(
            reason::SAME_PROJECT,
            "a project cannot connect to itself",
        ));
    }
    if existing.downstream_disconnected {
        out.push(violation(
            reason::DOWNSTREAM_PREVIOUSLY_DISCONNECTED,
            format!(
                "`{}` was disconnected and can never connect again",
                down.project_id
            ),
        ));
    } else if existing.downstream_open {
        out.push(violation(
            reason::DOWNSTREAM_ALREADY_CONNECTED,
            format!(
                "`{}` already has a pending or active upstream connection",
                down.project_id
            ),
        ));
    }
    if existing.upstream_is_downstream {
        out.push(violation(
            reason::PROJECT_IS_DOWNSTREAM,
            format!(
                "`{}` is downstream in a connection, so it cannot be upstream",
                up.project_id
            ),
        ));
    }
    if existing.downstream_is_upstream {
        out.push(violation(
            reason::PROJECT_IS_UPSTREAM,
            format!(
                "`{}` is upstream in a connection, so it cannot be downstream",
                down.project_id
            ),
        ));
    }
    out.extend(revision_limit_violation(
        &up.project_id,
        existing.upstream_revisions,
    ));
    out
}

/// A connection's lifecycle as typed transitions. Each checks the state it starts from and
/// returns the connection as it becomes, with what happened: the handler stores that with
/// its history entry and events. Every transition adds one to the connection's version,
/// the order consumers apply a connection's events in.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The connection after the transition.
    pub connection: pb::Connection,
    /// Its status before (the store writes only if it is still that).
    pub from: ConnectionStatus,
    pub happened: Happened,
}

/// What a transition did, for the history and the events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Happened {
    /// PENDING -> ACTIVE by an upstream admin.
    Approved,
    /// PENDING -> REJECTED, with the message for the downstream company.
    Rejected { message: String },
    /// -> UNDONE (withdrawn) or ACTIVE -> PENDING (approval taken back), C12.
    Undone { undo: Undo },
    /// ACTIVE -> DISCONNECTED, with the reason (C13).
    Disconnected { reason: String },
    /// Features added to an ACTIVE connection (C16).
    FeaturesAdded { added: Vec<Feature> },
}

impl Transition {
    pub fn action(&self) -> ConnectionAction {
        match self.happened {
            Happened::Approved => ConnectionAction::Approved,
            Happened::Rejected { .. } => ConnectionAction::Rejected,
            Happened::Undone { .. } => ConnectionAction::Undone,
            Happened::Disconnected { .. } => ConnectionAction::Disconnected,
            Happened::FeaturesAdded { .. } => ConnectionAction::FeaturesAdded,
        }
    }
}

/// The next version of `c`, which must be in `from` (else INVALID_STATE with `refusal`).
fn next(
    c: &pb::Connection,
    from: ConnectionStatus,
    refusal: &str,
    now_ms: i64,
) -> Result<pb::Connection, Violation> {
    if c.status() != from {
        return Err(violation(reason::INVALID_STATE, refusal));
    }
    let mut next = c.clone();
    next.version += 1;
    next.update_time = Some(timestamp(now_ms));
    Ok(next)
}

pub fn approve(c: &pb::Connection, by: &str, now_ms: i64) -> Result<Transition, Violation> {
    let mut next = next(
        c,
        ConnectionStatus::Pending,
        "only a pending connection can be approved",
        now_ms,
    )?;
    next.status = ConnectionStatus::Active as i32;
    next.approved_by = by.to_string();
    next.approve_time = Some(timestamp(now_ms));
    Ok(Transition {
        connection: next,
        from: ConnectionStatus::Pending,
        happened: Happened::Approved,
    })
}

pub fn reject(c: &pb::Connection, message: &str, now_ms: i64) -> Result<Transition, Violation> {
    let mut next = next(
        c,
        ConnectionStatus::Pending,
        "only a pending connection can be rejected",
        now_ms,
    )?;
    next.status = ConnectionStatus::Rejected as i32;
    Ok(Transition {
        connection: next,
        from: ConnectionStatus::Pending,
        happened: Happened::Rejected {
            message: message.to_string(),
        },
    })
}

/// The undo [`undo`] allowed: a withdrawal ends the connection, an approval taken back
/// returns it to PENDING without an approver.
pub fn apply_undo(c: &pb::Connection, undo: Undo, now_ms: i64) -> Result<Transition, Violation> {
    let from = c.status();
    let mut next = next(c, from, "", now_ms)?;
    match undo {
        Undo::Withdraw => next.status = ConnectionStatus::Undone as i32,
        Undo::Unapprove => {
            next.status = ConnectionStatus::Pending as i32;
            next.approved_by.clear();
            next.approve_time = None;
        }
    }
    Ok(Transition {
        connection: next,
        from,
        happened: Happened::Undone { undo },
    })
}

pub fn disconnect(
    c: &pb::Connection,
    by: &str,
    reason: &str,
    now_ms: i64,
) -> Result<Transition, Violation> {
    let mut next = next(
        c,
        ConnectionStatus::Active,
        "only an active connection can be disconnected",
        now_ms,
    )?;
    next.status = ConnectionStatus::Disconnected as i32;
    next.disconnected_by = by.to_string();
    next.disconnect_reason = reason.to_string();
    next.disconnect_time = Some(timestamp(now_ms));
    Ok(Transition {
        connection: next,
        from: ConnectionStatus::Active,
        happened: Happened::Disconnected {
            reason: reason.to_string(),
        },
    })
}

/// C16: adds the `requested` features the connection does not carry yet; `None` when it
/// carries them all (nothing changes).
pub fn add_features(
    c: &pb::Connection,
    requested: &[Feature],
    now_ms: i64,
) -> Result<Option<Transition>, Violation> {
    let current: Vec<Feature> = c.features().collect();
    let added: Vec<Feature> = requested
        .iter()
        .copied()
        .filter(|f| !current.contains(f))
        .collect();
    let mut next = next(
        c,
        ConnectionStatus::Active,
        "features can be added to an active connection only",
        now_ms,
    )?;
    if added.is_empty() {
        return Ok(None);
    }
    let mut all = current;
    all.extend(&added);
    all.sort_by_key(|f| *f as i32);
    next.features = all.iter().map(|f| *f as i32).collect();
    Ok(Some(Transition {
        connection: next,
        from: ConnectionStatus::Active,
        happened: Happened::FeaturesAdded { added },
    }))
}

/// What an undo does (C12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undo {
    /// The initiator withdraws a request or an auto-approved connection: -> UNDONE.
    Withdraw,
    /// The approver takes the approval back: -> PENDING.
    Unapprove,
}

/// The facts of a connection that decide an undo.
pub struct UndoFacts<'a> {
    pub status: ConnectionStatus,
    pub requested_by: &'a str,
    pub request_ms: i64,
    pub approved_by: &'a str,
    pub approve_ms: Option<i64>,
}

/// Which undo `caller` may do now, or the reason they may not. `Err(None)`: the caller is
/// neither initiator nor approver (PERMISSION_DENIED).
pub fn undo(facts: &UndoFacts<'_>, caller: &str, now_ms: i64) -> Result<Undo, Option<Violation>> {
    let within = |since: i64| now_ms - since <= UNDO_WINDOW_MS;
    let expired = || {
        Some(violation(
            reason::UNDO_WINDOW_EXPIRED,
            "undo is possible for 5 minutes only",
        ))
    };
    let auto_approved = facts.approved_by.is_empty() && facts.approve_ms.is_some();
    if !facts.approved_by.is_empty() && caller == facts.approved_by {
        return match facts.status {
            ConnectionStatus::Active if within(facts.approve_ms.unwrap_or(0)) => {
                Ok(Undo::Unapprove)
            }
            ConnectionStatus::Active => Err(expired()),
            _ => Err(Some(violation(
                reason::INVALID_STATE,
                "only an active approval can be undone",
            ))),
        };
    }
    if caller == facts.requested_by {
        return match facts.status {
            ConnectionStatus::Pending => {
                if within(facts.request_ms) {
                    Ok(Undo::Withdraw)
                } else {
                    Err(expired())
                }
            }
            ConnectionStatus::Active if auto_approved => {
                if within(facts.request_ms) {
                    Ok(Undo::Withdraw)
                } else {
                    Err(expired())
                }
            }
            ConnectionStatus::Active => Err(Some(violation(
                reason::INVALID_STATE,
                "the upstream company approved this connection; only its approver can undo that",
            ))),
            _ => Err(Some(violation(
                reason::INVALID_STATE,
                "only a pending or active connection can be undone",
            ))),
        };
    }
    Err(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending() -> pb::Connection {
        pb::Connection {
            id: "con_1".into(),
            status: ConnectionStatus::Pending as i32,
            features: vec![Feature::Drawings as i32],
            requested_by: "usr_raj".into(),
            version: 1,
            ..Default::default()
        }
    }

    #[test]
    fn transitions_check_their_state_and_count_versions() {
        let approved = approve(&pending(), "usr_gina", 10).unwrap();
        assert_eq!(approved.from, ConnectionStatus::Pending);
        assert_eq!(approved.connection.status(), ConnectionStatus::Active);
        assert_eq!(approved.connection.version, 2);
        assert_eq!(approved.connection.approved_by, "usr_gina");
        assert_eq!(approved.action(), ConnectionAction::Approved);
        // An active connection cannot be approved or rejected again.
        for refused in [
            approve(&approved.connection, "usr_gina", 11),
            reject(&approved.connection, "no", 11),
        ] {
            assert_eq!(refused.unwrap_err().reason, reason::INVALID_STATE);
        }
        let taken_back = apply_undo(&approved.connection, Undo::Unapprove, 12).unwrap();
        assert_eq!(taken_back.connection.status(), ConnectionStatus::Pending);
        assert!(taken_back.connection.approved_by.is_empty());
        assert!(taken_back.connection.approve_time.is_none());
        assert_eq!(taken_back.connection.version, 3);
        let again = approve(&taken_back.connection, "usr_gina", 13).unwrap();
        assert_eq!(again.connection.version, 4);
        // Features: only new ones, sorted; none new changes nothing.
        let more = add_features(
            &again.connection,
            &[Feature::Submittals, Feature::Drawings],
            14,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            more.happened,
            Happened::FeaturesAdded {
                added: vec![Feature::Submittals]
            }
        );
        assert_eq!(
            more.connection.features().collect::<Vec<_>>(),
            vec![Feature::Drawings, Feature::Submittals]
        );
        assert_eq!(
            add_features(&more.connection, &[Feature::Drawings], 15),
            Ok(None)
        );
        assert_eq!(
            add_features(&pending(), &[Feature::Rfis], 15)
                .unwrap_err()
                .reason,
            reason::INVALID_STATE
        );
        let gone = disconnect(&more.connection, "usr_raj", "done", 16).unwrap();
        assert_eq!(gone.connection.status(), ConnectionStatus::Disconnected);
        assert_eq!(gone.connection.disconnect_reason, "done");
        assert_eq!(gone.connection.version, 6);
        assert_eq!(
            disconnect(&gone.connection, "usr_raj", "again", 17)
                .unwrap_err()
                .reason,
            reason::INVALID_STATE
        );
        let withdrawn = apply_undo(&pending(), Undo::Withdraw, 18).unwrap();
        assert_eq!(withdrawn.connection.status(), ConnectionStatus::Undone);
        assert_eq!(withdrawn.from, ConnectionStatus::Pending);
    }
    use connectability_proto::directory::v1::{PermissionLevel as L, ToolPermissions};

    fn access(project: &str, member: bool, cm: L, drawings: L) -> ProjectAccess {
        ProjectAccess {
            project_id: project.into(),
            member,
            project_active: true,
            permissions: Some(ToolPermissions {
                connection_manager: cm as i32,
                drawings: drawings as i32,
                rfis: L::None as i32,
                submittals: L::None as i32,
            }),
            ..Default::default()
        }
    }

    fn company(fsl: &str, govcloud: bool) -> Company {
        Company {
            storage_location: fsl.into(),
            govcloud,
            ..Default::default()
        }
    }

    #[test]
    fn every_broken_rule_is_reported_at_once() {
        let down = access("prj_a", true, L::ReadOnly, L::None);
        let up = access("prj_a", false, L::None, L::None);
        let reasons: Vec<_> = eligibility(
            &[],
            &down,
            &up,
            &company("us-east", true),
            &company("eu-central", false),
            &ExistingConnections::default(),
        )
        .into_iter()
        .map(|v| v.reason)
        .collect();
        assert_eq!(
            reasons,
            vec![
                reason::NO_FEATURES_SELECTED,
                reason::NOT_DOWNSTREAM_ADMIN,
                reason::NOT_UPSTREAM_MEMBER,
                reason::STORAGE_LOCATION_MISMATCH,
                reason::GOVCLOUD_NOT_SUPPORTED,
                reason::SAME_PROJECT,
            ]
        );
    }

    #[test]
    fn feature_access_needs_read_only_on_both_sides() {
        let down = access("prj_d", true, L::Admin, L::ReadOnly);
        let up = access("prj_u", true, L::None, L::None);
        let v = permission_violations(&[Feature::Drawings], &down, &up);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].reason, reason::FEATURE_ACCESS_REQUIRED);
        let up = access("prj_u", true, L::None, L::ReadOnly);
        assert!(permission_violations(&[Feature::Drawings], &down, &up).is_empty());
    }

    #[test]
    fn undo_window_and_who() {
        let facts = UndoFacts {
            status: ConnectionStatus::Active,
            requested_by: "usr_d",
            request_ms: 0,
            approved_by: "",
            approve_ms: Some(0),
        };
        assert_eq!(undo(&facts, "usr_d", UNDO_WINDOW_MS), Ok(Undo::Withdraw));
        assert_eq!(
            undo(&facts, "usr_d", UNDO_WINDOW_MS + 1)
                .unwrap_err()
                .unwrap()
                .reason,
            reason::UNDO_WINDOW_EXPIRED
        );
        assert_eq!(undo(&facts, "usr_x", 1), Err(None));
        let approved = UndoFacts {
            approved_by: "usr_u",
            approve_ms: Some(100),
            ..facts
        };
        assert_eq!(undo(&approved, "usr_u", 200), Ok(Undo::Unapprove));
        assert_eq!(
            undo(&approved, "usr_d", 200).unwrap_err().unwrap().reason,
            reason::INVALID_STATE
        );
    }

    #[test]
    fn features_parse_dedupe_and_refuse_unknown() {
        assert_eq!(
            parse_features(&[3, 1, 3]).unwrap(),
            vec![Feature::Drawings, Feature::Submittals]
        );
        assert!(parse_features(&[0]).is_err());
        assert!(parse_features(&[9]).is_err());
        assert_eq!(
            features_from_text(&features_to_text(&[Feature::Rfis, Feature::Submittals])),
            vec![Feature::Rfis, Feature::Submittals]
        );
    }
}
