//! Plain checks the handlers share: who may do what, in which state; errors as statuses.

use super::*;

pub(super) fn participants(r: &RfiRow) -> Participants {
    Participants {
        creator_id: r.creator_id.clone(),
        manager_id: r.manager_id.clone(),
        received_from_id: r.received_from_id.clone(),
        assignee_ids: r.assignee_ids.clone(),
        distribution_ids: r.distribution_ids.clone(),
    }
}

pub(super) fn is_open(r: &RfiRow) -> bool {
    r.status == RfiStatus::Open as i64 || r.status == RfiStatus::Reopened as i64
}

pub(super) fn must_be_open(r: &RfiRow) -> Result<(), Status> {
    if is_open(r) {
        Ok(())
    } else {
        Err(failed_precondition(
            reason::RFI_CLOSED,
            format!("RFI #{} is closed; reopen it first", r.number),
        ))
    }
}

pub(super) fn must_be_own(r: &RfiRow) -> Result<(), Status> {
    connectability_sync::domain::must_be_own(&r.copy, &format!("RFI #{}", r.number))
}

pub(super) fn linked_drawing_not_found(rev: &str) -> Status {
    failed_precondition(
        reason::LINKED_DRAWING_NOT_FOUND,
        format!(
            "linked drawing revision `{rev}` is not a revision you can see in this project's Drawings"
        ),
    )
}

pub(super) fn changed_meanwhile() -> Status {
    Status::aborted("the RFI changed meanwhile; read it again and retry")
}

/// Who may see what of an RFI, by the caller's user id and access in its project.
pub(super) trait RfiViewer {
    fn admin(&self) -> bool;
    /// Admins and the RFI's manager manage it (edit, official response, close, reopen, delete).
    fn manages(&self, r: &RfiRow) -> bool;
    fn sees(&self, r: &RfiRow) -> bool;
}

impl RfiViewer for Viewer {
    fn admin(&self) -> bool {
        domain::is_admin(&self.access)
    }

    fn manages(&self, r: &RfiRow) -> bool {
        self.admin() || r.manager_id == self.user
    }

    fn sees(&self, r: &RfiRow) -> bool {
        !r.private || self.admin() || participants(r).includes(&self.user)
    }
}
