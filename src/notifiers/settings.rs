//! The `notifiers` configuration section: the webhooks told of every outage and maintenance
//! change, and the event kinds they may subscribe to.
//!
//! Owned by the notifiers feature and composed into [`crate::config::Settings`]; it imports only
//! the shared primitives, never a handler or the whole configuration. A webhook's URL and secret
//! are never printed: its `Debug` shows the URL without path or query.

use std::fmt;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::secret::Secret;
use crate::settings_check::ConfigProblem;

/// Every event kind a webhook can receive (and filter on in `notifiers.webhooks[].events`).
pub const EVENT_KINDS: &[&str] = &[
    "outage.announced",
    "outage.updated",
    "outage.reassigned",
    "outage.resolved",
    "outage.reopened",
    "outage.postmortem",
    "maintenance.scheduled",
    "maintenance.updated",
    "maintenance.started",
    "maintenance.ended",
    "maintenance.canceled",
];

/// Notifiers told of every outage and maintenance change: webhooks and Grafana annotations.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifierSettings {
    /// Each webhook receives one JSON POST per change it subscribes to.
    pub webhooks: Vec<WebhookSettings>,
    /// Grafana instances that get annotations for outages and maintenance windows.
    pub grafana: Vec<GrafanaSettings>,
    /// Time allowed for one delivery attempt (connect and answer).
    pub timeout_ms: u64,
    /// Attempts before a delivery is kept as failed (retried with the job queue's backoff).
    pub max_attempts: u32,
}

impl Default for NotifierSettings {
    fn default() -> Self {
        Self {
            webhooks: Vec::new(),
            grafana: Vec::new(),
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

/// One Grafana that gets annotations (`notifiers.grafana[]`).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct GrafanaSettings {
    /// Grafana's base URL (`https://grafana.example.com`).
    pub url: Option<Url>,
    /// A service account token (`glsa_…`), sent as a Bearer token.
    pub token: Secret,
    /// Tags added to every annotation, next to the systems and the severity.
    pub tags: Vec<String>,
    /// Annotate this dashboard only; unset: organization annotations, shown on every dashboard
    /// whose annotation query filters by their tags.
    pub dashboard_uid: Option<String>,
}

impl GrafanaSettings {
    /// The base URL without a trailing slash: how stored annotation ids name their Grafana.
    pub fn target(&self) -> String {
        self.url
            .as_ref()
            .map(|u| u.as_str().trim_end_matches('/').to_string())
            .unwrap_or_default()
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

impl NotifierSettings {
    /// Problems in this section, each naming its key.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        let mut bad = |key: String, message: &str| {
            p.push(ConfigProblem {
                key,
                message: message.into(),
            })
        };
        let n = self;
        if !(100..=60_000).contains(&n.timeout_ms) {
            bad(
                "notifiers.timeout_ms".into(),
                "must be between 100 and 60000",
            );
        }
        if n.max_attempts == 0 {
            bad("notifiers.max_attempts".into(), "must be at least 1");
        }
        for (i, g) in n.grafana.iter().enumerate() {
            let key = |k: &str| format!("notifiers.grafana[{i}].{k}");
            match &g.url {
                None => bad(key("url"), "required (Grafana's base URL)"),
                Some(u) if !matches!(u.scheme(), "http" | "https") => {
                    bad(key("url"), "must be an http(s) URL")
                }
                Some(_) => {}
            }
            if g.token.is_empty() {
                bad(
                    key("token"),
                    "required (a service account token; token_file works too)",
                );
            }
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
                let known = EVENT_KINDS.iter().any(|k| one.wants(k));
                if !known {
                    bad(
                        key("events"),
                        &format!(
                            "unknown event {e:?}; use one of {}, or a prefix such as outage.*",
                            EVENT_KINDS.join(", ")
                        ),
                    );
                }
            }
        }
        p
    }
}
