//! On-call: keep Slack user groups such as `@platform-oncall` in step with PagerDuty, Opsgenie,
//! Grafana OnCall or a static rota, and announce shift changes.
//!
//! Why it exists: teams page through a paging product but talk in Slack, where a user group must
//! always mean whoever is on call right now. A sync ([`sync`]) asks each group's sources
//! ([`providers`]) who is on call (plus the next shift within the handover window), turns emails
//! into Slack user IDs through a TTL cache, compares with the group's members and writes only
//! when they differ. It runs every `oncall.interval_secs` on one replica at a time and on demand
//! (`slackops oncall sync [--dry-run]`), groups in parallel with a bound, each group on its own:
//! one failing group never stops the others, and it keeps its current members.
//!
//! What it must never do: empty a group (Slack refuses; the policy keeps or falls back), write a
//! group from a partial answer (any failing source leaves the group as it is), announce a change
//! twice (the announced member list and its generation live in the database; notices go through
//! the job queue with a dedup key per generation), or log tokens and request bodies.

pub mod cli;
pub mod command;
pub mod notify;
pub mod providers;
pub mod settings;
pub mod sync;

use std::sync::Arc;
use std::time::Duration;

use crate::registry::Registry;
use crate::slack::api::{SlackApi, SlackError};
use settings::OncallSettings;

pub use crate::clock::Millis;

pub const FEATURE: &str = "oncall";
/// Job kinds.
pub const JOB_NOTICE: &str = "oncall.notice";
pub const JOB_DM: &str = "oncall.dm";
pub const JOB_ALERT: &str = "oncall.alert";
/// The lease every sync run holds while it may write (periodic and CLI alike).
pub const RUN_LEASE: &str = "oncall.sync.run";

/// Someone a provider says is on call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// The provider's user ID (or the email / Slack ID for providers without IDs).
    pub id: String,
    pub email: Option<String>,
    /// Known directly (Grafana OnCall, a rota listing Slack IDs): no lookup needed.
    pub slack_id: Option<String>,
    pub name: Option<String>,
}

impl Person {
    /// How the person is shown in plans and reports.
    pub fn label(&self) -> String {
        self.email
            .clone()
            .or_else(|| self.name.clone())
            .unwrap_or_else(|| self.id.clone())
    }
}

/// A stretch of time someone is on call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shift {
    pub person: Person,
    /// `None`: already running.
    pub start: Option<Millis>,
    /// `None`: no known end.
    pub end: Option<Millis>,
}

/// The feature's long-lived parts: provider clients and the email → Slack ID cache.
pub struct Oncall {
    pub providers: providers::Providers,
    lookups: moka::future::Cache<String, Option<String>>,
}

impl std::fmt::Debug for Oncall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oncall").finish_non_exhaustive()
    }
}

/// Found emails live `found`, unknown ones `missing` (people get added to Slack).
struct LookupExpiry {
    found: Duration,
    missing: Duration,
}

impl moka::Expiry<String, Option<String>> for LookupExpiry {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Option<String>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(if value.is_some() {
            self.found
        } else {
            self.missing
        })
    }
}

impl Oncall {
    pub fn new(settings: &OncallSettings, http: reqwest::Client) -> Arc<Self> {
        let s = settings;
        Arc::new(Self {
            providers: providers::Providers::new(s, http),
            lookups: moka::future::Cache::builder()
                .max_capacity(100_000)
                .expire_after(LookupExpiry {
                    found: Duration::from_secs(s.lookup_cache_secs),
                    missing: Duration::from_secs(s.missing_cache_secs),
                })
                .build(),
        })
    }

    /// The Slack user ID of an email, `None` when no Slack user has it. Concurrent lookups of one
    /// email make one call; answers are cached.
    pub async fn slack_id(
        &self,
        slack: &SlackApi,
        email: &str,
    ) -> Result<Option<String>, Arc<SlackError>> {
        let key = email.trim().to_ascii_lowercase();
        self.lookups
            .try_get_with(key.clone(), async move {
                slack
                    .lookup_by_email(&key)
                    .await
                    .map(|u| u.filter(|u| !u.deleted && !u.is_bot).map(|u| u.id))
            })
            .await
    }
}

pub fn register(registry: &mut Registry, settings: &OncallSettings) {
    registry
        .command(&settings.command, command::OncallCommand)
        .job(JOB_NOTICE, notify::NoticeJob)
        .job(JOB_DM, notify::DmJob)
        .job(JOB_ALERT, notify::AlertJob)
        .periodic(sync::SyncTask);
}
