//! What a worker runs: one [`JobRunner`] call per attempt, on a blocking thread, with a
//! [`JobContext`] that records phase and progress and says when to stop.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::Notify;
use uuid::Uuid;

/// The files and settings of one attempt. Paths are local and readable.
#[derive(Debug, Clone)]
pub struct JobInput {
    pub job_id: Uuid,
    pub attempt: i32,
    pub model: PathBuf,
    /// A spec given beside the model, overriding the one embedded in its metadata.
    pub spec: Option<PathBuf>,
    pub data: PathBuf,
    /// An attack's evaluation sets, to report true attack success rates.
    pub eval: Option<PathBuf>,
    /// The job's purification parameters as submitted (validated JSON object).
    pub config: Value,
    /// Empty directory the runner writes its outputs into; removed after the attempt.
    pub work_dir: PathBuf,
    /// Device string from the worker's configuration (cpu, cuda, cuda:N).
    pub device: String,
}

/// What a successful attempt produced.
#[derive(Debug, Clone)]
pub struct JobOutput {
    /// The purified model (safetensors) inside the work directory; `None` for a scan, which
    /// writes none.
    pub model: Option<PathBuf>,
    /// The report as JSON.
    pub report: Value,
    /// The report as a standalone HTML page.
    pub report_html: String,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The input can never succeed: failed at once, never retried.
    #[error("{0}")]
    Invalid(String),
    /// Failure worth retrying (database, disk, CUDA out of memory).
    #[error("{0}")]
    Transient(String),
    /// Failure that a retry would repeat.
    #[error("{0}")]
    Permanent(String),
    /// The runner stopped because [`JobContext::should_stop`] said so.
    #[error("stopped")]
    Stopped,
}

impl From<gcleaner_engine::Error> for JobError {
    fn from(err: gcleaner_engine::Error) -> Self {
        use gcleaner_engine::Error as E;
        match &err {
            E::Cancelled => JobError::Stopped,
            E::Torch(t) if is_out_of_memory(&t.to_string()) => JobError::Transient(err.to_string()),
            E::Torch(_) => JobError::Permanent(err.to_string()),
            _ if err.is_input_error() => JobError::Invalid(err.to_string()),
            _ => JobError::Permanent(err.to_string()),
        }
    }
}

fn is_out_of_memory(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("out of memory") || lower.contains("cuda_error_out_of_memory")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Validating,
    Recovery,
    Unlearning,
    Evaluating,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Validating => "validating",
            Phase::Recovery => "recovery",
            Phase::Unlearning => "unlearning",
            Phase::Evaluating => "evaluating",
        }
    }

    /// The service phase of an engine progress phase name.
    pub fn from_engine(name: &str) -> Option<Phase> {
        match name {
            "validating" | "loading" => Some(Phase::Validating),
            "recovery" | "explain" | "generator" => Some(Phase::Recovery),
            "unlearning" | "finetune" | "teacher" => Some(Phase::Unlearning),
            "evaluating" | "evaluation" => Some(Phase::Evaluating),
            _ => None,
        }
    }
}

/// Why a running attempt is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StopReason {
    /// The job's owner asked to cancel it.
    CancelRequested = 1,
    /// This worker no longer holds the lease; another may already run the job.
    LeaseLost = 2,
    /// The process is shutting down and the grace period ran out.
    Shutdown = 3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgressUpdate {
    pub phase: Phase,
    pub step: u32,
    pub total: u32,
}

/// State shared between the blocking runner and the async side of the worker.
#[derive(Default)]
pub struct JobControl {
    stop: AtomicU8,
    progress: Mutex<Option<ProgressUpdate>>,
    pub(crate) progress_changed: Notify,
}

impl JobControl {
    /// Asks the runner to stop; the first reason wins.
    pub fn stop(&self, reason: StopReason) {
        let _ = self.stop.compare_exchange(0, reason as u8, Ordering::SeqCst, Ordering::SeqCst);
    }

    pub fn stop_reason(&self) -> Option<StopReason> {
        match self.stop.load(Ordering::SeqCst) {
            1 => Some(StopReason::CancelRequested),
            2 => Some(StopReason::LeaseLost),
            3 => Some(StopReason::Shutdown),
            _ => None,
        }
    }

    pub fn latest_progress(&self) -> Option<ProgressUpdate> {
        *self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_progress(&self, update: ProgressUpdate) {
        *self.progress.lock().unwrap_or_else(|p| p.into_inner()) = Some(update);
        self.progress_changed.notify_one();
    }
}

/// The runner's view of its attempt.
pub struct JobContext {
    control: Arc<JobControl>,
    phase: Phase,
}

impl JobContext {
    pub fn new(control: Arc<JobControl>) -> JobContext {
        JobContext { control, phase: Phase::Validating }
    }

    /// Enters a phase (progress restarts at 0 of `total`).
    pub fn phase(&mut self, phase: Phase, total: u32) {
        self.phase = phase;
        self.control.set_progress(ProgressUpdate { phase, step: 0, total });
    }

    /// Records `step` of `total` done in the current phase.
    pub fn progress(&mut self, step: u32, total: u32) {
        self.control.set_progress(ProgressUpdate { phase: self.phase, step, total });
    }

    /// Whether the runner should stop at this boundary (cancel, lost lease, shutdown).
    pub fn should_stop(&self) -> bool {
        self.control.stop_reason().is_some()
    }

    /// `Err(JobError::Stopped)` when the runner should stop: call between epochs with `?`.
    pub fn checkpoint(&self) -> Result<(), JobError> {
        if self.should_stop() {
            Err(JobError::Stopped)
        } else {
            Ok(())
        }
    }
}

/// Lets engine loops report through the context and be cancelled by it.
impl gcleaner_engine::progress::Progress for JobContext {
    fn step(&mut self, event: gcleaner_engine::progress::ProgressEvent<'_>) -> bool {
        if let Some(phase) = Phase::from_engine(event.phase) {
            self.phase = phase;
        }
        self.progress(event.step as u32, event.total as u32);
        !self.should_stop()
    }
}

/// Runs one attempt of a job. Called on a blocking thread; must return soon after
/// [`JobContext::should_stop`] turns true (checked at least once per epoch).
pub trait JobRunner: Send + Sync + 'static {
    fn run(&self, job: &JobInput, ctx: &mut JobContext) -> Result<JobOutput, JobError>;

    /// Checks a submitted config object before the job is queued; `Err` is shown to the client.
    fn check_config(&self, _config: &Value) -> Result<(), String> {
        Ok(())
    }
}
