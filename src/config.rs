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
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Yaml};
use figment::value::{Dict, Value};
use serde::{Deserialize, Serialize};
use url::Url;

// The shared primitives live below every feature; they are re-exported here for users outside
// the crate (tests, tools). Code inside the crate imports them from their own modules.
pub use crate::principals::Principals;
pub use crate::secret::Secret;
pub use crate::settings_check::ConfigProblem;

// Each feature owns its section's type (`src/<feature>/settings.rs`); this module composes them.
// They are re-exported here for users outside the crate, under the names they always had.
pub use crate::announcements::settings::{
    AlertMode, AlertRule, AnnouncementsSettings, AudienceEntry, SystemEntry,
};
pub use crate::approvals::settings::{ApprovalRoute, ApprovalsSettings, ApproverRule, OnExpiry};
pub use crate::maintenance::settings::MaintenanceSettings;
pub use crate::notifiers::settings::{NotifierSettings, WebhookSettings};
pub use crate::oncall::settings::OncallSettings;
pub use crate::pager::settings::{PagerProvider, PagerRoute, PagerSettings, SecretList};
pub use crate::pipelines::settings::{PipelineRule, PipelinesSettings};
pub use crate::status::settings::StatusSettings;

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
    pub oncall: OncallSettings,
    pub pager: PagerSettings,
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

impl SlackSettings {
    /// The bot token (the signing secret or app token depend on the mode: [`Self::mode_problems`]).
    fn credential_problems(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        let mut bad = |key: &str, message: &str| {
            p.push(ConfigProblem {
                key: key.into(),
                message: message.into(),
            })
        };
        if self.bot_token.is_empty() {
            bad(
                "slack.bot_token",
                "required (env SLACKOPS_SLACK__BOT_TOKEN or slack.bot_token_file): the xoxb- bot token",
            );
        } else if !self.bot_token.expose().starts_with("xox") {
            bad("slack.bot_token", "must be a Slack token (xoxb-…)");
        }
        p
    }

    /// The ack deadline, the body limit and the posting rate.
    fn limit_problems(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        let mut bad = |key: &str, message: &str| {
            p.push(ConfigProblem {
                key: key.into(),
                message: message.into(),
            })
        };
        if !(100..=2900).contains(&self.ack_deadline_ms) {
            bad(
                "slack.ack_deadline_ms",
                "must be between 100 and 2900: Slack gives up after 3000 ms",
            );
        }
        if self.max_body_bytes < 1024 {
            bad("slack.max_body_bytes", "must be at least 1024");
        }
        if self.post_rate_per_channel <= 0.0 {
            bad("slack.post_rate_per_channel", "must be greater than 0");
        }
        p
    }

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

impl DatabaseSettings {
    fn problems(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        let mut bad = |key: &str, message: &str| {
            p.push(ConfigProblem {
                key: key.into(),
                message: message.into(),
            })
        };
        let db = self.url.expose();
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            bad("database.url", "must start with sqlite: or postgres://");
        }
        if self.max_connections == 0 {
            bad("database.max_connections", "must be at least 1");
        }
        p
    }
}

impl GateAuthSettings {
    /// What each kind of Gate authentication requires.
    fn problems(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        let mut bad = |key: &str, message: &str| {
            p.push(ConfigProblem {
                key: key.into(),
                message: message.into(),
            })
        };
        let auth = self;
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
        p
    }
}

impl JobSettings {
    fn problems(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        let mut bad = |key: &str, message: &str| {
            p.push(ConfigProblem {
                key: key.into(),
                message: message.into(),
            })
        };
        if self.concurrency == 0 {
            bad("jobs.concurrency", "must be at least 1");
        }
        if self.max_attempts == 0 {
            bad("jobs.max_attempts", "must be at least 1");
        }
        if self.lease_secs < 5 {
            bad("jobs.lease_secs", "must be at least 5");
        }
        p
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
        let mut merged = merged(source)?;
        let mut problems = Vec::new();
        resolve_file_keys(&mut merged, "", &mut problems);
        problems.extend(unknown_sections(&merged));

        // Each section is read on its own, so a type error in one does not hide the problems of
        // the others; a section that fails is replaced by its defaults for the checks that follow.
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
            pager: read.section("pager"),
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
        p.extend(self.slack.mode_problems());
        p.extend(self.slack.credential_problems());
        p.extend(self.database.problems());
        p.extend(self.slack.limit_problems());
        p.extend(self.spinnaker.auth.problems());
        p.extend(self.jobs.problems());
        p.extend(self.approvals.problems());
        p.extend(self.pipelines.problems());
        if self.api.tokens.iter().any(|t| t.expose().len() < 16) {
            p.push(ConfigProblem {
                key: "api.tokens".into(),
                message: "each token must be at least 16 characters".into(),
            });
        }
        p.extend(self.announcements.problems());
        p.extend(self.oncall.problems());
        p.extend(self.status.problems());
        p.extend(self.maintenance.problems());
        p.extend(self.notifiers.problems());
        p.extend(self.pager.problems());
        p.extend(self.pager_problems());
        p
    }

    /// The pager section's checks that need other sections: each routed provider's API
    /// credentials are the on-call section's, and a route's systems come from the announcements
    /// catalogue.
    fn pager_problems(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        let oncall = &self.oncall;
        for (i, r) in self.pager.routes.iter().enumerate() {
            let missing = match r.provider {
                PagerProvider::Pagerduty => oncall
                    .pagerduty
                    .token
                    .is_empty()
                    .then_some("oncall.pagerduty.token"),
                PagerProvider::Opsgenie => oncall
                    .opsgenie
                    .token
                    .is_empty()
                    .then_some("oncall.opsgenie.token"),
                PagerProvider::GrafanaOncall => (oncall.grafana.token.is_empty()
                    || oncall.grafana.base_url.is_none())
                .then_some("oncall.grafana.base_url and oncall.grafana.token"),
            };
            if let Some(keys) = missing {
                p.push(ConfigProblem {
                    key: format!("pager.routes[{i}].provider"),
                    message: format!(
                        "{} incidents are acknowledged through its API: set {keys} (a token with write access)",
                        r.provider.label()
                    ),
                });
            }
            for (j, system) in r.systems.iter().enumerate() {
                if !self.announcements.systems.iter().any(|s| &s.id == system) {
                    p.push(ConfigProblem {
                        key: format!("pager.routes[{i}].systems[{j}]"),
                        message: format!(
                            "`{system}` is not in the systems catalogue (announcements.systems)"
                        ),
                    });
                }
            }
        }
        p
    }

    pub fn ack_deadline(&self) -> Duration {
        Duration::from_millis(self.slack.ack_deadline_ms)
    }
}

/// The file and the environment merged, before any section is read.
fn merged(source: &ConfigSource) -> Result<Dict, ConfigError> {
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

    figment.extract().map_err(|e| ConfigError {
        problems: figment_problems(e),
    })
}

/// Top-level keys that are not a section.
fn unknown_sections(merged: &Dict) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
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
        "pager",
    ];
    for key in merged.keys() {
        if !known.contains(&key.as_str()) {
            problems.push(ConfigProblem {
                key: key.clone(),
                message: format!("unknown section; expected one of {}", known.join(", ")),
            });
        }
    }
    problems
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
    if settings.status.smtp.enabled()
        && let Some(smtp) = v.pointer_mut("/status/smtp")
    {
        smtp["url"] = serde_json::Value::String(settings.status.smtp.display_url());
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
        assert_eq!(s.status.uptime_days, 90, "the documented default");
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
        env.push(("SLACKOPS_STATUS__UPTIME_DAYS".into(), "400".into()));
        let bad = dir.join("bad.yaml");
        std::fs::write(
            &bad,
            "notifiers:\n  webhooks:\n    - name: a\n      events: [outage.exploded]\n    - name: a\n      url: ftp://x\n  grafana:\n    - tags: [x]\n",
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
            "status.uptime_days",
            "notifiers.webhooks[0].url",
            "notifiers.webhooks[0].events",
            "notifiers.webhooks[1].name",
            "notifiers.webhooks[1].url",
            "notifiers.grafana[0].url",
            "notifiers.grafana[0].token",
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

    // The `oncall` section, loaded through the whole configuration.

    fn base_env() -> Vec<(String, String)> {
        env_from([
            ("SLACKOPS_SLACK__SIGNING_SECRET", "s3cret-signing"),
            ("SLACKOPS_SLACK__BOT_TOKEN", "xoxb-1-2-3"),
        ])
    }

    #[test]
    fn status_email_subscriptions_load_from_the_environment_and_never_show_credentials() {
        let mut env = base_env();
        env.push((
            "SLACKOPS_STATUS__SMTP__URL".into(),
            "smtps://mailer:hunter2@smtp.example.com:465".into(),
        ));
        env.push((
            "SLACKOPS_STATUS__SMTP__FROM".into(),
            "Acme Status <status@example.com>".into(),
        ));
        let err = load_yaml("{}\n", env.clone()).unwrap_err();
        assert!(err.contains("status.subscriptions.secret"), "{err}");
        assert!(err.contains("status.public_url"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        env.push((
            "SLACKOPS_STATUS__SUBSCRIPTIONS__SECRET".into(),
            "0123456789abcdef0123456789abcdef".into(),
        ));
        env.push((
            "SLACKOPS_STATUS__PUBLIC_URL".into(),
            "https://status.example.com/status".into(),
        ));
        let s = load_yaml("{}\n", env).unwrap();
        assert!(s.status.smtp.enabled());
        assert_eq!(s.status.smtp.from, "Acme Status <status@example.com>");
        let shown = redacted_view(&s).to_string();
        assert!(
            !shown.contains("hunter2") && !shown.contains("mailer"),
            "{shown}"
        );
        assert!(shown.contains("smtps://smtp.example.com:465"), "{shown}");
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
    }

    fn load_yaml(yaml: &str, env: Vec<(String, String)>) -> Result<Settings, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slackops.yaml");
        std::fs::write(&path, yaml).unwrap();
        Settings::load(&ConfigSource {
            file: Some(path),
            env,
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn the_documented_example_loads_and_tokens_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("pd");
        std::fs::write(&token, "pd-secret-token\n").unwrap();
        let yaml = format!(
            r#"
oncall:
  ops_channel: C0OPSALERTS
  pagerduty:
    token_file: {}
  rotas:
    web:
      people: [alice@example.com, bob@example.com]
      every: weekly
      weekday: monday
      handoff: "09:00"
      start: "2026-11-02"
  groups:
    - handle: platform-oncall
      channel: C0PLATFORM
      handover_minutes: 15
      ignore: [noop@example.com]
      sources:
        - provider: pagerduty
          schedules: [PC5BGL2, PR892VA]
    - handle: web-oncall
      when_empty: fallback
      fallback: [web-lead@example.com]
      sources:
        - provider: static
          rota: web
"#,
            token.display()
        );
        let s = load_yaml(&yaml, base_env()).expect("valid");
        assert_eq!(s.oncall.pagerduty.token.expose(), "pd-secret-token");
        assert_eq!(s.oncall.groups.len(), 2);
        assert_eq!(s.oncall.groups[0].handover_minutes, 15);
        assert_eq!(s.oncall.interval_secs, 300);
        let printed = crate::config::redacted_view(&s).to_string();
        assert!(!printed.contains("pd-secret-token"));
    }

    #[test]
    fn shift_reminders_are_set_in_minutes_up_to_a_week() {
        let mut env = base_env();
        env.push((
            "SLACKOPS_ONCALL__REMIND_BEFORE_SHIFT_MINS".into(),
            "60".into(),
        ));
        let s = Settings::load(&ConfigSource { file: None, env }).expect("valid");
        assert_eq!(s.oncall.remind_before_shift_mins, 60);
        assert_eq!(s.oncall.remind_ms(), 3_600_000);
        assert_eq!(Settings::default().oncall.remind_before_shift_mins, 0);
        let err =
            load_yaml("oncall:\n  remind_before_shift_mins: 10081\n", base_env()).unwrap_err();
        assert!(err.contains("oncall.remind_before_shift_mins"), "{err}");
    }

    #[test]
    fn groups_can_be_given_in_the_environment() {
        let mut env = base_env();
        env.push(("SLACKOPS_ONCALL__INTERVAL_SECS".into(), "60".into()));
        env.push(("SLACKOPS_ONCALL__OPSGENIE__TOKEN".into(), "og-key".into()));
        env.push((
            "SLACKOPS_ONCALL__GROUPS".into(),
            r#"[{handle="ops-oncall",sources=[{provider="opsgenie",schedules=["ops"],by_name=true}]}]"#
                .into(),
        ));
        let s = Settings::load(&ConfigSource { file: None, env }).expect("valid");
        assert_eq!(s.oncall.interval_secs, 60);
        assert_eq!(s.oncall.groups[0].handle, "ops-oncall");
        assert!(s.oncall.groups[0].sources[0].by_name);
    }

    #[test]
    fn every_oncall_problem_is_named() {
        let yaml = r#"
oncall:
  concurrency: 0
  rotas:
    bad:
      people: []
      handoff: "9am"
  groups:
    - handle: a
      sources:
        - provider: pagerduty
          schedules: [P1]
        - provider: static
          rota: nope
    - handle: a
      when_empty: fallback
      sources:
        - provider: grafana
          schedules: [S1]
"#;
        let err = load_yaml(yaml, base_env()).unwrap_err();
        for key in [
            "oncall.concurrency",
            "oncall.rotas.bad",
            "oncall.pagerduty.token",
            "oncall.groups[0].sources[1].rota",
            "oncall.groups[1].handle",
            "oncall.groups[1].fallback",
            "oncall.grafana.base_url",
            "oncall.grafana.token",
        ] {
            assert!(err.contains(key), "{key} missing from: {err}");
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

    // The `pager` section, loaded through the whole configuration with its cross-section checks.
    #[test]
    fn pager_secrets_come_one_per_line_and_routes_are_checked_against_other_sections() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("pd-secrets");
        std::fs::write(&secrets, "old-secret\nnew-secret\n").unwrap();
        let yaml = format!(
            r#"
oncall:
  pagerduty:
    token: pd-write-token
announcements:
  systems: [{{id: checkout, name: Checkout}}]
pager:
  pagerduty:
    webhook_secrets_file: {}
  routes:
    - {{provider: pagerduty, service: Checkout API, channel: C0PAGES, oncall_group: S0ONCALL, systems: [checkout]}}
  responders:
    groups: [sre]
"#,
            secrets.display()
        );
        let s = load_yaml(&yaml, base_env()).expect("valid");
        let got: Vec<&str> = s
            .pager
            .pagerduty
            .webhook_secrets
            .iter()
            .map(Secret::expose)
            .collect();
        assert_eq!(got, ["old-secret", "new-secret"]);
        let printed = crate::config::redacted_view(&s).to_string();
        assert!(!printed.contains("new-secret"), "{printed}");

        let bad = r#"
pager:
  opsgenie:
    webhook_token: og-webhook-token-0123456789
  routes:
    - {provider: opsgenie, service: ops, channel: C0PAGES, systems: [nope]}
"#;
        let err = load_yaml(bad, base_env()).unwrap_err();
        assert!(
            err.contains("pager.routes[0].provider") && err.contains("oncall.opsgenie.token"),
            "{err}"
        );
        assert!(err.contains("pager.routes[0].systems[0]"), "{err}");
        let mut env = base_env();
        env.push((
            "SLACKOPS_PAGER__GRAFANA_ONCALL__WEBHOOK_TOKEN".into(),
            "gf-token-0123456789abcdef".into(),
        ));
        let s = Settings::load(&ConfigSource { file: None, env }).expect("valid");
        assert_eq!(
            s.pager.grafana_oncall.webhook_token.expose(),
            "gf-token-0123456789abcdef"
        );
    }
}
