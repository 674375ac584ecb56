//! The gRPC layer of the Drawings tool: parse, check the caller's Drawings level (directory
//! over gRPC), apply the rules in `domain`, write through `db` with events in one
//! transaction. Copying downstream happens in `sync`, driven by those events.

use std::{collections::HashMap, pin::Pin, sync::Arc};

use connectability_auth::Caller;
use connectability_blobs::{Blobs, files};
use connectability_platform::{
    clock::Clock,
    directory::{DirectoryGateway, sees_project},
    errors::{failed_precondition, internal, invalid_argument, not_found, permission_denied},
    input::{Id, parse_name, parse_text},
    paging::PageRequest,
    time::timestamp,
};
use connectability_proto::{
    directory::v1::ProjectAccess,
    drawings::v1::{self as pb, drawing_service_server::DrawingService},
};
use connectability_store::{Db, outbox::RelayWaker};
use futures::Stream;
use tonic::{Request, Response, Status, Streaming};

use connectability_sync::messages::{self, sync_status_pb};

use crate::{
    db::{self, AreaRow, Copy, DrawingRow, FileRow, MarkupRow, RevisionRow, SetRow, SyncRow},
    domain::{
        self, AREA, CONNECTION, DRAWING, FILE, MARKUP, PROJECT, PUBLISH, REVISION, SET, USER,
        reason,
    },
    events,
};

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[derive(Clone)]
pub struct DrawingApi {
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
    /// Largest accepted drawing file, in bytes.
    pub max_upload_bytes: usize,
    /// C17: published revisions above which a project cannot connect for drawings.
    pub max_connected_revisions: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_upload_bytes: 64 * 1024 * 1024,
            max_connected_revisions: domain::MAX_CONNECTED_REVISIONS,
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
            "the Drawings tool is used by project members",
        )),
    }
}

fn origin(copy: &Copy) -> Option<pb::Origin> {
    copy.is_copy().then(|| pb::Origin {
        connection_id: copy.connection_id.clone(),
        upstream_project_id: copy.origin_project_id.clone(),
        upstream_id: copy.origin_id.clone(),
    })
}

fn area_pb(a: AreaRow) -> pb::DrawingArea {
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

fn set_pb(s: SetRow) -> pb::DrawingSet {
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

fn revision_pb(r: RevisionRow) -> pb::DrawingRevision {
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

fn drawing_pb(d: DrawingRow, current: Option<RevisionRow>) -> pb::Drawing {
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

impl DrawingApi {
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

    /// The caller's access to a project they may see (else NOT_FOUND), with at least
    /// READ_ONLY on Drawings (else PERMISSION_DENIED).
    async fn viewer(
        &self,
        caller: &Caller,
        project_id: &str,
    ) -> Result<(String, ProjectAccess), Status> {
        let user = user_of(caller)?;
        let access = self
            .directory
            .project_access(project_id, user)
            .await?
            .filter(sees_project)
            .ok_or_else(|| not_found("project", project_id))?;
        if !domain::can_view(&access) {
            return Err(permission_denied(
                "you need at least READ_ONLY on Drawings in this project",
            ));
        }
        Ok((user.to_string(), access))
    }

    /// Like [`Self::viewer`], and a Drawings admin.
    async fn admin(
        &self,
        caller: &Caller,
        project_id: &str,
    ) -> Result<(String, ProjectAccess), Status> {
        let (user, access) = self.viewer(caller, project_id).await?;
        if !domain::is_admin(&access) {
            return Err(permission_denied(
                "only Drawings admins of this project may do this",
            ));
        }
        Ok((user, access))
    }

    /// A drawing the caller may see: live, and with a published revision unless they are admin.
    async fn visible_drawing(
        &self,
        caller: &Caller,
        id: &Id,
    ) -> Result<(DrawingRow, ProjectAccess, String), Status> {
        let mut conn = self.read().await?;
        let d = db::get::<DrawingRow>(&mut conn, id.as_str())
            .await
            .map_err(db_err)?
            .filter(|d| d.deleted_ms.is_none())
            .ok_or_else(|| not_found("drawing", id.as_str()))?;
        let (user, access) = self.viewer(caller, &d.project_id).await.map_err(|e| {
            if e.code() == tonic::Code::PermissionDenied {
                e
            } else {
                not_found("drawing", id.as_str())
            }
        })?;
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

    fn commit_events(&self) {
        self.relay.wake();
    }
}

#[tonic::async_trait]
impl DrawingService for DrawingApi {
    async fn create_drawing_area(
        &self,
        req: Request<pb::CreateDrawingAreaRequest>,
    ) -> Result<Response<pb::DrawingArea>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let project = Id::parse(PROJECT, "project_id", &r.project_id)?;
        let name = parse_name("name", &r.name)?;
        let description = parse_text("description", &r.description, 2000)?;
        self.admin(&caller, project.as_str()).await?;
        let area = AreaRow {
            id: Id::generate(AREA).to_string(),
            project_id: project.to_string(),
            name,
            description,
            copy: Copy::default(),
            create_ms: self.clock.now_ms(),
        };
        db::insert(&mut *self.read().await?, std::slice::from_ref(&area))
            .await
            .map_err(db_err)?;
        Ok(Response::new(area_pb(area)))
    }

    async fn list_drawing_areas(
        &self,
        req: Request<pb::ListDrawingAreasRequest>,
    ) -> Result<Response<pb::ListDrawingAreasResponse>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let project = Id::parse(PROJECT, "project_id", &r.project_id)?;
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        self.viewer(&caller, project.as_str()).await?;
        let mut rows = db::list_in_project::<AreaRow>(
            &mut *self.read().await?,
            project.as_str(),
            &page.after,
            page.fetch_limit(),
        )
        .await
        .map_err(db_err)?;
        let next_page_token = page.finish(&mut rows, |a| &a.id);
        Ok(Response::new(pb::ListDrawingAreasResponse {
            areas: rows.into_iter().map(area_pb).collect(),
            next_page_token,
        }))
    }

    async fn create_drawing_set(
        &self,
        req: Request<pb::CreateDrawingSetRequest>,
    ) -> Result<Response<pb::DrawingSet>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let project = Id::parse(PROJECT, "project_id", &r.project_id)?;
        let name = parse_name("name", &r.name)?;
        let date = domain::parse_date("date", &r.date, true)?;
        self.admin(&caller, project.as_str()).await?;
        let set = SetRow {
            id: Id::generate(SET).to_string(),
            project_id: project.to_string(),
            name,
            set_date: date,
            copy: Copy::default(),
            create_ms: self.clock.now_ms(),
        };
        db::insert(&mut *self.read().await?, std::slice::from_ref(&set))
            .await
            .map_err(db_err)?;
        Ok(Response::new(set_pb(set)))
    }

    async fn list_drawing_sets(
        &self,
        req: Request<pb::ListDrawingSetsRequest>,
    ) -> Result<Response<pb::ListDrawingSetsResponse>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let project = Id::parse(PROJECT, "project_id", &r.project_id)?;
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        self.viewer(&caller, project.as_str()).await?;
        let mut rows = db::list_in_project::<SetRow>(
            &mut *self.read().await?,
            project.as_str(),
            &page.after,
            page.fetch_limit(),
        )
        .await
        .map_err(db_err)?;
        let next_page_token = page.finish(&mut rows, |s| &s.id);
        Ok(Response::new(pb::ListDrawingSetsResponse {
            sets: rows.into_iter().map(set_pb).collect(),
            next_page_token,
        }))
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
        if header.content_type != "application/pdf" {
            return Err(invalid_argument(
                "header.content_type",
                "drawings must be application/pdf",
            ));
        }
        let (_, access) = self.admin(&caller, project.as_str()).await?;
        let file = files::NewFile {
            id: Id::generate(FILE).to_string(),
            project_id: project.to_string(),
            company_id: access.project_company_id,
            filename,
            content_type: header.content_type,
            now_ms: self.clock.now_ms(),
        };
        let file = files::upload(
            &self.blobs,
            self.db.pool(),
            stream,
            messages::upload_part,
            file,
            self.limits.max_upload_bytes,
            Some((domain::looks_like_pdf, "the content is not a PDF")),
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
        let mut conn = self.read().await?;
        let file = db::get::<FileRow>(&mut conn, id.as_str())
            .await
            .map_err(db_err)?
            .ok_or_else(|| not_found("file", id.as_str()))?;
        let (_, access) = self
            .viewer(&caller, &file.project_id)
            .await
            .map_err(|_| not_found("file", id.as_str()))?;
        // Files of unpublished revisions are for Drawings admins only (D5).
        if !domain::is_admin(&access)
            && !db::file_is_published(&mut conn, &file.id)
                .await
                .map_err(db_err)?
        {
            return Err(not_found("file", id.as_str()));
        }
        self.stream_file(file).await
    }

    async fn create_drawing_revision(
        &self,
        req: Request<pb::CreateDrawingRevisionRequest>,
    ) -> Result<Response<pb::DrawingRevision>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
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
        self.admin(&caller, project.as_str()).await?;
        let now = self.clock.now_ms();
        let mut tx = self.db.begin().await.map_err(db_err)?;
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
        Ok(Response::new(revision_pb(revision)))
    }

    async fn publish_drawing_revisions(
        &self,
        req: Request<pb::PublishDrawingRevisionsRequest>,
    ) -> Result<Response<pb::PublishDrawingRevisionsResponse>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let project = Id::parse(PROJECT, "project_id", &r.project_id)?;
        if r.revision_ids.is_empty() {
            return Err(invalid_argument(
                "revision_ids",
                "name at least one revision",
            ));
        }
        let ids = r
            .revision_ids
            .iter()
            .map(|id| Id::parse(REVISION, "revision_ids", id).map(|i| i.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        let (user, _) = self.admin(&caller, project.as_str()).await?;
        let mut tx = self.db.begin().await.map_err(db_err)?;
        let mut current = Vec::with_capacity(ids.len());
        for id in &ids {
            let rev = db::get::<RevisionRow>(&mut tx, id)
                .await
                .map_err(db_err)?
                .filter(|x| x.project_id == project.as_str());
            current.push(rev.ok_or_else(|| not_found("revision", id))?);
        }
        let publish_id = Id::generate(PUBLISH).to_string();
        let newly = db::publish(&mut tx, project.as_str(), &ids, self.clock.now_ms())
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
        let mut revisions = Vec::with_capacity(ids.len());
        for id in &ids {
            if let Some(rev) = db::get::<RevisionRow>(&mut tx, id).await.map_err(db_err)? {
                revisions.push(revision_pb(rev));
            }
        }
        tx.commit().await.map_err(db_err)?;
        self.commit_events();
        Ok(Response::new(pb::PublishDrawingRevisionsResponse {
            revisions,
            publish_id,
        }))
    }

    async fn update_drawing(
        &self,
        req: Request<pb::UpdateDrawingRequest>,
    ) -> Result<Response<pb::Drawing>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let input = r
            .drawing
            .ok_or_else(|| invalid_argument("drawing", "is required"))?;
        let id = Id::parse(DRAWING, "drawing.id", &input.id)?;
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        if paths.is_empty() {
            return Err(invalid_argument("update_mask", "name the fields to change"));
        }
        let (mut d, access, user) = self.visible_drawing(&caller, &id).await?;
        if !domain::is_admin(&access) {
            return Err(permission_denied("only Drawings admins edit drawings"));
        }
        if d.copy.is_copy() {
            return Err(failed_precondition(
                reason::CONNECTED_READ_ONLY,
                "connected drawings are read-only downstream",
            ));
        }
        let mut tx = self.db.begin().await.map_err(db_err)?;
        for path in &paths {
            match path.as_str() {
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
                other => {
                    return Err(invalid_argument(
                        "update_mask",
                        format!("`{other}` cannot be updated"),
                    ));
                }
            }
        }
        d.version += 1;
        d.update_ms = self.clock.now_ms();
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
        Ok(Response::new(drawing_pb(d, current)))
    }

    async fn delete_drawing(
        &self,
        req: Request<pb::DeleteDrawingRequest>,
    ) -> Result<Response<()>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let id = Id::parse(DRAWING, "id", &req.get_ref().id)?;
        let (mut d, access, user) = self.visible_drawing(&caller, &id).await?;
        if !domain::is_admin(&access) {
            return Err(permission_denied("only Drawings admins delete drawings"));
        }
        if d.copy.is_copy() {
            return Err(failed_precondition(
                reason::CONNECTED_READ_ONLY,
                "connected drawings cannot be deleted downstream",
            ));
        }
        let now = self.clock.now_ms();
        d.deleted_ms = Some(now);
        d.version += 1;
        d.update_ms = now;
        let mut tx = self.db.begin().await.map_err(db_err)?;
        db::update_drawing(&mut tx, &d).await.map_err(db_err)?;
        let event = events::drawing_deleted(&d.project_id, &d.id, d.version, &user);
        connectability_store::outbox::enqueue(&mut tx, &[event])
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        self.commit_events();
        Ok(Response::new(()))
    }

    async fn list_drawings(
        &self,
        req: Request<pb::ListDrawingsRequest>,
    ) -> Result<Response<pb::ListDrawingsResponse>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let project = Id::parse(PROJECT, "project_id", &r.project_id)?;
        let area = if r.area_id.is_empty() {
            String::new()
        } else {
            Id::parse(AREA, "area_id", &r.area_id)?.to_string()
        };
        let filter = pb::PublishedFilter::try_from(r.published)
            .map_err(|_| invalid_argument("published", "not a PublishedFilter"))?;
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        let (_, access) = self.viewer(&caller, project.as_str()).await?;
        let admin = domain::is_admin(&access);
        if filter == pb::PublishedFilter::Unpublished && !admin {
            return Err(permission_denied(
                "only Drawings admins see unpublished revisions",
            ));
        }
        let published_only = !admin || filter == pb::PublishedFilter::Published;
        let unpublished_only = filter == pb::PublishedFilter::Unpublished;
        let mut conn = self.read().await?;
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
        Ok(Response::new(pb::ListDrawingsResponse {
            drawings,
            next_page_token,
        }))
    }

    async fn get_drawing(
        &self,
        req: Request<pb::GetDrawingRequest>,
    ) -> Result<Response<pb::Drawing>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let id = Id::parse(DRAWING, "id", &req.get_ref().id)?;
        let (d, access, _) = self.visible_drawing(&caller, &id).await?;
        let current = db::revisions_of(
            &mut *self.read().await?,
            std::slice::from_ref(&d.id),
            !domain::is_admin(&access),
        )
        .await
        .map_err(db_err)?
        .pop();
        Ok(Response::new(drawing_pb(d, current)))
    }

    async fn list_drawing_revisions(
        &self,
        req: Request<pb::ListDrawingRevisionsRequest>,
    ) -> Result<Response<pb::ListDrawingRevisionsResponse>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let id = Id::parse(DRAWING, "drawing_id", &r.drawing_id)?;
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        let (d, access, _) = self.visible_drawing(&caller, &id).await?;
        let mut rows: Vec<RevisionRow> = db::revisions_of(
            &mut *self.read().await?,
            std::slice::from_ref(&d.id),
            !domain::is_admin(&access),
        )
        .await
        .map_err(db_err)?
        .into_iter()
        .filter(|x| x.id.as_str() > page.after.as_str())
        .take(page.fetch_limit() as usize)
        .collect();
        let next_page_token = page.finish(&mut rows, |x| &x.id);
        Ok(Response::new(pb::ListDrawingRevisionsResponse {
            revisions: rows.into_iter().map(revision_pb).collect(),
            next_page_token,
        }))
    }

    async fn list_deleted_drawing_revisions(
        &self,
        req: Request<pb::ListDeletedDrawingRevisionsRequest>,
    ) -> Result<Response<pb::ListDeletedDrawingRevisionsResponse>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let project = Id::parse(PROJECT, "project_id", &r.project_id)?;
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        self.admin(&caller, project.as_str()).await?;
        let mut rows = db::deleted_revisions(
            &mut *self.read().await?,
            project.as_str(),
            &page.after,
            page.fetch_limit(),
        )
        .await
        .map_err(db_err)?;
        let next_page_token = page.finish(&mut rows, |(x, _)| &x.id);
        let revisions = rows
            .into_iter()
            .map(|(rev, d)| pb::DeletedDrawingRevision {
                drawing_number: d.number,
                drawing_title: d.title,
                area_id: d.area_id,
                delete_time: d.deleted_ms.map(timestamp),
                revision: Some(revision_pb(rev)),
            })
            .collect();
        Ok(Response::new(pb::ListDeletedDrawingRevisionsResponse {
            revisions,
            next_page_token,
        }))
    }

    async fn create_markup(
        &self,
        req: Request<pb::CreateMarkupRequest>,
    ) -> Result<Response<pb::Markup>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let revision_id = Id::parse(REVISION, "revision_id", &r.revision_id)?;
        let body = parse_text("body", &r.body, 100_000)?;
        if body.is_empty() {
            return Err(invalid_argument("body", "must not be empty"));
        }
        let rev = db::get::<RevisionRow>(&mut *self.read().await?, revision_id.as_str())
            .await
            .map_err(db_err)?
            .ok_or_else(|| not_found("revision", revision_id.as_str()))?;
        let (user, access) = self
            .viewer(&caller, &rev.project_id)
            .await
            .map_err(|_| not_found("revision", revision_id.as_str()))?;
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
            create_ms: self.clock.now_ms(),
        };
        db::insert_markup(&mut *self.read().await?, &markup)
            .await
            .map_err(db_err)?;
        Ok(Response::new(markup_pb(markup)))
    }

    async fn list_markups(
        &self,
        req: Request<pb::ListMarkupsRequest>,
    ) -> Result<Response<pb::ListMarkupsResponse>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let project = Id::parse(PROJECT, "project_id", &r.project_id)?;
        let revision = if r.revision_id.is_empty() {
            String::new()
        } else {
            Id::parse(REVISION, "revision_id", &r.revision_id)?.to_string()
        };
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        let (_, access) = self.viewer(&caller, project.as_str()).await?;
        let mut rows = db::list_markups(
            &mut *self.read().await?,
            project.as_str(),
            &revision,
            !domain::is_admin(&access),
            &page.after,
            page.fetch_limit(),
        )
        .await
        .map_err(db_err)?;
        let next_page_token = page.finish(&mut rows, |m| &m.id);
        Ok(Response::new(pb::ListMarkupsResponse {
            markups: rows.into_iter().map(markup_pb).collect(),
            next_page_token,
        }))
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

    type DownloadRevisionFileStream = Stream_<pb::DownloadFileResponse>;

    async fn download_revision_file(
        &self,
        req: Request<pb::DownloadRevisionFileRequest>,
    ) -> Result<Response<Self::DownloadRevisionFileStream>, Status> {
        let caller = connectability_auth::caller(&req)?;
        connectability_auth::require_service(&caller, &["rfi-sync"], "DownloadRevisionFile")?;
        let r = req.get_ref();
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
            .map_err(|_| missing())?;
        let mut conn = self.read().await?;
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
            return Ok(Response::new(messages::metadata_only(file)));
        }
        self.stream_file(file).await
    }

    async fn get_published_revision_count(
        &self,
        req: Request<pb::GetPublishedRevisionCountRequest>,
    ) -> Result<Response<pb::PublishedRevisionCount>, Status> {
        let caller = connectability_auth::caller(&req)?;
        connectability_auth::require_service(
            &caller,
            &["connection-manager"],
            "GetPublishedRevisionCount",
        )?;
        let project = Id::parse(PROJECT, "project_id", &req.get_ref().project_id)?;
        let count = db::published_revision_count(&mut *self.read().await?, project.as_str())
            .await
            .map_err(db_err)?;
        Ok(Response::new(pb::PublishedRevisionCount {
            project_id: project.to_string(),
            count,
            limit: self.limits.max_connected_revisions,
        }))
    }
}

fn markup_pb(m: MarkupRow) -> pb::Markup {
    pb::Markup {
        id: m.id,
        project_id: m.project_id,
        revision_id: m.revision_id,
        author_id: m.author_id,
        body: m.body,
        create_time: Some(timestamp(m.create_ms)),
    }
}

impl DrawingApi {
    /// Streams a stored file: its metadata, then its bytes.
    async fn stream_file(
        &self,
        file: FileRow,
    ) -> Result<Response<Stream_<pb::DownloadFileResponse>>, Status> {
        Ok(Response::new(messages::download(&self.blobs, file).await?))
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
