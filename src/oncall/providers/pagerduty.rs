//! PagerDuty REST v2: `GET /oncalls` (reference/oncall-and-announcements.md §D "PagerDuty REST v2").
//!
//! `/oncalls` rather than `/schedules/{id}`: it covers legacy and v3 (shift-based) schedules
//! alike, includes overrides, escalation levels and permanent on-calls (people an escalation
//! policy targets directly; `start`/`end` are null for them), and with `include[]=users` carries
//! every email inline, so there is no per-user request. Pages are followed with `offset`/`limit`
//! until `more` is false (PagerDuty refuses `offset + limit` above 10,000). The same person on
//! several policies or levels comes back once per entry; callers de-duplicate.
//!
//! `/oncalls` lists on-calls per escalation rule, so a schedule that no escalation policy uses
//! is missing from it even while someone is on call (§D). For every configured schedule
//! `/oncalls` has no entry for, the schedule's own final layer (`GET /schedules/{id}`) answers
//! instead, and [`Answer::sources`] says which endpoint answered for what. Escalation levels do
//! not filter that layer (a schedule outside every policy has no level, and it was named
//! explicitly); a source that also names `escalation_policies` asks only for schedules inside
//! them, so it never falls back.

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use serde_json::Value;
use url::Url;

use super::{Answer, Http, Provider, ProviderError, iso, parse_time};
use crate::clock::Millis;
use crate::oncall::model::{Person, Shift};
use crate::oncall::settings::{PagerDutySettings, SourceSettings};
use crate::secret::Secret;

const NAME: &str = "pagerduty";
const MAX_OFFSET: u32 = 10_000;

pub struct PagerDuty {
    base: Url,
    token: Secret,
    page_size: u32,
    http: Http,
}

impl PagerDuty {
    pub fn new(settings: &PagerDutySettings, http: Http) -> Self {
        Self {
            base: settings.base_url.clone(),
            token: settings.token.clone(),
            page_size: settings.page_size.clamp(1, 100),
            http,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base.as_str().trim_end_matches('/'), path)
    }

    async fn get(&self, path: &str, query: &[(String, String)]) -> Result<Value, ProviderError> {
        let url = self.url(path);
        let auth = format!("Token token={}", self.token.expose());
        self.http
            .get_json(NAME, |c| {
                c.get(&url)
                    .query(query)
                    .header("authorization", &auth)
                    .header("accept", "application/vnd.pagerduty+json;version=2")
            })
            .await
    }

    /// An incident as it is now (`GET /incidents/{id}`, reference pager-incidents.md §A2).
    pub async fn incident(&self, id: &str) -> Result<Value, ProviderError> {
        let v = self
            .get(&format!("/incidents/{}", segment(id)), &[])
            .await?;
        v.get("incident").cloned().ok_or(ProviderError::Decode {
            provider: NAME,
            message: "no incident in the answer".into(),
        })
    }

    /// A user's email (`GET /users/{id}`): webhook assignees carry none (§A1).
    pub async fn user_email(&self, id: &str) -> Result<Option<String>, ProviderError> {
        let v = self.get(&format!("/users/{}", segment(id)), &[]).await?;
        Ok(v.pointer("/user/email")
            .and_then(Value::as_str)
            .map(str::to_owned))
    }

    /// `PUT /incidents/{id}` to `acknowledged` or `resolved`, as the user whose email goes in
    /// `From` (§A2). Sent once: a timeout may or may not have acted, so the caller reads the
    /// incident again before any retry. The incident as PagerDuty now shows it.
    pub async fn set_status(
        &self,
        id: &str,
        status: &str,
        from: &str,
    ) -> Result<Value, ProviderError> {
        let url = self.url(&format!("/incidents/{}", segment(id)));
        let auth = format!("Token token={}", self.token.expose());
        let body =
            serde_json::json!({"incident": {"type": "incident_reference", "status": status}});
        let (_, v) = self
            .http
            .send_once(NAME, |c| {
                c.put(&url)
                    .header("authorization", &auth)
                    .header("accept", "application/vnd.pagerduty+json;version=2")
                    .header("from", from)
                    .json(&body)
            })
            .await?;
        Ok(v.get("incident").cloned().unwrap_or(Value::Null))
    }

    /// One `/oncalls` entry as a shift; `None` when it is outside the source's escalation levels
    /// or names no user. `emails` caches the users fetched for their email.
    async fn shift(
        &self,
        source: &SourceSettings,
        item: &Value,
        emails: &mut HashMap<String, Option<String>>,
    ) -> Result<Option<Shift>, ProviderError> {
        let level = item.get("escalation_level").and_then(Value::as_u64);
        if !source.escalation_levels.is_empty()
            && !level.is_some_and(|l| source.escalation_levels.contains(&(l as u32)))
        {
            return Ok(None);
        }
        self.entry_shift(item, emails).await
    }

    /// A `{user, start, end}` entry (of `/oncalls` or of a schedule's final layer) as a shift;
    /// `None` when it names no user.
    async fn entry_shift(
        &self,
        item: &Value,
        emails: &mut HashMap<String, Option<String>>,
    ) -> Result<Option<Shift>, ProviderError> {
        let Some(user) = item.get("user") else {
            return Ok(None);
        };
        let Some(id) = user.get("id").and_then(Value::as_str) else {
            return Ok(None);
        };
        // The spec still types `user` as a reference: read the email defensively, and
        // fetch the user when `include[]=users` was not honoured.
        let mut email = user.get("email").and_then(Value::as_str).map(str::to_owned);
        if email.is_none() {
            if !emails.contains_key(id) {
                let u = self.get(&format!("/users/{id}"), &[]).await?;
                emails.insert(
                    id.to_string(),
                    u.pointer("/user/email")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                );
            }
            email = emails.get(id).cloned().flatten();
        }
        let name = user
            .get("name")
            .or_else(|| user.get("summary"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(Some(Shift {
            person: Person {
                id: id.to_string(),
                email,
                slack_id: None,
                name,
            },
            start: parse_time(item.get("start")),
            end: parse_time(item.get("end")),
        }))
    }
}

#[async_trait]
impl Provider for PagerDuty {
    async fn shifts(
        &self,
        source: &SourceSettings,
        from: Millis,
        until: Millis,
    ) -> Result<Vec<Shift>, ProviderError> {
        Ok(self.answer(source, from, until).await?.shifts)
    }

    /// `/oncalls` first; then, for every configured schedule `/oncalls` said nothing about, that
    /// schedule's own final layer. `/oncalls` lists on-calls per escalation rule, so a schedule
    /// no escalation policy uses is absent from it even while someone is on call (§D).
    async fn answer(
        &self,
        source: &SourceSettings,
        from: Millis,
        until: Millis,
    ) -> Result<Answer, ProviderError> {
        let mut emails: HashMap<String, Option<String>> = HashMap::new();
        let (mut shifts, seen) = self.oncalls(source, from, until, &mut emails).await?;
        let mut sources = vec![oncalls_source(source, &seen)];
        // With `escalation_policies`, the source asks for the schedules *within* those policies:
        // a schedule outside every policy is rightly absent, so there is nothing to fall back on.
        let unanswered = source
            .schedules
            .iter()
            .filter(|s| source.escalation_policies.is_empty() && !seen.contains(*s));
        for schedule in unanswered {
            shifts.extend(self.final_layer(schedule, from, until, &mut emails).await?);
            sources.push(format!(
                "pagerduty /schedules/{schedule} final layer: /oncalls has no entry for schedule {schedule} (no escalation policy uses it, or nobody is on call)"
            ));
        }
        Ok(Answer { shifts, sources })
    }
}

impl PagerDuty {
    /// Every `/oncalls` entry of the source in the window, paged, and the schedule IDs the
    /// entries named (before the escalation-level filter: a schedule `/oncalls` knows needs no
    /// fallback, whatever level it sits at).
    async fn oncalls(
        &self,
        source: &SourceSettings,
        from: Millis,
        until: Millis,
        emails: &mut HashMap<String, Option<String>>,
    ) -> Result<(Vec<Shift>, BTreeSet<String>), ProviderError> {
        let base = oncalls_query(source, from, until);
        let mut shifts = Vec::new();
        let mut seen = BTreeSet::new();
        let mut offset = 0u32;
        loop {
            let mut query = base.clone();
            query.push(("limit".into(), self.page_size.to_string()));
            query.push(("offset".into(), offset.to_string()));
            let page = self.get("/oncalls", &query).await?;
            let items = page
                .get("oncalls")
                .and_then(Value::as_array)
                .ok_or_else(|| ProviderError::Decode {
                    provider: NAME,
                    message: "no oncalls array".into(),
                })?;
            for item in items {
                if let Some(id) = item.pointer("/schedule/id").and_then(Value::as_str) {
                    seen.insert(id.to_string());
                }
                if let Some(shift) = self.shift(source, item, emails).await? {
                    shifts.push(shift);
                }
            }
            let more = page.get("more").and_then(Value::as_bool).unwrap_or(false);
            let got = items.len() as u32;
            if !more || got == 0 {
                break;
            }
            offset += got;
            if offset + self.page_size > MAX_OFFSET {
                return Err(ProviderError::Refused {
                    provider: NAME,
                    status: 400,
                    message: "more than 10,000 on-call entries; narrow the source".into(),
                });
            }
        }
        Ok((shifts, seen))
    }

    /// A schedule's final layer (`GET /schedules/{id}?since&until`): who the schedule itself
    /// puts on call, overrides included. `rendered_schedule_entries` is filled only when both
    /// `since` and `until` are given; its users are references without email.
    async fn final_layer(
        &self,
        schedule: &str,
        from: Millis,
        until: Millis,
        emails: &mut HashMap<String, Option<String>>,
    ) -> Result<Vec<Shift>, ProviderError> {
        let query = vec![
            ("since".to_string(), iso(from)),
            ("until".to_string(), iso(until.max(from + 60_000))),
            ("time_zone".to_string(), "UTC".to_string()),
        ];
        let v = self.get(&format!("/schedules/{schedule}"), &query).await?;
        let entries = v
            .pointer("/schedule/final_schedule/rendered_schedule_entries")
            .and_then(Value::as_array)
            .ok_or_else(|| ProviderError::Decode {
                provider: NAME,
                message: format!(
                    "schedule {schedule}: no final_schedule.rendered_schedule_entries"
                ),
            })?;
        let mut shifts = Vec::new();
        for entry in entries {
            if let Some(shift) = self.entry_shift(entry, emails).await? {
                shifts.push(shift);
            }
        }
        Ok(shifts)
    }
}

/// An id as one path segment (ids are alphanumeric; anything else is percent-encoded).
fn segment(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes()).collect()
}

/// Which `/oncalls` entries answered, for the plan.
fn oncalls_source(source: &SourceSettings, seen: &BTreeSet<String>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let answered: Vec<&str> = source
        .schedules
        .iter()
        .filter(|s| seen.contains(*s))
        .map(String::as_str)
        .collect();
    if !answered.is_empty() {
        parts.push(format!("schedule {}", answered.join(", ")));
    }
    if !source.escalation_policies.is_empty() {
        parts.push(format!(
            "escalation policy {}",
            source.escalation_policies.join(", ")
        ));
    }
    if parts.is_empty() {
        "pagerduty /oncalls: no entry".to_string()
    } else {
        format!("pagerduty /oncalls: {}", parts.join("; "))
    }
}

/// The `/oncalls` query for a source and a window, without paging.
fn oncalls_query(source: &SourceSettings, from: Millis, until: Millis) -> Vec<(String, String)> {
    let mut base: Vec<(String, String)> = Vec::new();
    for s in &source.schedules {
        base.push(("schedule_ids[]".into(), s.clone()));
    }
    if source.permanent && !source.schedules.is_empty() {
        // PagerDuty: a null among schedule_ids[] adds the permanent on-calls.
        base.push(("schedule_ids[]".into(), "null".into()));
    }
    for ep in &source.escalation_policies {
        base.push(("escalation_policy_ids[]".into(), ep.clone()));
    }
    base.push(("include[]".into(), "users".into()));
    base.push(("since".into(), iso(from)));
    // A window of at least a minute: an empty one is not something to ask PagerDuty for; the
    // sync filters shifts by the exact window itself.
    base.push(("until".into(), iso(until.max(from + 60_000))));
    base.push(("time_zone".into(), "UTC".into()));
    base
}
