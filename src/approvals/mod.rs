//! Approvals: decide Spinnaker Manual Judgments from Slack, end to end.
//!
//! echo tells slackops a Manual Judgment stage started ([`intake`]); a message with Approve/Reject
//! (and the stage's judgment inputs) is posted to the channel routed for the application
//! ([`delivery`], [`message`]). A click is verified by the interaction layer, authorized
//! ([`policy`]), claimed atomically in the database and acknowledged at once ([`click`]); a job
//! then judges exactly as Deck does and reports what Spinnaker actually did ([`judge`]). Judgments
//! taken in Deck, cancellations and lost events are reconciled into the message ([`intake`],
//! [`reconcile`]). Several approvers may be required ([`quorum`]); waiting judgments are recalled
//! and expire ([`timers`]); people judge by command too ([`command`]) and see what waits for
//! them in their Home tab ([`home`]). `GET /api/v1/judgments` lists judgments and their audit trail ([`api`]).
//!
//! The guarantees: one message per stage run (a unique key on execution, stage and start time),
//! one judgment per claim reaching Gate (an atomic claim plus a marker in the stage context that
//! survives crashes), and no live buttons on a decided stage.

pub mod api;
pub mod click;
pub mod command;
pub mod delivery;
pub mod home;
pub mod intake;
pub mod judge;
pub mod message;
pub mod model;
pub mod policy;
pub mod quorum;
pub mod reconcile;
pub mod settings;
pub mod timers;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::jobs::NewJob;
use crate::registry::Registry;
use crate::state::AppState;
use settings::{ApprovalRoute, ApprovalsSettings};

pub const FEATURE: &str = "approvals";

/// Job kinds.
pub const JOB_POST: &str = "approvals.post";
pub const JOB_FETCH: &str = "approvals.fetch";
pub const JOB_JUDGE: &str = "approvals.judge";
pub const JOB_RENDER: &str = "approvals.render";
pub const JOB_NOTIFY: &str = "approvals.notify";
pub const JOB_NOTE: &str = "approvals.note";
pub const JOB_REMIND: &str = "approvals.remind";
pub const JOB_HOME: &str = "approvals.home";

/// The payload of jobs about one judgment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JudgmentRef {
    pub id: String,
}

/// The judge job's payload: which claim to carry out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JudgeRequest {
    pub id: String,
    pub claimed_at: i64,
}

/// `command` is the pipelines' slash command (`pipelines.command`), which `approve` and `reject`
/// are subcommands of.
pub fn register(registry: &mut Registry, _settings: &ApprovalsSettings, command: &str) {
    let stage_events = Arc::new(intake::StageEvents);
    registry
        .echo("orca:stage:starting", stage_events.clone())
        .echo("orca:stage:complete", stage_events.clone())
        .echo("orca:stage:failed", stage_events.clone())
        .echo("orca:stage:skipped", stage_events.clone())
        .echo("orca:pipeline:complete", stage_events.clone())
        .echo("orca:pipeline:failed", stage_events)
        .action_prefix("approvals:", click::DecideHandler)
        .subcommand(
            command,
            "approve",
            command::JudgeCommand {
                decision: "continue",
            },
        )
        .subcommand(
            command,
            "reject",
            command::JudgeCommand { decision: "stop" },
        )
        .job(JOB_POST, delivery::PostJob)
        .job(JOB_FETCH, intake::FetchJob)
        .job(JOB_JUDGE, judge::JudgeJob)
        .job(JOB_RENDER, delivery::RenderJob)
        .job(JOB_NOTIFY, delivery::NotifyJob)
        .job(JOB_NOTE, delivery::NoteJob)
        .job(JOB_REMIND, timers::RemindJob)
        .job(JOB_HOME, home::PublishJob)
        .event("app_home_opened", home::HomeOpened)
        .periodic(intake::Poller)
        .periodic(reconcile::Reconciler)
        .periodic(timers::Timers);
}

/// The route for an application and pipeline: a pipeline-specific route wins over an
/// application-wide one.
pub fn route_for<'a>(
    settings: &'a ApprovalsSettings,
    application: &str,
    pipeline: &str,
) -> Option<&'a ApprovalRoute> {
    let routes = &settings.routes;
    routes
        .iter()
        .find(|r| {
            r.application.eq_ignore_ascii_case(application)
                && r.pipeline.as_deref() == Some(pipeline)
        })
        .or_else(|| {
            routes
                .iter()
                .find(|r| r.application.eq_ignore_ascii_case(application) && r.pipeline.is_none())
        })
        .or_else(|| routes.iter().find(|r| r.application == "*"))
}

/// The channel a judgment is posted to.
pub fn channel_for(
    settings: &ApprovalsSettings,
    application: &str,
    pipeline: &str,
) -> Option<String> {
    route_for(settings, application, pipeline)
        .map(|r| r.channel.clone())
        .or_else(|| settings.default_channel.clone())
}

/// Enqueue a job about a judgment, optionally once per `dedup`.
pub async fn enqueue(
    state: &AppState,
    kind: &str,
    id: &str,
    dedup: Option<String>,
) -> anyhow::Result<()> {
    let mut job = NewJob::new(kind, &JudgmentRef { id: id.to_string() });
    if let Some(d) = dedup {
        job = job.dedup(d);
    }
    state.jobs().enqueue(job).await?;
    Ok(())
}

/// After a judgment reached a final state: update the message and tell stakeholders (once).
pub async fn announce_outcome(
    state: &AppState,
    id: &str,
    outcome_state: &str,
) -> anyhow::Result<()> {
    enqueue(state, JOB_RENDER, id, None).await?;
    enqueue(
        state,
        JOB_NOTIFY,
        id,
        Some(format!("{JOB_NOTIFY}:{id}:{outcome_state}")),
    )
    .await
}
