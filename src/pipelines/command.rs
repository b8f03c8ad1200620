//! The slash command: parse the subcommand, answer `help`, `status`, `pipelines` and `pending`
//! here, and hand `start` and `cancel` to their modules. Replies that concern only the caller are
//! ephemeral.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::follow::{duration, status_emoji};
use super::parse::{Command, parse};
use super::{StartRequest, cancel, deck_link, start};
use crate::jobs::{Job, JobError, NewJob};
use crate::mrkdwn;
use crate::registry::{CommandHandler, JobHandler, SlackCtx};
use crate::slack::ack::{Ack, Reply};
use crate::slack::blocks::{self, escape, link};
use crate::slack::choices;
use crate::slack::mrkdwn::JoinMrkdwn;
use crate::slack::mrkdwn::Mrkdwn;
use crate::slack::payload::SlashCommand;
use crate::spinnaker::gate::GateError;
use crate::state::AppState;

pub struct PipelineCommand;

#[async_trait]
impl CommandHandler for PipelineCommand {
    async fn handle(&self, cx: SlackCtx, cmd: SlashCommand) -> anyhow::Result<Ack> {
        let name = cx.state.settings().pipelines.command.clone();
        // A subcommand another feature registered (`approve`, `reject`: the approvals').
        let first = cmd.text.split_whitespace().next().unwrap_or("");
        if let Some(sub) = cx.state.registry().subcommand_handler(&cmd.command, first) {
            return sub.handle(cx, cmd).await;
        }
        let parsed = match parse(&cmd.text, &name) {
            Ok(c) => c,
            Err(e) => {
                return Ok(Ack::ephemeral(mrkdwn!(
                    ":warning: {}\nType `{} help` for every subcommand.",
                    e,
                    name,
                )));
            }
        };
        let state = &cx.state;
        match parsed {
            Command::Help => Ok(help(&name)),
            Command::Start {
                application,
                pipeline,
                parameters,
            } => {
                let req = StartRequest {
                    application,
                    pipeline,
                    parameters,
                    channel: None,
                };
                start::start_command(state, &cmd, req).await
            }
            Command::Cancel {
                execution_id,
                reason,
            } => cancel::cancel_command(state, &cmd.user_id, &execution_id, reason).await,
            Command::Status {
                application,
                pipeline,
            } => status(state, &application, pipeline.as_deref()).await,
            Command::Pipelines { application } => pipelines(state, &application).await,
            Command::Pending { application } => queue_pending(state, &cmd, application).await,
        }
    }
}

pub fn help(name: &str) -> Ack {
    Ack::ephemeral(mrkdwn!(
        "*{}* — Spinnaker from Slack\n\
         • `{} start &lt;application&gt; &lt;pipeline&gt; [name=value …]` start a pipeline (a form asks for missing parameters), e.g. `{} start payments deploy-prod version=v42`\n\
         • `{} cancel &lt;execution id | Deck URL&gt; [reason]` cancel a running execution, e.g. `{} cancel 01J6Z3Q9W8 canary is failing`\n\
         • `{} status &lt;application&gt; [pipeline]` latest executions, e.g. `{} status payments deploy-prod`\n\
         • `{} approve &lt;execution id | Deck URL&gt; [input]` approve the execution's waiting Manual Judgment (counts towards its quorum), e.g. `{} approve 01J6Z3Q9W8 deploy`\n\
         • `{} reject &lt;execution id | Deck URL&gt; [reason]` reject it; the reason goes to the message's thread and the audit log, e.g. `{} reject 01J6Z3Q9W8 canary is failing`\n\
         • `{} pending [application]` Manual Judgments waiting, with links to their approval messages, e.g. `{} pending payments`\n\
         • `{} pipelines &lt;application&gt;` pipeline names, and which take parameters, e.g. `{} pipelines payments`\n\
         • `{} help` this list",
        name,
        name,
        name,
        name,
        name,
        name,
        name,
        name,
        name,
        name,
        name,
        name,
        name,
        name,
        name,
        name,
    ))
}

/// Report an unknown application precisely, anything else plainly.
fn gate_problem(e: &GateError, application: &str) -> Ack {
    match e {
        GateError::NotFound(_) => Ack::ephemeral(mrkdwn!(
            "There is no application *{}* in Spinnaker. Check the spelling (application names are lower case).",
            escape(application),
        )),
        e if e.is_transient() => Ack::ephemeral(mrkdwn!(
            "Gate did not answer ({}). Try again in a moment.",
            escape(&e.to_string()),
        )),
        e => Ack::ephemeral(mrkdwn!("Spinnaker refused: {}", escape(&e.to_string()))),
    }
}

async fn status(
    state: &AppState,
    application: &str,
    pipeline: Option<&str>,
) -> anyhow::Result<Ack> {
    if let Err(e) = state.gate().application(application).await {
        return Ok(gate_problem(&e, application));
    }
    let limit = state.settings().pipelines.status_limit;
    let mut execs = match state
        .gate()
        .executions(application, None, Some(limit as u32))
        .await
    {
        Ok(e) => e,
        Err(e) => return Ok(gate_problem(&e, application)),
    };
    if let Some(p) = pipeline {
        execs.retain(|e| {
            e.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| n.eq_ignore_ascii_case(p))
        });
    }
    execs.sort_by_key(|e| std::cmp::Reverse(started(e)));
    execs.truncate(limit);
    let scope = match pipeline {
        Some(p) => mrkdwn!("*{}* › *{}*", escape(application), escape(p)),
        None => mrkdwn!("*{}*", escape(application)),
    };
    if execs.is_empty() {
        return Ok(Ack::ephemeral(mrkdwn!("No executions of {} found.", scope)));
    }
    let now = state.now_ms();
    let lines: Vec<Mrkdwn> = execs
        .iter()
        .map(|e| execution_line(state, application, e, now))
        .collect();
    Ok(list_reply(
        &mrkdwn!("Latest executions of {}:", scope),
        &lines,
        &"See the application in Deck for the rest.".into(),
    ))
}

/// When an execution started (its build time before it started), 0 when unknown.
fn started(e: &Value) -> i64 {
    e.get("startTime")
        .and_then(Value::as_i64)
        .or_else(|| e.get("buildTime").and_then(Value::as_i64))
        .unwrap_or(0)
}

/// One execution in `status`: state (linked to Deck), name, who or what triggered it, its id in
/// brief, when it started and how long it took.
fn execution_line(state: &AppState, application: &str, e: &Value, now: i64) -> Mrkdwn {
    let id = e.get("id").and_then(Value::as_str).unwrap_or("");
    let status = e.get("status").and_then(Value::as_str).unwrap_or("UNKNOWN");
    let name = e.get("name").and_then(Value::as_str).unwrap_or("?");
    let who = e
        .pointer("/trigger/user")
        .and_then(Value::as_str)
        .or_else(|| e.pointer("/trigger/type").and_then(Value::as_str))
        .unwrap_or("?");
    let start = started(e);
    let end = e.get("endTime").and_then(Value::as_i64).unwrap_or(now);
    let when = if start > 0 {
        crate::slack::blocks::date(start)
    } else {
        "not started".into()
    };
    let took = if start > 0 {
        duration(end - start)
    } else {
        "-".into()
    };
    mrkdwn!(
        "{} {} *{}* · {} · {} · {} · {}",
        status_emoji(status),
        link(
            &deck_link(&state.settings().spinnaker.deck_url, application, id),
            status
        ),
        escape(name),
        escape(who),
        escape(&id.chars().take(10).collect::<String>()),
        when,
        took,
    )
}

async fn pipelines(state: &AppState, application: &str) -> anyhow::Result<Ack> {
    if let Err(e) = state.gate().application(application).await {
        return Ok(gate_problem(&e, application));
    }
    let configs = match state.gate().pipeline_configs(application).await {
        Ok(c) => c,
        Err(e) => return Ok(gate_problem(&e, application)),
    };
    if configs.is_empty() {
        return Ok(Ack::ephemeral(mrkdwn!(
            "*{}* has no pipelines.",
            escape(application),
        )));
    }
    let mut names: BTreeMap<String, Mrkdwn> = BTreeMap::new();
    for c in &configs {
        let Some(name) = c.get("name").and_then(Value::as_str) else {
            continue;
        };
        let specs = start::specs(c);
        let mut note = if specs.is_empty() {
            Mrkdwn::from("no parameters")
        } else {
            let required = specs
                .iter()
                .filter(|s| s.required && s.default.is_none())
                .count();
            mrkdwn!(
                "parameters: {}{}",
                specs
                    .iter()
                    .map(|s| mrkdwn!("`{}`", escape(&s.name)))
                    .join_mrkdwn(", "),
                if required > 0 {
                    mrkdwn!(" ({} required)", required)
                } else {
                    Mrkdwn::default()
                },
            )
        };
        if c.get("disabled").and_then(Value::as_bool) == Some(true) {
            note.push(" · disabled");
        }
        names.insert(name.to_string(), note);
    }
    let lines: Vec<Mrkdwn> = names
        .iter()
        .map(|(n, note)| mrkdwn!("• *{}* — {}", escape(n), note))
        .collect();
    let heading = mrkdwn!("Pipelines of *{}* ({}):", escape(application), lines.len());
    Ok(list_reply(
        &heading,
        &lines,
        &"See the application in Deck for the rest.".into(),
    ))
}

/// A list as an ephemeral reply: every line in sections (none cut, none dropped without saying
/// so), and the heading as the notification text.
fn list_reply(heading: &Mrkdwn, lines: &[Mrkdwn], more_hint: &Mrkdwn) -> Ack {
    let b = choices::list_blocks(heading, lines, more_hint);
    Ack::Message(Reply::ephemeral(heading).blocks(blocks::to_json(&b)))
}

/// `pending`, asked for.
#[derive(Debug, Serialize, Deserialize)]
pub struct PendingAsk {
    application: Option<String>,
    response_url: String,
}

/// `pending` links each judgment's message, one `chat.getPermalink` call each: a job answers
/// through `response_url`, so the ack never waits for them.
async fn queue_pending(
    state: &AppState,
    cmd: &SlashCommand,
    application: Option<String>,
) -> anyhow::Result<Ack> {
    let Some(response_url) = cmd.response_url.clone() else {
        return Ok(Ack::ephemeral(
            "slackops cannot answer this command here (Slack gave no response_url).",
        ));
    };
    let ask = PendingAsk {
        application,
        response_url,
    };
    state
        .jobs()
        .enqueue(NewJob::new(super::JOB_PENDING, &ask))
        .await?;
    Ok(Ack::Empty)
}

/// Answers `pending` through the command's `response_url`.
pub struct PendingJob;

#[async_trait]
impl JobHandler for PendingJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let ask: PendingAsk = job.payload().map_err(JobError::Permanent)?;
        let Ack::Message(reply) = pending(state, ask.application.as_deref()).await? else {
            return Ok(());
        };
        let body = serde_json::to_value(&reply).map_err(|e| JobError::Permanent(e.into()))?;
        match state.slack().respond(&ask.response_url, &body).await {
            // The response_url is spent or expired: nobody is left to answer.
            Err(e) if !e.is_transient() => Err(JobError::Permanent(e.into())),
            other => Ok(other?),
        }
    }
}

async fn pending(state: &AppState, application: Option<&str>) -> anyhow::Result<Ack> {
    let mut open = state
        .db()
        .judgments_in_state(Some(crate::approvals::model::AWAITING), 200)
        .await?;
    open.extend(
        state
            .db()
            .judgments_in_state(Some(crate::approvals::model::JUDGING), 200)
            .await?,
    );
    if let Some(app) = application {
        open.retain(|j| j.application.eq_ignore_ascii_case(app));
    }
    if open.is_empty() {
        let scope = application
            .map(|a| mrkdwn!(" for *{}*", escape(a)))
            .unwrap_or_default();
        return Ok(Ack::ephemeral(mrkdwn!(
            "No Manual Judgments are waiting{}.",
            scope,
        )));
    }
    open.sort_by_key(|j| j.created_at);
    let mut lines = Vec::new();
    for j in open.iter().take(20) {
        let target = match (&j.channel, &j.message_ts) {
            (Some(c), Some(ts)) => state.slack().permalink(c, ts).await.ok(),
            _ => None,
        }
        .unwrap_or_else(|| {
            deck_link(
                &state.settings().spinnaker.deck_url,
                &j.application,
                &j.execution_id,
            )
        });
        let state_note = if j.state == crate::approvals::model::JUDGING {
            " (being judged)"
        } else {
            ""
        };
        lines.push(mrkdwn!(
            "• *{}* › *{}* — {}{} · waiting since {} · {}",
            escape(&j.application),
            escape(&j.pipeline_name),
            escape(&j.stage_name),
            state_note,
            crate::slack::blocks::date(j.created_at),
            link(&target, "open"),
        ));
    }
    let more = open.len().saturating_sub(20);
    let tail = if more > 0 {
        mrkdwn!("\n…and {} more.", more)
    } else {
        Mrkdwn::default()
    };
    Ok(Ack::ephemeral(mrkdwn!(
        "Manual Judgments waiting:\n{}{}",
        lines.iter().join_mrkdwn("\n"),
        tail,
    )))
}
