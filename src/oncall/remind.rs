//! Shift reminders: a DM to each person `oncall.remind_before_shift_mins` before their shift
//! starts, naming the group, the shift's times in their own Slack time zone and whom they take
//! over from.
//!
//! How: every sync run that reads a group (the interval's, the handoff task's, the CLI's) records
//! the upcoming shifts it read in `oncall_shift_reminders`, replacing what the previous read
//! recorded, and queues the reminders that are due (`start - remind <= now < start`). Each such
//! run also tells the schedule ([`super::schedule`]) when the group's next reminder is due, so the
//! handoff task reads the group again at that moment: a reminder always comes from a fresh read.
//! A reminder is queued by one conditional UPDATE (`reminded_at IS NULL`) in the transaction that
//! inserts its job (with a dedup key per group, person and start), so it is sent once per shift
//! across replicas and restarts, however long finished jobs are kept. A shift that moves has a
//! new start, hence a new row and a new reminder; a shift the providers no longer return loses
//! its row, so it is never reminded, and a reminder queued before the cancellation is dropped by
//! the job, which checks the row is still there.
//!
//! What it must never do: remind a shift that merely continues one the person is already on
//! (the providers split shifts at layer and level boundaries), remind after the shift started,
//! or say anything the providers did not say.

use anyhow::Context;
use async_trait::async_trait;
use chrono::TimeZone;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::clients::Oncall;
use super::model::{Person, Shift};
use super::settings::GroupSettings;
use crate::clock::Millis;
use crate::jobs::{Job, JobError, NewJob};
use crate::mrkdwn;
use crate::registry::JobHandler;
use crate::slack::api::Message;
use crate::slack::blocks::mention;
use crate::slack::mrkdwn::Mrkdwn;
use crate::state::AppState;

/// A shift worth a reminder, with who is on call just before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upcoming<'a> {
    pub person: &'a Person,
    pub start: Millis,
    pub end: Option<Millis>,
    /// On call just before the start and not after it: the people this shift takes over from.
    pub takes_over_from: Vec<&'a Person>,
    /// On call just before the start and after it too (when nobody goes off).
    pub joining: Vec<&'a Person>,
}

fn active(s: &Shift, t: Millis) -> bool {
    s.start.is_none_or(|st| st <= t) && s.end.is_none_or(|en| en > t)
}

fn push_distinct<'a>(v: &mut Vec<&'a Person>, p: &'a Person) {
    if !v.contains(&p) {
        v.push(p);
    }
}

/// The shifts starting after `now` that start someone's time on call: a shift the same person is
/// already on call at its start (a continuation split by the provider) is not one. One per person
/// and start (escalation levels repeat shifts), with the latest end.
pub fn upcoming<'a>(shifts: &[&'a Shift], now: Millis) -> Vec<Upcoming<'a>> {
    let mut out: Vec<Upcoming<'a>> = Vec::new();
    for s in shifts {
        let Some(start) = s.start.filter(|st| *st > now) else {
            continue;
        };
        if shifts
            .iter()
            .any(|o| o.person == s.person && active(o, start - 1))
        {
            continue;
        }
        if let Some(u) = out
            .iter_mut()
            .find(|u| *u.person == s.person && u.start == start)
        {
            u.end = match (u.end, s.end) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
            continue;
        }
        let mut takes_over_from = Vec::new();
        let mut joining = Vec::new();
        for o in shifts.iter().filter(|o| o.person != s.person) {
            if !active(o, start - 1) {
                continue;
            }
            let stays = shifts
                .iter()
                .any(|x| x.person == o.person && active(x, start));
            if stays {
                push_distinct(&mut joining, &o.person);
            } else {
                push_distinct(&mut takes_over_from, &o.person);
            }
        }
        out.push(Upcoming {
            person: &s.person,
            start,
            end: s.end,
            takes_over_from,
            joining,
        });
    }
    out.sort_by_key(|u| u.start);
    out
}

/// When the next of these reminders is due after `now`.
pub fn next_due(upcoming: &[Upcoming<'_>], now: Millis, remind_ms: Millis) -> Option<Millis> {
    upcoming
        .iter()
        .map(|u| u.start - remind_ms)
        .filter(|t| *t > now)
        .min()
}

/// What the reminder job carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reminder {
    pub handle: String,
    pub user: String,
    pub start: Millis,
    pub end: Option<Millis>,
    /// Slack IDs of the people the shift takes over from.
    pub from: Vec<String>,
    /// Slack IDs of the people on call with them at the start (when nobody goes off).
    pub joining: Vec<String>,
}

/// The shift's times in `tz` (an IANA name from `users.info`; UTC when unknown):
/// `Mon 9 Nov 10:00–18:00 (Europe/Berlin)`.
pub fn shift_times(start: Millis, end: Option<Millis>, tz: Option<&str>) -> String {
    let zone: chrono_tz::Tz = tz
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(chrono_tz::UTC);
    let at = |ms: Millis| zone.timestamp_millis_opt(ms).single();
    let Some(s) = at(start) else {
        return super::schedule::utc(start);
    };
    let label = zone.name();
    match end.and_then(at) {
        Some(e) if e.date_naive() == s.date_naive() => format!(
            "{} {}–{} ({label})",
            s.format("%a %-d %b"),
            s.format("%H:%M"),
            e.format("%H:%M")
        ),
        Some(e) => format!(
            "{} – {} ({label})",
            s.format("%a %-d %b %H:%M"),
            e.format("%a %-d %b %H:%M")
        ),
        None => format!("from {} ({label})", s.format("%a %-d %b %H:%M")),
    }
}

fn people(ids: &[String]) -> Mrkdwn {
    let m: Vec<Mrkdwn> = ids.iter().map(|u| mention(u)).collect();
    match m.len() {
        0 => Mrkdwn::default(),
        1 => m[0].clone(),
        n => mrkdwn!("{} and {}", Mrkdwn::join(&m[..n - 1], ", "), &m[n - 1]),
    }
}

/// The DM's text.
pub fn reminder_text(r: &Reminder, tz: Option<&str>) -> Mrkdwn {
    let whom = if !r.from.is_empty() {
        mrkdwn!(" You take over from {}.", people(&r.from))
    } else if !r.joining.is_empty() {
        mrkdwn!(" You join {}, who stay on call.", people(&r.joining))
    } else {
        Mrkdwn::from(" Nobody is on call right before you.")
    };
    mrkdwn!(
        ":alarm_clock: Your on-call shift for *@{}* is coming up: {}.{}",
        r.handle,
        shift_times(r.start, r.end, tz),
        whom,
    )
}

/// The Slack ID of a person ([`Oncall::person_id`]).
async fn slack_id(state: &AppState, svc: &Oncall, p: &Person) -> anyhow::Result<Option<String>> {
    svc.person_id(state.slack(), p)
        .await
        .map_err(|e| anyhow::anyhow!("looking {} up in Slack failed: {e}", p.label()))
}

async fn ids(state: &AppState, svc: &Oncall, people: &[&Person]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for p in people {
        if let Some(id) = slack_id(state, svc, p).await?
            && !out.contains(&id)
        {
            out.push(id);
        }
    }
    Ok(out)
}

/// Record the group's upcoming shifts as this read returned them (`shifts`: placeholders left
/// out) and queue the reminders that are due. Returns when the group's next reminder is due.
/// Does nothing when reminders are off, or the group DMs nobody (`dm: false`).
pub async fn record(
    state: &AppState,
    svc: &Oncall,
    g: &GroupSettings,
    shifts: &[&Shift],
    now: Millis,
) -> anyhow::Result<Option<Millis>> {
    let remind_ms = state.settings().oncall.remind_ms();
    // A group whose people are not DMed when they come on call (a rotation group, by default)
    // sends no reminders either: its shifts are usually another group's too.
    if remind_ms == 0 || !g.dm() {
        return Ok(None);
    }
    let handle = g.handle.trim_start_matches('@').to_ascii_lowercase();
    let ups = upcoming(shifts, now);
    let next = next_due(&ups, now, remind_ms);
    let mut rows = Vec::new();
    for u in &ups {
        // Someone who is not in Slack cannot be reminded (the sync reports them as missing).
        let Some(user) = slack_id(state, svc, u.person).await? else {
            continue;
        };
        let due = u.start - remind_ms <= now;
        let (from, joining) = if due {
            (
                ids(state, svc, &u.takes_over_from).await?,
                ids(state, svc, &u.joining).await?,
            )
        } else {
            (vec![], vec![])
        };
        rows.push((
            due,
            Reminder {
                handle: handle.clone(),
                user,
                start: u.start,
                end: u.end,
                from,
                joining,
            },
        ));
    }

    let read_id = uuid::Uuid::new_v4().simple().to_string();
    let mut tx = state.db().pool().begin().await?;
    for (_, r) in &rows {
        sqlx::query(
            "INSERT INTO oncall_shift_reminders (handle, user_id, starts_at, ends_at, read_id, read_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (handle, user_id, starts_at) DO UPDATE
             SET ends_at = excluded.ends_at, read_id = excluded.read_id, read_at = excluded.read_at",
        )
        .bind(&handle)
        .bind(&r.user)
        .bind(r.start)
        .bind(r.end)
        .bind(&read_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    // Shifts this read did not return: cancelled, moved (a new start), or started.
    sqlx::query("DELETE FROM oncall_shift_reminders WHERE handle = $1 AND read_id <> $2")
        .bind(&handle)
        .bind(&read_id)
        .execute(&mut *tx)
        .await?;
    let mut queued = 0;
    for (_, r) in rows.iter().filter(|(due, _)| *due) {
        let won = sqlx::query(
            "UPDATE oncall_shift_reminders SET reminded_at = $1
             WHERE handle = $2 AND user_id = $3 AND starts_at = $4 AND reminded_at IS NULL",
        )
        .bind(now)
        .bind(&handle)
        .bind(&r.user)
        .bind(r.start)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if won {
            state
                .jobs()
                .insert(
                    &mut *tx,
                    NewJob::new(super::JOB_REMIND, r).dedup(format!(
                        "{}:{handle}:{}:{}",
                        super::JOB_REMIND,
                        r.user,
                        r.start
                    )),
                )
                .await?;
            queued += 1;
        }
    }
    tx.commit().await.context("recording the shift reminders")?;
    if queued > 0 {
        info!(oncall.group = %handle, reminders = queued, "shift reminders queued");
        state.jobs().wake();
    }
    Ok(next)
}

/// Sends one shift reminder, unless the shift moved, was cancelled or has started since.
pub struct ReminderJob;

#[async_trait]
impl JobHandler for ReminderJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let r: Reminder = job.payload().map_err(JobError::Permanent)?;
        let still: Option<i64> = sqlx::query_scalar(
            "SELECT starts_at FROM oncall_shift_reminders
             WHERE handle = $1 AND user_id = $2 AND starts_at = $3",
        )
        .bind(&r.handle)
        .bind(&r.user)
        .bind(r.start)
        .fetch_optional(state.db().pool())
        .await
        .map_err(|e| JobError::from(anyhow::anyhow!(crate::store::short_db_error(&e))))?;
        if still.is_none() {
            info!(oncall.group = %r.handle, "shift moved or cancelled since its reminder was queued; not reminded");
            return Ok(());
        }
        if state.now_ms() >= r.start {
            info!(oncall.group = %r.handle, "shift started before its reminder could be sent; not reminded");
            return Ok(());
        }
        let tz = match state.authz().identity(&r.user).await {
            Ok(who) => who.tz.clone(),
            Err(e) => {
                // The reminder in UTC beats no reminder; the time zone is named either way.
                warn!(error = %e, "users.info failed; the shift reminder shows UTC");
                None
            }
        };
        let dm = state.slack().open_dm(&r.user).await?;
        state
            .slack()
            .post_message(&Message::text(dm, reminder_text(&r, tz.as_deref())))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Millis = 3_600_000;

    fn person(id: &str) -> Person {
        Person {
            id: id.into(),
            email: Some(format!("{id}@example.com")),
            slack_id: None,
            name: None,
        }
    }

    fn shift(id: &str, start: Option<Millis>, end: Option<Millis>) -> Shift {
        Shift {
            person: person(id),
            start,
            end,
        }
    }

    #[test]
    fn a_shift_takes_over_from_whoever_goes_off_at_its_start() {
        let now = 100 * H;
        let s = [
            shift("bob", Some(now - H), Some(now + 2 * H)),
            shift("carol", Some(now + 2 * H), Some(now + 10 * H)),
            // Carol's shift split at a layer boundary: no second reminder.
            shift("carol", Some(now + 10 * H), Some(now + 12 * H)),
            // The same shift at a second escalation level.
            shift("carol", Some(now + 2 * H), Some(now + 10 * H)),
        ];
        let refs: Vec<&Shift> = s.iter().collect();
        let u = upcoming(&refs, now);
        assert_eq!(u.len(), 1, "{u:?}");
        assert_eq!(u[0].person.id, "carol");
        assert_eq!(u[0].start, now + 2 * H);
        assert_eq!(u[0].end, Some(now + 10 * H));
        assert_eq!(u[0].takes_over_from, [&s[0].person]);
        assert!(u[0].joining.is_empty());
        assert_eq!(next_due(&u, now, H), Some(now + H));
        // Once due, the next reminder is not this one.
        assert_eq!(next_due(&u, now + H, H), None);
    }

    #[test]
    fn someone_joining_a_running_shift_joins_its_people() {
        let now = 0;
        let s = [
            shift("bob", None, None),
            shift("carol", Some(5 * H), Some(9 * H)),
        ];
        let refs: Vec<&Shift> = s.iter().collect();
        let u = upcoming(&refs, now);
        assert_eq!(u.len(), 1);
        assert!(u[0].takes_over_from.is_empty());
        assert_eq!(u[0].joining, [&s[0].person]);
    }

    #[test]
    fn shift_times_are_in_the_persons_time_zone() {
        // 2026-11-09 09:00 UTC is 10:00 in Berlin (CET).
        let start = 1_794_214_800_000;
        assert_eq!(
            shift_times(start, Some(start + 8 * H), Some("Europe/Berlin")),
            "Mon 9 Nov 10:00–18:00 (Europe/Berlin)"
        );
        assert_eq!(
            shift_times(start, Some(start + 24 * H), Some("America/New_York")),
            "Mon 9 Nov 04:00 – Tue 10 Nov 04:00 (America/New_York)"
        );
        // Unknown zones fall back to UTC, and say so.
        assert_eq!(
            shift_times(start, None, Some("Mars/Olympus")),
            "from Mon 9 Nov 09:00 (UTC)"
        );
        // Daylight saving: 2026-07-01 09:00 UTC is 11:00 in Berlin (CEST).
        assert_eq!(
            shift_times(
                1_782_896_400_000,
                Some(1_782_896_400_000 + H),
                Some("Europe/Berlin")
            ),
            "Wed 1 Jul 11:00–12:00 (Europe/Berlin)"
        );
    }

    #[test]
    fn the_reminder_names_the_group_and_whom_it_takes_over_from() {
        let r = Reminder {
            handle: "platform-oncall".into(),
            user: "U2".into(),
            start: 1_794_214_800_000,
            end: Some(1_794_214_800_000 + 8 * H),
            from: vec!["U1".into()],
            joining: vec![],
        };
        assert_eq!(
            reminder_text(&r, Some("UTC")),
            ":alarm_clock: Your on-call shift for *@platform-oncall* is coming up: Mon 9 Nov 09:00–17:00 (UTC). You take over from <@U1>."
        );
    }
}
