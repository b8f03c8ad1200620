//! Operating the service: liveness and readiness, Prometheus metrics, the echo intake endpoint's
//! authentication and parsing (reference/spinnaker.md §3a), request ids, and graceful shutdown
//! that lets running jobs and in-flight requests finish.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use serde_json::{Value, json};
use slackops::jobs::{Job, NewJob};
use slackops::registry::EchoHandler;
use slackops::state::AppState;
use tokio::sync::Notify;

use crate::helpers::{ECHO_TOKEN, TestApp, TestAppBuilder, TestDb, spawn_app};
use crate::jobs::handler;

/// Records every echo event it is given; optionally takes its time.
#[derive(Clone, Default)]
struct RecordingEcho {
    events: Arc<Mutex<Vec<Value>>>,
    delay: Option<Duration>,
    started: Arc<Notify>,
}

#[async_trait]
impl EchoHandler for RecordingEcho {
    async fn handle(&self, _state: AppState, event: Arc<Value>) -> anyhow::Result<()> {
        self.started.notify_one();
        if let Some(d) = self.delay {
            tokio::time::sleep(d).await;
        }
        self.events.lock().unwrap().push((*event).clone());
        Ok(())
    }
}

/// An `orca:stage:starting` event as echo's REST forwarding sends it (reference/spinnaker.md §3a).
fn stage_starting() -> Value {
    json!({
        "details": {
            "source": "orca",
            "type": "orca:stage:starting",
            "created": "1724312345678",
            "application": "myapp",
            "requestHeaders": {}
        },
        "content": {
            "standalone": false,
            "canceled": false,
            "executionId": "01J6EXEC",
            "stageId": "01J6STAGE",
            "isSynthetic": false,
            "name": "Approve prod",
            "startTime": 1724312345600_i64,
            "context": {"instructions": "Promote <b>v42</b>?", "judgmentInputs": [{"value": "deploy"}]},
            "execution": {
                "id": "01J6EXEC",
                "type": "PIPELINE",
                "application": "myapp",
                "name": "deploy-prod",
                "status": "RUNNING",
                "stages": [{"id": "01J6STAGE", "refId": "2", "type": "manualJudgment", "status": "RUNNING"}]
            }
        },
        "eventId": "3f0c2b8e-0000-4000-8000-000000000001"
    })
}

async fn app_with_echo(echo: RecordingEcho) -> TestApp {
    TestAppBuilder::new(TestDb::sqlite())
        .await
        .register(move |r| {
            r.echo("orca:stage:starting", Arc::new(echo));
        })
        .spawn()
        .await
}

async fn post_echo(
    app: &TestApp,
    auth: Option<String>,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url("/spinnaker/events"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    req.send().await.expect("request reaches the service")
}

fn bearer(token: &str) -> Option<String> {
    Some(format!("Bearer {token}"))
}

#[tokio::test]
async fn healthz_answers_200() {
    let app = spawn_app().await;
    let resp = app.get("/healthz").await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    app.stop().await;
}

#[tokio::test]
async fn readyz_answers_200_on_a_migrated_database() {
    for db in TestDb::all("ops::readyz_answers_200_on_a_migrated_database").await {
        let engine = db.engine;
        let app = TestAppBuilder::new(db).await.spawn().await;
        let resp = app.get("/readyz").await;
        assert_eq!(resp.status(), 200, "{engine:?}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["status"], "ready", "{engine:?}");
        app.stop().await;
    }
}

#[tokio::test]
async fn readyz_answers_503_when_the_database_is_gone_and_healthz_stays_200() {
    for db in TestDb::all("ops::readyz_answers_503_when_the_database_is_gone").await {
        let engine = db.engine;
        let app = TestAppBuilder::new(db).await.without_worker().spawn().await;
        assert_eq!(app.get("/readyz").await.status(), 200, "{engine:?}");

        app.state.db().pool().close().await;

        let resp = app.get("/readyz").await;
        assert_eq!(resp.status(), 503, "{engine:?}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["status"], "unavailable", "{engine:?}");
        assert!(
            body["reason"].as_str().unwrap_or("").contains("database"),
            "{engine:?}: the reason says why: {body}"
        );
        // Liveness never depends on the database.
        assert_eq!(app.get("/healthz").await.status(), 200, "{engine:?}");
        app.stop().await;
    }
}

#[tokio::test]
async fn readyz_answers_503_when_migrations_are_not_applied() {
    for db in TestDb::all("ops::readyz_answers_503_when_migrations_are_not_applied").await {
        let engine = db.engine;
        let app = TestAppBuilder::new(db).await.without_worker().spawn().await;
        sqlx::query("DELETE FROM _sqlx_migrations")
            .execute(app.state.db().pool())
            .await
            .expect("forget the migrations");
        let resp = app.get("/readyz").await;
        assert_eq!(resp.status(), 503, "{engine:?}");
        let body: Value = resp.json().await.unwrap();
        assert!(
            body["reason"].as_str().unwrap_or("").contains("migrations"),
            "{engine:?}: {body}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_requests_by_route_template_and_status() {
    let app = spawn_app().await;
    for _ in 0..3 {
        assert_eq!(app.get("/healthz").await.status(), 200);
    }
    assert_eq!(app.get("/no/such/path/U0SECRET").await.status(), 404);

    let resp = app.get("/metrics").await;
    assert_eq!(resp.status(), 200);
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text")
            || content_type.starts_with("text/plain; version=0.0.4"),
        "a Prometheus exposition format: {content_type}"
    );
    let text = resp.text().await.unwrap();
    assert!(
        text.contains(r#"slackops_http_requests_total{route="/healthz",status="200"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(r#"slackops_http_requests_total{route="unmatched",status="404"} 1"#),
        "unknown paths are counted under one label: {text}"
    );
    assert!(
        !text.contains("U0SECRET"),
        "raw paths never become label values: {text}"
    );
    assert!(
        text.contains("slackops_http_request_duration_seconds_bucket{"),
        "{text}"
    );
    assert!(
        text.contains(r#"slackops_jobs{state="pending"} 0"#),
        "{text}"
    );
    if content_type.starts_with("application/openmetrics-text") {
        assert!(
            text.trim_end().ends_with("# EOF"),
            "OpenMetrics ends with # EOF"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn echo_without_authorization_is_refused_with_401() {
    let echo = RecordingEcho::default();
    let app = app_with_echo(echo.clone()).await;
    let resp = post_echo(&app, None, stage_starting().to_string()).await;
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().contains_key("www-authenticate"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized");
    assert!(echo.events.lock().unwrap().is_empty(), "nothing dispatched");
    app.stop().await;
}

#[tokio::test]
async fn echo_with_a_wrong_token_is_refused_with_401() {
    let echo = RecordingEcho::default();
    let app = app_with_echo(echo.clone()).await;
    let wrong_basic = base64::engine::general_purpose::STANDARD.encode("echo:not-the-token");
    for auth in [
        bearer("not-the-token"),
        bearer(&format!("{ECHO_TOKEN}x")),
        bearer(&ECHO_TOKEN[..ECHO_TOKEN.len() - 1]),
        Some(format!("Basic {wrong_basic}")),
        Some(format!("Token {ECHO_TOKEN}")),
        Some("Bearer".to_string()),
    ] {
        let resp = post_echo(&app, auth.clone(), stage_starting().to_string()).await;
        assert_eq!(resp.status(), 401, "{auth:?}");
    }
    assert!(echo.events.lock().unwrap().is_empty(), "nothing dispatched");
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains(r#"slackops_echo_events_total{kind="unauthorized"} 6"#),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn echo_with_basic_credentials_carrying_the_token_as_password_is_accepted() {
    let echo = RecordingEcho::default();
    let app = app_with_echo(echo.clone()).await;
    // echo builds Basic from an endpoint's username/password.
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("echo:{ECHO_TOKEN}"));
    let resp = post_echo(
        &app,
        Some(format!("Basic {basic}")),
        stage_starting().to_string(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "accepted");
    let events = echo.events.lock().unwrap().clone();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["content"]["stageId"], "01J6STAGE");

    // And the Bearer form.
    let resp = post_echo(&app, bearer(ECHO_TOKEN), stage_starting().to_string()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(echo.events.lock().unwrap().len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn echo_with_malformed_json_gets_400_with_a_message() {
    let echo = RecordingEcho::default();
    let app = app_with_echo(echo.clone()).await;
    let resp = post_echo(
        &app,
        bearer(ECHO_TOKEN),
        r#"{"details": {"type": "orca:stage"#,
    )
    .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "bad_request");
    assert!(
        body["message"].as_str().unwrap_or("").contains("JSON"),
        "the message says what is wrong: {body}"
    );

    // JSON that is not an event.
    let resp = post_echo(
        &app,
        bearer(ECHO_TOKEN),
        json!({"hello": "world"}).to_string(),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("details.type"),
        "{body}"
    );
    let resp = post_echo(&app, bearer(ECHO_TOKEN), "[1, 2]").await;
    assert_eq!(resp.status(), 400);
    assert!(echo.events.lock().unwrap().is_empty(), "nothing dispatched");
    app.stop().await;
}

#[tokio::test]
async fn echo_event_of_an_unknown_type_is_answered_200_and_ignored() {
    let echo = RecordingEcho::default();
    let app = app_with_echo(echo.clone()).await;
    let mut event = stage_starting();
    event["details"]["type"] = json!("igor:build:completed");
    event["details"]["source"] = json!("igor");
    let resp = app.echo(&event).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "ignored");
    assert!(echo.events.lock().unwrap().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn echo_events_sent_with_wrap_or_flatten_are_accepted() {
    let echo = RecordingEcho::default();
    let app = app_with_echo(echo.clone()).await;
    let event = stage_starting();

    // wrap: true (default eventName and fieldName).
    let wrapped = json!({"eventName": "spinnaker_events", "payload": event});
    // wrap with a custom fieldName.
    let wrapped_custom = json!({"eventName": "slackops", "event": event});
    // flatten: true — content and details as JSON strings.
    let mut flat = event.clone();
    flat["details"] = json!(event["details"].to_string());
    flat["content"] = json!(event["content"].to_string());
    // both.
    let wrapped_flat = json!({"eventName": "spinnaker_events", "payload": flat});

    for (name, body) in [
        ("wrap", wrapped),
        ("wrap with fieldName", wrapped_custom),
        ("flatten", flat.clone()),
        ("wrap and flatten", wrapped_flat),
    ] {
        let resp = app.echo(&body).await;
        assert_eq!(resp.status(), 200, "{name}");
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(answer["status"], "accepted", "{name}: {answer}");
    }
    let events = echo.events.lock().unwrap().clone();
    assert_eq!(events.len(), 4);
    for e in &events {
        assert_eq!(e["details"]["type"], "orca:stage:starting", "{e}");
        assert_eq!(
            e["content"]["execution"]["stages"][0]["type"], "manualJudgment",
            "the handler sees the plain event: {e}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for path in ["/healthz", "/readyz", "/metrics", "/nope"] {
        let resp = app.get(path).await;
        let id = resp
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{path} has x-request-id"))
            .to_string();
        assert!(!id.is_empty(), "{path}");
        ids.push(id);
    }
    let resp = post_echo(&app, None, "{}").await;
    assert_eq!(resp.status(), 401);
    assert!(
        resp.headers().contains_key("x-request-id"),
        "errors carry it too"
    );

    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "one id per request: {ids:?}");

    // An id set by a proxy in front is kept.
    let resp = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "lb-7f3a9c")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "lb-7f3a9c");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_shutdown_waits_for_a_running_job_which_ends_done() {
    for db in TestDb::all("ops::graceful_shutdown_waits_for_a_running_job").await {
        let engine = db.engine;
        let started = Arc::new(AtomicBool::new(false));
        let finished = Arc::new(AtomicUsize::new(0));
        let (s, f) = (started.clone(), finished.clone());
        let app = TestAppBuilder::new(db)
            .await
            .register(move |r| {
                r.job(
                    "test.slow",
                    handler(move |_job: Job| {
                        let (s, f) = (s.clone(), f.clone());
                        async move {
                            s.store(true, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            f.fetch_add(1, Ordering::SeqCst);
                            Ok(())
                        }
                    }),
                );
            })
            .spawn()
            .await;
        let state = app.state.clone();
        let address = app.url("/healthz");
        let id = state
            .jobs()
            .enqueue(NewJob::new("test.slow", &json!({})))
            .await
            .expect("enqueue")
            .expect("a new job");
        crate::helpers::eventually(Duration::from_secs(5), "the job to start", || async {
            started.load(Ordering::SeqCst).then_some(())
        })
        .await;

        let t = Instant::now();
        app.stop().await;
        let took = t.elapsed();

        assert_eq!(
            finished.load(Ordering::SeqCst),
            1,
            "{engine:?}: the handler finished"
        );
        let r = state.jobs().get(&id).await.expect("read").expect("stored");
        assert_eq!(r.state, "done", "{engine:?}: the job was recorded as done");
        assert_eq!(r.attempts, 1, "{engine:?}");
        assert!(
            took >= Duration::from_millis(500),
            "{engine:?}: stop waited for the job ({took:?})"
        );
        assert!(
            took < Duration::from_secs(5),
            "{engine:?}: and no longer than needed ({took:?})"
        );
        // No longer accepting.
        assert!(
            reqwest::Client::new().get(&address).send().await.is_err(),
            "{engine:?}: the listener is closed after stop"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_shutdown_finishes_an_in_flight_request() {
    let echo = RecordingEcho {
        delay: Some(Duration::from_secs(1)),
        ..Default::default()
    };
    let app = app_with_echo(echo.clone()).await;
    let client = app.client.clone();
    let url = app.url("/spinnaker/events");
    let started = echo.started.notified();
    let request = tokio::spawn(async move {
        client
            .post(url)
            .bearer_auth(ECHO_TOKEN)
            .json(&stage_starting())
            .send()
            .await
    });
    tokio::time::timeout(Duration::from_secs(5), started)
        .await
        .expect("the handler started");
    app.stop().await;
    let resp = request
        .await
        .expect("task")
        .expect("the in-flight request got its answer");
    assert_eq!(resp.status(), 200);
    assert_eq!(echo.events.lock().unwrap().len(), 1);
}
