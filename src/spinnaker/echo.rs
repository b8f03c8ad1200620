//! `POST /spinnaker/events`: echo's REST event forwarding (reference/spinnaker.md §3a).
//!
//! echo POSTs every event it sees (orca, igor, git…) to each `rest.endpoints[].url`, in parallel
//! and in no particular order. The endpoint authenticates echo with `spinnaker.echo_token` (as a
//! Bearer token, or as the password of Basic credentials, which echo builds from
//! `username`/`password`), parses the event, and hands it to the features registered for its
//! `details.type`; events nobody handles are answered 200 and ignored. echo's `wrap` and `flatten`
//! transforms are undone here, so either setting works.
//!
//! Answers: 401 for missing or wrong credentials, 400 for a body that is not an event (echo does not
//! retry 400), 503 when a handler could not store the event (echo retries per `retryCount`).

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};
use tracing::{Span, debug, error, warn};

use crate::secret::Secret;
use crate::slack::routes::read_capped;
use crate::slack::verify::single_header;
use crate::state::AppState;

/// echo sends whole executions; they can be large.
const MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

fn unauthorized(message: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer realm=\"slackops\"")],
        Json(json!({"error": "unauthorized", "message": message})),
    )
        .into_response()
}

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": "bad_request", "message": message})),
    )
        .into_response()
}

/// Check `Authorization`: `Bearer <token>` or `Basic base64(user:<token>)`.
pub fn authenticate(headers: &HeaderMap, token: &Secret) -> Result<(), &'static str> {
    if token.is_empty() {
        return Err("the echo endpoint is disabled: set spinnaker.echo_token");
    }
    // One Authorization header: with two, which one a proxy or we would read is a guess.
    let value = single_header(headers, header::AUTHORIZATION.as_str())
        .map_err(|_| "more than one Authorization header")?
        .ok_or("missing Authorization header")?;
    let (scheme, cred) = value
        .split_once(' ')
        .ok_or("malformed Authorization header")?;
    let presented: Vec<u8> = match scheme.to_ascii_lowercase().as_str() {
        "bearer" => cred.trim().as_bytes().to_vec(),
        "basic" => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(cred.trim())
                .map_err(|_| "malformed Basic credentials")?;
            let text = String::from_utf8(decoded).map_err(|_| "malformed Basic credentials")?;
            let (_, password) = text.split_once(':').ok_or("malformed Basic credentials")?;
            password.as_bytes().to_vec()
        }
        _ => return Err("unsupported Authorization scheme (use Bearer or Basic)"),
    };
    if token.matches(&presented) {
        Ok(())
    } else {
        Err("wrong credentials")
    }
}

/// Undo echo's `wrap` (`{eventName, <field>: event}`) and `flatten` (content/details as strings).
pub fn normalize(mut v: Value) -> Result<Value, String> {
    if !v.is_object() {
        return Err("the body must be a JSON object (an echo event)".into());
    }
    if v.get("details").is_none() {
        // wrap: the event is under one field (default "payload"), next to "eventName".
        if let Some(inner) = v
            .as_object()
            .and_then(|o| {
                o.iter()
                    .find(|(k, val)| *k != "eventName" && val.get("details").is_some())
            })
            .map(|(_, val)| val.clone())
        {
            v = inner;
        }
    }
    for key in ["details", "content"] {
        if let Some(Value::String(s)) = v.get(key) {
            let parsed: Value = serde_json::from_str(s)
                .map_err(|e| format!("{key} is a string but not JSON: {e}"))?;
            v[key] = parsed;
        }
    }
    if v.pointer("/details/type").and_then(Value::as_str).is_none() {
        return Err("not an echo event: details.type is missing".into());
    }
    Ok(v)
}

/// The endpoint.
pub async fn receive(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    if let Err(reason) = authenticate(&headers, &state.settings().spinnaker.echo_token) {
        state.metrics().echo_event("unauthorized");
        warn!(reason, "refused an echo request");
        return unauthorized(reason);
    }
    let bytes = match read_capped(&headers, body, MAX_EVENT_BYTES).await {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let raw: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            state.metrics().echo_event("malformed");
            return bad_request(format!("malformed JSON: {e}"));
        }
    };
    let event = match normalize(raw) {
        Ok(v) => Arc::new(v),
        Err(m) => {
            state.metrics().echo_event("malformed");
            return bad_request(m);
        }
    };
    let kind = event
        .pointer("/details/type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Span::current().record("echo.type", kind.as_str());
    let handlers = state.registry().echo_handlers(&kind).to_vec();
    if handlers.is_empty() {
        state.metrics().echo_event("ignored");
        debug!(event_type = %kind, "echo event ignored");
        return (StatusCode::OK, Json(json!({"status": "ignored"}))).into_response();
    }
    for h in handlers {
        if let Err(e) = h.handle(state.clone(), event.clone()).await {
            state.metrics().echo_event("failed");
            error!(event_type = %kind, error.message = %e, error.cause_chain = ?e, "storing an echo event failed; echo will retry");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "unavailable", "message": "the event could not be stored; retry"})),
            )
                .into_response();
        }
    }
    state.metrics().echo_event("accepted");
    (StatusCode::OK, Json(json!({"status": "accepted"}))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[test]
    fn bearer_and_basic_are_accepted_others_refused() {
        let token = &Secret::new("echo-token-123456");
        assert!(authenticate(&auth("Bearer echo-token-123456"), token).is_ok());
        let basic = base64::engine::general_purpose::STANDARD.encode("echo:echo-token-123456");
        assert!(authenticate(&auth(&format!("Basic {basic}")), token).is_ok());
        assert!(authenticate(&auth("Bearer nope"), token).is_err());
        assert!(authenticate(&auth("Token echo-token-123456"), token).is_err());
        assert!(authenticate(&HeaderMap::new(), token).is_err());
        assert!(authenticate(&auth("Bearer "), &Secret::default()).is_err());
    }

    #[test]
    fn a_second_authorization_header_is_refused_even_when_one_is_right() {
        let token = &Secret::new("echo-token-123456");
        for (first, second) in [
            ("Bearer nope", "Bearer echo-token-123456"),
            ("Bearer echo-token-123456", "Bearer nope"),
        ] {
            let mut h = auth(first);
            h.append(header::AUTHORIZATION, second.parse().unwrap());
            assert_eq!(
                authenticate(&h, token),
                Err("more than one Authorization header")
            );
        }
    }

    #[test]
    fn wrap_and_flatten_are_undone() {
        let plain = json!({"details": {"type": "orca:stage:starting"}, "content": {"a": 1}});
        assert_eq!(normalize(plain.clone()).unwrap(), plain);
        let wrapped = json!({"eventName": "spinnaker_events", "payload": plain});
        assert_eq!(normalize(wrapped).unwrap()["content"]["a"], 1);
        let flat = json!({"details": "{\"type\":\"orca:stage:starting\"}", "content": "{\"a\":1}"});
        assert_eq!(normalize(flat).unwrap()["content"]["a"], 1);
        assert!(normalize(json!({"hello": 1})).is_err());
        assert!(normalize(json!([1])).is_err());
    }
}
