//! Pager incidents as stored, and the store operations whose atomicity carries the guarantees:
//! one row (and so one message) per provider incident, one provider call per click, and no older
//! event overwriting a newer state.
//!
//! ```text
//! triggered ──ack──▶ acknowledged ──resolve──▶ resolved
//!     ▲                   │                       │
//!     └──unacknowledge────┘◀──────reopen──────────┘   (only from the provider, never a click)
//! ```
//! A click claims the incident (`claim_*`) until its job has called the provider; the state
//! itself changes only from what the provider says (its answer or its webhooks).

use serde::{Deserialize, Serialize};
use sqlx::Any;

use super::settings::{PagerProvider, PagerRoute};
use crate::store::{Db, new_id};

pub const TRIGGERED: &str = "triggered";
pub const ACKNOWLEDGED: &str = "acknowledged";
pub const RESOLVED: &str = "resolved";

/// What a click asks the provider to do.
pub const ACKNOWLEDGE: &str = "acknowledge";
pub const RESOLVE: &str = "resolve";

/// Someone an incident is assigned to, as the provider names them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Assignee {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

/// Who changed the state, as far as is known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    pub name: Option<String>,
    pub email: Option<String>,
    /// Set when the change was made from Slack.
    pub slack: Option<String>,
}

/// An incident as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Incident {
    pub id: String,
    pub provider: String,
    pub incident_id: String,
    pub title: String,
    pub service: String,
    pub urgency: Option<String>,
    pub url: Option<String>,
    pub opened_at: i64,
    pub assignees: String,
    pub route: String,
    pub status: String,
    pub status_at: i64,
    pub status_by_name: Option<String>,
    pub status_by_email: Option<String>,
    pub status_by_slack: Option<String>,
    pub claim_user: Option<String>,
    pub claim_action: Option<String>,
    pub claimed_at: Option<i64>,
    pub request_id: Option<String>,
    pub channel: Option<String>,
    pub message_ts: Option<String>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str =
    "id, provider, incident_id, title, service, urgency, url, opened_at, assignees,
    route, status, status_at, status_by_name, status_by_email, status_by_slack, claim_user,
    claim_action, claimed_at, request_id, channel, message_ts, version, created_at, updated_at";

impl Incident {
    pub fn provider(&self) -> Option<PagerProvider> {
        PagerProvider::parse(&self.provider)
    }
    pub fn route(&self) -> PagerRoute {
        serde_json::from_str(&self.route).unwrap_or_default()
    }
    pub fn assignees(&self) -> Vec<Assignee> {
        serde_json::from_str(&self.assignees).unwrap_or_default()
    }
    pub fn is_resolved(&self) -> bool {
        self.status == RESOLVED
    }
    /// `pager:<provider>:<incident id>`, for the audit log.
    pub fn subject(&self) -> String {
        format!("pager:{}:{}", self.provider, self.incident_id)
    }
}

/// A new incident, from its first event.
#[derive(Debug, Clone)]
pub struct NewIncident<'a> {
    pub provider: PagerProvider,
    pub incident_id: &'a str,
    pub title: &'a str,
    pub service: &'a str,
    pub urgency: Option<&'a str>,
    pub url: Option<&'a str>,
    pub opened_at: i64,
    pub assignees: &'a [Assignee],
    pub route: &'a PagerRoute,
    pub status: &'a str,
    pub status_at: i64,
    pub by: &'a Actor,
}

/// A state the provider reported, at its time.
#[derive(Debug, Clone)]
pub struct Reported<'a> {
    pub status: &'a str,
    pub at: i64,
    pub by: &'a Actor,
}

fn json(v: &impl Serialize) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

impl Db {
    /// Record an event key; false when it was already taken in.
    pub async fn pager_claim_event<'e, E>(
        &self,
        executor: E,
        key: &str,
        now: i64,
    ) -> Result<bool, sqlx::Error>
    where
        E: sqlx::Executor<'e, Database = Any>,
    {
        let res = sqlx::query(
            "INSERT INTO pager_events_seen (event_key, seen_at) VALUES ($1, $2)
             ON CONFLICT (event_key) DO NOTHING",
        )
        .bind(key)
        .bind(now)
        .execute(executor)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Insert an incident unless the provider's incident is known; its id when inserted.
    pub async fn pager_insert<'e, E>(
        &self,
        executor: E,
        n: &NewIncident<'_>,
        now: i64,
    ) -> Result<Option<String>, sqlx::Error>
    where
        E: sqlx::Executor<'e, Database = Any>,
    {
        let id = new_id();
        let res = sqlx::query(
            "INSERT INTO pager_incidents (id, provider, incident_id, title, service, urgency, url,
                opened_at, assignees, route, status, status_at, status_by_name, status_by_email,
                version, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 1, $15, $15)
             ON CONFLICT (provider, incident_id) DO NOTHING",
        )
        .bind(&id)
        .bind(n.provider.as_str())
        .bind(n.incident_id)
        .bind(n.title)
        .bind(n.service)
        .bind(n.urgency)
        .bind(n.url)
        .bind(n.opened_at)
        .bind(json(&n.assignees))
        .bind(json(n.route))
        .bind(n.status)
        .bind(n.status_at)
        .bind(n.by.name.as_deref())
        .bind(n.by.email.as_deref())
        .bind(now)
        .execute(executor)
        .await?;
        Ok((res.rows_affected() == 1).then_some(id))
    }

    pub async fn pager_incident(&self, id: &str) -> Result<Option<Incident>, sqlx::Error> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM pager_incidents WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await
    }

    pub async fn pager_incident_of<'e, E>(
        &self,
        executor: E,
        provider: PagerProvider,
        incident_id: &str,
    ) -> Result<Option<Incident>, sqlx::Error>
    where
        E: sqlx::Executor<'e, Database = Any>,
    {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM pager_incidents WHERE provider = $1 AND incident_id = $2"
        )))
        .bind(provider.as_str())
        .bind(incident_id)
        .fetch_optional(executor)
        .await
    }

    /// Apply a reported state unless a newer one is shown. A state equal to the shown one keeps
    /// who is credited (a webhook echoing a change made from Slack names the token's owner).
    /// True when the row changed.
    pub async fn pager_report<'e, E>(
        &self,
        executor: E,
        id: &str,
        r: &Reported<'_>,
        now: i64,
    ) -> Result<bool, sqlx::Error>
    where
        E: sqlx::Executor<'e, Database = Any>,
    {
        let res = sqlx::query(
            "UPDATE pager_incidents SET status = $1, status_at = $2, status_by_name = $3,
                status_by_email = $4, status_by_slack = $5, version = version + 1, updated_at = $6
             WHERE id = $7 AND status_at <= $2 AND status <> $1",
        )
        .bind(r.status)
        .bind(r.at)
        .bind(r.by.name.as_deref())
        .bind(r.by.email.as_deref())
        .bind(r.by.slack.as_deref())
        .bind(now)
        .bind(id)
        .execute(executor)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Replace the assignees unless a newer state is shown. True when they changed.
    pub async fn pager_assign<'e, E>(
        &self,
        executor: E,
        id: &str,
        assignees: &[Assignee],
        at: i64,
        now: i64,
    ) -> Result<bool, sqlx::Error>
    where
        E: sqlx::Executor<'e, Database = Any>,
    {
        let res = sqlx::query(
            "UPDATE pager_incidents SET assignees = $1, version = version + 1, updated_at = $2
             WHERE id = $3 AND status_at <= $4 AND assignees <> $1",
        )
        .bind(json(&assignees))
        .bind(now)
        .bind(id)
        .bind(at)
        .execute(executor)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Remember where the message was posted (only the first time).
    pub async fn pager_set_message(
        &self,
        id: &str,
        channel: &str,
        ts: &str,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        let res = sqlx::query(
            "UPDATE pager_incidents SET channel = $1, message_ts = $2, updated_at = $3
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

    /// The atomic claim: one click, on any replica, gets to act. An acknowledge needs a
    /// triggered incident; nothing acts on a resolved one.
    pub async fn pager_claim<'e, E>(
        &self,
        executor: E,
        id: &str,
        user: &str,
        action: &str,
        now: i64,
    ) -> Result<bool, sqlx::Error>
    where
        E: sqlx::Executor<'e, Database = Any>,
    {
        let res = sqlx::query(
            "UPDATE pager_incidents SET claim_user = $1, claim_action = $2, claimed_at = $3,
                request_id = NULL, version = version + 1, updated_at = $3
             WHERE id = $4 AND claim_user IS NULL AND status <> 'resolved'
               AND ($2 <> 'acknowledge' OR status = 'triggered')",
        )
        .bind(user)
        .bind(action)
        .bind(now)
        .bind(id)
        .execute(executor)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Remember the provider's request id of the claimed action (Opsgenie's 202).
    pub async fn pager_set_request(
        &self,
        id: &str,
        claimed_at: i64,
        request_id: &str,
    ) -> Result<bool, sqlx::Error> {
        let res = sqlx::query(
            "UPDATE pager_incidents SET request_id = $1 WHERE id = $2 AND claimed_at = $3",
        )
        .bind(request_id)
        .bind(id)
        .bind(claimed_at)
        .execute(self.pool())
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// End a claim; with `done`, show the state the action reached, credited to the person who
    /// clicked. False when the claim was not this one any more.
    pub async fn pager_release(
        &self,
        id: &str,
        claimed_at: i64,
        done: Option<&Reported<'_>>,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.pool().begin().await?;
        let res = sqlx::query(
            "UPDATE pager_incidents SET claim_user = NULL, claim_action = NULL, claimed_at = NULL,
                request_id = NULL, version = version + 1, updated_at = $1
             WHERE id = $2 AND claimed_at = $3",
        )
        .bind(now)
        .bind(id)
        .bind(claimed_at)
        .execute(&mut *tx)
        .await?;
        if res.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        if let Some(r) = done {
            // A state reached from Slack is credited to the person even when the provider's
            // webhook got there first (naming the token's owner, or no one).
            sqlx::query(
                "UPDATE pager_incidents SET status = $1,
                    status_at = CASE WHEN status_at > $2 THEN status_at ELSE $2 END,
                    status_by_name = $3, status_by_email = $4, status_by_slack = $5
                 WHERE id = $6 AND (status_at <= $2 OR status = $1)",
            )
            .bind(r.status)
            .bind(r.at)
            .bind(r.by.name.as_deref())
            .bind(r.by.email.as_deref())
            .bind(r.by.slack.as_deref())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}
