//! `POST /slack/commands`, `/slack/interactions`, `/slack/events`.
//!
//! Order matters and is the same for all three: refuse an oversized body (413) before reading it
//! all, verify the signature on the raw bytes (401), and only then parse and dispatch. Each
//! handler runs as its own task; the layer waits at most `slack.ack_deadline_ms` for its [`Ack`]
//! and otherwise answers Slack with an empty 200 while the task goes on, delivering a late reply
//! through `response_url` (or `views.update` for a modal).

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use serde_json::{Value, json};
use tracing::{Instrument, Span, debug, error, info, warn};

use super::ack::{Ack, Reply};
use super::payload::{EventCallback, EventEnvelope, Interaction, SlashCommand};
use crate::registry::SlackCtx;
use crate::state::AppState;

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
            state.metrics().signature_failure("too_large");
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

fn record_identity(team: Option<&str>, user: &str) {
    let span = Span::current();
    if let Some(t) = team {
        span.record("slack.team", t);
    }
    span.record("slack.user", user);
}

/// Where a reply that missed the deadline goes.
enum Late {
    ResponseUrl(String),
    View(String),
    Nowhere,
}

/// Run a handler as a task; answer with its ack if it is ready within the deadline, else with an
/// empty ack while it continues.
async fn ack_within<F>(state: &AppState, what: &'static str, fut: F, late: Late) -> Ack
where
    F: std::future::Future<Output = anyhow::Result<Ack>> + Send + 'static,
{
    let deadline = state.settings().ack_deadline();
    let span = Span::current();
    // A panicking handler must still produce an answer, not a dropped connection.
    let guarded = std::panic::AssertUnwindSafe(fut).catch_unwind();
    let mut task = state.tasks().spawn(guarded.instrument(span.clone()));
    match tokio::time::timeout(deadline, &mut task).await {
        Ok(Ok(Ok(Ok(ack)))) => ack,
        Ok(Ok(Ok(Err(e)))) => failure_ack(what, &e, &late),
        Ok(Ok(Err(_))) | Ok(Err(_)) => {
            failure_ack(what, &anyhow::anyhow!("handler panicked"), &late)
        }
        Err(_) => {
            state.metrics().slack_late_acks.inc();
            info!(
                deadline_ms = deadline.as_millis() as u64,
                "handler still running at the ack deadline; continuing in the background"
            );
            // A modal submission answered with an empty body would close the modal and lose the
            // late result: keep it open with a "working" view that the result replaces.
            let now = if what == "view_submission" && matches!(late, Late::View(_)) {
                Ack::ViewUpdate(working_view())
            } else {
                Ack::Empty
            };
            let state = state.clone();
            state.clone().tasks().spawn(
                async move {
                    let ack = match task.await {
                        Ok(Ok(Ok(ack))) => ack,
                        Ok(Ok(Err(e))) => failure_ack(what, &e, &late),
                        _ => failure_ack(what, &anyhow::anyhow!("handler panicked"), &late),
                    };
                    let ack = match (what, ack) {
                        // Field errors cannot be shown once the modal was answered: say them.
                        ("view_submission", Ack::ViewErrors(errors)) => {
                            Ack::ViewUpdate(error_view(&format!(
                                ":warning: {}",
                                errors
                                    .iter()
                                    .map(|(_, m)| m.as_str())
                                    .collect::<Vec<_>>()
                                    .join("\n")
                            )))
                        }
                        ("view_submission", Ack::Empty | Ack::ViewClear) => {
                            Ack::ViewUpdate(error_view(":white_check_mark: Done."))
                        }
                        (_, ack) => ack,
                    };
                    deliver_late(&state, ack, late).await;
                }
                .instrument(span),
            );
            now
        }
    }
}

/// Log a handler failure with an id the user can quote.
fn failure_ack(what: &str, e: &anyhow::Error, late: &Late) -> Ack {
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    error!(error.id = %id, error.message = %e, error.cause_chain = ?e, handler = what, "handler failed");
    let text = format!(
        ":warning: Sorry, that did not work (error id `{id}`). Nothing was changed; try again, and if it keeps failing, give the error id to your slackops operators."
    );
    match late {
        Late::View(_) => Ack::ViewUpdate(error_view(&text)),
        _ => Ack::ephemeral(text),
    }
}

fn working_view() -> Value {
    json!({
        "type": "modal",
        "title": {"type": "plain_text", "text": "slackops"},
        "close": {"type": "plain_text", "text": "Close"},
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": ":hourglass_flowing_sand: Working on it…"}}]
    })
}

fn error_view(text: &str) -> Value {
    json!({
        "type": "modal",
        "title": {"type": "plain_text", "text": "slackops"},
        "close": {"type": "plain_text", "text": "Close"},
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    })
}

async fn deliver_late(state: &AppState, ack: Ack, late: Late) {
    let result = match (&ack, late) {
        (Ack::Empty, _) => return,
        (Ack::Message(reply), Late::ResponseUrl(url)) => {
            state
                .slack()
                .respond(&url, &serde_json::to_value(reply).unwrap_or(Value::Null))
                .await
        }
        (Ack::ViewUpdate(view), Late::View(view_id)) => state
            .slack()
            .views_update(&view_id, view, None)
            .await
            .map(|_| ()),
        (other, _) => {
            warn!(ack = ?std::mem::discriminant(other), "a late reply could not be delivered: no response_url or view for it");
            return;
        }
    };
    if let Err(e) = result {
        warn!(error = %e, "delivering a late reply failed");
    }
}

/// `POST /slack/commands`
pub async fn commands(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let bytes = match verified(&state, &headers, body, SslCheck::Possible).await {
        Ok(Some(b)) => b,
        Ok(None) => return StatusCode::OK.into_response(),
        Err(r) => return r.into_response(),
    };
    let cmd: SlashCommand = match serde_urlencoded::from_bytes(&bytes) {
        Ok(c) => c,
        Err(e) => return Refusal::Malformed(format!("slash command form: {e}")).into_response(),
    };
    record_identity(cmd.team_id.as_deref(), &cmd.user_id);
    let Some(handler) = state.registry().command_handler(&cmd.command) else {
        state.metrics().dispatched("unhandled");
        info!(command = %cmd.command, "no handler for this slash command");
        return Ack::Message(Reply::ephemeral(format!(
            "slackops does not know the command `{}`. Available: {}",
            cmd.command,
            state
                .registry()
                .commands()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )))
        .into_response();
    };
    state.metrics().dispatched("command");
    let cx = SlackCtx {
        state: state.clone(),
        team_id: cmd.team_id.clone(),
        user_id: cmd.user_id.clone(),
    };
    let late = cmd
        .response_url
        .clone()
        .map(Late::ResponseUrl)
        .unwrap_or(Late::Nowhere);
    ack_within(
        &state,
        "command",
        async move { handler.handle(cx, cmd).await },
        late,
    )
    .await
    .into_response()
}

/// `POST /slack/interactions`
pub async fn interactions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let bytes = match verified(&state, &headers, body, SslCheck::Possible).await {
        Ok(Some(b)) => b,
        Ok(None) => return StatusCode::OK.into_response(),
        Err(r) => return r.into_response(),
    };
    let payload = match form_field(&bytes, "payload") {
        Some(p) => p,
        None => {
            return Refusal::Malformed("interaction form has no payload field".into())
                .into_response();
        }
    };
    let interaction: Interaction = match serde_json::from_str(&payload) {
        Ok(i) => i,
        Err(e) => return Refusal::Malformed(format!("interaction payload: {e}")).into_response(),
    };
    record_identity(interaction.team_id(), &interaction.user.id);
    let cx = SlackCtx {
        state: state.clone(),
        team_id: interaction.team_id().map(str::to_owned),
        user_id: interaction.user.id.clone(),
    };
    let interaction = Arc::new(interaction);
    let ack = match interaction.kind.as_str() {
        "block_actions" => block_action(&state, cx, &interaction).await,
        "view_submission" | "view_closed" => view_event(&state, cx, &interaction).await,
        "shortcut" | "message_action" => shortcut(&state, cx, &interaction).await,
        "block_suggestion" => {
            // No feature serves external options yet; an empty list keeps the menu usable.
            return (StatusCode::OK, Json(json!({"options": []}))).into_response();
        }
        other => unhandled(other, ""),
    };
    ack.into_response()
}

/// Where a late answer to an interaction goes: its `response_url`, if it has one.
fn late_url(interaction: &Interaction) -> Late {
    interaction
        .response_url
        .clone()
        .map(Late::ResponseUrl)
        .unwrap_or(Late::Nowhere)
}

/// A button or menu (the first action of a `block_actions`), to the handler of its `action_id`.
async fn block_action(state: &AppState, cx: SlackCtx, interaction: &Arc<Interaction>) -> Ack {
    let Some(action) = interaction.actions.first().cloned() else {
        return Ack::Empty;
    };
    if interaction.actions.len() > 1 {
        debug!(
            count = interaction.actions.len(),
            "block_actions with several actions; dispatching the first"
        );
    }
    let Some(h) = state.registry().action_handler(&action.action_id) else {
        return unhandled("block_actions", &action.action_id);
    };
    state.metrics().dispatched("block_actions");
    let i = interaction.clone();
    let late = match interaction.view.as_ref() {
        Some(v) if interaction.response_url.is_none() => Late::View(v.id.clone()),
        _ => late_url(interaction),
    };
    let ack = ack_within(
        state,
        "block_actions",
        async move { h.handle(cx, i, action).await },
        late,
    )
    .await;
    // Slack ignores a message in the HTTP answer to block_actions: send it to the
    // response_url instead (ephemeral unless the reply says otherwise).
    match (ack, interaction.response_url.clone()) {
        (Ack::Message(reply), Some(url)) => {
            let st = state.clone();
            state.tasks().spawn(
                async move {
                    let body = serde_json::to_value(&reply).unwrap_or(Value::Null);
                    if let Err(e) = st.slack().respond(&url, &body).await {
                        warn!(error = %e, "replying to a block action through response_url failed");
                    }
                }
                .instrument(Span::current()),
            );
            Ack::Empty
        }
        (other, _) => other,
    }
}

/// A modal submitted or closed, to the handler of its `callback_id`.
async fn view_event(state: &AppState, cx: SlackCtx, interaction: &Arc<Interaction>) -> Ack {
    let view = interaction.view.clone().unwrap_or_default();
    let Some(h) = state.registry().view_handler(&view.callback_id) else {
        return unhandled(&interaction.kind, &view.callback_id);
    };
    let kind = if interaction.kind == "view_submission" {
        "view_submission"
    } else {
        "view_closed"
    };
    state.metrics().dispatched(kind);
    let i = interaction.clone();
    let late = Late::View(view.id.clone());
    if kind == "view_submission" {
        ack_within(state, kind, async move { h.submit(cx, i).await }, late).await
    } else {
        ack_within(
            state,
            kind,
            async move { h.closed(cx, i).await },
            Late::Nowhere,
        )
        .await
    }
}

/// A global shortcut or message action, to the handler of its `callback_id`.
async fn shortcut(state: &AppState, cx: SlackCtx, interaction: &Arc<Interaction>) -> Ack {
    let id = interaction.callback_id.clone().unwrap_or_default();
    let Some(h) = state.registry().shortcut_handler(&id) else {
        return unhandled(&interaction.kind, &id);
    };
    state.metrics().dispatched("shortcut");
    let i = interaction.clone();
    ack_within(
        state,
        "shortcut",
        async move { h.handle(cx, i).await },
        late_url(interaction),
    )
    .await
}

fn unhandled(kind: &str, key: &str) -> Ack {
    info!(
        kind,
        key, "no handler for this interaction; acknowledged and ignored"
    );
    Ack::Empty
}

/// `POST /slack/events`
pub async fn events(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let bytes = match verified(&state, &headers, body, SslCheck::Never).await {
        Ok(Some(b)) => b,
        Ok(None) => return StatusCode::OK.into_response(),
        Err(r) => return r.into_response(),
    };
    let envelope: EventEnvelope = match serde_json::from_slice(&bytes) {
        Ok(e) => e,
        Err(e) => return Refusal::Malformed(format!("event envelope: {e}")).into_response(),
    };
    let retry_num = headers
        .get("x-slack-retry-num")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match envelope {
        EventEnvelope::UrlVerification { challenge } => {
            (StatusCode::OK, Json(json!({"challenge": challenge}))).into_response()
        }
        EventEnvelope::AppRateLimited {
            minute_rate_limited,
            ..
        } => {
            warn!(
                ?minute_rate_limited,
                "Slack reports this app exceeded the Events API delivery limit"
            );
            StatusCode::OK.into_response()
        }
        EventEnvelope::Unknown => {
            info!("unknown Events API envelope type; acknowledged and ignored");
            StatusCode::OK.into_response()
        }
        EventEnvelope::EventCallback(cb) => event_callback(&state, cb, retry_num).await,
    }
}

/// An Events API event, to the handler of its type, once per `event_id`: a duplicate delivery
/// is dropped; a failed handler answers 500 and forgets the id, so Slack's retry runs it again.
async fn event_callback(
    state: &AppState,
    cb: EventCallback,
    retry_num: Option<String>,
) -> Response {
    if let Some(user) = cb.user() {
        record_identity(cb.team_id.as_deref(), user);
    }
    let Some(handler) = state.registry().event_handler(cb.event_type()) else {
        debug!(
            event_type = cb.event_type(),
            "no handler for this event type"
        );
        return StatusCode::OK.into_response();
    };
    // Claim the event id; a duplicate (Slack retries after slow acks) is dropped. A retry
    // of an event we never processed claims it here for the first time and runs.
    match state.claim_event(&cb.event_id).await {
        Ok(true) => {}
        Ok(false) => {
            state.metrics().slack_duplicate_events.inc();
            info!(event_id = %cb.event_id, retry = ?retry_num, "duplicate event delivery dropped");
            return StatusCode::OK.into_response();
        }
        Err(e) => {
            error!(error = %crate::store::short_db_error(&e), "cannot record event id; asking Slack to retry");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    }
    state.metrics().dispatched("event");
    let event_id = cb.event_id.clone();
    let st = state.clone();
    let fut = async move { handler.handle(st, cb).await.map(|_| Ack::Empty) };
    let deadline = state.settings().ack_deadline();
    let mut task = state.tasks().spawn(
        std::panic::AssertUnwindSafe(fut)
            .catch_unwind()
            .instrument(Span::current()),
    );
    match tokio::time::timeout(deadline, &mut task).await {
        Ok(Ok(Ok(Ok(_)))) => StatusCode::OK.into_response(),
        Ok(_) => {
            // Failed or panicked: forget the claim so Slack's retry runs it again.
            error!(event_id = %event_id, "event handler failed; Slack will retry");
            let _ = state.forget_event(&event_id).await;
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Err(_) => {
            state.metrics().slack_late_acks.inc();
            let st = state.clone();
            state.tasks().spawn(async move {
                if !matches!(task.await, Ok(Ok(Ok(_)))) {
                    error!(event_id = %event_id, "event handler failed after the ack deadline");
                }
                drop(st);
            });
            StatusCode::OK.into_response()
        }
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
