//! Artifact storage in a local directory: `<root>/objects/<key>`, with staging beside it.

use std::io;
use std::path::{Component, Path, PathBuf};

use uuid::Uuid;

use super::{ArtifactStore, StoredObject};

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
        let relative = Path::new(key);
        let safe = !key.is_empty() && relative.components().all(|c| matches!(c, Component::Normal(_)));
        if !safe {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("invalid storage key {key:?}")));
        }
        Ok(self.objects.join(relative))
    }
}

impl ArtifactStore for LocalStore {
    fn staging_dir(&self) -> &Path {
        &self.staging
    }

    fn commit(&self, staged: &Path, key: &str, sha256: &str, size: u64) -> io::Result<StoredObject> {
        let target = self.path_of(key)?;
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::File::open(staged)?.sync_all()?;
        std::fs::rename(staged, &target)?;
        Ok(StoredObject { key: key.to_string(), sha256: sha256.to_string(), size })
    }

    fn local_path(&self, key: &str) -> io::Result<PathBuf> {
        let path = self.path_of(key)?;
        if path.is_file() {
            Ok(path)
        } else {
            Err(io::Error::new(io::ErrorKind::NotFound, format!("artifact {key} is missing")))
        }
    }

    fn delete(&self, key: &str) -> io::Result<()> {
        match std::fs::remove_file(self.path_of(key)?) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn delete_job(&self, job_id: Uuid) -> io::Result<()> {
        match std::fs::remove_dir_all(self.objects.join("jobs").join(job_id.to_string())) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape_the_store() {
        let dir = std::env::temp_dir().join(format!("gcleaner-store-{}", Uuid::new_v4()));
        let store = LocalStore::open(&dir).unwrap();
        assert!(store.path_of("../etc/passwd").is_err());
        assert!(store.path_of("/etc/passwd").is_err());
        assert!(store.path_of("jobs/a/b").is_ok());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
