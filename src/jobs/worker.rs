//! The worker: claims due jobs, runs their handlers (the [`JobHandler`](crate::registry::JobHandler)s
//! features register) under a renewed lease, records the outcome.
//!
//! It runs handlers with the state, so it sits above it; the queue ([`super::JobQueue`]) sits
//! below, and the jobs module does not re-export this one, so the state's queue never leads back
//! to the state.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use super::{Job, JobError};
use crate::metrics::JobKind;
use crate::state::AppState;

/// Runs jobs until cancelled. One per process; `jobs.concurrency` jobs at a time.
pub struct Worker {
    state: AppState,
    owner: String,
}

impl Worker {
    pub fn new(state: AppState) -> Self {
        let owner = format!(
            "{}-{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "slackops".into()),
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        Self { state, owner }
    }

    /// Identifies this worker's leases in the database.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Claim and run jobs until `stop` is cancelled, then wait for running jobs (up to `grace`).
    pub async fn run(self, stop: CancellationToken, grace: Duration) {
        let queue = self.state.jobs().clone();
        let settings = queue.settings().clone();
        let permits = Arc::new(Semaphore::new(settings.concurrency));
        let wake = queue.wake_handle();
        let poll = Duration::from_millis(settings.poll_interval_ms);
        let mut last_purge = tokio::time::Instant::now();
        info!(owner = %self.owner, concurrency = settings.concurrency, "job worker started");

        'outer: loop {
            if stop.is_cancelled() {
                break;
            }
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = stop.cancelled() => break,
            };
            match queue.claim(&self.owner).await {
                Ok(Some(job)) => {
                    let state = self.state.clone();
                    let owner = self.owner.clone();
                    let span = info_span!("job", job.id = %job.id, job.kind = %job.kind, job.attempt = job.attempts);
                    self.state.tasks().spawn(
                        async move {
                            run_one(&state, &owner, job).await;
                            drop(permit);
                        }
                        .instrument(span),
                    );
                    continue 'outer;
                }
                Ok(None) => drop(permit),
                Err(e) => {
                    drop(permit);
                    warn!(error = %crate::store::short_db_error(&e), "claiming a job failed; retrying");
                }
            }
            if last_purge.elapsed() > Duration::from_secs(600) {
                last_purge = tokio::time::Instant::now();
                if let Err(e) = queue.purge().await {
                    warn!(error = %crate::store::short_db_error(&e), "purging finished jobs failed");
                }
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = stop.cancelled() => break,
            }
        }

        // Running jobs hold permits; wait until all are returned or the grace period ends.
        let all = settings.concurrency as u32;
        if tokio::time::timeout(grace, permits.acquire_many(all))
            .await
            .is_err()
        {
            warn!(
                "shutdown grace period ended with jobs still running; their leases will expire and another worker will run them"
            );
        }
        info!("job worker stopped");
    }
}

async fn run_one(state: &AppState, owner: &str, job: Job) {
    let queue = state.jobs();
    let labels = JobKind {
        kind: job.kind.clone(),
    };
    let metrics = state.metrics();

    // Renew the lease while the handler runs, so a slow job is not taken over by another worker.
    let lease = Duration::from_secs(queue.settings().lease_secs);
    let heartbeat = {
        let queue = queue.clone();
        let (id, owner) = (job.id.clone(), owner.to_string());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                match queue.heartbeat(&id, &owner).await {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => {
                        warn!(error = %crate::store::short_db_error(&e), "lease heartbeat failed")
                    }
                }
            }
        })
    };

    let result = match state.registry().job_handler(&job.kind) {
        Some(handler) => handler.run(state, &job).await,
        None => Err(JobError::Retry {
            error: anyhow::anyhow!("no handler for job kind {:?} on this replica", job.kind),
            after: None,
        }),
    };
    heartbeat.abort();

    match result {
        Ok(()) => match queue.complete(&job, owner).await {
            Ok(true) => {
                metrics.jobs_succeeded.get_or_create(&labels).inc();
            }
            Ok(false) => {
                warn!("job finished after its lease was lost; another worker may run it again")
            }
            Err(e) => {
                error!(error = %crate::store::short_db_error(&e), "recording a finished job failed; it will run again")
            }
        },
        Err(JobError::NotYet(after)) => {
            if let Err(e) = queue.fail(&job, owner, &JobError::NotYet(after)).await {
                error!(error = %crate::store::short_db_error(&e), "rescheduling an unfinished job failed; the lease will expire and the job run again");
            }
        }
        Err(err) => {
            metrics.jobs_attempt_failures.get_or_create(&labels).inc();
            match queue.fail(&job, owner, &err).await {
                Ok("failed") => {
                    metrics.jobs_exhausted.get_or_create(&labels).inc();
                    error!(
                        error.message = %err,
                        attempts = job.attempts,
                        "job failed for good; kept with state failed"
                    );
                }
                Ok(_) => {
                    warn!(error.message = %err, attempts = job.attempts, max_attempts = job.max_attempts, "job attempt failed; rescheduled")
                }
                Err(e) => {
                    error!(error = %crate::store::short_db_error(&e), "recording a failed attempt failed; the lease will expire and the job run again")
                }
            }
        }
    }
}
