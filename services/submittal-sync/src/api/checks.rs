//! Plain checks the handlers share: who may do what, in which state; errors as statuses.

use super::*;

pub(super) fn response_label(response: i32) -> &'static str {
    match pb::ApproverResponse::try_from(response) {
        Ok(pb::ApproverResponse::Approved) => "Approved",
        Ok(pb::ApproverResponse::ApprovedAsNoted) => "Approved as noted",
        Ok(pb::ApproverResponse::ReviseAndResubmit) => "Revise and resubmit",
        Ok(pb::ApproverResponse::Rejected) => "Rejected",
        _ => "Pending",
    }
}

pub(super) fn status_label(status: i64) -> &'static str {
    match status {
        1 => "Open",
        2 => "Closed",
        3 => "Reopened",
        _ => "Deleted",
    }
}

pub(super) fn is_open(s: &SubmittalRow) -> bool {
    s.status == SubmittalStatus::Open as i64 || s.status == SubmittalStatus::Reopened as i64
}

pub(super) fn must_be_open(s: &SubmittalRow) -> Result<(), Status> {
    if is_open(s) {
        Ok(())
    } else {
        Err(failed_precondition(
            reason::SUBMITTAL_CLOSED,
            format!("submittal #{} is closed; reopen it first", s.number),
        ))
    }
}

pub(super) fn must_be_own(s: &SubmittalRow) -> Result<(), Status> {
    connectability_sync::domain::must_be_own(&s.copy, &format!("submittal #{}", s.number))
}

pub(super) fn changed_meanwhile() -> Status {
    Status::aborted("the submittal changed meanwhile; read it again and retry")
}

/// What a submittal's viewer may do.
pub(super) trait SubmittalViewer {
    /// Admins and the submittal's manager manage it.
    fn manages(&self, s: &SubmittalRow) -> bool;
}

impl SubmittalViewer for Viewer {
    fn manages(&self, s: &SubmittalRow) -> bool {
        domain::is_admin(&self.access) || s.general.manager_id == self.user
    }
}
