//! The `status` configuration section: the public status page's title, address, refresh interval,
//! history, uptime bars and time zone.
//!
//! Owned by the status feature and composed into [`crate::config::Settings`]; it imports only the
//! shared primitives, never a handler or the whole configuration.

use serde::{Deserialize, Serialize};
use url::Url;

use crate::settings_check::ConfigProblem;

/// The public status page (`/status`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatusSettings {
    /// The page's title (and the Atom feed's).
    pub title: String,
    /// Where people reach the page (`https://status.example.com/status`); used for the feed's
    /// links and in Slack messages. Unset: links are relative to the request.
    pub public_url: Option<Url>,
    /// How often each replica reloads its in-memory snapshot from the database.
    pub refresh_interval_ms: u64,
    /// Days of history shown (resolved outages, finished maintenance).
    pub history_days: u32,
    /// Days of uptime history shown per system as day bars, with the period's uptime.
    pub uptime_days: u32,
    /// How times are shown: `UTC` or a fixed offset such as `+01:00` (no daylight saving).
    pub time_zone: String,
    /// The name shown after times (default: the `time_zone` itself, e.g. `UTC` or `UTC+01:00`).
    pub time_zone_label: Option<String>,
    /// The snapshot is called out of date on the page once it is this much older than it
    /// should be (a failed refresh is always called out).
    pub stale_after_secs: u64,
}

impl Default for StatusSettings {
    fn default() -> Self {
        Self {
            title: "Service status".into(),
            public_url: None,
            refresh_interval_ms: 5000,
            history_days: 14,
            uptime_days: 90,
            time_zone: "UTC".into(),
            time_zone_label: None,
            stale_after_secs: 60,
        }
    }
}

impl StatusSettings {
    /// The display offset in seconds east of UTC, if `time_zone` is valid.
    pub fn offset_secs(&self) -> Option<i32> {
        let tz = self.time_zone.trim();
        if tz.eq_ignore_ascii_case("utc") || tz == "Z" {
            return Some(0);
        }
        let tz = tz
            .strip_prefix("UTC")
            .or_else(|| tz.strip_prefix("utc"))
            .unwrap_or(tz);
        let (sign, rest) = match tz.as_bytes().first() {
            Some(b'+') => (1, &tz[1..]),
            Some(b'-') => (-1, &tz[1..]),
            _ => return None,
        };
        let (h, m) = rest.split_once(':')?;
        let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
        ((0..=14).contains(&h) && (0..60).contains(&m) && h.to_string().len() <= 2)
            .then_some(sign * (h * 3600 + m * 60))
    }

    /// How many days of outages and maintenance the snapshot keeps: the longer of the history
    /// and the uptime bars.
    pub fn kept_days(&self) -> u32 {
        self.history_days.max(self.uptime_days)
    }

    /// The name shown after times.
    pub fn zone_label(&self) -> String {
        match &self.time_zone_label {
            Some(l) if !l.trim().is_empty() => l.trim().to_string(),
            _ if self.offset_secs() == Some(0) => "UTC".into(),
            _ => format!("UTC{}", self.time_zone.trim().trim_start_matches("UTC")),
        }
    }

    /// Problems in this section, each naming its key.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        let mut bad = |key: String, message: &str| {
            p.push(ConfigProblem {
                key,
                message: message.into(),
            })
        };
        let st = self;
        if st.refresh_interval_ms < 100 {
            bad("status.refresh_interval_ms".into(), "must be at least 100");
        }
        if !(1..=365).contains(&st.history_days) {
            bad("status.history_days".into(), "must be between 1 and 365");
        }
        if !(1..=365).contains(&st.uptime_days) {
            bad("status.uptime_days".into(), "must be between 1 and 365");
        }
        if st.offset_secs().is_none() {
            bad(
                "status.time_zone".into(),
                "must be UTC or a fixed offset such as +01:00 or -05:30",
            );
        }
        if let Some(u) = &st.public_url
            && !matches!(u.scheme(), "http" | "https")
        {
            bad("status.public_url".into(), "must be an http(s) URL");
        }
        p
    }
}
