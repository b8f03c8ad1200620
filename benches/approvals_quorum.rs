//! Quorum and Home tab benchmark: the real service (library, in process) against the local fake
//! Slack and Gate servers with no added latency, on the embedded SQLite default.
//!
//! Measures, as issue 14 asks:
//! 1. 500 judgments with `required_approvals: 2`, each approved by two people: exactly one Gate
//!    PATCH per judgment (quorum adds no Gate call), and click → PATCH on the last approval;
//! 2. building a Home tab with 50 waiting judgments (slackops' time: the database, the
//!    authorization and the rendering; Slack's `views.publish` excluded).
//!
//! Run: `cargo bench --bench approvals_quorum` (options: `-- --judgments N --homes N`).
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
const FIRST: &str = "U0FIRST";
const LAST: &str = "U0LAST";
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

/// A signed click on Approve of judgment `id` (message `ts`) by `user`; true when acked 200.
async fn click(
    client: &reqwest::Client,
    base: &str,
    slack: &FakeSlack,
    user: &str,
    id: &str,
    ts: &str,
) -> bool {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user, "username": user, "team_id": "T0FAKE"},
        "team": {"id": "T0FAKE"},
        "container": {"type": "message", "message_ts": ts, "channel_id": CHANNEL},
        "channel": {"id": CHANNEL},
        "message": {"ts": ts},
        "response_url": slack.response_url_for_message(CHANNEL, ts),
        "actions": [{"action_id": "approvals:approve", "block_id": "approvals_decide", "type": "button", "value": id}]
    });
    let body = serde_urlencoded::to_string([("payload", payload.to_string())]).expect("form");
    let now = chrono::Utc::now().timestamp();
    let sig = slackops::slack::verify::sign(SECRET, now, body.as_bytes());
    client
        .post(format!("{base}/slack/interactions"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", now.to_string())
        .header("x-slack-signature", sig)
        .body(body)
        .send()
        .await
        .map(|r| r.status().as_u16() == 200)
        .unwrap_or(false)
}

fn settings(slack: &FakeSlack, gate: &FakeGate, db: &std::path::Path) -> Settings {
    let mut s = Settings::default();
    s.server.listen = "127.0.0.1:0".parse().expect("addr");
    s.database.url = Secret::new(format!("sqlite://{}", db.display()));
    s.slack.signing_secret = Secret::new(SECRET);
    s.slack.bot_token = Secret::new(slack.token());
    s.slack.api_url = slack.api_url().parse().expect("url");
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
        users: vec![FIRST.into(), LAST.into()],
        required_approvals: 2,
        ..Default::default()
    }];
    s
}

/// Start `n` judgments (ids from `from`) and wait until all are posted; returns (exec, stage).
async fn start(
    client: &reqwest::Client,
    base: &str,
    slack: &FakeSlack,
    gate: &FakeGate,
    from: usize,
    n: usize,
) -> Vec<(String, String)> {
    let mut events = Vec::new();
    let mut runs = Vec::new();
    for i in from..from + n {
        let (exec_id, stage_id) = (format!("01QEXEC{i:06}"), format!("01QSTAGE{i:06}"));
        gate.add_execution(FakeGate::mj_execution(
            "benchapp",
            "deploy-prod",
            &exec_id,
            &stage_id,
        ));
        events.push(stage_event(
            "orca:stage:starting",
            &gate.execution(&exec_id),
            &stage_id,
        ));
        runs.push((exec_id, stage_id));
    }
    let before = slack.call_count("chat.postMessage");
    blast(client, &format!("{base}/spinnaker/events"), events).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while slack.call_count("chat.postMessage") < before + n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    runs
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    slackops::telemetry::install_crypto_provider();
    let n = arg("--judgments", 500);
    let homes = arg("--homes", 200);
    let dir = tempfile::tempdir().expect("temp dir");
    let slack = FakeSlack::start().await;
    let gate = FakeGate::start().await;
    slack.add_channel(CHANNEL, "bench");
    slack.add_user(FIRST, "first", "first@example.com", "UTC");
    slack.add_user(LAST, "last", "last@example.com", "UTC");
    let app = Application::builder(settings(&slack, &gate, &dir.path().join("bench.db")))
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
    println!(
        "slackops quorum and Home tab benchmark (in-process service, fake Slack and Gate, SQLite)\n"
    );

    // 1. Quorum of two: first approvals, then last approvals (timed to the PATCH).
    let runs = start(&client, &base, &slack, &gate, 0, n).await;
    let mut judgments = Vec::new();
    for (exec_id, stage_id) in &runs {
        if let Ok(Some(j)) = state.db().latest_judgment_of_stage(exec_id, stage_id).await
            && let Some(ts) = j.message_ts.clone()
        {
            judgments.push((exec_id.clone(), j.id, ts));
        }
    }
    let mut failures = n - judgments.len();
    for (_, id, ts) in &judgments {
        if !click(&client, &base, &slack, FIRST, id, ts).await {
            failures += 1;
        }
    }
    let after_first = gate.patch_count();
    let mut to_patch = Vec::new();
    for (exec_id, id, ts) in &judgments {
        let clicked = Instant::now();
        if !click(&client, &base, &slack, LAST, id, ts).await {
            failures += 1;
            continue;
        }
        let until = Instant::now() + Duration::from_secs(10);
        let mut seen = false;
        while Instant::now() < until {
            if let Some(p) = gate
                .patches()
                .into_iter()
                .rev()
                .find(|p| &p.execution_id == exec_id)
            {
                to_patch.push(p.at.duration_since(clicked));
                seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        if !seen {
            failures += 1;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let patches = gate.patch_count();
    to_patch.sort();

    // 2. A Home tab with 50 waiting judgments, built `homes` times.
    start(&client, &base, &slack, &gate, n, 50).await;
    let mut home = Vec::new();
    let mut blocks = 0;
    for _ in 0..homes {
        let t = Instant::now();
        let view =
            slackops::approvals::home::build(&state, FIRST, None, "https://bench.slack.com/")
                .await
                .expect("home tab");
        home.push(t.elapsed());
        blocks = view["blocks"].as_array().map(Vec::len).unwrap_or(0);
    }
    home.sort();
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;

    println!("| measure | result | target |");
    println!("|---|---|---|");
    println!(
        "| Gate PATCHes for {n} judgments, required_approvals 2, two approvals each | {patches} (none after the first approvals: {after_first}) | exactly {n} |"
    );
    println!(
        "| click → Gate PATCH on the last approval, {} judgments | p50 {} · p90 {} · p99 {} · max {} | p99 < 50 ms |",
        to_patch.len(),
        ms(percentile(&to_patch, 50.0)),
        ms(percentile(&to_patch, 90.0)),
        ms(percentile(&to_patch, 99.0)),
        ms(percentile(&to_patch, 100.0))
    );
    println!(
        "| Home tab with 50 waiting judgments ({blocks} blocks), {homes} builds | p50 {} · p90 {} · p99 {} · max {} | p99 < 100 ms |",
        ms(percentile(&home, 50.0)),
        ms(percentile(&home, 90.0)),
        ms(percentile(&home, 99.0)),
        ms(percentile(&home, 100.0))
    );
    if failures > 0 || patches != n || after_first != 0 {
        eprintln!(
            "FAILED: {failures} failures, {patches} PATCHes for {n} judgments, {after_first} after the first approvals"
        );
        std::process::exit(1);
    }
}
