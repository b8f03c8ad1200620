//! Postmortems are followed up until they are written.
//!
//! An outage resolved with "postmortem needed" owes one (recorded by [`super::changes`] in the
//! resolution's transaction): its owner is the resolution assignee, and it is due
//! `announcements.postmortem_due_days` working days later. From the due date on, the owner gets a
//! DM with an **Add postmortem** button, and again every `announcements.postmortem_remind_days`
//! — each step once, recorded in `outage_reminders` with its DM job in one transaction, and
//! checked with the other reminders under their lease and the injected clock (Phoenix chased
//! postmortems the same way, but kept no record and could repeat itself). Linking the report —
//! the button's modal here, or `PATCH /api/v1/announcements/{id}` with `postmortem` — is a change
//! like any other ([`Kind::Postmortem`]): one thread reply, the announcement updated, the latest
//! update on the status page (public outages), a webhook event. `/announce postmortems` lists the
//! open ones.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::warn;

use super::changes::{self, Change, ChangeError, Kind};
use super::model::{self, Outage, Resolution};
use super::payload::Dm;
use super::{JOB_DM, VIEW_POSTMORTEM, may_change, message};
use crate::jobs::NewJob;
use crate::mrkdwn;
use crate::registry::{ActionHandler, CommandHandler, SlackCtx, ViewHandler};
use crate::slack::ack::Ack;
use crate::slack::blocks::{self, escape, mention, message_view};
use crate::slack::mrkdwn::Mrkdwn;
use crate::slack::payload::{Action, Interaction, SlashCommand};
use crate::state::AppState;

const DAY_MS: i64 = 86_400_000;

/// A postmortem still owed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Owed {
    pub outage_id: String,
    pub owner: String,
    pub due_at: i64,
}

/// The postmortems owed (no report yet) for resolved outages, soonest due first.
pub async fn owed(pool: &sqlx::AnyPool) -> Result<Vec<Owed>, sqlx::Error> {
    sqlx::query_as(
        "SELECT p.outage_id, p.owner, p.due_at FROM postmortems p
         JOIN outages o ON o.id = p.outage_id
         WHERE p.url IS NULL AND o.state = 'resolved'
         ORDER BY p.due_at, p.outage_id",
    )
    .fetch_all(pool)
    .await
}

/// Which reminder step `now` is in: 0 at the due date, then one more every `every_days`.
/// `None` before the due date.
pub fn step(due_at: i64, now: i64, every_days: u64) -> Option<i64> {
    if now < due_at {
        return None;
    }
    Some((now - due_at) / (every_days.max(1) as i64 * DAY_MS))
}

/// DM the owners of postmortems due: once per step. Returns how many reminders were queued.
pub async fn remind(state: &AppState) -> anyhow::Result<usize> {
    let settings = &state.settings().announcements;
    let now = state.now_ms();
    let mut queued = 0;
    for p in owed(state.db().pool()).await? {
        let Some(step) = step(p.due_at, now, settings.postmortem_remind_days) else {
            continue;
        };
        let Some(o) = model::load(state.db().pool(), &p.outage_id).await? else {
            continue;
        };
        let (text, b) = message::postmortem_due_dm(&o, settings, p.due_at, now);
        let dm = Dm {
            user: p.owner.clone(),
            text,
            blocks: Some(b),
        };
        queued += usize::from(once(state, &o.id, &step.to_string(), dm).await?);
    }
    Ok(queued)
}

/// Record the reminder step and queue its DM, once. True when queued now.
async fn once(state: &AppState, outage_id: &str, occasion: &str, dm: Dm) -> anyhow::Result<bool> {
    let mut tx = state.db().pool().begin().await?;
    let res = sqlx::query(
        "INSERT INTO outage_reminders (outage_id, kind, occasion, sent_at)
         VALUES ($1, 'postmortem', $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(outage_id)
    .bind(occasion)
    .bind(state.now_ms())
    .execute(&mut *tx)
    .await?;
    if res.rows_affected() != 1 {
        return Ok(false);
    }
    let key = format!(
        "announcements:dm:{outage_id}:postmortem:{occasion}:{}",
        dm.user
    );
    state
        .jobs()
        .insert(&mut *tx, NewJob::new(JOB_DM, &dm).dedup(key))
        .await?;
    tx.commit().await?;
    state.jobs().wake();
    Ok(true)
}

/// The change that links the report (checked: an http(s) URL, a summary within bounds). `Err`
/// holds `(field, message)` with the field named as the API names it.
pub fn report_change(
    url: &str,
    summary: Option<&str>,
    by: &str,
) -> Result<Change, (String, String)> {
    let url = url.trim();
    if !model::valid_url(url) {
        return Err(("postmortem.url".into(), "must be an http(s) URL".into()));
    }
    let summary = summary
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    if summary
        .as_deref()
        .is_some_and(|s| s.chars().count() > model::SUMMARY_MAX)
    {
        return Err((
            "postmortem.summary".into(),
            format!("at most {} characters", model::SUMMARY_MAX),
        ));
    }
    let mut reason = format!("Postmortem published: {url}");
    if let Some(s) = &summary {
        reason = format!("{reason} — {s}");
    }
    Ok(Change {
        kind: Kind::Postmortem,
        by: by.to_string(),
        reason: Some(blocks::truncate(&reason, model::REASON_MAX)),
        expected_version: None,
        fields: None,
        resolution: Some((
            Resolution {
                report_url: Some(url.to_string()),
                postmortem_summary: summary,
                ..Resolution::default()
            },
            0,
        )),
    })
}

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    #[serde(rename = "o")]
    outage_id: String,
}

/// The Add postmortem modal.
pub fn postmortem_view(outage_id: &str) -> Value {
    let pt = |t: &str| json!({"type": "plain_text", "text": t});
    json!({
        "type": "modal",
        "callback_id": VIEW_POSTMORTEM,
        "title": pt("Add postmortem"),
        "submit": pt("Add"),
        "close": pt("Cancel"),
        "private_metadata": serde_json::to_string(&Meta { outage_id: outage_id.into() }).unwrap_or_default(),
        "blocks": [
            {"type": "input", "block_id": "url", "label": pt("Link to the postmortem report"),
             "element": {"type": "url_text_input", "action_id": "value"}},
            {"type": "input", "block_id": "summary", "optional": true, "label": pt("Summary"),
             "element": {"type": "plain_text_input", "action_id": "value", "multiline": true,
                         "max_length": model::SUMMARY_MAX}}
        ]
    })
}

/// The Add postmortem button (on the resolved announcement and in the reminder DM).
pub struct AddPostmortem;

#[async_trait]
impl ActionHandler for AddPostmortem {
    async fn handle(
        &self,
        cx: SlackCtx,
        interaction: Arc<Interaction>,
        action: Action,
    ) -> anyhow::Result<Ack> {
        let state = &cx.state;
        let id = action.value.clone().unwrap_or_default();
        let Some(outage) = model::load(state.db().pool(), &id).await? else {
            return Ok(Ack::ephemeral("This outage no longer exists."));
        };
        if let Err(why) = may_change(state, &outage, &cx.user_id, "postmortem").await? {
            return Ok(Ack::ephemeral(why));
        }
        if outage.is_open() {
            return Ok(Ack::ephemeral(
                "This outage is open again; resolve it first.",
            ));
        }
        let Some(trigger) = interaction.trigger_id.as_deref() else {
            return Ok(Ack::ephemeral("Slack sent no trigger; try again."));
        };
        if let Err(e) = state
            .slack()
            .views_open(trigger, &postmortem_view(&outage.id))
            .await
        {
            warn!(error = %e, "opening the postmortem modal failed");
            return Ok(Ack::ephemeral(mrkdwn!(
                "The form could not be opened ({}); try again.",
                e,
            )));
        }
        Ok(Ack::Empty)
    }
}

/// The Add postmortem modal's submission.
pub struct PostmortemView;

#[async_trait]
impl ViewHandler for PostmortemView {
    async fn submit(&self, cx: SlackCtx, interaction: Arc<Interaction>) -> anyhow::Result<Ack> {
        let state = &cx.state;
        let view = interaction.view.clone().unwrap_or_default();
        let Ok(meta) = serde_json::from_str::<Meta>(&view.private_metadata) else {
            return Ok(Ack::ViewUpdate(message_view(
                "Postmortem",
                "This form is out of date; press Add postmortem again.",
            )));
        };
        let Some(outage) = model::load(state.db().pool(), &meta.outage_id).await? else {
            return Ok(Ack::ViewUpdate(message_view(
                "Postmortem",
                "This outage no longer exists.",
            )));
        };
        if let Err(why) = may_change(state, &outage, &cx.user_id, "postmortem").await? {
            return Ok(Ack::ViewUpdate(message_view("Postmortem", &why)));
        }
        let url = view.input("url", "value").unwrap_or_default();
        let summary = view.input("summary", "value");
        let change = match report_change(&url, summary.as_deref(), &cx.user_id) {
            Ok(c) => c,
            Err((field, _)) if field == "postmortem.url" => {
                return Ok(Ack::view_error("url", "Give an http(s) link."));
            }
            Err((_, m)) => return Ok(Ack::view_error("summary", m)),
        };
        match changes::apply(state, &outage.id, change).await {
            Ok(_) => Ok(Ack::Empty),
            Err(ChangeError::Other(e)) => Err(e),
            Err(ChangeError::NothingChanged) => {
                Ok(Ack::view_error("url", "This report is already linked."))
            }
            Err(e) => Ok(Ack::ViewUpdate(message_view(
                "Postmortem",
                &mrkdwn!("Not added: {}.", e),
            ))),
        }
    }
}

/// `/announce postmortems`: the open postmortems, who owes each, when it is due, which are late.
pub struct ListCommand;

#[async_trait]
impl CommandHandler for ListCommand {
    async fn handle(&self, cx: SlackCtx, _cmd: SlashCommand) -> anyhow::Result<Ack> {
        let state = &cx.state;
        let owed = owed(state.db().pool()).await?;
        let mut lines = Vec::new();
        for p in owed.iter().take(30) {
            let Some(o) = model::load(state.db().pool(), &p.outage_id).await? else {
                continue;
            };
            lines.push(list_line(state, &o, p));
        }
        if lines.is_empty() {
            return Ok(Ack::ephemeral(":white_check_mark: No postmortem is open."));
        }
        let shown = lines.len();
        let mut text = mrkdwn!(
            "*Open postmortems* ({}):\n{}",
            owed.len(),
            Mrkdwn::join(lines, "\n")
        );
        if owed.len() > shown {
            text.push(mrkdwn!("\n… and {} more", owed.len() - shown));
        }
        Ok(Ack::ephemeral(text.truncate(3900)))
    }
}

fn list_line(state: &AppState, o: &Outage, p: &Owed) -> Mrkdwn {
    let settings = &state.settings().announcements;
    let now = state.now_ms();
    let late = if now > p.due_at {
        mrkdwn!(" · *overdue by {}*", model::duration_text(now - p.due_at))
    } else {
        Mrkdwn::default()
    };
    let what = format!(
        "{}: {}",
        model::system_names(settings, &o.fields.systems),
        blocks::truncate(&o.fields.summary, 120)
    );
    let what = match &o.permalink {
        Some(link) => blocks::link(link, &what),
        None => escape(&what),
    };
    mrkdwn!(
        "• {} · {} · due {}{}",
        what,
        mention(&p.owner),
        blocks::date(p.due_at),
        late,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reminders_step_from_the_due_date() {
        let due = 10 * DAY_MS;
        assert_eq!(step(due, due - 1, 2), None);
        assert_eq!(step(due, due, 2), Some(0));
        assert_eq!(step(due, due + 2 * DAY_MS - 1, 2), Some(0));
        assert_eq!(step(due, due + 2 * DAY_MS, 2), Some(1));
        assert_eq!(step(due, due + 5 * DAY_MS, 2), Some(2));
    }

    #[test]
    fn only_http_links_are_reports() {
        assert!(report_change("https://wiki.example.com/pm/42", None, "U1").is_ok());
        for bad in ["ftp://x/y", "javascript:alert(1)", "wiki/pm", ""] {
            assert_eq!(
                report_change(bad, None, "U1").err().map(|e| e.0),
                Some("postmortem.url".to_string()),
                "{bad}"
            );
        }
        let long = "x".repeat(model::SUMMARY_MAX + 1);
        assert_eq!(
            report_change("https://x.example", Some(&long), "U1")
                .err()
                .map(|e| e.0),
            Some("postmortem.summary".to_string())
        );
    }
}
