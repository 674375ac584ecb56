//! Proto messages to and from the service's rows, and request fields parsed into them.

use super::*;

pub(super) fn origin(r: &RfiRow) -> Option<pb::Origin> {
    r.copy.is_copy().then(|| pb::Origin {
        connection_id: r.copy.connection_id.clone(),
        upstream_project_id: r.copy.origin_project_id.clone(),
        upstream_id: r.copy.origin_id.clone(),
    })
}

pub(super) fn response_pb(r: ResponseRow) -> pb::RfiResponse {
    pb::RfiResponse {
        id: r.id,
        author_id: r.author_id,
        body: r.body,
        attachment_file_ids: r.file_ids,
        official: r.official,
        create_time: Some(timestamp(r.create_ms)),
    }
}

pub(super) fn rfi_pb(r: RfiRow, responses: Vec<ResponseRow>, linked: Vec<String>) -> pb::Rfi {
    pb::Rfi {
        connected: r.copy.is_copy(),
        origin: origin(&r),
        id: r.id,
        project_id: r.project_id,
        number: r.number,
        subject: r.subject,
        question: r.question,
        question_file_ids: r.question_file_ids,
        status: r.status as i32,
        manager_id: r.manager_id,
        received_from_id: r.received_from_id,
        responsible_contractor: r.responsible_contractor,
        assignee_ids: r.assignee_ids,
        distribution_ids: r.distribution_ids,
        creator_id: r.creator_id,
        date_initiated: r.date_initiated,
        due_date: r.due_date,
        private: r.private,
        drawing_revision_ids: r.drawing_revision_ids,
        responses: responses.into_iter().map(response_pb).collect(),
        cover_sheet_file_id: r.cover_file_id,
        linked_drawings_file_id: r.drawings_file_id,
        linked_rfi_ids: linked,
        disconnected: r.disconnected,
        create_time: Some(timestamp(r.create_ms)),
        update_time: Some(timestamp(r.update_ms)),
        close_time: r.close_ms.map(timestamp),
    }
}

/// Parsed RFI fields, shared by create and update.
pub(super) struct Fields {
    pub(super) subject: String,
    pub(super) question: String,
    pub(super) question_file_ids: Vec<String>,
    pub(super) manager_id: String,
    pub(super) received_from_id: String,
    pub(super) responsible_contractor: String,
    pub(super) assignee_ids: Vec<String>,
    pub(super) distribution_ids: Vec<String>,
    pub(super) date_initiated: String,
    pub(super) due_date: String,
    pub(super) private: bool,
    pub(super) drawing_revision_ids: Vec<String>,
}

pub(super) fn parse_fields(r: &pb::Rfi) -> Result<Fields, Status> {
    Ok(Fields {
        subject: parse_text("subject", &r.subject, MAX_SUBJECT).and_then(|s| {
            if s.trim().is_empty() {
                Err(invalid_argument("subject", "must not be empty"))
            } else {
                Ok(s)
            }
        })?,
        question: parse_text("question", &r.question, MAX_TEXT)?,
        question_file_ids: domain::parse_ids(FILE, "question_file_ids", &r.question_file_ids)?,
        manager_id: domain::parse_optional_user("manager_id", &r.manager_id)?,
        received_from_id: domain::parse_optional_user("received_from_id", &r.received_from_id)?,
        responsible_contractor: parse_text(
            "responsible_contractor",
            &r.responsible_contractor,
            200,
        )?,
        assignee_ids: domain::parse_ids(USER, "assignee_ids", &r.assignee_ids)?,
        distribution_ids: domain::parse_ids(USER, "distribution_ids", &r.distribution_ids)?,
        date_initiated: domain::parse_date("date_initiated", &r.date_initiated, true)?,
        due_date: domain::parse_date("due_date", &r.due_date, true)?,
        private: r.private,
        drawing_revision_ids: domain::parse_ids(
            REVISION,
            "drawing_revision_ids",
            &r.drawing_revision_ids,
        )?,
    })
}
