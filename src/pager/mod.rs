//! Pager incidents in Slack: take a page from PagerDuty, Opsgenie or Grafana OnCall into the
//! route's channel and let the on-call person acknowledge, resolve or announce it from there.
//!
//! Why it exists: teams that page through one of these products talk in Slack, and none of the
//! self-hosted options let them act on an alert from there. slackops already knows who is on call
//! and how to act in Slack exactly once, so the page is handled where people are.
//!
//! How: each product's webhook is authenticated before its body is read ([`webhook`]), read into
//! one event, de-duplicated by the provider's delivery and event ids and recorded in one
//! transaction with the job that posts or updates the message ([`intake`], [`model`]). A click is
//! authorized (the route's on-call group plus `pager.responders`), claimed atomically and
//! acknowledged at once ([`click`]); a job reads the incident's current state from the provider
//! and only then acts as the person who clicked ([`act`]), following Opsgenie's asynchronous
//! answer until it is decided. Changes made anywhere else arrive as webhooks and update the same
//! message in place, never over a newer state. **Announce outage** hands over to the outage
//! form, prefilled from the incident ([`announce`]).
//!
//! What it must never do: parse an unauthenticated request, post an incident twice, call a
//! provider twice for one click, reopen an incident resolved elsewhere (PagerDuty reopens a
//! resolved incident that is acknowledged), show an action as done before the provider did it,
//! or log tokens, signatures and bodies.

pub mod act;
pub mod announce;
pub mod click;
pub mod delivery;
pub mod intake;
pub mod message;
pub mod model;
pub mod settings;
pub mod webhook;

use axum::Router;
use serde::{Deserialize, Serialize};

use crate::registry::Registry;
use crate::state::AppState;
use settings::PagerSettings;

pub const FEATURE: &str = "pager";

/// Action ids of the message's buttons (the value is the incident's row id).
pub const ACTION_PREFIX: &str = "pager:";
pub const ACTION_ACK: &str = "pager:acknowledge";
pub const ACTION_RESOLVE: &str = "pager:resolve";
pub const ACTION_ANNOUNCE: &str = "pager:announce";

/// Job kinds.
pub const JOB_POST: &str = "pager.post";
pub const JOB_RENDER: &str = "pager.render";
pub const JOB_ACT: &str = "pager.act";
pub const JOB_FOLLOW: &str = "pager.follow";

/// The payload of jobs about one incident.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IncidentRef {
    pub id: String,
}

pub fn register(registry: &mut Registry, _settings: &PagerSettings) {
    registry
        .action_prefix(ACTION_ACK, click::ActHandler)
        .action_prefix(ACTION_RESOLVE, click::ActHandler)
        .action_prefix(ACTION_ANNOUNCE, announce::AnnounceHandler)
        .job(JOB_POST, delivery::PostJob)
        .job(JOB_RENDER, delivery::RenderJob)
        .job(JOB_ACT, act::ActJob)
        .job(JOB_FOLLOW, act::FollowJob);
}

/// `POST /pager/{pagerduty,opsgenie,grafana-oncall}`.
pub fn routes() -> Router<AppState> {
    intake::routes()
}
