//! Approvals end to end, through the real service against the fake Gate and fake Slack: a Manual
//! Judgment stage starting gives one message with confirmed Approve/Reject buttons in the routed
//! channel (idempotent on the stage run), a click judges exactly once as Deck does and the outcome
//! reaches the message, its thread, the trigger user and the notify channel; concurrent clicks (on
//! one instance or two sharing a database) send one judgment; refused users (not an approver,
//! four-eyes, role-mapped stages) are told why and nothing reaches Gate. Every test runs on every
//! engine `TestDb::all` offers (SQLite always, PostgreSQL when configured).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::approvals_support::{
    APP, APPROVER, APPROVER2, CHANNEL, DEFAULT_CHANNEL, NOTIFY_CHANNEL, OUTSIDER, PIPELINE,
    TRIGGER_EMAIL, TRIGGER_USER, add_mj, approvals_app, approvals_builder, click_payload,
    judgment_id_of, stage_event,
};
use crate::helpers::{API_TOKEN, TestApp, TestDb, eventually};
use crate::support::fake_gate::FakeGate;
use crate::support::fake_slack::{Fault, Message};

pub(crate) const WAIT: Duration = Duration::from_secs(15);
const EXEC: &str = "01J6EXEC00000000000000000A";
const STAGE: &str = "01J6STAGE0000000000000000A";
const APPROVE: &str = "approvals:approve";
const REJECT: &str = "approvals:reject";
/// Slack's deadline for acknowledging an interaction (reference/slack.md §2.4).
const SLACK_ACK_DEADLINE: Duration = Duration::from_secs(3);

// ------------------------------------------------------------------------------------ helpers

/// Messages of a channel that are not thread replies.
pub(crate) fn top_level(app: &TestApp, channel: &str) -> Vec<Message> {
    app.slack
        .messages_in(channel)
        .into_iter()
        .filter(|m| m.thread_ts.is_none())
        .collect()
}

/// Replies in the thread of `ts`.
pub(crate) fn replies(app: &TestApp, channel: &str, ts: &str) -> Vec<Message> {
    app.slack
        .messages_in(channel)
        .into_iter()
        .filter(|m| m.thread_ts.as_deref() == Some(ts))
        .collect()
}

/// Every interactive element of the message's `actions` blocks.
pub(crate) fn action_elements(blocks: &Value) -> Vec<Value> {
    blocks
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|b| b["type"] == "actions")
                .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn element<'a>(elements: &'a [Value], action_id: &str) -> &'a Value {
    elements
        .iter()
        .find(|e| e["action_id"] == action_id)
        .unwrap_or_else(|| panic!("no element {action_id} in {elements:#?}"))
}

/// The mrkdwn/plain texts of all blocks (section text, fields, context elements, header).
pub(crate) fn block_texts(blocks: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for b in blocks.as_array().into_iter().flatten() {
        if let Some(t) = b.pointer("/text/text").and_then(Value::as_str) {
            out.push(t.to_string());
        }
        for f in b["fields"].as_array().into_iter().flatten() {
            if let Some(t) = f["text"].as_str() {
                out.push(t.to_string());
            }
        }
        for e in b["elements"].as_array().into_iter().flatten() {
            if let Some(t) = e["text"].as_str() {
                out.push(t.to_string());
            }
        }
    }
    out
}

pub(crate) fn all_text(blocks: &Value) -> String {
    block_texts(blocks).join("\n")
}

/// Send echo's `orca:stage:starting` for a stage of `execution`; echo must get 200.
pub(crate) async fn send_starting(app: &TestApp, execution: &Value, stage_id: &str) {
    let resp = app
        .echo(&stage_event("orca:stage:starting", execution, stage_id))
        .await;
    assert_eq!(resp.status(), 200, "echo's starting event is accepted");
}

/// A running Manual Judgment in the fake Gate, announced by echo; returns the execution and the
/// posted message (the only one in CHANNEL).
pub(crate) async fn start_judgment(
    app: &TestApp,
    exec_id: &str,
    stage_id: &str,
) -> (Value, Message) {
    let exec = add_mj(&app.gate, exec_id, stage_id);
    send_starting(app, &exec, stage_id).await;
    let msgs = app.slack.wait_for_messages(CHANNEL, 1, WAIT).await;
    (exec, msgs[0].clone())
}

/// A click on the judgment message, signed as Slack signs it. Returns the HTTP status, how long the
/// ack took, and the response_url the payload carried.
pub(crate) async fn click(
    app: &TestApp,
    via: &TestApp,
    user: &str,
    action: &str,
    message: &Message,
    input: Option<&str>,
) -> (u16, Duration, String) {
    let jid = judgment_id_of(&message.blocks).expect("the message carries its judgment id");
    let payload = click_payload(
        app,
        user,
        action,
        &jid,
        &message.channel,
        &message.ts,
        input,
    );
    let url = payload["response_url"]
        .as_str()
        .expect("response_url")
        .to_string();
    let started = Instant::now();
    let resp = via.interaction(&payload).await;
    let took = started.elapsed();
    (resp.status().as_u16(), took, url)
}

/// `GET /api/v1/judgments` with the API token.
pub(crate) async fn judgments(app: &TestApp) -> Vec<Value> {
    let resp = app
        .client
        .get(app.url("/api/v1/judgments"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("request reaches the service");
    assert_eq!(resp.status(), 200, "the judgments API answers");
    let body: Value = resp.json().await.expect("judgments JSON");
    body["judgments"].as_array().cloned().unwrap_or_default()
}

/// The judgment of a stage run as the API shows it.
pub(crate) async fn judgment_of(app: &TestApp, exec_id: &str) -> Option<Value> {
    judgments(app)
        .await
        .into_iter()
        .find(|j| j["execution_id"] == exec_id)
}

/// Wait until the judgment of `exec_id` reaches `state`; returns it.
pub(crate) async fn wait_for_state(app: &TestApp, exec_id: &str, state: &str) -> Value {
    eventually(WAIT, &format!("the judgment to reach {state}"), || async {
        judgment_of(app, exec_id)
            .await
            .filter(|j| j["state"] == state)
    })
    .await
}

/// Wait until the message at (channel, ts) has no buttons and its blocks contain `needle`.
pub(crate) async fn wait_for_settled_message(
    app: &TestApp,
    channel: &str,
    ts: &str,
    needle: &str,
) -> Message {
    eventually(
        WAIT,
        &format!("the message to show {needle:?} without buttons"),
        || async {
            app.slack.message(channel, ts).filter(|m| {
                action_elements(&m.blocks).is_empty() && all_text(&m.blocks).contains(needle)
            })
        },
    )
    .await
}

/// Wait for the first DM to the trigger user; returns its text.
async fn wait_for_trigger_dm(app: &TestApp) -> String {
    eventually(WAIT, "a DM to the trigger user", || async {
        let dm = app.slack.dm_channel_of(TRIGGER_USER)?;
        app.slack.messages_in(&dm).first().map(|m| m.text.clone())
    })
    .await
}

/// Wait until no job is pending or running (everything queued so far has run).
pub(crate) async fn wait_for_idle_jobs(app: &TestApp) {
    eventually(WAIT, "the job queue to be idle", || async {
        let busy: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state IN ('pending', 'running')")
                .fetch_one(app.state.db().pool())
                .await
                .expect("counting jobs");
        (busy == 0).then_some(())
    })
    .await
}

/// The response_url posts' texts.
pub(crate) fn ephemeral_texts(app: &TestApp, url: &str) -> Vec<String> {
    app.slack
        .response_url_posts(url)
        .into_iter()
        .map(|p| {
            assert_ne!(
                p.body["response_type"], "in_channel",
                "replies to a click are ephemeral: {:?}",
                p.body
            );
            p.body["text"].as_str().unwrap_or_default().to_string()
        })
        .collect()
}

/// Wait for exactly one ephemeral reply on `url`; returns its text.
pub(crate) async fn wait_for_ephemeral(app: &TestApp, url: &str) -> String {
    app.slack.wait_for_response_url_posts(url, 1, WAIT).await;
    let texts = ephemeral_texts(app, url);
    assert_eq!(texts.len(), 1, "one reply to the click: {texts:?}");
    texts[0].clone()
}

pub(crate) fn audit_outcomes(j: &Value) -> Vec<(String, String, String)> {
    j["audit"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                a["actor"].as_str().unwrap_or_default().to_string(),
                a["action"].as_str().unwrap_or_default().to_string(),
                a["outcome"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The message offers the decision again: the judgment is still open and nothing was claimed.
async fn assert_still_open(app: &TestApp, message: &Message) {
    let j = judgment_of(app, EXEC)
        .await
        .expect("the judgment is stored");
    assert_eq!(j["state"], "awaiting", "the judgment is still open: {j:#}");
    let now = app
        .slack
        .message(&message.channel, &message.ts)
        .expect("the message is still there");
    let ids: Vec<Value> = action_elements(&now.blocks)
        .iter()
        .map(|e| e["action_id"].clone())
        .collect();
    assert!(
        ids.contains(&json!(APPROVE)) && ids.contains(&json!(REJECT)),
        "the buttons are still offered: {ids:?}"
    );
}

// ------------------------------------------------------------------------------- the message

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_judgment_stage_starting_posts_one_message_with_confirmed_buttons_and_the_execution_details()
 {
    for db in TestDb::all("approvals_flow::a_judgment_stage_starting_posts_one_message").await {
        let engine = db.engine;
        // Arrange
        let app = approvals_app(db).await;
        let exec = add_mj(&app.gate, EXEC, STAGE);

        // Act
        send_starting(&app, &exec, STAGE).await;

        // Assert
        let msgs = app.slack.wait_for_messages(CHANNEL, 1, WAIT).await;
        assert_eq!(msgs.len(), 1, "{engine:?}: one message");
        let m = &msgs[0];
        assert!(m.thread_ts.is_none(), "{engine:?}: a channel message");
        assert!(
            m.text.contains(APP) && m.text.contains(PIPELINE),
            "{engine:?}: the fallback text names the pipeline: {}",
            m.text
        );

        let elements = action_elements(&m.blocks);
        let ids: Vec<&str> = elements
            .iter()
            .map(|e| e["action_id"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(
            ids,
            vec![APPROVE, REJECT],
            "{engine:?}: Approve then Reject"
        );
        let approve = element(&elements, APPROVE);
        let reject = element(&elements, REJECT);
        assert_eq!(approve["type"], "button");
        assert_eq!(
            approve["style"], "primary",
            "{engine:?}: Approve is primary"
        );
        assert_eq!(reject["style"], "danger", "{engine:?}: Reject is danger");
        for b in [approve, reject] {
            let c = &b["confirm"];
            assert!(
                c.is_object(),
                "{engine:?}: {} has a confirm dialog",
                b["action_id"]
            );
            for k in ["title", "text", "confirm", "deny"] {
                assert!(
                    c[k]["text"].as_str().is_some_and(|t| !t.is_empty()),
                    "{engine:?}: the confirm dialog has a {k}: {c:#}"
                );
            }
        }
        let jid = judgment_id_of(&m.blocks).expect("judgment id");
        assert_eq!(
            reject["value"],
            jid.as_str(),
            "{engine:?}: both buttons carry the judgment"
        );

        let texts = block_texts(&m.blocks);
        let text = texts.join("\n");
        let deck =
            format!("https://deck.example.com/#/applications/{APP}/executions/details/{EXEC}");
        assert!(text.contains(&deck), "{engine:?}: links to Deck: {text}");
        assert!(
            texts.iter().any(|t| t == &format!("*Application*\n{APP}")),
            "{engine:?}: shows the application: {texts:#?}"
        );
        assert!(
            texts
                .iter()
                .any(|t| t == &format!("*Pipeline*\n{PIPELINE}")),
            "{engine:?}: shows the pipeline: {texts:#?}"
        );
        assert!(
            texts
                .iter()
                .any(|t| t.starts_with("*Triggered by*") && t.contains(TRIGGER_EMAIL)),
            "{engine:?}: shows who triggered it: {texts:#?}"
        );
        assert!(
            text.contains("`version`=v42") && text.contains("`env`=prod"),
            "{engine:?}: shows the trigger's parameters: {text}"
        );
        let instructions = texts
            .iter()
            .find(|t| t.starts_with("*Instructions*"))
            .unwrap_or_else(|| panic!("{engine:?}: shows the instructions: {texts:#?}"));
        assert!(
            instructions.contains(&format!(
                "Promote *v42* to <https://deck.example.com/#/applications/{APP}|prod>?"
            )) && instructions.contains("_canary_"),
            "{engine:?}: instructions rendered as mrkdwn: {instructions}"
        );
        let raw = m.blocks.to_string();
        for tag in ["<b>", "</b>", "<br", "<i>", "</i>", "<a ", "</a>"] {
            assert!(
                !raw.contains(tag),
                "{engine:?}: no raw HTML ({tag}) in {raw}"
            );
        }
        assert_eq!(
            app.gate.patch_count(),
            0,
            "{engine:?}: nothing is judged by posting"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_starting_event_sent_twice_and_concurrently_posts_one_message() {
    for db in TestDb::all("approvals_flow::the_same_starting_event_sent_twice").await {
        let engine = db.engine;
        // Arrange
        let app = approvals_app(db).await;
        let exec = add_mj(&app.gate, EXEC, STAGE);
        let event = stage_event("orca:stage:starting", &exec, STAGE);

        // Act: twice in a row, then twice at once (echo delivers more than once, in parallel).
        let first = app.echo(&event).await;
        let second = app.echo(&event).await;
        let (third, fourth) = tokio::join!(app.echo(&event), app.echo(&event));

        // Assert
        for (n, r) in [first, second, third, fourth].into_iter().enumerate() {
            assert_eq!(r.status(), 200, "{engine:?}: delivery {n} is accepted");
        }
        app.slack.wait_for_messages(CHANNEL, 1, WAIT).await;
        // A later, different stage run posts its own message; once it is there, every job queued
        // before it has run.
        let other = add_mj(&app.gate, "01J6EXEC00000000000000000B", STAGE);
        send_starting(&app, &other, STAGE).await;
        let msgs = app.slack.wait_for_messages(CHANNEL, 2, WAIT).await;
        eventually(WAIT, "the post queue to drain", || async {
            let j = judgments(&app).await;
            j.iter().all(|j| j["message_ts"].is_string()).then_some(())
        })
        .await;
        let msgs_now = top_level(&app, CHANNEL);
        assert_eq!(
            msgs_now.len(),
            2,
            "{engine:?}: one message per stage run, not per delivery: {msgs:#?}"
        );
        let for_exec: Vec<_> = msgs_now
            .iter()
            .filter(|m| all_text(&m.blocks).contains(EXEC))
            .collect();
        assert_eq!(for_exec.len(), 1, "{engine:?}: one message for {EXEC}");
        assert_eq!(
            app.slack.call_count("chat.postMessage"),
            2,
            "{engine:?}: two posts in all"
        );
        assert_eq!(
            judgments(&app).await.len(),
            2,
            "{engine:?}: two judgments stored"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_stage_gets_a_new_message() {
    for db in TestDb::all("approvals_flow::a_restarted_stage_gets_a_new_message").await {
        let engine = db.engine;
        // Arrange
        let app = approvals_app(db).await;
        let (exec, first) = start_judgment(&app, EXEC, STAGE).await;
        let mut restarted = exec.clone();
        let stage = restarted["stages"]
            .as_array_mut()
            .and_then(|a| a.iter_mut().find(|s| s["id"] == STAGE))
            .expect("the judgment stage");
        let old_start = stage["startTime"].as_i64().expect("a start time");
        stage["startTime"] = json!(old_start + 60_000);
        app.gate.add_execution(restarted.clone());

        // Act
        send_starting(&app, &restarted, STAGE).await;

        // Assert
        let msgs = app.slack.wait_for_messages(CHANNEL, 2, WAIT).await;
        assert_eq!(msgs.len(), 2, "{engine:?}: a second message");
        let second = &msgs[1];
        assert_ne!(second.ts, first.ts);
        let (a, b) = (
            judgment_id_of(&first.blocks).expect("first judgment id"),
            judgment_id_of(&second.blocks).expect("second judgment id"),
        );
        assert_ne!(a, b, "{engine:?}: the restarted stage is a new judgment");
        let starts: Vec<i64> = judgments(&app)
            .await
            .iter()
            .filter_map(|j| j["stage_start"].as_i64())
            .collect();
        assert_eq!(starts.len(), 2, "{engine:?}: two stage runs stored");
        assert!(starts.contains(&old_start) && starts.contains(&(old_start + 60_000)));
        // The restart event again is still one message.
        send_starting(&app, &restarted, STAGE).await;
        let barrier = add_mj(&app.gate, "01J6EXEC00000000000000000C", STAGE);
        send_starting(&app, &barrier, STAGE).await;
        app.slack.wait_for_messages(CHANNEL, 3, WAIT).await;
        eventually(WAIT, "the post queue to drain", || async {
            let j = judgments(&app).await;
            j.iter().all(|j| j["message_ts"].is_string()).then_some(())
        })
        .await;
        assert_eq!(
            top_level(&app, CHANNEL).len(),
            3,
            "{engine:?}: the repeated restart event posts nothing more"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_application_without_a_route_goes_to_the_default_channel() {
    for db in TestDb::all("approvals_flow::an_application_without_a_route").await {
        let engine = db.engine;
        // Arrange
        let app = approvals_app(db).await;
        let exec = FakeGate::mj_execution("otherapp", "nightly", EXEC, STAGE);
        app.gate.add_execution(exec.clone());

        // Act
        send_starting(&app, &exec, STAGE).await;

        // Assert
        let msgs = app.slack.wait_for_messages(DEFAULT_CHANNEL, 1, WAIT).await;
        assert_eq!(
            msgs.len(),
            1,
            "{engine:?}: one message in the default channel"
        );
        let text = all_text(&msgs[0].blocks);
        assert!(
            text.contains("otherapp") && text.contains("nightly"),
            "{engine:?}: it is the judgment of otherapp: {text}"
        );
        assert!(
            judgment_id_of(&msgs[0].blocks).is_some(),
            "{engine:?}: with buttons"
        );
        assert!(
            app.slack.messages_in(CHANNEL).is_empty(),
            "{engine:?}: nothing in myapp's channel"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stage_that_is_not_a_manual_judgment_starting_posts_nothing() {
    for db in TestDb::all("approvals_flow::a_stage_that_is_not_a_manual_judgment").await {
        let engine = db.engine;
        // Arrange
        let app = approvals_app(db).await;
        let exec = add_mj(&app.gate, EXEC, STAGE);
        let deploy_id = exec["stages"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["type"] == "deploy"))
            .and_then(|s| s["id"].as_str())
            .expect("the deploy stage")
            .to_string();

        // Act
        let resp = app
            .echo(&stage_event("orca:stage:starting", &exec, &deploy_id))
            .await;

        // Assert
        assert_eq!(resp.status(), 200, "{engine:?}: accepted");
        assert!(
            judgments(&app).await.is_empty(),
            "{engine:?}: no judgment is stored for a deploy stage"
        );
        // A judgment started afterwards is the only message: nothing was queued before it.
        let other = add_mj(&app.gate, "01J6EXEC00000000000000000B", STAGE);
        send_starting(&app, &other, STAGE).await;
        app.slack.wait_for_messages(CHANNEL, 1, WAIT).await;
        let posts = app.slack.calls("chat.postMessage");
        assert_eq!(posts.len(), 1, "{engine:?}: only the judgment was posted");
        assert!(
            posts[0]
                .body
                .to_string()
                .contains("01J6EXEC00000000000000000B"),
            "{engine:?}: and it is the other execution's"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unknown_event_type_is_accepted_and_posts_nothing() {
    for db in TestDb::all("approvals_flow::an_unknown_event_type").await {
        let engine = db.engine;
        // Arrange
        let app = approvals_app(db).await;
        let exec = add_mj(&app.gate, EXEC, STAGE);
        let mut event = stage_event("orca:stage:starting", &exec, STAGE);
        event["details"]["type"] = json!("igor:build:complete");
        event["details"]["source"] = json!("igor");

        // Act
        let resp = app.echo(&event).await;

        // Assert
        assert_eq!(
            resp.status(),
            200,
            "{engine:?}: unknown types are answered 200"
        );
        assert!(
            judgments(&app).await.is_empty(),
            "{engine:?}: nothing stored"
        );
        let other = add_mj(&app.gate, "01J6EXEC00000000000000000B", STAGE);
        send_starting(&app, &other, STAGE).await;
        app.slack.wait_for_messages(CHANNEL, 1, WAIT).await;
        assert_eq!(
            app.slack.call_count("chat.postMessage"),
            1,
            "{engine:?}: only the later judgment was posted"
        );
    }
}

// ------------------------------------------------------------------------------- decisions

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn approve_sends_one_continue_patch_and_updates_the_message_thread_dm_and_notify_channel() {
    for db in TestDb::all("approvals_flow::approve_sends_one_continue_patch").await {
        let engine = db.engine;
        // Arrange
        let app = approvals_app(db).await;
        let (_, msg) = start_judgment(&app, EXEC, STAGE).await;

        // Act
        let (status, took, url) = click(&app, &app, APPROVER, APPROVE, &msg, None).await;

        // Assert: acknowledged at once
        assert_eq!(status, 200, "{engine:?}: the click is acknowledged");
        assert!(
            took < SLACK_ACK_DEADLINE,
            "{engine:?}: acknowledged within Slack's deadline, took {took:?}"
        );

        // the message, updated in place
        let settled = wait_for_settled_message(&app, CHANNEL, &msg.ts, "*Approved*").await;
        let text = all_text(&settled.blocks);
        assert!(
            text.contains(&format!("*Approved* by <@{APPROVER}>")),
            "{engine:?}: names the approver: {text}"
        );
        assert!(settled.updated >= 1, "{engine:?}: edited, not reposted");
        let updates = app.slack.calls("chat.update");
        assert!(
            !updates.is_empty()
                && updates
                    .iter()
                    .all(|c| c.body["ts"] == msg.ts.as_str() && c.body["channel"] == CHANNEL),
            "{engine:?}: every chat.update targets the judgment message: {updates:#?}"
        );
        wait_for_state(&app, EXEC, "approved").await;

        // Gate got exactly one judgment, as Deck sends it plus our marker
        let patches = app.gate.patches();
        assert_eq!(patches.len(), 1, "{engine:?}: one PATCH: {patches:#?}");
        let p = &patches[0];
        assert_eq!(
            (p.execution_id.as_str(), p.stage_id.as_str()),
            (EXEC, STAGE)
        );
        assert_eq!(
            p.body["judgmentStatus"], "continue",
            "{engine:?}: {:#}",
            p.body
        );
        assert!(
            p.body["slackopsClaim"]
                .as_str()
                .is_some_and(|s| !s.is_empty()),
            "{engine:?}: the claim marker is sent: {:#}",
            p.body
        );
        assert_eq!(
            p.body["slackUser"], APPROVER,
            "{engine:?}: records the Slack user"
        );
        assert!(
            p.body.get("judgmentInput").is_none_or(Value::is_null),
            "{engine:?}: no input for a stage without inputs: {:#}",
            p.body
        );
        assert_eq!(app.gate.stage(EXEC, STAGE)["status"], "SUCCEEDED");

        // a thread reply, a DM to the trigger user, a post in the notify channel
        let thread = eventually(WAIT, "a reply in the message's thread", || async {
            let r = replies(&app, CHANNEL, &msg.ts);
            (!r.is_empty()).then_some(r)
        })
        .await;
        assert!(
            thread[0].text.contains("Approved") && thread[0].text.contains(APPROVER),
            "{engine:?}: the thread records the approval: {}",
            thread[0].text
        );
        let dm = wait_for_trigger_dm(&app).await;
        assert!(
            dm.contains("Approved") && dm.contains(PIPELINE),
            "{engine:?}: the trigger user hears of it: {dm}"
        );
        let notified = app.slack.wait_for_messages(NOTIFY_CHANNEL, 1, WAIT).await;
        assert!(
            notified[0].text.contains("Approved") && notified[0].text.contains(APP),
            "{engine:?}: the notify channel hears of it: {}",
            notified[0].text
        );

        assert_eq!(
            top_level(&app, CHANNEL).len(),
            1,
            "{engine:?}: no new message"
        );
        assert!(
            ephemeral_texts(&app, &url).is_empty(),
            "{engine:?}: nothing to explain to the approver"
        );
        assert_eq!(app.gate.patch_count(), 1, "{engine:?}: still one PATCH");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reject_sends_one_stop_patch_and_shows_the_rejection() {
    for db in TestDb::all("approvals_flow::reject_sends_one_stop_patch").await {
        let engine = db.engine;
        // Arrange
        let app = approvals_app(db).await;
        let (_, msg) = start_judgment(&app, EXEC, STAGE).await;

        // Act
        let (status, took, _) = click(&app, &app, APPROVER2, REJECT, &msg, None).await;

        // Assert
        assert_eq!(status, 200, "{engine:?}");
        assert!(took < SLACK_ACK_DEADLINE, "{engine:?}: took {took:?}");
        let settled = wait_for_settled_message(&app, CHANNEL, &msg.ts, "*Rejected*").await;
        let text = all_text(&settled.blocks);
        assert!(
            text.contains(&format!("*Rejected* by <@{APPROVER2}>")),
            "{engine:?}: names who rejected: {text}"
        );
        wait_for_state(&app, EXEC, "rejected").await;
        let patches = app.gate.patches();
        assert_eq!(patches.len(), 1, "{engine:?}: one PATCH: {patches:#?}");
        assert_eq!(patches[0].body["judgmentStatus"], "stop");
        assert_eq!(patches[0].body["slackUser"], APPROVER2);
        assert!(patches[0].body["slackopsClaim"].is_string());
        assert_eq!(app.gate.stage(EXEC, STAGE)["status"], "TERMINAL");

        let thread = eventually(WAIT, "a reply in the message's thread", || async {
            let r = replies(&app, CHANNEL, &msg.ts);
            (!r.is_empty()).then_some(r)
        })
        .await;
        assert!(
            thread[0].text.contains("Rejected"),
            "{engine:?}: {}",
            thread[0].text
        );
        let dm = wait_for_trigger_dm(&app).await;
        assert!(dm.contains("Rejected"), "{engine:?}: {dm}");
        let notified = app.slack.wait_for_messages(NOTIFY_CHANNEL, 1, WAIT).await;
        assert!(
            notified[0].text.contains("Rejected"),
            "{engine:?}: {}",
            notified[0].text
        );
        assert_eq!(
            top_level(&app, CHANNEL).len(),
            1,
            "{engine:?}: no new message"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn approve_without_a_chosen_input_is_explained_and_with_one_sends_it() {
    for db in TestDb::all("approvals_flow::approve_without_a_chosen_input").await {
        let engine = db.engine;
        // Arrange
        let app = approvals_app(db).await;
        add_mj(&app.gate, EXEC, STAGE);
        app.gate
            .set_judgment_inputs(EXEC, STAGE, &["deploy", "rollback"]);
        let exec = app.gate.execution(EXEC);
        send_starting(&app, &exec, STAGE).await;
        let msg = app.slack.wait_for_messages(CHANNEL, 1, WAIT).await[0].clone();
        let elements = action_elements(&msg.blocks);
        let select = element(&elements, "approvals:input");
        assert_eq!(
            select["type"], "static_select",
            "{engine:?}: a select for the input"
        );
        // Each option shows its input; its value is a reference the click resolves.
        let options: Vec<&str> = select["options"]
            .as_array()
            .expect("options")
            .iter()
            .filter_map(|o| o["text"]["text"].as_str())
            .collect();
        assert_eq!(options, vec!["deploy", "rollback"], "{engine:?}");
        element(&elements, APPROVE);
        element(&elements, REJECT);

        // Act 1: Approve without choosing
        let (status, _, url) = click(&app, &app, APPROVER, APPROVE, &msg, None).await;

        // Assert 1: explained, nothing judged
        assert_eq!(status, 200, "{engine:?}");
        let why = wait_for_ephemeral(&app, &url).await;
        assert!(
            why.contains("judgment input") && why.contains("rollback"),
            "{engine:?}: explains that an input is needed: {why}"
        );
        assert_eq!(app.gate.patch_count(), 0, "{engine:?}: no PATCH");
        assert_still_open(&app, &msg).await;

        // Act 2: Approve with "rollback"
        let (status, _, url2) = click(&app, &app, APPROVER, APPROVE, &msg, Some("rollback")).await;

        // Assert 2
        assert_eq!(status, 200, "{engine:?}");
        let settled = wait_for_settled_message(&app, CHANNEL, &msg.ts, "*Approved*").await;
        assert!(
            all_text(&settled.blocks).contains("with input *rollback*"),
            "{engine:?}: the message shows the input: {}",
            all_text(&settled.blocks)
        );
        let j = wait_for_state(&app, EXEC, "approved").await;
        assert_eq!(j["judgment_input"], "rollback", "{engine:?}");
        let patches = app.gate.patches();
        assert_eq!(patches.len(), 1, "{engine:?}: one PATCH: {patches:#?}");
        assert_eq!(patches[0].body["judgmentStatus"], "continue");
        assert_eq!(patches[0].body["judgmentInput"], "rollback");
        assert!(ephemeral_texts(&app, &url2).is_empty(), "{engine:?}");
    }
}

// ------------------------------------------------------------------------------- concurrency

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_concurrent_clicks_send_one_judgment_and_the_second_user_is_told_who_is_judging() {
    for db in TestDb::all("approvals_flow::two_concurrent_clicks").await {
        let engine = db.engine;
        // Arrange
        let app = approvals_app(db).await;
        let (_, msg) = start_judgment(&app, EXEC, STAGE).await;

        // Act
        let (bob, carol) = tokio::join!(
            click(&app, &app, APPROVER, APPROVE, &msg, None),
            click(&app, &app, APPROVER2, APPROVE, &msg, None)
        );

        // Assert
        assert_eq!(
            (bob.0, carol.0),
            (200, 200),
            "{engine:?}: both acknowledged"
        );
        let j = wait_for_state(&app, EXEC, "approved").await;
        let patches = app.gate.patches();
        assert_eq!(patches.len(), 1, "{engine:?}: one PATCH: {patches:#?}");
        let winner = patches[0].body["slackUser"]
            .as_str()
            .expect("slackUser")
            .to_string();
        assert_eq!(j["judge_user"], winner.as_str(), "{engine:?}");
        let (winner_url, loser_url) = if winner == APPROVER {
            (&bob.2, &carol.2)
        } else {
            assert_eq!(winner, APPROVER2);
            (&carol.2, &bob.2)
        };
        let told = wait_for_ephemeral(&app, loser_url).await;
        assert!(
            told.contains(&format!("<@{winner}>")),
            "{engine:?}: the second user is told who is judging: {told}"
        );
        assert!(
            ephemeral_texts(&app, winner_url).is_empty(),
            "{engine:?}: the winner gets no explanation"
        );
        wait_for_settled_message(
            &app,
            CHANNEL,
            &msg.ts,
            &format!("*Approved* by <@{winner}>"),
        )
        .await;
        assert_eq!(app.gate.patch_count(), 1, "{engine:?}: still one PATCH");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clicks_on_two_service_instances_sharing_a_database_send_one_judgment() {
    for db in TestDb::all("approvals_flow::clicks_on_two_service_instances").await {
        let engine = db.engine;
        // Arrange: a second replica on the same database and the same Slack and Gate
        let first = approvals_app(db).await;
        let db_url = first.settings.database.url.clone();
        let slack_url = first.settings.slack.api_url.clone();
        let gate_url = first.settings.spinnaker.gate_url.clone();
        let second = approvals_builder(TestDb::sqlite())
            .await
            .settings(move |s| {
                s.database.url = db_url;
                s.slack.api_url = slack_url;
                s.spinnaker.gate_url = gate_url;
            })
            .spawn()
            .await;
        let (_, msg) = start_judgment(&first, EXEC, STAGE).await;

        // Act: one click lands on each replica
        let (a, b) = tokio::join!(
            click(&first, &first, APPROVER, APPROVE, &msg, None),
            click(&first, &second, APPROVER2, APPROVE, &msg, None)
        );

        // Assert
        assert_eq!((a.0, b.0), (200, 200), "{engine:?}: both acknowledged");
        let j = wait_for_state(&first, EXEC, "approved").await;
        let patches = first.gate.patches();
        assert_eq!(patches.len(), 1, "{engine:?}: one PATCH: {patches:#?}");
        assert_eq!(
            second.gate.patch_count(),
            0,
            "{engine:?}: the second replica's own fake Gate is unused"
        );
        let winner = patches[0].body["slackUser"].as_str().expect("slackUser");
        assert_eq!(j["judge_user"], winner, "{engine:?}");
        let loser_url = if winner == APPROVER { &b.2 } else { &a.2 };
        let told = wait_for_ephemeral(&first, loser_url).await;
        assert!(
            told.contains(&format!("<@{winner}>")),
            "{engine:?}: the other user is told who is judging: {told}"
        );
        wait_for_settled_message(&first, CHANNEL, &msg.ts, "*Approved*").await;
        assert_eq!(
            top_level(&first, CHANNEL).len(),
            1,
            "{engine:?}: one message"
        );
        assert_eq!(first.gate.patch_count(), 1, "{engine:?}: still one PATCH");
        second.stop().await;
    }
}

// ------------------------------------------------------------------------------- refusals

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_who_is_not_an_approver_is_refused_with_an_explanation_audited_and_nothing_is_sent()
{
    for db in TestDb::all("approvals_flow::a_user_who_is_not_an_approver").await {
        let engine = db.engine;
        // Arrange
        let app = approvals_app(db).await;
        let (_, msg) = start_judgment(&app, EXEC, STAGE).await;

        // Act
        let (status, took, url) = click(&app, &app, OUTSIDER, APPROVE, &msg, None).await;

        // Assert
        assert_eq!(status, 200, "{engine:?}");
        assert!(took < SLACK_ACK_DEADLINE, "{engine:?}: took {took:?}");
        let why = wait_for_ephemeral(&app, &url).await;
        assert!(
            why.contains("not an approver"),
            "{engine:?}: explains the refusal: {why}"
        );
        assert_eq!(
            app.gate.patch_count(),
            0,
            "{engine:?}: nothing reaches Gate"
        );
        assert_still_open(&app, &msg).await;
        let j = judgment_of(&app, EXEC).await.expect("the judgment");
        let audit = audit_outcomes(&j);
        assert!(
            audit
                .iter()
                .any(|(actor, _, outcome)| actor == OUTSIDER && outcome == "refused"),
            "{engine:?}: the refusal is audited: {:#}",
            j["audit"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_four_eyes_the_trigger_user_may_not_approve_but_may_reject() {
    for db in TestDb::all("approvals_flow::under_four_eyes").await {
        let engine = db.engine;
        // Arrange
        let app = approvals_builder(db)
            .await
            .settings(|s| s.approvals.four_eyes = true)
            .spawn()
            .await;
        let (_, msg) = start_judgment(&app, EXEC, STAGE).await;

        // Act 1: the trigger user approves their own execution
        let (status, _, url) = click(&app, &app, TRIGGER_USER, APPROVE, &msg, None).await;

        // Assert 1
        assert_eq!(status, 200, "{engine:?}");
        let why = wait_for_ephemeral(&app, &url).await;
        assert!(
            why.contains("four-eyes"),
            "{engine:?}: explains the four-eyes rule: {why}"
        );
        assert_eq!(app.gate.patch_count(), 0, "{engine:?}: no PATCH");
        assert_still_open(&app, &msg).await;
        let j = judgment_of(&app, EXEC).await.expect("the judgment");
        assert!(
            audit_outcomes(&j)
                .iter()
                .any(|(actor, _, outcome)| actor == TRIGGER_USER && outcome == "refused"),
            "{engine:?}: audited: {:#}",
            j["audit"]
        );

        // Act 2: the trigger user rejects
        let (status, _, url2) = click(&app, &app, TRIGGER_USER, REJECT, &msg, None).await;

        // Assert 2
        assert_eq!(status, 200, "{engine:?}");
        wait_for_state(&app, EXEC, "rejected").await;
        let patches = app.gate.patches();
        assert_eq!(patches.len(), 1, "{engine:?}: one PATCH: {patches:#?}");
        assert_eq!(patches[0].body["judgmentStatus"], "stop");
        assert_eq!(patches[0].body["slackUser"], TRIGGER_USER);
        assert!(ephemeral_texts(&app, &url2).is_empty(), "{engine:?}");
        wait_for_settled_message(
            &app,
            CHANNEL,
            &msg.ts,
            &format!("*Rejected* by <@{TRIGGER_USER}>"),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_role_mapped_stage_refuses_users_outside_the_mapped_group_and_accepts_members() {
    for db in TestDb::all("approvals_flow::a_role_mapped_stage").await {
        let engine = db.engine;
        // Arrange
        let app = approvals_app(db).await;
        add_mj(&app.gate, EXEC, STAGE);
        app.gate
            .set_required_judgment_roles(EXEC, STAGE, &["release-managers"]);
        let exec = app.gate.execution(EXEC);
        send_starting(&app, &exec, STAGE).await;
        let msg = app.slack.wait_for_messages(CHANNEL, 1, WAIT).await[0].clone();

        // Act 1: an approver who is not in S0RELEASE
        let (status, _, url) = click(&app, &app, APPROVER, APPROVE, &msg, None).await;

        // Assert 1
        assert_eq!(status, 200, "{engine:?}");
        let why = wait_for_ephemeral(&app, &url).await;
        assert!(
            why.contains("release-managers") && why.contains("not in"),
            "{engine:?}: explains the role requirement: {why}"
        );
        assert_eq!(app.gate.patch_count(), 0, "{engine:?}: no PATCH");
        assert_still_open(&app, &msg).await;
        let j = judgment_of(&app, EXEC).await.expect("the judgment");
        assert!(
            audit_outcomes(&j)
                .iter()
                .any(|(actor, _, outcome)| actor == APPROVER && outcome == "refused"),
            "{engine:?}: audited: {:#}",
            j["audit"]
        );

        // Act 2: a member of the mapped group
        let (status, _, url2) = click(&app, &app, APPROVER2, APPROVE, &msg, None).await;

        // Assert 2
        assert_eq!(status, 200, "{engine:?}");
        wait_for_state(&app, EXEC, "approved").await;
        let patches = app.gate.patches();
        assert_eq!(patches.len(), 1, "{engine:?}: one PATCH: {patches:#?}");
        assert_eq!(patches[0].body["judgmentStatus"], "continue");
        assert_eq!(patches[0].body["slackUser"], APPROVER2);
        assert!(ephemeral_texts(&app, &url2).is_empty(), "{engine:?}");
        wait_for_settled_message(
            &app,
            CHANNEL,
            &msg.ts,
            &format!("*Approved* by <@{APPROVER2}>"),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_slack_update_of_the_approving_state_does_not_overwrite_the_outcome() {
    for db in TestDb::all("approvals_flow::a_slow_slack_update_of_the_approving_state").await {
        let engine = db.engine;
        // Arrange: the click's immediate "approving…" update takes Slack 1.5 s (still within the
        // client's timeout and the ack deadline); the judgment itself goes through at once.
        let app = approvals_app(db).await;
        let (_, msg) = start_judgment(&app, EXEC, STAGE).await;
        wait_for_idle_jobs(&app).await;
        app.slack
            .fail_next("chat.update", Fault::Delay(Duration::from_millis(1500)), 1);

        // Act
        let (status, took, _) = click(&app, &app, APPROVER, APPROVE, &msg, None).await;

        // Assert: the ack does not wait for Slack's slow update of the "approving…" state, and
        // the message still ends at the outcome, not at "approving…".
        assert_eq!(status, 200, "{engine:?}");
        assert!(
            took < Duration::from_millis(1000),
            "{engine:?}: the ack must not wait for the delayed update, took {took:?}"
        );
        wait_for_state(&app, EXEC, "approved").await;
        let updates = app.slack.calls("chat.update");
        let approving = updates
            .iter()
            .find(|c| {
                c.body
                    .to_string()
                    .contains(&format!("Approving… by <@{APPROVER}>"))
            })
            .unwrap_or_else(|| panic!("{engine:?}: the approving state was shown: {updates:#?}"));
        assert!(
            !approving.body.to_string().contains(APPROVE),
            "{engine:?}: the approving state has no buttons: {:#}",
            approving.body
        );
        let settled = wait_for_settled_message(&app, CHANNEL, &msg.ts, "*Approved*").await;
        assert!(
            !all_text(&settled.blocks).contains("Approving"),
            "{engine:?}: {}",
            all_text(&settled.blocks)
        );
        assert_eq!(app.gate.patch_count(), 1, "{engine:?}: one PATCH");
    }
}
