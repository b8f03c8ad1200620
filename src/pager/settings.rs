//! The `pager` configuration section: how each paging product's webhook authenticates, where an
//! incident is posted and who may acknowledge or resolve it from Slack.
//!
//! Owned by the pager feature and composed into `crate::config::Settings`; it imports only the
//! shared primitives. The provider API credentials are the on-call section's, and the systems a
//! route names come from the announcements catalogue: those cross-section checks live in
//! `config.rs`, which sees every section.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::principals::Principals;
use crate::secret::Secret;
use crate::settings_check::ConfigProblem;

/// Pager incidents in Slack.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PagerSettings {
    pub pagerduty: PagerDutyWebhookSettings,
    pub opsgenie: OpsgenieWebhookSettings,
    pub grafana_oncall: GrafanaOncallWebhookSettings,
    /// Where an incident is posted and which on-call group may act on it.
    pub routes: Vec<PagerRoute>,
    /// Who may act on any routed incident besides the route's on-call group.
    pub responders: Principals,
}

/// `POST /pager/pagerduty`: V3 webhook subscriptions.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PagerDutyWebhookSettings {
    /// The subscriptions' signing secrets; several while one is rotated. `webhook_secrets_file`
    /// holds one per line.
    pub webhook_secrets: SecretList,
}

/// `POST /pager/opsgenie`: the webhook integration, sending `Authorization: Bearer <token>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpsgenieWebhookSettings {
    pub webhook_token: Secret,
    /// How often an accepted (202) acknowledge or close is checked until Opsgenie processed it.
    pub request_check_ms: u64,
    /// How long to keep checking before telling the person the outcome is unknown.
    pub request_check_secs: u64,
}

impl Default for OpsgenieWebhookSettings {
    fn default() -> Self {
        Self {
            webhook_token: Secret::default(),
            request_check_ms: 1000,
            request_check_secs: 60,
        }
    }
}

/// `POST /pager/grafana-oncall`: outgoing webhooks, `Authorization: <token>` verbatim.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct GrafanaOncallWebhookSettings {
    pub webhook_token: Secret,
}

/// Which product an incident comes from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "snake_case")]
pub enum PagerProvider {
    #[default]
    Pagerduty,
    Opsgenie,
    GrafanaOncall,
}

impl PagerProvider {
    pub const ALL: [PagerProvider; 3] = [
        PagerProvider::Pagerduty,
        PagerProvider::Opsgenie,
        PagerProvider::GrafanaOncall,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            PagerProvider::Pagerduty => "pagerduty",
            PagerProvider::Opsgenie => "opsgenie",
            PagerProvider::GrafanaOncall => "grafana_oncall",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
    /// The product's name for people.
    pub fn label(self) -> &'static str {
        match self {
            PagerProvider::Pagerduty => "PagerDuty",
            PagerProvider::Opsgenie => "Opsgenie",
            PagerProvider::GrafanaOncall => "Grafana OnCall",
        }
    }
}

/// Where an incident of a service is posted.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PagerRoute {
    pub provider: PagerProvider,
    /// ID or name of the PagerDuty service, Opsgenie team or Grafana OnCall integration; `*`
    /// matches every one of the provider's.
    pub service: String,
    /// Channel ID the incident is posted to.
    pub channel: String,
    /// Slack user group (handle or ID) mentioned on the post; its members may act.
    pub oncall_group: Option<String>,
    /// Catalogue system ids the Announce outage form starts with.
    pub systems: Vec<String>,
}

impl PagerRoute {
    /// Whether this route serves an incident whose service is known by any of `names` (IDs and
    /// names, compared without case).
    pub fn serves(&self, provider: PagerProvider, names: &[String]) -> bool {
        self.provider == provider
            && (self.service == "*" || names.iter().any(|n| n.eq_ignore_ascii_case(&self.service)))
    }
}

impl PagerSettings {
    /// The first route serving an incident.
    pub fn route_for(&self, provider: PagerProvider, names: &[String]) -> Option<&PagerRoute> {
        self.routes.iter().find(|r| r.serves(provider, names))
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
        for (i, r) in self.routes.iter().enumerate() {
            if r.service.trim().is_empty() {
                bad(
                    format!("pager.routes[{i}].service"),
                    "required (a service, team or integration ID or name, or *)",
                );
            }
            if r.channel.trim().is_empty() {
                bad(
                    format!("pager.routes[{i}].channel"),
                    "required (a channel ID such as C0123456)",
                );
            }
        }
        let uses = |p: PagerProvider| self.routes.iter().any(|r| r.provider == p);
        if uses(PagerProvider::Pagerduty) && self.pagerduty.webhook_secrets.is_empty() {
            bad(
                "pager.pagerduty.webhook_secrets".into(),
                "required by the PagerDuty routes: the webhook subscription's signing secret",
            );
        }
        if uses(PagerProvider::Opsgenie) && self.opsgenie.webhook_token.expose().len() < 16 {
            bad(
                "pager.opsgenie.webhook_token".into(),
                "required by the Opsgenie routes, at least 16 characters",
            );
        }
        if uses(PagerProvider::GrafanaOncall)
            && self.grafana_oncall.webhook_token.expose().len() < 16
        {
            bad(
                "pager.grafana_oncall.webhook_token".into(),
                "required by the Grafana OnCall routes, at least 16 characters",
            );
        }
        if self.opsgenie.request_check_ms < 10 {
            bad(
                "pager.opsgenie.request_check_ms".into(),
                "must be at least 10",
            );
        }
        p
    }
}

/// A list of secrets, given as a list or as text with one secret per line (what a
/// `webhook_secrets_file` holds). Blank lines are skipped.
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
pub struct SecretList(pub Vec<Secret>);

impl SecretList {
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Secret::is_empty)
    }
    pub fn iter(&self) -> impl Iterator<Item = &Secret> {
        self.0.iter().filter(|s| !s.is_empty())
    }
}

impl fmt::Debug for SecretList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{} secret(s), redacted]", self.iter().count())
    }
}

impl<'de> Deserialize<'de> for SecretList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            List(Vec<Secret>),
            Text(Secret),
        }
        Ok(match Form::deserialize(d)? {
            Form::List(v) => SecretList(v),
            Form::Text(t) => SecretList(
                t.expose()
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(Secret::new)
                    .collect(),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_as_a_list_or_one_per_line() {
        let l: SecretList = serde_json::from_str(r#"["a","b"]"#).expect("list");
        assert_eq!(l.iter().count(), 2);
        let t: SecretList = serde_json::from_str("\"first\\n\\nsecond\\r\\n\"").expect("text");
        let got: Vec<&str> = t.iter().map(Secret::expose).collect();
        assert_eq!(got, ["first", "second"]);
        assert!(!format!("{t:?}").contains("first"));
    }

    #[test]
    fn a_route_matches_its_provider_and_service_by_id_or_name() {
        let r = PagerRoute {
            provider: PagerProvider::Pagerduty,
            service: "API Service".into(),
            channel: "C1".into(),
            ..Default::default()
        };
        let names = vec!["PF9KMXH".to_string(), "api service".to_string()];
        assert!(r.serves(PagerProvider::Pagerduty, &names));
        assert!(!r.serves(PagerProvider::Opsgenie, &names));
        assert!(!r.serves(PagerProvider::Pagerduty, &["other".to_string()]));
    }

    #[test]
    fn every_problem_names_its_key() {
        let s = PagerSettings {
            routes: vec![
                PagerRoute {
                    provider: PagerProvider::Pagerduty,
                    ..Default::default()
                },
                PagerRoute {
                    provider: PagerProvider::Opsgenie,
                    service: "ops".into(),
                    channel: "C1".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let keys: Vec<String> = s.problems().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "pager.routes[0].service",
                "pager.routes[0].channel",
                "pager.pagerduty.webhook_secrets",
                "pager.opsgenie.webhook_token"
            ]
        );
    }
}
