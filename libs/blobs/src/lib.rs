//! File storage chosen by `BLOBS_URL`: `file://PATH` (a local folder, the embedded default)
//! or `s3://BUCKET/PREFIX` (credentials and region from the usual `AWS_*` variables; set
//! `AWS_ENDPOINT` and `AWS_ALLOW_HTTP=true` for MinIO-style stores). Keys start with the
//! owning company's id, so each company's files live under its own prefix.

pub mod files;

use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use futures::{StreamExt, stream::BoxStream};
use object_store::{
    ObjectStore, ObjectStoreExt, PutPayload,
    aws::{AmazonS3Builder, AmazonS3ConfigKey},
    local::LocalFileSystem,
    path::Path,
    prefix::PrefixStore,
};

/// Object copies in flight at once in [`Blobs::copy_many`].
pub const COPY_CONCURRENCY: usize = 16;

#[derive(Clone, Debug)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    /// A local folder, where a copy is a hard link (see [`Blobs::copy`]).
    local: bool,
}

/// The key of a file: `<company>/<project>/<file id>`.
pub fn key(company_id: &str, project_id: &str, file_id: &str) -> String {
    format!("{company_id}/{project_id}/{file_id}")
}

/// Where one tool keeps what it copies over one connection into the downstream project.
/// Each tool has its own database and `files` table, so each has its own prefix
/// ([`CopyTarget::prefix`]): stopping a connection sweeps, per tool, what that tool's rows
/// do not name, and must never see another tool's copies.
#[derive(Debug, Clone, Copy)]
pub struct CopyTarget<'a> {
    pub company_id: &'a str,
    pub project_id: &'a str,
    pub connection_id: &'a str,
    /// The tool's name (`drawings`, `rfis`, `submittals`).
    pub tool: &'a str,
}

impl CopyTarget<'_> {
    /// `<company>/<project>/copies/<connection id>/<tool>/`: everything under it belongs to
    /// this tool's copies over the connection (see [`CopyTarget::key`]).
    pub fn prefix(&self) -> String {
        format!(
            "{}/{}/copies/{}/{}/",
            self.company_id, self.project_id, self.connection_id, self.tool
        )
    }

    /// The key of the copy of upstream file `origin_file_id`: derived, not generated, so an
    /// attempt that copied the bytes and then rolled back leaves nothing a retry does not
    /// reuse (it copies onto the same key), and copy rows of one origin file share one
    /// object. Files never change, so the shared bytes are right for every row.
    pub fn key(&self, origin_file_id: &str) -> String {
        format!("{}{origin_file_id}", self.prefix())
    }
}

impl Blobs {
    pub fn from_url(url: &str) -> anyhow::Result<Self> {
        Self::from_url_with(url, &[])
    }

    /// [`Blobs::from_url`] with S3 settings given here rather than in `AWS_*` variables
    /// (`("aws_endpoint", "http://127.0.0.1:9000")`, …), as a test names its own store.
    pub fn from_url_with(url: &str, s3_settings: &[(&str, &str)]) -> anyhow::Result<Self> {
        let local = url.starts_with("file://");
        let store: Arc<dyn ObjectStore> = if let Some(path) = url.strip_prefix("file://") {
            std::fs::create_dir_all(path).with_context(|| format!("creating {path}"))?;
            Arc::new(
                LocalFileSystem::new_with_prefix(path)
                    .with_context(|| format!("BLOBS_URL folder {path}"))?,
            )
        } else if let Some(rest) = url.strip_prefix("s3://") {
            // S3 speaks HTTPS through rustls with the workspace's one provider.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            for (key, value) in s3_settings {
                let key = key
                    .parse::<AmazonS3ConfigKey>()
                    .with_context(|| format!("S3 setting {key}"))?;
                builder = builder.with_config(key, *value);
            }
            let s3 = builder.build().context("BLOBS_URL s3 store")?;
            if prefix.is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(PrefixStore::new(s3, prefix.trim_end_matches('/')))
            }
        } else {
            anyhow::bail!("BLOBS_URL must be file://PATH or s3://BUCKET/PREFIX, got `{url}`");
        };
        Ok(Self { store, local })
    }

    pub async fn put(&self, key: &str, bytes: Bytes) -> anyhow::Result<()> {
        self.store
            .put(&Path::from(key), PutPayload::from_bytes(bytes))
            .await?;
        Ok(())
    }

    /// The file's bytes as a stream of chunks.
    pub async fn get(
        &self,
        key: &str,
    ) -> anyhow::Result<BoxStream<'static, anyhow::Result<Bytes>>> {
        let result = self.store.get(&Path::from(key)).await?;
        Ok(result
            .into_stream()
            .map(|r| r.map_err(anyhow::Error::from))
            .boxed())
    }

    /// Copies within the store (a hard link on a local folder: O(1), no second copy of bytes).
    /// Copying onto a key that exists is a success: keys of copies are derived
    /// ([`CopyTarget::key`]) and files never change, so it already holds these bytes.
    pub async fn copy(&self, from: &str, to: &str) -> anyhow::Result<()> {
        let (from, to) = (Path::from(from), Path::from(to));
        if !self.local {
            self.store.copy(&from, &to).await?;
            return Ok(());
        }
        // A local copy links a staged name and renames it over the target; when the target
        // is already a link to the same file, rename does nothing and the staged name stays
        // behind, unlisted. Linking only where nothing is keeps the folder exact.
        match self.store.copy_if_not_exists(&from, &to).await {
            Ok(()) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Copies many objects, [`COPY_CONCURRENCY`] at a time: each copy is a blocking
    /// filesystem call (or a request to S3), so overlapping them is what makes a batch fast.
    /// A destination named twice is copied once (copies of one origin share a key).
    pub async fn copy_many(&self, pairs: &[(String, String)]) -> anyhow::Result<()> {
        let mut seen = std::collections::HashSet::new();
        // Owned jobs, so the future stays `Send` for any caller's lifetimes.
        let jobs: Vec<_> = pairs
            .iter()
            .filter(|(_, to)| seen.insert(to.as_str()))
            .map(|(from, to)| {
                let (blobs, from, to) = (self.clone(), from.clone(), to.clone());
                async move { blobs.copy(&from, &to).await }
            })
            .collect();
        let results: Vec<anyhow::Result<()>> = futures::stream::iter(jobs)
            .buffer_unordered(COPY_CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect()
    }

    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every key under `prefix` (which should end with `/`), as the store lists them.
    pub fn list(&self, prefix: &str) -> BoxStream<'static, anyhow::Result<String>> {
        let prefix = Path::from(prefix.trim_end_matches('/'));
        self.store
            .list(Some(&prefix))
            .map(|meta| {
                meta.map(|m| m.location.to_string())
                    .map_err(anyhow::Error::from)
            })
            .boxed()
    }

    pub async fn exists(&self, key: &str) -> anyhow::Result<bool> {
        match self.store.head(&Path::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_s3_store_builds_with_the_one_crypto_provider() {
        // object_store's S3 client is made with rustls on ring (no aws-lc-rs is compiled).
        let blobs = Blobs::from_url("s3://connectability-test/prefix");
        assert!(blobs.is_ok(), "{:?}", blobs.err());
    }

    use super::*;

    #[tokio::test]
    async fn local_folder_round_trip_and_copy() {
        let dir = std::env::temp_dir().join(format!("blobs-test-{}", std::process::id()));
        let blobs = Blobs::from_url(&format!("file://{}", dir.display())).unwrap();
        let a = key("co_a", "prj_a", "fil_1");
        let b = key("co_b", "prj_b", "fil_2");
        blobs
            .put(&a, Bytes::from_static(b"%PDF-1.4 hello"))
            .await
            .unwrap();
        blobs.copy(&a, &b).await.unwrap();
        // A copy onto a key that holds the copy already succeeds and leaves nothing extra.
        blobs.copy(&a, &b).await.unwrap();
        let mut files = Vec::new();
        let mut dirs = vec![dir.join("co_b")];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p)
                } else {
                    files.push(p)
                }
            }
        }
        assert_eq!(
            files,
            vec![dir.join("co_b/prj_b/fil_2")],
            "no staged link left"
        );
        let mut got = Vec::new();
        let mut stream = blobs.get(&b).await.unwrap();
        while let Some(chunk) = stream.next().await {
            got.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(got, b"%PDF-1.4 hello");
        assert!(
            dir.join("co_b/prj_b/fil_2").exists(),
            "under the downstream company's prefix"
        );
        blobs.delete(&a).await.unwrap();
        assert!(!blobs.exists(&a).await.unwrap());
        assert!(
            blobs.exists(&b).await.unwrap(),
            "the copy outlives the original"
        );
        blobs.delete(&a).await.unwrap();
        assert!(Blobs::from_url("ftp://x").is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
