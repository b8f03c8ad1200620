//! Opsgenie who-is-on-call (reference/oncall-and-announcements.md §D "Opsgenie"):
//! `GET /v2/schedules/{id}/on-calls?flat=true&date=…` with `Authorization: GenieKey …`, on the US
//! (`api.opsgenie.com`) or EU (`api.eu.opsgenie.com`) host. With `flat=true` the answer lists the
//! recipients' usernames, which are their emails. It says who is on call at one instant and not
//! when shifts start or end, so a window is read as two instants: its start and its end.

use async_trait::async_trait;
use serde_json::Value;
use url::Url;

use super::{Http, Provider, ProviderError, iso};
use crate::config::Secret;
use crate::oncall::config::{OpsgenieSettings, SourceSettings};
use crate::oncall::{Millis, Person, Shift};

const NAME: &str = "opsgenie";

pub struct Opsgenie {
    base: Url,
    token: Secret,
    http: Http,
}

impl Opsgenie {
    pub fn new(settings: &OpsgenieSettings, http: Http) -> Self {
        Self {
            base: settings.url(),
            token: settings.token.clone(),
            http,
        }
    }

    async fn at(
        &self,
        schedule: &str,
        by_name: bool,
        at: Millis,
    ) -> Result<Vec<String>, ProviderError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|_| ProviderError::NotConfigured("oncall.opsgenie.base_url".into()))?
            .pop_if_empty()
            .extend(["v2", "schedules", schedule, "on-calls"]);
        let auth = format!("GenieKey {}", self.token.expose());
        let query = [
            (
                "scheduleIdentifierType",
                if by_name { "name" } else { "id" }.to_string(),
            ),
            ("flat", "true".to_string()),
            // reqwest encodes `+` as %2B, as Opsgenie asks.
            ("date", iso(at)),
        ];
        let v = self
            .http
            .get_json(NAME, |c| {
                c.get(url.clone())
                    .query(&query)
                    .header("authorization", &auth)
            })
            .await?;
        let list = v
            .pointer("/data/onCallRecipients")
            .and_then(Value::as_array)
            .ok_or_else(|| ProviderError::Decode {
                provider: NAME,
                message: "no data.onCallRecipients".into(),
            })?;
        Ok(list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect())
    }
}

#[async_trait]
impl Provider for Opsgenie {
    async fn shifts(
        &self,
        source: &SourceSettings,
        from: Millis,
        until: Millis,
    ) -> Result<Vec<Shift>, ProviderError> {
        let mut shifts: Vec<Shift> = Vec::new();
        for schedule in &source.schedules {
            let now = self.at(schedule, source.by_name, from).await?;
            for r in &now {
                shifts.push(shift(r, None));
            }
            if until > from {
                for r in self.at(schedule, source.by_name, until).await? {
                    if !now.contains(&r) {
                        shifts.push(shift(&r, Some(until)));
                    }
                }
            }
        }
        Ok(shifts)
    }

    fn knows_shift_times(&self) -> bool {
        false
    }
}

fn shift(recipient: &str, start: Option<Millis>) -> Shift {
    Shift {
        person: Person {
            id: recipient.to_string(),
            email: recipient.contains('@').then(|| recipient.to_string()),
            slack_id: None,
            name: None,
        },
        start,
        end: None,
    }
}
