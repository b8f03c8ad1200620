//! `POST /slack/commands`, `/slack/interactions`, `/slack/events`: Slack's HTTP transport.
//!
//! Order matters and is the same for all three: refuse an oversized body (413) before reading it
//! all, verify the signature on the raw bytes (401), and only then parse and hand the request to
//! [`dispatch`], which the Socket Mode transport shares; the ack it returns becomes the HTTP
//! answer. These handlers never dispatch anything themselves, and never parse an unverified body
//! (except Slack's `ssl_check` flag, which dispatches nothing either way). In Socket Mode the
//! routes are not mounted at all.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::warn;

use super::dispatch::{self, EventAnswer};
use super::payload::{EventEnvelope, Interaction, SlashCommand};
use crate::state::AppState;

/// The refusal reason counted for a body over `slack.max_body_bytes`.
pub const TOO_LARGE: &str = "too_large";

/// Refusals before dispatch.
#[derive(Debug)]
pub enum Refusal {
    TooLarge(usize),
    Unverified(super::verify::VerifyError),
    Malformed(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::TooLarge(cap) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                Json(json!({"error": "payload_too_large", "message": format!("request bodies are limited to {cap} bytes")})),
            )
                .into_response(),
            Refusal::Unverified(e) => (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "invalid_request", "message": e.to_string()})),
            )
                .into_response(),
            Refusal::Malformed(m) => (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "malformed_payload", "message": m})),
            )
                .into_response(),
        }
    }
}

/// Read at most `cap` bytes; a declared or actual larger body is refused without hashing it.
pub async fn read_capped(headers: &HeaderMap, body: Body, cap: usize) -> Result<Bytes, Refusal> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > cap) {
        return Err(Refusal::TooLarge(cap));
    }
    axum::body::to_bytes(body, cap)
        .await
        .map_err(|_| Refusal::TooLarge(cap))
}

/// Whether an endpoint receives Slack's `ssl_check` (commands and interactions do; events never).
#[derive(Clone, Copy, PartialEq, Eq)]
enum SslCheck {
    Possible,
    Never,
}

/// Body limit, then signature. `Ok(None)` for Slack's `ssl_check`, which must get a bare 200.
async fn verified(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    ssl: SslCheck,
) -> Result<Option<Bytes>, Refusal> {
    let is_ssl = |bytes: &[u8]| ssl == SslCheck::Possible && is_ssl_check(headers, bytes);
    let cap = state.settings().slack.max_body_bytes;
    let bytes = match read_capped(headers, body, cap).await {
        Ok(b) => b,
        Err(e) => {
            state.metrics().signature_failure(TOO_LARGE);
            return Err(e);
        }
    };
    if let Err(e) = state.verifier().verify(headers, &bytes) {
        // Slack's certificate check may come unsigned; it gets a 200 and nothing else happens.
        if is_ssl(&bytes) {
            return Ok(None);
        }
        state.metrics().signature_failure(e.reason());
        warn!(
            reason = e.reason(),
            "refused a Slack request that failed verification"
        );
        return Err(Refusal::Unverified(e));
    }
    if is_ssl(&bytes) {
        return Ok(None);
    }
    Ok(Some(bytes))
}

/// Slack's certificate check: a form body whose decoded `ssl_check` field is `1`. Decoding a form
/// is safe before verification because nothing is dispatched either way.
fn is_ssl_check(headers: &HeaderMap, body: &[u8]) -> bool {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    form && form_field(body, "ssl_check").as_deref() == Some("1")
}

/// The verified body, or the answer to give instead (a refusal, or 200 for an `ssl_check`).
async fn body_or_answer(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    ssl: SslCheck,
) -> Result<Bytes, Response> {
    match verified(state, headers, body, ssl).await {
        Ok(Some(b)) => Ok(b),
        Ok(None) => Err(StatusCode::OK.into_response()),
        Err(r) => Err(r.into_response()),
    }
}

/// `POST /slack/commands`
pub async fn commands(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let bytes = match body_or_answer(&state, &headers, body, SslCheck::Possible).await {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    let cmd: SlashCommand = match serde_urlencoded::from_bytes(&bytes) {
        Ok(c) => c,
        Err(e) => return Refusal::Malformed(format!("slash command form: {e}")).into_response(),
    };
    dispatch::command(&state, cmd).await.into_response()
}

/// `POST /slack/interactions`
pub async fn interactions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let bytes = match body_or_answer(&state, &headers, body, SslCheck::Possible).await {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    let Some(payload) = form_field(&bytes, "payload") else {
        return Refusal::Malformed("interaction form has no payload field".into()).into_response();
    };
    let interaction: Interaction = match serde_json::from_str(&payload) {
        Ok(i) => i,
        Err(e) => return Refusal::Malformed(format!("interaction payload: {e}")).into_response(),
    };
    dispatch::interaction(&state, interaction)
        .await
        .into_response()
}

/// `POST /slack/events`
pub async fn events(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let bytes = match body_or_answer(&state, &headers, body, SslCheck::Never).await {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    let envelope: EventEnvelope = match serde_json::from_slice(&bytes) {
        Ok(e) => e,
        Err(e) => return Refusal::Malformed(format!("event envelope: {e}")).into_response(),
    };
    let retry = headers
        .get("x-slack-retry-num")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok());
    match dispatch::event(&state, envelope, retry).await {
        EventAnswer::Ack(None) => StatusCode::OK.into_response(),
        EventAnswer::Ack(Some(body)) => (StatusCode::OK, Json(body)).into_response(),
        EventAnswer::Failed => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        EventAnswer::Unavailable => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// One field of a form body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    form_urlencoded_pairs(body)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn form_urlencoded_pairs(body: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_check_is_detected_in_a_form() {
        let mut form = HeaderMap::new();
        form.insert(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        let mut json = HeaderMap::new();
        json.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        assert!(is_ssl_check(&form, b"ssl_check=1&token=abc"));
        assert!(is_ssl_check(&form, b"token=abc&ssl_check=1"));
        assert!(!is_ssl_check(&form, b"token=abc"));
        assert!(!is_ssl_check(&form, b"text=ssl_check%3D1"));
        assert!(!is_ssl_check(&json, br#"{"text":"ssl_check=1"}"#));
    }

    #[test]
    fn form_field_decodes_payload() {
        assert_eq!(
            form_field(b"payload=%7B%22type%22%3A%22x%22%7D&a=b", "payload").as_deref(),
            Some("{\"type\":\"x\"}")
        );
        assert_eq!(form_field(b"a=b", "payload"), None);
    }
}
