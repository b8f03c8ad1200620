//! Reminders and expiry of waiting judgments (`approvals.remind_after_mins`,
//! `approvals.max_reminders`, `approvals.expire_after_mins`, `approvals.on_expiry`).
//!
//! One replica at a time looks for what is due, by the injected clock. Every step is a
//! conditional `UPDATE` on an awaiting judgment, so it happens once across replicas and restarts
//! and never races a decision: a reminder moves `reminders_sent` forward before its job is queued
//! (and the job posts nothing once the judgment ended); an expiry moves `awaiting` on exactly like
//! a click's claim does, so whichever of the two reaches the row first wins. An expiry that
//! rejects claims the judgment for slackops and goes through the same judge job as a click.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::info;

use super::message::progress_text;
use super::model::{self, Judgment};
use super::policy::approvers_for;
use super::settings::OnExpiry;
use super::{FEATURE, JOB_REMIND, JOB_RENDER, announce_outcome, delivery, enqueue, quorum};
use crate::jobs::{Job, JobError, NewJob};
use crate::mrkdwn;
use crate::principals::Principals;
use crate::registry::{JobHandler, Periodic};
use crate::slack::blocks::escape;
use crate::slack::mrkdwn::Mrkdwn;
use crate::state::AppState;
use crate::store::Db;

const MINUTE_MS: i64 = 60_000;

pub struct Timers;

#[async_trait]
impl Periodic for Timers {
    fn name(&self) -> &'static str {
        "approvals.timers"
    }
    fn interval(&self, state: &AppState) -> Option<Duration> {
        let s = &state.settings().approvals;
        (s.remind_after_mins > 0 || s.expire_after_mins > 0)
            .then(|| Duration::from_secs(s.timers_interval_secs))
    }
    async fn run(&self, state: &AppState) -> anyhow::Result<()> {
        run_once(state).await.map(|_| ())
    }
}

/// One pass: expire what is due, then remind. Returns (reminders queued, judgments expired).
pub async fn run_once(state: &AppState) -> anyhow::Result<(usize, usize)> {
    let expired = expire_due(state).await?;
    let reminded = remind_due(state).await?;
    Ok((reminded, expired))
}

/// Expire judgments waiting longer than `approvals.expire_after_mins`.
async fn expire_due(state: &AppState) -> anyhow::Result<usize> {
    let s = &state.settings().approvals;
    if s.expire_after_mins == 0 {
        return Ok(0);
    }
    let now = state.now_ms();
    let after = s.expire_after_mins as i64 * MINUTE_MS;
    let mut expired = 0;
    for j in state.db().awaiting_since(now - after, 200).await? {
        let done = match s.on_expiry {
            OnExpiry::Leave => expire_leave(state, &j, now).await?,
            OnExpiry::Reject => expire_reject(state, &j, now).await?,
        };
        if done {
            state
                .audit(
                    FEATURE,
                    "expire",
                    "slackops",
                    &j.subject(),
                    "expired",
                    json!({"after_mins": s.expire_after_mins, "on_expiry": s.on_expiry}),
                )
                .await;
            info!(judgment = %j.id, "judgment expired in Slack");
            expired += 1;
        }
    }
    Ok(expired)
}

/// `leave`: the buttons go and the message says it expired; Spinnaker keeps waiting (Deck).
async fn expire_leave(state: &AppState, j: &Judgment, now: i64) -> anyhow::Result<bool> {
    if !state.db().expire_judgment(&j.id, now).await? {
        return Ok(false);
    }
    announce_outcome(state, &j.id, model::EXPIRED).await?;
    Ok(true)
}

/// `reject`: slackops claims the judgment with `stop`, and the judge job sends it.
async fn expire_reject(state: &AppState, j: &Judgment, now: i64) -> anyhow::Result<bool> {
    let mut tx = state.db().pool().begin().await?;
    let claimed = sqlx::query(
        "UPDATE judgments SET state = 'judging', judge_user = NULL, judge_name = 'slackops',
            decision = 'stop', judgment_input = NULL, claimed_at = $1, note = NULL, reason = NULL,
            expired_at = $1, updated_at = $1
         WHERE id = $2 AND state = 'awaiting'",
    )
    .bind(now)
    .bind(&j.id)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !claimed {
        tx.rollback().await?;
        return Ok(false);
    }
    quorum::queue_judge(state, &mut tx, &j.id, now).await?;
    tx.commit().await?;
    state.jobs().wake();
    enqueue(state, JOB_RENDER, &j.id, None).await?;
    Ok(true)
}

/// Queue the reminders that are due: one per judgment per pass, at most `max_reminders`.
async fn remind_due(state: &AppState) -> anyhow::Result<usize> {
    let s = &state.settings().approvals;
    if s.remind_after_mins == 0 || s.max_reminders == 0 {
        return Ok(0);
    }
    let now = state.now_ms();
    let every = s.remind_after_mins as i64 * MINUTE_MS;
    let max = i64::from(s.max_reminders);
    let mut queued = 0;
    for j in state.db().awaiting_since(now - every, 500).await? {
        let due = ((now - j.created_at) / every).min(max);
        if j.message_ts.is_none() || due <= j.reminders_sent {
            continue;
        }
        if state.db().advance_reminders(&j.id, due).await? {
            let r = Remind {
                id: j.id.clone(),
                n: due,
            };
            state
                .jobs()
                .enqueue(NewJob::new(JOB_REMIND, &r).dedup(format!("{JOB_REMIND}:{}:{due}", j.id)))
                .await?;
            queued += 1;
        }
    }
    Ok(queued)
}

/// The reminder job's payload: the judgment and the reminder's number.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Remind {
    pub id: String,
    pub n: i64,
}

/// Post one reminder in the judgment's thread, unless the judgment is no longer waiting.
pub struct RemindJob;

#[async_trait]
impl JobHandler for RemindJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let r: Remind = job.payload().map_err(JobError::Permanent)?;
        let db_err = |e: sqlx::Error| JobError::from(anyhow::Error::from(e));
        let Some(j) = state.db().judgment(&r.id).await.map_err(db_err)? else {
            return Ok(());
        };
        if j.state != model::AWAITING {
            return Ok(());
        }
        let progress = quorum::progress(state, &j).await.map_err(db_err)?;
        let waited = (state.now_ms() - j.created_at) / MINUTE_MS;
        let text = mrkdwn!(
            ":bell: Reminder {} of {}: *{}* › *{}* has waited {} minutes for a judgment. {}: please approve or reject.\n{}",
            r.n,
            state.settings().approvals.max_reminders,
            escape(&j.application),
            escape(&j.pipeline_name),
            waited,
            approvers(state, &j).await,
            progress_text(&progress),
        );
        if let Some(note) = delivery::Note::in_thread(&j, text) {
            state
                .jobs()
                .enqueue(NewJob::new(super::JOB_NOTE, &note).dedup(format!(
                    "{}:{}:remind:{}",
                    super::JOB_NOTE,
                    j.id,
                    r.n
                )))
                .await
                .map_err(|e| JobError::from(anyhow::Error::from(e)))?;
        }
        Ok(())
    }
}

/// Who is asked: the rules' user groups as mentions, else their users, else their emails.
async fn approvers(state: &AppState, j: &Judgment) -> Mrkdwn {
    let mut union = Principals::default();
    for r in approvers_for(
        &state.settings().approvals,
        &j.application,
        &j.pipeline_name,
    ) {
        let p = r.principals();
        union.users.extend(p.users);
        union.groups.extend(p.groups);
        union.emails.extend(p.emails);
    }
    if !union.groups.is_empty() {
        return state.authz().describe_groups(&union.groups).await;
    }
    if !union.users.is_empty() {
        return Mrkdwn::join(union.users.iter().map(|u| Mrkdwn::user(u)), ", ");
    }
    if !union.emails.is_empty() {
        return Mrkdwn::join(&union.emails, ", ");
    }
    "Approvers".into()
}

impl Db {
    /// Awaiting judgments created at or before `created_before`, oldest first.
    async fn awaiting_since(
        &self,
        created_before: i64,
        limit: i64,
    ) -> Result<Vec<Judgment>, sqlx::Error> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM judgments WHERE state = 'awaiting' AND created_at <= $1
             ORDER BY created_at LIMIT $2",
            model::COLUMNS
        )))
        .bind(created_before)
        .bind(limit)
        .fetch_all(self.pool())
        .await
    }

    /// Move an awaiting judgment to `expired` (exactly once; loses to a claim made first).
    async fn expire_judgment(&self, id: &str, now: i64) -> Result<bool, sqlx::Error> {
        let res = sqlx::query(
            "UPDATE judgments SET state = 'expired', expired_at = $1, decided_at = $1, updated_at = $1
             WHERE id = $2 AND state = 'awaiting'",
        )
        .bind(now)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Record that reminder `n` is due; false when it was already (by another replica or pass) or
    /// the judgment stopped waiting.
    async fn advance_reminders(&self, id: &str, n: i64) -> Result<bool, sqlx::Error> {
        let res = sqlx::query(
            "UPDATE judgments SET reminders_sent = $1
             WHERE id = $2 AND state = 'awaiting' AND reminders_sent < $1",
        )
        .bind(n)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(res.rows_affected() == 1)
    }
}
