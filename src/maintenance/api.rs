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
//!
//! Each handler's `#[utoipa::path]` is its part of the OpenAPI document ([`crate::openapi`]),
//! registered with its route in [`api`]. The bodies are read field by field (so each message
//! says exactly what is wrong); [`NewMaintenance`] and [`MaintenanceChanges`] describe them for
//! the document, and a test keeps their fields equal to `FIELDS`.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ChangeError;
use super::model::{Draft, MaintenanceView};
use crate::error::{
    ApiError, ApiPath, ApiQuery, BadRequestBody, ErrorBody, refuse_nul, require_api_token,
};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    api().split_for_parts().0
}

/// The routes with their OpenAPI operations.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(one, change))
        .routes(routes!(cancel))
}

/// A new maintenance window (`POST`). Unknown fields are refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "title": "Database upgrade",
    "summary": "Writes pause for a few seconds.",
    "systems": ["payments"],
    "starts_at": "2099-12-01T22:00:00Z",
    "ends_at": "2099-12-01T23:00:00Z",
    "public": true
}))]
#[allow(dead_code)] // Describes the body `create` reads field by field.
pub struct NewMaintenance {
    /// What is being maintained (1 to 150 characters, not only spaces).
    #[schema(min_length = 1, max_length = 150)]
    title: String,
    /// Details (at most 3000 characters).
    #[schema(max_length = 3000)]
    summary: Option<String>,
    /// Ids from `announcements.systems` (at least one when a catalogue is configured).
    systems: Option<Vec<String>>,
    /// RFC 3339, e.g. `2026-12-01T22:00:00Z`; not in the past.
    #[schema(format = DateTime)]
    starts_at: String,
    /// RFC 3339, after `starts_at`.
    #[schema(format = DateTime)]
    ends_at: String,
    /// Show it on the public status page (default true).
    public: Option<bool>,
}

/// A change to a maintenance window (`PATCH`): any of the fields; null or absent keeps a field.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Describes the body `change` reads field by field.
pub struct MaintenanceChanges {
    #[schema(min_length = 1, max_length = 150)]
    title: Option<String>,
    #[schema(max_length = 3000)]
    summary: Option<String>,
    systems: Option<Vec<String>>,
    #[schema(format = DateTime)]
    starts_at: Option<String>,
    #[schema(format = DateTime)]
    ends_at: Option<String>,
    public: Option<bool>,
    /// The `version` the caller read; when the window changed since, the change is refused with
    /// 409 and nothing changes. Absent: the change applies to whatever is current.
    #[schema(minimum = 1)]
    version: Option<i64>,
}

/// Maintenance windows, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct MaintenanceList {
    maintenances: Vec<MaintenanceView>,
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

/// A PATCH also takes the `version` it is based on.
const CHANGE_FIELDS: &[&str] = &[
    "title",
    "summary",
    "systems",
    "starts_at",
    "ends_at",
    "public",
    "version",
];

fn body_object(body: &Bytes, fields: &[&str]) -> Result<Map<String, Value>, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("body", format!("not valid JSON: {e}")))?;
    refuse_nul(&v)?;
    let Value::Object(map) = v else {
        return Err(ApiError::bad_request("body", "must be a JSON object"));
    };
    if let Some(k) = map.keys().find(|k| !fields.contains(&k.as_str())) {
        return Err(ApiError::bad_request(
            k,
            format!("unknown field; the fields are {}", fields.join(", ")),
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

fn version(map: &Map<String, Value>) -> Result<Option<i64>, ApiError> {
    match map.get("version") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_i64() {
            Some(n) if n >= 1 => Ok(Some(n)),
            _ => Err(ApiError::bad_request(
                "version",
                "must be a whole number of at least 1 (the version you read)",
            )),
        },
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
        ChangeError::Stale => ApiError::Conflict(
            "the maintenance window changed meanwhile (version); read it again and retry".into(),
        ),
        ChangeError::Store(e) => e.into(),
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/maintenances",
    operation_id = "scheduleMaintenance",
    tag = "maintenances",
    summary = "Schedule a maintenance window",
    description = "Announced in `announcements.channel` at once; its start and end are announced \
                   in the message's thread when they come.",
    request_body = NewMaintenance,
    responses(
        (status = 201, description = "Scheduled", body = MaintenanceView, links(
            ("GetMaintenance" = (operation_id = "getMaintenance", parameters(("id" = "$response.body#/id")),
                                 description = "The window")),
            ("ChangeMaintenance" = (operation_id = "changeMaintenance", parameters(("id" = "$response.body#/id")),
                                    description = "Change it")),
            ("CancelMaintenance" = (operation_id = "cancelMaintenance", parameters(("id" = "$response.body#/id")),
                                    description = "Cancel it")),
        )),
        (status = 400, description = "A field is wrong; nothing was scheduled", body = BadRequestBody),
    )
)]
async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<MaintenanceView>), ApiError> {
    require_api_token(&state, &headers)?;
    let map = body_object(&body, FIELDS)?;
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
    Ok((StatusCode::CREATED, Json(m.view(state.now_ms()))))
}

#[utoipa::path(
    patch,
    path = "/api/v1/maintenances/{id}",
    operation_id = "changeMaintenance",
    tag = "maintenances",
    summary = "Change a maintenance window",
    description = "The change is announced in the window's thread. With `version`, a change based \
                   on a stale read is refused with 409.",
    params(("id" = String, Path, description = "The maintenance window id")),
    request_body = MaintenanceChanges,
    responses(
        (status = 200, description = "Changed", body = MaintenanceView),
        (status = 400, description = "A field is wrong, or the window can no longer change \
                                      (field `id`); nothing was changed", body = BadRequestBody),
        (status = 404, description = "No such maintenance window", body = ErrorBody),
        (status = 409, description = "The window changed meanwhile (`version`); nothing was \
                                      changed", body = ErrorBody),
    )
)]
async fn change(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    body: Bytes,
) -> Result<Json<MaintenanceView>, ApiError> {
    require_api_token(&state, &headers)?;
    let map = body_object(&body, CHANGE_FIELDS)?;
    let expected_version = version(&map)?;
    let (title, summary, systems, starts_at, ends_at, public) = (
        string(&map, "title")?,
        string(&map, "summary")?,
        systems(&map)?,
        time(&map, "starts_at")?,
        time(&map, "ends_at")?,
        public(&map)?,
    );
    let m = super::update(&state, &id, API_ACTOR, expected_version, |d| {
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
    Ok(Json(m.view(state.now_ms())))
}

#[utoipa::path(
    post,
    path = "/api/v1/maintenances/{id}/cancel",
    operation_id = "cancelMaintenance",
    tag = "maintenances",
    summary = "Cancel a maintenance window",
    params(("id" = String, Path, description = "The maintenance window id")),
    responses(
        (status = 200, description = "Canceled (announced in the window's thread)", body = MaintenanceView),
        (status = 400, description = "Already canceled or finished, or a malformed id (field `id`)", body = BadRequestBody),
        (status = 404, description = "No such maintenance window", body = ErrorBody),
    )
)]
async fn cancel(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<MaintenanceView>, ApiError> {
    require_api_token(&state, &headers)?;
    let m = super::cancel(&state, &id, API_ACTOR)
        .await
        .map_err(change_error)?;
    Ok(Json(m.view(state.now_ms())))
}

#[utoipa::path(
    get,
    path = "/api/v1/maintenances/{id}",
    operation_id = "getMaintenance",
    tag = "maintenances",
    summary = "One maintenance window",
    params(("id" = String, Path, description = "The maintenance window id")),
    responses(
        (status = 200, description = "The window", body = MaintenanceView),
        (status = 400, description = "The id is malformed (field `id`)", body = BadRequestBody),
        (status = 404, description = "No such maintenance window", body = ErrorBody),
    )
)]
async fn one(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<MaintenanceView>, ApiError> {
    require_api_token(&state, &headers)?;
    let m = state
        .db()
        .maintenance(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such maintenance window".into()))?;
    Ok(Json(m.view(state.now_ms())))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// At most this many, newest first (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/maintenances",
    operation_id = "listMaintenances",
    tag = "maintenances",
    summary = "List maintenance windows",
    params(ListQuery),
    responses(
        (status = 200, description = "Windows, newest first", body = MaintenanceList),
        (status = 400, description = "A query parameter is wrong", body = BadRequestBody),
    )
)]
async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<MaintenanceList>, ApiError> {
    require_api_token(&state, &headers)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit", "must be between 1 and 1000"));
    }
    let now = state.now_ms();
    let list = state.db().maintenances_recent(limit).await?;
    Ok(Json(MaintenanceList {
        maintenances: list.iter().map(|m| m.view(now)).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use utoipa::PartialSchema;
    use utoipa::openapi::{RefOr, Schema};

    use super::*;

    fn properties(schema: RefOr<Schema>) -> (Vec<String>, Vec<String>) {
        let RefOr::T(Schema::Object(o)) = schema else {
            panic!("an object schema")
        };
        (o.properties.keys().cloned().collect(), o.required.clone())
    }

    /// The documented bodies are the ones the handlers read.
    #[test]
    fn the_documented_bodies_have_exactly_the_fields_the_handlers_read() {
        let mut fields: Vec<String> = FIELDS.iter().map(|f| f.to_string()).collect();
        fields.sort();
        let (mut new, required) = properties(NewMaintenance::schema());
        new.sort();
        assert_eq!(new, fields);
        assert_eq!(required, ["title", "starts_at", "ends_at"]);
        let (mut change, required) = properties(MaintenanceChanges::schema());
        change.sort();
        let mut change_fields: Vec<String> = CHANGE_FIELDS.iter().map(|f| f.to_string()).collect();
        change_fields.sort();
        assert_eq!(change, change_fields);
        assert!(required.is_empty(), "{required:?}");
    }
}
