//! The `oncall` configuration section: providers (each with its `base_url` and token), static
//! rotas, and the Slack user groups to keep in step. Read by [`crate::config::Settings::load`] like
//! every other section; checked by [`OncallSettings::problems`], which names every bad key.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate, NaiveTime, Weekday};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::clock::Millis;
use crate::secret::Secret;
use crate::settings_check::ConfigProblem;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OncallSettings {
    /// How often the sync runs inside `serve` (one replica at a time). 0 disables the periodic
    /// sync (the CLI and `/oncall` still work).
    pub interval_secs: u64,
    /// Groups synced at the same time.
    pub concurrency: usize,
    /// How long an email → Slack user ID answer is cached.
    pub lookup_cache_secs: u64,
    /// How long "no Slack user has this email" is cached (shorter: people get added).
    pub missing_cache_secs: u64,
    /// Channel (ID) told about failures and people missing in Slack. Unset: logs only.
    pub ops_channel: Option<String>,
    /// The same problem of the same group is posted to `ops_channel` at most this often.
    pub alert_throttle_secs: u64,
    /// Timeout of one provider request.
    pub request_timeout_ms: u64,
    /// Attempts of one provider request on 429, 5xx, timeouts and transport errors.
    pub max_attempts: u32,
    /// A provider asking to wait longer than this (429 `ratelimit-reset`/`Retry-After`) fails the
    /// group for this run instead of holding the sync; the next run tries again.
    pub max_retry_wait_secs: u64,
    /// The slash command showing who is on call now and next.
    pub command: String,
    /// How far ahead `/oncall` looks for the next shift.
    pub next_horizon_hours: u64,
    /// DM each person this many minutes before their shift starts (group, times in their own
    /// time zone, whom they take over from), once per shift. 0 turns reminders off.
    pub remind_before_shift_mins: u64,
    pub pagerduty: PagerDutySettings,
    pub opsgenie: OpsgenieSettings,
    pub grafana: GrafanaSettings,
    /// Static rotas by name, for teams without a paging product (and for demos).
    pub rotas: BTreeMap<String, RotaSettings>,
    /// The Slack user groups to keep in step.
    pub groups: Vec<GroupSettings>,
}

impl Default for OncallSettings {
    fn default() -> Self {
        Self {
            interval_secs: 300,
            concurrency: 8,
            lookup_cache_secs: 3600,
            missing_cache_secs: 300,
            ops_channel: None,
            alert_throttle_secs: 3600,
            request_timeout_ms: 10_000,
            max_attempts: 4,
            max_retry_wait_secs: 60,
            command: "/oncall".into(),
            next_horizon_hours: 14 * 24,
            remind_before_shift_mins: 0,
            pagerduty: PagerDutySettings::default(),
            opsgenie: OpsgenieSettings::default(),
            grafana: GrafanaSettings::default(),
            rotas: BTreeMap::new(),
            groups: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PagerDutySettings {
    pub base_url: Url,
    /// REST API key (`Authorization: Token token=…`); read-only keys suffice.
    pub token: Secret,
    /// `limit` of one `/oncalls` page (PagerDuty allows at most 100).
    pub page_size: u32,
}

impl Default for PagerDutySettings {
    fn default() -> Self {
        Self {
            base_url: Url::parse("https://api.pagerduty.com").expect("static url"),
            token: Secret::default(),
            page_size: 100,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OpsgenieRegion {
    #[default]
    Us,
    Eu,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct OpsgenieSettings {
    /// `us` (api.opsgenie.com) or `eu` (api.eu.opsgenie.com); `base_url` overrides it.
    pub region: OpsgenieRegion,
    pub base_url: Option<Url>,
    /// API key (`Authorization: GenieKey …`).
    pub token: Secret,
}

impl OpsgenieSettings {
    pub fn url(&self) -> Url {
        self.base_url.clone().unwrap_or_else(|| {
            Url::parse(match self.region {
                OpsgenieRegion::Us => "https://api.opsgenie.com",
                OpsgenieRegion::Eu => "https://api.eu.opsgenie.com",
            })
            .expect("static url")
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct GrafanaSettings {
    /// The OnCall API URL (Grafana Cloud shows it under OnCall → Settings).
    pub base_url: Option<Url>,
    /// API token (sent as `Authorization: <token>`, with no scheme).
    pub token: Secret,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RotaEvery {
    Daily,
    #[default]
    Weekly,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RotaSettings {
    /// In order: emails, or Slack user IDs (`U…`).
    pub people: Vec<String>,
    pub every: RotaEvery,
    /// Handoff time of day, `HH:MM`, in `utc_offset`.
    pub handoff: String,
    /// For weekly rotas: the handoff day (`monday` … `sunday`).
    pub weekday: Option<String>,
    /// The first person's first shift starts at the first handoff on or after this date (`YYYY-MM-DD`).
    pub start: String,
    /// Offset of the handoff time from UTC, `+HH:MM` or `-HH:MM` (no daylight saving).
    pub utc_offset: String,
}

const DAY_MS: i64 = 86_400_000;

/// A rota's schedule as its keys describe it: who takes turns, in order, from the first handoff
/// on. Parsing it is how `oncall.rotas.<name>` is checked; the static provider runs on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotaSchedule {
    pub people: Vec<String>,
    /// The first handoff (UTC ms): `people[0]`'s first shift starts here.
    pub anchor: Millis,
    pub period: Millis,
}

impl RotaSettings {
    /// The schedule these keys describe, or which key is wrong and why.
    pub fn schedule(&self) -> Result<RotaSchedule, String> {
        let r = self;
        let people: Vec<String> = r
            .people
            .iter()
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        if people.is_empty() {
            return Err("people: names nobody".into());
        }
        let time = NaiveTime::parse_from_str(r.handoff.trim(), "%H:%M")
            .map_err(|_| format!("handoff: {:?} is not a time of day HH:MM", r.handoff))?;
        let start = NaiveDate::parse_from_str(r.start.trim(), "%Y-%m-%d")
            .map_err(|_| format!("start: {:?} is not a date YYYY-MM-DD", r.start))?;
        let offset_min = parse_offset(&r.utc_offset)
            .ok_or_else(|| format!("utc_offset: {:?} is not +HH:MM or -HH:MM", r.utc_offset))?;
        let mut day = start;
        let period = match r.every {
            RotaEvery::Daily => DAY_MS,
            RotaEvery::Weekly => {
                if let Some(w) = &r.weekday {
                    let want: Weekday = w
                        .trim()
                        .parse()
                        .map_err(|_| format!("weekday: {w:?} is not a day of the week"))?;
                    while day.weekday() != want {
                        day = day.succ_opt().ok_or("start: out of range")?;
                    }
                }
                7 * DAY_MS
            }
        };
        let local = day.and_time(time).and_utc().timestamp_millis();
        Ok(RotaSchedule {
            people,
            anchor: local - i64::from(offset_min) * 60_000,
            period,
        })
    }
}

pub(crate) fn parse_offset(s: &str) -> Option<i32> {
    let s = s.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("z") || s.eq_ignore_ascii_case("utc") {
        return Some(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 14 && m < 60).then_some(sign * (h * 60 + m))
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Pagerduty,
    Opsgenie,
    Grafana,
    Static,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Pagerduty => "pagerduty",
            ProviderKind::Opsgenie => "opsgenie",
            ProviderKind::Grafana => "grafana",
            ProviderKind::Static => "static",
        }
    }
}

/// Where a group's people come from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SourceSettings {
    pub provider: ProviderKind,
    /// PagerDuty schedule IDs; Opsgenie schedule IDs (or names with `by_name`); Grafana OnCall
    /// schedule IDs.
    #[serde(default)]
    pub schedules: Vec<String>,
    /// PagerDuty escalation policy IDs.
    #[serde(default)]
    pub escalation_policies: Vec<String>,
    /// PagerDuty: only these escalation levels (empty: every level).
    #[serde(default)]
    pub escalation_levels: Vec<u32>,
    /// PagerDuty: also people targeted directly by the escalation policies (permanent on-calls).
    #[serde(default)]
    pub permanent: bool,
    /// Opsgenie: `schedules` are names, not IDs.
    #[serde(default)]
    pub by_name: bool,
    /// Static: the rota's name under `oncall.rotas`.
    #[serde(default)]
    pub rota: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EmptyPolicy {
    /// Leave the group as it is (Slack refuses empty groups).
    #[default]
    Keep,
    /// Put the `fallback` people in.
    Fallback,
}

/// Who a group holds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Members {
    /// Whoever is on call now (plus the next shift within the handover window).
    #[default]
    OnCall,
    /// Everyone with a shift in the next `rotation_days` days: the whole rota, to mention.
    Rotation,
}

const DEFAULT_ROTATION_DAYS: u64 = 28;
/// Shift reminders come at most a week ahead (the providers are read that far ahead for them).
pub const MAX_REMIND_MINS: u64 = 7 * 24 * 60;
/// PagerDuty answers `/oncalls` at most 90 days ahead.
const MAX_ROTATION_DAYS: u64 = 90;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupSettings {
    /// The Slack user group's handle, without `@` (e.g. `platform-oncall`).
    pub handle: String,
    pub sources: Vec<SourceSettings>,
    /// Channel (ID) where shift changes are announced. Unset: no announcement.
    pub channel: Option<String>,
    /// Add the next shift this many minutes before it starts.
    pub handover_minutes: u64,
    /// Placeholder accounts never put in the group: emails, provider user IDs or names.
    pub ignore: Vec<String>,
    /// What to do when nobody (or nobody found in Slack) is on call.
    pub when_empty: EmptyPolicy,
    /// With `when_empty: fallback`: emails or Slack user IDs.
    pub fallback: Vec<String>,
    /// DM people when they come on call (default: yes for `on_call` groups, no for rotations).
    pub dm: Option<bool>,
    /// `on_call` (default) or `rotation`.
    pub members: Members,
    /// For `members: rotation`: how many days ahead a shift makes someone a member.
    pub rotation_days: u64,
    /// Channels (IDs) whose topic starts with who is on call in this group.
    pub topic_channels: Vec<String>,
}

impl Default for GroupSettings {
    fn default() -> Self {
        Self {
            handle: String::new(),
            sources: Vec::new(),
            channel: None,
            handover_minutes: 0,
            ignore: Vec::new(),
            when_empty: EmptyPolicy::default(),
            fallback: Vec::new(),
            dm: None,
            members: Members::default(),
            rotation_days: DEFAULT_ROTATION_DAYS,
            topic_channels: Vec::new(),
        }
    }
}

impl GroupSettings {
    pub fn dm(&self) -> bool {
        self.dm.unwrap_or(self.members == Members::OnCall)
    }

    /// How far past now a shift puts someone in the group: the handover window, or the rotation's
    /// days (ms).
    pub fn window_ms(&self) -> i64 {
        match self.members {
            Members::OnCall => (self.handover_minutes as i64) * 60_000,
            Members::Rotation => (self.rotation_days as i64) * DAY_MS,
        }
    }
}

impl OncallSettings {
    /// How long before a shift starts its person is reminded (ms; 0: off).
    pub fn remind_ms(&self) -> Millis {
        (self.remind_before_shift_mins.min(MAX_REMIND_MINS) as Millis) * 60_000
    }

    pub fn group(&self, handle: &str) -> Option<&GroupSettings> {
        let h = handle.trim_start_matches('@');
        self.groups
            .iter()
            .find(|g| g.handle.eq_ignore_ascii_case(h))
    }

    /// Problems in this section, each naming its key.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut p = self.general_problems();
        let mut seen = std::collections::HashSet::new();
        for (i, g) in self.groups.iter().enumerate() {
            p.extend(self.group_problems(i, g, &mut seen));
        }
        p.sort_by(|a, b| a.key.cmp(&b.key));
        p.dedup();
        p
    }

    /// The section's own keys, the providers' shared ones, and each rota.
    fn general_problems(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        let mut bad = |key: String, message: &str| {
            p.push(ConfigProblem {
                key,
                message: message.into(),
            })
        };
        if self.concurrency == 0 {
            bad("oncall.concurrency".into(), "must be at least 1");
        }
        if self.max_attempts == 0 {
            bad("oncall.max_attempts".into(), "must be at least 1");
        }
        if !self.command.starts_with('/') || self.command.len() < 2 {
            bad(
                "oncall.command".into(),
                "must be a slash command such as /oncall",
            );
        }
        if self.next_horizon_hours == 0 || self.next_horizon_hours > 90 * 24 {
            bad(
                "oncall.next_horizon_hours".into(),
                "must be between 1 and 2160 (PagerDuty answers at most 90 days ahead)",
            );
        }
        if self.remind_before_shift_mins > MAX_REMIND_MINS {
            bad(
                "oncall.remind_before_shift_mins".into(),
                "must be between 0 (off) and 10080 (a week)",
            );
        }
        if self.pagerduty.page_size == 0 || self.pagerduty.page_size > 100 {
            bad(
                "oncall.pagerduty.page_size".into(),
                "must be between 1 and 100 (PagerDuty's maximum)",
            );
        }
        for (name, r) in &self.rotas {
            let key = format!("oncall.rotas.{name}");
            if let Err(e) = r.schedule() {
                bad(key, &e);
            }
        }
        p
    }

    /// One group's keys (`seen` holds the handles of the groups before it) and its sources.
    fn group_problems(
        &self,
        i: usize,
        g: &GroupSettings,
        seen: &mut std::collections::HashSet<String>,
    ) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        let mut bad = |key: String, message: &str| {
            p.push(ConfigProblem {
                key,
                message: message.into(),
            })
        };
        let key = format!("oncall.groups[{i}]");
        let handle = g.handle.trim_start_matches('@');
        if handle.is_empty() {
            bad(
                format!("{key}.handle"),
                "required: the Slack user group's handle",
            );
        } else if !seen.insert(handle.to_ascii_lowercase()) {
            bad(format!("{key}.handle"), "appears in more than one group");
        }
        if g.sources.is_empty() {
            bad(format!("{key}.sources"), "names no source");
        }
        if g.when_empty == EmptyPolicy::Fallback && g.fallback.is_empty() {
            bad(
                format!("{key}.fallback"),
                "required when when_empty is fallback",
            );
        }
        for (j, c) in g.topic_channels.iter().enumerate() {
            if !(c.starts_with('C') || c.starts_with('G')) || c.len() < 2 {
                bad(
                    format!("{key}.topic_channels[{j}]"),
                    "must be a channel ID such as C0123ABCD (not a #name)",
                );
            }
        }
        if g.members == Members::Rotation {
            if g.rotation_days == 0 || g.rotation_days > MAX_ROTATION_DAYS {
                bad(
                    format!("{key}.rotation_days"),
                    "must be between 1 and 90 (PagerDuty answers at most 90 days ahead)",
                );
            }
            if g.sources
                .iter()
                .any(|s| s.provider == ProviderKind::Opsgenie)
            {
                bad(
                    format!("{key}.members"),
                    "rotation groups need shift times; Opsgenie's who-is-on-call gives none (use on_call)",
                );
            }
        }
        for (j, s) in g.sources.iter().enumerate() {
            p.extend(self.source_problems(&format!("{key}.sources[{j}]"), s));
        }
        p
    }

    /// One source (`sk` is its key): what its provider needs, in the source and in the
    /// provider's own section.
    fn source_problems(&self, sk: &str, s: &SourceSettings) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        let mut bad = |key: String, message: &str| {
            p.push(ConfigProblem {
                key,
                message: message.into(),
            })
        };
        match s.provider {
            ProviderKind::Pagerduty => {
                if s.schedules.is_empty() && s.escalation_policies.is_empty() {
                    bad(
                        sk.to_string(),
                        "PagerDuty needs schedules or escalation_policies",
                    );
                }
                if self.pagerduty.token.is_empty() {
                    bad(
                        "oncall.pagerduty.token".into(),
                        "required: a group uses PagerDuty (or oncall.pagerduty.token_file)",
                    );
                }
            }
            ProviderKind::Opsgenie => {
                if s.schedules.is_empty() {
                    bad(sk.to_string(), "Opsgenie needs schedules");
                }
                if self.opsgenie.token.is_empty() {
                    bad(
                        "oncall.opsgenie.token".into(),
                        "required: a group uses Opsgenie (or oncall.opsgenie.token_file)",
                    );
                }
            }
            ProviderKind::Grafana => {
                if s.schedules.is_empty() {
                    bad(sk.to_string(), "Grafana OnCall needs schedules");
                }
                if self.grafana.base_url.is_none() {
                    bad(
                        "oncall.grafana.base_url".into(),
                        "required: a group uses Grafana OnCall",
                    );
                }
                if self.grafana.token.is_empty() {
                    bad(
                        "oncall.grafana.token".into(),
                        "required: a group uses Grafana OnCall (or oncall.grafana.token_file)",
                    );
                }
            }
            ProviderKind::Static => match &s.rota {
                Some(r) if self.rotas.contains_key(r) => {}
                Some(_) => bad(format!("{sk}.rota"), "names no rota under oncall.rotas"),
                None => bad(format!("{sk}.rota"), "required for the static provider"),
            },
        }
        p
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn opsgenie_region_picks_the_host_unless_a_base_url_is_given() {
        let mut o = super::OpsgenieSettings {
            region: super::OpsgenieRegion::Eu,
            ..Default::default()
        };
        assert_eq!(o.url().as_str(), "https://api.eu.opsgenie.com/");
        o.region = super::OpsgenieRegion::Us;
        assert_eq!(o.url().as_str(), "https://api.opsgenie.com/");
        o.base_url = Some("http://127.0.0.1:9/og".parse().unwrap());
        assert_eq!(o.url().as_str(), "http://127.0.0.1:9/og");
    }
}
