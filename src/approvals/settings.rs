//! The `approvals` configuration section: where Manual Judgments are posted, who may judge them
//! and how many of them must approve, when waiting judgments are recalled and when they expire,
//! and how often open judgments are polled and reconciled against Gate.
//!
//! Owned by the approvals feature and composed into [`crate::config::Settings`]; it imports only
//! the shared primitives, never a handler or the whole configuration.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::principals::Principals;
use crate::settings_check::ConfigProblem;

/// Manual Judgment approvals.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApprovalsSettings {
    /// Channel (ID) for judgments no route matches.
    pub default_channel: Option<String>,
    /// Channels by application and optionally pipeline; the most specific match wins.
    pub routes: Vec<ApprovalRoute>,
    /// Who may judge, by application (`*` for all) and optionally pipeline. An application with no
    /// matching rule cannot be judged from Slack.
    pub approvers: Vec<ApproverRule>,
    /// Spinnaker role → Slack user groups whose members hold it, for stages that name roles.
    pub role_groups: BTreeMap<String, Vec<String>>,
    /// Whoever triggered an execution may not approve it.
    pub four_eyes: bool,
    /// DM the person who triggered the execution with the outcome (when their email is in Slack).
    pub notify_trigger_user: bool,
    /// Applications polled for running judgments (for Spinnakers whose echo cannot forward events).
    pub poll_applications: Vec<String>,
    pub poll_interval_secs: u64,
    /// How often open judgments are checked against Gate, so a lost event never leaves live buttons.
    pub reconcile_interval_secs: u64,
    /// Attempts of a judgment against Gate (with backoff) before the buttons come back.
    pub judge_max_attempts: u32,
    /// How long to wait for Spinnaker to act on a judgment before checking again later.
    pub outcome_wait_secs: u64,
    /// How long Slack user-group memberships and user profiles are cached.
    pub membership_cache_secs: u64,
    /// Minutes between reminders in a waiting judgment's thread; 0 turns reminders off.
    pub remind_after_mins: u64,
    /// At most this many reminders per judgment.
    pub max_reminders: u32,
    /// Minutes after which a waiting judgment expires in Slack; 0 turns expiry off.
    pub expire_after_mins: u64,
    /// What expiry does: `leave` (the buttons go, Deck decides) or `reject` (slackops sends stop).
    pub on_expiry: OnExpiry,
    /// How often one replica looks for reminders and expiries that are due.
    pub timers_interval_secs: u64,
}

/// What happens to a judgment that expires in Slack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnExpiry {
    /// The buttons go and the message says it expired in Slack, with a link to Deck.
    #[default]
    Leave,
    /// slackops sends `stop`, recorded as expired.
    Reject,
}

impl Default for ApprovalsSettings {
    fn default() -> Self {
        Self {
            default_channel: None,
            routes: Vec::new(),
            approvers: Vec::new(),
            role_groups: BTreeMap::new(),
            four_eyes: false,
            notify_trigger_user: true,
            poll_applications: Vec::new(),
            poll_interval_secs: 30,
            reconcile_interval_secs: 60,
            judge_max_attempts: 8,
            outcome_wait_secs: 20,
            membership_cache_secs: 60,
            remind_after_mins: 0,
            max_reminders: 3,
            expire_after_mins: 0,
            on_expiry: OnExpiry::Leave,
            timers_interval_secs: 30,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ApprovalRoute {
    pub application: String,
    pub pipeline: Option<String>,
    /// Channel ID the judgment is posted to.
    pub channel: String,
    /// Channels told of the outcome.
    pub notify_channels: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApproverRule {
    /// Application name, or `*` for every application.
    pub application: String,
    pub pipeline: Option<String>,
    pub users: Vec<String>,
    pub groups: Vec<String>,
    pub emails: Vec<String>,
    pub everyone: bool,
    /// How many distinct authorized people must approve before slackops sends `continue`.
    pub required_approvals: u32,
}

impl Default for ApproverRule {
    fn default() -> Self {
        Self {
            application: String::new(),
            pipeline: None,
            users: Vec::new(),
            groups: Vec::new(),
            emails: Vec::new(),
            everyone: false,
            required_approvals: 1,
        }
    }
}

impl ApproverRule {
    pub fn principals(&self) -> Principals {
        Principals {
            users: self.users.clone(),
            groups: self.groups.clone(),
            emails: self.emails.clone(),
            everyone: self.everyone,
        }
    }
}

impl ApprovalsSettings {
    /// Problems in this section, each naming its key.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        let mut bad = |key: &str, message: &str| {
            p.push(ConfigProblem {
                key: key.into(),
                message: message.into(),
            })
        };
        for (i, r) in self.routes.iter().enumerate() {
            if r.application.is_empty() {
                bad(&format!("approvals.routes[{i}].application"), "required");
            }
            if r.channel.is_empty() {
                bad(
                    &format!("approvals.routes[{i}].channel"),
                    "required (a channel ID such as C0123456)",
                );
            }
        }
        for (i, r) in self.approvers.iter().enumerate() {
            if r.application.is_empty() {
                bad(
                    &format!("approvals.approvers[{i}].application"),
                    "required (an application name, or *)",
                );
            }
            if r.required_approvals == 0 {
                bad(
                    &format!("approvals.approvers[{i}].required_approvals"),
                    "must be at least 1",
                );
            }
            if r.principals().is_empty() {
                bad(
                    &format!("approvals.approvers[{i}]"),
                    "names nobody: give users, groups, emails, or everyone: true",
                );
            }
        }
        if self.judge_max_attempts == 0 {
            bad("approvals.judge_max_attempts", "must be at least 1");
        }
        if self.poll_interval_secs < 5 {
            bad("approvals.poll_interval_secs", "must be at least 5");
        }
        if self.timers_interval_secs == 0 {
            bad("approvals.timers_interval_secs", "must be at least 1");
        }
        if self.reconcile_interval_secs < 5 {
            bad("approvals.reconcile_interval_secs", "must be at least 5");
        }
        p
    }
}
