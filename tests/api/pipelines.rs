//! Pipeline commands end to end (issue 4), through the real service against the fake Gate and
//! fake Slack: `help`, `start` (parameters on the command line, the modal for missing ones, the
//! loading modal when Gate is slow, the confirmation step, refusals), the follow-up that updates
//! the "started" message when the execution ends, `cancel` with its confirmation, `status`,
//! `pipelines` and `pending`. Bad input and Gate errors (404, 400, 500) get an ephemeral message
//! and trigger nothing; a start is never sent twice. Tests that write to the database (starts,
//! follow-ups, audit rows) run on every engine `TestDb::all` offers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use slackops::config::PipelineRule;

use crate::approvals_support::{
    APP, APPROVER, APPROVER_EMAIL, APPROVER2, CHANNEL, OUTSIDER, PIPELINE, RELEASE_GROUP,
    TRIGGER_EMAIL, TRIGGER_USER, add_mj, approvals_builder, stage_event,
};
use crate::helpers::{TestApp, TestAppBuilder, TestDb, eventually};
use crate::support::fake_gate::FakeGate;
use crate::support::fake_slack::Message;

const WAIT: Duration = Duration::from_secs(15);
const CMD: &str = "/spinnaker";
/// Where `TestApp::command` says the command was typed.
const OPS: &str = "C0OPS";
const DECK: &str = "https://deck.example.com";
/// Slack's deadline for acknowledging a command, and the life of its `trigger_id` (slack.md §2.4).
const SLACK_DEADLINE: Duration = Duration::from_secs(3);
/// Latency given to the fake Gate when a test must change it between the pipeline lookup and
/// the trigger: the trigger is still waiting this long when the test acts.
const GATE_LAG: Duration = Duration::from_millis(400);
const START_CONFIRM: &str = "pipelines:start-confirm";
const CANCEL_CONFIRM: &str = "pipelines:cancel";
const VIEW_START: &str = "pipelines:start";

// ------------------------------------------------------------------------------------ fixtures

/// The approvals fixture (users U0ALICE, U0BOB, U0CAROL in group release-managers, U0MALLORY;
/// channel C0OPS) plus `pipelines.rules` and pipeline configs in the fake Gate:
/// - `myapp`: ALICE, BOB and the release-managers group (CAROL) may start and cancel;
/// - `myapp` › `guarded`: ALICE, with a confirmation step;
/// - `myapp` › `frozen`: ALICE, but not startable from Slack;
/// - any other application: ALICE.
async fn pipelines_builder(db: TestDb) -> TestAppBuilder {
    let b = approvals_builder(db).await.settings(|s| {
        s.pipelines.rules = vec![
            PipelineRule {
                application: APP.into(),
                users: vec![TRIGGER_USER.into(), APPROVER.into()],
                groups: vec!["release-managers".into()],
                ..Default::default()
            },
            PipelineRule {
                application: APP.into(),
                pipeline: Some("guarded".into()),
                users: vec![TRIGGER_USER.into()],
                confirm: true,
                ..Default::default()
            },
            PipelineRule {
                application: APP.into(),
                pipeline: Some("frozen".into()),
                users: vec![TRIGGER_USER.into()],
                startable: false,
                ..Default::default()
            },
            PipelineRule {
                application: "*".into(),
                users: vec![TRIGGER_USER.into()],
                ..Default::default()
            },
        ];
    });
    add_configs(&b.gate);
    b
}

async fn pipelines_app(db: TestDb) -> TestApp {
    pipelines_builder(db).await.spawn().await
}

/// `deploy`: `version` (required, default `latest`) and `env` (required, no default, options).
/// `release`: `env` (options, default staging), `ticket` (required, no default), `note`
/// (optional, default). `noparams`, `guarded`, `frozen`: no parameters.
fn add_configs(gate: &FakeGate) {
    gate.add_pipeline_config(
        APP,
        json!({"name": "deploy", "parameterConfig": [
            {"name": "version", "label": "Version", "required": true, "default": "latest", "description": "Image tag"},
            {"name": "env", "label": "Environment", "required": true, "hasOptions": true,
             "options": [{"value": "staging"}, {"value": "prod"}]}
        ]}),
    );
    gate.add_pipeline_config(
        APP,
        json!({"name": "release", "parameterConfig": [
            {"name": "env", "label": "Environment", "required": true, "default": "staging", "hasOptions": true,
             "options": [{"value": "staging"}, {"value": "prod"}]},
            {"name": "ticket", "label": "Change ticket", "required": true, "description": "The change request, e.g. CHG-1234"},
            {"name": "note", "label": "Note", "required": false, "default": "from slack"}
        ]}),
    );
    for name in ["noparams", "guarded", "frozen"] {
        gate.add_pipeline_config(APP, json!({ "name": name }));
    }
}

// ------------------------------------------------------------------------------------ helpers

/// A slash command as sent, and the service's HTTP answer.
struct Sent {
    status: u16,
    /// The JSON body of the ack (`Null` for an empty 200).
    body: Value,
    trigger_id: String,
    /// Where the service may answer later.
    response_url: String,
    sent_at: Instant,
    took: Duration,
}

/// Send `/spinnaker <text>` as `user` from C0OPS.
async fn send(app: &TestApp, text: &str, user: &str) -> Sent {
    let form = app.command_body(CMD, text, user);
    let fields: HashMap<String, String> = serde_urlencoded::from_str(&form).expect("form");
    let sent_at = Instant::now();
    let resp = app
        .post_signed(
            "/slack/commands",
            "application/x-www-form-urlencoded",
            form.as_bytes(),
        )
        .await;
    let took = sent_at.elapsed();
    let status = resp.status().as_u16();
    let raw = resp.text().await.expect("body");
    let body = if raw.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&raw).unwrap_or_else(|e| panic!("ack is not JSON ({e}): {raw}"))
    };
    Sent {
        status,
        body,
        trigger_id: fields["trigger_id"].clone(),
        response_url: fields["response_url"].clone(),
        sent_at,
        took,
    }
}

/// The text of an ephemeral ack (asserting it is one).
fn ephemeral_text(sent: &Sent) -> String {
    assert_eq!(sent.status, 200, "the command is acknowledged");
    assert_eq!(
        sent.body["response_type"], "ephemeral",
        "only the caller sees this: {}",
        sent.body
    );
    let text = sent.body["text"]
        .as_str()
        .unwrap_or_else(|| panic!("the ack has a text: {}", sent.body))
        .to_string();
    // With blocks, the blocks are what people see and `text` is the notification.
    match sent.body.get("blocks") {
        Some(b) => format!("{text}\n{}", block_texts(b)),
        None => text,
    }
}

/// Every section and context text of a message's blocks, in order.
fn block_texts(blocks: &Value) -> String {
    blocks
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|b| {
            let mut t: Vec<String> = b
                .pointer("/text/text")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .into_iter()
                .collect();
            for e in b["elements"].as_array().into_iter().flatten() {
                if let Some(x) = e["text"].as_str() {
                    t.push(x.to_string());
                }
            }
            t
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Send a command whose answer must be an ephemeral message; returns its text.
async fn ephemeral(app: &TestApp, text: &str, user: &str) -> String {
    let sent = send(app, text, user).await;
    ephemeral_text(&sent)
}

fn assert_mentions(text: &str, expected: &[&str], what: &str) {
    for e in expected {
        assert!(
            text.contains(e),
            "{what}: expected {e:?} in the message, got:\n{text}"
        );
    }
}

/// Trigger POSTs that reached the fake Gate at all (including ones failed by fault injection).
fn trigger_attempts(app: &TestApp) -> Vec<crate::support::fake_gate::RecordedRequest> {
    app.gate
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect()
}

fn assert_nothing_triggered(app: &TestApp, what: &str) {
    assert!(
        trigger_attempts(app).is_empty() && app.gate.triggers().is_empty(),
        "{what}: nothing may be triggered, but Gate saw {:?}",
        trigger_attempts(app)
    );
}

/// Cancel requests that reached the fake Gate.
fn cancel_requests(app: &TestApp) -> Vec<crate::support::fake_gate::RecordedRequest> {
    app.gate
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect()
}

fn deck_link(exec_id: &str) -> String {
    format!("{DECK}/#/applications/{APP}/executions/details/{exec_id}")
}

/// Every interactive element of a Block Kit array's `actions` blocks.
fn action_elements(blocks: &Value) -> Vec<Value> {
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

/// The button `action_id` in an ack's blocks.
fn button(body: &Value, action_id: &str) -> Value {
    action_elements(&body["blocks"])
        .into_iter()
        .find(|e| e["action_id"] == action_id)
        .unwrap_or_else(|| panic!("no button {action_id} in {body:#}"))
}

/// A click on a button of an ephemeral message in C0OPS, as Slack sends it; returns the payload
/// and its response_url.
fn click_payload(app: &TestApp, user: &str, action_id: &str, value: &str) -> (Value, String) {
    let url = app.slack.response_url_for_channel(OPS);
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user, "username": user.to_lowercase(), "name": user.to_lowercase(), "team_id": "T0FAKE"},
        "api_app_id": "A0APP",
        "token": "legacy",
        "container": {"type": "message", "message_ts": "1700000000.999900", "channel_id": OPS, "is_ephemeral": true},
        "trigger_id": app.slack.trigger_id(),
        "team": {"id": "T0FAKE", "domain": "fake"},
        "channel": {"id": OPS, "name": "ops-cmd"},
        "response_url": url,
        "actions": [{"action_id": action_id, "block_id": "pipelines_confirm", "type": "button",
                     "value": value, "action_ts": crate::helpers::action_ts()}]
    });
    (payload, url)
}

/// Click and return the texts posted to the click's response_url once there are `n` of them.
async fn click(app: &TestApp, user: &str, action_id: &str, value: &str) -> Vec<Value> {
    let (payload, url) = click_payload(app, user, action_id, value);
    let resp = app.interaction(&payload).await;
    assert_eq!(resp.status(), 200, "the click is acknowledged");
    app.slack
        .wait_for_response_url_posts(&url, 1, WAIT)
        .await
        .into_iter()
        .map(|p| p.body)
        .collect()
}

/// The messages in C0OPS announcing a start.
fn started_messages(app: &TestApp) -> Vec<Message> {
    app.slack
        .messages_in(OPS)
        .into_iter()
        .filter(|m| m.text.contains("started by"))
        .collect()
}

/// Whether `s` reads like `45s`, `3m 12s` or `2h 5m`.
fn looks_like_duration(s: &str) -> bool {
    !s.is_empty()
        && s.split(' ').all(|part| {
            let (num, unit) = part.split_at(part.len().saturating_sub(1));
            !num.is_empty()
                && num.bytes().all(|b| b.is_ascii_digit())
                && ["h", "m", "s"].contains(&unit)
        })
}

/// The words between `marker` and the next ` · ` of `text`.
fn after<'a>(text: &'a str, marker: &str) -> &'a str {
    let rest = text
        .split_once(marker)
        .unwrap_or_else(|| panic!("{marker:?} not in {text:?}"))
        .1;
    rest.split(" · ").next().unwrap_or(rest)
}

/// Run `action` while Gate is slowed down by [`GATE_LAG`]; as soon as Gate has served one more
/// `method path` request than before, `change` alters Gate before the request that follows it
/// (still waiting out the lag) is handled. `fail_next` counts every request, so this is how a
/// fault reaches a trigger or a cancel and not the lookup that precedes it.
async fn changing_gate_after<T>(
    app: &TestApp,
    method: &str,
    path: &str,
    change: impl FnOnce(&FakeGate),
    action: impl std::future::Future<Output = T>,
) -> T {
    let served = || {
        app.gate
            .requests()
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .count()
    };
    let before = served();
    app.gate.set_delay(GATE_LAG);
    let watcher = async {
        eventually(WAIT, &format!("{method} {path} to reach Gate"), || async {
            (served() > before).then_some(())
        })
        .await;
        change(&app.gate);
    };
    let (out, ()) = tokio::join!(action, watcher);
    app.gate.set_delay(Duration::ZERO);
    out
}

/// Send a start command whose trigger meets the Gate `change` made right after the lookup of
/// `pipeline`'s config.
async fn send_changing_gate_before_trigger(
    app: &TestApp,
    text: &str,
    user: &str,
    pipeline: &str,
    change: impl FnOnce(&FakeGate),
) -> Sent {
    let lookup = format!("/applications/{APP}/pipelineConfigs/{pipeline}");
    changing_gate_after(app, "GET", &lookup, change, send(app, text, user)).await
}

/// A Slack view as sent in a recorded `views.*` call.
fn call_view(body: &Value) -> Value {
    match &body["view"] {
        Value::String(s) => serde_json::from_str(s).expect("view JSON"),
        v => v.clone(),
    }
}

/// The input block `block_id` of a modal.
fn input_block(view: &Value, block_id: &str) -> Value {
    view["blocks"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["block_id"] == block_id))
        .cloned()
        .unwrap_or_else(|| panic!("no block {block_id} in {view:#}"))
}

/// All section texts of a modal or message.
fn section_texts(blocks: &Value) -> String {
    blocks
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b.pointer("/text/text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A view_submission of the start modal with `values` (block_id → element state).
fn submission(app: &TestApp, user: &str, view: &Value, values: Value) -> Value {
    json!({
        "type": "view_submission",
        "user": {"id": user, "username": user.to_lowercase(), "name": user.to_lowercase(), "team_id": "T0FAKE"},
        "team": {"id": "T0FAKE", "domain": "fake"},
        "api_app_id": "A0APP",
        "token": "legacy",
        "trigger_id": app.slack.trigger_id(),
        "view": {
            "id": view["id"],
            "team_id": "T0FAKE",
            "type": "modal",
            "callback_id": view["callback_id"],
            "private_metadata": view["private_metadata"],
            "hash": view["hash"],
            "root_view_id": view["id"],
            "previous_view_id": null,
            "state": {"values": values}
        },
        "response_urls": []
    })
}

async fn submit(app: &TestApp, payload: &Value) -> Value {
    let resp = app.interaction(payload).await;
    assert_eq!(resp.status(), 200, "the submission is acknowledged");
    let raw = resp.text().await.expect("body");
    if raw.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&raw).expect("a view_submission ack is JSON")
    }
}

async fn audit_rows(app: &TestApp) -> Vec<slackops::store::audit::AuditRecord> {
    app.state
        .db()
        .audit_recent("pipelines", 50)
        .await
        .expect("audit log readable")
}

/// A RUNNING execution of `pipeline` in the fake Gate, started `ago` ago by `user` with `status`.
fn add_execution(
    gate: &FakeGate,
    pipeline: &str,
    id: &str,
    ago: Duration,
    status: &str,
    user: &str,
) -> Value {
    let now = chrono::Utc::now().timestamp_millis();
    let start = now - ago.as_millis() as i64;
    let mut exec = FakeGate::mj_execution(APP, pipeline, id, &format!("{id}S"));
    exec["startTime"] = json!(start);
    exec["buildTime"] = json!(start);
    exec["status"] = json!(status);
    exec["endTime"] = if status == "RUNNING" {
        Value::Null
    } else {
        json!(start + 95_000)
    };
    exec["trigger"]["user"] = json!(user);
    gate.add_execution(exec.clone());
    exec
}

// ------------------------------------------------------------------------------------ help

#[tokio::test]
async fn help_and_an_empty_command_list_every_subcommand_with_examples() {
    let app = pipelines_app(TestDb::sqlite()).await;
    for text in ["help", "", "   "] {
        let help = ephemeral(&app, text, TRIGGER_USER).await;
        assert_mentions(
            &help,
            &[
                "`/spinnaker start &lt;application&gt; &lt;pipeline&gt; [name=value …]`",
                "`/spinnaker cancel &lt;execution id | Deck URL&gt; [reason]`",
                "`/spinnaker status &lt;application&gt; [pipeline]`",
                "`/spinnaker pending [application]`",
                "`/spinnaker pipelines &lt;application&gt;`",
                "`/spinnaker help`",
                // Concrete examples, not only the syntax.
                "e.g. `/spinnaker start payments deploy-prod version=v42`",
                "e.g. `/spinnaker cancel 01J6Z3Q9W8 canary is failing`",
                "e.g. `/spinnaker status payments deploy-prod`",
            ],
            &format!("help for {text:?}"),
        );
    }
    assert_eq!(app.gate.request_count(), 0, "help needs nothing from Gate");
    app.stop().await;

    // The command's name comes from `pipelines.command`, and help speaks of that name.
    let app = pipelines_builder(TestDb::sqlite())
        .await
        .settings(|s| s.pipelines.command = "/deploybot".into())
        .spawn()
        .await;
    let resp = app.command("/deploybot", "help", TRIGGER_USER).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("JSON ack");
    assert_eq!(body["response_type"], "ephemeral");
    let text = body["text"].as_str().expect("text");
    assert!(
        text.contains("`/deploybot start &lt;application&gt;") && !text.contains("/spinnaker"),
        "help names the configured command: {text}"
    );
    app.stop().await;
}

// ------------------------------------------------------------------------------------ start

#[tokio::test]
async fn start_with_all_required_parameters_triggers_once_announces_in_the_channel_and_is_audited()
{
    for db in TestDb::all("start_with_all_required_parameters").await {
        let engine = db.engine;
        let app = pipelines_app(db).await;
        // Slack clients turn straight quotes into typographic ones; a quoted value keeps its space.
        let sent = send(
            &app,
            "start myapp deploy version=\u{201C}v42 rc1\u{201D} env=prod",
            TRIGGER_USER,
        )
        .await;
        assert_eq!(sent.status, 200, "{engine:?}");
        assert!(
            sent.took < SLACK_DEADLINE,
            "{engine:?}: acknowledged within Slack's 3 s (took {:?})",
            sent.took
        );

        // Exactly one manual trigger, as the Slack user, with the parameters.
        let triggers = app.gate.triggers();
        assert_eq!(triggers.len(), 1, "{engine:?}: one trigger: {triggers:?}");
        let t = &triggers[0];
        assert_eq!(
            (t.application.as_str(), t.pipeline_name_or_id.as_str()),
            (APP, "deploy")
        );
        assert_eq!(t.status, 202, "{engine:?}: Gate accepted it");
        assert_eq!(t.body["type"], "manual", "{engine:?}: {}", t.body);
        assert_eq!(
            t.body["user"], TRIGGER_EMAIL,
            "{engine:?}: the trigger user is the Slack user's email: {}",
            t.body
        );
        assert_eq!(
            t.body["parameters"],
            json!({"version": "v42 rc1", "env": "prod"}),
            "{engine:?}: the parameters as typed"
        );
        let exec_id = t.execution_id.clone().expect("an execution was created");
        assert_eq!(
            trigger_attempts(&app).len(),
            1,
            "{engine:?}: one POST to Gate"
        );

        // "started by @user" with a Deck link, in the channel the command was typed in.
        let msgs = app.slack.wait_for_messages(OPS, 1, WAIT).await;
        assert_eq!(msgs.len(), 1, "{engine:?}: one announcement: {msgs:#?}");
        assert_mentions(
            &msgs[0].text,
            &[
                "*myapp* › *deploy* started by <@U0ALICE>",
                &format!("<{}|Open in Deck>", deck_link(&exec_id)),
                "`env`=prod",
                "`version`=v42 rc1",
            ],
            &format!("{engine:?}: the announcement"),
        );

        // Audited with the Slack user and Gate's answer.
        let rows = audit_rows(&app).await;
        let starts: Vec<_> = rows.iter().filter(|r| r.action == "start").collect();
        assert_eq!(starts.len(), 1, "{engine:?}: one start audited: {rows:#?}");
        let a = starts[0];
        assert_eq!(a.actor, TRIGGER_USER, "{engine:?}");
        assert_eq!(a.subject, "pipeline:myapp:deploy", "{engine:?}");
        assert_eq!(a.outcome, "ok", "{engine:?}");
        let detail: Value =
            serde_json::from_str(a.detail.as_deref().expect("detail")).expect("JSON detail");
        assert_eq!(
            detail["execution_id"],
            exec_id.as_str(),
            "{engine:?}: {detail}"
        );
        assert_eq!(
            detail["trigger_user"], TRIGGER_EMAIL,
            "{engine:?}: {detail}"
        );
        assert_eq!(
            detail["parameters"],
            json!({"version": "v42 rc1", "env": "prod"}),
            "{engine:?}"
        );

        // Recorded for the follow-up, with the message to update (the announcement job records
        // where it posted right after posting).
        let runs: Vec<(String, Option<String>, Option<String>, String)> =
            eventually(WAIT, "the announcement recorded", || async {
                let rows: Vec<(String, Option<String>, Option<String>, String)> = sqlx::query_as(
                    "SELECT execution_id, channel, message_ts, status FROM pipeline_runs",
                )
                .fetch_all(app.state.db().pool())
                .await
                .expect("pipeline_runs readable");
                rows.iter().all(|r| r.2.is_some()).then_some(rows)
            })
            .await;
        assert_eq!(
            runs,
            vec![(
                exec_id.clone(),
                Some(OPS.to_string()),
                Some(msgs[0].ts.clone()),
                "RUNNING".to_string()
            )],
            "{engine:?}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_start_that_cannot_be_recorded_for_the_follow_up_is_still_announced() {
    for db in TestDb::all("a_start_that_cannot_be_recorded").await {
        let engine = db.engine;
        let app = pipelines_app(db).await;
        // The table of followed runs is unusable (a storage fault after the audit row).
        sqlx::query("ALTER TABLE pipeline_runs RENAME TO pipeline_runs_unavailable")
            .execute(app.state.db().pool())
            .await
            .expect("rename");
        let sent = send(&app, "start myapp noparams", TRIGGER_USER).await;
        assert_eq!(sent.status, 200, "{engine:?}");
        let triggers = app.gate.triggers();
        assert_eq!(triggers.len(), 1, "{engine:?}: Gate started it");
        let exec_id = triggers[0].execution_id.clone().expect("started");
        // The pipeline runs: whoever typed the command, and the channel, must be told so, or
        // someone starts it a second time. Only the follow-up may be lost.
        let msgs = app
            .slack
            .wait_for_messages(OPS, 1, Duration::from_secs(5))
            .await;
        assert!(
            msgs[0].text.contains("started by <@U0ALICE>")
                && msgs[0].text.contains(&deck_link(&exec_id)),
            "{engine:?}: announced: {:?}",
            msgs[0].text
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn the_started_message_is_updated_when_the_execution_succeeds_fails_or_is_canceled() {
    for db in TestDb::all("the_started_message_is_updated").await {
        let engine = db.engine;
        let app = pipelines_builder(db)
            .await
            .settings(|s| s.pipelines.follow_interval_secs = 2)
            .spawn()
            .await;
        for _ in 0..3 {
            let sent = send(&app, "start myapp deploy env=staging", TRIGGER_USER).await;
            assert_eq!(sent.status, 200, "{engine:?}");
        }
        let ids: Vec<String> = app
            .gate
            .triggers()
            .iter()
            .map(|t| t.execution_id.clone().expect("started"))
            .collect();
        assert_eq!(ids.len(), 3, "{engine:?}: three starts");
        app.slack.wait_for_messages(OPS, 3, WAIT).await;
        let message_of = |id: &str| -> Message {
            app.slack
                .messages_in(OPS)
                .into_iter()
                .find(|m| m.text.contains(&deck_link(id)))
                .unwrap_or_else(|| panic!("no message for {id}"))
        };

        // The follow-up looks while the executions still run, and leaves the messages alone.
        let first_read = format!("/pipelines/{}", ids[0]);
        eventually(
            WAIT,
            "the follow-up to read the first execution",
            || async {
                app.gate
                    .requests()
                    .iter()
                    .any(|r| r.method == "GET" && r.path == first_read)
                    .then_some(())
            },
        )
        .await;
        assert_eq!(
            message_of(&ids[0]).updated,
            0,
            "{engine:?}: still running, not updated"
        );

        app.gate.set_execution_status(&ids[0], "SUCCEEDED");
        app.gate.set_execution_status(&ids[1], "TERMINAL");
        app.gate.set_execution_status(&ids[2], "CANCELED");
        let updated = eventually(WAIT, "the three messages to be updated", || async {
            let m: Vec<Message> = ids.iter().map(|id| message_of(id)).collect();
            m.iter().all(|m| m.updated > 0).then_some(m)
        })
        .await;

        let succeeded = &updated[0].text;
        assert_mentions(
            succeeded,
            &[
                "*myapp* › *deploy* started by <@U0ALICE>",
                "*succeeded* in ",
                &deck_link(&ids[0]),
            ],
            &format!("{engine:?}: succeeded"),
        );
        let took = after(succeeded, "*succeeded* in ");
        assert!(
            looks_like_duration(took),
            "{engine:?}: a duration, got {took:?} in {succeeded}"
        );

        let failed = &updated[1].text;
        assert_mentions(
            failed,
            &[
                "started by <@U0ALICE>",
                "*failed*",
                "TERMINAL",
                " after ",
                &deck_link(&ids[1]),
            ],
            &format!("{engine:?}: failed"),
        );
        let took = after(failed, " after ");
        assert!(
            looks_like_duration(took),
            "{engine:?}: a duration, got {took:?} in {failed}"
        );

        let canceled = &updated[2].text;
        assert_mentions(
            canceled,
            &[
                "started by <@U0ALICE>",
                "*canceled*",
                " after ",
                &deck_link(&ids[2]),
            ],
            &format!("{engine:?}: canceled"),
        );
        let took = after(canceled, " after ");
        assert!(
            looks_like_duration(took),
            "{engine:?}: a duration, got {took:?} in {canceled}"
        );

        // The runs are closed with their outcome, so nothing follows them any more.
        let runs = eventually(WAIT, "the runs to be closed", || async {
            let rows: Vec<(String, String, Option<i64>)> =
                sqlx::query_as("SELECT execution_id, status, ended_at FROM pipeline_runs")
                    .fetch_all(app.state.db().pool())
                    .await
                    .ok()?;
            rows.iter().all(|r| r.1 != "RUNNING").then_some(rows)
        })
        .await;
        let status_of = |id: &str| {
            runs.iter()
                .find(|r| r.0 == id)
                .map(|r| (r.1.clone(), r.2.is_some()))
        };
        assert_eq!(
            status_of(&ids[0]),
            Some(("SUCCEEDED".into(), true)),
            "{engine:?}"
        );
        assert_eq!(
            status_of(&ids[1]),
            Some(("TERMINAL".into(), true)),
            "{engine:?}"
        );
        assert_eq!(
            status_of(&ids[2]),
            Some(("CANCELED".into(), true)),
            "{engine:?}"
        );
        for id in &ids {
            assert_eq!(
                message_of(id).updated,
                1,
                "{engine:?}: updated once, when it ended"
            );
        }
        assert_eq!(
            app.gate.triggers().len(),
            3,
            "{engine:?}: following never triggers"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn missing_parameters_open_a_modal_that_refuses_an_empty_required_field_then_starts_once() {
    for db in TestDb::all("missing_parameters_open_a_modal").await {
        let engine = db.engine;
        let app = pipelines_app(db).await;
        let sent = send(&app, "start myapp release env=prod", TRIGGER_USER).await;
        assert_eq!(sent.status, 200, "{engine:?}");
        assert_eq!(
            sent.body,
            Value::Null,
            "{engine:?}: a silent ack, the modal answers"
        );

        // The form, opened with the command's trigger_id.
        let opens = app.slack.calls("views.open");
        assert_eq!(opens.len(), 1, "{engine:?}: one modal");
        assert_eq!(
            opens[0].body["trigger_id"],
            sent.trigger_id.as_str(),
            "{engine:?}"
        );
        let views = app.slack.views();
        assert_eq!(views.len(), 1, "{engine:?}");
        let view = views[0].view.clone();
        assert_eq!(view["callback_id"], VIEW_START, "{engine:?}: {view:#}");
        assert!(view.get("submit").is_some(), "{engine:?}: a Start button");

        let env = input_block(&view, "param:env");
        assert_eq!(env["optional"], false, "{engine:?}: env is required");
        assert_eq!(env["label"]["text"], "Environment");
        assert_eq!(
            env["element"]["type"], "static_select",
            "{engine:?}: options become a select"
        );
        assert_eq!(env["element"]["action_id"], "value");
        let options: Vec<&str> = env["element"]["options"]
            .as_array()
            .expect("options")
            .iter()
            .filter_map(|o| o["text"]["text"].as_str())
            .collect();
        assert_eq!(options, vec!["staging", "prod"], "{engine:?}");
        assert_eq!(
            env["element"]["initial_option"]["text"]["text"], "prod",
            "{engine:?}: the value given in the command wins over the default"
        );

        let ticket = input_block(&view, "param:ticket");
        assert_eq!(ticket["optional"], false, "{engine:?}");
        assert_eq!(ticket["element"]["type"], "plain_text_input");
        assert_eq!(ticket["element"]["action_id"], "value");
        assert!(
            ticket["element"].get("initial_value").is_none(),
            "{engine:?}: nothing to prefill"
        );
        assert_eq!(
            ticket["hint"]["text"], "The change request, e.g. CHG-1234",
            "{engine:?}"
        );

        let note = input_block(&view, "param:note");
        assert_eq!(note["optional"], true, "{engine:?}");
        assert_eq!(
            note["element"]["initial_value"], "from slack",
            "{engine:?}: prefilled with the default"
        );
        assert_nothing_triggered(&app, "the form is open");

        // Submitting without the required ticket: a field error, nothing started.
        let empty_ticket = json!({
            "param:env": {"value": {"type": "static_select", "selected_option": {"text": {"type": "plain_text", "text": "prod"}, "value": "prod"}}},
            "param:ticket": {"value": {"type": "plain_text_input", "value": ""}},
            "param:note": {"value": {"type": "plain_text_input", "value": "from slack"}}
        });
        let ack = submit(&app, &submission(&app, TRIGGER_USER, &view, empty_ticket)).await;
        assert_eq!(ack["response_action"], "errors", "{engine:?}: {ack}");
        let errors = ack["errors"].as_object().expect("errors");
        assert_eq!(
            errors.keys().collect::<Vec<_>>(),
            vec!["param:ticket"],
            "{engine:?}: {ack}"
        );
        assert!(
            !errors["param:ticket"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{engine:?}: the error says something"
        );
        assert_nothing_triggered(&app, "an invalid submission");

        // Slack sends `null` for an emptied text input; a value outside the options (a forged
        // payload) is refused on its field too.
        let forged = json!({
            "param:env": {"value": {"type": "static_select", "selected_option": {"text": {"type": "plain_text", "text": "qa"}, "value": "qa"}}},
            "param:ticket": {"value": {"type": "plain_text_input", "value": null}},
            "param:note": {"value": {"type": "plain_text_input", "value": null}}
        });
        let ack = submit(&app, &submission(&app, TRIGGER_USER, &view, forged)).await;
        assert_eq!(ack["response_action"], "errors", "{engine:?}: {ack}");
        let errors = ack["errors"].as_object().expect("errors");
        let mut fields: Vec<&String> = errors.keys().collect();
        fields.sort();
        assert_eq!(
            fields,
            vec!["param:env", "param:ticket"],
            "{engine:?}: {ack}"
        );
        assert!(
            errors["param:env"]
                .as_str()
                .unwrap_or_default()
                .contains("staging"),
            "{engine:?}: the error names the allowed values: {ack}"
        );
        assert_nothing_triggered(&app, "a forged submission");

        // Valid values: one trigger, and the modal becomes a "started" view.
        let valid = json!({
            "param:env": {"value": {"type": "static_select", "selected_option": {"text": {"type": "plain_text", "text": "prod"}, "value": "prod"}}},
            "param:ticket": {"value": {"type": "plain_text_input", "value": "CHG-1234"}},
            "param:note": {"value": {"type": "plain_text_input", "value": "from slack"}}
        });
        let ack = submit(&app, &submission(&app, TRIGGER_USER, &view, valid)).await;
        assert_eq!(ack["response_action"], "update", "{engine:?}: {ack}");
        let started_view = &ack["view"];
        assert_eq!(started_view["type"], "modal");
        assert!(
            started_view.get("submit").is_none(),
            "{engine:?}: nothing more to submit"
        );
        assert_mentions(
            &section_texts(&started_view["blocks"]),
            &["*myapp* › *release* started by <@U0ALICE>", "Open in Deck"],
            &format!("{engine:?}: the started view"),
        );
        let triggers = app.gate.triggers();
        assert_eq!(triggers.len(), 1, "{engine:?}: exactly one trigger");
        assert_eq!(
            triggers[0].body["parameters"],
            json!({"env": "prod", "ticket": "CHG-1234", "note": "from slack"}),
            "{engine:?}"
        );
        assert_eq!(triggers[0].body["user"], TRIGGER_EMAIL, "{engine:?}");
        let exec_id = triggers[0].execution_id.clone().expect("started");
        let msgs = app.slack.wait_for_messages(OPS, 1, WAIT).await;
        assert!(
            msgs[0].text.contains("started by <@U0ALICE>")
                && msgs[0].text.contains(&deck_link(&exec_id)),
            "{engine:?}: announced in the command's channel: {:?}",
            msgs[0].text
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_slow_gate_gets_a_loading_modal_within_the_trigger_deadline_then_the_form_or_the_result()
{
    for db in TestDb::all("a_slow_gate_gets_a_loading_modal").await {
        let engine = db.engine;
        let app = pipelines_app(db).await;
        app.gate.set_delay(Duration::from_millis(1500));

        // A pipeline that needs the form: loading modal first, then the form in its place.
        let sent = send(&app, "start myapp release env=prod", TRIGGER_USER).await;
        assert_eq!(sent.status, 200, "{engine:?}");
        assert!(
            sent.took < SLACK_DEADLINE,
            "{engine:?}: acked in time ({:?})",
            sent.took
        );
        let opens = app.slack.calls("views.open");
        assert_eq!(opens.len(), 1, "{engine:?}: one views.open");
        assert_eq!(opens[0].body["trigger_id"], sent.trigger_id.as_str());
        assert!(
            opens[0].at.duration_since(sent.sent_at) < SLACK_DEADLINE,
            "{engine:?}: opened within the trigger's 3 s"
        );
        let loading = call_view(&opens[0].body);
        assert_ne!(
            loading["callback_id"], VIEW_START,
            "{engine:?}: not the form yet"
        );
        assert!(
            section_texts(&loading["blocks"]).contains("Looking up *myapp* › *release*"),
            "{engine:?}: a loading view: {loading:#}"
        );
        let updates = app.slack.wait_for_calls("views.update", 1, WAIT).await;
        let view_id = app.slack.views()[0].id.clone();
        assert_eq!(updates[0].body["view_id"], view_id.as_str(), "{engine:?}");
        assert!(
            updates[0].at > opens[0].at,
            "{engine:?}: updated after it was opened"
        );
        let form = call_view(&updates[0].body);
        assert_eq!(form["callback_id"], VIEW_START, "{engine:?}: {form:#}");
        input_block(&form, "param:ticket");
        assert_eq!(
            app.slack.views()[0].view["callback_id"],
            VIEW_START,
            "{engine:?}"
        );
        assert_nothing_triggered(&app, "the form is open");

        // A pipeline with everything given: loading modal, then the result in its place.
        app.slack.reset_calls();
        let sent = send(
            &app,
            "start myapp deploy version=v42 env=prod",
            TRIGGER_USER,
        )
        .await;
        assert_eq!(sent.status, 200, "{engine:?}");
        assert!(
            sent.took < SLACK_DEADLINE,
            "{engine:?}: acked in time ({:?})",
            sent.took
        );
        let opens = app.slack.calls("views.open");
        assert_eq!(opens.len(), 1, "{engine:?}: a loading modal");
        assert!(
            opens[0].at.duration_since(sent.sent_at) < SLACK_DEADLINE,
            "{engine:?}"
        );
        let loading_id = app
            .slack
            .views()
            .into_iter()
            .find(|v| v.trigger_id.as_deref() == Some(sent.trigger_id.as_str()))
            .expect("the loading modal")
            .id;
        let result = eventually(WAIT, "the loading modal to show the result", || async {
            let v = app.slack.views().into_iter().find(|v| v.id == loading_id)?;
            let text = section_texts(&v.view["blocks"]);
            text.contains("started by").then_some(text)
        })
        .await;
        assert!(
            result.contains("*myapp* › *deploy* started by <@U0ALICE>"),
            "{engine:?}: {result}"
        );
        let triggers = app.gate.triggers();
        assert_eq!(triggers.len(), 1, "{engine:?}: one trigger");
        assert_eq!(trigger_attempts(&app).len(), 1, "{engine:?}: one POST");
        app.slack.wait_for_messages(OPS, 1, WAIT).await;
        app.stop().await;
    }
}

// ------------------------------------------------------------------------------------ refusals

#[tokio::test]
async fn bad_input_gets_an_ephemeral_explanation_and_triggers_nothing() {
    let app = pipelines_app(TestDb::sqlite()).await;
    let cases: &[(&str, &[&str])] = &[
        (
            "deploy now",
            &[
                "`deploy` is not a subcommand",
                "`start`",
                "`cancel`",
                "`/spinnaker help`",
            ],
        ),
        (
            "start myapp",
            &[
                "`start` needs an application and a pipeline",
                "Usage: `/spinnaker start &lt;application&gt; &lt;pipeline&gt; [name=value …]`",
            ],
        ),
        (
            "start myapp deploy env=prod oops",
            &["`oops` is not a parameter", "`name=value`"],
        ),
        (
            "start myapp deploy env=prod colour=red",
            &[
                "`colour` is not a parameter of this pipeline",
                "it takes `version`, `env`",
                "Usage: `/spinnaker start myapp deploy name=value …`",
            ],
        ),
        (
            "start myapp deploy env=qa",
            &[
                "`env=qa` is not allowed",
                "`env` must be one of `staging`, `prod`",
            ],
        ),
        (
            "start nosuchapp deploy",
            &["There is no application *nosuchapp* in Spinnaker"],
        ),
        (
            "start myapp nope",
            &[
                "*myapp* has no pipeline *nope*",
                "`deploy`",
                "`release`",
                "`noparams`",
            ],
        ),
    ];
    for (text, expected) in cases {
        let reply = ephemeral(&app, text, TRIGGER_USER).await;
        assert_mentions(&reply, expected, text);
        assert_nothing_triggered(&app, text);
    }
    // The unknown application was told apart from an unknown pipeline by asking Gate for it.
    let requests = app.gate.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.method == "GET" && r.path == "/applications/nosuchapp" && r.status == 404),
        "GET /applications/nosuchapp answered 404: {requests:#?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.method == "GET" && r.path == "/applications/myapp" && r.status == 200),
        "GET /applications/myapp answered 200: {requests:#?}"
    );
    assert!(app.slack.views().is_empty(), "no modal for bad input");
    assert!(started_messages(&app).is_empty(), "nothing announced");
    app.stop().await;
}

#[tokio::test]
async fn a_missing_required_parameter_is_quoted_from_gates_400_and_nothing_starts() {
    for db in TestDb::all("a_missing_required_parameter_is_quoted").await {
        let engine = db.engine;
        let app = pipelines_app(db).await;
        // The config shows no parameters when slackops looks it up; by the time the trigger
        // arrives it requires `ticket` (edited in Deck meanwhile), so Gate answers 400.
        let sent = send_changing_gate_before_trigger(
            &app,
            "start myapp noparams",
            TRIGGER_USER,
            "noparams",
            |gate| {
                gate.add_pipeline_config(
                    APP,
                    json!({"name": "noparams", "parameterConfig": [{"name": "ticket", "required": true}]}),
                );
            },
        )
        .await;
        let reply = ephemeral_text(&sent);
        assert_mentions(
            &reply,
            &[
                "Spinnaker refused to start *myapp* › *noparams*",
                "Required parameter ticket is missing",
            ],
            &format!("{engine:?}: Gate's 400 is quoted"),
        );
        let triggers = app.gate.triggers();
        assert_eq!(triggers.len(), 1, "{engine:?}: one attempt: {triggers:?}");
        assert_eq!(triggers[0].status, 400, "{engine:?}");
        assert!(
            triggers[0].execution_id.is_none(),
            "{engine:?}: nothing started"
        );
        assert!(
            app.gate.executions().is_empty(),
            "{engine:?}: no execution in Gate"
        );
        assert!(
            started_messages(&app).is_empty(),
            "{engine:?}: nothing announced"
        );
        let rows = audit_rows(&app).await;
        assert!(
            rows.iter()
                .any(|r| r.action == "start" && r.outcome == "refused" && r.actor == TRIGGER_USER),
            "{engine:?}: the refusal is audited: {rows:#?}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_gate_500_on_trigger_says_it_may_have_started_and_is_never_retried() {
    for db in TestDb::all("a_gate_500_on_trigger").await {
        let engine = db.engine;
        let app = pipelines_app(db).await;
        let sent = send_changing_gate_before_trigger(
            &app,
            "start myapp noparams",
            TRIGGER_USER,
            "noparams",
            |gate| gate.fail_next(1, 500),
        )
        .await;
        let reply = ephemeral_text(&sent);
        assert_mentions(
            &reply,
            &[
                "may or may not have started",
                "did not retry",
                "`/spinnaker status myapp noparams`",
            ],
            &format!("{engine:?}: a plain explanation"),
        );
        let attempts = trigger_attempts(&app);
        assert_eq!(
            attempts.len(),
            1,
            "{engine:?}: exactly one attempt: {attempts:#?}"
        );
        assert_eq!(attempts[0].path, "/pipelines/myapp/noparams");
        assert_eq!(attempts[0].status, 500);

        // Nothing retries it later either (no job, no second request).
        let rows = audit_rows(&app).await;
        assert!(
            rows.iter()
                .any(|r| r.action == "start" && r.outcome == "unknown"),
            "{engine:?}: audited as unknown: {rows:#?}"
        );
        let queued: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE kind LIKE 'pipelines.%'")
                .fetch_one(app.state.db().pool())
                .await
                .expect("jobs readable");
        assert_eq!(queued, 0, "{engine:?}: nothing queued to retry or follow");
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(
            trigger_attempts(&app).len(),
            1,
            "{engine:?}: still one attempt"
        );
        assert!(
            started_messages(&app).is_empty(),
            "{engine:?}: nothing announced"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn only_people_in_the_rules_may_start_and_unstartable_pipelines_are_refused() {
    for db in TestDb::all("only_people_in_the_rules_may_start").await {
        let engine = db.engine;
        let app = pipelines_app(db).await;

        let reply = ephemeral(&app, "start myapp deploy version=v42 env=prod", OUTSIDER).await;
        assert_mentions(
            &reply,
            &[
                "You may not start *myapp* › *deploy* from Slack",
                "Allowed:",
            ],
            &format!("{engine:?}: an outsider"),
        );
        assert_nothing_triggered(&app, "an outsider");

        let reply = ephemeral(&app, "start otherapp build", OUTSIDER).await;
        assert_mentions(
            &reply,
            &["You may not start *otherapp* › *build*"],
            &format!("{engine:?}: the * rule"),
        );
        assert_nothing_triggered(&app, "an outsider on another application");

        let reply = ephemeral(&app, "start myapp frozen", TRIGGER_USER).await;
        assert_mentions(
            &reply,
            &["*myapp* › *frozen* cannot be started from Slack"],
            &format!("{engine:?}: startable: false"),
        );
        assert_nothing_triggered(&app, "an unstartable pipeline");
        assert!(started_messages(&app).is_empty(), "{engine:?}");

        // A member of an allowed user group may.
        let sent = send(&app, "start myapp noparams", APPROVER2).await;
        assert_eq!(sent.status, 200, "{engine:?}");
        let triggers = app.gate.triggers();
        assert_eq!(triggers.len(), 1, "{engine:?}: the group member started it");
        assert_eq!(triggers[0].body["user"], "carol@example.com", "{engine:?}");
        let msgs = app.slack.wait_for_messages(OPS, 1, WAIT).await;
        assert!(
            msgs[0].text.contains("started by <@U0CAROL>"),
            "{engine:?}: {:?}",
            msgs[0].text
        );
        // (CAROL is in the fixture's group.)
        assert_eq!(
            app.slack.usergroup_members(RELEASE_GROUP),
            vec![APPROVER2.to_string()]
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_pipeline_needing_confirmation_starts_only_when_its_button_is_clicked() {
    for db in TestDb::all("a_pipeline_needing_confirmation").await {
        let engine = db.engine;
        let app = pipelines_app(db).await;
        let sent = send(&app, "start myapp guarded", TRIGGER_USER).await;
        let text = ephemeral_text(&sent);
        assert!(
            text.contains("Start *myapp* › *guarded*"),
            "{engine:?}: asks first: {text}"
        );
        let b = button(&sent.body, START_CONFIRM);
        assert!(
            b.get("confirm").is_some(),
            "{engine:?}: the button has a confirm dialog: {b}"
        );
        let value = b["value"].as_str().expect("button value").to_string();
        assert_nothing_triggered(&app, "before the click");
        assert!(
            app.slack.views().is_empty(),
            "{engine:?}: no modal for a parameterless pipeline"
        );

        // The button's value reaches an outsider (forwarded, forged): refused.
        let replies = click(&app, OUTSIDER, START_CONFIRM, &value).await;
        assert!(
            replies[0]["text"]
                .as_str()
                .unwrap_or_default()
                .contains("You may not start"),
            "{engine:?}: refused: {replies:?}"
        );
        assert_nothing_triggered(&app, "an outsider's click");

        // The person who asked clicks: one trigger, announced in the channel.
        let replies = click(&app, TRIGGER_USER, START_CONFIRM, &value).await;
        assert_eq!(
            replies[0]["delete_original"], true,
            "{engine:?}: the question goes away: {replies:?}"
        );
        let triggers = app.gate.triggers();
        assert_eq!(triggers.len(), 1, "{engine:?}: exactly one trigger");
        assert_eq!(triggers[0].pipeline_name_or_id, "guarded");
        assert_eq!(triggers[0].body["user"], TRIGGER_EMAIL);
        let msgs = app.slack.wait_for_messages(OPS, 1, WAIT).await;
        assert!(
            msgs[0]
                .text
                .contains("*myapp* › *guarded* started by <@U0ALICE>"),
            "{engine:?}: {:?}",
            msgs[0].text
        );
        app.stop().await;
    }
}

// ------------------------------------------------------------------------------------ cancel

const EXEC: &str = "01J6CANCEL0000000000000001";
const EXEC_DONE: &str = "01J6CANCEL0000000000000002";
const EXEC_LATE: &str = "01J6CANCEL0000000000000003";

#[tokio::test]
async fn cancel_asks_for_confirmation_then_cancels_once_and_tells_the_channel_who_and_why() {
    for db in TestDb::all("cancel_asks_for_confirmation").await {
        let engine = db.engine;
        let app = pipelines_app(db).await;
        add_mj(&app.gate, EXEC, "01J6CANCELSTAGE00000000001");

        // By id.
        let sent = send(&app, &format!("cancel {EXEC}"), APPROVER).await;
        let text = ephemeral_text(&sent);
        assert_mentions(
            &text,
            &[
                &format!("Cancel *myapp* › *{PIPELINE}*"),
                EXEC,
                "started by alice@example.com",
            ],
            &format!("{engine:?}: cancel by id"),
        );
        let b = button(&sent.body, CANCEL_CONFIRM);
        assert!(
            b.get("confirm").is_some(),
            "{engine:?}: a confirm dialog: {b}"
        );

        // By Deck URL, with a reason.
        let url = format!("{}?stage=1", deck_link(EXEC));
        let sent = send(&app, &format!("cancel {url} canary is failing"), APPROVER).await;
        let text = ephemeral_text(&sent);
        assert_mentions(
            &text,
            &[
                &format!("Cancel *myapp* › *{PIPELINE}*"),
                "Reason: _canary is failing_",
            ],
            &format!("{engine:?}: cancel by URL"),
        );
        let value = button(&sent.body, CANCEL_CONFIRM)["value"]
            .as_str()
            .expect("value")
            .to_string();
        assert!(
            cancel_requests(&app).is_empty(),
            "{engine:?}: nothing canceled before the click"
        );
        assert_eq!(app.gate.execution(EXEC)["status"], "RUNNING", "{engine:?}");

        // The click cancels, once.
        let replies = click(&app, APPROVER, CANCEL_CONFIRM, &value).await;
        assert_eq!(
            replies[0]["delete_original"], true,
            "{engine:?}: {replies:?}"
        );
        let puts = cancel_requests(&app);
        assert_eq!(puts.len(), 1, "{engine:?}: exactly one cancel: {puts:#?}");
        assert_eq!(puts[0].path, format!("/pipelines/{EXEC}/cancel"));
        let query: HashMap<String, String> =
            serde_urlencoded::from_str(puts[0].query.as_deref().unwrap_or_default())
                .expect("query");
        assert!(
            query
                .get("reason")
                .is_some_and(|r| r.contains("canary is failing") && r.contains(APPROVER_EMAIL)),
            "{engine:?}: the reason and who: {query:?}"
        );
        let exec = app.gate.execution(EXEC);
        assert_eq!(exec["status"], "CANCELED", "{engine:?}");
        assert_eq!(exec["canceled"], true);
        assert!(
            exec["cancellationReason"]
                .as_str()
                .unwrap_or_default()
                .contains("canary is failing"),
            "{engine:?}: {}",
            exec["cancellationReason"]
        );

        let msgs = app.slack.wait_for_messages(OPS, 1, WAIT).await;
        assert_mentions(
            &msgs[0].text,
            &[
                &format!("*myapp* › *{PIPELINE}* canceled by <@U0BOB>"),
                "canary is failing",
                &deck_link(EXEC),
            ],
            &format!("{engine:?}: the channel is told"),
        );

        let rows = audit_rows(&app).await;
        let cancels: Vec<_> = rows.iter().filter(|r| r.action == "cancel").collect();
        assert_eq!(cancels.len(), 1, "{engine:?}: {rows:#?}");
        assert_eq!(cancels[0].actor, APPROVER);
        assert_eq!(cancels[0].subject, format!("execution:{EXEC}"));
        assert_eq!(cancels[0].outcome, "ok");
        app.stop().await;
    }
}

#[tokio::test]
async fn cancel_refuses_unknown_and_finished_executions_and_unauthorized_people() {
    for db in TestDb::all("cancel_refuses").await {
        let engine = db.engine;
        let app = pipelines_app(db).await;
        add_mj(&app.gate, EXEC, "01J6CANCELSTAGE00000000001");
        add_mj(&app.gate, EXEC_DONE, "01J6CANCELSTAGE00000000002");
        app.gate.set_execution_status(EXEC_DONE, "SUCCEEDED");

        let reply = ephemeral(&app, "cancel 01J6NOSUCHEXECUTION0000000", APPROVER).await;
        assert_mentions(
            &reply,
            &["no execution", "01J6NOSUCHEXECUTION0000000"],
            &format!("{engine:?}: unknown id"),
        );

        let reply = ephemeral(&app, &format!("cancel {EXEC_DONE}"), APPROVER).await;
        assert_mentions(
            &reply,
            &["already ended", "SUCCEEDED"],
            &format!("{engine:?}: finished"),
        );

        let reply = ephemeral(&app, &format!("cancel {EXEC} because"), OUTSIDER).await;
        assert_mentions(
            &reply,
            &[&format!("You may not cancel *myapp* › *{PIPELINE}*")],
            &format!("{engine:?}: an outsider"),
        );

        let reply = ephemeral(&app, "cancel https://example.com/nothing", APPROVER).await;
        assert_mentions(
            &reply,
            &["is not a Deck execution URL"],
            &format!("{engine:?}: bad URL"),
        );

        // An execution that ends between the confirmation and the click is not canceled.
        add_mj(&app.gate, EXEC_LATE, "01J6CANCELSTAGE00000000003");
        let sent = send(&app, &format!("cancel {EXEC_LATE}"), APPROVER).await;
        let late_value = button(&sent.body, CANCEL_CONFIRM)["value"]
            .as_str()
            .expect("value")
            .to_string();
        app.gate.set_execution_status(EXEC_LATE, "SUCCEEDED");
        let replies = click(&app, APPROVER, CANCEL_CONFIRM, &late_value).await;
        assert!(
            replies[0]["text"]
                .as_str()
                .unwrap_or_default()
                .contains("already ended"),
            "{engine:?}: {replies:?}"
        );

        // An outsider with a forged button value is refused as well.
        let value = json!({"e": EXEC, "r": "forged"}).to_string();
        let replies = click(&app, OUTSIDER, CANCEL_CONFIRM, &value).await;
        assert!(
            replies[0]["text"]
                .as_str()
                .unwrap_or_default()
                .contains("You may not cancel"),
            "{engine:?}: {replies:?}"
        );

        assert!(
            cancel_requests(&app).is_empty(),
            "{engine:?}: nothing canceled"
        );
        assert_eq!(app.gate.execution(EXEC)["status"], "RUNNING", "{engine:?}");
        assert!(
            app.slack.messages_in(OPS).is_empty(),
            "{engine:?}: nothing posted"
        );
        let rows = audit_rows(&app).await;
        assert!(
            rows.iter()
                .any(|r| r.action == "cancel" && r.outcome == "refused" && r.actor == OUTSIDER),
            "{engine:?}: refusals are audited: {rows:#?}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn gate_errors_are_reported_plainly_and_nothing_is_retried() {
    for db in TestDb::all("gate_errors_are_reported_plainly").await {
        let engine = db.engine;
        let app = pipelines_app(db).await;
        add_mj(&app.gate, EXEC, "01J6CANCELSTAGE00000000001");

        // Gate fails the cancel itself (not the read before it).
        let sent = send(&app, &format!("cancel {EXEC} stuck"), APPROVER).await;
        let value = button(&sent.body, CANCEL_CONFIRM)["value"]
            .as_str()
            .expect("value")
            .to_string();
        let replies = changing_gate_after(
            &app,
            "GET",
            &format!("/pipelines/{EXEC}"),
            |gate| gate.fail_next(1, 500),
            click(&app, APPROVER, CANCEL_CONFIRM, &value),
        )
        .await;
        let text = replies[0]["text"].as_str().unwrap_or_default();
        assert_mentions(
            text,
            &["Spinnaker did not cancel it", "500"],
            &format!("{engine:?}: a failed cancel"),
        );
        let puts = cancel_requests(&app);
        assert_eq!(puts.len(), 1, "{engine:?}: one cancel attempt: {puts:#?}");
        assert_eq!(puts[0].status, 500);
        assert_eq!(app.gate.execution(EXEC)["status"], "RUNNING", "{engine:?}");
        assert!(
            app.slack.messages_in(OPS).is_empty(),
            "{engine:?}: no \"canceled\" message"
        );
        let rows = audit_rows(&app).await;
        assert!(
            rows.iter()
                .any(|r| r.action == "cancel" && r.outcome == "failed" && r.actor == APPROVER),
            "{engine:?}: the failure is audited with Gate's answer: {rows:#?}"
        );

        // Gate down behind its load balancer: every command says so plainly.
        app.gate.set_down(true);
        let reply = ephemeral(&app, "start myapp noparams", TRIGGER_USER).await;
        assert_mentions(
            &reply,
            &["Gate did not answer", "503", "nothing was started"],
            &format!("{engine:?}: start"),
        );
        let reply = ephemeral(&app, &format!("cancel {EXEC}"), APPROVER).await;
        assert_mentions(
            &reply,
            &["Gate did not answer", "nothing was canceled"],
            &format!("{engine:?}: cancel"),
        );
        let reply = ephemeral(&app, "status myapp", TRIGGER_USER).await;
        assert_mentions(
            &reply,
            &["Gate did not answer"],
            &format!("{engine:?}: status"),
        );
        let reply = ephemeral(&app, "pipelines myapp", TRIGGER_USER).await;
        assert_mentions(
            &reply,
            &["Gate did not answer"],
            &format!("{engine:?}: pipelines"),
        );
        assert_nothing_triggered(&app, "Gate down");
        assert_eq!(
            cancel_requests(&app).len(),
            1,
            "{engine:?}: no further cancel"
        );
        app.stop().await;
    }
}

// ------------------------------------------------------------------------------------ reading

#[tokio::test]
async fn status_lists_the_latest_executions_newest_first_with_status_user_and_link() {
    let app = pipelines_builder(TestDb::sqlite())
        .await
        .settings(|s| s.pipelines.status_limit = 3)
        .spawn()
        .await;
    let hour = Duration::from_secs(3600);
    let d4 = "01J6STATUS0000000000000004";
    let d3 = "01J6STATUS0000000000000003";
    let d2 = "01J6STATUS0000000000000002";
    let d1 = "01J6STATUS0000000000000001";
    let r1 = "01J6STATUS00000000000000R1";
    add_execution(
        &app.gate,
        "deploy",
        d4,
        4 * hour,
        "SUCCEEDED",
        "alice@example.com",
    );
    add_execution(
        &app.gate,
        "deploy",
        d3,
        3 * hour,
        "CANCELED",
        "alice@example.com",
    );
    add_execution(
        &app.gate,
        "deploy",
        d2,
        2 * hour,
        "TERMINAL",
        "carol@example.com",
    );
    add_execution(
        &app.gate,
        "deploy",
        d1,
        hour,
        "SUCCEEDED",
        "alice@example.com",
    );
    add_execution(
        &app.gate,
        "release",
        r1,
        hour / 2,
        "RUNNING",
        "bob@example.com",
    );

    let text = ephemeral(&app, "status myapp", TRIGGER_USER).await;
    let pos = |id: &str| text.find(&deck_link(id));
    assert!(
        pos(r1).is_some() && pos(d1).is_some() && pos(d2).is_some(),
        "the three newest executions: {text}"
    );
    assert!(
        pos(d3).is_none() && pos(d4).is_none(),
        "only `status_limit` of them: {text}"
    );
    assert!(
        pos(r1) < pos(d1) && pos(d1) < pos(d2),
        "newest first: {text}"
    );
    assert_mentions(
        &text,
        &[
            &format!("<{}|RUNNING>", deck_link(r1)),
            &format!("<{}|SUCCEEDED>", deck_link(d1)),
            &format!("<{}|TERMINAL>", deck_link(d2)),
            "*release*",
            "*deploy*",
            "bob@example.com",
            "carol@example.com",
            "1m 35s",
        ],
        "status myapp",
    );

    let text = ephemeral(&app, "status myapp deploy", TRIGGER_USER).await;
    let pos = |id: &str| text.find(&deck_link(id));
    assert!(pos(r1).is_none(), "only the pipeline asked for: {text}");
    assert!(
        pos(d1) < pos(d2) && pos(d2) < pos(d3) && pos(d1).is_some(),
        "the three newest of deploy, newest first: {text}"
    );
    assert!(pos(d4).is_none(), "{text}");
    assert!(
        text.contains(&format!("<{}|CANCELED>", deck_link(d3))),
        "{text}"
    );

    let text = ephemeral(&app, "status nosuchapp", TRIGGER_USER).await;
    assert_mentions(
        &text,
        &["There is no application *nosuchapp*"],
        "status of an unknown application",
    );
    let text = ephemeral(&app, "status myapp noparams", TRIGGER_USER).await;
    assert_mentions(
        &text,
        &["No executions of *myapp* › *noparams*"],
        "status without executions",
    );
    assert_nothing_triggered(&app, "status");
    app.stop().await;
}

#[tokio::test]
async fn pipelines_lists_the_names_with_their_parameters() {
    let app = pipelines_app(TestDb::sqlite()).await;
    let text = ephemeral(&app, "pipelines myapp", OUTSIDER).await;
    assert_mentions(
        &text,
        &[
            "Pipelines of *myapp*",
            "• *deploy* — parameters: `version`, `env` (1 required)",
            "• *release* — parameters: `env`, `ticket`, `note` (1 required)",
            "• *noparams* — no parameters",
            "• *guarded* — no parameters",
        ],
        "pipelines myapp (reading is open to everyone)",
    );
    let text = ephemeral(&app, "pipelines nosuchapp", TRIGGER_USER).await;
    assert_mentions(
        &text,
        &["There is no application *nosuchapp*"],
        "unknown application",
    );
    let text = ephemeral(&app, "pipelines", TRIGGER_USER).await;
    assert_mentions(
        &text,
        &["Usage: `/spinnaker pipelines &lt;application&gt;`"],
        "no application",
    );
    assert_nothing_triggered(&app, "pipelines");
    app.stop().await;
}

/// `pending`: acknowledged at once with nothing (its permalinks are Web API calls, a job's work);
/// the list arrives through the command's response_url, ephemeral.
async fn pending_answer(app: &TestApp, text: &str, user: &str) -> String {
    let sent = send(app, text, user).await;
    assert_eq!(sent.status, 200);
    assert_eq!(
        sent.body,
        Value::Null,
        "the ack waits for nothing: {}",
        sent.body
    );
    assert!(
        sent.took < Duration::from_millis(1000),
        "acked in {:?}",
        sent.took
    );
    let posts = app
        .slack
        .wait_for_response_url_posts(&sent.response_url, 1, WAIT)
        .await;
    let body = &posts.last().expect("an answer").body;
    assert_eq!(body["response_type"], "ephemeral", "{body}");
    body["text"].as_str().expect("a text").to_string()
}

#[tokio::test]
async fn pending_lists_waiting_judgments_with_links_to_their_approval_messages() {
    for db in TestDb::all("pending_lists_waiting_judgments").await {
        let engine = db.engine;
        let app = pipelines_app(db).await;
        // The permalink lookups are slow: the ack must not wait for them.
        app.slack.set_latency(Duration::from_millis(300));
        let text = pending_answer(&app, "pending", TRIGGER_USER).await;
        assert_mentions(
            &text,
            &["No Manual Judgments are waiting"],
            &format!("{engine:?}: none yet"),
        );

        let exec = add_mj(
            &app.gate,
            "01J6PENDING000000000000001",
            "01J6PENDINGSTAGE0000000001",
        );
        let resp = app
            .echo(&stage_event(
                "orca:stage:starting",
                &exec,
                "01J6PENDINGSTAGE0000000001",
            ))
            .await;
        assert_eq!(resp.status(), 200, "{engine:?}: echo's event accepted");
        let msgs = app.slack.wait_for_messages(CHANNEL, 1, WAIT).await;
        let permalink = format!(
            "https://fake.slack.com/archives/{CHANNEL}/p{}",
            msgs[0].ts.replace('.', "")
        );
        let text = eventually(WAIT, "pending to list the judgment", || async {
            let t = pending_answer(&app, "pending", OUTSIDER).await;
            t.contains(&permalink).then_some(t)
        })
        .await;
        assert_mentions(
            &text,
            &[
                &format!("*myapp* › *{PIPELINE}* — Approve prod"),
                &format!("<{permalink}|open>"),
            ],
            &format!("{engine:?}: the waiting judgment"),
        );
        let text = pending_answer(&app, "pending myapp", TRIGGER_USER).await;
        assert!(
            text.contains(&permalink),
            "{engine:?}: filtered by its application: {text}"
        );
        let text = pending_answer(&app, "pending otherapp", TRIGGER_USER).await;
        assert_mentions(
            &text,
            &["No Manual Judgments are waiting for *otherapp*"],
            &format!("{engine:?}: another application"),
        );
        app.stop().await;
    }
}

// ------------------------------------------------------------------ input that must be refused

#[tokio::test]
async fn a_required_parameter_of_only_spaces_is_refused_in_the_command_and_in_the_form() {
    for db in TestDb::all("blank_required_parameters").await {
        let engine = db.engine;
        let app = pipelines_app(db).await;
        // `ticket` is required without a default, `version` required with one.
        for (text, name) in [
            (r#"start myapp release ticket="   ""#, "ticket"),
            (r#"start myapp deploy env=prod version="  ""#, "version"),
            ("start myapp deploy env=prod version=", "version"),
        ] {
            let t = ephemeral(&app, text, TRIGGER_USER).await;
            assert!(
                t.contains(&format!("`{name}` is required and cannot be blank")),
                "{engine:?}: {text}: {t}"
            );
        }
        assert_nothing_triggered(&app, "blank required values on the command line");

        // The form: a value of spaces is a field error, like an empty one.
        let sent = send(&app, "start myapp release env=prod", TRIGGER_USER).await;
        assert_eq!(sent.status, 200);
        let view = app.slack.views()[0].view.clone();
        let blank = json!({
            "param:env": {"value": {"type": "static_select", "selected_option": {"text": {"type": "plain_text", "text": "prod"}, "value": "prod"}}},
            "param:ticket": {"value": {"type": "plain_text_input", "value": "   "}},
            "param:note": {"value": {"type": "plain_text_input", "value": "from slack"}}
        });
        let ack = submit(&app, &submission(&app, TRIGGER_USER, &view, blank)).await;
        assert_eq!(ack["response_action"], "errors", "{engine:?}: {ack}");
        assert!(
            ack["errors"]["param:ticket"].as_str().is_some(),
            "{engine:?}: the error is on the field: {ack}"
        );
        assert_nothing_triggered(&app, "a blank required field in the form");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_parameter_option_longer_than_150_characters_can_be_chosen_and_reaches_gate_whole() {
    let app = pipelines_app(TestDb::sqlite()).await;
    let long = format!("eu-west-1,{}ap-south-1", "us-east-1,us-west-2,".repeat(9));
    assert!(long.chars().count() > 150);
    app.gate.add_pipeline_config(
        APP,
        json!({"name": "regions", "parameterConfig": [
            {"name": "targets", "label": "Targets", "required": true, "hasOptions": true,
             "options": [{"value": long}, {"value": "eu-west-1"}]}
        ]}),
    );
    let sent = send(&app, "start myapp regions", TRIGGER_USER).await;
    assert_eq!(sent.status, 200);
    let view = app.slack.views()[0].view.clone();
    let element = input_block(&view, "param:targets")["element"].clone();
    let option = element["options"][0].clone();
    assert!(
        option["value"].as_str().unwrap_or_default().chars().count() <= 150,
        "within Block Kit's limit: {option}"
    );
    let values =
        json!({"param:targets": {"value": {"type": "static_select", "selected_option": option}}});
    let ack = submit(&app, &submission(&app, TRIGGER_USER, &view, values)).await;
    assert_eq!(ack["response_action"], "update", "{ack}");
    let triggers = app.gate.triggers();
    assert_eq!(triggers.len(), 1, "one start");
    assert_eq!(
        triggers[0].body["parameters"]["targets"],
        long.as_str(),
        "the exact option reaches Gate"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_cancel_reason_too_long_for_its_confirmation_is_refused_plainly() {
    let app = pipelines_app(TestDb::sqlite()).await;
    let reason = "the canary is failing ".repeat(100);
    let t = ephemeral(
        &app,
        &format!("cancel 01J6STATUS0000000000000001 {reason}"),
        TRIGGER_USER,
    )
    .await;
    assert!(t.contains("The reason is too long"), "{t}");
    assert!(cancel_requests(&app).is_empty(), "nothing canceled");
    app.stop().await;
}

#[tokio::test]
async fn pipelines_of_a_large_application_lists_every_name_whole() {
    let app = pipelines_app(TestDb::sqlite()).await;
    app.gate.add_application("bigapp");
    let names: Vec<String> = (0..60)
        .map(|i| format!("deploy-{i:02}-payments-service-blue-green-canary-region"))
        .collect();
    for n in &names {
        app.gate.add_pipeline_config(
            "bigapp",
            json!({"name": n, "parameterConfig": [
                {"name": "version", "required": true}, {"name": "region"}, {"name": "ticket"}
            ]}),
        );
    }
    let sent = send(&app, "pipelines bigapp", OUTSIDER).await;
    let text = ephemeral_text(&sent);
    for n in &names {
        assert!(
            text.contains(&format!(
                "• *{n}* — parameters: `version`, `region`, `ticket`"
            )),
            "{n} is listed whole: {text}"
        );
    }
    let blocks = sent.body["blocks"].as_array().expect("blocks");
    assert!(
        blocks.len() > 1 && blocks.len() <= 50,
        "{} blocks",
        blocks.len()
    );
    for b in blocks {
        let t = b
            .pointer("/text/text")
            .and_then(Value::as_str)
            .unwrap_or("");
        assert!(t.chars().count() <= 3000, "a section within Slack's limit");
    }
    app.stop().await;
}

// ------------------------------------------------------------------------------------ the ack and exactly once

#[tokio::test]
async fn a_burst_of_starts_in_one_channel_is_acked_at_once_and_each_start_announced_once() {
    let app = pipelines_builder(TestDb::sqlite())
        .await
        .settings(|s| {
            // Slack's own pace for one channel (reference/slack.md: about one message a second).
            s.slack.post_rate_per_channel = 1.0;
            s.slack.post_burst_per_channel = 1;
        })
        .spawn()
        .await;
    app.slack.set_latency(Duration::from_millis(150));
    const BURST: usize = 8;
    let sent = futures::future::join_all(
        (0..BURST).map(|_| send(&app, "start myapp noparams", TRIGGER_USER)),
    )
    .await;
    for (i, s) in sent.iter().enumerate() {
        assert_eq!(s.status, 200, "start {i}");
        assert!(
            s.took < Duration::from_millis(1500),
            "start {i} was acked after {:?}: the ack waited for Slack or our pacing (deadline {SLACK_DEADLINE:?})",
            s.took
        );
    }
    let triggers = app.gate.triggers();
    assert_eq!(triggers.len(), BURST, "one trigger per command");
    // The announcements still come, paced, each exactly once (through the job queue).
    let msgs = app
        .slack
        .wait_for_messages(OPS, BURST, Duration::from_secs(30))
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let started = started_messages(&app);
    assert_eq!(started.len(), BURST, "{msgs:?}");
    for t in &triggers {
        let exec = t.execution_id.clone().expect("started");
        assert_eq!(
            started
                .iter()
                .filter(|m| m.text.contains(&deck_link(&exec)))
                .count(),
            1,
            "execution {exec} announced once"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_start_modal_submitted_twice_starts_the_pipeline_once() {
    for db in TestDb::all("start_modal_submitted_twice").await {
        let engine = db.engine;
        let app = pipelines_app(db).await;
        let sent = send(&app, "start myapp release env=prod", TRIGGER_USER).await;
        assert_eq!(sent.status, 200, "{engine:?}");
        let view = app.slack.views()[0].view.clone();
        let valid = json!({
            "param:env": {"value": {"type": "static_select", "selected_option": {"text": {"type": "plain_text", "text": "prod"}, "value": "prod"}}},
            "param:ticket": {"value": {"type": "plain_text_input", "value": "CHG-1"}},
            "param:note": {"value": {"type": "plain_text_input", "value": "from slack"}}
        });
        let payload = submission(&app, TRIGGER_USER, &view, valid);
        // A double press: the same view, hash and values, twice at once; then a network retry.
        let (a, b) = tokio::join!(submit(&app, &payload), submit(&app, &payload));
        let again = submit(&app, &payload).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let posts: Vec<_> = trigger_attempts(&app);
        assert_eq!(
            posts.len(),
            1,
            "{engine:?}: exactly one POST /pipelines/{{app}}/{{pipeline}}: {posts:?}"
        );
        let updates = [&a, &b]
            .iter()
            .filter(|v| v["response_action"] == "update")
            .count();
        assert_eq!(
            updates, 1,
            "{engine:?}: one answer shows the start: {a} {b}"
        );
        assert_eq!(again, Value::Null, "{engine:?}: the retry does nothing");
        let msgs = app.slack.wait_for_messages(OPS, 1, WAIT).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(started_messages(&app).len(), 1, "{engine:?}: {msgs:?}");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_command_result_shows_hostile_input_as_text() {
    let app = pipelines_builder(TestDb::sqlite()).await.spawn().await;
    for text in [
        "cancel <https://evil.example|Log",
        "cancel x/<!channel>y",
        "status <@U0EVIL>",
    ] {
        let sent = send(&app, text, TRIGGER_USER).await;
        let mut shown = vec![sent.body["text"].as_str().unwrap_or("").to_string()];
        shown.push(sent.body["blocks"].to_string());
        for s in shown {
            for raw in ["<!channel>", "<https://evil.example", "<@U0EVIL>"] {
                assert!(!s.contains(raw), "{text}: raw {raw} in {s}");
            }
        }
    }
    app.stop().await;
}
