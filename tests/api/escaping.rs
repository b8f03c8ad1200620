//! Slack text is escaped everywhere (issue 12): hostile input in every field people or upstreams
//! control must not reach a message's `text` fallback or any of its mrkdwn block texts as live
//! markup (a broadcast, a link with a misleading label, a mention) — per reference/slack.md and
//! https://api.slack.com/reference/surfaces/formatting#escaping.

use serde_json::{Value, json};

use crate::announcements::{api, builder as announcements_builder, workspace};
use crate::approvals_flow::{WAIT as APPROVAL_WAIT, click, wait_for_settled_message};
use crate::approvals_support::{APP, APPROVER, CHANNEL as APPROVALS, approvals_app};
use crate::helpers::{TestDb, eventually};
use crate::support::fake_gate::FakeGate;
use crate::support::fake_slack::{BOT_USER_ID, Message};

const HOSTILE: &str = "<!channel> <https://evil.example|Log in> & <@U0EVIL>";
const RAW: [&str; 3] = ["<!channel>", "<https://evil.example", "<@U0EVIL>"];
const OUTAGES: &str = "C0OUTAGE";
const PARTNERS: &str = "C0PARTNER";
const WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Every mrkdwn text of a Block Kit array (sections, fields, context elements, confirm texts);
/// plain_text objects are left out: Slack never formats them.
fn mrkdwn_texts(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            if o.get("type").and_then(Value::as_str) == Some("mrkdwn")
                && let Some(t) = o.get("text").and_then(Value::as_str)
            {
                out.push(t.to_string());
            }
            o.values().for_each(|x| mrkdwn_texts(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| mrkdwn_texts(x, out)),
        _ => {}
    }
}

#[track_caller]
fn assert_defused(what: &str, m: &Message) {
    let mut texts = vec![m.text.clone()];
    mrkdwn_texts(&m.blocks, &mut texts);
    for t in texts {
        for raw in RAW {
            assert!(!t.contains(raw), "{what}: raw {raw} in {t:?}");
        }
    }
}

#[tokio::test]
async fn an_approval_message_and_its_update_escape_spinnaker_names_and_instructions() {
    let app = approvals_app(TestDb::sqlite()).await;
    let mut exec = FakeGate::mj_execution(APP, HOSTILE, "01ESCAPE", "s2");
    for stage in exec["stages"].as_array_mut().unwrap() {
        if stage["id"] == "s2" {
            stage["name"] = json!(HOSTILE);
            stage["context"]["instructions"] = json!(format!("<p>{HOSTILE}</p> {HOSTILE}"));
        }
    }
    app.gate.add_execution(exec.clone());
    let exec = app.gate.execution("01ESCAPE");
    crate::approvals_flow::send_starting(&app, &exec, "s2").await;
    let posted = app
        .slack
        .wait_for_messages(APPROVALS, 1, APPROVAL_WAIT)
        .await;
    assert_defused("judgment message", &posted[0]);
    assert!(posted[0].text.contains("&lt;!channel&gt;"), "shown as text");

    let (status, _, _) = click(&app, &app, APPROVER, "approvals:approve", &posted[0], None).await;
    assert_eq!(status, 200);
    let updated = wait_for_settled_message(&app, APPROVALS, &posted[0].ts, "Approved").await;
    assert!(updated.updated > 0);
    assert_defused("updated judgment message", &updated);
    for m in app.slack.messages_in(APPROVALS) {
        assert_defused("judgment thread", &m);
    }
    app.stop().await;
}

fn hostile_outage() -> Value {
    json!({
        "summary": HOSTILE, "systems": ["search"],
        "impact": {"sales": {"affected": "no"}, "partners": {"affected": "yes", "details": HOSTILE}},
        "severity": "critical", "eta": "2h",
        "resolution_assignee": "U0ALICE", "communication_assignee": "U0BOB", "by": HOSTILE
    })
}

#[tokio::test]
async fn an_api_announcement_escapes_its_fallback_thread_replies_and_audience_posts() {
    let app = announcements_builder(TestDb::sqlite()).await.spawn().await;
    workspace(&app);
    let (status, o) = api(
        &app,
        reqwest::Method::POST,
        "/api/v1/announcements",
        Some(hostile_outage()),
    )
    .await;
    assert_eq!(status, 201, "{o}");
    let announced = app.slack.wait_for_messages(OUTAGES, 1, WAIT).await;
    assert_defused("announcement", &announced[0]);
    assert!(
        announced[0].text.contains("&lt;!channel&gt;"),
        "the fallback shows the summary as text: {}",
        announced[0].text
    );
    let audience = app.slack.wait_for_messages(PARTNERS, 1, WAIT).await;
    assert_defused("audience post", &audience[0]);

    let path = format!("/api/v1/announcements/{}", o["id"].as_str().unwrap());
    let update = json!({"summary": format!("{HOSTILE} again"), "reason": HOSTILE, "by": HOSTILE});
    let (status, _) = api(&app, reqwest::Method::PATCH, &path, Some(update)).await;
    assert_eq!(status, 200);
    let replies = eventually(WAIT, "the thread reply", || async {
        let r: Vec<Message> = app
            .slack
            .messages_in(OUTAGES)
            .into_iter()
            .filter(|m| m.thread_ts.is_some())
            .collect();
        Some(r).filter(|r| !r.is_empty())
    })
    .await;
    for m in replies.iter().chain(app.slack.messages_in(OUTAGES).iter()) {
        assert_defused("announcement thread", m);
    }
    app.stop().await;
}

#[tokio::test]
async fn a_reaction_copy_quotes_the_original_without_live_markup() {
    let app = announcements_builder(TestDb::sqlite()).await.spawn().await;
    workspace(&app);
    let (status, _) = api(
        &app,
        reqwest::Method::POST,
        "/api/v1/announcements",
        Some(hostile_outage()),
    )
    .await;
    assert_eq!(status, 201);
    let announced = app.slack.wait_for_messages(OUTAGES, 1, WAIT).await;
    let reply = app
        .slack
        .insert_reply(OUTAGES, &announced[0].ts, "U0BOB", HOSTILE);
    let event = json!({
        "token": "legacy", "team_id": "T0FAKE", "api_app_id": "A0APP", "type": "event_callback",
        "event_id": "EvEscape", "event_time": crate::helpers::now_secs(),
        "event": {"type": "reaction_added", "user": "U0CAROL", "reaction": "point_up",
                  "item_user": "U0BOB", "item": {"type": "message", "channel": OUTAGES, "ts": reply},
                  "event_ts": "1700000100.000100"}
    });
    assert_eq!(app.event(&event, None).await.status(), 200);
    let copy = eventually(WAIT, "the copy", || async {
        app.slack
            .messages_in(OUTAGES)
            .into_iter()
            .find(|m| m.user == BOT_USER_ID && m.text.contains("wrote"))
    })
    .await;
    assert_defused("reaction copy", &copy);
    assert!(
        copy.text.contains("Log in (https://evil.example)"),
        "{}",
        copy.text
    );
    app.stop().await;
}
