//! The Home tab, "waiting for you": on `app_home_opened` slackops publishes (`views.publish`) the
//! judgments waiting that this person may judge — application, pipeline, stage, how long it has
//! waited, the quorum's progress, a link to the channel message — with Approve and Reject buttons
//! that are the channel message's own (same action ids, same confirmations), so a click goes
//! through the same authorization, claim and quorum ([`super::click`]). Then the pipelines this
//! person started from Slack in the last 24 hours, with their state.
//!
//! Publishing is a job, never done inside the event's ack; judging from the Home tab queues a
//! new publish for the person who acted, with the answer a click in a channel would have had on
//! top (a Home tab has no `response_url`).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use slack_morphism::prelude::{SlackBlock, SlackBlockButtonStyle};

use super::message::{ACTION_APPROVE, ACTION_REJECT, progress_text};
use super::model::{self, Judgment};
use super::{JOB_HOME, policy, quorum};
use crate::jobs::{Job, JobError, NewJob};
use crate::mrkdwn;
use crate::registry::{EventHandler, JobHandler};
use crate::slack::blocks::{self, escape, link};
use crate::slack::mrkdwn::Mrkdwn;
use crate::slack::payload::EventCallback;
use crate::state::AppState;

/// Judgments shown at most: two blocks each, within a Home tab's 100 blocks.
pub const MAX_SHOWN: usize = 40;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// The publish job's payload: whose Home tab, and what to say on top.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Publish {
    pub user: String,
    pub notice: Option<Mrkdwn>,
}

/// `app_home_opened`: queue a publish of the person's Home tab.
pub struct HomeOpened;

#[async_trait]
impl EventHandler for HomeOpened {
    async fn handle(&self, state: AppState, event: EventCallback) -> anyhow::Result<()> {
        let tab = event
            .event
            .get("tab")
            .and_then(Value::as_str)
            .unwrap_or("home");
        match event.user() {
            Some(user) if tab == "home" => queue(&state, user, None).await,
            _ => Ok(()),
        }
    }
}

/// Queue a publish of `user`'s Home tab.
pub async fn queue(state: &AppState, user: &str, notice: Option<Mrkdwn>) -> anyhow::Result<()> {
    let p = Publish {
        user: user.to_string(),
        notice,
    };
    state.jobs().enqueue(NewJob::new(JOB_HOME, &p)).await?;
    Ok(())
}

pub struct PublishJob;

#[async_trait]
impl JobHandler for PublishJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let p: Publish = job.payload().map_err(JobError::Permanent)?;
        let workspace = state.slack().auth_test().await?.url;
        let view = build(state, &p.user, p.notice.as_ref(), &workspace).await?;
        state.slack().views_publish(&p.user, &view).await?;
        Ok(())
    }
}

/// The Home tab of `user` (`workspace` is the workspace's URL, for links to messages).
pub async fn build(
    state: &AppState,
    user: &str,
    notice: Option<&Mrkdwn>,
    workspace: &str,
) -> anyhow::Result<Value> {
    let waiting = waiting_for(state, user).await?;
    let now = state.now_ms();
    let mut out: Vec<SlackBlock> = Vec::new();
    if let Some(n) = notice {
        out.push(blocks::section(n));
    }
    out.push(blocks::header("Waiting for you"));
    if waiting.is_empty() {
        out.push(blocks::context("No Manual Judgment is waiting for you."));
    }
    for j in waiting.iter().take(MAX_SHOWN) {
        let progress = quorum::progress(state, j).await?;
        out.push(blocks::section(judgment_text(j, &progress, now, workspace)));
        out.push(buttons(j));
    }
    if waiting.len() > MAX_SHOWN {
        out.push(blocks::context(&mrkdwn!(
            "…and {} more; `/spinnaker pending` lists them all.",
            waiting.len() - MAX_SHOWN,
        )));
    }
    out.push(blocks::divider());
    out.push(blocks::header("Your pipelines (last 24 hours)"));
    out.push(blocks::section(&runs_text(state, user, now).await?));
    Ok(serde_json::json!({"type": "home", "blocks": blocks::to_json(&out)}))
}

/// Awaiting judgments `user` may judge (the same policy as a click), oldest first.
async fn waiting_for(state: &AppState, user: &str) -> anyhow::Result<Vec<Judgment>> {
    let mut open = state
        .db()
        .judgments_in_state(Some(model::AWAITING), 500)
        .await?;
    open.sort_by_key(|j| j.created_at);
    let who = state.authz().identity(user).await?;
    let mut out = Vec::new();
    for j in open {
        // "stop": four-eyes forbids only approving, and the trigger user may still reject.
        if policy::check(state, &j.info(), &who, "stop").await?.is_ok() {
            out.push(j);
        }
    }
    Ok(out)
}

/// One judgment: where, how long it has waited, the quorum, and a link to its message.
fn judgment_text(j: &Judgment, progress: &quorum::Progress, now: i64, workspace: &str) -> Mrkdwn {
    let mut text = mrkdwn!(
        "*{}* › *{}* — stage *{}*\nWaiting for {}",
        escape(&j.application),
        escape(&j.pipeline_name),
        escape(&j.stage_name),
        waited(now - j.created_at),
    );
    if progress.need > 1 || !progress.approvals.is_empty() {
        text.push(" · ");
        text.push(progress_text(progress));
    }
    if let (Some(c), Some(ts)) = (&j.channel, &j.message_ts) {
        text.push(" · ");
        text.push(link(&permalink(workspace, c, ts), "the message"));
    }
    text
}

/// A message's permalink in Slack's documented form, `<workspace>/archives/<channel>/p<ts digits>`.
fn permalink(workspace: &str, channel: &str, ts: &str) -> String {
    let base = if workspace.is_empty() {
        "https://slack.com/"
    } else {
        workspace
    };
    format!(
        "{}/archives/{channel}/p{}",
        base.trim_end_matches('/'),
        ts.replace('.', "")
    )
}

fn waited(ms: i64) -> String {
    let mins = ms.max(0) / 60_000;
    match mins {
        0 => "less than a minute".into(),
        1..=59 => format!("{mins} min"),
        _ => format!("{} h {} min", mins / 60, mins % 60),
    }
}

/// Approve and Reject, exactly the channel message's buttons (and confirmations).
fn buttons(j: &Judgment) -> SlackBlock {
    let stage = escape(&j.stage_name);
    let target = mrkdwn!(
        "*{}* › *{}*",
        escape(&j.application),
        escape(&j.pipeline_name),
    );
    let approve = blocks::button(ACTION_APPROVE, "Approve", &j.id)
        .with_style(SlackBlockButtonStyle::Primary)
        .with_confirm(blocks::confirm(
            "Approve this judgment?",
            &mrkdwn!("Spinnaker will continue {} past *{}*.", target, stage),
            "Approve",
            "Cancel",
        ));
    let reject = blocks::button(ACTION_REJECT, "Reject", &j.id)
        .with_style(SlackBlockButtonStyle::Danger)
        .with_confirm(
            blocks::confirm(
                "Reject this judgment?",
                &mrkdwn!("Spinnaker will stop {} at *{}*.", target, stage),
                "Reject",
                "Cancel",
            )
            .with_style("danger".into()),
        );
    blocks::actions(
        &format!("approvals_home_{}", j.id),
        vec![approve.into(), reject.into()],
    )
}

/// The pipelines `user` started from Slack in the last 24 hours, newest first.
async fn runs_text(state: &AppState, user: &str, now: i64) -> anyhow::Result<Mrkdwn> {
    let runs: Vec<(String, String, String, String, i64)> = sqlx::query_as(
        "SELECT execution_id, application, pipeline_name, status, started_at FROM pipeline_runs
         WHERE started_by = $1 AND started_at >= $2 ORDER BY started_at DESC LIMIT 15",
    )
    .bind(user)
    .bind(now - DAY_MS)
    .fetch_all(state.db().pool())
    .await?;
    if runs.is_empty() {
        return Ok("You started no pipeline from Slack in the last 24 hours.".into());
    }
    let deck = &state.settings().spinnaker.deck_url;
    let lines: Vec<Mrkdwn> = runs
        .iter()
        .map(|(id, app, pipeline, status, started)| {
            mrkdwn!(
                "• *{}* › *{}* — {} · started {}",
                escape(app),
                escape(pipeline),
                link(&crate::spinnaker::deck_url(deck, app, id), status),
                blocks::date(*started),
            )
        })
        .collect();
    Ok(Mrkdwn::join(lines, "\n").truncate(blocks::SECTION_TEXT_MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permalinks_follow_slacks_archive_form() {
        assert_eq!(
            permalink("https://acme.slack.com/", "C0APPROVE", "1700000000.000100"),
            "https://acme.slack.com/archives/C0APPROVE/p1700000000000100"
        );
        assert_eq!(waited(30_000), "less than a minute");
        assert_eq!(waited(61 * 60_000), "1 h 1 min");
    }
}
