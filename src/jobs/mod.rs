//! The durable job queue (an outbox in the database).
//!
//! Anything that must happen after Slack has its ack — posting or updating a message, a Gate call,
//! a provider call — is written here first and then run by a [`Worker`](worker::Worker). That is what makes the
//! service's promises hold when Slack, Gate or a provider is slow, down or rate-limiting: a failed
//! attempt is rescheduled with exponential backoff and jitter (or at the upstream's `Retry-After`),
//! a crash loses nothing because the row is still there, and a replica that dies mid-job leaves a
//! lease that expires so another replica picks the job up.
//!
//! Claiming is one conditional `UPDATE` that re-checks the job's state, so two workers — in one
//! process or on two replicas — never both run a job whose lease is live. A job that exhausts its
//! attempts is kept with state `failed` and its last error: visible in `/metrics` and the logs,
//! never dropped.
//!
//! This module must never call Slack or Gate itself: it only stores, schedules and hands jobs to
//! the handlers features register.

pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde::Serialize;
use sqlx::Any;
use tokio::sync::Notify;

use crate::clock::{Millis, SharedClock};
use crate::config::JobSettings;
use crate::store::{Backend, Db, new_id};

/// A job to store.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: String,
    pub payload: serde_json::Value,
    /// At most one job with this key is ever stored; a second enqueue is a no-op. Use it to make
    /// "do this once" idempotent across retries and replicas.
    pub dedup_key: Option<String>,
    /// When to run first (default: now).
    pub run_at: Option<Millis>,
    /// Attempts before the job is kept as failed (default: `jobs.max_attempts`).
    pub max_attempts: Option<u32>,
}

impl NewJob {
    pub fn new(kind: &str, payload: &impl Serialize) -> Self {
        Self {
            kind: kind.to_string(),
            payload: serde_json::to_value(payload).unwrap_or(serde_json::Value::Null),
            dedup_key: None,
            run_at: None,
            max_attempts: None,
        }
    }
    pub fn dedup(mut self, key: impl Into<String>) -> Self {
        self.dedup_key = Some(key.into());
        self
    }
    pub fn run_at(mut self, at: Millis) -> Self {
        self.run_at = Some(at);
        self
    }
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n);
        self
    }
}

/// A job a worker holds the lease on.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Job {
    pub id: String,
    pub kind: String,
    pub payload: String,
    /// 1 on the first run.
    pub attempts: i64,
    pub max_attempts: i64,
    pub dedup_key: Option<String>,
    pub created_at: i64,
}

impl Job {
    /// The payload as the handler's type.
    pub fn payload<T: serde::de::DeserializeOwned>(&self) -> anyhow::Result<T> {
        serde_json::from_str(&self.payload)
            .map_err(|e| anyhow::anyhow!("job {} ({}) has a bad payload: {e}", self.id, self.kind))
    }
    pub fn is_last_attempt(&self) -> bool {
        self.attempts >= self.max_attempts
    }
}

/// How a job attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Try again later: after `after` if the upstream said so, else after the backoff.
    #[error("{error:#}")]
    Retry {
        error: anyhow::Error,
        after: Option<Duration>,
    },
    /// Retrying cannot help (bad payload, a 4xx that will not change): keep as failed now.
    #[error("{0:#}")]
    Permanent(anyhow::Error),
    /// Nothing failed, the work is just not finished (an execution still running): look again
    /// after this long. Does not use up an attempt.
    #[error("not finished yet; checking again later")]
    NotYet(Duration),
}

impl JobError {
    pub fn retry_after(error: anyhow::Error, after: Duration) -> Self {
        JobError::Retry {
            error,
            after: Some(after),
        }
    }
}

impl From<anyhow::Error> for JobError {
    fn from(error: anyhow::Error) -> Self {
        JobError::Retry { error, after: None }
    }
}

/// Counts by state, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    pub pending: i64,
    pub running: i64,
    pub failed: i64,
    /// Pending jobs whose `run_at` has come (the backlog; the rest are scheduled for later).
    pub due: i64,
    /// The `run_at` of the oldest due job (clock milliseconds).
    pub oldest_due_at: Option<i64>,
}

/// A stored job as inspection tools see it.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct JobRecord {
    pub id: String,
    pub kind: String,
    pub state: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub run_at: i64,
    pub last_error: Option<String>,
    pub dedup_key: Option<String>,
}

/// The queue: storing, claiming, finishing. Cheap to clone.
#[derive(Clone)]
pub struct JobQueue {
    db: Db,
    clock: SharedClock,
    settings: Arc<JobSettings>,
    wake: Arc<Notify>,
    /// When expired leases were last returned to pending (clock milliseconds).
    last_reap: Arc<std::sync::atomic::AtomicI64>,
}

impl std::fmt::Debug for JobQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobQueue").finish_non_exhaustive()
    }
}

const CLAIM_COLUMNS: &str = "id, kind, payload, attempts, max_attempts, dedup_key, created_at";

impl JobQueue {
    pub fn new(db: Db, clock: SharedClock, settings: JobSettings) -> Self {
        Self {
            db,
            clock,
            settings: Arc::new(settings),
            wake: Arc::new(Notify::new()),
            last_reap: Arc::new(std::sync::atomic::AtomicI64::new(i64::MIN / 2)),
        }
    }

    pub fn settings(&self) -> &JobSettings {
        &self.settings
    }

    pub(crate) fn wake_handle(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Store a job and wake a local worker. Returns the job id, or `None` when a job with the same
    /// dedup key already exists.
    pub async fn enqueue(&self, job: NewJob) -> Result<Option<String>, sqlx::Error> {
        let id = self.insert(self.db.pool(), job).await?;
        if id.is_some() {
            self.wake.notify_one();
        }
        Ok(id)
    }

    /// Store a job inside the caller's transaction (the outbox pattern: the job exists exactly
    /// when the caller's own write commits). Call [`JobQueue::wake`] after the commit.
    pub async fn insert<'e, E>(
        &self,
        executor: E,
        job: NewJob,
    ) -> Result<Option<String>, sqlx::Error>
    where
        E: sqlx::Executor<'e, Database = Any>,
    {
        let now = self.clock.now_ms();
        let id = new_id();
        let max = job
            .max_attempts
            .unwrap_or(self.settings.max_attempts)
            .max(1);
        let res = sqlx::query(
            "INSERT INTO jobs (id, kind, payload, dedup_key, state, attempts, max_attempts, run_at,
                               created_at, updated_at)
             VALUES ($1, $2, $3, $4, 'pending', 0, $5, $6, $7, $7)
             ON CONFLICT (dedup_key) DO NOTHING",
        )
        .bind(&id)
        .bind(&job.kind)
        .bind(job.payload.to_string())
        .bind(job.dedup_key)
        .bind(i64::from(max))
        .bind(job.run_at.unwrap_or(now))
        .bind(now)
        .execute(executor)
        .await?;
        Ok((res.rows_affected() == 1).then_some(id))
    }

    /// Wake a local worker (after committing a transaction that inserted jobs).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Claim the next due job for `owner`. The state is re-checked in the `UPDATE` itself, so a
    /// job is claimed by exactly one worker. Jobs whose lease expired (their worker died) are first
    /// returned to `pending`, at most once a second, so the claim itself stays an index lookup.
    pub async fn claim(&self, owner: &str) -> Result<Option<Job>, sqlx::Error> {
        let now = self.clock.now_ms();
        let last = self.last_reap.load(std::sync::atomic::Ordering::Relaxed);
        if now - last >= 1000 || now < last {
            self.last_reap
                .store(now, std::sync::atomic::Ordering::Relaxed);
            self.reap_expired(now).await?;
        }
        let lease_until = now + (self.settings.lease_secs as i64) * 1000;
        // PostgreSQL: skip rows another transaction is claiming instead of queueing behind it.
        // SQLite serialises writers, so the plain sub-select is already atomic there.
        let lock = match self.db.backend() {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE jobs SET state = 'running', lease_owner = $1, lease_until = $2,
                    attempts = attempts + 1, updated_at = $3
             WHERE id = (SELECT id FROM jobs WHERE state = 'pending' AND run_at <= $3
                         ORDER BY run_at LIMIT 1{lock})
               AND state = 'pending' AND run_at <= $3
             RETURNING {CLAIM_COLUMNS}"
        );
        // Only our constant fragments are interpolated; every value is a bound parameter.
        sqlx::query_as::<_, Job>(sqlx::AssertSqlSafe(sql))
            .bind(owner)
            .bind(lease_until)
            .bind(now)
            .fetch_optional(self.db.pool())
            .await
    }

    /// Return jobs whose lease expired to `pending`; their worker died or hung. The attempt they
    /// used stays counted.
    pub async fn reap_expired(&self, now: i64) -> Result<u64, sqlx::Error> {
        let res = sqlx::query(
            "UPDATE jobs SET state = 'pending', lease_owner = NULL, lease_until = NULL, updated_at = $1
             WHERE state = 'running' AND lease_until < $1",
        )
        .bind(now)
        .execute(self.db.pool())
        .await?;
        if res.rows_affected() > 0 {
            tracing::warn!(
                jobs = res.rows_affected(),
                "took over jobs whose worker stopped renewing its lease"
            );
        }
        Ok(res.rows_affected())
    }

    /// Extend the lease of a job still running. False when the lease was lost.
    pub async fn heartbeat(&self, job_id: &str, owner: &str) -> Result<bool, sqlx::Error> {
        let now = self.clock.now_ms();
        let res = sqlx::query(
            "UPDATE jobs SET lease_until = $1, updated_at = $2
             WHERE id = $3 AND lease_owner = $4 AND state = 'running'",
        )
        .bind(now + (self.settings.lease_secs as i64) * 1000)
        .bind(now)
        .bind(job_id)
        .bind(owner)
        .execute(self.db.pool())
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Mark a job done. Only the lease holder can.
    pub async fn complete(&self, job: &Job, owner: &str) -> Result<bool, sqlx::Error> {
        let res = sqlx::query(
            "UPDATE jobs SET state = 'done', lease_owner = NULL, lease_until = NULL,
                    last_error = NULL, updated_at = $1
             WHERE id = $2 AND lease_owner = $3 AND state = 'running'",
        )
        .bind(self.clock.now_ms())
        .bind(&job.id)
        .bind(owner)
        .execute(self.db.pool())
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Record a failed attempt: reschedule, or keep as failed when attempts are exhausted or the
    /// error is permanent. Returns the new state.
    pub async fn fail(
        &self,
        job: &Job,
        owner: &str,
        error: &JobError,
    ) -> Result<&'static str, sqlx::Error> {
        let now = self.clock.now_ms();
        let (state, run_at) = match error {
            JobError::NotYet(after) => {
                sqlx::query(
                    "UPDATE jobs SET state = 'pending', run_at = $1, attempts = attempts - 1,
                            lease_owner = NULL, lease_until = NULL, updated_at = $2
                     WHERE id = $3 AND lease_owner = $4",
                )
                .bind(now + after.as_millis() as i64)
                .bind(now)
                .bind(&job.id)
                .bind(owner)
                .execute(self.db.pool())
                .await?;
                return Ok("pending");
            }
            JobError::Permanent(_) => ("failed", now),
            JobError::Retry { .. } if job.attempts >= job.max_attempts => ("failed", now),
            JobError::Retry { after, .. } => {
                let delay = match after {
                    Some(d) => d.as_millis() as i64 + rand::rng().random_range(0..250),
                    None => self.backoff_ms(job.attempts),
                };
                ("pending", now + delay)
            }
        };
        // Keep the error short; it is shown in logs and the API, never a request body.
        let mut message = error.to_string();
        message.truncate(1000);
        sqlx::query(
            "UPDATE jobs SET state = $1, run_at = $2, lease_owner = NULL, lease_until = NULL,
                    last_error = $3, updated_at = $4
             WHERE id = $5 AND lease_owner = $6",
        )
        .bind(state)
        .bind(run_at)
        .bind(message)
        .bind(now)
        .bind(&job.id)
        .bind(owner)
        .execute(self.db.pool())
        .await?;
        Ok(state)
    }

    /// Exponential backoff with equal jitter: half the delay fixed, half random.
    pub fn backoff_ms(&self, attempts: i64) -> i64 {
        crate::backoff::exponential(
            attempts.clamp(1, 30) as u32,
            Duration::from_millis(self.settings.backoff_base_ms),
            Duration::from_millis(self.settings.backoff_max_ms),
        )
        .as_millis() as i64
    }

    pub async fn depth(&self) -> Result<QueueDepth, sqlx::Error> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM jobs WHERE state <> 'done' GROUP BY state")
                .fetch_all(self.db.pool())
                .await?;
        let mut d = QueueDepth::default();
        for (state, n) in rows {
            match state.as_str() {
                "pending" => d.pending = n,
                "running" => d.running = n,
                "failed" => d.failed = n,
                _ => {}
            }
        }
        (d.due, d.oldest_due_at) = sqlx::query_as(
            "SELECT COUNT(*), MIN(run_at) FROM jobs WHERE state = 'pending' AND run_at <= $1",
        )
        .bind(self.clock.now_ms())
        .fetch_one(self.db.pool())
        .await?;
        Ok(d)
    }

    pub async fn get(&self, id: &str) -> Result<Option<JobRecord>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, kind, state, attempts, max_attempts, run_at, last_error, dedup_key
             FROM jobs WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.db.pool())
        .await
    }

    pub async fn by_dedup_key(&self, key: &str) -> Result<Option<JobRecord>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, kind, state, attempts, max_attempts, run_at, last_error, dedup_key
             FROM jobs WHERE dedup_key = $1",
        )
        .bind(key)
        .fetch_optional(self.db.pool())
        .await
    }

    /// Whether a pending or running job exists whose dedup key starts with `prefix`.
    pub async fn live_with_key_prefix(&self, prefix: &str) -> Result<bool, sqlx::Error> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE state IN ('pending', 'running')
               AND substr(dedup_key, 1, length($1)) = $1",
        )
        .bind(prefix)
        .fetch_one(self.db.pool())
        .await?;
        Ok(n > 0)
    }

    /// Delete finished jobs older than the retention, Events API dedup marks older than an hour, and
    /// interaction claims older than a week.
    pub async fn purge(&self) -> Result<u64, sqlx::Error> {
        let now = self.clock.now_ms();
        let keep_ms = (self.settings.retain_done_hours as i64) * 3_600_000;
        let done = sqlx::query("DELETE FROM jobs WHERE state = 'done' AND updated_at < $1")
            .bind(now - keep_ms)
            .execute(self.db.pool())
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM slack_events_seen WHERE seen_at < $1")
            .bind(now - 3_600_000)
            .execute(self.db.pool())
            .await?;
        // Interaction claims (slack::once) outlive any modal or message buttons by far.
        sqlx::query("DELETE FROM interaction_claims WHERE claimed_at < $1")
            .bind(now - 7 * 24 * 3_600_000)
            .execute(self.db.pool())
            .await?;
        Ok(done)
    }
}
