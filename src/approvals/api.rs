//! `GET /api/v1/judgments?state=…&limit=…`: judgments and their audit trail as JSON, for
//! dashboards and tools. Authenticated with one of `api.tokens` as a Bearer token.

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use super::model;
use crate::error::ApiError;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/judgments", get(list))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub state: Option<String>,
    pub limit: Option<i64>,
}

const STATES: &[&str] = &[
    model::AWAITING,
    model::JUDGING,
    model::APPROVED,
    model::REJECTED,
    model::DECIDED_ELSEWHERE,
    model::CANCELED,
    model::ENDED,
    model::VANISHED,
];

async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    crate::error::require_api_token(&state, &headers)?;
    if let Some(s) = q.state.as_deref()
        && !STATES.contains(&s)
    {
        return Err(ApiError::bad_request(
            "state",
            format!("unknown state {s:?}; use one of {}", STATES.join(", ")),
        ));
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit", "must be between 1 and 1000"));
    }
    let judgments = state
        .db()
        .judgments_in_state(q.state.as_deref(), limit)
        .await?;
    let mut out = Vec::with_capacity(judgments.len());
    for j in judgments {
        let audit = state.db().audit_for(&j.subject()).await?;
        let mut v = serde_json::to_value(&j).unwrap_or(Value::Null);
        v["stage"] = serde_json::to_value(j.info()).unwrap_or(Value::Null);
        v["audit"] = serde_json::to_value(audit).unwrap_or(Value::Null);
        out.push(v);
    }
    Ok(Json(json!({ "judgments": out })))
}
