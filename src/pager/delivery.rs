//! Slack delivery for incidents, as jobs: post the message once, and update it in place from the
//! stored state. Both are retried from the queue when Slack is slow, down or rate-limiting, and
//! both are idempotent: posting happens once per incident (the job's dedup key, and the stored
//! `message_ts`), and a render shows whatever the row says now.

use async_trait::async_trait;

use super::message::{people, render};
use super::model::Incident;
use super::{IncidentRef, JOB_RENDER};
use crate::jobs::{Job, JobError, NewJob};
use crate::registry::JobHandler;
use crate::slack::api::{Message, SlackErrorCode};
use crate::state::AppState;

fn db_err(e: sqlx::Error) -> JobError {
    JobError::from(anyhow::Error::from(e))
}

async fn load(state: &AppState, job: &Job) -> Result<Option<Incident>, JobError> {
    let r: IncidentRef = job.payload().map_err(JobError::Permanent)?;
    state.db().pager_incident(&r.id).await.map_err(db_err)
}

/// Queue a render of the incident's message.
pub async fn queue_render(state: &AppState, id: &str) -> anyhow::Result<()> {
    let job = NewJob::new(JOB_RENDER, &IncidentRef { id: id.to_string() });
    state.jobs().enqueue(job).await?;
    Ok(())
}

/// Post the incident to its route's channel.
pub struct PostJob;

#[async_trait]
impl JobHandler for PostJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let Some(inc) = load(state, job).await? else {
            return Ok(());
        };
        if inc.message_ts.is_some() {
            return render_now(state, &inc.id).await;
        }
        let channel = inc.route().channel;
        let (text, blocks) = render(&inc, &people(state, &inc).await);
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
            .pager_set_message(&inc.id, &posted.channel, &posted.ts, state.now_ms())
            .await
            .map_err(db_err)?;
        // The incident may have moved on while we posted: show the latest state.
        if let Some(now) = state.db().pager_incident(&inc.id).await.map_err(db_err)?
            && now.version != inc.version
        {
            render_now(state, &inc.id).await?;
        }
        Ok(())
    }
}

/// Update the message in place from the incident's current state.
pub struct RenderJob;

#[async_trait]
impl JobHandler for RenderJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let r: IncidentRef = job.payload().map_err(JobError::Permanent)?;
        render_now(state, &r.id).await
    }
}

/// Render the message from the stored state. Renders may race (a click's immediate update and a
/// webhook's): after each update the row is read again and the message rendered until it shows
/// the latest version, so the last writer is never stale.
pub async fn render_now(state: &AppState, id: &str) -> Result<(), JobError> {
    let Some(mut inc) = state.db().pager_incident(id).await.map_err(db_err)? else {
        return Ok(());
    };
    for _ in 0..5 {
        let (Some(channel), Some(ts)) = (inc.channel.clone(), inc.message_ts.clone()) else {
            // Not posted yet: the post job renders the latest state when it posts.
            return Ok(());
        };
        let (text, blocks) = render(&inc, &people(state, &inc).await);
        state
            .slack()
            .update_message(&channel, &ts, &text, Some(&blocks))
            .await?;
        match state.db().pager_incident(id).await.map_err(db_err)? {
            Some(latest) if latest.version != inc.version => inc = latest,
            _ => return Ok(()),
        }
    }
    Ok(())
}
