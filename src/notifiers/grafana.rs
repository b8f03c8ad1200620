//! Grafana annotations (`notifiers.grafana`): an outage becomes a region annotation from its start
//! (its end set when it is resolved), each update a point annotation, each maintenance window a
//! region; tags carry the systems and the severity. Delivered through the job queue with retries.
//!
//! Grafana's `POST /api/annotations` has no idempotency key (reference:
//! monitoring-integrations.md §2), so a create retried after a lost answer would make a second
//! annotation. Every annotation therefore carries a tag naming what it is for (its key), the id
//! Grafana returns is stored at once (`grafana_annotations`), and before creating, a job looks
//! for a stored id, then for an annotation with its key's tag. Later events PATCH the stored id.
//! This module must never log the token or a body.

use std::time::Duration;

use anyhow::anyhow;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::StatusEvent;
use super::settings::GrafanaSettings;
use crate::jobs::{Job, JobError};
use crate::registry::JobHandler;
use crate::state::AppState;

/// The job kind of one event for one Grafana.
pub const JOB_ANNOTATE: &str = "notifiers.grafana";

/// A queued annotation change: which Grafana (its base URL) and the event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Annotate {
    pub(super) target: String,
    pub(super) event: StatusEvent,
}

/// Whether an event changes an annotation (reassignments do not show on graphs).
pub(super) fn wanted(kind: &str) -> bool {
    kind != "outage.reassigned"
}

/// What one event does to Grafana.
#[derive(Debug, PartialEq)]
enum Plan {
    /// Make sure the region `key` exists from `time`; when `end` is set, (re)set its end, text
    /// and tags. An outage's announcement leaves an existing region alone, so a late retry cannot
    /// undo its resolution.
    Region {
        key: String,
        time: i64,
        end: Option<i64>,
        text: String,
        tags: Vec<String>,
    },
    /// A point annotation `key` at `time`.
    Point {
        key: String,
        time: i64,
        text: String,
        tags: Vec<String>,
    },
    /// Remove the region `key` (a canceled window never happened).
    Delete { key: String },
}

/// Read what to do from the event and the outage or window it carries.
fn plan(e: &StatusEvent) -> Result<Plan, anyhow::Error> {
    let d = &e.data;
    let str_of = |k: &str| d[k].as_str().unwrap_or_default().to_string();
    let mut tags: Vec<String> = d["systems"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if let Some(kind) = e.kind.strip_prefix("outage.") {
        let key = format!("outage:{}", e.id);
        tags.push(str_of("severity"));
        let start = d["started_at"]
            .as_i64()
            .ok_or_else(|| anyhow!("outage without started_at"))?;
        let summary = str_of("summary");
        return Ok(match kind {
            "updated" => Plan::Point {
                key: format!("{key}:update:{}", e.at),
                time: e.at,
                text: format!("Outage updated: {summary}"),
                tags,
            },
            "announced" => Plan::Region {
                key,
                time: start,
                end: None,
                text: format!("Outage: {summary}"),
                tags,
            },
            _ => Plan::Region {
                key,
                time: start,
                // Reopened: the region ends where it starts again (Grafana's PATCH cannot unset it).
                end: Some(d["resolved_at"].as_i64().unwrap_or(start)),
                text: format!("Outage: {summary}"),
                tags,
            },
        });
    }
    let key = format!("maintenance:{}", e.id);
    if e.kind == "maintenance.canceled" {
        return Ok(Plan::Delete { key });
    }
    let ms = |k: &str| {
        chrono::DateTime::parse_from_rfc3339(d[k].as_str().unwrap_or_default())
            .map(|t| t.timestamp_millis())
            .map_err(|_| anyhow!("maintenance without {k}"))
    };
    tags.push("maintenance".into());
    Ok(Plan::Region {
        key,
        time: ms("starts_at")?,
        end: Some(ms("ends_at")?),
        text: format!("Maintenance: {}", str_of("title")),
        tags,
    })
}

/// Runs one [`Annotate`] job.
pub(super) struct AnnotateJob;

#[async_trait]
impl JobHandler for AnnotateJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let a: Annotate = job.payload().map_err(JobError::Permanent)?;
        let settings = &state.settings().notifiers;
        let Some(g) = settings.grafana.iter().find(|g| g.target() == a.target) else {
            tracing::warn!(event = %a.event.kind, "Grafana no longer configured; annotation dropped");
            return Ok(());
        };
        let plan = plan(&a.event).map_err(JobError::Permanent)?;
        let api = Grafana {
            state,
            settings: g,
            timeout: Duration::from_millis(settings.timeout_ms),
        };
        api.apply(plan).await.map_err(JobError::from)?;
        tracing::info!(event = %a.event.kind, "Grafana annotated");
        Ok(())
    }
}

/// One Grafana's annotations API, with the stored ids.
struct Grafana<'a> {
    state: &'a AppState,
    settings: &'a GrafanaSettings,
    timeout: Duration,
}

/// A Grafana answer that is not a success.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("Grafana: annotation not found")]
    NotFound,
    #[error("Grafana: {0}")]
    Other(String),
}

impl Grafana<'_> {
    async fn apply(&self, plan: Plan) -> anyhow::Result<()> {
        match plan {
            Plan::Region {
                key,
                time,
                end,
                text,
                tags,
            } => {
                let id = self.ensure(&key, time, end, &text, &tags).await?;
                let Some(end) = end else { return Ok(()) };
                let patch = json!({"text": text, "tags": self.tags(&key, &tags), "time": time,
                                   "timeEnd": end});
                self.patch(&key, id, &patch).await
            }
            Plan::Point {
                key,
                time,
                text,
                tags,
            } => self
                .ensure(&key, time, None, &text, &tags)
                .await
                .map(|_| ()),
            Plan::Delete { key } => match self.known(&key).await? {
                Some(id) => match self.call(reqwest::Method::DELETE, id, None).await {
                    Ok(_) | Err(CallError::NotFound) => self.forget(&key).await,
                    Err(e) => Err(e.into()),
                },
                None => Ok(()),
            },
        }
    }

    /// Every annotation's tags: the configured ones, the event's, and its key.
    fn tags(&self, key: &str, tags: &[String]) -> Vec<String> {
        let mut all: Vec<String> = self.settings.tags.clone();
        all.extend(tags.iter().filter(|t| !t.is_empty()).cloned());
        all.push(key_tag(key));
        all.dedup();
        all
    }

    /// The annotation `key`: the stored id, else one Grafana has with its key's tag (a create
    /// whose answer was lost), else a new one. The id is stored before anything else happens.
    async fn ensure(
        &self,
        key: &str,
        time: i64,
        end: Option<i64>,
        text: &str,
        tags: &[String],
    ) -> anyhow::Result<i64> {
        if let Some(id) = self.known(key).await? {
            return Ok(id);
        }
        let id = match self.find(key).await? {
            Some(id) => id,
            None => self.create(key, time, end, text, tags).await?,
        };
        self.remember(key, id).await?;
        Ok(id)
    }

    async fn create(
        &self,
        key: &str,
        time: i64,
        end: Option<i64>,
        text: &str,
        tags: &[String],
    ) -> anyhow::Result<i64> {
        let mut body = json!({"time": time, "text": text, "tags": self.tags(key, tags)});
        if let Some(end) = end {
            body["timeEnd"] = json!(end);
        }
        if let Some(uid) = &self.settings.dashboard_uid {
            body["dashboardUID"] = json!(uid);
        }
        let url = format!("{}/api/annotations", self.settings.target());
        let v = self
            .send(self.http(reqwest::Method::POST, &url).json(&body))
            .await?;
        v["id"]
            .as_i64()
            .ok_or_else(|| anyhow!("Grafana: the create answer has no id"))
    }

    /// An annotation carrying `key`'s tag, if Grafana has one.
    async fn find(&self, key: &str) -> anyhow::Result<Option<i64>> {
        let url = format!("{}/api/annotations", self.settings.target());
        let req = self.http(reqwest::Method::GET, &url).query(&[
            ("tags", key_tag(key).as_str()),
            ("type", "annotation"),
            ("limit", "10"),
        ]);
        let v = self.send(req).await?;
        Ok(v.as_array()
            .and_then(|a| a.iter().filter_map(|x| x["id"].as_i64()).min()))
    }

    /// PATCH the annotation; one deleted in Grafana since is forgotten, and the retry makes it
    /// again.
    async fn patch(&self, key: &str, id: i64, body: &Value) -> anyhow::Result<()> {
        match self.call(reqwest::Method::PATCH, id, Some(body)).await {
            Ok(_) => Ok(()),
            Err(CallError::NotFound) => {
                self.forget(key).await?;
                Err(anyhow!(
                    "Grafana: annotation {id} was deleted; making it again"
                ))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        id: i64,
        body: Option<&Value>,
    ) -> Result<Value, CallError> {
        let url = format!("{}/api/annotations/{id}", self.settings.target());
        let mut req = self.http(method, &url);
        if let Some(b) = body {
            req = req.json(b);
        }
        self.send(req).await
    }

    fn http(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.state
            .http()
            .request(method, url)
            .timeout(self.timeout)
            .bearer_auth(self.settings.token.expose())
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, CallError> {
        let resp = req.send().await.map_err(|e| {
            // reqwest's error text carries the URL: name the kind only.
            CallError::Other(
                if e.is_timeout() {
                    "timed out"
                } else {
                    "request failed"
                }
                .into(),
            )
        })?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(CallError::NotFound);
        }
        if !status.is_success() {
            return Err(CallError::Other(format!(
                "answered HTTP {}",
                status.as_u16()
            )));
        }
        resp.json()
            .await
            .map_err(|_| CallError::Other("answered with something that is not JSON".into()))
    }

    async fn known(&self, key: &str) -> anyhow::Result<Option<i64>> {
        let id = sqlx::query_scalar(
            "SELECT annotation_id FROM grafana_annotations WHERE target = $1 AND key = $2",
        )
        .bind(self.settings.target())
        .bind(key)
        .fetch_optional(self.state.db().pool())
        .await?;
        Ok(id)
    }

    async fn remember(&self, key: &str, id: i64) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO grafana_annotations (target, key, annotation_id, created_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT (target, key) DO NOTHING",
        )
        .bind(self.settings.target())
        .bind(key)
        .bind(id)
        .bind(self.state.now_ms())
        .execute(self.state.db().pool())
        .await?;
        Ok(())
    }

    async fn forget(&self, key: &str) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM grafana_annotations WHERE target = $1 AND key = $2")
            .bind(self.settings.target())
            .bind(key)
            .execute(self.state.db().pool())
            .await?;
        Ok(())
    }
}

/// The tag naming what an annotation is for.
fn key_tag(key: &str) -> String {
    format!("slackops:{key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, data: Value) -> StatusEvent {
        StatusEvent {
            kind: kind.into(),
            id: "x1".into(),
            at: 5_000,
            data,
        }
    }

    #[test]
    fn outages_are_regions_updates_points_and_windows_regions() {
        let o = json!({"summary": "Search down", "systems": ["search"], "severity": "critical",
                       "started_at": 1_000, "resolved_at": null});
        let Plan::Region {
            key,
            time,
            end,
            tags,
            ..
        } = plan(&ev("outage.announced", o.clone())).unwrap()
        else {
            panic!("a region")
        };
        assert_eq!((key.as_str(), time, end), ("outage:x1", 1_000, None));
        assert_eq!(tags, vec!["search", "critical"]);
        let mut r = o.clone();
        r["resolved_at"] = json!(9_000);
        let Plan::Region { end, .. } = plan(&ev("outage.resolved", r)).unwrap() else {
            panic!("a region")
        };
        assert_eq!(end, Some(9_000));
        let Plan::Point { key, time, .. } = plan(&ev("outage.updated", o)).unwrap() else {
            panic!("a point")
        };
        assert_eq!((key.as_str(), time), ("outage:x1:update:5000", 5_000));
        let m = json!({"title": "Patching", "systems": ["db"], "starts_at": "2026-12-01T22:00:00Z",
                       "ends_at": "2026-12-01T23:00:00Z"});
        let Plan::Region { key, end, tags, .. } =
            plan(&ev("maintenance.scheduled", m.clone())).unwrap()
        else {
            panic!("a region")
        };
        assert_eq!(key, "maintenance:x1");
        assert_eq!(end, Some(1_796_166_000_000));
        assert_eq!(tags, vec!["db", "maintenance"]);
        assert_eq!(
            plan(&ev("maintenance.canceled", m)).unwrap(),
            Plan::Delete {
                key: "maintenance:x1".into()
            }
        );
    }
}
