//! What `/metrics` exports for the alerting rules and the dashboard in `deploy/monitoring/`: the
//! gauges sampled at scrape time (readiness, the due backlog, judgments by state, the status
//! snapshot's age), counters exported at 0 before their first event (so a rule's `increase()`
//! sees the first failure), Gate outcomes that tell a 429 from a 5xx; and, against a real
//! Prometheus scraping the real binary, that every metric and label the rules and the dashboard
//! query is really exported.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use promql_parser::parser::{Expr, LabelModifier, VectorMatchCardinality};
use serde_json::{Value, json};
use slackops::approvals::model::StageInfo;
use slackops::clock::ManualClock;
use slackops::jobs::NewJob;

use crate::helpers::{ECHO_TOKEN, SIGNING_SECRET, TestAppBuilder, TestDb, now_secs, spawn_app};
use crate::support::fake_gate::FakeGate;
use crate::support::fake_slack::{FakeSlack, Fault};

/// The sample of one series (name and labels exactly as exported), if exported.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn stage(n: u32) -> StageInfo {
    StageInfo {
        application: "shop".into(),
        pipeline_name: "deploy".into(),
        execution_id: format!("01EXEC{n}"),
        stage_id: format!("01STAGE{n}"),
        stage_name: "Approve".into(),
        stage_start: 1,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scrape_time_gauges_show_readiness_the_due_backlog_judgments_and_snapshot_age() {
    for db in TestDb::all("monitoring::scrape_time_gauges").await {
        let engine = db.engine;
        let clock = ManualClock::at_secs(now_secs());
        let app = TestAppBuilder::new(db)
            .await
            .clock(Arc::new(clock.clone()))
            .without_worker()
            .spawn()
            .await;
        let jobs = app.state.jobs();
        let start = app.state.now_ms();
        jobs.enqueue(NewJob::new("test.due", &json!({})))
            .await
            .expect("enqueue");
        jobs.enqueue(NewJob::new("test.later", &json!({})).run_at(start + 3_600_000))
            .await
            .expect("enqueue");
        let pool = app.state.db().pool();
        for (n, state) in [(1, "awaiting"), (2, "awaiting"), (3, "approved")] {
            app.state
                .db()
                .insert_judgment(pool, &stage(n), state, start)
                .await
                .expect("insert judgment");
        }
        clock.advance_ms(90_000);

        let m = app.metrics_text().await;
        assert_eq!(sample(&m, "slackops_ready"), Some(1.0), "{engine:?}: {m}");
        assert_eq!(
            sample(&m, r#"slackops_jobs{state="pending"}"#),
            Some(2.0),
            "{engine:?}: {m}"
        );
        assert_eq!(
            sample(&m, "slackops_jobs_due"),
            Some(1.0),
            "{engine:?}: a job scheduled for later is not backlog: {m}"
        );
        assert_eq!(
            sample(&m, "slackops_jobs_oldest_due_age_seconds"),
            Some(90.0),
            "{engine:?}: {m}"
        );
        for (state, n) in [("awaiting", 2.0), ("approved", 1.0), ("rejected", 0.0)] {
            assert_eq!(
                sample(&m, &format!(r#"slackops_judgments{{state="{state}"}}"#)),
                Some(n),
                "{engine:?}: {state}: {m}"
            );
        }
        let age = sample(&m, "slackops_status_snapshot_age_seconds").expect("snapshot age");
        assert!(
            (0.0..=90.0).contains(&age),
            "{engine:?}: the snapshot was loaded by this replica: {age}"
        );

        // The database goes away: the scrape still answers, and says the replica is not ready.
        app.state.db().pool().close().await;
        let resp = app.get("/metrics").await;
        assert_eq!(resp.status(), 200, "{engine:?}");
        let m = resp.text().await.expect("body");
        assert_eq!(sample(&m, "slackops_ready"), Some(0.0), "{engine:?}: {m}");
        assert_eq!(app.get("/readyz").await.status(), 503, "{engine:?}");
        app.stop().await;
    }
}

#[tokio::test]
async fn labelled_counters_are_exported_at_zero_before_their_first_event() {
    let app = spawn_app().await;
    let m = app.metrics_text().await;
    for series in [
        r#"slackops_jobs_exhausted_total{kind="approvals.judge"}"#,
        r#"slackops_job_attempt_failures_total{kind="announcements.post"}"#,
        r#"slackops_jobs_succeeded_total{kind="oncall.notice"}"#,
        r#"slackops_slack_signature_failures_total{reason="bad_signature"}"#,
        r#"slackops_slack_signature_failures_total{reason="stale_timestamp"}"#,
        r#"slackops_slack_signature_failures_total{reason="too_large"}"#,
        r#"slackops_oncall_group_syncs_total{kind="failed"}"#,
        r#"slackops_judgments{state="awaiting"}"#,
        // On-call sync is off in this configuration.
        "slackops_oncall_sync_interval_seconds",
    ] {
        assert_eq!(sample(&m, series), Some(0.0), "{series}: {m}");
    }
    assert_eq!(
        sample(
            &m,
            &format!(
                r#"slackops_build_info{{version="{}"}}"#,
                env!("CARGO_PKG_VERSION")
            )
        ),
        Some(1.0),
        "{m}"
    );
    app.stop().await;
}

#[tokio::test]
async fn gate_calls_count_a_429_as_ratelimited_apart_from_other_4xx_and_5xx() {
    let app = spawn_app().await;
    for status in [429, 409, 503] {
        app.gate.fail_next(1, status);
        let err = app
            .state
            .gate()
            .execution("01NOSUCH")
            .await
            .expect_err("an injected failure");
        assert!(err.is_transient(), "{status}: retried later: {err}");
    }
    let m = app.metrics_text().await;
    for outcome in ["ratelimited", "http_4xx", "http_5xx"] {
        assert_eq!(
            sample(
                &m,
                &format!(
                    r#"slackops_gate_calls_total{{method="get_execution",outcome="{outcome}"}}"#
                )
            ),
            Some(1.0),
            "{outcome}: {m}"
        );
    }
    app.stop().await;
}

// ============================================================================================
// The rules and the dashboard against a real Prometheus scraping the real binary
// ============================================================================================

/// Where the rules and the dashboard live.
const MONITORING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/monitoring");
const RULES: &str = "slackops.rules.yml";
const DASHBOARD: &str = "grafana-dashboard.json";
/// Metrics only Socket Mode exports; over HTTP their selectors are reported, not checked.
const SOCKET_MODE_ONLY: &str = "slackops_socket_";

/// One selector of a rule or a dashboard query, and the labels the query needs on its series
/// (those it groups by, matches on, or copies with `group_left`).
#[derive(Debug, Clone)]
struct Need {
    source: String,
    selector: String,
    metric: String,
    labels: BTreeSet<String>,
}

/// Every selector of `expr`, each with the labels the enclosing aggregations and matchings need.
fn needs_of(source: &str, expr: &str) -> Result<Vec<Need>, String> {
    let ast = promql_parser::parser::parse(expr).map_err(|e| format!("{source}: {e}: {expr}"))?;
    let mut out = Vec::new();
    let mut problems = Vec::new();
    walk(source, &ast, &BTreeSet::new(), &mut out, &mut problems);
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems.join("\n"))
    }
}

fn labels_of(l: &promql_parser::label::Labels) -> BTreeSet<String> {
    l.labels.iter().cloned().collect()
}

fn walk(
    source: &str,
    e: &Expr,
    wanted: &BTreeSet<String>,
    out: &mut Vec<Need>,
    problems: &mut Vec<String>,
) {
    match e {
        Expr::VectorSelector(vs) => out.push(need(source, vs, wanted)),
        Expr::MatrixSelector(ms) => out.push(need(source, &ms.vs, wanted)),
        Expr::Aggregate(a) => {
            let inner = match &a.modifier {
                Some(LabelModifier::Include(by)) => {
                    let by = labels_of(by);
                    // Labels needed above an aggregation must be among those it keeps.
                    for l in wanted.difference(&by) {
                        problems.push(format!(
                            "{source}: `{l}` is used above an aggregation that drops it"
                        ));
                    }
                    by
                }
                Some(LabelModifier::Exclude(_)) | None => wanted.clone(),
            };
            walk(source, &a.expr, &inner, out, problems);
            if let Some(p) = &a.param {
                walk(source, p, &BTreeSet::new(), out, problems);
            }
        }
        Expr::Binary(b) => {
            let (mut lhs, mut rhs) = (wanted.clone(), wanted.clone());
            if let Some(m) = &b.modifier {
                if let Some(LabelModifier::Include(on)) = &m.matching {
                    lhs.extend(labels_of(on));
                    rhs.extend(labels_of(on));
                }
                match &m.card {
                    VectorMatchCardinality::ManyToOne(g) => rhs.extend(labels_of(g)),
                    VectorMatchCardinality::OneToMany(g) => lhs.extend(labels_of(g)),
                    _ => {}
                }
            }
            walk(source, &b.lhs, &lhs, out, problems);
            walk(source, &b.rhs, &rhs, out, problems);
        }
        Expr::Paren(p) => walk(source, &p.expr, wanted, out, problems),
        Expr::Unary(u) => walk(source, &u.expr, wanted, out, problems),
        Expr::Subquery(s) => walk(source, &s.expr, wanted, out, problems),
        Expr::Call(c) => {
            for a in &c.args.args {
                walk(source, a, wanted, out, problems);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

fn need(
    source: &str,
    vs: &promql_parser::parser::VectorSelector,
    wanted: &BTreeSet<String>,
) -> Need {
    let metric = vs.name.clone().unwrap_or_else(|| {
        vs.matchers
            .matchers
            .iter()
            .find(|m| m.name == "__name__")
            .map(|m| m.value.clone())
            .unwrap_or_default()
    });
    let mut labels = wanted.clone();
    labels.extend(
        vs.matchers
            .matchers
            .iter()
            .filter(|m| m.name != "__name__")
            .map(|m| m.name.clone()),
    );
    Need {
        source: source.to_string(),
        selector: vs.to_string(),
        metric,
        labels,
    }
}

/// Every selector of every rule in the rules file.
fn rule_needs() -> Vec<Need> {
    let text = std::fs::read_to_string(format!("{MONITORING}/{RULES}")).expect("rules file");
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("rules YAML");
    let mut needs = Vec::new();
    for group in doc["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"]
                .as_str()
                .or(rule["record"].as_str())
                .expect("a named rule");
            let expr = rule["expr"].as_str().expect("expr");
            needs.extend(needs_of(&format!("rule {name}"), expr).unwrap_or_else(|e| panic!("{e}")));
        }
    }
    needs
}

/// Every selector of every dashboard query and template variable, with Grafana's variables
/// replaced by what "All" and an automatic interval give.
fn dashboard_needs() -> Vec<Need> {
    let text = std::fs::read_to_string(format!("{MONITORING}/{DASHBOARD}")).expect("dashboard");
    let d: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    let grafana = |expr: &str| {
        let e = expr
            .replace("$__rate_interval", "1m")
            .replace("$namespace", ".*")
            .replace("$instance", ".*");
        assert!(!e.contains('$'), "an unknown Grafana variable in {expr}");
        e
    };
    let mut needs = Vec::new();
    let mut titles = BTreeSet::new();
    for p in d["panels"].as_array().expect("panels") {
        let title = p["title"].as_str().unwrap_or("?");
        if p["type"] == "row" {
            continue;
        }
        assert!(titles.insert(title.to_string()), "two panels named {title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {title} queries nothing");
        for t in targets {
            let expr = grafana(t["expr"].as_str().expect("expr"));
            needs.extend(
                needs_of(&format!("panel {title}"), &expr).unwrap_or_else(|e| panic!("{e}")),
            );
        }
    }
    for v in d["templating"]["list"].as_array().expect("templating") {
        let Some(q) = v["query"]["query"].as_str() else {
            continue;
        };
        // label_values(<selector>, <label>)
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable query {q}"));
        let (selector, label) = inner
            .rsplit_once(',')
            .expect("label_values(selector, label)");
        let mut n = needs_of(&format!("variable {}", v["name"]), &grafana(selector))
            .unwrap_or_else(|e| panic!("{e}"));
        for need in &mut n {
            need.labels.insert(label.trim().to_string());
        }
        needs.extend(n);
    }
    needs
}

#[test]
fn the_rules_and_the_dashboard_parse_and_every_selector_is_a_slackops_metric_or_up() {
    let needs: Vec<Need> = rule_needs().into_iter().chain(dashboard_needs()).collect();
    assert!(needs.len() > 50, "{} selectors", needs.len());
    for n in &needs {
        assert!(
            n.metric.starts_with("slackops_") || n.metric == "up",
            "{}: {} is not a slackops metric",
            n.source,
            n.selector
        );
    }
    // The checker itself: a grouping label dropped by an inner aggregation is caught.
    let dropped = needs_of("t", "sum by (job) (sum by (instance) (rate(x[1m])))");
    assert!(dropped.is_err(), "{dropped:?}");
    let n = needs_of(
        "t",
        "a > on (namespace) group_left (group) max by (namespace, group) (b{k=\"v\"})",
    )
    .expect("parses");
    assert_eq!(n[1].metric, "b");
    assert_eq!(
        n[1].labels,
        ["group", "k", "namespace"].map(String::from).into()
    );
}

/// A child process killed when dropped, with its output in a file for the failure message.
struct Proc {
    _child: tokio::process::Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(program: &Path, args: &[&str], log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Proc { _child: child, log }
    }
    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// slackops' configuration for the live check: loopback only, SQLite, a static on-call rota
/// synced every second, both upstreams pointing at the local fakes.
fn live_config(dir: &Path, port: u16, slack: &FakeSlack, gate: &FakeGate) -> PathBuf {
    let config = format!(
        r#"server:
  listen: "127.0.0.1:{port}"
database:
  url: "sqlite://{db}"
slack:
  signing_secret: "{SIGNING_SECRET}"
  bot_token: "{token}"
  api_url: "{slack_url}"
  max_retries: 3
spinnaker:
  gate_url: "{gate_url}"
  deck_url: "https://deck.example.com"
  echo_token: "{ECHO_TOKEN}"
jobs:
  poll_interval_ms: 100
oncall:
  interval_secs: 1
  rotas:
    web:
      people: [alice@example.com]
      every: weekly
      weekday: monday
      handoff: "09:00"
      utc_offset: "+00:00"
      start: "2026-01-05"
  groups:
    - handle: web-oncall
      sources:
        - provider: static
          rota: web
log:
  level: "info,sqlx=warn"
"#,
        db = dir.join("slackops.db").display(),
        token = slack.token(),
        slack_url = slack.api_url(),
        gate_url = gate.url(),
    );
    let path = dir.join("slackops.yaml");
    std::fs::write(&path, config).expect("write config");
    path
}

fn prometheus_config(dir: &Path, slackops_port: u16) -> PathBuf {
    let config = format!(
        r#"global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - "{MONITORING}/{RULES}"
scrape_configs:
  - job_name: slackops
    static_configs:
      - targets: ["127.0.0.1:{slackops_port}"]
        # What a ServiceMonitor adds in Kubernetes.
        labels:
          namespace: slackops-test
          pod: slackops-0
"#
    );
    let path = dir.join("prometheus.yml");
    std::fs::write(&path, config).expect("write prometheus config");
    path
}

/// A signed slash command, as Slack sends it.
async fn command(client: &reqwest::Client, base: &str, text: &str) -> reqwest::StatusCode {
    let body = serde_urlencoded::to_string([
        ("team_id", "T0TEAM"),
        ("channel_id", "C0OPS"),
        ("user_id", "U0ALICE"),
        ("user_name", "alice"),
        ("command", "/spinnaker"),
        ("text", text),
        ("response_url", "http://127.0.0.1:9/response"),
        ("trigger_id", "1.2.3"),
    ])
    .expect("form");
    let ts = now_secs();
    client
        .post(format!("{base}/slack/commands"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", ts.to_string())
        .header(
            "x-slack-signature",
            slackops::slack::verify::sign(SIGNING_SECRET, ts, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .expect("slash command")
        .status()
}

/// Make slackops call Slack and Gate with every outcome the rules single out: ok, 429, a server
/// error, refused credentials; and take a Slack request, a refused one and a refused echo event.
async fn make_traffic(base: &str, slack: &FakeSlack, gate: &FakeGate) {
    let client = reqwest::Client::new();
    // The on-call sync (every second) reads the user groups first.
    for fault in [
        Fault::RateLimited {
            retry_after_secs: 0,
        },
        Fault::error("invalid_auth"),
        Fault::ServerError(500),
    ] {
        slack.fail_next("usergroups.list", fault, 1);
    }
    // `/spinnaker status shop` asks Gate for the application first: 429, 401, 503, then ok.
    for status in [429, 401, 503] {
        gate.fail_next(1, status);
    }
    for _ in 0..4 {
        assert_eq!(command(&client, base, "status shop").await, 200);
    }
    let unsigned = client
        .post(format!("{base}/slack/commands"))
        .body("command=%2Fspinnaker")
        .send()
        .await
        .expect("unsigned request");
    assert_eq!(unsigned.status(), 401);
    let echo = client
        .post(format!("{base}/spinnaker/events"))
        .bearer_auth("not-the-echo-token")
        .body("{}")
        .send()
        .await
        .expect("echo event");
    assert_eq!(echo.status(), 401);
}

/// GET a Prometheus API path; the `data` of its answer.
async fn prom_api(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    query: &[(&str, &str)],
) -> Value {
    let v: Value = client
        .get(format!("{base}{path}"))
        .query(query)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .unwrap_or_else(|e| panic!("Prometheus {path}: {e}"))
        .json()
        .await
        .expect("Prometheus JSON");
    assert_eq!(v["status"], "success", "{path}: {v}");
    v["data"].clone()
}

/// What is still wrong: selectors without series or without a needed label, rules that are not
/// healthy. Socket Mode selectors whose metric is not exported at all are returned apart.
async fn still_missing(
    client: &reqwest::Client,
    base: &str,
    needs: &[Need],
) -> (Vec<String>, BTreeSet<String>) {
    let mut missing = Vec::new();
    let mut skipped = BTreeSet::new();
    for n in needs {
        let series = prom_api(client, base, "/api/v1/series", &[("match[]", &n.selector)]).await;
        let series = series.as_array().cloned().unwrap_or_default();
        if series.is_empty() {
            if n.metric.starts_with(SOCKET_MODE_ONLY) {
                let any = prom_api(client, base, "/api/v1/series", &[("match[]", &n.metric)]).await;
                if any.as_array().is_none_or(Vec::is_empty) {
                    skipped.insert(format!("{}: {}", n.source, n.selector));
                    continue;
                }
            }
            missing.push(format!("{}: no series for {}", n.source, n.selector));
            continue;
        }
        for l in &n.labels {
            if !series.iter().any(|s| s.get(l).is_some()) {
                missing.push(format!("{}: {} has no label `{l}`", n.source, n.selector));
            }
        }
    }
    let rules = prom_api(client, base, "/api/v1/rules", &[]).await;
    for g in rules["groups"].as_array().cloned().unwrap_or_default() {
        for r in g["rules"].as_array().cloned().unwrap_or_default() {
            if r["health"] != "ok" {
                missing.push(format!(
                    "rule {} is {}: {}",
                    r["name"], r["health"], r["lastError"]
                ));
            }
        }
    }
    (missing, skipped)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_metric_and_label_the_rules_and_the_dashboard_query_is_exported() {
    let Some(prometheus) = on_path("prometheus") else {
        eprintln!(
            "SKIPPED: monitoring::every_metric_and_label_the_rules_and_the_dashboard_query_is_exported \
             (no prometheus on PATH; `apt-get install prometheus`, as .ci/run does)"
        );
        return;
    };
    slackops::telemetry::install_crypto_provider();
    let needs: Vec<Need> = rule_needs().into_iter().chain(dashboard_needs()).collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let slack = FakeSlack::start().await;
    slack.add_user("U0ALICE", "alice", "alice@example.com", "UTC");
    slack.add_usergroup("S0WEB", "web-oncall", &["U0BOB"]);
    let gate = FakeGate::start().await;
    gate.add_application("shop");

    // The real binary, as `serve` runs in production.
    let port = free_port();
    let config = live_config(dir.path(), port, &slack, &gate);
    let config = config.to_str().expect("utf-8 path");
    let service = Proc::spawn(
        Path::new(env!("CARGO_BIN_EXE_slackops")),
        &["--config", config, "serve"],
        dir.path().join("slackops.log"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let started = Instant::now();
    while client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map_or(true, |r| !r.status().is_success())
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "slackops did not get ready:\n{}",
            service.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    make_traffic(&base, &slack, &gate).await;

    // A real Prometheus scraping it every second and evaluating the rules.
    let prom_port = free_port();
    let prom_config = prometheus_config(dir.path(), port);
    let prom_base = format!("http://127.0.0.1:{prom_port}");
    let prom = Proc::spawn(
        &prometheus,
        &[
            &format!("--config.file={}", prom_config.display()),
            &format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()),
            &format!("--web.listen-address=127.0.0.1:{prom_port}"),
            "--log.level=warn",
        ],
        dir.path().join("prometheus.log"),
    );

    let deadline = Instant::now() + Duration::from_secs(90);
    let (missing, skipped) = loop {
        let ready = client
            .get(format!("{prom_base}/-/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            let (missing, skipped) = still_missing(&client, &prom_base, &needs).await;
            if missing.is_empty() || Instant::now() > deadline {
                break (missing, skipped);
            }
        } else {
            assert!(
                Instant::now() < deadline,
                "Prometheus did not start:\n{}",
                prom.output()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    for s in &skipped {
        eprintln!("SKIPPED (Socket Mode only, not exported over HTTP): {s}");
    }
    assert!(
        missing.is_empty(),
        "queries that return no data from a running slackops:\n{}\n\nslackops log:\n{}\nPrometheus log:\n{}",
        missing.join("\n"),
        service.output(),
        prom.output()
    );
    eprintln!(
        "checked {} selectors of {} rules and the dashboard against Prometheus in {:?}",
        needs.len(),
        needs
            .iter()
            .filter(|n| n.source.starts_with("rule "))
            .map(|n| &n.source)
            .collect::<BTreeSet<_>>()
            .len(),
        started.elapsed()
    );
    drop(prom);
    drop(service);
}
