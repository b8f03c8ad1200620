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

    fn alert_url(&self, segments: &[&str]) -> Result<Url, ProviderError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|_| ProviderError::NotConfigured("oncall.opsgenie.base_url".into()))?
            .pop_if_empty()
            .extend(["v2", "alerts"])
            .extend(segments);
        Ok(url)
    }

    /// An alert as it is now (`GET /v2/alerts/{id}`): `data.status` is `open` or `closed`,
    /// `data.acknowledged` a boolean (reference pager-incidents.md §B2).
    pub async fn alert(&self, id: &str) -> Result<Value, ProviderError> {
        let url = self.alert_url(&[id])?;
        let auth = format!("GenieKey {}", self.token.expose());
        let v = self
            .http
            .get_json(NAME, |c| {
                c.get(url.clone())
                    .query(&[("identifierType", "id")])
                    .header("authorization", &auth)
            })
            .await?;
        v.get("data").cloned().ok_or(ProviderError::Decode {
            provider: NAME,
            message: "no data in the answer".into(),
        })
    }

    /// `POST /v2/alerts/{id}/acknowledge` or `/close` with the person in `user` (the only place
    /// the acting person goes). Opsgenie answers 202 and decides later: the `requestId` to
    /// follow with [`Opsgenie::request_status`] (§B2 "Asynchronous processing").
    pub async fn alert_action(
        &self,
        id: &str,
        action: &str,
        user: &str,
        note: &str,
    ) -> Result<String, ProviderError> {
        let url = self.alert_url(&[id, action])?;
        let auth = format!("GenieKey {}", self.token.expose());
        let body = serde_json::json!({"user": user, "source": "slackops", "note": note});
        let (_, v) = self
            .http
            .send_once(NAME, |c| {
                c.post(url.clone())
                    .query(&[("identifierType", "id")])
                    .header("authorization", &auth)
                    .json(&body)
            })
            .await?;
        v.get("requestId")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or(ProviderError::Decode {
                provider: NAME,
                message: "no requestId in the answer".into(),
            })
    }

    /// What became of an accepted request: `None` while Opsgenie has not processed it (it
    /// answers 404 until then), else whether it succeeded and Opsgenie's status text.
    pub async fn request_status(
        &self,
        request_id: &str,
    ) -> Result<Option<(bool, String)>, ProviderError> {
        let url = self.alert_url(&["requests", request_id])?;
        let auth = format!("GenieKey {}", self.token.expose());
        let v = match self
            .http
            .get_json(NAME, |c| c.get(url.clone()).header("authorization", &auth))
            .await
        {
            Err(ProviderError::Refused { status: 404, .. }) => return Ok(None),
            other => other?,
        };
        let data = v.get("data").cloned().unwrap_or(Value::Null);
        let ok = data
            .get("isSuccess")
            .or_else(|| data.get("success"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let status = data
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect();
        Ok(Some((ok, status)))
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
