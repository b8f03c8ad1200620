//! Judgments: what a Manual Judgment stage is, the states a judgment goes through, and the store
//! operations whose atomicity carries the guarantees (one message per stage run, one claim per
//! judgment across replicas).
//!
//! ```text
//! awaiting ──approvals (counted; the last needed one claims)──▶ judging ──Gate accepted──▶ approved | rejected
//! awaiting ──reject (atomic claim)──▶ judging            judging (expiry reject) ──▶ expired
//! awaiting ──expiry, leave──▶ expired
//!    ▲                                  │
//!    └──── Spinnaker refused / Gate ────┘
//!          kept failing (buttons back)
//! awaiting ──echo or reconciler──▶ decided_elsewhere | canceled | ended | vanished
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Any;

use crate::store::{Db, new_id};

pub const AWAITING: &str = "awaiting";
pub const JUDGING: &str = "judging";
pub const APPROVED: &str = "approved";
pub const REJECTED: &str = "rejected";
pub const DECIDED_ELSEWHERE: &str = "decided_elsewhere";
pub const CANCELED: &str = "canceled";
pub const ENDED: &str = "ended";
pub const VANISHED: &str = "vanished";
/// Expired in Slack (`approvals.expire_after_mins`): left to Deck, or rejected by slackops.
pub const EXPIRED: &str = "expired";

/// States in which the judgment is still open in Spinnaker.
pub fn is_open(state: &str) -> bool {
    state == AWAITING || state == JUDGING
}

/// What the message shows about a stage, taken from the execution when the judgment starts.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, utoipa::ToSchema)]
pub struct StageInfo {
    pub application: String,
    pub pipeline_name: String,
    pub execution_id: String,
    pub stage_id: String,
    pub stage_name: String,
    pub stage_start: i64,
    pub instructions: Option<String>,
    pub judgment_inputs: Vec<String>,
    /// `requiredJudgmentRoles` when set (it takes precedence), else `selectedStageRoles`.
    pub roles: Vec<String>,
    pub trigger_type: String,
    /// The trigger's user (usually an email) or the execution's authenticated user.
    pub trigger_user: Option<String>,
    pub trigger_detail: Option<String>,
    /// `[name, value]` pairs.
    #[schema(value_type = Vec<Vec<String>>)]
    pub parameters: Vec<(String, String)>,
    pub artifacts: Vec<String>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The stage with this id in an execution.
pub fn find_stage<'a>(execution: &'a Value, stage_id: &str) -> Option<&'a Value> {
    execution
        .get("stages")?
        .as_array()?
        .iter()
        .find(|s| s.get("id").and_then(Value::as_str) == Some(stage_id))
}

pub fn is_manual_judgment(stage: &Value) -> bool {
    stage.get("type").and_then(Value::as_str) == Some("manualJudgment")
}

impl StageInfo {
    /// Read a Manual Judgment stage out of an execution. `None` when the stage is missing or is not
    /// a Manual Judgment. `start_hint` is the event's `startTime`, used when the stage has none.
    pub fn from_execution(
        execution: &Value,
        stage_id: &str,
        start_hint: Option<i64>,
    ) -> Option<StageInfo> {
        let stage = find_stage(execution, stage_id)?;
        if !is_manual_judgment(stage) {
            return None;
        }
        let ctx = stage.get("context").cloned().unwrap_or(Value::Null);
        let trigger = execution.get("trigger").cloned().unwrap_or(Value::Null);
        let required = strings(ctx.get("requiredJudgmentRoles"));
        let roles = if required.is_empty() {
            strings(ctx.get("selectedStageRoles"))
        } else {
            required
        };
        let judgment_inputs = judgment_inputs(&ctx);
        let trigger_type = trigger
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string();
        let trigger_user = trigger_user(execution, &trigger);
        let trigger_detail = trigger_detail(&trigger_type, &trigger);
        let parameters = trigger_parameters(&trigger);
        let artifacts = trigger_artifacts(&trigger);
        let stage_start = stage
            .get("startTime")
            .and_then(Value::as_i64)
            .or(start_hint)
            .unwrap_or(0);
        Some(StageInfo {
            application: execution.get("application").map(text).unwrap_or_default(),
            pipeline_name: execution.get("name").map(text).unwrap_or_default(),
            execution_id: execution.get("id").map(text).unwrap_or_default(),
            stage_id: stage_id.to_string(),
            stage_name: stage
                .get("name")
                .map(text)
                .unwrap_or_else(|| "Manual Judgment".into()),
            stage_start,
            instructions: ctx
                .get("instructions")
                .map(text)
                .filter(|s| !s.trim().is_empty()),
            judgment_inputs,
            roles,
            trigger_type,
            trigger_user,
            trigger_detail,
            parameters,
            artifacts,
        })
    }
}

/// The stage's judgment inputs (`judgmentInputs`, as `{value}` objects or strings).
fn judgment_inputs(ctx: &Value) -> Vec<String> {
    ctx.get("judgmentInputs")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|i| {
                    i.get("value")
                        .and_then(Value::as_str)
                        .or_else(|| i.as_str())
                })
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Who triggered the execution: the trigger's user, else the authenticated user; never
/// `anonymous`.
fn trigger_user(execution: &Value, trigger: &Value) -> Option<String> {
    trigger
        .get("user")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty() && *u != "anonymous")
        .or_else(|| {
            execution
                .pointer("/authentication/user")
                .and_then(Value::as_str)
        })
        .filter(|u| !u.is_empty() && *u != "anonymous")
        .map(str::to_owned)
}

/// What started the execution besides a person, in brief: its cron expression, parent
/// pipeline, docker tag, git branch or jenkins job.
fn trigger_detail(trigger_type: &str, trigger: &Value) -> Option<String> {
    match trigger_type {
        "cron" => trigger
            .get("cronExpression")
            .map(text)
            .map(|c| format!("cron `{c}`")),
        "pipeline" => trigger
            .pointer("/parentExecution/name")
            .map(text)
            .map(|n| format!("pipeline {n}")),
        "docker" => trigger
            .get("tag")
            .map(text)
            .map(|t| format!("docker tag {t}")),
        "git" => trigger
            .get("branch")
            .map(text)
            .map(|b| format!("git branch {b}")),
        "jenkins" => trigger
            .get("job")
            .map(text)
            .map(|j| format!("jenkins job {j}")),
        _ => None,
    }
}

/// The trigger's parameters as text, sorted by name.
fn trigger_parameters(trigger: &Value) -> Vec<(String, String)> {
    let mut parameters: Vec<(String, String)> = trigger
        .get("parameters")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), text(v))).collect())
        .unwrap_or_default();
    parameters.sort();
    parameters
}

/// The trigger's artifacts in brief: `name version`, else the name, else the reference.
fn trigger_artifacts(trigger: &Value) -> Vec<String> {
    trigger
        .get("artifacts")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|art| {
                    let name = art.get("name").map(text).unwrap_or_default();
                    let version = art.get("version").map(text).unwrap_or_default();
                    let reference = art.get("reference").map(text).unwrap_or_default();
                    match (name.is_empty(), version.is_empty()) {
                        (false, false) => format!("{name} {version}"),
                        (false, true) => name,
                        _ => reference,
                    }
                })
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// What Spinnaker says happened to a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageOutcome {
    /// Still waiting for a judgment.
    Waiting,
    /// A judgment is recorded but orca has not acted on it yet.
    Pending { status: String, by: Option<String> },
    Continued {
        by: Option<String>,
        input: Option<String>,
    },
    Stopped {
        by: Option<String>,
        input: Option<String>,
    },
    /// Ended without a judgment (timed out, failed, skipped, canceled).
    Ended { status: String },
}

/// Read a stage's outcome as orca reports it (reference/spinnaker.md §4).
pub fn stage_outcome(stage: &Value) -> StageOutcome {
    let status = stage
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let ctx = stage.get("context").cloned().unwrap_or(Value::Null);
    let judgment = ctx
        .get("judgmentStatus")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_ascii_lowercase();
    let by = ctx
        .get("lastModifiedBy")
        .and_then(Value::as_str)
        .or_else(|| stage.pointer("/lastModified/user").and_then(Value::as_str))
        .map(str::to_owned);
    let input = ctx
        .get("judgmentInput")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    match status.as_str() {
        "RUNNING" | "NOT_STARTED" | "PAUSED" | "SUSPENDED" | "BUFFERED" => {
            if judgment.is_empty() {
                StageOutcome::Waiting
            } else {
                StageOutcome::Pending {
                    status: judgment,
                    by,
                }
            }
        }
        "SUCCEEDED" if judgment == "continue" => StageOutcome::Continued { by, input },
        _ if judgment == "stop" => StageOutcome::Stopped { by, input },
        "SUCCEEDED" if judgment.is_empty() => StageOutcome::Ended { status },
        _ if judgment == "continue" => StageOutcome::Continued { by, input },
        _ => StageOutcome::Ended { status },
    }
}

/// One judgment row. Times are milliseconds since the epoch.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct Judgment {
    pub id: String,
    pub execution_id: String,
    pub stage_id: String,
    pub stage_start: i64,
    pub application: String,
    pub pipeline_name: String,
    pub stage_name: String,
    pub state: String,
    pub channel: Option<String>,
    pub message_ts: Option<String>,
    pub judge_user: Option<String>,
    pub judge_name: Option<String>,
    pub claimed_at: Option<i64>,
    pub decision: Option<String>,
    pub judgment_input: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub note: Option<String>,
    pub trigger_user: Option<String>,
    #[serde(skip)]
    pub snapshot: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Distinct approvals counted so far (the quorum's progress).
    pub approvals: i64,
    /// The judgment input fixed by the first approval.
    pub quorum_input: Option<String>,
    /// Why it was rejected, when the person said.
    pub reason: Option<String>,
    pub reminders_sent: i64,
    /// When it expired in Slack.
    pub expired_at: Option<i64>,
}

/// One person's counted approval of a judgment.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct Approval {
    pub user_id: String,
    pub user_name: String,
    pub judgment_input: Option<String>,
    pub approved_at: i64,
}

impl Judgment {
    pub fn info(&self) -> StageInfo {
        serde_json::from_str(&self.snapshot).unwrap_or_default()
    }
    /// `judgment:<execution>:<stage>:<start>`: the audit subject.
    pub fn subject(&self) -> String {
        format!(
            "judgment:{}:{}:{}",
            self.execution_id, self.stage_id, self.stage_start
        )
    }
    /// A marker stored in the stage context with the PATCH, so a retry after a crash can tell
    /// whether this claim's judgment already reached Spinnaker.
    pub fn claim_marker(&self) -> String {
        format!("{}/{}", self.id, self.claimed_at.unwrap_or(0))
    }
}

pub(crate) const COLUMNS: &str =
    "id, execution_id, stage_id, stage_start, application, pipeline_name, stage_name, state,
    channel, message_ts, judge_user, judge_name, claimed_at, decision, judgment_input, decided_by,
    decided_at, note, trigger_user, snapshot, created_at, updated_at, approvals, quorum_input,
    reason, reminders_sent, expired_at";

/// A click's claim on a judgment.
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    pub id: &'a str,
    pub user: &'a str,
    pub user_name: &'a str,
    /// `continue` or `stop`.
    pub decision: &'a str,
    pub input: Option<&'a str>,
    /// Why (a rejection's reason), if given.
    pub reason: Option<&'a str>,
    pub now: i64,
}

/// A final outcome to record.
#[derive(Debug, Clone)]
pub struct Outcome<'a> {
    pub state: &'a str,
    pub decision: Option<&'a str>,
    pub input: Option<&'a str>,
    pub decided_by: Option<&'a str>,
    pub note: Option<&'a str>,
}

impl Db {
    /// Insert a new judgment unless this stage run is already known. Returns its id when inserted.
    pub async fn insert_judgment<'e, E>(
        &self,
        executor: E,
        info: &StageInfo,
        state: &str,
        now: i64,
    ) -> Result<Option<String>, sqlx::Error>
    where
        E: sqlx::Executor<'e, Database = Any>,
    {
        let id = new_id();
        let res = sqlx::query(
            "INSERT INTO judgments (id, execution_id, stage_id, stage_start, application, pipeline_name,
                stage_name, state, trigger_user, snapshot, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)
             ON CONFLICT (execution_id, stage_id, stage_start) DO NOTHING",
        )
        .bind(&id)
        .bind(&info.execution_id)
        .bind(&info.stage_id)
        .bind(info.stage_start)
        .bind(&info.application)
        .bind(&info.pipeline_name)
        .bind(&info.stage_name)
        .bind(state)
        .bind(&info.trigger_user)
        .bind(serde_json::to_string(info).unwrap_or_default())
        .bind(now)
        .execute(executor)
        .await?;
        Ok((res.rows_affected() == 1).then_some(id))
    }

    pub async fn judgment(&self, id: &str) -> Result<Option<Judgment>, sqlx::Error> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM judgments WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await
    }

    pub async fn judgment_for_run(
        &self,
        execution_id: &str,
        stage_id: &str,
        stage_start: i64,
    ) -> Result<Option<Judgment>, sqlx::Error> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM judgments WHERE execution_id = $1 AND stage_id = $2 AND stage_start = $3"
        )))
        .bind(execution_id)
        .bind(stage_id)
        .bind(stage_start)
        .fetch_optional(self.pool())
        .await
    }

    /// Open judgments of an execution (for pipeline-level events).
    pub async fn open_judgments_of(
        &self,
        execution_id: &str,
    ) -> Result<Vec<Judgment>, sqlx::Error> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM judgments WHERE execution_id = $1 AND state IN ('awaiting', 'judging')"
        )))
        .bind(execution_id)
        .fetch_all(self.pool())
        .await
    }

    /// The latest judgment of a stage (any start time).
    pub async fn latest_judgment_of_stage(
        &self,
        execution_id: &str,
        stage_id: &str,
    ) -> Result<Option<Judgment>, sqlx::Error> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM judgments WHERE execution_id = $1 AND stage_id = $2
             ORDER BY stage_start DESC LIMIT 1"
        )))
        .bind(execution_id)
        .bind(stage_id)
        .fetch_optional(self.pool())
        .await
    }

    /// How many judgments are in each state (for `/metrics`).
    pub async fn judgment_counts(&self) -> Result<Vec<(String, i64)>, sqlx::Error> {
        sqlx::query_as("SELECT state, COUNT(*) FROM judgments GROUP BY state")
            .fetch_all(self.pool())
            .await
    }

    pub async fn judgments_in_state(
        &self,
        state: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Judgment>, sqlx::Error> {
        match state {
            Some(s) => sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM judgments WHERE state = $1 ORDER BY created_at DESC LIMIT $2"
            )))
            .bind(s)
            .bind(limit)
            .fetch_all(self.pool())
            .await,
            None => {
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM judgments ORDER BY created_at DESC LIMIT $1"
                )))
                .bind(limit)
                .fetch_all(self.pool())
                .await
            }
        }
    }

    /// Remember where the message was posted (only the first time).
    pub async fn set_judgment_message(
        &self,
        id: &str,
        channel: &str,
        ts: &str,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        let res = sqlx::query(
            "UPDATE judgments SET channel = $1, message_ts = $2, updated_at = $3
             WHERE id = $4 AND message_ts IS NULL",
        )
        .bind(channel)
        .bind(ts)
        .bind(now)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// The atomic claim: only one click, on any replica, moves `awaiting` to `judging`.
    pub async fn claim_judgment<'e, E>(
        &self,
        executor: E,
        c: &Claim<'_>,
    ) -> Result<bool, sqlx::Error>
    where
        E: sqlx::Executor<'e, Database = Any>,
    {
        let res = sqlx::query(
            "UPDATE judgments SET state = 'judging', judge_user = $1, judge_name = $2, decision = $3,
                judgment_input = $4, claimed_at = $5, note = NULL, reason = $6, updated_at = $5
             WHERE id = $7 AND state = 'awaiting'",
        )
        .bind(c.user)
        .bind(c.user_name)
        .bind(c.decision)
        .bind(c.input)
        .bind(c.now)
        .bind(c.reason)
        .bind(c.id)
        .execute(executor)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Record a final outcome of an open judgment. Returns false if it was no longer open.
    pub async fn finish_judgment(
        &self,
        id: &str,
        o: &Outcome<'_>,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        let res = sqlx::query(
            "UPDATE judgments SET state = $1, decision = COALESCE($2, decision),
                judgment_input = COALESCE($3, judgment_input), decided_by = $4, decided_at = $5,
                note = $6, updated_at = $5
             WHERE id = $7 AND state IN ('awaiting', 'judging')",
        )
        .bind(o.state)
        .bind(o.decision)
        .bind(o.input)
        .bind(o.decided_by)
        .bind(now)
        .bind(o.note)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Record who decided a judgment that was stored already decided (its completion arrived
    /// before its start).
    pub async fn set_judgment_outcome(
        &self,
        id: &str,
        o: &Outcome<'_>,
        now: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE judgments SET decision = $1, judgment_input = $2, decided_by = $3, decided_at = $4,
                note = $5, updated_at = $4
             WHERE id = $6",
        )
        .bind(o.decision)
        .bind(o.input)
        .bind(o.decided_by)
        .bind(now)
        .bind(o.note)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Give a claimed judgment back (Spinnaker refused it, or Gate kept failing): buttons return.
    pub async fn release_judgment(
        &self,
        id: &str,
        claimed_at: i64,
        note: &str,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        let res = sqlx::query(
            "UPDATE judgments SET state = 'awaiting', note = $1, expired_at = NULL, updated_at = $2
             WHERE id = $3 AND state = 'judging' AND claimed_at = $4",
        )
        .bind(note)
        .bind(now)
        .bind(id)
        .bind(claimed_at)
        .execute(self.pool())
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Add a note to a judgment still being judged under this claim. True when it changed.
    pub async fn note_judging(
        &self,
        id: &str,
        claimed_at: i64,
        note: &str,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        let res = sqlx::query(
            "UPDATE judgments SET note = $1, updated_at = $2
             WHERE id = $3 AND state = 'judging' AND claimed_at = $4 AND (note IS NULL OR note <> $1)",
        )
        .bind(note)
        .bind(now)
        .bind(id)
        .bind(claimed_at)
        .execute(self.pool())
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Judgments claimed before `claimed_before` and still being judged (for the reconciler, which
    /// makes sure each still has a judge job).
    pub async fn judging_since(
        &self,
        claimed_before: i64,
        limit: i64,
    ) -> Result<Vec<Judgment>, sqlx::Error> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM judgments WHERE state = 'judging' AND claimed_at < $1
             ORDER BY claimed_at LIMIT $2"
        )))
        .bind(claimed_before)
        .bind(limit)
        .fetch_all(self.pool())
        .await
    }

    /// Open judgments with a posted message, oldest check first (for the reconciler).
    pub async fn open_posted_judgments(&self, limit: i64) -> Result<Vec<Judgment>, sqlx::Error> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM judgments WHERE state = 'awaiting' AND message_ts IS NOT NULL
             ORDER BY updated_at LIMIT $1"
        )))
        .bind(limit)
        .fetch_all(self.pool())
        .await
    }

    /// Note that the reconciler looked at a judgment (so the next pass looks at others first).
    pub async fn touch_judgment(&self, id: &str, now: i64) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE judgments SET updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn execution() -> Value {
        json!({
            "id": "01EXEC", "application": "myapp", "name": "deploy-prod", "status": "RUNNING",
            "authentication": {"user": "alice@example.com"},
            "trigger": {"type": "manual", "user": "alice@example.com",
                        "parameters": {"version": "v42", "region": "eu"},
                        "artifacts": [{"name": "gcr.io/app", "version": "v42"}]},
            "stages": [
                {"id": "s1", "type": "deploy", "status": "SUCCEEDED"},
                {"id": "s2", "type": "manualJudgment", "name": "Approve prod", "status": "RUNNING",
                 "startTime": 1700000000000i64,
                 "context": {"instructions": "Promote <b>v42</b>?",
                             "judgmentInputs": [{"value": "deploy"}, {"value": "rollback"}],
                             "selectedStageRoles": ["ops"], "requiredJudgmentRoles": ["release"]}}
            ]
        })
    }

    #[test]
    fn reads_a_manual_judgment_stage() {
        let i = StageInfo::from_execution(&execution(), "s2", None).unwrap();
        assert_eq!(i.application, "myapp");
        assert_eq!(i.pipeline_name, "deploy-prod");
        assert_eq!(i.stage_name, "Approve prod");
        assert_eq!(i.stage_start, 1700000000000);
        assert_eq!(i.judgment_inputs, vec!["deploy", "rollback"]);
        assert_eq!(
            i.roles,
            vec!["release"],
            "requiredJudgmentRoles takes precedence"
        );
        assert_eq!(i.trigger_user.as_deref(), Some("alice@example.com"));
        assert_eq!(
            i.parameters,
            vec![
                ("region".into(), "eu".into()),
                ("version".into(), "v42".into())
            ]
        );
        assert_eq!(i.artifacts, vec!["gcr.io/app v42"]);
        assert!(
            StageInfo::from_execution(&execution(), "s1", None).is_none(),
            "not a judgment"
        );
        assert!(StageInfo::from_execution(&execution(), "nope", None).is_none());
    }

    #[test]
    fn outcomes_follow_orca() {
        let s = |status: &str, j: &str| json!({"status": status, "context": {"judgmentStatus": j, "lastModifiedBy": "bob"}});
        assert_eq!(stage_outcome(&s("RUNNING", "")), StageOutcome::Waiting);
        assert!(matches!(
            stage_outcome(&s("RUNNING", "continue")),
            StageOutcome::Pending { .. }
        ));
        assert!(
            matches!(stage_outcome(&s("SUCCEEDED", "continue")), StageOutcome::Continued { by: Some(b), .. } if b == "bob")
        );
        assert!(matches!(
            stage_outcome(&s("TERMINAL", "stop")),
            StageOutcome::Stopped { .. }
        ));
        assert!(matches!(
            stage_outcome(&s("FAILED_CONTINUE", "stop")),
            StageOutcome::Stopped { .. }
        ));
        assert!(matches!(
            stage_outcome(&s("TERMINAL", "")),
            StageOutcome::Ended { .. }
        ));
        assert!(matches!(
            stage_outcome(&s("CANCELED", "")),
            StageOutcome::Ended { .. }
        ));
    }
}
