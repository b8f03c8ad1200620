//! Announcing maintenance in `announcements.channel`: the creation as a message, then each later
//! event (changed, started, ended, canceled) as a reply in its thread, also sent to the channel.
//!
//! [`Announcer`] notices starts and ends on its own: it runs on one replica at a time (a database
//! lease), reads the injected clock, and marks each start or end with a conditional update in the
//! same transaction that queues the post, so each is queued exactly once; the post job's dedup key
//! keeps it so across retries.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::model::{self, Maintenance};
use crate::announcements::settings::SystemEntry;
use crate::jobs::{Job, JobError};
use crate::mrkdwn;
use crate::registry::{JobHandler, Periodic};
use crate::slack::api::{Message, SlackErrorCode};
use crate::slack::blocks::{self, escape};
use crate::slack::mrkdwn::JoinMrkdwn;
use crate::slack::mrkdwn::Mrkdwn;
use crate::state::AppState;

pub const JOB_POST: &str = "maintenance.post";

/// A queued announcement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Post {
    pub id: String,
    /// `scheduled`, `updated`, `started`, `ended` or `canceled`.
    pub event: String,
    /// What changed (for `updated`).
    pub detail: Option<String>,
}

fn systems_text(catalogue: &[SystemEntry], ids: &[String]) -> Mrkdwn {
    if ids.is_empty() {
        return "none named".into();
    }
    ids.iter()
        .map(|id| {
            catalogue
                .iter()
                .find(|s| &s.id == id)
                .map(|s| s.name.as_str())
                .unwrap_or(id)
        })
        .map(escape)
        .join_mrkdwn(", ")
}

/// The announcement's text (mrkdwn, user text escaped).
pub fn text(catalogue: &[SystemEntry], m: &Maintenance, post: &Post) -> Mrkdwn {
    let title = escape(&m.title);
    let when = mrkdwn!(
        "{} – {}",
        blocks::date(m.starts_at),
        blocks::date(m.ends_at),
    );
    match post.event.as_str() {
        "scheduled" => {
            let mut t = mrkdwn!(
                ":calendar: *Scheduled maintenance: {}*\n*When:* {}\n*Systems:* {}",
                title,
                when,
                systems_text(catalogue, &m.systems),
            );
            if !m.summary.trim().is_empty() {
                t.push(mrkdwn!("\n{}", escape(&m.summary)));
            }
            let who = if m.created_by.starts_with('U') || m.created_by.starts_with('W') {
                blocks::mention(&m.created_by)
            } else {
                escape(&m.created_by)
            };
            t.push(mrkdwn!(
                "\n_Scheduled by {}. {}_",
                who,
                if m.public {
                    "Shown on the public status page."
                } else {
                    "Not shown on the public status page."
                },
            ));
            t
        }
        "updated" => mrkdwn!(
            ":pencil2: Maintenance *{}* was changed: {}. Now {}.",
            title,
            escape(post.detail.as_deref().unwrap_or("details changed")),
            when,
        ),
        "started" => mrkdwn!(
            ":construction: Maintenance *{}* has started. It is planned to end {}. Systems: {}.",
            title,
            blocks::date(m.ends_at),
            systems_text(catalogue, &m.systems),
        ),
        "ended" => mrkdwn!(":white_check_mark: Maintenance *{}* has ended.", title),
        "canceled" => mrkdwn!(":x: Maintenance *{}* ({}) was canceled.", title, when),
        other => mrkdwn!("Maintenance *{}*: {}", title, escape(other)),
    }
}

/// Posts one announcement.
pub struct PostJob;

#[async_trait]
impl JobHandler for PostJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let post: Post = job.payload().map_err(JobError::Permanent)?;
        let Some(channel) = state.settings().announcements.channel.clone() else {
            return Ok(());
        };
        let m = state
            .db()
            .maintenance(&post.id)
            .await
            .map_err(|e| JobError::from(anyhow::Error::from(e)))?
            .ok_or_else(|| {
                JobError::Permanent(anyhow::anyhow!("maintenance {} does not exist", post.id))
            })?;
        let text = text(&state.settings().announcements.systems, &m, &post);
        let mut msg =
            Message::text(&channel, &text).blocks(blocks::to_json(&[blocks::section(&text)]));
        if post.event == "scheduled" {
            if m.message_ts.is_some() {
                return Ok(()); // Posted by an earlier attempt that did not record its success.
            }
        } else if let (Some(c), Some(ts)) = (&m.channel, &m.message_ts)
            && *c == channel
        {
            msg = msg.in_thread(ts);
            msg.reply_broadcast = Some(true);
        }
        let posted = match state.slack().post_message(&msg).await {
            Ok(p) => p,
            Err(e) if e.is(SlackErrorCode::NotInChannel) && msg.thread_ts.is_none() => {
                state.slack().conversations_join(&channel).await?;
                state.slack().post_message(&msg).await?
            }
            Err(e) => return Err(e.into()),
        };
        if post.event == "scheduled" {
            model::set_message(state.db(), &m.id, &posted.channel, &posted.ts)
                .await
                .map_err(|e| JobError::from(anyhow::Error::from(e)))?;
        }
        Ok(())
    }
}

/// Announces windows that started or ended.
pub struct Announcer;

#[async_trait]
impl Periodic for Announcer {
    fn name(&self) -> &'static str {
        "maintenance.announcer"
    }
    fn interval(&self, state: &AppState) -> Option<Duration> {
        Some(Duration::from_secs(
            state.settings().maintenance.check_interval_secs.max(1),
        ))
    }
    async fn run(&self, state: &AppState) -> anyhow::Result<()> {
        announce_due(state).await.map(|_| ())
    }
}

/// One pass: queue the announcement of every start and end that is due. Returns how many.
pub async fn announce_due(state: &AppState) -> anyhow::Result<usize> {
    let now = state.now_ms();
    let mut queued = 0;
    for start in [true, false] {
        for m in state.db().maintenances_due(now, start).await? {
            let mut tx = state.db().pool().begin().await?;
            if !model::mark_announced(&mut tx, &m.id, start, now).await? {
                continue; // Another run got there first.
            }
            // A window whose end passed before its start was noticed (the service was down
            // throughout) is announced as ended only.
            let event = match (start, m.ends_at > now) {
                (true, true) => Some("started"),
                (true, false) => None,
                (false, _) => Some("ended"),
            };
            if let Some(event) = event {
                super::queue_event(state, &mut tx, &m, event, None).await?;
                queued += 1;
            }
            tx.commit().await?;
        }
    }
    if queued > 0 {
        super::after_commit(state);
    }
    Ok(queued)
}
