//! Artifact storage: uploads, purified models and reports, addressed by server-generated keys.
//! Two backends behind one trait, chosen by `GCLEANER_STORAGE_URL`: a local directory
//! (`file://`, the default) and an S3-compatible bucket (`s3://`). The API and workers only see
//! keys; files are staged in a process-local directory and committed whole, so a reader never
//! sees a partial object on either backend.

pub mod local;
pub mod s3;

use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use local::LocalStore;
pub use s3::S3Store;

use crate::config::StorageConfig;

/// A file that is in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub key: String,
    pub sha256: String,
    pub size: u64,
}

/// An object's bytes as they arrive from the store.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

/// Errors are `io::Error`s: `NotFound` for a missing object, `InvalidInput` for a key that is not
/// a server-generated one, anything else means the store could not be reached or written
/// (callers answer that as "unavailable, retry").
#[async_trait]
pub trait ArtifactStore: Send + Sync + 'static {
    /// Process-local directory for files being received or produced before they are committed.
    /// Nothing in it is shared with other processes.
    fn staging_dir(&self) -> &Path;

    /// Where the objects live, for logs and errors.
    fn location(&self) -> String;

    /// Moves the finished file `staged` into the store under `key` (the staged file is gone
    /// afterwards). The object becomes visible whole or not at all; committing over an existing
    /// key replaces it.
    async fn commit(&self, staged: &Path, key: &str, sha256: &str, size: u64) -> io::Result<StoredObject>;

    /// A local file holding the object, for the engine to read: the stored file itself when the
    /// store is a directory, otherwise a download to `scratch` (a path the caller owns).
    async fn fetch(&self, key: &str, scratch: &Path) -> io::Result<PathBuf>;

    /// Streams the object's bytes without holding it in memory.
    async fn read(&self, key: &str) -> io::Result<ByteStream>;

    /// Removes one object; a missing one is not an error.
    async fn delete(&self, key: &str) -> io::Result<()>;

    /// Removes every object of a job; none left is not an error.
    async fn delete_job(&self, job_id: Uuid) -> io::Result<()>;
}

/// Opens the store the configuration names: `file:///path` or `s3://bucket/prefix`, or, when no
/// URL is given, the directory `data_dir` (objects and staging side by side, as always).
/// `data_dir` is the process-local staging directory of an S3 store.
pub fn open(config: &StorageConfig, data_dir: &Path) -> anyhow::Result<Arc<dyn ArtifactStore>> {
    let Some(raw) = config.storage_url.as_deref().filter(|u| !u.trim().is_empty()) else {
        return Ok(Arc::new(open_local(data_dir)?));
    };
    let url = url::Url::parse(raw.trim()).map_err(|e| anyhow::anyhow!("GCLEANER_STORAGE_URL {raw:?} is not a URL: {e}"))?;
    match url.scheme() {
        "file" => {
            let root = url
                .to_file_path()
                .map_err(|()| anyhow::anyhow!("GCLEANER_STORAGE_URL {raw:?} is not an absolute file:// path"))?;
            Ok(Arc::new(open_local(&root)?))
        }
        "s3" => Ok(Arc::new(S3Store::open(&url, config, data_dir)?)),
        other => anyhow::bail!("GCLEANER_STORAGE_URL {raw:?}: scheme {other:?} is not supported (use file:// or s3://)"),
    }
}

fn open_local(root: &Path) -> anyhow::Result<LocalStore> {
    LocalStore::open(root).map_err(|e| anyhow::anyhow!("cannot use data directory {}: {e}", root.display()))
}

/// Checks that `key` is a relative path of plain segments, as every server-generated key is.
pub fn check_key(key: &str) -> io::Result<()> {
    let relative = Path::new(key);
    let plain = relative.components().all(|c| matches!(c, Component::Normal(_)));
    if key.is_empty() || key.contains('\\') || key.ends_with('/') || key.contains("//") || !plain {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("invalid storage key {key:?}")));
    }
    Ok(())
}

/// The key of a job's artifact: every name is chosen by the server, never by the client.
pub fn job_key(job_id: Uuid, name: &str) -> String {
    format!("jobs/{job_id}/{name}")
}

/// A fresh unique path in `dir` for a file being written.
pub fn staging_path(dir: &Path, label: &str) -> PathBuf {
    dir.join(format!("{}-{label}.part", Uuid::new_v4()))
}

/// sha256 (hex) and size of a file, reading it once.
pub fn hash_file(path: &Path) -> io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let size = io::copy(&mut file, &mut hasher)?;
    Ok((hex::encode(hasher.finalize()), size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_keys_are_accepted() {
        for bad in ["", "../etc/passwd", "/etc/passwd", "jobs/../x", "jobs//x", "jobs/x/", "jobs\\x", "./jobs"] {
            assert!(check_key(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_key("jobs/a/b").is_ok());
    }
}
