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
    ObjectStore, ObjectStoreExt, PutPayload, aws::AmazonS3Builder, local::LocalFileSystem,
    path::Path, prefix::PrefixStore,
};

/// Object copies in flight at once in [`Blobs::copy_many`].
pub const COPY_CONCURRENCY: usize = 16;

#[derive(Clone, Debug)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
}

/// The key of a file: `<company>/<project>/<file id>`.
pub fn key(company_id: &str, project_id: &str, file_id: &str) -> String {
    format!("{company_id}/{project_id}/{file_id}")
}

impl Blobs {
    pub fn from_url(url: &str) -> anyhow::Result<Self> {
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
            let s3 = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .context("BLOBS_URL s3 store")?;
            if prefix.is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(PrefixStore::new(s3, prefix.trim_end_matches('/')))
            }
        } else {
            anyhow::bail!("BLOBS_URL must be file://PATH or s3://BUCKET/PREFIX, got `{url}`");
        };
        Ok(Self { store })
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
    pub async fn copy(&self, from: &str, to: &str) -> anyhow::Result<()> {
        self.store.copy(&Path::from(from), &Path::from(to)).await?;
        Ok(())
    }

    /// Copies many objects, [`COPY_CONCURRENCY`] at a time: each copy is a blocking
    /// filesystem call (or a request to S3), so overlapping them is what makes a batch fast.
    pub async fn copy_many(&self, pairs: &[(String, String)]) -> anyhow::Result<()> {
        // Owned jobs, so the future stays `Send` for any caller's lifetimes.
        let jobs: Vec<_> = pairs
            .iter()
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
