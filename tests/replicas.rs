//! Several replicas behave as one: two real `slackops serve` processes (the binary cargo built,
//! configured as in production through a YAML file, `_file` secrets and environment variables)
//! share one PostgreSQL database and the same fake Slack and Gate (tests/support). The guarantees
//! under test are carried by the database, not by anything in a process:
//!
//! - echo's event for a Manual Judgment reaching both replicas (echo retries, or two endpoints)
//!   gives one Slack message per judgment;
//! - clicks on one judgment split across the two replicas give one Gate PATCH per stage;
//! - jobs a replica was running when it was killed (SIGKILL: no graceful shutdown) are finished by
//!   the other once their leases expire, still with one PATCH per stage;
//! - on-call syncs run one at a time (the replicas' periodic syncs and `slackops oncall sync` run
//!   by hand), so each change is written to Slack once and announced once.
//!
//! These tests need PostgreSQL (`SLACKOPS_TEST_POSTGRES_URL`, an admin URL such as
//! `postgres://postgres@127.0.0.1:5432/test`; `.ci/run` sets it): each creates a fresh database and
//! drops it at the end. Without it they print `SKIPPED: <test> needs PostgreSQL` and pass.
//! `TEST_LOG=1` shows the replicas' logs.

#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::Connection;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use support::fake_gate::FakeGate;
use support::fake_slack::{FakeSlack, Message};
use support::fake_socket_mode::{self, FakeSocketMode};

const POSTGRES_ENV: &str = "SLACKOPS_TEST_POSTGRES_URL";
const SIGNING_SECRET: &str = "replicas-signing-secret-0123456789";
const ECHO_TOKEN: &str = "replicas-echo-token-0123456789";
const API_TOKEN: &str = "replicas-api-token-0123456789";

const APP: &str = "myapp";
const PIPELINE: &str = "deploy-prod";
const CHANNEL: &str = "C0APPROVE";
const DEFAULT_CHANNEL: &str = "C0DEFAULT";
const BOB: &str = "U0BOB";
const CAROL: &str = "U0CAROL";
const ALICE: &str = "U0ALICE";
const APPROVE: &str = "approvals:approve";

/// How long anything may take to happen (a takeover waits for a lease: `jobs.lease_secs` = 5).
const WAIT: Duration = Duration::from_secs(30);
/// Time after which a duplicate (a second message, a second PATCH) would have shown up.
const SETTLE: Duration = Duration::from_millis(1500);

/// One test at a time: each runs two service processes, and the kill test's timing should not
/// compete with the others for the machine's cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ------------------------------------------------------------------------------- the database

/// A fresh PostgreSQL database for one test, dropped at the end.
struct PgDb {
    admin: String,
    name: String,
    url: String,
}

impl PgDb {
    /// `None` (with the SKIPPED notice) when PostgreSQL is not configured.
    async fn create(test: &str) -> Option<PgDb> {
        let Ok(admin) = std::env::var(POSTGRES_ENV) else {
            println!("SKIPPED: {test} needs PostgreSQL (set {POSTGRES_ENV}; .ci/run does)");
            eprintln!("SKIPPED: {test} needs PostgreSQL (set {POSTGRES_ENV}; .ci/run does)");
            return None;
        };
        let name = format!("slackops_r_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| {
                panic!("{POSTGRES_ENV} is set but PostgreSQL does not answer: {e}")
            });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create the test database");
        let mut url = url::Url::parse(&admin).expect("a postgres:// URL");
        url.set_path(&format!("/{name}"));
        Some(PgDb {
            admin,
            name,
            url: url.to_string(),
        })
    }

    async fn pool(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.url)
            .await
            .expect("connect to the test database")
    }

    /// Best effort: the replicas are gone by now.
    async fn drop_database(self) {
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.admin).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&mut conn)
            .await;
        }
    }
}

// ------------------------------------------------------------------------------- the replicas

/// One `slackops serve` process.
struct Replica {
    name: String,
    address: String,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    client: reqwest::Client,
}

/// What both replicas share: the fakes, the database, and the configuration directory.
struct Cluster {
    slack: FakeSlack,
    gate: FakeGate,
    db: PgDb,
    dir: tempfile::TempDir,
    /// The fake Socket Mode edge, for replicas in Socket Mode.
    socket: Option<FakeSocketMode>,
}

impl Cluster {
    async fn new(db: PgDb) -> Cluster {
        Cluster::with_config(db, "").await
    }

    /// A cluster whose configuration ends with `extra` (more YAML sections).
    async fn with_config(db: PgDb, extra: &str) -> Cluster {
        slackops::telemetry::install_crypto_provider();
        let slack = FakeSlack::start().await;
        let gate = FakeGate::start().await;
        slack.add_channel(CHANNEL, "approvals");
        slack.add_channel(DEFAULT_CHANNEL, "ops");
        slack.add_user(BOB, "bob", "bob@example.com", "UTC");
        slack.add_user(CAROL, "carol", "carol@example.com", "UTC");
        slack.add_user(ALICE, "alice", "alice@example.com", "UTC");
        let dir = tempfile::tempdir().expect("temp dir");
        write_config(dir.path(), &slack, &gate, &db.url, extra);
        Cluster {
            slack,
            gate,
            db,
            dir,
            socket: None,
        }
    }

    /// A cluster whose replicas run in Socket Mode (two connections each, the app token from a
    /// file, no signing secret) and log at debug level.
    async fn socket_mode(db: PgDb) -> Cluster {
        let mut cluster = Cluster::new(db).await;
        let socket = FakeSocketMode::start().await;
        cluster
            .slack
            .enable_socket_mode(fake_socket_mode::APP_TOKEN, socket.minter());
        let dir = cluster.dir.path();
        let token = dir.join("slack-app-token");
        std::fs::write(&token, format!("{}\n", fake_socket_mode::APP_TOKEN)).expect("write");
        let path = dir.join("slackops.yaml");
        let config = std::fs::read_to_string(&path).expect("read slackops.yaml");
        let signing_line = config
            .lines()
            .find(|l| l.contains("signing_secret_file"))
            .expect("the signing secret line")
            .to_string();
        let config = config
            .replace(
                &signing_line,
                &format!(
                    "  mode: socket\n  app_token_file: {}\n  socket_connections: 2\n  socket_ping_interval_ms: 1000",
                    token.display()
                ),
            )
            .replace("level: info,sqlx=warn", "level: debug,sqlx=warn,hyper=info,h2=info");
        std::fs::write(&path, config).expect("write slackops.yaml");
        cluster.socket = Some(socket);
        cluster
    }

    /// Start a replica named `name` (its job leases are owned by `<name>-<pid>-…`), and wait until
    /// it is ready.
    async fn start(&self, name: &str) -> Replica {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_slackops"));
        cmd.arg("serve")
            .env("SLACKOPS_CONFIG", self.dir.path().join("slackops.yaml"))
            // A list in the environment, as the Kubernetes manifests pass it from the Secret.
            .env("SLACKOPS_API__TOKENS", format!("[\"{API_TOKEN}\"]"))
            .env("HOSTNAME", name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, _) in std::env::vars() {
            if k.starts_with("SLACKOPS_") && k != "SLACKOPS_CONFIG" || k == "RUST_LOG" {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd.spawn().expect("start slackops serve");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        let tx = Arc::new(Mutex::new(Some(tx)));
        let echo = std::env::var("TEST_LOG").is_ok();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        for (stream, is_stdout) in [
            (
                Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                true,
            ),
            (Box::new(stderr), false),
        ] {
            let (log, tx, name) = (log.clone(), tx.clone(), name.to_string());
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if echo {
                        eprintln!("[{name}] {line}");
                    }
                    if is_stdout
                        && let Some(addr) = listening_address(&line)
                        && let Some(tx) = tx.lock().expect("lock").take()
                    {
                        let _ = tx.send(addr);
                    }
                    log.lock().expect("lock").push(line);
                }
            });
        }
        let address = match tokio::time::timeout(WAIT, rx).await {
            Ok(Ok(addr)) => format!("http://{addr}"),
            _ => {
                let status = child.try_wait().ok().flatten();
                panic!(
                    "replica {name} did not start (exit status {status:?}); its output:\n{}",
                    log.lock().expect("lock").join("\n")
                );
            }
        };
        let replica = Replica {
            name: name.to_string(),
            address,
            child,
            log,
            client: reqwest::Client::new(),
        };
        replica.wait_ready().await;
        replica
    }

    async fn finish(self) {
        self.db.drop_database().await;
    }
}

/// `address` from the JSON line `slackops listening` (log.format: json).
fn listening_address(line: &str) -> Option<String> {
    let v: Value = serde_json::from_str(line).ok()?;
    (v["message"] == "slackops listening")
        .then(|| v["address"].as_str().map(str::to_owned))
        .flatten()
}

/// The configuration as an operator writes it: a YAML file, secrets in files named by `_file`
/// keys (a mounted Kubernetes Secret), the database URL among them.
fn write_config(dir: &Path, slack: &FakeSlack, gate: &FakeGate, db_url: &str, extra: &str) {
    let secret = |name: &str, value: &str| -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("{value}\n")).expect("write a secret file");
        p
    };
    let signing = secret("slack-signing-secret", SIGNING_SECRET);
    let bot = secret("slack-bot-token", &slack.token());
    let echo = secret("echo-token", ECHO_TOKEN);
    let database = secret("database-url", db_url);
    let config = format!(
        r#"server:
  listen: 127.0.0.1:0
  shutdown_timeout_secs: 5
database:
  url_file: {database}
  max_connections: 5
slack:
  signing_secret_file: {signing}
  bot_token_file: {bot}
  api_url: {slack_api}
  request_timeout_ms: 5000
  max_retries: 3
  post_rate_per_channel: 1000.0
  post_burst_per_channel: 1000
spinnaker:
  gate_url: {gate_url}
  deck_url: https://deck.example.com
  echo_token_file: {echo}
  request_timeout_ms: 10000
jobs:
  poll_interval_ms: 50
  backoff_base_ms: 50
  backoff_max_ms: 500
  lease_secs: 5
log:
  format: json
  level: info,sqlx=warn
approvals:
  default_channel: {DEFAULT_CHANNEL}
  routes:
    - application: {APP}
      channel: {CHANNEL}
  approvers:
    - application: {APP}
      users: [{BOB}, {CAROL}, {ALICE}]
  outcome_wait_secs: 3
"#,
        database = database.display(),
        signing = signing.display(),
        bot = bot.display(),
        echo = echo.display(),
        slack_api = slack.api_url(),
        gate_url = gate.url(),
    );
    std::fs::write(dir.join("slackops.yaml"), config + extra).expect("write slackops.yaml");
}

impl Replica {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    async fn wait_ready(&self) {
        eventually(&format!("{} to be ready", self.name), || async {
            let r = self.client.get(self.url("/readyz")).send().await.ok()?;
            (r.status() == 200).then_some(())
        })
        .await;
    }

    /// echo's POST of one event, with the right token.
    async fn echo(&self, event: &Value) -> u16 {
        self.client
            .post(self.url("/spinnaker/events"))
            .bearer_auth(ECHO_TOKEN)
            .json(event)
            .send()
            .await
            .expect("echo reaches the replica")
            .status()
            .as_u16()
    }

    /// A click, signed as Slack signs it.
    async fn interaction(&self, payload: &Value) -> u16 {
        let body = serde_urlencoded::to_string([("payload", payload.to_string())]).expect("form");
        let ts = chrono::Utc::now().timestamp();
        self.client
            .post(self.url("/slack/interactions"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", ts.to_string())
            .header(
                "x-slack-signature",
                slackops::slack::verify::sign(SIGNING_SECRET, ts, body.as_bytes()),
            )
            .body(body)
            .send()
            .await
            .expect("Slack reaches the replica")
            .status()
            .as_u16()
    }

    /// `GET /api/v1/judgments`.
    async fn judgments(&self) -> Vec<Value> {
        let resp = self
            .client
            .get(self.url("/api/v1/judgments"))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .expect("the API answers");
        assert_eq!(
            resp.status(),
            200,
            "{}: the judgments API answers",
            self.name
        );
        let body: Value = resp.json().await.expect("judgments JSON");
        body["judgments"].as_array().cloned().unwrap_or_default()
    }

    /// SIGTERM, as Kubernetes stops a pod: the graceful shutdown. Returns the exit code and
    /// everything the process printed.
    async fn terminate(mut self) -> (Option<i32>, String) {
        let pid = self.child.id().expect("the replica is running");
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .expect("kill -TERM");
        assert!(sent.success(), "SIGTERM sent to {}", self.name);
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("the replica exits after SIGTERM")
            .expect("exit status");
        // Let the log readers drain the pipes.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let log = self.log.lock().expect("lock").join("\n");
        (status.code(), log)
    }

    /// A metric's value from `/metrics`; 0 when absent.
    async fn metric(&self, series: &str) -> f64 {
        let text = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// SIGKILL: no graceful shutdown, no lease released, whatever was in flight is cut.
    async fn kill(mut self) {
        self.child.start_kill().expect("SIGKILL the replica");
        let _ = self.child.wait().await;
    }

    /// The end of a test: the process is killed; the assertions have seen its work by then.
    async fn stop(self) {
        self.kill().await;
    }
}

/// A failing test shows what each replica logged.
impl Drop for Replica {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log.lock().map(|l| l.join("\n")).unwrap_or_default();
            eprintln!("----- output of {} -----\n{log}", self.name);
        }
    }
}

// ------------------------------------------------------------------------------- fixtures

/// A running Manual Judgment for execution `n` in the fake Gate; returns (execution, stage id).
fn add_judgment(gate: &FakeGate, n: usize) -> (Value, String) {
    let exec_id = format!("01J6EXEC{n:018}");
    let stage_id = format!("01J6STAGE{n:017}");
    gate.add_execution(FakeGate::mj_execution(APP, PIPELINE, &exec_id, &stage_id));
    (gate.execution(&exec_id), stage_id)
}

/// echo's `orca:stage:starting` for the stage, with the full execution (reference/spinnaker.md
/// §3a; the same shape as tests/api/approvals_support.rs builds).
fn starting_event(execution: &Value, stage_id: &str) -> Value {
    let stage = execution["stages"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["id"] == stage_id))
        .cloned()
        .unwrap_or(Value::Null);
    json!({
        "details": {"source": "orca", "type": "orca:stage:starting", "created": "1724312345678",
                    "application": execution["application"], "requestHeaders": {}},
        "content": {
            "standalone": false, "canceled": false,
            "executionId": execution["id"], "stageId": stage_id, "isSynthetic": false,
            "name": stage["name"], "startTime": stage["startTime"], "endTime": stage["endTime"],
            "context": stage["context"],
            "execution": execution
        },
        "eventId": uuid::Uuid::new_v4().to_string()
    })
}

/// The judgment id the message's Approve button carries.
fn judgment_id_of(message: &Message) -> String {
    message
        .blocks
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
        .find(|e| e["action_id"] == APPROVE)
        .and_then(|e| e["value"].as_str().map(str::to_owned))
        .expect("the message carries Approve with its judgment id")
}

/// Slack's block_actions payload for `user` clicking Approve on `message`
/// (reference/slack.md §2.2).
fn approve_click(slack: &FakeSlack, user: &str, message: &Message) -> Value {
    json!({
        "type": "block_actions",
        "user": {"id": user, "username": user.to_lowercase(), "name": user.to_lowercase(), "team_id": "T0FAKE"},
        "api_app_id": "A0APP",
        "token": "legacy",
        "container": {"type": "message", "message_ts": message.ts, "channel_id": message.channel, "is_ephemeral": false},
        "trigger_id": slack.trigger_id(),
        "team": {"id": "T0FAKE", "domain": "fake"},
        "channel": {"id": message.channel, "name": "approvals"},
        "message": {"type": "message", "ts": message.ts, "text": "Manual Judgment"},
        "state": {"values": {}},
        "response_url": slack.response_url_for_message(&message.channel, &message.ts),
        "actions": [{"action_id": APPROVE, "block_id": "approvals_decide", "type": "button",
                     "value": judgment_id_of(message), "action_ts": format!("{}.{:06}", chrono::Utc::now().timestamp(), rand::random::<u32>() % 1_000_000)}]
    })
}

/// Top-level messages (not thread replies) in the approvals channel.
fn judgment_messages(slack: &FakeSlack) -> Vec<Message> {
    slack
        .messages_in(CHANNEL)
        .into_iter()
        .filter(|m| m.thread_ts.is_none())
        .collect()
}

/// Whether the message was settled as approved (no buttons left, "Approved" shown).
fn settled_approved(slack: &FakeSlack, ts: &str) -> bool {
    slack.message(CHANNEL, ts).is_some_and(|m| {
        let blocks = m.blocks.to_string();
        !blocks.contains(APPROVE) && blocks.contains("*Approved*")
    })
}

/// Judgments announced by echo to `replica` and posted; returns (execution id, stage id, message).
async fn announce(
    cluster: &Cluster,
    replica: &Replica,
    count: usize,
) -> Vec<(String, String, Message)> {
    let mut stages = Vec::new();
    for n in 0..count {
        let (exec, stage_id) = add_judgment(&cluster.gate, n);
        assert_eq!(replica.echo(&starting_event(&exec, &stage_id)).await, 200);
        stages.push((exec["id"].as_str().expect("id").to_string(), stage_id));
    }
    let messages = cluster.slack.wait_for_messages(CHANNEL, count, WAIT).await;
    stages
        .into_iter()
        .map(|(exec_id, stage_id)| {
            let m = messages
                .iter()
                .find(|m| m.blocks.to_string().contains(&exec_id))
                .unwrap_or_else(|| panic!("a message for {exec_id}"))
                .clone();
            (exec_id, stage_id, m)
        })
        .collect()
}

/// Poll `f` until it returns `Some`, or panic after [`WAIT`].
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {WAIT:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ------------------------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn both_replicas_receiving_echo_events_post_one_message_per_manual_judgment() {
    let _serial = SERIAL.lock().await;
    let Some(db) =
        PgDb::create("both_replicas_receiving_echo_events_post_one_message_per_manual_judgment")
            .await
    else {
        return;
    };
    // Arrange
    let cluster = Cluster::new(db).await;
    let (a, b) = tokio::join!(cluster.start("replica-a"), cluster.start("replica-b"));
    const JUDGMENTS: usize = 5;
    let stages: Vec<(Value, String)> = (0..JUDGMENTS)
        .map(|n| add_judgment(&cluster.gate, n))
        .collect();

    // Act: every event reaches both replicas at the same moment, twice (echo's retries)
    for (exec, stage_id) in &stages {
        let event = starting_event(exec, stage_id);
        let (r1, r2, r3, r4) = tokio::join!(
            a.echo(&event),
            b.echo(&event),
            b.echo(&event),
            a.echo(&event)
        );
        assert_eq!(
            (r1, r2, r3, r4),
            (200, 200, 200, 200),
            "every delivery is accepted"
        );
    }

    // Assert
    let posted = cluster
        .slack
        .wait_for_messages(CHANNEL, JUDGMENTS, WAIT)
        .await;
    tokio::time::sleep(SETTLE).await;
    let messages = judgment_messages(&cluster.slack);
    assert_eq!(
        messages.len(),
        JUDGMENTS,
        "one message per Manual Judgment: {messages:#?}"
    );
    assert_eq!(posted.len(), JUDGMENTS);
    for (exec, _) in &stages {
        let id = exec["id"].as_str().expect("id");
        let n = messages
            .iter()
            .filter(|m| m.blocks.to_string().contains(id))
            .count();
        assert_eq!(n, 1, "exactly one message for {id}");
    }
    let mut ids: Vec<String> = messages.iter().map(judgment_id_of).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        JUDGMENTS,
        "each message carries its own judgment"
    );
    assert_eq!(
        a.judgments().await.len(),
        JUDGMENTS,
        "both replicas see the same judgments"
    );
    assert_eq!(b.judgments().await.len(), JUDGMENTS);

    a.stop().await;
    b.stop().await;
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clicks_split_across_two_replicas_send_one_gate_patch_per_stage() {
    let _serial = SERIAL.lock().await;
    let Some(db) =
        PgDb::create("clicks_split_across_two_replicas_send_one_gate_patch_per_stage").await
    else {
        return;
    };
    // Arrange
    let cluster = Cluster::new(db).await;
    let (a, b) = tokio::join!(cluster.start("replica-a"), cluster.start("replica-b"));
    const JUDGMENTS: usize = 4;
    let judgments = announce(&cluster, &a, JUDGMENTS).await;

    // Act: on every judgment, two approvers click at once, one on each replica (the sides
    // alternate so that either replica gets the first click)
    for (i, (_, _, message)) in judgments.iter().enumerate() {
        let (bob_on, carol_on) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let bob = approve_click(&cluster.slack, BOB, message);
        let carol = approve_click(&cluster.slack, CAROL, message);
        let (r1, r2) = tokio::join!(bob_on.interaction(&bob), carol_on.interaction(&carol));
        assert_eq!((r1, r2), (200, 200), "both clicks are acknowledged");
    }

    // Assert
    for (exec_id, _, message) in &judgments {
        eventually(
            &format!("{exec_id} to be approved and its message settled"),
            || async { settled_approved(&cluster.slack, &message.ts).then_some(()) },
        )
        .await;
    }
    tokio::time::sleep(SETTLE).await;
    let patches = cluster.gate.patches();
    for (exec_id, stage_id, _) in &judgments {
        let n = patches
            .iter()
            .filter(|p| &p.execution_id == exec_id && &p.stage_id == stage_id)
            .count();
        assert_eq!(n, 1, "one PATCH for stage {stage_id}: {patches:#?}");
        assert_eq!(cluster.gate.stage(exec_id, stage_id)["status"], "SUCCEEDED");
    }
    assert_eq!(patches.len(), JUDGMENTS, "one PATCH per stage, none else");
    let approved: Vec<Value> = b
        .judgments()
        .await
        .into_iter()
        .filter(|j| j["state"] == "approved")
        .collect();
    assert_eq!(
        approved.len(),
        JUDGMENTS,
        "every judgment approved, as both replicas see it"
    );
    for j in &approved {
        let judge = j["judge_user"].as_str().unwrap_or_default();
        assert!(
            judge == BOB || judge == CAROL,
            "judged by one of the two: {j:#}"
        );
    }
    assert_eq!(
        judgment_messages(&cluster.slack).len(),
        JUDGMENTS,
        "no extra message"
    );

    a.stop().await;
    b.stop().await;
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_of_a_replica_killed_mid_work_are_finished_by_the_other() {
    let _serial = SERIAL.lock().await;
    let Some(db) =
        PgDb::create("jobs_of_a_replica_killed_mid_work_are_finished_by_the_other").await
    else {
        return;
    };
    // Arrange: judgments posted, then Gate slow, so judging takes seconds
    let cluster = Cluster::new(db).await;
    let (a, b) = tokio::join!(cluster.start("replica-a"), cluster.start("replica-b"));
    const JUDGMENTS: usize = 3;
    let judgments = announce(&cluster, &a, JUDGMENTS).await;
    let pool = cluster.db.pool().await;
    cluster.gate.set_delay(Duration::from_secs(3));

    // Act: approve every judgment (clicks on both replicas); as soon as a replica is running a
    // judge job, SIGKILL that replica
    for (i, (_, _, message)) in judgments.iter().enumerate() {
        let on = if i % 2 == 0 { &a } else { &b };
        assert_eq!(
            on.interaction(&approve_click(&cluster.slack, BOB, message))
                .await,
            200
        );
    }
    let owner: String = eventually("a judge job to be running", || async {
        sqlx::query_scalar::<_, String>(
            "SELECT lease_owner FROM jobs WHERE kind = 'approvals.judge' AND state = 'running' AND lease_owner IS NOT NULL LIMIT 1",
        )
        .fetch_optional(&pool)
        .await
        .expect("read the job queue")
    })
    .await;
    let (victim, survivor) = if owner.starts_with("replica-a-") {
        (a, b)
    } else {
        assert!(owner.starts_with("replica-b-"), "lease owner {owner}");
        (b, a)
    };
    let victim_name = victim.name.clone();
    let killed_jobs: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM jobs WHERE kind = 'approvals.judge' AND state = 'running' AND lease_owner LIKE $1",
    )
    .bind(format!("{victim_name}-%"))
    .fetch_all(&pool)
    .await
    .expect("read the job queue");
    assert!(!killed_jobs.is_empty(), "the victim was running jobs");
    victim.kill().await;
    cluster.gate.set_delay(Duration::ZERO);

    // Assert: the survivor takes the jobs over once their leases expire and finishes them
    for (exec_id, _, message) in &judgments {
        eventually(
            &format!("{exec_id} to be approved and its message settled"),
            || async { settled_approved(&cluster.slack, &message.ts).then_some(()) },
        )
        .await;
    }
    // A job is completed only by the worker holding its lease (`… WHERE lease_owner = $me`), and
    // the victim is dead: `done` after a second attempt means the survivor took it over.
    for id in &killed_jobs {
        let attempts = eventually(
            &format!("job {id} of the killed {victim_name} to be done"),
            || async {
                let (state, attempts): (String, i64) =
                    sqlx::query_as("SELECT state, attempts FROM jobs WHERE id = $1")
                        .bind(id)
                        .fetch_one(&pool)
                        .await
                        .expect("the job is still recorded");
                (state == "done").then_some(attempts)
            },
        )
        .await;
        assert!(
            attempts >= 2,
            "job {id} was run again by {} after {victim_name} died (attempts: {attempts})",
            survivor.name
        );
    }
    tokio::time::sleep(SETTLE).await;
    let patches = cluster.gate.patches();
    for (exec_id, stage_id, _) in &judgments {
        let n = patches
            .iter()
            .filter(|p| &p.execution_id == exec_id && &p.stage_id == stage_id)
            .count();
        assert_eq!(
            n, 1,
            "one PATCH for stage {stage_id} despite the kill: {patches:#?}"
        );
    }
    let approved = survivor
        .judgments()
        .await
        .into_iter()
        .filter(|j| j["state"] == "approved")
        .count();
    assert_eq!(approved, JUDGMENTS, "every judgment approved");
    assert_eq!(
        judgment_messages(&cluster.slack).len(),
        JUDGMENTS,
        "no extra message"
    );

    survivor.stop().await;
    cluster.finish().await;
}

// ------------------------------------------------------------------ on-call sync

const ONCALL_GROUPS: [&str; 3] = ["platform-oncall", "db-oncall", "web-oncall"];
const NOTICES: &str = "C0NOTICES";

/// PagerDuty says `people[i]` is on call on schedule `PSCHED<i>` for the next hour.
fn pd_on_call(pd: &support::fake_oncall::FakeOncall, people: &[(&str, &str)]) {
    let now = chrono::Utc::now().timestamp_millis();
    pd.pd_clear();
    for (i, (user, email)) in people.iter().enumerate() {
        pd.pd_add(support::fake_oncall::PdOncall::scheduled(
            user,
            email,
            &format!("PSCHED{i}"),
            now - 3_600_000,
            now + 3_600_000,
        ));
    }
}

/// `slackops oncall sync` run by hand against the cluster's configuration: its exit code.
async fn cli_sync(cluster: &Cluster) -> i32 {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slackops"));
    cmd.args(["oncall", "sync"])
        .env("SLACKOPS_CONFIG", cluster.dir.path().join("slackops.yaml"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    for (k, _) in std::env::vars() {
        if k.starts_with("SLACKOPS_") && k != "SLACKOPS_CONFIG" {
            cmd.env_remove(k);
        }
    }
    let status = tokio::time::timeout(WAIT, cmd.status())
        .await
        .expect("oncall sync finishes")
        .expect("run oncall sync");
    status.code().unwrap_or(-1)
}

fn shift_notices(slack: &FakeSlack) -> Vec<String> {
    slack
        .messages_in(NOTICES)
        .into_iter()
        .map(|m| m.text)
        .filter(|t| t.contains("is now on call"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_oncall_sync_at_a_time_across_replicas_and_the_cli() {
    let Some(db) = PgDb::create("one_oncall_sync_at_a_time").await else {
        return;
    };
    let pd = support::fake_oncall::FakeOncall::start().await;
    // Slow provider answers stretch every run, so the replicas' periodic syncs and the CLI runs
    // overlap in time.
    pd.set_latency(Duration::from_millis(150));
    let mut oncall = format!(
        "oncall:\n  interval_secs: 1\n  request_timeout_ms: 5000\n  pagerduty:\n    base_url: {}\n    token: pd-token-0123456789\n  groups:\n",
        pd.pagerduty_url()
    );
    for (i, handle) in ONCALL_GROUPS.iter().enumerate() {
        oncall.push_str(&format!(
            "    - handle: {handle}\n      channel: {NOTICES}\n      sources:\n        - provider: pagerduty\n          schedules: [PSCHED{i}]\n"
        ));
    }
    let cluster = Cluster::with_config(db, &oncall).await;
    // Slow Slack answers widen the window between reading a group and writing it, where two
    // syncs not serialized by the lease would both decide to write.
    cluster.slack.set_latency(Duration::from_millis(250));
    cluster.slack.add_channel(NOTICES, "oncall-notices");
    for (i, handle) in ONCALL_GROUPS.iter().enumerate() {
        cluster
            .slack
            .add_usergroup(&format!("S0GROUP{i}"), handle, &[ALICE]);
    }
    let first = [
        ("PBOB", "bob@example.com"),
        ("PCAROL", "carol@example.com"),
        ("PBOB", "bob@example.com"),
    ];
    pd_on_call(&pd, &first);

    let a = cluster.start("replica-a").await;
    let b = cluster.start("replica-b").await;
    // Five syncs by hand at the same time as the replicas' own.
    let codes = futures::future::join_all((0..5).map(|_| cli_sync(&cluster))).await;
    let want = [BOB, CAROL, BOB];
    eventually("every group to follow the schedule", || async {
        (0..ONCALL_GROUPS.len())
            .all(|i| {
                cluster.slack.usergroup_members(&format!("S0GROUP{i}")) == vec![want[i].to_string()]
            })
            .then_some(())
    })
    .await;
    eventually("a shift notice per group", || async {
        (shift_notices(&cluster.slack).len() >= ONCALL_GROUPS.len()).then_some(())
    })
    .await;

    // A handover in one group, while everything keeps running.
    let second = [
        ("PCAROL", "carol@example.com"),
        ("PCAROL", "carol@example.com"),
        ("PBOB", "bob@example.com"),
    ];
    pd_on_call(&pd, &second);
    let more = futures::future::join_all((0..5).map(|_| cli_sync(&cluster))).await;
    eventually("the handover to reach Slack", || async {
        (cluster.slack.usergroup_members("S0GROUP0") == vec![CAROL.to_string()]).then_some(())
    })
    .await;
    eventually("the handover's notice", || async {
        (shift_notices(&cluster.slack).len() > ONCALL_GROUPS.len()).then_some(())
    })
    .await;
    // Let a few more periodic runs pass on both replicas: nothing has changed, nothing is written.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let writes = cluster.slack.calls("usergroups.users.update");
    assert_eq!(
        writes.len(),
        ONCALL_GROUPS.len() + 1,
        "one write per group, one more for the handover, however many syncs ran: {writes:#?}"
    );
    let notices = shift_notices(&cluster.slack);
    assert_eq!(
        notices.len(),
        ONCALL_GROUPS.len() + 1,
        "one notice per change: {notices:#?}"
    );
    // A CLI run either synced (0) or found another sync holding the lease (1); never anything else.
    for code in codes.iter().chain(&more) {
        assert!(
            *code == 0 || *code == 1,
            "oncall sync exit codes: {codes:?} {more:?}"
        );
    }

    a.stop().await;
    b.stop().await;
    cluster.finish().await;
}

// ------------------------------------------------------------------------------- periodic leases

/// One on-call group synced every `interval_secs` from the fake PagerDuty: each periodic run
/// shows up as a call to `/oncalls`.
async fn periodic_cluster(
    db: PgDb,
    interval_secs: u64,
) -> (Cluster, support::fake_oncall::FakeOncall) {
    let pd = support::fake_oncall::FakeOncall::start().await;
    let oncall = format!(
        "oncall:\n  interval_secs: {interval_secs}\n  request_timeout_ms: 5000\n  pagerduty:\n    base_url: {}\n    token: pd-token-0123456789\n  groups:\n    - handle: {}\n      channel: {NOTICES}\n      sources:\n        - provider: pagerduty\n          schedules: [PSCHED0]\n",
        pd.pagerduty_url(),
        ONCALL_GROUPS[0]
    );
    let cluster = Cluster::with_config(db, &oncall).await;
    cluster.slack.add_channel(NOTICES, "oncall-notices");
    cluster
        .slack
        .add_usergroup("S0GROUP0", ONCALL_GROUPS[0], &[ALICE]);
    pd_on_call(&pd, &[("PBOB", "bob@example.com")]);
    (cluster, pd)
}

/// When the periodic sync first asked PagerDuty after `since`, waiting at most `within`.
async fn first_run_after(
    pd: &support::fake_oncall::FakeOncall,
    since: std::time::Instant,
    within: Duration,
) -> Option<std::time::Instant> {
    let deadline = since + within;
    loop {
        let first = pd
            .calls("pagerduty")
            .into_iter()
            .map(|c| c.at)
            .filter(|at| *at > since)
            .min();
        if first.is_some() || std::time::Instant::now() > deadline {
            return first;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The process id in the owner of the periodic on-call sync lease (owners are `<pid>-<uuid>`).
async fn sync_lease_holder(db: &PgDb) -> Option<u32> {
    let pool = db.pool().await;
    let owner: Option<(String, i64)> =
        sqlx::query_as("SELECT owner, until FROM leases WHERE name = 'oncall.sync'")
            .fetch_optional(&pool)
            .await
            .expect("read the lease");
    pool.close().await;
    let (owner, until) = owner?;
    (until > chrono::Utc::now().timestamp_millis())
        .then(|| owner.split('-').next()?.parse().ok())
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_graceful_restart_mid_interval_does_not_delay_the_next_periodic_run() {
    let Some(db) = PgDb::create("graceful_restart_periodic").await else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let interval = Duration::from_secs(6);
    let (cluster, pd) = periodic_cluster(db, interval.as_secs()).await;
    let a = cluster.start("replica-a").await;
    let started = std::time::Instant::now();
    let first = first_run_after(&pd, started - Duration::from_secs(5), WAIT)
        .await
        .expect("the periodic sync runs");
    // Mid-interval: a deploy stops the replica (SIGTERM) and starts its successor.
    let mid = first + interval / 2;
    tokio::time::sleep(mid.saturating_duration_since(std::time::Instant::now())).await;
    let (code, log) = a.terminate().await;
    assert_eq!(code, Some(0), "a graceful stop exits 0:\n{log}");
    let restarted = std::time::Instant::now();
    let a2 = cluster.start("replica-a2").await;
    // The next run is due one interval after the first; the lease the old process held must not
    // push it back (it used to be held for a minute after the process was gone).
    let due = first + interval;
    let next = first_run_after(&pd, restarted, WAIT).await;
    let late_by = next.map(|n| n.saturating_duration_since(due));
    assert!(
        late_by.is_some_and(|l| l < Duration::from_millis(1500)),
        "the run after a graceful restart came {:?} after it was due (None: not within {WAIT:?})",
        late_by
    );
    a2.stop().await;
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_the_periodic_lease_holder_dies_the_other_replica_takes_over_within_the_documented_bound()
 {
    let Some(db) = PgDb::create("periodic_takeover").await else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let interval = Duration::from_secs(3);
    // The documented bound (docs/architecture.md): a lease lives one interval and is renewed and
    // polled every third of it, so a dead holder is replaced within 4/3 of the interval.
    let bound = slackops::store::leases::LeaseTiming::for_interval(interval).takeover_bound();
    assert_eq!(bound, Duration::from_secs(4));
    let (cluster, pd) = periodic_cluster(db, interval.as_secs()).await;
    let a = cluster.start("replica-a").await;
    let b = cluster.start("replica-b").await;
    let holder = eventually("a replica to hold the sync lease", || async {
        sync_lease_holder(&cluster.db).await
    })
    .await;
    first_run_after(
        &pd,
        std::time::Instant::now() - Duration::from_secs(30),
        WAIT,
    )
    .await
    .expect("the periodic sync runs");
    let (dead, survivor) = if a.child.id() == Some(holder) {
        (a, b)
    } else {
        assert_eq!(
            b.child.id(),
            Some(holder),
            "the holder is one of the replicas"
        );
        (b, a)
    };
    // SIGKILL: no shutdown, the lease is not given back.
    dead.kill().await;
    let killed = std::time::Instant::now();
    let next = first_run_after(&pd, killed, WAIT).await;
    let after = next.map(|n| n.duration_since(killed));
    // A little slack for the database round trips and the run's first request.
    assert!(
        after.is_some_and(|t| t <= bound + Duration::from_millis(1000)),
        "the surviving replica ran the sync {after:?} after the holder died; the bound is {bound:?}"
    );
    // The run above may have come from the handoff task (its own lease); the interval task's
    // lease passes to the survivor within the same bound.
    let survivor_id = survivor.child.id();
    eventually("the survivor to hold the sync lease", || async {
        (sync_lease_holder(&cluster.db).await == survivor_id).then_some(())
    })
    .await;
    let taken = killed.elapsed();
    assert!(
        taken <= bound + Duration::from_millis(1500),
        "the survivor took the lease {taken:?} after the holder died; the bound is {bound:?}"
    );
    survivor.stop().await;
    cluster.finish().await;
}

/// Interactive and slash-command envelopes a replica received.
async fn envelopes(r: &Replica) -> f64 {
    r.metric("slackops_socket_envelopes_total{type=\"interactive\"}")
        .await
        + r.metric("slackops_socket_envelopes_total{type=\"slash_commands\"}")
            .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn socket_mode_replicas_share_the_envelopes_send_one_patch_and_log_no_secret() {
    let _serial = SERIAL.lock().await;
    let Some(db) =
        PgDb::create("socket_mode_replicas_share_the_envelopes_send_one_patch_and_log_no_secret")
            .await
    else {
        return;
    };
    let cluster = Cluster::socket_mode(db).await;
    let socket = cluster.socket.as_ref().expect("socket fake");
    let a = cluster.start("replica-a").await;
    let b = cluster.start("replica-b").await;
    socket.wait_for_routable(4, WAIT).await;

    // One judgment, announced by echo to one replica.
    let judged = announce(&cluster, &a, 1).await;
    let (_, stage_id, message) = &judged[0];

    // Clicks from two approvers, twice each, and 20 slash commands: Slack picks a connection
    // for each envelope, so both replicas get some.
    let mut ids = Vec::new();
    for user in [BOB, CAROL, BOB, CAROL] {
        ids.push(
            socket
                .send_interactive(approve_click(&cluster.slack, user, message))
                .expect("connected"),
        );
    }
    for i in 0..20 {
        let fields = json!({"command": "/nosuch", "text": format!("{i}"), "user_id": BOB,
            "team_id": "T0FAKE", "channel_id": CHANNEL,
            "response_url": cluster.slack.response_url_for_channel(CHANNEL)});
        ids.push(socket.send_slash_command(fields).expect("connected"));
    }
    for id in &ids {
        let ack = socket.wait_for_ack(id, WAIT).await;
        assert!(!ack.late, "acked in time: {ack:?}");
        assert_eq!(socket.acks_of(id).len(), 1, "acked once");
    }
    eventually("the judgment message to settle as approved", || async {
        settled_approved(&cluster.slack, &message.ts).then_some(())
    })
    .await;
    tokio::time::sleep(SETTLE).await;
    let patches = cluster.gate.patches();
    assert_eq!(patches.len(), 1, "one PATCH for the stage: {patches:#?}");
    assert_eq!(&patches[0].stage_id, stage_id);
    assert_eq!(judgment_messages(&cluster.slack).len(), 1, "one message");

    let (on_a, on_b) = (envelopes(&a).await, envelopes(&b).await);
    assert_eq!(
        on_a + on_b,
        24.0,
        "each envelope went to one replica ({on_a} + {on_b})"
    );
    assert!(
        on_a > 0.0 && on_b > 0.0,
        "both replicas served ({on_a} + {on_b})"
    );
    assert_eq!(a.metric("slackops_socket_connections").await, 2.0);

    // SIGTERM: both stop gracefully and close their sockets; nothing secret was ever logged.
    let (code_a, log_a) = a.terminate().await;
    let (code_b, log_b) = b.terminate().await;
    assert_eq!((code_a, code_b), (Some(0), Some(0)), "graceful exits");
    socket.wait_for_open_at_most(0, WAIT).await;
    assert!(
        socket
            .connections()
            .iter()
            .filter(|c| c.got_hello)
            .all(|c| c.closed_by_client),
        "every connection closed by slackops with a close frame: {:#?}",
        socket.connections()
    );
    for log in [&log_a, &log_b] {
        assert!(
            log.contains("Socket Mode connection up"),
            "debug logs were captured"
        );
        for secret in [
            fake_socket_mode::APP_TOKEN,
            "xapp-1-",
            "ticket=",
            SIGNING_SECRET,
            cluster.slack.token().as_str(),
        ] {
            assert!(
                !log.contains(secret),
                "the logs must not contain {secret:?}"
            );
        }
        for handshake in socket.handshakes() {
            assert!(!log.contains(&handshake.ticket), "a ticket was logged");
        }
    }
    cluster.finish().await;
}

// ------------------------------------------------------------------------------- pager

/// A PagerDuty incident delivered to both replicas at once, with PagerDuty's retries of one
/// delivery and a second delivery of the same event, plus a later event of the incident: one
/// Slack message, updated in place (reference pager-incidents.md §A1 "At-least-once delivery").
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn both_replicas_receiving_pager_webhooks_post_one_message_per_incident() {
    use support::fake_pager::{FakePager, PD_SECRET, PD_TOKEN, PdIncident, now_ms};
    let _serial = SERIAL.lock().await;
    let Some(db) =
        PgDb::create("both_replicas_receiving_pager_webhooks_post_one_message_per_incident").await
    else {
        return;
    };
    // Arrange: the pager section as an operator writes it, the secrets in files
    let fake = FakePager::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let secrets = dir.path().join("pagerduty-webhook-secrets");
    std::fs::write(&secrets, format!("an-older-secret\n{PD_SECRET}\n")).expect("write");
    let extra = format!(
        r#"oncall:
  pagerduty:
    base_url: {pd}
    token: {PD_TOKEN}
pager:
  pagerduty:
    webhook_secrets_file: {secrets}
  routes:
    - {{provider: pagerduty, service: "*", channel: {CHANNEL}}}
"#,
        pd = fake.pagerduty_url(),
        secrets = secrets.display(),
    );
    let cluster = Cluster::with_config(db, &extra).await;
    let (a, b) = tokio::join!(cluster.start("replica-a"), cluster.start("replica-b"));
    const INCIDENTS: usize = 4;
    let incidents: Vec<PdIncident> = (0..INCIDENTS)
        .map(|n| PdIncident {
            id: format!("PREP{n}"),
            title: format!("Incident {n}"),
            service_id: "PSVC1".into(),
            service_name: "Checkout API".into(),
            status: "triggered".into(),
            assignees: vec![],
            last_change_ms: now_ms() - 60_000,
        })
        .collect();

    // Act: each event reaches both replicas at once, twice
    for inc in &incidents {
        let event = FakePager::pd_event(inc, "incident.triggered", inc.last_change_ms, None);
        let (r1, r2, r3, r4) = tokio::join!(
            fake.pd_deliver(&a.address, &event, &[PD_SECRET]),
            fake.pd_deliver(&b.address, &event, &[PD_SECRET]),
            fake.pd_deliver(&b.address, &event, &[PD_SECRET]),
            fake.pd_deliver(&a.address, &event, &[PD_SECRET])
        );
        assert_eq!(
            (r1, r2, r3, r4),
            (202, 202, 202, 202),
            "every delivery is accepted"
        );
    }
    let mut acked = incidents[0].clone();
    acked.status = "acknowledged".into();
    let later = FakePager::pd_event(
        &acked,
        "incident.acknowledged",
        acked.last_change_ms + 1000,
        None,
    );
    let (r1, r2) = tokio::join!(
        fake.pd_deliver(&a.address, &later, &[PD_SECRET]),
        fake.pd_deliver(&b.address, &later, &[PD_SECRET])
    );
    assert_eq!((r1, r2), (202, 202));

    // Assert
    cluster
        .slack
        .wait_for_messages(CHANNEL, INCIDENTS, WAIT)
        .await;
    eventually("the acknowledgement shown", || async {
        cluster.slack.messages_in(CHANNEL).into_iter().find(|m| {
            m.blocks.to_string().contains("PREP0") && m.blocks.to_string().contains("Acknowledged")
        })
    })
    .await;
    tokio::time::sleep(SETTLE).await;
    let messages = cluster.slack.messages_in(CHANNEL);
    assert_eq!(
        messages.len(),
        INCIDENTS,
        "one message per incident: {messages:#?}"
    );
    for inc in &incidents {
        let n = messages
            .iter()
            .filter(|m| m.blocks.to_string().contains(&format!("`{}`", inc.id)))
            .count();
        assert_eq!(n, 1, "exactly one message for {}", inc.id);
    }
    let duplicates = a
        .metric(r#"slackops_pager_webhook_events_total{provider="pagerduty",reason="duplicate"}"#)
        .await
        + b.metric(
            r#"slackops_pager_webhook_events_total{provider="pagerduty",reason="duplicate"}"#,
        )
        .await;
    assert_eq!(
        duplicates,
        (3 * INCIDENTS + 1) as f64,
        "every other delivery was a duplicate"
    );

    a.stop().await;
    b.stop().await;
    cluster.finish().await;
}

// ------------------------------------------------------------------------------- alert groups

const OUTAGES: &str = "C0OUTAGES";

/// The announcements section with one `announce` rule (team=payments) and one `suggest` rule.
fn alert_config() -> String {
    format!(
        r#"announcements:
  channel: {OUTAGES}
  systems:
    - {{id: payments, name: Payments}}
    - {{id: search, name: Search}}
  alert_rules:
    - match: {{team: payments}}
      mode: announce
      assignee: {ALICE}
    - match: {{team: search}}
"#
    )
}

impl Replica {
    /// Alertmanager's POST of one notification.
    async fn alertmanager(&self, body: &Value) -> u16 {
        self.client
            .post(self.url("/api/v1/alerts/alertmanager"))
            .bearer_auth(API_TOKEN)
            .json(body)
            .send()
            .await
            .expect("Alertmanager reaches the replica")
            .status()
            .as_u16()
    }

    /// `GET /api/v1/announcements`.
    async fn announcements(&self) -> Vec<Value> {
        let resp = self
            .client
            .get(self.url("/api/v1/announcements"))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .expect("the API answers");
        let body: Value = resp.json().await.expect("announcements JSON");
        body["announcements"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alert_groups_delivered_to_both_replicas_are_announced_and_suggested_once() {
    use support::fake_alertmanager::FakeAlertGroup;
    let _serial = SERIAL.lock().await;
    let Some(db) =
        PgDb::create("alert_groups_delivered_to_both_replicas_are_announced_and_suggested_once")
            .await
    else {
        return;
    };
    let cluster = Cluster::with_config(db, &alert_config()).await;
    cluster.slack.add_channel(OUTAGES, "outages");
    let (a, b) = tokio::join!(cluster.start("replica-a"), cluster.start("replica-b"));
    const GROUPS: usize = 4;
    let now = chrono::Utc::now();
    let mut bodies = Vec::new();
    for n in 0..GROUPS {
        let team = if n % 2 == 0 { "payments" } else { "search" };
        let node = format!("node-{n}");
        let mut g = FakeAlertGroup::new(&[("alertname", "Down"), ("team", team), ("node", &node)]);
        g.fire(
            &[("system", team), ("severity", "critical")],
            &[("summary", &format!("{team} down on {node}"))],
            now,
        );
        bodies.push(g.notify());
    }

    // Act: HA Alertmanagers (or a retry) deliver every group to both replicas at once, twice.
    for body in &bodies {
        let (r1, r2, r3, r4) = tokio::join!(
            a.alertmanager(body),
            b.alertmanager(body),
            b.alertmanager(body),
            a.alertmanager(body)
        );
        assert_eq!((r1, r2, r3, r4), (200, 200, 200, 200));
    }

    // Assert: one outage per announce group, one message per group (announcement or suggestion).
    cluster.slack.wait_for_messages(OUTAGES, GROUPS, WAIT).await;
    tokio::time::sleep(SETTLE).await;
    let outages = a.announcements().await;
    assert_eq!(
        outages.len(),
        GROUPS / 2,
        "one outage per announce group: {outages:#?}"
    );
    assert_eq!(b.announcements().await.len(), GROUPS / 2);
    let top: Vec<Message> = cluster
        .slack
        .messages_in(OUTAGES)
        .into_iter()
        .filter(|m| m.thread_ts.is_none())
        .collect();
    assert_eq!(top.len(), GROUPS, "one message per group: {top:#?}");
    for n in 0..GROUPS {
        let node = format!("node-{n}");
        let shown = top
            .iter()
            .filter(|m| m.blocks.to_string().contains(&node))
            .count();
        assert_eq!(shown, 1, "{node}");
    }

    a.stop().await;
    b.stop().await;
    cluster.finish().await;
}

/// The handoff reaches Slack within seconds on two replicas with the default 5-minute interval,
/// written and announced once: each replica reads the group at start, records the handoff, and
/// one of them (the run lease) syncs the group when it comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scheduled_handoff_is_synced_once_across_replicas_within_seconds() {
    let Some(db) = PgDb::create("a_scheduled_handoff_is_synced_once").await else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let pd = support::fake_oncall::FakeOncall::start().await;
    let oncall = format!(
        "oncall:\n  interval_secs: 300\n  request_timeout_ms: 5000\n  pagerduty:\n    base_url: {}\n    token: pd-token-0123456789\n  groups:\n    - handle: platform-oncall\n      channel: {NOTICES}\n      sources:\n        - provider: pagerduty\n          schedules: [PSCHED0]\n",
        pd.pagerduty_url()
    );
    let cluster = Cluster::with_config(db, &oncall).await;
    cluster.slack.add_channel(NOTICES, "oncall-notices");
    cluster
        .slack
        .add_usergroup("S0GROUP0", "platform-oncall", &[ALICE]);
    // PagerDuty times are whole seconds: bob hands over to carol 15 s from now.
    let handoff = (chrono::Utc::now().timestamp() + 15) * 1000;
    for (user, email, start, end) in [
        ("PBOB", "bob@example.com", handoff - 3_600_000, handoff),
        ("PCAROL", "carol@example.com", handoff, handoff + 3_600_000),
    ] {
        pd.pd_add(support::fake_oncall::PdOncall::scheduled(
            user, email, "PSCHED0", start, end,
        ));
    }
    let a = cluster.start("replica-a").await;
    let b = cluster.start("replica-b").await;
    eventually("the start-up read", || async {
        (cluster.slack.usergroup_members("S0GROUP0") == vec![BOB.to_string()]).then_some(())
    })
    .await;
    eventually("the handoff", || async {
        (cluster.slack.usergroup_members("S0GROUP0") == vec![CAROL.to_string()]).then_some(())
    })
    .await;
    let late = chrono::Utc::now().timestamp_millis() - handoff;
    assert!(
        (0..10_000).contains(&late),
        "seen {late} ms after the handoff (target: within 10 s, interval 300 s)"
    );
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        cluster.slack.calls("usergroups.users.update").len(),
        2,
        "the start-up write and the handoff's, once each"
    );
    let notices = shift_notices(&cluster.slack);
    assert_eq!(notices.len(), 2, "one notice per change: {notices:#?}");
    a.stop().await;
    b.stop().await;
    cluster.finish().await;
}
