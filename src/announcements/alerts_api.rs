//! `POST /api/v1/alerts/alertmanager`: Alertmanager's webhook receiver.
//!
//! The token is checked before the body is read (one of `api.tokens`, sent by Alertmanager's
//! `http_config.authorization`). A malformed body is a 400 naming the field — Alertmanager does
//! not retry a 4xx, and the operator finds the field in its log. Every well-formed delivery gets a
//! 200, also when no rule matches or the alerts cannot be announced: Alertmanager retries a 5xx
//! with the same body until the group's next interval (monitoring-integrations.md §1.3), so a 5xx
//! is kept for failures worth retrying (the database).

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::alertmanager::{self, Notification};
use super::alerts::{self, Outcome};
use super::api::body;
use crate::error::{ApiError, BadRequestBody, require_api_token};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    api().split_for_parts().0
}

/// The route with its OpenAPI operation.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(alertmanager_webhook))
}

/// What became of the delivery.
#[derive(Debug, Serialize, ToSchema)]
struct Received {
    /// The stored alert group's id (derived from `groupKey`).
    group: String,
    /// `no_rule` (no `announcements.alert_rules` entry matches), `not_configured`
    /// (`announcements.channel` is not set), `unchanged` (a re-sent delivery), `suggested`,
    /// `updated` (the group's outage is already announced) or `announced` (announced now).
    #[schema(schema_with = outcome_schema)]
    outcome: Outcome,
}

fn outcome_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some([
            "no_rule",
            "not_configured",
            "unchanged",
            "suggested",
            "updated",
            "announced",
        ]))
        .build()
}

#[utoipa::path(
    post,
    path = "/api/v1/alerts/alertmanager",
    operation_id = "receiveAlertmanagerWebhook",
    tag = "alerts",
    summary = "Receive an Alertmanager notification (webhook payload version 4)",
    description = "Point an Alertmanager `webhook_config` here, with one of `api.tokens` in \
                   `http_config.authorization`. Each alert group becomes one suggestion in \
                   `announcements.channel` (rule mode `suggest`) or an announced outage (`announce`), \
                   as `announcements.alert_rules` say. Re-sent deliveries change nothing. A \
                   well-formed delivery is always answered 200, also when nothing matches.",
    request_body = Notification,
    responses(
        (status = 200, description = "Received", body = Received),
        (status = 400, description = "The payload is malformed; `field` names what is wrong \
                                      (`groupKey`, `alerts[0].startsAt`, …)", body = BadRequestBody),
    )
)]
async fn alertmanager_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Json<Received>, ApiError> {
    require_api_token(&state, &headers)?;
    let n: Notification = body(&bytes)?;
    let incoming = alertmanager::checked(&n).map_err(|(f, m)| ApiError::bad_request(&f, m))?;
    let (group, outcome) = alerts::receive(&state, &n, &incoming).await?;
    tracing::info!(group = %group, outcome = ?outcome, alerts = incoming.len(), "alertmanager delivery");
    Ok(Json(Received { group, outcome }))
}
