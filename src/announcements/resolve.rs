//! Resolve and Reopen.
//!
//! Phoenix marked an outage resolved when the Resolve *button* was pressed and had no cancel
//! handler, so cancelling its dialog left the outage resolved. Here the button only opens the
//! modal; the outage is resolved in the submission's transaction, and closing the modal changes
//! nothing (it is only audited). "Resolved at" is asked in the person's own Slack time zone
//! (`users.info` → `tz_offset`) and stored in UTC.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{NaiveDate, NaiveTime, TimeZone};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::warn;

use super::changes::{self, Change, ChangeError, Kind};
use super::modal::{message_view, outage_for_action};
use super::model::{self, Outage, Resolution};
use super::{VIEW_RESOLVE, may_change};
use crate::mrkdwn;
use crate::registry::{ActionHandler, SlackCtx, ViewHandler};
use crate::slack::ack::Ack;
use crate::slack::blocks::truncate;
use crate::slack::payload::{Action, Interaction, View};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    #[serde(rename = "o")]
    outage_id: String,
    #[serde(rename = "v")]
    version: i64,
    /// The person's UTC offset in seconds when the modal was opened.
    #[serde(rename = "z", default)]
    tz_offset: i64,
}

fn pt(text: &str) -> Value {
    json!({"type": "plain_text", "text": text})
}

fn offset_text(secs: i64) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.abs();
    format!("UTC{sign}{:02}:{:02}", a / 3600, (a % 3600) / 60)
}

/// The Resolve modal, with "resolved at" pre-set to `now` in the person's time zone.
pub fn resolve_view(outage_id: &str, version: i64, now_ms: i64, tz_offset: i64) -> Value {
    let local = chrono::DateTime::from_timestamp_millis(now_ms + tz_offset * 1000)
        .unwrap_or_default()
        .naive_utc();
    let yes_no = |v: &str, l: &str| json!({"text": pt(l), "value": v});
    let meta = Meta {
        outage_id: outage_id.into(),
        version,
        tz_offset,
    };
    json!({
        "type": "modal",
        "callback_id": VIEW_RESOLVE,
        "notify_on_close": true,
        "title": pt("Resolve the outage"),
        "submit": pt("Resolve"),
        "close": pt("Cancel"),
        "private_metadata": serde_json::to_string(&meta).unwrap_or_default(),
        "blocks": [
            {"type": "input", "block_id": "summary", "label": pt("Resolution: what fixed it"),
             "element": {"type": "plain_text_input", "action_id": "value", "multiline": true,
                         "max_length": model::SUMMARY_MAX}},
            {"type": "input", "block_id": "resolved_at_date", "label": pt("Resolved on"),
             "hint": pt(&format!("In your Slack time zone ({}).", offset_text(tz_offset))),
             "element": {"type": "datepicker", "action_id": "value",
                         "initial_date": local.format("%Y-%m-%d").to_string()}},
            {"type": "input", "block_id": "resolved_at_time", "label": pt("Resolved at"),
             "hint": pt(&format!("In your Slack time zone ({}).", offset_text(tz_offset))),
             "element": {"type": "timepicker", "action_id": "value",
                         "initial_time": local.format("%H:%M").to_string()}},
            {"type": "input", "block_id": "postmortem", "label": pt("Postmortem needed?"),
             "element": {"type": "radio_buttons", "action_id": "value",
                         "options": [yes_no("yes", "Yes"), yes_no("no", "No")],
                         "initial_option": yes_no("no", "No")}},
            {"type": "input", "block_id": "report_url", "optional": true,
             "label": pt("Report link (postmortem or incident report)"),
             "element": {"type": "url_text_input", "action_id": "value"}}
        ]
    })
}

/// Local date and time at `tz_offset` seconds east of UTC, as UTC milliseconds.
pub fn local_to_utc_ms(date: &str, time: &str, tz_offset: i64) -> Option<i64> {
    let d = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let t = NaiveTime::parse_from_str(time, "%H:%M").ok()?;
    let offset = chrono::FixedOffset::east_opt(i32::try_from(tz_offset).ok()?)?;
    let local = offset.from_local_datetime(&d.and_time(t)).single()?;
    Some(local.timestamp_millis())
}

/// The Resolve button: opens the modal, changes nothing.
pub struct OpenResolve;

#[async_trait]
impl ActionHandler for OpenResolve {
    async fn handle(
        &self,
        cx: SlackCtx,
        interaction: Arc<Interaction>,
        action: Action,
    ) -> anyhow::Result<Ack> {
        let state = &cx.state;
        let outage = match outage_for_action(state, &cx.user_id, &action, "resolve").await? {
            Ok(o) => o,
            Err(ack) => return Ok(ack),
        };
        if !outage.is_open() {
            return Ok(Ack::ephemeral("This outage is already resolved."));
        }
        let Some(trigger) = interaction.trigger_id.clone() else {
            return Ok(Ack::ephemeral("Slack sent no trigger; try again."));
        };
        // Without the person's zone, UTC (and the hint says so).
        let tz_offset = match state.slack().users_info(&cx.user_id).await {
            Ok(u) => u.tz_offset.unwrap_or(0),
            Err(e) => {
                warn!(error = %e, "reading the user's time zone failed; using UTC");
                0
            }
        };
        let view = resolve_view(&outage.id, outage.version, state.now_ms(), tz_offset);
        if let Err(e) = state.slack().views_open(&trigger, &view).await {
            warn!(error = %e, "opening the resolve modal failed");
            return Ok(Ack::ephemeral(mrkdwn!(
                "The form could not be opened ({}); nothing changed. Try again.",
                e,
            )));
        }
        Ok(Ack::Empty)
    }
}

/// The Resolve modal: submitted (resolve) or closed (nothing happens).
pub struct ResolveView;

#[async_trait]
impl ViewHandler for ResolveView {
    async fn submit(&self, cx: SlackCtx, interaction: Arc<Interaction>) -> anyhow::Result<Ack> {
        let state = &cx.state;
        let view = interaction.view.clone().unwrap_or_default();
        let Ok(meta) = serde_json::from_str::<Meta>(&view.private_metadata) else {
            return Ok(Ack::ViewUpdate(message_view(
                "Resolve",
                "This form is out of date; press Resolve again.",
            )));
        };
        let Some(outage) = model::load(state.db().pool(), &meta.outage_id).await? else {
            return Ok(Ack::ViewUpdate(message_view(
                "Resolve",
                "This outage no longer exists.",
            )));
        };
        if let Err(why) = may_change(state, &outage, &cx.user_id, "resolve").await? {
            return Ok(Ack::ViewUpdate(message_view("Resolve", &why)));
        }
        let now = state.now_ms();
        let Submitted {
            summary,
            postmortem,
            report_url,
            at,
        } = match submitted(&view, &meta, &outage, now) {
            Ok(s) => s,
            Err(errors) => return Ok(Ack::ViewErrors(errors)),
        };
        let change = Change {
            kind: Kind::Resolved,
            by: cx.user_id.clone(),
            reason: Some(summary.clone()),
            expected_version: Some(meta.version),
            fields: None,
            resolution: Some((
                Resolution {
                    summary,
                    postmortem,
                    report_url,
                    resolved_by: cx.user_id.clone(),
                    postmortem_summary: None,
                },
                at,
            )),
        };
        answer(changes::apply(state, &meta.outage_id, change).await)
    }

    async fn closed(&self, cx: SlackCtx, interaction: Arc<Interaction>) -> anyhow::Result<Ack> {
        let view = interaction.view.clone().unwrap_or_default();
        let id = serde_json::from_str::<Meta>(&view.private_metadata)
            .map(|m| m.outage_id)
            .unwrap_or_default();
        cx.state
            .audit(
                super::FEATURE,
                "resolve",
                &cx.user_id,
                &format!("outage:{id}"),
                "canceled",
                json!({}),
            )
            .await;
        Ok(Ack::Empty)
    }
}

/// The Reopen button on a resolved announcement.
pub struct Reopen;

#[async_trait]
impl ActionHandler for Reopen {
    async fn handle(
        &self,
        cx: SlackCtx,
        _interaction: Arc<Interaction>,
        action: Action,
    ) -> anyhow::Result<Ack> {
        let state = &cx.state;
        let outage = match outage_for_action(state, &cx.user_id, &action, "reopen").await? {
            Ok(o) => o,
            Err(ack) => return Ok(ack),
        };
        let change = Change {
            kind: Kind::Reopened,
            by: cx.user_id.clone(),
            reason: None,
            expected_version: Some(outage.version),
            fields: None,
            resolution: None,
        };
        match changes::apply(state, &outage.id, change).await {
            Ok(_) => Ok(Ack::Empty),
            Err(ChangeError::Other(e)) => Err(e),
            Err(e) => Ok(Ack::ephemeral(mrkdwn!("Not reopened: {}.", e))),
        }
    }
}

/// A resolution as submitted and checked.
struct Submitted {
    summary: String,
    postmortem: bool,
    report_url: Option<String>,
    /// When it was resolved, within the outage: not before it started, not after now.
    at: i64,
}

/// The Resolve form's fields, checked (what fixed it, when, the report link); `Err` holds an
/// error for each wrong field.
fn submitted(
    view: &View,
    meta: &Meta,
    outage: &Outage,
    now: i64,
) -> Result<Submitted, Vec<(String, String)>> {
    let mut errors = Vec::new();
    let summary = view
        .input("summary", "value")
        .unwrap_or_default()
        .trim()
        .to_string();
    if summary.is_empty() {
        errors.push(("summary".to_string(), "Say what fixed it.".to_string()));
    } else if summary.chars().count() > model::SUMMARY_MAX {
        errors.push((
            "summary".into(),
            format!("At most {} characters.", model::SUMMARY_MAX),
        ));
    }
    let date = view.input("resolved_at_date", "value").unwrap_or_default();
    let time = view.input("resolved_at_time", "value").unwrap_or_default();
    let at = local_to_utc_ms(&date, &time, meta.tz_offset);
    match at {
        None => errors.push((
            "resolved_at_date".into(),
            "Choose the date and time it was resolved.".into(),
        )),
        // A minute's grace: the picker has minute precision.
        Some(at) if at > now + 60_000 => {
            errors.push(("resolved_at_time".into(), "That is in the future.".into()))
        }
        Some(at) if at < outage.started_at - 60_000 => errors.push((
            "resolved_at_time".into(),
            "That is before the outage started.".into(),
        )),
        Some(_) => {}
    }
    let report_url = view
        .input("report_url", "value")
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty());
    if let Some(u) = &report_url
        && !model::valid_url(u)
    {
        errors.push(("report_url".into(), "Give an http(s) link.".into()));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let postmortem = view.input("postmortem", "value").as_deref() == Some("yes");
    // Within the outage: not before it started, not after now.
    let at = at.unwrap_or(now).min(now).max(outage.started_at);
    Ok(Submitted {
        summary,
        postmortem,
        report_url,
        at,
    })
}

/// What the Resolve form shows once the write path has run.
fn answer(result: Result<Outage, ChangeError>) -> anyhow::Result<Ack> {
    match result {
        Ok(_) => Ok(Ack::Empty),
        Err(ChangeError::Other(e)) => Err(e),
        Err(ChangeError::Conflict) => Ok(Ack::ViewUpdate(message_view(
            "Resolve",
            "Someone changed this outage meanwhile; nothing was resolved. Press Resolve again.",
        ))),
        Err(e) => Ok(Ack::ViewUpdate(message_view(
            "Resolve",
            mrkdwn!("Not resolved: {}.", truncate(&e.to_string(), 2000)),
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_times_are_converted_with_the_offset() {
        // 10:30 in UTC+01:00 is 09:30 UTC.
        let ms = local_to_utc_ms("2026-11-21", "10:30", 3600).unwrap();
        assert_eq!(
            chrono::DateTime::from_timestamp_millis(ms)
                .unwrap()
                .format("%Y-%m-%d %H:%M")
                .to_string(),
            "2026-11-21 09:30"
        );
        assert!(local_to_utc_ms("2026-13-01", "10:30", 0).is_none());
        assert_eq!(offset_text(-18000), "UTC-05:00");
    }
}
