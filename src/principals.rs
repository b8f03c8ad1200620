//! Who may act: the principal sets (Slack user IDs, user groups, emails, everyone) that every
//! feature's permission keys are made of (`approvals.approvers`, `pipelines.rules`,
//! `announcements.announcers`, …).
//!
//! A primitive below every feature: it imports nothing from the crate. Deciding whether someone
//! is in a set (which needs Slack) is [`crate::authz`]'s job, not this module's.

use serde::{Deserialize, Serialize};

/// Who may act: Slack user IDs, Slack user groups (handle like `release-managers` or ID like
/// `S0123`), emails, or everyone. The same model serves every feature.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Principals {
    pub users: Vec<String>,
    pub groups: Vec<String>,
    pub emails: Vec<String>,
    pub everyone: bool,
}

impl Principals {
    pub fn is_empty(&self) -> bool {
        !self.everyone && self.users.is_empty() && self.groups.is_empty() && self.emails.is_empty()
    }
}
