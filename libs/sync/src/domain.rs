//! The engine's rules as plain functions.

use connectability_platform::directory::{Tool, at_least, tool_level};
use connectability_proto::{
    connections::v1::{Connection, ConnectionStatus, Feature},
    directory::v1::{PermissionLevel, ProjectAccess},
};

/// Whether connection-manager's `current` view of a connection confirms what a connection
/// event of `kind` claims about `claimed`: the same connection between the same projects
/// and companies, now in the state the event leads to.
///
/// - an activation or added feature: ACTIVE now, carrying `feature`;
/// - an undo: not active now (UNDONE, or PENDING after an approver took the approval back).
///   If it is active again (approved anew), the later activation's backfill reconciles the
///   copies, so skipping this withdrawal loses nothing;
/// - a disconnection: DISCONNECTED now.
pub fn confirms(kind: &str, claimed: &Connection, current: &Connection, feature: Feature) -> bool {
    let same = current.id == claimed.id
        && current.upstream_project_id == claimed.upstream_project_id
        && current.downstream_project_id == claimed.downstream_project_id
        && current.downstream_company_id == claimed.downstream_company_id;
    let status = current.status();
    same && match kind {
        "ConnectionActivated" | "ConnectionFeaturesAdded" => {
            status == ConnectionStatus::Active && current.features.contains(&(feature as i32))
        }
        "ConnectionUndone" => {
            matches!(status, ConnectionStatus::Undone | ConnectionStatus::Pending)
        }
        "ConnectionDisconnected" => status == ConnectionStatus::Disconnected,
        _ => false,
    }
}

/// Who may see a connection's sync of `tool`: on the downstream project, READ_ONLY or more
/// on the tool or on Connection Manager.
pub fn may_watch_sync(access: &ProjectAccess, tool: Tool) -> bool {
    [tool, Tool::ConnectionManager]
        .into_iter()
        .any(|t| at_least(tool_level(access, t), PermissionLevel::ReadOnly))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tool_or_connection_manager_lets_a_member_watch() {
        use connectability_proto::directory::v1::{PermissionLevel as L, ToolPermissions};
        let access = |cm: L, rfis: L| ProjectAccess {
            member: true,
            permissions: Some(ToolPermissions {
                connection_manager: cm as i32,
                rfis: rfis as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(may_watch_sync(&access(L::None, L::ReadOnly), Tool::Rfis));
        assert!(may_watch_sync(&access(L::ReadOnly, L::None), Tool::Rfis));
        assert!(!may_watch_sync(&access(L::None, L::None), Tool::Rfis));
        assert!(!may_watch_sync(&access(L::None, L::Admin), Tool::Drawings));
    }

    fn connection(status: ConnectionStatus) -> Connection {
        Connection {
            id: "con_a".into(),
            upstream_project_id: "prj_up".into(),
            downstream_project_id: "prj_down".into(),
            downstream_company_id: "co_down".into(),
            features: vec![Feature::Drawings as i32],
            status: status as i32,
            ..Default::default()
        }
    }

    #[test]
    fn events_are_confirmed_only_by_the_state_they_lead_to() {
        use ConnectionStatus::*;
        let d = Feature::Drawings;
        let active = connection(Active);
        assert!(confirms("ConnectionActivated", &active, &active, d));
        assert!(!confirms(
            "ConnectionActivated",
            &active,
            &active,
            Feature::Rfis
        ));
        assert!(!confirms(
            "ConnectionActivated",
            &active,
            &connection(Pending),
            d
        ));
        assert!(confirms(
            "ConnectionUndone",
            &active,
            &connection(Undone),
            d
        ));
        assert!(confirms(
            "ConnectionUndone",
            &active,
            &connection(Pending),
            d
        ));
        assert!(
            !confirms("ConnectionUndone", &active, &active, d),
            "a forged undo"
        );
        assert!(confirms(
            "ConnectionDisconnected",
            &active,
            &connection(Disconnected),
            d
        ));
        assert!(!confirms("ConnectionDisconnected", &active, &active, d));
        // A claim naming another upstream (the victim's) than connection-manager holds.
        let forged = Connection {
            upstream_project_id: "prj_victim".into(),
            ..active.clone()
        };
        assert!(!confirms("ConnectionActivated", &forged, &active, d));
        assert!(!confirms("SomethingElse", &active, &active, d));
    }
}

/// The error reasons the engine answers with.
pub mod reason {
    connectability_platform::reasons!(CONNECTED_READ_ONLY);
}

/// Copies change only upstream: changing a connected copy (`what`, as people name it:
/// "RFI #3") is FAILED_PRECONDITION `CONNECTED_READ_ONLY`.
pub fn must_be_own(copy: &crate::Copy, what: &str) -> Result<(), tonic::Status> {
    if copy.is_copy() {
        Err(connectability_platform::errors::failed_precondition(
            reason::CONNECTED_READ_ONLY,
            format!("{what} is a connected copy and read-only here; it changes only upstream"),
        ))
    } else {
        Ok(())
    }
}
