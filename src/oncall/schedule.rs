//! Changes at the handoff, not at the next interval: when each group changes next, and the task
//! that syncs it then.
//!
//! Why: the interval sync alone leaves a group stale for up to `oncall.interval_secs` after a
//! handoff, paging whoever just went off call. Every provider that knows shift times says when the
//! current shifts end and the next ones start; each sync run that reads a group records the next
//! such moment ([`next_change`]: a shift's end, or a shift's start minus the group's handover
//! window) in `oncall_schedule`. [`super::sync::HandoffTask`] looks every [`TICK`] for groups whose moment has
//! come and syncs just those, through the same [`super::sync::sync`] as every other run, so it
//! holds the same run lease (one replica writes at a time) and stays diff-only. A later read
//! (the interval's, or any other) replaces the moment, so a provider that moves a shift (an
//! override) moves the scheduled sync. The rows live in the database: a restart or a change of
//! replica keeps the schedule, and the interval task reads every group as soon as a replica takes
//! its lease (at start and on takeover), so a new or changed group gets its moment at once.
//!
//! What it must never do: write anything itself (only the sync writes), hammer a failing provider
//! (a failed group is retried after [`RETRY_MS`], not every tick), or keep a removed group due.

use std::collections::HashSet;
use std::time::Duration;

use tracing::warn;

use super::model::Shift;
use super::report::{Outcome, SyncReport};
use super::settings::OncallSettings;
use crate::clock::Millis;
use crate::state::AppState;

/// How often the handoff task looks for groups whose change has come: the bound on how late a
/// handoff reaches Slack (plus the run itself), well inside the 10 s target.
pub const TICK: Duration = Duration::from_secs(2);
/// A group whose run failed is read again after this long (sooner than the interval, never every
/// tick).
pub const RETRY_MS: Millis = 60_000;
/// How far beyond the handover window the providers are read for the next change, at least: a
/// change further away is seen by a later read (the interval's or the scheduled one's) in time.
const MIN_LOOKAHEAD_MS: Millis = 3_600_000;

/// How far past `now + handover window` a sync reads the providers, to learn the next change,
/// plus `oncall.remind_before_shift_mins`, so a shift is known before its reminder is due.
pub fn lookahead_ms(settings: &OncallSettings) -> Millis {
    (settings.interval_secs as Millis * 1000).max(MIN_LOOKAHEAD_MS) + settings.remind_ms()
}

/// The next moment after `now` at which the people on call (with a handover window of
/// `window_ms`) change: a shift's end, or a shift's start less the window. `None` when no shift
/// says (permanent on-calls, providers without shift times).
pub fn next_change<'a>(
    shifts: impl IntoIterator<Item = &'a Shift>,
    now: Millis,
    window_ms: Millis,
) -> Option<Millis> {
    shifts
        .into_iter()
        .flat_map(|s| [s.end, s.start.map(|st| st - window_ms)])
        .flatten()
        .filter(|t| *t > now)
        .min()
}

/// `2026-11-09 09:00:00 UTC`, for the command line.
pub fn utc(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// Record, for every group a real run read, when it changes next (a failed group: retry soon).
pub async fn record(state: &AppState, report: &SyncReport, now: Millis) {
    let retry = now + RETRY_MS.min(lookahead_ms(&state.settings().oncall));
    for p in &report.groups {
        let due = if p.outcome == Outcome::Failed {
            Some(retry)
        } else {
            match (p.next_change, p.next_reminder) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        };
        let handle = p.handle.to_ascii_lowercase();
        let res = sqlx::query(
            "INSERT INTO oncall_schedule (handle, due_at, read_at) VALUES ($1, $2, $3)
             ON CONFLICT (handle) DO UPDATE SET due_at = excluded.due_at, read_at = excluded.read_at",
        )
        .bind(&handle)
        .bind(due)
        .bind(now)
        .execute(state.db().pool())
        .await;
        if let Err(e) = res {
            warn!(oncall.group = %handle, error = %crate::store::short_db_error(&e), "recording the next change failed; the interval sync still runs");
        }
    }
}

/// The configured groups whose change has come (`due_at <= now`), by handle as configured. Rows
/// of groups no longer configured are dropped.
pub async fn due(state: &AppState, now: Millis) -> Result<Vec<String>, sqlx::Error> {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT handle FROM oncall_schedule WHERE due_at IS NOT NULL AND due_at <= $1",
    )
    .bind(now)
    .fetch_all(state.db().pool())
    .await?;
    let configured: HashSet<String> = state
        .settings()
        .oncall
        .groups
        .iter()
        .map(|g| g.handle.trim_start_matches('@').to_ascii_lowercase())
        .collect();
    let mut out = Vec::new();
    for handle in rows {
        if configured.contains(&handle) {
            out.push(handle);
        } else {
            sqlx::query("DELETE FROM oncall_schedule WHERE handle = $1")
                .bind(&handle)
                .execute(state.db().pool())
                .await?;
        }
    }
    Ok(out)
}

/// When each group changes next, as recorded (`None`: not known, or never read).
pub async fn recorded(state: &AppState, handle: &str) -> Result<Option<Millis>, sqlx::Error> {
    let row: Option<Option<Millis>> =
        sqlx::query_scalar("SELECT due_at FROM oncall_schedule WHERE handle = $1")
            .bind(handle.trim_start_matches('@').to_ascii_lowercase())
            .fetch_optional(state.db().pool())
            .await?;
    Ok(row.flatten())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oncall::model::Person;

    fn shift(start: Option<Millis>, end: Option<Millis>) -> Shift {
        Shift {
            person: Person {
                id: "P1".into(),
                email: None,
                slack_id: None,
                name: None,
            },
            start,
            end,
        }
    }

    #[test]
    fn the_next_change_is_the_first_end_or_start_less_the_window_after_now() {
        let now = 1_000_000;
        // Running until now + 50; the next shift starts at now + 50.
        let s = [
            shift(None, Some(now + 50)),
            shift(Some(now + 50), Some(now + 90)),
        ];
        assert_eq!(next_change(&s, now, 0), Some(now + 50));
        // A 20 ms handover window brings the incoming person in at now + 30.
        assert_eq!(next_change(&s, now, 20), Some(now + 30));
        // Already inside the window: the next change is the outgoing shift's end.
        assert_eq!(next_change(&s, now, 60), Some(now + 50));
        // A change exactly now has happened: the next one counts.
        assert_eq!(next_change(&s, now + 50, 0), Some(now + 90));
        // Permanent on-calls and untimed providers say nothing.
        assert_eq!(next_change(&[shift(None, None)], now, 0), None);
        assert_eq!(next_change(&[], now, 0), None);
    }

    #[test]
    fn the_lookahead_covers_at_least_an_interval_and_an_hour() {
        let mut s = OncallSettings::default();
        assert_eq!(lookahead_ms(&s), 3_600_000);
        s.interval_secs = 7200;
        assert_eq!(lookahead_ms(&s), 7_200_000);
        // Reminders a day ahead: the shifts of the next day are read too.
        s.remind_before_shift_mins = 24 * 60;
        assert_eq!(lookahead_ms(&s), 7_200_000 + 86_400_000);
    }

    #[test]
    fn command_line_times_are_utc() {
        assert_eq!(utc(1_794_214_800_000), "2026-11-09 09:00:00 UTC");
    }
}
