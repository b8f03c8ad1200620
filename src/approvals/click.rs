//! A decision on a judgment — a click on Approve or Reject in the message or the Home tab, or
//! `/spinnaker approve|reject`: authorize, count or claim, acknowledge.
//!
//! A rejection claims at once; an approval is counted towards the quorum ([`super::quorum`]) and
//! the one completing it claims. The claim is one conditional `UPDATE … WHERE state =
//! 'awaiting'`, committed together with the job that will judge: two people deciding at the same
//! moment, on one replica or two, get one claim, and the loser is told who is judging. The
//! message is re-rendered at once (progress, or "approving… by @user" without buttons).

use std::sync::Arc;

use async_trait::async_trait;
use tracing::{Instrument, info, warn};

use super::message::{
    ACTION_APPROVE, ACTION_INPUT, ACTION_REJECT, DECIDE_BLOCK, slack_date, status_line,
};
use super::model::{self, Judgment};
use super::quorum::{self, Counted};
use super::{FEATURE, JOB_RENDER, delivery, enqueue, policy};
use crate::authz::Identity;
use crate::mrkdwn;
use crate::registry::{ActionHandler, SlackCtx};
use crate::slack::ack::Ack;
use crate::slack::blocks::{escape, mention, truncate};
use crate::slack::choices;
use crate::slack::mrkdwn::Mrkdwn;
use crate::slack::payload::{Action, Interaction};
use crate::state::AppState;

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
        let req = Request {
            user: &cx.user_id,
            id,
            decision,
            chosen: interaction.message_value(DECIDE_BLOCK, ACTION_INPUT),
            reason: None,
        };
        let decided = decide(&cx.state, &req).await?;
        if interaction.container.as_ref().map(|c| c.kind.as_str()) == Some("view") {
            // From the Home tab: no response_url to answer on. The person's Home tab is
            // published again, showing the judgment's new state and the answer on top.
            super::home::queue(&cx.state, &cx.user_id, decided.text()).await?;
            return Ok(Ack::Empty);
        }
        Ok(match decided {
            Decided::Claimed => Ack::Empty,
            other => Ack::ephemeral(other.text().unwrap_or_default()),
        })
    }
}

/// A decision asked for, by a click (message or Home tab) or a command.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub user: &'a str,
    pub id: &'a str,
    /// `continue` or `stop`.
    pub decision: &'a str,
    /// The judgment input chosen, if any.
    pub chosen: Option<String>,
    /// Why (a rejection's reason from the command).
    pub reason: Option<String>,
}

/// What became of a decision.
#[derive(Debug, Clone)]
pub enum Decided {
    /// Claimed: the judge job is queued and the message shows it.
    Claimed,
    /// An approval counted towards the quorum.
    Counted { have: i64, need: i64 },
    /// Refused, lost, repeated or not counted: what to tell the person, privately.
    Told(Mrkdwn),
}

impl Decided {
    /// What to tell the person privately (`None` when the message says it all).
    pub fn text(&self) -> Option<Mrkdwn> {
        match self {
            Decided::Claimed => None,
            Decided::Counted { have, need } => Some(mrkdwn!(
                ":ballot_box_with_check: Your approval is counted: {} of {}. Spinnaker is told once {} more {} approved.",
                have,
                need,
                need - have,
                if need - have == 1 {
                    "person has"
                } else {
                    "people have"
                },
            )),
            Decided::Told(t) => Some(t.clone()),
        }
    }
}

/// A decision on a judgment: refused, lost to someone else's, counted towards the quorum, or
/// claimed (and the judge job queued). Never waits on Slack.
pub async fn decide(state: &AppState, req: &Request<'_>) -> anyhow::Result<Decided> {
    let verb = if req.decision == "continue" {
        "approve"
    } else {
        "reject"
    };
    let Some(j) = state.db().judgment(req.id).await? else {
        return Ok(Decided::Told(
            "slackops does not know this judgment any more. Open the execution in Deck to judge it."
                .into(),
        ));
    };
    if let Some(answer) = not_awaiting(&j) {
        return Ok(Decided::Told(answer));
    }
    let info = j.info();
    let who = state.authz().identity(req.user).await?;

    if let Err(reason) = policy::check(state, &info, &who, req.decision).await? {
        return Ok(Decided::Told(
            refuse(state, &j, req.user, verb, &who, &reason).await,
        ));
    }
    let input = match chosen_input(
        req.chosen.as_deref(),
        &info.judgment_inputs,
        j.quorum_input.as_deref(),
        req.decision,
    ) {
        Ok(input) => input,
        Err(answer) => return Ok(Decided::Told(answer)),
    };
    if req.decision == "continue" {
        return approve(state, &j, req.user, &who, input.as_deref()).await;
    }
    if let Some(lost) = claim(state, &j, req, &who, input.as_deref()).await? {
        return Ok(Decided::Told(lost));
    }
    state
        .audit(
            FEATURE,
            verb,
            req.user,
            &j.subject(),
            "claimed",
            serde_json::json!({"input": input, "email": who.email, "reason": req.reason}),
        )
        .await;
    show_now(state, &j.id);
    Ok(Decided::Claimed)
}

/// An approval: counted towards the quorum, and the claim when it completes it.
async fn approve(
    state: &AppState,
    j: &Judgment,
    user: &str,
    who: &Identity,
    input: Option<&str>,
) -> anyhow::Result<Decided> {
    let need = quorum::required(
        &state.settings().approvals,
        &j.application,
        &j.pipeline_name,
    );
    let a = quorum::Approve {
        user,
        user_name: &who.name,
        input,
        need,
        now: state.now_ms(),
    };
    let counted = quorum::approve(state, j, &a).await?;
    let (outcome, detail) = match &counted {
        Counted::Claimed => (
            "claimed",
            serde_json::json!({"input": input, "email": who.email, "need": need}),
        ),
        Counted::Counted { have, need } => (
            "counted",
            serde_json::json!({"input": input, "email": who.email, "have": have, "need": need}),
        ),
        _ => (
            "not_counted",
            serde_json::json!({"input": input, "email": who.email}),
        ),
    };
    state
        .audit(FEATURE, "approve", user, &j.subject(), outcome, detail)
        .await;
    Ok(match counted {
        Counted::Claimed => {
            show_now(state, &j.id);
            Decided::Claimed
        }
        Counted::Counted { have, need } => {
            show_now(state, &j.id);
            Decided::Counted { have, need }
        }
        Counted::Repeat { have, need } => Decided::Told(mrkdwn!(
            "You have already approved this judgment; your approval counts once ({} of {}). Nothing changed.",
            have,
            need,
        )),
        Counted::OtherInput { fixed } => Decided::Told(mrkdwn!(
            "The approvals of this judgment are for the input *{}*, chosen by the first approval. Choose *{}* to approve it; nothing was counted.",
            escape(&fixed),
            escape(&fixed),
        )),
        Counted::NotAwaiting => Decided::Told(lost_text(state, &j.id).await?),
    })
}

/// What to tell someone clicking a judgment that is no longer awaiting a decision (someone is
/// judging it, or it is closed); `None` while it awaits one.
fn not_awaiting(j: &Judgment) -> Option<Mrkdwn> {
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
                .map(|t| mrkdwn!(" (since {})", slack_date(t)))
                .unwrap_or_default();
            Some(mrkdwn!(
                "{} is already {} this judgment{}. Nothing was sent for your click.",
                judge_of(j),
                doing,
                since,
            ))
        }
        _ => Some(mrkdwn!(
            "This judgment is already closed: {}",
            status_line(j),
        )),
    }
}

/// The policy said no: audit it and tell the person why.
async fn refuse(
    state: &AppState,
    j: &Judgment,
    user: &str,
    verb: &str,
    who: &Identity,
    reason: &Mrkdwn,
) -> Mrkdwn {
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
    mrkdwn!(":no_entry: {} Nothing was sent to Spinnaker.", reason)
}

/// The judgment input of a decision, checked against the stage's inputs and the input the first
/// approval fixed: `Ok(None)` when the stage has none (or a rejection without one); `Err` with
/// the answer when it is missing, not one of them, or not the fixed one.
fn chosen_input(
    chosen: Option<&str>,
    inputs: &[String],
    fixed: Option<&str>,
    decision: &str,
) -> Result<Option<String>, Mrkdwn> {
    let listed = || Mrkdwn::join(inputs.iter().map(|i| mrkdwn!("`{}`", i)), ", ");
    let approving = decision == "continue";
    // A menu option carries a reference to its input (see `message::input_select`), a command the
    // text itself: either way the exact text of the input is what reaches Gate.
    let chosen = match chosen {
        Some(c) if !inputs.is_empty() => match choices::resolve(c, inputs) {
            Some(input) => Some(input),
            None => {
                return Err(mrkdwn!(
                    "`{}` is not one of this stage's judgment inputs ({}). Choose one from the list, then press the button again.",
                    escape(&truncate(c, 150)),
                    listed(),
                ));
            }
        },
        other => other,
    };
    match (chosen, inputs.is_empty(), fixed) {
        (Some(c), true, _) => Err(mrkdwn!(
            "This stage has no judgment inputs, so `{}` cannot be chosen. Approve without one.",
            escape(&truncate(c, 150)),
        )),
        (None, true, _) => Ok(None),
        (Some(c), false, Some(f)) if approving && c != f => Err(mrkdwn!(
            "The approvals of this judgment are for the input *{}*, chosen by the first approval. Choose *{}* to approve it; nothing was counted.",
            escape(f),
            escape(f),
        )),
        (Some(c), false, _) => Ok(Some(c.to_string())),
        (None, false, Some(f)) if approving => Ok(Some(f.to_string())),
        (None, false, _) if approving => Err(mrkdwn!(
            "This stage asks for a judgment input. Choose one of {} in the message, then press Approve.",
            listed(),
        )),
        (None, false, _) => Ok(None),
    }
}

/// Claim the judgment for a rejection and queue the judge job in the same transaction.
/// `Some(answer)` when someone else's claim won (or the judgment closed meanwhile): nothing was
/// queued.
async fn claim(
    state: &AppState,
    j: &Judgment,
    req: &Request<'_>,
    who: &Identity,
    input: Option<&str>,
) -> anyhow::Result<Option<Mrkdwn>> {
    let now = state.now_ms();
    let mut tx = state.db().pool().begin().await?;
    let claim = model::Claim {
        id: &j.id,
        user: req.user,
        user_name: &who.name,
        decision: req.decision,
        input,
        reason: req.reason.as_deref(),
        now,
    };
    if !state.db().claim_judgment(&mut *tx, &claim).await? {
        tx.rollback().await?;
        return Ok(Some(lost_text(state, &j.id).await?));
    }
    quorum::queue_judge(state, &mut tx, &j.id, now).await?;
    tx.commit().await?;
    state.jobs().wake();
    Ok(None)
}

/// What to tell someone whose decision lost to another claim (or to the judgment closing).
async fn lost_text(state: &AppState, id: &str) -> anyhow::Result<Mrkdwn> {
    Ok(match state.db().judgment(id).await? {
        Some(l) if l.state == model::JUDGING => mrkdwn!(
            "{} is already judging this. Nothing was sent for your click.",
            judge_of(&l),
        ),
        Some(l) => mrkdwn!("This judgment is already closed: {}", status_line(&l)),
        None => "This judgment is gone.".into(),
    })
}

/// Who holds the claim, as a mention (or "slackops" for an expiry).
fn judge_of(j: &Judgment) -> Mrkdwn {
    match j.judge_user.as_deref() {
        Some(u) => mention(u),
        None => j
            .judge_name
            .as_deref()
            .map(escape)
            .unwrap_or_else(|| "someone".into()),
    }
}

/// Show the new state now (the quorum's progress, or "approving… by @user" without buttons), beside the ack rather than before it so a
/// slow Slack cannot delay the ack; the judge job renders again when done.
fn show_now(state: &AppState, id: &str) {
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
