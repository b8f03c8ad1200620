//! The jobs that make Slack show what the store says: post and pin the announcement, update it
//! in place (and pin or unpin it), post one thread reply per change, tell affected audiences once,
//! and send reminder DMs.
//!
//! Every job is idempotent and keyed (see [`super::changes`]), so retries and replicas cannot
//! post twice: the announcement's `ts` is stored before anything else happens, a render job for
//! an older version than the stored one does nothing (a newer job is queued), and thread replies
//! and audience posts are deduplicated by their job keys.

use std::time::Duration;

use async_trait::async_trait;

use super::message;
use super::model::{self, Outage};
use super::payload::{AudienceRef, Dm, OutageRef};
use crate::jobs::{Job, JobError};
use crate::registry::JobHandler;
use crate::slack::api::{Message, Posted, SlackErrorCode};
use crate::state::AppState;

fn db(e: sqlx::Error) -> JobError {
    JobError::from(anyhow::anyhow!(crate::store::short_db_error(&e)))
}

async fn load(state: &AppState, id: &str) -> Result<Option<Outage>, JobError> {
    model::load(state.db().pool(), id).await.map_err(db)
}

/// Not yet possible because the announcement is not posted yet: try again shortly (uses an
/// attempt, so a post that failed for good does not keep this waiting forever).
fn not_posted() -> JobError {
    JobError::retry_after(
        anyhow::anyhow!("the announcement is not posted yet"),
        Duration::from_millis(500),
    )
}

/// Post, joining a public channel first when the bot is not in it yet (Slack answers
/// `not_in_channel`; `conversations.join` needs `channels:join`).
pub async fn post_joining(state: &AppState, m: &Message) -> Result<Posted, JobError> {
    match state.slack().post_message(m).await {
        Ok(p) => Ok(p),
        Err(e) if e.is(SlackErrorCode::NotInChannel) => {
            state.slack().conversations_join(&m.channel).await?;
            Ok(state.slack().post_message(m).await?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Pin while open, unpin once resolved.
async fn pin_state(state: &AppState, o: &Outage, channel: &str, ts: &str) -> Result<(), JobError> {
    if o.is_open() {
        state.slack().pins_add(channel, ts).await?;
    } else {
        state.slack().pins_remove(channel, ts).await?;
    }
    Ok(())
}

/// Post the announcement (once), store where it is, link and pin it.
pub struct PostJob;

#[async_trait]
impl JobHandler for PostJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let r: OutageRef = job.payload().map_err(JobError::Permanent)?;
        let Some(mut o) = load(state, &r.outage_id).await? else {
            return Ok(());
        };
        let settings = &state.settings().announcements;
        let Some(channel) = o.channel.clone().or_else(|| settings.channel.clone()) else {
            return Err(JobError::Permanent(anyhow::anyhow!(
                "announcements.channel is not configured"
            )));
        };
        let ts = match o.message_ts.clone() {
            Some(ts) => ts,
            None => {
                let posted = post_joining(
                    state,
                    &Message::text(&channel, message::text(&o, settings))
                        .blocks(message::blocks(&o, settings)),
                )
                .await?;
                sqlx::query(
                    "UPDATE outages SET channel = $1, message_ts = $2
                     WHERE id = $3 AND message_ts IS NULL",
                )
                .bind(&posted.channel)
                .bind(&posted.ts)
                .bind(&o.id)
                .execute(state.db().pool())
                .await
                .map_err(db)?;
                posted.ts
            }
        };
        let channel = o.channel.clone().unwrap_or(channel);
        if o.permalink.is_none() {
            let link = state.slack().permalink(&channel, &ts).await?;
            sqlx::query("UPDATE outages SET permalink = $1 WHERE id = $2")
                .bind(&link)
                .bind(&o.id)
                .execute(state.db().pool())
                .await
                .map_err(db)?;
            o.permalink = Some(link);
        }
        pin_state(state, &o, &channel, &ts).await
    }
}

/// Update the announcement in place to the stored state.
pub struct RenderJob;

#[async_trait]
impl JobHandler for RenderJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let r: OutageRef = job.payload().map_err(JobError::Permanent)?;
        let Some(mut o) = load(state, &r.outage_id).await? else {
            return Ok(());
        };
        if o.version > r.version {
            // A later change queued its own render, which shows at least as much.
            return Ok(());
        }
        let (Some(channel), Some(ts)) = (o.channel.clone(), o.message_ts.clone()) else {
            return Err(not_posted());
        };
        let settings = &state.settings().announcements;
        // A change that committed while this update was on its way may have been rendered
        // before it landed: render again until what Slack shows is the stored version.
        for _ in 0..3 {
            state
                .slack()
                .update_message(
                    &channel,
                    &ts,
                    &message::text(&o, settings),
                    Some(&message::blocks(&o, settings)),
                )
                .await?;
            pin_state(state, &o, &channel, &ts).await?;
            match load(state, &r.outage_id).await? {
                Some(now) if now.version != o.version => o = now,
                _ => break,
            }
        }
        Ok(())
    }
}

/// One thread reply for one history entry.
pub struct ThreadJob;

#[async_trait]
impl JobHandler for ThreadJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let r: OutageRef = job.payload().map_err(JobError::Permanent)?;
        let Some(o) = load(state, &r.outage_id).await? else {
            return Ok(());
        };
        let Some(h) = model::history_entry(state.db().pool(), &o.id, r.version)
            .await
            .map_err(db)?
        else {
            return Ok(());
        };
        let (Some(channel), Some(ts)) = (o.channel.clone(), o.message_ts.clone()) else {
            return Err(not_posted());
        };
        // Replies keep the order of the changes: wait for the previous change's reply.
        let previous = format!("announcements:thread:{}:{}", o.id, r.version - 1);
        if let Some(p) = state.jobs().by_dedup_key(&previous).await.map_err(db)?
            && (p.state == "pending" || p.state == "running")
        {
            return Err(JobError::NotYet(Duration::from_millis(200)));
        }
        state
            .slack()
            .post_message(&Message::text(&channel, message::change_reply(&h, &o)).in_thread(&ts))
            .await?;
        Ok(())
    }
}

/// The one post in an affected audience's channel, linking to the announcement.
pub struct AudienceJob;

#[async_trait]
impl JobHandler for AudienceJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let r: AudienceRef = job.payload().map_err(JobError::Permanent)?;
        let Some(o) = load(state, &r.outage_id).await? else {
            return Ok(());
        };
        if o.permalink.is_none() {
            return Err(not_posted());
        }
        let settings = &state.settings().announcements;
        let Some(channel) = settings
            .audiences
            .iter()
            .find(|a| a.id == r.audience)
            .and_then(|a| a.channel.clone())
        else {
            return Ok(());
        };
        post_joining(
            state,
            &Message::text(&channel, message::audience_post(&o, settings, &r.audience)),
        )
        .await?;
        Ok(())
    }
}

pub struct DmJob;

#[async_trait]
impl JobHandler for DmJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let dm: Dm = job.payload().map_err(JobError::Permanent)?;
        let channel = state.slack().open_dm(&dm.user).await?;
        let mut m = Message::text(&channel, &dm.text);
        if let Some(b) = dm.blocks {
            m = m.blocks(b);
        }
        state.slack().post_message(&m).await?;
        Ok(())
    }
}
