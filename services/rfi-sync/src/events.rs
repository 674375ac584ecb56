//! The events rfi-sync publishes. It consumes `connections` events (its projection of
//! connections) and its own `rfis` events (what to copy): see `sync`.

use connectability_events::Envelope;
use connectability_platform::events::envelope;
use connectability_proto::rfis::v1 as pb;

use crate::db::{RfiRow, SyncRow};

pub const SOURCE: &str = "connectability/rfi-sync";

pub fn rfi_closed(r: &RfiRow, actor: &str) -> Envelope {
    let msg = pb::RfiClosed {
        project_id: r.project_id.clone(),
        rfi_id: r.id.clone(),
        version: r.version,
        actor_id: actor.into(),
    };
    envelope(SOURCE, format!("rfis/{}", r.id), &msg)
}

pub fn rfi_reopened(r: &RfiRow, actor: &str) -> Envelope {
    let msg = pb::RfiReopened {
        project_id: r.project_id.clone(),
        rfi_id: r.id.clone(),
        version: r.version,
        actor_id: actor.into(),
    };
    envelope(SOURCE, format!("rfis/{}", r.id), &msg)
}

pub fn rfi_deleted(r: &RfiRow, actor: &str) -> Envelope {
    let msg = pb::RfiDeleted {
        project_id: r.project_id.clone(),
        rfi_id: r.id.clone(),
        version: r.version,
        actor_id: actor.into(),
    };
    envelope(SOURCE, format!("rfis/{}", r.id), &msg)
}

pub fn initial_sync_completed(s: &SyncRow) -> Envelope {
    connectability_sync::connection_event!(SOURCE, pb::InitialSyncCompleted, s, {
        rfis_copied: s.items_copied,
    })
}

pub fn rfis_copied(s: &SyncRow, rfi_id: &str, copied: i64) -> Envelope {
    connectability_sync::connection_event!(SOURCE, pb::RfisCopied, s, {
        rfi_id: rfi_id.into(),
        rfis_copied: copied,
    })
}
