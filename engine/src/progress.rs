//! Progress reporting and cancellation for long-running engine work.
//!
//! The engine knows nothing of terminals or HTTP: callers pass a [`Progress`] sink. The CLI draws
//! progress bars from it; the service records progress in the database and checks for
//! cancellation between epochs.

/// One step of a long-running phase.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressEvent<'a> {
    /// Phase name, e.g. "training", "recovery", "unlearning".
    pub phase: &'a str,
    /// Completed steps (1-based once a step is done).
    pub step: usize,
    /// Total steps of the phase.
    pub total: usize,
    /// Short human-readable status, e.g. "loss 0.231 acc 0.95".
    pub message: String,
}

pub trait Progress {
    /// Called after each step. Returning `false` asks the engine to stop at this boundary
    /// (cancellation); the engine then returns [`crate::Error::Cancelled`].
    fn step(&mut self, event: ProgressEvent<'_>) -> bool;
}

/// Progress sink that ignores everything and never cancels.
pub struct NoProgress;

impl Progress for NoProgress {
    fn step(&mut self, _event: ProgressEvent<'_>) -> bool {
        true
    }
}

impl<F: FnMut(ProgressEvent<'_>) -> bool> Progress for F {
    fn step(&mut self, event: ProgressEvent<'_>) -> bool {
        self(event)
    }
}
