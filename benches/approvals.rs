//! Approvals benchmark: the real service (library, in process) against the local fake Slack and
//! Gate servers with no added latency, on the embedded SQLite default.
//!
//! Measures, as issue 3 asks:
//! 1. echo ingestion of unrelated events (events/s, all answered 200);
//! 2. Manual Judgment starts turned into posted Slack messages (starts/s, nothing lost);
//! 3. from a click to Gate's PATCH and to the final Slack update (p50/p90/p99/max).
//!
//! Run: `cargo bench --bench approvals` (options: `-- --events N --starts N --clicks N`).
//! Only 127.0.0.1 is contacted, and every phase is bounded.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use slackops::config::{ApprovalRoute, ApproverRule, Secret, Settings};
use slackops::startup::Application;
use support::fake_gate::FakeGate;
use support::fake_slack::FakeSlack;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "bench-signing-secret-0123456789";
const ECHO: &str = "bench-echo-token-0123456789";
const CHANNEL: &str = "C0BENCH";
const APPROVER: &str = "U0BENCH";
const CONCURRENCY: usize = 64;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// POST every body to `url` with `CONCURRENCY` workers; returns (elapsed, non-200 count).
async fn blast(client: &reqwest::Client, url: &str, bodies: Vec<Value>) -> (Duration, usize) {
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, url, bodies, next, errors) = (
            client.clone(),
            url.to_string(),
            bodies.clone(),
            next.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let ok = client
                    .post(&url)
                    .bearer_auth(ECHO)
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                    .map(|r| r.status().as_u16() == 200)
                    .unwrap_or(false);
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    (started.elapsed(), errors.load(Ordering::Relaxed))
}

fn stage_event(kind: &str, exec: &Value, stage_id: &str) -> Value {
    let stage = exec["stages"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["id"] == stage_id))
        .cloned()
        .unwrap_or(Value::Null);
    json!({
        "details": {"source": "orca", "type": kind, "application": exec["application"]},
        "content": {"executionId": exec["id"], "stageId": stage_id, "startTime": stage["startTime"],
                    "name": stage["name"], "context": stage["context"], "execution": exec},
        "eventId": uuid::Uuid::new_v4().to_string()
    })
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    slackops::telemetry::install_crypto_provider();
    if std::env::var("BENCH_LOG").is_ok() {
        slackops::telemetry::init(&slackops::config::LogSettings {
            level: std::env::var("BENCH_LOG").unwrap_or_else(|_| "warn".into()),
            ..Default::default()
        });
    }
    let n_events = arg("--events", 20_000);
    let n_starts = arg("--starts", 3_000);
    let n_clicks = arg("--clicks", 300);

    let dir = tempfile::tempdir().expect("temp dir");
    let slack = FakeSlack::start().await;
    let gate = FakeGate::start().await;
    slack.add_channel(CHANNEL, "bench");
    slack.add_user(APPROVER, "bench", "bench@example.com", "UTC");

    let mut s = Settings::default();
    s.server.listen = "127.0.0.1:0".parse().expect("addr");
    s.database.url = Secret::new(format!(
        "sqlite://{}",
        dir.path().join("bench.db").display()
    ));
    s.slack.signing_secret = Secret::new(SECRET);
    s.slack.bot_token = Secret::new(slack.token());
    s.slack.api_url = slack.api_url().parse().expect("url");
    // Measure the service, not Slack's per-channel pacing (which real Slack imposes anyway).
    s.slack.post_rate_per_channel = 1e9;
    s.slack.post_burst_per_channel = 1_000_000;
    s.spinnaker.gate_url = gate.url().parse().expect("url");
    s.spinnaker.echo_token = Secret::new(ECHO);
    s.jobs.concurrency = 8;
    s.approvals.default_channel = Some(CHANNEL.into());
    s.approvals.notify_trigger_user = false;
    s.approvals.routes = vec![ApprovalRoute {
        application: "benchapp".into(),
        pipeline: None,
        channel: CHANNEL.into(),
        notify_channels: vec![],
    }];
    s.approvals.approvers = vec![ApproverRule {
        application: "benchapp".into(),
        users: vec![APPROVER.into()],
        ..Default::default()
    }];

    let app = Application::builder(s)
        .without_periodic()
        .build()
        .await
        .expect("service builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state().clone();
    let stop = CancellationToken::new();
    let server = tokio::spawn(app.run_until(stop.clone()));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .expect("client");
    let echo_url = format!("{base}/spinnaker/events");

    println!("slackops approvals benchmark (in-process service, fake Slack and Gate, SQLite)\n");

    // 1. Unrelated echo events.
    let unrelated: Vec<Value> = (0..n_events)
        .map(|i| {
            json!({
                "details": {"source": "orca", "type": "orca:task:complete", "application": "other"},
                "content": {"executionId": format!("E{i}"), "taskName": "monitorDeploy", "standalone": false,
                            "context": {"account": "prod", "cloudProvider": "kubernetes", "manifest": "x".repeat(600)}},
                "eventId": uuid::Uuid::new_v4().to_string()
            })
        })
        .collect();
    let (elapsed, errors) = blast(&client, &echo_url, unrelated).await;
    let events_rate = n_events as f64 / elapsed.as_secs_f64();

    // 2. Manual Judgment starts → posted messages.
    let mut starts = Vec::with_capacity(n_starts);
    let mut runs = Vec::with_capacity(n_starts);
    for i in 0..n_starts {
        let (exec_id, stage_id) = (format!("01BENCHEXEC{i:06}"), format!("01BENCHSTAGE{i:06}"));
        let exec = FakeGate::mj_execution("benchapp", "deploy-prod", &exec_id, &stage_id);
        gate.add_execution(exec.clone());
        starts.push(stage_event(
            "orca:stage:starting",
            &gate.execution(&exec_id),
            &stage_id,
        ));
        runs.push((exec_id, stage_id));
    }
    slack.reset_calls();
    let t0 = Instant::now();
    let (ingest, start_errors) = blast(&client, &echo_url, starts).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while slack.call_count("chat.postMessage") < n_starts && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let posted = slack.call_count("chat.postMessage");
    let last_post = slack
        .calls("chat.postMessage")
        .iter()
        .map(|c| c.at)
        .max()
        .unwrap_or(t0);
    let post_elapsed = last_post.duration_since(t0);
    let starts_rate = posted as f64 / post_elapsed.as_secs_f64();
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM judgments")
        .fetch_one(state.db().pool())
        .await
        .unwrap_or(-1);

    // 3. Click → PATCH → final update, one click at a time.
    let mut to_patch = Vec::new();
    let mut to_final = Vec::new();
    let mut click_failures = 0;
    let mut why: std::collections::BTreeMap<&str, usize> = Default::default();
    for (exec_id, stage_id) in runs.iter().take(n_clicks) {
        let Ok(Some(j)) = state.db().latest_judgment_of_stage(exec_id, stage_id).await else {
            click_failures += 1;
            *why.entry("no judgment").or_default() += 1;
            continue;
        };
        let Some(ts) = j.message_ts.clone() else {
            click_failures += 1;
            *why.entry("no message").or_default() += 1;
            continue;
        };
        slack.reset_calls();
        let patches_before = gate.patch_count();
        let payload = json!({
            "type": "block_actions",
            "user": {"id": APPROVER, "username": "bench", "team_id": "T0FAKE"},
            "team": {"id": "T0FAKE"},
            "container": {"type": "message", "message_ts": ts, "channel_id": CHANNEL},
            "channel": {"id": CHANNEL},
            "message": {"ts": ts},
            "response_url": slack.response_url_for_message(CHANNEL, &ts),
            "actions": [{"action_id": "approvals:approve", "block_id": "approvals_decide", "type": "button", "value": j.id}]
        });
        let body = serde_urlencoded::to_string([("payload", payload.to_string())]).expect("form");
        let now = chrono::Utc::now().timestamp();
        let sig = slackops::slack::verify::sign(SECRET, now, body.as_bytes());
        let clicked = Instant::now();
        let resp = client
            .post(format!("{base}/slack/interactions"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", now.to_string())
            .header("x-slack-signature", sig)
            .body(body)
            .send()
            .await;
        if !matches!(resp.map(|r| r.status().as_u16()), Ok(200)) {
            click_failures += 1;
            *why.entry("ack not 200").or_default() += 1;
            continue;
        }
        let until = Instant::now() + Duration::from_secs(10);
        let mut done = false;
        while Instant::now() < until {
            let updates = slack.calls("chat.update");
            // Slack calls are global: match this message's ts, not a previous click's late update.
            if let Some(fin) = updates.iter().find(|c| {
                c.body["ts"].as_str() == Some(ts.as_str())
                    && c.body["text"].as_str().unwrap_or("").contains("approved")
            }) {
                let patch = gate
                    .patches()
                    .into_iter()
                    .skip(patches_before)
                    .find(|p| &p.execution_id == exec_id);
                if let Some(p) = patch {
                    to_patch.push(p.at.duration_since(clicked));
                    to_final.push(fin.at.duration_since(clicked));
                    done = true;
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if !done {
            click_failures += 1;
            let state_now = state
                .db()
                .judgment(&j.id)
                .await
                .ok()
                .flatten()
                .map(|x| x.state)
                .unwrap_or_default();
            *why.entry(if state_now == "approved" {
                "approved, update not seen"
            } else {
                "not approved"
            })
            .or_default() += 1;
            let st = gate.stage(exec_id, stage_id);
            let jobs: Vec<(String, String, i64, Option<String>)> = sqlx::query_as(
                "SELECT kind, state, attempts, last_error FROM jobs WHERE payload LIKE $1",
            )
            .bind(format!("%{}%", j.id))
            .fetch_all(state.db().pool())
            .await
            .unwrap_or_default();
            eprintln!(
                "click not completed: judgment {} state {state_now}, patches {}, gate stage {} judgmentStatus {:?}, jobs {jobs:?}",
                j.id,
                gate.patches()
                    .iter()
                    .filter(|p| &p.execution_id == exec_id)
                    .count(),
                st["status"],
                st["context"]["judgmentStatus"]
            );
        }
    }
    to_patch.sort();
    to_final.sort();

    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;

    println!("| measure | result | target |");
    println!("|---|---|---|");
    println!(
        "| echo ingestion, {n_events} unrelated events, {CONCURRENCY} connections | {events_rate:.0} events/s ({errors} errors) | ≥ 5,000 events/s |"
    );
    println!(
        "| Manual Judgment starts → posted messages, {n_starts} starts | {starts_rate:.0} starts/s ({posted} posted, {stored} stored, {start_errors} errors; ingest {:.0}/s) | ≥ 500/s, nothing lost |",
        n_starts as f64 / ingest.as_secs_f64()
    );
    println!(
        "| click → Gate PATCH, {} clicks | p50 {} · p90 {} · p99 {} · max {} | p99 < 50 ms |",
        to_patch.len(),
        ms(percentile(&to_patch, 50.0)),
        ms(percentile(&to_patch, 90.0)),
        ms(percentile(&to_patch, 99.0)),
        ms(percentile(&to_patch, 100.0))
    );
    println!(
        "| click → final Slack update | p50 {} · p90 {} · p99 {} · max {} | p99 < 50 ms |",
        ms(percentile(&to_final, 50.0)),
        ms(percentile(&to_final, 90.0)),
        ms(percentile(&to_final, 99.0)),
        ms(percentile(&to_final, 100.0))
    );
    let lost = n_starts.saturating_sub(posted);
    if errors > 0 || start_errors > 0 || lost > 0 || click_failures > 0 {
        eprintln!(
            "FAILED: {errors} event errors, {start_errors} start errors, {lost} messages lost, {click_failures} clicks not completed"
        );
        std::process::exit(1);
    }
}
