//! Telling people: shift-change notices in the group's channel, DMs to whoever comes on call, and
//! problems (failures with their error id, people missing in Slack) in `oncall.ops_channel`.
//!
//! Notices and DMs are jobs queued by the sync in the same transaction that records the change,
//! with a dedup key per group generation, so a retried or repeated sync never posts twice and a
//! Slack outage only delays them. Problem posts are throttled through the database
//! (`oncall_alerts`): the same problem of the same group is posted at most once per
//! `oncall.alert_throttle_secs`, across replicas, so a long outage does not flood the channel.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::warn;

use super::report::{GroupPlan, Outcome, SyncReport};
use crate::jobs::{Job, JobError, NewJob};
use crate::mrkdwn;
use crate::registry::JobHandler;
use crate::slack::api::Message;
use crate::slack::blocks::{escape, mention};
use crate::slack::mrkdwn::Mrkdwn;
use crate::state::AppState;

/// The members slackops last announced for a group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Notice {
    pub handle: String,
    pub usergroup_id: String,
    pub channel: Option<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub members: Vec<String>,
    pub generation: i64,
}

/// A DM to someone coming on call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dm {
    pub handle: String,
    pub user: String,
    pub members: Vec<String>,
}

/// A post to the ops channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Alert {
    pub channel: String,
    pub text: Mrkdwn,
}

fn people(ids: &[String]) -> Mrkdwn {
    let m: Vec<Mrkdwn> = ids.iter().map(|u| mention(u)).collect();
    match m.len() {
        0 => Mrkdwn::default(),
        1 => m[0].clone(),
        n => mrkdwn!("{} and {}", Mrkdwn::join(&m[..n - 1], ", "), m[n - 1]),
    }
}

/// `@new is now on call for @platform-oncall, taking over from @old`. The group is named, not
/// mentioned, so a shift change does not ping everyone in it.
pub fn notice_text(n: &Notice) -> Mrkdwn {
    let group = mrkdwn!("*@{}*", escape(&n.handle));
    let verb = if n.added.len() == 1 { "is" } else { "are" };
    match (n.added.is_empty(), n.removed.is_empty()) {
        (false, false) => mrkdwn!(
            ":pager: {} {} now on call for {}, taking over from {}.",
            people(&n.added),
            verb,
            group,
            people(&n.removed),
        ),
        (false, true) => {
            let others: Vec<String> = n
                .members
                .iter()
                .filter(|m| !n.added.contains(m))
                .cloned()
                .collect();
            let joining = if others.is_empty() {
                Mrkdwn::default()
            } else {
                mrkdwn!(", joining {}", people(&others))
            };
            mrkdwn!(
                ":pager: {} {} now on call for {}{}.",
                people(&n.added),
                verb,
                group,
                joining,
            )
        }
        (true, false) => mrkdwn!(
            ":pager: {} went off call for {}; on call now: {}.",
            people(&n.removed),
            group,
            people(&n.members),
        ),
        (true, true) => mrkdwn!(":pager: On call for {}: {}.", group, people(&n.members)),
    }
}

/// What the button (and then the modal) carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handover {
    #[serde(rename = "h")]
    pub handle: String,
    #[serde(rename = "g")]
    pub generation: i64,
    /// Who may hand over: the people going off call.
    pub off: Vec<String>,
    /// Who the note is for: the people coming on.
    pub on: Vec<String>,
    /// The notice's channel and `ts` (set when the modal is opened).
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<String>,
}

/// Who goes off and who comes on at this change, if it has both (a notice that only lists who
/// is on call has no handover).
pub fn handover_of(n: &Notice) -> Option<Handover> {
    if n.added.is_empty() && n.removed.is_empty() {
        return None;
    }
    let off: Vec<String> = if n.removed.is_empty() {
        n.members
            .iter()
            .filter(|m| !n.added.contains(m))
            .cloned()
            .collect()
    } else {
        n.removed.clone()
    };
    let on = if n.added.is_empty() {
        n.members.clone()
    } else {
        n.added.clone()
    };
    (!off.is_empty() && !on.is_empty()).then(|| Handover {
        handle: n.handle.clone(),
        generation: n.generation,
        off,
        on,
        channel: None,
        ts: None,
    })
}

/// The notice's message: its text, and the "Hand over" button when the change has a handover.
pub fn notice_message(channel: &str, n: &Notice) -> Message {
    let text = notice_text(n);
    let msg = Message::text(channel, &text);
    let Some(h) = handover_of(n) else {
        return msg;
    };
    let value = serde_json::to_string(&h).unwrap_or_default();
    if value.len() > 2000 {
        // Slack caps a button's value at 2000 characters: a group this large gets no button.
        return msg;
    }
    msg.blocks(json!([
        {"type": "section", "block_id": "notice",
         "text": {"type": "mrkdwn", "text": text.truncate(3000)}},
        {"type": "actions", "block_id": "handover", "elements": [
            {"type": "button", "action_id": super::ACTION_HANDOVER,
             "text": {"type": "plain_text", "text": "Hand over"}, "value": value}
        ]}
    ]))
}

/// The group's recorded generation and members, if recorded.
async fn current(state: &AppState, handle: &str) -> Result<Option<(i64, Vec<String>)>, JobError> {
    let row: Option<(i64, String)> =
        sqlx::query_as("SELECT generation, members FROM oncall_groups WHERE handle = $1")
            .bind(handle)
            .fetch_optional(state.db().pool())
            .await
            .map_err(|e| JobError::from(anyhow::anyhow!(crate::store::short_db_error(&e))))?;
    Ok(row.map(|(g, m)| (g, serde_json::from_str(&m).unwrap_or_default())))
}

pub struct NoticeJob;

#[async_trait]
impl JobHandler for NoticeJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let n: Notice = job.payload().map_err(JobError::Permanent)?;
        let Some(channel) = &n.channel else {
            return Ok(());
        };
        // Delayed (a Slack outage) past the next change: that change's notice tells the truth,
        // this one would announce people who may already be off again.
        if let Some((generation, _)) = current(state, &n.handle).await?
            && generation > n.generation
        {
            tracing::info!(oncall.group = %n.handle, "shift notice superseded by a later change; not posted");
            return Ok(());
        }
        state
            .slack()
            .post_message(&notice_message(channel, &n))
            .await?;
        Ok(())
    }
}

pub struct DmJob;

#[async_trait]
impl JobHandler for DmJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let d: Dm = job.payload().map_err(JobError::Permanent)?;
        // Delayed until the person went off call again: telling them they are on would be wrong.
        if let Some((_, members)) = current(state, &d.handle).await?
            && !members.contains(&d.user)
        {
            return Ok(());
        }
        let others: Vec<String> = d
            .members
            .iter()
            .filter(|m| **m != d.user)
            .cloned()
            .collect();
        let with = if others.is_empty() {
            Mrkdwn::default()
        } else {
            mrkdwn!(" with {}", people(&others))
        };
        let text = mrkdwn!(
            ":pager: You are now on call for *@{}*{}. Mentions of @{} reach you until your shift ends.",
            escape(&d.handle),
            with,
            escape(&d.handle),
        );
        let dm = state.slack().open_dm(&d.user).await?;
        state.slack().post_message(&Message::text(dm, text)).await?;
        Ok(())
    }
}

pub struct AlertJob;

#[async_trait]
impl JobHandler for AlertJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let a: Alert = job.payload().map_err(JobError::Permanent)?;
        state
            .slack()
            .post_message(&Message::text(&a.channel, &a.text))
            .await?;
        Ok(())
    }
}

/// Take the throttle for `key`: true when this problem may be posted now.
async fn throttle(state: &AppState, key: &str) -> Result<bool, sqlx::Error> {
    let now = state.now_ms();
    let window = (state.settings().oncall.alert_throttle_secs as i64) * 1000;
    let res = sqlx::query(
        "INSERT INTO oncall_alerts (alert_key, last_posted_at, suppressed) VALUES ($1, $2, 0)
         ON CONFLICT (alert_key) DO UPDATE SET last_posted_at = excluded.last_posted_at, suppressed = 0
         WHERE oncall_alerts.last_posted_at <= $3",
    )
    .bind(key)
    .bind(now)
    .bind(now - window)
    .execute(state.db().pool())
    .await?;
    if res.rows_affected() == 1 {
        return Ok(true);
    }
    sqlx::query("UPDATE oncall_alerts SET suppressed = suppressed + 1 WHERE alert_key = $1")
        .bind(key)
        .execute(state.db().pool())
        .await?;
    Ok(false)
}

async fn alert(state: &AppState, key: &str, text: Mrkdwn) {
    let Some(channel) = state.settings().oncall.ops_channel.clone() else {
        return;
    };
    match throttle(state, key).await {
        Ok(true) => {
            let job = NewJob::new(super::JOB_ALERT, &Alert { channel, text });
            if let Err(e) = state.jobs().enqueue(job).await {
                warn!(error = %crate::store::short_db_error(&e), "queueing an on-call alert failed");
            }
        }
        Ok(false) => {}
        Err(e) => {
            warn!(error = %crate::store::short_db_error(&e), "on-call alert throttle unavailable; not posting")
        }
    }
}

/// Above this many groups with the same kind of problem in one run, one summary is posted instead
/// of a message per group (a Slack or provider outage hits every group at once).
const PER_GROUP_LIMIT: usize = 3;

/// Post the run's failures and missing people to the ops channel (throttled).
pub async fn report_problems(state: &AppState, report: &SyncReport) {
    let mins = state.settings().oncall.alert_throttle_secs / 60;
    let failed: Vec<_> = report
        .groups
        .iter()
        .filter(|g| g.outcome == Outcome::Failed)
        .collect();
    let missing: Vec<_> = report
        .groups
        .iter()
        .filter(|g| !g.missing.is_empty())
        .collect();
    report_failed(state, &failed, report.groups.len(), mins).await;
    report_kept_empty(state, report).await;
    report_missing(state, &missing).await;
}

/// Groups that failed: one alert each, or one summary when more than [`PER_GROUP_LIMIT`] failed.
async fn report_failed(state: &AppState, failed: &[&GroupPlan], groups: usize, mins: u64) {
    if failed.len() > PER_GROUP_LIMIT {
        let lines: Vec<Mrkdwn> = failed
            .iter()
            .take(10)
            .map(|g| {
                mrkdwn!(
                    "• *@{}*: {} (error id `{}`)",
                    escape(&g.handle),
                    escape(g.error.as_deref().unwrap_or("unknown error")),
                    g.error_id.as_deref().unwrap_or("-"),
                )
            })
            .collect();
        let more = failed.len().saturating_sub(10);
        let text = mrkdwn!(
            ":warning: On-call sync could not update {} of {} groups; they keep their current members. \
             The error ids are in slackops' logs. Not repeated here for {} min.\n{}{}",
            failed.len(),
            groups,
            mins,
            Mrkdwn::join(lines, "\n"),
            if more > 0 {
                mrkdwn!("\n… and {} more", more)
            } else {
                Mrkdwn::default()
            }
        );
        alert(state, "failed:many", text).await;
    } else {
        for g in failed {
            let kind = g.error_kind.as_deref().unwrap_or("error");
            let text = mrkdwn!(
                ":warning: On-call sync could not update *@{}*: {}. It keeps its current members. \
                 Error id `{}` (the same id is in slackops' logs). The same problem is not repeated here for {} min.",
                escape(&g.handle),
                escape(g.error.as_deref().unwrap_or("unknown error")),
                g.error_id.as_deref().unwrap_or("-"),
                mins,
            );
            alert(state, &format!("failed:{}:{kind}", g.handle), text).await;
        }
    }
}

/// Groups nobody is on call for, which kept their members.
async fn report_kept_empty(state: &AppState, report: &SyncReport) {
    for g in report
        .groups
        .iter()
        .filter(|g| g.outcome == Outcome::KeptEmpty)
        .take(PER_GROUP_LIMIT)
    {
        let text = mrkdwn!(
            ":zzz: Nobody is on call for *@{}* according to its sources, so it keeps its current members \
             (Slack refuses empty groups). Set `when_empty: fallback` with a `fallback` list to choose who is in it then.",
            escape(&g.handle),
        );
        alert(state, &format!("empty:{}", g.handle), text).await;
    }
}

/// People on call who are not in Slack: one alert per group, or one for them all when more than
/// [`PER_GROUP_LIMIT`] groups have some.
async fn report_missing(state: &AppState, missing: &[&GroupPlan]) {
    let advice = "They are left out of their groups; add them to Slack with the same email, or list placeholder accounts under `ignore`.";
    if missing.len() > PER_GROUP_LIMIT {
        let mut everyone: Vec<String> = missing.iter().flat_map(|g| g.missing.clone()).collect();
        everyone.sort();
        everyone.dedup();
        let text = mrkdwn!(
            ":bust_in_silhouette: On call in {} groups but not found in Slack: {}. {}",
            missing.len(),
            escape(&everyone.join(", ")),
            advice,
        );
        alert(state, &format!("missing:many:{}", everyone.join(",")), text).await;
    } else {
        for g in missing {
            let text = mrkdwn!(
                ":bust_in_silhouette: On call for *@{}* but not found in Slack: {}. {}",
                escape(&g.handle),
                escape(&g.missing.join(", ")),
                advice,
            );
            alert(
                state,
                &format!("missing:{}:{}", g.handle, g.missing.join(",")),
                text,
            )
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(added: &[&str], removed: &[&str], members: &[&str]) -> Notice {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        Notice {
            handle: "platform-oncall".into(),
            usergroup_id: "S1".into(),
            channel: Some("C1".into()),
            added: v(added),
            removed: v(removed),
            members: v(members),
            generation: 1,
        }
    }

    #[test]
    fn notices_say_who_came_on_and_who_went_off() {
        assert_eq!(
            notice_text(&n(&["U2"], &["U1"], &["U2"])),
            ":pager: <@U2> is now on call for *@platform-oncall*, taking over from <@U1>."
        );
        assert_eq!(
            notice_text(&n(&["U2", "U3"], &[], &["U1", "U2", "U3"])),
            ":pager: <@U2> and <@U3> are now on call for *@platform-oncall*, joining <@U1>."
        );
        assert_eq!(
            notice_text(&n(&["U2"], &[], &["U2"])),
            ":pager: <@U2> is now on call for *@platform-oncall*."
        );
        assert_eq!(
            notice_text(&n(&[], &["U1"], &["U2"])),
            ":pager: <@U1> went off call for *@platform-oncall*; on call now: <@U2>."
        );
    }

    #[test]
    fn a_shift_notice_shows_a_hostile_handle_and_id_as_text() {
        let mut notice = n(&["U2"], &["<!channel>"], &["U2"]);
        notice.handle = "<https://evil.example|Log in> & <@U0EVIL>".into();
        let t = notice_text(&notice).into_string();
        for raw in ["<!channel>", "<https://evil.example", "<@U0EVIL>"] {
            assert!(!t.contains(raw), "raw {raw} in {t}");
        }
        assert!(t.contains("<@U2>"), "{t}");
    }

    #[test]
    fn whoever_goes_off_hands_over_to_whoever_comes_on() {
        let h = handover_of(&n(&["U2"], &["U1"], &["U2"])).unwrap();
        assert_eq!((h.off, h.on), (vec!["U1".into()], vec!["U2".into()]));
        // Someone joins early (a handover window): those already on call hand over to them.
        let h = handover_of(&n(&["U2"], &[], &["U1", "U2"])).unwrap();
        assert_eq!((h.off, h.on), (vec!["U1".into()], vec!["U2".into()]));
        // Someone leaves: they hand over to those who stay.
        let h = handover_of(&n(&[], &["U1"], &["U2"])).unwrap();
        assert_eq!((h.off, h.on), (vec!["U1".into()], vec!["U2".into()]));
        // A first announcement has nobody to hand over.
        assert_eq!(handover_of(&n(&["U2"], &[], &["U2"])), None);
        assert_eq!(handover_of(&n(&[], &[], &["U2"])), None);
    }

    #[test]
    fn the_notice_carries_the_button_only_with_a_handover() {
        let m = notice_message("C1", &n(&["U2"], &["U1"], &["U2"]));
        let blocks = m.blocks.expect("blocks");
        assert_eq!(
            blocks[1]["elements"][0]["action_id"],
            crate::oncall::ACTION_HANDOVER
        );
        assert!(
            notice_message("C1", &n(&["U2"], &[], &["U2"]))
                .blocks
                .is_none()
        );
    }
}
