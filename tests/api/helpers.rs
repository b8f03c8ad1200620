#![allow(dead_code)] // Shared by every test module; not each uses every helper.

//! The black-box harness: the real service on port 0, pointed at local fake Slack and Gate servers
//! and a fresh database (a temporary SQLite file, or a new PostgreSQL database when
//! `SLACKOPS_TEST_POSTGRES_URL` is set). Requests to the Slack endpoints are signed the way Slack
//! signs them.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use serde_json::Value;
use slackops::clock::SharedClock;
use slackops::config::{Secret, Settings};
use slackops::registry::Registry;
use slackops::startup::Application;
use slackops::state::AppState;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::fake_gate::FakeGate;
use crate::support::fake_slack::FakeSlack;
use crate::support::fake_socket_mode::{self, FakeSocketMode};

pub const SIGNING_SECRET: &str = "test-signing-secret-0123456789";
pub const ECHO_TOKEN: &str = "echo-token-0123456789abcdef";
pub const API_TOKEN: &str = "api-token-0123456789abcdef";
pub const POSTGRES_ENV: &str = "SLACKOPS_TEST_POSTGRES_URL";

static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var("TEST_LOG").is_ok() {
        slackops::telemetry::init(&slackops::config::LogSettings {
            level: "debug,sqlx=warn,hyper=info".into(),
            ..Default::default()
        });
    } else {
        // Keep the service's warnings and errors (JSON lines, with their spans' fields) so tests
        // can check what an operator would read.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn,sqlx=error"))
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(|| LogWriter)
            .try_init();
    }
    slackops::telemetry::install_crypto_provider();
});

/// The warnings and errors every service of this test binary logged (see `TRACING`).
static LOGS: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Warning and error lines logged so far that contain `needle` (e.g. an execution id), as JSON.
/// `None` when `TEST_LOG` is set (the logs go to the terminal instead, and cannot be checked).
pub fn logged(needle: &str) -> Option<Vec<Value>> {
    if std::env::var("TEST_LOG").is_ok() {
        eprintln!("TEST_LOG is set: log lines are printed, not captured; skipping log checks");
        return None;
    }
    let logs = LOGS.lock().unwrap_or_else(|e| e.into_inner());
    Some(
        String::from_utf8_lossy(&logs)
            .lines()
            .filter(|l| l.contains(needle))
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect(),
    )
}

/// Which database engine a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A fresh, empty database for one test.
pub struct TestDb {
    pub url: String,
    pub engine: Engine,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("slackops.db").display());
        TestDb {
            url,
            engine: Engine::Sqlite,
            _dir: Some(dir),
        }
    }

    /// A new PostgreSQL database, or `None` (with a printed notice) when PostgreSQL is not configured.
    pub async fn postgres(test: &str) -> Option<TestDb> {
        let Ok(admin) = std::env::var(POSTGRES_ENV) else {
            eprintln!(
                "SKIPPED on PostgreSQL: {test} (set {POSTGRES_ENV}, e.g. postgres://postgres@127.0.0.1:5432/test; .ci/run does)"
            );
            return None;
        };
        use sqlx::Connection;
        let name = format!("slackops_t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| {
                panic!("{POSTGRES_ENV} is set but PostgreSQL does not answer: {e}")
            });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let mut url = url::Url::parse(&admin).expect("postgres url");
        url.set_path(&format!("/{name}"));
        Some(TestDb {
            url: url.to_string(),
            engine: Engine::Postgres,
            _dir: None,
        })
    }

    /// Every engine available here: SQLite always, PostgreSQL when configured.
    pub async fn all(test: &str) -> Vec<TestDb> {
        let mut v = vec![TestDb::sqlite()];
        if let Some(pg) = TestDb::postgres(test).await {
            v.push(pg);
        }
        v
    }
}

/// Settings for a test service against the given fakes and database.
pub fn test_settings(slack: &FakeSlack, gate: &FakeGate, db: &TestDb) -> Settings {
    let mut s = Settings::default();
    s.server.listen = "127.0.0.1:0".parse().expect("addr");
    s.server.shutdown_timeout_secs = 5;
    s.database.url = Secret::new(db.url.clone());
    s.database.max_connections = 8;
    s.slack.signing_secret = Secret::new(SIGNING_SECRET);
    s.slack.bot_token = Secret::new(slack.token());
    s.slack.api_url = slack.api_url().parse().expect("slack url");
    s.slack.request_timeout_ms = 2000;
    // Keep retries quick in tests; the client's backoff starts at 200 ms.
    s.slack.max_retries = 3;
    s.spinnaker.gate_url = gate.url().parse().expect("gate url");
    s.spinnaker.deck_url = "https://deck.example.com".parse().expect("deck url");
    s.spinnaker.echo_token = Secret::new(ECHO_TOKEN);
    s.spinnaker.request_timeout_ms = 2000;
    s.jobs.poll_interval_ms = 50;
    s.jobs.backoff_base_ms = 50;
    s.jobs.backoff_max_ms = 500;
    s.jobs.lease_secs = 5;
    s.api.tokens = vec![Secret::new(API_TOKEN)];
    s
}

type Hook = Box<dyn FnOnce(&mut Registry) + Send>;

/// Build a test service step by step.
pub struct TestAppBuilder {
    pub slack: FakeSlack,
    pub gate: FakeGate,
    /// The fake Socket Mode edge, when the service runs in Socket Mode.
    pub socket: Option<FakeSocketMode>,
    pub db: TestDb,
    pub settings: Settings,
    clock: Option<SharedClock>,
    hooks: Vec<Hook>,
    worker: bool,
    periodic: bool,
}

impl TestAppBuilder {
    pub async fn new(db: TestDb) -> Self {
        LazyLock::force(&TRACING);
        let slack = FakeSlack::start().await;
        let gate = FakeGate::start().await;
        let settings = test_settings(&slack, &gate, &db);
        Self {
            slack,
            gate,
            socket: None,
            db,
            settings,
            clock: None,
            hooks: Vec::new(),
            worker: true,
            periodic: false,
        }
    }
    pub fn settings(mut self, f: impl FnOnce(&mut Settings)) -> Self {
        f(&mut self.settings);
        self
    }
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }
    /// Run in Socket Mode against a fake Socket Mode edge (`app.socket`), with quick pings.
    pub async fn socket_mode(mut self) -> Self {
        let socket = FakeSocketMode::start().await;
        self.slack
            .enable_socket_mode(fake_socket_mode::APP_TOKEN, socket.minter());
        self.settings.slack.mode = slackops::config::SlackMode::Socket;
        self.settings.slack.app_token = Secret::new(fake_socket_mode::APP_TOKEN);
        self.settings.slack.signing_secret = Secret::default();
        self.settings.slack.socket_ping_interval_ms = 500;
        self.socket = Some(socket);
        self
    }
    pub fn register(mut self, f: impl FnOnce(&mut Registry) + Send + 'static) -> Self {
        self.hooks.push(Box::new(f));
        self
    }
    pub fn without_worker(mut self) -> Self {
        self.worker = false;
        self
    }
    pub fn with_periodic(mut self) -> Self {
        self.periodic = true;
        self
    }

    pub async fn spawn(self) -> TestApp {
        let mut b = Application::builder(self.settings.clone());
        if let Some(c) = self.clock {
            b = b.clock(c);
        }
        for h in self.hooks {
            b = b.register(h);
        }
        if !self.worker {
            b = b.without_worker();
        }
        if !self.periodic {
            b = b.without_periodic();
        }
        let app = b.build().await.expect("service builds");
        let port = app.port();
        let state = app.state().clone();
        let stop = CancellationToken::new();
        let handle = tokio::spawn(app.run_until(stop.clone()));
        TestApp {
            address: format!("http://127.0.0.1:{port}"),
            port,
            state,
            slack: self.slack,
            gate: self.gate,
            socket: self.socket,
            db: self.db,
            settings: self.settings,
            client: reqwest::Client::new(),
            stop,
            handle: Some(handle),
        }
    }
}

/// A running service and its fakes.
pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub state: AppState,
    pub slack: FakeSlack,
    pub gate: FakeGate,
    /// The fake Socket Mode edge (Socket Mode tests only).
    pub socket: Option<FakeSocketMode>,
    /// Keeps the test database (and a SQLite file's temp dir) alive as long as the app.
    #[allow(dead_code)]
    pub db: TestDb,
    pub settings: Settings,
    pub client: reqwest::Client,
    stop: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

/// The service on SQLite with default settings.
pub async fn spawn_app() -> TestApp {
    TestAppBuilder::new(TestDb::sqlite()).await.spawn().await
}

/// A fresh `action_ts`, as Slack stamps each click: two clicks never share one (a redelivery of
/// the same click does).
pub fn action_ts() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}.{:06}", now_secs(), n % 1_000_000)
}

pub fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Slack's signature for a body at a timestamp.
    pub fn sign(&self, ts: i64, body: &[u8]) -> String {
        slackops::slack::verify::sign(SIGNING_SECRET, ts, body)
    }

    /// POST a body signed now.
    pub async fn post_signed(
        &self,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> reqwest::Response {
        self.post_signed_at(path, content_type, body, now_secs())
            .await
    }

    pub async fn post_signed_at(
        &self,
        path: &str,
        content_type: &str,
        body: &[u8],
        ts: i64,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("content-type", content_type)
            .header("x-slack-request-timestamp", ts.to_string())
            .header("x-slack-signature", self.sign(ts, body))
            .body(body.to_vec())
            .send()
            .await
            .expect("request reaches the service")
    }

    /// A signed slash command from `user`.
    pub async fn command(&self, command: &str, text: &str, user: &str) -> reqwest::Response {
        let body = self.command_body(command, text, user);
        self.post_signed(
            "/slack/commands",
            "application/x-www-form-urlencoded",
            body.as_bytes(),
        )
        .await
    }

    pub fn command_body(&self, command: &str, text: &str, user: &str) -> String {
        let response_url = self.slack.response_url_for_channel("C0OPS");
        let trigger_id = self.slack.trigger_id();
        serde_urlencoded::to_string([
            ("token", "legacy-verification-token"),
            ("team_id", "T0TEAM"),
            ("team_domain", "example"),
            ("channel_id", "C0OPS"),
            ("channel_name", "ops"),
            ("user_id", user),
            ("user_name", user),
            ("command", command),
            ("text", text),
            ("api_app_id", "A0APP"),
            ("response_url", response_url.as_str()),
            ("trigger_id", trigger_id.as_str()),
        ])
        .expect("form")
    }

    /// A signed interactivity payload.
    pub async fn interaction(&self, payload: &Value) -> reqwest::Response {
        let body = serde_urlencoded::to_string([("payload", payload.to_string())]).expect("form");
        self.post_signed(
            "/slack/interactions",
            "application/x-www-form-urlencoded",
            body.as_bytes(),
        )
        .await
    }

    /// A signed Events API delivery, optionally marked as Slack's retry number `retry`.
    pub async fn event(&self, body: &Value, retry: Option<u32>) -> reqwest::Response {
        let bytes = body.to_string().into_bytes();
        let ts = now_secs();
        let mut req = self
            .client
            .post(self.url("/slack/events"))
            .header("content-type", "application/json")
            .header("x-slack-request-timestamp", ts.to_string())
            .header("x-slack-signature", self.sign(ts, &bytes))
            .body(bytes);
        if let Some(n) = retry {
            req = req
                .header("x-slack-retry-num", n.to_string())
                .header("x-slack-retry-reason", "http_timeout");
        }
        req.send().await.expect("request reaches the service")
    }

    /// An echo event with the right token.
    pub async fn echo(&self, event: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/spinnaker/events"))
            .bearer_auth(ECHO_TOKEN)
            .json(event)
            .send()
            .await
            .expect("request reaches the service")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request reaches the service")
    }

    /// The fake Socket Mode edge; panics when the service runs over HTTP.
    pub fn socket(&self) -> &FakeSocketMode {
        self.socket
            .as_ref()
            .expect("this test app runs in Socket Mode (TestAppBuilder::socket_mode)")
    }

    pub async fn metrics_text(&self) -> String {
        self.get("/metrics")
            .await
            .text()
            .await
            .expect("metrics body")
    }

    /// Wait until no job is running and none is due: call it before jumping a `ManualClock`, whose
    /// jump would otherwise expire the lease of a job still running and let the worker run it
    /// again (a real clock never jumps a day while a job runs).
    pub async fn settle_jobs(&self) {
        eventually(
            Duration::from_secs(20),
            "the job queue to settle",
            || async {
                let d = self.state.jobs().depth().await.ok()?;
                (d.running == 0 && d.due == 0).then_some(())
            },
        )
        .await
    }

    /// Stop gracefully and wait, keeping the fakes for inspection.
    pub async fn shutdown(&mut self) {
        self.stop.cancel();
        if let Some(h) = self.handle.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), h).await;
        }
    }

    /// Stop gracefully and wait.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(h) = self.handle.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), h).await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Poll `f` until it returns `Some`, or panic after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Shared counter for handlers registered by tests.
pub type Counter = Arc<std::sync::atomic::AtomicUsize>;
