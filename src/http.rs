//! Operational routes (`/healthz`, `/readyz`, `/metrics`) and the request middleware that counts
//! every request by route template and status.

use std::time::Instant;

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::metrics::{JobState, Route, RouteStatus};
use crate::state::AppState;

/// Alive: the process answers. Never touches the database (a slow database must not get the pod
/// killed; readiness covers that).
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Ready: the database answers and every embedded migration is applied, and in Socket Mode at
/// least one connection to Slack has received `hello` (otherwise nothing could reach slackops).
pub async fn readyz(State(state): State<AppState>) -> Response {
    let ready = match state.db().readiness().await {
        Ok(()) => state.socket_health().readiness().map_err(str::to_owned),
        Err(reason) => Err(reason),
    };
    match ready {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "reason": reason})),
        )
            .into_response(),
    }
}

/// Prometheus text. Queue depth is sampled here, at scrape time.
pub async fn metrics(State(state): State<AppState>) -> Response {
    match state.jobs().depth().await {
        Ok(d) => {
            for (s, n) in [
                ("pending", d.pending),
                ("running", d.running),
                ("failed", d.failed),
            ] {
                state
                    .metrics()
                    .jobs_depth
                    .get_or_create(&JobState { state: s.into() })
                    .set(n);
            }
        }
        Err(e) => {
            tracing::warn!(error = %crate::store::short_db_error(&e), "sampling queue depth failed")
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics().render(),
    )
        .into_response()
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
