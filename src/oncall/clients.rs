//! The on-call feature's long-lived parts, held in [`crate::state::AppState`]: the provider
//! clients (built once, each with its `base_url` and token) and the email → Slack user ID cache.
//!
//! It sits below the feature's handlers: it imports the settings, the providers and the Slack
//! client, never the state or a handler, so the shared state can hold it.

use std::sync::Arc;
use std::time::Duration;

use super::model::Person;
use super::providers;
use super::settings::OncallSettings;
use crate::slack::api::{SlackApi, SlackError};

/// The feature's long-lived parts: provider clients and the email → Slack ID cache.
pub struct Oncall {
    pub providers: providers::Providers,
    lookups: moka::future::Cache<String, Option<String>>,
}

impl std::fmt::Debug for Oncall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oncall").finish_non_exhaustive()
    }
}

/// Found emails live `found`, unknown ones `missing` (people get added to Slack).
struct LookupExpiry {
    found: Duration,
    missing: Duration,
}

impl moka::Expiry<String, Option<String>> for LookupExpiry {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Option<String>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(if value.is_some() {
            self.found
        } else {
            self.missing
        })
    }
}

impl Oncall {
    pub fn new(settings: &OncallSettings, http: reqwest::Client) -> Arc<Self> {
        let s = settings;
        Arc::new(Self {
            providers: providers::Providers::new(s, http),
            lookups: moka::future::Cache::builder()
                .max_capacity(100_000)
                .expire_after(LookupExpiry {
                    found: Duration::from_secs(s.lookup_cache_secs),
                    missing: Duration::from_secs(s.missing_cache_secs),
                })
                .build(),
        })
    }

    /// The Slack user ID of an email, `None` when no Slack user has it. Concurrent lookups of one
    /// email make one call; answers are cached.
    pub async fn slack_id(
        &self,
        slack: &SlackApi,
        email: &str,
    ) -> Result<Option<String>, Arc<SlackError>> {
        let key = email.trim().to_ascii_lowercase();
        self.lookups
            .try_get_with(key.clone(), async move {
                slack.lookup_by_email(&key).await.map(|u| {
                    u.filter(|u| !u.deleted && !u.is_bot && !u.is_app_user)
                        .map(|u| u.id)
                })
            })
            .await
    }

    /// A provider's person as a Slack user ID: the ID the provider gave, else the one their email
    /// has in Slack ([`Oncall::slack_id`], cached); `None` when neither finds one.
    pub async fn person_id(
        &self,
        slack: &SlackApi,
        p: &Person,
    ) -> Result<Option<String>, Arc<SlackError>> {
        match (&p.slack_id, &p.email) {
            (Some(id), _) => Ok(Some(id.clone())),
            (None, Some(email)) => self.slack_id(slack, email).await,
            (None, None) => Ok(None),
        }
    }
}
