//! Grafana OnCall public API (reference/oncall-and-announcements.md §D "Grafana OnCall public API").
//!
//! `GET /api/v1/schedules/{id}/` gives `on_call_now` (user IDs, overrides applied); for a window
//! ahead (handover, `/oncall`'s "next") `GET /api/v1/schedules/{id}/final_shifts?start_date&end_date`
//! gives the shifts (both dates required; shifts are clipped to the window). Users come from
//! `GET /api/v1/users/{id}/`, which carries the Slack user ID, so no email lookup is needed; they
//! are cached. The token goes in `Authorization` with no scheme.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use url::Url;

use super::{Http, Provider, ProviderError, parse_time};
use crate::clock::Millis;
use crate::oncall::model::{Person, Shift};
use crate::oncall::settings::SourceSettings;
use crate::secret::Secret;

const NAME: &str = "grafana";
const DAY_MS: i64 = 86_400_000;

pub struct Grafana {
    base: Url,
    token: Secret,
    http: Http,
    users: moka::future::Cache<String, Person>,
}

impl Grafana {
    pub fn new(base: &Url, token: &Secret, http: Http, ttl: Duration) -> Self {
        Self {
            base: base.clone(),
            token: token.clone(),
            http,
            users: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl.max(Duration::from_secs(1)))
                .build(),
        }
    }

    async fn get(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Value, ProviderError> {
        let mut url = self.base.clone();
        {
            let mut p = url
                .path_segments_mut()
                .map_err(|_| ProviderError::NotConfigured("oncall.grafana.base_url".into()))?;
            p.pop_if_empty().extend(["api", "v1"]).extend(segments);
            // Object routes end with a slash (`/schedules/{id}/`, `/users/{id}/`); the
            // documented `final_shifts` action does not.
            if segments.last() != Some(&"final_shifts") {
                p.push("");
            }
        }
        let token = self.token.expose().to_string();
        self.http
            .get_json(NAME, |c| {
                c.get(url.clone())
                    .query(query)
                    .header("authorization", &token)
            })
            .await
    }

    fn group_url(&self, id: &str, action: Option<&str>) -> Result<Url, ProviderError> {
        let mut url = self.base.clone();
        {
            let mut p = url
                .path_segments_mut()
                .map_err(|_| ProviderError::NotConfigured("oncall.grafana.base_url".into()))?;
            p.pop_if_empty().extend(["api", "v1", "alert_groups", id]);
            // `GET /alert_groups/{id}/`; actions are documented without the slash.
            match action {
                Some(a) => p.push(a),
                None => p.push(""),
            };
        }
        Ok(url)
    }

    /// An alert group as it is now: `state` is `firing`, `acknowledged`, `resolved` or
    /// `silenced` (reference pager-incidents.md §C2).
    pub async fn alert_group(&self, id: &str) -> Result<Value, ProviderError> {
        let url = self.group_url(id, None)?;
        let token = self.token.expose().to_string();
        self.http
            .get_json(NAME, |c| c.get(url.clone()).header("authorization", &token))
            .await
    }

    /// `POST /api/v1/alert_groups/{id}/acknowledge` or `/resolve`. Grafana OnCall acts as the
    /// token's owner; there is no way to name another person (§C2 "Who it acts as").
    pub async fn alert_group_action(&self, id: &str, action: &str) -> Result<(), ProviderError> {
        let url = self.group_url(id, Some(action))?;
        let token = self.token.expose().to_string();
        self.http
            .send_once(NAME, |c| {
                c.post(url.clone()).header("authorization", &token)
            })
            .await
            .map(|_| ())
    }

    async fn user(&self, id: &str) -> Result<Person, ProviderError> {
        if let Some(p) = self.users.get(id).await {
            return Ok(p);
        }
        let u = self.get(&["users", id], &[]).await?;
        // `slack` is a list of {user_id, team_id} in the reference; accept a single object too.
        let slack = u.get("slack");
        let slack_id = slack
            .and_then(Value::as_array)
            .and_then(|a| a.iter().find_map(|s| s.get("user_id")?.as_str()))
            .or_else(|| slack.and_then(|s| s.get("user_id")).and_then(Value::as_str))
            .map(str::to_owned);
        let person = Person {
            id: id.to_string(),
            email: u.get("email").and_then(Value::as_str).map(str::to_owned),
            slack_id,
            name: u.get("username").and_then(Value::as_str).map(str::to_owned),
        };
        self.users.insert(id.to_string(), person.clone()).await;
        Ok(person)
    }
}

fn date(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

#[async_trait]
impl Provider for Grafana {
    async fn shifts(
        &self,
        source: &SourceSettings,
        from: Millis,
        until: Millis,
    ) -> Result<Vec<Shift>, ProviderError> {
        let mut out = Vec::new();
        for schedule in &source.schedules {
            let s = self.get(&["schedules", schedule.as_str()], &[]).await?;
            let now_ids: Vec<String> = s
                .get("on_call_now")
                .and_then(Value::as_array)
                .ok_or_else(|| ProviderError::Decode {
                    provider: NAME,
                    message: "no on_call_now".into(),
                })?
                .iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect();
            let mut ahead: Vec<(String, Option<Millis>, Option<Millis>)> = Vec::new();
            if until > from {
                let v = self
                    .get(
                        &["schedules", schedule.as_str(), "final_shifts"],
                        &[
                            ("start_date", date(from)),
                            ("end_date", date(until + DAY_MS)),
                        ],
                    )
                    .await?;
                // A single page: a bare list, or `results` of a paginated envelope. Anything
                // else is an answer we do not understand, not "nobody is on call ahead".
                let list = v
                    .as_array()
                    .or_else(|| v.get("results").and_then(Value::as_array))
                    .cloned()
                    .ok_or_else(|| ProviderError::Decode {
                        provider: NAME,
                        message: "final_shifts is neither a list nor has results".into(),
                    })?;
                for e in list {
                    let Some(pk) = e.get("user_pk").and_then(Value::as_str) else {
                        continue;
                    };
                    let start = parse_time(e.get("shift_start"));
                    let end = parse_time(e.get("shift_end"));
                    if start.is_some_and(|s| s > until) || end.is_some_and(|e| e <= from) {
                        continue;
                    }
                    ahead.push((pk.to_string(), start, end));
                }
            }
            for id in &now_ids {
                // End of the running shift, when final_shifts was read.
                let end = ahead
                    .iter()
                    .filter(|(pk, s, _)| pk == id && s.is_none_or(|s| s <= from))
                    .filter_map(|(_, _, e)| *e)
                    .max();
                out.push(Shift {
                    person: self.user(id).await?,
                    start: None,
                    end,
                });
            }
            for (pk, start, end) in ahead {
                if start.is_some_and(|s| s > from) {
                    out.push(Shift {
                        person: self.user(&pk).await?,
                        start,
                        end,
                    });
                }
            }
        }
        Ok(out)
    }
}
