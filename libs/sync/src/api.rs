//! What every synced tool's gRPC layer stands on: its database, files, relay, directory and
//! clock in one [`ToolApi`], with the reads, transactions and membership checks each
//! handler starts with. A tool's API holds one and adds only its own rules.

use std::sync::Arc;

use connectability_auth::Caller;
use connectability_blobs::Blobs;
use connectability_blobs::files::FileRow;
use connectability_platform::{
    clock::Clock,
    directory::{DirectoryGateway, Tool},
    errors::{internal, not_found, permission_denied},
};
use connectability_proto::directory::v1::{PermissionLevel, ProjectAccess};
use connectability_proto::sync::v1 as pb;
use connectability_store::{Db, Tx, outbox::RelayWaker};
use tonic::{Request, Response, Status, Streaming};

use crate::{
    Foundation,
    messages::{Answers, FileApi, SyncStatusApi, UploadRules},
};

/// The parts a tool's handlers use, and the engine's handlers they delegate to.
#[derive(Clone)]
pub struct ToolApi {
    pub tool: Tool,
    pub db: Db,
    pub blobs: Blobs,
    /// Wakes the outbox relay after a commit that wrote events.
    pub relay: RelayWaker,
    pub directory: DirectoryGateway,
    pub clock: Arc<dyn Clock>,
    /// UploadFile and DownloadFile, as every synced tool serves them.
    pub files: FileApi,
    /// GetSyncStatus and WatchSyncStatus, as every synced tool answers them.
    pub sync_status: SyncStatusApi,
}

/// A person calling, with their access to one project.
#[derive(Debug, Clone)]
pub struct Member {
    pub user: String,
    pub access: ProjectAccess,
}

impl ToolApi {
    /// The API side of tool `tool` on `base`; `relay` is the engine's (see
    /// [`crate::Workers::relay_waker`]).
    pub fn new(tool: Tool, base: &Foundation, relay: RelayWaker, upload: UploadRules) -> Self {
        let Foundation {
            db,
            blobs,
            clock,
            directory,
            ..
        } = base.clone();
        let sync_status = SyncStatusApi {
            db: db.clone(),
            clock: clock.clone(),
            directory: directory.clone(),
            tool,
        };
        let files = FileApi {
            db: db.clone(),
            blobs: blobs.clone(),
            rules: upload,
        };
        Self {
            tool,
            db,
            blobs,
            relay,
            directory,
            clock,
            files,
            sync_status,
        }
    }

    /// A pooled connection for reads.
    pub async fn read(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, Status> {
        self.db.pool().acquire().await.map_err(db_err)
    }

    pub async fn begin(&self) -> Result<Tx, Status> {
        self.db.begin().await.map_err(db_err)
    }

    /// The person calling (a tool is used by project members; services and operators get
    /// PERMISSION_DENIED).
    pub fn user_of<'c>(&self, caller: &'c Caller) -> Result<&'c str, Status> {
        match caller {
            Caller::User { user_id } => Ok(user_id),
            _ => Err(permission_denied(format!(
                "the {} tool is used by project members",
                self.tool.label()
            ))),
        }
    }

    /// The caller's access to a project they may see (else NOT_FOUND), with at least `min`
    /// on this tool (else PERMISSION_DENIED).
    pub async fn member(
        &self,
        caller: &Caller,
        project_id: &str,
        min: PermissionLevel,
    ) -> Result<Member, Status> {
        let user = self.user_of(caller)?;
        let access = self
            .directory
            .tool_access(user, project_id, self.tool, min)
            .await?;
        Ok(Member {
            user: user.to_string(),
            access,
        })
    }

    /// At least READ_ONLY on this tool.
    pub async fn viewer(&self, caller: &Caller, project_id: &str) -> Result<Member, Status> {
        self.member(caller, project_id, PermissionLevel::ReadOnly)
            .await
    }

    /// At least STANDARD on this tool.
    pub async fn contributor(&self, caller: &Caller, project_id: &str) -> Result<Member, Status> {
        self.member(caller, project_id, PermissionLevel::Standard)
            .await
    }

    /// A viewer of the project a record lives in. A caller who may not see that project
    /// gets the record's own NOT_FOUND (`missing`), so ids of other companies' records
    /// reveal nothing; one who sees it without READ_ONLY gets PERMISSION_DENIED; a directory
    /// that cannot answer stays UNAVAILABLE (a NOT_FOUND then would tell a client to stop
    /// retrying a record that exists: the fault suite's RFI closes met it).
    pub async fn viewer_of_record(
        &self,
        caller: &Caller,
        project_id: &str,
        missing: impl Fn() -> Status,
    ) -> Result<Member, Status> {
        self.viewer(caller, project_id)
            .await
            .map_err(|e| record_access_error(e, missing))
    }
}

/// The answer for a record when its project's access check failed with `e`: only "no such
/// project for you" becomes the record's NOT_FOUND.
fn record_access_error(e: Status, missing: impl Fn() -> Status) -> Status {
    match e.code() {
        tonic::Code::NotFound => missing(),
        _ => e,
    }
}

/// For a record read on someone's behalf: a project they may not see (NOT_FOUND) or not
/// read (PERMISSION_DENIED) hides the record (`missing`); any other failure (a directory
/// that cannot answer) stays as it is, so the caller retries.
pub fn hide_record(e: Status, missing: impl FnOnce() -> Status) -> Status {
    match e.code() {
        tonic::Code::NotFound | tonic::Code::PermissionDenied => missing(),
        _ => e,
    }
}

/// The RPCs every synced tool serves the same way; a tool's handler calls one of these and
/// adds only its own rule (who may upload; which stored files a viewer may read).
impl ToolApi {
    /// `UploadFile` for uploaders with at least `min` on this tool in the file's project.
    pub async fn upload_file(
        &self,
        req: Request<Streaming<pb::UploadFileRequest>>,
        min: PermissionLevel,
    ) -> Result<Response<pb::File>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let authorize = |project: String| async move {
            let member = self.member(&caller, &project, min).await?;
            Ok(member.access.project_company_id)
        };
        let file = self
            .files
            .upload(self.clock.now_ms(), req.into_inner(), authorize);
        Ok(Response::new(file.await?))
    }

    /// The stored file a `DownloadFile` names, with the caller as a viewer of its project;
    /// NOT_FOUND for anyone who is not. The tool then applies its own rule and calls
    /// [`Self::download`].
    pub async fn readable_file(
        &self,
        req: &Request<pb::DownloadFileRequest>,
    ) -> Result<(FileRow, Member), Status> {
        let caller = connectability_auth::caller(req)?;
        let file = self.files.get(&req.get_ref().id).await?;
        let viewer = self
            .viewer(&caller, &file.project_id)
            .await
            .map_err(|e| hide_record(e, || not_found("file", &file.id)))?;
        Ok((file, viewer))
    }

    /// `DownloadFile`'s answer once the tool allowed it: metadata, then the bytes.
    pub async fn download(
        &self,
        file: FileRow,
    ) -> Result<Response<Answers<pb::DownloadFileResponse>>, Status> {
        Ok(Response::new(self.files.download(file).await?))
    }

    pub async fn get_sync_status(
        &self,
        req: Request<pb::GetSyncStatusRequest>,
    ) -> Result<Response<pb::SyncStatus>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let status = self.sync_status.get(&caller, &req.get_ref().connection_id);
        Ok(Response::new(status.await?))
    }

    pub async fn watch_sync_status(
        &self,
        req: Request<pb::WatchSyncStatusRequest>,
    ) -> Result<Response<Answers<pb::SyncStatus>>, Status> {
        let caller = connectability_auth::caller(&req)?;
        let updates = self
            .sync_status
            .watch(&caller, &req.get_ref().connection_id);
        Ok(Response::new(updates.await?))
    }
}

/// A database error as the client sees it: INTERNAL, details in the log.
pub fn db_err(e: sqlx::Error) -> Status {
    internal(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unseen_project_hides_a_record_and_an_outage_stays_retryable() {
        let missing = || Status::not_found("RFI `rfi_1` not found");
        let hidden = record_access_error(Status::not_found("project"), missing);
        assert_eq!(hidden.message(), "RFI `rfi_1` not found");
        for code in [
            tonic::Code::PermissionDenied,
            tonic::Code::Unavailable,
            tonic::Code::DeadlineExceeded,
            tonic::Code::Internal,
        ] {
            let e = record_access_error(Status::new(code, "directory"), missing);
            assert_eq!(e.code(), code, "{e:?}");
        }
        let hidden = hide_record(Status::permission_denied("level"), missing);
        assert_eq!(hidden.code(), tonic::Code::NotFound);
        let outage = hide_record(Status::unavailable("directory"), missing);
        assert_eq!(outage.code(), tonic::Code::Unavailable);
    }
}
