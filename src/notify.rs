//! One Postgres LISTEN connection per process, fanned out in memory: job change signals for
//! event streams, and a wake-up counter for idle workers. Because the signals come from the
//! database, they cross processes: a worker elsewhere moves a job, this API's stream sees it.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::job_cache::JobCache;

pub const JOB_EVENTS_CHANNEL: &str = "gcleaner_job_events";
pub const QUEUE_CHANNEL: &str = "gcleaner_queue";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobSignal {
    /// The job with this id changed (or was deleted).
    Changed(Uuid),
    /// Notifications may have been missed (the connection dropped): re-read everything.
    Resync,
}

pub struct Notifications {
    jobs: broadcast::Sender<JobSignal>,
    queue: watch::Sender<u64>,
    /// Cleared before a change is broadcast, so whoever hears of a change and then reads the
    /// job (an event stream's client, say) never gets the cached old row.
    cache: std::sync::OnceLock<Arc<JobCache>>,
}

impl Notifications {
    /// Starts listening in the background until `shutdown`.
    pub fn start(pool: PgPool, shutdown: CancellationToken) -> Arc<Notifications> {
        let (jobs, _) = broadcast::channel(1024);
        let (queue, _) = watch::channel(0);
        let hub = Arc::new(Notifications { jobs, queue, cache: std::sync::OnceLock::new() });
        tokio::spawn(listen(pool, hub.clone(), shutdown));
        hub
    }

    /// Keeps `cache` in step with job changes from now on (one cache per hub).
    pub fn attach_cache(&self, cache: Arc<JobCache>) {
        let _ = self.cache.set(cache);
    }

    fn job_changed(&self, id: Uuid) {
        if let Some(cache) = self.cache.get() {
            cache.invalidate(id);
        }
        let _ = self.jobs.send(JobSignal::Changed(id));
    }

    pub fn subscribe_jobs(&self) -> broadcast::Receiver<JobSignal> {
        self.jobs.subscribe()
    }

    /// A counter that moves whenever a job may have become claimable.
    pub fn queue_watch(&self) -> watch::Receiver<u64> {
        self.queue.subscribe()
    }

    fn wake_workers(&self) {
        self.queue.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn resync(&self) {
        if let Some(cache) = self.cache.get() {
            cache.clear();
        }
        let _ = self.jobs.send(JobSignal::Resync);
        self.wake_workers();
    }
}

async fn listen(pool: PgPool, hub: Arc<Notifications>, shutdown: CancellationToken) {
    loop {
        let connected = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen_all([JOB_EVENTS_CHANNEL, QUEUE_CHANNEL]).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            _ = shutdown.cancelled() => return,
            result = connected => match result {
                Ok(listener) => listener,
                Err(err) => {
                    tracing::warn!(error = %err, "could not listen for job notifications; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            }
        };
        // Anything that happened while not listening is unknown.
        hub.resync();
        loop {
            let received = tokio::select! {
                _ = shutdown.cancelled() => return,
                received = listener.try_recv() => received,
            };
            match received {
                Ok(Some(n)) if n.channel() == QUEUE_CHANNEL => hub.wake_workers(),
                Ok(Some(n)) => {
                    if let Ok(id) = n.payload().parse::<Uuid>() {
                        hub.job_changed(id);
                    }
                }
                // The connection dropped; try_recv reconnects on the next call.
                Ok(None) => hub.resync(),
                Err(err) => {
                    tracing::warn!(error = %err, "job notification listener failed; reconnecting");
                    break;
                }
            }
        }
    }
}
