//! `cancel <execution id | Deck URL> [reason]`: show what would be canceled with a confirmed
//! button; the click cancels through Gate and tells the channel who canceled and why.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::follow::is_final;
use super::{ACTION_CONFIRM_CANCEL, FEATURE, authorize, deck_link};
use crate::jobs::NewJob;
use crate::mrkdwn;
use crate::registry::{ActionHandler, SlackCtx};
use crate::slack::ack::{Ack, Reply};
use crate::slack::blocks::{self, escape, link, mention};
use crate::slack::mrkdwn::Mrkdwn;
use crate::slack::payload::{Action, Interaction};
use crate::spinnaker::gate::GateError;
use crate::state::AppState;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CancelRequest {
    #[serde(rename = "e")]
    execution_id: String,
    #[serde(rename = "r", default)]
    reason: Option<String>,
}

/// Read the execution and say why it cannot be canceled, if so: `(application, pipeline)`.
async fn target(state: &AppState, execution_id: &str) -> Result<(String, String, Value), Mrkdwn> {
    let exec = match state.gate().execution(execution_id).await {
        Ok(e) => e,
        Err(GateError::NotFound(_)) => {
            return Err(mrkdwn!(
                "Spinnaker has no execution `{}`.",
                escape(execution_id),
            ));
        }
        Err(GateError::Empty) => {
            return Err(
                "Spinnaker would not show this execution to slackops (a permission problem)."
                    .into(),
            );
        }
        Err(e) if e.operator_check().is_some() => {
            return Err(mrkdwn!(
                "Spinnaker refused slackops: {}. Nothing was canceled.",
                escape(&e.to_string()),
            ));
        }
        Err(e) => {
            return Err(mrkdwn!(
                "Gate did not answer ({}); nothing was canceled.",
                escape(&e.to_string()),
            ));
        }
    };
    let app = exec
        .get("application")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let name = exec
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let status = exec
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("UNKNOWN");
    if is_final(status) {
        return Err(mrkdwn!(
            "*{}* › *{}* (`{}`) already ended with status {}; there is nothing to cancel.",
            escape(&app),
            escape(&name),
            escape(execution_id),
            escape(status),
        ));
    }
    Ok((app, name, exec))
}

/// The `cancel` subcommand: a confirmation, not yet the cancel.
pub async fn cancel_command(
    state: &AppState,
    user: &str,
    execution_id: &str,
    reason: Option<String>,
) -> anyhow::Result<Ack> {
    // The confirmation button carries the request; Block Kit caps a button value at 2000
    // characters, and a cut value could never be read back.
    let carried = serde_json::to_string(&CancelRequest {
        execution_id: execution_id.to_string(),
        reason: reason.clone(),
    })
    .unwrap_or_default();
    if carried.chars().count() > blocks::BUTTON_VALUE_MAX {
        return Ok(Ack::ephemeral(mrkdwn!(
            "The reason is too long ({} characters): shorten it to about {} characters and run the command again. Nothing was canceled.",
            reason.as_deref().unwrap_or_default().chars().count(),
            blocks::BUTTON_VALUE_MAX - 100,
        )));
    }
    let (app, name, exec) = match target(state, execution_id).await {
        Ok(t) => t,
        Err(text) => return Ok(Ack::ephemeral(text)),
    };
    let who = state.authz().identity(user).await?;
    if let Err(why) = authorize(state, &who, &app, &name, "cancel").await? {
        state
            .audit(
                FEATURE,
                "cancel",
                user,
                &format!("execution:{execution_id}"),
                "refused",
                json!({"reason": why}),
            )
            .await;
        return Ok(Ack::ephemeral(mrkdwn!(":no_entry: {}", why)));
    }
    let started_by = exec
        .pointer("/trigger/user")
        .and_then(Value::as_str)
        .map(|u| mrkdwn!(", started by {}", escape(u)))
        .unwrap_or_default();
    let why = reason
        .as_deref()
        .map(|r| mrkdwn!(" Reason: _{}_", escape(r)))
        .unwrap_or_default();
    let text = mrkdwn!(
        "Cancel *{}* › *{}* ({}{})?{}",
        escape(&app),
        escape(&name),
        link(
            &deck_link(&state.settings().spinnaker.deck_url, &app, execution_id),
            execution_id
        ),
        started_by,
        why,
    );
    let value = serde_json::to_string(&CancelRequest {
        execution_id: execution_id.to_string(),
        reason,
    })
    .unwrap_or_default();
    let button = blocks::button(ACTION_CONFIRM_CANCEL, "Cancel execution", &value)
        .with_style(slack_morphism::prelude::SlackBlockButtonStyle::Danger)
        .with_confirm(blocks::confirm(
            "Cancel this execution?",
            &text,
            "Cancel it",
            "Keep running",
        ));
    let b = vec![
        blocks::section(&text),
        blocks::actions("pipelines_cancel", vec![button.into()]),
    ];
    Ok(Ack::Message(
        Reply::ephemeral(text.clone()).blocks(blocks::to_json(&b)),
    ))
}

/// The confirmed click.
pub struct ConfirmCancel;

#[async_trait]
impl ActionHandler for ConfirmCancel {
    async fn handle(
        &self,
        cx: SlackCtx,
        interaction: Arc<Interaction>,
        action: Action,
    ) -> anyhow::Result<Ack> {
        let state = &cx.state;
        let Some(req) = action
            .value
            .as_deref()
            .and_then(|v| serde_json::from_str::<CancelRequest>(v).ok())
        else {
            return Ok(Ack::ephemeral(
                "This button is out of date; run the command again.",
            ));
        };
        let (app, name, _) = match target(state, &req.execution_id).await {
            Ok(t) => t,
            Err(text) => return Ok(Ack::Message(Reply::ephemeral(text).replace_original())),
        };
        let who = state.authz().identity(&cx.user_id).await?;
        let subject = format!("execution:{}", req.execution_id);
        if let Err(why) = authorize(state, &who, &app, &name, "cancel").await? {
            state
                .audit(
                    FEATURE,
                    "cancel",
                    &cx.user_id,
                    &subject,
                    "refused",
                    json!({"reason": why}),
                )
                .await;
            return Ok(Ack::Message(
                Reply::ephemeral(mrkdwn!(":no_entry: {}", why)).replace_original(),
            ));
        }
        let once = format!(
            "cancel:{}:{}",
            req.execution_id,
            interaction
                .message_ts()
                .or(action.action_ts.as_deref())
                .unwrap_or_default()
        );
        if !crate::slack::once::first_use(state, &once).await? {
            return Ok(Ack::ephemeral("This confirmation was already used."));
        }
        let reason = format!(
            "{} (canceled from Slack by {})",
            req.reason
                .clone()
                .unwrap_or_else(|| "no reason given".into()),
            who.email.clone().unwrap_or_else(|| who.name.clone())
        );
        match state
            .gate()
            .cancel(&req.execution_id, &reason, who.email.as_deref())
            .await
        {
            Ok(()) => Ok(canceled(
                state,
                &cx.user_id,
                &interaction,
                &req,
                &app,
                &name,
                &subject,
            )
            .await),
            Err(e) => Ok(not_canceled(state, &cx.user_id, &subject, &e).await),
        }
    }
}

/// Gate canceled it: audit, and tell the channel who canceled and why (replacing the
/// confirmation), or answer in place when the channel cannot be posted to.
async fn canceled(
    state: &AppState,
    user: &str,
    interaction: &Interaction,
    req: &CancelRequest,
    app: &str,
    name: &str,
    subject: &str,
) -> Ack {
    state
        .audit(
            FEATURE,
            "cancel",
            user,
            subject,
            "ok",
            json!({"reason": req.reason, "application": app, "pipeline": name}),
        )
        .await;
    let why = req
        .reason
        .as_deref()
        .map(|r| mrkdwn!(": {}", escape(r)))
        .unwrap_or_default();
    let text = mrkdwn!(
        ":no_entry_sign: *{}* › *{}* canceled by {}{} · {}",
        escape(app),
        escape(name),
        mention(user),
        why,
        link(
            &deck_link(&state.settings().spinnaker.deck_url, app, &req.execution_id),
            "Open in Deck"
        ),
    );
    // Posting waits on Slack and on our per-channel pacing: a job's work, never the ack's.
    if let Some(channel) = interaction.channel_id() {
        let job = NewJob::new(
            super::JOB_ANNOUNCE,
            &super::Announcement {
                run_id: None,
                channel: Some(channel.to_string()),
                user: user.to_string(),
                text: text.clone(),
            },
        )
        .dedup(format!(
            "{}:cancel:{}",
            super::JOB_ANNOUNCE,
            req.execution_id
        ));
        match state.jobs().enqueue(job).await {
            Ok(_) => {
                return Ack::Message(Reply {
                    delete_original: Some(true),
                    ..Reply::ephemeral("Canceled.")
                });
            }
            Err(e) => {
                tracing::warn!(error = %crate::store::short_db_error(&e), "queueing the cancel notice failed; answering in place")
            }
        }
    }
    Ack::Message(Reply::in_channel(text).replace_original())
}

/// Gate did not cancel it: audit, and say why in place of the confirmation.
async fn not_canceled(state: &AppState, user: &str, subject: &str, e: &GateError) -> Ack {
    state
        .audit(
            FEATURE,
            "cancel",
            user,
            subject,
            "failed",
            json!({"gate": e.to_string()}),
        )
        .await;
    Ack::Message(
        Reply::ephemeral(mrkdwn!(
            "Spinnaker did not cancel it: {}",
            escape(&e.to_string()),
        ))
        .replace_original(),
    )
}
