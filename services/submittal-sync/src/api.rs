//! The gRPC layer of the Submittals tool: parse, check the caller's SUBMITTALS level
//! (directory over gRPC), apply the rules in `domain`, write through `db` with events in one
//! transaction. Copying downstream happens in `sync`, driven by those events.

use std::{collections::HashMap, pin::Pin, sync::Arc};

use connectability_auth::Caller;
use connectability_blobs::{Blobs, files};
use connectability_events::Envelope;
use connectability_platform::{
    clock::Clock,
    directory::{DirectoryGateway, Tool},
    errors::{
        bad_field, failed_precondition, internal, invalid_argument, not_found, permission_denied,
    },
    input::{Id, parse_name, parse_request_id, parse_text},
    paging::PageRequest,
    time::timestamp,
};
use connectability_proto::{
    directory::v1::{PermissionLevel, ProjectAccess},
    submittals::v1::{self as pb, submittal_service_server::SubmittalService},
};
use connectability_store::{Db, Tx, outbox::RelayWaker, request_ids};
use futures::Stream;
use prost::Message as _;
use tonic::{Request, Response, Status, Streaming};

use connectability_sync::messages::{self, sync_status_pb};

use crate::{
    db::{self, DistributionRow, FileRow, SubmittalRow, SyncRow},
    domain::{
        self, Approver, CONNECTION, DISTRIBUTION, FILE, General, MAX_TEXT, MAX_TITLE, PROJECT,
        SUBMITTAL, SubmittalStatus, USER, reason,
    },
    events, pdf,
};

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[derive(Clone)]
pub struct SubmittalApi {
    db: Db,
    blobs: Blobs,
    relay: RelayWaker,
    directory: DirectoryGateway,
    clock: Arc<dyn Clock>,
    limits: Limits,
}

/// Sizes the service enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest accepted file, in bytes.
    pub max_upload_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_upload_bytes: 64 * 1024 * 1024,
        }
    }
}

fn db_err(e: sqlx::Error) -> Status {
    internal(e)
}

fn user_of(caller: &Caller) -> Result<&str, Status> {
    match caller {
        Caller::User { user_id } => Ok(user_id),
        _ => Err(permission_denied(
            "the Submittals tool is used by project members",
        )),
    }
}

fn response_label(response: i32) -> &'static str {
    match pb::ApproverResponse::try_from(response) {
        Ok(pb::ApproverResponse::Approved) => "Approved",
        Ok(pb::ApproverResponse::ApprovedAsNoted) => "Approved as noted",
        Ok(pb::ApproverResponse::ReviseAndResubmit) => "Revise and resubmit",
        Ok(pb::ApproverResponse::Rejected) => "Rejected",
        _ => "Pending",
    }
}

fn status_label(status: i64) -> &'static str {
    match status {
        1 => "Open",
        2 => "Closed",
        3 => "Reopened",
        _ => "Deleted",
    }
}

fn approver_pb(a: &Approver) -> pb::Approver {
    pb::Approver {
        user_id: a.user_id.clone(),
        response: a.response,
        comment: a.comment.clone(),
        attachment_file_ids: a.attachment_file_ids.clone(),
        respond_time: a.respond_ms.map(timestamp),
    }
}

fn submittal_pb(s: SubmittalRow, linked: Vec<String>) -> pb::Submittal {
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

fn distribution_pb(d: DistributionRow) -> pb::Distribution {
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

fn is_open(s: &SubmittalRow) -> bool {
    s.status == SubmittalStatus::Open as i64 || s.status == SubmittalStatus::Reopened as i64
}

fn must_be_open(s: &SubmittalRow) -> Result<(), Status> {
    if is_open(s) {
        Ok(())
    } else {
        Err(failed_precondition(
            reason::SUBMITTAL_CLOSED,
            format!("submittal #{} is closed; reopen it first", s.number),
        ))
    }
}

fn must_be_own(s: &SubmittalRow) -> Result<(), Status> {
    if s.copy.is_copy() {
        Err(failed_precondition(
            reason::CONNECTED_READ_ONLY,
            format!(
                "submittal #{} is a connected copy and read-only here; it changes only upstream",
                s.number
            ),
        ))
    } else {
        Ok(())
    }
}

fn changed_meanwhile() -> Status {
    Status::aborted("the submittal changed meanwhile; read it again and retry")
}

/// The caller's user id and access in a project.
struct Viewer {
    user: String,
    access: ProjectAccess,
}

impl Viewer {
    /// Admins and the submittal's manager manage it.
    fn manages(&self, s: &SubmittalRow) -> bool {
        domain::is_admin(&self.access) || s.general.manager_id == self.user
    }
}

/// Parsed general information from a request.
fn parse_general(s: &pb::Submittal, prefix: &str) -> Result<General, Status> {
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

impl SubmittalApi {
    pub fn new(
        db: Db,
        blobs: Blobs,
        relay: RelayWaker,
        directory: DirectoryGateway,
        clock: Arc<dyn Clock>,
        limits: Limits,
    ) -> Self {
        Self {
            db,
            blobs,
            relay,
            directory,
            clock,
            limits,
        }
    }

    async fn read(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, Status> {
        self.db.pool().acquire().await.map_err(db_err)
    }

    async fn begin(&self) -> Result<Tx, Status> {
        self.db.begin().await.map_err(db_err)
    }

    /// The caller's access to a project they may see (else NOT_FOUND), with at least
    /// `min` on Submittals (else PERMISSION_DENIED).
    async fn member(
        &self,
        caller: &Caller,
        project_id: &str,
        min: PermissionLevel,
    ) -> Result<Viewer, Status> {
        let user = user_of(caller)?;
        let access = self
            .directory
            .tool_access(user, project_id, Tool::Submittals, min)
            .await?;
        Ok(Viewer {
            user: user.to_string(),
            access,
        })
    }

    async fn viewer(&self, caller: &Caller, project_id: &str) -> Result<Viewer, Status> {
        self.member(caller, project_id, PermissionLevel::ReadOnly)
            .await
    }

    async fn contributor(&self, caller: &Caller, project_id: &str) -> Result<Viewer, Status> {
        self.member(caller, project_id, PermissionLevel::Standard)
            .await
    }

    /// A submittal the caller may see: a live original or any copy. Else NOT_FOUND.
    async fn visible(
        &self,
        conn: &mut sqlx::AnyConnection,
        caller: &Caller,
        id: &Id,
    ) -> Result<(SubmittalRow, Viewer), Status> {
        let missing = || not_found("submittal", id.as_str());
        let s = db::get::<SubmittalRow>(conn, id.as_str())
            .await
            .map_err(db_err)?
            .filter(|s| s.copy.is_copy() || s.deleted_ms.is_none())
            .ok_or_else(missing)?;
        let v = self
            .viewer(caller, &s.project_id)
            .await
            .map_err(|e| match e.code() {
                tonic::Code::PermissionDenied => e,
                _ => missing(),
            })?;
        Ok((s, v))
    }

    /// An original submittal the caller manages.
    async fn managed(
        &self,
        conn: &mut sqlx::AnyConnection,
        caller: &Caller,
        id: &Id,
    ) -> Result<(SubmittalRow, Viewer), Status> {
        let (s, v) = self.visible(conn, caller, id).await?;
        must_be_own(&s)?;
        if !v.manages(&s) {
            return Err(permission_denied(
                "only Submittals admins of this project and the submittal's manager may do this",
            ));
        }
        Ok((s, v))
    }

    async fn submittals_pb(
        &self,
        conn: &mut sqlx::AnyConnection,
        project_id: &str,
        rows: Vec<SubmittalRow>,
    ) -> Result<Vec<pb::Submittal>, Status> {
        let mut links: HashMap<String, Vec<String>> = HashMap::new();
        for (own, copy) in db::links_in_project(conn, project_id)
            .await
            .map_err(db_err)?
        {
            links.entry(own.clone()).or_default().push(copy.clone());
            links.entry(copy).or_default().push(own);
        }
        Ok(rows
            .into_iter()
            .map(|s| {
                let mut linked = links.remove(&s.id).unwrap_or_default();
                linked.sort();
                submittal_pb(s, linked)
            })
            .collect())
    }

    async fn submittal_pb(&self, row: SubmittalRow) -> Result<pb::Submittal, Status> {
        let project = row.project_id.clone();
        Ok(self
            .submittals_pb(&mut *self.read().await?, &project, vec![row])
            .await?
            .pop()
            .unwrap_or_default())
    }

    /// Every named user exists (else INVALID_ARGUMENT naming the request's field; the
    /// approvers' field is `approver_field(i)`, as the request names it); returns the
    /// companies of the S1 participants.
    async fn participant_companies(
        &self,
        g: &General,
        recipients: &[String],
        approver_field: fn(usize) -> String,
    ) -> Result<Vec<String>, Status> {
        let mut fields: Vec<(String, String)> = vec![
            ("manager_id".into(), g.manager_id.clone()),
            ("submitter_id".into(), g.submitter_id.clone()),
        ];
        fields.extend(
            g.approvers
                .iter()
                .enumerate()
                .map(|(i, a)| (approver_field(i), a.user_id.clone())),
        );
        fields.extend(
            g.distribution_ids
                .iter()
                .enumerate()
                .map(|(i, u)| (format!("distribution_ids[{i}]"), u.clone())),
        );
        fields.extend(
            recipients
                .iter()
                .enumerate()
                .map(|(i, u)| (format!("recipient_ids[{i}]"), u.clone())),
        );
        let mut companies = HashMap::new();
        for (field, id) in fields.iter().filter(|(_, id)| !id.is_empty()) {
            let user = self
                .directory
                .user(id)
                .await?
                .ok_or_else(|| invalid_argument(field, format!("no user `{id}`")))?;
            companies.insert(id.clone(), user.company_id);
        }
        let mut out: Vec<String> = g
            .s1_users(recipients)
            .iter()
            .filter_map(|u| companies.get(u).cloned())
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn check_files(
        &self,
        field: &str,
        project_id: &str,
        ids: &[String],
    ) -> Result<(), Status> {
        let found = db::by_ids::<FileRow>(&mut *self.read().await?, ids)
            .await
            .map_err(db_err)?;
        for id in ids {
            if !found
                .iter()
                .any(|f| &f.id == id && f.project_id == project_id)
            {
                return Err(failed_precondition(
                    reason::FILE_NOT_IN_PROJECT,
                    format!("{field}: `{id}` is not a file of this project (upload it first)"),
                ));
            }
        }
        Ok(())
    }

    /// Writes `updated` if the stored version is still `expected_version`, with `events`.
    async fn save(
        &self,
        expected_version: i64,
        updated: SubmittalRow,
        events: Vec<Envelope>,
    ) -> Result<pb::Submittal, Status> {
        let mut tx = self.begin().await?;
        if !db::update_submittal(&mut tx, &updated, expected_version)
            .await
            .map_err(db_err)?
        {
            return Err(changed_meanwhile());
        }
        connectability_store::commit(tx, &events, None, &self.relay)
            .await
            .map_err(db_err)?;
        self.submittal_pb(updated).await
    }

    async fn name(&self, id: &str) -> String {
        if id.is_empty() {
            return String::new();
        }
        match self.directory.user(id).await {
            Ok(Some(u)) => format!("{} ({id})", u.display_name),
            _ => id.to_string(),
        }
    }

    /// Renders the cover sheet of a distribution and stores its bytes; returns its file row
    /// (not yet recorded).
    async fn render_cover(
        &self,
        s: &SubmittalRow,
        d: &DistributionRow,
        company_id: &str,
    ) -> Result<FileRow, Status> {
        let g = &s.general;
        let mut approvers = Vec::new();
        for a in &g.approvers {
            approvers.push((
                self.name(&a.user_id).await,
                response_label(a.response).to_string(),
                a.comment.clone(),
            ));
        }
        let mut recipients = Vec::new();
        for r in &d.recipient_ids {
            recipients.push(self.name(r).await);
        }
        let attached = db::by_ids::<FileRow>(&mut *self.read().await?, &d.attachment_file_ids)
            .await
            .map_err(db_err)?;
        let bytes = pdf::cover_sheet(&pdf::CoverSheet {
            number: s.number,
            revision: s.revision,
            title: g.title.clone(),
            specification_section: g.specification_section.clone(),
            kind: g.kind.clone(),
            status: status_label(s.status).into(),
            description: g.description.clone(),
            manager: self.name(&g.manager_id).await,
            submitter: self.name(&g.submitter_id).await,
            responsible_contractor: g.responsible_contractor.clone(),
            due_date: g.due_date.clone(),
            received_date: g.received_date.clone(),
            approvers,
            distributed_by: self.name(&d.distributed_by).await,
            distributed_at: domain::date_of(d.create_ms),
            recipients,
            message: d.message.clone(),
            attachments: attached.into_iter().map(|f| f.filename).collect(),
        })
        .map_err(internal)?;
        let file = FileRow::new(
            Id::generate(FILE).to_string(),
            &s.project_id,
            company_id,
            format!("Submittal-{}-rev-{}-cover-sheet.pdf", s.number, s.revision),
            "application/pdf".into(),
            &bytes,
            d.create_ms,
        );
        self.blobs
            .put(&file.object_key, bytes.into())
            .await
            .map_err(internal)?;
        Ok(file)
    }

    /// A connection's sync state, for someone with access to its downstream project.
    async fn watched_sync(&self, caller: &Caller, id: &Id) -> Result<SyncRow, Status> {
        let row = connectability_sync::db::get_sync(&mut *self.read().await?, id.as_str())
            .await
            .map_err(db_err)?
            .ok_or_else(|| not_found("connection sync", id.as_str()))?;
        let user = user_of(caller)?;
        let access = self
            .directory
            .project_access(&row.downstream_project_id, user)
            .await?;
        if !access.is_some_and(|a| domain::can_watch_sync(&a)) {
            return Err(not_found("connection sync", id.as_str()));
        }
        Ok(row)
    }
}

#[tonic::async_trait]
impl SubmittalService for SubmittalApi {
    async fn create_submittal(
        &self,
        req: Request<pb::CreateSubmittalRequest>,
    ) -> Result<Response<pb::Submittal>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let project = Id::parse(PROJECT, "project_id", &r.project_id)?;
        let request_id = parse_request_id(&r.request_id)?;
        let mut general = parse_general(
            &pb::Submittal {
                title: r.title,
                specification_section: r.specification_section,
                r#type: r.r#type,
                description: r.description,
                manager_id: r.manager_id,
                submitter_id: r.submitter_id,
                responsible_contractor: r.responsible_contractor,
                approvers: r
                    .approver_ids
                    .into_iter()
                    .map(|user_id| pb::Approver {
                        user_id,
                        ..Default::default()
                    })
                    .collect(),
                distribution_ids: r.distribution_ids,
                due_date: r.due_date,
                received_date: r.received_date,
                ..Default::default()
            },
            "",
        )?;
        let attachments = domain::parse_ids(FILE, "attachment_file_ids", &r.attachment_file_ids)?;
        let v = self.contributor(&caller, project.as_str()).await?;
        if general.manager_id.is_empty() {
            general.manager_id = v.user.clone();
        }
        self.check_files("attachment_file_ids", project.as_str(), &attachments)
            .await?;
        let participant_company_ids = self
            .participant_companies(&general, &[], |i| format!("approver_ids[{i}]"))
            .await?;
        let scope = format!("submittals.CreateSubmittal:{}", v.user);
        let now = self.clock.now_ms();
        let mut row = SubmittalRow {
            id: Id::generate(SUBMITTAL).to_string(),
            project_id: project.to_string(),
            number: 0,
            revision: 0,
            status: SubmittalStatus::Open as i64,
            general,
            attachment_file_ids: attachments,
            cover_file_id: String::new(),
            participant_company_ids,
            distributed_revision: -1,
            version: 1,
            deleted_ms: None,
            copy: Default::default(),
            origin_version: 0,
            outdated: false,
            disconnected: false,
            create_ms: now,
            update_ms: now,
        };
        // The number comes from the project's counter, in this transaction: concurrent
        // creates queue on its row and each gets the next number.
        let mut tx = self.begin().await?;
        if let Some(rid) = &request_id
            && let Some(prev) = request_ids::find(&mut tx, &scope, rid)
                .await
                .map_err(db_err)?
        {
            return Ok(Response::new(
                pb::Submittal::decode(prev.as_slice()).map_err(internal)?,
            ));
        }
        row.number = db::next_number(&mut tx, project.as_str())
            .await
            .map_err(db_err)?;
        db::insert(&mut tx, std::slice::from_ref(&row))
            .await
            .map_err(db_err)?;
        let out = submittal_pb(row.clone(), Vec::new());
        let request = request_id
            .as_deref()
            .map(|rid| (scope.as_str(), rid, out.encode_to_vec()));
        if !connectability_store::commit(tx, &[], request, &self.relay)
            .await
            .map_err(db_err)?
        {
            return Err(Status::aborted(
                "a concurrent call with the same request_id won; retry to get its result",
            ));
        }
        Ok(Response::new(out))
    }

    async fn get_submittal(
        &self,
        req: Request<pb::GetSubmittalRequest>,
    ) -> Result<Response<pb::Submittal>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let id = Id::parse(SUBMITTAL, "id", &req.get_ref().id)?;
        let (s, _) = self.visible(&mut *self.read().await?, &caller, &id).await?;
        Ok(Response::new(self.submittal_pb(s).await?))
    }

    async fn list_submittals(
        &self,
        req: Request<pb::ListSubmittalsRequest>,
    ) -> Result<Response<pb::ListSubmittalsResponse>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let project = Id::parse(PROJECT, "project_id", &r.project_id)?;
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        let mut statuses = Vec::new();
        for (i, s) in r.statuses.iter().enumerate() {
            match pb::SubmittalStatus::try_from(*s) {
                Ok(pb::SubmittalStatus::Unspecified) | Err(_) => {
                    return Err(invalid_argument(
                        &format!("statuses[{i}]"),
                        format!("`{s}` is not a submittal status"),
                    ));
                }
                Ok(s) => statuses.push(s as i64),
            }
        }
        self.viewer(&caller, project.as_str()).await?;
        let mut conn = self.read().await?;
        let mut rows = db::list_submittals(
            &mut conn,
            project.as_str(),
            &statuses,
            &page.after,
            page.fetch_limit(),
        )
        .await
        .map_err(db_err)?;
        let next_page_token = page.finish(&mut rows, |s| &s.id);
        let submittals = self
            .submittals_pb(&mut conn, project.as_str(), rows)
            .await?;
        Ok(Response::new(pb::ListSubmittalsResponse {
            submittals,
            next_page_token,
        }))
    }

    async fn update_submittal(
        &self,
        req: Request<pb::UpdateSubmittalRequest>,
    ) -> Result<Response<pb::Submittal>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let patch = r.submittal.unwrap_or_default();
        let id = Id::parse(SUBMITTAL, "submittal.id", &patch.id)?;
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        if paths.is_empty() {
            return Err(invalid_argument("update_mask", "name at least one field"));
        }
        let (current, _) = self.managed(&mut *self.read().await?, &caller, &id).await?;
        must_be_open(&current)?;
        let mut merged = submittal_pb(current.clone(), Vec::new());
        for path in &paths {
            match path.as_str() {
                "title" => merged.title = patch.title.clone(),
                "specification_section" => {
                    merged.specification_section = patch.specification_section.clone()
                }
                "type" => merged.r#type = patch.r#type.clone(),
                "description" => merged.description = patch.description.clone(),
                "manager_id" => merged.manager_id = patch.manager_id.clone(),
                "submitter_id" => merged.submitter_id = patch.submitter_id.clone(),
                "responsible_contractor" => {
                    merged.responsible_contractor = patch.responsible_contractor.clone()
                }
                "approvers" => merged.approvers = patch.approvers.clone(),
                "distribution_ids" => merged.distribution_ids = patch.distribution_ids.clone(),
                "due_date" => merged.due_date = patch.due_date.clone(),
                "received_date" => merged.received_date = patch.received_date.clone(),
                other => {
                    return Err(invalid_argument(
                        "update_mask",
                        format!("`{other}` cannot be updated"),
                    ));
                }
            }
        }
        if merged.manager_id.is_empty() {
            return Err(invalid_argument(
                "submittal.manager_id",
                "a submittal needs a manager",
            ));
        }
        let mut general = parse_general(&merged, "submittal.")?;
        // Approvers who stay keep their answers.
        for a in &mut general.approvers {
            if let Some(old) = current
                .general
                .approvers
                .iter()
                .find(|o| o.user_id == a.user_id)
            {
                *a = old.clone();
            }
        }
        let dists = db::distributions_of(&mut *self.read().await?, &current.id)
            .await
            .map_err(db_err)?;
        let recipients: Vec<String> = dists.into_iter().flat_map(|d| d.recipient_ids).collect();
        let participant_company_ids = self
            .participant_companies(&general, &recipients, |i| format!("approvers[{i}].user_id"))
            .await
            .map_err(|e| {
                let field = bad_field(&e).unwrap_or_default();
                if field.is_empty() {
                    e
                } else {
                    invalid_argument(&format!("submittal.{field}"), e.message())
                }
            })?;
        let updated = SubmittalRow {
            general,
            participant_company_ids,
            version: current.version + 1,
            update_ms: self.clock.now_ms(),
            ..current.clone()
        };
        Ok(Response::new(
            self.save(current.version, updated, Vec::new()).await?,
        ))
    }

    async fn create_submittal_revision(
        &self,
        req: Request<pb::CreateSubmittalRevisionRequest>,
    ) -> Result<Response<pb::Submittal>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let id = Id::parse(SUBMITTAL, "submittal_id", &r.submittal_id)?;
        let attachments = domain::parse_ids(FILE, "attachment_file_ids", &r.attachment_file_ids)?;
        let (current, v) = self.managed(&mut *self.read().await?, &caller, &id).await?;
        must_be_open(&current)?;
        self.check_files("attachment_file_ids", &current.project_id, &attachments)
            .await?;
        let mut general = current.general.clone();
        for a in &mut general.approvers {
            *a = Approver {
                user_id: a.user_id.clone(),
                ..Default::default()
            };
        }
        let updated = SubmittalRow {
            revision: current.revision + 1,
            general,
            attachment_file_ids: attachments,
            version: current.version + 1,
            update_ms: self.clock.now_ms(),
            ..current.clone()
        };
        let event = events::revised(&updated, &v.user);
        Ok(Response::new(
            self.save(current.version, updated, vec![event]).await?,
        ))
    }

    async fn add_approver_response(
        &self,
        req: Request<pb::AddApproverResponseRequest>,
    ) -> Result<Response<pb::Submittal>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let id = Id::parse(SUBMITTAL, "submittal_id", &r.submittal_id)?;
        let response = match pb::ApproverResponse::try_from(r.response) {
            Ok(pb::ApproverResponse::Unspecified) | Err(_) => {
                return Err(invalid_argument("response", "say how you answer"));
            }
            Ok(x) => x as i32,
        };
        let comment = parse_text("comment", &r.comment, MAX_TEXT)?;
        let attachments = domain::parse_ids(FILE, "attachment_file_ids", &r.attachment_file_ids)?;
        let (current, v) = self.visible(&mut *self.read().await?, &caller, &id).await?;
        must_be_own(&current)?;
        must_be_open(&current)?;
        if !current
            .general
            .approvers
            .iter()
            .any(|a| a.user_id == v.user)
        {
            return Err(failed_precondition(
                reason::NOT_AN_APPROVER,
                "you are not an approver of this submittal",
            ));
        }
        if current.general.next_approver().map(|a| a.user_id.as_str()) != Some(v.user.as_str()) {
            return Err(failed_precondition(
                reason::NOT_YOUR_TURN,
                "approvers answer in order; it is not your turn",
            ));
        }
        self.check_files("attachment_file_ids", &current.project_id, &attachments)
            .await?;
        let now = self.clock.now_ms();
        let mut general = current.general.clone();
        if let Some(a) = general.approvers.iter_mut().find(|a| a.user_id == v.user) {
            a.response = response;
            a.comment = comment;
            a.attachment_file_ids = attachments;
            a.respond_ms = Some(now);
        }
        let updated = SubmittalRow {
            general,
            version: current.version + 1,
            update_ms: now,
            ..current.clone()
        };
        Ok(Response::new(
            self.save(current.version, updated, Vec::new()).await?,
        ))
    }

    async fn distribute_submittal(
        &self,
        req: Request<pb::DistributeSubmittalRequest>,
    ) -> Result<Response<pb::Distribution>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let id = Id::parse(SUBMITTAL, "submittal_id", &r.submittal_id)?;
        let mut recipients = domain::parse_ids(USER, "recipient_ids", &r.recipient_ids)?;
        let message = parse_text("message", &r.message, MAX_TEXT)?;
        let selected = domain::parse_ids(FILE, "attachment_file_ids", &r.attachment_file_ids)?;
        let (current, v) = self.managed(&mut *self.read().await?, &caller, &id).await?;
        if current.status == SubmittalStatus::Deleted as i64 {
            return Err(not_found("submittal", id.as_str()));
        }
        if recipients.is_empty() {
            recipients = current.general.distribution_ids.clone();
        }
        // Only the revision's or the approvers' attachments may be selected (S4).
        let mut offered = current.attachment_file_ids.clone();
        for a in &current.general.approvers {
            offered.extend(a.attachment_file_ids.iter().cloned());
        }
        if let Some(x) = selected.iter().find(|f| !offered.contains(f)) {
            return Err(failed_precondition(
                reason::ATTACHMENT_NOT_IN_SUBMITTAL,
                format!(
                    "attachment_file_ids: `{x}` is not an attachment of this revision or of its responses"
                ),
            ));
        }
        let dists = db::distributions_of(&mut *self.read().await?, &current.id)
            .await
            .map_err(db_err)?;
        let mut all_recipients: Vec<String> =
            dists.into_iter().flat_map(|d| d.recipient_ids).collect();
        all_recipients.extend(recipients.iter().cloned());
        let participant_company_ids = self
            .participant_companies(&current.general, &all_recipients, |i| {
                // Stored approvers, checked when they were set.
                format!("approvers[{i}].user_id")
            })
            .await?;
        let now = self.clock.now_ms();
        let mut distribution = DistributionRow {
            id: Id::generate(DISTRIBUTION).to_string(),
            submittal_id: current.id.clone(),
            project_id: current.project_id.clone(),
            revision: current.revision,
            distributed_by: v.user.clone(),
            recipient_ids: recipients,
            message,
            responses: domain::responses_summary(&current.general.approvers, response_label),
            attachment_file_ids: selected,
            cover_file_id: String::new(),
            general: current.general.clone(),
            copy: Default::default(),
            create_ms: now,
        };
        let cover = self
            .render_cover(&current, &distribution, &v.access.project_company_id)
            .await?;
        distribution.cover_file_id = cover.id.clone();
        let updated = SubmittalRow {
            cover_file_id: cover.id.clone(),
            distributed_revision: current.revision,
            participant_company_ids,
            version: current.version + 1,
            update_ms: now,
            ..current.clone()
        };
        let saved = async {
            let mut tx = self.begin().await?;
            db::insert(&mut tx, std::slice::from_ref(&cover))
                .await
                .map_err(db_err)?;
            db::insert(&mut tx, std::slice::from_ref(&distribution))
                .await
                .map_err(db_err)?;
            if !db::update_submittal(&mut tx, &updated, current.version)
                .await
                .map_err(db_err)?
            {
                return Err(changed_meanwhile());
            }
            let event = events::distributed(&updated, &distribution.id, &v.user);
            connectability_store::commit(tx, &[event], None, &self.relay)
                .await
                .map_err(db_err)
        }
        .await;
        if let Err(e) = saved {
            // Nothing half-stored: the rendered cover sheet goes if the distribution did not.
            let _ = self.blobs.delete(&cover.object_key).await;
            return Err(e);
        }
        Ok(Response::new(distribution_pb(distribution)))
    }

    async fn list_distributions(
        &self,
        req: Request<pb::ListDistributionsRequest>,
    ) -> Result<Response<pb::ListDistributionsResponse>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let id = Id::parse(SUBMITTAL, "submittal_id", &req.get_ref().submittal_id)?;
        let mut conn = self.read().await?;
        let (s, _) = self.visible(&mut conn, &caller, &id).await?;
        let distributions = db::distributions_of(&mut conn, &s.id)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(distribution_pb)
            .collect();
        Ok(Response::new(pb::ListDistributionsResponse {
            distributions,
        }))
    }

    async fn close_submittal(
        &self,
        req: Request<pb::CloseSubmittalRequest>,
    ) -> Result<Response<pb::Submittal>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let id = Id::parse(SUBMITTAL, "id", &req.get_ref().id)?;
        let (current, v) = self.managed(&mut *self.read().await?, &caller, &id).await?;
        must_be_open(&current)?;
        let updated = SubmittalRow {
            status: SubmittalStatus::Closed as i64,
            version: current.version + 1,
            update_ms: self.clock.now_ms(),
            ..current.clone()
        };
        let event = events::status_changed(&updated, &v.user);
        Ok(Response::new(
            self.save(current.version, updated, vec![event]).await?,
        ))
    }

    async fn reopen_submittal(
        &self,
        req: Request<pb::ReopenSubmittalRequest>,
    ) -> Result<Response<pb::Submittal>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let id = Id::parse(SUBMITTAL, "id", &req.get_ref().id)?;
        let (current, v) = self.managed(&mut *self.read().await?, &caller, &id).await?;
        if current.status != SubmittalStatus::Closed as i64 {
            return Err(failed_precondition(
                reason::SUBMITTAL_NOT_CLOSED,
                format!("submittal #{} is not closed", current.number),
            ));
        }
        let updated = SubmittalRow {
            status: SubmittalStatus::Reopened as i64,
            version: current.version + 1,
            update_ms: self.clock.now_ms(),
            ..current.clone()
        };
        let event = events::status_changed(&updated, &v.user);
        Ok(Response::new(
            self.save(current.version, updated, vec![event]).await?,
        ))
    }

    async fn delete_submittal(
        &self,
        req: Request<pb::DeleteSubmittalRequest>,
    ) -> Result<Response<()>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let id = Id::parse(SUBMITTAL, "id", &req.get_ref().id)?;
        let (current, v) = self.managed(&mut *self.read().await?, &caller, &id).await?;
        let now = self.clock.now_ms();
        let updated = SubmittalRow {
            status: SubmittalStatus::Deleted as i64,
            deleted_ms: Some(now),
            version: current.version + 1,
            update_ms: now,
            ..current.clone()
        };
        let event = events::status_changed(&updated, &v.user);
        self.save(current.version, updated, vec![event]).await?;
        Ok(Response::new(()))
    }

    async fn upload_file(
        &self,
        req: Request<Streaming<pb::UploadFileRequest>>,
    ) -> Result<Response<pb::File>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let mut stream = req.into_inner();
        let header = files::upload_header(&mut stream, messages::upload_part).await?;
        let project = Id::parse(PROJECT, "header.project_id", &header.project_id)?;
        let filename = parse_name("header.filename", &header.filename)?;
        let content_type = domain::parse_content_type("header.content_type", &header.content_type)?;
        // Approvers with READ_ONLY attach files to their answers, so viewers may upload.
        let v = self.viewer(&caller, project.as_str()).await?;
        let file = files::NewFile {
            id: Id::generate(FILE).to_string(),
            project_id: project.to_string(),
            company_id: v.access.project_company_id.clone(),
            filename,
            content_type,
            now_ms: self.clock.now_ms(),
        };
        let file = files::upload(
            &self.blobs,
            self.db.pool(),
            stream,
            messages::upload_part,
            file,
            self.limits.max_upload_bytes,
            None,
        )
        .await?;
        Ok(Response::new(messages::file_pb(file)))
    }

    type DownloadFileStream = Stream_<pb::DownloadFileResponse>;

    async fn download_file(
        &self,
        req: Request<pb::DownloadFileRequest>,
    ) -> Result<Response<Self::DownloadFileStream>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let id = Id::parse(FILE, "id", &req.get_ref().id)?;
        let file = db::get::<FileRow>(&mut *self.read().await?, id.as_str())
            .await
            .map_err(db_err)?
            .ok_or_else(|| not_found("file", id.as_str()))?;
        self.viewer(&caller, &file.project_id)
            .await
            .map_err(|_| not_found("file", id.as_str()))?;
        Ok(Response::new(messages::download(&self.blobs, file).await?))
    }

    async fn link_submittal(
        &self,
        req: Request<pb::LinkSubmittalRequest>,
    ) -> Result<Response<pb::Submittal>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let id = Id::parse(SUBMITTAL, "submittal_id", &r.submittal_id)?;
        let copy_id = Id::parse(
            SUBMITTAL,
            "connected_submittal_id",
            &r.connected_submittal_id,
        )?;
        let mut conn = self.read().await?;
        let (own, v) = self.visible(&mut conn, &caller, &id).await?;
        must_be_own(&own)?;
        if !domain::can_contribute(&v.access) {
            return Err(permission_denied(
                "you need at least STANDARD on Submittals in this project",
            ));
        }
        let (copy, _) = self.visible(&mut conn, &caller, &copy_id).await?;
        if !copy.copy.is_copy() || copy.project_id != own.project_id {
            return Err(failed_precondition(
                reason::NOT_A_CONNECTED_SUBMITTAL,
                format!(
                    "`{}` is not a connected submittal of this project",
                    copy_id.as_str()
                ),
            ));
        }
        db::link(
            &mut conn,
            &own.id,
            &copy.id,
            &own.project_id,
            &v.user,
            self.clock.now_ms(),
        )
        .await
        .map_err(db_err)?;
        drop(conn);
        Ok(Response::new(self.submittal_pb(own).await?))
    }

    async fn get_sync_status(
        &self,
        req: Request<pb::GetSyncStatusRequest>,
    ) -> Result<Response<pb::SyncStatus>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let id = Id::parse(CONNECTION, "connection_id", &req.get_ref().connection_id)?;
        let row = self.watched_sync(&caller, &id).await?;
        Ok(Response::new(sync_status_pb(row, self.clock.now_ms())))
    }

    type WatchSyncStatusStream = Stream_<pb::SyncStatus>;

    async fn watch_sync_status(
        &self,
        req: Request<pb::WatchSyncStatusRequest>,
    ) -> Result<Response<Self::WatchSyncStatusStream>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let id = Id::parse(CONNECTION, "connection_id", &req.get_ref().connection_id)?;
        let first = connectability_sync::status::first(|| self.watched_sync(&caller, &id)).await?;
        let watcher = connectability_sync::status::Watcher {
            user: user_of(&caller)?.to_string(),
            directory: self.directory.clone(),
            may_watch: domain::can_watch_sync,
        };
        Ok(Response::new(messages::watch(
            self.db.clone(),
            self.clock.clone(),
            first,
            watcher,
        )?))
    }
}
