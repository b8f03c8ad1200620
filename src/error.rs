//! The one error type at the HTTP edge for JSON APIs: a status and a short JSON body naming what
//! is wrong. Internal errors are logged with their cause chain and an id, and answered with an
//! opaque 500 carrying that id; no internal detail leaks to callers. The bodies are the typed
//! [`ErrorBody`] and [`BadRequestBody`], which the OpenAPI document describes; query strings and
//! path parameters are read with [`ApiQuery`] and [`ApiPath`], so a bad one gets the same 400
//! naming it. No text slackops stores may contain a NUL character (PostgreSQL's `text` cannot
//! hold one): [`refuse_nul`] and the extractors refuse it at the edge, naming the field, before
//! anything reaches the database.

use axum::Json;
use axum::extract::{FromRequestParts, Path, RawPathParams};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use utoipa::ToSchema;

use crate::slack::verify::single_header;
use crate::state::AppState;

/// Every error of `/api/v1` except a 400.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for programs.
    pub error: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
    /// Only on 500: the id of the log line with the cause.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_id: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    Unauthorized,
    NotFound,
    Conflict,
    /// An upstream the answer depends on (Slack) could not be asked; retry after `Retry-After`.
    Unavailable,
    Internal,
}

/// A 400: the request is wrong, and `field` says where. Nothing was changed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BadRequestBody {
    pub error: BadRequestCode,
    /// The JSON path of the field (`summary`, `impact.sales.affected`, `resolution.summary`), the
    /// query parameter (`limit`), or `body` when the body as a whole is wrong.
    #[schema(example = "eta")]
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BadRequestCode {
    BadRequest,
}

impl ErrorBody {
    pub fn new(error: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            error,
            message: message.into(),
            error_id: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    #[error("bad request: {field}: {message}")]
    BadRequest { field: String, message: String },
    #[error("not found: {0}")]
    NotFound(String),
    /// The resource changed since the caller read it (a stale `version`): 409.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Slack (or another upstream the answer needs) could not be asked: 503 with `Retry-After`.
    /// Nothing was changed.
    #[error("unavailable: {0}")]
    Unavailable(String),
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
                Json(ErrorBody::new(ErrorCode::Unauthorized, m)),
            )
                .into_response(),
            ApiError::BadRequest { field, message } => (
                StatusCode::BAD_REQUEST,
                Json(BadRequestBody {
                    error: BadRequestCode::BadRequest,
                    field,
                    message,
                }),
            )
                .into_response(),
            ApiError::NotFound(m) => (
                StatusCode::NOT_FOUND,
                Json(ErrorBody::new(ErrorCode::NotFound, m)),
            )
                .into_response(),
            ApiError::Conflict(m) => (
                StatusCode::CONFLICT,
                Json(ErrorBody::new(ErrorCode::Conflict, m)),
            )
                .into_response(),
            ApiError::Unavailable(m) => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "5")],
                Json(ErrorBody::new(ErrorCode::Unavailable, m)),
            )
                .into_response(),
            ApiError::Internal(e) => {
                let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
                tracing::error!(error.id = %id, error.message = %e, error.cause_chain = ?e, "API request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(ErrorBody {
                        error_id: Some(id),
                        ..ErrorBody::new(ErrorCode::Internal, "something went wrong")
                    }),
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
    // One Authorization header: with two, which one a proxy or we would read is a guess.
    let presented = single_header(headers, header::AUTHORIZATION.as_str())
        .map_err(|_| ApiError::Unauthorized("more than one Authorization header"))?
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

/// A query string read into `T`; a parameter of the wrong type is a 400 naming it, as a bad
/// body field is (axum's `Query` answers such requests with plain text).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parse_query(parts.uri.query().unwrap_or_default()).map(ApiQuery)
    }
}

/// A path parameter read into `T`; a NUL character or a bad percent-encoding is a 400 naming the
/// parameter (axum's `Path` answers those with plain text, or lets them reach the database).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request("path", e.body_text()))?;
        if let Some((name, _)) = raw.iter().find(|(_, v)| v.contains('\0')) {
            return Err(ApiError::bad_request(name, NUL));
        }
        let Path(t) = Path::<T>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request("path", e.body_text()))?;
        Ok(ApiPath(t))
    }
}

const NUL: &str = "must not contain NUL characters (\\u0000)";

/// Refuse a JSON body with a NUL character in any string or key, naming where it is
/// (`summary`, `impact.sales.details`, `systems[1]`).
pub fn refuse_nul(body: &Value) -> Result<(), ApiError> {
    match nul_at(body, "") {
        Some(path) => Err(ApiError::bad_request(
            if path.is_empty() { "body" } else { &path },
            NUL,
        )),
        None => Ok(()),
    }
}

fn nul_at(v: &Value, path: &str) -> Option<String> {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match v {
        Value::String(s) => s.contains('\0').then(|| path.to_string()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, x)| nul_at(x, &format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, x)| {
            if k.contains('\0') {
                Some(join(&k.replace('\0', "\\u0000")))
            } else {
                nul_at(x, &join(k))
            }
        }),
        _ => None,
    }
}

fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    if let Some((name, _)) =
        form_urlencoded::parse(query.as_bytes()).find(|(k, v)| k.contains('\0') || v.contains('\0'))
    {
        return Err(ApiError::bad_request(&name.replace('\0', "\\u0000"), NUL));
    }
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let inner = e.inner().to_string();
        let field = match e.path().to_string() {
            // Not inside a parameter (a duplicated one): the name is in the message.
            p if p == "?" || p == "." => inner.split('`').nth(1).unwrap_or("query").to_string(),
            p => p,
        };
        ApiError::bad_request(&field, inner)
    })
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Q {
        state: Option<String>,
        limit: Option<i64>,
    }

    fn field_of(query: &str) -> String {
        match parse_query::<Q>(query) {
            Err(ApiError::BadRequest { field, .. }) => field,
            other => panic!("expected a bad request for {query}, got {other:?}"),
        }
    }

    #[test]
    fn a_bad_query_parameter_is_named() {
        assert_eq!(field_of("limit=ten"), "limit");
        assert_eq!(field_of("limit=99999999999999999999"), "limit");
        assert_eq!(field_of("state=open&limit=1&limit=2"), "limit");
        assert!(parse_query::<Q>("state=open&limit=5&other=x").is_ok());
        assert!(parse_query::<Q>("").is_ok());
        assert_eq!(field_of("state=a%00b"), "state");
    }

    fn nul_field(body: serde_json::Value) -> Option<String> {
        match refuse_nul(&body) {
            Err(ApiError::BadRequest { field, .. }) => Some(field),
            _ => None,
        }
    }

    #[test]
    fn a_nul_character_anywhere_in_a_body_is_refused_naming_where() {
        use serde_json::json;
        assert_eq!(
            nul_field(json!({"summary": "a\u{0}b"})).as_deref(),
            Some("summary")
        );
        assert_eq!(
            nul_field(json!({"impact": {"sales": {"details": "\u{0}"}}})).as_deref(),
            Some("impact.sales.details")
        );
        assert_eq!(
            nul_field(json!({"systems": ["ok", "b\u{0}"]})).as_deref(),
            Some("systems[1]")
        );
        assert_eq!(nul_field(json!("\u{0}")).as_deref(), Some("body"));
        assert_eq!(nul_field(json!({"summary": "fine", "n": 0})), None);
    }
}
