//! The use cases behind the handlers: authorization against the directory, the reads
//! they need and the transactions that change state.

use super::*;
use connectability_platform::requests::{self, EmptyMask};

impl SubmittalApi {
    pub fn new(base: &Foundation, relay: RelayWaker, limits: Limits) -> Self {
        let upload = UploadRules::any(FILE, limits.max_upload_bytes);
        Self {
            core: ToolApi::new(Tool::Submittals, base, relay, upload),
        }
    }

    /// A submittal the caller may see: a live original or any copy. Else NOT_FOUND.
    pub(super) async fn visible(
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
            .core
            .viewer_of_record(caller, &s.project_id, missing)
            .await?;
        Ok((s, v))
    }

    /// An original submittal the caller manages.
    pub(super) async fn managed(
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

    pub(super) async fn submittals_pb(
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

    pub(super) async fn submittal_pb(&self, row: SubmittalRow) -> Result<pb::Submittal, Status> {
        let project = row.project_id.clone();
        Ok(self
            .submittals_pb(&mut *self.core.read().await?, &project, vec![row])
            .await?
            .pop()
            .unwrap_or_default())
    }

    /// Every named user exists (else INVALID_ARGUMENT naming the request's field; the
    /// approvers' field is `approver_field(i)`, as the request names it); returns the
    /// companies of the S1 participants.
    pub(super) async fn participant_companies(
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
                .core
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

    pub(super) async fn check_files(
        &self,
        field: &str,
        project_id: &str,
        ids: &[String],
    ) -> Result<(), Status> {
        let found = db::by_ids::<FileRow>(&mut *self.core.read().await?, ids)
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
    pub(super) async fn save(
        &self,
        expected_version: i64,
        updated: SubmittalRow,
        events: Vec<Envelope>,
    ) -> Result<pb::Submittal, Status> {
        let mut tx = self.core.begin().await?;
        if !db::update_submittal(&mut tx, &updated, expected_version)
            .await
            .map_err(db_err)?
        {
            return Err(changed_meanwhile());
        }
        connectability_store::commit(tx, &events, None, &self.core.relay)
            .await
            .map_err(db_err)?;
        self.submittal_pb(updated).await
    }

    pub(super) async fn name(&self, id: &str) -> String {
        if id.is_empty() {
            return String::new();
        }
        match self.core.directory.user(id).await {
            Ok(Some(u)) => format!("{} ({id})", u.display_name),
            _ => id.to_string(),
        }
    }

    /// Renders the cover sheet of a distribution and stores its bytes; returns its file row
    /// (not yet recorded).
    pub(super) async fn render_cover(
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
        let attached = db::by_ids::<FileRow>(&mut *self.core.read().await?, &d.attachment_file_ids)
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
        self.core
            .blobs
            .put(&file.object_key, bytes.into())
            .await
            .map_err(internal)?;
        Ok(file)
    }
}

impl SubmittalApi {
    /// Distributes the current revision (S2-S4): renders the cover sheet, records who, to whom
    /// and which attachments.
    pub(super) async fn distribute(
        &self,
        caller: &Caller,
        r: pb::DistributeSubmittalRequest,
    ) -> Result<pb::Distribution, Status> {
        let id = Id::parse(SUBMITTAL, "submittal_id", &r.submittal_id)?;
        let mut recipients = domain::parse_ids(USER, "recipient_ids", &r.recipient_ids)?;
        let message = parse_text("message", &r.message, MAX_TEXT)?;
        let selected = domain::parse_ids(FILE, "attachment_file_ids", &r.attachment_file_ids)?;
        let (current, v) = self
            .managed(&mut *self.core.read().await?, caller, &id)
            .await?;
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
        let dists = db::distributions_of(&mut *self.core.read().await?, &current.id)
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
        let now = self.core.clock.now_ms();
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
            let mut tx = self.core.begin().await?;
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
            connectability_store::commit(tx, &[event], None, &self.core.relay)
                .await
                .map_err(db_err)
        }
        .await;
        if let Err(e) = saved {
            // Nothing half-stored: the rendered cover sheet goes if the distribution did not.
            let _ = self.core.blobs.delete(&cover.object_key).await;
            return Err(e);
        }
        Ok(distribution_pb(distribution))
    }
}

impl SubmittalApi {
    /// Creates a submittal (numbered from the project's counter), once per request id.
    pub(super) async fn create(
        &self,
        caller: &Caller,
        r: pb::CreateSubmittalRequest,
    ) -> Result<pb::Submittal, Status> {
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
        let v = self.core.contributor(caller, project.as_str()).await?;
        if general.manager_id.is_empty() {
            general.manager_id = v.user.clone();
        }
        self.check_files("attachment_file_ids", project.as_str(), &attachments)
            .await?;
        let participant_company_ids = self
            .participant_companies(&general, &[], |i| format!("approver_ids[{i}]"))
            .await?;
        let scope = format!("submittals.CreateSubmittal:{}", v.user);
        let now = self.core.clock.now_ms();
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
        let mut tx = self.core.begin().await?;
        if let Some(earlier) = requests::earlier(&mut tx, &scope, request_id.as_deref()).await? {
            return Ok(earlier);
        }
        row.number = db::next_number(&mut tx, project.as_str())
            .await
            .map_err(db_err)?;
        db::insert(&mut tx, std::slice::from_ref(&row))
            .await
            .map_err(db_err)?;
        let out = submittal_pb(row.clone(), Vec::new());
        requests::commit_once(
            tx,
            &[],
            &scope,
            request_id.as_deref(),
            &out,
            &self.core.relay,
        )
        .await?;
        Ok(out)
    }
}

impl SubmittalApi {
    /// Replaces the fields the update mask names, if the submittal is still the version read.
    pub(super) async fn update(
        &self,
        caller: &Caller,
        r: pb::UpdateSubmittalRequest,
    ) -> Result<pb::Submittal, Status> {
        let patch = r.submittal.unwrap_or_default();
        let id = Id::parse(SUBMITTAL, "submittal.id", &patch.id)?;
        let updatable = [
            "title",
            "specification_section",
            "type",
            "description",
            "manager_id",
            "submitter_id",
            "responsible_contractor",
            "approvers",
            "distribution_ids",
            "due_date",
            "received_date",
        ];
        let paths = requests::field_mask(r.update_mask, &updatable, EmptyMask::Refused)?;
        let (current, _) = self
            .managed(&mut *self.core.read().await?, caller, &id)
            .await?;
        must_be_open(&current)?;
        let mut merged = submittal_pb(current.clone(), Vec::new());
        for path in paths {
            match path {
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
                // field_mask admits only the names above.
                _ => {}
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
        let dists = db::distributions_of(&mut *self.core.read().await?, &current.id)
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
            update_ms: self.core.clock.now_ms(),
            ..current.clone()
        };
        self.save(current.version, updated, Vec::new()).await
    }
}

impl SubmittalApi {
    /// Records an approver's answer, in approver order.
    pub(super) async fn answer(
        &self,
        caller: &Caller,
        r: pb::AddApproverResponseRequest,
    ) -> Result<pb::Submittal, Status> {
        let id = Id::parse(SUBMITTAL, "submittal_id", &r.submittal_id)?;
        let response = match pb::ApproverResponse::try_from(r.response) {
            Ok(pb::ApproverResponse::Unspecified) | Err(_) => {
                return Err(invalid_argument("response", "say how you answer"));
            }
            Ok(x) => x as i32,
        };
        let comment = parse_text("comment", &r.comment, MAX_TEXT)?;
        let attachments = domain::parse_ids(FILE, "attachment_file_ids", &r.attachment_file_ids)?;
        let (current, v) = self
            .visible(&mut *self.core.read().await?, caller, &id)
            .await?;
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
        let now = self.core.clock.now_ms();
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
        self.save(current.version, updated, Vec::new()).await
    }
}
