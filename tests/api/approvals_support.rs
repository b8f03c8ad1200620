//! Fixtures for approvals tests: a service configured with a route and approvers, echo events
//! shaped like orca's (reference/spinnaker.md §3a), and Slack click payloads like Slack's
//! block_actions (reference/slack.md §2.2).

use serde_json::{Value, json};
use slackops::config::{ApprovalRoute, ApproverRule};

use crate::helpers::{TestApp, TestAppBuilder, TestDb};
use crate::support::fake_gate::FakeGate;

pub const APP: &str = "myapp";
pub const PIPELINE: &str = "deploy-prod";
pub const CHANNEL: &str = "C0APPROVE";
pub const NOTIFY_CHANNEL: &str = "C0NOTIFY";
pub const DEFAULT_CHANNEL: &str = "C0DEFAULT";
/// An approver (in the fake Slack as bob@example.com).
pub const APPROVER: &str = "U0BOB";
pub const APPROVER_EMAIL: &str = "bob@example.com";
/// A second approver.
pub const APPROVER2: &str = "U0CAROL";
/// Who triggers executions (alice@example.com in the fake Gate's fixture); also an approver.
pub const TRIGGER_USER: &str = "U0ALICE";
pub const TRIGGER_EMAIL: &str = "alice@example.com";
/// Not an approver.
pub const OUTSIDER: &str = "U0MALLORY";
/// A user group of release managers (contains CAROL only).
pub const RELEASE_GROUP: &str = "S0RELEASE";

/// A builder with routes, approvers and the people above in the fake Slack.
pub async fn approvals_builder(db: TestDb) -> TestAppBuilder {
    let b = TestAppBuilder::new(db).await.settings(|s| {
        s.approvals.default_channel = Some(DEFAULT_CHANNEL.into());
        s.approvals.routes = vec![ApprovalRoute {
            application: APP.into(),
            pipeline: None,
            channel: CHANNEL.into(),
            notify_channels: vec![NOTIFY_CHANNEL.into()],
        }];
        s.approvals.approvers = vec![ApproverRule {
            application: APP.into(),
            users: vec![APPROVER.into(), APPROVER2.into(), TRIGGER_USER.into()],
            ..Default::default()
        }];
        s.approvals.role_groups = [(
            "release-managers".to_string(),
            vec!["release-managers".to_string()],
        )]
        .into_iter()
        .collect();
        s.approvals.outcome_wait_secs = 3;
        // Fast retries in tests.
        s.slack.post_rate_per_channel = 1000.0;
        s.slack.post_burst_per_channel = 1000;
    });
    let slack = &b.slack;
    for (id, name) in [
        (CHANNEL, "approvals"),
        (NOTIFY_CHANNEL, "deploys"),
        (DEFAULT_CHANNEL, "ops"),
        ("C0OPS", "ops-cmd"),
    ] {
        slack.add_channel(id, name);
    }
    slack.add_user(APPROVER, "bob", APPROVER_EMAIL, "Europe/Paris");
    slack.add_user(APPROVER2, "carol", "carol@example.com", "UTC");
    slack.add_user(TRIGGER_USER, "alice", TRIGGER_EMAIL, "UTC");
    slack.add_user(OUTSIDER, "mallory", "mallory@example.com", "UTC");
    slack.add_usergroup(RELEASE_GROUP, "release-managers", &[APPROVER2]);
    b
}

pub async fn approvals_app(db: TestDb) -> TestApp {
    approvals_builder(db).await.spawn().await
}

/// Add a running Manual Judgment execution to the fake Gate; returns it.
pub fn add_mj(gate: &FakeGate, exec_id: &str, stage_id: &str) -> Value {
    let exec = FakeGate::mj_execution(APP, PIPELINE, exec_id, stage_id);
    gate.add_execution(exec.clone());
    gate.execution(exec_id)
}

/// echo's event for a stage of an execution (`kind` such as `orca:stage:starting`), with the full
/// execution included as orca's `includeFullExecution` does.
pub fn stage_event(kind: &str, execution: &Value, stage_id: &str) -> Value {
    let stage = execution["stages"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["id"] == stage_id))
        .cloned()
        .unwrap_or(Value::Null);
    json!({
        "details": {"source": "orca", "type": kind, "created": "1724312345678", "application": execution["application"], "requestHeaders": {}},
        "content": {
            "standalone": false, "canceled": false,
            "executionId": execution["id"], "stageId": stage_id, "isSynthetic": false,
            "name": stage["name"], "startTime": stage["startTime"], "endTime": stage["endTime"],
            "context": stage["context"],
            "execution": execution
        },
        "eventId": uuid::Uuid::new_v4().to_string()
    })
}

/// echo's pipeline-level event.
pub fn pipeline_event(kind: &str, execution: &Value) -> Value {
    json!({
        "details": {"source": "orca", "type": kind, "application": execution["application"]},
        "content": {"executionId": execution["id"], "execution": execution},
        "eventId": uuid::Uuid::new_v4().to_string()
    })
}

/// The judgment id carried by the buttons of the message at (channel, ts).
pub fn judgment_id_of(message_blocks: &Value) -> Option<String> {
    message_blocks
        .as_array()?
        .iter()
        .filter(|b| b["type"] == "actions")
        .find_map(|b| {
            b["elements"]
                .as_array()?
                .iter()
                .find(|e| e["action_id"] == "approvals:approve")
                .and_then(|e| e["value"].as_str().map(str::to_owned))
        })
}

/// A block_actions payload for a click on a judgment message, as Slack sends it.
/// `input` is the judgment input selected in the message's select, if any.
pub fn click_payload(
    app: &TestApp,
    user: &str,
    action_id: &str,
    judgment_id: &str,
    channel: &str,
    message_ts: &str,
    input: Option<&str>,
) -> Value {
    let mut state = json!({"values": {}});
    if let Some(i) = input {
        state["values"]["approvals_decide"]["approvals:input"] = json!({"type": "static_select", "selected_option": {"text": {"type": "plain_text", "text": i}, "value": i}});
    }
    json!({
        "type": "block_actions",
        "user": {"id": user, "username": user.to_lowercase(), "name": user.to_lowercase(), "team_id": "T0FAKE"},
        "api_app_id": "A0APP",
        "token": "legacy",
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": false},
        "trigger_id": app.slack.trigger_id(),
        "team": {"id": "T0FAKE", "domain": "fake"},
        "channel": {"id": channel, "name": "approvals"},
        "message": {"type": "message", "ts": message_ts, "text": "Manual Judgment"},
        "state": state,
        "response_url": app.slack.response_url_for_message(channel, message_ts),
        "actions": [{"action_id": action_id, "block_id": "approvals_decide", "type": "button",
                     "value": judgment_id, "action_ts": crate::helpers::action_ts()}]
    })
}
