//! The gRPC layer of the Submittals tool: parse, check the caller's SUBMITTALS level
//! (directory over gRPC), apply the rules in `domain`, write through `db` with events in one
//! transaction. Copying downstream happens in `sync`, driven by those events.

use std::collections::HashMap;

use connectability_auth::Caller;
use connectability_events::Envelope;
use connectability_platform::{
    directory::Tool,
    errors::{
        bad_field, failed_precondition, internal, invalid_argument, not_found, permission_denied,
    },
    input::{Id, parse_request_id, parse_text},
    paging::PageRequest,
    time::timestamp,
};
use connectability_proto::directory::v1::PermissionLevel;
use connectability_proto::submittals::v1::{
    self as pb, submittal_service_server::SubmittalService,
};
use connectability_store::outbox::RelayWaker;
use tonic::{Request, Response, Status, Streaming};

use connectability_sync::{
    Foundation,
    api::{Member as Viewer, ToolApi, db_err},
    messages::{Answers, UploadRules},
};

use crate::{
    db::{self, DistributionRow, FileRow, SubmittalRow},
    domain::{
        self, Approver, DISTRIBUTION, FILE, General, MAX_TEXT, MAX_TITLE, PROJECT, SUBMITTAL,
        SubmittalStatus, USER, reason,
    },
    events, pdf,
};

mod checks;
mod convert;
mod usecases;

use checks::*;
use convert::*;

#[derive(Clone)]
pub struct SubmittalApi {
    /// The parts every synced tool's handlers share (engine: `connectability_sync::api`).
    core: ToolApi,
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

#[tonic::async_trait]
impl SubmittalService for SubmittalApi {
    async fn create_submittal(
        &self,
        req: Request<pb::CreateSubmittalRequest>,
    ) -> Result<Response<pb::Submittal>, Status> {
        let caller = connectability_auth::caller(&req)?;
        Ok(Response::new(self.create(&caller, req.into_inner()).await?))
    }

    async fn get_submittal(
        &self,
        req: Request<pb::GetSubmittalRequest>,
    ) -> Result<Response<pb::Submittal>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let id = Id::parse(SUBMITTAL, "id", &req.get_ref().id)?;
        let (s, _) = self
            .visible(&mut *self.core.read().await?, &caller, &id)
            .await?;
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
        self.core.viewer(&caller, project.as_str()).await?;
        let mut conn = self.core.read().await?;
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
        Ok(Response::new(self.update(&caller, req.into_inner()).await?))
    }

    async fn create_submittal_revision(
        &self,
        req: Request<pb::CreateSubmittalRevisionRequest>,
    ) -> Result<Response<pb::Submittal>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let id = Id::parse(SUBMITTAL, "submittal_id", &r.submittal_id)?;
        let attachments = domain::parse_ids(FILE, "attachment_file_ids", &r.attachment_file_ids)?;
        let (current, v) = self
            .managed(&mut *self.core.read().await?, &caller, &id)
            .await?;
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
            update_ms: self.core.clock.now_ms(),
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
        Ok(Response::new(self.answer(&caller, req.into_inner()).await?))
    }

    async fn distribute_submittal(
        &self,
        req: Request<pb::DistributeSubmittalRequest>,
    ) -> Result<Response<pb::Distribution>, Status> {
        let caller = connectability_auth::caller(&req)?;
        Ok(Response::new(
            self.distribute(&caller, req.into_inner()).await?,
        ))
    }

    async fn list_distributions(
        &self,
        req: Request<pb::ListDistributionsRequest>,
    ) -> Result<Response<pb::ListDistributionsResponse>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let id = Id::parse(SUBMITTAL, "submittal_id", &req.get_ref().submittal_id)?;
        let mut conn = self.core.read().await?;
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
        let (current, v) = self
            .managed(&mut *self.core.read().await?, &caller, &id)
            .await?;
        must_be_open(&current)?;
        let updated = SubmittalRow {
            status: SubmittalStatus::Closed as i64,
            version: current.version + 1,
            update_ms: self.core.clock.now_ms(),
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
        let (current, v) = self
            .managed(&mut *self.core.read().await?, &caller, &id)
            .await?;
        if current.status != SubmittalStatus::Closed as i64 {
            return Err(failed_precondition(
                reason::SUBMITTAL_NOT_CLOSED,
                format!("submittal #{} is not closed", current.number),
            ));
        }
        let updated = SubmittalRow {
            status: SubmittalStatus::Reopened as i64,
            version: current.version + 1,
            update_ms: self.core.clock.now_ms(),
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
        let (current, v) = self
            .managed(&mut *self.core.read().await?, &caller, &id)
            .await?;
        let now = self.core.clock.now_ms();
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
        // Approvers with READ_ONLY attach files to their answers, so viewers may upload.
        self.core.upload_file(req, PermissionLevel::ReadOnly).await
    }

    type DownloadFileStream = Answers<pb::DownloadFileResponse>;

    async fn download_file(
        &self,
        req: Request<pb::DownloadFileRequest>,
    ) -> Result<Response<Self::DownloadFileStream>, Status> {
        let (file, _) = self.core.readable_file(&req).await?;
        self.core.download(file).await
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
        let mut conn = self.core.read().await?;
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
            self.core.clock.now_ms(),
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
        self.core.get_sync_status(req).await
    }

    type WatchSyncStatusStream = Answers<pb::SyncStatus>;

    async fn watch_sync_status(
        &self,
        req: Request<pb::WatchSyncStatusRequest>,
    ) -> Result<Response<Self::WatchSyncStatusStream>, Status> {
        self.core.watch_sync_status(req).await
    }
}
