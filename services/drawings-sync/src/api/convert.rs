//! Proto messages to and from the service's rows, and request fields parsed into them.

use super::*;

pub(super) fn origin(copy: &Copy) -> Option<pb::Origin> {
    copy.is_copy().then(|| pb::Origin {
        connection_id: copy.connection_id.clone(),
        upstream_project_id: copy.origin_project_id.clone(),
        upstream_id: copy.origin_id.clone(),
    })
}

pub(super) fn area_pb(a: AreaRow) -> pb::DrawingArea {
    pb::DrawingArea {
        connected: a.copy.is_copy(),
        origin: origin(&a.copy),
        id: a.id,
        project_id: a.project_id,
        name: a.name,
        description: a.description,
        create_time: Some(timestamp(a.create_ms)),
    }
}

pub(super) fn set_pb(s: SetRow) -> pb::DrawingSet {
    pb::DrawingSet {
        connected: s.copy.is_copy(),
        origin: origin(&s.copy),
        id: s.id,
        project_id: s.project_id,
        name: s.name,
        date: s.set_date,
        create_time: Some(timestamp(s.create_ms)),
    }
}

pub(super) fn revision_pb(r: RevisionRow) -> pb::DrawingRevision {
    pb::DrawingRevision {
        connected: r.copy.is_copy(),
        origin: origin(&r.copy),
        custom_fields: serde_json::from_str(&r.custom_fields).unwrap_or_default(),
        id: r.id,
        drawing_id: r.drawing_id,
        project_id: r.project_id,
        set_id: r.set_id,
        revision_number: r.revision_number,
        revision_status: r.revision_status,
        drawing_date: r.drawing_date,
        received_date: r.received_date,
        file_id: r.file_id,
        published: r.published,
        publish_time: r.publish_ms.map(timestamp),
        create_time: Some(timestamp(r.create_ms)),
    }
}

pub(super) fn drawing_pb(d: DrawingRow, current: Option<RevisionRow>) -> pb::Drawing {
    pb::Drawing {
        connected: d.copy.is_copy(),
        origin: origin(&d.copy),
        id: d.id,
        project_id: d.project_id,
        area_id: d.area_id,
        number: d.number,
        title: d.title,
        discipline_name: d.discipline_name,
        discipline_position: d.discipline_position as i32,
        obsolete: d.obsolete,
        current_revision: current.map(revision_pb),
        create_time: Some(timestamp(d.create_ms)),
        update_time: Some(timestamp(d.update_ms)),
    }
}

pub(super) fn markup_pb(m: MarkupRow) -> pb::Markup {
    pb::Markup {
        id: m.id,
        project_id: m.project_id,
        revision_id: m.revision_id,
        author_id: m.author_id,
        body: m.body,
        create_time: Some(timestamp(m.create_ms)),
    }
}
