//! The engine's rules as plain functions.

use connectability_proto::connections::v1::{Connection, ConnectionStatus, Feature};

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

#[cfg(test)]
mod tests {
    use super::*;

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
