//! The shared `connectability.sync.v1` messages every synced tool service answers with: a
//! connection's sync status and the tool's stored files. A tool's handlers for
//! `GetSyncStatus`, `WatchSyncStatus`, `UploadFile` and `DownloadFile` authorize in the
//! tool's terms and leave the messages to these functions.

use std::{future::Future, pin::Pin, sync::Arc};

use connectability_blobs::{
    Blobs,
    files::{self, FileRow, UploadHeader, UploadPart},
};
use connectability_platform::{clock::Clock, errors::internal, time::timestamp};
use connectability_proto::sync::v1 as pb;
use connectability_store::Db;
use futures::Stream;
use tonic::Status;

use crate::{SyncRow, status};

/// A stream of answers, as tonic's server-streaming handlers return it.
pub type Answers<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub fn file_pb(f: FileRow) -> pb::File {
    pb::File {
        id: f.id,
        project_id: f.project_id,
        filename: f.filename,
        size_bytes: f.size_bytes,
        sha256: f.sha256,
        content_type: f.content_type,
        create_time: Some(timestamp(f.create_ms)),
    }
}

pub fn sync_status_pb(s: SyncRow, now_ms: i64) -> pb::SyncStatus {
    // A parked copy shows as FAILED while the connection is otherwise running.
    let state = match &s.failure {
        Some(_) if s.state != crate::SyncState::Stopped as i64 => pb::SyncState::Failed as i32,
        _ => s.state as i32,
    };
    pb::SyncStatus {
        lag: Some(status::lag(&s, now_ms)),
        failure: s.failure.clone().unwrap_or_default(),
        connection_id: s.connection_id,
        upstream_project_id: s.upstream_project_id,
        downstream_project_id: s.downstream_project_id,
        state,
        items_total: s.items_total,
        items_copied: s.items_copied,
        last_copy_time: s.last_copy_ms.map(timestamp),
    }
}

/// Upload messages as the shared file upload (`connectability_blobs::files`) reads them.
pub fn upload_part(m: pb::UploadFileRequest) -> Option<UploadPart> {
    use pb::upload_file_request::Part;
    Some(match m.part? {
        Part::Header(h) => UploadPart::Header(UploadHeader {
            project_id: h.project_id,
            filename: h.filename,
            content_type: h.content_type,
        }),
        Part::Chunk(c) => UploadPart::Chunk(c),
    })
}

/// A stored file's download: its metadata, then its bytes in chunks.
async fn download(
    blobs: &Blobs,
    file: FileRow,
) -> Result<Answers<pb::DownloadFileResponse>, Status> {
    use pb::download_file_response::Part;
    let key = file.object_key.clone();
    let first = pb::DownloadFileResponse {
        part: Some(Part::File(file_pb(file))),
    };
    let chunk = |c| pb::DownloadFileResponse {
        part: Some(Part::Chunk(c)),
    };
    Ok(Box::pin(files::download(blobs, &key, first, chunk).await?))
}

/// A download of the metadata only (no bytes).
pub fn metadata_only(file: FileRow) -> Answers<pb::DownloadFileResponse> {
    let first = pb::DownloadFileResponse {
        part: Some(pb::download_file_response::Part::File(file_pb(file))),
    };
    Box::pin(tokio_stream::once(Ok(first)))
}

/// `WatchSyncStatus`: the status `first`, then each change, while `watcher` may still see
/// the connection (see [`status::watch`]).
pub fn watch(
    db: Db,
    clock: Arc<dyn Clock>,
    first: SyncRow,
    watcher: status::Watcher,
) -> Result<Answers<pb::SyncStatus>, Status> {
    Ok(Box::pin(status::watch(
        db,
        clock,
        first,
        sync_status_pb,
        watcher,
    )?))
}

/// `GetSyncStatus` and `WatchSyncStatus`, the same for every tool: a connection's status
/// for a person whose access to its downstream project passes
/// [`crate::domain::may_watch_sync`]
/// (anyone else gets NOT_FOUND, as for a connection that does not exist; services and
/// operators PERMISSION_DENIED).
#[derive(Clone)]
pub struct SyncStatusApi {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub directory: connectability_platform::directory::DirectoryGateway,
    pub tool: connectability_platform::directory::Tool,
}

impl SyncStatusApi {
    pub async fn get(
        &self,
        caller: &connectability_auth::Caller,
        connection_id: &str,
    ) -> Result<pb::SyncStatus, Status> {
        let row = self.watched(caller, connection_id).await?;
        Ok(sync_status_pb(row, self.clock.now_ms()))
    }

    pub async fn watch(
        &self,
        caller: &connectability_auth::Caller,
        connection_id: &str,
    ) -> Result<Answers<pb::SyncStatus>, Status> {
        let first = status::first(|| self.watched(caller, connection_id)).await?;
        let watcher = status::Watcher {
            user: person(caller)?.to_string(),
            directory: self.directory.clone(),
            tool: self.tool,
        };
        watch(self.db.clone(), self.clock.clone(), first, watcher)
    }

    /// The connection's row, if the caller may watch it.
    async fn watched(
        &self,
        caller: &connectability_auth::Caller,
        connection_id: &str,
    ) -> Result<SyncRow, Status> {
        let id = connectability_platform::input::Id::parse("con", "connection_id", connection_id)?;
        let hidden = || connectability_platform::errors::not_found("connection sync", id.as_str());
        let user = person(caller)?;
        let mut conn = self.db.pool().acquire().await.map_err(internal)?;
        let row = crate::db::get_sync(&mut conn, id.as_str())
            .await
            .map_err(internal)?
            .ok_or_else(hidden)?;
        drop(conn);
        let access = self
            .directory
            .project_access(&row.downstream_project_id, user)
            .await?;
        if !access.is_some_and(|a| crate::domain::may_watch_sync(&a, self.tool)) {
            return Err(hidden());
        }
        Ok(row)
    }
}

/// The person calling: sync status is for project members.
fn person(caller: &connectability_auth::Caller) -> Result<&str, Status> {
    match caller {
        connectability_auth::Caller::User { user_id } => Ok(user_id),
        _ => Err(connectability_platform::errors::permission_denied(
            "sync status is for project members",
        )),
    }
}

/// What a tool accepts in `UploadFile`.
#[derive(Debug, Clone, Copy)]
pub struct UploadRules {
    /// The id prefix of the tool's files (`fil`).
    pub file_prefix: &'static str,
    pub max_bytes: usize,
    /// Only this media type (drawings: `application/pdf`), or any well-formed one.
    pub only_content_type: Option<&'static str>,
    /// A check of the first bytes (drawings: a PDF header).
    pub accept: Option<files::ContentCheck>,
}

impl UploadRules {
    /// Any well-formed media type, up to `max_bytes`.
    pub fn any(file_prefix: &'static str, max_bytes: usize) -> Self {
        Self {
            file_prefix,
            max_bytes,
            only_content_type: None,
            accept: None,
        }
    }
}

/// A tool's stored files as its `UploadFile` and `DownloadFile` serve them; the tool adds
/// who may upload and who may read which file.
#[derive(Clone)]
pub struct FileApi {
    pub db: Db,
    pub blobs: Blobs,
    pub rules: UploadRules,
}

impl FileApi {
    /// `UploadFile`: the header parsed (project, file name, media type, each refused with
    /// INVALID_ARGUMENT naming `header.<field>`), `authorize` asked with the project id for
    /// the company that owns it (the tool's permission rule), then the bytes streamed to
    /// storage and the row recorded.
    pub async fn upload<F, Fut>(
        &self,
        now_ms: i64,
        mut stream: tonic::Streaming<pb::UploadFileRequest>,
        authorize: F,
    ) -> Result<pb::File, Status>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<String, Status>>,
    {
        use connectability_platform::input::{Id, parse_content_type, parse_name};
        let rules = self.rules;
        let header = files::upload_header(&mut stream, upload_part).await?;
        let project = Id::parse("prj", "header.project_id", &header.project_id)?;
        let filename = parse_name("header.filename", &header.filename)?;
        let content_type = match rules.only_content_type {
            Some(only) if header.content_type != only => {
                return Err(connectability_platform::errors::invalid_argument(
                    "header.content_type",
                    format!("must be {only}"),
                ));
            }
            _ => parse_content_type("header.content_type", &header.content_type)?,
        };
        let company_id = authorize(project.to_string()).await?;
        let file = files::NewFile {
            id: Id::generate(rules.file_prefix).to_string(),
            project_id: project.to_string(),
            company_id,
            filename,
            content_type,
            now_ms,
        };
        let file = files::upload(
            &self.blobs,
            self.db.pool(),
            stream,
            upload_part,
            file,
            rules.max_bytes,
            rules.accept,
        )
        .await?;
        Ok(file_pb(file))
    }

    /// The stored file `raw_id` names (INVALID_ARGUMENT on `id`, else NOT_FOUND); the tool
    /// then decides whether the caller may read it.
    pub async fn get(&self, raw_id: &str) -> Result<FileRow, Status> {
        let id = connectability_platform::input::Id::parse(self.rules.file_prefix, "id", raw_id)?;
        let mut conn = self.db.pool().acquire().await.map_err(internal)?;
        connectability_store::table::get::<FileRow>(&mut conn, id.as_str())
            .await
            .map_err(internal)?
            .ok_or_else(|| connectability_platform::errors::not_found("file", id.as_str()))
    }

    /// `DownloadFile` once the tool allowed it: metadata, then the bytes.
    pub async fn download(
        &self,
        file: FileRow,
    ) -> Result<Answers<pb::DownloadFileResponse>, Status> {
        download(&self.blobs, file).await
    }
}
