//! Per-token request rate limit: a token bucket per caller, in memory. Each API process limits
//! on its own, which bounds what one token can cost any single process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use uuid::Uuid;

pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<Uuid, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(per_sec: f64, burst: f64) -> RateLimiter {
        RateLimiter { per_sec, burst: burst.max(1.0), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one request from `key`'s bucket; `Err(seconds)` to wait when it is empty.
    pub fn check(&self, key: Uuid) -> Result<(), u64> {
        if self.per_sec <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > 100_000 {
            buckets.retain(|_, (_, at)| now.duration_since(*at).as_secs() < 60);
        }
        let (tokens, at) = buckets.entry(key).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_sec).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.per_sec).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_refuses() {
        let limiter = RateLimiter::new(1.0, 3.0);
        let key = Uuid::new_v4();
        assert!(limiter.check(key).is_ok());
        assert!(limiter.check(key).is_ok());
        assert!(limiter.check(key).is_ok());
        assert_eq!(limiter.check(key), Err(1));
        assert!(limiter.check(Uuid::new_v4()).is_ok(), "buckets are per key");
    }
}
