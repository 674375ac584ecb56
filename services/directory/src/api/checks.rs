//! Plain checks the handlers share: who may do what, in which state; errors as statuses.

use super::*;

pub(super) fn db_err(e: sqlx::Error) -> Status {
    internal(e)
}

pub(super) fn scope(method: &str, who: &Principal) -> String {
    format!("directory.{method}:{}", who.actor_id())
}
