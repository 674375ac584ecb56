//! The events drawings-sync publishes. It consumes `connections` events (its projection of
//! connections) and its own `drawings` events (what to copy): see `sync`.

use connectability_events::Envelope;
use connectability_platform::events::envelope;
use connectability_proto::drawings::v1 as pb;

use crate::db::SyncRow;

pub const SOURCE: &str = "connectability/drawings-sync";

pub fn revisions_published(
    project_id: &str,
    publish_id: &str,
    revision_ids: Vec<String>,
    drawing_ids: Vec<String>,
    actor: &str,
) -> Envelope {
    let msg = pb::RevisionsPublished {
        project_id: project_id.into(),
        publish_id: publish_id.into(),
        revision_ids,
        drawing_ids,
        actor_id: actor.into(),
    };
    envelope(
        SOURCE,
        format!("projects/{project_id}/publishes/{publish_id}"),
        &msg,
    )
}

pub fn drawing_updated(project_id: &str, drawing_id: &str, version: i64, actor: &str) -> Envelope {
    let msg = pb::DrawingUpdated {
        project_id: project_id.into(),
        drawing_id: drawing_id.into(),
        version,
        actor_id: actor.into(),
    };
    envelope(SOURCE, format!("drawings/{drawing_id}"), &msg)
}

pub fn drawing_deleted(project_id: &str, drawing_id: &str, version: i64, actor: &str) -> Envelope {
    let msg = pb::DrawingDeleted {
        project_id: project_id.into(),
        drawing_id: drawing_id.into(),
        version,
        actor_id: actor.into(),
    };
    envelope(SOURCE, format!("drawings/{drawing_id}"), &msg)
}

pub fn initial_sync_completed(s: &SyncRow) -> Envelope {
    connectability_sync::connection_event!(SOURCE, pb::InitialSyncCompleted, s, {
        drawings_copied: s.records_copied,
        revisions_copied: s.items_copied,
    })
}

pub fn drawings_copied(s: &SyncRow, publish_id: &str, revisions: i64) -> Envelope {
    connectability_sync::connection_event!(SOURCE, pb::DrawingsCopied, s, {
        publish_id: publish_id.into(),
        revisions_copied: revisions,
    })
}

pub fn drawings_deleted_upstream(s: &SyncRow, numbers: &[String]) -> Envelope {
    connectability_sync::connection_event!(SOURCE, pb::DrawingsDeletedUpstream, s, {
        drawing_numbers: numbers.to_vec(),
    })
}
