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

use crate::{Blobs, key};

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
        }
    }

    /// The copy of this file in another project: same bytes, the downstream company's prefix.
    pub fn copied_to(&self, id: String, project_id: &str, company_id: &str, now_ms: i64) -> Self {
        Self {
            object_key: key(company_id, project_id, &id),
            id,
            project_id: project_id.to_string(),
            company_id: company_id.to_string(),
            create_ms: now_ms,
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
        ]
    }
}

/// Stores the bytes, then records the row; a failed record deletes the stored bytes, so
/// nothing is left half-written.
///
/// The two steps run in a task of their own: a client that goes away while its upload is
/// being stored cancels its call, never the store, so no blob is left without its row.
pub async fn store(
    blobs: &Blobs,
    pool: &sqlx::AnyPool,
    file: &FileRow,
    content: Bytes,
) -> std::result::Result<(), Status> {
    let (blobs, pool, file) = (blobs.clone(), pool.clone(), file.clone());
    tokio::spawn(async move {
        blobs
            .put(&file.object_key, content)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let recorded = match pool.acquire().await {
            Ok(mut conn) => insert(&mut conn, std::slice::from_ref(&file)).await,
            Err(e) => Err(e),
        };
        if let Err(e) = recorded {
            let _ = blobs.delete(&file.object_key).await;
            return Err(Status::internal(e.to_string()));
        }
        Ok(())
    })
    .await
    .map_err(|e| Status::internal(format!("storing the file: {e}")))?
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

/// Reads the rest of an upload: chunks only, at most `max_bytes` in all.
pub async fn upload_body<M>(
    stream: &mut Streaming<M>,
    part: fn(M) -> Option<UploadPart>,
    max_bytes: usize,
) -> std::result::Result<Bytes, Status> {
    let mut content = BytesMut::new();
    while let Some(msg) = stream.message().await? {
        match part(msg) {
            Some(UploadPart::Chunk(chunk)) => {
                if content.len() + chunk.len() > max_bytes {
                    return Err(bad(
                        "chunk",
                        &format!("the file exceeds the {max_bytes} byte limit"),
                    ));
                }
                content.extend_from_slice(&chunk);
            }
            _ => {
                return Err(bad("header", "only the first message may carry the header"));
            }
        }
    }
    Ok(content.freeze())
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
