//! `/api/v1/maintenances`: schedule, change, cancel and read maintenance windows, for monitoring
//! and CI. Authenticated with one of `api.tokens` as a Bearer token. Bodies are read strictly:
//! an unknown field, a wrong type or an invalid value is a 400 naming the field, and the same
//! validation as the modal applies.
//!
//! - `POST /api/v1/maintenances` `{"title", "summary"?, "systems", "starts_at", "ends_at", "public"?}`
//!   (times in RFC 3339) → 201 with the window;
//! - `PATCH /api/v1/maintenances/{id}` with any of those fields → 200;
//! - `POST /api/v1/maintenances/{id}/cancel` → 200;
//! - `GET /api/v1/maintenances[?limit=N]`, `GET /api/v1/maintenances/{id}`.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::ChangeError;
use super::model::Draft;
use crate::error::{ApiError, require_api_token};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/maintenances", post(create).get(list))
        .route("/api/v1/maintenances/{id}", get(one).patch(change))
        .route("/api/v1/maintenances/{id}/cancel", post(cancel))
}

/// Who the API acts as in announcements and the audit log.
const API_ACTOR: &str = "api";

const FIELDS: &[&str] = &[
    "title",
    "summary",
    "systems",
    "starts_at",
    "ends_at",
    "public",
];

fn body_object(body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("body", format!("not valid JSON: {e}")))?;
    let Value::Object(map) = v else {
        return Err(ApiError::bad_request("body", "must be a JSON object"));
    };
    if let Some(k) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ApiError::bad_request(
            k,
            format!("unknown field; the fields are {}", FIELDS.join(", ")),
        ));
    }
    Ok(map)
}

fn string(map: &Map<String, Value>, field: &str) -> Result<Option<String>, ApiError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad_request(field, "must be a string")),
    }
}

fn time(map: &Map<String, Value>, field: &str) -> Result<Option<i64>, ApiError> {
    string(map, field)?
        .map(|s| {
            chrono::DateTime::parse_from_rfc3339(s.trim())
                .map(|d| d.timestamp_millis())
                .map_err(|_| {
                    ApiError::bad_request(
                        field,
                        "must be an RFC 3339 time such as 2026-11-21T22:00:00Z",
                    )
                })
        })
        .transpose()
}

fn systems(map: &Map<String, Value>) -> Result<Option<Vec<String>>, ApiError> {
    match map.get("systems") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| ApiError::bad_request("systems", "must be a list of system ids"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(ApiError::bad_request(
            "systems",
            "must be a list of system ids",
        )),
    }
}

fn public(map: &Map<String, Value>) -> Result<Option<bool>, ApiError> {
    match map.get("public") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::bad_request("public", "must be true or false")),
    }
}

fn required<T>(v: Option<T>, field: &str) -> Result<T, ApiError> {
    v.ok_or_else(|| ApiError::bad_request(field, "required"))
}

fn change_error(e: ChangeError) -> ApiError {
    match e {
        ChangeError::Invalid(errs) => {
            let first = &errs[0];
            ApiError::bad_request(first.field, first.message.clone())
        }
        ChangeError::NotFound => ApiError::NotFound("no such maintenance window".into()),
        ChangeError::Conflict(why) => ApiError::bad_request("id", why),
        ChangeError::Store(e) => e.into(),
    }
}

async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    require_api_token(&state, &headers)?;
    let map = body_object(&body)?;
    let draft = Draft {
        title: required(string(&map, "title")?, "title")?,
        summary: string(&map, "summary")?.unwrap_or_default(),
        systems: systems(&map)?.unwrap_or_default(),
        starts_at: required(time(&map, "starts_at")?, "starts_at")?,
        ends_at: required(time(&map, "ends_at")?, "ends_at")?,
        public: public(&map)?.unwrap_or(true),
    };
    let m = super::create(&state, draft, API_ACTOR)
        .await
        .map_err(change_error)?;
    Ok((StatusCode::CREATED, Json(m.to_json(state.now_ms()))))
}

async fn change(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    require_api_token(&state, &headers)?;
    let map = body_object(&body)?;
    let (title, summary, systems, starts_at, ends_at, public) = (
        string(&map, "title")?,
        string(&map, "summary")?,
        systems(&map)?,
        time(&map, "starts_at")?,
        time(&map, "ends_at")?,
        public(&map)?,
    );
    let m = super::update(&state, &id, API_ACTOR, |d| {
        if let Some(v) = title {
            d.title = v;
        }
        if let Some(v) = summary {
            d.summary = v;
        }
        if let Some(v) = systems {
            d.systems = v;
        }
        if let Some(v) = starts_at {
            d.starts_at = v;
        }
        if let Some(v) = ends_at {
            d.ends_at = v;
        }
        if let Some(v) = public {
            d.public = v;
        }
    })
    .await
    .map_err(change_error)?;
    Ok(Json(m.to_json(state.now_ms())))
}

async fn cancel(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require_api_token(&state, &headers)?;
    let m = super::cancel(&state, &id, API_ACTOR)
        .await
        .map_err(change_error)?;
    Ok(Json(m.to_json(state.now_ms())))
}

async fn one(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require_api_token(&state, &headers)?;
    let m = state
        .db()
        .maintenance(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such maintenance window".into()))?;
    Ok(Json(m.to_json(state.now_ms())))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub limit: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    require_api_token(&state, &headers)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit", "must be between 1 and 1000"));
    }
    let now = state.now_ms();
    let list = state.db().maintenances_recent(limit).await?;
    Ok(Json(json!({
        "maintenances": list.iter().map(|m| m.to_json(now)).collect::<Vec<_>>()
    })))
}
