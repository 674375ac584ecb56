//! The events submittal-sync publishes. It consumes `connections` events (its projection of
//! connections) and its own `submittals` events (what to copy): see `sync`.

use connectability_events::Envelope;
use connectability_platform::events::envelope;
use connectability_proto::submittals::v1 as pb;

use crate::db::{SubmittalRow, SyncRow};

pub const SOURCE: &str = "connectability/submittal-sync";

fn subject(s: &SubmittalRow) -> String {
    format!("submittals/{}", s.id)
}

pub fn distributed(s: &SubmittalRow, distribution_id: &str, actor: &str) -> Envelope {
    let msg = pb::SubmittalDistributed {
        project_id: s.project_id.clone(),
        submittal_id: s.id.clone(),
        distribution_id: distribution_id.into(),
        version: s.version,
        actor_id: actor.into(),
    };
    envelope(SOURCE, subject(s), &msg)
}

pub fn revised(s: &SubmittalRow, actor: &str) -> Envelope {
    let msg = pb::SubmittalRevised {
        project_id: s.project_id.clone(),
        submittal_id: s.id.clone(),
        revision: s.revision,
        version: s.version,
        actor_id: actor.into(),
    };
    envelope(SOURCE, subject(s), &msg)
}

pub fn status_changed(s: &SubmittalRow, actor: &str) -> Envelope {
    let msg = pb::SubmittalStatusChanged {
        project_id: s.project_id.clone(),
        submittal_id: s.id.clone(),
        status: s.status as i32,
        version: s.version,
        actor_id: actor.into(),
    };
    envelope(SOURCE, subject(s), &msg)
}

pub fn initial_sync_completed(s: &SyncRow) -> Envelope {
    connectability_sync::connection_event!(SOURCE, pb::InitialSyncCompleted, s, {
        submittals_copied: s.items_copied,
    })
}
