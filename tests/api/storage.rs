//! The artifact-store contract, run against both backends: a local directory and an S3 bucket
//! on a real S3-compatible server. Whatever the API and workers rely on (whole commits that
//! consume the staged file, replacement, streaming reads, attempt-specific keys that a late
//! worker's cleanup cannot touch, job deletion, refusal of keys the server never generates)
//! must hold on each.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use gcleaner::config::StorageConfig;
use gcleaner::storage::{self, ArtifactStore};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::s3_server::S3Server;

pub struct Backend {
    pub store: Arc<dyn ArtifactStore>,
    _dir: tempfile::TempDir,
    _server: Option<S3Server>,
}

impl Backend {
    fn local() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let config = StorageConfig {
            storage_url: Some(url::Url::from_directory_path(dir.path().join("store")).unwrap().to_string()),
            storage_endpoint: None,
            storage_region: None,
            storage_access_key_id: None,
            storage_secret_access_key: None,
        };
        let store = storage::open(&config, &dir.path().join("unused")).unwrap();
        Backend { store, _dir: dir, _server: None }
    }

    async fn s3() -> Backend {
        let server = S3Server::start().await;
        let dir = tempfile::tempdir().unwrap();
        let store = storage::open(&server.storage_config("contract"), dir.path()).unwrap();
        Backend { store, _dir: dir, _server: Some(server) }
    }
}

/// Writes `bytes` to a fresh staging file, as an upload or a worker does.
fn stage(store: &dyn ArtifactStore, bytes: &[u8]) -> (PathBuf, String, u64) {
    let path = storage::staging_path(store.staging_dir(), "test");
    std::fs::write(&path, bytes).unwrap();
    (path, hex::encode(Sha256::digest(bytes)), bytes.len() as u64)
}

async fn put(store: &dyn ArtifactStore, key: &str, bytes: &[u8]) {
    let (path, sha, size) = stage(store, bytes);
    let object = store.commit(&path, key, &sha, size).await.unwrap();
    assert_eq!((object.key.as_str(), object.sha256.as_str(), object.size), (key, sha.as_str(), size));
    assert!(!path.exists(), "commit consumes the staged file");
}

async fn read_all(store: &dyn ArtifactStore, key: &str) -> io::Result<Vec<u8>> {
    let chunks: Vec<bytes::Bytes> = store.read(key).await?.try_collect().await?;
    Ok(chunks.concat())
}

/// Deterministic bytes that do not compress or repeat at part boundaries.
fn pattern(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

pub async fn commit_then_read_and_fetch(store: &dyn ArtifactStore) {
    let key = storage::job_key(Uuid::new_v4(), "input/model.safetensors");
    let bytes = pattern(100_000);
    put(store, &key, &bytes).await;
    assert_eq!(read_all(store, &key).await.unwrap(), bytes);
    let scratch = store.staging_dir().join(format!("scratch-{}", Uuid::new_v4()));
    let local = store.fetch(&key, &scratch).await.unwrap();
    assert_eq!(std::fs::read(&local).unwrap(), bytes);
}

/// Above the single-PUT limit an S3 upload is multipart; the object is the file, byte for byte.
pub async fn a_file_larger_than_a_part_is_stored_whole(store: &dyn ArtifactStore) {
    let key = storage::job_key(Uuid::new_v4(), "attempt-1/purified.safetensors");
    let bytes = pattern(2 * storage::s3::PART_SIZE + 12_345);
    put(store, &key, &bytes).await;
    let read = read_all(store, &key).await.unwrap();
    assert_eq!(read.len(), bytes.len());
    assert!(read == bytes, "the multipart object differs from the file");
}

pub async fn committing_over_a_key_replaces_it(store: &dyn ArtifactStore) {
    let key = storage::job_key(Uuid::new_v4(), "input/data");
    put(store, &key, b"first").await;
    put(store, &key, b"second").await;
    assert_eq!(read_all(store, &key).await.unwrap(), b"second");
}

/// A late worker writes under its own attempt's keys and, when its fenced write is rejected,
/// deletes them: the winner's files are untouched.
pub async fn attempt_keys_keep_the_winner(store: &dyn ArtifactStore) {
    let job = Uuid::new_v4();
    let winner = storage::job_key(job, "attempt-2/purified.safetensors");
    let late = storage::job_key(job, "attempt-1/purified.safetensors");
    put(store, &winner, b"winner").await;
    put(store, &late, b"late").await;
    store.delete(&late).await.unwrap();
    assert_eq!(read_all(store, &winner).await.unwrap(), b"winner");
    assert_eq!(read_all(store, &late).await.unwrap_err().kind(), io::ErrorKind::NotFound);
}

pub async fn missing_objects_are_not_found_and_deleting_them_succeeds(store: &dyn ArtifactStore) {
    let key = storage::job_key(Uuid::new_v4(), "report.json");
    assert_eq!(read_all(store, &key).await.unwrap_err().kind(), io::ErrorKind::NotFound);
    let scratch = store.staging_dir().join(format!("scratch-{}", Uuid::new_v4()));
    assert_eq!(store.fetch(&key, &scratch).await.unwrap_err().kind(), io::ErrorKind::NotFound);
    assert!(!scratch.exists(), "no partial download is left behind");
    store.delete(&key).await.unwrap();
    store.delete_job(Uuid::new_v4()).await.unwrap();
}

pub async fn deleting_a_job_removes_its_objects_only(store: &dyn ArtifactStore) {
    let (gone, kept) = (Uuid::new_v4(), Uuid::new_v4());
    let names = ["input/model.safetensors", "input/data", "attempt-1/report.json", "attempt-2/report.json"];
    for name in names {
        put(store, &storage::job_key(gone, name), name.as_bytes()).await;
    }
    put(store, &storage::job_key(kept, "input/data"), b"kept").await;
    store.delete_job(gone).await.unwrap();
    for name in names {
        let err = read_all(store, &storage::job_key(gone, name)).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{name} survived its job's deletion");
    }
    assert_eq!(read_all(store, &storage::job_key(kept, "input/data")).await.unwrap(), b"kept");
    store.delete_job(gone).await.unwrap();
}

pub async fn keys_the_server_never_generates_are_refused(store: &dyn ArtifactStore) {
    let (path, sha, size) = stage(store, b"x");
    for key in ["../escape", "/etc/passwd", "jobs/../../x", "", "jobs//x"] {
        let err = store.commit(&path, key, &sha, size).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{key:?}");
        assert_eq!(read_all(store, key).await.unwrap_err().kind(), io::ErrorKind::InvalidInput, "{key:?}");
    }
    assert!(path.exists(), "a refused commit leaves the staged file to its owner");
}

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test]
                async fn $case() {
                    let backend = super::Backend::local();
                    super::$case(backend.store.as_ref()).await;
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test]
                async fn $case() {
                    let backend = super::Backend::s3().await;
                    super::$case(backend.store.as_ref()).await;
                }
            )*
        }
    };
}

contract!(
    commit_then_read_and_fetch,
    a_file_larger_than_a_part_is_stored_whole,
    committing_over_a_key_replaces_it,
    attempt_keys_keep_the_winner,
    missing_objects_are_not_found_and_deleting_them_succeeds,
    deleting_a_job_removes_its_objects_only,
    keys_the_server_never_generates_are_refused,
);

/// An unreachable store fails within seconds with an error that is neither "missing" nor
/// "invalid", which the API answers as 503 and a worker as a retry.
#[tokio::test]
async fn an_unreachable_bucket_fails_fast_as_unavailable() {
    let mut server = S3Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = storage::open(&server.storage_config("down"), dir.path()).unwrap();
    server.kill();
    let (path, sha, size) = stage(store.as_ref(), b"payload");
    let started = Instant::now();
    let err = store.commit(&path, "jobs/x/input/data", &sha, size).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    assert!(!matches!(err.kind(), io::ErrorKind::NotFound | io::ErrorKind::InvalidInput), "{err}");
    let err = read_all(store.as_ref(), "jobs/x/input/data").await.unwrap_err();
    assert!(!matches!(err.kind(), io::ErrorKind::NotFound | io::ErrorKind::InvalidInput), "{err}");
}

#[test]
fn storage_urls_are_checked_when_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    let config = |url: &str| StorageConfig {
        storage_url: Some(url.into()),
        storage_endpoint: Some("http://127.0.0.1:9".into()),
        storage_region: None,
        storage_access_key_id: Some("k".into()),
        storage_secret_access_key: Some("s".into()),
    };
    for bad in ["ftp://host/x", "s3:///prefix", "not a url"] {
        let err = storage::open(&config(bad), dir.path()).err().unwrap_or_else(|| panic!("{bad} accepted"));
        assert!(err.to_string().contains("GCLEANER_STORAGE_URL"), "{err}");
    }
    // The default (no URL) is the data directory, as before.
    let default = StorageConfig { storage_url: None, ..config("") };
    let store = storage::open(&default, dir.path()).unwrap();
    assert_eq!(store.staging_dir(), dir.path().join("staging"));
    assert_eq!(store.location(), dir.path().join("objects").display().to_string());
}
