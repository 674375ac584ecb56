//! Proto messages to and from the service's rows, and request fields parsed into them.

use super::*;

pub(super) fn approver_pb(a: &Approver) -> pb::Approver {
    pb::Approver {
        user_id: a.user_id.clone(),
        response: a.response,
        comment: a.comment.clone(),
        attachment_file_ids: a.attachment_file_ids.clone(),
        respond_time: a.respond_ms.map(timestamp),
    }
}

pub(super) fn submittal_pb(s: SubmittalRow, linked: Vec<String>) -> pb::Submittal {
    let g = s.general;
    pb::Submittal {
        connected: s.copy.is_copy(),
        origin: s.copy.is_copy().then(|| pb::Origin {
            connection_id: s.copy.connection_id.clone(),
            upstream_project_id: s.copy.origin_project_id.clone(),
            upstream_id: s.copy.origin_id.clone(),
        }),
        id: s.id,
        project_id: s.project_id,
        number: s.number,
        revision: s.revision,
        title: g.title,
        specification_section: g.specification_section,
        r#type: g.kind,
        status: s.status as i32,
        description: g.description,
        manager_id: g.manager_id,
        submitter_id: g.submitter_id,
        responsible_contractor: g.responsible_contractor,
        approvers: g.approvers.iter().map(approver_pb).collect(),
        distribution_ids: g.distribution_ids,
        due_date: g.due_date,
        received_date: g.received_date,
        attachment_file_ids: s.attachment_file_ids,
        cover_sheet_file_id: s.cover_file_id,
        linked_submittal_ids: linked,
        outdated: s.outdated,
        disconnected: s.disconnected,
        create_time: Some(timestamp(s.create_ms)),
        update_time: Some(timestamp(s.update_ms)),
    }
}

pub(super) fn distribution_pb(d: DistributionRow) -> pb::Distribution {
    pb::Distribution {
        id: d.id,
        submittal_id: d.submittal_id,
        revision: d.revision,
        distributed_by: d.distributed_by,
        recipient_ids: d.recipient_ids,
        message: d.message,
        responses: d.responses,
        attachment_file_ids: d.attachment_file_ids,
        cover_sheet_file_id: d.cover_file_id,
        distribute_time: Some(timestamp(d.create_ms)),
    }
}

/// Parsed general information from a request.
pub(super) fn parse_general(s: &pb::Submittal, prefix: &str) -> Result<General, Status> {
    let f = |name: &str| format!("{prefix}{name}");
    let title = parse_text(&f("title"), &s.title, MAX_TITLE)?;
    if title.trim().is_empty() {
        return Err(invalid_argument(&f("title"), "must not be empty"));
    }
    let approver_ids: Vec<String> = s.approvers.iter().map(|a| a.user_id.clone()).collect();
    Ok(General {
        title,
        specification_section: parse_text(
            &f("specification_section"),
            &s.specification_section,
            200,
        )?,
        kind: parse_text(&f("type"), &s.r#type, 200)?,
        description: parse_text(&f("description"), &s.description, MAX_TEXT)?,
        manager_id: domain::parse_optional_user(&f("manager_id"), &s.manager_id)?,
        submitter_id: domain::parse_optional_user(&f("submitter_id"), &s.submitter_id)?,
        responsible_contractor: parse_text(
            &f("responsible_contractor"),
            &s.responsible_contractor,
            200,
        )?,
        approvers: domain::parse_ids(USER, &f("approvers"), &approver_ids)?
            .into_iter()
            .map(|user_id| Approver {
                user_id,
                ..Default::default()
            })
            .collect(),
        distribution_ids: domain::parse_ids(USER, &f("distribution_ids"), &s.distribution_ids)?,
        due_date: domain::parse_date(&f("due_date"), &s.due_date, true)?,
        received_date: domain::parse_date(&f("received_date"), &s.received_date, true)?,
    })
}
