//! The use cases behind the handlers: authorization against the directory, the reads
//! they need and the transactions that change state.

use super::*;
use connectability_platform::requests::{self, EmptyMask};

impl RfiApi {
    pub fn new(
        base: &Foundation,
        relay: RelayWaker,
        drawings: DrawingsGateway,
        limits: Limits,
    ) -> Self {
        let upload = UploadRules::any(FILE, limits.max_upload_bytes);
        Self {
            core: ToolApi::new(Tool::Rfis, base, relay, upload),
            drawings,
        }
    }

    /// An RFI the caller may see: a live original or any copy, public or naming the caller
    /// (RFIS admins see every private RFI). Anything else is NOT_FOUND.
    pub(super) async fn visible(
        &self,
        conn: &mut sqlx::AnyConnection,
        caller: &Caller,
        id: &Id,
    ) -> Result<(RfiRow, Viewer), Status> {
        let missing = || not_found("RFI", id.as_str());
        let r = db::get::<RfiRow>(conn, id.as_str())
            .await
            .map_err(db_err)?
            .filter(|r| r.copy.is_copy() || r.deleted_ms.is_none())
            .ok_or_else(missing)?;
        let v = self
            .core
            .viewer_of_record(caller, &r.project_id, missing)
            .await?;
        if !v.sees(&r) {
            return Err(missing());
        }
        Ok((r, v))
    }

    /// An original RFI the caller manages.
    pub(super) async fn managed(
        &self,
        conn: &mut sqlx::AnyConnection,
        caller: &Caller,
        id: &Id,
    ) -> Result<(RfiRow, Viewer), Status> {
        let (r, v) = self.visible(conn, caller, id).await?;
        must_be_own(&r)?;
        if !v.manages(&r) {
            return Err(permission_denied(
                "only RFI admins of this project and the RFI's manager may do this",
            ));
        }
        Ok((r, v))
    }

    /// The messages for `rows` as `v` sees them: responses (only official ones for
    /// non-managers when the project says so) and links.
    pub(super) async fn rfis_pb(
        &self,
        conn: &mut sqlx::AnyConnection,
        v: &Viewer,
        project_id: &str,
        rows: Vec<RfiRow>,
    ) -> Result<Vec<pb::Rfi>, Status> {
        let official_only = db::official_only(conn, project_id).await.map_err(db_err)?;
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        let mut responses: HashMap<String, Vec<ResponseRow>> = HashMap::new();
        for r in db::responses_of(conn, &ids).await.map_err(db_err)? {
            responses.entry(r.rfi_id.clone()).or_default().push(r);
        }
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
            .map(|r| {
                let mut rs = responses.remove(&r.id).unwrap_or_default();
                if official_only && !v.manages(&r) {
                    rs.retain(|x| x.official);
                }
                let mut linked = links.remove(&r.id).unwrap_or_default();
                linked.sort();
                rfi_pb(r, rs, linked)
            })
            .collect())
    }

    pub(super) async fn rfi_pb(
        &self,
        conn: &mut sqlx::AnyConnection,
        v: &Viewer,
        row: RfiRow,
    ) -> Result<pb::Rfi, Status> {
        let project = row.project_id.clone();
        Ok(self
            .rfis_pb(conn, v, &project, vec![row])
            .await?
            .pop()
            .unwrap_or_default())
    }

    /// Every named user exists; returns the companies of the R2 participants.
    pub(super) async fn participant_companies(
        &self,
        fields: &[(&str, &str)],
        p: &Participants,
    ) -> Result<Vec<String>, Status> {
        let mut companies = HashMap::new();
        for (field, id) in fields {
            if id.is_empty() {
                continue;
            }
            let user = self
                .core
                .directory
                .user(id)
                .await?
                .ok_or_else(|| invalid_argument(field, format!("no user `{id}`")))?;
            companies.insert(id.to_string(), user.company_id);
        }
        let mut out: Vec<String> = p
            .r2_users()
            .iter()
            .filter_map(|u| companies.get(u).cloned())
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Each file is one of the project's.
    pub(super) async fn check_files(
        &self,
        conn: &mut sqlx::AnyConnection,
        field: &str,
        project_id: &str,
        ids: &[String],
    ) -> Result<(), Status> {
        let found = db::by_ids::<FileRow>(conn, ids).await.map_err(db_err)?;
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

    /// Commits the change with its events and wakes the relay.
    pub(super) async fn commit(&self, tx: Tx, events: &[Envelope]) -> Result<(), Status> {
        connectability_store::commit(tx, events, None, &self.core.relay)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    /// Renders the cover sheet and the linked drawings PDF of `r` as it closes, stores the
    /// bytes and returns the two file rows (not yet recorded).
    /// The linked revisions are read as `closer`, who publishes them to the RFI's readers.
    pub(super) async fn render_close(
        &self,
        r: &RfiRow,
        closer: &str,
        now: i64,
    ) -> Result<Vec<FileRow>, Status> {
        let mut conn = self.core.read().await?;
        let official_only = db::official_only(&mut conn, &r.project_id)
            .await
            .map_err(db_err)?;
        let responses = db::responses_of(&mut conn, std::slice::from_ref(&r.id))
            .await
            .map_err(db_err)?;
        drop(conn);
        let name = |id: String| async move {
            if id.is_empty() {
                return String::new();
            }
            match self.core.directory.user(&id).await {
                Ok(Some(u)) => format!("{} ({id})", u.display_name),
                _ => id,
            }
        };
        let names = |ids: Vec<String>| async move {
            let mut out = Vec::new();
            for id in ids {
                out.push(name(id).await);
            }
            out
        };
        let mut shown = Vec::new();
        for x in responses.iter().filter(|x| x.official || !official_only) {
            shown.push((name(x.author_id.clone()).await, x.official, x.body.clone()));
        }
        let cover = pdf::CoverSheet {
            number: r.number,
            subject: r.subject.clone(),
            private: r.private,
            manager: name(r.manager_id.clone()).await,
            received_from: name(r.received_from_id.clone()).await,
            responsible_contractor: r.responsible_contractor.clone(),
            assignees: names(r.assignee_ids.clone()).await,
            distribution: names(r.distribution_ids.clone()).await,
            creator: name(r.creator_id.clone()).await,
            date_initiated: r.date_initiated.clone(),
            due_date: r.due_date.clone(),
            drawing_revision_ids: r.drawing_revision_ids.clone(),
            question: r.question.clone(),
            responses: shown,
            official_only,
        };

        let (mut listed, mut parts) = (Vec::new(), Vec::new());
        let mut budget = domain::MAX_LINKED_DRAWINGS_BYTES;
        for rev in &r.drawing_revision_ids {
            let Some((file, bytes)) = self
                .drawings
                .revision_file(&r.project_id, rev, closer, budget)
                .await?
            else {
                return Err(linked_drawing_not_found(rev));
            };
            budget -= bytes.len();
            listed.push(format!(
                "{rev}: {} ({} bytes, sha256 {})",
                file.filename, file.size_bytes, file.sha256
            ));
            parts.push(bytes);
        }
        // Tenant PDFs are parsed off the async runtime, a few at a time, under a deadline.
        let (number, subject) = (r.number, r.subject.clone());
        let (cover, drawings) = connectability_pdf::run_bounded(domain::PDF_DEADLINE, move || {
            Ok((
                pdf::cover_sheet(&cover)?,
                pdf::linked_drawings(number, &subject, &listed, &parts)?,
            ))
        })
        .await
        .map_err(|e| match e {
            connectability_pdf::BoundedError::Deadline(d) => Status::resource_exhausted(format!(
                "the RFI's PDFs could not be written within {} s; try again later",
                d.as_secs()
            )),
            connectability_pdf::BoundedError::Failed(e) => internal(e),
        })?;

        let mut out = Vec::new();
        for (label, bytes) in [("cover-sheet", cover), ("linked-drawings", drawings)] {
            let file = FileRow::new(
                Id::generate(FILE).to_string(),
                &r.project_id,
                &self.company_of_project(&r.project_id).await?,
                format!("RFI-{}-{label}.pdf", r.number),
                "application/pdf".into(),
                &bytes,
                now,
            );
            self.core
                .blobs
                .put(&file.object_key, bytes.into())
                .await
                .map_err(internal)?;
            out.push(file);
        }
        Ok(out)
    }

    pub(super) async fn company_of_project(&self, project_id: &str) -> Result<String, Status> {
        Ok(self
            .core
            .directory
            .project(project_id)
            .await?
            .map(|p| p.company_id)
            .unwrap_or_default())
    }

    /// Adds a response to `rfi` if it is unchanged; answers the new state.
    pub(super) async fn add_response(
        &self,
        v: &Viewer,
        rfi: &RfiRow,
        response: ResponseRow,
    ) -> Result<pb::Rfi, Status> {
        let mut tx = self.core.begin().await?;
        db::insert(&mut tx, std::slice::from_ref(&response))
            .await
            .map_err(db_err)?;
        let updated = RfiRow {
            version: rfi.version + 1,
            update_ms: response.create_ms,
            ..rfi.clone()
        };
        if !db::update_rfi(&mut tx, &updated, rfi.version)
            .await
            .map_err(db_err)?
        {
            return Err(changed_meanwhile());
        }
        self.commit(tx, &[]).await?;
        self.rfi_pb(&mut *self.core.read().await?, v, updated).await
    }

    /// Writes `updated` if `r` is unchanged, with `events`; answers the new state.
    pub(super) async fn save(
        &self,
        v: &Viewer,
        expected_version: i64,
        updated: RfiRow,
        events: Vec<Envelope>,
    ) -> Result<pb::Rfi, Status> {
        let mut tx = self.core.begin().await?;
        if !db::update_rfi(&mut tx, &updated, expected_version)
            .await
            .map_err(db_err)?
        {
            return Err(changed_meanwhile());
        }
        self.commit(tx, &events).await?;
        self.rfi_pb(&mut *self.core.read().await?, v, updated).await
    }
}

impl RfiApi {
    /// Checks users and files and fills `row` with the parsed fields.
    pub(super) async fn apply_fields(
        &self,
        conn: &mut sqlx::AnyConnection,
        row: &mut RfiRow,
        f: Fields,
        linker: &str,
    ) -> Result<(), Status> {
        // Linking shows a revision to every reader of the RFI: the linker must see it.
        for rev in &f.drawing_revision_ids {
            if !row.drawing_revision_ids.contains(rev)
                && self
                    .drawings
                    .visible_revision(&row.project_id, rev, linker)
                    .await?
                    .is_none()
            {
                return Err(linked_drawing_not_found(rev));
            }
        }
        self.check_files(
            conn,
            "question_file_ids",
            &row.project_id,
            &f.question_file_ids,
        )
        .await?;
        row.subject = f.subject;
        row.question = f.question;
        row.question_file_ids = f.question_file_ids;
        if !f.manager_id.is_empty() {
            row.manager_id = f.manager_id;
        }
        row.received_from_id = f.received_from_id;
        row.responsible_contractor = f.responsible_contractor;
        row.assignee_ids = f.assignee_ids;
        row.distribution_ids = f.distribution_ids;
        if !f.date_initiated.is_empty() {
            row.date_initiated = f.date_initiated;
        }
        row.due_date = f.due_date;
        row.private = f.private;
        row.drawing_revision_ids = f.drawing_revision_ids;
        let p = participants(row);
        let mut fields: Vec<(String, String)> = vec![
            ("manager_id".into(), row.manager_id.clone()),
            ("received_from_id".into(), row.received_from_id.clone()),
            ("creator_id".into(), row.creator_id.clone()),
        ];
        fields.extend(
            row.assignee_ids
                .iter()
                .enumerate()
                .map(|(i, u)| (format!("assignee_ids[{i}]"), u.clone())),
        );
        fields.extend(
            row.distribution_ids
                .iter()
                .enumerate()
                .map(|(i, u)| (format!("distribution_ids[{i}]"), u.clone())),
        );
        let refs: Vec<(&str, &str)> = fields
            .iter()
            .map(|(f, u)| (f.as_str(), u.as_str()))
            .collect();
        row.participant_company_ids = self.participant_companies(&refs, &p).await?;
        Ok(())
    }
}

impl RfiApi {
    /// The caller's own RFI and a connected copy in the same project, for linking (R5).
    pub(super) async fn own_and_copy(
        &self,
        conn: &mut sqlx::AnyConnection,
        caller: &Caller,
        id: &Id,
        copy_id: &Id,
    ) -> Result<(RfiRow, RfiRow, Viewer), Status> {
        let (own, v) = self.visible(conn, caller, id).await?;
        must_be_own(&own)?;
        if !domain::can_contribute(&v.access) {
            return Err(permission_denied(
                "you need at least STANDARD on RFIs in this project",
            ));
        }
        let (copy, _) = self.visible(conn, caller, copy_id).await?;
        if !copy.copy.is_copy() || copy.project_id != own.project_id {
            return Err(failed_precondition(
                reason::NOT_A_CONNECTED_RFI,
                format!(
                    "`{}` is not a connected RFI of this project",
                    copy_id.as_str()
                ),
            ));
        }
        Ok((own, copy, v))
    }
}

impl RfiApi {
    /// Creates an RFI (numbered from the project's counter), once per request id.
    pub(super) async fn create(
        &self,
        caller: &Caller,
        r: pb::CreateRfiRequest,
    ) -> Result<pb::Rfi, Status> {
        let project = Id::parse(PROJECT, "project_id", &r.project_id)?;
        let request_id = parse_request_id(&r.request_id)?;
        let fields = parse_fields(&pb::Rfi {
            subject: r.subject,
            question: r.question,
            question_file_ids: r.question_file_ids,
            manager_id: r.manager_id,
            received_from_id: r.received_from_id,
            responsible_contractor: r.responsible_contractor,
            assignee_ids: r.assignee_ids,
            distribution_ids: r.distribution_ids,
            date_initiated: r.date_initiated,
            due_date: r.due_date,
            private: r.private,
            drawing_revision_ids: r.drawing_revision_ids,
            ..Default::default()
        })?;
        let v = self.core.contributor(caller, project.as_str()).await?;
        let scope = format!("rfis.CreateRfi:{}", v.user);
        let now = self.core.clock.now_ms();
        let mut row = RfiRow {
            id: Id::generate(RFI).to_string(),
            project_id: project.to_string(),
            number: 0,
            subject: String::new(),
            question: String::new(),
            question_file_ids: Vec::new(),
            status: RfiStatus::Open as i64,
            manager_id: v.user.clone(),
            received_from_id: String::new(),
            responsible_contractor: String::new(),
            assignee_ids: Vec::new(),
            distribution_ids: Vec::new(),
            creator_id: v.user.clone(),
            participant_company_ids: Vec::new(),
            date_initiated: domain::date_of(now),
            due_date: String::new(),
            private: false,
            drawing_revision_ids: Vec::new(),
            cover_file_id: String::new(),
            drawings_file_id: String::new(),
            version: 1,
            close_ms: None,
            deleted_ms: None,
            copy: Default::default(),
            origin_version: 0,
            disconnected: false,
            create_ms: now,
            update_ms: now,
        };
        let linker = v.user.clone();
        self.apply_fields(&mut *self.core.read().await?, &mut row, fields, &linker)
            .await?;
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
        let out = rfi_pb(row.clone(), Vec::new(), Vec::new());
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

impl RfiApi {
    /// Replaces the fields the update mask names, if the RFI is still the version read.
    pub(super) async fn update(
        &self,
        caller: &Caller,
        r: pb::UpdateRfiRequest,
    ) -> Result<pb::Rfi, Status> {
        let patch = r.rfi.unwrap_or_default();
        let id = Id::parse(RFI, "rfi.id", &patch.id)?;
        let updatable = [
            "subject",
            "question",
            "question_file_ids",
            "manager_id",
            "received_from_id",
            "responsible_contractor",
            "assignee_ids",
            "distribution_ids",
            "date_initiated",
            "due_date",
            "private",
            "drawing_revision_ids",
        ];
        let paths = requests::field_mask(r.update_mask, &updatable, EmptyMask::Refused)?;
        let mut conn = self.core.read().await?;
        let (current, v) = self.managed(&mut conn, caller, &id).await?;
        must_be_open(&current)?;
        // Start from the stored fields and take the masked ones from the request.
        let mut merged = rfi_pb(current.clone(), Vec::new(), Vec::new());
        for path in paths {
            match path {
                "subject" => merged.subject = patch.subject.clone(),
                "question" => merged.question = patch.question.clone(),
                "question_file_ids" => merged.question_file_ids = patch.question_file_ids.clone(),
                "manager_id" => merged.manager_id = patch.manager_id.clone(),
                "received_from_id" => merged.received_from_id = patch.received_from_id.clone(),
                "responsible_contractor" => {
                    merged.responsible_contractor = patch.responsible_contractor.clone()
                }
                "assignee_ids" => merged.assignee_ids = patch.assignee_ids.clone(),
                "distribution_ids" => merged.distribution_ids = patch.distribution_ids.clone(),
                "date_initiated" => merged.date_initiated = patch.date_initiated.clone(),
                "due_date" => merged.due_date = patch.due_date.clone(),
                "private" => merged.private = patch.private,
                "drawing_revision_ids" => {
                    merged.drawing_revision_ids = patch.drawing_revision_ids.clone()
                }
                // field_mask admits only the names above.
                _ => {}
            }
        }
        if merged.manager_id.is_empty() {
            return Err(invalid_argument("rfi.manager_id", "an RFI needs a manager"));
        }
        let fields = parse_fields(&merged).map_err(|e| {
            // Name the field as the caller sent it.
            let field = connectability_platform::errors::bad_field(&e).unwrap_or_default();
            invalid_argument(&format!("rfi.{field}"), e.message())
        })?;
        let mut updated = current.clone();
        self.apply_fields(&mut conn, &mut updated, fields, &v.user)
            .await?;
        drop(conn);
        updated.version += 1;
        updated.update_ms = self.core.clock.now_ms();
        self.save(&v, current.version, updated, Vec::new()).await
    }
}

impl RfiApi {
    /// A page of the project's RFIs the caller may see.
    pub(super) async fn list(
        &self,
        caller: &Caller,
        r: pb::ListRfisRequest,
    ) -> Result<pb::ListRfisResponse, Status> {
        let project = Id::parse(PROJECT, "project_id", &r.project_id)?;
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        let mut statuses = Vec::new();
        for (i, s) in r.statuses.iter().enumerate() {
            match pb::RfiStatus::try_from(*s) {
                Ok(pb::RfiStatus::Unspecified) | Err(_) => {
                    return Err(invalid_argument(
                        &format!("statuses[{i}]"),
                        format!("`{s}` is not an RFI status"),
                    ));
                }
                Ok(s) => statuses.push(s as i64),
            }
        }
        let v = self.core.viewer(caller, project.as_str()).await?;
        let mut conn = self.core.read().await?;
        let sees_all = if v.admin() { "" } else { v.user.as_str() };
        let mut rows = db::list_rfis(
            &mut conn,
            project.as_str(),
            &statuses,
            sees_all,
            &page.after,
            page.fetch_limit(),
        )
        .await
        .map_err(db_err)?;
        let next_page_token = page.finish(&mut rows, |r| &r.id);
        let rfis = self.rfis_pb(&mut conn, &v, project.as_str(), rows).await?;
        Ok(pb::ListRfisResponse {
            rfis,
            next_page_token,
        })
    }
}

impl RfiApi {
    /// Closes an RFI: renders its cover sheet and linked drawings, then R1's copy event.
    pub(super) async fn close(
        &self,
        caller: &Caller,
        r: pb::CloseRfiRequest,
    ) -> Result<pb::Rfi, Status> {
        let id = Id::parse(RFI, "id", &r.id)?;
        let (rfi, v) = self
            .managed(&mut *self.core.read().await?, caller, &id)
            .await?;
        must_be_open(&rfi)?;
        let now = self.core.clock.now_ms();
        let files = self.render_close(&rfi, &v.user, now).await?;
        let updated = RfiRow {
            status: RfiStatus::Closed as i64,
            cover_file_id: files[0].id.clone(),
            drawings_file_id: files[1].id.clone(),
            close_ms: Some(now),
            version: rfi.version + 1,
            update_ms: now,
            ..rfi.clone()
        };
        let saved = async {
            let mut tx = self.core.begin().await?;
            db::insert(&mut tx, &files).await.map_err(db_err)?;
            if !db::update_rfi(&mut tx, &updated, rfi.version)
                .await
                .map_err(db_err)?
            {
                return Err(changed_meanwhile());
            }
            self.commit(tx, &[events::rfi_closed(&updated, &v.user)])
                .await
        }
        .await;
        if let Err(e) = saved {
            // Nothing half-stored: the rendered files go if the close did not commit.
            for f in &files {
                let _ = self.core.blobs.delete(&f.object_key).await;
            }
            return Err(e);
        }
        self.rfi_pb(&mut *self.core.read().await?, &v, updated)
            .await
    }
}
