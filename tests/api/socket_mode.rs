//! Socket Mode, black-box: the real service with `slack.mode: socket` against the fake Socket Mode
//! edge and the fake Slack (tests/support, reference/slack-socket-mode.md). Envelopes go through
//! the same dispatcher as HTTP requests; these tests check what Slack sees (acks, their payloads
//! and timing, connections, readiness) and what the service does (handlers run once, one Gate
//! PATCH per judgment), on SQLite and PostgreSQL where storage is involved.
//!
//! Handlers registered here use names no feature owns (`/sockettest`, `sockettest:`), and record
//! what reached them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};
use slackops::registry::{
    ActionHandler, CommandHandler, EventHandler, ShortcutHandler, SlackCtx, ViewHandler,
};
use slackops::slack::ack::{Ack, Reply};
use slackops::slack::payload::{Action, EventCallback, Interaction, SlashCommand};
use slackops::state::AppState;

use crate::approvals_support::{
    APPROVER, APPROVER2, CHANNEL, add_mj, approvals_builder, click_payload, judgment_id_of,
    stage_event,
};
use crate::helpers::{TestApp, TestAppBuilder, TestDb, eventually};
use crate::support::fake_slack::Fault;
use crate::support::fake_socket_mode::{Ack as SocketAck, DispatchFailed};

const WAIT: Duration = Duration::from_secs(15);
const SLACK_DEADLINE: Duration = Duration::from_secs(3);

// ============================================================================================
// Recording handlers
// ============================================================================================

#[derive(Clone, Default)]
struct Seen {
    commands: Arc<Mutex<Vec<String>>>,
    clicks: Arc<Mutex<Vec<String>>>,
    events: Arc<Mutex<HashMap<String, usize>>>,
}

impl Seen {
    fn event_runs(&self, id: &str) -> usize {
        self.events.lock().unwrap().get(id).copied().unwrap_or(0)
    }
}

struct Command(Seen);
#[async_trait]
impl CommandHandler for Command {
    async fn handle(&self, _cx: SlackCtx, cmd: SlashCommand) -> anyhow::Result<Ack> {
        self.0.commands.lock().unwrap().push(cmd.text.clone());
        match cmd.text.as_str() {
            "slow" => {
                tokio::time::sleep(Duration::from_millis(3500)).await;
                Ok(Ack::ephemeral("slow result"))
            }
            "fail" => anyhow::bail!("the handler failed"),
            other => Ok(Ack::Message(Reply::in_channel(slackops::mrkdwn!(
                "pong {}", other
            )))),
        }
    }
}

struct Click(Seen);
#[async_trait]
impl ActionHandler for Click {
    async fn handle(&self, _cx: SlackCtx, _i: Arc<Interaction>, a: Action) -> anyhow::Result<Ack> {
        self.0
            .clicks
            .lock()
            .unwrap()
            .push(a.value.unwrap_or_default());
        Ok(Ack::ephemeral("clicked"))
    }
}

struct View;
#[async_trait]
impl ViewHandler for View {
    async fn submit(&self, _cx: SlackCtx, i: Arc<Interaction>) -> anyhow::Result<Ack> {
        let view = i.view.clone().unwrap_or_default();
        Ok(match view.input("summary", "summary").as_deref() {
            Some("x") => Ack::view_error("summary", "Say a little more than one letter"),
            Some("push") => Ack::ViewPush(
                json!({"type": "modal", "title": {"type": "plain_text", "text": "Next"}, "blocks": []}),
            ),
            _ => Ack::ViewClear,
        })
    }
}

struct Shortcut(Seen);
#[async_trait]
impl ShortcutHandler for Shortcut {
    async fn handle(&self, _cx: SlackCtx, i: Arc<Interaction>) -> anyhow::Result<Ack> {
        self.0
            .clicks
            .lock()
            .unwrap()
            .push(format!("shortcut:{}", i.kind));
        Ok(Ack::ephemeral("shortcut done"))
    }
}

struct Event(Seen);
#[async_trait]
impl EventHandler for Event {
    async fn handle(&self, _state: AppState, event: EventCallback) -> anyhow::Result<()> {
        *self
            .0
            .events
            .lock()
            .unwrap()
            .entry(event.event_id)
            .or_default() += 1;
        Ok(())
    }
}

fn register(seen: &Seen) -> impl FnOnce(&mut slackops::registry::Registry) + Send + 'static {
    let seen = seen.clone();
    move |r| {
        r.command("/sockettest", Command(seen.clone()))
            .action_prefix("sockettest:", Click(seen.clone()))
            .view("sockettest:view", View)
            .shortcut("sockettest_shortcut", Shortcut(seen.clone()))
            .event("app_mention", Event(seen));
    }
}

async fn socket_app(db: TestDb, seen: &Seen) -> TestApp {
    let app = TestAppBuilder::new(db)
        .await
        .socket_mode()
        .await
        .register(register(seen))
        .spawn()
        .await;
    app.socket().wait_for_routable(2, WAIT).await;
    app
}

// ============================================================================================
// Payloads (reference/slack.md §2, carried as envelope payloads per slack-socket-mode.md §4)
// ============================================================================================

fn command_fields(app: &TestApp, text: &str) -> Value {
    json!({
        "token": "legacy", "team_id": "T0TEAM", "team_domain": "example", "channel_id": "C0OPS",
        "channel_name": "ops", "user_id": "U0BOB", "user_name": "bob", "command": "/sockettest",
        "text": text, "api_app_id": "A0FAKE", "is_enterprise_install": "false",
        "response_url": app.slack.response_url_for_channel("C0OPS"),
        "trigger_id": app.slack.trigger_id(),
    })
}

fn click(app: &TestApp, value: &str) -> Value {
    app.slack.add_channel("C0SOCK", "sock");
    let ts = app
        .slack
        .insert_message("C0SOCK", "U0BOB", "a message with a button");
    json!({
        "type": "block_actions", "user": {"id": "U0BOB", "team_id": "T0TEAM"}, "team": {"id": "T0TEAM"},
        "api_app_id": "A0FAKE", "trigger_id": app.slack.trigger_id(),
        "container": {"type": "message", "message_ts": ts, "channel_id": "C0SOCK", "is_ephemeral": false},
        "channel": {"id": "C0SOCK", "name": "sock"}, "message": {"ts": ts, "text": "x"},
        "response_url": app.slack.response_url_for_message("C0SOCK", &ts),
        "actions": [{"action_id": "sockettest:go", "block_id": "b", "type": "button", "value": value, "action_ts": "1.2"}]
    })
}

fn view_submission(summary: &str) -> Value {
    json!({
        "type": "view_submission", "user": {"id": "U0BOB", "team_id": "T0TEAM"}, "team": {"id": "T0TEAM"},
        "trigger_id": "1.2.3", "response_urls": [],
        "view": {"id": "V0SOCK", "callback_id": "sockettest:view", "private_metadata": "", "hash": "h",
                 "state": {"values": {"summary": {"summary": {"type": "plain_text_input", "value": summary}}}}}
    })
}

fn mention(event_id: &str) -> Value {
    json!({
        "token": "legacy", "team_id": "T0TEAM", "api_app_id": "A0FAKE", "type": "event_callback",
        "event_id": event_id, "event_time": 1_700_000_000,
        "event": {"type": "app_mention", "user": "U0BOB", "text": "<@U0BOT> hi", "ts": "1.1", "channel": "C0OPS", "event_ts": "1.1"},
        "authorizations": [{"team_id": "T0TEAM", "user_id": "U0BOT", "is_bot": true}]
    })
}

/// The acked envelope's ack, checked to be in time.
async fn acked(app: &TestApp, envelope_id: &str) -> SocketAck {
    let ack = app.socket().wait_for_ack(envelope_id, WAIT).await;
    let latency = ack
        .latency
        .expect("the envelope was written before its ack");
    assert!(
        latency < SLACK_DEADLINE && !ack.late,
        "acknowledged within Slack's 3 s: {latency:?}"
    );
    ack
}

/// One sample of a metric in the Prometheus text; 0 when absent.
fn metric(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let matches = if labels.is_empty() {
                series == name
            } else {
                series == format!("{name}{{{labels}}}")
            };
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .unwrap_or(0.0)
}

async fn wait_metric(app: &TestApp, name: &str, labels: &str, at_least: f64) -> f64 {
    eventually(
        WAIT,
        &format!("{name}{{{labels}}} >= {at_least}"),
        || async {
            let v = metric(&app.metrics_text().await, name, labels);
            (v >= at_least).then_some(v)
        },
    )
    .await
}

// ============================================================================================
// Connections and readiness
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_waits_for_hello_and_is_unready_again_when_every_connection_is_down() {
    let builder = TestAppBuilder::new(TestDb::sqlite())
        .await
        .socket_mode()
        .await;
    builder.socket.as_ref().unwrap().hold_hello(true);
    let app = builder.spawn().await;
    let socket = app.socket();

    eventually(WAIT, "both connections to be open", || async {
        (socket.connections().len() >= 2).then_some(())
    })
    .await;
    let resp = app.get("/readyz").await;
    assert_eq!(resp.status(), 503, "not ready before hello");
    let body: Value = resp.json().await.unwrap();
    assert!(body["reason"].as_str().unwrap().contains("hello"), "{body}");
    assert_eq!(app.get("/healthz").await.status(), 200, "alive all along");
    assert_eq!(
        metric(&app.metrics_text().await, "slackops_socket_connections", ""),
        0.0
    );

    socket.release_hello();
    eventually(WAIT, "/readyz to answer 200", || async {
        (app.get("/readyz").await.status() == 200).then_some(())
    })
    .await;
    wait_metric(&app, "slackops_socket_connections", "", 2.0).await;
    let calls = app.slack.calls("apps.connections.open");
    assert_eq!(calls.len(), 2, "one URL per connection");
    assert!(calls.iter().all(|c| c.headers_authorization_present));

    // Slack goes away: every connection drops and reconnecting fails.
    app.slack
        .fail_next("apps.connections.open", Fault::ServerError(503), 1000);
    for id in socket.live() {
        socket.drop_abruptly(id);
    }
    eventually(WAIT, "/readyz to answer 503 again", || async {
        let r = app.get("/readyz").await;
        (r.status() == 503).then_some(())
    })
    .await;
    let body: Value = app.get("/readyz").await.json().await.unwrap();
    assert!(body["reason"].as_str().unwrap().contains("down"), "{body}");
    assert_eq!(app.get("/healthz").await.status(), 200);

    // Slack is back: the service reconnects by itself.
    app.slack.clear_faults();
    eventually(Duration::from_secs(40), "/readyz to recover", || async {
        (app.get("/readyz").await.status() == 200).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_slack_http_routes_answer_404_in_socket_mode() {
    let seen = Seen::default();
    let app = socket_app(TestDb::sqlite(), &seen).await;
    for path in ["/slack/commands", "/slack/interactions", "/slack/events"] {
        let resp = app
            .post_signed(path, "application/x-www-form-urlencoded", b"x=1")
            .await;
        assert_eq!(resp.status(), 404, "{path}");
    }
    assert!(seen.commands.lock().unwrap().is_empty());
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/readyz").await.status(), 200);
}

// ============================================================================================
// Acks and their payloads
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slash_command_is_answered_in_the_ack_payload() {
    let seen = Seen::default();
    let app = socket_app(TestDb::sqlite(), &seen).await;
    let id = app
        .socket()
        .send_slash_command(command_fields(&app, "hello"))
        .unwrap();
    let ack = acked(&app, &id).await;
    let p = ack.payload.expect("the command's reply rides in the ack");
    assert_eq!(p["response_type"], "in_channel");
    assert_eq!(p["text"], "pong hello");
    assert_eq!(*seen.commands.lock().unwrap(), vec!["hello".to_string()]);
    wait_metric(
        &app,
        "slackops_socket_envelopes_total",
        "type=\"slash_commands\"",
        1.0,
    )
    .await;

    // An unknown command gets its explanation the same way.
    let mut unknown = command_fields(&app, "");
    unknown["command"] = json!("/nosuch");
    let id = app.socket().send_slash_command(unknown).unwrap();
    let p = acked(&app, &id).await.payload.expect("an explanation");
    assert!(p["text"].as_str().unwrap().contains("/nosuch"), "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_command_is_acked_at_the_deadline_and_its_reply_goes_to_the_response_url() {
    let seen = Seen::default();
    let app = socket_app(TestDb::sqlite(), &seen).await;
    let fields = command_fields(&app, "slow");
    let url = fields["response_url"].as_str().unwrap().to_string();
    let id = app.socket().send_slash_command(fields).unwrap();
    let ack = acked(&app, &id).await;
    assert_eq!(ack.payload, None, "an empty ack at the deadline");
    let posts = app.slack.wait_for_response_url_posts(&url, 1, WAIT).await;
    assert_eq!(posts[0].body["text"], "slow result");

    // A failing handler is acked with an explanation carrying an error id.
    let id = app
        .socket()
        .send_slash_command(command_fields(&app, "fail"))
        .unwrap();
    let p = acked(&app, &id).await.payload.expect("an explanation");
    assert!(p["text"].as_str().unwrap().contains("error id"), "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_click_is_acked_bare_and_its_reply_goes_to_the_response_url() {
    let seen = Seen::default();
    let app = socket_app(TestDb::sqlite(), &seen).await;
    let payload = click(&app, "v1");
    let url = payload["response_url"].as_str().unwrap().to_string();
    let id = app.socket().send_interactive(payload).unwrap();
    assert!(app.socket().delivery(&id).unwrap().accepts_response_payload);
    let ack = acked(&app, &id).await;
    assert_eq!(
        ack.payload, None,
        "a click's ack carries no message (as over HTTP)"
    );
    assert!(!ack.ignored_payload);
    let posts = app.slack.wait_for_response_url_posts(&url, 1, WAIT).await;
    assert_eq!(posts[0].body["text"], "clicked");
    assert_eq!(posts[0].body["response_type"], "ephemeral");
    assert_eq!(*seen.clicks.lock().unwrap(), vec!["v1".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_view_submission_gets_its_errors_push_or_clear_in_the_ack_payload() {
    let seen = Seen::default();
    let app = socket_app(TestDb::sqlite(), &seen).await;
    let socket = app.socket();

    let id = socket.send_interactive(view_submission("x")).unwrap();
    assert_eq!(
        acked(&app, &id).await.payload,
        Some(
            json!({"response_action": "errors", "errors": {"summary": "Say a little more than one letter"}})
        )
    );
    let id = socket.send_interactive(view_submission("push")).unwrap();
    let p = acked(&app, &id).await.payload.expect("a push");
    assert_eq!(p["response_action"], "push");
    assert_eq!(p["view"]["title"]["text"], "Next");
    let id = socket.send_interactive(view_submission("fine")).unwrap();
    assert_eq!(
        acked(&app, &id).await.payload,
        Some(json!({"response_action": "clear"}))
    );
    wait_metric(
        &app,
        "slackops_socket_envelopes_total",
        "type=\"interactive\"",
        3.0,
    )
    .await;

    // block_suggestion: an empty option list, in the payload.
    let id = socket
        .send_interactive(json!({"type": "block_suggestion", "user": {"id": "U0BOB"}, "action_id": "x", "value": "a"}))
        .unwrap();
    assert_eq!(acked(&app, &id).await.payload, Some(json!({"options": []})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_shortcut_accepts_no_payload_so_its_reply_goes_to_the_response_url() {
    let seen = Seen::default();
    let app = socket_app(TestDb::sqlite(), &seen).await;
    let url = app.slack.response_url_for_channel("C0OPS");
    let id = app
        .socket()
        .send_interactive(json!({
            "type": "message_action", "callback_id": "sockettest_shortcut", "trigger_id": "1.2.3",
            "user": {"id": "U0BOB", "team_id": "T0TEAM"}, "team": {"id": "T0TEAM"},
            "channel": {"id": "C0OPS"}, "message": {"ts": "1.1", "text": "hi"}, "response_url": url
        }))
        .unwrap();
    assert!(!app.socket().delivery(&id).unwrap().accepts_response_payload);
    let ack = acked(&app, &id).await;
    assert!(
        ack.payload.is_none() && !ack.ignored_payload,
        "a bare ack: {ack:?}"
    );
    let posts = app.slack.wait_for_response_url_posts(&url, 1, WAIT).await;
    assert_eq!(posts[0].body["text"], "shortcut done");
    assert_eq!(
        *seen.clicks.lock().unwrap(),
        vec!["shortcut:message_action".to_string()]
    );
}

// ============================================================================================
// Events
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redelivered_event_is_processed_once() {
    for db in TestDb::all("socket_mode::a_redelivered_event_is_processed_once").await {
        let engine = db.engine;
        let seen = Seen::default();
        let app = socket_app(db, &seen).await;
        let socket = app.socket();
        socket.set_redelivery_delays([Duration::ZERO; 3]);

        // The ack of the first delivery is lost in transit: Slack redelivers the event.
        socket.lose_next_acks(1);
        let first = socket.send_event(mention("EvLost"));
        let retries = eventually(WAIT, "the redelivery to be acknowledged", || async {
            let d = socket.deliveries_of_event("EvLost");
            let acked = d
                .iter()
                .skip(1)
                .any(|r| !socket.acks_of(&r.envelope_id).is_empty());
            acked.then_some(d)
        })
        .await;
        assert_eq!(socket.lost_acks(), vec![first.clone()], "{engine:?}");
        assert_eq!(retries[1].retry_attempt, Some(1), "{engine:?}");
        assert_eq!(seen.event_runs("EvLost"), 1, "{engine:?}: processed once");

        // The same event_id delivered twice as first deliveries (a Slack incident): once.
        let a = socket.send_event(mention("EvTwice"));
        let b = socket.send_event(mention("EvTwice"));
        acked(&app, &a).await;
        acked(&app, &b).await;
        assert_eq!(seen.event_runs("EvTwice"), 1, "{engine:?}");
        wait_metric(&app, "slackops_slack_duplicate_events_total", "", 2.0).await;
        tokio::time::sleep(Duration::from_millis(3500)).await;
        assert_eq!(
            socket.deliveries_of_event("EvTwice").len(),
            2,
            "{engine:?}: acked in time, no retry"
        );
    }
}

// ============================================================================================
// An approval end to end
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_approval_over_the_socket_sends_exactly_one_patch() {
    for db in TestDb::all("socket_mode::an_approval_over_the_socket_sends_exactly_one_patch").await
    {
        let engine = db.engine;
        let app = approvals_builder(db)
            .await
            .socket_mode()
            .await
            .spawn()
            .await;
        app.socket().wait_for_routable(2, WAIT).await;

        // echo still reaches slackops over HTTP inside the cluster.
        let exec = add_mj(
            &app.gate,
            "01J6SOCKEXEC0000000000000A",
            "01J6SOCKSTAGE000000000000A",
        );
        let resp = app
            .echo(&stage_event(
                "orca:stage:starting",
                &exec,
                "01J6SOCKSTAGE000000000000A",
            ))
            .await;
        assert_eq!(resp.status(), 200);
        let msg = app
            .slack
            .wait_for_messages(CHANNEL, 1, WAIT)
            .await
            .remove(0);
        let jid = judgment_id_of(&msg.blocks).expect("buttons");

        // Two approvers click at once, on whichever connections Slack picks.
        let a = click_payload(
            &app,
            APPROVER,
            "approvals:approve",
            &jid,
            CHANNEL,
            &msg.ts,
            None,
        );
        let b = click_payload(
            &app,
            APPROVER2,
            "approvals:approve",
            &jid,
            CHANNEL,
            &msg.ts,
            None,
        );
        let ids = [
            app.socket().send_interactive(a).unwrap(),
            app.socket().send_interactive(b).unwrap(),
        ];
        for id in &ids {
            let ack = acked(&app, id).await;
            assert!(ack.payload.is_none(), "{engine:?}: a click is acked bare");
        }
        let settled = eventually(WAIT, "the message to show the approval", || async {
            app.slack.message(CHANNEL, &msg.ts).filter(|m| {
                m.blocks.to_string().contains("Approved")
                    && !m.blocks.to_string().contains("approvals:approve")
            })
        })
        .await;
        assert!(settled.updated >= 1, "{engine:?}: edited in place");
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(app.gate.patch_count(), 1, "{engine:?}: exactly one PATCH");
        assert_eq!(app.gate.patches()[0].body["judgmentStatus"], "continue");
    }
}

// ============================================================================================
// Refreshes, drops, failures
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refresh_during_steady_traffic_loses_and_doubles_nothing() {
    for db in TestDb::all("socket_mode::a_refresh_during_steady_traffic").await {
        let engine = db.engine;
        let seen = Seen::default();
        let app = socket_app(db, &seen).await;
        let socket = app.socket();
        socket.set_grace(Duration::from_millis(500));
        let before = socket.routable();

        // 400 envelopes at a steady pace; both connections are refreshed meanwhile, one with a
        // warning first and one with refresh_requested only.
        let mut commands = Vec::new();
        let mut events = Vec::new();
        let started = Instant::now();
        for i in 0..400 {
            if i == 100 {
                socket.refresh(before[0], Some(Duration::from_millis(200)));
            }
            if i == 250 {
                socket.refresh(before[1], None);
            }
            if i % 2 == 0 {
                events.push(format!("EvSteady{i}"));
                socket.send_event(mention(&format!("EvSteady{i}")));
            } else {
                let sent = socket
                    .send_slash_command(command_fields(&app, &format!("n{i}")))
                    .unwrap_or_else(|DispatchFailed| {
                        panic!("{engine:?}: no connection to send envelope {i} to")
                    });
                commands.push(sent);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let took = started.elapsed();

        for id in &commands {
            let ack = acked(&app, id).await;
            assert!(ack.payload.is_some(), "{engine:?}: every command answered");
            assert_eq!(socket.acks_of(id).len(), 1, "{engine:?}: acked once");
        }
        for e in &events {
            eventually(WAIT, &format!("{e} to run"), || async {
                (seen.event_runs(e) >= 1).then_some(())
            })
            .await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        for e in &events {
            assert_eq!(seen.event_runs(e), 1, "{engine:?}: {e} ran once");
        }
        let mut texts = seen.commands.lock().unwrap().clone();
        texts.sort();
        texts.dedup();
        assert_eq!(
            texts.len(),
            commands.len(),
            "{engine:?}: no command ran twice"
        );
        assert!(socket.given_up_events().is_empty(), "{engine:?}");
        let now = socket.wait_for_routable(2, WAIT).await;
        assert!(
            now.iter().all(|id| !before.contains(id)),
            "{engine:?}: both replaced"
        );
        let text = app.metrics_text().await;
        assert!(
            metric(
                &text,
                "slackops_socket_reconnects_total",
                "reason=\"warning\""
            ) >= 1.0,
            "{engine:?}"
        );
        assert!(
            metric(
                &text,
                "slackops_socket_reconnects_total",
                "reason=\"refresh_requested\""
            ) >= 1.0,
            "{engine:?}"
        );
        eprintln!("{engine:?}: 400 envelopes over {took:?} through two refreshes");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_abrupt_drop_reconnects_and_serves_again() {
    let seen = Seen::default();
    let app = socket_app(TestDb::sqlite(), &seen).await;
    let socket = app.socket();
    let before = socket.routable();
    socket.drop_abruptly(before[0]);
    let now = eventually(WAIT, "a replacement connection", || async {
        let r = socket.routable();
        (r.len() == 2 && !r.contains(&before[0])).then_some(r)
    })
    .await;
    assert!(
        now.contains(&before[1]),
        "the other connection was left alone"
    );
    wait_metric(
        &app,
        "slackops_socket_reconnects_total",
        "reason=\"dropped\"",
        1.0,
    )
    .await;
    assert_eq!(
        app.slack.call_count("apps.connections.open"),
        3,
        "a fresh URL for the reconnect"
    );
    let id = socket
        .send_slash_command(command_fields(&app, "after"))
        .unwrap();
    assert!(acked(&app, &id).await.payload.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_connection_is_replaced() {
    let seen = Seen::default();
    let app = TestAppBuilder::new(TestDb::sqlite())
        .await
        .socket_mode()
        .await
        .settings(|s| s.slack.socket_ping_interval_ms = 100)
        .register(register(&seen))
        .spawn()
        .await;
    let socket = app.socket();
    let before = socket.wait_for_routable(2, WAIT).await;
    socket.set_keepalive(Duration::from_millis(200), Duration::from_secs(60));
    socket.stall(before[0]);
    wait_metric(
        &app,
        "slackops_socket_reconnects_total",
        "reason=\"stale\"",
        1.0,
    )
    .await;
    eventually(WAIT, "a third connection to be up", || async {
        (socket
            .connections()
            .iter()
            .filter(|c| c.got_hello && c.open && !c.stalled)
            .count()
            >= 2)
            .then_some(())
    })
    .await;
    assert_eq!(app.get("/readyz").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn apps_connections_open_429_and_errors_are_retried_with_backoff() {
    let builder = TestAppBuilder::new(TestDb::sqlite())
        .await
        .socket_mode()
        .await
        .settings(|s| s.slack.socket_connections = 1);
    builder.slack.fail_next(
        "apps.connections.open",
        Fault::RateLimited {
            retry_after_secs: 2,
        },
        1,
    );
    builder
        .slack
        .fail_next("apps.connections.open", Fault::ServerError(503), 1);
    builder
        .slack
        .fail_next("apps.connections.open", Fault::error("internal_error"), 1);
    let app = builder.spawn().await;
    app.socket()
        .wait_for_routable(1, Duration::from_secs(30))
        .await;

    let calls = app.slack.calls("apps.connections.open");
    assert_eq!(calls.len(), 4, "429, 503, ok:false, then success");
    let after_429 = calls[1].at.duration_since(calls[0].at);
    assert!(
        after_429 >= Duration::from_secs(2),
        "Retry-After honoured: {after_429:?}"
    );
    let text = app.metrics_text().await;
    assert_eq!(
        metric(
            &text,
            "slackops_slack_api_calls_total",
            "method=\"apps.connections.open\",outcome=\"ratelimited\""
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "slackops_socket_reconnects_total",
            "reason=\"open_failed\""
        ),
        3.0
    );
    assert_eq!(
        app.socket().handshakes().len(),
        1,
        "no handshake without a URL"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_handshake_and_too_many_websockets_are_retried_with_a_fresh_url() {
    let builder = TestAppBuilder::new(TestDb::sqlite())
        .await
        .socket_mode()
        .await
        .settings(|s| s.slack.socket_connections = 2);
    // Nine connections of another process of the same app: the service's second is the 11th.
    let socket = builder.socket.as_ref().unwrap();
    let mut others = Vec::new();
    for _ in 0..9 {
        let (ws, _) = tokio_tungstenite::connect_async(socket.mint_url())
            .await
            .unwrap();
        others.push(ws);
    }
    socket.wait_for_routable(9, WAIT).await;
    let app = builder.spawn().await;
    wait_metric(
        &app,
        "slackops_socket_reconnects_total",
        "reason=\"too_many_websockets\"",
        1.0,
    )
    .await;
    assert_eq!(
        app.get("/readyz").await.status(),
        200,
        "one connection is enough to be ready"
    );
    assert_eq!(
        metric(&app.metrics_text().await, "slackops_socket_connections", ""),
        1.0
    );
    others.truncate(5);
    app.socket()
        .wait_for_routable(7, Duration::from_secs(30))
        .await;
    wait_metric(&app, "slackops_socket_connections", "", 2.0).await;
    let tickets: Vec<String> = app
        .socket()
        .handshakes()
        .into_iter()
        .map(|h| h.ticket)
        .collect();
    let mut unique = tickets.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        tickets.len(),
        "every attempt used a fresh ticket"
    );
}

// ============================================================================================
// Shutdown
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_acks_what_is_in_flight_then_closes_the_sockets_cleanly() {
    let seen = Seen::default();
    let app = socket_app(TestDb::sqlite(), &seen).await;
    let fields = command_fields(&app, "slow");
    let id = app.socket().send_slash_command(fields).unwrap();
    eventually(WAIT, "the slow command to start", || async {
        (!seen.commands.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    let started = Instant::now();
    let conns_before = app.socket().live();
    let mut app = app;
    app.shutdown().await;
    let socket = app.socket();
    let stopped_in = started.elapsed();
    let ack = socket.acks_of(&id);
    assert_eq!(
        ack.len(),
        1,
        "the in-flight envelope was acknowledged before closing"
    );
    assert!(!ack[0].late);
    socket.wait_for_open_at_most(0, WAIT).await;
    for c in socket
        .connections()
        .iter()
        .filter(|c| conns_before.contains(&c.id))
    {
        assert!(
            c.closed_by_client,
            "connection {} closed by slackops with a close frame",
            c.id
        );
    }
    assert!(stopped_in < Duration::from_secs(10), "{stopped_in:?}");
    assert_eq!(
        socket.send_slash_command(json!({"command": "/sockettest"})),
        Err(DispatchFailed),
        "nothing is connected any more"
    );
}
