//! Copy a message into the announcement's thread by reacting to it with the configured emoji
//! (`announcements.reaction_emoji`, default `point_up`).
//!
//! Only messages in an outage's incident channel, or replies in its announcement's thread, are
//! copied; the same reaction anywhere else does nothing (Phoenix raised an error there). The
//! event handler only decides whether the channel can concern an outage (one query) and queues a
//! job keyed by the message, so Slack's retries and several people reacting copy it once; the
//! job reads the message (`conversations.history` / `conversations.replies`), posts author, text
//! and permalink in the thread, and records the copy in `outage_reaction_copies`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::JOB_COPY;
use super::model::{COLUMNS, Outage, OutageRow};
use crate::jobs::{Job, JobError, NewJob};
use crate::mrkdwn;
use crate::registry::{EventHandler, JobHandler};
use crate::slack::api::Message;
use crate::slack::blocks::{link, mention, truncate};
use crate::slack::mrkdwn::Mrkdwn;
use crate::slack::payload::EventCallback;
use crate::state::AppState;

/// How long after resolving an outage its thread still takes copies.
const RESOLVED_GRACE_MS: i64 = 7 * 24 * 3_600_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CopyRequest {
    pub channel: String,
    pub ts: String,
    pub by: String,
}

/// Outages a message in `channel` may belong to: those whose incident channel it is, then those
/// announced in it (open, or resolved recently).
async fn candidates(state: &AppState, channel: &str) -> Result<Vec<Outage>, sqlx::Error> {
    let since = state.now_ms() - RESOLVED_GRACE_MS;
    let rows: Vec<OutageRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM outages
         WHERE incident_channel = $1
            OR (channel = $1 AND message_ts IS NOT NULL
                AND (state = 'open' OR resolved_at >= $2))
         ORDER BY started_at DESC LIMIT 20"
    )))
    .bind(channel)
    .bind(since)
    .fetch_all(state.db().pool())
    .await?;
    let mut v: Vec<Outage> = rows.into_iter().map(Outage::from).collect();
    v.sort_by_key(|o| o.incident_channel.as_deref() != Some(channel));
    Ok(v)
}

pub struct ReactionAdded;

#[async_trait]
impl EventHandler for ReactionAdded {
    async fn handle(&self, state: AppState, event: EventCallback) -> anyhow::Result<()> {
        let e = &event.event;
        let s = |p: &str| e.pointer(p).and_then(Value::as_str).unwrap_or("");
        if s("/reaction") != state.settings().announcements.reaction_emoji
            || s("/item/type") != "message"
        {
            return Ok(());
        }
        let (channel, ts, by) = (s("/item/channel"), s("/item/ts"), s("/user"));
        if channel.is_empty() || ts.is_empty() {
            return Ok(());
        }
        let found = candidates(&state, channel).await?;
        // The announcement itself is not copied into its own thread.
        if found.is_empty() || found.iter().any(|o| o.message_ts.as_deref() == Some(ts)) {
            return Ok(());
        }
        state
            .jobs()
            .enqueue(
                NewJob::new(
                    JOB_COPY,
                    &CopyRequest {
                        channel: channel.into(),
                        ts: ts.into(),
                        by: by.into(),
                    },
                )
                .dedup(format!("announcements:copy:{channel}:{ts}")),
            )
            .await?;
        Ok(())
    }
}

/// The quoted copy. The original is quoted as it reads, never acting again: no broadcast,
/// mention or labelled link of it is live in the copy ([`Mrkdwn::quote_slack`]).
pub fn copy_text(message: &Value, by: &str, permalink: &str) -> Mrkdwn {
    let author = match message.get("user").and_then(Value::as_str) {
        Some(u) => mention(u),
        None => Mrkdwn::text(
            message
                .get("username")
                .and_then(Value::as_str)
                .unwrap_or("someone"),
        ),
    };
    let text = message.get("text").and_then(Value::as_str).unwrap_or("");
    let quoted = truncate(text, 2800)
        .lines()
        .map(|l| mrkdwn!("> {}", Mrkdwn::quote_slack(l)))
        .collect::<Vec<_>>();
    mrkdwn!(
        ":point_up: {} wrote ({}, copied by {}):\n{}",
        author,
        link(permalink, "original"),
        mention(by),
        Mrkdwn::join(quoted, "\n")
    )
}

pub struct CopyJob;

#[async_trait]
impl JobHandler for CopyJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let r: CopyRequest = job.payload().map_err(JobError::Permanent)?;
        let db = |e: sqlx::Error| JobError::from(anyhow::anyhow!(crate::store::short_db_error(&e)));
        let slack = state.slack();
        let mut target: Option<(Outage, Value)> = None;
        // The reacted message as its thread shows it (its `thread_ts` names the thread), read
        // at most once.
        let mut reacted: Option<Option<Value>> = None;
        for o in candidates(state, &r.channel).await.map_err(db)? {
            if o.incident_channel.as_deref() == Some(r.channel.as_str()) {
                let m = match slack.conversation_message(&r.channel, &r.ts).await? {
                    Some(m) => Some(m),
                    // A reply in one of the incident channel's threads.
                    None => slack.thread_message(&r.channel, &r.ts).await?,
                };
                if let Some(m) = m {
                    target = Some((o, m));
                }
                break;
            }
            // In an announcement's channel: only replies in that announcement's own thread.
            if reacted.is_none() {
                reacted = Some(slack.thread_message(&r.channel, &r.ts).await?);
            }
            let Some(Some(m)) = &reacted else { break };
            let root = m.get("thread_ts").and_then(Value::as_str);
            if root.is_some() && root == o.message_ts.as_deref() && root != Some(r.ts.as_str()) {
                target = Some((o, m.clone()));
                break;
            }
        }
        // Not in an incident channel or an announcement's thread: nothing to do.
        let Some((o, m)) = target else {
            return Ok(());
        };
        let (Some(channel), Some(thread)) = (o.channel.clone(), o.message_ts.clone()) else {
            return Ok(());
        };
        let copied: Option<String> = sqlx::query_scalar(
            "SELECT outage_id FROM outage_reaction_copies
             WHERE outage_id = $1 AND channel = $2 AND message_ts = $3",
        )
        .bind(&o.id)
        .bind(&r.channel)
        .bind(&r.ts)
        .fetch_optional(state.db().pool())
        .await
        .map_err(db)?;
        if copied.is_some() {
            return Ok(());
        }
        let permalink = slack.permalink(&r.channel, &r.ts).await?;
        let posted = slack
            .post_message(
                &Message::text(&channel, copy_text(&m, &r.by, &permalink)).in_thread(&thread),
            )
            .await?;
        sqlx::query(
            "INSERT INTO outage_reaction_copies (outage_id, channel, message_ts, copied_by, copy_ts, at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(&o.id)
        .bind(&r.channel)
        .bind(&r.ts)
        .bind(&r.by)
        .bind(&posted.ts)
        .bind(state.now_ms())
        .execute(state.db().pool())
        .await
        .map_err(db)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_quote_author_text_and_link_without_broadcasting() {
        let m = serde_json::json!({"user": "U1", "text": "<!channel> it is down\nsince 10:02", "ts": "1.2"});
        let t = copy_text(&m, "U2", "https://x.slack.com/archives/C1/p12").into_string();
        assert!(t.contains("<@U1> wrote"), "{t}");
        assert!(t.contains("copied by <@U2>"), "{t}");
        assert!(t.contains("> @channel it is down\n> since 10:02"), "{t}");
        assert!(
            t.contains("<https://x.slack.com/archives/C1/p12|original>"),
            "{t}"
        );
    }
}
