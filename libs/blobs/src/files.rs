//! Files as every tool service keeps them: a row in its own `files` table (same columns in
//! each service) and the bytes under the owning company's prefix; streaming upload (a
//! header message, then chunks, size-capped) and download (metadata first, then chunks).

use bytes::{Bytes, BytesMut};
use connectability_store::{
    table,
    table::{Result, V, insert},
};
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use sqlx::{Row, any::AnyRow};
use tonic::{Status, Streaming};

use crate::{Blobs, CopyTarget, key};
use object_store::ObjectStoreExt as _;

/// Chunk size of downloads.
pub const DOWNLOAD_CHUNK: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRow {
    pub id: String,
    pub project_id: String,
    pub company_id: String,
    pub filename: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub object_key: String,
    pub create_ms: i64,
    /// The connection whose copy this file is; empty for originals.
    pub connection_id: String,
}

pub const FILE_COLUMNS: &[&str] = &[
    "id",
    "project_id",
    "company_id",
    "filename",
    "content_type",
    "size_bytes",
    "sha256",
    "object_key",
    "create_ms",
    "connection_id",
];

table!(FileRow, "files", FILE_COLUMNS);

impl FileRow {
    /// A new file `id` of a project, for `content`, stored under the company's prefix.
    pub fn new(
        id: String,
        project_id: &str,
        company_id: &str,
        filename: String,
        content_type: String,
        content: &[u8],
        now_ms: i64,
    ) -> Self {
        Self {
            object_key: key(company_id, project_id, &id),
            sha256: format!("{:x}", Sha256::digest(content)),
            size_bytes: content.len() as i64,
            id,
            project_id: project_id.to_string(),
            company_id: company_id.to_string(),
            filename,
            content_type,
            create_ms: now_ms,
            connection_id: String::new(),
        }
    }

    /// The copy of this file `to` a downstream project: same bytes, the downstream
    /// company's prefix, at the key the connection's tool derives for it
    /// ([`CopyTarget::key`]).
    pub fn copied_to(&self, id: String, to: &CopyTarget<'_>, now_ms: i64) -> Self {
        Self {
            object_key: to.key(&self.id),
            id,
            project_id: to.project_id.to_string(),
            company_id: to.company_id.to_string(),
            create_ms: now_ms,
            connection_id: to.connection_id.to_string(),
            ..self.clone()
        }
    }

    fn read_row(r: &AnyRow) -> Result<Self> {
        Ok(Self {
            id: r.try_get("id")?,
            project_id: r.try_get("project_id")?,
            company_id: r.try_get("company_id")?,
            filename: r.try_get("filename")?,
            content_type: r.try_get("content_type")?,
            size_bytes: r.try_get("size_bytes")?,
            sha256: r.try_get("sha256")?,
            object_key: r.try_get("object_key")?,
            create_ms: r.try_get("create_ms")?,
            connection_id: r.try_get("connection_id")?,
        })
    }

    fn row_values(&self) -> Vec<V> {
        vec![
            V::T(self.id.clone()),
            V::T(self.project_id.clone()),
            V::T(self.company_id.clone()),
            V::T(self.filename.clone()),
            V::T(self.content_type.clone()),
            V::I(self.size_bytes),
            V::T(self.sha256.clone()),
            V::T(self.object_key.clone()),
            V::I(self.create_ms),
            V::T(self.connection_id.clone()),
        ]
    }
}

/// The header of an upload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadHeader {
    pub project_id: String,
    pub filename: String,
    pub content_type: String,
}

/// One message of an upload stream, whatever the tool's proto calls it.
pub enum UploadPart {
    Header(UploadHeader),
    Chunk(Vec<u8>),
}

/// Reads the first message of an upload, which must be the header.
pub async fn upload_header<M>(
    stream: &mut Streaming<M>,
    part: fn(M) -> Option<UploadPart>,
) -> std::result::Result<UploadHeader, Status> {
    match stream.message().await?.and_then(part) {
        Some(UploadPart::Header(h)) => Ok(h),
        _ => Err(bad("header", "the first message must carry the header")),
    }
}

/// Uploads one replica stores at once; one more is refused with RESOURCE_EXHAUSTED (to be
/// retried) rather than queued: a queued upload's unread data would hold the HTTP/2
/// connection's flow-control window and stall the uploads sharing its connection.
pub const MAX_CONCURRENT_UPLOADS: usize = 8;
/// Bytes of an upload buffered before they go to storage as one part (S3's minimum).
pub const UPLOAD_PART_BYTES: usize = 5 * 1024 * 1024;
/// Parts of one upload in flight to storage at once (beside the one being filled).
const UPLOAD_PARTS_IN_FLIGHT: usize = 1;
/// Bytes of a file's start handed to the upload's content check.
const CHECKED_PREFIX: usize = 1024;

static UPLOADS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_CONCURRENT_UPLOADS);

/// Uploads this replica is storing now.
pub fn uploads_in_progress() -> usize {
    MAX_CONCURRENT_UPLOADS - UPLOADS.available_permits()
}

/// A check of an upload's first bytes, and what a refusal says (e.g. "not a PDF").
pub type ContentCheck = (fn(&[u8]) -> bool, &'static str);

/// A file being uploaded: everything its row needs but the content.
#[derive(Debug, Clone)]
pub struct NewFile {
    pub id: String,
    pub project_id: String,
    pub company_id: String,
    pub filename: String,
    pub content_type: String,
    pub now_ms: i64,
}

/// Streams the rest of an upload (chunks only, at most `max_bytes`) to storage part by part
/// as it arrives, hashing on the way, then records the row. `accept` sees the first bytes
/// (up to 1 KiB) and may refuse the content (INVALID_ARGUMENT on `chunk`, `refusal`).
///
/// Memory per upload is about two parts, and at most [`MAX_CONCURRENT_UPLOADS`] run per
/// replica (one more is RESOURCE_EXHAUSTED). The work runs in a task of its own: a client that goes away cancels its call,
/// not the upload's cleanup; anything that fails (too large, refused, cut off, storage or
/// database error) aborts the stored parts, so no blob is left without its row.
pub async fn upload<M: Send + 'static>(
    blobs: &Blobs,
    pool: &sqlx::AnyPool,
    mut stream: Streaming<M>,
    part: fn(M) -> Option<UploadPart>,
    file: NewFile,
    max_bytes: usize,
    accept: Option<ContentCheck>,
) -> std::result::Result<FileRow, Status> {
    let permit = UPLOADS.try_acquire().map_err(|_| {
        Status::resource_exhausted(format!(
            "{MAX_CONCURRENT_UPLOADS} uploads are in progress on this server; retry shortly"
        ))
    })?;
    let (blobs, pool) = (blobs.clone(), pool.clone());
    tokio::spawn(async move {
        let _permit = permit;
        let object_key = key(&file.company_id, &file.project_id, &file.id);
        let location = object_store::path::Path::from(object_key.as_str());
        let internal = |e: object_store::Error| Status::internal(e.to_string());
        let mut writer = object_store::WriteMultipart::new_with_chunk_size(
            blobs
                .store
                .put_multipart(&location)
                .await
                .map_err(internal)?,
            UPLOAD_PART_BYTES,
        );
        let (mut size, mut hash, mut head) = (0usize, Sha256::new(), Vec::new());
        let received: std::result::Result<(), Status> = async {
            while let Some(msg) = stream.message().await? {
                let Some(UploadPart::Chunk(chunk)) = part(msg) else {
                    return Err(bad("header", "only the first message may carry the header"));
                };
                if size + chunk.len() > max_bytes {
                    return Err(bad(
                        "chunk",
                        &format!("the file exceeds the {max_bytes} byte limit"),
                    ));
                }
                if head.len() < CHECKED_PREFIX {
                    let take = (CHECKED_PREFIX - head.len()).min(chunk.len());
                    head.extend_from_slice(&chunk[..take]);
                }
                size += chunk.len();
                hash.update(&chunk);
                writer
                    .wait_for_capacity(UPLOAD_PARTS_IN_FLIGHT)
                    .await
                    .map_err(internal)?;
                writer.write(&chunk);
            }
            match accept {
                Some((accepts, refusal)) if !accepts(&head) => Err(bad("chunk", refusal)),
                _ => Ok(()),
            }
        }
        .await;
        if let Err(e) = received {
            let _ = writer.abort().await;
            return Err(e);
        }
        if size == 0 {
            // S3 completes no multipart upload without a part: store the empty file whole.
            let _ = writer.abort().await;
            blobs
                .put(&object_key, Bytes::new())
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
        } else {
            writer.finish().await.map_err(internal)?;
        }
        let row = FileRow {
            object_key,
            sha256: format!("{:x}", hash.finalize()),
            size_bytes: size as i64,
            id: file.id,
            project_id: file.project_id,
            company_id: file.company_id,
            filename: file.filename,
            content_type: file.content_type,
            create_ms: file.now_ms,
            connection_id: String::new(),
        };
        let recorded = match pool.acquire().await {
            Ok(mut conn) => insert(&mut conn, std::slice::from_ref(&row)).await,
            Err(e) => Err(e),
        };
        if let Err(e) = recorded {
            let _ = blobs.delete(&row.object_key).await;
            return Err(Status::internal(e.to_string()));
        }
        Ok(row)
    })
    .await
    .map_err(|e| Status::internal(format!("storing the file: {e}")))?
}

/// Streams a stored file: `first` (its metadata), then its bytes in chunks.
pub async fn download<M: Send + 'static>(
    blobs: &Blobs,
    object_key: &str,
    first: M,
    chunk: fn(Vec<u8>) -> M,
) -> std::result::Result<impl Stream<Item = std::result::Result<M, Status>> + Send + 'static, Status>
{
    let body = blobs
        .get(object_key)
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
    let chunks = body.flat_map(move |bytes| {
        let parts: Vec<std::result::Result<M, Status>> = match bytes {
            Ok(bytes) => bytes
                .chunks(DOWNLOAD_CHUNK)
                .map(|c| Ok(chunk(c.to_vec())))
                .collect(),
            Err(e) => vec![Err(Status::internal(e.to_string()))],
        };
        futures::stream::iter(parts)
    });
    Ok(futures::stream::once(async move { Ok(first) }).chain(chunks))
}

/// Reads a whole stored file (small files: cover sheets, linked drawings).
pub async fn read_all(blobs: &Blobs, object_key: &str) -> anyhow::Result<Bytes> {
    let mut body = blobs.get(object_key).await?;
    let mut out = BytesMut::new();
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out.freeze())
}

fn bad(field: &str, description: &str) -> Status {
    connectability_platform::errors::invalid_argument(field, description)
}
