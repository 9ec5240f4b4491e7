//! Job uploads: multipart parts streamed to staging files (hashed and size-checked as they
//! arrive, never held whole in memory), then validated ([`validate`]) before a job exists.

pub mod archive;
pub mod engine_checks;
pub mod sniff;
pub mod validate;

use std::path::{Path, PathBuf};

use axum::extract::multipart::{Field, Multipart, MultipartError};
use axum::http::StatusCode;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::config::LimitsConfig;

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("malformed multipart body: {0}")]
    Malformed(String),
    #[error("the {0:?} part is required")]
    MissingPart(&'static str),
    #[error("unknown part {0:?}; expected model, spec, data, eval or config")]
    UnknownPart(String),
    #[error("the {0:?} part was sent twice")]
    DuplicatePart(String),
    #[error("the {part:?} part exceeds its limit of {limit} bytes")]
    TooLarge { part: String, limit: u64 },
    #[error("the request body exceeds its limit")]
    BodyTooLarge,
    #[error("the model is a Python pickle; only safetensors weights are accepted (pickles can run code when loaded)")]
    Pickle,
    #[error("the {part:?} part is {found}; expected {expected}")]
    UnsupportedFormat { part: String, found: &'static str, expected: &'static str },
    #[error("{0}")]
    InvalidModel(String),
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("the {part:?} part is not a usable dataset: {detail}")]
    InvalidData { part: String, detail: String },
    #[error("the {part:?} archive was refused: {source}")]
    Archive { part: String, source: archive::ArchiveError },
    #[error("the data does not fit the model: {0}")]
    SpecMismatch(String),
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    #[error("upload storage failed: {0}")]
    Io(#[from] std::io::Error),
}

impl UploadError {
    pub fn status(&self) -> StatusCode {
        use UploadError::*;
        match self {
            Malformed(_) | MissingPart(_) | UnknownPart(_) | DuplicatePart(_) => StatusCode::BAD_REQUEST,
            TooLarge { .. } | BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Pickle | UnsupportedFormat { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            InvalidModel(_)
            | InvalidSpec(_)
            | LimitExceeded(_)
            | InvalidData { .. }
            | Archive { .. }
            | SpecMismatch(_)
            | InvalidConfig(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable machine-readable code for clients.
    pub fn code(&self) -> &'static str {
        use UploadError::*;
        match self {
            Malformed(_) => "malformed_multipart",
            MissingPart(_) => "missing_part",
            UnknownPart(_) => "unknown_part",
            DuplicatePart(_) => "duplicate_part",
            TooLarge { .. } | BodyTooLarge => "payload_too_large",
            Pickle => "pickle_refused",
            UnsupportedFormat { .. } => "unsupported_format",
            InvalidModel(_) => "invalid_model",
            InvalidSpec(_) => "invalid_spec",
            LimitExceeded(_) => "limit_exceeded",
            InvalidData { .. } => "invalid_data",
            Archive { .. } => "archive_refused",
            SpecMismatch(_) => "data_model_mismatch",
            InvalidConfig(_) => "invalid_config",
            Io(_) => "internal_error",
        }
    }

    fn from_multipart(err: MultipartError) -> UploadError {
        if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
            UploadError::BodyTooLarge
        } else {
            UploadError::Malformed(err.body_text())
        }
    }
}

/// A staging file removed on drop unless it was committed (moved) elsewhere.
#[derive(Debug)]
pub struct StagedFile {
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The parts of a job submission, staged on disk.
#[derive(Debug, Default)]
pub struct StagedUpload {
    pub model: Option<StagedFile>,
    pub spec: Option<StagedFile>,
    pub data: Option<StagedFile>,
    pub eval: Option<StagedFile>,
    pub config: Option<serde_json::Value>,
    config_sha256: Option<String>,
}

impl StagedUpload {
    /// A digest of everything submitted: the same payload always gives the same value, which is
    /// what idempotency keys compare.
    pub fn request_hash(&self) -> String {
        let mut h = Sha256::new();
        for (name, sha) in [
            ("model", self.model.as_ref().map(|f| f.sha256.as_str())),
            ("spec", self.spec.as_ref().map(|f| f.sha256.as_str())),
            ("data", self.data.as_ref().map(|f| f.sha256.as_str())),
            ("eval", self.eval.as_ref().map(|f| f.sha256.as_str())),
            ("config", self.config_sha256.as_deref()),
        ] {
            h.update(format!("{name}={}\n", sha.unwrap_or("-")));
        }
        hex::encode(h.finalize())
    }
}

/// Reads every part of `multipart` into staging files under `staging`.
pub async fn receive(mut multipart: Multipart, limits: &LimitsConfig, staging: &Path) -> Result<StagedUpload, UploadError> {
    let mut upload = StagedUpload::default();
    while let Some(field) = multipart.next_field().await.map_err(UploadError::from_multipart)? {
        let name = field.name().unwrap_or_default().to_string();
        let (slot, limit) = match name.as_str() {
            "model" => (&mut upload.model, limits.max_model_bytes),
            "spec" => (&mut upload.spec, limits.max_config_bytes),
            "data" => (&mut upload.data, limits.max_data_bytes),
            "eval" => (&mut upload.eval, limits.max_data_bytes),
            "config" => {
                if upload.config.is_some() {
                    return Err(UploadError::DuplicatePart(name));
                }
                let staged = stream_to_file(field, "config", limits.max_config_bytes, staging).await?;
                let bytes = tokio::fs::read(&staged.path).await?;
                let value: serde_json::Value =
                    serde_json::from_slice(&bytes).map_err(|e| UploadError::InvalidConfig(format!("not JSON: {e}")))?;
                if !value.is_object() {
                    return Err(UploadError::InvalidConfig("must be a JSON object".into()));
                }
                upload.config_sha256 = Some(hex::encode(Sha256::digest(value.to_string().as_bytes())));
                upload.config = Some(value);
                continue;
            }
            _ => return Err(UploadError::UnknownPart(name)),
        };
        if slot.is_some() {
            return Err(UploadError::DuplicatePart(name));
        }
        *slot = Some(stream_to_file(field, &name, limit, staging).await?);
    }
    Ok(upload)
}

async fn stream_to_file(mut field: Field<'_>, part: &str, limit: u64, staging: &Path) -> Result<StagedFile, UploadError> {
    let path = crate::storage::staging_path(staging, part);
    let mut staged = StagedFile { path, sha256: String::new(), size: 0 };
    let mut file = tokio::fs::File::create(&staged.path).await?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = field.chunk().await.map_err(UploadError::from_multipart)? {
        staged.size += chunk.len() as u64;
        if staged.size > limit {
            return Err(UploadError::TooLarge { part: part.to_string(), limit });
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    staged.sha256 = hex::encode(hasher.finalize());
    Ok(staged)
}
