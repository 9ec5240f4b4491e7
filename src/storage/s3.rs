//! Artifact storage in an S3-compatible bucket (AWS S3, MinIO, Garage, moto) through the
//! `object_store` crate: `s3://bucket/prefix` holds `<prefix>/<key>`. Files are staged in a
//! process-local directory and uploaded whole: a single PUT up to [`PART_SIZE`], a multipart
//! upload above it, reading the file part by part so a model is never held in memory. S3 makes
//! an object visible only once its upload completes, which is what the local store's staging
//! rename gives.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, PutPayload, RetryConfig, WriteMultipart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use super::{check_key, ArtifactStore, ByteStream, StoredObject};
use crate::config::StorageConfig;

/// Single-PUT limit and multipart part size (S3 wants parts of 5 MiB or more but the last).
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts in flight per upload: memory use is about this many parts.
const UPLOAD_CONCURRENCY: usize = 2;
/// A store that does not accept a connection within this time counts as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest single request, including a whole download streamed to a slow client.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Retries of one request; kept short so a submission answers 503 within seconds when the
/// store is down rather than after the crate's default three minutes.
const RETRY_TIMEOUT: Duration = Duration::from_secs(15);
const MAX_RETRIES: usize = 3;

pub struct S3Store {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    prefix: String,
    staging: PathBuf,
}

impl S3Store {
    /// Opens `s3://bucket/prefix` with the endpoint, region and credentials of `config` (which
    /// read the standard AWS variables) or else the other `AWS_*` variables. Connects lazily:
    /// a worker may start while the store is down and retries its jobs until it is back.
    pub fn open(url: &url::Url, config: &StorageConfig, data_dir: &Path) -> anyhow::Result<S3Store> {
        let bucket = url
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| anyhow::anyhow!("GCLEANER_STORAGE_URL {url} names no bucket (expected s3://bucket/prefix)"))?;
        let prefix = url.path().trim_matches('/').to_string();
        if !prefix.is_empty() {
            check_key(&prefix).map_err(|e| anyhow::anyhow!("GCLEANER_STORAGE_URL {url}: the prefix is not usable: {e}"))?;
        }

        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(endpoint) = non_empty(&config.storage_endpoint) {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = non_empty(&config.storage_region) {
            builder = builder.with_region(region);
        }
        if let Some(id) = non_empty(&config.storage_access_key_id) {
            builder = builder.with_access_key_id(id);
        }
        if let Some(secret) = non_empty(&config.storage_secret_access_key) {
            builder = builder.with_secret_access_key(secret);
        }
        let endpoint = builder.get_config_value(&AmazonS3ConfigKey::Endpoint);
        let allow_http = endpoint.as_deref().is_some_and(|e| e.starts_with("http://"))
            || std::env::var("AWS_ALLOW_HTTP").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
        let options =
            ClientOptions::new().with_allow_http(allow_http).with_connect_timeout(CONNECT_TIMEOUT).with_timeout(REQUEST_TIMEOUT);
        builder = builder.with_client_options(options).with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: MAX_RETRIES,
            retry_timeout: RETRY_TIMEOUT,
        });
        // Servers other than AWS (MinIO, Garage, moto) rarely resolve bucket subdomains: address
        // them path-style unless the operator asked otherwise.
        if endpoint.is_some() && std::env::var_os("AWS_VIRTUAL_HOSTED_STYLE_REQUEST").is_none() {
            builder = builder.with_virtual_hosted_style_request(false);
        }
        let store = builder.build().map_err(|e| anyhow::anyhow!("cannot configure the S3 store {url}: {e}"))?;

        let staging = data_dir.join("staging");
        std::fs::create_dir_all(&staging)
            .map_err(|e| anyhow::anyhow!("cannot create the staging directory {}: {e}", staging.display()))?;
        Ok(S3Store { store: Arc::new(store), bucket: bucket.to_string(), prefix, staging })
    }

    fn object_path(&self, key: &str) -> io::Result<ObjectPath> {
        check_key(key)?;
        let full = if self.prefix.is_empty() { key.to_string() } else { format!("{}/{key}", self.prefix) };
        ObjectPath::parse(&full)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("invalid storage key {key:?}: {e}")))
    }

    fn error(&self, key: &str, err: object_store::Error) -> io::Error {
        match err {
            object_store::Error::NotFound { .. } => {
                io::Error::new(io::ErrorKind::NotFound, format!("artifact {key} is missing from {}", self.location()))
            }
            other => io::Error::other(format!("object store {}: {other}", self.location())),
        }
    }

    async fn upload(&self, staged: &Path, location: &ObjectPath, key: &str, size: u64) -> io::Result<()> {
        let mut file = tokio::fs::File::open(staged).await?;
        if size <= PART_SIZE as u64 {
            let mut buf = Vec::with_capacity(size as usize);
            file.read_to_end(&mut buf).await?;
            self.store.put(location, PutPayload::from(buf)).await.map_err(|e| self.error(key, e))?;
            return Ok(());
        }
        let upload = self.store.put_multipart(location).await.map_err(|e| self.error(key, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut buf = vec![0u8; 1024 * 1024];
        loop {
            let read = match file.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(e);
                }
            };
            if let Err(e) = writer.wait_for_capacity(UPLOAD_CONCURRENCY).await {
                let _ = writer.abort().await;
                return Err(self.error(key, e));
            }
            writer.write(&buf[..read]);
        }
        // A failed completion leaves an incomplete upload that S3 never shows as an object; a
        // bucket lifecycle rule for incomplete uploads reclaims its parts.
        writer.finish().await.map_err(|e| self.error(key, e))?;
        Ok(())
    }
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

#[async_trait]
impl ArtifactStore for S3Store {
    fn staging_dir(&self) -> &Path {
        &self.staging
    }

    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    async fn commit(&self, staged: &Path, key: &str, sha256: &str, size: u64) -> io::Result<StoredObject> {
        let location = self.object_path(key)?;
        self.upload(staged, &location, key, size).await?;
        match tokio::fs::remove_file(staged).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                tracing::warn!(path = %staged.display(), error = %e, "could not remove an uploaded staging file");
            }
            _ => {}
        }
        Ok(StoredObject { key: key.to_string(), sha256: sha256.to_string(), size })
    }

    async fn fetch(&self, key: &str, scratch: &Path) -> io::Result<PathBuf> {
        let mut stream = self.read(key).await?;
        let mut out = tokio::fs::File::create(scratch).await?;
        let copied = async {
            while let Some(chunk) = stream.next().await {
                out.write_all(&chunk?).await?;
            }
            out.flush().await
        }
        .await;
        if let Err(e) = copied {
            let _ = tokio::fs::remove_file(scratch).await;
            return Err(e);
        }
        Ok(scratch.to_path_buf())
    }

    async fn read(&self, key: &str) -> io::Result<ByteStream> {
        let location = self.object_path(key)?;
        let result = self.store.get(&location).await.map_err(|e| self.error(key, e))?;
        let where_ = self.location();
        Ok(result.into_stream().map_err(move |e| io::Error::other(format!("object store {where_}: {e}"))).boxed())
    }

    async fn delete(&self, key: &str) -> io::Result<()> {
        let location = self.object_path(key)?;
        match self.store.delete(&location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(key, e)),
        }
    }

    async fn delete_job(&self, job_id: Uuid) -> io::Result<()> {
        let key = format!("jobs/{job_id}");
        let prefix = self.object_path(&key)?;
        let listed = self.store.list(Some(&prefix)).map_ok(|meta| meta.location).boxed();
        let mut deleted = self.store.delete_stream(listed);
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.error(&key, e)),
            }
        }
        Ok(())
    }
}
