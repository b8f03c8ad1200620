//! The suggestion message of an alert group, and its buttons.
//!
//! One message per group in `announcements.channel`, posted once and then updated in place to
//! what the store says (alerts joining, resolving, firing again; announced; dismissed). Its
//! buttons follow its state, so it never offers a decision already taken: **Announce** (opens the
//! `/announce` modal prefilled from the alerts) and **Dismiss** while suggested and firing;
//! **Resolve** (the resolve modal, prefilled with when the last alert ended) once every alert of
//! an announced group has resolved and its outage is still open; nothing otherwise. Every text
//! that came from Alertmanager (labels, annotations) is escaped on the way in.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use slack_morphism::prelude::SlackBlockButtonStyle;
use tracing::warn;

use super::alertmanager::StoredAlert;
use super::alerts::{self, ANNOUNCED, DISMISSED, DecisionError, Group};
use super::delivery::post_joining;
use super::modal::{Meta, Mode, form_view};
use super::model::{self, Fields, Outage};
use super::payload::AlertGroupRef;
use super::settings::AnnouncementsSettings;
use super::{ACTION_ALERT_ANNOUNCE, ACTION_ALERT_DISMISS, ACTION_ALERT_RESOLVE, may_change};
use crate::jobs::{Job, JobError};
use crate::mrkdwn;
use crate::policy::may_announce;
use crate::registry::{ActionHandler, JobHandler, SlackCtx};
use crate::slack::ack::Ack;
use crate::slack::api::Message;
use crate::slack::blocks::{self, escape, truncate};
use crate::slack::mrkdwn::Mrkdwn;
use crate::slack::payload::{Action, Interaction};
use crate::state::AppState;

/// Alerts listed in the message; the rest are counted.
const LISTED: usize = 10;

fn alert_line(a: &StoredAlert) -> Mrkdwn {
    let name = a
        .labels
        .get("alertname")
        .map(String::as_str)
        .unwrap_or("alert");
    let summary = a
        .annotations
        .get("summary")
        .or_else(|| a.annotations.get("description"))
        .map(|s| mrkdwn!(": {}", escape(&truncate(s, 200))))
        .unwrap_or_default();
    let labels: Vec<Mrkdwn> = a
        .labels
        .iter()
        .filter(|(k, _)| k.as_str() != "alertname")
        .take(6)
        .map(|(k, v)| mrkdwn!("{}={}", escape(&truncate(k, 40)), escape(&truncate(v, 80))))
        .collect();
    let (icon, when) = if a.is_firing() {
        (
            ":red_circle:",
            mrkdwn!("since {}", blocks::date(a.starts_at)),
        )
    } else {
        (
            ":white_check_mark:",
            mrkdwn!(
                "resolved {}",
                blocks::date(a.ends_at.unwrap_or(a.starts_at)),
            ),
        )
    };
    mrkdwn!(
        "{} *{}*{} ({}) {}",
        icon,
        escape(&truncate(name, 100)),
        summary,
        Mrkdwn::join(labels, ", "),
        when,
    )
}

/// The alerts, firing first, at most [`LISTED`].
fn alert_list(g: &Group) -> Mrkdwn {
    let mut lines: Vec<Mrkdwn> = g.alerts.iter().take(LISTED).map(alert_line).collect();
    if g.alerts.len() > LISTED {
        lines.push(mrkdwn!("… and {} more", g.alerts.len() - LISTED));
    }
    Mrkdwn::join(lines, "\n").truncate(blocks::SECTION_TEXT_MAX)
}

/// What the alerts propose, and why it cannot be announced as is.
fn proposal_text(g: &Group, settings: &AnnouncementsSettings) -> Mrkdwn {
    let p = &g.proposal;
    let systems = if p.systems.is_empty() {
        "none".to_string()
    } else {
        model::system_names(settings, &p.systems)
    };
    let severity = if p.severity.is_empty() {
        "none"
    } else {
        &p.severity
    };
    let mut t = mrkdwn!(
        "*Proposed outage*: {}\n*Systems*: {} · *Severity*: {}",
        escape(&p.summary),
        escape(&systems),
        escape(severity),
    );
    if !p.problems.is_empty() {
        t.push("\n:warning: Cannot be announced as is:");
        for (field, message) in &p.problems {
            t.push(mrkdwn!("\n• {}: {}", escape(field), escape(message)));
        }
    }
    t.truncate(blocks::SECTION_TEXT_MAX)
}

/// Where the group stands, in words.
fn state_line(g: &Group, outage: Option<&Outage>) -> Mrkdwn {
    let mut parts = Vec::new();
    if !g.is_firing() {
        parts.push(mrkdwn!(
            "All alerts resolved {}",
            blocks::date(g.resolved_at.unwrap_or(g.updated_at)),
        ));
    }
    match g.state.as_str() {
        DISMISSED => parts.push(mrkdwn!(
            "Dismissed by {}",
            super::message::who(g.decided_by.as_deref().unwrap_or("?")),
        )),
        ANNOUNCED => {
            let link = outage
                .and_then(|o| o.permalink.as_deref())
                .map(|p| blocks::link(p, "the outage"))
                .unwrap_or_else(|| "the outage".into());
            let by = super::message::who(g.decided_by.as_deref().unwrap_or("?"));
            match outage {
                Some(o) if !o.is_open() => {
                    parts.push(mrkdwn!("{} announced by {} is resolved", link, by))
                }
                _ => parts.push(mrkdwn!("{} was announced by {}", link, by)),
            }
        }
        _ if g.is_firing() => parts.push("Suggested from Alertmanager: announce it?".into()),
        _ => parts.push("Nothing was announced".into()),
    }
    Mrkdwn::join(parts, " · ")
}

/// The buttons the group's state allows.
fn buttons(
    g: &Group,
    outage: Option<&Outage>,
) -> Vec<slack_morphism::prelude::SlackActionBlockElement> {
    let id = &g.id;
    match g.state.as_str() {
        alerts::SUGGESTED if g.is_firing() => vec![
            blocks::button(ACTION_ALERT_ANNOUNCE, "Announce", id)
                .with_style(SlackBlockButtonStyle::Primary)
                .into(),
            blocks::button(ACTION_ALERT_DISMISS, "Dismiss", id).into(),
        ],
        ANNOUNCED if !g.is_firing() && outage.is_some_and(Outage::is_open) => {
            vec![
                blocks::button(ACTION_ALERT_RESOLVE, "Resolve", id)
                    .with_style(SlackBlockButtonStyle::Primary)
                    .into(),
            ]
        }
        _ => Vec::new(),
    }
}

/// The suggestion's fallback text.
pub fn text(g: &Group) -> Mrkdwn {
    let what = if g.is_firing() {
        "Alerts firing"
    } else {
        "Alerts resolved"
    };
    mrkdwn!("{}: {}", what, truncate(&g.proposal.summary, 300))
}

/// The suggestion's blocks.
pub fn render(g: &Group, outage: Option<&Outage>, settings: &AnnouncementsSettings) -> Value {
    let title = if g.is_firing() {
        format!("Alerts: {}", g.proposal.summary)
    } else {
        format!("Resolved alerts: {}", g.proposal.summary)
    };
    let mut b = vec![
        blocks::header(&title),
        blocks::section(proposal_text(g, settings)),
        blocks::section(alert_list(g)),
        blocks::context(state_line(g, outage)),
    ];
    let buttons = buttons(g, outage);
    if !buttons.is_empty() {
        b.push(blocks::actions("alert_group", buttons));
    }
    blocks::to_json(&b)
}

fn db(e: sqlx::Error) -> JobError {
    JobError::from(anyhow::anyhow!(crate::store::short_db_error(&e)))
}

async fn loaded(state: &AppState, id: &str) -> Result<Option<(Group, Option<Outage>)>, JobError> {
    let Some(g) = alerts::load(state.db().pool(), id).await.map_err(db)? else {
        return Ok(None);
    };
    let outage = match g.outage_id.as_deref() {
        Some(o) => model::load(state.db().pool(), o).await.map_err(db)?,
        None => None,
    };
    Ok(Some((g, outage)))
}

/// Post the suggestion (once) and store where it is.
pub struct PostJob;

#[async_trait]
impl JobHandler for PostJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let r: AlertGroupRef = job.payload().map_err(JobError::Permanent)?;
        let Some((g, outage)) = loaded(state, &r.group_id).await? else {
            return Ok(());
        };
        if g.message_ts.is_some() {
            return Ok(());
        }
        let settings = &state.settings().announcements;
        let Some(channel) = settings.channel.clone() else {
            return Err(JobError::Permanent(anyhow::anyhow!(
                "announcements.channel is not configured"
            )));
        };
        let m = Message::text(&channel, text(&g)).blocks(render(&g, outage.as_ref(), settings));
        let posted = post_joining(state, &m).await?;
        sqlx::query(
            "UPDATE alert_groups SET channel = $1, message_ts = $2 WHERE id = $3 AND message_ts IS NULL",
        )
        .bind(&posted.channel)
        .bind(&posted.ts)
        .bind(&g.id)
        .execute(state.db().pool())
        .await
        .map_err(db)?;
        Ok(())
    }
}

/// Update the suggestion in place to the stored state.
pub struct RenderJob;

#[async_trait]
impl JobHandler for RenderJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let r: AlertGroupRef = job.payload().map_err(JobError::Permanent)?;
        let Some((mut g, mut outage)) = loaded(state, &r.group_id).await? else {
            return Ok(());
        };
        if r.version != 0 && g.version > r.version {
            // A later change queued its own update.
            return Ok(());
        }
        let (Some(channel), Some(ts)) = (g.channel.clone(), g.message_ts.clone()) else {
            let post = format!("alerts:post:{}", g.id);
            return match state.jobs().by_dedup_key(&post).await.map_err(db)? {
                Some(p) if p.state == "pending" || p.state == "running" => {
                    Err(JobError::NotYet(Duration::from_millis(300)))
                }
                // Never posted (or posting failed for good): nothing to update.
                _ => Ok(()),
            };
        };
        let settings = &state.settings().announcements;
        for _ in 0..3 {
            let blocks = render(&g, outage.as_ref(), settings);
            state
                .slack()
                .update_message(&channel, &ts, &text(&g), Some(&blocks))
                .await?;
            match loaded(state, &r.group_id).await? {
                Some((now, o)) if now.version != g.version || o != outage => (g, outage) = (now, o),
                _ => break,
            }
        }
        Ok(())
    }
}

/// The suggestion's group, from a button's value.
async fn group_of(state: &AppState, action: &Action) -> anyhow::Result<Result<Group, Ack>> {
    let id = action.value.clone().unwrap_or_default();
    Ok(alerts::load(state.db().pool(), &id)
        .await?
        .ok_or_else(|| Ack::ephemeral("This alert group no longer exists.")))
}

/// Announce on a suggestion: the `/announce` modal, prefilled from the alerts. Nothing is
/// announced until it is submitted.
pub struct AnnounceAlert;

#[async_trait]
impl ActionHandler for AnnounceAlert {
    async fn handle(
        &self,
        cx: SlackCtx,
        interaction: Arc<Interaction>,
        action: Action,
    ) -> anyhow::Result<Ack> {
        let state = &cx.state;
        if let Err(why) = may_announce(state, &cx.user_id).await? {
            return Ok(Ack::ephemeral(why));
        }
        let g = match group_of(state, &action).await? {
            Ok(g) => g,
            Err(ack) => return Ok(ack),
        };
        if g.state != alerts::SUGGESTED || !g.is_firing() {
            return Ok(Ack::ephemeral(
                "This suggestion was already decided, or its alerts resolved.",
            ));
        }
        let Some(trigger) = interaction.trigger_id.as_deref() else {
            return Ok(Ack::ephemeral("Slack sent no trigger; try again."));
        };
        let settings = &state.settings().announcements;
        let view = form_view(
            settings,
            Mode::New,
            "",
            &prefilled(settings, &g, &cx.user_id),
            &Meta {
                outage_id: None,
                version: 0,
                alert_group: Some(g.id.clone()),
                incident_url: None,
            },
        );
        if let Err(e) = state.slack().views_open(trigger, &view).await {
            warn!(error = %e, "opening the announce modal from a suggestion failed");
            return Ok(Ack::ephemeral(mrkdwn!(
                "The form could not be opened ({}); try again.",
                e,
            )));
        }
        Ok(Ack::Empty)
    }
}

/// The `/announce` form's values from a suggestion: its systems (those in the catalogue), its
/// severity (when it is one of the severities), its summary; the person who clicked is assigned.
pub fn prefilled(settings: &AnnouncementsSettings, g: &Group, user: &str) -> Fields {
    let p = &g.proposal;
    Fields {
        summary: p.summary.clone(),
        systems: p
            .systems
            .iter()
            .filter(|s| settings.systems.iter().any(|x| &x.id == *s))
            .cloned()
            .collect(),
        severity: if settings.severities.contains(&p.severity) {
            p.severity.clone()
        } else {
            String::new()
        },
        resolution_assignee: user.to_string(),
        communication_assignee: user.to_string(),
        ..Fields::default()
    }
}

/// Dismiss on a suggestion.
pub struct DismissAlert;

#[async_trait]
impl ActionHandler for DismissAlert {
    async fn handle(
        &self,
        cx: SlackCtx,
        _interaction: Arc<Interaction>,
        action: Action,
    ) -> anyhow::Result<Ack> {
        let state = &cx.state;
        if let Err(why) = may_announce(state, &cx.user_id).await? {
            return Ok(Ack::ephemeral(why));
        }
        let id = action.value.clone().unwrap_or_default();
        match alerts::dismiss(state, &id, &cx.user_id).await {
            Ok(()) => {
                state
                    .audit(
                        super::FEATURE,
                        "dismiss_alert",
                        &cx.user_id,
                        &format!("alert_group:{id}"),
                        "ok",
                        json!({}),
                    )
                    .await;
                Ok(Ack::Empty)
            }
            Err(DecisionError::Other(e)) => Err(e),
            Err(e) => Ok(Ack::ephemeral(mrkdwn!("Not dismissed: {}.", e))),
        }
    }
}

/// Resolve on a suggestion whose alerts all resolved: the outage's resolve modal, with "resolved
/// at" set to when the group's last alert ended.
pub struct ResolveAlert;

#[async_trait]
impl ActionHandler for ResolveAlert {
    async fn handle(
        &self,
        cx: SlackCtx,
        interaction: Arc<Interaction>,
        action: Action,
    ) -> anyhow::Result<Ack> {
        let state = &cx.state;
        let g = match group_of(state, &action).await? {
            Ok(g) => g,
            Err(ack) => return Ok(ack),
        };
        let outage = match g.outage_id.as_deref() {
            Some(o) => model::load(state.db().pool(), o).await?,
            None => None,
        };
        let Some(outage) = outage.filter(Outage::is_open) else {
            return Ok(Ack::ephemeral("There is no open outage for these alerts."));
        };
        if let Err(why) = may_change(state, &outage, &cx.user_id, "resolve").await? {
            return Ok(Ack::ephemeral(why));
        }
        let Some(trigger) = interaction.trigger_id.as_deref() else {
            return Ok(Ack::ephemeral("Slack sent no trigger; try again."));
        };
        let tz_offset = match state.slack().users_info(&cx.user_id).await {
            Ok(u) => u.tz_offset.unwrap_or(0),
            Err(_) => 0,
        };
        let at = g.resolved_at.unwrap_or_else(|| state.now_ms());
        let view = super::resolve::resolve_view(&outage.id, outage.version, at, tz_offset);
        if let Err(e) = state.slack().views_open(trigger, &view).await {
            warn!(error = %e, "opening the resolve modal from a suggestion failed");
            return Ok(Ack::ephemeral(mrkdwn!(
                "The form could not be opened ({}); try again.",
                e,
            )));
        }
        Ok(Ack::Empty)
    }
}
