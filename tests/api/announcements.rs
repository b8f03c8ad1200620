//! Outage announcements, black-box: `/announce` and its modal, the one pinned message and its
//! thread, resolve and reopen, reaction copies, reminders with an injected clock, permissions and
//! the HTTP API — against the fake Slack, on SQLite and PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use slackops::announcements::model::{self, Outage};
use slackops::clock::{Clock, ManualClock};
use slackops::config::{AudienceEntry, Principals, SystemEntry};

use crate::helpers::{API_TOKEN, TestApp, TestAppBuilder, TestDb, eventually, now_secs};
use crate::support::fake_slack::{BOT_USER_ID, Message};

const CHANNEL: &str = "C0OUTAGE";
const SALES: &str = "C0SALES";
const PARTNERS: &str = "C0PARTNER";
const RANDOM: &str = "C0RANDOM";
const ALICE: &str = "U0ALICE";
const BOB: &str = "U0BOB";
const CAROL: &str = "U0CAROL";
const EVE: &str = "U0EVE";
const WAIT: Duration = Duration::from_secs(10);

pub(crate) async fn builder(db: TestDb) -> TestAppBuilder {
    TestAppBuilder::new(db).await.settings(|s| {
        let a = &mut s.announcements;
        a.channel = Some(CHANNEL.into());
        a.systems = ["search", "payments", "pay-api"]
            .iter()
            .map(|id| SystemEntry {
                id: (*id).into(),
                name: match *id {
                    "search" => "Search".into(),
                    "payments" => "Payments".into(),
                    _ => "Pay API".into(),
                },
                group: None,
            })
            .collect();
        a.audiences = vec![
            AudienceEntry {
                id: "sales".into(),
                name: "Sales".into(),
                channel: Some(SALES.into()),
            },
            AudienceEntry {
                id: "partners".into(),
                name: "B2B partners".into(),
                channel: Some(PARTNERS.into()),
            },
        ];
        a.editors = Principals {
            groups: vec!["incident-managers".into()],
            ..Principals::default()
        };
    })
}

pub(crate) fn workspace(app: &TestApp) {
    // The bot is not in the Sales channel yet: it joins to post there.
    app.slack.add_channel_not_member(SALES, "sales");
    for (id, name) in [
        (CHANNEL, "outages"),
        (PARTNERS, "partners"),
        (RANDOM, "random"),
        ("C0OPS", "ops"),
    ] {
        app.slack.add_channel(id, name);
    }
    app.slack
        .add_user(ALICE, "alice", "alice@example.com", "Europe/Berlin");
    app.slack.add_user(BOB, "bob", "bob@example.com", "UTC");
    app.slack
        .add_user(CAROL, "carol", "carol@example.com", "UTC");
    app.slack.add_user(EVE, "eve", "eve@example.com", "UTC");
    app.slack
        .add_usergroup("S0EDIT", "incident-managers", &[CAROL]);
    app.slack.add_usergroup("S0ONCALL", "oncall", &[ALICE]);
}

async fn spawn(db: TestDb) -> TestApp {
    let app = builder(db).await.spawn().await;
    workspace(&app);
    app
}

fn text_value(v: &str) -> Value {
    json!({"value": {"type": "plain_text_input", "value": v}})
}
fn select_value(v: &str) -> Value {
    json!({"value": {"type": "static_select", "selected_option": {"value": v}}})
}
fn user_value(u: &str) -> Value {
    json!({"value": {"type": "users_select", "selected_user": u}})
}

/// A valid new-outage form: Payments down, Sales affected, Partners not.
fn valid_values() -> Value {
    json!({
        "summary": text_value("Card payments fail at checkout"),
        "systems": {"value": {"type": "multi_static_select", "selected_options": [{"value": "payments"}]}},
        "impact.sales": select_value("yes"),
        "impact.sales.details": text_value("no new orders"),
        "impact.partners": select_value("no"),
        "impact.partners.details": {"value": {"type": "plain_text_input", "value": null}},
        "severity": select_value("major"),
        "eta": select_value("2h"),
        "resolution_assignee": user_value(ALICE),
        "communication_assignee": user_value(BOB),
        "public": {"value": {"type": "checkboxes", "selected_options": [{"value": "public"}]}}
    })
}

fn submission(app: &TestApp, user: &str, view: &Value, values: Value) -> Value {
    json!({
        "type": "view_submission",
        "user": {"id": user, "username": user.to_lowercase(), "team_id": "T0FAKE"},
        "team": {"id": "T0FAKE", "domain": "fake"},
        "api_app_id": "A0APP",
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

fn closed(view: &Value, user: &str) -> Value {
    json!({
        "type": "view_closed",
        "user": {"id": user, "team_id": "T0FAKE"},
        "team": {"id": "T0FAKE", "domain": "fake"},
        "api_app_id": "A0APP",
        "view": {"id": view["id"], "callback_id": view["callback_id"],
                 "private_metadata": view["private_metadata"], "hash": view["hash"],
                 "state": {"values": {}}},
        "is_cleared": false
    })
}

async fn post(app: &TestApp, payload: &Value) -> Value {
    let resp = app.interaction(payload).await;
    assert_eq!(resp.status(), 200);
    let raw = resp.text().await.expect("body");
    if raw.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&raw).expect("JSON ack")
    }
}

/// A button on the announcement (or a DM), clicked by `user`. Returns the response_url.
async fn click(
    app: &TestApp,
    user: &str,
    action_id: &str,
    value: &str,
    channel: &str,
    ts: &str,
) -> String {
    let response_url = app.slack.response_url_for_message(channel, ts);
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user, "username": user.to_lowercase(), "team_id": "T0FAKE"},
        "team": {"id": "T0FAKE", "domain": "fake"},
        "api_app_id": "A0APP",
        "trigger_id": app.slack.trigger_id(),
        "container": {"type": "message", "message_ts": ts, "channel_id": channel},
        "channel": {"id": channel, "name": "outages"},
        "message": {"ts": ts, "type": "message"},
        "response_url": response_url,
        "actions": [{"action_id": action_id, "block_id": "announcement", "type": "button",
                     "value": value, "action_ts": crate::helpers::action_ts()}]
    });
    let ack = post(app, &payload).await;
    assert!(ack.is_null(), "block actions are acknowledged empty: {ack}");
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

async fn outages(app: &TestApp) -> Vec<Outage> {
    model::list(app.state.db().pool(), None, 100)
        .await
        .expect("outages readable")
}

/// Announce through `/announce` and the modal; wait until the message is posted and pinned.
async fn announce(app: &TestApp) -> (Outage, Message) {
    let resp = app.command("/announce", "pay", ALICE).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.text().await.unwrap(),
        "",
        "the modal opens, no message"
    );
    let view = last_view(app, "announcements:new");
    let ack = post(app, &submission(app, ALICE, &view, valid_values())).await;
    assert!(ack.is_null(), "a valid submission closes the modal: {ack}");
    let msgs = app.slack.wait_for_messages(CHANNEL, 1, WAIT).await;
    let m = eventually(WAIT, "the announcement pinned", || async {
        app.slack.message(CHANNEL, &msgs[0].ts).filter(|m| m.pinned)
    })
    .await;
    app.slack.wait_for_messages(SALES, 1, WAIT).await;
    let o = eventually(WAIT, "the permalink stored", || async {
        outages(app)
            .await
            .into_iter()
            .next()
            .filter(|o| o.permalink.is_some())
    })
    .await;
    (o, m)
}

fn thread(app: &TestApp, ts: &str) -> Vec<Message> {
    app.slack
        .messages_in(CHANNEL)
        .into_iter()
        .filter(|m| m.thread_ts.as_deref() == Some(ts))
        .collect()
}

fn blocks_text(m: &Message) -> String {
    m.blocks.to_string()
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(400)).await;
}

#[tokio::test]
async fn announcing_posts_one_pinned_message_and_one_post_per_affected_audience() {
    for db in TestDb::all("announcing_posts_one_pinned_message").await {
        let app = spawn(db).await;
        let (o, m) = announce(&app).await;
        assert_eq!(o.fields.systems, vec!["payments"]);
        assert_eq!(o.fields.resolution_assignee, ALICE);
        assert_eq!(o.fields.communication_assignee, BOB);
        assert!(o.fields.public);
        assert_eq!(o.message_ts.as_deref(), Some(m.ts.as_str()));
        let b = blocks_text(&m);
        assert!(b.contains("Card payments fail at checkout"));
        assert!(b.contains("announcements:update") && b.contains("announcements:resolve"));
        assert!(b.contains("announcements:reassign") && b.contains("announcements:channel"));
        let sales = app.slack.wait_for_messages(SALES, 1, WAIT).await;
        assert!(sales[0].text.contains(o.permalink.as_deref().unwrap()));
        assert!(
            app.slack.is_bot_member(SALES),
            "joined the audience channel to post"
        );
        settle().await;
        assert_eq!(app.slack.messages_in(CHANNEL).len(), 1, "one announcement");
        assert_eq!(app.slack.messages_in(SALES).len(), 1, "told once");
        assert!(app.slack.messages_in(PARTNERS).is_empty(), "not affected");
        let h = model::history(app.state.db().pool(), &o.id).await.unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].kind, "announced");
        app.stop().await;
    }
}

#[tokio::test]
async fn the_modal_ranks_matching_systems_first_and_defaults_assignees_to_the_announcer() {
    let app = spawn(TestDb::sqlite()).await;
    app.command("/announce", "pay", EVE).await;
    let view = last_view(&app, "announcements:new");
    let blocks = view["blocks"].as_array().unwrap();
    let systems = blocks.iter().find(|b| b["block_id"] == "systems").unwrap();
    let order: Vec<&str> = systems["element"]["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["value"].as_str().unwrap())
        .collect();
    assert_eq!(order, vec!["payments", "pay-api", "search"]);
    for b in ["resolution_assignee", "communication_assignee"] {
        let block = blocks.iter().find(|x| x["block_id"] == b).unwrap();
        assert_eq!(block["element"]["initial_user"], EVE);
    }
    let ids: Vec<&str> = blocks
        .iter()
        .filter_map(|b| b["block_id"].as_str())
        .collect();
    for id in [
        "summary",
        "impact.sales",
        "impact.partners.details",
        "severity",
        "eta",
        "public",
    ] {
        assert!(ids.contains(&id), "{id} is asked for");
    }
    // `/announce maintenance …` is scheduled maintenance's, not an outage form.
    let before = app.slack.views().len();
    let resp = app.command("/announce", "maintenance", ALICE).await;
    assert_eq!(resp.status(), 200);
    assert!(
        app.slack.views()[before..]
            .iter()
            .all(|v| v.view["callback_id"] != "announcements:new"),
        "handed over to crate::maintenance"
    );
    app.stop().await;
}

#[tokio::test]
async fn each_validation_error_comes_back_on_its_field_and_nothing_is_announced() {
    let app = spawn(TestDb::sqlite()).await;
    app.command("/announce", "", ALICE).await;
    let view = last_view(&app, "announcements:new");
    let cases: Vec<(&str, Value, &str)> = vec![
        ("summary", text_value("   "), "summary"),
        (
            "systems",
            json!({"value": {"type": "multi_static_select", "selected_options": []}}),
            "systems",
        ),
        (
            "systems",
            json!({"value": {"type": "multi_static_select", "selected_options": [{"value": "mainframe"}]}}),
            "systems",
        ),
        ("impact.sales", select_value("maybe"), "impact.sales"),
        ("severity", select_value("apocalyptic"), "severity"),
        ("eta", select_value("3h"), "eta"),
        (
            "resolution_assignee",
            json!({"value": {"type": "users_select", "selected_user": null}}),
            "resolution_assignee",
        ),
    ];
    for (block, value, field) in cases {
        let mut values = valid_values();
        values[block] = value;
        let ack = post(&app, &submission(&app, ALICE, &view, values)).await;
        assert_eq!(ack["response_action"], "errors", "{block}: {ack}");
        let errors = ack["errors"].as_object().unwrap();
        assert_eq!(
            errors.keys().collect::<Vec<_>>(),
            vec![field],
            "exactly {field} is reported: {ack}"
        );
    }
    assert!(outages(&app).await.is_empty());
    assert!(app.slack.messages_in(CHANNEL).is_empty());
    app.stop().await;
}

#[tokio::test]
async fn an_update_posts_one_thread_reply_naming_exactly_the_changed_fields() {
    for db in TestDb::all("an_update_posts_one_thread_reply").await {
        let app = spawn(db).await;
        let (o, m) = announce(&app).await;
        click(&app, BOB, "announcements:update", &o.id, CHANNEL, &m.ts).await;
        let view = last_view(&app, "announcements:update");
        let mut values = valid_values();
        values["eta"] = select_value("8h");
        values["severity"] = select_value("critical");
        values["reason"] = text_value("the database restore takes longer");
        let ack = post(&app, &submission(&app, BOB, &view, values.clone())).await;
        assert!(ack.is_null(), "{ack}");
        let replies = eventually(WAIT, "the thread reply", || async {
            Some(thread(&app, &m.ts)).filter(|t| !t.is_empty())
        })
        .await;
        let t = &replies[0].text;
        assert!(t.contains("*Severity*: major → critical"), "{t}");
        assert!(t.contains("*ETA*: under 2 h → under 8 h"), "{t}");
        assert!(t.contains(&format!("<@{BOB}>")), "by whom: {t}");
        assert!(t.contains("the database restore takes longer"), "why: {t}");
        for other in [
            "Summary",
            "Affected systems",
            "Impact on",
            "assignee",
            "Public",
        ] {
            assert!(!t.contains(other), "{other} did not change: {t}");
        }
        eventually(WAIT, "the message updated in place", || async {
            app.slack
                .message(CHANNEL, &m.ts)
                .filter(|x| x.updated >= 1 && x.blocks.to_string().contains("critical"))
        })
        .await;

        // The same values again: nothing changed, nothing stored.
        click(&app, BOB, "announcements:update", &o.id, CHANNEL, &m.ts).await;
        let view = last_view(&app, "announcements:update");
        let ack = post(&app, &submission(&app, BOB, &view, values)).await;
        assert_eq!(ack["response_action"], "errors", "{ack}");

        // Reassign names only the assignee.
        click(&app, ALICE, "announcements:reassign", &o.id, CHANNEL, &m.ts).await;
        let view = last_view(&app, "announcements:reassign");
        let ack = post(
            &app,
            &submission(
                &app,
                ALICE,
                &view,
                json!({
                    "resolution_assignee": user_value(CAROL),
                    "communication_assignee": user_value(BOB),
                    "reason": text_value("Carol knows the payment gateway"),
                }),
            ),
        )
        .await;
        assert!(ack.is_null(), "{ack}");
        let replies = eventually(WAIT, "the reassign reply", || async {
            Some(thread(&app, &m.ts)).filter(|t| t.len() == 2)
        })
        .await;
        let t = &replies[1].text;
        assert!(
            t.contains(&format!("*Resolution assignee*: <@{ALICE}> → <@{CAROL}>")),
            "{t}"
        );
        assert!(
            !t.contains("Communication assignee") && !t.contains("ETA"),
            "{t}"
        );
        settle().await;
        assert_eq!(thread(&app, &m.ts).len(), 2, "one reply per change");
        // Assignees are told, except whoever made the change.
        let carol = eventually(WAIT, "Carol told she is assigned", || async {
            Some(all_dms(&app, CAROL)).filter(|d| !d.is_empty())
        })
        .await;
        assert!(
            carol[0].text.contains("made you the *resolution assignee*"),
            "{}",
            carol[0].text
        );
        let bob = all_dms(&app, BOB);
        assert_eq!(
            bob.len(),
            1,
            "Bob was told once, when Alice announced: {bob:?}"
        );
        assert!(bob[0].text.contains("*communication assignee*"));
        assert!(all_dms(&app, ALICE).is_empty(), "Alice made both changes");
        let h = model::history(app.state.db().pool(), &o.id).await.unwrap();
        let kinds: Vec<&str> = h.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(kinds, vec!["announced", "updated", "reassigned"]);
        assert_eq!(
            h[1].reason.as_deref(),
            Some("the database restore takes longer")
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn cancelling_the_resolve_modal_leaves_the_outage_open() {
    for db in TestDb::all("cancelling_the_resolve_modal").await {
        let app = spawn(db).await;
        let (o, m) = announce(&app).await;
        settle().await;
        let before = app.slack.message(CHANNEL, &m.ts).unwrap();
        click(&app, ALICE, "announcements:resolve", &o.id, CHANNEL, &m.ts).await;
        let view = last_view(&app, "announcements:resolve");
        assert_eq!(
            view["notify_on_close"], true,
            "Slack tells us about the cancel"
        );
        let ack = post(&app, &closed(&view, ALICE)).await;
        assert!(ack.is_null());
        settle().await;
        let now = model::load(app.state.db().pool(), &o.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(now.state, "open");
        assert_eq!(now.version, o.version);
        let after = app.slack.message(CHANNEL, &m.ts).unwrap();
        assert!(after.pinned);
        assert_eq!(after.updated, before.updated, "the message is untouched");
        assert!(thread(&app, &m.ts).is_empty());
        app.stop().await;
    }
}

/// Values of the resolve modal at local `date`/`time`.
fn resolve_values(date: &str, time: &str, report: Option<&str>) -> Value {
    json!({
        "summary": text_value("rolled back the gateway config"),
        "resolved_at_date": {"value": {"type": "datepicker", "selected_date": date}},
        "resolved_at_time": {"value": {"type": "timepicker", "selected_time": time}},
        "postmortem": {"value": {"type": "radio_buttons", "selected_option": {"value": "yes"}}},
        "report_url": {"value": {"type": "url_text_input", "value": report}}
    })
}

#[tokio::test]
async fn resolving_unpins_and_marks_it_resolved_and_reopen_brings_it_back() {
    for db in TestDb::all("resolving_unpins_and_reopen").await {
        let app = spawn(db).await;
        let (o, m) = announce(&app).await;
        click(&app, ALICE, "announcements:resolve", &o.id, CHANNEL, &m.ts).await;
        let view = last_view(&app, "announcements:resolve");
        // Alice is in Europe/Berlin (UTC+1 in the fake): the picker shows her local time.
        let local = chrono::Utc::now() + chrono::Duration::hours(1);
        let date = local.format("%Y-%m-%d").to_string();
        let time = local.format("%H:%M").to_string();
        let date_block = view["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["block_id"] == "resolved_at_date")
            .unwrap()
            .clone();
        assert_eq!(date_block["element"]["initial_date"], date.as_str());

        // An hour ahead of her local time is in the future; a bad link is refused.
        let later = (local + chrono::Duration::hours(1))
            .format("%H:%M")
            .to_string();
        let later_date = (local + chrono::Duration::hours(1))
            .format("%Y-%m-%d")
            .to_string();
        let ack = post(
            &app,
            &submission(
                &app,
                ALICE,
                &view,
                resolve_values(&later_date, &later, Some("ftp://x")),
            ),
        )
        .await;
        assert_eq!(ack["response_action"], "errors");
        assert!(ack["errors"]["resolved_at_time"].is_string(), "{ack}");
        assert!(ack["errors"]["report_url"].is_string(), "{ack}");
        assert_eq!(
            model::load(app.state.db().pool(), &o.id)
                .await
                .unwrap()
                .unwrap()
                .state,
            "open"
        );

        let ack = post(
            &app,
            &submission(
                &app,
                ALICE,
                &view,
                resolve_values(&date, &time, Some("https://wiki.example.com/pm/1")),
            ),
        )
        .await;
        assert!(ack.is_null(), "{ack}");
        let resolved = model::load(app.state.db().pool(), &o.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(resolved.state, "resolved");
        let at = resolved.resolved_at.unwrap();
        assert!(
            (chrono::Utc::now().timestamp_millis() - at).abs() < 120_000,
            "stored in UTC"
        );
        let r = resolved.resolution.clone().unwrap();
        assert!(r.postmortem);
        assert_eq!(
            r.report_url.as_deref(),
            Some("https://wiki.example.com/pm/1")
        );
        let msg = eventually(WAIT, "unpinned and marked resolved", || async {
            app.slack
                .message(CHANNEL, &m.ts)
                .filter(|x| !x.pinned && x.blocks.to_string().contains("Resolved"))
        })
        .await;
        let b = blocks_text(&msg);
        assert!(
            b.contains("Duration") && b.contains("announcements:reopen"),
            "{b}"
        );
        assert!(
            !b.contains("announcements:resolve"),
            "no live Resolve button"
        );
        let replies = eventually(WAIT, "the resolved reply", || async {
            Some(thread(&app, &m.ts)).filter(|t| !t.is_empty())
        })
        .await;
        assert!(replies[0].text.contains("Resolved"), "{}", replies[0].text);

        click(&app, BOB, "announcements:reopen", &o.id, CHANNEL, &m.ts).await;
        eventually(WAIT, "pinned again and open", || async {
            app.slack
                .message(CHANNEL, &m.ts)
                .filter(|x| x.pinned && x.blocks.to_string().contains("announcements:resolve"))
        })
        .await;
        let reopened = model::load(app.state.db().pool(), &o.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reopened.state, "open");
        assert!(reopened.resolved_at.is_none() && reopened.resolution.is_none());
        let replies = eventually(WAIT, "the reopened reply", || async {
            Some(thread(&app, &m.ts)).filter(|t| t.len() == 2)
        })
        .await;
        assert!(replies[1].text.contains("Reopened"), "{}", replies[1].text);
        app.stop().await;
    }
}

fn reaction(event_id: &str, user: &str, emoji: &str, channel: &str, ts: &str) -> Value {
    json!({
        "token": "legacy", "team_id": "T0FAKE", "api_app_id": "A0APP", "type": "event_callback",
        "event_id": event_id, "event_time": now_secs(),
        "event": {"type": "reaction_added", "user": user, "reaction": emoji, "item_user": BOB,
                  "item": {"type": "message", "channel": channel, "ts": ts},
                  "event_ts": "1700000100.000100"}
    })
}

#[tokio::test]
async fn a_reaction_copies_a_thread_message_once_and_is_ignored_elsewhere() {
    for db in TestDb::all("a_reaction_copies_a_thread_message_once").await {
        let app = spawn(db).await;
        let (o, m) = announce(&app).await;
        let reply = app
            .slack
            .insert_reply(CHANNEL, &m.ts, BOB, "customers report 502 on /pay");
        let elsewhere = app.slack.insert_message(RANDOM, BOB, "lunch?");
        let top_level = app.slack.insert_message(CHANNEL, BOB, "unrelated chatter");
        settle().await;
        let before = app.slack.call_count("chat.postMessage");

        for (id, emoji, channel, ts) in [
            ("Ev1", "point_up", RANDOM, elsewhere.as_str()),
            ("Ev2", "tada", CHANNEL, reply.as_str()),
            ("Ev3", "point_up", CHANNEL, top_level.as_str()),
            ("Ev4", "point_up", CHANNEL, m.ts.as_str()),
        ] {
            let r = app
                .event(&reaction(id, CAROL, emoji, channel, ts), None)
                .await;
            assert_eq!(r.status(), 200);
        }
        settle().await;
        assert_eq!(
            app.slack.call_count("chat.postMessage"),
            before,
            "nothing is copied from elsewhere, with another emoji, or outside the thread"
        );

        for id in ["Ev5", "Ev6"] {
            let r = app
                .event(&reaction(id, CAROL, "point_up", CHANNEL, &reply), None)
                .await;
            assert_eq!(r.status(), 200);
        }
        eventually(WAIT, "the copy in the thread", || async {
            Some(thread(&app, &m.ts)).filter(|t| {
                t.iter()
                    .any(|x| x.user == BOT_USER_ID && x.text.contains("502"))
            })
        })
        .await;
        settle().await;
        let copies: Vec<_> = thread(&app, &m.ts)
            .into_iter()
            .filter(|x| x.user == BOT_USER_ID)
            .collect();
        assert_eq!(copies.len(), 1, "copied once: {copies:?}");
        let t = &copies[0].text;
        assert!(t.contains(&format!("<@{BOB}>")), "author: {t}");
        assert!(t.contains("customers report 502 on /pay"), "text: {t}");
        assert!(
            t.contains("https://fake.slack.com/archives/"),
            "permalink: {t}"
        );
        let stored: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM outage_reaction_copies WHERE outage_id = $1")
                .bind(&o.id)
                .fetch_one(app.state.db().pool())
                .await
                .unwrap();
        assert_eq!(stored, 1);
        app.stop().await;
    }
}

#[tokio::test]
async fn create_channel_invites_the_assignees_links_it_and_copies_reactions_from_it() {
    for db in TestDb::all("create_channel_invites_the_assignees").await {
        let app = spawn(db).await;
        let (o, m) = announce(&app).await;
        click(&app, BOB, "announcements:channel", &o.id, CHANNEL, &m.ts).await;
        click(&app, BOB, "announcements:channel", &o.id, CHANNEL, &m.ts).await;
        let o2 = eventually(WAIT, "the incident channel stored", || async {
            model::load(app.state.db().pool(), &o.id)
                .await
                .unwrap()
                .filter(|x| x.incident_channel.is_some())
        })
        .await;
        let ch = o2.incident_channel.clone().unwrap();
        let day = chrono::Utc::now().format("%y%m%d").to_string();
        assert_eq!(
            app.slack.channel_id_by_name(&format!("inc-payments-{day}")),
            Some(ch.clone())
        );
        eventually(WAIT, "the assignees invited", || async {
            let mut members = app.slack.channel_members(&ch).unwrap_or_default();
            members.sort();
            (members == vec![ALICE.to_string(), BOB.to_string()]).then_some(())
        })
        .await;
        eventually(WAIT, "linked from the message", || async {
            app.slack
                .message(CHANNEL, &m.ts)
                .filter(|x| x.blocks.to_string().contains(&format!("<#{ch}>")))
        })
        .await;
        settle().await;
        assert_eq!(
            app.slack.call_count("conversations.create"),
            1,
            "one channel"
        );

        let said = app.slack.insert_message(&ch, ALICE, "rollback started");
        app.event(&reaction("EvC1", BOB, "point_up", &ch, &said), None)
            .await;
        eventually(WAIT, "the copy from the incident channel", || async {
            Some(thread(&app, &m.ts))
                .filter(|t| t.iter().any(|x| x.text.contains("rollback started")))
        })
        .await;
        app.stop().await;
    }
}

#[tokio::test]
async fn a_channel_job_that_fails_after_creating_the_channel_finishes_without_repeating_itself() {
    for db in TestDb::all("a_channel_job_that_fails_after_creating").await {
        let app = spawn(db).await;
        let (o, m) = announce(&app).await;
        // The channel is created and stored, then inviting fails (a code the client does not
        // retry): the job is retried by the queue and must pick up where it stopped.
        app.slack.fail_next(
            "conversations.invite",
            crate::support::fake_slack::Fault::error("fatal_error"),
            2,
        );
        click(&app, BOB, "announcements:channel", &o.id, CHANNEL, &m.ts).await;
        let ch = eventually(WAIT, "the incident channel stored", || async {
            model::load(app.state.db().pool(), &o.id)
                .await
                .unwrap()
                .and_then(|x| x.incident_channel)
        })
        .await;
        eventually(WAIT, "the assignees invited after the failures", || async {
            let mut members = app.slack.channel_members(&ch).unwrap_or_default();
            members.sort();
            (members == vec![ALICE.to_string(), BOB.to_string()]).then_some(())
        })
        .await;
        eventually(WAIT, "the note in the thread", || async {
            Some(thread(&app, &m.ts)).filter(|t| {
                t.iter()
                    .any(|x| x.text.contains(&format!("Incident channel <#{ch}>")))
            })
        })
        .await;
        eventually(WAIT, "the channel linked from the message", || async {
            app.slack
                .message(CHANNEL, &m.ts)
                .filter(|x| x.blocks.to_string().contains(&format!("<#{ch}>")))
        })
        .await;
        settle().await;
        assert_eq!(
            app.slack.call_count("conversations.create"),
            1,
            "one channel"
        );
        assert_eq!(
            app.slack.calls("conversations.invite").len(),
            3,
            "two failed invitations, then one that worked"
        );
        let notes = thread(&app, &m.ts)
            .into_iter()
            .filter(|x| x.text.contains("Incident channel <#"))
            .count();
        assert_eq!(notes, 1, "one note in the thread");
        let intros = app
            .slack
            .messages_in(&ch)
            .into_iter()
            .filter(|x| x.text.starts_with("Incident channel for"))
            .count();
        assert_eq!(intros, 1, "one introduction in the channel");
        app.stop().await;
    }
}

#[tokio::test]
async fn only_the_announcer_assignees_and_editors_may_change_it_and_announcers_are_configurable() {
    for db in TestDb::all("only_the_announcer_assignees_and_editors").await {
        let app = builder(db)
            .await
            .settings(|s| {
                s.announcements.announcers = Principals {
                    groups: vec!["oncall".into()],
                    ..Principals::default()
                }
            })
            .spawn()
            .await;
        workspace(&app);
        let resp = app.command("/announce", "", EVE).await;
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["response_type"], "ephemeral");
        assert!(
            body["text"].as_str().unwrap().contains("may not announce"),
            "{body}"
        );
        assert!(app.slack.views().is_empty());

        let (o, m) = announce(&app).await;
        let views = app.slack.views().len();
        let url = click(&app, EVE, "announcements:update", &o.id, CHANNEL, &m.ts).await;
        let posts = app.slack.wait_for_response_url_posts(&url, 1, WAIT).await;
        let text = posts[0].body["text"].as_str().unwrap().to_string();
        assert!(text.contains("Only the people on this outage"), "{text}");
        assert_eq!(posts[0].body["response_type"], "ephemeral");
        let url = click(&app, EVE, "announcements:resolve", &o.id, CHANNEL, &m.ts).await;
        app.slack.wait_for_response_url_posts(&url, 1, WAIT).await;
        assert_eq!(app.slack.views().len(), views, "no modal for Eve");

        // An editor (member of incident-managers) may.
        click(&app, CAROL, "announcements:update", &o.id, CHANNEL, &m.ts).await;
        let view = last_view(&app, "announcements:update");
        // Eve submitting a form opened by someone else is refused too.
        let mut values = valid_values();
        values["eta"] = select_value("24h");
        values["reason"] = text_value("sneaky");
        let ack = post(&app, &submission(&app, EVE, &view, values)).await;
        assert_eq!(ack["response_action"], "update", "{ack}");
        assert_eq!(
            model::load(app.state.db().pool(), &o.id)
                .await
                .unwrap()
                .unwrap()
                .fields
                .eta,
            "2h"
        );
        let refusals = app
            .state
            .db()
            .audit_recent("announcements", 50)
            .await
            .unwrap()
            .into_iter()
            .filter(|a| a.outcome == "refused")
            .count();
        assert!(refusals >= 4, "refusals are audited ({refusals})");
        app.stop().await;
    }
}

/// Interactions signed at the manual clock's time (the service checks signatures against it).
async fn interaction_at(app: &TestApp, payload: &Value, ts: i64) -> reqwest::Response {
    let body = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
    app.post_signed_at(
        "/slack/interactions",
        "application/x-www-form-urlencoded",
        body.as_bytes(),
        ts,
    )
    .await
}

pub(crate) async fn api(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app
        .client
        .request(method, app.url(path))
        .bearer_auth(API_TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

pub(crate) fn api_body(eta: &str) -> Value {
    json!({
        "summary": "Search returns nothing", "systems": ["search"],
        "impact": {"sales": {"affected": "no"}, "partners": {"affected": "yes", "details": "API 500s"}},
        "severity": "critical", "eta": eta,
        "resolution_assignee": ALICE, "communication_assignee": BOB, "by": "alertmanager"
    })
}

/// Reminder DMs to `user` (assignment notices left out).
fn dms(app: &TestApp, user: &str) -> Vec<Message> {
    all_dms(app, user)
        .into_iter()
        .filter(|m| !m.text.starts_with(":wave:"))
        .collect()
}

fn all_dms(app: &TestApp, user: &str) -> Vec<Message> {
    app.slack
        .dm_channel_of(user)
        .map(|c| app.slack.messages_in(&c))
        .unwrap_or_default()
}

#[tokio::test]
async fn reminders_fire_once_per_eta_and_on_schedule() {
    for db in TestDb::all("reminders_fire_once_per_eta").await {
        let start = now_secs();
        let clock = ManualClock::at_secs(start);
        let app = builder(db)
            .await
            .clock(Arc::new(clock.clone()))
            .spawn()
            .await;
        workspace(&app);
        let min = 60_000;
        let (status, o) = api(
            &app,
            reqwest::Method::POST,
            "/api/v1/announcements",
            Some(api_body("30m")),
        )
        .await;
        assert_eq!(status, 201, "{o}");
        let id = o["id"].as_str().unwrap().to_string();
        app.slack.wait_for_messages(CHANNEL, 1, WAIT).await;
        let check = || slackops::announcements::reminders::check(&app.state);

        clock.advance_ms(5 * min);
        assert_eq!(check().await.unwrap(), 0, "too early");
        clock.advance_ms(16 * min); // +21: 9 min before the ETA
        assert_eq!(check().await.unwrap(), 1, "the before-ETA reminder");
        assert_eq!(check().await.unwrap(), 0, "once");
        for u in [ALICE, BOB] {
            let d = eventually(WAIT, "the reminder DM", || async {
                Some(dms(&app, u)).filter(|d| d.len() == 1)
            })
            .await;
            assert!(d[0].text.contains("runs out"), "{}", d[0].text);
        }
        clock.advance_ms(10 * min); // +31: the ETA passed, and 31 min without an update
        assert_eq!(check().await.unwrap(), 2, "the prompt and the nudge");
        assert_eq!(check().await.unwrap(), 0, "once each");
        let alice = eventually(WAIT, "the ETA prompt", || async {
            Some(dms(&app, ALICE)).filter(|d| d.len() == 2)
        })
        .await;
        let prompt = &alice[1];
        assert!(prompt.text.contains("has passed"), "{}", prompt.text);
        let b = prompt.blocks.to_string();
        assert!(
            b.contains("announcements:update") && b.contains("announcements:snooze"),
            "{b}"
        );
        let bob = eventually(WAIT, "Bob's prompt and nudge", || async {
            Some(dms(&app, BOB)).filter(|d| d.len() == 3)
        })
        .await;
        assert!(bob.iter().any(|d| d.text.contains("No update was posted")));

        // Snooze (signed at the clock's time): asked again after 15 minutes, not before.
        let payload = json!({
            "type": "block_actions", "user": {"id": ALICE, "team_id": "T0FAKE"},
            "team": {"id": "T0FAKE"}, "api_app_id": "A0APP", "trigger_id": app.slack.trigger_id(),
            "container": {"type": "message", "message_ts": prompt.ts, "channel_id": prompt.channel},
            "channel": {"id": prompt.channel}, "message": {"ts": prompt.ts},
            "response_url": app.slack.response_url_for_message(&prompt.channel, &prompt.ts),
            "actions": [{"action_id": "announcements:snooze", "type": "button", "value": id,
                         "action_ts": crate::helpers::action_ts()}]
        });
        let r = interaction_at(&app, &payload, clock.now_secs()).await;
        assert_eq!(r.status(), 200);
        clock.advance_ms(10 * min); // +41
        assert_eq!(
            check().await.unwrap(),
            0,
            "snoozed, and the nudge waits for its next interval"
        );
        clock.advance_ms(6 * min); // +47: snooze over
        assert_eq!(check().await.unwrap(), 1, "prompted again after the snooze");

        // A new ETA gets its own reminders; the update resets the nudge.
        let (status, _) = api(
            &app,
            reqwest::Method::PATCH,
            &format!("/api/v1/announcements/{id}"),
            Some(json!({"eta": "2h", "reason": "bigger than we thought"})),
        )
        .await;
        assert_eq!(status, 200);
        clock.advance_ms(29 * min); // 29 min after the update
        assert_eq!(check().await.unwrap(), 0);
        clock.advance_ms(82 * min); // 111 min after: 9 min before the new ETA (and 3 nudges due)
        assert_eq!(
            check().await.unwrap(),
            2,
            "the new ETA's reminder and one nudge"
        );
        assert_eq!(check().await.unwrap(), 0);
        let rows: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM outage_reminders WHERE outage_id = $1")
                .bind(&id)
                .fetch_one(app.state.db().pool())
                .await
                .unwrap();
        assert_eq!(rows, 6, "what was sent is stored");
        app.stop().await;
    }
}

#[tokio::test]
async fn reminders_run_as_a_periodic_task() {
    let clock = ManualClock::at_secs(now_secs());
    let app = builder(TestDb::sqlite())
        .await
        .settings(|s| s.announcements.reminder_check_secs = 1)
        .clock(Arc::new(clock.clone()))
        .with_periodic()
        .spawn()
        .await;
    workspace(&app);
    let (status, _) = api(
        &app,
        reqwest::Method::POST,
        "/api/v1/announcements",
        Some(api_body("30m")),
    )
    .await;
    assert_eq!(status, 201);
    clock.advance_ms(22 * 60_000);
    eventually(Duration::from_secs(15), "the periodic reminder", || async {
        Some(dms(&app, ALICE)).filter(|d| !d.is_empty())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        dms(&app, ALICE).len(),
        1,
        "once, however often the task runs"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_api_needs_a_valid_token() {
    let app = spawn(TestDb::sqlite()).await;
    for token in [None, Some("wrong-token-0123456789")] {
        let mut req = app
            .client
            .post(app.url("/api/v1/announcements"))
            .json(&api_body("2h"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401);
        let resp = app
            .client
            .get(app.url("/api/v1/announcements"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    }
    // Two Authorization headers, one of them right, whatever the order: refused, not judged by
    // whichever copy is read first.
    for (first, second) in [
        (API_TOKEN, "wrong-token-0123456789"),
        ("wrong-token-0123456789", API_TOKEN),
    ] {
        let resp = app
            .client
            .post(app.url("/api/v1/announcements"))
            .header("authorization", format!("Bearer {first}"))
            .header("authorization", format!("Bearer {second}"))
            .json(&api_body("2h"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "Bearer {first} then {second}");
    }
    assert!(outages(&app).await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn the_api_announces_updates_and_resolves_with_the_same_slack_messages() {
    for db in TestDb::all("the_api_announces_updates_and_resolves").await {
        let app = spawn(db).await;
        let (status, o) = api(
            &app,
            reqwest::Method::POST,
            "/api/v1/announcements",
            Some(api_body("2h")),
        )
        .await;
        assert_eq!(status, 201, "{o}");
        assert_eq!(o["announced_by"], "api:alertmanager");
        assert_eq!(o["state"], "open");
        let id = o["id"].as_str().unwrap().to_string();
        let m = app
            .slack
            .wait_for_messages(CHANNEL, 1, WAIT)
            .await
            .remove(0);
        eventually(WAIT, "pinned", || async {
            app.slack.message(CHANNEL, &m.ts).filter(|x| x.pinned)
        })
        .await;
        app.slack.wait_for_messages(PARTNERS, 1, WAIT).await;

        let path = format!("/api/v1/announcements/{id}");
        let (status, v) = api(&app, reqwest::Method::PATCH, &path, Some(json!({
            "impact": {"sales": {"affected": "yes"}}, "reason": "orders drop too", "by": "alertmanager"
        })))
        .await;
        assert_eq!(status, 200, "{v}");
        let replies = eventually(WAIT, "the thread reply", || async {
            Some(thread(&app, &m.ts)).filter(|t| !t.is_empty())
        })
        .await;
        assert!(
            replies[0].text.contains("*Impact on Sales*: Unknown → Yes")
                || replies[0].text.contains("*Impact on Sales*: No → Yes"),
            "{}",
            replies[0].text
        );
        assert!(!replies[0].text.contains("Partners"), "{}", replies[0].text);
        app.slack.wait_for_messages(SALES, 1, WAIT).await;

        let (status, v) = api(
            &app,
            reqwest::Method::PATCH,
            &path,
            Some(json!({
                "state": "resolved", "resolution": {"summary": "index rebuilt", "postmortem": false}
            })),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["state"], "resolved");
        eventually(WAIT, "unpinned", || async {
            app.slack.message(CHANNEL, &m.ts).filter(|x| !x.pinned)
        })
        .await;
        let (status, v) = api(
            &app,
            reqwest::Method::PATCH,
            &path,
            Some(json!({"eta": "8h", "reason": "x"})),
        )
        .await;
        assert_eq!(status, 409, "a resolved outage is reopened first: {v}");

        let (status, v) = api(&app, reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200);
        let kinds: Vec<&str> = v["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, vec!["announced", "updated", "resolved"]);
        let (status, v) = api(
            &app,
            reqwest::Method::GET,
            "/api/v1/announcements?state=resolved",
            None,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(v["announcements"].as_array().unwrap().len(), 1);
        settle().await;
        assert_eq!(app.slack.messages_in(SALES).len(), 1);
        assert_eq!(app.slack.messages_in(PARTNERS).len(), 1);
        app.stop().await;
    }
}

#[tokio::test]
async fn the_api_answers_bad_bodies_with_400_naming_the_field() {
    for db in TestDb::all("the_api_answers_bad_bodies").await {
        let app = spawn(db).await;
        let mut cases: Vec<(Value, &str)> = Vec::new();
        let mut b = api_body("2h");
        b.as_object_mut().unwrap().remove("summary");
        cases.push((b, "summary"));
        let mut b = api_body("2h");
        b["systems"] = json!(["mainframe"]);
        cases.push((b, "systems"));
        let mut b = api_body("2h");
        b["eta"] = json!("3h");
        cases.push((b, "eta"));
        let mut b = api_body("2h");
        b["severity"] = json!(7);
        cases.push((b, "severity"));
        let mut b = api_body("2h");
        b["impact"]["sales"]["affected"] = json!("maybe");
        cases.push((b, "impact.sales"));
        let mut b = api_body("2h");
        b["impact"]["customers"] = json!({"affected": "yes"});
        cases.push((b, "impact.customers"));
        let mut b = api_body("2h");
        b["communication_assignee"] = json!("bob");
        cases.push((b, "communication_assignee"));
        let mut b = api_body("2h");
        b["colour"] = json!("red");
        cases.push((b, "colour"));
        for (body, field) in cases {
            let (status, v) = api(
                &app,
                reqwest::Method::POST,
                "/api/v1/announcements",
                Some(body),
            )
            .await;
            assert_eq!(status, 400, "{field}: {v}");
            assert_eq!(v["field"], field, "{v}");
        }
        let resp = app
            .client
            .post(app.url("/api/v1/announcements"))
            .bearer_auth(API_TOKEN)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        assert!(outages(&app).await.is_empty(), "nothing stored");

        let (_, o) = api(
            &app,
            reqwest::Method::POST,
            "/api/v1/announcements",
            Some(api_body("2h")),
        )
        .await;
        let path = format!("/api/v1/announcements/{}", o["id"].as_str().unwrap());
        for (body, field) in [
            (json!({"eta": "8h"}), "reason"),
            (json!({"eta": "5h", "reason": "x"}), "eta"),
            (json!({"state": "resolved"}), "resolution"),
            (
                json!({"state": "resolved", "resolution": {"summary": "ok", "report_url": "nope"}}),
                "resolution.report_url",
            ),
            (json!({"state": "gone"}), "state"),
            (json!({}), "body"),
        ] {
            let (status, v) = api(&app, reqwest::Method::PATCH, &path, Some(body)).await;
            assert_eq!(status, 400, "{field}: {v}");
            assert_eq!(v["field"], field, "{v}");
        }
        let (status, _) = api(
            &app,
            reqwest::Method::PATCH,
            "/api/v1/announcements/nope",
            Some(json!({"eta": "8h", "reason": "x"})),
        )
        .await;
        assert_eq!(status, 404);
        let h = model::history(app.state.db().pool(), o["id"].as_str().unwrap())
            .await
            .unwrap();
        assert_eq!(h.len(), 1, "no change was stored");
        app.stop().await;
    }
}

#[tokio::test]
async fn two_changes_from_the_same_version_cannot_both_win() {
    use slackops::announcements::changes::{self, Change, ChangeError, Kind};
    for db in TestDb::all("two_changes_from_the_same_version").await {
        let app = spawn(db).await;
        let (status, o) = api(
            &app,
            reqwest::Method::POST,
            "/api/v1/announcements",
            Some(api_body("2h")),
        )
        .await;
        assert_eq!(status, 201);
        let id = o["id"].as_str().unwrap().to_string();
        let current = model::load(app.state.db().pool(), &id)
            .await
            .unwrap()
            .unwrap();
        let change = |eta: &str, by: &str| {
            let mut f = current.fields.clone();
            f.eta = eta.into();
            Change {
                kind: Kind::Updated,
                by: by.into(),
                reason: Some("racing".into()),
                expected_version: Some(current.version),
                fields: Some(f),
                resolution: None,
            }
        };
        let (a, b) = tokio::join!(
            changes::apply(&app.state, &id, change("8h", ALICE)),
            changes::apply(&app.state, &id, change("24h", BOB)),
        );
        let wins = [a.is_ok(), b.is_ok()].iter().filter(|w| **w).count();
        assert_eq!(wins, 1, "exactly one change wins");
        let lost = if a.is_ok() { b } else { a };
        assert!(matches!(lost, Err(ChangeError::Conflict)), "{lost:?}");
        let h = model::history(app.state.db().pool(), &id).await.unwrap();
        assert_eq!(h.len(), 2, "one history row for the one change");
        app.stop().await;
    }
}

#[tokio::test]
async fn an_announcement_is_posted_once_when_slack_fails_for_a_while() {
    for db in TestDb::all("an_announcement_is_posted_once_when_slack_fails").await {
        let app = spawn(db).await;
        // More failures than the client retries inline: the job queue retries later.
        app.slack.fail_next(
            "chat.postMessage",
            crate::support::fake_slack::Fault::ServerError(503),
            5,
        );
        let (status, _) = api(
            &app,
            reqwest::Method::POST,
            "/api/v1/announcements",
            Some(api_body("2h")),
        )
        .await;
        assert_eq!(
            status, 201,
            "the announcement is accepted while Slack is down"
        );
        let m = app
            .slack
            .wait_for_messages(CHANNEL, 1, WAIT)
            .await
            .remove(0);
        eventually(WAIT, "pinned", || async {
            app.slack.message(CHANNEL, &m.ts).filter(|x| x.pinned)
        })
        .await;
        app.slack.wait_for_messages(PARTNERS, 1, WAIT).await;
        settle().await;
        assert_eq!(app.slack.messages_in(CHANNEL).len(), 1, "posted once");
        assert_eq!(app.slack.messages_in(PARTNERS).len(), 1);
        app.stop().await;
    }
}

#[tokio::test]
async fn thread_replies_keep_the_order_of_the_changes() {
    for db in TestDb::all("thread_replies_keep_the_order").await {
        let app = spawn(db).await;
        let (_, o) = api(
            &app,
            reqwest::Method::POST,
            "/api/v1/announcements",
            Some(api_body("2h")),
        )
        .await;
        let path = format!("/api/v1/announcements/{}", o["id"].as_str().unwrap());
        for body in [
            json!({"eta": "8h", "reason": "one"}),
            json!({"severity": "minor", "reason": "two"}),
            json!({"public": true, "reason": "three"}),
            json!({"summary": "Search is slow", "reason": "four"}),
        ] {
            let (status, v) = api(&app, reqwest::Method::PATCH, &path, Some(body)).await;
            assert_eq!(status, 200, "{v}");
        }
        let m = app
            .slack
            .wait_for_messages(CHANNEL, 1, WAIT)
            .await
            .remove(0);
        let replies = eventually(WAIT, "four replies", || async {
            Some(thread(&app, &m.ts)).filter(|t| t.len() == 4)
        })
        .await;
        let order: Vec<&str> = replies
            .iter()
            .map(|r| {
                ["ETA", "Severity", "Public status page", "Summary"]
                    .into_iter()
                    .find(|f| r.text.contains(&format!("*{f}*")))
                    .unwrap_or("?")
            })
            .collect();
        assert_eq!(
            order,
            vec!["ETA", "Severity", "Public status page", "Summary"]
        );
        eventually(WAIT, "the message shows the last version", || async {
            app.slack
                .message(CHANNEL, &m.ts)
                .filter(|x| x.blocks.to_string().contains("Search is slow"))
        })
        .await;
        app.stop().await;
    }
}

#[tokio::test]
async fn only_announcers_may_schedule_maintenance() {
    let app = builder(TestDb::sqlite())
        .await
        .settings(|s| {
            s.announcements.announcers = Principals {
                groups: vec!["oncall".into()],
                ..Principals::default()
            }
        })
        .spawn()
        .await;
    workspace(&app);
    let resp = app.command("/announce", "maintenance", EVE).await;
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["response_type"], "ephemeral");
    assert!(
        body["text"].as_str().unwrap().contains("may not announce"),
        "{body}"
    );
    assert!(app.slack.views().is_empty(), "no maintenance form for Eve");

    // A maintenance form submitted by someone who may not announce schedules nothing.
    let payload = json!({
        "type": "view_submission",
        "user": {"id": EVE, "username": "eve", "name": "eve", "team_id": "T0FAKE"},
        "team": {"id": "T0FAKE", "domain": "fake"},
        "api_app_id": "A0APP",
        "token": "legacy",
        "trigger_id": app.slack.trigger_id(),
        "view": {
            "id": "V0FORGED", "team_id": "T0FAKE", "type": "modal",
            "callback_id": "maintenance:create", "private_metadata": "",
            "hash": "h", "root_view_id": "V0FORGED", "previous_view_id": null,
            "state": {"values": {}}
        },
        "response_urls": []
    });
    let r = app.interaction(&payload).await;
    assert_eq!(r.status(), 200);
    let ack: Value = r.json().await.unwrap();
    assert_eq!(ack["response_action"], "update", "{ack}");
    assert_eq!(ack["view"]["title"]["text"], "Not allowed", "{ack}");
    let listed: Value = reqwest::Client::new()
        .get(app.url("/api/v1/maintenances"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["maintenances"].as_array().map(Vec::len),
        Some(0),
        "{listed}"
    );
}

#[tokio::test]
async fn the_api_answers_with_exactly_the_fields_its_openapi_document_lists() {
    use crate::openapi::{keys, schema_fields};
    let app = spawn(TestDb::sqlite()).await;
    let (status, created) = api(
        &app,
        reqwest::Method::POST,
        "/api/v1/announcements",
        Some(api_body("2h")),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(keys(&created), schema_fields("Outage"));
    let id = created["id"].as_str().unwrap().to_string();
    let (status, one) = api(
        &app,
        reqwest::Method::GET,
        &format!("/api/v1/announcements/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(keys(&one), schema_fields("OutageDetail"));
    assert_eq!(keys(&one["history"][0]), schema_fields("HistoryEntry"));
    let (status, list) = api(&app, reqwest::Method::GET, "/api/v1/announcements", None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(keys(&list), schema_fields("AnnouncementList"));
    assert_eq!(keys(&list["announcements"][0]), schema_fields("Outage"));
    app.stop().await;
}

/// Assignees are who reminders and nudges go to, so only active human members may be assignees
/// (users.info: `deleted`, `is_bot`, `is_app_user`; an unknown ID is `user_not_found`). The API
/// answers 400 naming the field, the modal a field error, and nothing is announced or changed.
#[tokio::test]
async fn bots_apps_deactivated_and_unknown_users_cannot_be_assignees() {
    for db in TestDb::all("assignees_must_be_active_people").await {
        let engine = db.engine;
        let app = spawn(db).await;
        app.slack.add_bot_user("U0ROBOT", "deploybot");
        app.slack.add_app_user("U0FLOW", "workflow");
        app.slack
            .add_user("U0GONE", "gone", "gone@example.com", "UTC");
        app.slack.deactivate_user("U0GONE");
        let refused = [
            ("U0ROBOT", "bot"),
            ("U0FLOW", "app"),
            ("U0GONE", "deactivated"),
            ("U0NOBODY", "No member"),
            (BOT_USER_ID, "bot"),
        ];

        // The API, on each assignee field.
        for (field, (user, why)) in [
            ("resolution_assignee", refused[0]),
            ("communication_assignee", refused[1]),
            ("resolution_assignee", refused[2]),
            ("communication_assignee", refused[3]),
            ("resolution_assignee", refused[4]),
        ] {
            let mut body = api_body("2h");
            body[field] = json!(user);
            let (status, v) = api(
                &app,
                reqwest::Method::POST,
                "/api/v1/announcements",
                Some(body),
            )
            .await;
            assert_eq!(status, 400, "{engine:?}: {user} as {field}: {v}");
            assert_eq!(v["field"], field, "{engine:?}: the field is named: {v}");
            assert!(
                v["message"].as_str().unwrap_or_default().contains(why),
                "{engine:?}: says why ({why}): {v}"
            );
        }
        assert!(
            outages(&app).await.is_empty(),
            "{engine:?}: nothing announced"
        );

        // The modal: a field error on the assignee, nothing announced.
        let resp = app.command("/announce", "pay", ALICE).await;
        assert_eq!(resp.status(), 200);
        let view = last_view(&app, "announcements:new");
        let mut values = valid_values();
        values["communication_assignee"] = user_value("U0GONE");
        let ack = post(&app, &submission(&app, ALICE, &view, values)).await;
        assert_eq!(ack["response_action"], "errors", "{engine:?}: {ack}");
        assert!(
            ack["errors"]["communication_assignee"]
                .as_str()
                .unwrap_or_default()
                .contains("deactivated"),
            "{engine:?}: {ack}"
        );
        assert!(
            outages(&app).await.is_empty(),
            "{engine:?}: nothing announced"
        );

        // Reassigning an announced outage to a bot through the API: 400, nothing changed.
        let (status, o) = api(
            &app,
            reqwest::Method::POST,
            "/api/v1/announcements",
            Some(api_body("2h")),
        )
        .await;
        assert_eq!(status, 201, "{engine:?}: active people are accepted: {o}");
        let path = format!("/api/v1/announcements/{}", o["id"].as_str().unwrap());
        let (status, v) = api(
            &app,
            reqwest::Method::PATCH,
            &path,
            Some(json!({"resolution_assignee": "U0ROBOT", "reason": "hand over"})),
        )
        .await;
        assert_eq!(status, 400, "{engine:?}: {v}");
        assert_eq!(v["field"], "resolution_assignee", "{engine:?}: {v}");
        let now = outages(&app).await;
        assert_eq!(now[0].fields.resolution_assignee, ALICE, "{engine:?}");
        assert_eq!(now[0].version, 1, "{engine:?}: unchanged");
        app.stop().await;
    }
}

/// When Slack cannot be asked whether an assignee is an active person (users.info fails past its
/// retries), nothing is announced: the API answers 503 with `Retry-After` (a documented answer a
/// tool can retry, not a 500), the modal a field error on the assignee it could not check.
#[tokio::test]
async fn an_assignee_slack_cannot_check_refuses_the_announcement_with_a_retryable_answer() {
    for db in TestDb::all("assignee_check_unavailable").await {
        let engine = db.engine;
        let app = spawn(db).await;
        app.slack
            .add_user("U0NEWBIE", "newbie", "newbie@example.com", "UTC");
        app.slack.fail_next(
            "users.info",
            crate::support::fake_slack::Fault::ServerError(500),
            20,
        );
        let mut body = api_body("2h");
        body["communication_assignee"] = json!("U0NEWBIE");
        let resp = reqwest::Client::new()
            .post(app.url("/api/v1/announcements"))
            .bearer_auth(API_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 503, "{engine:?}");
        assert_eq!(
            resp.headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            Some("5"),
            "{engine:?}"
        );
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"], "unavailable", "{engine:?}: {v}");
        assert!(
            v["message"]
                .as_str()
                .unwrap_or_default()
                .contains("_assignee: Slack could not be asked"),
            "{engine:?}: names the field it could not check: {v}"
        );
        assert!(
            outages(&app).await.is_empty(),
            "{engine:?}: nothing announced"
        );

        // The modal: a field error on an assignee; still nothing announced.
        app.slack.clear_faults();
        let resp = app.command("/announce", "pay", ALICE).await;
        assert_eq!(resp.status(), 200);
        let view = last_view(&app, "announcements:new");
        app.slack.fail_next(
            "users.info",
            crate::support::fake_slack::Fault::ServerError(500),
            20,
        );
        let mut values = valid_values();
        values["communication_assignee"] = user_value("U0NEWBIE");
        let ack = post(&app, &submission(&app, ALICE, &view, values)).await;
        assert_eq!(ack["response_action"], "errors", "{engine:?}: {ack}");
        let errors = ack["errors"].as_object().expect("field errors");
        assert!(
            errors.iter().any(|(k, m)| k.ends_with("_assignee")
                && m.as_str().unwrap_or_default().contains("try again")),
            "{engine:?}: {ack}"
        );
        assert!(
            outages(&app).await.is_empty(),
            "{engine:?}: nothing announced"
        );
        app.stop().await;
    }
}
