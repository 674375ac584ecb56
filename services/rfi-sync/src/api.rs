//! The gRPC layer of the RFIs tool: parse, check the caller's RFIS level (directory over
//! gRPC), apply the rules in `domain`, write through `db` with events in one transaction.
//! Copying downstream happens in `sync`, driven by those events.

use std::collections::HashMap;

use connectability_auth::Caller;
use connectability_events::Envelope;
use connectability_platform::{
    directory::Tool,
    drawings::DrawingsGateway,
    errors::{failed_precondition, internal, invalid_argument, not_found, permission_denied},
    input::{Id, parse_request_id, parse_text},
    paging::PageRequest,
    time::timestamp,
};
use connectability_proto::directory::v1::PermissionLevel;
use connectability_proto::rfis::v1::{self as pb, rfi_service_server::RfiService};
use connectability_store::{Tx, outbox::RelayWaker};
use tonic::{Request, Response, Status, Streaming};

use connectability_sync::{
    Foundation,
    api::{Member as Viewer, ToolApi, db_err},
    messages::{Answers, UploadRules},
};

use crate::{
    db::{self, FileRow, ResponseRow, RfiRow},
    domain::{
        self, FILE, MAX_SUBJECT, MAX_TEXT, PROJECT, Participants, RESPONSE, REVISION, RFI,
        RfiStatus, USER, reason,
    },
    events, pdf,
};

mod checks;
mod convert;
mod usecases;

use checks::*;
use convert::*;

#[derive(Clone)]
pub struct RfiApi {
    /// The parts every synced tool's handlers share (engine: `connectability_sync::api`).
    core: ToolApi,
    drawings: DrawingsGateway,
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
impl RfiService for RfiApi {
    async fn create_rfi(
        &self,
        req: Request<pb::CreateRfiRequest>,
    ) -> Result<Response<pb::Rfi>, Status> {
        let caller = connectability_auth::caller(&req)?;
        Ok(Response::new(self.create(&caller, req.into_inner()).await?))
    }

    async fn get_rfi(&self, req: Request<pb::GetRfiRequest>) -> Result<Response<pb::Rfi>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let id = Id::parse(RFI, "id", &req.get_ref().id)?;
        let mut conn = self.core.read().await?;
        let (r, v) = self.visible(&mut conn, &caller, &id).await?;
        Ok(Response::new(self.rfi_pb(&mut conn, &v, r).await?))
    }

    async fn list_rfis(
        &self,
        req: Request<pb::ListRfisRequest>,
    ) -> Result<Response<pb::ListRfisResponse>, Status> {
        let caller = connectability_auth::caller(&req)?;
        Ok(Response::new(self.list(&caller, req.into_inner()).await?))
    }

    async fn update_rfi(
        &self,
        req: Request<pb::UpdateRfiRequest>,
    ) -> Result<Response<pb::Rfi>, Status> {
        let caller = connectability_auth::caller(&req)?;
        Ok(Response::new(self.update(&caller, req.into_inner()).await?))
    }

    async fn add_rfi_response(
        &self,
        req: Request<pb::AddRfiResponseRequest>,
    ) -> Result<Response<pb::Rfi>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let id = Id::parse(RFI, "rfi_id", &r.rfi_id)?;
        let body = parse_text("body", &r.body, MAX_TEXT)?;
        if body.trim().is_empty() {
            return Err(invalid_argument("body", "must not be empty"));
        }
        let file_ids = domain::parse_ids(FILE, "attachment_file_ids", &r.attachment_file_ids)?;
        let mut conn = self.core.read().await?;
        let (rfi, v) = self.visible(&mut conn, &caller, &id).await?;
        must_be_own(&rfi)?;
        if !domain::can_contribute(&v.access) {
            return Err(permission_denied(
                "you need at least STANDARD on RFIs in this project",
            ));
        }
        must_be_open(&rfi)?;
        self.check_files(&mut conn, "attachment_file_ids", &rfi.project_id, &file_ids)
            .await?;
        drop(conn);
        let now = self.core.clock.now_ms();
        let response = ResponseRow {
            id: Id::generate(RESPONSE).to_string(),
            rfi_id: rfi.id.clone(),
            author_id: v.user.clone(),
            body,
            file_ids,
            official: false,
            create_ms: now,
        };
        Ok(Response::new(self.add_response(&v, &rfi, response).await?))
    }

    async fn mark_official_response(
        &self,
        req: Request<pb::MarkOfficialResponseRequest>,
    ) -> Result<Response<pb::Rfi>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let id = Id::parse(RFI, "rfi_id", &r.rfi_id)?;
        let response = Id::parse(RESPONSE, "response_id", &r.response_id)?;
        let mut conn = self.core.read().await?;
        let (rfi, v) = self.managed(&mut conn, &caller, &id).await?;
        must_be_open(&rfi)?;
        let responses = db::responses_of(&mut conn, std::slice::from_ref(&rfi.id))
            .await
            .map_err(db_err)?;
        if !responses.iter().any(|x| x.id == response.as_str()) {
            return Err(not_found("response", response.as_str()));
        }
        drop(conn);
        let mut tx = self.core.begin().await?;
        db::mark_official(&mut tx, &rfi.id, response.as_str())
            .await
            .map_err(db_err)?;
        let updated = RfiRow {
            version: rfi.version + 1,
            update_ms: self.core.clock.now_ms(),
            ..rfi.clone()
        };
        if !db::update_rfi(&mut tx, &updated, rfi.version)
            .await
            .map_err(db_err)?
        {
            return Err(changed_meanwhile());
        }
        self.commit(tx, &[]).await?;
        Ok(Response::new(
            self.rfi_pb(&mut *self.core.read().await?, &v, updated)
                .await?,
        ))
    }

    async fn close_rfi(
        &self,
        req: Request<pb::CloseRfiRequest>,
    ) -> Result<Response<pb::Rfi>, Status> {
        let caller = connectability_auth::caller(&req)?;
        Ok(Response::new(self.close(&caller, req.into_inner()).await?))
    }

    async fn reopen_rfi(
        &self,
        req: Request<pb::ReopenRfiRequest>,
    ) -> Result<Response<pb::Rfi>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let id = Id::parse(RFI, "id", &req.get_ref().id)?;
        let (rfi, v) = self
            .managed(&mut *self.core.read().await?, &caller, &id)
            .await?;
        if rfi.status != RfiStatus::Closed as i64 {
            return Err(failed_precondition(
                reason::RFI_NOT_CLOSED,
                format!("RFI #{} is not closed", rfi.number),
            ));
        }
        let updated = RfiRow {
            status: RfiStatus::Reopened as i64,
            close_ms: None,
            version: rfi.version + 1,
            update_ms: self.core.clock.now_ms(),
            ..rfi.clone()
        };
        let event = events::rfi_reopened(&updated, &v.user);
        Ok(Response::new(
            self.save(&v, rfi.version, updated, vec![event]).await?,
        ))
    }

    async fn delete_rfi(&self, req: Request<pb::DeleteRfiRequest>) -> Result<Response<()>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let id = Id::parse(RFI, "id", &req.get_ref().id)?;
        let (rfi, v) = self
            .managed(&mut *self.core.read().await?, &caller, &id)
            .await?;
        let now = self.core.clock.now_ms();
        let updated = RfiRow {
            status: RfiStatus::Deleted as i64,
            deleted_ms: Some(now),
            version: rfi.version + 1,
            update_ms: now,
            ..rfi.clone()
        };
        let event = events::rfi_deleted(&updated, &v.user);
        self.save(&v, rfi.version, updated, vec![event]).await?;
        Ok(Response::new(()))
    }

    async fn upload_file(
        &self,
        req: Request<Streaming<pb::UploadFileRequest>>,
    ) -> Result<Response<pb::File>, Status> {
        self.core.upload_file(req, PermissionLevel::Standard).await
    }

    type DownloadFileStream = Answers<pb::DownloadFileResponse>;

    async fn download_file(
        &self,
        req: Request<pb::DownloadFileRequest>,
    ) -> Result<Response<Self::DownloadFileStream>, Status> {
        let (file, v) = self.core.readable_file(&req).await?;
        // A file of an RFI is the RFI's: it downloads only for someone who sees one of the
        // RFIs holding it (a private RFI's attachments stay with its participants). A file
        // no RFI holds yet is an upload in progress, readable by the project's RFI members.
        let holders =
            db::rfis_holding_file(&mut *self.core.read().await?, &file.project_id, &file.id)
                .await
                .map_err(db_err)?;
        if !holders.is_empty()
            && !holders
                .iter()
                .any(|r| (r.copy.is_copy() || r.deleted_ms.is_none()) && v.sees(r))
        {
            return Err(not_found("file", &file.id));
        }
        self.core.download(file).await
    }

    async fn get_rfi_settings(
        &self,
        req: Request<pb::GetRfiSettingsRequest>,
    ) -> Result<Response<pb::RfiSettings>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let project = Id::parse(PROJECT, "project_id", &req.get_ref().project_id)?;
        self.core.viewer(&caller, project.as_str()).await?;
        let official_responses_only =
            db::official_only(&mut *self.core.read().await?, project.as_str())
                .await
                .map_err(db_err)?;
        Ok(Response::new(pb::RfiSettings {
            project_id: project.to_string(),
            official_responses_only,
        }))
    }

    async fn update_rfi_settings(
        &self,
        req: Request<pb::UpdateRfiSettingsRequest>,
    ) -> Result<Response<pb::RfiSettings>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let project = Id::parse(PROJECT, "project_id", &r.project_id)?;
        let v = self.core.viewer(&caller, project.as_str()).await?;
        if !v.admin() {
            return Err(permission_denied(
                "only RFI admins of this project change its settings",
            ));
        }
        db::set_official_only(
            &mut *self.core.read().await?,
            project.as_str(),
            r.official_responses_only,
            self.core.clock.now_ms(),
        )
        .await
        .map_err(db_err)?;
        Ok(Response::new(pb::RfiSettings {
            project_id: project.to_string(),
            official_responses_only: r.official_responses_only,
        }))
    }

    async fn link_rfi(
        &self,
        req: Request<pb::LinkRfiRequest>,
    ) -> Result<Response<pb::Rfi>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let id = Id::parse(RFI, "rfi_id", &r.rfi_id)?;
        let copy_id = Id::parse(RFI, "connected_rfi_id", &r.connected_rfi_id)?;
        let mut conn = self.core.read().await?;
        let (own, copy, v) = self.own_and_copy(&mut conn, &caller, &id, &copy_id).await?;
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
        Ok(Response::new(self.rfi_pb(&mut conn, &v, own).await?))
    }

    async fn copy_official_answer(
        &self,
        req: Request<pb::CopyOfficialAnswerRequest>,
    ) -> Result<Response<pb::Rfi>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let r = req.into_inner();
        let id = Id::parse(RFI, "rfi_id", &r.rfi_id)?;
        let copy_id = Id::parse(RFI, "connected_rfi_id", &r.connected_rfi_id)?;
        let mut conn = self.core.read().await?;
        let (own, copy, v) = self.own_and_copy(&mut conn, &caller, &id, &copy_id).await?;
        must_be_open(&own)?;
        let official = db::responses_of(&mut conn, std::slice::from_ref(&copy.id))
            .await
            .map_err(db_err)?
            .into_iter()
            .find(|x| x.official)
            .ok_or_else(|| {
                failed_precondition(
                    reason::NO_OFFICIAL_ANSWER,
                    format!("connected RFI #{} has no official answer", copy.number),
                )
            })?;
        drop(conn);
        let now = self.core.clock.now_ms();
        let response = ResponseRow {
            id: Id::generate(RESPONSE).to_string(),
            rfi_id: own.id.clone(),
            author_id: v.user.clone(),
            body: format!(
                "Official answer to connected RFI #{} ({}): {}",
                copy.number, copy.subject, official.body
            ),
            // The copy's files are files of this same project.
            file_ids: official.file_ids,
            official: false,
            create_ms: now,
        };
        Ok(Response::new(self.add_response(&v, &own, response).await?))
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
