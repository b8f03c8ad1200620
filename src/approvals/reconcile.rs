//! The reconciler: open judgments are checked against Gate every `approvals.reconcile_interval_secs`,
//! so a lost echo event (echo only logs failed deliveries) never leaves live buttons on a stage
//! that was decided in Deck, timed out, or vanished. One replica runs it at a time.

use std::time::Duration;

use async_trait::async_trait;
use tracing::{debug, warn};

use super::announce_outcome;
use super::intake::record_external;
use super::model::{self, Outcome, StageOutcome, find_stage, stage_outcome};
use crate::registry::Periodic;
use crate::spinnaker::gate::GateError;
use crate::state::AppState;

pub struct Reconciler;

#[async_trait]
impl Periodic for Reconciler {
    fn name(&self) -> &'static str {
        "approvals.reconciler"
    }
    fn interval(&self, state: &AppState) -> Option<Duration> {
        Some(Duration::from_secs(
            state.settings().approvals.reconcile_interval_secs,
        ))
    }
    async fn run(&self, state: &AppState) -> anyhow::Result<()> {
        reconcile_once(state).await.map(|_| ())
    }
}

/// Check open judgments (least recently checked first). Returns how many were closed.
pub async fn reconcile_once(state: &AppState) -> anyhow::Result<usize> {
    rescue_judging(state).await?;
    let mut closed = 0;
    for j in state.db().open_posted_judgments(200).await? {
        match state.gate().execution(&j.execution_id).await {
            Ok(exec) => {
                let outcome = find_stage(&exec, &j.stage_id).map(stage_outcome);
                match outcome {
                    None => {
                        if vanish(state, &j).await? {
                            closed += 1;
                        }
                    }
                    Some(StageOutcome::Waiting | StageOutcome::Pending { .. }) => {
                        state.db().touch_judgment(&j.id, state.now_ms()).await?;
                    }
                    Some(o) => {
                        if record_external(state, &j, &o, Some(&exec)).await? {
                            debug!(judgment = %j.id, "reconciler closed a judgment decided outside slackops");
                            closed += 1;
                        }
                    }
                }
            }
            Err(GateError::NotFound(_)) => {
                if vanish(state, &j).await? {
                    closed += 1;
                }
            }
            Err(e) => {
                warn!(judgment = %j.id, error = %e, "reconciler could not read the execution; trying again next round");
                if e.is_transient() {
                    // Gate is down: the rest would fail the same way.
                    break;
                }
            }
        }
    }
    Ok(closed)
}

/// A judgment stays `judging` only while its judge job lives. If that job failed for good (say,
/// the database was unreachable on its last attempt), queue a new one: it reads the stage first
/// and, finding its claim's marker, never judges twice.
async fn rescue_judging(state: &AppState) -> anyhow::Result<()> {
    let grace_ms = 10 * 60 * 1000;
    for j in state
        .db()
        .judging_since(state.now_ms() - grace_ms, 100)
        .await?
    {
        let Some(claimed_at) = j.claimed_at else {
            continue;
        };
        let key = format!("{}:{}:{claimed_at}", super::JOB_JUDGE, j.id);
        let live = state.jobs().live_with_key_prefix(&key).await?;
        if !live {
            warn!(judgment = %j.id, "a judgment was left without a judge job; queueing it again");
            state
                .jobs()
                .enqueue(
                    crate::jobs::NewJob::new(
                        super::JOB_JUDGE,
                        &super::JudgeRequest {
                            id: j.id.clone(),
                            claimed_at,
                        },
                    )
                    .dedup(format!("{key}:rescued:{}", state.now_ms()))
                    .max_attempts(state.settings().approvals.judge_max_attempts),
                )
                .await?;
        }
    }
    Ok(())
}

async fn vanish(state: &AppState, j: &model::Judgment) -> anyhow::Result<bool> {
    let o = Outcome {
        state: model::VANISHED,
        decision: None,
        input: None,
        decided_by: None,
        note: None,
    };
    if state
        .db()
        .finish_judgment(&j.id, &o, state.now_ms())
        .await?
    {
        announce_outcome(state, &j.id, model::VANISHED).await?;
        return Ok(true);
    }
    Ok(false)
}
