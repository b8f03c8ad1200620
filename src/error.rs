//! The one error type at the HTTP edge for JSON APIs: a status and a short JSON body naming what
//! is wrong. Internal errors are logged with their cause chain and an id, and answered with an
//! opaque 500 carrying that id; no internal detail leaks to callers.

use axum::Json;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::AppState;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    #[error("bad request: {field}: {message}")]
    BadRequest { field: String, message: String },
    #[error("not found: {0}")]
    NotFound(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn bad_request(field: &str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Internal(anyhow::anyhow!(crate::store::short_db_error(&e)))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Unauthorized(m) => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"slackops\"")],
                Json(json!({"error": "unauthorized", "message": m})),
            )
                .into_response(),
            ApiError::BadRequest { field, message } => (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "bad_request", "field": field, "message": message})),
            )
                .into_response(),
            ApiError::NotFound(m) => (
                StatusCode::NOT_FOUND,
                Json(json!({"error": "not_found", "message": m})),
            )
                .into_response(),
            ApiError::Internal(e) => {
                let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
                tracing::error!(error.id = %id, error.message = %e, error.cause_chain = ?e, "API request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(json!({"error": "internal", "message": "something went wrong", "error_id": id})),
                )
                    .into_response()
            }
        }
    }
}

/// Require one of `api.tokens` as `Authorization: Bearer …` (compared in constant time).
pub fn require_api_token(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let tokens = &state.settings().api.tokens;
    if tokens.is_empty() {
        return Err(ApiError::Unauthorized(
            "the API is disabled: set api.tokens",
        ));
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .ok_or(ApiError::Unauthorized("missing Bearer token"))?;
    if tokens
        .iter()
        .any(|t| t.matches(presented.trim().as_bytes()))
    {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("unknown token"))
    }
}
