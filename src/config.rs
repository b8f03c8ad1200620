//! Typed, layered configuration.
//!
//! One YAML file (named by `--config` or `SLACKOPS_CONFIG`), then environment variables
//! `SLACKOPS_<SECTION>__<KEY>` on top. Any key may instead be given as `<key>_file`, whose value is a
//! path read at start-up (a mounted Kubernetes secret); trailing newlines are stripped.
//!
//! Loading never stops at the first problem: every missing or invalid key is collected and reported
//! in one message, so an operator fixes a deployment in one round. Secrets are [`Secret`]s: their
//! `Debug` and `Serialize` output is redacted, so `check-config`, logs and error messages can never
//! print them. Every key is documented in `docs/configuration.md`; keep the two in step.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Yaml};
use figment::value::{Dict, Value};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

/// A secret string. It can be read only through [`Secret::expose`]; `Debug`, `Display` and
/// `Serialize` print `[redacted]` (or `[unset]` when empty) so it never reaches a log line.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret value. Call sites are the only places a secret leaves this type; keep them few.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
    /// Whether a presented credential equals this secret, compared in constant time: both sides
    /// are MACed and the tags compared, so neither length nor content leaks through timing.
    pub fn matches(&self, presented: &[u8]) -> bool {
        use hmac::{Hmac, KeyInit, Mac};
        use sha2::Sha256;
        let key = b"slackops-secret-compare";
        let mac = |v: &[u8]| {
            let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
            m.update(v);
            m
        };
        let expected = mac(self.0.as_bytes()).finalize().into_bytes();
        mac(presented).verify_slice(&expected).is_ok()
    }
    fn shown(&self) -> &'static str {
        if self.is_empty() {
            "[unset]"
        } else {
            "[redacted]"
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.shown())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.shown())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.shown())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Environment values are parsed as structured data, so a numeric-looking token arrives
        // as a number: accept any scalar and keep its text.
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_owned()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Secret, E> {
                Ok(Secret::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// The whole configuration. Each section is documented in `docs/configuration.md`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub slack: SlackSettings,
    pub spinnaker: SpinnakerSettings,
    pub jobs: JobSettings,
    pub log: LogSettings,
    pub api: ApiSettings,
    pub approvals: ApprovalsSettings,
    pub pipelines: PipelinesSettings,
    pub announcements: AnnouncementsSettings,
    pub status: StatusSettings,
    pub notifiers: NotifierSettings,
    pub maintenance: MaintenanceSettings,
    pub oncall: crate::oncall::config::OncallSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address the HTTP server binds. Port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// The URL Slack and echo reach this service at; used in links and the app manifest.
    pub public_url: Option<Url>,
    /// How long shutdown waits for in-flight requests and running jobs.
    pub shutdown_timeout_secs: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            public_url: None,
            shutdown_timeout_secs: 25,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://slackops.db` (default, one replica) or `postgres://user@host/db` (several replicas).
    /// A PostgreSQL URL may carry a password; it is redacted when printed.
    pub url: Secret,
    pub max_connections: u32,
    pub connect_timeout_secs: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: Secret::new("sqlite://slackops.db"),
            max_connections: 10,
            connect_timeout_secs: 10,
        }
    }
}

impl DatabaseSettings {
    /// The URL with any password replaced, for display.
    pub fn display_url(&self) -> String {
        match Url::parse(self.url.expose()) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("[redacted]"));
                u.to_string()
            }
            Ok(u) => u.to_string(),
            Err(_) => "[unparseable]".into(),
        }
    }
}

/// How Slack's requests reach slackops (`slack.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SlackMode {
    /// Slack POSTs signed requests to `/slack/{commands,interactions,events}` (a public URL).
    #[default]
    Http,
    /// slackops opens outbound WebSockets to Slack (Socket Mode): no inbound traffic at all.
    Socket,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlackSettings {
    /// `http` (default) or `socket`.
    pub mode: SlackMode,
    /// Signing secret from the app's Basic Information page. Required in HTTP mode.
    pub signing_secret: Secret,
    /// Bot token (`xoxb-…`). Required.
    pub bot_token: Secret,
    /// Web API base; tests point it at a local fake.
    pub api_url: Url,
    /// The layer answers Slack by this deadline even when a handler is still working (Slack allows 3 s).
    pub ack_deadline_ms: u64,
    /// Requests larger than this are refused with 413 before any hashing.
    pub max_body_bytes: usize,
    /// Timeout of one Web API call.
    pub request_timeout_ms: u64,
    /// Attempts for one Web API call on 429, 5xx and timeouts before the error is surfaced.
    pub max_retries: u32,
    /// A `Retry-After` longer than this is not slept through in place; the error goes back to the
    /// caller (usually a job, which is rescheduled for that time).
    pub max_inline_retry_after_secs: u64,
    /// Sustained `chat.postMessage` rate per channel (Slack allows about 1 per second).
    pub post_rate_per_channel: f64,
    /// Burst of `chat.postMessage` calls allowed per channel above the sustained rate.
    pub post_burst_per_channel: u32,
    /// App-level token (`xapp-…`, scope `connections:write`). Required in Socket Mode.
    pub app_token: Secret,
    /// Socket Mode connections held per replica (Slack allows 10 per app).
    pub socket_connections: u32,
    /// Socket Mode: ping Slack this often; a connection whose pongs stop for four intervals is
    /// replaced.
    pub socket_ping_interval_ms: u64,
}

impl Default for SlackSettings {
    fn default() -> Self {
        Self {
            signing_secret: Secret::default(),
            bot_token: Secret::default(),
            api_url: Url::parse("https://slack.com/api").expect("static url"),
            ack_deadline_ms: 2500,
            max_body_bytes: 1024 * 1024,
            request_timeout_ms: 10_000,
            max_retries: 4,
            max_inline_retry_after_secs: 30,
            post_rate_per_channel: 1.0,
            post_burst_per_channel: 4,
            mode: SlackMode::Http,
            app_token: Secret::default(),
            socket_connections: 2,
            socket_ping_interval_ms: 5000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpinnakerSettings {
    /// Gate's API URL (with x509 auth, the certificate port, usually 8085).
    pub gate_url: Url,
    /// Deck's URL, for links to executions.
    pub deck_url: Url,
    /// How slackops authenticates to Gate.
    pub auth: GateAuthSettings,
    /// Token echo must send (`Authorization: Bearer …`, or as the Basic password) to `/spinnaker/events`.
    pub echo_token: Secret,
    pub request_timeout_ms: u64,
}

impl Default for SpinnakerSettings {
    fn default() -> Self {
        Self {
            gate_url: Url::parse("http://localhost:8084").expect("static url"),
            deck_url: Url::parse("http://localhost:9000").expect("static url"),
            auth: GateAuthSettings::default(),
            echo_token: Secret::default(),
            request_timeout_ms: 10_000,
        }
    }
}

/// Gate authentication: `none`, `basic` (username/password), `bearer` (an OAuth or Gate API token)
/// or `x509` (a client certificate and key, PEM).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct GateAuthSettings {
    #[serde(rename = "type")]
    pub kind: GateAuthKind,
    pub username: Option<String>,
    pub password: Secret,
    pub token: Secret,
    /// PEM client certificate (usually given as `client_cert_file`).
    pub client_cert: Secret,
    /// PEM private key (usually given as `client_key_file`).
    pub client_key: Secret,
    /// PEM CA bundle to trust in addition to the system roots (for a private Gate CA).
    pub ca_cert: Secret,
    /// Also send the judging user's email as `X-SPINNAKER-USER` (Gate header-auth mode only).
    pub impersonate: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GateAuthKind {
    #[default]
    None,
    Basic,
    Bearer,
    X509,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobSettings {
    /// Concurrent jobs per replica.
    pub concurrency: usize,
    /// How often an idle worker looks for due jobs (enqueues on this replica wake it at once).
    pub poll_interval_ms: u64,
    /// A running job's lease; a replica that dies mid-job leaves it to be picked up after this.
    pub lease_secs: u64,
    /// Attempts before a job is kept as failed.
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Finished jobs are kept this long for inspection, then purged.
    pub retain_done_hours: u64,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            concurrency: 4,
            poll_interval_ms: 500,
            lease_secs: 60,
            max_attempts: 10,
            backoff_base_ms: 1000,
            backoff_max_ms: 5 * 60 * 1000,
            retain_done_hours: 24,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `text` for people, `json` for log pipelines.
    pub format: LogFormat,
    /// An `EnvFilter` directive; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The HTTP API under `/api/v1` (for tools and CI). Disabled while no token is set.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSettings {
    /// Bearer tokens accepted by `/api/v1/*`.
    pub tokens: Vec<Secret>,
}

/// Who may act: Slack user IDs, Slack user groups (handle like `release-managers` or ID like
/// `S0123`), emails, or everyone. The same model serves every feature.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Principals {
    pub users: Vec<String>,
    pub groups: Vec<String>,
    pub emails: Vec<String>,
    pub everyone: bool,
}

impl Principals {
    pub fn is_empty(&self) -> bool {
        !self.everyone && self.users.is_empty() && self.groups.is_empty() && self.emails.is_empty()
    }
}

/// Manual Judgment approvals.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApprovalsSettings {
    /// Channel (ID) for judgments no route matches.
    pub default_channel: Option<String>,
    /// Channels by application and optionally pipeline; the most specific match wins.
    pub routes: Vec<ApprovalRoute>,
    /// Who may judge, by application (`*` for all) and optionally pipeline. An application with no
    /// matching rule cannot be judged from Slack.
    pub approvers: Vec<ApproverRule>,
    /// Spinnaker role → Slack user groups whose members hold it, for stages that name roles.
    pub role_groups: BTreeMap<String, Vec<String>>,
    /// Whoever triggered an execution may not approve it.
    pub four_eyes: bool,
    /// DM the person who triggered the execution with the outcome (when their email is in Slack).
    pub notify_trigger_user: bool,
    /// Applications polled for running judgments (for Spinnakers whose echo cannot forward events).
    pub poll_applications: Vec<String>,
    pub poll_interval_secs: u64,
    /// How often open judgments are checked against Gate, so a lost event never leaves live buttons.
    pub reconcile_interval_secs: u64,
    /// Attempts of a judgment against Gate (with backoff) before the buttons come back.
    pub judge_max_attempts: u32,
    /// How long to wait for Spinnaker to act on a judgment before checking again later.
    pub outcome_wait_secs: u64,
    /// How long Slack user-group memberships and user profiles are cached.
    pub membership_cache_secs: u64,
}

impl Default for ApprovalsSettings {
    fn default() -> Self {
        Self {
            default_channel: None,
            routes: Vec::new(),
            approvers: Vec::new(),
            role_groups: BTreeMap::new(),
            four_eyes: false,
            notify_trigger_user: true,
            poll_applications: Vec::new(),
            poll_interval_secs: 30,
            reconcile_interval_secs: 60,
            judge_max_attempts: 8,
            outcome_wait_secs: 20,
            membership_cache_secs: 60,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ApprovalRoute {
    pub application: String,
    pub pipeline: Option<String>,
    /// Channel ID the judgment is posted to.
    pub channel: String,
    /// Channels told of the outcome.
    pub notify_channels: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ApproverRule {
    /// Application name, or `*` for every application.
    pub application: String,
    pub pipeline: Option<String>,
    pub users: Vec<String>,
    pub groups: Vec<String>,
    pub emails: Vec<String>,
    pub everyone: bool,
}

impl ApproverRule {
    pub fn principals(&self) -> Principals {
        Principals {
            users: self.users.clone(),
            groups: self.groups.clone(),
            emails: self.emails.clone(),
            everyone: self.everyone,
        }
    }
}

/// The pipeline slash command.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelinesSettings {
    /// The slash command's name, as created in the Slack app.
    pub command: String,
    /// Who may start and cancel, per application (`*` for all) and optionally pipeline; the most
    /// specific matching rule applies. An application no rule matches cannot be started or
    /// canceled from Slack.
    pub rules: Vec<PipelineRule>,
    /// How often a started execution is checked until it ends.
    pub follow_interval_secs: u64,
    /// Stop following an execution after this long.
    pub follow_max_hours: u64,
    /// Executions listed by `status`.
    pub status_limit: usize,
}

impl Default for PipelinesSettings {
    fn default() -> Self {
        Self {
            command: "/spinnaker".into(),
            rules: Vec::new(),
            follow_interval_secs: 15,
            follow_max_hours: 24,
            status_limit: 10,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineRule {
    pub application: String,
    pub pipeline: Option<String>,
    pub users: Vec<String>,
    pub groups: Vec<String>,
    pub emails: Vec<String>,
    pub everyone: bool,
    /// Ask for a confirmation (a button) before starting.
    pub confirm: bool,
    /// False: the pipeline cannot be started from Slack at all (cancel still follows the rule).
    pub startable: bool,
}

impl Default for PipelineRule {
    fn default() -> Self {
        Self {
            application: String::new(),
            pipeline: None,
            users: Vec::new(),
            groups: Vec::new(),
            emails: Vec::new(),
            everyone: false,
            confirm: false,
            startable: true,
        }
    }
}

impl PipelineRule {
    pub fn principals(&self) -> Principals {
        Principals {
            users: self.users.clone(),
            groups: self.groups.clone(),
            emails: self.emails.clone(),
            everyone: self.everyone,
        }
    }
}

/// Outage announcements (`/announce`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnnouncementsSettings {
    /// The slash command's name, as created in the Slack app.
    pub command: String,
    /// Channel (ID) where announcements are posted and pinned, and maintenance is announced.
    pub channel: Option<String>,
    /// The catalogue of systems an outage or maintenance can affect (also the status page's rows).
    pub systems: Vec<SystemEntry>,
    /// Audiences whose impact is asked for, each told once in its own channel.
    pub audiences: Vec<AudienceEntry>,
    /// Severities offered, most severe first.
    pub severities: Vec<String>,
    /// Who may announce an outage (default: everyone in the workspace).
    pub announcers: Principals,
    /// Who may change any announcement, besides its announcer and assignees.
    pub editors: Principals,
    /// Reacting with this emoji (name without colons) to a message in an incident's channel or
    /// its announcement's thread copies the message into the thread.
    pub reaction_emoji: String,
    /// DM the assignees this long before the ETA runs out (0 turns it off).
    pub remind_before_eta_mins: u64,
    /// Nudge the communication assignee after this long without an update (0 turns it off).
    pub nudge_after_mins: u64,
    /// How long "Snooze" on the ETA-passed prompt postpones the next prompt.
    pub snooze_mins: u64,
    /// How often reminders are checked.
    pub reminder_check_secs: u64,
    /// Offer "Create channel" on announcements.
    pub create_channel: bool,
    /// Prefix of incident channels' names (`<prefix>-<system>-<yymmdd>`).
    pub channel_prefix: String,
}

impl Default for AnnouncementsSettings {
    fn default() -> Self {
        Self {
            command: "/announce".into(),
            channel: None,
            systems: Vec::new(),
            audiences: Vec::new(),
            severities: vec!["critical".into(), "major".into(), "minor".into()],
            announcers: Principals {
                everyone: true,
                ..Principals::default()
            },
            editors: Principals::default(),
            reaction_emoji: "point_up".into(),
            remind_before_eta_mins: 10,
            nudge_after_mins: 30,
            snooze_mins: 15,
            reminder_check_secs: 60,
            create_channel: true,
            channel_prefix: "inc".into(),
        }
    }
}

impl AnnouncementsSettings {
    /// Problems in this section, each naming its key.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        let mut bad = |key: String, message: &str| {
            p.push(ConfigProblem {
                key,
                message: message.into(),
            })
        };
        let slug = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        };
        if !self.command.starts_with('/') || self.command.len() < 2 {
            bad(
                "announcements.command".into(),
                "must be a slash command such as /announce",
            );
        }
        let mut seen = std::collections::HashSet::new();
        for (i, s) in self.systems.iter().enumerate() {
            if !slug(&s.id) {
                bad(
                    format!("announcements.systems[{i}].id"),
                    "required: lowercase letters, digits, - or _",
                );
            } else if !seen.insert(s.id.clone()) {
                bad(format!("announcements.systems[{i}].id"), "is not unique");
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, a) in self.audiences.iter().enumerate() {
            if !slug(&a.id) {
                bad(
                    format!("announcements.audiences[{i}].id"),
                    "required: lowercase letters, digits, - or _",
                );
            } else if !seen.insert(a.id.clone()) {
                bad(format!("announcements.audiences[{i}].id"), "is not unique");
            }
        }
        if self.severities.is_empty() || self.severities.iter().any(|s| !slug(s)) {
            bad(
                "announcements.severities".into(),
                "must list at least one severity, each lowercase letters, digits, - or _",
            );
        }
        if self.reaction_emoji.is_empty()
            || self.reaction_emoji.contains(':')
            || self.reaction_emoji.contains(' ')
        {
            bad(
                "announcements.reaction_emoji".into(),
                "an emoji name without colons, such as point_up",
            );
        }
        if self.snooze_mins == 0 {
            bad("announcements.snooze_mins".into(), "must be at least 1");
        }
        if self.reminder_check_secs == 0 {
            bad(
                "announcements.reminder_check_secs".into(),
                "must be at least 1",
            );
        }
        if !slug(&self.channel_prefix) || self.channel_prefix.len() > 20 {
            bad(
                "announcements.channel_prefix".into(),
                "lowercase letters, digits, - or _, at most 20 characters",
            );
        }
        p
    }
}

/// One system in the catalogue.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct SystemEntry {
    /// Stable identifier stored with outages (lowercase, `[a-z0-9-]`).
    pub id: String,
    /// Name shown in Slack and on the status page.
    pub name: String,
    /// Optional group the status page lists the system under.
    pub group: Option<String>,
}

/// An audience (for example sales, B2B partners, customers) and the channel that hears of outages
/// affecting it.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AudienceEntry {
    pub id: String,
    pub name: String,
    /// Channel (ID) told once per outage that affects this audience.
    pub channel: Option<String>,
}

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

    /// The name shown after times.
    pub fn zone_label(&self) -> String {
        match &self.time_zone_label {
            Some(l) if !l.trim().is_empty() => l.trim().to_string(),
            _ if self.offset_secs() == Some(0) => "UTC".into(),
            _ => format!("UTC{}", self.time_zone.trim().trim_start_matches("UTC")),
        }
    }
}

/// Scheduled maintenance (`/announce maintenance`, `/api/v1/maintenances`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaintenanceSettings {
    /// How often one replica looks for windows that started or ended, to announce them.
    pub check_interval_secs: u64,
    /// The longest window accepted.
    pub max_duration_hours: u64,
    /// How far ahead a window may be scheduled.
    pub max_ahead_days: u64,
}

impl Default for MaintenanceSettings {
    fn default() -> Self {
        Self {
            check_interval_secs: 30,
            max_duration_hours: 7 * 24,
            max_ahead_days: 365,
        }
    }
}

/// Webhook notifiers told of every outage and maintenance change.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifierSettings {
    /// Each webhook receives one JSON POST per change it subscribes to.
    pub webhooks: Vec<WebhookSettings>,
    /// Time allowed for one delivery attempt (connect and answer).
    pub timeout_ms: u64,
    /// Attempts before a delivery is kept as failed (retried with the job queue's backoff).
    pub max_attempts: u32,
}

impl Default for NotifierSettings {
    fn default() -> Self {
        Self {
            webhooks: Vec::new(),
            timeout_ms: 5000,
            max_attempts: 12,
        }
    }
}

/// One webhook.
#[derive(Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// Unique name, used in logs and to find the webhook when a queued delivery runs.
    pub name: String,
    pub url: Option<Url>,
    /// When set, each delivery carries `X-Slackops-Signature: sha256=<hex>`, an HMAC-SHA256 of
    /// `<X-Slackops-Timestamp>.<body>` with this key (usually given as `secret_file`).
    pub secret: Secret,
    /// Event kinds to send (`outage.resolved`, or `outage.*`); empty sends every event.
    pub events: Vec<String>,
}

impl fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("name", &self.name)
            .field("url", &self.display_url())
            .field("secret", &self.secret)
            .field("events", &self.events)
            .finish()
    }
}

impl WebhookSettings {
    /// The URL without its path and query, which often carry a token (Slack's incoming webhooks).
    pub fn display_url(&self) -> String {
        match &self.url {
            Some(u) if u.path() == "/" && u.query().is_none() => u.to_string(),
            Some(u) => format!("{}://{}/[redacted]", u.scheme(), u.host_str().unwrap_or("")),
            None => "[unset]".into(),
        }
    }

    /// Whether this webhook wants events of `kind`.
    pub fn wants(&self, kind: &str) -> bool {
        self.events.is_empty()
            || self.events.iter().any(|e| {
                e == "*"
                    || e == kind
                    || e.strip_suffix(".*")
                        .is_some_and(|p| kind.strip_prefix(p).is_some_and(|r| r.starts_with('.')))
            })
    }
}

impl SlackSettings {
    /// What each transport needs: the signing secret over HTTP, the app-level token and a sane
    /// number of connections in Socket Mode.
    fn mode_problems(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        let mut bad = |key: &str, message: &str| {
            p.push(ConfigProblem {
                key: key.into(),
                message: message.into(),
            })
        };
        match self.mode {
            SlackMode::Http => {
                if self.signing_secret.is_empty() {
                    bad(
                        "slack.signing_secret",
                        "required (env SLACKOPS_SLACK__SIGNING_SECRET or slack.signing_secret_file): the app's Signing Secret",
                    );
                }
            }
            SlackMode::Socket => {
                if self.app_token.is_empty() {
                    bad(
                        "slack.app_token",
                        "required when slack.mode is socket (env SLACKOPS_SLACK__APP_TOKEN or slack.app_token_file): the app-level token (xapp-…) with the connections:write scope",
                    );
                } else if !self.app_token.expose().starts_with("xapp-") {
                    bad(
                        "slack.app_token",
                        "must be an app-level token (xapp-…, Basic Information → App-Level Tokens), not a bot or user token",
                    );
                }
                if !(1..=10).contains(&self.socket_connections) {
                    bad(
                        "slack.socket_connections",
                        "must be between 1 and 10: Slack allows 10 connections per app",
                    );
                }
                if !(100..=60_000).contains(&self.socket_ping_interval_ms) {
                    bad(
                        "slack.socket_ping_interval_ms",
                        "must be between 100 and 60000",
                    );
                }
            }
        }
        p
    }
}

/// Every problem found while loading, each naming its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub key: String,
    pub message: String,
}

/// Loading failed; the message lists every bad key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n{}", .problems.iter().map(|p| format!("  - {}: {}", p.key, p.message)).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    pub problems: Vec<ConfigProblem>,
}

impl ConfigError {
    fn one(key: &str, message: impl Into<String>) -> Self {
        Self {
            problems: vec![ConfigProblem {
                key: key.into(),
                message: message.into(),
            }],
        }
    }
}

/// Where the configuration comes from. Tests build one with an explicit environment.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// The YAML file, if any.
    pub file: Option<PathBuf>,
    /// Environment variables to read (normally `std::env::vars()`).
    pub env: Vec<(String, String)>,
}

impl ConfigSource {
    /// The process environment, and the file named by `path` or `SLACKOPS_CONFIG`.
    pub fn from_process(path: Option<PathBuf>) -> Self {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let file = path.or_else(|| {
            env.iter()
                .find(|(k, _)| k == "SLACKOPS_CONFIG")
                .map(|(_, v)| PathBuf::from(v))
        });
        Self { file, env }
    }
}

const ENV_PREFIX: &str = "SLACKOPS_";

impl Settings {
    /// Load, resolve `_file` keys, deserialize and validate; every problem is reported at once.
    pub fn load(source: &ConfigSource) -> Result<Settings, ConfigError> {
        // Defaults come from `#[serde(default)]` when deserializing, not from a serialized copy
        // of `Settings::default()`: serializing would redact the secrets it carries.
        let mut figment = Figment::new();
        if let Some(file) = &source.file {
            if !file.exists() {
                return Err(ConfigError::one(
                    "--config",
                    format!("file {} does not exist", file.display()),
                ));
            }
            figment = figment.merge(Yaml::file(file));
        }
        figment = figment.merge(env_provider(&source.env));

        let mut merged: Dict = figment.extract().map_err(|e| ConfigError {
            problems: figment_problems(e),
        })?;
        let mut problems = Vec::new();
        resolve_file_keys(&mut merged, "", &mut problems);

        // Each section is read on its own, so a type error in one does not hide the problems of
        // the others; a section that fails is replaced by its defaults for the checks that follow.
        let known = [
            "server",
            "database",
            "slack",
            "spinnaker",
            "jobs",
            "log",
            "api",
            "approvals",
            "pipelines",
            "announcements",
            "status",
            "notifiers",
            "maintenance",
            "oncall",
        ];
        for key in merged.keys() {
            if !known.contains(&key.as_str()) {
                problems.push(ConfigProblem {
                    key: key.clone(),
                    message: format!("unknown section; expected one of {}", known.join(", ")),
                });
            }
        }
        let mut failed: Vec<&'static str> = Vec::new();
        let mut read = SectionReader {
            merged: &merged,
            problems: &mut problems,
            failed: &mut failed,
        };
        let settings = Settings {
            server: read.section("server"),
            database: read.section("database"),
            slack: read.section("slack"),
            spinnaker: read.section("spinnaker"),
            jobs: read.section("jobs"),
            log: read.section("log"),
            api: read.section("api"),
            approvals: read.section("approvals"),
            pipelines: read.section("pipelines"),
            announcements: read.section("announcements"),
            status: read.section("status"),
            notifiers: read.section("notifiers"),
            maintenance: read.section("maintenance"),
            oncall: read.section("oncall"),
        };
        // Checks on a section that failed to read would report its defaults, not the input.
        problems.extend(settings.validate().into_iter().filter(|p| {
            !failed
                .iter()
                .any(|f| p.key == *f || p.key.starts_with(&format!("{f}.")))
        }));
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Semantic checks beyond types. Returns every problem found.
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        let mut bad = |key: &str, message: &str| {
            p.push(ConfigProblem {
                key: key.into(),
                message: message.into(),
            })
        };
        if self.slack.bot_token.is_empty() {
            bad(
                "slack.bot_token",
                "required (env SLACKOPS_SLACK__BOT_TOKEN or slack.bot_token_file): the xoxb- bot token",
            );
        } else if !self.slack.bot_token.expose().starts_with("xox") {
            bad("slack.bot_token", "must be a Slack token (xoxb-…)");
        }
        let db = self.database.url.expose();
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            bad("database.url", "must start with sqlite: or postgres://");
        }
        if self.database.max_connections == 0 {
            bad("database.max_connections", "must be at least 1");
        }
        if !(100..=2900).contains(&self.slack.ack_deadline_ms) {
            bad(
                "slack.ack_deadline_ms",
                "must be between 100 and 2900: Slack gives up after 3000 ms",
            );
        }
        if self.slack.max_body_bytes < 1024 {
            bad("slack.max_body_bytes", "must be at least 1024");
        }
        if self.slack.post_rate_per_channel <= 0.0 {
            bad("slack.post_rate_per_channel", "must be greater than 0");
        }
        let auth = &self.spinnaker.auth;
        match auth.kind {
            GateAuthKind::None => {}
            GateAuthKind::Basic => {
                if auth.username.as_deref().unwrap_or("").is_empty() {
                    bad(
                        "spinnaker.auth.username",
                        "required when spinnaker.auth.type is basic",
                    );
                }
                if auth.password.is_empty() {
                    bad(
                        "spinnaker.auth.password",
                        "required when spinnaker.auth.type is basic",
                    );
                }
            }
            GateAuthKind::Bearer => {
                if auth.token.is_empty() {
                    bad(
                        "spinnaker.auth.token",
                        "required when spinnaker.auth.type is bearer",
                    );
                }
            }
            GateAuthKind::X509 => {
                if auth.client_cert.is_empty() {
                    bad(
                        "spinnaker.auth.client_cert",
                        "required when spinnaker.auth.type is x509 (PEM; usually client_cert_file)",
                    );
                }
                if auth.client_key.is_empty() {
                    bad(
                        "spinnaker.auth.client_key",
                        "required when spinnaker.auth.type is x509 (PEM; usually client_key_file)",
                    );
                }
            }
        }
        if self.jobs.concurrency == 0 {
            bad("jobs.concurrency", "must be at least 1");
        }
        if self.jobs.max_attempts == 0 {
            bad("jobs.max_attempts", "must be at least 1");
        }
        if self.jobs.lease_secs < 5 {
            bad("jobs.lease_secs", "must be at least 5");
        }
        for (i, r) in self.approvals.routes.iter().enumerate() {
            if r.application.is_empty() {
                bad(&format!("approvals.routes[{i}].application"), "required");
            }
            if r.channel.is_empty() {
                bad(
                    &format!("approvals.routes[{i}].channel"),
                    "required (a channel ID such as C0123456)",
                );
            }
        }
        for (i, r) in self.approvals.approvers.iter().enumerate() {
            if r.application.is_empty() {
                bad(
                    &format!("approvals.approvers[{i}].application"),
                    "required (an application name, or *)",
                );
            }
            if r.principals().is_empty() {
                bad(
                    &format!("approvals.approvers[{i}]"),
                    "names nobody: give users, groups, emails, or everyone: true",
                );
            }
        }
        if !self.pipelines.command.starts_with('/') || self.pipelines.command.len() < 2 {
            bad(
                "pipelines.command",
                "must be a slash command such as /spinnaker",
            );
        }
        for (i, r) in self.pipelines.rules.iter().enumerate() {
            if r.application.is_empty() {
                bad(
                    &format!("pipelines.rules[{i}].application"),
                    "required (an application name, or *)",
                );
            }
        }
        if self.pipelines.follow_interval_secs < 2 {
            bad("pipelines.follow_interval_secs", "must be at least 2");
        }
        if self.approvals.judge_max_attempts == 0 {
            bad("approvals.judge_max_attempts", "must be at least 1");
        }
        if self.approvals.poll_interval_secs < 5 {
            bad("approvals.poll_interval_secs", "must be at least 5");
        }
        if self.approvals.reconcile_interval_secs < 5 {
            bad("approvals.reconcile_interval_secs", "must be at least 5");
        }
        if self.api.tokens.iter().any(|t| t.expose().len() < 16) {
            bad("api.tokens", "each token must be at least 16 characters");
        }
        p.extend(self.slack.mode_problems());
        p.extend(self.announcements.problems());
        p.extend(self.oncall.validate());
        p.extend(self.status_problems());
        p
    }

    /// Checks of the `status`, `maintenance` and `notifiers` sections.
    fn status_problems(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        let mut bad = |key: String, message: &str| {
            p.push(ConfigProblem {
                key,
                message: message.into(),
            })
        };
        let st = &self.status;
        if st.refresh_interval_ms < 100 {
            bad("status.refresh_interval_ms".into(), "must be at least 100");
        }
        if !(1..=365).contains(&st.history_days) {
            bad("status.history_days".into(), "must be between 1 and 365");
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
        if self.maintenance.check_interval_secs == 0 {
            bad(
                "maintenance.check_interval_secs".into(),
                "must be at least 1",
            );
        }
        if self.maintenance.max_duration_hours == 0 {
            bad(
                "maintenance.max_duration_hours".into(),
                "must be at least 1",
            );
        }
        if self.maintenance.max_ahead_days == 0 {
            bad("maintenance.max_ahead_days".into(), "must be at least 1");
        }
        let n = &self.notifiers;
        if !(100..=60_000).contains(&n.timeout_ms) {
            bad(
                "notifiers.timeout_ms".into(),
                "must be between 100 and 60000",
            );
        }
        if n.max_attempts == 0 {
            bad("notifiers.max_attempts".into(), "must be at least 1");
        }
        let mut names = std::collections::HashSet::new();
        for (i, w) in n.webhooks.iter().enumerate() {
            let key = |k: &str| format!("notifiers.webhooks[{i}].{k}");
            if w.name.trim().is_empty() {
                bad(key("name"), "required (a unique name for logs)");
            } else if !names.insert(w.name.as_str()) {
                bad(key("name"), "another webhook has the same name");
            }
            match &w.url {
                None => bad(key("url"), "required (the URL events are POSTed to)"),
                Some(u) if !matches!(u.scheme(), "http" | "https") => {
                    bad(key("url"), "must be an http(s) URL")
                }
                Some(_) => {}
            }
            for e in &w.events {
                let one = WebhookSettings {
                    events: vec![e.clone()],
                    ..Default::default()
                };
                let known = crate::notifiers::EVENT_KINDS.iter().any(|k| one.wants(k));
                if !known {
                    bad(
                        key("events"),
                        &format!(
                            "unknown event {e:?}; use one of {}, or a prefix such as outage.*",
                            crate::notifiers::EVENT_KINDS.join(", ")
                        ),
                    );
                }
            }
        }
        p
    }

    pub fn ack_deadline(&self) -> Duration {
        Duration::from_millis(self.slack.ack_deadline_ms)
    }
}

/// Reads one section at a time, recording problems and which sections failed.
struct SectionReader<'a> {
    merged: &'a Dict,
    problems: &'a mut Vec<ConfigProblem>,
    failed: &'a mut Vec<&'static str>,
}

impl SectionReader<'_> {
    fn section<T: serde::de::DeserializeOwned + Default>(&mut self, key: &'static str) -> T {
        if !self.merged.contains_key(key) {
            return T::default();
        }
        // A figment of the section alone, so error paths are relative to it.
        let value = self
            .merged
            .get(key)
            .cloned()
            .unwrap_or_else(|| Value::from(Dict::new()));
        match Figment::from(Serialized::defaults(value)).extract::<T>() {
            Ok(v) => v,
            Err(e) => {
                for mut p in figment_problems(e) {
                    p.key = if p.key == "(file)" {
                        key.to_string()
                    } else {
                        format!("{key}.{}", p.key)
                    };
                    self.problems.push(p);
                }
                self.failed.push(key);
                T::default()
            }
        }
    }
}

/// `SLACKOPS_SLACK__SIGNING_SECRET` → `slack.signing_secret`. `SLACKOPS_CONFIG` names the file and
/// is not a key. The variables are passed in rather than read from the process (as figment's `Env`
/// does) so that tests can load many configurations in parallel without touching global state.
fn env_provider(vars: &[(String, String)]) -> impl figment::Provider {
    let mut dict = Dict::new();
    for (k, v) in vars {
        let Some(rest) = k.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        // Every key lives in a section, so a key variable always has `__`. Others, such as the
        // SLACKOPS_PORT and SLACKOPS_SERVICE_HOST that Kubernetes injects for a Service named
        // slackops, are not configuration.
        if !rest.contains("__") {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        let value = env_value(v);
        insert_path(&mut dict, &path, value);
    }
    Serialized::defaults(dict)
}

/// An environment value as configuration: lists and maps (`[…]`, `{…}`) are parsed; `true`,
/// `false` and numbers only when they read back exactly as written (so `0123456789` or `1.50`
/// stay text, as a secret must); anything else is the text as given.
fn env_value(raw: &str) -> Value {
    let t = raw.trim();
    if (t.starts_with('[') && t.ends_with(']')) || (t.starts_with('{') && t.ends_with('}')) {
        // figment's parser never fails: text that is not a list or map stays text.
        let Ok(v) = t.parse::<Value>();
        return v;
    }
    match t {
        "true" => return Value::from(true),
        "false" => return Value::from(false),
        _ => {}
    }
    if let Ok(i) = t.parse::<i64>()
        && i.to_string() == t
    {
        return Value::from(i);
    }
    if let Ok(f) = t.parse::<f64>()
        && f.is_finite()
        && f.to_string() == t
    {
        return Value::from(f);
    }
    Value::from(raw.to_string())
}

fn insert_path(dict: &mut Dict, path: &[String], value: Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry(first.clone())
                .or_insert_with(|| Value::from(Dict::new()));
            if entry.as_dict().is_none() {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert_path(inner, rest, value);
            }
        }
    }
}

/// Replace every `<key>_file: PATH` with `<key>: <contents of PATH>`.
fn resolve_file_keys(dict: &mut Dict, prefix: &str, problems: &mut Vec<ConfigProblem>) {
    let file_keys: Vec<String> = dict
        .keys()
        .filter(|k| k.ends_with("_file"))
        .cloned()
        .collect();
    for fk in file_keys {
        let key = fk.trim_end_matches("_file").to_string();
        let full = join_key(prefix, &key);
        let Some(v) = dict.remove(&fk) else { continue };
        let Some(path) = v.as_str().map(str::to_owned) else {
            problems.push(ConfigProblem {
                key: join_key(prefix, &fk),
                message: "must be a file path".into(),
            });
            continue;
        };
        if path.is_empty() {
            continue;
        }
        match read_secret_file(Path::new(&path)) {
            Ok(contents) => {
                dict.insert(key, Value::from(contents));
            }
            Err(e) => problems.push(ConfigProblem {
                key: join_key(prefix, &fk),
                message: format!("cannot read {path}: {e} (for {full})"),
            }),
        }
    }
    for (k, v) in dict.iter_mut() {
        match v {
            Value::Dict(_, inner) => resolve_file_keys(inner, &join_key(prefix, k), problems),
            // Lists of tables (such as notifiers.webhooks) may hold secrets too.
            Value::Array(_, items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    if let Value::Dict(_, inner) = item {
                        resolve_file_keys(
                            inner,
                            &format!("{}[{i}]", join_key(prefix, k)),
                            problems,
                        );
                    }
                }
            }
            _ => {}
        }
    }
}

fn read_secret_file(path: &Path) -> std::io::Result<String> {
    let s = std::fs::read_to_string(path)?;
    Ok(s.trim_end_matches(['\n', '\r']).to_string())
}

fn join_key(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn figment_problems(e: figment::Error) -> Vec<ConfigProblem> {
    e.into_iter()
        .map(|err| {
            let key = if err.path.is_empty() {
                "(file)".to_string()
            } else {
                err.path.join(".")
            };
            ConfigProblem {
                key,
                message: err.kind.to_string(),
            }
        })
        .collect()
}

/// The configuration as `check-config` prints it: every secret redacted.
pub fn redacted_view(settings: &Settings) -> serde_json::Value {
    let mut v = serde_json::to_value(settings).unwrap_or(serde_json::Value::Null);
    if let Some(db) = v.get_mut("database").and_then(|d| d.as_object_mut()) {
        db.insert(
            "url".into(),
            serde_json::Value::String(settings.database.display_url()),
        );
    }
    if let Some(hooks) = v
        .pointer_mut("/notifiers/webhooks")
        .and_then(|h| h.as_array_mut())
    {
        for (out, hook) in hooks.iter_mut().zip(&settings.notifiers.webhooks) {
            out["url"] = serde_json::Value::String(hook.display_url());
        }
    }
    v
}

/// Helper for tests and tools: a map of variables as `ConfigSource::env`.
pub fn env_from<I, K, V>(vars: I) -> Vec<(String, String)>
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<String>,
    V: Into<String>,
{
    vars.into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> Vec<(String, String)> {
        env_from([
            ("SLACKOPS_SLACK__SIGNING_SECRET", "s3cret-signing"),
            ("SLACKOPS_SLACK__BOT_TOKEN", "xoxb-1-2-3"),
        ])
    }

    #[test]
    fn env_sets_nested_keys_and_numbers_stay_secrets() {
        let mut env = minimal();
        env.push(("SLACKOPS_SPINNAKER__ECHO_TOKEN".into(), "12345678".into()));
        env.push(("SLACKOPS_JOBS__CONCURRENCY".into(), "7".into()));
        let s = Settings::load(&ConfigSource { file: None, env }).expect("valid");
        assert_eq!(s.spinnaker.echo_token.expose(), "12345678");
        assert_eq!(s.jobs.concurrency, 7);
        assert_eq!(s.slack.signing_secret.expose(), "s3cret-signing");
    }

    #[test]
    fn every_problem_is_named_at_once() {
        let env = env_from([
            ("SLACKOPS_DATABASE__URL", "mysql://x"),
            ("SLACKOPS_SLACK__ACK_DEADLINE_MS", "5000"),
        ]);
        let err = Settings::load(&ConfigSource { file: None, env }).unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"slack.signing_secret"), "{keys:?}");
        assert!(keys.contains(&"slack.bot_token"), "{keys:?}");
        assert!(keys.contains(&"database.url"), "{keys:?}");
        assert!(keys.contains(&"slack.ack_deadline_ms"), "{keys:?}");
    }

    #[test]
    fn secrets_never_show_in_debug_or_serialization() {
        let s = Settings::load(&ConfigSource {
            file: None,
            env: minimal(),
        })
        .unwrap();
        let dbg = format!("{s:?}");
        let json = redacted_view(&s).to_string();
        for out in [dbg, json] {
            assert!(!out.contains("s3cret-signing"));
            assert!(!out.contains("xoxb-1-2-3"));
            assert!(out.contains("[redacted]"));
        }
    }

    #[test]
    fn postgres_password_is_redacted_for_display() {
        let d = DatabaseSettings {
            url: Secret::new("postgres://app:hunter2@db:5432/slackops"),
            ..Default::default()
        };
        assert!(!d.display_url().contains("hunter2"));
        assert!(d.display_url().contains("app:"));
    }

    #[test]
    fn status_notifier_and_maintenance_keys_load_and_are_checked() {
        let dir = tempfile_dir();
        let secret = dir.join("hook-secret");
        std::fs::write(&secret, "whsec-from-file\n").unwrap();
        let yaml = dir.join("c.yaml");
        std::fs::write(
            &yaml,
            format!(
                "status:\n  title: Acme\n  time_zone: '+01:00'\n  time_zone_label: CET\n  refresh_interval_ms: 2000\n\
                 maintenance:\n  check_interval_secs: 10\n\
                 notifiers:\n  timeout_ms: 3000\n  webhooks:\n    - name: ops\n      url: https://hooks.example.com/x\n      secret_file: {}\n      events: ['outage.*', maintenance.started]\n",
                secret.display()
            ),
        )
        .unwrap();
        let s = Settings::load(&ConfigSource {
            file: Some(yaml.clone()),
            env: minimal(),
        })
        .expect("valid");
        assert_eq!(s.status.title, "Acme");
        assert_eq!(s.status.offset_secs(), Some(3600));
        assert_eq!(s.status.zone_label(), "CET");
        assert_eq!(s.maintenance.check_interval_secs, 10);
        assert_eq!(s.notifiers.webhooks[0].secret.expose(), "whsec-from-file");
        assert!(s.notifiers.webhooks[0].wants("outage.resolved"));
        assert!(!format!("{s:?}").contains("whsec-from-file"));
        let shown = format!("{s:?} {}", redacted_view(&s));
        assert!(
            !shown.contains("whsec-from-file") && !shown.contains("/x"),
            "{shown}"
        );
        assert!(shown.contains("https://hooks.example.com/[redacted]"));

        let mut env = minimal();
        env.push(("SLACKOPS_STATUS__TIME_ZONE".into(), "Europe/Paris".into()));
        env.push(("SLACKOPS_STATUS__HISTORY_DAYS".into(), "0".into()));
        let bad = dir.join("bad.yaml");
        std::fs::write(
            &bad,
            "notifiers:\n  webhooks:\n    - name: a\n      events: [outage.exploded]\n    - name: a\n      url: ftp://x\n",
        )
        .unwrap();
        let err = Settings::load(&ConfigSource {
            file: Some(bad),
            env,
        })
        .unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        for k in [
            "status.time_zone",
            "status.history_days",
            "notifiers.webhooks[0].url",
            "notifiers.webhooks[0].events",
            "notifiers.webhooks[1].name",
            "notifiers.webhooks[1].url",
        ] {
            assert!(keys.contains(&k), "{k} in {:?}", err.problems);
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("slackops-cfg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn lists_can_be_given_in_env() {
        let mut env = minimal();
        env.push((
            "SLACKOPS_API__TOKENS".into(),
            r#"["token-one-0123456789","token-two-0123456789"]"#.into(),
        ));
        let s = Settings::load(&ConfigSource { file: None, env }).expect("valid");
        assert_eq!(s.api.tokens.len(), 2);
        assert_eq!(s.api.tokens[1].expose(), "token-two-0123456789");
    }

    #[test]
    fn a_type_error_names_its_key() {
        let mut env = minimal();
        env.push(("SLACKOPS_SERVER__LISTEN".into(), "not-an-address".into()));
        let err = Settings::load(&ConfigSource { file: None, env }).unwrap_err();
        assert!(
            err.problems.iter().any(|p| p.key == "server.listen"),
            "{err}"
        );
    }

    #[test]
    fn every_section_is_known_to_the_loader() {
        // Each section of `Settings` must be accepted by name, not refused as unknown.
        let mut env = minimal();
        for (key, value) in [
            ("SLACKOPS_APPROVALS__FOUR_EYES", "true"),
            ("SLACKOPS_PIPELINES__COMMAND", "/deploy"),
            ("SLACKOPS_ANNOUNCEMENTS__COMMAND", "/outage"),
        ] {
            env.push((key.into(), value.into()));
        }
        let s = Settings::load(&ConfigSource { file: None, env }).expect("valid");
        assert_eq!(s.pipelines.command, "/deploy");
        assert_eq!(s.announcements.command, "/outage");
        let value = serde_json::to_value(Settings::default()).expect("serializes");
        for section in value.as_object().expect("object").keys() {
            let mut env = minimal();
            env.push((
                format!("SLACKOPS_{}__NO_SUCH_KEY", section.to_uppercase()),
                "1".into(),
            ));
            let err = Settings::load(&ConfigSource { file: None, env }).unwrap_err();
            assert!(
                err.problems
                    .iter()
                    .any(|p| p.key == format!("{section}.no_such_key")),
                "section {section} should be read and its unknown key named: {err}"
            );
        }
    }

    #[test]
    fn socket_mode_needs_the_app_token_and_not_the_signing_secret() {
        let socket = |extra: &[(&str, &str)]| {
            let mut env = env_from([
                ("SLACKOPS_SLACK__BOT_TOKEN", "xoxb-1-2-3"),
                ("SLACKOPS_SLACK__MODE", "socket"),
            ]);
            env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            Settings::load(&ConfigSource { file: None, env })
        };
        let err = socket(&[]).unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, vec!["slack.app_token"], "{err}");
        let s = socket(&[("SLACKOPS_SLACK__APP_TOKEN", "xapp-1-A1-2-abc")]).expect("valid");
        assert_eq!(s.slack.mode, SlackMode::Socket);
        assert_eq!(s.slack.socket_connections, 2);
        assert_eq!(format!("{:?}", s.slack.app_token), "[redacted]");
        let err = socket(&[
            ("SLACKOPS_SLACK__APP_TOKEN", "xoxb-not-an-app-token"),
            ("SLACKOPS_SLACK__SOCKET_CONNECTIONS", "0"),
        ])
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("slack.app_token") && text.contains("slack.socket_connections"));
        assert!(!text.contains("xoxb-not-an-app-token"), "{text}");
        // Over HTTP the signing secret stays required and the app token is ignored.
        let mut env = env_from([("SLACKOPS_SLACK__BOT_TOKEN", "xoxb-1-2-3")]);
        env.push(("SLACKOPS_SLACK__APP_TOKEN".into(), "whatever".into()));
        let err = Settings::load(&ConfigSource { file: None, env }).unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, vec!["slack.signing_secret"], "{err}");
    }

    #[test]
    fn an_empty_file_path_in_the_environment_unsets_a_file_key() {
        // components/socket-mode unsets base/slackops.yaml's signing_secret_file this way.
        let dir =
            std::env::temp_dir().join(format!("slackops-cfg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("slackops.yaml");
        std::fs::write(
            &file,
            "slack:\n  signing_secret_file: /nonexistent/signing\n",
        )
        .unwrap();
        let env = env_from([
            ("SLACKOPS_SLACK__BOT_TOKEN", "xoxb-1-2-3"),
            ("SLACKOPS_SLACK__MODE", "socket"),
            ("SLACKOPS_SLACK__APP_TOKEN", "xapp-1-A1-2-abc"),
            ("SLACKOPS_SLACK__SIGNING_SECRET_FILE", ""),
        ]);
        let s = Settings::load(&ConfigSource {
            file: Some(file),
            env,
        })
        .expect("the file key is unset, not read");
        assert!(s.slack.signing_secret.is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }
}
