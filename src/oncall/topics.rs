//! Channel topics: keep "On call: @alice, @bob (until 17:00 UTC)" at the start of each of a
//! group's `topic_channels`, keeping the rest of the topic as people wrote it.
//!
//! Why: people look at a channel's topic to know whom to ask. What it must never do: refuse or
//! drop the rest of the topic (when the whole would pass Slack's 250 characters the rest is
//! shortened, then the list), write when nothing changed (the prefix last written is kept in
//! `oncall_topics`; Slack is read and written only when it differs), or let one channel stop the
//! sync (a channel slackops cannot write to is reported in the plan and the log, and tried again
//! next run).

use serde::Serialize;
use serde_json::{Value, json};
use tracing::warn;

use super::settings::GroupSettings;
use crate::clock::Millis;
use crate::slack::blocks::mention;
use crate::state::AppState;

/// What starts a topic slackops keeps.
pub const PREFIX: &str = "On call: ";
/// Between slackops's part and the rest of the topic.
pub const SEPARATOR: &str = " | ";
/// Slack's limit on a channel topic, in characters.
pub const MAX_CHARS: usize = 250;

/// What happened to one channel's topic in a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicResult {
    pub channel: String,
    /// `written`, `unchanged`, or `failed`.
    pub outcome: &'static str,
    /// Slack's error code when it failed (`not_in_channel`, `missing_scope`, …).
    pub error: Option<String>,
}

/// "On call: <@U1>, <@U2> (until 17:00 UTC)"; a change more than a day away shows its date.
pub fn on_call_part(members: &[String], until: Option<Millis>, now: Millis) -> String {
    let who = if members.is_empty() {
        "nobody".to_string()
    } else {
        members
            .iter()
            .map(|m| mention(m).into_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let until = until
        .and_then(|t| {
            let d = chrono::DateTime::from_timestamp_millis(t)?;
            let f = if t - now < 86_400_000 {
                "%H:%M UTC"
            } else {
                "%a %d %b %H:%M UTC"
            };
            Some(format!(" (until {})", d.format(f)))
        })
        .unwrap_or_default();
    format!("{PREFIX}{who}{until}")
}

/// The part of `topic` people wrote: everything after slackops's part, if it has one.
pub fn rest_of(topic: &str) -> &str {
    if !topic.starts_with(PREFIX) {
        return topic;
    }
    topic.split_once(SEPARATOR).map(|(_, r)| r).unwrap_or("")
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The topic with `part` at the start and the rest of `current` after it, within Slack's 250
/// characters: the rest is shortened first, then the part itself.
pub fn compose(part: &str, current: &str) -> String {
    let rest = rest_of(current).trim();
    let part = shorten(part, MAX_CHARS);
    if rest.is_empty() {
        return part;
    }
    let room = MAX_CHARS.saturating_sub(part.chars().count() + SEPARATOR.chars().count());
    if room < 2 {
        return part;
    }
    format!("{part}{SEPARATOR}{}", shorten(rest, room))
}

/// Keep each of the group's topic channels in step with `members`; never fails the sync.
pub async fn update(
    state: &AppState,
    g: &GroupSettings,
    members: &[String],
    until: Option<Millis>,
) -> Vec<TopicResult> {
    let handle = g.handle.trim_start_matches('@').to_ascii_lowercase();
    let part = on_call_part(members, until, state.now_ms());
    let mut out = Vec::new();
    for channel in &g.topic_channels {
        let result = match one(state, &handle, channel, &part).await {
            Ok(written) => TopicResult {
                channel: channel.clone(),
                outcome: if written { "written" } else { "unchanged" },
                error: None,
            },
            Err(code) => {
                warn!(oncall.group = %handle, channel = %channel, error = %code, "cannot write the channel topic; the sync goes on");
                TopicResult {
                    channel: channel.clone(),
                    outcome: "failed",
                    error: Some(code),
                }
            }
        };
        out.push(result);
    }
    out
}

/// One channel: `Ok(true)` when the topic was written, `Err` with Slack's error code.
async fn one(state: &AppState, handle: &str, channel: &str, part: &str) -> Result<bool, String> {
    let pool = state.db().pool();
    let db = |e: sqlx::Error| crate::store::short_db_error(&e).to_string();
    let last: Option<String> =
        sqlx::query_scalar("SELECT part FROM oncall_topics WHERE channel = $1 AND handle = $2")
            .bind(channel)
            .bind(handle)
            .fetch_optional(pool)
            .await
            .map_err(db)?;
    if last.as_deref() == Some(part) {
        return Ok(false);
    }
    let slack_err = |e: crate::slack::api::SlackError| {
        e.code()
            .map(|c| c.as_str().to_string())
            .unwrap_or_else(|| e.to_string())
    };
    let info: Value = state
        .slack()
        .call("conversations.info", &json!({"channel": channel}))
        .await
        .map_err(slack_err)?;
    let current = info
        .pointer("/channel/topic/value")
        .and_then(Value::as_str)
        .unwrap_or("");
    let topic = compose(part, current);
    let written = topic != current;
    if written {
        let _: Value = state
            .slack()
            .call(
                "conversations.setTopic",
                &json!({"channel": channel, "topic": topic}),
            )
            .await
            .map_err(slack_err)?;
    }
    sqlx::query(
        "INSERT INTO oncall_topics (channel, handle, part) VALUES ($1, $2, $3)
         ON CONFLICT (channel, handle) DO UPDATE SET part = excluded.part",
    )
    .bind(channel)
    .bind(handle)
    .bind(part)
    .execute(pool)
    .await
    .map_err(db)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rest_of_the_topic_is_kept_after_the_on_call_part() {
        let part = "On call: <@U1> (until 17:00 UTC)";
        assert_eq!(compose(part, ""), part);
        assert_eq!(
            compose(part, "Deploys: #deploys"),
            format!("{part} | Deploys: #deploys")
        );
        // The old part is replaced, the rest kept.
        let old = "On call: <@U0> (until 09:00 UTC) | Deploys: #deploys";
        assert_eq!(compose(part, old), format!("{part} | Deploys: #deploys"));
        assert_eq!(rest_of("On call: <@U0>"), "");
    }

    #[test]
    fn a_topic_past_250_characters_is_shortened_never_refused() {
        let part = "On call: <@U1>";
        let long = "x".repeat(400);
        let t = compose(part, &long);
        assert_eq!(t.chars().count(), MAX_CHARS);
        assert!(t.starts_with("On call: <@U1> | xxx"), "{t}");
        assert!(t.ends_with('…'));
        // Even a list of people longer than the limit.
        let many: Vec<String> = (0..40).map(|i| format!("U{i:08}")).collect();
        let t = compose(&on_call_part(&many, None, 0), "rest");
        assert_eq!(t.chars().count(), MAX_CHARS);
    }

    #[test]
    fn the_part_says_until_when() {
        let now = 1_794_214_800_000; // 2026-11-09 09:00 UTC
        let p = on_call_part(&["U1".into(), "U2".into()], Some(now + 8 * 3_600_000), now);
        assert_eq!(p, "On call: <@U1>, <@U2> (until 17:00 UTC)");
        let p = on_call_part(&["U1".into()], Some(now + 3 * 86_400_000), now);
        assert_eq!(p, "On call: <@U1> (until Thu 12 Nov 09:00 UTC)");
        assert_eq!(on_call_part(&[], None, now), "On call: nobody");
    }
}
