//! Following an execution started from Slack until it ends, then updating its "started" message
//! with the outcome (succeeded, failed, canceled) and the duration.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::{RunRef, deck_link};
use crate::jobs::{Job, JobError};
use crate::mrkdwn;
use crate::registry::JobHandler;
use crate::slack::blocks::{escape, link, mention};
use crate::slack::mrkdwn::Mrkdwn;
use crate::spinnaker::gate::GateError;
use crate::state::AppState;

#[derive(Debug, sqlx::FromRow)]
struct Run {
    id: String,
    execution_id: String,
    application: String,
    pipeline_name: String,
    started_by: String,
    channel: Option<String>,
    message_ts: Option<String>,
    status: String,
    started_at: i64,
}

/// A human duration: `45s`, `3m 12s`, `2h 5m`.
pub fn duration(ms: i64) -> String {
    let s = (ms.max(0) / 1000) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

/// Statuses after which an execution does not change any more.
pub fn is_final(status: &str) -> bool {
    matches!(
        status,
        "SUCCEEDED" | "TERMINAL" | "CANCELED" | "STOPPED" | "SKIPPED" | "FAILED_CONTINUE"
    )
}

pub fn status_emoji(status: &str) -> &'static str {
    match status {
        "SUCCEEDED" => ":white_check_mark:",
        "RUNNING" | "NOT_STARTED" | "BUFFERED" => ":arrows_counterclockwise:",
        "PAUSED" | "SUSPENDED" => ":double_vertical_bar:",
        "CANCELED" | "STOPPED" => ":no_entry_sign:",
        "TERMINAL" | "FAILED_CONTINUE" => ":x:",
        _ => ":grey_question:",
    }
}

pub struct FollowJob;

#[async_trait]
impl JobHandler for FollowJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let r: RunRef = job.payload().map_err(JobError::Permanent)?;
        let run: Option<Run> = sqlx::query_as(
            "SELECT id, execution_id, application, pipeline_name, started_by, channel, message_ts, status, started_at
             FROM pipeline_runs WHERE id = $1",
        )
        .bind(&r.run_id)
        .fetch_optional(state.db().pool())
        .await
        .map_err(|e| JobError::from(anyhow::Error::from(e)))?;
        let Some(run) = run else { return Ok(()) };
        if run.status != "RUNNING" {
            return Ok(());
        }
        let ended = ended(state, &run).await?;
        sqlx::query("UPDATE pipeline_runs SET status = $1, ended_at = $2 WHERE id = $3 AND status = 'RUNNING'")
            .bind(&ended.status)
            .bind(ended.end_ms)
            .bind(&run.id)
            .execute(state.db().pool())
            .await
            .map_err(|e| JobError::from(anyhow::Error::from(e)))?;

        let (Some(channel), Some(ts)) = (run.channel.clone(), run.message_ts.clone()) else {
            return Ok(());
        };
        let text = outcome_text(state, &run, ended);
        state
            .slack()
            .update_message(&channel, &ts, &text, None)
            .await?;
        Ok(())
    }
}

/// How a followed execution ended, as the message tells it.
struct Ended {
    /// Spinnaker's final status, `VANISHED` (deleted) or `UNFOLLOWED` (still running after
    /// `pipelines.follow_max_hours`).
    status: String,
    end_ms: i64,
    canceled_by: Option<String>,
    reason: Option<String>,
}

/// Ask Gate how the execution is doing: `NotYet` while it runs (within the follow limit).
async fn ended(state: &AppState, run: &Run) -> Result<Ended, JobError> {
    let settings = state.settings().pipelines.clone();
    let now = state.now_ms();
    let (status, end_ms, canceled_by, reason) =
        match state.gate().execution(&run.execution_id).await {
            Ok(exec) => {
                let status = exec
                    .get("status")
                    .and_then(Value::as_str)
                    .unwrap_or("UNKNOWN")
                    .to_string();
                if !is_final(&status) {
                    let limit = (settings.follow_max_hours as i64) * 3_600_000;
                    if now - run.started_at < limit {
                        return Err(JobError::NotYet(Duration::from_secs(
                            settings.follow_interval_secs,
                        )));
                    }
                    ("UNFOLLOWED".to_string(), now, None, None)
                } else {
                    let end = exec.get("endTime").and_then(Value::as_i64).unwrap_or(now);
                    let by = exec
                        .get("canceledBy")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    let why = exec
                        .get("cancellationReason")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    (status, end, by, why)
                }
            }
            Err(GateError::NotFound(_)) => ("VANISHED".to_string(), now, None, None),
            Err(e) if e.is_transient() => return Err(e.into()),
            Err(e) => return Err(JobError::Permanent(e.into())),
        };
    Ok(Ended {
        status,
        end_ms,
        canceled_by,
        reason,
    })
}

/// The "started" message, updated with the outcome and the duration.
fn outcome_text(state: &AppState, run: &Run, ended: Ended) -> Mrkdwn {
    let Ended {
        status,
        end_ms,
        canceled_by,
        reason,
    } = ended;
    let head = mrkdwn!(
        "*{}* › *{}* started by {}",
        escape(&run.application),
        escape(&run.pipeline_name),
        mention(&run.started_by),
    );
    let took = duration(end_ms - run.started_at);
    let deck = link(
        &deck_link(
            &state.settings().spinnaker.deck_url,
            &run.application,
            &run.execution_id,
        ),
        "Open in Deck",
    );
    match status.as_str() {
        "SUCCEEDED" => mrkdwn!(
            "{} {} *succeeded* in {} · {}",
            status_emoji(&status),
            head,
            took,
            deck,
        ),
        "CANCELED" | "STOPPED" => {
            let by = canceled_by
                .map(|b| mrkdwn!(" by {}", escape(&b)))
                .unwrap_or_default();
            let why = reason
                .map(|r| mrkdwn!(": {}", escape(&r)))
                .unwrap_or_default();
            mrkdwn!(
                "{} {} was *canceled*{}{} after {} · {}",
                status_emoji(&status),
                head,
                by,
                why,
                took,
                deck,
            )
        }
        "VANISHED" => {
            mrkdwn!(
                ":grey_question: {}: the execution no longer exists in Spinnaker.",
                head
            )
        }
        "UNFOLLOWED" => mrkdwn!(
            ":hourglass: {} is still running after {}h; slackops stopped following it · {}",
            head,
            state.settings().pipelines.follow_max_hours,
            deck,
        ),
        other => mrkdwn!(
            "{} {} *failed* ({}) after {} · {}",
            status_emoji(other),
            head,
            escape(other),
            took,
            deck,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(duration(45_000), "45s");
        assert_eq!(duration(192_000), "3m 12s");
        assert_eq!(duration(7_500_000), "2h 5m");
        assert_eq!(duration(-5), "0s");
    }
}
