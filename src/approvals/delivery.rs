//! Slack delivery for approvals, as jobs: post the message, re-render it from state, tell
//! stakeholders of the outcome, add notes to its thread. Each is retried from the queue when
//! Slack is slow, down or rate-limiting, and each is idempotent (render reads the current state;
//! posting and notifying happen once per judgment and outcome).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::message::{render, status_line};
use super::model::{self, Judgment};
use super::quorum;
use super::{JOB_NOTE, JOB_RENDER, JudgmentRef, channel_for, enqueue, route_for};
use crate::jobs::{Job, JobError, NewJob};
use crate::mrkdwn;
use crate::registry::JobHandler;
use crate::slack::api::{Message, SlackErrorCode};
use crate::slack::blocks::escape;
use crate::slack::mrkdwn::Mrkdwn;
use crate::state::AppState;
use crate::store::audit::AuditEntry;

async fn load(state: &AppState, job: &Job) -> Result<Option<Judgment>, JobError> {
    let r: JudgmentRef = job.payload().map_err(JobError::Permanent)?;
    state
        .db()
        .judgment(&r.id)
        .await
        .map_err(|e| JobError::from(anyhow::Error::from(e)))
}

/// Post the judgment message to its routed channel.
pub struct PostJob;

#[async_trait]
impl JobHandler for PostJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let Some(j) = load(state, job).await? else {
            return Ok(());
        };
        if j.message_ts.is_some() {
            return enqueue(state, JOB_RENDER, &j.id, None)
                .await
                .map_err(JobError::from);
        }
        if !model::is_open(&j.state) {
            info!(judgment = %j.id, state = %j.state, "judgment decided before its message was posted; not posting");
            return Ok(());
        }
        let Some(channel) = channel_for(
            &state.settings().approvals,
            &j.application,
            &j.pipeline_name,
        ) else {
            state
                .db()
                .audit(
                    state.now_ms(),
                    AuditEntry {
                        feature: super::FEATURE,
                        action: "post",
                        actor: "system",
                        subject: &j.subject(),
                        outcome: "no_channel",
                        detail: None,
                    },
                )
                .await
                .ok();
            return Err(JobError::Permanent(anyhow::anyhow!(
                "no channel is routed for application {} (pipeline {}): set approvals.default_channel or add a route",
                j.application,
                j.pipeline_name
            )));
        };
        let progress = quorum::progress(state, &j)
            .await
            .map_err(|e| JobError::from(anyhow::Error::from(e)))?;
        let (text, blocks) = render(&j, &progress, &state.settings().spinnaker.deck_url);
        let msg = Message::text(&channel, text).blocks(blocks);
        let posted = match state.slack().post_message(&msg).await {
            Err(e) if e.is(SlackErrorCode::NotInChannel) => {
                // A public channel the bot has not joined yet: join and try once more.
                state.slack().conversations_join(&channel).await?;
                state.slack().post_message(&msg).await?
            }
            other => other?,
        };
        state
            .db()
            .set_judgment_message(&j.id, &posted.channel, &posted.ts, state.now_ms())
            .await
            .map_err(|e| JobError::from(anyhow::Error::from(e)))?;
        // The state may have moved while we posted (a fast judgment in Deck): render again if
        // what the message shows changed.
        if let Ok(Some(now)) = state.db().judgment(&j.id).await
            && (now.state != j.state
                || now.note != j.note
                || now.judge_user != j.judge_user
                || now.approvals != j.approvals)
        {
            enqueue(state, JOB_RENDER, &j.id, None).await?;
        }
        Ok(())
    }
}

/// Update the message in place from the judgment's current state.
pub struct RenderJob;

#[async_trait]
impl JobHandler for RenderJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let r: JudgmentRef = job.payload().map_err(JobError::Permanent)?;
        render_now(state, &r.id).await
    }
}

/// Render the message from the stored state. Renders may race (the click's immediate "judging"
/// update and the judge job's final one): after each update the state is read again and the
/// message re-rendered until it shows the latest state, so the last writer is never stale.
pub async fn render_now(state: &AppState, id: &str) -> Result<(), JobError> {
    let db_err = |e: sqlx::Error| JobError::from(anyhow::Error::from(e));
    let Some(mut j) = state.db().judgment(id).await.map_err(db_err)? else {
        return Ok(());
    };
    for _ in 0..5 {
        let (Some(channel), Some(ts)) = (j.channel.clone(), j.message_ts.clone()) else {
            return Ok(());
        };
        let progress = quorum::progress(state, &j).await.map_err(db_err)?;
        let (text, blocks) = render(&j, &progress, &state.settings().spinnaker.deck_url);
        state
            .slack()
            .update_message(&channel, &ts, &text, Some(&blocks))
            .await?;
        match state.db().judgment(id).await.map_err(db_err)? {
            Some(latest) if latest.updated_at != j.updated_at || latest.state != j.state => {
                j = latest
            }
            _ => return Ok(()),
        }
    }
    Ok(())
}

/// Tell stakeholders of a final outcome: a thread reply, a DM to whoever triggered the execution,
/// and the route's notify channels.
pub struct NotifyJob;

#[async_trait]
impl JobHandler for NotifyJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let Some(j) = load(state, job).await? else {
            return Ok(());
        };
        if model::is_open(&j.state) {
            return Ok(());
        }
        let deck = crate::spinnaker::deck_url(
            &state.settings().spinnaker.deck_url,
            &j.application,
            &j.execution_id,
        );
        let status = status_line(&j);
        let head = mrkdwn!(
            "*{}* › *{}* ({})",
            escape(&j.application),
            escape(&j.pipeline_name),
            escape(&j.stage_name),
        );
        let permalink = match (&j.channel, &j.message_ts) {
            (Some(c), Some(ts)) => state.slack().permalink(c, ts).await.ok(),
            _ => None,
        };
        let reference = permalink
            .as_deref()
            .map(|p| mrkdwn!(" {}.", Mrkdwn::link(p, "View the judgment")))
            .unwrap_or_else(|| mrkdwn!(" {}.", Mrkdwn::link(&deck, "Open in Deck")));

        // Each recipient is its own job, so one failing recipient does not repeat the others.
        let mut notes: Vec<(String, Option<String>, Mrkdwn)> = Vec::new();
        if let (Some(c), Some(ts)) = (&j.channel, &j.message_ts) {
            notes.push((c.clone(), Some(ts.clone()), status.clone()));
        }
        if let Some(route) = route_for(
            &state.settings().approvals,
            &j.application,
            &j.pipeline_name,
        ) {
            for c in &route.notify_channels {
                notes.push((
                    c.clone(),
                    None,
                    mrkdwn!("{}: {}{}", head, status, reference),
                ));
            }
        }
        if state.settings().approvals.notify_trigger_user
            && let Some(email) = j.trigger_user.as_deref().filter(|e| e.contains('@'))
        {
            match state.slack().lookup_by_email(email).await {
                Ok(Some(user)) => {
                    let dm = state.slack().open_dm(&user.id).await?;
                    notes.push((
                        dm,
                        None,
                        mrkdwn!("Your execution {}: {}{}", head, status, reference),
                    ));
                }
                Ok(None) => {
                    info!(judgment = %j.id, "the trigger user's email has no Slack account; no DM")
                }
                Err(e) if e.is_transient() => return Err(e.into()),
                Err(e) => warn!(error = %e, "cannot look up the trigger user in Slack; no DM"),
            }
        }
        for (i, (channel, thread, text)) in notes.into_iter().enumerate() {
            let note = Note {
                id: j.id.clone(),
                channel,
                thread_ts: thread,
                text,
            };
            state
                .jobs()
                .enqueue(
                    NewJob::new(JOB_NOTE, &note)
                        .dedup(format!("{}:{}:{}:{i}", JOB_NOTE, job.id, j.state)),
                )
                .await
                .map_err(|e| JobError::from(anyhow::Error::from(e)))?;
        }
        Ok(())
    }
}

/// A message to post (in a judgment's thread, a channel, or a DM).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Note {
    pub id: String,
    pub channel: String,
    pub thread_ts: Option<String>,
    pub text: Mrkdwn,
}

impl Note {
    /// A note in the judgment's thread, if its message was posted.
    pub fn in_thread(j: &Judgment, text: Mrkdwn) -> Option<Note> {
        Some(Note {
            id: j.id.clone(),
            channel: j.channel.clone()?,
            thread_ts: Some(j.message_ts.clone()?),
            text,
        })
    }
}

/// Post one note.
pub struct NoteJob;

#[async_trait]
impl JobHandler for NoteJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let note: Note = job.payload().map_err(JobError::Permanent)?;
        let mut msg = Message::text(&note.channel, &note.text);
        if let Some(ts) = &note.thread_ts {
            msg = msg.in_thread(ts);
        }
        match state.slack().post_message(&msg).await {
            Ok(_) => Ok(()),
            Err(e) if e.is(SlackErrorCode::NotInChannel) && note.thread_ts.is_none() => {
                state.slack().conversations_join(&note.channel).await?;
                state.slack().post_message(&msg).await?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Queue a note in the judgment's thread, once per `key`.
pub async fn thread_note(
    state: &AppState,
    j: &Judgment,
    key: &str,
    text: Mrkdwn,
) -> anyhow::Result<()> {
    if let Some(note) = Note::in_thread(j, text) {
        state
            .jobs()
            .enqueue(NewJob::new(JOB_NOTE, &note).dedup(format!("{JOB_NOTE}:{}:{key}", j.id)))
            .await?;
    }
    Ok(())
}
