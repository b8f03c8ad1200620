//! A click on Acknowledge or Resolve: authorize, claim, acknowledge.
//!
//! Who may act: the members of the route's on-call group and `pager.responders`; anyone else is
//! told privately and nothing happens. The claim is one conditional `UPDATE … WHERE claim_user IS
//! NULL`, committed together with the job that will call the provider, as for judgments: a double
//! click or two people at once, on one replica or two, give one claim, and the other person is
//! told who is acting. The message is re-rendered at once without buttons.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::{Instrument, warn};

use super::delivery::{queue_render, render_now};
use super::message::status_line;
use super::model::{self, Incident};
use super::{ACTION_ACK, ACTION_RESOLVE, FEATURE, JOB_ACT};
use crate::jobs::NewJob;
use crate::mrkdwn;
use crate::principals::Principals;
use crate::registry::{ActionHandler, SlackCtx};
use crate::slack::ack::Ack;
use crate::slack::blocks::mention;
use crate::slack::mrkdwn::Mrkdwn;
use crate::slack::payload::{Action, Interaction};
use crate::state::AppState;

/// The act job's payload: which claim to carry out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActRequest {
    pub id: String,
    pub claimed_at: i64,
}

pub struct ActHandler;

#[async_trait]
impl ActionHandler for ActHandler {
    async fn handle(
        &self,
        cx: SlackCtx,
        _interaction: Arc<Interaction>,
        action: Action,
    ) -> anyhow::Result<Ack> {
        let verb = match action.action_id.as_str() {
            ACTION_ACK => model::ACKNOWLEDGE,
            ACTION_RESOLVE => model::RESOLVE,
            _ => return Ok(Ack::Empty),
        };
        let Some(id) = action.value.as_deref() else {
            return Ok(Ack::ephemeral(
                "This button carries no incident; it may come from an old message.",
            ));
        };
        let Some(inc) = cx.state.db().pager_incident(id).await? else {
            return Ok(Ack::ephemeral(
                "slackops does not know this incident any more. Open it in your paging tool.",
            ));
        };
        act(&cx.state, &cx.user_id, &inc, verb).await
    }
}

async fn act(state: &AppState, user: &str, inc: &Incident, verb: &str) -> anyhow::Result<Ack> {
    if let Some(answer) = not_actionable(inc, verb) {
        // A stale message: bring it up to date.
        if let Err(e) = queue_render(state, &inc.id).await {
            warn!(error = %e, "queueing a render of a stale incident message failed");
        }
        return Ok(answer);
    }
    if let Err(why) = may_act(state, inc, user).await? {
        state
            .audit(FEATURE, verb, user, &inc.subject(), "refused", json!({}))
            .await;
        return Ok(Ack::ephemeral(why));
    }
    if let Some(lost) = claim(state, inc, user, verb).await? {
        return Ok(lost);
    }
    state
        .audit(FEATURE, verb, user, &inc.subject(), "claimed", json!({}))
        .await;
    show_claim(state, &inc.id);
    Ok(Ack::Empty)
}

/// What to tell someone whose click cannot act on the incident as slackops last saw it.
fn not_actionable(inc: &Incident, verb: &str) -> Option<Ack> {
    if let Some(u) = &inc.claim_user {
        return Some(Ack::ephemeral(mrkdwn!(
            "{} is already {} this incident. Nothing was sent for your click.",
            mention(u),
            doing(inc.claim_action.as_deref().unwrap_or(verb)),
        )));
    }
    let people = super::message::People {
        assignees: Vec::new(),
        status_by: inc.status_by_slack.as_deref().map(mention),
    };
    let line = || status_line(inc, &people);
    match inc.status.as_str() {
        model::RESOLVED => Some(Ack::ephemeral(mrkdwn!(
            "This incident is already resolved ({}). Nothing was sent.",
            line(),
        ))),
        model::ACKNOWLEDGED if verb == model::ACKNOWLEDGE => Some(Ack::ephemeral(mrkdwn!(
            "This incident is already acknowledged ({}). Nothing was sent.",
            line(),
        ))),
        _ => None,
    }
}

fn doing(verb: &str) -> &'static str {
    if verb == model::RESOLVE {
        "resolving"
    } else {
        "acknowledging"
    }
}

/// The members of the route's on-call group and `pager.responders` may act. `Ok(Err(why))`
/// explains a refusal; `Err` when Slack could not be asked (never "allowed").
pub async fn may_act(
    state: &AppState,
    inc: &Incident,
    user: &str,
) -> anyhow::Result<Result<(), Mrkdwn>> {
    let responders = &state.settings().pager.responders;
    let mut allowed = Principals {
        groups: inc.route().oncall_group.into_iter().collect(),
        ..Principals::default()
    };
    allowed.users.extend(responders.users.iter().cloned());
    allowed.groups.extend(responders.groups.iter().cloned());
    allowed.emails.extend(responders.emails.iter().cloned());
    allowed.everyone = responders.everyone;
    if state.authz().allows_user(&allowed, user).await? {
        return Ok(Ok(()));
    }
    let who = if allowed.is_empty() {
        "nobody: no on-call group is set for this route and `pager.responders` is empty".into()
    } else {
        state.authz().describe(&allowed).await
    };
    Ok(Err(mrkdwn!(
        ":no_entry: Only the on-call people and the configured responders may act on this incident: {}. Nothing was sent.",
        who,
    )))
}

/// Claim the incident and queue the act job in the same transaction. `Some(answer)` when someone
/// else's claim won (or the incident moved on meanwhile): nothing was queued.
async fn claim(
    state: &AppState,
    inc: &Incident,
    user: &str,
    verb: &str,
) -> anyhow::Result<Option<Ack>> {
    let now = state.now_ms();
    let mut tx = state.db().pool().begin().await?;
    if !state
        .db()
        .pager_claim(&mut *tx, &inc.id, user, verb, now)
        .await?
    {
        tx.rollback().await?;
        let latest = state.db().pager_incident(&inc.id).await?;
        let answer = latest
            .as_ref()
            .and_then(|l| not_actionable(l, verb))
            .unwrap_or_else(|| Ack::ephemeral("Someone else acted on this incident first."));
        return Ok(Some(answer));
    }
    let job = NewJob::new(
        JOB_ACT,
        &ActRequest {
            id: inc.id.clone(),
            claimed_at: now,
        },
    )
    .dedup(format!("{JOB_ACT}:{}:{now}", inc.id));
    state.jobs().insert(&mut *tx, job).await?;
    tx.commit().await?;
    state.jobs().wake();
    Ok(None)
}

/// Show "Acknowledging… by @user" without buttons now, beside the ack rather than before it so a
/// slow Slack cannot delay the ack; the act job renders again when done.
fn show_claim(state: &AppState, id: &str) {
    let (st, id) = (state.clone(), id.to_string());
    state.tasks().spawn(
        async move {
            if let Err(e) = render_now(&st, &id).await {
                warn!(error = %e, "showing the claim failed; queued for retry");
                if let Err(e) = queue_render(&st, &id).await {
                    warn!(error = %e, "queueing the render failed; the act job renders the outcome");
                }
            }
        }
        .instrument(tracing::Span::current()),
    );
}
