//! Scheduled maintenance: the `/announce maintenance` modal (valid and invalid submissions), the
//! `/api/v1/maintenances` API (tokens, bad bodies naming the field), the announcements at
//! creation, start and end (each exactly once, with an injected clock), and webhook notifiers
//! (signed, retried after a failure).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::http::HeaderMap;
use serde_json::{Value, json};
use slackops::clock::ManualClock;
use slackops::config::{Secret, WebhookSettings};
use slackops::registry::{CommandHandler, SlackCtx};
use slackops::slack::ack::Ack;
use slackops::slack::payload::SlashCommand;

use crate::helpers::{API_TOKEN, TestApp, TestAppBuilder, TestDb, eventually};
use crate::status::catalogue;

const CHANNEL: &str = "C0ANNOUNCE";
const USER: &str = "U0OPS";

/// Stands in for the announcements feature's `/announce`, which hands `maintenance` over to
/// `slackops::maintenance::command`.
struct Announce;

#[async_trait]
impl CommandHandler for Announce {
    async fn handle(&self, cx: SlackCtx, cmd: SlashCommand) -> anyhow::Result<Ack> {
        if cmd.text.trim().starts_with("maintenance") {
            slackops::maintenance::command(cx, cmd).await
        } else {
            Ok(Ack::ephemeral("not this test's business"))
        }
    }
}

fn builder_settings(s: &mut slackops::config::Settings) {
    s.announcements.systems = catalogue();
    s.announcements.channel = Some(CHANNEL.into());
    s.status.refresh_interval_ms = 100;
}

async fn app_on(db: TestDb) -> TestApp {
    let app = TestAppBuilder::new(db)
        .await
        .settings(builder_settings)
        .register(|r| {
            r.command("/announce", Announce);
        })
        .spawn()
        .await;
    app.slack.add_channel(CHANNEL, "announcements");
    app
}

fn rfc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn api(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
) -> (u16, Value) {
    let mut req = app
        .client
        .request(method.parse().unwrap(), app.url(path))
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn window(title: &str, start: i64, end: i64) -> String {
    json!({"title": title, "summary": "Expect short blips.", "systems": ["api", "db"],
           "starts_at": rfc(start), "ends_at": rfc(end), "public": true})
    .to_string()
}

fn texts(app: &TestApp) -> Vec<String> {
    app.slack
        .messages_in(CHANNEL)
        .into_iter()
        .map(|m| m.text)
        .collect()
}

fn count(app: &TestApp, needle: &str) -> usize {
    texts(app).iter().filter(|t| t.contains(needle)).count()
}

// ------------------------------------------------------------------------------------ modal

async fn open_modal(app: &TestApp) -> Value {
    let r = app.command("/announce", "maintenance", USER).await;
    assert_eq!(r.status(), 200);
    let views = app.slack.views();
    let v = views.last().expect("a modal was opened").view.clone();
    assert_eq!(v["callback_id"], "maintenance:create");
    v
}

fn submission(app: &TestApp, view: &Value, values: Value) -> Value {
    json!({
        "type": "view_submission",
        "user": {"id": USER, "username": "ops", "name": "ops", "team_id": "T0FAKE"},
        "team": {"id": "T0FAKE", "domain": "fake"},
        "api_app_id": "A0APP",
        "token": "legacy",
        "trigger_id": app.slack.trigger_id(),
        "view": {
            "id": view["id"], "team_id": "T0FAKE", "type": "modal",
            "callback_id": view["callback_id"], "private_metadata": view["private_metadata"],
            "hash": view["hash"], "root_view_id": view["id"], "previous_view_id": null,
            "state": {"values": values}
        },
        "response_urls": []
    })
}

fn values(title: &str, start_secs: Option<i64>, end_secs: Option<i64>, systems: &[&str]) -> Value {
    let dt = |s: Option<i64>| match s {
        Some(s) => json!({"value": {"type": "datetimepicker", "selected_date_time": s}}),
        None => json!({"value": {"type": "datetimepicker", "selected_date_time": null}}),
    };
    json!({
        "title": {"value": {"type": "plain_text_input", "value": title}},
        "summary": {"value": {"type": "plain_text_input", "value": "Rolling restart <!channel>"}},
        "starts_at": dt(start_secs),
        "ends_at": dt(end_secs),
        "systems": {"value": {"type": "multi_static_select", "selected_options":
            systems.iter().map(|s| json!({"value": s, "text": {"type": "plain_text", "text": s}})).collect::<Vec<_>>()}},
        "public": {"value": {"type": "checkboxes", "selected_options": [{"value": "public", "text": {"type": "plain_text", "text": "Show"}}]}},
    })
}

async fn submit(app: &TestApp, payload: &Value) -> Value {
    let r = app.interaction(payload).await;
    assert_eq!(r.status(), 200);
    let raw = r.text().await.unwrap();
    if raw.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&raw).unwrap()
    }
}

#[tokio::test]
async fn announce_maintenance_opens_a_modal_whose_valid_submission_schedules_and_announces_once() {
    let app = app_on(TestDb::sqlite()).await;
    let view = open_modal(&app).await;
    let blocks: Vec<&str> = view["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["block_id"].as_str())
        .collect();
    assert_eq!(
        blocks,
        vec![
            "title",
            "summary",
            "starts_at",
            "ends_at",
            "systems",
            "public"
        ]
    );
    assert_eq!(view["blocks"][2]["element"]["type"], "datetimepicker");
    assert_eq!(
        view["blocks"][4]["element"]["options"]
            .as_array()
            .unwrap()
            .len(),
        catalogue().len()
    );

    let start = now_ms() / 1000 + 3600;
    let payload = submission(
        &app,
        &view,
        values("Database upgrade", Some(start), Some(start + 7200), &["db"]),
    );
    let ack = submit(&app, &payload).await;
    assert!(ack.is_null(), "the modal closes: {ack}");

    let msgs = app
        .slack
        .wait_for_messages(CHANNEL, 1, Duration::from_secs(10))
        .await;
    assert!(
        msgs[0]
            .text
            .contains("Scheduled maintenance: Database upgrade"),
        "{}",
        msgs[0].text
    );
    assert!(msgs[0].text.contains("Database"));
    assert!(
        msgs[0].text.contains("&lt;!channel&gt;"),
        "user text is escaped: {}",
        msgs[0].text
    );
    assert!(msgs[0].text.contains(&format!("<@{USER}>")));
    let (_, list) = api(&app, "GET", "/api/v1/maintenances", Some(API_TOKEN), None).await;
    let m = &list["maintenances"][0];
    assert_eq!(m["title"], "Database upgrade");
    assert_eq!(m["systems"], json!(["db"]));
    assert_eq!(m["starts_at"], rfc(start * 1000));
    assert_eq!(m["public"], true);
    assert_eq!(m["created_by"], USER);

    // Submitting the same modal again is another window, but nothing is posted twice for one.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(&app, "Scheduled maintenance"), 1);
    app.stop().await;
}

#[tokio::test]
async fn the_maintenance_modal_reports_each_invalid_field_and_schedules_nothing() {
    let app = app_on(TestDb::sqlite()).await;
    let view = open_modal(&app).await;
    let now = now_ms() / 1000;
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            values("Upgrade", Some(now + 7200), Some(now + 3600), &["db"]),
            "ends_at",
            "after the start",
        ),
        (
            values("Upgrade", Some(now - 7200), Some(now + 3600), &["db"]),
            "starts_at",
            "in the past",
        ),
        (
            values("Upgrade", Some(now - 7200), Some(now - 3600), &["db"]),
            "ends_at",
            "in the past",
        ),
        (
            values("  ", Some(now + 3600), Some(now + 7200), &["db"]),
            "title",
            "Required",
        ),
        (
            values("Upgrade", Some(now + 3600), Some(now + 7200), &[]),
            "systems",
            "at least one",
        ),
        (
            values("Upgrade", None, Some(now + 7200), &["db"]),
            "starts_at",
            "date and a time",
        ),
        (
            values(
                "Upgrade",
                Some(now + 3600),
                Some(now + 3600 + 30 * 86400),
                &["db"],
            ),
            "ends_at",
            "at most",
        ),
    ];
    for (vals, block, words) in cases {
        let ack = submit(&app, &submission(&app, &view, vals)).await;
        assert_eq!(ack["response_action"], "errors", "{block}: {ack}");
        let msg = ack["errors"][block]
            .as_str()
            .unwrap_or_else(|| panic!("{block}: {ack}"));
        assert!(msg.contains(words), "{block}: {msg}");
    }
    let (_, list) = api(&app, "GET", "/api/v1/maintenances", Some(API_TOKEN), None).await;
    assert_eq!(list["maintenances"], json!([]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(texts(&app).is_empty());
    app.stop().await;
}

// -------------------------------------------------------------------------------------- API

#[tokio::test]
async fn the_maintenance_api_requires_a_valid_token() {
    let app = app_on(TestDb::sqlite()).await;
    let body = window("Upgrade", now_ms() + 3_600_000, now_ms() + 7_200_000);
    for token in [None, Some("not-the-token-at-all-0123")] {
        let (status, v) = api(
            &app,
            "POST",
            "/api/v1/maintenances",
            token,
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 401, "{v}");
        assert_eq!(v["error"], "unauthorized");
        let (status, _) = api(&app, "GET", "/api/v1/maintenances", token, None).await;
        assert_eq!(status, 401);
    }
    let (status, v) = api(
        &app,
        "POST",
        "/api/v1/maintenances",
        Some(API_TOKEN),
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["phase"], "upcoming");
    let id = v["id"].as_str().unwrap();
    let (status, one) = api(
        &app,
        "GET",
        &format!("/api/v1/maintenances/{id}"),
        Some(API_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(one["title"], "Upgrade");
    app.stop().await;
}

#[tokio::test]
async fn the_maintenance_api_answers_400_naming_the_field_of_a_bad_body() {
    let app = app_on(TestDb::sqlite()).await;
    let now = now_ms();
    let (h1, h2) = (now + 3_600_000, now + 7_200_000);
    let good =
        json!({"title": "Upgrade", "systems": ["api"], "starts_at": rfc(h1), "ends_at": rfc(h2)});
    let with = |k: &str, v: Value| {
        let mut b = good.clone();
        b[k] = v;
        b.to_string()
    };
    let without = |k: &str| {
        let mut b = good.clone();
        b.as_object_mut().unwrap().remove(k);
        b.to_string()
    };
    let cases: Vec<(String, &str)> = vec![
        ("{not json".into(), "body"),
        ("[1, 2]".into(), "body"),
        (without("title"), "title"),
        (with("title", json!(42)), "title"),
        (without("starts_at"), "starts_at"),
        (with("starts_at", json!("tomorrow")), "starts_at"),
        (with("ends_at", json!(rfc(h1 - 60_000))), "ends_at"),
        (with("starts_at", json!(rfc(now - 86_400_000))), "starts_at"),
        (with("systems", json!("api")), "systems"),
        (with("systems", json!(["nope"])), "systems"),
        (with("public", json!("yes")), "public"),
        (with("colour", json!("red")), "colour"),
    ];
    for (body, field) in cases {
        let (status, v) = api(
            &app,
            "POST",
            "/api/v1/maintenances",
            Some(API_TOKEN),
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["error"], "bad_request");
        assert_eq!(v["field"], field, "{body}: {v}");
    }
    let (_, list) = api(&app, "GET", "/api/v1/maintenances", Some(API_TOKEN), None).await;
    assert_eq!(list["maintenances"], json!([]), "nothing was scheduled");

    // PATCH and cancel: the same checks, and what no longer can change.
    let (_, m) = api(
        &app,
        "POST",
        "/api/v1/maintenances",
        Some(API_TOKEN),
        Some(good.to_string()),
    )
    .await;
    let path = format!("/api/v1/maintenances/{}", m["id"].as_str().unwrap());
    // The notice renders the maintenance as it is when its job runs: wait for it
    // so that the change below is announced as a change, whatever the load.
    eventually(Duration::from_secs(10), "the scheduled notice", || async {
        (count(&app, "Scheduled maintenance: Upgrade") == 1).then_some(())
    })
    .await;
    let (status, v) = api(
        &app,
        "PATCH",
        &path,
        Some(API_TOKEN),
        Some(json!({"ends_at": rfc(h1 - 1000)}).to_string()),
    )
    .await;
    assert_eq!((status, v["field"].as_str()), (400, Some("ends_at")), "{v}");
    let (status, v) = api(
        &app,
        "PATCH",
        &path,
        Some(API_TOKEN),
        Some(json!({"title": "Bigger upgrade", "ends_at": rfc(h2 + 3_600_000)}).to_string()),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["title"], "Bigger upgrade");
    assert_eq!(v["version"], 2);
    let (status, _) = api(
        &app,
        "PATCH",
        "/api/v1/maintenances/nope",
        Some(API_TOKEN),
        Some("{}".into()),
    )
    .await;
    assert_eq!(status, 404);
    let (status, v) = api(
        &app,
        "POST",
        &format!("{path}/cancel"),
        Some(API_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v["phase"], "canceled");
    let (status, v) = api(
        &app,
        "PATCH",
        &path,
        Some(API_TOKEN),
        Some(json!({"title": "x"}).to_string()),
    )
    .await;
    assert_eq!((status, v["field"].as_str()), (400, Some("id")), "{v}");
    let (status, _) = api(
        &app,
        "POST",
        &format!("{path}/cancel"),
        Some(API_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 400, "already canceled");

    // Each change was announced once: scheduled, changed, canceled.
    eventually(Duration::from_secs(10), "three announcements", || async {
        (texts(&app).len() >= 3).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        count(&app, "Scheduled maintenance: Upgrade"),
        1,
        "{:?}",
        texts(&app)
    );
    assert_eq!(count(&app, "was changed"), 1);
    assert_eq!(count(&app, "was canceled"), 1);
    app.stop().await;
}

// ---------------------------------------------------------------- announcements on schedule

#[tokio::test]
async fn maintenance_is_announced_when_created_when_it_starts_and_when_it_ends_exactly_once() {
    for db in TestDb::all("maintenance_is_announced_exactly_once").await {
        let engine = db.engine;
        let clock = ManualClock::at_secs(chrono::Utc::now().timestamp());
        let now = clock_now(&clock);
        let app = TestAppBuilder::new(db)
            .await
            .settings(|s| {
                builder_settings(s);
                s.maintenance.check_interval_secs = 1;
            })
            .clock(Arc::new(clock.clone()))
            .with_periodic()
            .spawn()
            .await;
        app.slack.add_channel(CHANNEL, "announcements");
        let (start, end) = (now + 10 * 60_000, now + 70 * 60_000);
        let (status, m) = api(
            &app,
            "POST",
            "/api/v1/maintenances",
            Some(API_TOKEN),
            Some(window("Kernel patching", start, end)),
        )
        .await;
        assert_eq!(status, 201, "{m}");
        let first = app
            .slack
            .wait_for_messages(CHANNEL, 1, Duration::from_secs(10))
            .await;
        assert!(
            first[0]
                .text
                .contains("Scheduled maintenance: Kernel patching")
        );
        assert!(first[0].thread_ts.is_none());

        // Nothing more while it is upcoming, however often the announcer runs.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(texts(&app).len(), 1, "{engine:?}: {:?}", texts(&app));

        clock.set_ms(start + 1000);
        eventually(
            Duration::from_secs(10),
            "the start announcement",
            || async { (count(&app, "has started") == 1).then_some(()) },
        )
        .await;
        // Runs racing each other (as on several replicas) queue nothing more.
        let (a, b) = tokio::join!(
            slackops::maintenance::announce::announce_due(&app.state),
            slackops::maintenance::announce::announce_due(&app.state)
        );
        assert_eq!(a.unwrap() + b.unwrap(), 0);
        let started = app
            .slack
            .messages_in(CHANNEL)
            .into_iter()
            .find(|m| m.text.contains("has started"))
            .unwrap();
        assert_eq!(
            started.thread_ts.as_deref(),
            Some(first[0].ts.as_str()),
            "a reply in the creation's thread"
        );

        clock.set_ms(end + 1000);
        eventually(Duration::from_secs(10), "the end announcement", || async {
            (count(&app, "has ended") == 1).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(count(&app, "Scheduled maintenance"), 1, "{engine:?}");
        assert_eq!(count(&app, "has started"), 1, "{engine:?}");
        assert_eq!(count(&app, "has ended"), 1, "{engine:?}");
        assert_eq!(texts(&app).len(), 3, "{engine:?}: {:?}", texts(&app));
        let (_, one) = api(
            &app,
            "GET",
            &format!("/api/v1/maintenances/{}", m["id"].as_str().unwrap()),
            Some(API_TOKEN),
            None,
        )
        .await;
        assert_eq!(one["phase"], "finished");
        app.stop().await;
    }
}

fn clock_now(c: &ManualClock) -> i64 {
    use slackops::clock::Clock;
    c.now_ms()
}

// ------------------------------------------------------------------------------- notifiers

#[derive(Clone, Default)]
struct Receiver {
    hits: Arc<Mutex<Vec<(HeaderMap, String)>>>,
    /// Answers to give, in order; 200 once they run out.
    script: Arc<Mutex<Vec<u16>>>,
}

/// A local webhook receiver that records what it gets and fails as scripted.
async fn start_receiver(script: Vec<u16>) -> (String, Receiver) {
    let rx = Receiver {
        script: Arc::new(Mutex::new(script)),
        ..Default::default()
    };
    let state = rx.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let state = state.clone();
            async move {
                state.hits.lock().unwrap().push((headers, body));
                let mut s = state.script.lock().unwrap();
                let code = if s.is_empty() { 200 } else { s.remove(0) };
                axum::http::StatusCode::from_u16(code).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), rx)
}

#[tokio::test]
async fn a_webhook_delivery_that_fails_is_retried_until_it_succeeds_and_is_signed() {
    for db in TestDb::all("webhook_retried_after_a_failure").await {
        let (url, rx) = start_receiver(vec![500, 503]).await;
        let (other_url, other) = start_receiver(vec![]).await;
        let app = TestAppBuilder::new(db)
            .await
            .settings(|s| {
                builder_settings(s);
                s.notifiers.webhooks = vec![
                    WebhookSettings {
                        name: "ops".into(),
                        url: Some(url.parse().unwrap()),
                        secret: Secret::new("webhook-secret"),
                        events: vec!["maintenance.*".into()],
                    },
                    WebhookSettings {
                        name: "only-cancels".into(),
                        url: Some(other_url.parse().unwrap()),
                        secret: Secret::default(),
                        events: vec!["maintenance.canceled".into()],
                    },
                ];
            })
            .spawn()
            .await;
        let (status, m) = api(
            &app,
            "POST",
            "/api/v1/maintenances",
            Some(API_TOKEN),
            Some(window(
                "Firewall change",
                now_ms() + 3_600_000,
                now_ms() + 7_200_000,
            )),
        )
        .await;
        assert_eq!(status, 201);

        let hits = eventually(
            Duration::from_secs(15),
            "a delivery after two failures",
            || async {
                let h = rx.hits.lock().unwrap().clone();
                (h.len() >= 3).then_some(h)
            },
        )
        .await;
        let bodies: Vec<&String> = hits.iter().map(|(_, b)| b).collect();
        assert!(
            bodies.iter().all(|b| *b == bodies[0]),
            "every attempt sends the same event"
        );
        let event: Value = serde_json::from_str(bodies[0]).unwrap();
        assert_eq!(event["kind"], "maintenance.scheduled");
        assert_eq!(event["id"], m["id"]);
        assert_eq!(event["data"]["title"], "Firewall change");
        let (headers, body) = &hits[2];
        assert_eq!(headers["x-slackops-event"], "maintenance.scheduled");
        let ts: i64 = headers["x-slackops-timestamp"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            headers["x-slackops-signature"].to_str().unwrap(),
            slackops::notifiers::signature("webhook-secret", ts, body.as_bytes())
        );
        let delivery = headers["x-slackops-delivery"].to_str().unwrap().to_string();
        assert!(
            hits.iter()
                .all(|(h, _)| h["x-slackops-delivery"] == delivery.as_str())
        );
        let job = app.state.jobs().get(&delivery).await.unwrap().unwrap();
        eventually(Duration::from_secs(5), "the delivery job done", || async {
            let j = app.state.jobs().get(&delivery).await.unwrap()?;
            (j.state == "done").then_some(())
        })
        .await;
        assert_eq!(job.kind, "notifiers.deliver");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            rx.hits.lock().unwrap().len(),
            3,
            "delivered once it succeeded, not again"
        );
        assert!(
            other.hits.lock().unwrap().is_empty(),
            "a webhook gets only the events it asked for"
        );

        // The filtered webhook hears the cancellation; the secretless one is not signed.
        let path = format!("/api/v1/maintenances/{}/cancel", m["id"].as_str().unwrap());
        assert_eq!(api(&app, "POST", &path, Some(API_TOKEN), None).await.0, 200);
        let got = eventually(Duration::from_secs(10), "the cancel event", || async {
            other.hits.lock().unwrap().first().cloned()
        })
        .await;
        assert_eq!(
            serde_json::from_str::<Value>(&got.1).unwrap()["kind"],
            "maintenance.canceled"
        );
        assert!(got.0.get("x-slackops-signature").is_none());
        app.stop().await;
    }
}

#[tokio::test]
async fn a_webhook_that_times_out_is_retried() {
    // A receiver that does not answer within notifiers.timeout_ms the first time.
    let hits = Arc::new(Mutex::new(0usize));
    let counter = hits.clone();
    let app_router = axum::Router::new().route(
        "/slow",
        axum::routing::post(move || {
            let counter = counter.clone();
            async move {
                let n = {
                    let mut h = counter.lock().unwrap();
                    *h += 1;
                    *h
                };
                if n == 1 {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/slow", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app_router).await;
    });
    let app = TestAppBuilder::new(TestDb::sqlite())
        .await
        .settings(|s| {
            builder_settings(s);
            s.notifiers.timeout_ms = 300;
            s.notifiers.webhooks = vec![WebhookSettings {
                name: "slow".into(),
                url: Some(url.parse().unwrap()),
                ..Default::default()
            }];
        })
        .spawn()
        .await;
    let (status, _) = api(
        &app,
        "POST",
        "/api/v1/maintenances",
        Some(API_TOKEN),
        Some(window(
            "Slow hook",
            now_ms() + 3_600_000,
            now_ms() + 7_200_000,
        )),
    )
    .await;
    assert_eq!(status, 201);
    eventually(
        Duration::from_secs(10),
        "a second attempt after the timeout",
        || async { (*hits.lock().unwrap() >= 2).then_some(()) },
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_maintenance_patch_based_on_a_stale_version_is_refused_with_409_and_changes_nothing() {
    let app = app_on(TestDb::sqlite()).await;
    let now = now_ms();
    let (h1, h2) = (now + 3_600_000, now + 7_200_000);
    let (status, m) = api(
        &app,
        "POST",
        "/api/v1/maintenances",
        Some(API_TOKEN),
        Some(window("Upgrade", h1, h2)),
    )
    .await;
    assert_eq!(status, 201, "{m}");
    assert_eq!(m["version"], 1);
    let path = format!("/api/v1/maintenances/{}", m["id"].as_str().unwrap());

    // Two writers read version 1; the first change wins and makes it version 2.
    let (status, v) = api(
        &app,
        "PATCH",
        &path,
        Some(API_TOKEN),
        Some(json!({"title": "First writer", "version": 1}).to_string()),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["version"], 2);

    // The second writer's change, based on version 1, must not overwrite it.
    let (status, v) = api(
        &app,
        "PATCH",
        &path,
        Some(API_TOKEN),
        Some(json!({"title": "Stale writer", "version": 1}).to_string()),
    )
    .await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"], "conflict", "{v}");
    let (_, now_is) = api(&app, "GET", &path, Some(API_TOKEN), None).await;
    assert_eq!(now_is["title"], "First writer", "{now_is}");
    assert_eq!(now_is["version"], 2);

    // A malformed version names the field; the current version applies.
    for bad in [json!("2"), json!(0), json!(1.5)] {
        let (status, v) = api(
            &app,
            "PATCH",
            &path,
            Some(API_TOKEN),
            Some(json!({"title": "x", "version": bad}).to_string()),
        )
        .await;
        assert_eq!((status, v["field"].as_str()), (400, Some("version")), "{v}");
    }
    let (status, v) = api(
        &app,
        "PATCH",
        &path,
        Some(API_TOKEN),
        Some(json!({"title": "Second writer, re-read", "version": 2}).to_string()),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["version"], 3);
    // `version` is for changes only: a new window refuses it.
    let mut body: Value = serde_json::from_str(&window("New", h1, h2)).unwrap();
    body["version"] = json!(1);
    let (status, v) = api(
        &app,
        "POST",
        "/api/v1/maintenances",
        Some(API_TOKEN),
        Some(body.to_string()),
    )
    .await;
    assert_eq!((status, v["field"].as_str()), (400, Some("version")), "{v}");

    // The refused change was never announced.
    eventually(
        Duration::from_secs(10),
        "the two changes announced",
        || async {
            (texts(&app).iter().filter(|t| t.contains("re-read")).count() >= 1).then_some(())
        },
    )
    .await;
    assert!(
        !texts(&app).iter().any(|t| t.contains("Stale writer")),
        "{:?}",
        texts(&app)
    );
}

#[tokio::test]
async fn the_maintenance_modal_submitted_twice_schedules_one_window() {
    for db in TestDb::all("maintenance_modal_submitted_twice").await {
        let engine = db.engine;
        let app = app_on(db).await;
        let view = open_modal(&app).await;
        let start = now_ms() / 1000 + 3600;
        let payload = submission(
            &app,
            &view,
            values("Kernel upgrade", Some(start), Some(start + 3600), &["db"]),
        );
        // A double press (both at once), then a network retry of the same submission.
        let (a, b) = tokio::join!(submit(&app, &payload), submit(&app, &payload));
        let c = submit(&app, &payload).await;
        assert!(
            a.is_null() && b.is_null() && c.is_null(),
            "{engine:?}: the modal closes: {a} {b} {c}"
        );
        app.slack
            .wait_for_messages(CHANNEL, 1, Duration::from_secs(10))
            .await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        let (_, list) = api(&app, "GET", "/api/v1/maintenances", Some(API_TOKEN), None).await;
        assert_eq!(
            list["maintenances"].as_array().map(Vec::len),
            Some(1),
            "{engine:?}: one window: {list}"
        );
        assert_eq!(
            count(&app, "Scheduled maintenance: Kernel upgrade"),
            1,
            "{engine:?}"
        );
        // The same modal with other values (a corrected form) is a submission of its own.
        let other = submission(
            &app,
            &view,
            values(
                "Kernel upgrade, part 2",
                Some(start),
                Some(start + 3600),
                &["db"],
            ),
        );
        assert!(submit(&app, &other).await.is_null());
        let (_, list) = api(&app, "GET", "/api/v1/maintenances", Some(API_TOKEN), None).await;
        assert_eq!(
            list["maintenances"].as_array().map(Vec::len),
            Some(2),
            "{engine:?}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_maintenance_notice_shows_hostile_title_and_summary_as_text() {
    let app = app_on(TestDb::sqlite()).await;
    let hostile = "<!channel> <https://evil.example|Log in> & <@U0EVIL>";
    let now = now_ms();
    let body = json!({"title": hostile, "summary": hostile, "systems": ["api"],
                      "starts_at": rfc(now + 3_600_000), "ends_at": rfc(now + 7_200_000)});
    let (status, _) = api(
        &app,
        "POST",
        "/api/v1/maintenances",
        Some(API_TOKEN),
        Some(body.to_string()),
    )
    .await;
    assert_eq!(status, 201);
    let posted = app
        .slack
        .wait_for_messages(CHANNEL, 1, Duration::from_secs(10))
        .await;
    let shown = format!("{} {}", posted[0].text, posted[0].blocks);
    for raw in ["<!channel>", "<https://evil.example", "<@U0EVIL>"] {
        assert!(!shown.contains(raw), "raw {raw} in {shown}");
    }
    assert!(
        posted[0].text.contains("&lt;!channel&gt;"),
        "{}",
        posted[0].text
    );
    app.stop().await;
}
