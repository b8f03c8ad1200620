//! Where judgments come from and how Spinnaker's own decisions reach them: echo's stage and
//! pipeline events, and a poller for Spinnakers whose echo cannot forward events.
//!
//! echo delivers in parallel, in no order, and more than once (reference/spinnaker.md §3a), so
//! every path is idempotent on the stage run `(execution, stage, start time)`: a repeated start
//! finds the row and posts nothing; a completion that overtakes its start records the stage as
//! decided, so the late start posts nothing either.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{debug, info};

use super::model::{
    self, Outcome, StageInfo, StageOutcome, find_stage, is_manual_judgment, stage_outcome,
};
use super::{JOB_FETCH, JOB_POST, JudgmentRef, announce_outcome};
use crate::jobs::{Job, JobError, NewJob};
use crate::registry::{EchoHandler, JobHandler, Periodic};
use crate::spinnaker::gate::GateError;
use crate::state::AppState;

/// Handles `orca:stage:*` and `orca:pipeline:*` events.
pub struct StageEvents;

#[async_trait]
impl EchoHandler for StageEvents {
    async fn handle(&self, state: AppState, event: Arc<Value>) -> anyhow::Result<()> {
        let kind = event
            .pointer("/details/type")
            .and_then(Value::as_str)
            .unwrap_or("");
        let content = event.get("content").cloned().unwrap_or(Value::Null);
        match kind {
            "orca:stage:starting" => stage_starting(&state, &content).await,
            "orca:stage:complete" | "orca:stage:failed" | "orca:stage:skipped" => {
                if execution_of(&content).is_some() {
                    stage_ended(&state, &content).await
                } else {
                    let stage = content.get("stageId").and_then(Value::as_str);
                    if stage.is_some() && has_open_judgment(&state, &content, stage).await? {
                        fetch_later(&state, kind, &content).await?;
                    }
                    Ok(())
                }
            }
            "orca:pipeline:complete" | "orca:pipeline:failed" => {
                if execution_of(&content).is_some() {
                    pipeline_ended(&state, &content).await
                } else {
                    // Without the execution the stages' outcomes are unknown: read them rather
                    // than report every open judgment as merely ended.
                    if has_open_judgment(&state, &content, None).await? {
                        fetch_later(&state, kind, &content).await?;
                    }
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }
}

/// Handle an ended-stage or ended-pipeline event whose execution was read from Gate.
async fn replay(state: &AppState, kind: &str, content: &Value) -> anyhow::Result<()> {
    if kind.starts_with("orca:pipeline:") {
        pipeline_ended(state, content).await
    } else {
        stage_ended(state, content).await
    }
}

fn execution_of(content: &Value) -> Option<&Value> {
    content.get("execution").filter(|e| e.is_object())
}

/// Start a judgment for a stage run: store it and its post job together, or do nothing if known.
pub async fn start_judgment(state: &AppState, info: &StageInfo) -> anyhow::Result<bool> {
    let now = state.now_ms();
    let mut tx = state.db().pool().begin().await?;
    let Some(id) = state
        .db()
        .insert_judgment(&mut *tx, info, model::AWAITING, now)
        .await?
    else {
        debug!(execution = %info.execution_id, stage = %info.stage_id, "judgment already known");
        return Ok(false);
    };
    state
        .jobs()
        .insert(
            &mut *tx,
            NewJob::new(JOB_POST, &JudgmentRef { id: id.clone() })
                .dedup(format!("{JOB_POST}:{id}")),
        )
        .await?;
    tx.commit().await?;
    state.jobs().wake();
    info!(judgment = %id, application = %info.application, pipeline = %info.pipeline_name, "manual judgment started");
    Ok(true)
}

async fn stage_starting(state: &AppState, content: &Value) -> anyhow::Result<()> {
    let Some(stage_id) = content.get("stageId").and_then(Value::as_str) else {
        return Ok(());
    };
    let start = content.get("startTime").and_then(Value::as_i64);
    match execution_of(content) {
        Some(exec) => {
            if let Some(info) = StageInfo::from_execution(exec, stage_id, start) {
                start_judgment(state, &info).await?;
            }
            Ok(())
        }
        // echo.events.includeFullExecution is off: read the execution from Gate in a job.
        None => fetch_later(state, STARTING, content).await,
    }
}

const STARTING: &str = "orca:stage:starting";

/// echo sent an event without its execution (`echo.events.includeFullExecution: false`): queue a
/// job that reads the execution from Gate and handles the event as if it had come whole, so a
/// stage judged or a pipeline ended in Deck reaches the message at once instead of waiting for
/// the reconciler. One job per event (kind, execution, stage run).
async fn fetch_later(state: &AppState, kind: &str, content: &Value) -> anyhow::Result<()> {
    let Some(execution_id) = content.get("executionId").and_then(Value::as_str) else {
        return Ok(());
    };
    let stage_id = content
        .get("stageId")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let start = content.get("startTime").and_then(Value::as_i64);
    // Jobs queued for starts keep the key they always had.
    let key = if kind == STARTING {
        format!(
            "{JOB_FETCH}:{execution_id}:{stage_id}:{}",
            start.unwrap_or(0)
        )
    } else {
        format!(
            "{JOB_FETCH}:{kind}:{execution_id}:{stage_id}:{}",
            start.unwrap_or(0)
        )
    };
    let f = Fetch {
        execution_id: execution_id.to_string(),
        stage_id: stage_id.to_string(),
        start,
        kind: (kind != STARTING).then(|| kind.to_string()),
        content: (kind != STARTING).then(|| content.clone()),
    };
    state
        .jobs()
        .enqueue(NewJob::new(JOB_FETCH, &f).dedup(key))
        .await?;
    Ok(())
}

/// Whether slackops has an open judgment that an event without its execution may settle; only
/// then is the execution worth reading (echo sends an event for every stage of every pipeline).
async fn has_open_judgment(
    state: &AppState,
    content: &Value,
    stage_id: Option<&str>,
) -> anyhow::Result<bool> {
    let Some(execution_id) = content.get("executionId").and_then(Value::as_str) else {
        return Ok(false);
    };
    let open = state.db().open_judgments_of(execution_id).await?;
    Ok(open
        .iter()
        .any(|j| stage_id.is_none_or(|s| j.stage_id == s)))
}

/// The outcome to record for a stage that left RUNNING.
fn outcome_state(
    outcome: &StageOutcome,
    execution: Option<&Value>,
) -> (
    &'static str,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
) {
    // (state, decision, input, decided_by, note)
    let canceled = execution
        .and_then(|e| e.get("canceled"))
        .and_then(Value::as_bool)
        == Some(true);
    match outcome {
        StageOutcome::Continued { by, input } => (
            model::DECIDED_ELSEWHERE,
            Some("continue".into()),
            input.clone(),
            by.clone(),
            None,
        ),
        StageOutcome::Stopped { by, input } => (
            model::DECIDED_ELSEWHERE,
            Some("stop".into()),
            input.clone(),
            by.clone(),
            None,
        ),
        StageOutcome::Ended { .. } if canceled => {
            let e = execution.unwrap_or(&Value::Null);
            let by = e
                .get("canceledBy")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let reason = e
                .get("cancellationReason")
                .and_then(Value::as_str)
                .map(str::to_owned);
            (model::CANCELED, None, None, by, reason)
        }
        StageOutcome::Ended { status } => (
            model::ENDED,
            None,
            None,
            None,
            Some(format!("status {status}")),
        ),
        StageOutcome::Waiting | StageOutcome::Pending { .. } => {
            (model::AWAITING, None, None, None, None)
        }
    }
}

/// Record that an open judgment was decided outside slackops, and update its message.
pub async fn record_external(
    state: &AppState,
    j: &model::Judgment,
    outcome: &StageOutcome,
    execution: Option<&Value>,
) -> anyhow::Result<bool> {
    if j.state != model::AWAITING {
        // A judgment being judged from Slack is settled by its judge job.
        return Ok(false);
    }
    let (st, decision, input, by, note) = outcome_state(outcome, execution);
    if st == model::AWAITING {
        return Ok(false);
    }
    let o = Outcome {
        state: st,
        decision: decision.as_deref(),
        input: input.as_deref(),
        decided_by: by.as_deref(),
        note: note.as_deref(),
    };
    if state
        .db()
        .finish_judgment(&j.id, &o, state.now_ms())
        .await?
    {
        state
            .db()
            .audit(
                state.now_ms(),
                crate::store::audit::AuditEntry {
                    feature: super::FEATURE,
                    action: "observed",
                    actor: by.as_deref().unwrap_or("spinnaker"),
                    subject: &j.subject(),
                    outcome: st,
                    detail: Some(
                        serde_json::json!({"decision": decision, "input": input, "note": note}),
                    ),
                },
            )
            .await?;
        announce_outcome(state, &j.id, st).await?;
        return Ok(true);
    }
    Ok(false)
}

async fn stage_ended(state: &AppState, content: &Value) -> anyhow::Result<()> {
    let Some(stage_id) = content.get("stageId").and_then(Value::as_str) else {
        return Ok(());
    };
    let Some(exec) = execution_of(content) else {
        // Events without their execution are read from Gate first (`fetch_later`).
        return Ok(());
    };
    let Some(stage) = find_stage(exec, stage_id) else {
        return Ok(());
    };
    if !is_manual_judgment(stage) {
        return Ok(());
    }
    let mut stage = stage.clone();
    // The event's context is the stage's final, evaluated context.
    if let Some(ctx) = content.get("context").filter(|c| c.is_object()) {
        stage["context"] = ctx.clone();
    }
    let outcome = stage_outcome(&stage);
    let start = content.get("startTime").and_then(Value::as_i64);
    let Some(info) = StageInfo::from_execution(exec, stage_id, start) else {
        return Ok(());
    };
    match state
        .db()
        .judgment_for_run(&info.execution_id, stage_id, info.stage_start)
        .await?
    {
        Some(j) => {
            record_external(state, &j, &outcome, Some(exec)).await?;
        }
        None => {
            // The completion overtook the start: remember the run as decided so the late start
            // posts nothing.
            let (st, decision, input, by, note) = outcome_state(&outcome, Some(exec));
            if st != model::AWAITING {
                let now = state.now_ms();
                if let Some(id) = state
                    .db()
                    .insert_judgment(state.db().pool(), &info, st, now)
                    .await?
                {
                    let o = Outcome {
                        state: st,
                        decision: decision.as_deref(),
                        input: input.as_deref(),
                        decided_by: by.as_deref(),
                        note: note.as_deref(),
                    };
                    state.db().set_judgment_outcome(&id, &o, now).await?;
                }
            }
        }
    }
    Ok(())
}

async fn pipeline_ended(state: &AppState, content: &Value) -> anyhow::Result<()> {
    let exec = execution_of(content);
    let Some(execution_id) = exec
        .and_then(|e| e.get("id"))
        .or_else(|| content.get("executionId"))
        .and_then(Value::as_str)
    else {
        return Ok(());
    };
    for j in state.db().open_judgments_of(execution_id).await? {
        let outcome = exec
            .and_then(|e| find_stage(e, &j.stage_id))
            .map(stage_outcome)
            .unwrap_or(StageOutcome::Ended {
                status: "UNKNOWN".into(),
            });
        let outcome = match outcome {
            // The pipeline ended while the stage still showed RUNNING: it will not be judged.
            StageOutcome::Waiting | StageOutcome::Pending { .. } => StageOutcome::Ended {
                status: exec
                    .and_then(|e| e.get("status"))
                    .and_then(Value::as_str)
                    .unwrap_or("ENDED")
                    .to_string(),
            },
            o => o,
        };
        record_external(state, &j, &outcome, exec).await?;
    }
    Ok(())
}

/// An echo event whose execution must be read from Gate first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fetch {
    pub execution_id: String,
    pub stage_id: String,
    pub start: Option<i64>,
    /// The event type; `None` for a stage start (and in jobs queued before other kinds were).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The event's content (an ended stage's final context), for kinds other than a start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Value>,
}

pub struct FetchJob;

#[async_trait]
impl JobHandler for FetchJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let f: Fetch = job.payload().map_err(JobError::Permanent)?;
        let exec = match state.gate().execution(&f.execution_id).await {
            Ok(e) => e,
            // A vanished execution: the reconciler closes its judgments.
            Err(GateError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if let (Some(kind), Some(mut content)) = (f.kind, f.content) {
            content["execution"] = exec;
            return replay(state, &kind, &content).await.map_err(JobError::from);
        }
        if let Some(info) = StageInfo::from_execution(&exec, &f.stage_id, f.start) {
            let running = find_stage(&exec, &f.stage_id)
                .map(|s| stage_outcome(s) == StageOutcome::Waiting)
                .unwrap_or(false);
            if running {
                start_judgment(state, &info).await?;
            }
        }
        Ok(())
    }
}

/// Polls configured applications for running Manual Judgments (the fallback when echo cannot
/// forward events), feeding the same flow.
pub struct Poller;

#[async_trait]
impl Periodic for Poller {
    fn name(&self) -> &'static str {
        "approvals.poller"
    }
    fn interval(&self, state: &AppState) -> Option<Duration> {
        let settings = &state.settings().approvals;
        (!settings.poll_applications.is_empty())
            .then(|| Duration::from_secs(settings.poll_interval_secs))
    }
    async fn run(&self, state: &AppState) -> anyhow::Result<()> {
        poll_once(state).await.map(|_| ())
    }
}

/// One poll of every configured application. Returns how many judgments it started.
pub async fn poll_once(state: &AppState) -> anyhow::Result<usize> {
    let mut started = 0;
    for app in &state.settings().approvals.poll_applications {
        let executions = match state.gate().executions(app, Some("RUNNING"), None).await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(application = %app, error = %e, "polling running executions failed");
                continue;
            }
        };
        for exec in executions {
            let Some(stages) = exec.get("stages").and_then(Value::as_array) else {
                continue;
            };
            for stage in stages {
                if !is_manual_judgment(stage)
                    || stage.get("status").and_then(Value::as_str) != Some("RUNNING")
                {
                    continue;
                }
                let (Some(stage_id), Some(exec_id)) = (
                    stage.get("id").and_then(Value::as_str),
                    exec.get("id").and_then(Value::as_str),
                ) else {
                    continue;
                };
                let start = stage.get("startTime").and_then(Value::as_i64).unwrap_or(0);
                if state
                    .db()
                    .judgment_for_run(exec_id, stage_id, start)
                    .await?
                    .is_some()
                {
                    continue;
                }
                // The listing may omit stage context: read the whole execution.
                let full = match state.gate().execution(exec_id).await {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::warn!(execution = %exec_id, error = %e, "reading a polled execution failed");
                        continue;
                    }
                };
                if let Some(info) = StageInfo::from_execution(&full, stage_id, Some(start))
                    && start_judgment(state, &info).await?
                {
                    started += 1;
                }
            }
        }
    }
    Ok(started)
}
