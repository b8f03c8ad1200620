//! A click on Approve or Reject: authorize, claim, acknowledge.
//!
//! The claim is one conditional `UPDATE … WHERE state = 'awaiting'`, committed together with the
//! job that will judge: two people clicking at the same moment, on one replica or two, get one
//! claim, and the loser is told who is judging. The message is re-rendered at once without
//! buttons ("approving… by @user") so there is nothing left to press.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tracing::{Instrument, info, warn};

use super::message::{
    ACTION_APPROVE, ACTION_INPUT, ACTION_REJECT, DECIDE_BLOCK, slack_date, status_line,
};
use super::model::{self};
use super::{FEATURE, JOB_JUDGE, JOB_RENDER, delivery, enqueue, policy};
use crate::jobs::NewJob;
use crate::registry::{ActionHandler, SlackCtx};
use crate::slack::ack::Ack;
use crate::slack::blocks::{escape, mention};
use crate::slack::payload::{Action, Interaction};
use crate::state::AppState;

/// The judge job's payload: which claim to carry out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JudgeRequest {
    pub id: String,
    pub claimed_at: i64,
}

pub struct DecideHandler;

#[async_trait]
impl ActionHandler for DecideHandler {
    async fn handle(
        &self,
        cx: SlackCtx,
        interaction: Arc<Interaction>,
        action: Action,
    ) -> anyhow::Result<Ack> {
        let decision = match action.action_id.as_str() {
            ACTION_APPROVE => "continue",
            ACTION_REJECT => "stop",
            // Choosing an input only sets the select's state; the button press reads it.
            ACTION_INPUT => return Ok(Ack::Empty),
            _ => return Ok(Ack::Empty),
        };
        let Some(id) = action.value.as_deref() else {
            return Ok(Ack::ephemeral(
                "This button carries no judgment; it may come from an old message.",
            ));
        };
        decide(&cx.state, &cx.user_id, &interaction, id, decision).await
    }
}

async fn decide(
    state: &AppState,
    user: &str,
    interaction: &Interaction,
    id: &str,
    decision: &str,
) -> anyhow::Result<Ack> {
    let verb = if decision == "continue" {
        "approve"
    } else {
        "reject"
    };
    let Some(j) = state.db().judgment(id).await? else {
        return Ok(Ack::ephemeral(
            "slackops does not know this judgment any more. Open the execution in Deck to judge it.",
        ));
    };
    match j.state.as_str() {
        model::AWAITING => {}
        model::JUDGING => {
            let doing = if j.decision.as_deref() == Some("stop") {
                "rejecting"
            } else {
                "approving"
            };
            let since = j
                .claimed_at
                .map(|t| format!(" (since {})", slack_date(t)))
                .unwrap_or_default();
            return Ok(Ack::ephemeral(format!(
                "{} is already {doing} this judgment{since}. Nothing was sent for your click.",
                mention(j.judge_user.as_deref().unwrap_or("someone"))
            )));
        }
        _ => {
            return Ok(Ack::ephemeral(format!(
                "This judgment is already closed: {}",
                status_line(&j)
            )));
        }
    }
    let info = j.info();
    let who = state.authz().identity(user).await?;

    if let Err(reason) = policy::check(state, &info, &who, decision).await? {
        state
            .audit(
                FEATURE,
                verb,
                user,
                &j.subject(),
                "refused",
                serde_json::json!({"reason": reason, "email": who.email}),
            )
            .await;
        info!(judgment = %j.id, "judgment refused by policy");
        return Ok(Ack::ephemeral(format!(
            ":no_entry: {reason} Nothing was sent to Spinnaker."
        )));
    }

    let chosen = interaction.message_value(DECIDE_BLOCK, ACTION_INPUT);
    let input = match (&chosen, info.judgment_inputs.is_empty()) {
        (_, true) => None,
        (Some(c), false) if info.judgment_inputs.contains(c) => Some(c.clone()),
        (Some(c), false) => {
            return Ok(Ack::ephemeral(format!(
                "`{}` is not one of this stage's judgment inputs ({}). Choose one from the list, then press the button again.",
                escape(c),
                info.judgment_inputs
                    .iter()
                    .map(|i| format!("`{}`", escape(i)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        (None, false) if decision == "continue" => {
            return Ok(Ack::ephemeral(format!(
                "This stage asks for a judgment input. Choose one of {} in the message, then press Approve.",
                info.judgment_inputs
                    .iter()
                    .map(|i| format!("`{}`", escape(i)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        (None, false) => None,
    };

    let now = state.now_ms();
    let mut tx = state.db().pool().begin().await?;
    let claim = model::Claim {
        id: &j.id,
        user,
        user_name: &who.name,
        decision,
        input: input.as_deref(),
        now,
    };
    let claimed = state.db().claim_judgment(&mut *tx, &claim).await?;
    if !claimed {
        tx.rollback().await?;
        let latest = state.db().judgment(&j.id).await?;
        let text = match latest {
            Some(l) if l.state == model::JUDGING => format!(
                "{} is already judging this. Nothing was sent for your click.",
                mention(l.judge_user.as_deref().unwrap_or("someone"))
            ),
            Some(l) => format!("This judgment is already closed: {}", status_line(&l)),
            None => "This judgment is gone.".into(),
        };
        return Ok(Ack::ephemeral(text));
    }
    state
        .jobs()
        .insert(
            &mut *tx,
            NewJob::new(
                JOB_JUDGE,
                &JudgeRequest {
                    id: j.id.clone(),
                    claimed_at: now,
                },
            )
            .dedup(format!("{JOB_JUDGE}:{}:{now}", j.id))
            .max_attempts(state.settings().approvals.judge_max_attempts),
        )
        .await?;
    tx.commit().await?;
    state.jobs().wake();
    state
        .audit(
            FEATURE,
            verb,
            user,
            &j.subject(),
            "claimed",
            serde_json::json!({"input": input, "email": who.email}),
        )
        .await;

    // Show "approving… by @user" without buttons now, beside the ack rather than before it so a
    // slow Slack cannot delay the ack; the judge job renders again when done.
    let (st, id) = (state.clone(), j.id.clone());
    state.tasks().spawn(
        async move {
            if let Err(e) = delivery::render_now(&st, &id).await {
                warn!(error = %e, "showing the judging state failed; queued for retry");
                if let Err(e) = enqueue(&st, JOB_RENDER, &id, None).await {
                    warn!(error = %e, "queueing the render failed; the judge job renders the outcome");
                }
            }
        }
        .instrument(tracing::Span::current()),
    );
    Ok(Ack::Empty)
}
