//! "Create channel": a dedicated incident channel (`<prefix>-<system>-<yymmdd>`, with `-2`, `-3`
//! … when the name is taken), the assignees invited, and linked from the announcement and its
//! thread. The button only queues the job (deduplicated per outage), so double clicks and
//! retries create one channel; the posts about it are jobs of their own, keyed per outage, so a
//! retry after a partial failure finishes what is left without posting twice.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::modal::outage_for_action;
use super::payload::OutageRef;
use super::{JOB_CHANNEL, JOB_CHANNEL_NOTE, JOB_RENDER, model};
use crate::jobs::{Job, JobError, NewJob};
use crate::mrkdwn;
use crate::registry::{ActionHandler, JobHandler, SlackCtx};
use crate::slack::ack::Ack;
use crate::slack::api::{Message, SlackErrorCode};
use crate::slack::blocks::{link, mention};
use crate::slack::mrkdwn::Mrkdwn;
use crate::slack::payload::{Action, Interaction};
use crate::state::AppState;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChannelRequest {
    pub outage_id: String,
    pub by: String,
}

/// A channel name Slack accepts: lowercase letters, digits, `-` and `_`, at most 80 characters.
pub fn channel_name(prefix: &str, system: &str, started_at_ms: i64) -> String {
    let day = chrono::DateTime::from_timestamp_millis(started_at_ms)
        .unwrap_or_default()
        .format("%y%m%d")
        .to_string();
    let clean: String = system
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut stem = format!("{prefix}-{clean}");
    stem.truncate(70);
    format!("{stem}-{day}")
}

pub struct CreateChannel;

#[async_trait]
impl ActionHandler for CreateChannel {
    async fn handle(
        &self,
        cx: SlackCtx,
        _interaction: Arc<Interaction>,
        action: Action,
    ) -> anyhow::Result<Ack> {
        let state = &cx.state;
        let outage = match outage_for_action(state, &cx.user_id, &action, "create_channel").await? {
            Ok(o) => o,
            Err(ack) => return Ok(ack),
        };
        if let Some(c) = &outage.incident_channel {
            return Ok(Ack::ephemeral(mrkdwn!(
                "This outage already has {}.",
                Mrkdwn::channel(c)
            )));
        }
        let queued = state
            .jobs()
            .enqueue(
                NewJob::new(
                    JOB_CHANNEL,
                    &ChannelRequest {
                        outage_id: outage.id.clone(),
                        by: cx.user_id.clone(),
                    },
                )
                .dedup(format!("announcements:channel:{}", outage.id)),
            )
            .await?;
        state
            .audit(
                super::FEATURE,
                "create_channel",
                &cx.user_id,
                &format!("outage:{}", outage.id),
                if queued.is_some() { "ok" } else { "duplicate" },
                json!({}),
            )
            .await;
        Ok(Ack::Empty)
    }
}

pub struct ChannelJob;

#[async_trait]
impl JobHandler for ChannelJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let r: ChannelRequest = job.payload().map_err(JobError::Permanent)?;
        let db = |e: sqlx::Error| JobError::from(anyhow::anyhow!(crate::store::short_db_error(&e)));
        let Some(o) = model::load(state.db().pool(), &r.outage_id)
            .await
            .map_err(db)?
        else {
            return Ok(());
        };
        // The job is keyed per outage, so only this job (or a retry of it) gets here. A channel
        // already stored was created by an earlier attempt that failed later on: go on from there.
        let channel = match o.incident_channel.clone() {
            Some(c) => c,
            None => create_and_store(state, &o).await?,
        };
        let mut people = o.assignees();
        if !people.contains(&r.by) {
            people.push(r.by.clone());
        }
        match state.slack().conversations_invite(&channel, &people).await {
            Ok(()) => {}
            Err(e) if e.is(SlackErrorCode::Other("already_in_channel".into())) => {}
            Err(e) => return Err(e.into()),
        }
        // The posts and the message update are jobs of their own, keyed per outage, so a retry
        // of this job never posts twice.
        let mut tx = state.db().pool().begin().await.map_err(db)?;
        for note in [NoteKind::Intro, NoteKind::Thread] {
            let n = ChannelNote {
                outage_id: o.id.clone(),
                channel: channel.clone(),
                by: r.by.clone(),
                note,
            };
            state
                .jobs()
                .insert(
                    &mut *tx,
                    NewJob::new(JOB_CHANNEL_NOTE, &n)
                        .dedup(format!("announcements:channel-note:{}:{note:?}", o.id)),
                )
                .await
                .map_err(db)?;
        }
        state
            .jobs()
            .insert(
                &mut *tx,
                NewJob::new(
                    JOB_RENDER,
                    &OutageRef {
                        outage_id: o.id.clone(),
                        version: o.version,
                    },
                )
                .dedup(format!("announcements:render:{}:channel", o.id)),
            )
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        state.jobs().wake();
        Ok(())
    }
}

/// Create the channel under the first free name and store it on the outage.
async fn create_and_store(state: &AppState, o: &model::Outage) -> Result<String, JobError> {
    let db = |e: sqlx::Error| JobError::from(anyhow::anyhow!(crate::store::short_db_error(&e)));
    let settings = &state.settings().announcements;
    let base = channel_name(
        &settings.channel_prefix,
        o.fields
            .systems
            .first()
            .map(String::as_str)
            .unwrap_or("outage"),
        o.started_at,
    );
    let mut created = None;
    for n in 1..=9 {
        let name = if n == 1 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        match state.slack().conversations_create(&name).await {
            Ok(id) => {
                created = Some(id);
                break;
            }
            Err(e) if e.is(SlackErrorCode::Other("name_taken".into())) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let Some(channel) = created else {
        return Err(JobError::Permanent(anyhow::anyhow!(
            "every name from {base} to {base}-9 is taken"
        )));
    };
    sqlx::query(
        "UPDATE outages SET incident_channel = $1 WHERE id = $2 AND incident_channel IS NULL",
    )
    .bind(&channel)
    .bind(&o.id)
    .execute(state.db().pool())
    .await
    .map_err(db)?;
    Ok(channel)
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub enum NoteKind {
    /// The first message in the new channel, linking the announcement.
    Intro,
    /// The note in the announcement's thread naming the channel and who created it.
    Thread,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChannelNote {
    pub outage_id: String,
    pub channel: String,
    pub by: String,
    pub note: NoteKind,
}

/// One of the two posts about a new incident channel.
pub struct ChannelNoteJob;

#[async_trait]
impl JobHandler for ChannelNoteJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let n: ChannelNote = job.payload().map_err(JobError::Permanent)?;
        let Some(o) = model::load(state.db().pool(), &n.outage_id)
            .await
            .map_err(|e| JobError::from(anyhow::anyhow!(crate::store::short_db_error(&e))))?
        else {
            return Ok(());
        };
        let settings = &state.settings().announcements;
        match n.note {
            NoteKind::Intro => {
                let intro = match &o.permalink {
                    Some(p) => mrkdwn!(
                        "Incident channel for {} ({}).",
                        link(p, "this outage"),
                        model::system_names(settings, &o.fields.systems),
                    ),
                    None => "Incident channel for an outage.".into(),
                };
                state
                    .slack()
                    .post_message(&Message::text(&n.channel, intro))
                    .await?;
            }
            NoteKind::Thread => {
                let (Some(ch), Some(ts)) = (o.channel.clone(), o.message_ts.clone()) else {
                    return Err(JobError::retry_after(
                        anyhow::anyhow!("the announcement is not posted yet"),
                        std::time::Duration::from_millis(500),
                    ));
                };
                let text = mrkdwn!(
                    "Incident channel {} created by {}.",
                    Mrkdwn::channel(&n.channel),
                    mention(&n.by),
                );
                state
                    .slack()
                    .post_message(&Message::text(&ch, text).in_thread(&ts))
                    .await?;
            }
        }
        Ok(())
    }
}
