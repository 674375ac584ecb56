//! The shared `connectability.sync.v1` messages every synced tool service answers with: a
//! connection's sync status and the tool's stored files. A tool's handlers for
//! `GetSyncStatus`, `WatchSyncStatus`, `UploadFile` and `DownloadFile` authorize in the
//! tool's terms and leave the messages to these functions.

use std::{pin::Pin, sync::Arc};

use connectability_blobs::{
    Blobs,
    files::{self, FileRow, UploadHeader, UploadPart},
};
use connectability_platform::{clock::Clock, time::timestamp};
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
    pb::SyncStatus {
        lag: Some(status::lag(&s, now_ms)),
        connection_id: s.connection_id,
        upstream_project_id: s.upstream_project_id,
        downstream_project_id: s.downstream_project_id,
        state: s.state as i32,
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
pub async fn download(
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
