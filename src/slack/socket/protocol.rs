//! Socket Mode's wire format: what Slack writes on the WebSocket and what we answer.
//!
//! Slack sends a `hello` when a connection opens, `disconnect` messages before it refreshes or
//! refuses one, and envelopes (`events_api`, `interactive`, `slash_commands`) whose `payload` is
//! the body the app would have been POSTed over HTTP, already parsed as JSON. Every envelope is
//! acknowledged with `{"envelope_id": …}`, carrying `"payload"` only when Slack said it accepts
//! one (reference/slack-socket-mode.md §3–§5, §7). Parsing is forward-compatible: unknown message
//! and envelope types are kept as text so they can be acknowledged and ignored, never an error.
//!
//! Pure functions only: no I/O, no logging of payloads.

use serde::Deserialize;
use serde_json::{Value, json};

/// A message Slack wrote on a Socket Mode connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    Hello(Hello),
    Disconnect(DisconnectReason),
    Envelope(Envelope),
    /// A message type this client does not know; ignored.
    Other(String),
}

/// What `hello` says about the connection (all optional: diagnostics only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hello {
    pub app_id: Option<String>,
    /// Connections open for the app-level token, this one included.
    pub num_connections: Option<u64>,
    /// Seconds until Slack refreshes this connection.
    pub approximate_connection_time: Option<u64>,
}

/// Why Slack sends `disconnect` (reference §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// About 10 s before a refresh; envelopes still come on this connection meanwhile.
    Warning,
    /// Slack sends nothing new on this connection and closes it shortly.
    RefreshRequested,
    /// Socket Mode was switched off in the app's settings.
    LinkDisabled,
    /// More than 10 connections for this app: this one is refused.
    TooManyWebsockets,
    Other(String),
}

impl DisconnectReason {
    fn parse(s: &str) -> Self {
        match s {
            "warning" => Self::Warning,
            "refresh_requested" => Self::RefreshRequested,
            "link_disabled" => Self::LinkDisabled,
            "too_many_websockets" => Self::TooManyWebsockets,
            other => Self::Other(other.to_string()),
        }
    }
    pub fn as_str(&self) -> &str {
        match self {
            Self::Warning => "warning",
            Self::RefreshRequested => "refresh_requested",
            Self::LinkDisabled => "link_disabled",
            Self::TooManyWebsockets => "too_many_websockets",
            Self::Other(s) => s,
        }
    }
    /// A planned refresh: open the replacement first, then let this connection drain.
    pub fn is_refresh(&self) -> bool {
        matches!(self, Self::Warning | Self::RefreshRequested)
    }
}

/// Which body an envelope carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeKind {
    /// An Events API `event_callback`.
    EventsApi,
    /// An interactivity payload (block_actions, view_submission, shortcut, …) as JSON.
    Interactive,
    /// A slash command's form fields as a JSON object of strings.
    SlashCommands,
    Other(String),
}

impl EnvelopeKind {
    fn parse(s: &str) -> Self {
        match s {
            "events_api" => Self::EventsApi,
            "interactive" => Self::Interactive,
            "slash_commands" => Self::SlashCommands,
            other => Self::Other(other.to_string()),
        }
    }
    /// The metric label: one of a closed set.
    pub fn label(&self) -> &'static str {
        match self {
            Self::EventsApi => "events_api",
            Self::Interactive => "interactive",
            Self::SlashCommands => "slash_commands",
            Self::Other(_) => "other",
        }
    }
}

/// One delivery. `envelope_id` identifies the delivery (a redelivery has a new one), not the event.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub envelope_id: String,
    pub kind: EnvelopeKind,
    pub accepts_response_payload: bool,
    /// `events_api` only: 0 on the first delivery, 1..3 on Slack's retries.
    pub retry_attempt: Option<u32>,
    pub retry_reason: Option<String>,
    pub payload: Value,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    envelope_id: Option<String>,
    #[serde(default)]
    accepts_response_payload: bool,
    #[serde(default)]
    retry_attempt: Option<u32>,
    #[serde(default)]
    retry_reason: Option<String>,
    #[serde(default)]
    payload: Value,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    num_connections: Option<u64>,
    #[serde(default)]
    connection_info: Option<Value>,
    #[serde(default)]
    debug_info: Option<Value>,
}

/// Parse one text frame. An error is a frame that is not a JSON object with a `type`, or an
/// envelope without its id (which could not be acknowledged anyway).
pub fn parse(text: &str) -> Result<Inbound, String> {
    let raw: Raw =
        serde_json::from_str(text).map_err(|e| format!("not a Socket Mode message: {e}"))?;
    Ok(match raw.kind.as_str() {
        "hello" => Inbound::Hello(Hello {
            app_id: raw
                .connection_info
                .as_ref()
                .and_then(|c| c.get("app_id"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            num_connections: raw.num_connections,
            approximate_connection_time: raw
                .debug_info
                .as_ref()
                .and_then(|d| d.get("approximate_connection_time"))
                .and_then(Value::as_u64),
        }),
        "disconnect" => {
            Inbound::Disconnect(DisconnectReason::parse(raw.reason.as_deref().unwrap_or("")))
        }
        "" => return Err("a message without a type".into()),
        kind => match raw.envelope_id {
            Some(envelope_id) if !envelope_id.is_empty() => Inbound::Envelope(Envelope {
                envelope_id,
                kind: EnvelopeKind::parse(kind),
                accepts_response_payload: raw.accepts_response_payload,
                retry_attempt: raw.retry_attempt,
                retry_reason: raw.retry_reason.filter(|r| !r.is_empty()),
                payload: raw.payload,
            }),
            _ if matches!(kind, "events_api" | "interactive" | "slash_commands") => {
                return Err(format!("a {kind} envelope without an envelope_id"));
            }
            _ => Inbound::Other(kind.to_string()),
        },
    })
}

/// The acknowledgment of an envelope: `{"envelope_id": …}` plus `"payload"` when there is one.
pub fn ack(envelope_id: &str, payload: Option<&Value>) -> String {
    match payload {
        Some(p) => json!({"envelope_id": envelope_id, "payload": p}).to_string(),
        None => json!({"envelope_id": envelope_id}).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_as_documented_parses() {
        let m = parse(r#"{"type":"hello","connection_info":{"app_id":"A1234"},"num_connections":1,
            "debug_info":{"host":"applink-1","started":"2020-10-11 12:12:12.120","build_number":54,"approximate_connection_time":3600}}"#)
            .unwrap();
        assert_eq!(
            m,
            Inbound::Hello(Hello {
                app_id: Some("A1234".into()),
                num_connections: Some(1),
                approximate_connection_time: Some(3600)
            })
        );
    }

    #[test]
    fn disconnect_reasons_are_told_apart() {
        let reason =
            |r: &str| {
                match parse(&format!(
            r#"{{"type":"disconnect","reason":"{r}","debug_info":{{"host":"wss-111.slack.com"}}}}"#
        ))
        .unwrap()
        {
            Inbound::Disconnect(d) => d,
            other => panic!("{other:?}"),
        }
            };
        assert_eq!(reason("warning"), DisconnectReason::Warning);
        assert!(reason("warning").is_refresh());
        assert_eq!(
            reason("refresh_requested"),
            DisconnectReason::RefreshRequested
        );
        assert_eq!(
            reason("too_many_websockets"),
            DisconnectReason::TooManyWebsockets
        );
        assert!(!reason("too_many_websockets").is_refresh());
        assert_eq!(reason("link_disabled"), DisconnectReason::LinkDisabled);
        assert_eq!(reason("brand_new").as_str(), "brand_new");
    }

    #[test]
    fn the_documented_slash_command_envelope_parses() {
        let m = parse(r#"{"envelope_id":"dbdd0ef3-1543-4f94-bfb4-133d0e6c1545","type":"slash_commands","accepts_response_payload":true,
 "payload":{"token":"x","team_id":"T1","team_domain":"d","channel_id":"C1","channel_name":"general","user_id":"U1",
            "user_name":"u","command":"/randorilke","text":"","response_url":"https://hooks.slack.com/x","trigger_id":"1.2.3"}}"#).unwrap();
        let Inbound::Envelope(e) = m else {
            panic!("not an envelope")
        };
        assert_eq!(e.envelope_id, "dbdd0ef3-1543-4f94-bfb4-133d0e6c1545");
        assert_eq!(e.kind, EnvelopeKind::SlashCommands);
        assert!(e.accepts_response_payload);
        assert_eq!(e.payload["command"], "/randorilke");
        assert_eq!(e.retry_attempt, None);
    }

    #[test]
    fn event_redeliveries_carry_their_attempt() {
        let m = parse(r#"{"envelope_id":"e2","type":"events_api","accepts_response_payload":false,"retry_attempt":1,"retry_reason":"timeout",
            "payload":{"type":"event_callback","event_id":"Ev1","event":{"type":"reaction_added"}}}"#).unwrap();
        let Inbound::Envelope(e) = m else {
            panic!("not an envelope")
        };
        assert_eq!(e.kind.label(), "events_api");
        assert_eq!(e.retry_attempt, Some(1));
        assert_eq!(e.retry_reason.as_deref(), Some("timeout"));
        assert!(!e.accepts_response_payload);
    }

    #[test]
    fn unknown_types_are_kept_and_broken_frames_are_errors() {
        assert_eq!(
            parse(r#"{"type":"something_new"}"#).unwrap(),
            Inbound::Other("something_new".into())
        );
        let Inbound::Envelope(e) = parse(r#"{"type":"future_kind","envelope_id":"e9"}"#).unwrap()
        else {
            panic!("an unknown envelope type is still an envelope to acknowledge")
        };
        assert_eq!(e.kind.label(), "other");
        assert!(parse("not json").is_err());
        assert!(parse(r#"{"envelope_id":"x"}"#).is_err());
        assert!(parse(r#"{"type":"interactive","payload":{}}"#).is_err());
    }

    #[test]
    fn acks_carry_the_id_and_a_payload_only_when_given() {
        let bare: Value = serde_json::from_str(&ack("e1", None)).unwrap();
        assert_eq!(bare, json!({"envelope_id": "e1"}));
        let with: Value =
            serde_json::from_str(&ack("e1", Some(&json!({"response_action": "clear"})))).unwrap();
        assert_eq!(
            with,
            json!({"envelope_id": "e1", "payload": {"response_action": "clear"}})
        );
    }
}
