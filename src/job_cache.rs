//! A short-lived in-memory copy of job rows for `GET /v1/jobs/{id}`, the endpoint pipelines poll.
//!
//! Without it every poll is a database round trip, and on a small machine the database, not the
//! API, caps the poll rate. Entries are dropped as soon as this process hears (LISTEN/NOTIFY,
//! so from any process) that the job changed, before that news reaches event streams (see
//! [`crate::notify`]), on this process's own writes, and in any case after a time-to-live, so a
//! reader sees a change within that TTL even when a field changes without a notification.
//!
//! The one race that matters, a read that fetched the old row before a change and stores it after
//! the change's notification already cleared the entry, is closed by a generation counter: a row
//! is stored only if no invalidation happened since its read began.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::db::jobs::JobRow;

/// Most rows held; beyond it expired rows are swept and new rows are not stored until there is
/// room (reads then go to the database, as without a cache).
const MAX_ENTRIES: usize = 100_000;

pub struct JobCache {
    ttl: Duration,
    generation: AtomicU64,
    entries: Mutex<HashMap<Uuid, (Instant, Arc<JobRow>)>>,
}

/// Taken before reading a row from the database; storing the row needs it.
#[derive(Debug, Clone, Copy)]
pub struct ReadTicket(u64);

impl JobCache {
    /// `ttl` zero disables the cache: every read goes to the database.
    pub fn new(ttl: Duration) -> JobCache {
        JobCache { ttl, generation: AtomicU64::new(0), entries: Mutex::new(HashMap::new()) }
    }

    pub fn get(&self, id: Uuid) -> Option<Arc<JobRow>> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(&id).filter(|(stored, _)| stored.elapsed() < self.ttl).map(|(_, row)| row.clone())
    }

    pub fn ticket(&self) -> ReadTicket {
        ReadTicket(self.generation.load(Ordering::Acquire))
    }

    /// Stores `row` read under `ticket`, unless something was invalidated since.
    pub fn put(&self, ticket: ReadTicket, row: Arc<JobRow>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        // Checked under the lock: invalidations bump the generation while holding it.
        if self.generation.load(Ordering::Acquire) != ticket.0 {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            let ttl = self.ttl;
            entries.retain(|_, (stored, _)| stored.elapsed() < ttl);
            if entries.len() >= MAX_ENTRIES {
                return;
            }
        }
        entries.insert(row.id, (Instant::now(), row));
    }

    pub fn invalidate(&self, id: Uuid) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.remove(&id);
    }

    pub fn clear(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::types::Json;
    use time::OffsetDateTime;

    fn row(id: Uuid, state: &str) -> Arc<JobRow> {
        let now = OffsetDateTime::now_utc();
        Arc::new(JobRow {
            id,
            tenant_id: Uuid::nil(),
            state: state.into(),
            phase: None,
            progress_step: None,
            progress_total: None,
            priority: 0,
            attempt: 0,
            max_attempts: 3,
            run_at: now,
            lease_owner: None,
            lease_expires_at: None,
            cancel_requested: false,
            config: Json(serde_json::json!({})),
            error: None,
            idempotency_key: None,
            request_hash: None,
            created_at: now,
            updated_at: now,
            started_at: None,
            finished_at: None,
        })
    }

    #[test]
    fn a_stored_row_is_served_until_invalidated() {
        let cache = JobCache::new(Duration::from_secs(60));
        let id = Uuid::new_v4();
        assert!(cache.get(id).is_none());
        cache.put(cache.ticket(), row(id, "queued"));
        assert_eq!(cache.get(id).unwrap().state, "queued");
        cache.invalidate(id);
        assert!(cache.get(id).is_none());
    }

    #[test]
    fn a_read_that_raced_an_invalidation_is_not_stored() {
        let cache = JobCache::new(Duration::from_secs(60));
        let id = Uuid::new_v4();
        let ticket = cache.ticket();
        // The job changes (and its notification arrives) while the old row is being read.
        cache.invalidate(id);
        cache.put(ticket, row(id, "queued"));
        assert!(cache.get(id).is_none(), "a stale row outlived the change");
        cache.put(cache.ticket(), row(id, "running"));
        assert_eq!(cache.get(id).unwrap().state, "running");
    }

    #[test]
    fn entries_expire_and_a_zero_ttl_disables_the_cache() {
        // Wide margins: a loaded CI machine can stall a thread for tens of milliseconds.
        let cache = JobCache::new(Duration::from_millis(500));
        let id = Uuid::new_v4();
        cache.put(cache.ticket(), row(id, "queued"));
        assert!(cache.get(id).is_some());
        std::thread::sleep(Duration::from_millis(700));
        assert!(cache.get(id).is_none());

        let off = JobCache::new(Duration::ZERO);
        off.put(off.ticket(), row(id, "queued"));
        assert!(off.get(id).is_none());
    }

    #[test]
    fn clear_drops_everything() {
        let cache = JobCache::new(Duration::from_secs(60));
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        for id in &ids {
            cache.put(cache.ticket(), row(*id, "queued"));
        }
        cache.clear();
        assert!(ids.iter().all(|id| cache.get(*id).is_none()));
    }
}
