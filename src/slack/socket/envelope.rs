//! One envelope through the shared dispatcher, and the acknowledgment it earns.
//!
//! The payload is parsed into the same shapes as an HTTP body ([`crate::slack::payload`]) and
//! handed to [`crate::slack::dispatch`]; the [`Ack`] that comes back becomes the envelope's
//! `payload` when Slack said it accepts one. A message Slack would not take in the ack goes to the
//! interaction's `response_url`, as over HTTP. An event whose handler failed is not acknowledged,
//! so Slack delivers it again: the Socket Mode form of answering 500.
//!
//! Never logs a payload.

use serde_json::Value;
use tracing::{debug, warn};

use super::protocol::{Envelope, EnvelopeKind};
use crate::slack::ack::Ack;
use crate::slack::dispatch::{self, EventAnswer};
use crate::slack::payload::{EventEnvelope, Interaction, SlashCommand};
use crate::state::AppState;

/// What to write back for an envelope.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `{"envelope_id"}` with this payload, if any.
    Ack(Option<Value>),
    /// Nothing: Slack redelivers an unacknowledged event.
    NoAck,
}

/// Dispatch one envelope and decide its acknowledgment. Bounded by the ack deadline.
pub async fn answer(state: &AppState, envelope: Envelope) -> Answer {
    let accepts = envelope.accepts_response_payload;
    match envelope.kind {
        EnvelopeKind::EventsApi => event(state, envelope.payload, envelope.retry_attempt).await,
        EnvelopeKind::Interactive => {
            match serde_json::from_value::<Interaction>(envelope.payload) {
                Ok(i) => {
                    let response_url = i.response_url.clone();
                    let ack = dispatch::interaction(state, i).await;
                    Answer::Ack(payload(state, ack, accepts, response_url))
                }
                Err(e) => malformed("interactive", &e),
            }
        }
        EnvelopeKind::SlashCommands => {
            match serde_json::from_value::<SlashCommand>(envelope.payload) {
                Ok(cmd) => {
                    let response_url = cmd.response_url.clone();
                    let ack = dispatch::command(state, cmd).await;
                    Answer::Ack(payload(state, ack, accepts, response_url))
                }
                Err(e) => malformed("slash_commands", &e),
            }
        }
        EnvelopeKind::Other(kind) => {
            debug!(envelope_type = %kind, "unknown envelope type; acknowledged and ignored");
            Answer::Ack(None)
        }
    }
}

async fn event(state: &AppState, payload: Value, retry: Option<u32>) -> Answer {
    let envelope = match serde_json::from_value::<EventEnvelope>(payload) {
        Ok(e) => e,
        Err(e) => return malformed("events_api", &e),
    };
    match dispatch::event(state, envelope, retry.filter(|n| *n > 0)).await {
        // The events_api ack carries no payload (a challenge only exists over HTTP).
        EventAnswer::Ack(_) => Answer::Ack(None),
        EventAnswer::Failed | EventAnswer::Unavailable => Answer::NoAck,
    }
}

/// A payload that cannot be parsed will not parse on a redelivery either: acknowledge it.
fn malformed(kind: &str, e: &serde_json::Error) -> Answer {
    warn!(envelope_type = kind, error = %e, "malformed envelope payload; acknowledged and ignored");
    Answer::Ack(None)
}

/// The ack's body as the envelope's payload, when Slack accepts one. Otherwise a message goes
/// to `response_url` (as a block action's reply does over HTTP) and anything else is dropped.
fn payload(
    state: &AppState,
    ack: Ack,
    accepts: bool,
    response_url: Option<String>,
) -> Option<Value> {
    if accepts {
        return ack.body();
    }
    match (ack, response_url) {
        (Ack::Empty, _) => None,
        (Ack::Message(reply), Some(url)) => {
            dispatch::reply_through_response_url(state, url, reply);
            None
        }
        (other, _) => {
            debug!(ack = ?std::mem::discriminant(&other), "this envelope accepts no response payload; the ack's body is dropped");
            None
        }
    }
}
