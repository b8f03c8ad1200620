//! Slack channels subscribed to notices (`/announce subscribe`, see [`super::subscribe`]): the
//! stored subscriptions, the fan-out of a change to them, and the notice job.
//!
//! Fed from the same event point as the webhooks ([`super::enqueue`], called by the one write
//! path of outages and of maintenance windows inside their transaction), so a committed change is
//! always noticed and nothing else feeds subscribers. Only public changes of the kinds in
//! [`super::notice::NOTICE_KINDS`] go out, and only to channels whose systems meet the change's. Each notice is a
//! job keyed by (event kind, id, version, channel): a retry, a repeated event or a second replica
//! never posts twice in one channel.
//!
//! A channel Slack says is gone for the bot (`channel_not_found`, `is_archived`,
//! `not_in_channel`: archived, deleted, or the bot was removed) loses its subscription at once,
//! audited and logged, instead of retrying: the bot never rejoins a channel someone removed it
//! from. This module never calls Slack outside a job.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{StatusEvent, notice};
use crate::announcements::settings::SystemEntry;
use crate::jobs::{Job, JobError, NewJob};
use crate::mrkdwn;
use crate::registry::JobHandler;
use crate::slack::api::{Message, SlackErrorCode};
use crate::slack::blocks;
use crate::slack::mrkdwn::{JoinMrkdwn, Mrkdwn};
use crate::state::AppState;

/// The job kind of one notice to one channel.
pub const JOB_NOTICE: &str = "notifiers.channel_notice";

/// The audit log's feature name for subscriptions.
pub const FEATURE: &str = "subscriptions";

/// One channel's subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub channel: String,
    /// Ids from `announcements.systems`; empty: every system.
    pub systems: Vec<String>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_by: String,
    pub updated_at: i64,
}

impl Subscription {
    /// Whether a change about `systems` reaches this channel. A change naming no system reaches
    /// only the channels subscribed to every system.
    pub fn wants(&self, systems: &[String]) -> bool {
        notice::reaches(&self.systems, systems)
    }
}

type Row = (String, String, String, i64, String, i64);

fn from_row(
    (channel, systems, created_by, created_at, updated_by, updated_at): Row,
) -> Subscription {
    Subscription {
        channel,
        systems: serde_json::from_str(&systems).unwrap_or_default(),
        created_by,
        created_at,
        updated_by,
        updated_at,
    }
}

/// The subscription of `channel`, if any.
pub async fn get<'c>(
    conn: impl sqlx::Executor<'c, Database = sqlx::Any>,
    channel: &str,
) -> Result<Option<Subscription>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT channel, systems, created_by, created_at, updated_by, updated_at
         FROM channel_subscriptions WHERE channel = $1",
    )
    .bind(channel)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(from_row))
}

/// Every subscription, by channel.
pub async fn all<'c>(
    conn: impl sqlx::Executor<'c, Database = sqlx::Any>,
) -> Result<Vec<Subscription>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT channel, systems, created_by, created_at, updated_by, updated_at
         FROM channel_subscriptions ORDER BY channel",
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// Subscribe `channel` to `systems` (empty: every system), replacing what it had.
pub async fn save(
    state: &AppState,
    channel: &str,
    systems: &[String],
    by: &str,
) -> Result<(), sqlx::Error> {
    let now = state.now_ms();
    sqlx::query(
        "INSERT INTO channel_subscriptions (channel, systems, created_by, created_at, updated_by, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (channel) DO UPDATE SET systems = excluded.systems,
            updated_by = excluded.updated_by, updated_at = excluded.updated_at",
    )
    .bind(channel)
    .bind(serde_json::to_string(systems).unwrap_or_else(|_| "[]".into()))
    .bind(by)
    .bind(now)
    .bind(by)
    .bind(now)
    .execute(state.db().pool())
    .await?;
    Ok(())
}

/// Remove `channel`'s subscription; false when it had none.
pub async fn remove(state: &AppState, channel: &str) -> Result<bool, sqlx::Error> {
    let res = sqlx::query("DELETE FROM channel_subscriptions WHERE channel = $1")
        .bind(channel)
        .execute(state.db().pool())
        .await?;
    Ok(res.rows_affected() > 0)
}

/// The systems a change is about, as its event carries them.
fn event_systems(event: &StatusEvent) -> Vec<String> {
    notice::systems(&event.data)
}

/// Whether subscribers hear of `event` at all ([`notice::noticed`]).
pub fn noticed(event: &StatusEvent) -> bool {
    notice::noticed(&event.kind, &event.data)
}

/// The dedup key of `event`'s notice in `channel`: once per change and channel.
fn notice_key(event: &StatusEvent, channel: &str) -> String {
    let version = event.data["version"].as_i64().unwrap_or(0);
    format!(
        "{JOB_NOTICE}:{}:{}:v{version}:{channel}",
        event.kind, event.id
    )
}

/// A queued notice.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Notice {
    channel: String,
    event: StatusEvent,
}

/// Queue `event`'s notice for every subscribed channel it concerns, inside the caller's
/// transaction (the change's).
pub async fn enqueue(
    state: &AppState,
    conn: &mut sqlx::AnyConnection,
    event: &StatusEvent,
) -> Result<(), sqlx::Error> {
    if !noticed(event) {
        return Ok(());
    }
    let systems = event_systems(event);
    for sub in all(&mut *conn).await? {
        if !sub.wants(&systems) {
            continue;
        }
        let notice = Notice {
            channel: sub.channel.clone(),
            event: event.clone(),
        };
        let job = NewJob::new(JOB_NOTICE, &notice).dedup(notice_key(event, &sub.channel));
        state.jobs().insert(&mut *conn, job).await?;
    }
    Ok(())
}

/// Posts one notice in one channel, if the channel still wants it when the job runs (it may have
/// unsubscribed, or narrowed its systems, since the change).
pub(super) struct NoticeJob;

#[async_trait]
impl JobHandler for NoticeJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let n: Notice = job.payload().map_err(JobError::Permanent)?;
        let db = |e: sqlx::Error| JobError::from(anyhow::anyhow!(crate::store::short_db_error(&e)));
        let Some(sub) = get(state.db().pool(), &n.channel).await.map_err(db)? else {
            tracing::debug!(channel = %n.channel, event = %n.event.kind, "channel unsubscribed since; notice dropped");
            return Ok(());
        };
        if !sub.wants(&event_systems(&n.event)) {
            return Ok(());
        }
        let (text, blocks) = render(state, &n.event);
        let msg = Message::text(&n.channel, text).blocks(blocks);
        match state.slack().post_message(&msg).await {
            Ok(_) => Ok(()),
            Err(e)
                if e.is(SlackErrorCode::ChannelNotFound)
                    || e.is(SlackErrorCode::IsArchived)
                    || e.is(SlackErrorCode::NotInChannel) =>
            {
                let code = e.code().map(|c| c.to_string()).unwrap_or_default();
                let removed = remove(state, &n.channel).await.map_err(db)?;
                tracing::warn!(
                    channel = %n.channel,
                    event = %n.event.kind,
                    slack.error = %code,
                    removed,
                    "Slack refuses notices in this channel (archived, deleted, or the bot was removed); its subscription is dropped"
                );
                state
                    .audit(
                        FEATURE,
                        "drop",
                        "slackops",
                        &format!("channel:{}", n.channel),
                        &code,
                        json!({"event": n.event.kind, "id": n.event.id}),
                    )
                    .await;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// System names for ids, escaped for mrkdwn.
pub fn system_names(catalogue: &[SystemEntry], ids: &[String]) -> Mrkdwn {
    if ids.is_empty() {
        return "all systems".into();
    }
    ids.iter()
        .map(|id| {
            catalogue
                .iter()
                .find(|s| &s.id == id)
                .map(|s| s.name.as_str())
                .unwrap_or(id)
        })
        .join_mrkdwn(", ")
}

/// Milliseconds from an event field: a number, or RFC 3339 text (maintenance windows).
fn ms(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.timestamp_millis())
    })
}

/// The notice's fallback text and blocks: a headline, what it is about, and links to the
/// announcement and the status page when there are any. User text is escaped.
fn render(state: &AppState, event: &StatusEvent) -> (Mrkdwn, Value) {
    let settings = state.settings();
    let d = &event.data;
    let systems = system_names(&settings.announcements.systems, &event_systems(event));
    let str_of = |k: &str| d[k].as_str().unwrap_or_default().to_string();
    let (emoji, headline, what, mut facts) = match event.kind.as_str() {
        "outage.announced" | "outage.updated" | "outage.reopened" | "outage.resolved" => {
            let (emoji, headline) = match event.kind.as_str() {
                "outage.announced" => (":red_circle:", "Outage"),
                "outage.reopened" => (":red_circle:", "Outage reopened"),
                "outage.resolved" => (":large_green_circle:", "Outage resolved"),
                _ => (":large_orange_circle:", "Outage update"),
            };
            let mut facts = vec![
                mrkdwn!("*State:* {}", str_of("state")),
                mrkdwn!("*Severity:* {}", str_of("severity")),
            ];
            if event.kind == "outage.resolved" {
                if let Some(at) = ms(&d["resolved_at"]) {
                    facts.push(mrkdwn!("*Resolved:* {}", blocks::date(at)));
                }
            } else {
                facts.push(mrkdwn!("*ETA:* {}", str_of("eta")));
            }
            if let Some(at) = ms(&d["started_at"]) {
                facts.push(mrkdwn!("*Started:* {}", blocks::date(at)));
            }
            let mut what = Mrkdwn::text(&str_of("summary"));
            if let Some(r) = d["resolution"]["summary"]
                .as_str()
                .filter(|s| !s.is_empty())
            {
                what.push(mrkdwn!("\n*Resolution:* {}", r));
            }
            (emoji, headline, what, facts)
        }
        kind => {
            let (emoji, headline) = match kind {
                "maintenance.started" => (":construction:", "Maintenance started"),
                "maintenance.ended" => (":white_check_mark:", "Maintenance ended"),
                "maintenance.canceled" => (":no_entry_sign:", "Maintenance canceled"),
                _ => (":wrench:", "Maintenance scheduled"),
            };
            let mut facts = Vec::new();
            if let (Some(from), Some(to)) = (ms(&d["starts_at"]), ms(&d["ends_at"])) {
                facts.push(mrkdwn!(
                    "*Window:* {} – {}",
                    blocks::date(from),
                    blocks::date(to)
                ));
            }
            let title = str_of("title");
            let summary = str_of("summary");
            let what = if summary.trim().is_empty() {
                mrkdwn!("*{}*", title)
            } else {
                mrkdwn!("*{}*\n{}", title, summary)
            };
            (emoji, headline, what, facts)
        }
    };
    facts.insert(0, mrkdwn!("*Systems:* {}", &systems));
    let mut links = Vec::new();
    if let Some(p) = d["permalink"].as_str() {
        links.push(blocks::link(p, "Announcement"));
    }
    if let Some(url) = &settings.status.public_url {
        links.push(blocks::link(url.as_str(), "Status page"));
    }
    // An outage is its summary; a window, its title.
    let subject = if event.kind.starts_with("outage.") {
        str_of("summary")
    } else {
        str_of("title")
    };
    let text = mrkdwn!("{}: {} — {}", headline, &systems, subject).truncate(3000);
    let mut b = vec![
        json!({"type": "section", "text": {"type": "mrkdwn", "text":
            mrkdwn!("{} *{}* · {}\n{}", emoji, headline, &systems, what)
                .truncate(blocks::SECTION_TEXT_MAX)}}),
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text":
            Mrkdwn::join(&facts, " · ").truncate(blocks::CONTEXT_TEXT_MAX)}]}),
    ];
    if !links.is_empty() {
        b.push(
            json!({"type": "context", "elements": [{"type": "mrkdwn", "text":
            Mrkdwn::join(&links, " · ")}]}),
        );
    }
    (text, Value::Array(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(systems: &[&str]) -> Subscription {
        Subscription {
            channel: "C1".into(),
            systems: systems.iter().map(|s| s.to_string()).collect(),
            created_by: "U1".into(),
            created_at: 0,
            updated_by: "U1".into(),
            updated_at: 0,
        }
    }

    fn ev(kind: &str, public: bool) -> StatusEvent {
        StatusEvent {
            kind: kind.into(),
            id: "o1".into(),
            at: 0,
            data: json!({"public": public, "systems": ["search"], "version": 3}),
        }
    }

    #[test]
    fn a_subscription_without_systems_wants_every_change() {
        assert!(sub(&[]).wants(&["search".into()]));
        assert!(sub(&[]).wants(&[]));
        assert!(sub(&["search"]).wants(&["payments".into(), "search".into()]));
        assert!(!sub(&["search"]).wants(&["payments".into()]));
        assert!(!sub(&["search"]).wants(&[]));
    }

    #[test]
    fn only_public_changes_of_the_notice_kinds_are_noticed() {
        assert!(noticed(&ev("outage.announced", true)));
        assert!(noticed(&ev("maintenance.ended", true)));
        assert!(!noticed(&ev("outage.announced", false)));
        assert!(!noticed(&ev("outage.reassigned", true)));
        assert!(!noticed(&ev("outage.postmortem", true)));
        assert!(!noticed(&ev("maintenance.updated", true)));
    }

    #[test]
    fn a_notice_is_keyed_by_change_version_and_channel() {
        let e = ev("outage.updated", true);
        assert_eq!(
            notice_key(&e, "C1"),
            "notifiers.channel_notice:outage.updated:o1:v3:C1"
        );
        assert_ne!(notice_key(&e, "C1"), notice_key(&e, "C2"));
    }
}
