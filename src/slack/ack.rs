//! The typed acknowledgment a handler returns, and how each becomes Slack's HTTP answer.
//!
//! Slack accepts different bodies per request type (reference/slack.md §2): commands and actions
//! take an empty body or a message; a `view_submission` takes an empty body or a
//! `response_action` (anything else breaks the modal). Handlers return an [`Ack`] and the layer
//! renders it, so a feature cannot send the wrong shape. The same body becomes the HTTP answer or
//! the `payload` of a Socket Mode ack (reference/slack-socket-mode.md §5).

use std::future::Future;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::mrkdwn::Mrkdwn;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ResponseType {
    /// Only the user who acted sees it.
    #[default]
    Ephemeral,
    /// Everyone in the channel sees it.
    InChannel,
}

/// A message reply (to a command or an action, or later through `response_url`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Reply {
    pub response_type: ResponseType,
    /// mrkdwn, as in every message.
    pub text: Mrkdwn,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocks: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replace_original: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_original: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_ts: Option<String>,
}

impl Reply {
    pub fn ephemeral(text: impl Into<Mrkdwn>) -> Self {
        Self {
            text: text.into(),
            ..Default::default()
        }
    }
    pub fn in_channel(text: impl Into<Mrkdwn>) -> Self {
        Self {
            response_type: ResponseType::InChannel,
            text: text.into(),
            ..Default::default()
        }
    }
    pub fn blocks(mut self, blocks: Value) -> Self {
        self.blocks = Some(blocks);
        self
    }
    pub fn replace_original(mut self) -> Self {
        self.replace_original = Some(true);
        self
    }
}

/// What a handler answers Slack with.
#[derive(Debug, Clone, Default)]
pub enum Ack {
    /// 200 with no body.
    #[default]
    Empty,
    /// A message: ephemeral or in channel.
    Message(Reply),
    /// Field errors in a modal: block_id → message.
    ViewErrors(Vec<(String, String)>),
    /// Replace the submitted modal.
    ViewUpdate(Value),
    /// Push a new modal onto the stack.
    ViewPush(Value),
    /// Close every modal of the stack.
    ViewClear,
    /// The options of an external select (`block_suggestion`).
    Options(Vec<Value>),
}

impl Ack {
    pub fn ephemeral(text: impl Into<Mrkdwn>) -> Self {
        Ack::Message(Reply::ephemeral(text))
    }
    pub fn view_error(block_id: impl Into<String>, message: impl Into<String>) -> Self {
        Ack::ViewErrors(vec![(block_id.into(), message.into())])
    }
    /// The JSON body, or `None` for an empty 200.
    pub fn body(&self) -> Option<Value> {
        match self {
            Ack::Empty => None,
            Ack::Message(r) => serde_json::to_value(r).ok(),
            Ack::ViewErrors(errors) => {
                let map: serde_json::Map<String, Value> = errors
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                Some(json!({"response_action": "errors", "errors": map}))
            }
            Ack::ViewUpdate(view) => Some(json!({"response_action": "update", "view": view})),
            Ack::ViewPush(view) => Some(json!({"response_action": "push", "view": view})),
            Ack::ViewClear => Some(json!({"response_action": "clear"})),
            Ack::Options(options) => Some(json!({"options": options})),
        }
    }
}

impl IntoResponse for Ack {
    fn into_response(self) -> Response {
        match self.body() {
            None => StatusCode::OK.into_response(),
            Some(v) => (StatusCode::OK, Json(v)).into_response(),
        }
    }
}

tokio::task_local! {
    /// Set while a Slack handler runs: its ack may still be pending.
    static BEFORE_ACK: ();
}

/// Run a Slack handler (command, interaction, event) as one whose ack may still be pending. The
/// Web API client refuses, inside it, every call that posts, updates or looks up something that
/// could wait for a job ([`allowed_before_ack`]): Slack's 3 s must never be spent on our own
/// channel pacing or a Web API round trip. Work a handler starts with `tokio::spawn` or through
/// the job queue runs outside this scope.
pub async fn before_ack<F: Future>(handler: F) -> F::Output {
    BEFORE_ACK.scope((), handler).await
}

/// True inside [`before_ack`].
pub fn is_before_ack() -> bool {
    BEFORE_ACK.try_with(|_| ()).is_ok()
}

/// Web API methods a handler may call before its ack: the modal calls bound to a `trigger_id`
/// (it expires 3 s after the request, so they cannot wait for a job) and the reads that decide
/// who may act. Everything else (posting, updating, permalinks, joining, DMs) is a job's work.
pub fn allowed_before_ack(method: &str) -> bool {
    matches!(
        method,
        "views.open"
            | "views.push"
            | "views.update"
            | "users.info"
            | "users.lookupByEmail"
            | "usergroups.list"
            | "usergroups.users.list"
            | "auth.test"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_errors_render_as_response_action() {
        let b = Ack::view_error("summary", "required").body().unwrap();
        assert_eq!(
            b,
            json!({"response_action":"errors","errors":{"summary":"required"}})
        );
    }

    #[tokio::test]
    async fn only_a_handler_runs_before_its_ack() {
        assert!(!is_before_ack());
        assert!(before_ack(async { is_before_ack() }).await);
        // Work a handler hands to a task of its own is no longer holding the ack.
        let spawned = before_ack(async { tokio::spawn(async { is_before_ack() }).await.unwrap() });
        assert!(!spawned.await);
        assert!(allowed_before_ack("views.open"));
        assert!(!allowed_before_ack("chat.postMessage"));
        assert!(!allowed_before_ack("chat.getPermalink"));
    }

    #[test]
    fn replies_default_to_ephemeral() {
        let b = Ack::ephemeral("hi").body().unwrap();
        assert_eq!(b["response_type"], "ephemeral");
        assert_eq!(b["text"], "hi");
        assert!(b.get("blocks").is_none());
        assert!(Ack::Empty.body().is_none());
    }
}
