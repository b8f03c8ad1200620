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
pub mod clients;
pub mod command;
pub mod handover;
pub mod model;
pub mod notify;
pub mod providers;
pub mod remind;
pub mod report;
pub mod schedule;
pub mod settings;
pub mod sync;
pub mod topics;

use crate::registry::Registry;
use settings::OncallSettings;

pub use crate::clock::Millis;
pub use clients::Oncall;
pub use model::{Person, Shift};

pub const FEATURE: &str = "oncall";
/// Job kinds.
pub const JOB_NOTICE: &str = "oncall.notice";
pub const JOB_DM: &str = "oncall.dm";
pub const JOB_ALERT: &str = "oncall.alert";
pub const JOB_REMIND: &str = "oncall.remind";
pub const JOB_HANDOVER: &str = "oncall.handover";
/// The "Hand over" button on shift-change notices, and the note's modal.
pub const ACTION_HANDOVER: &str = "oncall:handover";
pub const VIEW_HANDOVER: &str = "oncall:handover";
/// The lease every sync run holds while it may write (periodic and CLI alike).
pub const RUN_LEASE: &str = "oncall.sync.run";

pub fn register(registry: &mut Registry, settings: &OncallSettings) {
    registry
        .command(&settings.command, command::OncallCommand)
        .job(JOB_NOTICE, notify::NoticeJob)
        .job(JOB_DM, notify::DmJob)
        .job(JOB_ALERT, notify::AlertJob)
        .job(JOB_REMIND, remind::ReminderJob)
        .job(JOB_HANDOVER, handover::HandoverJob)
        .action_prefix(ACTION_HANDOVER, handover::HandoverAction)
        .view(VIEW_HANDOVER, handover::HandoverView)
        .periodic(sync::SyncTask)
        .periodic(sync::HandoffTask);
}
