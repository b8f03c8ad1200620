//! The `status` configuration section: the public status page's title, address, refresh interval,
//! history, uptime bars and time zone, and its email subscriptions (`status.smtp`,
//! `status.subscriptions`).
//!
//! Owned by the status feature and composed into [`crate::config::Settings`]; it imports only the
//! shared primitives, never a handler or the whole configuration.

use serde::{Deserialize, Serialize};
use url::Url;

use crate::secret::Secret;
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
    /// The mail server email subscriptions are sent through; subscriptions are off (no form on
    /// the page) while `status.smtp.url` is unset.
    pub smtp: SmtpSettings,
    /// Email subscriptions: the key of their links and forms, and the abuse limits.
    pub subscriptions: SubscriptionSettings,
}

/// `status.smtp`: where subscription emails are sent. Its `Debug` never shows credentials.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpSettings {
    /// `smtps://host:465` (TLS from the start), `smtp://host:587?tls=required` (STARTTLS) or
    /// `smtp://host:25` (plain, a local relay only). May carry `user:password@`, but the separate
    /// `username` and `password` (as `password_file`) are better; it is a secret either way.
    pub url: Secret,
    /// The sender, `Status <status@example.com>` or `status@example.com`.
    pub from: String,
    /// SMTP AUTH user (overrides one in the URL).
    pub username: Secret,
    /// SMTP AUTH password (usually given as `password_file`).
    pub password: Secret,
    /// Time allowed for one delivery (connect, TLS, the whole SMTP dialogue).
    pub timeout_ms: u64,
    /// Attempts per email before it is kept as failed; transient failures (4xx, connection
    /// errors, timeouts) are retried with the job queue's backoff, permanent ones (5xx) are not.
    pub max_attempts: u32,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        Self {
            url: Secret::default(),
            from: String::new(),
            username: Secret::default(),
            password: Secret::default(),
            timeout_ms: 15_000,
            max_attempts: 10,
        }
    }
}

impl SmtpSettings {
    /// Whether email subscriptions are on.
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }

    /// The URL without credentials, for display (`smtps://smtp.example.com:465`).
    pub fn display_url(&self) -> String {
        match Url::parse(self.url.expose().trim()) {
            Ok(u) => {
                let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
                let tls = u
                    .query_pairs()
                    .find(|(k, _)| k == "tls")
                    .map(|(_, v)| format!("?tls={v}"))
                    .unwrap_or_default();
                format!("{}://{}{port}{tls}", u.scheme(), u.host_str().unwrap_or(""))
            }
            Err(_) => self.url.to_string(),
        }
    }
}

/// `status.subscriptions`: the email subscriptions' key and limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubscriptionSettings {
    /// Key (at least 32 characters, usually `secret_file`) that signs the form's CSRF tokens and
    /// the unsubscribe links. Required with `status.smtp.url`. Changing it invalidates the
    /// unsubscribe links of emails already sent (the confirmation links keep working).
    pub secret: Secret,
    /// How long a confirmation link works.
    pub confirm_ttl_hours: u32,
    /// At most this many emails to one address in 24 hours, confirmations included; more are
    /// skipped (and counted in `slackops_status_emails_total{result="limited"}`).
    pub max_emails_per_address_per_day: u32,
    /// At most this many subscribe requests from one client address per hour; more get 429.
    pub max_requests_per_client_per_hour: u32,
    /// Proxies in front of the service that append to `X-Forwarded-For` (an ingress: 1). The
    /// client address is the entry that many places from the right; 0 uses the connection's
    /// peer address and ignores the header (which a client can forge).
    pub trusted_proxy_hops: u32,
    /// How long a form's CSRF token is accepted after the page was served.
    pub form_ttl_mins: u32,
}

impl Default for SubscriptionSettings {
    fn default() -> Self {
        Self {
            secret: Secret::default(),
            confirm_ttl_hours: 48,
            max_emails_per_address_per_day: 5,
            max_requests_per_client_per_hour: 20,
            trusted_proxy_hops: 0,
            form_ttl_mins: 120,
        }
    }
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
            smtp: SmtpSettings::default(),
            subscriptions: SubscriptionSettings::default(),
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
        if st.smtp.enabled() {
            match Url::parse(st.smtp.url.expose().trim()) {
                Ok(u) if !matches!(u.scheme(), "smtp" | "smtps") => bad(
                    "status.smtp.url".into(),
                    "must be an smtp:// or smtps:// URL",
                ),
                Ok(u) if u.host_str().is_none_or(str::is_empty) => {
                    bad("status.smtp.url".into(), "names no host")
                }
                Ok(u)
                    if !matches!(
                        u.query_pairs()
                            .find(|(k, _)| k == "tls")
                            .as_ref()
                            .map(|(_, v)| v.as_ref()),
                        None | Some("required" | "opportunistic")
                    ) =>
                {
                    bad(
                        "status.smtp.url".into(),
                        "tls= must be required or opportunistic",
                    )
                }
                Ok(_) => {}
                // The URL may hold a password: never echo it.
                Err(_) => bad("status.smtp.url".into(), "is not a valid URL"),
            }
            if st
                .smtp
                .from
                .trim()
                .parse::<lettre::message::Mailbox>()
                .is_err()
            {
                bad(
                    "status.smtp.from".into(),
                    "required with status.smtp.url: an address such as Status <status@example.com>",
                );
            }
            if st.smtp.username.is_empty() != st.smtp.password.is_empty() {
                bad(
                    "status.smtp.password".into(),
                    "status.smtp.username and status.smtp.password go together",
                );
            }
            if st.public_url.is_none() {
                bad(
                    "status.public_url".into(),
                    "required with status.smtp.url: emails link to the page, and a link built from \
                     a request's Host could point anywhere",
                );
            }
            if st.subscriptions.secret.expose().trim().len() < 32 {
                bad(
                    "status.subscriptions.secret".into(),
                    "required with status.smtp.url: at least 32 characters (usually \
                     status.subscriptions.secret_file)",
                );
            }
            if st.smtp.max_attempts == 0 {
                bad("status.smtp.max_attempts".into(), "must be at least 1");
            }
            if st.smtp.timeout_ms < 100 {
                bad("status.smtp.timeout_ms".into(), "must be at least 100");
            }
        }
        let sub = &st.subscriptions;
        if !(1..=24 * 30).contains(&sub.confirm_ttl_hours) {
            bad(
                "status.subscriptions.confirm_ttl_hours".into(),
                "must be between 1 and 720",
            );
        }
        if sub.max_emails_per_address_per_day == 0 {
            bad(
                "status.subscriptions.max_emails_per_address_per_day".into(),
                "must be at least 1 (the confirmation is an email too)",
            );
        }
        if sub.max_requests_per_client_per_hour == 0 {
            bad(
                "status.subscriptions.max_requests_per_client_per_hour".into(),
                "must be at least 1",
            );
        }
        if sub.trusted_proxy_hops > 10 {
            bad(
                "status.subscriptions.trusted_proxy_hops".into(),
                "must be between 0 and 10",
            );
        }
        if !(1..=24 * 60).contains(&sub.form_ttl_mins) {
            bad(
                "status.subscriptions.form_ttl_mins".into(),
                "must be between 1 and 1440",
            );
        }
        p
    }
}
