//! GET /v1/jobs/{id}/events: Server-Sent Events of a job's status and progress. Fed by the
//! process's LISTEN connection, so changes made by any worker anywhere arrive; the stream ends
//! after the terminal state.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::Router;
use futures_util::stream::{self, Stream};
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::auth::Caller;
use super::error::ApiError;
use super::job_view::JobView;
use super::jobs::parse_job_id;
use super::state::AppState;
use crate::db::jobs;
use crate::notify::JobSignal;

/// Re-read the job this often even without a notification, in case one was lost.
const RESYNC_INTERVAL: Duration = Duration::from_secs(15);

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/jobs/{id}/events", get(job_events))
}

struct Feed {
    state: AppState,
    tenant_id: Uuid,
    id: Uuid,
    signals: tokio::sync::broadcast::Receiver<JobSignal>,
    last: Option<JobView>,
    pending: Option<JobView>,
    done: bool,
}

async fn job_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let id = parse_job_id(&id)?;
    // Subscribe before the first read so no change between the two is missed.
    let signals = state.notifications.subscribe_jobs();
    let job = jobs::get_for_tenant(&state.pool, caller.tenant_id, id).await?.ok_or(ApiError::NotFound)?;
    let feed =
        Feed { state, tenant_id: caller.tenant_id, id, signals, last: None, pending: Some(JobView::from_row(&job)), done: false };
    Ok(Sse::new(stream::unfold(feed, next_event)).keep_alive(KeepAlive::new().interval(Duration::from_secs(10))))
}

fn event_for(view: &JobView, previous: Option<&JobView>) -> Event {
    let kind = match previous {
        Some(p) if p.status == view.status => "progress",
        _ => "status",
    };
    let data = serde_json::to_string(view).unwrap_or_default();
    Event::default().event(kind).data(data)
}

async fn next_event(mut feed: Feed) -> Option<(Result<Event, Infallible>, Feed)> {
    if feed.done {
        return None;
    }
    loop {
        if let Some(view) = feed.pending.take() {
            if feed.last.as_ref() != Some(&view) {
                let event = event_for(&view, feed.last.as_ref());
                feed.done = view.is_terminal();
                feed.last = Some(view);
                return Some((Ok(event), feed));
            }
        }
        // Open streams would hold a graceful shutdown forever: they end with the server.
        let received = tokio::select! {
            _ = feed.state.shutdown.cancelled() => return None,
            received = tokio::time::timeout(RESYNC_INTERVAL, feed.signals.recv()) => received,
        };
        let reload = match received {
            Ok(Ok(JobSignal::Changed(id))) => id == feed.id,
            Ok(Ok(JobSignal::Resync)) | Ok(Err(RecvError::Lagged(_))) | Err(_) => true,
            Ok(Err(RecvError::Closed)) => return None,
        };
        if !reload {
            continue;
        }
        match jobs::get_for_tenant(&feed.state.pool, feed.tenant_id, feed.id).await {
            Ok(Some(job)) => feed.pending = Some(JobView::from_row(&job)),
            Ok(None) => {
                feed.done = true;
                let data = serde_json::json!({ "id": feed.id, "deleted": true }).to_string();
                return Some((Ok(Event::default().event("deleted").data(data)), feed));
            }
            Err(err) => {
                tracing::warn!(job_id = %feed.id, error = %err, "event stream could not read the job");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
