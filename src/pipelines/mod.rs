//! Pipeline commands: start, cancel and inspect Spinnaker pipelines from one slash command
//! (`pipelines.command`, default `/spinnaker`).
//!
//! [`command`] reads the subcommand ([`parse`]) and answers; [`start`] looks the pipeline up,
//! asks for missing parameters in a modal (opened before any slow call, since Slack's
//! `trigger_id` lives 3 s), and triggers it once; [`cancel`] asks for a confirmation, then
//! cancels; [`follow`] updates the "started" message when the execution ends.
//!
//! A start is never retried automatically: Gate's trigger is synchronous, so a timeout may hide a
//! pipeline that did start, and the person is told to check rather than risking a second run.
//! Who may start and cancel uses the same authorization model as approvals (`pipelines.rules`);
//! reading (`status`, `pipelines`, `pending`) is open to everyone in the workspace.

pub mod cancel;
pub mod command;
pub mod follow;
pub mod parse;
pub mod settings;
pub mod start;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::warn;
use url::Url;

use crate::authz::Identity;
use crate::jobs::NewJob;
use crate::mrkdwn;
use crate::principals::Principals;
use crate::registry::Registry;
use crate::slack::api::{Message, Posted, SlackErrorCode};
use crate::slack::blocks::{escape, link, mention};
use crate::slack::mrkdwn::JoinMrkdwn;
use crate::slack::mrkdwn::Mrkdwn;
use crate::spinnaker::gate::{GateError, ManualTrigger};
use crate::state::AppState;
use crate::store::new_id;
use settings::{PipelineRule, PipelinesSettings};

pub const FEATURE: &str = "pipelines";
pub const JOB_FOLLOW: &str = "pipelines.follow";
pub const JOB_ANNOUNCE: &str = "pipelines.announce";
pub const JOB_PENDING: &str = "pipelines.pending";
pub const VIEW_START: &str = "pipelines:start";
pub const ACTION_CONFIRM_START: &str = "pipelines:start-confirm";
pub const ACTION_CONFIRM_CANCEL: &str = "pipelines:cancel";

pub fn register(registry: &mut Registry, settings: &PipelinesSettings) {
    registry
        .command(&settings.command, command::PipelineCommand)
        .view(VIEW_START, start::StartView)
        .action_prefix(ACTION_CONFIRM_START, start::ConfirmStart)
        .action_prefix(ACTION_CONFIRM_CANCEL, cancel::ConfirmCancel)
        .job(JOB_FOLLOW, follow::FollowJob)
        .job(JOB_ANNOUNCE, AnnounceJob)
        .job(JOB_PENDING, command::PendingJob);
}

/// The rule for an application and pipeline: pipeline-specific, else application-wide, else `*`.
pub fn rule_for<'a>(
    settings: &'a PipelinesSettings,
    application: &str,
    pipeline: &str,
) -> Option<&'a PipelineRule> {
    let rules = &settings.rules;
    let app = |r: &&PipelineRule| r.application.eq_ignore_ascii_case(application);
    rules
        .iter()
        .find(|r| {
            app(r)
                && r.pipeline
                    .as_deref()
                    .is_some_and(|p| p.eq_ignore_ascii_case(pipeline))
        })
        .or_else(|| rules.iter().find(|r| app(r) && r.pipeline.is_none()))
        .or_else(|| {
            rules
                .iter()
                .find(|r| r.application == "*" && r.pipeline.is_none())
        })
}

/// May `who` start or cancel this pipeline? `Ok(Err(explanation))` when not.
pub async fn authorize(
    state: &AppState,
    who: &Identity,
    application: &str,
    pipeline: &str,
    verb: &str,
) -> anyhow::Result<Result<PipelineRule, Mrkdwn>> {
    let Some(rule) = rule_for(&state.settings().pipelines, application, pipeline) else {
        state
            .audit(
                FEATURE,
                verb,
                &who.user_id,
                &format!("pipeline:{application}:{pipeline}"),
                "refused",
                json!({"reason": "no rule"}),
            )
            .await;
        return Ok(Err(mrkdwn!(
            "Nobody may {} pipelines of *{}* from Slack: no `pipelines.rules` entry covers it. Ask your slackops operators.",
            verb,
            escape(application),
        )));
    };
    let principals: Principals = rule.principals();
    if state.authz().allows(&principals, who).await? {
        Ok(Ok(rule.clone()))
    } else {
        state
            .audit(
                FEATURE,
                verb,
                &who.user_id,
                &format!("pipeline:{application}:{pipeline}"),
                "refused",
                json!({}),
            )
            .await;
        Ok(Err(mrkdwn!(
            "You may not {} *{}* › *{}* from Slack. Allowed: {}.",
            verb,
            escape(application),
            escape(pipeline),
            state.authz().describe(&principals).await,
        )))
    }
}

/// A request to start, carried through modals and confirmation buttons.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StartRequest {
    #[serde(rename = "a")]
    pub application: String,
    #[serde(rename = "p")]
    pub pipeline: String,
    #[serde(rename = "v", default)]
    pub parameters: BTreeMap<String, String>,
    /// Where to announce the start.
    #[serde(rename = "c", default)]
    pub channel: Option<String>,
}

/// The follow job's payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRef {
    pub run_id: String,
}

pub fn deck_link(deck_url: &Url, application: &str, execution_id: &str) -> String {
    crate::spinnaker::deck_url(deck_url, application, execution_id)
}

/// Trigger a pipeline once and queue its announcement in the channel (a job: the ack never
/// waits on Slack). `Err` is a message for the person.
pub async fn trigger_and_announce(
    state: &AppState,
    who: &Identity,
    req: &StartRequest,
) -> Result<Mrkdwn, Mrkdwn> {
    let subject = format!("pipeline:{}:{}", req.application, req.pipeline);
    let (execution_id, user_for_spinnaker) = trigger(state, who, req, &subject).await?;
    state.audit(
        FEATURE,
        "start",
        &who.user_id,
        &subject,
        "ok",
        json!({"parameters": req.parameters, "execution_id": execution_id, "trigger_user": user_for_spinnaker}),
    )
    .await;

    let text = started_text(state, who, req, &execution_id);
    let run_id = new_id();
    let now = state.now_ms();
    let recorded = record_run(state, who, req, &run_id, &execution_id, now).await;
    // Posting waits on Slack and on our own per-channel pacing: never before the ack.
    let job = NewJob::new(
        JOB_ANNOUNCE,
        &Announcement {
            run_id: recorded.then(|| run_id.clone()),
            channel: req.channel.clone(),
            user: who.user_id.clone(),
            text: text.clone(),
        },
    )
    .dedup(format!("{JOB_ANNOUNCE}:{execution_id}"));
    if let Err(e) = state.jobs().enqueue(job).await {
        warn!(error = %crate::store::short_db_error(&e), "queueing the start announcement failed; the pipeline runs, unannounced");
    }
    Ok(text)
}

/// The announcement job's payload: where and what to post once a pipeline started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Announcement {
    /// The recorded run to follow (`None` when recording it failed: announce only).
    pub run_id: Option<String>,
    pub channel: Option<String>,
    /// Who started it (a DM when the channel is out of reach).
    pub user: String,
    pub text: Mrkdwn,
}

/// Announces a start where the command was typed and queues the job following it.
pub struct AnnounceJob;

#[async_trait::async_trait]
impl crate::registry::JobHandler for AnnounceJob {
    async fn run(
        &self,
        state: &AppState,
        job: &crate::jobs::Job,
    ) -> Result<(), crate::jobs::JobError> {
        let a: Announcement = job.payload().map_err(crate::jobs::JobError::Permanent)?;
        // Announced already (the job ran before, then its worker died before finishing).
        if let Some(run_id) = &a.run_id
            && already_announced(state, run_id)
                .await
                .map_err(|e| anyhow::anyhow!(crate::store::short_db_error(&e)))?
        {
            return Ok(());
        }
        let posted = announce_start(state, &a.user, a.channel.as_deref(), &a.text).await;
        if let Some(run_id) = &a.run_id {
            follow(state, run_id, posted.as_ref(), state.now_ms()).await;
        }
        Ok(())
    }
}

async fn already_announced(state: &AppState, run_id: &str) -> Result<bool, sqlx::Error> {
    let ts: Option<(Option<String>,)> =
        sqlx::query_as("SELECT message_ts FROM pipeline_runs WHERE id = $1")
            .bind(run_id)
            .fetch_optional(state.db().pool())
            .await?;
    Ok(ts.is_some_and(|(ts,)| ts.is_some()))
}

/// Ask Gate to start the pipeline as a manual trigger by `who`, once: `(execution id, the user
/// Spinnaker records)`, or the message for the person (the refusal is audited).
async fn trigger(
    state: &AppState,
    who: &Identity,
    req: &StartRequest,
    subject: &str,
) -> Result<(String, String), Mrkdwn> {
    let user_for_spinnaker = who
        .email
        .clone()
        .unwrap_or_else(|| format!("slack:{}", who.user_id));
    let trigger = ManualTrigger {
        kind: "manual".into(),
        user: user_for_spinnaker.clone(),
        parameters: req
            .parameters
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect(),
        artifacts: vec![],
        notifications: vec![],
    };
    let answer = state
        .gate()
        .trigger(
            &req.application,
            &req.pipeline,
            &trigger,
            who.email.as_deref(),
        )
        .await;
    match answer {
        Ok(r) => Ok((r.execution_id().to_string(), user_for_spinnaker)),
        Err(e) => {
            let (outcome, text) = not_started(state, req, &e);
            state
                .audit(
                    FEATURE,
                    "start",
                    &who.user_id,
                    subject,
                    outcome,
                    json!({"parameters": req.parameters, "gate": e.to_string()}),
                )
                .await;
            Err(text)
        }
    }
}

/// What a failed start means for the person, and its audit outcome. A transient failure may
/// have started the pipeline: never retried, and the person is told how to check.
fn not_started(state: &AppState, req: &StartRequest, e: &GateError) -> (&'static str, Mrkdwn) {
    match e {
        GateError::BadRequest(m) => (
            "refused",
            mrkdwn!(
                "Spinnaker refused to start *{}* › *{}*: {}",
                escape(&req.application),
                escape(&req.pipeline),
                escape(m),
            ),
        ),
        GateError::NotFound(m) => (
            "not_found",
            mrkdwn!(
                "Spinnaker does not know *{}* › *{}*: {}",
                escape(&req.application),
                escape(&req.pipeline),
                escape(m),
            ),
        ),
        GateError::Forbidden(m) => (
            "refused",
            mrkdwn!("Spinnaker refused slackops' request: {}", escape(m)),
        ),
        e if e.is_transient() => (
            "unknown",
            mrkdwn!(
                "Gate did not answer properly ({}). The pipeline may or may not have started, so slackops did not retry: check with `{} status {} {}` before starting it again.",
                escape(&e.to_string()),
                state.settings().pipelines.command,
                req.application,
                req.pipeline,
            ),
        ),
        e => (
            "failed",
            mrkdwn!("Starting the pipeline failed: {}", escape(&e.to_string())),
        ),
    }
}

/// "started by @you", with a Deck link and the parameters in brief.
fn started_text(
    state: &AppState,
    who: &Identity,
    req: &StartRequest,
    execution_id: &str,
) -> Mrkdwn {
    let deck = deck_link(
        &state.settings().spinnaker.deck_url,
        &req.application,
        execution_id,
    );
    let params = if req.parameters.is_empty() {
        Mrkdwn::default()
    } else {
        mrkdwn!(
            "\nParameters: {}",
            req.parameters
                .iter()
                .map(|(k, v)| mrkdwn!(
                    "`{}`={}",
                    escape(k),
                    escape(&crate::slack::blocks::truncate(v, 80)),
                ))
                .join_mrkdwn(", "),
        )
    };
    mrkdwn!(
        ":rocket: *{}* › *{}* started by {} · {}{}",
        escape(&req.application),
        escape(&req.pipeline),
        mention(&who.user_id),
        link(&deck, "Open in Deck"),
        params,
    )
}

/// Record the started execution so it can be followed; false when that failed (the pipeline
/// runs anyway, only the follow-up is lost).
async fn record_run(
    state: &AppState,
    who: &Identity,
    req: &StartRequest,
    run_id: &str,
    execution_id: &str,
    now: i64,
) -> bool {
    match sqlx::query(
        "INSERT INTO pipeline_runs (id, execution_id, application, pipeline_name, started_by, status, started_at, parameters)
         VALUES ($1, $2, $3, $4, $5, 'RUNNING', $6, $7) ON CONFLICT (execution_id) DO NOTHING",
    )
    .bind(run_id)
    .bind(execution_id)
    .bind(&req.application)
    .bind(&req.pipeline)
    .bind(&who.user_id)
    .bind(now)
    .bind(serde_json::to_string(&req.parameters).unwrap_or_default())
    .execute(state.db().pool())
    .await
    {
        Ok(_) => true,
        Err(e) => {
            // The pipeline is running: say so anyway, only the follow-up is lost.
            warn!(error = %crate::store::short_db_error(&e), "recording the started execution failed; it will not be followed");
            false
        }
    }
}

/// Announce where the command was typed; in a channel the bot cannot post to, in a DM.
async fn announce_start(
    state: &AppState,
    user: &str,
    channel: Option<&str>,
    text: &Mrkdwn,
) -> Option<Posted> {
    let mut posted = None;
    if let Some(channel) = channel {
        let msg = Message::text(channel, text);
        posted = match state.slack().post_message(&msg).await {
            Ok(p) => Some(p),
            Err(e) if e.is(SlackErrorCode::NotInChannel) => {
                match state.slack().conversations_join(channel).await {
                    Ok(()) => state.slack().post_message(&msg).await.ok(),
                    Err(_) => None,
                }
            }
            Err(e) => {
                warn!(error = %e, "announcing the start in the channel failed");
                None
            }
        };
    }
    if posted.is_none()
        && let Ok(dm) = state.slack().open_dm(user).await
    {
        posted = state
            .slack()
            .post_message(&Message::text(dm, text))
            .await
            .ok();
    }
    posted
}

/// Remember where the start was announced and queue the job that updates it when the execution
/// ends.
async fn follow(state: &AppState, run_id: &str, posted: Option<&Posted>, now: i64) {
    if let Some(p) = posted {
        let _ = sqlx::query("UPDATE pipeline_runs SET channel = $1, message_ts = $2 WHERE id = $3")
            .bind(&p.channel)
            .bind(&p.ts)
            .bind(run_id)
            .execute(state.db().pool())
            .await;
    }
    let job = NewJob::new(
        JOB_FOLLOW,
        &RunRef {
            run_id: run_id.to_string(),
        },
    )
    .dedup(format!("{JOB_FOLLOW}:{run_id}"))
    .run_at(now + (state.settings().pipelines.follow_interval_secs as i64) * 1000);
    if let Err(e) = state.jobs().enqueue(job).await {
        warn!(error = %crate::store::short_db_error(&e), "queueing the follow-up failed; the message will not be updated when it ends");
    }
}
