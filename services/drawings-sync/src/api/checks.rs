//! Plain checks the handlers share: who may do what, in which state; errors as statuses.

use super::*;

pub(super) fn db_err(e: sqlx::Error) -> Status {
    internal(e)
}

pub(super) fn user_of(caller: &Caller) -> Result<&str, Status> {
    match caller {
        Caller::User { user_id } => Ok(user_id),
        _ => Err(permission_denied(
            "the Drawings tool is used by project members",
        )),
    }
}
