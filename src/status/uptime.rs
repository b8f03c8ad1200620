//! Per-system uptime history: the last `status.uptime_days` days as day bars coloured by the
//! worst state of each day, and the period's uptime percentage.
//!
//! Pure computation over the snapshot's outages and maintenance windows, so the page renders it
//! without touching the database. Days are calendar days in `status.time_zone`; today counts up
//! to now. Overlapping outages of one system count each moment once, at the worst state then.
//! The rule, stated on the page: a major outage counts as down, a partial outage as half down,
//! degraded performance and maintenance as up.

use super::cache::OutageEntry;
use super::health::Health;
use crate::maintenance::model::{Maintenance, Phase};

const DAY_MS: i64 = 86_400_000;

/// The rule as the page states it.
pub const RULE: &str = "Uptime counts a major outage as down, a partial outage as half down, and \
                        degraded performance and maintenance as up.";

/// Something that changed a system's state for a while.
#[derive(Debug, Clone, Copy)]
pub enum Cause<'a> {
    Outage(&'a OutageEntry),
    Maintenance(&'a Maintenance),
}

/// One cause's interval, clipped to the period, with the state it puts the system in.
#[derive(Debug, Clone, Copy)]
struct Span<'a> {
    start: i64,
    end: i64,
    health: Health,
    cause: Cause<'a>,
}

/// One day of one system.
#[derive(Debug, Clone)]
pub struct Day<'a> {
    /// The calendar day in the configured zone.
    pub date: chrono::NaiveDate,
    /// The worst state at any moment of the day (operational when nothing happened).
    pub worst: Health,
    /// Milliseconds of the day counted (a whole day, or up to now for today).
    pub counted_ms: i64,
    /// Twice the milliseconds counted as down (a partial outage adds one per ms, a major two),
    /// so half-down time stays an integer.
    pub down2_ms: i64,
    /// The outages and maintenance windows touching the day, in start order.
    pub causes: Vec<Cause<'a>>,
}

impl Day<'_> {
    pub fn percent(&self) -> f64 {
        percent(self.down2_ms, self.counted_ms)
    }
}

/// A system's history over the period, oldest day first.
#[derive(Debug, Clone)]
pub struct Uptime<'a> {
    pub days: Vec<Day<'a>>,
}

impl Uptime<'_> {
    /// The period's uptime percentage (truncated to two decimals, so any downtime shows).
    pub fn percent(&self) -> f64 {
        let down2: i64 = self.days.iter().map(|d| d.down2_ms).sum();
        let counted: i64 = self.days.iter().map(|d| d.counted_ms).sum();
        percent(down2, counted)
    }
}

/// Uptime in percent, truncated to two decimals.
fn percent(down2_ms: i64, counted_ms: i64) -> f64 {
    if counted_ms <= 0 {
        return 100.0;
    }
    let up2 = (2 * counted_ms - down2_ms).max(0) as f64;
    (up2 * 10_000.0 / (2 * counted_ms) as f64).floor() / 100.0
}

/// How a state counts towards downtime, in halves.
fn down_halves(h: Health) -> i64 {
    match h {
        Health::MajorOutage => 2,
        Health::PartialOutage => 1,
        _ => 0,
    }
}

/// The first instant of the oldest day shown: local midnight `days - 1` days before today.
pub fn period_start(now: i64, days: u32, offset_secs: i32) -> i64 {
    let offset = i64::from(offset_secs) * 1000;
    let today = (now + offset).div_euclid(DAY_MS);
    (today - i64::from(days.max(1)) + 1) * DAY_MS - offset
}

/// The history of `system` over the `days` days ending today, from `outages` and `maintenances`.
pub fn compute<'a>(
    system: &str,
    outages: &'a [OutageEntry],
    maintenances: &'a [Maintenance],
    now: i64,
    days: u32,
    offset_secs: i32,
) -> Uptime<'a> {
    let from = period_start(now, days, offset_secs);
    let spans = spans(system, outages, maintenances, from, now);
    let offset = i64::from(offset_secs) * 1000;
    let days = (0..i64::from(days.max(1)))
        .map(|i| {
            let start = from + i * DAY_MS;
            let local_day = (start + offset).div_euclid(DAY_MS);
            let date = chrono::DateTime::from_timestamp(local_day * 86_400, 0)
                .map(|d| d.date_naive())
                .unwrap_or_default();
            day(date, start, (start + DAY_MS).min(now), &spans)
        })
        .collect();
    Uptime { days }
}

/// The causes affecting `system`, clipped to `[from, now)`; an open outage lasts until now.
fn spans<'a>(
    system: &str,
    outages: &'a [OutageEntry],
    maintenances: &'a [Maintenance],
    from: i64,
    now: i64,
) -> Vec<Span<'a>> {
    let outage_spans = outages
        .iter()
        .filter(|o| o.systems.iter().any(|s| s == system))
        .map(|o| Span {
            start: o.started_at,
            end: o.resolved_at.unwrap_or(now),
            health: Health::from_severity(&o.severity),
            cause: Cause::Outage(o),
        });
    let maintenance_spans = maintenances
        .iter()
        .filter(|m| m.phase(now) != Phase::Canceled && m.systems.iter().any(|s| s == system))
        .map(|m| Span {
            start: m.starts_at,
            end: m.ends_at,
            health: Health::Maintenance,
            cause: Cause::Maintenance(m),
        });
    let mut spans: Vec<Span> = outage_spans
        .chain(maintenance_spans)
        .map(|s| Span {
            start: s.start.max(from),
            end: s.end.min(now),
            ..s
        })
        .filter(|s| s.end > s.start)
        .collect();
    spans.sort_by_key(|s| s.start);
    spans
}

/// One day `[start, end)`: cut it where any span begins or ends, and take the worst state of
/// each piece, so overlapping spans count once.
fn day<'a>(date: chrono::NaiveDate, start: i64, end: i64, spans: &[Span<'a>]) -> Day<'a> {
    let mut day = Day {
        date,
        worst: Health::Operational,
        counted_ms: (end - start).max(0),
        down2_ms: 0,
        causes: Vec::new(),
    };
    let touching: Vec<&Span> = spans
        .iter()
        .filter(|s| s.start < end && s.end > start)
        .collect();
    let mut cuts: Vec<i64> = vec![start, end];
    for s in &touching {
        cuts.extend([s.start.clamp(start, end), s.end.clamp(start, end)]);
        day.causes.push(s.cause);
    }
    cuts.sort_unstable();
    cuts.dedup();
    for w in cuts.windows(2) {
        let (a, b) = (w[0], w[1]);
        let state = touching
            .iter()
            .filter(|s| s.start <= a && s.end >= b)
            .map(|s| s.health)
            .max()
            .unwrap_or(Health::Operational);
        day.worst = day.worst.max(state);
        day.down2_ms += down_halves(state) * (b - a);
    }
    day
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    const HOUR: i64 = 60 * MIN;
    /// 2026-12-07T12:00:00Z.
    const NOW: i64 = 1_796_644_800_000;

    fn outage(id: &str, severity: &str, start: i64, end: Option<i64>) -> OutageEntry {
        OutageEntry {
            id: id.into(),
            summary: format!("outage {id}"),
            systems: vec!["api".into()],
            severity: severity.into(),
            state: if end.is_some() { "resolved" } else { "open" }.into(),
            started_at: start,
            resolved_at: end,
            eta: "2h".into(),
            updated_at: end.unwrap_or(start),
            latest_update: None,
        }
    }

    fn window(id: &str, start: i64, end: i64, state: &str) -> Maintenance {
        Maintenance {
            id: id.into(),
            title: format!("window {id}"),
            summary: String::new(),
            systems: vec!["api".into()],
            starts_at: start,
            ends_at: end,
            public: true,
            state: state.into(),
            created_by: "api".into(),
            canceled_at: None,
            announced_start: true,
            announced_end: true,
            channel: None,
            message_ts: None,
            version: 1,
            created_at: start,
            updated_at: start,
        }
    }

    fn midnight_utc(days_ago: i64) -> i64 {
        (NOW.div_euclid(DAY_MS) - days_ago) * DAY_MS
    }

    #[test]
    fn now_is_the_date_the_tests_say() {
        let d = chrono::DateTime::from_timestamp_millis(NOW).unwrap();
        assert_eq!(d.to_rfc3339(), "2026-12-07T12:00:00+00:00");
    }

    #[test]
    fn a_quiet_period_is_all_operational_and_one_hundred_percent() {
        let u = compute("api", &[], &[], NOW, 90, 0);
        assert_eq!(u.days.len(), 90);
        assert!(u.days.iter().all(|d| d.worst == Health::Operational));
        assert_eq!(u.percent(), 100.0);
        assert_eq!(u.days[89].date.to_string(), "2026-12-07");
        assert_eq!(u.days[0].date.to_string(), "2026-09-09");
        assert_eq!(u.days[89].counted_ms, 12 * HOUR, "today counts up to now");
    }

    #[test]
    fn an_outage_across_midnight_colours_both_days_and_counts_each_part_on_its_day() {
        // 23:00 two days ago to 01:00 yesterday (UTC), critical.
        let start = midnight_utc(1) - HOUR;
        let o = [outage("x", "critical", start, Some(start + 2 * HOUR))];
        let u = compute("api", &o, &[], NOW, 3, 0);
        assert_eq!(u.days[0].worst, Health::MajorOutage);
        assert_eq!(u.days[1].worst, Health::MajorOutage);
        assert_eq!(u.days[2].worst, Health::Operational);
        assert_eq!(u.days[0].down2_ms, 2 * HOUR);
        assert_eq!(u.days[1].down2_ms, 2 * HOUR);
        // 2 h down out of 2.5 days.
        let expected = 100.0 * (1.0 - 2.0 / 60.0);
        assert!((u.percent() - expected).abs() < 0.01, "{}", u.percent());
    }

    #[test]
    fn day_boundaries_follow_the_configured_time_zone() {
        // 23:30 to 23:50 UTC two days ago is 00:30–00:50 the next day at +01:00.
        let start = midnight_utc(1) - 30 * MIN;
        let o = [outage("x", "major", start, Some(start + 20 * MIN))];
        let utc = compute("api", &o, &[], NOW, 3, 0);
        assert_eq!(utc.days[0].worst, Health::PartialOutage);
        assert_eq!(utc.days[1].worst, Health::Operational);
        let cet = compute("api", &o, &[], NOW, 3, 3600);
        assert_eq!(cet.days[0].worst, Health::Operational);
        assert_eq!(cet.days[1].worst, Health::PartialOutage);
        assert_eq!(cet.days[1].date.to_string(), "2026-12-06");
        // At -05:00 the same minutes are 18:30 on 2026-12-05, the oldest of the three days.
        let est = compute("api", &o, &[], NOW, 3, -5 * 3600);
        assert_eq!(est.days[0].date.to_string(), "2026-12-05");
        assert_eq!(est.days[0].worst, Health::PartialOutage);
        assert_eq!(est.days[1].worst, Health::Operational);
    }

    #[test]
    fn overlapping_outages_count_each_moment_once_at_the_worst_state() {
        // Yesterday: partial 10:00–14:00, major 12:00–13:00 inside it, degraded 09:00–15:00.
        let base = midnight_utc(1);
        let o = [
            outage("p", "major", base + 10 * HOUR, Some(base + 14 * HOUR)),
            outage("m", "critical", base + 12 * HOUR, Some(base + 13 * HOUR)),
            outage("d", "minor", base + 9 * HOUR, Some(base + 15 * HOUR)),
        ];
        let u = compute("api", &o, &[], NOW, 2, 0);
        let y = &u.days[0];
        assert_eq!(y.worst, Health::MajorOutage);
        // Major 1 h (2 halves each) + partial 3 h (1 half each) = 5 h in halves.
        assert_eq!(y.down2_ms, 5 * HOUR);
        assert_eq!(y.causes.len(), 3);
        assert!((y.percent() - (100.0 - 100.0 * 2.5 / 24.0)).abs() < 0.01);
    }

    #[test]
    fn maintenance_and_degraded_count_as_up_but_colour_the_day() {
        let base = midnight_utc(1);
        let m = [
            window("w", base + HOUR, base + 3 * HOUR, "scheduled"),
            window("c", base + 5 * HOUR, base + 6 * HOUR, "canceled"),
        ];
        let u = compute("api", &[], &m, NOW, 2, 0);
        assert_eq!(u.days[0].worst, Health::Maintenance);
        assert_eq!(
            u.days[0].causes.len(),
            1,
            "a canceled window is not history"
        );
        assert_eq!(u.percent(), 100.0);
        let o = [outage("d", "minor", base, Some(base + HOUR))];
        let u = compute("api", &o, &m, NOW, 2, 0);
        assert_eq!(
            u.days[0].worst,
            Health::Degraded,
            "degraded is worse than maintenance"
        );
        assert_eq!(u.percent(), 100.0);
    }

    #[test]
    fn an_open_outage_counts_until_now_and_other_systems_are_untouched() {
        let o = [outage("x", "critical", NOW - 2 * HOUR, None)];
        let u = compute("api", &o, &[], NOW, 1, 0);
        assert_eq!(u.days[0].down2_ms, 4 * HOUR);
        // 2 h down out of the 12 h of today so far.
        assert!((u.percent() - 83.33).abs() < 0.001, "{}", u.percent());
        let other = compute("db", &o, &[], NOW, 1, 0);
        assert_eq!(other.percent(), 100.0);
    }

    #[test]
    fn history_before_the_period_is_cut_off_and_percentages_truncate() {
        let start = midnight_utc(95);
        let o = [outage(
            "old",
            "critical",
            start,
            Some(midnight_utc(89) + MIN),
        )];
        let u = compute("api", &o, &[], NOW, 90, 0);
        // Only the minute inside the period counts: 99.9992 % shows as 99.99 %, not 100 %.
        assert_eq!(u.days[0].down2_ms, 2 * MIN);
        assert_eq!(u.days[0].worst, Health::MajorOutage);
        assert_eq!(u.percent(), 99.99);
    }
}
