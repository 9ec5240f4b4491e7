//! Artifact storage: uploads, purified models and reports, addressed by server-generated keys.
//! A trait so an object store can replace the local directory; the API and workers only see keys.

pub mod local;

use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use local::LocalStore;

/// A file that is in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub key: String,
    pub sha256: String,
    pub size: u64,
}

pub trait ArtifactStore: Send + Sync + 'static {
    /// Directory for files being written before they are committed; on the same file system as
    /// the store so committing is a rename.
    fn staging_dir(&self) -> &Path;

    /// Moves the finished file `staged` into the store under `key`. Committing over an existing
    /// key replaces it atomically.
    fn commit(&self, staged: &Path, key: &str, sha256: &str, size: u64) -> io::Result<StoredObject>;

    /// A local path from which the object can be read.
    fn local_path(&self, key: &str) -> io::Result<PathBuf>;

    fn delete(&self, key: &str) -> io::Result<()>;

    /// Removes every object of a job.
    fn delete_job(&self, job_id: Uuid) -> io::Result<()>;
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
