//! The durable job queue, through the real service: retries with backoff, exhaustion kept and
//! visible in `/metrics`, permanent failures, lease takeover after a worker dies, exactly-once
//! under two service instances sharing one database, dedup keys, and named leases. Every test runs
//! on every engine `TestDb::all` offers (SQLite always, PostgreSQL when configured).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::json;
use slackops::clock::ManualClock;
use slackops::jobs::{Job, JobError, JobRecord, NewJob};
use slackops::registry::JobHandler;
use slackops::state::AppState;

use crate::helpers::{Counter, TestApp, TestAppBuilder, TestDb, eventually};

/// A job handler made of a closure that gets a copy of the job.
pub struct FnHandler<F>(pub F);

#[async_trait]
impl<F, Fut> JobHandler for FnHandler<F>
where
    F: Fn(Job) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), JobError>> + Send + 'static,
{
    async fn run(&self, _state: &AppState, job: &Job) -> Result<(), JobError> {
        (self.0)(job.clone()).await
    }
}

pub fn handler<F, Fut>(f: F) -> FnHandler<F>
where
    F: Fn(Job) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), JobError>> + Send + 'static,
{
    FnHandler(f)
}

/// The stored job, which must exist.
pub async fn record(app: &TestApp, id: &str) -> JobRecord {
    app.state
        .jobs()
        .get(id)
        .await
        .expect("reading a job")
        .unwrap_or_else(|| panic!("job {id} is stored"))
}

/// Wait until the job reaches `state` and return it.
pub async fn wait_for_state(app: &TestApp, id: &str, state: &str, timeout: Duration) -> JobRecord {
    let what = format!("job {id} to reach state {state}");
    eventually(timeout, &what, || async {
        let r = record(app, id).await;
        (r.state == state).then_some(r)
    })
    .await
}

async fn count_in_state(app: &TestApp, state: &str) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM jobs WHERE state = $1")
        .bind(state)
        .fetch_one(app.state.db().pool())
        .await
        .expect("counting jobs")
}

async fn lease_owner(app: &TestApp, id: &str) -> Option<String> {
    sqlx::query_scalar::<_, Option<String>>("SELECT lease_owner FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_one(app.state.db().pool())
        .await
        .expect("reading the lease owner")
}

/// A second service instance on the same database as `first` (another replica).
async fn replica_of(first: &TestApp) -> TestAppBuilder {
    let url = first.settings.database.url.clone();
    // The placeholder database is never used: the URL is replaced by the first instance's.
    TestAppBuilder::new(TestDb::sqlite())
        .await
        .settings(move |s| s.database.url = url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_whose_first_run_fails_is_retried_after_a_backoff_and_completes() {
    for db in TestDb::all("jobs::a_job_whose_first_run_fails_is_retried").await {
        let engine = db.engine;
        // (when, attempt number) of every run.
        let runs: Arc<Mutex<Vec<(Instant, i64)>>> = Arc::default();
        let seen = runs.clone();
        let app = TestAppBuilder::new(db)
            .await
            .register(move |r| {
                r.job(
                    "test.flaky",
                    handler(move |job: Job| {
                        let runs = seen.clone();
                        async move {
                            let n = {
                                let mut runs = runs.lock().unwrap();
                                runs.push((Instant::now(), job.attempts));
                                runs.len()
                            };
                            if n == 1 {
                                Err(anyhow::anyhow!("Slack answered 503").into())
                            } else {
                                Ok(())
                            }
                        }
                    }),
                );
            })
            .spawn()
            .await;

        let id = app
            .state
            .jobs()
            .enqueue(NewJob::new("test.flaky", &json!({"n": 1})))
            .await
            .expect("enqueue")
            .expect("a new job");
        let done = wait_for_state(&app, &id, "done", Duration::from_secs(15)).await;

        let runs = runs.lock().unwrap().clone();
        assert_eq!(runs.len(), 2, "{engine:?}: one failed run, one retry");
        assert_eq!(
            (runs[0].1, runs[1].1),
            (1, 2),
            "{engine:?}: the handler sees the attempt number"
        );
        assert_eq!(done.attempts, 2, "{engine:?}");
        assert_eq!(
            done.last_error, None,
            "{engine:?}: a success clears the error"
        );
        // jobs.backoff_base_ms is 50 in tests; equal jitter waits at least half of it.
        let gap = runs[1].0 - runs[0].0;
        assert!(
            gap >= Duration::from_millis(20),
            "{engine:?}: the retry waited for the backoff, not {gap:?}"
        );
        // The counter is bumped just after the row is marked done.
        let metrics = eventually(Duration::from_secs(5), "the success counted", || async {
            let m = app.metrics_text().await;
            m.contains(r#"slackops_jobs_succeeded_total{kind="test.flaky"} 1"#)
                .then_some(m)
        })
        .await;
        assert!(
            metrics.contains(r#"slackops_job_attempt_failures_total{kind="test.flaky"} 1"#),
            "{engine:?}: {metrics}"
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_that_always_fails_is_kept_as_failed_after_max_attempts_and_shows_in_metrics() {
    for db in TestDb::all("jobs::a_job_that_always_fails_is_kept_as_failed").await {
        let engine = db.engine;
        let runs = Counter::default();
        let seen = runs.clone();
        let app = TestAppBuilder::new(db)
            .await
            .settings(|s| s.jobs.max_attempts = 3)
            .register(move |r| {
                r.job(
                    "test.doomed",
                    handler(move |job: Job| {
                        let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
                        async move {
                            Err(
                                anyhow::anyhow!("gate refused, attempt {} ({n})", job.attempts)
                                    .into(),
                            )
                        }
                    }),
                );
            })
            .spawn()
            .await;

        let id = app
            .state
            .jobs()
            .enqueue(NewJob::new("test.doomed", &json!({})))
            .await
            .expect("enqueue")
            .expect("a new job");
        let failed = wait_for_state(&app, &id, "failed", Duration::from_secs(15)).await;

        assert_eq!(failed.attempts, 3, "{engine:?}");
        assert_eq!(
            failed.max_attempts, 3,
            "{engine:?}: jobs.max_attempts applies"
        );
        let last = failed.last_error.clone().unwrap_or_default();
        assert!(
            last.contains("gate refused, attempt 3"),
            "{engine:?}: the last error is kept: {last:?}"
        );
        // Kept, not retried any more.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3, "{engine:?}");
        assert_eq!(record(&app, &id).await.state, "failed", "{engine:?}");

        let metrics = eventually(
            Duration::from_secs(5),
            "the exhausted job in /metrics",
            || async {
                let m = app.metrics_text().await;
                m.contains(r#"slackops_jobs_exhausted_total{kind="test.doomed"} 1"#)
                    .then_some(m)
            },
        )
        .await;
        assert!(
            metrics.contains(r#"slackops_jobs{state="failed"} 1"#),
            "{engine:?}: queue depth by state: {metrics}"
        );
        assert!(
            metrics.contains(r#"slackops_job_attempt_failures_total{kind="test.doomed"} 3"#),
            "{engine:?}: {metrics}"
        );
        assert!(
            metrics.contains(r#"slackops_jobs{state="pending"} 0"#),
            "{engine:?}: {metrics}"
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_permanent_error_fails_the_job_at_once() {
    for db in TestDb::all("jobs::a_permanent_error_fails_the_job_at_once").await {
        let engine = db.engine;
        let runs = Counter::default();
        let seen = runs.clone();
        let app = TestAppBuilder::new(db)
            .await
            .register(move |r| {
                r.job(
                    "test.permanent",
                    handler(move |_job: Job| {
                        seen.fetch_add(1, Ordering::SeqCst);
                        async {
                            Err(JobError::Permanent(anyhow::anyhow!(
                                "the payload names no channel"
                            )))
                        }
                    }),
                );
            })
            .spawn()
            .await;

        let id = app
            .state
            .jobs()
            .enqueue(NewJob::new("test.permanent", &json!({})))
            .await
            .expect("enqueue")
            .expect("a new job");
        let failed = wait_for_state(&app, &id, "failed", Duration::from_secs(10)).await;
        assert_eq!(failed.attempts, 1, "{engine:?}");
        assert_eq!(failed.max_attempts, 10, "{engine:?}: attempts were left");
        assert_eq!(
            failed.last_error.as_deref(),
            Some("the payload names no channel"),
            "{engine:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1, "{engine:?}: never retried");
        let metrics = eventually(Duration::from_secs(5), "exhausted counter", || async {
            let m = app.metrics_text().await;
            m.contains(r#"slackops_jobs_exhausted_total{kind="test.permanent"} 1"#)
                .then_some(m)
        })
        .await;
        assert!(
            metrics.contains(r#"slackops_jobs{state="failed"} 1"#),
            "{engine:?}: {metrics}"
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_leased_by_a_dead_worker_is_run_by_a_live_worker_after_the_lease_expires() {
    for db in TestDb::all("jobs::a_job_leased_by_a_dead_worker_is_run").await {
        let engine = db.engine;
        let clock = ManualClock::at_secs(chrono::Utc::now().timestamp());

        // The replica that dies: it claims the job and never reports back.
        let dead = TestAppBuilder::new(db)
            .await
            .clock(Arc::new(clock.clone()))
            .without_worker()
            .spawn()
            .await;
        let id = dead
            .state
            .jobs()
            .enqueue(NewJob::new("test.resumable", &json!({"step": "post"})))
            .await
            .expect("enqueue")
            .expect("a new job");
        let claimed = dead
            .state
            .jobs()
            .claim("dead-worker")
            .await
            .expect("claim")
            .expect("the job is due");
        assert_eq!(claimed.id, id);
        assert_eq!(claimed.attempts, 1);

        // A live replica on the same database and clock.
        let runs: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
        let seen = runs.clone();
        let live = replica_of(&dead)
            .await
            .clock(Arc::new(clock.clone()))
            .register(move |r| {
                r.job(
                    "test.resumable",
                    handler(move |job: Job| {
                        seen.lock().unwrap().push((job.id.clone(), job.attempts));
                        async { Ok(()) }
                    }),
                );
            })
            .spawn()
            .await;

        // While the lease is live, nobody else runs the job (the worker polls every 50 ms).
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            runs.lock().unwrap().is_empty(),
            "{engine:?}: lease respected"
        );
        let r = record(&live, &id).await;
        assert_eq!(r.state, "running", "{engine:?}");
        assert_eq!(
            lease_owner(&live, &id).await.as_deref(),
            Some("dead-worker")
        );

        // The lease (jobs.lease_secs = 5) runs out.
        clock.advance_ms(5_000 + 1_000);
        let done = wait_for_state(&live, &id, "done", Duration::from_secs(10)).await;
        assert_eq!(
            *runs.lock().unwrap(),
            vec![(id.clone(), 2)],
            "{engine:?}: run once more by the live worker, as attempt 2"
        );
        assert_eq!(done.attempts, 2, "{engine:?}");

        // The dead worker coming back cannot overwrite the outcome.
        assert!(
            !dead
                .state
                .jobs()
                .complete(&claimed, "dead-worker")
                .await
                .expect("complete"),
            "{engine:?}: a lost lease cannot complete"
        );
        dead.state
            .jobs()
            .fail(
                &claimed,
                "dead-worker",
                &JobError::Permanent(anyhow::anyhow!("late")),
            )
            .await
            .expect("fail");
        let after = record(&live, &id).await;
        assert_eq!(
            after.state, "done",
            "{engine:?}: the zombie changed nothing"
        );
        assert_eq!(after.last_error, None, "{engine:?}");

        live.stop().await;
        dead.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_service_instances_on_one_database_run_every_job_exactly_once() {
    const JOBS: usize = 200;
    for db in TestDb::all("jobs::two_service_instances_run_every_job_exactly_once").await {
        let engine = db.engine;
        let ran: Arc<Mutex<Vec<(String, &'static str)>>> = Arc::default();
        let recorder = |instance: &'static str, ran: Arc<Mutex<Vec<(String, &'static str)>>>| {
            move |r: &mut slackops::registry::Registry| {
                r.job(
                    "test.once",
                    handler(move |job: Job| {
                        let ran = ran.clone();
                        async move {
                            // A little work, so both instances hold several jobs at once.
                            let pause = job.id.bytes().last().unwrap_or(0) % 6;
                            tokio::time::sleep(Duration::from_millis(u64::from(pause))).await;
                            ran.lock().unwrap().push((job.id.clone(), instance));
                            Ok(())
                        }
                    }),
                );
            }
        };
        let a = TestAppBuilder::new(db)
            .await
            .settings(|s| s.jobs.concurrency = 4)
            .register(recorder("a", ran.clone()))
            .spawn()
            .await;
        let b = replica_of(&a)
            .await
            .settings(|s| s.jobs.concurrency = 4)
            .register(recorder("b", ran.clone()))
            .spawn()
            .await;

        // Everything becomes due at the same moment, so both workers race for the same rows.
        let due = a.state.now_ms() + 300;
        let mut ids = HashSet::new();
        for n in 0..JOBS {
            let queue = if n % 2 == 0 {
                a.state.jobs()
            } else {
                b.state.jobs()
            };
            let id = queue
                .enqueue(NewJob::new("test.once", &json!({"n": n})).run_at(due))
                .await
                .expect("enqueue")
                .expect("a new job");
            ids.insert(id);
        }
        assert_eq!(ids.len(), JOBS);

        eventually(Duration::from_secs(60), "every job done", || async {
            (count_in_state(&a, "done").await == JOBS as i64).then_some(())
        })
        .await;
        // Give a duplicate run, if any, the time to show.
        tokio::time::sleep(Duration::from_millis(500)).await;

        let ran = ran.lock().unwrap().clone();
        let mut per_id: HashMap<&str, usize> = HashMap::new();
        for (id, _) in &ran {
            *per_id.entry(id.as_str()).or_default() += 1;
        }
        let twice: Vec<_> = per_id.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.is_empty(),
            "{engine:?}: jobs run more than once: {twice:?}"
        );
        assert_eq!(ran.len(), JOBS, "{engine:?}: every job ran");
        let ran_ids: HashSet<String> = ran.iter().map(|(id, _)| id.clone()).collect();
        assert_eq!(ran_ids, ids, "{engine:?}: exactly the enqueued jobs ran");
        let by_a = ran.iter().filter(|(_, i)| *i == "a").count();
        let by_b = ran.len() - by_a;
        assert!(
            by_a > 0 && by_b > 0,
            "{engine:?}: both instances took part (a {by_a}, b {by_b})"
        );
        let retried: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE attempts <> 1")
            .fetch_one(a.state.db().pool())
            .await
            .expect("count");
        assert_eq!(retried, 0, "{engine:?}: no job was claimed twice");

        b.stop().await;
        a.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_enqueue_with_the_same_dedup_key_is_a_no_op() {
    for db in TestDb::all("jobs::a_second_enqueue_with_the_same_dedup_key").await {
        let engine = db.engine;
        let runs = Counter::default();
        let seen = runs.clone();
        let app = TestAppBuilder::new(db)
            .await
            .register(move |r| {
                r.job(
                    "test.dedup",
                    handler(move |_job: Job| {
                        seen.fetch_add(1, Ordering::SeqCst);
                        async { Ok(()) }
                    }),
                );
            })
            .spawn()
            .await;
        let queue = app.state.jobs();

        let first = queue
            .enqueue(NewJob::new("test.dedup", &json!({"v": 1})).dedup("judgment:E1:S1"))
            .await
            .expect("enqueue")
            .expect("the first enqueue stores the job");
        let second = queue
            .enqueue(NewJob::new("test.dedup", &json!({"v": 2})).dedup("judgment:E1:S1"))
            .await
            .expect("a duplicate is not an error");
        assert_eq!(second, None, "{engine:?}");
        let stored = queue
            .by_dedup_key("judgment:E1:S1")
            .await
            .expect("lookup")
            .expect("stored");
        assert_eq!(stored.id, first, "{engine:?}: the first job is kept");

        wait_for_state(&app, &first, "done", Duration::from_secs(10)).await;
        // Still a no-op once the job is done (until it is purged).
        let third = queue
            .enqueue(NewJob::new("test.dedup", &json!({"v": 3})).dedup("judgment:E1:S1"))
            .await
            .expect("enqueue");
        assert_eq!(third, None, "{engine:?}");

        // Racing enqueues of one key: exactly one wins.
        let racers: Vec<_> = (0..10)
            .map(|n| {
                let queue = queue.clone();
                tokio::spawn(async move {
                    queue
                        .enqueue(NewJob::new("test.dedup", &json!({"n": n})).dedup("race"))
                        .await
                })
            })
            .collect();
        let mut stored = 0;
        for r in racers {
            if r.await.expect("task").expect("enqueue").is_some() {
                stored += 1;
            }
        }
        assert_eq!(
            stored, 1,
            "{engine:?}: one of the racing enqueues stored the job"
        );
        let race_id = queue
            .by_dedup_key("race")
            .await
            .expect("lookup")
            .expect("stored")
            .id;
        wait_for_state(&app, &race_id, "done", Duration::from_secs(10)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "{engine:?}: one run per key"
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_named_lease_has_one_holder_at_a_time_and_is_taken_over_after_expiry() {
    for db in TestDb::all("jobs::a_named_lease_has_one_holder_at_a_time").await {
        let engine = db.engine;
        let app = TestAppBuilder::new(db).await.without_worker().spawn().await;
        let store = app.state.db();
        let t0 = app.state.now_ms();
        let ttl = 5_000;

        assert!(
            store.try_lease("oncall-sync", "a", t0, ttl).await.unwrap(),
            "{engine:?}"
        );
        assert!(
            !store
                .try_lease("oncall-sync", "b", t0 + 1_000, ttl)
                .await
                .unwrap(),
            "{engine:?}: held by a"
        );
        // The holder renews: now held until t0 + 6 s.
        assert!(
            store
                .try_lease("oncall-sync", "a", t0 + 1_000, ttl)
                .await
                .unwrap(),
            "{engine:?}"
        );
        assert!(
            !store
                .try_lease("oncall-sync", "b", t0 + 5_500, ttl)
                .await
                .unwrap(),
            "{engine:?}: the renewal counts"
        );
        // Another lease name is independent.
        assert!(
            store.try_lease("reconcile", "b", t0, ttl).await.unwrap(),
            "{engine:?}"
        );
        // a stopped renewing: b takes over after expiry, and a is out.
        assert!(
            store
                .try_lease("oncall-sync", "b", t0 + 6_001, ttl)
                .await
                .unwrap(),
            "{engine:?}"
        );
        assert!(
            !store
                .try_lease("oncall-sync", "a", t0 + 6_002, ttl)
                .await
                .unwrap(),
            "{engine:?}: the old holder lost it"
        );
        // Only the holder can release.
        store.release_lease("oncall-sync", "a").await.unwrap();
        assert!(
            !store
                .try_lease("oncall-sync", "c", t0 + 6_003, ttl)
                .await
                .unwrap(),
            "{engine:?}"
        );
        store.release_lease("oncall-sync", "b").await.unwrap();
        assert!(
            store
                .try_lease("oncall-sync", "c", t0 + 6_004, ttl)
                .await
                .unwrap(),
            "{engine:?}"
        );

        // Many replicas racing for a free lease: exactly one gets it.
        let racers: Vec<_> = (0..12)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .try_lease("race", &format!("replica-{n}"), t0, ttl)
                        .await
                })
            })
            .collect();
        let mut holders = 0;
        for r in racers {
            if r.await.expect("task").expect("try_lease") {
                holders += 1;
            }
        }
        assert_eq!(holders, 1, "{engine:?}: one holder");
        app.stop().await;
    }
}
