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
use super::model::{self, Judgment};
use super::{FEATURE, JOB_JUDGE, JOB_RENDER, delivery, enqueue, policy};
use crate::authz::Identity;
use crate::jobs::NewJob;
use crate::registry::{ActionHandler, SlackCtx};
use crate::slack::ack::Ack;
use crate::slack::blocks::{escape, mention, truncate};
use crate::slack::choices;
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

/// A click on a judgment's button: refused, lost to someone else's click, or claimed (and the
/// judge job queued). The ack never waits on Slack.
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
    if let Some(answer) = not_awaiting(&j) {
        return Ok(answer);
    }
    let info = j.info();
    let who = state.authz().identity(user).await?;

    if let Err(reason) = policy::check(state, &info, &who, decision).await? {
        return Ok(refuse(state, &j, user, verb, &who, &reason).await);
    }
    let input = match chosen_input(interaction, &info.judgment_inputs, decision) {
        Ok(input) => input,
        Err(answer) => return Ok(answer),
    };
    if let Some(lost) = claim(state, &j, user, &who, decision, input.as_deref()).await? {
        return Ok(lost);
    }
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
    show_judging(state, &j.id);
    Ok(Ack::Empty)
}

/// What to tell someone clicking a judgment that is no longer awaiting a decision (someone is
/// judging it, or it is closed); `None` while it awaits one.
fn not_awaiting(j: &Judgment) -> Option<Ack> {
    match j.state.as_str() {
        model::AWAITING => None,
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
            Some(Ack::ephemeral(format!(
                "{} is already {doing} this judgment{since}. Nothing was sent for your click.",
                mention(j.judge_user.as_deref().unwrap_or("someone"))
            )))
        }
        _ => Some(Ack::ephemeral(format!(
            "This judgment is already closed: {}",
            status_line(j)
        ))),
    }
}

/// The policy said no: audit it and tell the person why.
async fn refuse(
    state: &AppState,
    j: &Judgment,
    user: &str,
    verb: &str,
    who: &Identity,
    reason: &str,
) -> Ack {
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
    Ack::ephemeral(format!(
        ":no_entry: {reason} Nothing was sent to Spinnaker."
    ))
}

/// The judgment input chosen in the message, checked against the stage's inputs: `Ok(None)` when
/// the stage has none (or a rejection without one), `Err` with the answer when it is missing or
/// not one of them.
fn chosen_input(
    interaction: &Interaction,
    inputs: &[String],
    decision: &str,
) -> Result<Option<String>, Ack> {
    let chosen = interaction.message_value(DECIDE_BLOCK, ACTION_INPUT);
    let listed = || {
        inputs
            .iter()
            .map(|i| format!("`{}`", escape(i)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (&chosen, inputs.is_empty()) {
        (_, true) => Ok(None),
        // The option carries a reference to the input (see `message::input_select`); the exact
        // text of the input is what reaches Gate.
        (Some(c), false) => match choices::resolve(c, inputs) {
            Some(input) => Ok(Some(input.to_string())),
            None => Err(Ack::ephemeral(format!(
                "`{}` is not one of this stage's judgment inputs ({}). Choose one from the list, then press the button again.",
                escape(&truncate(c, 150)),
                listed()
            ))),
        },
        (None, false) if decision == "continue" => Err(Ack::ephemeral(format!(
            "This stage asks for a judgment input. Choose one of {} in the message, then press Approve.",
            listed()
        ))),
        (None, false) => Ok(None),
    }
}

/// Claim the judgment for `user` and queue the judge job in the same transaction. `Some(answer)`
/// when someone else's claim won (or the judgment closed meanwhile): nothing was queued.
async fn claim(
    state: &AppState,
    j: &Judgment,
    user: &str,
    who: &Identity,
    decision: &str,
    input: Option<&str>,
) -> anyhow::Result<Option<Ack>> {
    let now = state.now_ms();
    let mut tx = state.db().pool().begin().await?;
    let claim = model::Claim {
        id: &j.id,
        user,
        user_name: &who.name,
        decision,
        input,
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
        return Ok(Some(Ack::ephemeral(text)));
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
    Ok(None)
}

/// Show "approving… by @user" without buttons now, beside the ack rather than before it so a
/// slow Slack cannot delay the ack; the judge job renders again when done.
fn show_judging(state: &AppState, id: &str) {
    let (st, id) = (state.clone(), id.to_string());
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
}
