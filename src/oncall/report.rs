//! What a sync decided and did, per group: the plan the CLI prints, the outcome `/metrics` counts
//! and the audit log records, and what the ops channel is told about.
//!
//! Plain data: the sync produces it and the notifications read it, and neither imports the other
//! for it. It must never call anything: no Slack, no provider, no database.

use serde::Serialize;

/// A member as shown in a plan.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Member {
    pub slack_id: String,
    /// Email or name when known from the provider, else empty.
    pub label: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Members were replaced.
    Updated,
    /// Dry run: members would be replaced.
    WouldUpdate,
    /// Already right: nothing written.
    Unchanged,
    /// Nobody on call (or nobody found in Slack): the current members were kept.
    KeptEmpty,
    /// Something failed; the group was left as it was.
    Failed,
}

impl Outcome {
    /// The outcomes a real (not dry) run counts in `slackops_oncall_group_syncs_total`.
    pub const COUNTED: [Outcome; 4] = [
        Outcome::Updated,
        Outcome::Unchanged,
        Outcome::KeptEmpty,
        Outcome::Failed,
    ];

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Updated => "updated",
            Outcome::WouldUpdate => "would_update",
            Outcome::Unchanged => "unchanged",
            Outcome::KeptEmpty => "kept_empty",
            Outcome::Failed => "failed",
        }
    }
}

/// The plan (and result) for one group.
#[derive(Debug, Clone, Serialize)]
pub struct GroupPlan {
    pub handle: String,
    pub usergroup_id: Option<String>,
    pub outcome: Outcome,
    pub added: Vec<Member>,
    pub removed: Vec<Member>,
    pub unchanged: Vec<Member>,
    /// People on call with no Slack account (emails or names).
    pub missing: Vec<String>,
    /// Placeholder accounts left out (`ignore`).
    pub ignored: Vec<String>,
    /// Which provider endpoints answered (`pagerduty /oncalls: …`, or a schedule's final layer).
    pub sources: Vec<String>,
    /// The fallback list was used.
    pub fell_back: bool,
    pub error: Option<String>,
    /// Matches the log line of the failure.
    pub error_id: Option<String>,
    /// Error class, for alert throttling.
    #[serde(skip)]
    pub error_kind: Option<String>,
    /// The change was recorded and its notices queued.
    pub announced: bool,
    /// When the group's members change next (clock ms), as the providers told this run.
    pub next_change: Option<i64>,
    /// When the next shift reminder of the group is due (clock ms): the group is read again then,
    /// so the reminder comes from a fresh read (a cancelled shift is not reminded).
    #[serde(skip)]
    pub next_reminder: Option<i64>,
    /// The group's topic channels in this run.
    pub topics: Vec<super::topics::TopicResult>,
}

impl GroupPlan {
    pub(crate) fn new(handle: &str) -> Self {
        Self {
            handle: handle.to_string(),
            usergroup_id: None,
            outcome: Outcome::Unchanged,
            added: vec![],
            removed: vec![],
            unchanged: vec![],
            missing: vec![],
            ignored: vec![],
            sources: vec![],
            fell_back: false,
            error: None,
            error_id: None,
            error_kind: None,
            announced: false,
            next_change: None,
            next_reminder: None,
            topics: vec![],
        }
    }
    pub(crate) fn failed(mut self, kind: &str, message: String) -> Self {
        self.outcome = Outcome::Failed;
        self.error = Some(message);
        self.error_kind = Some(kind.to_string());
        self
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    pub dry_run: bool,
    pub groups: Vec<GroupPlan>,
}

impl SyncReport {
    pub fn failures(&self) -> usize {
        self.groups
            .iter()
            .filter(|g| g.outcome == Outcome::Failed)
            .count()
    }
}
