//! Load benchmark for the `slackops` service (issue 2, "Performance").
//!
//! ```text
//! cargo bench --bench load                                   # defaults: 64 connections, 2 s warm-up, 10 s per scenario
//! cargo bench --bench load -- --duration 10 --connections 64 --threads 1
//! ```
//!
//! One command does everything: `cargo bench` builds the `slackops` binary in the release (bench)
//! profile beside this benchmark, because Cargo builds a package's binaries for its benchmarks and
//! hands their paths over as `CARGO_BIN_EXE_<name>`. The benchmark then
//!
//! 1. times `SignatureVerifier::verify_parts` and the interaction form + JSON parse in-process
//!    (micro figures, before the service starts so nothing competes with them);
//! 2. starts `slackops serve` as a separate process on a free 127.0.0.1 port, with a fresh SQLite
//!    database in a temporary directory, log level `warn`, and `slack.api_url` and
//!    `spinnaker.gate_url` on a closed local port (acknowledgments never call out), and times
//!    spawn → first `200` from `/readyz`;
//! 3. reads the service's idle RSS (`VmRSS` in `/proc/<pid>/status`) after 2 s of idleness;
//! 4. checks that a signed request is accepted and a tampered one refused with 401 (the service
//!    really verifies), then drives three scenarios — a signed `block_actions` interaction
//!    (~2.2 KB form body), a signed slash command, and `GET /healthz` — with a closed loop of N
//!    keep-alive HTTP/1.1 connections (raw `tokio::net::TcpStream`, pre-built request bytes,
//!    minimal response parsing, like wrk), recording every latency in an HDR histogram after a
//!    warm-up;
//! 5. stops the service with SIGTERM (then SIGKILL after 10 s), removes the temporary directory,
//!    and prints a markdown table.
//!
//! Every request is signed with a timestamp taken when its scenario starts, so a scenario
//! (warm-up + duration) must stay well inside Slack's 300 s window; the options are bounded to
//! 240 s. Any non-200 response or connection error makes the run fail loudly with a non-zero exit
//! code. It only talks to 127.0.0.1 and is bounded in time. It is a benchmark, not a test: targets
//! that are missed are reported (and fail the run only with `--strict`).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use hdrhistogram::Histogram;
use serde_json::json;
use slackops::clock::SystemClock;
use slackops::config::Secret;
use slackops::slack::payload::Interaction;
use slackops::slack::verify::{SignatureVerifier, sign};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5-bench";

/// The issue's targets.
const TARGET_READY: Duration = Duration::from_secs(1);
const TARGET_IDLE_RSS_KB: u64 = 30 * 1024;
const TARGET_INTERACTIONS_PER_SEC: f64 = 10_000.0;
const TARGET_P99: Duration = Duration::from_millis(10);

/// Signed requests must be answered inside Slack's 300 s window; stay well inside it.
const MAX_SCENARIO_SECS: f64 = 240.0;

const USAGE: &str = "\
usage: cargo bench --bench load [-- OPTIONS]

  --duration SECS      measured seconds per scenario (default 10)
  --warmup SECS        warm-up seconds per scenario, not measured (default 2)
  --connections N      keep-alive connections, closed loop (default 64)
  --threads N          load-generator threads; 1 = current-thread runtime (default 1)
  --idle SECS          idle time after ready before reading RSS (default 2)
  --scenarios LIST     comma-separated: interaction,command,healthz (default all)
  --micro-iters N      iterations of the in-process micro benchmarks (default 100000)
  --bin PATH           service binary (default: the one cargo built for this bench)
  --log-level LEVEL    the service's log.level (default warn)
  --strict             exit non-zero when a target is missed, not only on errors
";

#[derive(Debug, Clone)]
struct Opts {
    duration: f64,
    warmup: f64,
    connections: usize,
    threads: usize,
    idle: f64,
    scenarios: Vec<Kind>,
    micro_iters: u32,
    bin: PathBuf,
    log_level: String,
    strict: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Interaction,
    Command,
    Healthz,
}

impl Kind {
    fn parse(s: &str) -> anyhow::Result<Kind> {
        Ok(match s {
            "interaction" | "interactions" | "block_actions" => Kind::Interaction,
            "command" | "commands" | "slash" => Kind::Command,
            "healthz" => Kind::Healthz,
            other => bail!("unknown scenario {other:?} (interaction, command, healthz)"),
        })
    }
    fn short(self) -> &'static str {
        match self {
            Kind::Interaction => "interaction",
            Kind::Command => "command",
            Kind::Healthz => "healthz",
        }
    }
    fn label(self) -> &'static str {
        match self {
            Kind::Interaction => "signed block_actions → POST /slack/interactions",
            Kind::Command => "signed slash command → POST /slack/commands",
            Kind::Healthz => "GET /healthz",
        }
    }
}

fn parse_opts() -> anyhow::Result<Opts> {
    let mut o = Opts {
        duration: 10.0,
        warmup: 2.0,
        connections: 64,
        threads: 1,
        idle: 2.0,
        scenarios: vec![Kind::Interaction, Kind::Command, Kind::Healthz],
        micro_iters: 100_000,
        bin: PathBuf::from(env!("CARGO_BIN_EXE_slackops")),
        log_level: "warn".into(),
        strict: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| {
            args.next()
                .with_context(|| format!("{name} needs a value\n\n{USAGE}"))
        };
        match a.as_str() {
            // `cargo bench` passes `--bench` to harness-less benchmarks.
            "--bench" => {}
            "--duration" => o.duration = val("--duration")?.parse()?,
            "--warmup" => o.warmup = val("--warmup")?.parse()?,
            "--connections" | "-c" => o.connections = val("--connections")?.parse()?,
            "--threads" | "-t" => o.threads = val("--threads")?.parse()?,
            "--idle" => o.idle = val("--idle")?.parse()?,
            "--micro-iters" => o.micro_iters = val("--micro-iters")?.parse()?,
            "--bin" => o.bin = PathBuf::from(val("--bin")?),
            "--log-level" => o.log_level = val("--log-level")?,
            "--scenarios" | "--scenario" => {
                o.scenarios = val("--scenarios")?
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(Kind::parse)
                    .collect::<anyhow::Result<_>>()?
            }
            "--strict" => o.strict = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    ensure!(o.duration > 0.0, "--duration must be positive");
    ensure!(o.warmup >= 0.0, "--warmup must not be negative");
    ensure!(
        o.duration + o.warmup <= MAX_SCENARIO_SECS,
        "--warmup + --duration must stay within {MAX_SCENARIO_SECS} s: requests are signed once per scenario and Slack's window is 300 s"
    );
    ensure!(
        (1..=4096).contains(&o.connections),
        "--connections must be 1..=4096"
    );
    ensure!((1..=64).contains(&o.threads), "--threads must be 1..=64");
    ensure!(o.micro_iters > 0, "--micro-iters must be positive");
    ensure!(
        o.bin.is_file(),
        "service binary {} not found; build it with `cargo build --release --bin slackops` or pass --bin",
        o.bin.display()
    );
    Ok(o)
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("\nload benchmark FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let opts = parse_opts()?;
    let machine = Machine::read();
    eprintln!(
        "slackops load benchmark: {} | {} connections, {} generator thread(s), {} s warm-up + {} s per scenario",
        machine.summary(),
        opts.connections,
        opts.threads,
        opts.warmup,
        opts.duration
    );

    // In-process micro figures first, while the machine is otherwise quiet.
    let interaction_body = block_actions_body();
    let micro = micro_benchmarks(&interaction_body, opts.micro_iters)?;

    // Reserve two ports, then free them: one for the service, one left closed for slack.api_url.
    let (listen_port, closed_port) = {
        let a = StdListener::bind("127.0.0.1:0")?;
        let b = StdListener::bind("127.0.0.1:0")?;
        (a.local_addr()?.port(), b.local_addr()?.port())
    };
    let mut service = Service::start(&opts.bin, listen_port, closed_port, &opts.log_level)?;
    let ready = service.wait_ready(Duration::from_secs(30))?;
    eprintln!("ready after {:.1} ms", ms(ready));
    std::thread::sleep(Duration::from_secs_f64(opts.idle));
    let idle_rss_kb = service.status_kb("VmRSS")?;
    eprintln!("idle RSS {:.1} MB", idle_rss_kb as f64 / 1024.0);

    let rt = if opts.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(opts.threads)
            .enable_all()
            .build()?
    };

    let clk_tck = clock_ticks_per_sec();
    let mut results = Vec::new();
    for &kind in &opts.scenarios {
        // Sign with a timestamp taken now; every request of this scenario carries it.
        let ts = unix_now();
        let request = build_request(kind, service.addr, ts, &interaction_body);
        preflight(service.addr, kind, &request, ts, &interaction_body)
            .with_context(|| format!("preflight of {}", kind.label()))?;
        eprintln!("running {} ...", kind.label());
        let r = rt.block_on(load(
            service.addr,
            Arc::new(request.bytes),
            &opts,
            service.pid,
            clk_tck,
        ))?;
        results.push((kind, request.body_len, r));
        service.check_alive()?;
    }
    drop(rt);

    let peak_rss_kb = service.status_kb("VmHWM").ok();
    let shutdown = service.stop();
    let log_tail = service.log_tail(20);
    drop(service); // removes the temporary directory

    // ---- report ----
    let out = report(
        &opts,
        &machine,
        &micro,
        ready,
        idle_rss_kb,
        peak_rss_kb,
        shutdown,
        &results,
    );
    println!("{out}");

    let errors: u64 = results.iter().map(|(_, _, r)| r.errors()).sum();
    if errors > 0 {
        eprintln!(
            "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
        );
        eprintln!("!!! ERRORS: {errors} request(s) failed (non-200 or connection errors).");
        for (kind, _, r) in &results {
            if r.errors() > 0 {
                eprintln!(
                    "!!!   {}: statuses {:?}, connection errors {}{}",
                    kind.label(),
                    r.bad_statuses,
                    r.io_errors,
                    r.first_error
                        .as_deref()
                        .map(|e| format!(", first: {e}"))
                        .unwrap_or_default()
                );
            }
        }
        eprintln!("!!! The figures above are NOT valid. Service log tail:\n{log_tail}");
        eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
        return Ok(ExitCode::FAILURE);
    }
    let missed = targets(ready, idle_rss_kb, &results)
        .iter()
        .filter(|t| !t.met)
        .count();
    if missed > 0 {
        eprintln!("{missed} target(s) missed (see the table).");
        if opts.strict {
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// Request bodies

/// A realistic `block_actions` payload (~2.2 KB as a form body): a button pressed on a bot message
/// that carries Block Kit blocks, shaped like Slack's real payloads (reference/slack.md §2.2).
/// Its `action_id` (`bench.approve`) matches no registered prefix (approvals use `approvals:`), so
/// the service verifies, parses, looks up the dispatch table and acknowledges with an empty 200:
/// the interaction layer's own cost, not a feature's.
fn block_actions_body() -> Vec<u8> {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": "U024BE7LH", "username": "alice", "name": "alice", "team_id": "T024BE7LD"},
        "api_app_id": "A02MB2KTE3Z",
        "token": "Shh_its_a_seekrit",
        "container": {"type": "message", "message_ts": "1700000000.000200", "channel_id": "C024BE91L", "is_ephemeral": false},
        "trigger_id": "6243285714035.2024523470.b1c8d0f6e9a3c21d7d5a61f0e7c1b2a3",
        "team": {"id": "T024BE7LD", "domain": "acme"},
        "enterprise": null,
        "is_enterprise_install": false,
        "channel": {"id": "C024BE91L", "name": "deployments"},
        "message": {
            "type": "message", "bot_id": "B05BOT", "ts": "1700000000.000200", "team": "T024BE7LD",
            "text": "Manual Judgment: checkout deploy-prod",
            "blocks": [
                {"type": "section", "block_id": "summary",
                 "text": {"type": "mrkdwn", "text": "Manual Judgment in *checkout*: promote to prod?"}},
                {"type": "actions", "block_id": "judgment", "elements": [
                    {"type": "button", "action_id": "bench.approve", "style": "primary",
                     "value": "01HZX3K9W2Q8V7:approve",
                     "text": {"type": "plain_text", "text": "Approve", "emoji": true}},
                    {"type": "button", "action_id": "bench.reject", "style": "danger",
                     "value": "01HZX3K9W2Q8V7:reject",
                     "text": {"type": "plain_text", "text": "Reject", "emoji": true}}
                ]}
            ]
        },
        "state": {"values": {}},
        "response_url": "https://hooks.slack.com/actions/T024BE7LD/6243285714035/Xq7v3JcKf2bDk9LmN4pR8sTw",
        "actions": [{
            "action_id": "bench.approve", "block_id": "judgment",
            "text": {"type": "plain_text", "text": "Approve", "emoji": true},
            "value": "01HZX3K9W2Q8V7:approve", "style": "primary", "type": "button",
            "action_ts": "1700000012.345678"
        }]
    });
    let json = serde_json::to_string(&payload).expect("static JSON");
    serde_urlencoded::to_string([("payload", json)])
        .expect("form encoding")
        .into_bytes()
}

/// Slack's documented slash command (KAT-1's body, reference/slack.md §1). `/webhook-collect` has
/// no handler, so the layer answers with an ephemeral JSON message listing the known commands.
const SLASH_COMMAND_BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";

struct Request {
    bytes: Vec<u8>,
    body_len: usize,
}

fn signed_post(addr: SocketAddr, path: &str, ts: i64, body: &[u8]) -> Request {
    let sig = sign(SIGNING_SECRET, ts, body);
    let mut bytes = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: Slackbot 1.0 (+https://api.slack.com/robots)\r\nAccept: application/json,*/*\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Slack-Request-Timestamp: {ts}\r\nX-Slack-Signature: {sig}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    Request {
        bytes,
        body_len: body.len(),
    }
}

fn build_request(kind: Kind, addr: SocketAddr, ts: i64, interaction_body: &[u8]) -> Request {
    match kind {
        Kind::Interaction => signed_post(addr, "/slack/interactions", ts, interaction_body),
        Kind::Command => signed_post(addr, "/slack/commands", ts, SLASH_COMMAND_BODY),
        Kind::Healthz => Request {
            bytes: format!(
                "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: slackops-bench\r\n\r\n"
            )
            .into_bytes(),
            body_len: 0,
        },
    }
}

/// One request of the scenario must get a 200; for signed routes a one-byte tampering of the
/// body must get a 401, proving the service verifies what the benchmark sends.
fn preflight(
    addr: SocketAddr,
    kind: Kind,
    request: &Request,
    ts: i64,
    interaction_body: &[u8],
) -> anyhow::Result<()> {
    let (status, body) = blocking_exchange(addr, &request.bytes)?;
    ensure!(
        status == 200,
        "expected 200, got {status}: {}",
        String::from_utf8_lossy(&body)
    );
    if kind != Kind::Healthz {
        let good = build_request(kind, addr, ts, interaction_body);
        let mut tampered = good.bytes.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 0x01;
        let (status, body) = blocking_exchange(addr, &tampered)?;
        ensure!(
            status == 401,
            "a tampered body must be refused with 401, got {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Micro benchmarks (in-process)

struct Micro {
    iters: u32,
    body_len: usize,
    verify: Duration,
    /// Form decode + JSON deserialize, and each half alone.
    parse: Duration,
    form: Duration,
    json: Duration,
}

fn micro_benchmarks(body: &[u8], iters: u32) -> anyhow::Result<Micro> {
    let ts = unix_now();
    let ts_s = ts.to_string();
    let sig = sign(SIGNING_SECRET, ts, body);
    let verifier = SignatureVerifier::new(Secret::new(SIGNING_SECRET), Arc::new(SystemClock));
    ensure!(
        verifier.verify_parts(&ts_s, &sig, body).is_ok(),
        "the verifier refuses the benchmark's own signature"
    );
    // Warm caches, then time.
    for _ in 0..iters / 10 {
        std::hint::black_box(verifier.verify_parts(&ts_s, &sig, std::hint::black_box(body))).ok();
    }
    let t = Instant::now();
    for _ in 0..iters {
        std::hint::black_box(verifier.verify_parts(&ts_s, &sig, std::hint::black_box(body)))
            .map_err(|e| anyhow::anyhow!("verify failed: {e}"))?;
    }
    let verify = t.elapsed() / iters;

    // What the layer does after verification (src/slack/routes.rs): form-decode the body into
    // pairs, take `payload`, deserialize it. Timed together and in its two halves.
    let decode = |b: &[u8]| -> anyhow::Result<String> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(b)?;
        pairs
            .into_iter()
            .find(|(k, _)| k == "payload")
            .map(|(_, v)| v)
            .context("no payload field")
    };
    let payload = decode(body)?;
    let check: Interaction = serde_json::from_str(&payload)?;
    ensure!(check.kind == "block_actions" && check.actions.len() == 1);
    let n = (iters / 4).max(1);
    let time = |f: &mut dyn FnMut() -> anyhow::Result<()>| -> anyhow::Result<Duration> {
        let t = Instant::now();
        for _ in 0..n {
            f()?;
        }
        Ok(t.elapsed() / n)
    };
    let parse = time(&mut || {
        let p = decode(std::hint::black_box(body))?;
        std::hint::black_box(serde_json::from_str::<Interaction>(&p)?);
        Ok(())
    })?;
    let form = time(&mut || {
        std::hint::black_box(decode(std::hint::black_box(body))?);
        Ok(())
    })?;
    let json = time(&mut || {
        std::hint::black_box(serde_json::from_str::<Interaction>(std::hint::black_box(
            &payload,
        ))?);
        Ok(())
    })?;
    Ok(Micro {
        iters,
        body_len: body.len(),
        verify,
        parse,
        form,
        json,
    })
}

// ---------------------------------------------------------------------------------------------
// The service process

struct Service {
    child: Option<Child>,
    pid: u32,
    addr: SocketAddr,
    spawned: Instant,
    log: PathBuf,
    // Dropped after `Drop::drop` has stopped the child.
    _dir: tempfile::TempDir,
}

impl Service {
    fn start(bin: &Path, port: u16, closed_port: u16, log_level: &str) -> anyhow::Result<Service> {
        let dir = tempfile::Builder::new()
            .prefix("slackops-bench-")
            .tempdir()
            .context("creating a temporary directory")?;
        let log = dir.path().join("service.log");
        let log_file = std::fs::File::create(&log)?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file.try_clone()?))
            .stderr(Stdio::from(log_file));
        // Only what the benchmark sets: no inherited configuration or RUST_LOG override.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("SLACKOPS_") || k == "RUST_LOG" {
                cmd.env_remove(k);
            }
        }
        cmd.env(
            "SLACKOPS_DATABASE__URL",
            format!("sqlite://{}/bench.db", dir.path().display()),
        )
        .env("SLACKOPS_SERVER__LISTEN", addr.to_string())
        .env("SLACKOPS_SLACK__SIGNING_SECRET", SIGNING_SECRET)
        .env("SLACKOPS_SLACK__BOT_TOKEN", "xoxb-bench")
        .env(
            "SLACKOPS_SLACK__API_URL",
            format!("http://127.0.0.1:{closed_port}/api"),
        )
        .env(
            "SLACKOPS_SPINNAKER__GATE_URL",
            format!("http://127.0.0.1:{closed_port}"),
        )
        .env("SLACKOPS_LOG__LEVEL", log_level);
        let spawned = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} serve", bin.display()))?;
        Ok(Service {
            pid: child.id(),
            child: Some(child),
            addr,
            spawned,
            log,
            _dir: dir,
        })
    }

    /// Spawn → first 200 from `/readyz`.
    fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<Duration> {
        loop {
            if let Ok((200, _)) = blocking_exchange(
                self.addr,
                format!(
                    "GET /readyz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                    self.addr
                )
                .as_bytes(),
            ) {
                return Ok(self.spawned.elapsed());
            }
            self.check_alive()?;
            if self.spawned.elapsed() > limit {
                bail!("not ready within {limit:?}; log:\n{}", self.log_tail(40));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            self.child = None;
            bail!("the service exited ({status}); log:\n{}", self.log_tail(40));
        }
        Ok(())
    }

    /// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`).
    fn status_kb(&self, field: &str) -> anyhow::Result<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        s.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .with_context(|| format!("no {field} in /proc/{}/status", self.pid))
    }

    /// SIGTERM (graceful), SIGKILL after 10 s. Returns how long a graceful stop took.
    fn stop(&mut self) -> Option<Duration> {
        let mut child = self.child.take()?;
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        let t = Instant::now();
        let termed = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if termed {
            while t.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    return Some(t.elapsed());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            eprintln!("the service did not stop within 10 s of SIGTERM; killing it");
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let tail = all[all.len().saturating_sub(lines)..].join("\n");
        if tail.is_empty() {
            "(empty)".into()
        } else {
            tail
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 on raw sockets

/// One request on a fresh blocking connection (`Connection: close` or a single keep-alive
/// exchange); returns status and body.
fn blocking_exchange(addr: SocketAddr, request: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut s = StdStream::connect_timeout(&addr, Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_nodelay(true)?;
    s.write_all(request)?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(r) = parse_response(&buf)? {
            let body = buf[r.body_start..r.total].to_vec();
            return Ok((r.status, body));
        }
        let n = s.read(&mut chunk)?;
        ensure!(n > 0, "connection closed before a full response");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A complete response at the start of a buffer.
struct Parsed {
    status: u16,
    body_start: usize,
    /// Bytes of the whole response (head + body).
    total: usize,
    close: bool,
}

/// Parse a response head and find its end; `Ok(None)` when more bytes are needed.
fn parse_response(buf: &[u8]) -> anyhow::Result<Option<Parsed>> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        ensure!(buf.len() < 64 * 1024, "response head larger than 64 KiB");
        return Ok(None);
    };
    let head = &buf[..head_end];
    let body_start = head_end + 4;
    let mut lines = head.split(|&b| b == b'\n');
    let status_line = lines.next().unwrap_or_default();
    // "HTTP/1.1 200 OK"
    let status = status_line
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u16>().ok())
        .with_context(|| format!("bad status line {:?}", String::from_utf8_lossy(status_line)))?;
    let mut content_length = None;
    let mut chunked = false;
    let mut close = false;
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            content_length = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<usize>().ok());
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = value.eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case(b"connection") {
            close = value.eq_ignore_ascii_case(b"close");
        }
    }
    let total = if chunked {
        match chunked_end(&buf[body_start..])? {
            Some(n) => body_start + n,
            None => return Ok(None),
        }
    } else {
        let n = content_length.unwrap_or(0);
        if buf.len() < body_start + n {
            return Ok(None);
        }
        body_start + n
    };
    Ok(Some(Parsed {
        status,
        body_start,
        total,
        close,
    }))
}

/// Length of a complete chunked body (without trailers), or `None` when incomplete.
fn chunked_end(b: &[u8]) -> anyhow::Result<Option<usize>> {
    let mut at = 0;
    loop {
        let Some(eol) = find(&b[at..], b"\r\n") else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&b[at..at + eol])?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        at += eol + 2;
        if size == 0 {
            return Ok((b.len() >= at + 2).then_some(at + 2));
        }
        if b.len() < at + size + 2 {
            return Ok(None);
        }
        at += size + 2;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// The closed-loop load generator

#[derive(Default)]
struct ConnResult {
    hist: Option<Histogram<u64>>,
    ok: u64,
    bad_statuses: BTreeMap<u16, u64>,
    io_errors: u64,
    first_error: Option<String>,
}

struct LoadResult {
    hist: Histogram<u64>,
    measured: Duration,
    ok: u64,
    bad_statuses: BTreeMap<u16, u64>,
    io_errors: u64,
    first_error: Option<String>,
    /// CPU used during the measured window, in cores (1.0 = one core busy).
    service_cpu: Option<f64>,
    generator_cpu: Option<f64>,
    /// Everything else on the machine (other builds, interrupts): contention the figures suffered.
    other_cpu: Option<f64>,
    /// Time the hypervisor ran something else on this VM's CPUs (`steal` in `/proc/stat`).
    steal_cpu: Option<f64>,
}

impl LoadResult {
    fn completed(&self) -> u64 {
        self.hist.len()
    }
    fn rps(&self) -> f64 {
        self.completed() as f64 / self.measured.as_secs_f64()
    }
    fn errors(&self) -> u64 {
        self.bad_statuses.values().sum::<u64>() + self.io_errors
    }
    fn pct(&self, q: f64) -> Duration {
        Duration::from_nanos(self.hist.value_at_quantile(q))
    }
}

fn new_hist() -> Histogram<u64> {
    // Nanoseconds, 1 ns .. 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

async fn load(
    addr: SocketAddr,
    request: Arc<Vec<u8>>,
    opts: &Opts,
    service_pid: u32,
    clk_tck: f64,
) -> anyhow::Result<LoadResult> {
    let start = tokio::time::Instant::now();
    let measure_from = start + Duration::from_secs_f64(opts.warmup);
    let until = measure_from + Duration::from_secs_f64(opts.duration);

    let mut tasks = Vec::with_capacity(opts.connections);
    for _ in 0..opts.connections {
        let req = request.clone();
        tasks.push(tokio::spawn(connection(
            addr,
            req,
            measure_from.into_std(),
            until.into_std(),
        )));
    }

    // CPU of both processes over the measured window.
    tokio::time::sleep_until(measure_from).await;
    let cpu0 = (cpu_ticks(service_pid), cpu_ticks_self(), machine_ticks());
    let wall0 = Instant::now();
    tokio::time::sleep_until(until).await;
    let cpu1 = (cpu_ticks(service_pid), cpu_ticks_self(), machine_ticks());
    let wall = wall0.elapsed().as_secs_f64();
    let cores =
        |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?) as f64 / clk_tck / wall);
    let service_cpu = cores(cpu0.0, cpu1.0);
    let generator_cpu = cores(cpu0.1, cpu1.1);
    let other_cpu = cores(cpu0.2.map(|m| m.0), cpu1.2.map(|m| m.0))
        .zip(service_cpu.zip(generator_cpu))
        .map(|(all, (s, g))| (all - s - g).max(0.0));
    let steal_cpu = cores(cpu0.2.map(|m| m.1), cpu1.2.map(|m| m.1));

    let mut total = LoadResult {
        hist: new_hist(),
        measured: Duration::ZERO,
        ok: 0,
        bad_statuses: BTreeMap::new(),
        io_errors: 0,
        first_error: None,
        service_cpu,
        generator_cpu,
        other_cpu,
        steal_cpu,
    };
    for t in tasks {
        let r = t.await.context("a connection task panicked")?;
        if let Some(h) = &r.hist {
            total.hist.add(h).context("merging histograms")?;
        }
        total.ok += r.ok;
        total.io_errors += r.io_errors;
        for (s, n) in r.bad_statuses {
            *total.bad_statuses.entry(s).or_default() += n;
        }
        if total.first_error.is_none() {
            total.first_error = r.first_error;
        }
    }
    // Requests started before `until` are counted; the last finish slightly after it.
    total.measured = measure_from.elapsed();
    Ok(total)
}

/// One keep-alive connection in a closed loop: send, read the whole response, repeat. Latencies
/// of requests sent after `measure_from` are recorded. Errors are counted for the whole run
/// (warm-up included) and the connection is re-opened.
async fn connection(
    addr: SocketAddr,
    request: Arc<Vec<u8>>,
    measure_from: Instant,
    until: Instant,
) -> ConnResult {
    let mut r = ConnResult {
        hist: Some(new_hist()),
        ..ConnResult::default()
    };
    let mut buf = vec![0u8; 16 * 1024];
    'connect: while Instant::now() < until {
        let mut stream = match TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(e) => {
                note_error(&mut r, format!("connect: {e}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let mut filled = 0usize;
        loop {
            let sent = Instant::now();
            if sent >= until {
                break 'connect;
            }
            if let Err(e) = stream.write_all(&request).await {
                note_error(&mut r, format!("write: {e}"));
                continue 'connect;
            }
            let parsed = loop {
                match parse_response(&buf[..filled]) {
                    Ok(Some(p)) => break p,
                    Ok(None) => {}
                    Err(e) => {
                        note_error(&mut r, format!("parse: {e:#}"));
                        continue 'connect;
                    }
                }
                if filled == buf.len() {
                    buf.resize(buf.len() * 2, 0);
                }
                match stream.read(&mut buf[filled..]).await {
                    Ok(0) => {
                        note_error(&mut r, "connection closed by the service".into());
                        continue 'connect;
                    }
                    Ok(n) => filled += n,
                    Err(e) => {
                        note_error(&mut r, format!("read: {e}"));
                        continue 'connect;
                    }
                }
            };
            let done = Instant::now();
            if sent >= measure_from {
                let ns = (done - sent).as_nanos().max(1) as u64;
                if let Some(h) = r.hist.as_mut() {
                    h.saturating_record(ns);
                }
            }
            if parsed.status == 200 {
                r.ok += 1;
            } else {
                *r.bad_statuses.entry(parsed.status).or_default() += 1;
            }
            buf.copy_within(parsed.total..filled, 0);
            filled -= parsed.total;
            if parsed.close {
                continue 'connect;
            }
        }
    }
    r
}

fn note_error(r: &mut ConnResult, e: String) {
    r.io_errors += 1;
    r.first_error.get_or_insert(e);
}

// ---------------------------------------------------------------------------------------------
// Machine facts and /proc

struct Machine {
    nproc: String,
    kernel: String,
    cpu: String,
    load: String,
}

impl Machine {
    fn read() -> Machine {
        let cmd = |c: &str, args: &[&str]| {
            Command::new(c)
                .args(args)
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_else(|| "?".into())
        };
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_else(|| "?".into());
        Machine {
            nproc: cmd("nproc", &[]),
            kernel: cmd("uname", &["-r"]),
            cpu,
            load: load_avg(),
        }
    }
    fn summary(&self) -> String {
        format!(
            "nproc {}, kernel {}, {}, load average {}",
            self.nproc, self.kernel, self.cpu, self.load
        )
    }
}

fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// utime + stime of a process (all threads), in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn cpu_ticks_self() -> Option<u64> {
    stat_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

fn stat_ticks(stat: &str) -> Option<u64> {
    // Fields after "(comm)": state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Busy time of all CPUs (`/proc/stat`: user, nice, system, irq, softirq) and steal time, in
/// clock ticks.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    Some((
        [0, 1, 2, 5, 6].iter().filter_map(|&i| f.get(i)).sum(),
        *f.get(7)?,
    ))
}

fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

// ---------------------------------------------------------------------------------------------
// Report

struct Target {
    name: &'static str,
    measured: String,
    met: bool,
}

fn targets(
    ready: Duration,
    idle_rss_kb: u64,
    results: &[(Kind, usize, LoadResult)],
) -> Vec<Target> {
    let mut t = vec![
        Target {
            name: "ready within 1 s of start",
            measured: format!("{:.0} ms", ms(ready)),
            met: ready <= TARGET_READY,
        },
        Target {
            name: "idle memory < 30 MB RSS",
            measured: format!("{:.1} MB", idle_rss_kb as f64 / 1024.0),
            met: idle_rss_kb < TARGET_IDLE_RSS_KB,
        },
    ];
    if let Some((_, _, r)) = results.iter().find(|(k, _, _)| *k == Kind::Interaction) {
        t.push(Target {
            name: "≥ 10,000 signed interactions/s",
            measured: format!("{:.0} req/s", r.rps()),
            met: r.rps() >= TARGET_INTERACTIONS_PER_SEC,
        });
        t.push(Target {
            name: "signed interaction p99 < 10 ms",
            measured: format!("{:.2} ms", ms(r.pct(0.99))),
            met: r.pct(0.99) < TARGET_P99,
        });
    }
    t
}

#[allow(clippy::too_many_arguments)]
fn report(
    opts: &Opts,
    machine: &Machine,
    micro: &Micro,
    ready: Duration,
    idle_rss_kb: u64,
    peak_rss_kb: Option<u64>,
    shutdown: Option<Duration>,
    results: &[(Kind, usize, LoadResult)],
) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(o, "\n## slackops load benchmark\n");
    let errors: u64 = results.iter().map(|(_, _, r)| r.errors()).sum();
    if errors > 0 {
        let _ = writeln!(
            o,
            "**RUN INVALID: {errors} request(s) failed (non-200 or connection errors); see stderr.**\n"
        );
    }
    let _ = writeln!(
        o,
        "Machine: {} cores (nproc), kernel {}, {} (load average at start {}, at end {}).  ",
        machine.nproc,
        machine.kernel,
        machine.cpu,
        machine.load,
        load_avg()
    );
    let _ = writeln!(
        o,
        "Load: {} keep-alive connections, closed loop, {} generator thread(s) in the same machine, {} s warm-up + {} s measured per scenario; service log level `{}`.\n",
        opts.connections, opts.threads, opts.warmup, opts.duration, opts.log_level
    );
    let _ = writeln!(
        o,
        "| scenario | body | req/s | p50 ms | p90 ms | p99 ms | max ms | errors | service CPU µs/req | CPU cores: service | generator | other | steal |"
    );
    let _ = writeln!(
        o,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (kind, body_len, r) in results {
        let cpu = |c: Option<f64>| c.map(|c| format!("{c:.2}")).unwrap_or("?".into());
        let _ = writeln!(
            o,
            "| {} | {} B | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} |",
            kind.label(),
            body_len,
            r.rps(),
            ms(r.pct(0.50)),
            ms(r.pct(0.90)),
            ms(r.pct(0.99)),
            ms(Duration::from_nanos(r.hist.max())),
            r.errors(),
            r.service_cpu
                .map(|c| format!("{:.0}", c * 1e6 / r.rps()))
                .unwrap_or("?".into()),
            cpu(r.service_cpu),
            cpu(r.generator_cpu),
            cpu(r.other_cpu),
            cpu(r.steal_cpu),
        );
    }
    let _ = writeln!(
        o,
        "\nCPU: cores used during the measured window (this machine has {}); \"service CPU µs/req\" is the service's CPU time per answered request, the figure least disturbed by contention. \"other\": every other process plus interrupt time (other builds, loopback softirq). \"steal\": time the hypervisor gave this VM's CPUs to someone else; more than ~0.1 means the figures are contended.",
        machine.nproc
    );
    let contended: Vec<&str> = results
        .iter()
        .filter(|(_, _, r)| r.steal_cpu.unwrap_or(0.0) > 0.1 || r.other_cpu.unwrap_or(0.0) > 0.2)
        .map(|(k, _, _)| k.short())
        .collect();
    if !contended.is_empty() {
        let _ = writeln!(
            o,
            "\n**Contended:** other processes or the hypervisor took CPU during {}; rerun on a quiet machine for clean figures.",
            contended.join(", ")
        );
    }
    let _ = writeln!(o, "\n| target | measured | result |\n|---|---:|---|");
    for t in targets(ready, idle_rss_kb, results) {
        let _ = writeln!(
            o,
            "| {} | {} | {} |",
            t.name,
            t.measured,
            if t.met { "met" } else { "**MISSED**" }
        );
    }
    let _ = writeln!(o, "\n| other | value |\n|---|---:|");
    let _ = writeln!(
        o,
        "| `SignatureVerifier::verify_parts`, {} B body (mean of {} calls, in-process) | {:.2} µs |",
        micro.body_len,
        micro.iters,
        us(micro.verify)
    );
    let _ = writeln!(
        o,
        "| interaction parse, same body: form decode + JSON → `Interaction` (in-process) | {:.2} µs ({:.2} + {:.2}) |",
        us(micro.parse),
        us(micro.form),
        us(micro.json)
    );
    if let Some(kb) = peak_rss_kb {
        let _ = writeln!(
            o,
            "| peak RSS of the service over the run (VmHWM) | {:.1} MB |",
            kb as f64 / 1024.0
        );
    }
    if let Some(d) = shutdown {
        let _ = writeln!(o, "| SIGTERM → exit | {:.0} ms |", ms(d));
    }
    o
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
