//! Alertmanager alerts proposing outages, black-box: deliveries from a fake Alertmanager
//! (tests/support/fake_alertmanager.rs) to `POST /api/v1/alerts/alertmanager`, the suggestion
//! message in the fake Slack, its Announce, Dismiss and Resolve buttons, `announce` mode with
//! auto-resolve under an injected clock — on SQLite and PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use serde_json::{Value, json};
use slackops::announcements::model::{self, Outage};
use slackops::clock::{Clock, ManualClock};
use slackops::config::{AlertMode, AlertRule, SystemEntry};

use crate::helpers::{API_TOKEN, TestApp, TestAppBuilder, TestDb, eventually, now_secs};
use crate::support::fake_alertmanager::FakeAlertGroup;
use crate::support::fake_slack::Message;

const CHANNEL: &str = "C0OUTAGE";
const ALICE: &str = "U0ALICE";
const ONCALL: &str = "U0ONCALL";
const WAIT: Duration = Duration::from_secs(10);
const PATH: &str = "/api/v1/alerts/alertmanager";

fn rules() -> Vec<AlertRule> {
    vec![
        AlertRule {
            matchers: [("team".to_string(), "payments".to_string())].into(),
            mode: AlertMode::Announce,
            assignee: Some(ONCALL.into()),
            ..AlertRule::default()
        },
        AlertRule {
            matchers: [("team".to_string(), "search".to_string())].into(),
            ..AlertRule::default()
        },
    ]
}

async fn builder(db: TestDb) -> TestAppBuilder {
    TestAppBuilder::new(db).await.settings(|s| {
        let a = &mut s.announcements;
        a.channel = Some(CHANNEL.into());
        a.systems = ["search", "payments"]
            .iter()
            .map(|id| SystemEntry {
                id: (*id).into(),
                name: id.to_uppercase(),
                group: None,
            })
            .collect();
        a.alert_rules = rules();
    })
}

fn workspace(app: &TestApp) {
    app.slack.add_channel(CHANNEL, "outages");
    app.slack.add_channel("C0OPS", "ops");
    app.slack
        .add_user(ALICE, "alice", "alice@example.com", "UTC");
    app.slack
        .add_user(ONCALL, "oncall", "oncall@example.com", "UTC");
}

async fn spawn(db: TestDb) -> TestApp {
    let app = builder(db).await.spawn().await;
    workspace(&app);
    app
}

async fn deliver(app: &TestApp, body: &Value) -> (u16, Value) {
    let resp = app
        .client
        .post(app.url(PATH))
        .bearer_auth(API_TOKEN)
        .header("user-agent", "Alertmanager/0.34.0")
        .json(body)
        .send()
        .await
        .expect("reaches the service");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn search_group() -> FakeAlertGroup {
    FakeAlertGroup::new(&[("alertname", "SearchLatency"), ("team", "search")])
}

fn payments_group() -> FakeAlertGroup {
    FakeAlertGroup::new(&[("alertname", "CheckoutDown"), ("team", "payments")])
}

fn now() -> chrono::DateTime<Utc> {
    Utc::now()
}

async fn outages(app: &TestApp) -> Vec<Outage> {
    model::list(app.state.db().pool(), None, 100)
        .await
        .expect("outages readable")
}

/// The only suggestion in the channel, once it shows `what`.
async fn suggestion_showing(app: &TestApp, what: &str) -> Message {
    eventually(WAIT, what, || async {
        let top: Vec<Message> = app
            .slack
            .messages_in(CHANNEL)
            .into_iter()
            .filter(|m| m.thread_ts.is_none() && m.text.contains("Alerts"))
            .collect();
        assert!(top.len() <= 1, "one suggestion per group: {top:?}");
        top.into_iter()
            .next()
            .filter(|m| m.blocks.to_string().contains(what))
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

/// Click a button on the suggestion; returns the response_url the answer goes to.
async fn click(app: &TestApp, user: &str, action_id: &str, value: &str, ts: &str) -> String {
    let response_url = app.slack.response_url_for_message(CHANNEL, ts);
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user, "username": "u", "team_id": "T0FAKE"},
        "team": {"id": "T0FAKE", "domain": "fake"},
        "api_app_id": "A0APP",
        "trigger_id": app.slack.trigger_id(),
        "container": {"type": "message", "message_ts": ts, "channel_id": CHANNEL},
        "channel": {"id": CHANNEL, "name": "outages"},
        "message": {"ts": ts, "type": "message"},
        "response_url": response_url,
        "actions": [{"action_id": action_id, "block_id": "alert_group", "type": "button",
                     "value": value, "action_ts": crate::helpers::action_ts()}]
    });
    let resp = app.interaction(&payload).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.text().await.expect("body"),
        "",
        "block actions are acknowledged empty"
    );
    response_url
}

fn last_view(app: &TestApp, callback: &str) -> Value {
    app.slack
        .views()
        .into_iter()
        .rev()
        .find(|v| v.view["callback_id"] == callback)
        .unwrap_or_else(|| panic!("no {callback} modal was opened"))
        .view
}

fn block<'a>(view: &'a Value, id: &str) -> &'a Value {
    view["blocks"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["block_id"] == id))
        .unwrap_or_else(|| panic!("no block {id} in {view}"))
}

#[tokio::test]
async fn a_firing_group_is_suggested_once_and_resends_change_nothing() {
    for db in TestDb::all("a_firing_group_is_suggested_once").await {
        let app = spawn(db).await;
        let mut g = search_group();
        g.fire(
            &[
                ("instance", "search-1"),
                ("system", "search"),
                ("severity", "major"),
            ],
            &[("summary", "Search p99 over 2 s")],
            now(),
        );
        let body = g.notify();
        let (status, r) = deliver(&app, &body).await;
        assert_eq!(status, 200, "{r}");
        assert_eq!(r["outcome"], "suggested");
        let m = suggestion_showing(&app, "Search p99 over 2 s").await;
        assert_eq!(
            buttons(&m),
            vec![
                "announcements:alerts:announce",
                "announcements:alerts:dismiss"
            ]
        );
        assert!(m.blocks.to_string().contains("SEARCH"), "the system's name");
        // Alertmanager re-sends the same body (repeat_interval, an HA peer, a restart).
        for _ in 0..3 {
            let (status, r) = deliver(&app, &body).await;
            assert_eq!((status, r["outcome"].as_str()), (200, Some("unchanged")));
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(app.slack.call_count("chat.postMessage"), 1);
        let updates = app.slack.message(CHANNEL, &m.ts).expect("message").updated;
        assert!(
            updates <= 1,
            "re-sends do not update the message ({updates})"
        );
        assert!(
            outages(&app).await.is_empty(),
            "suggest mode announces nothing"
        );
    }
}

#[tokio::test]
async fn alerts_joining_and_resolving_update_the_same_message() {
    let app = spawn(TestDb::sqlite()).await;
    let mut g = search_group();
    let t0 = now();
    g.fire(
        &[
            ("instance", "a"),
            ("system", "search"),
            ("severity", "minor"),
        ],
        &[("summary", "Node a slow")],
        t0,
    );
    deliver(&app, &g.notify()).await;
    let first = suggestion_showing(&app, "Node a slow").await;
    g.fire(
        &[
            ("instance", "b"),
            ("system", "search"),
            ("severity", "critical"),
        ],
        &[("summary", "Node b down")],
        t0,
    );
    assert_eq!(deliver(&app, &g.notify()).await.1["outcome"], "suggested");
    let m = suggestion_showing(&app, "Node b down").await;
    assert_eq!(m.ts, first.ts, "updated in place");
    assert!(
        m.blocks.to_string().contains("*Severity*: critical"),
        "the most severe: {}",
        m.blocks
    );
    let end = t0 + chrono::Duration::minutes(7);
    g.resolve(
        &[
            ("instance", "a"),
            ("system", "search"),
            ("severity", "minor"),
        ],
        end,
    );
    g.resolve(
        &[
            ("instance", "b"),
            ("system", "search"),
            ("severity", "critical"),
        ],
        end,
    );
    deliver(&app, &g.notify()).await;
    let m = suggestion_showing(&app, "All alerts resolved").await;
    assert_eq!(m.ts, first.ts);
    assert!(
        buttons(&m).is_empty(),
        "nothing left to decide: {:?}",
        buttons(&m)
    );
    assert!(m.blocks.to_string().contains("Nothing was announced"));
    // The group fires again: the same message, with its buttons back.
    g.fire(
        &[
            ("instance", "a"),
            ("system", "search"),
            ("severity", "minor"),
        ],
        &[("summary", "Node a slow again")],
        now(),
    );
    deliver(&app, &g.notify()).await;
    let m = suggestion_showing(&app, "Node a slow again").await;
    assert_eq!(m.ts, first.ts, "never a second message for the same group");
    assert_eq!(buttons(&m).len(), 2);
}

#[tokio::test]
async fn several_groups_get_a_suggestion_each_and_unmatched_labels_are_acknowledged() {
    let app = spawn(TestDb::sqlite()).await;
    for node in ["search-1", "search-2"] {
        let mut g =
            FakeAlertGroup::new(&[("alertname", "Disk"), ("team", "search"), ("node", node)]);
        g.fire(
            &[("system", "search"), ("severity", "minor")],
            &[("summary", &format!("Disk full on {node}"))],
            now(),
        );
        assert_eq!(deliver(&app, &g.notify()).await.1["outcome"], "suggested");
    }
    let mut other = FakeAlertGroup::new(&[("alertname", "Watchdog"), ("team", "infra")]);
    other.fire(&[], &[], now());
    let (status, r) = deliver(&app, &other.notify()).await;
    assert_eq!((status, r["outcome"].as_str()), (200, Some("no_rule")));
    app.slack.wait_for_messages(CHANNEL, 2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let texts: Vec<String> = app
        .slack
        .messages_in(CHANNEL)
        .iter()
        .map(|m| m.blocks.to_string())
        .collect();
    assert_eq!(texts.len(), 2, "one message per matching group");
    assert!(
        texts.iter().any(|t| t.contains("search-1"))
            && texts.iter().any(|t| t.contains("search-2"))
    );
}

#[tokio::test]
async fn hostile_annotation_text_stays_inert() {
    let app = spawn(TestDb::sqlite()).await;
    let mut g = search_group();
    g.fire(
        &[
            ("system", "search"),
            ("severity", "major"),
            ("instance", "<!channel>"),
        ],
        &[(
            "summary",
            "<!everyone> <https://evil.example|click> & <@U0BOSS>",
        )],
        now(),
    );
    deliver(&app, &g.notify()).await;
    let m = suggestion_showing(&app, "evil.example").await;
    // What Slack parses: mrkdwn texts (plain_text, such as the header, is shown as typed).
    let b: String = m
        .blocks
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|b| [b["text"].clone(), b["elements"].clone()])
        .filter(|t| !t.is_null())
        .map(|t| t.to_string())
        .filter(|t| t.contains("mrkdwn"))
        .collect();
    for raw in ["<!everyone>", "<!channel>", "<https://evil", "<@U0BOSS>"] {
        assert!(!b.contains(raw), "{raw} reached Slack unescaped: {b}");
    }
    assert!(b.contains("&lt;!everyone&gt;") && b.contains("&amp;"));
}

#[tokio::test]
async fn bad_payloads_are_refused_naming_the_field_and_the_token_comes_first() {
    let app = spawn(TestDb::sqlite()).await;
    let resp = app
        .client
        .post(app.url(PATH))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        401,
        "no token: refused before the body is read"
    );
    let resp = app
        .client
        .post(app.url(PATH))
        .bearer_auth("wrong-token")
        .json(&search_group().body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let mut g = search_group();
    g.fire(&[("system", "search")], &[], now());
    let good = g.body();
    let cases: Vec<(Value, &str)> = vec![
        (json!("text"), "body"),
        (
            {
                let mut b = good.clone();
                b.as_object_mut().unwrap().remove("groupKey");
                b
            },
            "groupKey",
        ),
        (
            {
                let mut b = good.clone();
                b["groupKey"] = json!("");
                b
            },
            "groupKey",
        ),
        (
            {
                let mut b = good.clone();
                b["status"] = json!("burning");
                b
            },
            "status",
        ),
        (
            {
                let mut b = good.clone();
                b["alerts"] = json!([]);
                b
            },
            "alerts",
        ),
        (
            {
                let mut b = good.clone();
                b["alerts"][0]["startsAt"] = json!("yesterday");
                b
            },
            "alerts[0].startsAt",
        ),
        (
            {
                let mut b = good.clone();
                b["alerts"][0]["labels"] = json!({"a": 1});
                b
            },
            "alerts[0].labels.a",
        ),
        (
            {
                let mut b = good.clone();
                b["alerts"][0].as_object_mut().unwrap().remove("status");
                b
            },
            "alerts[0].status",
        ),
    ];
    for (body, field) in cases {
        let (status, r) = deliver(&app, &body).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(r["field"], field, "{r}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        app.slack.call_count("chat.postMessage"),
        0,
        "nothing changed"
    );
}

#[tokio::test]
async fn announce_on_a_suggestion_opens_the_prefilled_modal_and_announces_once() {
    for db in TestDb::all("announce_on_a_suggestion").await {
        let app = spawn(db).await;
        let mut g = search_group();
        g.fire(
            &[("system", "search"), ("severity", "major")],
            &[("summary", "Search is down")],
            now(),
        );
        let (_, r) = deliver(&app, &g.notify()).await;
        let group = r["group"].as_str().unwrap().to_string();
        let m = suggestion_showing(&app, "Search is down").await;
        click(&app, ALICE, "announcements:alerts:announce", &group, &m.ts).await;
        let view = last_view(&app, "announcements:new");
        assert_eq!(
            block(&view, "summary")["element"]["initial_value"],
            "Search is down"
        );
        assert_eq!(
            block(&view, "systems")["element"]["initial_options"][0]["value"],
            "search"
        );
        assert_eq!(
            block(&view, "severity")["element"]["initial_option"]["value"],
            "major"
        );
        assert_eq!(
            block(&view, "resolution_assignee")["element"]["initial_user"],
            ALICE
        );
        let values = json!({
            "summary": {"value": {"type": "plain_text_input", "value": "Search is down"}},
            "systems": {"value": {"type": "multi_static_select", "selected_options": [{"value": "search"}]}},
            "severity": {"value": {"type": "static_select", "selected_option": {"value": "major"}}},
            "eta": {"value": {"type": "static_select", "selected_option": {"value": "2h"}}},
            "resolution_assignee": {"value": {"type": "users_select", "selected_user": ALICE}},
            "communication_assignee": {"value": {"type": "users_select", "selected_user": ALICE}},
            "public": {"value": {"type": "checkboxes", "selected_options": []}}
        });
        let submit = |view: &Value| {
            json!({
                "type": "view_submission",
                "user": {"id": ALICE, "username": "alice", "team_id": "T0FAKE"},
                "team": {"id": "T0FAKE", "domain": "fake"},
                "api_app_id": "A0APP",
                "trigger_id": app.slack.trigger_id(),
                "view": {"id": view["id"], "team_id": "T0FAKE", "type": "modal",
                         "callback_id": view["callback_id"], "private_metadata": view["private_metadata"],
                         "hash": view["hash"], "state": {"values": values.clone()}},
                "response_urls": []
            })
        };
        let resp = app.interaction(&submit(&view)).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.text().await.unwrap(),
            "",
            "announced, the modal closes"
        );
        // The same form submitted from a second modal (a second person had it open): nothing
        // more. (The very same view submitted twice is a retry, acked once by the dispatcher.)
        let mut second = view.clone();
        second["id"] = json!(format!("{}-2", view["id"].as_str().unwrap_or("V0")));
        let resp = app.interaction(&submit(&second)).await;
        let ack: Value = resp.json().await.expect("a message view");
        assert!(ack.to_string().contains("Nothing was announced"), "{ack}");
        let list = outages(&app).await;
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].announced_by, ALICE);
        let m = suggestion_showing(&app, "was announced by").await;
        assert!(buttons(&m).is_empty(), "decided: no live buttons");
    }
}

#[tokio::test]
async fn dismiss_takes_the_buttons_away() {
    let app = spawn(TestDb::sqlite()).await;
    let mut g = search_group();
    g.fire(
        &[("system", "search"), ("severity", "major")],
        &[("summary", "Flaky probe")],
        now(),
    );
    let (_, r) = deliver(&app, &g.notify()).await;
    let group = r["group"].as_str().unwrap().to_string();
    let m = suggestion_showing(&app, "Flaky probe").await;
    click(&app, ALICE, "announcements:alerts:dismiss", &group, &m.ts).await;
    let m = suggestion_showing(&app, "Dismissed by").await;
    assert!(buttons(&m).is_empty());
    let url = click(&app, ALICE, "announcements:alerts:announce", &group, &m.ts).await;
    let posts = app.slack.wait_for_response_url_posts(&url, 1, WAIT).await;
    assert!(
        posts[0].body.to_string().contains("already decided"),
        "{:?}",
        posts[0].body
    );
    // Still firing and re-sent: it stays dismissed.
    assert_eq!(deliver(&app, &g.body()).await.1["outcome"], "unchanged");
    assert!(outages(&app).await.is_empty());
}

#[tokio::test]
async fn a_resolved_group_offers_resolve_with_the_modal_prefilled_to_the_last_alert_end() {
    let app = spawn(TestDb::sqlite()).await;
    let mut g = search_group();
    let start = Utc.timestamp_opt(now_secs() - 3600, 0).unwrap();
    g.fire(
        &[("system", "search"), ("severity", "major")],
        &[("summary", "Index stale")],
        start,
    );
    let (_, r) = deliver(&app, &g.notify()).await;
    let group = r["group"].as_str().unwrap().to_string();
    let m = suggestion_showing(&app, "Index stale").await;
    // Announced from the suggestion, by hand.
    let fields = slackops::announcements::model::Fields {
        summary: "Index stale".into(),
        systems: vec!["search".into()],
        severity: "major".into(),
        eta: "unknown".into(),
        resolution_assignee: ALICE.into(),
        communication_assignee: ALICE.into(),
        ..Default::default()
    };
    let outage = slackops::announcements::alerts::announce_from(&app.state, &group, fields, ALICE)
        .await
        .expect("announced");
    let end = Utc.timestamp_opt(now_secs() - 600, 0).unwrap();
    g.resolve(&[("system", "search"), ("severity", "major")], end);
    assert_eq!(deliver(&app, &g.notify()).await.1["outcome"], "updated");
    let m2 = suggestion_showing(&app, "All alerts resolved").await;
    assert_eq!(m2.ts, m.ts);
    assert_eq!(buttons(&m2), vec!["announcements:alerts:resolve"]);
    click(&app, ALICE, "announcements:alerts:resolve", &group, &m.ts).await;
    let view = last_view(&app, "announcements:resolve");
    let local = end.format("%H:%M").to_string();
    assert_eq!(
        block(&view, "resolved_at_time")["element"]["initial_time"],
        local
    );
    assert!(
        view["private_metadata"]
            .as_str()
            .unwrap()
            .contains(&outage.id)
    );
    // Resolving the outage (here through the API) takes the Resolve button away.
    let resp = app
        .client
        .patch(app.url(&format!("/api/v1/announcements/{}", outage.id)))
        .bearer_auth(API_TOKEN)
        .json(&json!({"state": "resolved", "resolution": {"summary": "reindexed"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let m3 = suggestion_showing(&app, "is resolved").await;
    assert!(buttons(&m3).is_empty());
}

/// A clock that moves with real time (jobs' short waits pass) and can jump.
fn ticking(clock: &ManualClock) -> tokio::task::JoinHandle<()> {
    let c = clock.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            c.advance_ms(20);
        }
    })
}

#[tokio::test]
async fn announce_mode_announces_at_once_and_resolves_after_the_quiet_period_despite_flapping() {
    for db in TestDb::all("announce_mode_announces_at_once").await {
        let clock = ManualClock::at_secs(now_secs());
        let app = builder(db)
            .await
            .clock(Arc::new(clock.clone()))
            .spawn()
            .await;
        workspace(&app);
        let tick = ticking(&clock);
        let at = |c: &ManualClock| Utc.timestamp_millis_opt(c.now_ms()).unwrap();
        let mut g = payments_group();
        let labels = [("system", "payments"), ("severity", "critical")];
        g.fire(&labels, &[("summary", "Checkout returns 500")], at(&clock));
        let (status, r) = deliver(&app, &g.notify()).await;
        assert_eq!((status, r["outcome"].as_str()), (200, Some("announced")));
        let list = outages(&app).await;
        assert_eq!(list.len(), 1);
        let o = &list[0];
        assert_eq!(o.announced_by, "api:alertmanager");
        assert_eq!(
            (o.fields.severity.as_str(), o.fields.systems.clone()),
            ("critical", vec!["payments".to_string()])
        );
        assert_eq!(o.fields.resolution_assignee, ONCALL);
        assert_eq!(o.fields.eta, "unknown");
        let posted = app.slack.wait_for_messages(CHANNEL, 1, WAIT).await;
        assert!(
            posted[0]
                .blocks
                .to_string()
                .contains("Checkout returns 500")
        );
        // Re-sent: nothing new.
        assert_eq!(deliver(&app, &g.body()).await.1["outcome"], "unchanged");
        // Flapping: resolves, fires again 3 min later, resolves again.
        g.resolve(&labels, at(&clock));
        assert_eq!(deliver(&app, &g.notify()).await.1["outcome"], "updated");
        clock.advance_ms(3 * 60_000);
        g.fire(&labels, &[("summary", "Checkout returns 500")], at(&clock));
        assert_eq!(deliver(&app, &g.notify()).await.1["outcome"], "updated");
        assert_eq!(
            outages(&app).await.len(),
            1,
            "no second outage while the first is open"
        );
        clock.advance_ms(60_000);
        g.resolve(&labels, at(&clock));
        let ended = clock.now_ms();
        deliver(&app, &g.notify()).await;
        // Not yet quiet for 10 minutes.
        clock.advance_ms(9 * 60_000);
        assert_eq!(
            slackops::announcements::alerts::auto_resolve(&app.state)
                .await
                .unwrap(),
            0
        );
        assert!(outages(&app).await[0].is_open());
        clock.advance_ms(61_000);
        assert_eq!(
            slackops::announcements::alerts::auto_resolve(&app.state)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            slackops::announcements::alerts::auto_resolve(&app.state)
                .await
                .unwrap(),
            0,
            "once"
        );
        let o = outages(&app).await.remove(0);
        assert!(!o.is_open());
        let ra = o.resolved_at.unwrap();
        assert!(
            (ended - 1000..=ended + 1000).contains(&ra),
            "resolved when the last alert ended"
        );
        let reply = eventually(WAIT, "the thread reply", || async {
            app.slack.messages_in(CHANNEL).into_iter().find(|m| {
                m.thread_ts.as_deref() == Some(posted[0].ts.as_str()) && m.text.contains("Resolved")
            })
        })
        .await;
        assert!(
            reply.text.contains("resolved automatically after 10 min"),
            "{}",
            reply.text
        );
        // Once resolved, the group firing again is a new outage.
        g.fire(&labels, &[("summary", "Checkout returns 500")], at(&clock));
        assert_eq!(deliver(&app, &g.notify()).await.1["outcome"], "announced");
        assert_eq!(outages(&app).await.len(), 2);
        tick.abort();
    }
}

#[tokio::test]
async fn announce_mode_alerts_that_fail_validation_are_suggested_and_still_acknowledged() {
    let app = spawn(TestDb::sqlite()).await;
    let mut g = payments_group();
    g.fire(
        &[("system", "billing"), ("severity", "sev1")],
        &[("summary", "Invoices stuck")],
        now(),
    );
    let (status, r) = deliver(&app, &g.notify()).await;
    assert_eq!((status, r["outcome"].as_str()), (200, Some("suggested")));
    assert!(outages(&app).await.is_empty(), "never announced");
    let m = suggestion_showing(&app, "Cannot be announced as is").await;
    let b = m.blocks.to_string();
    assert!(b.contains("systems") && b.contains("severity"), "{b}");
}

#[test]
fn the_fake_alertmanager_fingerprints_as_alertmanager_does() {
    // prometheus/alertmanager template/template_test.go (monitoring-integrations.md §1.1).
    let labels = [("job", "foo"), ("severity", "warning")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(
        crate::support::fake_alertmanager::fingerprint(&labels),
        "9266ef3da838ad95"
    );
}
