//! Demo data for `connectability dev`: the demo company that reviews connection requests.

use connectability_proto::connections::v1::ApprovalMode;
use connectability_store::{Db, now_ms};

use crate::db;

/// The general contractor in the directory's demo data that reviews every request.
pub const REVIEWING_COMPANY: &str = "co_keystone";

/// Sets the demo approval settings unless they are there. Returns whether it wrote them.
pub async fn load(db: &Db) -> anyhow::Result<bool> {
    let mut tx = db.begin().await?;
    if db::settings(&mut tx, REVIEWING_COMPANY)
        .await?
        .approval_mode()
        == ApprovalMode::RequireReview
    {
        return Ok(false);
    }
    db::save_settings(
        &mut tx,
        REVIEWING_COMPANY,
        ApprovalMode::RequireReview,
        "operator",
        now_ms(),
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}
