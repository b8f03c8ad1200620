//! Socket Mode benchmark: envelope → ack over a local WebSocket, against the release binary.
//!
//! ```text
//! cargo bench --bench socket                               # 2 s warm-up, 10 s per scenario
//! cargo bench --bench socket -- --duration 10 --window 32
//! ```
//!
//! `cargo bench` builds the `slackops` binary in the release (bench) profile and hands its path
//! over as `CARGO_BIN_EXE_slackops`, as for benches/load.rs. For each scenario (one connection,
//! then the default two) the benchmark
//!
//! 1. starts a minimal local Slack edge: `POST /api/apps.connections.open` answers a fresh
//!    `ws://127.0.0.1:<port>/link/?ticket=…` URL, and the WebSocket server sends `hello` to each
//!    connection (reference/slack-socket-mode.md §1–§3);
//! 2. starts `slackops serve` with `slack.mode: socket`, `slack.socket_connections` = 1 or 2, a
//!    fresh SQLite database in a temporary directory, log level `warn`, Gate on a closed local port
//!    (acknowledging never calls out), and waits for `/readyz`;
//! 3. with two connections, reads the idle RSS (`VmRSS`) after 2 s of idleness;
//! 4. writes `interactive` envelopes carrying a ~2.2 KB `block_actions` payload (the same
//!    payload as the HTTP benchmark, with an action id no feature owns, so the figure is the
//!    interaction layer's own cost) in a closed loop of `--window` envelopes in flight per
//!    connection, spread over the connections, and records the time from each envelope's frame
//!    written to its ack's frame read in an HDR histogram after a warm-up. Every ack must carry the
//!    envelope's id; anything else fails the run;
//! 5. stops the service with SIGTERM and prints a markdown table.
//!
//! Only 127.0.0.1, bounded in time. Targets (issue 11): p99 < 10 ms, ≥ 10,000 envelopes/s, idle
//! RSS with two connections < 30 MB; missed targets fail the run only with `--strict`.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use axum::Router;
use axum::routing::post;
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

const APP_TOKEN: &str = "xapp-1-A0BENCH-1-bench0123456789abcdef";
const TARGET_P99: Duration = Duration::from_millis(10);
const TARGET_RATE: f64 = 10_000.0;
const TARGET_IDLE_RSS_KB: u64 = 30 * 1024;

struct Opts {
    duration: f64,
    warmup: f64,
    window: usize,
    idle: f64,
    bin: PathBuf,
    strict: bool,
}

fn parse_opts() -> anyhow::Result<Opts> {
    let mut o = Opts {
        duration: 10.0,
        warmup: 2.0,
        window: 32,
        idle: 2.0,
        bin: PathBuf::from(env!("CARGO_BIN_EXE_slackops")),
        strict: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().context(format!("{a} needs a value"));
        match a.as_str() {
            "--duration" => o.duration = val()?.parse()?,
            "--warmup" => o.warmup = val()?.parse()?,
            "--window" => o.window = val()?.parse()?,
            "--idle" => o.idle = val()?.parse()?,
            "--bin" => o.bin = PathBuf::from(val()?),
            "--strict" => o.strict = true,
            "--bench" => {}
            other => bail!(
                "unknown option {other}; options: --duration SECS --warmup SECS --window N --idle SECS --bin PATH --strict"
            ),
        }
    }
    ensure!(o.window >= 1 && o.duration > 0.0, "bad options");
    Ok(o)
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("\nsocket benchmark FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

struct Outcome {
    connections: usize,
    /// Service CPU time per acknowledged envelope in the measured window (µs).
    cpu_us_per_envelope: f64,
    acks: u64,
    seconds: f64,
    hist: Histogram<u64>,
    idle_rss_kb: Option<u64>,
}

fn run() -> anyhow::Result<ExitCode> {
    slackops::telemetry::install_crypto_provider();
    let opts = parse_opts()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut outcomes = Vec::new();
    for connections in [1usize, 2] {
        eprintln!("scenario: {connections} connection(s)");
        outcomes.push(rt.block_on(scenario(&opts, connections))?);
    }
    let table = report(&opts, &outcomes);
    println!("{table}");
    let missed = outcomes.iter().any(|o| {
        o.acks as f64 / o.seconds < TARGET_RATE
            || o.hist.value_at_quantile(0.99) > TARGET_P99.as_micros() as u64
            || o.idle_rss_kb.is_some_and(|r| r > TARGET_IDLE_RSS_KB)
    });
    if missed {
        eprintln!("a target was missed (see the table)");
        if opts.strict {
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// The local Slack edge

type Ws = WebSocketStream<tokio::net::TcpStream>;

struct Edge {
    api: SocketAddr,
    accepted: mpsc::UnboundedReceiver<Ws>,
}

/// `apps.connections.open` and the WebSocket endpoint that greets each connection with hello.
async fn start_edge() -> anyhow::Result<Edge> {
    let ws_listener = TcpListener::bind("127.0.0.1:0").await?;
    let ws_addr = ws_listener.local_addr()?;
    let tickets = Arc::new(Mutex::new(0u64));
    let api = Router::new().route(
        "/api/apps.connections.open",
        post(move |headers: axum::http::HeaderMap| {
            let tickets = tickets.clone();
            async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if auth != format!("Bearer {APP_TOKEN}") {
                    return axum::Json(json!({"ok": false, "error": "invalid_auth"}));
                }
                let n = {
                    let mut t = tickets.lock().unwrap_or_else(|p| p.into_inner());
                    *t += 1;
                    *t
                };
                axum::Json(
                    json!({"ok": true, "url": format!("ws://{ws_addr}/link/?ticket=bench-{n}&app_id=A0BENCH")}),
                )
            }
        }),
    );
    let api_listener = TcpListener::bind("127.0.0.1:0").await?;
    let api_addr = api_listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(api_listener, api).await;
    });
    let (tx, accepted) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = ws_listener.accept().await {
            let _ = stream.set_nodelay(true);
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let hello = json!({"type": "hello", "connection_info": {"app_id": "A0BENCH"},
                    "num_connections": 1, "debug_info": {"host": "applink-bench", "approximate_connection_time": 3600}});
                if ws.send(Message::text(hello.to_string())).await.is_ok() {
                    let _ = tx.send(ws);
                }
            });
        }
    });
    Ok(Edge {
        api: api_addr,
        accepted,
    })
}

// ---------------------------------------------------------------------------------------------
// The service

struct Service {
    child: Child,
    pid: u32,
    listen: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Service {
    fn start(bin: &PathBuf, api: SocketAddr, connections: usize) -> anyhow::Result<Service> {
        let dir = tempfile::tempdir()?;
        let (listen, closed) = {
            let a = StdListener::bind("127.0.0.1:0")?;
            let b = StdListener::bind("127.0.0.1:0")?;
            (a.local_addr()?, b.local_addr()?)
        };
        let child = Command::new(bin)
            .arg("serve")
            .env_clear()
            .env("SLACKOPS_SERVER__LISTEN", listen.to_string())
            .env("SLACKOPS_SLACK__MODE", "socket")
            .env("SLACKOPS_SLACK__APP_TOKEN", APP_TOKEN)
            .env("SLACKOPS_SLACK__BOT_TOKEN", "xoxb-bench-token")
            .env("SLACKOPS_SLACK__API_URL", format!("http://{api}/api"))
            .env(
                "SLACKOPS_SLACK__SOCKET_CONNECTIONS",
                connections.to_string(),
            )
            .env("SLACKOPS_SPINNAKER__GATE_URL", format!("http://{closed}"))
            .env(
                "SLACKOPS_DATABASE__URL",
                format!("sqlite://{}", dir.path().join("bench.db").display()),
            )
            .env("SLACKOPS_LOG__LEVEL", "warn")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id();
        Ok(Service {
            child,
            pid,
            listen,
            _dir: dir,
        })
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client
                .get(format!("http://{}/readyz", self.listen))
                .send()
                .await
                && r.status() == 200
            {
                return Ok(());
            }
            ensure!(Instant::now() < deadline, "the service did not get ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn rss_kb(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .context("VmRSS")
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Load

/// The same ~2.2 KB block_actions payload as benches/load.rs, with an action id no feature owns.
fn payload() -> Value {
    json!({
        "type": "block_actions",
        "user": {"id": "U024BE7LH", "username": "alice", "name": "alice", "team_id": "T024BE7LD"},
        "api_app_id": "A02MB2KTE3Z",
        "token": "Shh_its_a_seekrit",
        "container": {"type": "message", "message_ts": "1700000000.000200", "channel_id": "C024BE91L", "is_ephemeral": false},
        "trigger_id": "6243285714035.2024523470.b1c8d0f6e9a3c21d7d5a61f0e7c1b2a3",
        "team": {"id": "T024BE7LD", "domain": "example-ops"},
        "enterprise": null,
        "is_enterprise_install": false,
        "channel": {"id": "C024BE91L", "name": "deploys"},
        "message": {
            "type": "message", "subtype": "bot_message", "ts": "1700000000.000200", "bot_id": "B024BE7LH",
            "text": "Manual Judgment: deploy-prod is waiting for a decision",
            "blocks": [
                {"type": "header", "block_id": "h", "text": {"type": "plain_text", "text": "Manual Judgment: deploy-prod", "emoji": true}},
                {"type": "section", "block_id": "s1", "text": {"type": "mrkdwn", "text": "*Application:* checkout\n*Pipeline:* deploy-prod\n*Stage:* Approve production rollout\n*Triggered by:* alice@example.com"}},
                {"type": "section", "block_id": "s2", "text": {"type": "mrkdwn", "text": "Canary analysis passed (score 97/100). Error rate 0.02 %, p99 latency 180 ms, no new alerts in the last 30 minutes. Roll out to the remaining 90 % of traffic?"}},
                {"type": "context", "block_id": "c", "elements": [{"type": "mrkdwn", "text": "Execution 01HZX3N3Y7K8Q2V5W9T4R6P1M0 · started 12 minutes ago · <https://spinnaker.example.com/#/applications/checkout/executions|open in Spinnaker>"}]},
                {"type": "actions", "block_id": "decide", "elements": [
                    {"type": "button", "action_id": "bench.approve", "style": "primary", "value": "01HZX3N3Y7K8Q2V5W9T4R6P1M0:approve", "text": {"type": "plain_text", "text": "Approve", "emoji": true}},
                    {"type": "button", "action_id": "bench.reject", "style": "danger", "value": "01HZX3N3Y7K8Q2V5W9T4R6P1M0:reject", "text": {"type": "plain_text", "text": "Reject", "emoji": true}}
                ]}
            ]
        },
        "state": {"values": {}},
        "response_url": "https://hooks.slack.com/actions/T024BE7LD/6243285714035/xE4JcQm1nYz5w0bQ7uK9sAa3",
        "actions": [{"action_id": "bench.approve", "block_id": "decide", "type": "button",
                     "value": "01HZX3N3Y7K8Q2V5W9T4R6P1M0:approve", "style": "primary",
                     "text": {"type": "plain_text", "text": "Approve", "emoji": true},
                     "action_ts": "1700000012.345678"}]
    })
}

async fn scenario(opts: &Opts, connections: usize) -> anyhow::Result<Outcome> {
    let mut edge = start_edge().await?;
    let service = Service::start(&opts.bin, edge.api, connections)?;
    let mut sockets = Vec::new();
    for _ in 0..connections {
        match tokio::time::timeout(Duration::from_secs(30), edge.accepted.recv()).await {
            Ok(Some(ws)) => sockets.push(ws),
            _ => {
                service.stop();
                bail!("the service did not connect");
            }
        }
    }
    if let Err(e) = service.wait_ready().await {
        service.stop();
        return Err(e);
    }
    let idle_rss_kb = if connections == 2 {
        tokio::time::sleep(Duration::from_secs_f64(opts.idle)).await;
        let kb = service.rss_kb()?;
        eprintln!("idle RSS with 2 connections: {:.1} MB", kb as f64 / 1024.0);
        Some(kb)
    } else {
        None
    };
    let payload = payload().to_string();
    let warm_until = Instant::now() + Duration::from_secs_f64(opts.warmup);
    let end = warm_until + Duration::from_secs_f64(opts.duration);
    let pid = service.pid;
    let cpu = tokio::spawn(async move {
        tokio::time::sleep_until(warm_until.into()).await;
        let before = cpu_ticks(pid);
        tokio::time::sleep_until(end.into()).await;
        before.zip(cpu_ticks(pid)).map(|(b, a)| a.saturating_sub(b))
    });
    let tasks: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, ws)| tokio::spawn(drive(ws, i, payload.clone(), opts.window, warm_until, end)))
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await);
    }
    let ticks = cpu.await.ok().flatten().unwrap_or(0);
    service.stop();
    let mut hist = new_hist();
    let mut acks = 0;
    for r in results {
        let (h, n) = r??;
        hist.add(&h)?;
        acks += n;
    }
    let cpu_us_per_envelope = ticks as f64 / clock_ticks_per_sec() * 1e6 / acks.max(1) as f64;
    Ok(Outcome {
        connections,
        cpu_us_per_envelope,
        acks,
        seconds: opts.duration,
        hist,
        idle_rss_kb,
    })
}

/// utime + stime of a process, in clock ticks (`/proc/<pid>/stat` fields 14 and 15).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

/// One connection: `window` envelopes in flight; each ack's latency from write to read.
async fn drive(
    ws: Ws,
    conn: usize,
    payload: String,
    window: usize,
    warm_until: Instant,
    end: Instant,
) -> anyhow::Result<(Histogram<u64>, u64)> {
    let (mut sink, mut stream) = ws.split();
    let mut sent: HashMap<String, Instant> = HashMap::with_capacity(window * 2);
    let mut seq = 0u64;
    let mut hist = new_hist();
    let mut acks = 0u64;
    let envelope = |id: &str| {
        format!(
            r#"{{"envelope_id":"{id}","type":"interactive","accepts_response_payload":true,"payload":{payload}}}"#
        )
    };
    let mut in_flight = 0usize;
    loop {
        let now = Instant::now();
        if now < end {
            while in_flight < window {
                seq += 1;
                let id = format!("bench-{conn}-{seq}");
                sink.feed(Message::text(envelope(&id))).await?;
                sent.insert(id, Instant::now());
                in_flight += 1;
            }
            sink.flush().await?;
        } else if in_flight == 0 {
            break;
        }
        let frame = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .context("no ack within 5 s")?
            .context("the service closed the connection")??;
        let Message::Text(text) = frame else { continue };
        let read = Instant::now();
        let v: Value = serde_json::from_str(&text).context("an ack that is not JSON")?;
        let id = v["envelope_id"]
            .as_str()
            .context("an ack without envelope_id")?;
        let written = sent
            .remove(id)
            .with_context(|| format!("an ack for an unknown envelope {id}"))?;
        ensure!(
            v.get("payload")
                .is_none_or(|p| p.as_object().is_some_and(|m| m.is_empty())),
            "a bare ack was expected for an unowned action: {v}"
        );
        in_flight -= 1;
        if written >= warm_until && read <= end {
            hist.record((read - written).as_micros().max(1) as u64)?;
            acks += 1;
        }
    }
    let _ = sink.close().await;
    Ok((hist, acks))
}

fn report(opts: &Opts, outcomes: &[Outcome]) -> String {
    let us = |v: u64| format!("{:.2} ms", v as f64 / 1000.0);
    let mut out = format!(
        "\n### Socket Mode: envelope → ack (release build, `cargo bench --bench socket -- --duration {} --window {}`)\n\n\
         Load average at the end: {}.\n\n\
         | connections | envelopes in flight | envelopes/s | p50 | p90 | p99 | max | service CPU µs/envelope |\n|---|---|---|---|---|---|---|---|\n",
        opts.duration,
        opts.window,
        load_avg()
    );
    for o in outcomes {
        out += &format!(
            "| {} | {} | {:.0} | {} | {} | {} | {} | {:.0} |\n",
            o.connections,
            o.connections * opts.window,
            o.acks as f64 / o.seconds,
            us(o.hist.value_at_quantile(0.50)),
            us(o.hist.value_at_quantile(0.90)),
            us(o.hist.value_at_quantile(0.99)),
            us(o.hist.max()),
            o.cpu_us_per_envelope,
        );
    }
    if let Some(rss) = outcomes.iter().find_map(|o| o.idle_rss_kb) {
        out += &format!(
            "\nIdle RSS with 2 connections: {:.1} MB (target < 30 MB). Targets: p99 < 10 ms, ≥ 10,000 envelopes/s.\n",
            rss as f64 / 1024.0
        );
    }
    out
}
