//! Dispatch of a verified, parsed Slack request to a feature, whatever carried it.
//!
//! Both transports end here: the HTTP routes ([`super::routes`]) after the body cap, the
//! signature and parsing; the Socket Mode listener ([`super::socket`]) after it read an envelope
//! from its pre-authenticated WebSocket. From here on a slash command, an interaction or an event
//! callback goes the same way: the registry picks the handler, the handler runs as its own task,
//! the layer waits at most `slack.ack_deadline_ms` for its [`Ack`] and otherwise answers with an
//! empty (or "working") ack while the task goes on and delivers its reply late through
//! `response_url` or `views.update`. Events are de-duplicated on `event_id` in the database, so a
//! redelivery is processed once across transports and replicas.
//!
//! Nothing here may learn which transport carried the request, and nothing here may call Slack
//! before the ack is decided except through a spawned task.

use std::sync::Arc;

use futures::FutureExt;
use serde_json::{Value, json};
use tracing::{Instrument, Span, debug, error, info, warn};

use super::ack::{Ack, Reply};
use super::mrkdwn::Mrkdwn;
use super::payload::{EventCallback, EventEnvelope, Interaction, SlashCommand};
use crate::mrkdwn;
use crate::registry::SlackCtx;
use crate::state::AppState;

/// How the layer answers an Events API delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum EventAnswer {
    /// Acknowledge; `Some(body)` for a `url_verification` challenge.
    Ack(Option<Value>),
    /// The handler failed: no acknowledgment, so Slack delivers the event again.
    Failed,
    /// The event id could not be recorded (database down): no acknowledgment either.
    Unavailable,
}

/// Record the Slack team and user on the current span (the request's or the envelope's).
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

/// What kind of handler runs, for logs, metrics and the late-reply rules.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Command,
    BlockActions,
    ViewSubmission,
    ViewClosed,
    Shortcut,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Command => "command",
            Kind::BlockActions => "block_actions",
            Kind::ViewSubmission => "view_submission",
            Kind::ViewClosed => "view_closed",
            Kind::Shortcut => "shortcut",
        }
    }
}

type Guarded = std::thread::Result<anyhow::Result<Ack>>;

/// Run a handler as a task; answer with its ack if it is ready within the deadline, else with an
/// empty ack (a "working" view for a modal) while it continues and replies late.
async fn ack_within<F>(state: &AppState, kind: Kind, fut: F, late: Late) -> Ack
where
    F: std::future::Future<Output = anyhow::Result<Ack>> + Send + 'static,
{
    let deadline = state.settings().ack_deadline();
    let span = Span::current();
    // A panicking handler must still produce an answer, not a dropped connection. It runs
    // "before the ack": the Web API client refuses it anything that is a job's work.
    let guarded = std::panic::AssertUnwindSafe(super::ack::before_ack(fut)).catch_unwind();
    let mut task = state.tasks().spawn(guarded.instrument(span.clone()));
    match tokio::time::timeout(deadline, &mut task).await {
        Ok(joined) => settle(kind, flatten(joined), &late),
        Err(_) => {
            state.metrics().slack_late_acks.inc();
            info!(
                deadline_ms = deadline.as_millis() as u64,
                "handler still running at the ack deadline; continuing in the background"
            );
            // A modal submission answered with an empty body would close the modal and lose the
            // late result: keep it open with a "working" view that the result replaces.
            let now = if kind == Kind::ViewSubmission && matches!(late, Late::View(_)) {
                Ack::ViewUpdate(working_view())
            } else {
                Ack::Empty
            };
            let st = state.clone();
            state.tasks().spawn(
                async move {
                    let ack = settle(kind, flatten(task.await), &late);
                    deliver_late(&st, late_form(kind, ack), late).await;
                }
                .instrument(span),
            );
            now
        }
    }
}

fn flatten(joined: Result<Guarded, tokio::task::JoinError>) -> anyhow::Result<Ack> {
    match joined {
        Ok(Ok(result)) => result,
        Ok(Err(_)) | Err(_) => Err(anyhow::anyhow!("handler panicked")),
    }
}

/// The ack of a finished handler, or the failure ack for its error.
fn settle(kind: Kind, result: anyhow::Result<Ack>, late: &Late) -> Ack {
    match result {
        Ok(ack) => ack,
        Err(e) => failure_ack(kind, &e, late),
    }
}

/// A modal answered already cannot show field errors or close itself: say so in the view.
fn late_form(kind: Kind, ack: Ack) -> Ack {
    match (kind, ack) {
        (Kind::ViewSubmission, Ack::ViewErrors(errors)) => Ack::ViewUpdate(error_view(&mrkdwn!(
            ":warning: {}",
            errors
                .iter()
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        ))),
        (Kind::ViewSubmission, Ack::Empty | Ack::ViewClear) => {
            Ack::ViewUpdate(error_view(&":white_check_mark: Done.".into()))
        }
        (_, ack) => ack,
    }
}

/// Log a handler failure with an id the user can quote.
fn failure_ack(kind: Kind, e: &anyhow::Error, late: &Late) -> Ack {
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    error!(error.id = %id, error.message = %e, error.cause_chain = ?e, handler = kind.as_str(), "handler failed");
    let text = mrkdwn!(
        ":warning: Sorry, that did not work (error id `{}`). Nothing was changed; try again, and if it keeps failing, give the error id to your slackops operators.",
        id
    );
    match late {
        Late::View(_) => Ack::ViewUpdate(error_view(&text)),
        _ => Ack::ephemeral(text),
    }
}

fn working_view() -> Value {
    error_view(&":hourglass_flowing_sand: Working on it…".into())
}

fn error_view(text: &Mrkdwn) -> Value {
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

/// Send a message reply through `response_url` in the background (ephemeral unless it says
/// otherwise). Used where the ack itself cannot carry a message.
pub fn reply_through_response_url(state: &AppState, url: String, reply: Reply) {
    let st = state.clone();
    state.tasks().spawn(
        async move {
            let body = serde_json::to_value(&reply).unwrap_or(Value::Null);
            if let Err(e) = st.slack().respond(&url, &body).await {
                warn!(error = %e, "replying through response_url failed");
            }
        }
        .instrument(Span::current()),
    );
}

fn unhandled(kind: &str, key: &str) -> Ack {
    info!(
        kind,
        key, "no handler for this interaction; acknowledged and ignored"
    );
    Ack::Empty
}

// ------------------------------------------------------------------------------ slash commands

/// A slash command.
pub async fn command(state: &AppState, cmd: SlashCommand) -> Ack {
    record_identity(cmd.team_id.as_deref(), &cmd.user_id);
    let Some(handler) = state.registry().command_handler(&cmd.command) else {
        state.metrics().dispatched("unhandled");
        info!(command = %cmd.command, "no handler for this slash command");
        let known = state.registry().commands().map(|c| mrkdwn!("`{}`", c));
        return Ack::Message(Reply::ephemeral(mrkdwn!(
            "slackops does not know the command `{}`. Available: {}",
            cmd.command,
            Mrkdwn::join(known, ", ")
        )));
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
        state,
        Kind::Command,
        async move { handler.handle(cx, cmd).await },
        late,
    )
    .await
}

// ------------------------------------------------------------------------------ interactions

/// An interactivity payload: block actions, view submissions and closings, shortcuts, options.
pub async fn interaction(state: &AppState, interaction: Interaction) -> Ack {
    record_identity(interaction.team_id(), &interaction.user.id);
    let cx = SlackCtx {
        state: state.clone(),
        team_id: interaction.team_id().map(str::to_owned),
        user_id: interaction.user.id.clone(),
    };
    let interaction = Arc::new(interaction);
    match interaction.kind.as_str() {
        "block_actions" => block_actions(state, cx, interaction).await,
        "view_submission" | "view_closed" => view(state, cx, interaction).await,
        "shortcut" | "message_action" => shortcut(state, cx, interaction).await,
        // No feature serves external options yet; an empty list keeps the menu usable.
        "block_suggestion" => Ack::Options(Vec::new()),
        other => unhandled(other, ""),
    }
}

fn late_url(interaction: &Interaction) -> Late {
    interaction
        .response_url
        .clone()
        .map(Late::ResponseUrl)
        .unwrap_or(Late::Nowhere)
}

async fn block_actions(state: &AppState, cx: SlackCtx, interaction: Arc<Interaction>) -> Ack {
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
    let late = match interaction.view.as_ref() {
        Some(v) if interaction.response_url.is_none() => Late::View(v.id.clone()),
        _ => late_url(&interaction),
    };
    let key = match claim(state, &interaction, Some(&action)).await {
        Ok(key) => key,
        Err(ack) => return ack,
    };
    let i = interaction.clone();
    let run = given_back_on_failure(state, key, async move { h.handle(cx, i, action).await });
    let ack = ack_within(state, Kind::BlockActions, run, late).await;
    // Slack ignores a message in the answer to block_actions: send it to the response_url
    // instead (ephemeral unless the reply says otherwise).
    match (ack, interaction.response_url.clone()) {
        (Ack::Message(reply), Some(url)) => {
            reply_through_response_url(state, url, reply);
            Ack::Empty
        }
        (other, _) => other,
    }
}

/// Claim this delivery of a submission or click (see [`super::once`]). `Ok(key)` runs the
/// handler (`None`: nothing identifies the delivery); `Err(ack)` answers without running it: a
/// repeat of what already ran or is running, or a claim the database could not record.
async fn claim(
    state: &AppState,
    interaction: &Interaction,
    action: Option<&crate::slack::payload::Action>,
) -> Result<Option<String>, Ack> {
    let Some(key) = super::once::interaction_key(interaction, action) else {
        return Ok(None);
    };
    match super::once::claim(state, &key).await {
        Ok(true) => Ok(Some(key)),
        Ok(false) => {
            state.metrics().slack_duplicate_interactions.inc();
            info!(
                kind = %interaction.kind,
                "repeated submission or click; acted on once already"
            );
            Err(Ack::Empty)
        }
        Err(e) => {
            error!(error = %crate::store::short_db_error(&e), "cannot record the interaction; nothing done");
            let text: Mrkdwn = ":warning: slackops could not record this right now; nothing was changed. Try again in a moment.".into();
            Err(match interaction.kind.as_str() {
                "view_submission" => Ack::ViewUpdate(error_view(&text)),
                _ => Ack::ephemeral(text),
            })
        }
    }
}

/// A handler whose claim is given back when it failed or asked for corrections (field errors),
/// so trying again runs it.
fn given_back_on_failure<F>(
    state: &AppState,
    key: Option<String>,
    handler: F,
) -> impl std::future::Future<Output = anyhow::Result<Ack>> + Send + 'static
where
    F: std::future::Future<Output = anyhow::Result<Ack>> + Send + 'static,
{
    let st = state.clone();
    async move {
        let result = handler.await;
        if let Some(key) = key
            && matches!(result, Err(_) | Ok(Ack::ViewErrors(_)))
        {
            super::once::release(&st, &key).await;
        }
        result
    }
}

async fn view(state: &AppState, cx: SlackCtx, interaction: Arc<Interaction>) -> Ack {
    let view = interaction.view.clone().unwrap_or_default();
    let Some(h) = state.registry().view_handler(&view.callback_id) else {
        return unhandled(&interaction.kind, &view.callback_id);
    };
    let i = interaction.clone();
    if interaction.kind == "view_submission" {
        state.metrics().dispatched("view_submission");
        let key = match claim(state, &interaction, None).await {
            Ok(key) => key,
            Err(ack) => return ack,
        };
        let late = Late::View(view.id.clone());
        ack_within(
            state,
            Kind::ViewSubmission,
            given_back_on_failure(state, key, async move { h.submit(cx, i).await }),
            late,
        )
        .await
    } else {
        state.metrics().dispatched("view_closed");
        ack_within(
            state,
            Kind::ViewClosed,
            async move { h.closed(cx, i).await },
            Late::Nowhere,
        )
        .await
    }
}

async fn shortcut(state: &AppState, cx: SlackCtx, interaction: Arc<Interaction>) -> Ack {
    let id = interaction.callback_id.clone().unwrap_or_default();
    let Some(h) = state.registry().shortcut_handler(&id) else {
        return unhandled(&interaction.kind, &id);
    };
    state.metrics().dispatched("shortcut");
    let i = interaction.clone();
    ack_within(
        state,
        Kind::Shortcut,
        async move { h.handle(cx, i).await },
        late_url(&interaction),
    )
    .await
}

// ------------------------------------------------------------------------------ events

/// An Events API delivery. `retry` is Slack's retry number (`X-Slack-Retry-Num` over HTTP,
/// `retry_attempt` in a Socket Mode envelope), for the logs only: a retry of an event that was
/// never processed must run, so de-duplication is by `event_id`, never by retry number.
pub async fn event(state: &AppState, envelope: EventEnvelope, retry: Option<u32>) -> EventAnswer {
    match envelope {
        EventEnvelope::UrlVerification { challenge } => {
            EventAnswer::Ack(Some(json!({"challenge": challenge})))
        }
        EventEnvelope::AppRateLimited {
            minute_rate_limited,
            ..
        } => {
            warn!(
                ?minute_rate_limited,
                "Slack reports this app exceeded the Events API delivery limit"
            );
            EventAnswer::Ack(None)
        }
        EventEnvelope::Unknown => {
            info!("unknown Events API envelope type; acknowledged and ignored");
            EventAnswer::Ack(None)
        }
        EventEnvelope::EventCallback(cb) => event_callback(state, cb, retry).await,
    }
}

async fn event_callback(state: &AppState, cb: EventCallback, retry: Option<u32>) -> EventAnswer {
    if let Some(user) = cb.user() {
        record_identity(cb.team_id.as_deref(), user);
    }
    let Some(handler) = state.registry().event_handler(cb.event_type()) else {
        debug!(
            event_type = cb.event_type(),
            "no handler for this event type"
        );
        return EventAnswer::Ack(None);
    };
    // Claim the event id; a duplicate (Slack retries after slow acks) is dropped. A retry of an
    // event we never processed claims it here for the first time and runs.
    match state.claim_event(&cb.event_id).await {
        Ok(true) => {}
        Ok(false) => {
            state.metrics().slack_duplicate_events.inc();
            info!(event_id = %cb.event_id, retry = ?retry, "duplicate event delivery dropped");
            return EventAnswer::Ack(None);
        }
        Err(e) => {
            error!(error = %crate::store::short_db_error(&e), "cannot record event id; asking Slack to retry");
            return EventAnswer::Unavailable;
        }
    }
    state.metrics().dispatched("event");
    run_event(state, handler, cb).await
}

async fn run_event(
    state: &AppState,
    handler: Arc<dyn crate::registry::EventHandler>,
    cb: EventCallback,
) -> EventAnswer {
    let event_id = cb.event_id.clone();
    let st = state.clone();
    let fut = super::ack::before_ack(async move { handler.handle(st, cb).await });
    let deadline = state.settings().ack_deadline();
    let mut task = state.tasks().spawn(
        std::panic::AssertUnwindSafe(fut)
            .catch_unwind()
            .instrument(Span::current()),
    );
    match tokio::time::timeout(deadline, &mut task).await {
        Ok(Ok(Ok(Ok(())))) => EventAnswer::Ack(None),
        Ok(_) => {
            // Failed or panicked: forget the claim so Slack's retry runs it again.
            error!(event_id = %event_id, "event handler failed; Slack will retry");
            let _ = state.forget_event(&event_id).await;
            EventAnswer::Failed
        }
        Err(_) => {
            state.metrics().slack_late_acks.inc();
            state.tasks().spawn(
                async move {
                    if !matches!(task.await, Ok(Ok(Ok(())))) {
                        error!(event_id = %event_id, "event handler failed after the ack deadline");
                    }
                }
                .instrument(Span::current()),
            );
            EventAnswer::Ack(None)
        }
    }
}
