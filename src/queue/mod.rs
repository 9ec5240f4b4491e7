//! The Postgres job queue: claiming ([`claim`]), fenced worker writes ([`fenced`]), the reaper
//! ([`reaper`]), completion callbacks ([`callbacks`]) and the worker loop ([`worker`]) that runs a
//! [`runner::JobRunner`] on a blocking thread.

pub mod callbacks;
pub mod claim;
pub mod engine_runner;
pub mod fenced;
pub mod reaper;
pub mod runner;
pub mod worker;

use std::time::Duration;

use rand::Rng;

pub use runner::{JobContext, JobError, JobInput, JobOutput, JobRunner, Phase};

/// Delay before retry number `attempt` (1-based): `base * 2^(attempt-1)`, scaled by a random
/// factor in [0.5, 1.5) so jobs that failed together do not retry together; at most an hour.
pub fn retry_delay(base: Duration, attempt: i32) -> Duration {
    let exp = 2f64.powi((attempt - 1).clamp(0, 20));
    let jitter = rand::thread_rng().gen_range(0.5..1.5);
    Duration::from_secs_f64((base.as_secs_f64() * exp * jitter).min(3600.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_grows_and_is_capped() {
        let base = Duration::from_secs(10);
        for _ in 0..50 {
            let first = retry_delay(base, 1).as_secs_f64();
            assert!((5.0..15.0).contains(&first));
            let third = retry_delay(base, 3).as_secs_f64();
            assert!((20.0..60.0).contains(&third));
            assert!(retry_delay(base, 30).as_secs_f64() <= 3600.0);
        }
    }
}
