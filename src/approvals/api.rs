//! `GET /api/v1/judgments?state=…&limit=…`: judgments and their audit trail as JSON, for
//! dashboards and tools. Authenticated with one of `api.tokens` as a Bearer token. The handler's
//! `#[utoipa::path]` is its part of the OpenAPI document ([`crate::openapi`]).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::{self, Judgment, StageInfo};
use crate::error::{ApiError, ApiQuery, BadRequestBody};
use crate::state::AppState;
use crate::store::audit::AuditRecord;

pub fn routes() -> Router<AppState> {
    api().split_for_parts().0
}

/// The route with its OpenAPI operation.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only judgments in this state.
    #[param(schema_with = state_schema)]
    pub state: Option<String>,
    /// At most this many, newest first (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// Every judgment state.
pub const STATES: &[&str] = &[
    model::AWAITING,
    model::JUDGING,
    model::APPROVED,
    model::REJECTED,
    model::DECIDED_ELSEWHERE,
    model::CANCELED,
    model::ENDED,
    model::VANISHED,
];

fn state_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(STATES.iter().copied()))
        .build()
}

/// A judgment with the stage it concerns and its audit trail.
#[derive(Debug, Serialize, ToSchema)]
pub struct JudgmentView {
    #[serde(flatten)]
    judgment: Judgment,
    stage: StageInfo,
    audit: Vec<AuditRecord>,
}

/// Judgments, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct JudgmentList {
    judgments: Vec<JudgmentView>,
}

#[utoipa::path(
    get,
    path = "/api/v1/judgments",
    operation_id = "listJudgments",
    tag = "judgments",
    summary = "List Manual Judgments with their audit trail",
    params(ListQuery),
    responses(
        (status = 200, description = "Judgments, newest first", body = JudgmentList),
        (status = 400, description = "A query parameter is wrong", body = BadRequestBody),
    )
)]
async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<JudgmentList>, ApiError> {
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
        out.push(JudgmentView {
            stage: j.info(),
            judgment: j,
            audit,
        });
    }
    Ok(Json(JudgmentList { judgments: out }))
}
