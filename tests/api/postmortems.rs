//! Postmortems followed up, black-box: owner and due date (working days) when an outage is
//! resolved with "postmortem needed", DM reminders once per step under an injected clock, the
//! report added by the Add postmortem button and by `PATCH /api/v1/announcements/{id}`, with its
//! thread reply, status page update and webhook event, and `/announce postmortems` — on SQLite
//! and PostgreSQL.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use slackops::announcements::{model, postmortem};
use slackops::clock::{Clock, ManualClock};
use slackops::config::{Secret, SystemEntry};
use slackops::notifiers::settings::WebhookSettings;

use crate::helpers::{API_TOKEN, TestApp, TestAppBuilder, TestDb, eventually};
use crate::support::fake_slack::Message;

const CHANNEL: &str = "C0OUTAGE";
const ALICE: &str = "U0ALICE";
const BOB: &str = "U0BOB";
const WAIT: Duration = Duration::from_secs(10);
const DAY: i64 = 86_400_000;
/// Friday 2026-12-04 16:00 UTC.
const FRIDAY_4PM: i64 = 1_796_400_000_000;

type Hits = Arc<Mutex<Vec<Value>>>;

/// A local webhook receiver recording the events it gets.
async fn receiver() -> (String, Hits) {
    let hits: Hits = Arc::default();
    let h = hits.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let h = h.clone();
            async move {
                h.lock()
                    .unwrap()
                    .push(serde_json::from_str(&body).unwrap_or(Value::Null));
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), hits)
}

async fn spawn(db: TestDb, clock: &ManualClock, hook: &str) -> TestApp {
    let hook = hook.to_string();
    let app = TestAppBuilder::new(db)
        .await
        .settings(move |s| {
            let a = &mut s.announcements;
            a.channel = Some(CHANNEL.into());
            a.systems = vec![SystemEntry {
                id: "payments".into(),
                name: "Payments".into(),
                group: None,
            }];
            s.notifiers.webhooks = vec![WebhookSettings {
                name: "postmortems".into(),
                url: Some(hook.parse().unwrap()),
                secret: Secret::default(),
                events: vec!["outage.postmortem".into()],
            }];
        })
        .clock(Arc::new(clock.clone()))
        .spawn()
        .await;
    app.slack.add_channel(CHANNEL, "outages");
    app.slack.add_channel("C0OPS", "ops");
    app.slack
        .add_user(ALICE, "alice", "alice@example.com", "UTC");
    app.slack.add_user(BOB, "bob", "bob@example.com", "UTC");
    app
}

async fn api(app: &TestApp, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
    let resp = app
        .client
        .request(method, app.url(path))
        .bearer_auth(API_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A public outage announced and resolved (at the clock's time) with "postmortem needed";
/// returns its id and the announcement message once it shows the resolution.
async fn resolved_needing_a_postmortem(app: &TestApp) -> (String, Message) {
    let (status, o) = api(
        app,
        reqwest::Method::POST,
        "/api/v1/announcements",
        json!({"summary": "Card payments fail", "systems": ["payments"], "severity": "major",
               "eta": "2h", "resolution_assignee": ALICE, "communication_assignee": BOB,
               "public": true}),
    )
    .await;
    assert_eq!(status, 201, "{o}");
    let id = o["id"].as_str().unwrap().to_string();
    app.slack.wait_for_messages(CHANNEL, 1, WAIT).await;
    let (status, r) = api(
        app,
        reqwest::Method::PATCH,
        &format!("/api/v1/announcements/{id}"),
        json!({"state": "resolved", "resolution": {"summary": "Rolled back", "postmortem": true}}),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let m = announcement_showing(app, "A postmortem is due").await;
    (id, m)
}

async fn announcement_showing(app: &TestApp, what: &str) -> Message {
    eventually(WAIT, what, || async {
        app.slack
            .messages_in(CHANNEL)
            .into_iter()
            .find(|m| m.thread_ts.is_none() && m.blocks.to_string().contains(what))
    })
    .await
}

fn buttons(m: &Message) -> Vec<String> {
    m.blocks
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["action_id"].as_str().map(str::to_owned))
        .collect()
}

fn dms(app: &TestApp, user: &str) -> Vec<Message> {
    app.slack
        .dm_channel_of(user)
        .map(|c| app.slack.messages_in(&c))
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.text.contains("postmortem"))
        .collect()
}

async fn remind(app: &TestApp) -> usize {
    postmortem::remind(&app.state).await.expect("reminders run")
}

#[tokio::test]
async fn a_postmortem_is_due_in_working_days_and_reminded_once_per_step() {
    for db in TestDb::all("a_postmortem_is_due_in_working_days").await {
        let clock = ManualClock::at_secs(FRIDAY_4PM / 1000);
        let (hook, _) = receiver().await;
        let app = spawn(db, &clock, &hook).await;
        let (id, m) = resolved_needing_a_postmortem(&app).await;
        assert_eq!(
            buttons(&m),
            vec!["announcements:postmortem", "announcements:reopen"]
        );
        let owed = postmortem::owed(app.state.db().pool()).await.unwrap();
        assert_eq!(owed.len(), 1);
        assert_eq!(owed[0].owner, ALICE, "the resolution assignee owns it");
        assert_eq!(
            owed[0].due_at,
            FRIDAY_4PM + 7 * DAY,
            "5 working days after a Friday is the next Friday"
        );
        // Before the due date: nothing.
        app.settle_jobs().await;
        clock.set_ms(FRIDAY_4PM + 7 * DAY - 1);
        assert_eq!(remind(&app).await, 0);
        // At the due date: one DM, however often the check runs.
        app.settle_jobs().await;
        clock.set_ms(FRIDAY_4PM + 7 * DAY);
        assert_eq!(remind(&app).await, 1);
        assert_eq!(remind(&app).await, 0);
        // (Days pass after the DM went out, not while it is being sent.)
        eventually(WAIT, "the first DM", || async {
            (dms(&app, ALICE).len() == 1).then_some(())
        })
        .await;
        app.settle_jobs().await;
        clock.advance_ms(DAY);
        assert_eq!(remind(&app).await, 0, "every 2 days, not daily");
        app.settle_jobs().await;
        clock.advance_ms(DAY);
        assert_eq!(remind(&app).await, 1, "2 days after the due date");
        assert_eq!(remind(&app).await, 0);
        let sent = eventually(WAIT, "two DMs to the owner", || async {
            let d = dms(&app, ALICE);
            (d.len() == 2).then_some(d)
        })
        .await;
        assert!(sent[1].text.contains("overdue by 2d"), "{}", sent[1].text);
        assert!(
            sent[1]
                .blocks
                .to_string()
                .contains("announcements:postmortem")
        );
        assert!(dms(&app, BOB).is_empty(), "only the owner");
        // Once the report is linked, no more reminders.
        let (status, _) = api(
            &app,
            reqwest::Method::PATCH,
            &format!("/api/v1/announcements/{id}"),
            json!({"postmortem": {"url": "https://wiki.example.com/pm/1"}}),
        )
        .await;
        assert_eq!(status, 200);
        app.settle_jobs().await;
        clock.advance_ms(10 * DAY);
        assert_eq!(remind(&app).await, 0);
        assert!(
            model::load(app.state.db().pool(), &id)
                .await
                .unwrap()
                .is_some()
        );
    }
}

#[tokio::test]
async fn the_report_added_through_the_api_is_checked_posted_once_and_sent_everywhere() {
    for db in TestDb::all("the_report_added_through_the_api").await {
        let clock = ManualClock::at_secs(FRIDAY_4PM / 1000);
        let tick = {
            let c = clock.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    c.advance_ms(20);
                }
            })
        };
        let (hook, hits) = receiver().await;
        let app = spawn(db, &clock, &hook).await;
        let (id, m) = resolved_needing_a_postmortem(&app).await;
        let path = format!("/api/v1/announcements/{id}");
        for (body, field) in [
            (
                json!({"postmortem": {"url": "ftp://files.example.com/pm"}}),
                "postmortem.url",
            ),
            (
                json!({"postmortem": {"url": "not a link"}}),
                "postmortem.url",
            ),
            (json!({"postmortem": {}}), "postmortem.url"),
            (
                json!({"postmortem": {"url": "https://x.example", "colour": 1}}),
                "postmortem.colour",
            ),
            (
                json!({"postmortem": {"url": "https://x.example"}, "summary": "x", "reason": "y"}),
                "postmortem",
            ),
        ] {
            let (status, r) = api(&app, reqwest::Method::PATCH, &path, body.clone()).await;
            assert_eq!(
                (status, r["field"].as_str()),
                (400, Some(field)),
                "{body}: {r}"
            );
        }
        let url = "https://wiki.example.com/postmortems/checkout";
        let (status, o) = api(
            &app,
            reqwest::Method::PATCH,
            &path,
            json!({"postmortem": {"url": url, "summary": "Expired cert <!here>"}}),
        )
        .await;
        assert_eq!(status, 200, "{o}");
        assert_eq!(o["resolution"]["report_url"], url);
        assert_eq!(
            o["resolution"]["postmortem_summary"],
            "Expired cert <!here>"
        );
        // The same again changes nothing.
        let (status, _) = api(
            &app,
            reqwest::Method::PATCH,
            &path,
            json!({"postmortem": {"url": url, "summary": "Expired cert <!here>"}}),
        )
        .await;
        assert_eq!(status, 400);
        let updated = announcement_showing(&app, "the report").await;
        assert_eq!(updated.ts, m.ts);
        assert_eq!(
            buttons(&updated),
            vec!["announcements:reopen"],
            "nothing left to add"
        );
        let reply = eventually(WAIT, "the thread reply", || async {
            app.slack.messages_in(CHANNEL).into_iter().find(|r| {
                r.thread_ts.as_deref() == Some(m.ts.as_str()) && r.text.contains(":page_facing_up:")
            })
        })
        .await;
        assert!(
            reply.text.contains(url) && reply.text.contains("&lt;!here&gt;"),
            "{}",
            reply.text
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let replies = app
            .slack
            .messages_in(CHANNEL)
            .into_iter()
            .filter(|r| r.thread_ts.is_some() && r.text.contains(":page_facing_up:"))
            .count();
        assert_eq!(replies, 1, "one thread reply");
        let event = eventually(WAIT, "the webhook event", || async {
            hits.lock().unwrap().first().cloned()
        })
        .await;
        assert_eq!(event["data"]["resolution"]["report_url"], url, "{event}");
        let page = eventually(WAIT, "the status page's update", || async {
            let body = app.get("/status.json").await.text().await.ok()?;
            body.contains("Postmortem published").then_some(body)
        })
        .await;
        assert!(page.contains(url));
        assert_eq!(hits.lock().unwrap().len(), 1, "one event");
        // An open outage has no postmortem yet: 409.
        let (_, o2) = api(
            &app,
            reqwest::Method::POST,
            "/api/v1/announcements",
            json!({"summary": "Again", "systems": ["payments"], "severity": "major", "eta": "2h",
                   "resolution_assignee": ALICE, "communication_assignee": ALICE}),
        )
        .await;
        let (status, _) = api(
            &app,
            reqwest::Method::PATCH,
            &format!("/api/v1/announcements/{}", o2["id"].as_str().unwrap()),
            json!({"postmortem": {"url": url}}),
        )
        .await;
        assert_eq!(status, 409);
        tick.abort();
    }
}

fn click(app: &TestApp, user: &str, outage: &str, ts: &str) -> Value {
    json!({
        "type": "block_actions",
        "user": {"id": user, "username": "u", "team_id": "T0FAKE"},
        "team": {"id": "T0FAKE", "domain": "fake"},
        "api_app_id": "A0APP",
        "trigger_id": app.slack.trigger_id(),
        "container": {"type": "message", "message_ts": ts, "channel_id": CHANNEL},
        "channel": {"id": CHANNEL, "name": "outages"},
        "message": {"ts": ts, "type": "message"},
        "response_url": app.slack.response_url_for_message(CHANNEL, ts),
        "actions": [{"action_id": "announcements:postmortem", "block_id": "announcement",
                     "type": "button", "value": outage, "action_ts": crate::helpers::action_ts()}]
    })
}

fn submission(app: &TestApp, view: &Value, url: &str) -> Value {
    json!({
        "type": "view_submission",
        "user": {"id": ALICE, "username": "alice", "team_id": "T0FAKE"},
        "team": {"id": "T0FAKE", "domain": "fake"},
        "api_app_id": "A0APP",
        "trigger_id": app.slack.trigger_id(),
        "view": {"id": view["id"], "team_id": "T0FAKE", "type": "modal",
                 "callback_id": view["callback_id"], "private_metadata": view["private_metadata"],
                 "hash": view["hash"], "state": {"values": {
                     "url": {"value": {"type": "url_text_input", "value": url}},
                     "summary": {"value": {"type": "plain_text_input", "value": "Root cause: DNS"}}
                 }}},
        "response_urls": []
    })
}

/// An interaction signed at the service's (injected) time.
async fn interact(app: &TestApp, clock: &ManualClock, payload: &Value) -> reqwest::Response {
    let body = serde_urlencoded::to_string([("payload", payload.to_string())]).expect("form");
    app.post_signed_at(
        "/slack/interactions",
        "application/x-www-form-urlencoded",
        body.as_bytes(),
        clock.now_secs(),
    )
    .await
}

/// `/announce postmortems`, signed at the service's (injected) time.
async fn list_command(app: &TestApp, clock: &ManualClock) -> reqwest::Response {
    let body = app.command_body("/announce", "postmortems", BOB);
    app.post_signed_at(
        "/slack/commands",
        "application/x-www-form-urlencoded",
        body.as_bytes(),
        clock.now_secs(),
    )
    .await
}

#[tokio::test]
async fn the_report_added_with_the_button_and_the_open_list() {
    let clock = ManualClock::at_secs(FRIDAY_4PM / 1000);
    let (hook, _) = receiver().await;
    let app = spawn(TestDb::sqlite(), &clock, &hook).await;
    let (id, m) = resolved_needing_a_postmortem(&app).await;
    // Ten days later, the list shows it overdue (7 days after a Friday it was due).
    clock.advance_ms(10 * DAY);
    let resp = list_command(&app, &clock).await;
    assert_eq!(resp.status(), 200);
    let list: Value = resp.json().await.expect("an ephemeral list");
    let text = list["text"].as_str().unwrap_or_default().to_string();
    assert!(text.contains("Open postmortems* (1)"), "{text}");
    assert!(
        text.contains(&format!("<@{ALICE}>")) && text.contains("overdue by 3d"),
        "{text}"
    );
    // Someone not on the outage may not add it.
    app.slack.add_user("U0EVE", "eve", "eve@example.com", "UTC");
    let eve = click(&app, "U0EVE", &id, &m.ts);
    let resp = interact(&app, &clock, &eve).await;
    assert_eq!(resp.status(), 200);
    assert!(app.slack.views().is_empty(), "no modal for Eve");
    let resp = interact(&app, &clock, &click(&app, ALICE, &id, &m.ts)).await;
    assert_eq!(resp.status(), 200);
    let view = app
        .slack
        .views()
        .into_iter()
        .rev()
        .find(|v| v.view["callback_id"] == "announcements:postmortem")
        .expect("the postmortem modal")
        .view;
    let resp = interact(&app, &clock, &submission(&app, &view, "file:///etc/passwd")).await;
    let ack: Value = resp.json().await.expect("errors");
    assert_eq!(ack["response_action"], "errors", "{ack}");
    assert!(ack["errors"]["url"].is_string(), "{ack}");
    let resp = interact(
        &app,
        &clock,
        &submission(&app, &view, "https://wiki.example.com/pm/7"),
    )
    .await;
    assert_eq!(resp.text().await.unwrap(), "", "added: the modal closes");
    announcement_showing(&app, "Root cause: DNS").await;
    let resp = list_command(&app, &clock).await;
    let list: Value = resp.json().await.expect("an ephemeral list");
    assert!(
        list["text"]
            .as_str()
            .unwrap_or_default()
            .contains("No postmortem is open"),
        "{list}"
    );
}
