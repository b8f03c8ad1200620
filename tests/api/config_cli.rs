//! The real `slackops` binary, run as an operator runs it: a cleared environment holding only what
//! each test sets (plus PATH), configuration from `SLACKOPS_…` variables, `_file` variants and a
//! YAML file. Covers start-up validation (every bad key named in one message), secrets read from
//! files, `check-config` redaction and `--probe` against the fake Slack and Gate, `version` and
//! `migrate`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::{TestDb, now_secs};
use crate::support::fake_gate::{Auth, FakeGate};
use crate::support::fake_slack::FakeSlack;

const BIN: &str = env!("CARGO_BIN_EXE_slackops");
const SIGNING_SECRET: &str = "cli-signing-secret-4f1d2e9a7b";
const BOT_TOKEN: &str = "xoxb-cli-bot-token-77a1c3";

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn success(&self) -> bool {
        self.code == Some(0)
    }
    /// Every JSON document at the start of stdout, in order (text after them is ignored).
    fn json(&self) -> Vec<Value> {
        serde_json::Deserializer::from_str(&self.stdout)
            .into_iter::<Value>()
            .map_while(Result::ok)
            .collect()
    }
    fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// `slackops ARGS` with exactly `env` (and PATH), in `dir`.
fn command(args: &[&str], env: &[(String, String)], dir: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(dir)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

async fn run(args: &[&str], env: &[(String, String)], dir: &Path) -> Run {
    let out = tokio::time::timeout(Duration::from_secs(60), command(args, env, dir).output())
        .await
        .unwrap_or_else(|_| panic!("slackops {args:?} did not exit within 60 s"))
        .expect("the slackops binary runs");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write a temp file");
    path
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("slackops.db").display())
}

/// A complete, valid environment against the fakes and a database.
fn valid_env(slack: &FakeSlack, gate: &FakeGate, db_url: &str) -> Vec<(String, String)> {
    env(&[
        ("SLACKOPS_SLACK__SIGNING_SECRET", SIGNING_SECRET),
        ("SLACKOPS_SLACK__BOT_TOKEN", &slack.token()),
        ("SLACKOPS_SLACK__API_URL", &slack.api_url()),
        ("SLACKOPS_SPINNAKER__GATE_URL", &gate.url()),
        ("SLACKOPS_DATABASE__URL", db_url),
    ])
}

fn set(vars: &mut Vec<(String, String)>, key: &str, value: &str) {
    vars.retain(|(k, _)| k != key);
    vars.push((key.to_string(), value.to_string()));
}

fn unset(vars: &mut Vec<(String, String)>, key: &str) {
    vars.retain(|(k, _)| k != key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_without_a_signing_secret_stops_with_a_message_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let vars = env(&[("SLACKOPS_SLACK__BOT_TOKEN", BOT_TOKEN)]);
    let out = run(&["serve"], &vars, dir.path()).await;
    assert!(!out.success(), "{out:?}");
    assert!(out.code.is_some_and(|c| c != 0), "{out:?}");
    assert!(out.stderr.contains("slack.signing_secret"), "{out:?}");
    assert!(
        !out.stderr.contains("slack.bot_token"),
        "only the bad key is named: {out:?}"
    );
    assert!(!out.all_output().contains(BOT_TOKEN), "{out:?}");
    assert!(
        !dir.path().join("slackops.db").exists(),
        "nothing was started: no database created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_several_bad_keys_names_every_one_in_one_message() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing at all: both Slack secrets are named.
    let out = run(&["serve"], &[], dir.path()).await;
    assert!(!out.success(), "{out:?}");
    assert!(out.stderr.contains("slack.signing_secret"), "{out:?}");
    assert!(out.stderr.contains("slack.bot_token"), "{out:?}");
    assert_eq!(
        out.stderr.matches("invalid configuration").count(),
        1,
        "one message: {out:?}"
    );

    // More kinds of problems at once; a bad secret value is named but never printed.
    let vars = env(&[
        ("SLACKOPS_SLACK__BOT_TOKEN", "not-a-token-Secret-91b2"),
        ("SLACKOPS_DATABASE__URL", "mysql://db/slackops"),
        ("SLACKOPS_JOBS__LEASE_SECS", "1"),
    ]);
    let out = run(&["serve"], &vars, dir.path()).await;
    assert!(!out.success(), "{out:?}");
    for key in [
        "slack.signing_secret",
        "slack.bot_token",
        "database.url",
        "jobs.lease_secs",
    ] {
        assert!(out.stderr.contains(key), "{key}: {out:?}");
    }
    assert_eq!(out.stderr.matches("invalid configuration").count(), 1);
    assert!(
        !out.all_output().contains("not-a-token-Secret-91b2"),
        "{out:?}"
    );
}

/// A value of the wrong type must not hide the other problems: the operator gets every bad key in
/// one round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_error_does_not_hide_the_other_bad_keys() {
    let dir = tempfile::tempdir().unwrap();
    let vars = env(&[
        ("SLACKOPS_SERVER__LISTEN", "not-an-address"),
        ("SLACKOPS_JOBS__CONCURRENCY", "many"),
        ("SLACKOPS_DATABASE__URL", "mysql://db/slackops"),
        ("SLACKOPS_SLACK__BOT_TOKEN", BOT_TOKEN),
    ]);
    let out = run(&["serve"], &vars, dir.path()).await;
    assert!(!out.success(), "{out:?}");
    for key in [
        "server.listen",
        "jobs.concurrency",
        "database.url",
        "slack.signing_secret",
    ] {
        assert!(out.stderr.contains(key), "{key} is named: {out:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_key_and_an_unreadable_secret_file_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let vars = env(&[
        ("SLACKOPS_SLACK__SIGNING_SECRT", SIGNING_SECRET),
        ("SLACKOPS_SLACK__BOT_TOKEN", BOT_TOKEN),
    ]);
    let out = run(&["check-config"], &vars, dir.path()).await;
    assert!(!out.success(), "{out:?}");
    assert!(
        out.stderr.contains("signing_secrt"),
        "a typo is named: {out:?}"
    );
    assert!(!out.all_output().contains(SIGNING_SECRET), "{out:?}");

    let missing = dir.path().join("no-such-secret");
    let vars = env(&[
        (
            "SLACKOPS_SLACK__SIGNING_SECRET_FILE",
            missing.to_str().unwrap(),
        ),
        ("SLACKOPS_SLACK__BOT_TOKEN", BOT_TOKEN),
    ]);
    let out = run(&["check-config"], &vars, dir.path()).await;
    assert!(!out.success(), "{out:?}");
    assert!(out.stderr.contains("slack.signing_secret_file"), "{out:?}");
}

/// A running `slackops serve` child; killed when dropped.
struct Served {
    child: tokio::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
    address: String,
}

async fn serve(vars: &[(String, String)], args: &[&str], dir: &Path) -> Served {
    let mut all_args = vec!["serve"];
    all_args.extend_from_slice(args);
    let mut child = command(&all_args, vars, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("slackops serve starts");
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    for reader in [
        Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
        Box::new(stderr),
    ] {
        let (lines, tx) = (lines.clone(), tx.clone());
        tokio::spawn(async move {
            let mut r = BufReader::new(reader).lines();
            while let Ok(Some(line)) = r.next_line().await {
                lines.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);
    let address = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = rx.recv().await {
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let listening = v["message"] == "slackops listening"
                || v["fields"]["message"] == "slackops listening";
            if listening {
                let a = v
                    .get("address")
                    .or_else(|| v["fields"].get("address"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                if let Some(a) = a {
                    return Some(a);
                }
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_else(|| {
        panic!(
            "serve did not log its address; output:\n{}",
            lines.lock().unwrap().join("\n")
        )
    });
    Served {
        child,
        lines,
        address,
    }
}

impl Served {
    fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
    /// SIGTERM, then the exit code.
    async fn terminate(mut self) -> (Option<i32>, String) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("serve exits after SIGTERM")
            .expect("wait");
        // Let the readers drain.
        tokio::time::sleep(Duration::from_millis(100)).await;
        (status.code(), self.output())
    }
}

async fn url_verification(address: &str, secret: &str) -> reqwest::Response {
    let body = json!({"token": "legacy", "challenge": "chal-3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"})
        .to_string();
    let ts = now_secs();
    slackops::telemetry::install_crypto_provider();
    reqwest::Client::new()
        .post(format!("http://{address}/slack/events"))
        .header("content-type", "application/json")
        .header("x-slack-request-timestamp", ts.to_string())
        .header(
            "x-slack-signature",
            slackops::slack::verify::sign(secret, ts, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .expect("serve answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secrets_given_as_file_variants_are_used_by_serve_which_stops_cleanly_on_sigterm() {
    let slack = FakeSlack::start().await;
    let gate = FakeGate::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Mounted Kubernetes secrets usually end with a newline.
    let signing = write(dir.path(), "signing_secret", &format!("{SIGNING_SECRET}\n"));
    let bot = write(dir.path(), "bot_token", &format!("{}\n", slack.token()));
    let config = write(
        dir.path(),
        "slackops.yaml",
        &format!(
            "slack:\n  bot_token_file: {}\n  api_url: {}\nlog:\n  format: json\n",
            bot.display(),
            slack.api_url()
        ),
    );
    let vars = env(&[
        (
            "SLACKOPS_SLACK__SIGNING_SECRET_FILE",
            signing.to_str().unwrap(),
        ),
        ("SLACKOPS_SERVER__LISTEN", "127.0.0.1:0"),
        ("SLACKOPS_SPINNAKER__GATE_URL", &gate.url()),
        ("SLACKOPS_DATABASE__URL", &sqlite_url(dir.path())),
    ]);

    let served = serve(&vars, &["--config", config.to_str().unwrap()], dir.path()).await;
    // Signed with the secret from the file (without its newline): verified.
    let resp = url_verification(&served.address, SIGNING_SECRET).await;
    assert_eq!(resp.status(), 200, "{}", served.output());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["challenge"],
        "chal-3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
    // Signed with anything else: refused.
    let resp = url_verification(&served.address, "another-secret").await;
    assert_eq!(resp.status(), 401);

    let (code, output) = served.terminate().await;
    assert_eq!(code, Some(0), "SIGTERM is a clean stop:\n{output}");
    assert!(output.contains("slackops stopped"), "{output}");
    assert!(!output.contains(SIGNING_SECRET), "{output}");
    assert!(!output.contains(&slack.token()), "{output}");

    // The same file variants, checked by check-config with the file named by SLACKOPS_CONFIG.
    let mut vars = vars.clone();
    set(&mut vars, "SLACKOPS_CONFIG", config.to_str().unwrap());
    let out = run(&["check-config", "--probe"], &vars, dir.path()).await;
    assert!(out.success(), "{out:?}");
    let docs = out.json();
    let probe = docs
        .iter()
        .find(|d| d.get("probe").is_some())
        .expect("a probe report");
    assert_eq!(
        probe["probe"]["slack"]["ok"], true,
        "the bot token from the YAML _file works: {out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_prints_the_configuration_with_every_secret_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = [
        SIGNING_SECRET,
        BOT_TOKEN,
        "echo-Token-Secret-5511",
        "gate-Passw0rd-Secret",
        "db-Passw0rd-Secret",
        "api-Token-Secret-0123456789",
    ];
    let config = write(
        dir.path(),
        "slackops.yaml",
        "api:\n  tokens:\n    - api-Token-Secret-0123456789\nspinnaker:\n  auth:\n    type: basic\n    username: slackops-bot\n",
    );
    let vars = env(&[
        ("SLACKOPS_CONFIG", config.to_str().unwrap()),
        ("SLACKOPS_SLACK__SIGNING_SECRET", SIGNING_SECRET),
        ("SLACKOPS_SLACK__BOT_TOKEN", BOT_TOKEN),
        ("SLACKOPS_SPINNAKER__ECHO_TOKEN", "echo-Token-Secret-5511"),
        ("SLACKOPS_SPINNAKER__AUTH__PASSWORD", "gate-Passw0rd-Secret"),
        (
            "SLACKOPS_DATABASE__URL",
            "postgres://slackops:db-Passw0rd-Secret@db.internal:5432/slackops",
        ),
    ]);
    let out = run(&["check-config"], &vars, dir.path()).await;
    assert!(out.success(), "{out:?}");
    for s in secrets {
        assert!(!out.stdout.contains(s), "{s} printed: {out:?}");
        assert!(!out.stderr.contains(s), "{s} printed: {out:?}");
    }
    let view = out
        .json()
        .into_iter()
        .next()
        .expect("the configuration as JSON");
    assert_eq!(view["slack"]["signing_secret"], "[redacted]", "{view:#}");
    assert_eq!(view["slack"]["bot_token"], "[redacted]");
    assert_eq!(view["spinnaker"]["echo_token"], "[redacted]");
    assert_eq!(view["spinnaker"]["auth"]["password"], "[redacted]");
    assert_eq!(view["spinnaker"]["auth"]["token"], "[unset]");
    assert_eq!(view["spinnaker"]["auth"]["username"], "slackops-bot");
    assert_eq!(view["api"]["tokens"], json!(["[redacted]"]));
    let db = view["database"]["url"].as_str().unwrap_or_default();
    assert!(
        db.starts_with("postgres://slackops:") && db.contains("@db.internal:5432/slackops"),
        "the database is still recognisable, its password replaced: {db}"
    );
    // Non-secret values are shown as configured.
    assert_eq!(view["jobs"]["lease_secs"], 60);
    assert_eq!(view["slack"]["api_url"], "https://slack.com/api");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn check_config_probe_reports_slack_gate_and_database_ok() {
    for db in TestDb::all("config_cli::check_config_probe_reports_slack_gate_and_database_ok").await
    {
        let engine = db.engine;
        let slack = FakeSlack::start().await;
        let gate = FakeGate::start().await;
        let dir = tempfile::tempdir().unwrap();
        let vars = valid_env(&slack, &gate, &db.url);
        let migrated = run(&["migrate"], &vars, dir.path()).await;
        assert!(migrated.success(), "{engine:?}: {migrated:?}");

        let out = run(&["check-config", "--probe"], &vars, dir.path()).await;
        assert!(out.success(), "{engine:?}: {out:?}");
        let docs = out.json();
        let report = docs
            .iter()
            .find(|d| d.get("probe").is_some())
            .unwrap_or_else(|| panic!("{engine:?}: a probe report: {out:?}"));
        let p = &report["probe"];
        assert_eq!(p["slack"]["ok"], true, "{engine:?}: {p:#}");
        assert_eq!(p["slack"]["team_id"], crate::support::fake_slack::TEAM_ID);
        assert_eq!(p["gate"]["ok"], true, "{engine:?}: {p:#}");
        assert_eq!(p["database"]["ok"], true, "{engine:?}: {p:#}");
        assert_eq!(slack.call_count("auth.test"), 1, "{engine:?}");
        assert!(!out.all_output().contains(SIGNING_SECRET));
        assert!(!out.all_output().contains(&slack.token()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn check_config_probe_with_a_wrong_slack_token_reports_slack_not_ok_and_fails() {
    let slack = FakeSlack::start().await;
    let gate = FakeGate::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut vars = valid_env(&slack, &gate, &sqlite_url(dir.path()));
    assert!(run(&["migrate"], &vars, dir.path()).await.success());

    set(
        &mut vars,
        "SLACKOPS_SLACK__BOT_TOKEN",
        "xoxb-revoked-Token-31337",
    );
    let out = run(&["check-config", "--probe"], &vars, dir.path()).await;
    assert!(!out.success(), "a failed probe fails the command: {out:?}");
    let docs = out.json();
    let report = docs
        .iter()
        .find(|d| d.get("probe").is_some())
        .expect("a probe report");
    let p = &report["probe"];
    assert_eq!(p["slack"]["ok"], false, "{p:#}");
    assert!(
        p["slack"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("invalid_auth"),
        "Slack's answer is shown: {p:#}"
    );
    assert_eq!(
        p["gate"]["ok"], true,
        "the other integrations are still probed: {p:#}"
    );
    assert_eq!(p["database"]["ok"], true, "{p:#}");
    assert!(
        !out.all_output().contains("xoxb-revoked-Token-31337"),
        "{out:?}"
    );

    // Gate down and the database not migrated are reported the same way.
    gate.set_down(true);
    let fresh = tempfile::tempdir().unwrap();
    let mut vars = valid_env(&slack, &gate, &sqlite_url(fresh.path()));
    unset(&mut vars, "SLACKOPS_CONFIG");
    let out = run(&["check-config", "--probe"], &vars, dir.path()).await;
    assert!(!out.success(), "{out:?}");
    let docs = out.json();
    let p = &docs
        .iter()
        .find(|d| d.get("probe").is_some())
        .expect("report")["probe"];
    assert_eq!(p["slack"]["ok"], true, "{p:#}");
    assert_eq!(p["gate"]["ok"], false, "{p:#}");
    assert_eq!(p["database"]["ok"], false, "{p:#}");
    assert!(
        p["database"]["hint"]
            .as_str()
            .unwrap_or("")
            .contains("slackops migrate"),
        "{p:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_prints_the_version_without_any_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["version"], &[], dir.path()).await;
    assert!(out.success(), "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        format!("slackops {}", env!("CARGO_PKG_VERSION"))
    );
    let out = run(&["--version"], &[], dir.path()).await;
    assert!(out.success(), "{out:?}");
    assert!(out.stdout.contains(env!("CARGO_PKG_VERSION")), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_on_a_fresh_database_applies_every_embedded_migration() {
    for db in TestDb::all("config_cli::migrate_on_a_fresh_database").await {
        let engine = db.engine;
        let dir = tempfile::tempdir().unwrap();
        let url = match engine {
            crate::helpers::Engine::Sqlite => sqlite_url(dir.path()),
            crate::helpers::Engine::Postgres => db.url.clone(),
        };
        let vars = env(&[
            ("SLACKOPS_SLACK__SIGNING_SECRET", SIGNING_SECRET),
            ("SLACKOPS_SLACK__BOT_TOKEN", BOT_TOKEN),
            ("SLACKOPS_DATABASE__URL", &url),
        ]);
        let out = run(&["migrate"], &vars, dir.path()).await;
        assert!(out.success(), "{engine:?}: {out:?}");
        assert!(
            out.stdout.contains("migrations applied"),
            "{engine:?}: {out:?}"
        );
        if engine == crate::helpers::Engine::Sqlite {
            assert!(
                dir.path().join("slackops.db").exists(),
                "the file was created"
            );
        }
        // Running it again is a no-op.
        let again = run(&["migrate"], &vars, dir.path()).await;
        assert!(again.success(), "{engine:?}: {again:?}");

        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&url)
            .await
            .expect("open the database");
        let applied: Vec<i64> = sqlx::query_scalar(
            "SELECT version FROM _sqlx_migrations WHERE success = $1 ORDER BY version",
        )
        .bind(true)
        .fetch_all(&pool)
        .await
        .expect("_sqlx_migrations exists");
        let embedded: Vec<i64> = slackops::store::MIGRATOR
            .iter()
            .map(|m| m.version)
            .collect();
        assert!(!applied.is_empty(), "{engine:?}");
        assert_eq!(
            applied, embedded,
            "{engine:?}: every embedded migration, once"
        );
        let jobs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs")
            .fetch_one(&pool)
            .await
            .expect("the schema exists");
        assert_eq!(jobs, 0);
        pool.close().await;
    }
}

/// Kubernetes injects `<SERVICE>_SERVICE_HOST`, `<SERVICE>_PORT`, … for every Service in the
/// namespace (enableServiceLinks defaults to true). A Service named `slackops` must not stop the
/// pod from starting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_service_link_variables_do_not_break_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let vars = env(&[
        ("SLACKOPS_SLACK__SIGNING_SECRET", SIGNING_SECRET),
        ("SLACKOPS_SLACK__BOT_TOKEN", BOT_TOKEN),
        ("SLACKOPS_SERVICE_HOST", "10.96.14.7"),
        ("SLACKOPS_SERVICE_PORT", "80"),
        ("SLACKOPS_SERVICE_PORT_HTTP", "80"),
        ("SLACKOPS_PORT", "tcp://10.96.14.7:80"),
        ("SLACKOPS_PORT_80_TCP", "tcp://10.96.14.7:80"),
        ("SLACKOPS_PORT_80_TCP_PROTO", "tcp"),
        ("SLACKOPS_PORT_80_TCP_PORT", "80"),
        ("SLACKOPS_PORT_80_TCP_ADDR", "10.96.14.7"),
    ]);
    let out = run(&["check-config"], &vars, dir.path()).await;
    assert!(
        out.success(),
        "Kubernetes service-link variables are not configuration keys: {out:?}"
    );
}

/// A secret set through the environment is used exactly as written, even when it looks like a
/// number (a Gate password of digits with a leading zero).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_numeric_looking_secret_from_the_environment_is_kept_as_written() {
    let slack = FakeSlack::start().await;
    let gate = FakeGate::start().await;
    gate.require_auth(Auth::Basic("slackops-bot".into(), "0123456789".into()));
    let dir = tempfile::tempdir().unwrap();
    let mut vars = valid_env(&slack, &gate, &sqlite_url(dir.path()));
    assert!(run(&["migrate"], &vars, dir.path()).await.success());
    set(&mut vars, "SLACKOPS_SPINNAKER__AUTH__TYPE", "basic");
    set(
        &mut vars,
        "SLACKOPS_SPINNAKER__AUTH__USERNAME",
        "slackops-bot",
    );

    // Through a _file: the text is taken as is.
    let password = write(dir.path(), "gate_password", "0123456789\n");
    set(
        &mut vars,
        "SLACKOPS_SPINNAKER__AUTH__PASSWORD_FILE",
        password.to_str().unwrap(),
    );
    let out = run(&["check-config", "--probe"], &vars, dir.path()).await;
    let docs = out.json();
    let p = &docs
        .iter()
        .find(|d| d.get("probe").is_some())
        .expect("report")["probe"];
    assert_eq!(p["gate"]["ok"], true, "password from a file: {out:?}");

    // Through the variable itself: must be the same password.
    unset(&mut vars, "SLACKOPS_SPINNAKER__AUTH__PASSWORD_FILE");
    set(
        &mut vars,
        "SLACKOPS_SPINNAKER__AUTH__PASSWORD",
        "0123456789",
    );
    let out = run(&["check-config", "--probe"], &vars, dir.path()).await;
    let docs = out.json();
    let p = &docs
        .iter()
        .find(|d| d.get("probe").is_some())
        .expect("report")["probe"];
    assert_eq!(
        p["gate"]["ok"], true,
        "SLACKOPS_SPINNAKER__AUTH__PASSWORD=0123456789 reaches Gate unchanged: {out:?}"
    );
}

// ------------------------------------------------------------------------------- Socket Mode

/// A valid Socket Mode environment: the app token from a file, no signing secret.
fn socket_env(
    slack: &FakeSlack,
    gate: &FakeGate,
    db_url: &str,
    dir: &Path,
) -> Vec<(String, String)> {
    let token = write(
        dir,
        "slack-app-token",
        &format!("{}\n", crate::support::fake_socket_mode::APP_TOKEN),
    );
    let mut vars = valid_env(slack, gate, db_url);
    unset(&mut vars, "SLACKOPS_SLACK__SIGNING_SECRET");
    set(&mut vars, "SLACKOPS_SLACK__MODE", "socket");
    set(
        &mut vars,
        "SLACKOPS_SLACK__APP_TOKEN_FILE",
        token.to_str().unwrap(),
    );
    vars
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_mode_without_an_app_token_names_slack_app_token_and_not_the_signing_secret() {
    let dir = tempfile::tempdir().unwrap();
    let vars = env(&[
        ("SLACKOPS_SLACK__MODE", "socket"),
        ("SLACKOPS_SLACK__BOT_TOKEN", BOT_TOKEN),
    ]);
    let out = run(&["serve"], &vars, dir.path()).await;
    assert!(!out.success(), "{out:?}");
    assert!(out.stderr.contains("slack.app_token"), "{out:?}");
    assert!(out.stderr.contains("SLACKOPS_SLACK__APP_TOKEN"), "{out:?}");
    assert!(
        !out.stderr.contains("slack.signing_secret"),
        "the signing secret is optional in socket mode: {out:?}"
    );

    // A bot token where the app token goes, and too many connections: named, never printed.
    let vars = env(&[
        ("SLACKOPS_SLACK__MODE", "socket"),
        ("SLACKOPS_SLACK__BOT_TOKEN", BOT_TOKEN),
        ("SLACKOPS_SLACK__APP_TOKEN", "xoxb-wrong-Kind-5150"),
        ("SLACKOPS_SLACK__SOCKET_CONNECTIONS", "11"),
    ]);
    let out = run(&["serve"], &vars, dir.path()).await;
    assert!(!out.success(), "{out:?}");
    assert!(out.stderr.contains("app-level token"), "{out:?}");
    assert!(out.stderr.contains("slack.socket_connections"), "{out:?}");
    assert!(
        !out.all_output().contains("xoxb-wrong-Kind-5150"),
        "{out:?}"
    );

    let vars = env(&[
        ("SLACKOPS_SLACK__MODE", "sockets"),
        ("SLACKOPS_SLACK__BOT_TOKEN", BOT_TOKEN),
    ]);
    let out = run(&["serve"], &vars, dir.path()).await;
    assert!(!out.success(), "{out:?}");
    assert!(
        out.stderr.contains("slack.mode"),
        "an unknown mode is named: {out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn check_config_probe_in_socket_mode_opens_one_connection_and_reports_hello() {
    let slack = FakeSlack::start().await;
    let gate = FakeGate::start().await;
    let socket = crate::support::fake_socket_mode::FakeSocketMode::start().await;
    slack.enable_socket_mode(crate::support::fake_socket_mode::APP_TOKEN, socket.minter());
    let dir = tempfile::tempdir().unwrap();
    let vars = socket_env(&slack, &gate, &sqlite_url(dir.path()), dir.path());
    assert!(run(&["migrate"], &vars, dir.path()).await.success());

    let out = run(&["check-config", "--probe"], &vars, dir.path()).await;
    assert!(out.success(), "{out:?}");
    let docs = out.json();
    assert_eq!(docs[0]["slack"]["mode"], "socket", "{out:?}");
    assert_eq!(docs[0]["slack"]["app_token"], "[redacted]", "{out:?}");
    let p = &docs
        .iter()
        .find(|d| d.get("probe").is_some())
        .expect("a probe report")["probe"];
    assert_eq!(p["slack_socket_mode"]["ok"], true, "{p:#}");
    assert_eq!(p["slack_socket_mode"]["hello"], true, "{p:#}");
    assert_eq!(p["slack_socket_mode"]["app_id"], "A0FAKE", "{p:#}");
    assert_eq!(socket.handshakes().len(), 1, "one connection opened");
    socket
        .wait_for_open_at_most(0, Duration::from_secs(5))
        .await;
    assert!(
        socket.connections()[0].closed_by_client,
        "and closed cleanly"
    );
    let all = out.all_output();
    assert!(
        !all.contains(crate::support::fake_socket_mode::APP_TOKEN),
        "{out:?}"
    );
    assert!(!all.contains("ticket"), "{out:?}");

    // A token Slack refuses: the probe fails and says which key to fix, without printing it.
    slack.enable_socket_mode("xapp-1-another-token", socket.minter());
    let out = run(&["check-config", "--probe"], &vars, dir.path()).await;
    assert!(!out.success(), "{out:?}");
    let docs = out.json();
    let p = &docs
        .iter()
        .find(|d| d.get("probe").is_some())
        .expect("a probe report")["probe"];
    assert_eq!(p["slack_socket_mode"]["hello"], false, "{p:#}");
    assert!(
        p["slack_socket_mode"]["error"]
            .as_str()
            .unwrap()
            .contains("invalid_auth"),
        "{p:#}"
    );
    assert!(
        p["slack_socket_mode"]["fix"]
            .as_str()
            .unwrap()
            .contains("slack.app_token"),
        "{p:#}"
    );
    assert!(
        !out.all_output()
            .contains(crate::support::fake_socket_mode::APP_TOKEN)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_in_socket_mode_with_a_refused_token_logs_a_configuration_error_naming_the_key() {
    slackops::telemetry::install_crypto_provider();
    let slack = FakeSlack::start().await;
    let gate = FakeGate::start().await;
    let socket = crate::support::fake_socket_mode::FakeSocketMode::start().await;
    slack.enable_socket_mode("xapp-1-the-right-one", socket.minter());
    let dir = tempfile::tempdir().unwrap();
    let mut vars = socket_env(&slack, &gate, &sqlite_url(dir.path()), dir.path());
    set(&mut vars, "SLACKOPS_SERVER__LISTEN", "127.0.0.1:0");
    set(&mut vars, "SLACKOPS_LOG__FORMAT", "json");
    set(
        &mut vars,
        "SLACKOPS_LOG__LEVEL",
        "debug,sqlx=warn,hyper=info",
    );
    let mut child = command(&["serve"], &vars, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let lines = lines.clone();
        tokio::spawn(async move {
            let mut r = BufReader::new(stream).lines();
            while let Ok(Some(l)) = r.next_line().await {
                lines.lock().unwrap().push(l);
            }
        });
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let error_line = loop {
        let found = lines
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains("\"level\":\"ERROR\"") && l.contains("slack.app_token"))
            .cloned();
        if let Some(l) = found {
            break l;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no configuration error logged: {:#?}",
            lines.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(error_line.contains("invalid_auth"), "{error_line}");
    assert!(error_line.contains("connections:write"), "{error_line}");
    // Unready: nothing can reach this replica.
    let address = lines
        .lock()
        .unwrap()
        .iter()
        .find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            (v["message"] == "slackops listening")
                .then(|| v["address"].as_str().map(str::to_owned))?
        })
        .expect("the listening address");
    let ready = reqwest::get(format!("http://{address}/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let _ = child.start_kill();
    let _ = child.wait().await;
    let all = lines.lock().unwrap().join("\n");
    assert!(
        !all.contains(crate::support::fake_socket_mode::APP_TOKEN),
        "the token is never logged"
    );
    assert!(!all.contains("xapp-1-"), "no app token at all in the logs");
    assert_eq!(socket.handshakes().len(), 0, "no URL, no handshake");
}
