//! Artifact storage in a local directory: `<root>/objects/<key>`, with staging beside it on the
//! same file system, so committing is an atomic rename.

use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use futures_util::StreamExt;
use tokio_util::io::ReaderStream;
use uuid::Uuid;

use super::{check_key, ArtifactStore, ByteStream, StoredObject};

pub struct LocalStore {
    objects: PathBuf,
    staging: PathBuf,
}

impl LocalStore {
    pub fn open(root: &Path) -> io::Result<LocalStore> {
        let objects = root.join("objects");
        let staging = root.join("staging");
        std::fs::create_dir_all(&objects)?;
        std::fs::create_dir_all(&staging)?;
        Ok(LocalStore { objects, staging })
    }

    fn path_of(&self, key: &str) -> io::Result<PathBuf> {
        check_key(key)?;
        Ok(self.objects.join(key))
    }
}

/// Runs blocking file-system work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| io::Error::other(format!("storage task failed: {e}")))?
}

#[async_trait]
impl ArtifactStore for LocalStore {
    fn staging_dir(&self) -> &Path {
        &self.staging
    }

    fn location(&self) -> String {
        self.objects.display().to_string()
    }

    async fn commit(&self, staged: &Path, key: &str, sha256: &str, size: u64) -> io::Result<StoredObject> {
        let target = self.path_of(key)?;
        let staged = staged.to_path_buf();
        blocking(move || {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::File::open(&staged)?.sync_all()?;
            std::fs::rename(&staged, &target)
        })
        .await?;
        Ok(StoredObject { key: key.to_string(), sha256: sha256.to_string(), size })
    }

    async fn fetch(&self, key: &str, _scratch: &Path) -> io::Result<PathBuf> {
        let path = self.path_of(key)?;
        if tokio::fs::metadata(&path).await.is_ok_and(|m| m.is_file()) {
            Ok(path)
        } else {
            Err(io::Error::new(io::ErrorKind::NotFound, format!("artifact {key} is missing")))
        }
    }

    async fn read(&self, key: &str) -> io::Result<ByteStream> {
        let file = tokio::fs::File::open(self.path_of(key)?).await.map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => io::Error::new(io::ErrorKind::NotFound, format!("artifact {key} is missing")),
            _ => e,
        })?;
        Ok(ReaderStream::new(file).boxed())
    }

    async fn delete(&self, key: &str) -> io::Result<()> {
        match tokio::fs::remove_file(self.path_of(key)?).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    async fn delete_job(&self, job_id: Uuid) -> io::Result<()> {
        match tokio::fs::remove_dir_all(self.objects.join("jobs").join(job_id.to_string())).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}
