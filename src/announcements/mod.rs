//! Outage announcements: `/announce` opens a modal; the outage is one pinned message updated in
//! place, with its history in the thread, reminders, and a public status page entry.
//!
//! Layout, one concern per module:
//! - [`model`] — what an outage is, the shared validation, reading from the store;
//! - [`changes`] — the one write path (announce, update, reassign, resolve, reopen), which stores
//!   each change with its history row and queues its Slack work and webhook event in the same
//!   transaction;
//! - [`message`] — how an outage looks in Slack;
//! - [`modal`] — `/announce` and the Update and Reassign modals;
//! - [`resolve`] — the Resolve modal (nothing changes until it is submitted) and Reopen;
//! - [`delivery`] — the jobs that post, update, pin, reply in the thread and tell audiences;
//! - [`payload`] — what those jobs are queued with;
//! - [`channel`] — "Create channel";
//! - [`reactions`] — copying a message into the thread with a reaction;
//! - [`reminders`] — ETA reminders and nudges, each sent once;
//! - [`postmortem`] — postmortems owed after an outage: reminders to their owner, the Add
//!   postmortem button and modal, `/announce postmortems`;
//! - [`api`] — `/api/v1/announcements`;
//! - [`alertmanager`] — Alertmanager's webhook payload and its checks;
//! - [`alerts`] — alert groups: which rule they match, what they propose, announcing from them,
//!   auto-resolving what they announced;
//! - [`alerts_api`] — `POST /api/v1/alerts/alertmanager`;
//! - [`suggestion`] — an alert group's suggestion message and its Announce, Dismiss and Resolve
//!   buttons;
//! - [`settings`] — the `announcements` configuration section.
//!
//! Slack is only ever called from jobs and from handlers answering the person who acted (opening
//! a modal); a change itself is never lost because Slack was slow or down.

pub mod alertmanager;
pub mod alerts;
pub mod alerts_api;
pub mod api;
pub mod changes;
pub mod channel;
pub mod delivery;
pub mod message;
pub mod modal;
pub mod model;
pub mod payload;
pub mod postmortem;
pub mod reactions;
pub mod reminders;
pub mod resolve;
pub mod settings;
pub mod suggestion;

use axum::Router;
use serde_json::json;

use crate::mrkdwn;
use crate::registry::Registry;
use crate::slack::mrkdwn::Mrkdwn;
use crate::state::AppState;
use settings::AnnouncementsSettings;

pub const FEATURE: &str = "announcements";

pub const VIEW_NEW: &str = "announcements:new";
pub const VIEW_UPDATE: &str = "announcements:update";
pub const VIEW_REASSIGN: &str = "announcements:reassign";
pub const VIEW_RESOLVE: &str = "announcements:resolve";
pub const VIEW_POSTMORTEM: &str = "announcements:postmortem";

pub const ACTION_UPDATE: &str = "announcements:update";
pub const ACTION_REASSIGN: &str = "announcements:reassign";
pub const ACTION_RESOLVE: &str = "announcements:resolve";
pub const ACTION_REOPEN: &str = "announcements:reopen";
pub const ACTION_CHANNEL: &str = "announcements:channel";
pub const ACTION_SNOOZE: &str = "announcements:snooze";
pub const ACTION_POSTMORTEM: &str = "announcements:postmortem";
pub const ACTION_ALERT_ANNOUNCE: &str = "announcements:alerts:announce";
pub const ACTION_ALERT_DISMISS: &str = "announcements:alerts:dismiss";
pub const ACTION_ALERT_RESOLVE: &str = "announcements:alerts:resolve";

pub const JOB_POST: &str = "announcements.post";
pub const JOB_RENDER: &str = "announcements.render";
pub const JOB_THREAD: &str = "announcements.thread";
pub const JOB_AUDIENCE: &str = "announcements.audience";
pub const JOB_DM: &str = "announcements.dm";
pub const JOB_CHANNEL: &str = "announcements.channel";
pub const JOB_CHANNEL_NOTE: &str = "announcements.channel_note";
pub const JOB_COPY: &str = "announcements.copy";
pub const JOB_ALERT_POST: &str = "announcements.alert_post";
pub const JOB_ALERT_RENDER: &str = "announcements.alert_render";

pub fn register(registry: &mut Registry, settings: &AnnouncementsSettings) {
    registry
        .command(&settings.command, modal::AnnounceCommand)
        .view(VIEW_NEW, modal::NewView)
        .view(VIEW_UPDATE, modal::ChangeView)
        .view(VIEW_REASSIGN, modal::ChangeView)
        .view(VIEW_RESOLVE, resolve::ResolveView)
        .action_prefix(ACTION_UPDATE, modal::OpenChange)
        .action_prefix(ACTION_REASSIGN, modal::OpenChange)
        .action_prefix(ACTION_RESOLVE, resolve::OpenResolve)
        .action_prefix(ACTION_REOPEN, resolve::Reopen)
        .action_prefix(ACTION_CHANNEL, channel::CreateChannel)
        .action_prefix(ACTION_SNOOZE, reminders::Snooze)
        .action_prefix(ACTION_POSTMORTEM, postmortem::AddPostmortem)
        .view(VIEW_POSTMORTEM, postmortem::PostmortemView)
        .subcommand(&settings.command, "postmortems", postmortem::ListCommand)
        .action_prefix(ACTION_ALERT_ANNOUNCE, suggestion::AnnounceAlert)
        .action_prefix(ACTION_ALERT_DISMISS, suggestion::DismissAlert)
        .action_prefix(ACTION_ALERT_RESOLVE, suggestion::ResolveAlert)
        .event("reaction_added", reactions::ReactionAdded)
        .job(JOB_POST, delivery::PostJob)
        .job(JOB_RENDER, delivery::RenderJob)
        .job(JOB_THREAD, delivery::ThreadJob)
        .job(JOB_AUDIENCE, delivery::AudienceJob)
        .job(JOB_DM, delivery::DmJob)
        .job(JOB_CHANNEL, channel::ChannelJob)
        .job(JOB_CHANNEL_NOTE, channel::ChannelNoteJob)
        .job(JOB_COPY, reactions::CopyJob)
        .job(JOB_ALERT_POST, suggestion::PostJob)
        .job(JOB_ALERT_RENDER, suggestion::RenderJob)
        .periodic(reminders::Reminders);
}

/// `/api/v1/announcements` and `/api/v1/alerts/alertmanager`.
pub fn routes() -> Router<AppState> {
    api::routes().merge(alerts_api::routes())
}

/// May `user` change this outage: its announcer, its assignees and the configured editors.
/// `Ok(Err(explanation))` when not (audited).
pub async fn may_change(
    state: &AppState,
    outage: &model::Outage,
    user: &str,
    action: &str,
) -> anyhow::Result<Result<(), Mrkdwn>> {
    if outage.owners().contains(&user) {
        return Ok(Ok(()));
    }
    let editors = &state.settings().announcements.editors;
    if state.authz().allows_user(editors, user).await? {
        return Ok(Ok(()));
    }
    state
        .audit(
            FEATURE,
            action,
            user,
            &format!("outage:{}", outage.id),
            "refused",
            json!({}),
        )
        .await;
    let editors = if editors.is_empty() {
        Mrkdwn::default()
    } else {
        mrkdwn!(", and {}", state.authz().describe(editors).await)
    };
    Ok(Err(mrkdwn!(
        ":no_entry: Only the people on this outage may change it: {} (who announced it), {} and {} (assignees){}. Ask one of them, or to be made an assignee.",
        message::who(&outage.announced_by),
        crate::slack::blocks::mention(&outage.fields.resolution_assignee),
        crate::slack::blocks::mention(&outage.fields.communication_assignee),
        editors,
    )))
}
