//! Where features plug in: the one place that lists every feature's Slack handlers, echo
//! handlers, jobs, HTTP routes and periodic tasks. The interaction layer, the job queue and the
//! echo endpoint dispatch through what is registered here and never name a feature themselves.

use std::time::Duration;

use axum::Router;
use rand::Rng;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span, warn};

use crate::config::Settings;
use crate::registry::Registry;
use crate::state::AppState;

/// Register every feature's handlers.
pub fn register_all(registry: &mut Registry, settings: &Settings) {
    crate::approvals::register(registry, &settings.approvals, &settings.pipelines.command);
    crate::pipelines::register(registry, &settings.pipelines);
    crate::announcements::register(registry, &settings.announcements);
    crate::maintenance::register(
        registry,
        &settings.maintenance,
        &settings.announcements.command,
    );
    crate::status::register(registry, &settings.status);
    crate::notifiers::register(registry, &settings.notifiers);
    crate::oncall::register(registry, &settings.oncall);
}

/// Feature HTTP routes beyond the Slack and echo endpoints (the `/api/v1` surface and its
/// OpenAPI document, the status page).
pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(crate::approvals::api::routes())
        .merge(crate::announcements::routes())
        .merge(crate::maintenance::routes())
        .merge(crate::status::routes())
        .merge(crate::openapi::routes())
}

/// Start every periodic task; each runs on the replica holding its database lease and stops when
/// `stop` is cancelled.
pub fn spawn_periodic(state: &AppState, stop: CancellationToken) -> Vec<JoinHandle<()>> {
    let owner = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
    let mut handles = Vec::new();
    for task in state.registry().periodic_tasks() {
        let task = task.clone();
        let Some(interval) = task.interval(state) else {
            continue;
        };
        let (state, stop, owner) = (state.clone(), stop.clone(), owner.clone());
        let span = info_span!("periodic", task = task.name());
        handles.push(tokio::spawn(
            async move {
                // Hold the lease for two intervals (at least a minute), so a dead holder is
                // replaced soon but a slow run is not overtaken.
                let ttl = (interval * 2).max(Duration::from_secs(60));
                loop {
                    let jitter = Duration::from_millis(rand::rng().random_range(0..=interval.as_millis().min(5000) as u64 / 5));
                    tokio::select! {
                        _ = tokio::time::sleep(interval + jitter) => {}
                        _ = stop.cancelled() => break,
                    }
                    let now = state.now_ms();
                    match state.db().try_lease(task.name(), &owner, now, ttl.as_millis() as i64).await {
                        Ok(true) => {
                            if let Err(e) = task.run(&state).await {
                                warn!(error.message = %e, error.cause_chain = ?e, "periodic task failed; it runs again next interval");
                            }
                        }
                        Ok(false) => {}
                        Err(e) => warn!(error = %crate::store::short_db_error(&e), "cannot take the periodic task lease"),
                    }
                }
            }
            .instrument(span),
        ));
    }
    handles
}
