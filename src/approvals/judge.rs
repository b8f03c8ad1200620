//! Carrying out a claimed judgment against Gate, exactly as Deck does, and reporting what
//! Spinnaker actually did.
//!
//! Gate's PATCH answers 200 even for a finished stage and orca silently resets `judgmentStatus`
//! when Fiat refuses the user (reference/spinnaker.md §1.1, §4), so the answer of the PATCH means
//! nothing: the job reads the execution first (judging only a RUNNING stage without a judgment),
//! PATCHes once, then reads again until the stage leaves RUNNING.
//!
//! The PATCH carries a marker unique to the claim (`slackopsClaim`) that orca keeps in the stage
//! context. A retry — after a timeout, a Gate error, or a crash of this replica between the PATCH
//! and recording its result — reads the execution first and, finding its own marker, only waits
//! for the outcome instead of judging again. That is what makes one claim one judgment.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tracing::{info, warn};

use super::JudgeRequest;
use super::delivery::thread_note;
use super::intake::record_external;
use super::model::{self, Judgment, Outcome, StageOutcome, find_stage, stage_outcome};
use super::{FEATURE, announce_outcome};
use crate::jobs::{Job, JobError};
use crate::mrkdwn;
use crate::registry::JobHandler;
use crate::slack::blocks::{escape, mention};
use crate::spinnaker::gate::{GateError, JudgmentPatch};
use crate::state::AppState;
use crate::store::audit::AuditEntry;

/// The context key that marks a claim's PATCH.
pub const MARKER_KEY: &str = "slackopsClaim";

pub struct JudgeJob;

#[async_trait]
impl JobHandler for JudgeJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let req: JudgeRequest = job.payload().map_err(JobError::Permanent)?;
        let Some(j) = state
            .db()
            .judgment(&req.id)
            .await
            .map_err(anyhow::Error::from)?
        else {
            return Ok(());
        };
        if j.state != model::JUDGING || j.claimed_at != Some(req.claimed_at) {
            // Settled already (by an earlier attempt, or the claim was given back).
            return Ok(());
        }
        match judge(state, &j).await {
            Ok(()) => Ok(()),
            Err(Failure::Transient(e)) => {
                if job.is_last_attempt() {
                    let text = format!(
                        "Spinnaker could not be reached after {} attempts (last error: {e}). Nothing was judged; the buttons are back.",
                        job.attempts
                    );
                    give_back(state, &j, &text).await.map_err(JobError::from)?;
                    return Ok(());
                }
                if job.attempts == 1 {
                    let _ = thread_note(
                        state,
                        &j,
                        &format!("gate-trouble:{}", req.claimed_at),
                        mrkdwn!(
                            ":warning: Spinnaker's Gate did not answer ({}). slackops keeps trying to {} for {}; nothing has been sent twice.",
                            escape(&e.to_string()),
                            if j.decision.as_deref() == Some("stop") { "reject" } else { "approve" },
                            mention(j.judge_user.as_deref().unwrap_or("")),
                        ),
                    )
                    .await;
                }
                Err(JobError::Retry {
                    error: e,
                    after: None,
                })
            }
            Err(Failure::Waiting(e)) => {
                // Spinnaker holds this claim's judgment (our marker is in the stage) but orca has
                // not acted yet, e.g. a stuck pipeline. Never give the buttons back: keep judging,
                // say so once, and keep checking without using up attempts.
                let note = format!(
                    "Spinnaker has the judgment but has not acted on it yet ({e}); slackops keeps checking."
                );
                if state
                    .db()
                    .note_judging(&j.id, req.claimed_at, &note, state.now_ms())
                    .await
                    .map_err(|e| JobError::from(anyhow::Error::from(e)))?
                {
                    super::enqueue(state, super::JOB_RENDER, &j.id, None).await?;
                }
                Err(JobError::NotYet(Duration::from_secs(
                    state.settings().approvals.outcome_wait_secs.max(1),
                )))
            }
            Err(Failure::Internal(e)) => Err(JobError::Retry {
                error: e,
                after: None,
            }),
        }
    }
}

enum Failure {
    /// Gate unreachable, 5xx or timing out: try again later.
    Transient(anyhow::Error),
    /// Spinnaker accepted this claim's judgment but has not acted on it yet.
    Waiting(anyhow::Error),
    /// Our own database: try again later.
    Internal(anyhow::Error),
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Failure::Internal(e.into())
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Internal(e)
    }
}

/// What reading the execution says about this claim.
enum Seen {
    Gone,
    Stage(Value, Value),
}

async fn read(state: &AppState, j: &Judgment) -> Result<Seen, Result<Seen, Failure>> {
    match state.gate().execution(&j.execution_id).await {
        Ok(exec) => match find_stage(&exec, &j.stage_id).cloned() {
            Some(stage) => Ok(Seen::Stage(exec, stage)),
            None => Ok(Seen::Gone),
        },
        Err(GateError::NotFound(_)) => Ok(Seen::Gone),
        Err(e) if e.is_transient() => Err(Err(Failure::Transient(e.into()))),
        Err(e) => {
            // Gate hides permission errors behind an empty 200; treat refusals as refusals.
            let text = format!(
                "Spinnaker would not show this execution to slackops: {e}. Nothing was judged."
            );
            give_back(state, j, &text)
                .await
                .map_err(|e| Err(Failure::Internal(e)))?;
            Err(Ok(Seen::Gone))
        }
    }
}

fn has_marker(stage: &Value, j: &Judgment) -> bool {
    stage
        .pointer(&format!("/context/{MARKER_KEY}"))
        .and_then(Value::as_str)
        == Some(j.claim_marker().as_str())
}

async fn judge(state: &AppState, j: &Judgment) -> Result<(), Failure> {
    let (exec, stage) = match read(state, j).await {
        Ok(Seen::Stage(e, s)) => (e, s),
        Ok(Seen::Gone) => return finish(state, j, model::VANISHED, None, None, None).await,
        Err(Ok(_)) => return Ok(()),
        Err(Err(f)) => return Err(f),
    };
    let ours = has_marker(&stage, j);
    match stage_outcome(&stage) {
        StageOutcome::Waiting if ours => return refused_by_spinnaker(state, j, &stage).await,
        StageOutcome::Waiting => {
            if !patch(state, j).await? {
                return Ok(());
            }
        }
        StageOutcome::Pending { .. } => {}
        other => return settle(state, j, &other, ours, Some(&exec)).await,
    }
    wait_for_outcome(state, j).await
}

/// Send the judgment. `Ok(false)` when the judgment was settled instead (execution gone, or
/// Spinnaker refused it outright).
async fn patch(state: &AppState, j: &Judgment) -> Result<bool, Failure> {
    let mut extra = serde_json::Map::new();
    extra.insert(MARKER_KEY.into(), json!(j.claim_marker()));
    extra.insert("slackUser".into(), json!(j.judge_user));
    extra.insert("slackUserName".into(), json!(j.judge_name));
    extra.insert("judgedVia".into(), json!("slackops"));
    let who = match &j.judge_user {
        Some(u) => state.authz().identity(u).await.ok(),
        None => None,
    };
    if let Some(email) = who.as_ref().and_then(|w| w.email.clone()) {
        extra.insert("slackUserEmail".into(), json!(email));
    }
    let body = JudgmentPatch {
        judgment_status: j.decision.clone().unwrap_or_else(|| "continue".into()),
        judgment_input: j.judgment_input.clone(),
        extra,
    };
    let email = who.as_ref().and_then(|w| w.email.as_deref());
    match state
        .gate()
        .patch_stage(&j.execution_id, &j.stage_id, &body, email)
        .await
    {
        Ok(_) => {
            info!(judgment = %j.id, decision = ?j.decision, "judgment sent to Spinnaker");
            Ok(true)
        }
        Err(GateError::NotFound(_)) => {
            finish(state, j, model::VANISHED, None, None, None).await?;
            Ok(false)
        }
        Err(e) if e.is_transient() => Err(Failure::Transient(e.into())),
        Err(e) => {
            give_back(state, j, &format!("Spinnaker refused the judgment: {e}.")).await?;
            Ok(false)
        }
    }
}

/// Read the execution until the stage leaves RUNNING (bounded, with backoff).
async fn wait_for_outcome(state: &AppState, j: &Judgment) -> Result<(), Failure> {
    let budget = Duration::from_secs(state.settings().approvals.outcome_wait_secs);
    let started = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(50);
    loop {
        let (exec, stage) = match read(state, j).await {
            Ok(Seen::Stage(e, s)) => (e, s),
            Ok(Seen::Gone) => return finish(state, j, model::VANISHED, None, None, None).await,
            Err(Ok(_)) => return Ok(()),
            Err(Err(f)) => return Err(f),
        };
        let ours = has_marker(&stage, j);
        match stage_outcome(&stage) {
            StageOutcome::Waiting if ours => return refused_by_spinnaker(state, j, &stage).await,
            StageOutcome::Waiting => {
                // Our marker is gone and no judgment is recorded: someone restarted the stage
                // or rewrote its context. Judge again on the next attempt.
                return Err(Failure::Transient(anyhow::anyhow!(
                    "the stage shows no judgment yet"
                )));
            }
            StageOutcome::Pending { .. } => {}
            other => return settle(state, j, &other, ours, Some(&exec)).await,
        }
        if started.elapsed() >= budget {
            let error = anyhow::anyhow!("no change in {}s", budget.as_secs());
            return Err(if ours {
                Failure::Waiting(error)
            } else {
                Failure::Transient(error)
            });
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// The stage left RUNNING: record who decided.
async fn settle(
    state: &AppState,
    j: &Judgment,
    outcome: &StageOutcome,
    ours: bool,
    exec: Option<&Value>,
) -> Result<(), Failure> {
    let decision = j.decision.as_deref();
    match outcome {
        StageOutcome::Continued { input, .. } if ours && decision == Some("continue") => {
            finish(
                state,
                j,
                model::APPROVED,
                Some("continue"),
                input.as_deref(),
                j.judge_user.as_deref(),
            )
            .await
        }
        StageOutcome::Stopped { input, .. } if ours && decision == Some("stop") => {
            // An expiry's rejection is recorded as expired (with the interval it waited).
            let st = if j.expired_at.is_some() {
                model::EXPIRED
            } else {
                model::REJECTED
            };
            finish(
                state,
                j,
                st,
                Some("stop"),
                input.as_deref(),
                j.judge_user.as_deref(),
            )
            .await
        }
        _ => {
            // Decided by someone else (in Deck), or it ended: record that and tell the judge.
            let judging = model::Judgment {
                state: model::AWAITING.into(),
                ..j.clone()
            };
            // Release the claim first so the external outcome can be recorded on an open judgment.
            state
                .db()
                .release_judgment(&j.id, j.claimed_at.unwrap_or(0), "", state.now_ms())
                .await?;
            record_external(state, &judging, outcome, exec).await?;
            let _ = thread_note(
                state,
                j,
                "decided-before-click",
                mrkdwn!(
                    "{}: Spinnaker had already settled this stage before your judgment reached it; nothing was changed.",
                    mention(j.judge_user.as_deref().unwrap_or("")),
                ),
            )
            .await;
            Ok(())
        }
    }
}

/// orca kept the PATCH but reset the judgment: Fiat refused the Spinnaker user.
async fn refused_by_spinnaker(
    state: &AppState,
    j: &Judgment,
    stage: &Value,
) -> Result<(), Failure> {
    let by = stage
        .pointer("/context/lastModifiedBy")
        .and_then(Value::as_str)
        .or_else(|| stage.pointer("/lastModified/user").and_then(Value::as_str))
        .unwrap_or("the Spinnaker user slackops judged as");
    let info = j.info();
    let roles = if info.roles.is_empty() {
        String::new()
    } else {
        format!(
            " (the stage requires one of the roles {})",
            info.roles.join(", ")
        )
    };
    let text = format!(
        "Spinnaker did not accept the judgment by {}: orca reset it because {} is not authorized for this stage{}.",
        j.judge_name.as_deref().unwrap_or("the judge"),
        by,
        roles
    );
    warn!(judgment = %j.id, "Spinnaker silently reset the judgment (Fiat refused the user)");
    give_back(state, j, &text).await?;
    Ok(())
}

/// Record what became of the judge's claim.
async fn audit_judge(
    state: &AppState,
    j: &Judgment,
    outcome: &str,
    detail: Value,
) -> Result<(), sqlx::Error> {
    let entry = AuditEntry {
        feature: FEATURE,
        action: if j.decision.as_deref() == Some("stop") {
            "reject"
        } else {
            "approve"
        },
        actor: j.judge_user.as_deref().unwrap_or("slackops"),
        subject: &j.subject(),
        outcome,
        detail: Some(detail),
    };
    state.db().audit(state.now_ms(), entry).await
}

/// Give the claim back with a note; the buttons return.
pub async fn give_back(state: &AppState, j: &Judgment, text: &str) -> anyhow::Result<()> {
    let claimed_at = j.claimed_at.unwrap_or(0);
    if state
        .db()
        .release_judgment(&j.id, claimed_at, text, state.now_ms())
        .await?
    {
        audit_judge(state, j, "not_accepted", json!({"reason": text})).await?;
        super::enqueue(state, super::JOB_RENDER, &j.id, None).await?;
        thread_note(
            state,
            j,
            &format!("not-accepted:{claimed_at}"),
            mrkdwn!(
                ":warning: {}: {}",
                mention(j.judge_user.as_deref().unwrap_or("")),
                escape(text),
            ),
        )
        .await?;
    }
    Ok(())
}

async fn finish(
    state: &AppState,
    j: &Judgment,
    st: &str,
    decision: Option<&str>,
    input: Option<&str>,
    decided_by: Option<&str>,
) -> Result<(), Failure> {
    let o = Outcome {
        state: st,
        decision,
        input,
        decided_by,
        note: None,
    };
    if state
        .db()
        .finish_judgment(&j.id, &o, state.now_ms())
        .await?
    {
        audit_judge(state, j, st, json!({"input": input})).await?;
        info!(judgment = %j.id, outcome = st, "judgment settled");
        announce_outcome(state, &j.id, st).await?;
    }
    Ok(())
}
