//! What Slack sends, parsed only after verification.
//!
//! These are our own forward-compatible shapes rather than slack-morphism's event types, which
//! reject unknown interaction types and drop slash-command fields (reference/slack.md §2, §5).
//! Every struct ignores unknown fields, every "type" is a free string, and handlers that need more
//! can read the raw JSON kept beside the typed view.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

/// A slash command (form-encoded).
#[derive(Debug, Clone, Deserialize, Default)]
pub struct SlashCommand {
    pub command: String,
    #[serde(default)]
    pub text: String,
    pub user_id: String,
    #[serde(default)]
    pub user_name: Option<String>,
    #[serde(default)]
    pub team_id: Option<String>,
    #[serde(default)]
    pub team_domain: Option<String>,
    #[serde(default)]
    pub enterprise_id: Option<String>,
    #[serde(default)]
    pub channel_id: Option<String>,
    #[serde(default)]
    pub channel_name: Option<String>,
    #[serde(default)]
    pub api_app_id: Option<String>,
    #[serde(default)]
    pub response_url: Option<String>,
    #[serde(default)]
    pub trigger_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct UserRef {
    pub id: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub team_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct TeamRef {
    pub id: String,
    #[serde(default)]
    pub domain: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct ChannelRef {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct Container {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub message_ts: Option<String>,
    #[serde(default)]
    pub channel_id: Option<String>,
    #[serde(default)]
    pub thread_ts: Option<String>,
    #[serde(default)]
    pub is_ephemeral: Option<bool>,
    #[serde(default)]
    pub view_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct SelectedOption {
    pub value: String,
    #[serde(default)]
    pub text: Option<Value>,
}

/// One element interaction in a `block_actions` payload.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct Action {
    pub action_id: String,
    #[serde(default)]
    pub block_id: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub selected_option: Option<SelectedOption>,
    #[serde(default)]
    pub action_ts: Option<String>,
}

/// A modal as submitted or closed.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct View {
    pub id: String,
    #[serde(default)]
    pub callback_id: String,
    #[serde(default)]
    pub private_metadata: String,
    #[serde(default)]
    pub hash: Option<String>,
    #[serde(default)]
    pub root_view_id: Option<String>,
    #[serde(default)]
    pub previous_view_id: Option<String>,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub app_installed_team_id: Option<String>,
    /// `state.values`: block_id → action_id → element state.
    #[serde(default)]
    pub state: ViewState,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct ViewState {
    #[serde(default)]
    pub values: HashMap<String, HashMap<String, Value>>,
}

impl View {
    /// The submitted value of one input: text inputs' `value`, selects' `selected_option.value`,
    /// user/channel/date/time pickers' selection.
    pub fn input(&self, block_id: &str, action_id: &str) -> Option<String> {
        let el = self.state.values.get(block_id)?.get(action_id)?;
        let pick = |k: &str| el.get(k).and_then(Value::as_str).map(str::to_owned);
        pick("value")
            .or_else(|| {
                el.get("selected_option")
                    .and_then(|o| o.get("value"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .or_else(|| pick("selected_user"))
            .or_else(|| pick("selected_channel"))
            .or_else(|| pick("selected_conversation"))
            .or_else(|| pick("selected_date"))
            .or_else(|| pick("selected_time"))
            .or_else(|| {
                el.get("selected_date_time")
                    .and_then(Value::as_i64)
                    .map(|v| v.to_string())
            })
    }

    /// Multi-selects and checkboxes: the selected values.
    pub fn inputs(&self, block_id: &str, action_id: &str) -> Vec<String> {
        let Some(el) = self
            .state
            .values
            .get(block_id)
            .and_then(|b| b.get(action_id))
        else {
            return Vec::new();
        };
        if let Some(opts) = el.get("selected_options").and_then(Value::as_array) {
            return opts
                .iter()
                .filter_map(|o| o.get("value").and_then(Value::as_str).map(str::to_owned))
                .collect();
        }
        for k in [
            "selected_users",
            "selected_channels",
            "selected_conversations",
        ] {
            if let Some(a) = el.get(k).and_then(Value::as_array) {
                return a
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect();
            }
        }
        Vec::new()
    }
}

/// Any interactivity payload (`payload=` form field): block_actions, view_submission, view_closed,
/// shortcut, message_action, and types Slack adds later.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct Interaction {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub user: UserRef,
    #[serde(default)]
    pub team: Option<TeamRef>,
    #[serde(default)]
    pub api_app_id: Option<String>,
    #[serde(default)]
    pub trigger_id: Option<String>,
    #[serde(default)]
    pub response_url: Option<String>,
    #[serde(default)]
    pub channel: Option<ChannelRef>,
    #[serde(default)]
    pub container: Option<Container>,
    /// The message the action came from (absent for ephemeral messages and modals).
    #[serde(default)]
    pub message: Option<Value>,
    #[serde(default)]
    pub actions: Vec<Action>,
    #[serde(default)]
    pub view: Option<View>,
    /// Shortcuts and message actions.
    #[serde(default)]
    pub callback_id: Option<String>,
    #[serde(default)]
    pub is_cleared: Option<bool>,
    /// Values of stateful elements (selects, inputs) in the message the action came from.
    #[serde(default)]
    pub state: Option<ViewState>,
}

impl Interaction {
    /// The selected value of a stateful element in the message (for example a select the user
    /// set before pressing a button).
    pub fn message_value(&self, block_id: &str, action_id: &str) -> Option<String> {
        let el = self.state.as_ref()?.values.get(block_id)?.get(action_id)?;
        el.get("selected_option")
            .and_then(|o| o.get("value"))
            .or_else(|| el.get("value"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    pub fn team_id(&self) -> Option<&str> {
        self.team
            .as_ref()
            .map(|t| t.id.as_str())
            .or(self.user.team_id.as_deref())
    }
    /// The channel of the message an action came from.
    pub fn channel_id(&self) -> Option<&str> {
        self.channel.as_ref().map(|c| c.id.as_str()).or_else(|| {
            self.container
                .as_ref()
                .and_then(|c| c.channel_id.as_deref())
        })
    }
    /// The `ts` of the message an action came from.
    pub fn message_ts(&self) -> Option<&str> {
        self.container
            .as_ref()
            .and_then(|c| c.message_ts.as_deref())
            .or_else(|| {
                self.message
                    .as_ref()
                    .and_then(|m| m.get("ts"))
                    .and_then(Value::as_str)
            })
    }
}

/// An Events API delivery (JSON body).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type")]
pub enum EventEnvelope {
    #[serde(rename = "url_verification")]
    UrlVerification { challenge: String },
    #[serde(rename = "event_callback")]
    EventCallback(EventCallback),
    #[serde(rename = "app_rate_limited")]
    AppRateLimited {
        #[serde(default)]
        team_id: Option<String>,
        #[serde(default)]
        minute_rate_limited: Option<i64>,
    },
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventCallback {
    pub event_id: String,
    #[serde(default)]
    pub team_id: Option<String>,
    #[serde(default)]
    pub api_app_id: Option<String>,
    #[serde(default)]
    pub event_time: Option<i64>,
    pub event: Arc<Value>,
}

impl EventCallback {
    /// `event.type`, e.g. `reaction_added`.
    pub fn event_type(&self) -> &str {
        self.event.get("type").and_then(Value::as_str).unwrap_or("")
    }
    pub fn user(&self) -> Option<&str> {
        self.event.get("user").and_then(Value::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bolt_block_actions_fixture_parses() {
        let body = r#"{"type":"block_actions","user":{"id":"W111","username":"primary-owner","name":"primary-owner","team_id":"T111"},
 "api_app_id":"A111","token":"verification_token",
 "container":{"type":"message","message_ts":"111.222","channel_id":"C111","is_ephemeral":true},
 "trigger_id":"111.222.valid",
 "team":{"id":"T111","domain":"workspace-domain","enterprise_id":"E111","enterprise_name":"Sandbox Org"},
 "channel":{"id":"C111","name":"test-channel"},
 "response_url":"https://hooks.slack.com/actions/T111/111/random-value",
 "actions":[{"action_id":"a","block_id":"b","text":{"type":"plain_text","text":"Button","emoji":true},
             "value":"click_me_123","type":"button","action_ts":"1596530385.194939"}]}"#;
        let i: Interaction = serde_json::from_str(body).unwrap();
        assert_eq!(i.kind, "block_actions");
        assert_eq!(i.user.id, "W111");
        assert_eq!(i.team_id(), Some("T111"));
        assert_eq!(i.channel_id(), Some("C111"));
        assert_eq!(i.message_ts(), Some("111.222"));
        assert_eq!(i.actions[0].value.as_deref(), Some("click_me_123"));
    }

    #[test]
    fn unknown_interaction_types_and_fields_parse() {
        let i: Interaction =
            serde_json::from_str(r#"{"type":"something_new","user":{"id":"U1"},"extra":{"a":1}}"#)
                .unwrap();
        assert_eq!(i.kind, "something_new");
    }

    #[test]
    fn view_inputs_cover_text_select_and_pickers() {
        let v: View = serde_json::from_value(serde_json::json!({
            "id": "V1", "callback_id": "cb",
            "state": {"values": {
                "b1": {"a1": {"type": "plain_text_input", "value": "hello"}},
                "b2": {"a2": {"type": "static_select", "selected_option": {"value": "x"}}},
                "b3": {"a3": {"type": "users_select", "selected_user": "U9"}},
                "b4": {"a4": {"type": "multi_static_select", "selected_options": [{"value": "p"}, {"value": "q"}]}}
            }}
        }))
        .unwrap();
        assert_eq!(v.input("b1", "a1").as_deref(), Some("hello"));
        assert_eq!(v.input("b2", "a2").as_deref(), Some("x"));
        assert_eq!(v.input("b3", "a3").as_deref(), Some("U9"));
        assert_eq!(v.inputs("b4", "a4"), vec!["p", "q"]);
        assert_eq!(v.input("nope", "a1"), None);
    }

    #[test]
    fn envelopes_parse_including_unknown_types() {
        let e: EventEnvelope =
            serde_json::from_str(r#"{"type":"url_verification","challenge":"abc","token":"t"}"#)
                .unwrap();
        assert!(matches!(e, EventEnvelope::UrlVerification { challenge } if challenge == "abc"));
        let e: EventEnvelope = serde_json::from_str(r#"{"type":"brand_new","x":1}"#).unwrap();
        assert!(matches!(e, EventEnvelope::Unknown));
        let e: EventEnvelope = serde_json::from_str(
            r#"{"type":"event_callback","event_id":"Ev1","team_id":"T1","event":{"type":"app_mention","user":"U1"}}"#,
        )
        .unwrap();
        match e {
            EventEnvelope::EventCallback(cb) => {
                assert_eq!(cb.event_type(), "app_mention");
                assert_eq!(cb.user(), Some("U1"));
            }
            _ => panic!("not an event callback"),
        }
    }
}
