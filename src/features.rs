//! Where features plug in: the one place that lists every feature's Slack handlers, echo
//! handlers, jobs, HTTP routes and periodic tasks. The interaction layer, the job queue and the
//! echo endpoint dispatch through what is registered here and never name a feature themselves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use crate::config::Settings;
use crate::registry::{Periodic, Registry};
use crate::state::AppState;
use crate::store::leases::LeaseTiming;

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
    crate::notifiers::register(
        registry,
        &settings.notifiers,
        &settings.announcements.command,
    );
    crate::oncall::register(registry, &settings.oncall);
    crate::pager::register(registry, &settings.pager);
}

/// Feature HTTP routes beyond the Slack and echo endpoints (the `/api/v1` surface and its
/// OpenAPI document, the status page).
pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(crate::approvals::api::routes())
        .merge(crate::announcements::routes())
        .merge(crate::maintenance::routes())
        .merge(crate::status::routes())
        .merge(crate::pager::routes())
        .merge(crate::openapi::routes())
}

/// Start every periodic task; each runs on the replica holding its database lease and stops when
/// `stop` is cancelled, giving the lease back so another replica (or this one, restarted) takes
/// over at once instead of waiting for it to expire.
///
/// The lease lives one interval and is renewed, by its holder, every third of it
/// ([`LeaseTiming::for_interval`]); the other replicas try to take it as often. The holder runs the
/// task every interval, and a replica that has just taken the lease over runs it at once: it does
/// not know when the previous holder last ran it, and running early is harmless where running
/// late is not. So a graceful restart or a rolling deploy never delays a run, and a replica that
/// dies is replaced within [`LeaseTiming::takeover_bound`] (4/3 of the interval).
pub fn spawn_periodic(state: &AppState, stop: CancellationToken) -> Vec<JoinHandle<()>> {
    let owner = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
    let mut handles = Vec::new();
    for task in state.registry().periodic_tasks() {
        let Some(interval) = task.interval(state) else {
            continue;
        };
        let runner = PeriodicRunner {
            task: task.clone(),
            state: state.clone(),
            owner: owner.clone(),
            interval,
            timing: LeaseTiming::for_interval(interval),
        };
        let span = info_span!("periodic", task = task.name());
        handles.push(tokio::spawn(runner.run(stop.clone()).instrument(span)));
    }
    handles
}

/// One periodic task on this replica.
struct PeriodicRunner {
    task: Arc<dyn Periodic>,
    state: AppState,
    owner: String,
    interval: Duration,
    timing: LeaseTiming,
}

impl PeriodicRunner {
    async fn run(self, stop: CancellationToken) {
        // When this replica last ran the task while holding the lease without a break.
        let mut last_run: Option<Instant> = None;
        loop {
            let wait = if self.take_lease().await {
                let due = last_run.map(|t| t + self.interval);
                if due.is_none_or(|d| Instant::now() >= d) {
                    last_run = Some(Instant::now());
                    self.run_holding().await;
                }
                let next = last_run.map_or(Instant::now(), |t| t + self.interval);
                next.saturating_duration_since(Instant::now())
                    .min(self.timing.renew_every)
            } else {
                last_run = None;
                self.timing.renew_every
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => break,
            }
        }
        self.release().await;
    }

    /// Take or renew the lease. A database error counts as not held: better a late run than two.
    async fn take_lease(&self) -> bool {
        let now = self.state.now_ms();
        match self
            .state
            .db()
            .try_lease(self.task.name(), &self.owner, now, self.timing.ttl_ms())
            .await
        {
            Ok(held) => held,
            Err(e) => {
                warn!(error = %crate::store::short_db_error(&e), "cannot take the periodic task lease");
                false
            }
        }
    }

    /// Run the task once, renewing the lease while it runs so a slow run is not overtaken.
    async fn run_holding(&self) {
        let run = self.task.run(&self.state);
        tokio::pin!(run);
        let result = loop {
            tokio::select! {
                r = &mut run => break r,
                _ = tokio::time::sleep(self.timing.renew_every) => {
                    if !self.take_lease().await {
                        warn!("the periodic task lease was lost during a run; another replica may run it too");
                    }
                }
            }
        };
        if let Err(e) = result {
            warn!(error.message = %e, error.cause_chain = ?e, "periodic task failed; it runs again next interval");
        }
    }

    /// Give the lease back (only if still ours), so another replica need not wait for it.
    async fn release(&self) {
        match self
            .state
            .db()
            .release_lease(self.task.name(), &self.owner)
            .await
        {
            Ok(()) => debug!("periodic task lease given back"),
            Err(e) => {
                warn!(error = %crate::store::short_db_error(&e), "giving the periodic task lease back failed; it expires by itself")
            }
        }
    }
}
