//! The use cases behind the handlers: authorization against the directory, the reads
//! they need and the transactions that change state.

use super::*;
use connectability_platform::requests::{self, EmptyMask};
use connectability_sync::api::hide_record;

impl DrawingApi {
    pub fn new(base: &Foundation, relay: RelayWaker, limits: Limits) -> Self {
        let upload = UploadRules {
            only_content_type: Some("application/pdf"),
            accept: Some((domain::looks_like_pdf, "the content is not a PDF")),
            ..UploadRules::any(FILE, limits.max_upload_bytes)
        };
        Self {
            core: ToolApi::new(Tool::Drawings, base, relay, upload),
            limits,
        }
    }

    /// The caller's access to a project they may see (else NOT_FOUND), with at least
    /// READ_ONLY on Drawings (else PERMISSION_DENIED).
    pub(super) async fn viewer(
        &self,
        caller: &Caller,
        project_id: &str,
    ) -> Result<(String, ProjectAccess), Status> {
        let m = self.core.viewer(caller, project_id).await?;
        Ok((m.user, m.access))
    }

    /// Like [`Self::viewer`], and a Drawings admin.
    pub(super) async fn admin(
        &self,
        caller: &Caller,
        project_id: &str,
    ) -> Result<(String, ProjectAccess), Status> {
        let m = self
            .core
            .member(caller, project_id, PermissionLevel::Admin)
            .await?;
        Ok((m.user, m.access))
    }

    /// A drawing the caller may see: live, and with a published revision unless they are admin.
    pub(super) async fn visible_drawing(
        &self,
        caller: &Caller,
        id: &Id,
    ) -> Result<(DrawingRow, ProjectAccess, String), Status> {
        let mut conn = self.core.read().await?;
        let d = db::get::<DrawingRow>(&mut conn, id.as_str())
            .await
            .map_err(db_err)?
            .filter(|d| d.deleted_ms.is_none())
            .ok_or_else(|| not_found("drawing", id.as_str()))?;
        let Member { user, access } = self
            .core
            .viewer_of_record(caller, &d.project_id, || not_found("drawing", id.as_str()))
            .await?;
        if !domain::is_admin(&access)
            && db::revisions_of(&mut conn, std::slice::from_ref(&d.id), true)
                .await
                .map_err(db_err)?
                .is_empty()
        {
            return Err(not_found("drawing", id.as_str()));
        }
        Ok((d, access, user))
    }

    pub(super) fn commit_events(&self) {
        self.core.relay.wake();
    }
}

impl DrawingApi {
    /// Creates a revision (and its drawing, by area and number) from an uploaded PDF.
    pub(super) async fn create_revision(
        &self,
        caller: &Caller,
        r: pb::CreateDrawingRevisionRequest,
    ) -> Result<pb::DrawingRevision, Status> {
        let project = Id::parse(PROJECT, "project_id", &r.project_id)?;
        let area_id = Id::parse(AREA, "area_id", &r.area_id)?;
        let set_id = Id::parse(SET, "set_id", &r.set_id)?;
        let file_id = Id::parse(FILE, "file_id", &r.file_id)?;
        let number = parse_name("number", &r.number)?;
        let title = parse_name("title", &r.title)?;
        let discipline_name = parse_text("discipline_name", &r.discipline_name, 200)?;
        let revision_number = parse_text("revision_number", &r.revision_number, 50)?;
        let revision_status = parse_text("revision_status", &r.revision_status, 100)?;
        let drawing_date = domain::parse_date("drawing_date", &r.drawing_date, true)?;
        let received_date = domain::parse_date("received_date", &r.received_date, true)?;
        self.admin(caller, project.as_str()).await?;
        let now = self.core.clock.now_ms();
        let mut tx = self.core.begin().await?;
        let area = db::get::<AreaRow>(&mut tx, area_id.as_str())
            .await
            .map_err(db_err)?
            .filter(|a| a.project_id == project.as_str());
        let area = area.ok_or_else(|| not_found("area", area_id.as_str()))?;
        if area.copy.is_copy() {
            return Err(failed_precondition(
                reason::CONNECTED_AREA_READ_ONLY,
                "drawings cannot be added to a connected area",
            ));
        }
        let set = db::get::<SetRow>(&mut tx, set_id.as_str())
            .await
            .map_err(db_err)?
            .filter(|s| s.project_id == project.as_str());
        let set = set.ok_or_else(|| not_found("set", set_id.as_str()))?;
        if set.copy.is_copy() {
            return Err(failed_precondition(
                reason::CONNECTED_SET_READ_ONLY,
                "drawings cannot be added to a connected set",
            ));
        }
        db::get::<FileRow>(&mut tx, file_id.as_str())
            .await
            .map_err(db_err)?
            .filter(|f| f.project_id == project.as_str())
            .ok_or_else(|| not_found("file", file_id.as_str()))?;
        let drawing = match db::find_drawing(&mut tx, project.as_str(), &area.id, &number)
            .await
            .map_err(db_err)?
        {
            Some(d) if d.copy.is_copy() => {
                return Err(failed_precondition(
                    reason::CONNECTED_READ_ONLY,
                    "connected drawings are read-only downstream",
                ));
            }
            Some(d) => d,
            None => {
                let d = DrawingRow {
                    id: Id::generate(DRAWING).to_string(),
                    project_id: project.to_string(),
                    area_id: area.id.clone(),
                    number,
                    title,
                    discipline_name,
                    discipline_position: i64::from(r.discipline_position),
                    obsolete: false,
                    version: 1,
                    deleted_ms: None,
                    copy: Copy::default(),
                    origin_version: 0,
                    create_ms: now,
                    update_ms: now,
                };
                db::insert(&mut tx, std::slice::from_ref(&d))
                    .await
                    .map_err(db_err)?;
                d
            }
        };
        let revision = RevisionRow {
            id: Id::generate(REVISION).to_string(),
            drawing_id: drawing.id.clone(),
            project_id: project.to_string(),
            set_id: set.id.clone(),
            revision_number,
            revision_status,
            drawing_date,
            received_date,
            file_id: file_id.to_string(),
            custom_fields: serde_json::to_string(&r.custom_fields).map_err(internal)?,
            published: false,
            publish_ms: None,
            copy: Copy::default(),
            create_ms: now,
        };
        db::insert(&mut tx, std::slice::from_ref(&revision))
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(revision_pb(revision))
    }
}

impl DrawingApi {
    /// Replaces the fields the update mask names on an own drawing (D6: never on a copy).
    pub(super) async fn update_drawing(
        &self,
        caller: &Caller,
        r: pb::UpdateDrawingRequest,
    ) -> Result<pb::Drawing, Status> {
        let input = r
            .drawing
            .ok_or_else(|| invalid_argument("drawing", "is required"))?;
        let id = Id::parse(DRAWING, "drawing.id", &input.id)?;
        let updatable = [
            "title",
            "number",
            "obsolete",
            "discipline_name",
            "discipline_position",
            "area_id",
        ];
        let paths = requests::field_mask(r.update_mask, &updatable, EmptyMask::Refused)?;
        let (mut d, access, user) = self.visible_drawing(caller, &id).await?;
        if !domain::is_admin(&access) {
            return Err(permission_denied("only Drawings admins edit drawings"));
        }
        if d.copy.is_copy() {
            return Err(failed_precondition(
                reason::CONNECTED_READ_ONLY,
                "connected drawings are read-only downstream",
            ));
        }
        let mut tx = self.core.begin().await?;
        for path in paths {
            match path {
                "title" => d.title = parse_name("drawing.title", &input.title)?,
                "number" => d.number = parse_name("drawing.number", &input.number)?,
                "obsolete" => d.obsolete = input.obsolete,
                "discipline_name" => {
                    d.discipline_name =
                        parse_text("drawing.discipline_name", &input.discipline_name, 200)?
                }
                "discipline_position" => {
                    d.discipline_position = i64::from(input.discipline_position)
                }
                "area_id" => {
                    let area_id = Id::parse(AREA, "drawing.area_id", &input.area_id)?;
                    let area = db::get::<AreaRow>(&mut tx, area_id.as_str())
                        .await
                        .map_err(db_err)?
                        .filter(|a| a.project_id == d.project_id);
                    let area = area.ok_or_else(|| not_found("area", area_id.as_str()))?;
                    if area.copy.is_copy() {
                        return Err(failed_precondition(
                            reason::CONNECTED_AREA_READ_ONLY,
                            "drawings cannot move into a connected area",
                        ));
                    }
                    d.area_id = area.id;
                }
                // field_mask admits only the names above.
                _ => {}
            }
        }
        d.version += 1;
        d.update_ms = self.core.clock.now_ms();
        db::update_drawing(&mut tx, &d).await.map_err(db_err)?;
        let event = events::drawing_updated(&d.project_id, &d.id, d.version, &user);
        connectability_store::outbox::enqueue(&mut tx, &[event])
            .await
            .map_err(db_err)?;
        let current = db::revisions_of(&mut tx, std::slice::from_ref(&d.id), false)
            .await
            .map_err(db_err)?
            .pop();
        tx.commit().await.map_err(db_err)?;
        self.commit_events();
        Ok(drawing_pb(d, current))
    }
}

impl DrawingApi {
    /// Publishes revisions: the copy event (D2) and N6 for every connection.
    pub(super) async fn publish(
        &self,
        caller: &Caller,
        r: pb::PublishDrawingRevisionsRequest,
    ) -> Result<pb::PublishDrawingRevisionsResponse, Status> {
        let project = Id::parse(PROJECT, "project_id", &r.project_id)?;
        if r.revision_ids.is_empty() {
            return Err(invalid_argument(
                "revision_ids",
                "name at least one revision",
            ));
        }
        if r.revision_ids.len() > domain::MAX_PUBLISH_REVISIONS {
            return Err(invalid_argument(
                "revision_ids",
                format!(
                    "at most {} revisions per publish (this one names {}); publish larger sets in several calls",
                    domain::MAX_PUBLISH_REVISIONS,
                    r.revision_ids.len()
                ),
            ));
        }
        let mut ids = r
            .revision_ids
            .iter()
            .map(|id| Id::parse(REVISION, "revision_ids", id).map(|i| i.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        // A revision named twice is published once and answered once.
        let mut seen = std::collections::HashSet::with_capacity(ids.len());
        ids.retain(|id| seen.insert(id.clone()));
        let (user, _) = self.admin(caller, project.as_str()).await?;
        let mut tx = self.core.begin().await?;
        let found = db::by_ids::<RevisionRow>(&mut tx, &ids)
            .await
            .map_err(db_err)?;
        let in_project: std::collections::HashSet<&str> = found
            .iter()
            .filter(|x| x.project_id == project.as_str())
            .map(|x| x.id.as_str())
            .collect();
        if let Some(missing) = ids.iter().find(|id| !in_project.contains(id.as_str())) {
            return Err(not_found("revision", missing));
        }
        let publish_id = Id::generate(PUBLISH).to_string();
        let newly = db::publish(&mut tx, project.as_str(), &ids, self.core.clock.now_ms())
            .await
            .map_err(db_err)?;
        if !newly.is_empty() {
            let mut drawing_ids: Vec<String> = newly.iter().map(|r| r.drawing_id.clone()).collect();
            drawing_ids.sort();
            drawing_ids.dedup();
            let event = events::revisions_published(
                project.as_str(),
                &publish_id,
                newly.iter().map(|r| r.id.clone()).collect(),
                drawing_ids,
                &user,
            );
            connectability_store::outbox::enqueue(&mut tx, &[event])
                .await
                .map_err(db_err)?;
        }
        let mut after: HashMap<String, RevisionRow> = db::by_ids::<RevisionRow>(&mut tx, &ids)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        let revisions: Vec<pb::DrawingRevision> = ids
            .iter()
            .filter_map(|id| after.remove(id))
            .map(revision_pb)
            .collect();
        tx.commit().await.map_err(db_err)?;
        self.commit_events();
        Ok(pb::PublishDrawingRevisionsResponse {
            revisions,
            publish_id,
            newly_published: newly.len() as i64,
        })
    }
}

impl DrawingApi {
    /// A page of the project's drawings the caller may see, with their current revisions.
    pub(super) async fn list_drawings(
        &self,
        caller: &Caller,
        r: pb::ListDrawingsRequest,
    ) -> Result<pb::ListDrawingsResponse, Status> {
        let project = Id::parse(PROJECT, "project_id", &r.project_id)?;
        let area = if r.area_id.is_empty() {
            String::new()
        } else {
            Id::parse(AREA, "area_id", &r.area_id)?.to_string()
        };
        let filter = pb::PublishedFilter::try_from(r.published)
            .map_err(|_| invalid_argument("published", "not a PublishedFilter"))?;
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        let (_, access) = self.viewer(caller, project.as_str()).await?;
        let admin = domain::is_admin(&access);
        if filter == pb::PublishedFilter::Unpublished && !admin {
            return Err(permission_denied(
                "only Drawings admins see unpublished revisions",
            ));
        }
        let published_only = !admin || filter == pb::PublishedFilter::Published;
        let unpublished_only = filter == pb::PublishedFilter::Unpublished;
        let mut conn = self.core.read().await?;
        let mut rows = db::list_drawings(
            &mut conn,
            project.as_str(),
            &area,
            published_only,
            unpublished_only,
            &page.after,
            page.fetch_limit(),
        )
        .await
        .map_err(db_err)?;
        let next_page_token = page.finish_with(&mut rows, |d| format!("{}\n{}", d.number, d.id));
        let ids: Vec<String> = rows.iter().map(|d| d.id.clone()).collect();
        let mut newest: HashMap<String, RevisionRow> = HashMap::new();
        for rev in db::revisions_of(&mut conn, &ids, published_only)
            .await
            .map_err(db_err)?
        {
            newest.insert(rev.drawing_id.clone(), rev);
        }
        let drawings = rows
            .into_iter()
            .map(|d| {
                let current = newest.remove(&d.id);
                drawing_pb(d, current)
            })
            .collect();
        Ok(pb::ListDrawingsResponse {
            drawings,
            next_page_token,
        })
    }
}

impl DrawingApi {
    /// A revision's PDF for someone who may see the revision (service callers: drawings-sync's
    /// peers).
    pub(super) async fn revision_file(
        &self,
        caller: &Caller,
        r: pb::DownloadRevisionFileRequest,
    ) -> Result<messages::Answers<pb::DownloadFileResponse>, Status> {
        connectability_auth::require_service(caller, &["rfi-sync"], "DownloadRevisionFile")?;
        let project = Id::parse(PROJECT, "project_id", &r.project_id)?;
        let revision = Id::parse(REVISION, "revision_id", &r.revision_id)?;
        let user = Id::parse(USER, "user_id", &r.user_id)?;
        let missing = || not_found("drawing revision", revision.as_str());
        // Read as the user the file is for: what they cannot see in Drawings is not there.
        let on_behalf = Caller::User {
            user_id: user.to_string(),
        };
        let (_, access) = self
            .viewer(&on_behalf, project.as_str())
            .await
            .map_err(|e| hide_record(e, missing))?;
        let mut conn = self.core.read().await?;
        let rev = db::get::<RevisionRow>(&mut conn, revision.as_str())
            .await
            .map_err(db_err)?
            .filter(|rev| rev.project_id == project.as_str())
            .ok_or_else(missing)?;
        let drawing = db::get::<DrawingRow>(&mut conn, &rev.drawing_id)
            .await
            .map_err(db_err)?
            .ok_or_else(missing)?;
        if !domain::revision_visible(&access, rev.published, drawing.deleted_ms.is_some()) {
            return Err(missing());
        }
        let file = db::get::<FileRow>(&mut conn, &rev.file_id)
            .await
            .map_err(db_err)?
            .ok_or_else(missing)?;
        drop(conn);
        if r.metadata_only {
            return Ok(messages::metadata_only(file));
        }
        self.core.files.download(file).await
    }
}

impl DrawingApi {
    /// Adds a markup to a revision the caller may see (D4, D7: markups stay in their project).
    pub(super) async fn create_markup(
        &self,
        caller: &Caller,
        r: pb::CreateMarkupRequest,
    ) -> Result<pb::Markup, Status> {
        let revision_id = Id::parse(REVISION, "revision_id", &r.revision_id)?;
        let body = parse_text("body", &r.body, 100_000)?;
        if body.is_empty() {
            return Err(invalid_argument("body", "must not be empty"));
        }
        let rev = db::get::<RevisionRow>(&mut *self.core.read().await?, revision_id.as_str())
            .await
            .map_err(db_err)?
            .ok_or_else(|| not_found("revision", revision_id.as_str()))?;
        let (user, access) = self
            .viewer(caller, &rev.project_id)
            .await
            .map_err(|e| hide_record(e, || not_found("revision", revision_id.as_str())))?;
        if !rev.published && !domain::is_admin(&access) {
            return Err(not_found("revision", revision_id.as_str()));
        }
        if !domain::can_mark_up(&access) {
            return Err(permission_denied("marking up needs STANDARD on Drawings"));
        }
        // Markups stay in this project: never copied, never sent upstream (D4, D7).
        let markup = MarkupRow {
            id: Id::generate(MARKUP).to_string(),
            project_id: rev.project_id,
            revision_id: rev.id,
            author_id: user,
            body,
            create_ms: self.core.clock.now_ms(),
        };
        db::insert_markup(&mut *self.core.read().await?, &markup)
            .await
            .map_err(db_err)?;
        Ok(markup_pb(markup))
    }
}
