//! Where features plug in: the one place that lists every feature's Slack handlers, echo
//! handlers, jobs, HTTP routes and periodic tasks. The interaction layer, the job queue and the
//! echo endpoint dispatch through what is registered here and never name a feature themselves.

use axum::Router;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::registry::Registry;
use crate::state::AppState;

/// Register every feature's handlers.
pub fn register_all(_registry: &mut Registry, _settings: &Settings) {}

/// Feature HTTP routes beyond the Slack and echo endpoints (the `/api/v1` surface).
pub fn routes() -> Router<AppState> {
    Router::new()
}

/// Start every feature's periodic task (pollers, reconcilers, syncs); each stops when `stop` is
/// cancelled.
pub fn spawn_periodic(_state: &AppState, _stop: CancellationToken) -> Vec<JoinHandle<()>> {
    Vec::new()
}
