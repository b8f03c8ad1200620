//! The audit log: every decision a feature takes (a judgment, a refusal, a pipeline start, a
//! group update) lands here with who, what, when and the outcome. Rows are never updated.

use serde::Serialize;

use super::{Db, new_id};

/// One decision to record.
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    /// `approvals`, `pipelines`, `oncall`, …
    pub feature: &'a str,
    /// `approve`, `reject`, `refused`, `start`, …
    pub action: &'a str,
    /// A Slack user id, or `echo` / `system` for automatic actions.
    pub actor: &'a str,
    /// What it concerns, e.g. `judgment:<execution>:<stage>`.
    pub subject: &'a str,
    /// `ok`, `refused`, `failed`, …
    pub outcome: &'a str,
    /// Structured detail (JSON); never secrets.
    pub detail: Option<serde_json::Value>,
}

/// A stored entry, as the API returns it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AuditRecord {
    pub id: String,
    /// Milliseconds since the epoch.
    pub at: i64,
    pub feature: String,
    pub action: String,
    pub actor: String,
    pub subject: String,
    pub outcome: String,
    /// Structured detail, as a JSON text.
    pub detail: Option<String>,
}

impl Db {
    pub async fn audit(&self, at_ms: i64, e: AuditEntry<'_>) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO audit_log (id, at, feature, action, actor, subject, outcome, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(new_id())
        .bind(at_ms)
        .bind(e.feature)
        .bind(e.action)
        .bind(e.actor)
        .bind(e.subject)
        .bind(e.outcome)
        .bind(e.detail.map(|d| d.to_string()))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Entries about one subject, oldest first.
    pub async fn audit_for(&self, subject: &str) -> Result<Vec<AuditRecord>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, at, feature, action, actor, subject, outcome, detail
             FROM audit_log WHERE subject = $1 ORDER BY at, id",
        )
        .bind(subject)
        .fetch_all(self.pool())
        .await
    }

    /// Entries of one feature, newest first.
    pub async fn audit_recent(
        &self,
        feature: &str,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, at, feature, action, actor, subject, outcome, detail
             FROM audit_log WHERE feature = $1 ORDER BY at DESC, id DESC LIMIT $2",
        )
        .bind(feature)
        .bind(limit)
        .fetch_all(self.pool())
        .await
    }
}
