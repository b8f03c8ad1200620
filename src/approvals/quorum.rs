//! Quorum: `approvals.approvers[].required_approvals` distinct people must approve before
//! slackops sends `continue`.
//!
//! Each approval is one transaction: insert the person's approval (a unique key on judgment and
//! person, so the same person counts once), then increment the judgment's count with a
//! conditional `UPDATE … WHERE state = 'awaiting'` that also checks the judgment input the first
//! approval fixed. That `UPDATE` locks the judgment's row, so approvals arriving together — on one
//! replica or several — are counted one after the other, and the one that completes the quorum
//! claims the judgment and queues the judge job in the same transaction: one claim, one PATCH.
//! Nothing here calls Slack or Gate.

use sqlx::Any;

use super::model::{self, Approval, Claim, Judgment};
use super::policy::approvers_for;
use super::settings::ApprovalsSettings;
use crate::jobs::NewJob;
use crate::state::AppState;
use crate::store::Db;

/// How many distinct approvals a judgment of this application and pipeline needs: the largest
/// `required_approvals` among the rules that apply (at least 1).
pub fn required(settings: &ApprovalsSettings, application: &str, pipeline: &str) -> i64 {
    approvers_for(settings, application, pipeline)
        .iter()
        .map(|r| i64::from(r.required_approvals))
        .max()
        .unwrap_or(1)
        .max(1)
}

/// What became of one approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Counted {
    /// The quorum is complete: the judgment is claimed and its judge job queued.
    Claimed,
    /// Counted; the quorum needs more.
    Counted { have: i64, need: i64 },
    /// This person's approval was already counted; nothing changed.
    Repeat { have: i64, need: i64 },
    /// The first approval fixed another judgment input; nothing was counted.
    OtherInput { fixed: String },
    /// The judgment is no longer awaiting a decision (claimed or closed meanwhile).
    NotAwaiting,
}

/// One approval to count.
#[derive(Debug, Clone)]
pub struct Approve<'a> {
    pub user: &'a str,
    pub user_name: &'a str,
    pub input: Option<&'a str>,
    pub need: i64,
    pub now: i64,
}

/// Count an approval; claim the judgment (and queue its judge job) when it completes the quorum.
pub async fn approve(state: &AppState, j: &Judgment, a: &Approve<'_>) -> anyhow::Result<Counted> {
    let db = state.db();
    let mut tx = db.pool().begin().await?;
    let fresh = db.insert_approval(&mut *tx, &j.id, a).await?;
    let (have, input) = if fresh {
        match db.count_approval(&mut *tx, &j.id, a.input, a.now).await? {
            Some(counted) => counted,
            None => {
                tx.rollback().await?;
                return refused_count(db, &j.id, a.input).await;
            }
        }
    } else {
        // Already counted. The quorum may be complete on an awaiting judgment when a judgment
        // was given back (Gate kept failing): then this approval sends it again.
        match db.awaiting_count(&mut *tx, &j.id).await? {
            Some((have, input)) if have >= a.need => (have, input),
            Some((have, _)) => {
                tx.rollback().await?;
                return Ok(Counted::Repeat { have, need: a.need });
            }
            None => {
                tx.rollback().await?;
                return Ok(Counted::NotAwaiting);
            }
        }
    };
    if have < a.need {
        tx.commit().await?;
        return Ok(Counted::Counted { have, need: a.need });
    }
    let claim = Claim {
        id: &j.id,
        user: a.user,
        user_name: a.user_name,
        decision: "continue",
        input: input.as_deref(),
        reason: None,
        now: a.now,
    };
    if !db.claim_judgment(&mut *tx, &claim).await? {
        tx.rollback().await?;
        return Ok(Counted::NotAwaiting);
    }
    queue_judge(state, &mut tx, &j.id, a.now).await?;
    tx.commit().await?;
    state.jobs().wake();
    Ok(Counted::Claimed)
}

/// Why the count's conditional update matched nothing: another input was fixed, or the judgment
/// left `awaiting`.
async fn refused_count(db: &Db, id: &str, input: Option<&str>) -> anyhow::Result<Counted> {
    Ok(match db.judgment(id).await? {
        Some(l) if l.state == model::AWAITING => match l.quorum_input {
            Some(fixed) if Some(fixed.as_str()) != input => Counted::OtherInput { fixed },
            _ => Counted::NotAwaiting,
        },
        _ => Counted::NotAwaiting,
    })
}

/// Queue the judge job of a claim made in `tx`.
pub async fn queue_judge(
    state: &AppState,
    tx: &mut sqlx::Transaction<'static, Any>,
    id: &str,
    claimed_at: i64,
) -> anyhow::Result<()> {
    state
        .jobs()
        .insert(
            &mut **tx,
            NewJob::new(
                super::JOB_JUDGE,
                &super::JudgeRequest {
                    id: id.to_string(),
                    claimed_at,
                },
            )
            .dedup(format!("{}:{id}:{claimed_at}", super::JOB_JUDGE))
            .max_attempts(state.settings().approvals.judge_max_attempts),
        )
        .await?;
    Ok(())
}

/// What the message shows of a quorum: who approved, and how many are needed.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub need: i64,
    pub approvals: Vec<Approval>,
}

/// The progress of a judgment's quorum, from the store and the configuration.
pub async fn progress(state: &AppState, j: &Judgment) -> Result<Progress, sqlx::Error> {
    let need = required(
        &state.settings().approvals,
        &j.application,
        &j.pipeline_name,
    );
    let approvals = if j.approvals > 0 {
        state.db().approvals_of(&j.id).await?
    } else {
        Vec::new()
    };
    Ok(Progress { need, approvals })
}

impl Db {
    /// Record a person's approval; false when theirs is already recorded.
    async fn insert_approval<'e, E>(
        &self,
        executor: E,
        id: &str,
        a: &Approve<'_>,
    ) -> Result<bool, sqlx::Error>
    where
        E: sqlx::Executor<'e, Database = Any>,
    {
        let res = sqlx::query(
            "INSERT INTO judgment_approvals (judgment_id, user_id, user_name, judgment_input, approved_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (judgment_id, user_id) DO NOTHING",
        )
        .bind(id)
        .bind(a.user)
        .bind(a.user_name)
        .bind(a.input)
        .bind(a.now)
        .execute(executor)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Count one more approval of an awaiting judgment whose fixed input (if any) is `input`;
    /// the first approval fixes it. Returns the new count and the fixed input, or `None` when the
    /// judgment is not awaiting or another input is fixed.
    async fn count_approval<'e, E>(
        &self,
        executor: E,
        id: &str,
        input: Option<&str>,
        now: i64,
    ) -> Result<Option<(i64, Option<String>)>, sqlx::Error>
    where
        E: sqlx::Executor<'e, Database = Any>,
    {
        sqlx::query_as(
            "UPDATE judgments SET approvals = approvals + 1,
                quorum_input = COALESCE(quorum_input, $1), updated_at = $2
             WHERE id = $3 AND state = 'awaiting'
               AND (quorum_input IS NULL OR quorum_input = COALESCE($1, quorum_input))
             RETURNING approvals, quorum_input",
        )
        .bind(input)
        .bind(now)
        .bind(id)
        .fetch_optional(executor)
        .await
    }

    /// The count and fixed input of an awaiting judgment (`None` when it is not awaiting).
    async fn awaiting_count<'e, E>(
        &self,
        executor: E,
        id: &str,
    ) -> Result<Option<(i64, Option<String>)>, sqlx::Error>
    where
        E: sqlx::Executor<'e, Database = Any>,
    {
        sqlx::query_as(
            "SELECT approvals, quorum_input FROM judgments WHERE id = $1 AND state = 'awaiting'",
        )
        .bind(id)
        .fetch_optional(executor)
        .await
    }

    /// The approvals of a judgment, first first.
    pub async fn approvals_of(&self, id: &str) -> Result<Vec<Approval>, sqlx::Error> {
        sqlx::query_as(
            "SELECT user_id, user_name, judgment_input, approved_at FROM judgment_approvals
             WHERE judgment_id = $1 ORDER BY approved_at, user_id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approvals::settings::ApproverRule;

    fn rule(app: &str, pipeline: Option<&str>, n: u32) -> ApproverRule {
        ApproverRule {
            application: app.into(),
            pipeline: pipeline.map(str::to_owned),
            everyone: true,
            required_approvals: n,
            ..Default::default()
        }
    }

    #[test]
    fn the_quorum_is_the_largest_among_the_rules_that_apply() {
        let mut s = ApprovalsSettings::default();
        assert_eq!(required(&s, "app", "p"), 1, "no rule: one approval");
        s.approvers = vec![
            rule("app", None, 2),
            rule("app", None, 3),
            rule("*", None, 5),
        ];
        assert_eq!(required(&s, "app", "p"), 3);
        assert_eq!(required(&s, "other", "p"), 5, "the * rule");
        s.approvers.push(rule("app", Some("p"), 1));
        assert_eq!(required(&s, "app", "p"), 1, "a pipeline rule wins");
        assert_eq!(ApproverRule::default().required_approvals, 1);
    }
}
