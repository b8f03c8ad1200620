//! `/spinnaker approve <execution id | Deck URL> [input]` and
//! `/spinnaker reject <execution id | Deck URL> [reason]`: judging by command.
//!
//! Registered as subcommands of the pipelines' command, so neither feature imports the other's
//! handlers. A command goes through exactly what a click does ([`super::click::decide`]): the
//! same authorization, claim, quorum and outcome, and the channel message is updated the same
//! way; only the answer differs, and it is private. When the execution has several waiting
//! judgments (parallel branches) the answer lists them with their buttons instead of guessing.

use async_trait::async_trait;
use slack_morphism::prelude::{SlackBlock, SlackBlockButtonStyle};

use super::click::{Decided, Request, decide};
use super::message::{ACTION_APPROVE, ACTION_REJECT};
use super::model::Judgment;
use crate::mrkdwn;
use crate::pipelines::parse::{execution_id, words};
use crate::registry::{CommandHandler, SlackCtx};
use crate::slack::ack::{Ack, Reply};
use crate::slack::blocks::{self, escape};
use crate::slack::mrkdwn::Mrkdwn;
use crate::slack::payload::SlashCommand;
use crate::state::AppState;

/// `approve` (`continue`) or `reject` (`stop`).
pub struct JudgeCommand {
    pub decision: &'static str,
}

#[async_trait]
impl CommandHandler for JudgeCommand {
    async fn handle(&self, cx: SlackCtx, cmd: SlashCommand) -> anyhow::Result<Ack> {
        let verb = self.verb();
        let (target, rest) = match target_and_rest(&cmd.text) {
            Ok(t) => t,
            Err(e) => {
                return Ok(Ack::ephemeral(mrkdwn!(
                    ":warning: {}\n{}",
                    e,
                    self.usage(&cmd),
                )));
            }
        };
        let open = open_of(&cx.state, &target).await?;
        let j = match open.as_slice() {
            [] => {
                return Ok(Ack::ephemeral(mrkdwn!(
                    "No Manual Judgment of execution `{}` is waiting in slackops, so there is nothing to {}. `{} pending` lists the waiting ones.",
                    escape(&target),
                    verb,
                    cmd.command,
                )));
            }
            [one] => one,
            several => return Ok(choose(several, verb)),
        };
        let (chosen, reason) = match self.decision {
            "continue" => (rest, None),
            _ => (None, rest),
        };
        let req = Request {
            user: &cx.user_id,
            id: &j.id,
            decision: self.decision,
            chosen,
            reason,
        };
        Ok(Ack::ephemeral(answer(
            &decide(&cx.state, &req).await?,
            j,
            verb,
        )))
    }
}

impl JudgeCommand {
    fn verb(&self) -> &'static str {
        if self.decision == "continue" {
            "approve"
        } else {
            "reject"
        }
    }
    fn usage(&self, cmd: &SlashCommand) -> String {
        let extra = if self.decision == "continue" {
            "[input]"
        } else {
            "[reason]"
        };
        format!(
            "Usage: `{} {} <execution id | Deck URL> {extra}`",
            cmd.command,
            self.verb()
        )
    }
}

/// The execution (first word, an id or a Deck URL) and the rest of the text (the input, or the
/// reason), if any.
fn target_and_rest(text: &str) -> Result<(String, Option<String>), String> {
    let w = words(text)?;
    let Some(target) = w.get(1) else {
        return Err("give the execution id or its Deck URL.".into());
    };
    let id = execution_id(target)?;
    let rest = w[2..].join(" ");
    Ok((id, (!rest.trim().is_empty()).then_some(rest)))
}

/// The execution's judgments waiting for a decision (being judged ones too, so the answer can
/// say who is judging).
async fn open_of(state: &AppState, execution: &str) -> anyhow::Result<Vec<Judgment>> {
    let mut open = state.db().open_judgments_of(execution).await?;
    open.sort_by(|a, b| a.stage_start.cmp(&b.stage_start).then(a.id.cmp(&b.id)));
    Ok(open)
}

/// Several judgments wait in one execution: list them, each with its buttons.
fn choose(several: &[Judgment], verb: &str) -> Ack {
    let head = mrkdwn!(
        "This execution has {} Manual Judgments waiting (parallel branches). Choose the one to {}:",
        several.len(),
        verb,
    );
    let mut out = vec![blocks::section(&head)];
    for j in several.iter().take(20) {
        out.push(blocks::section(&mrkdwn!(
            "*{}* › *{}* — stage *{}*",
            escape(&j.application),
            escape(&j.pipeline_name),
            escape(&j.stage_name),
        )));
        out.push(buttons(j));
    }
    Ack::Message(Reply::ephemeral(head).blocks(blocks::to_json(&out)))
}

/// Approve and Reject for one judgment, with the same confirmations as the channel message.
fn buttons(j: &Judgment) -> SlackBlock {
    let stage = escape(&j.stage_name);
    let approve = blocks::button(ACTION_APPROVE, "Approve", &j.id)
        .with_style(SlackBlockButtonStyle::Primary)
        .with_confirm(blocks::confirm(
            "Approve this judgment?",
            &mrkdwn!("Spinnaker will continue past *{}*.", stage),
            "Approve",
            "Cancel",
        ));
    let reject = blocks::button(ACTION_REJECT, "Reject", &j.id)
        .with_style(SlackBlockButtonStyle::Danger)
        .with_confirm(
            blocks::confirm(
                "Reject this judgment?",
                &mrkdwn!("Spinnaker will stop at *{}*.", stage),
                "Reject",
                "Cancel",
            )
            .with_style("danger".into()),
        );
    blocks::actions(
        &format!("approvals_choose_{}", j.id),
        vec![approve.into(), reject.into()],
    )
}

/// The private answer to a command.
fn answer(decided: &Decided, j: &Judgment, verb: &str) -> Mrkdwn {
    let target = mrkdwn!(
        "*{}* › *{}* (stage *{}*)",
        escape(&j.application),
        escape(&j.pipeline_name),
        escape(&j.stage_name),
    );
    let place = match &j.channel {
        Some(c) => mrkdwn!(" The message in {} shows the outcome.", Mrkdwn::channel(c)),
        None => Mrkdwn::default(),
    };
    match decided {
        Decided::Claimed if verb == "approve" => {
            mrkdwn!(":arrows_counterclockwise: Approving {}.{}", target, place)
        }
        Decided::Claimed => mrkdwn!(":arrows_counterclockwise: Rejecting {}.{}", target, place),
        other => mrkdwn!("{}: {}", target, other.text().unwrap_or_default()),
    }
}
