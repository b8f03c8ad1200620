//! Static rotas from the configuration: people take turns, handing off daily or weekly at a fixed
//! time. For teams without a paging product, and for demos. Pure arithmetic on the clock the sync
//! is given, so handoffs are tested with an injected clock.
//!
//! Times are a fixed offset from UTC (`utc_offset`); daylight saving is not applied.

use async_trait::async_trait;

use super::{Provider, ProviderError};
use crate::clock::Millis;
use crate::oncall::model::{Person, Shift};
use crate::oncall::settings::{RotaSchedule, RotaSettings, SourceSettings};

#[derive(Debug, Clone)]
pub struct Rota {
    people: Vec<String>,
    /// The first handoff (UTC ms): `people[0]`'s first shift starts here.
    anchor: Millis,
    period: Millis,
}

impl Rota {
    pub fn parse(r: &RotaSettings) -> Result<Rota, String> {
        let RotaSchedule {
            people,
            anchor,
            period,
        } = r.schedule()?;
        Ok(Rota {
            people,
            anchor,
            period,
        })
    }

    fn index(&self, at: Millis) -> i64 {
        (at - self.anchor).div_euclid(self.period)
    }

    fn shift(&self, k: i64) -> Shift {
        let n = self.people.len() as i64;
        let who = &self.people[k.rem_euclid(n) as usize];
        let start = self.anchor + k * self.period;
        Shift {
            person: person(who),
            start: Some(start),
            end: Some(start + self.period),
        }
    }

    /// Who is on call at `at`.
    pub fn at(&self, at: Millis) -> Shift {
        self.shift(self.index(at))
    }
}

fn person(entry: &str) -> Person {
    let slack = !entry.contains('@')
        && (entry.starts_with('U') || entry.starts_with('W'))
        && entry
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    Person {
        id: entry.to_string(),
        email: entry.contains('@').then(|| entry.to_string()),
        slack_id: slack.then(|| entry.to_string()),
        name: None,
    }
}

#[async_trait]
impl Provider for Rota {
    async fn shifts(
        &self,
        _source: &SourceSettings,
        from: Millis,
        until: Millis,
    ) -> Result<Vec<Shift>, ProviderError> {
        let (a, b) = (self.index(from), self.index(until.max(from)));
        // A window of years would be a configuration mistake; bound the work anyway.
        Ok((a..=b.min(a + 1000)).map(|k| self.shift(k)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oncall::settings::{RotaEvery, parse_offset};

    fn weekly() -> Rota {
        Rota::parse(&RotaSettings {
            people: vec!["alice@example.com".into(), "U0BOB".into()],
            every: RotaEvery::Weekly,
            handoff: "09:00".into(),
            weekday: Some("monday".into()),
            // A Sunday: the first handoff is Monday 2026-11-02 09:00 at +01:00, i.e. 08:00 UTC.
            start: "2026-11-01".into(),
            utc_offset: "+01:00".into(),
        })
        .expect("valid rota")
    }

    fn utc(s: &str) -> Millis {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn weekly_rota_hands_off_on_the_weekday_at_the_local_time() {
        let r = weekly();
        assert_eq!(r.anchor, utc("2026-11-02T08:00:00Z"));
        let s = r.at(utc("2026-11-02T08:00:00Z"));
        assert_eq!(s.person.email.as_deref(), Some("alice@example.com"));
        let s = r.at(utc("2026-11-09T07:59:59Z"));
        assert_eq!(s.person.email.as_deref(), Some("alice@example.com"));
        let s = r.at(utc("2026-11-09T08:00:00Z"));
        assert_eq!(s.person.slack_id.as_deref(), Some("U0BOB"));
        assert_eq!(s.end, Some(utc("2026-11-16T08:00:00Z")));
        // Before the anchor the rota runs backwards.
        let s = r.at(utc("2026-11-01T12:00:00Z"));
        assert_eq!(s.person.slack_id.as_deref(), Some("U0BOB"));
        // Wraps around.
        let s = r.at(utc("2026-11-16T08:00:00Z"));
        assert_eq!(s.person.email.as_deref(), Some("alice@example.com"));
    }

    #[test]
    fn daily_rota_and_bad_input() {
        let r = Rota::parse(&RotaSettings {
            people: vec!["a@x".into(), "b@x".into(), "c@x".into()],
            every: RotaEvery::Daily,
            handoff: "17:30".into(),
            weekday: None,
            start: "2026-11-20".into(),
            utc_offset: String::new(),
        })
        .unwrap();
        assert_eq!(r.at(utc("2026-11-21T17:29:00Z")).person.id, "a@x");
        assert_eq!(r.at(utc("2026-11-21T17:30:00Z")).person.id, "b@x");
        assert_eq!(r.at(utc("2026-11-22T17:30:00Z")).person.id, "c@x");
        let bad = RotaSettings {
            people: vec![],
            handoff: "25:00".into(),
            ..Default::default()
        };
        assert!(Rota::parse(&bad).is_err());
        assert_eq!(parse_offset("-05:30"), Some(-330));
        assert_eq!(parse_offset("0530"), None);
    }
}
