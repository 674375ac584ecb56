//! The gRPC layer of the Drawings tool: parse, check the caller's Drawings level (directory
//! over gRPC), apply the rules in `domain`, write through `db` with events in one
//! transaction. Copying downstream happens in `sync`, driven by those events.

use std::collections::HashMap;

use connectability_auth::Caller;
use connectability_platform::{
    directory::Tool,
    errors::{failed_precondition, internal, invalid_argument, not_found, permission_denied},
    input::{Id, parse_name, parse_text},
    paging::PageRequest,
    time::timestamp,
};
use connectability_proto::{
    directory::v1::{PermissionLevel, ProjectAccess},
    drawings::v1::{self as pb, drawing_service_server::DrawingService},
};
use connectability_store::outbox::RelayWaker;
use tonic::{Request, Response, Status, Streaming};

use connectability_sync::{
    Foundation,
    api::{Member, ToolApi, db_err},
    messages::{self, Answers, UploadRules},
};

use crate::{
    db::{self, AreaRow, Copy, DrawingRow, FileRow, MarkupRow, RevisionRow, SetRow},
    domain::{self, AREA, DRAWING, FILE, MARKUP, PROJECT, PUBLISH, REVISION, SET, USER, reason},
    events,
};

mod convert;
mod usecases;

use convert::*;

#[derive(Clone)]
pub struct DrawingApi {
    /// The parts every synced tool's handlers share (engine: `connectability_sync::api`).
    core: ToolApi,
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
            create_ms: self.core.clock.now_ms(),
        };
        db::insert(&mut *self.core.read().await?, std::slice::from_ref(&area))
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
            &mut *self.core.read().await?,
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
            create_ms: self.core.clock.now_ms(),
        };
        db::insert(&mut *self.core.read().await?, std::slice::from_ref(&set))
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
            &mut *self.core.read().await?,
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
        self.core.upload_file(req, PermissionLevel::Admin).await
    }

    type DownloadFileStream = Answers<pb::DownloadFileResponse>;

    async fn download_file(
        &self,
        req: Request<pb::DownloadFileRequest>,
    ) -> Result<Response<Self::DownloadFileStream>, Status> {
        let (file, viewer) = self.core.readable_file(&req).await?;
        // Files of unpublished revisions are for Drawings admins only (D5).
        if !domain::is_admin(&viewer.access)
            && !db::file_is_published(&mut *self.core.read().await?, &file.id)
                .await
                .map_err(db_err)?
        {
            return Err(not_found("file", &file.id));
        }
        self.core.download(file).await
    }

    async fn create_drawing_revision(
        &self,
        req: Request<pb::CreateDrawingRevisionRequest>,
    ) -> Result<Response<pb::DrawingRevision>, Status> {
        let caller = connectability_auth::caller(&req)?;
        Ok(Response::new(
            self.create_revision(&caller, req.into_inner()).await?,
        ))
    }

    async fn publish_drawing_revisions(
        &self,
        req: Request<pb::PublishDrawingRevisionsRequest>,
    ) -> Result<Response<pb::PublishDrawingRevisionsResponse>, Status> {
        let caller = connectability_auth::caller(&req)?;
        Ok(Response::new(
            self.publish(&caller, req.into_inner()).await?,
        ))
    }

    async fn update_drawing(
        &self,
        req: Request<pb::UpdateDrawingRequest>,
    ) -> Result<Response<pb::Drawing>, Status> {
        let caller = connectability_auth::caller(&req)?;
        Ok(Response::new(
            self.update_drawing(&caller, req.into_inner()).await?,
        ))
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
        let now = self.core.clock.now_ms();
        d.deleted_ms = Some(now);
        d.version += 1;
        d.update_ms = now;
        let mut tx = self.core.begin().await?;
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
        Ok(Response::new(
            self.list_drawings(&caller, req.into_inner()).await?,
        ))
    }

    async fn get_drawing(
        &self,
        req: Request<pb::GetDrawingRequest>,
    ) -> Result<Response<pb::Drawing>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let id = Id::parse(DRAWING, "id", &req.get_ref().id)?;
        let (d, access, _) = self.visible_drawing(&caller, &id).await?;
        let current = db::revisions_of(
            &mut *self.core.read().await?,
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
            &mut *self.core.read().await?,
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
            &mut *self.core.read().await?,
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
        Ok(Response::new(
            self.create_markup(&caller, req.into_inner()).await?,
        ))
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
            &mut *self.core.read().await?,
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
        self.core.get_sync_status(req).await
    }

    type WatchSyncStatusStream = Answers<pb::SyncStatus>;

    async fn watch_sync_status(
        &self,
        req: Request<pb::WatchSyncStatusRequest>,
    ) -> Result<Response<Self::WatchSyncStatusStream>, Status> {
        self.core.watch_sync_status(req).await
    }

    type DownloadRevisionFileStream = Answers<pb::DownloadFileResponse>;

    async fn download_revision_file(
        &self,
        req: Request<pb::DownloadRevisionFileRequest>,
    ) -> Result<Response<Self::DownloadRevisionFileStream>, Status> {
        let caller = connectability_auth::caller(&req)?;
        Ok(Response::new(
            self.revision_file(&caller, req.into_inner()).await?,
        ))
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
        let count = db::published_revision_count(&mut *self.core.read().await?, project.as_str())
            .await
            .map_err(db_err)?;
        Ok(Response::new(pb::PublishedRevisionCount {
            project_id: project.to_string(),
            count,
            limit: self.limits.max_connected_revisions,
        }))
    }
}
