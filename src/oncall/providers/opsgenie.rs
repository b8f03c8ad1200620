//! Opsgenie who-is-on-call (reference/oncall-and-announcements.md §D "Opsgenie"):
//! `GET /v2/schedules/{id}/on-calls?flat=true&date=…` with `Authorization: GenieKey …`, on the US
//! (`api.opsgenie.com`) or EU (`api.eu.opsgenie.com`) host. With `flat=true` the answer lists the
//! recipients' usernames, which are their emails. It says who is on call at one instant and not
//! when shifts start or end, so a window is read as two instants: its start and its end. `/oncall`
//! asks `next-on-calls` for who is next (Opsgenie does not say when).

use async_trait::async_trait;
use serde_json::Value;
use url::Url;

use super::{Http, Provider, ProviderError, iso};
use crate::clock::Millis;
use crate::oncall::model::{Person, Shift};
use crate::oncall::settings::{OpsgenieSettings, SourceSettings};
use crate::secret::Secret;

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
        self.recipients(schedule, by_name, at, "on-calls", "/data/onCallRecipients")
            .await
    }

    /// `endpoint` is `on-calls` or `next-on-calls`; `pointer` names the flat list in the answer.
    async fn recipients(
        &self,
        schedule: &str,
        by_name: bool,
        at: Millis,
        endpoint: &str,
        pointer: &str,
    ) -> Result<Vec<String>, ProviderError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|_| ProviderError::NotConfigured("oncall.opsgenie.base_url".into()))?
            .pop_if_empty()
            .extend(["v2", "schedules", schedule, endpoint]);
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
            .pointer(pointer)
            .and_then(Value::as_array)
            .ok_or_else(|| ProviderError::Decode {
                provider: NAME,
                message: format!("no {pointer}"),
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

    /// `next-on-calls` with `flat=true`: the people of the next shift (without its time).
    async fn next(
        &self,
        source: &SourceSettings,
        after: Millis,
    ) -> Result<Option<Vec<Person>>, ProviderError> {
        let mut people = Vec::new();
        for schedule in &source.schedules {
            for r in self
                .recipients(
                    schedule,
                    source.by_name,
                    after,
                    "next-on-calls",
                    "/data/nextOnCallRecipients",
                )
                .await?
            {
                let p = shift(&r, None).person;
                if !people.contains(&p) {
                    people.push(p);
                }
            }
        }
        Ok(Some(people))
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
