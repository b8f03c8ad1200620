//! Operational routes (`/healthz`, `/readyz`, `/metrics`) and the request middleware that counts
//! every request by route template and status. What `/metrics` exports is what the alerting rules
//! and the dashboard in `deploy/monitoring/` read; a metric renamed here must be renamed there
//! (the live check in `tests/api/monitoring.rs` fails otherwise).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::metrics::{Group, LabelPresets, Route, RouteStatus, StateLabel};
use crate::oncall::sync::Outcome;
use crate::slack::verify::VerifyError;
use crate::state::AppState;

/// Alive: the process answers. Never touches the database (a slow database must not get the pod
/// killed; readiness covers that).
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Ready: the database answers and every embedded migration is applied, and in Socket Mode at
/// least one connection to Slack has received `hello` (otherwise nothing could reach slackops).
pub async fn readyz(State(state): State<AppState>) -> Response {
    let ready = readiness(&state).await;
    state.metrics().ready.set(i64::from(ready.is_ok()));
    match ready {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "reason": reason})),
        )
            .into_response(),
    }
}

/// Prometheus text. Gauges that describe the database or this replica (readiness, queue backlog,
/// judgments, on-call syncs, status snapshot age) are sampled here, at scrape time, within
/// `SAMPLE_TIMEOUT`: a slow database makes them keep their last values, never fails the scrape.
pub async fn metrics(State(state): State<AppState>) -> Response {
    sample(&state).await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics().render(),
    )
        .into_response()
}

/// What `/readyz` and `slackops_ready` report: the database, then (in Socket Mode) Slack.
async fn readiness(state: &AppState) -> Result<(), String> {
    state.db().readiness().await?;
    state.socket_health().readiness().map_err(str::to_owned)
}

/// How long a scrape waits for the database before answering with what it has.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(4);

async fn sample(state: &AppState) {
    let m = state.metrics();
    // Before the first snapshot the page has no data at all: infinitely stale.
    let age = state
        .status()
        .age_ms(state.now_ms())
        .map_or(f64::INFINITY, |ms| ms as f64 / 1000.0);
    m.status_snapshot_age.set(age);
    let sampled = tokio::time::timeout(SAMPLE_TIMEOUT, async {
        let database = state.db().readiness().await.is_ok();
        let socket = state.socket_health().readiness().is_ok();
        m.ready.set(i64::from(database && socket));
        if database {
            sample_database(state).await
        } else {
            Ok(())
        }
    })
    .await;
    match sampled {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %crate::store::short_db_error(&e), "sampling metrics from the database failed")
        }
        Err(_) => {
            m.ready.set(0);
            tracing::warn!(
                timeout_secs = SAMPLE_TIMEOUT.as_secs(),
                "the database did not answer the metrics sampling in time"
            );
        }
    }
}

async fn sample_database(state: &AppState) -> Result<(), sqlx::Error> {
    let m = state.metrics();
    let d = state.jobs().depth().await?;
    for (s, n) in [
        ("pending", d.pending),
        ("running", d.running),
        ("failed", d.failed),
    ] {
        m.jobs_depth
            .get_or_create(&StateLabel { state: s.into() })
            .set(n);
    }
    m.jobs_due.set(d.due);
    let waited = d.oldest_due_at.map_or(0, |at| (state.now_ms() - at).max(0));
    m.jobs_oldest_due_age.set(waited as f64 / 1000.0);

    let counts: HashMap<String, i64> = state.db().judgment_counts().await?.into_iter().collect();
    for s in crate::approvals::api::STATES {
        m.judgments
            .get_or_create(&StateLabel { state: (*s).into() })
            .set(counts.get(*s).copied().unwrap_or(0));
    }

    for (group, at_ms) in crate::oncall::sync::last_syncs(state).await? {
        m.oncall_last_sync
            .get_or_create(&Group { group })
            .set(at_ms / 1000);
    }
    Ok(())
}

/// Export the closed label sets at 0 from the start, and the configuration the rules compare
/// against (see `deploy/monitoring/`).
pub fn preset_metrics(state: &AppState) {
    let reasons: Vec<&str> = VerifyError::ALL
        .iter()
        .map(VerifyError::reason)
        .chain([crate::slack::routes::TOO_LARGE])
        .collect();
    let outcomes = Outcome::COUNTED.map(Outcome::label);
    state.metrics().preset(&LabelPresets {
        job_kinds: state.registry().job_kinds(),
        signature_failures: &reasons,
        oncall_outcomes: &outcomes,
        judgment_states: crate::approvals::api::STATES,
    });
    let oncall = &state.settings().oncall;
    if oncall.interval_secs > 0 && !oncall.groups.is_empty() {
        state
            .metrics()
            .oncall_interval
            .set(oncall.interval_secs as i64);
    }
}

/// Count requests by route template (never the raw path) and status.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let started = Instant::now();
    let resp = next.run(req).await;
    let m = state.metrics();
    m.http_requests
        .get_or_create(&RouteStatus {
            route: route.clone(),
            status: resp.status().as_u16(),
        })
        .inc();
    m.http_duration
        .get_or_create(&Route { route })
        .observe(started.elapsed().as_secs_f64());
    resp
}
