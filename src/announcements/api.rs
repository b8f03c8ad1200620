//! `/api/v1/announcements`: announce and update outages from monitoring or CI, with one of
//! `api.tokens` as a Bearer token.
//!
//! - `POST /api/v1/announcements` announces (201 with the outage);
//! - `PATCH /api/v1/announcements/{id}` changes fields (with a `reason`), resolves
//!   (`"state": "resolved"` with a `resolution`) or reopens (`"state": "open"`);
//! - `GET /api/v1/announcements[?state=open|resolved&limit=N]` and `GET …/{id}` (with history).
//!
//! The same validation as the modal ([`model::validate`]) and the same write path
//! ([`changes`]), so the same Slack messages follow; a bad body is a 400 naming the field
//! (`summary`, `impact.sales.affected`, …), found with `serde_path_to_error` for type errors.
//! Each handler's `#[utoipa::path]` is its part of the OpenAPI document ([`crate::openapi`]),
//! registered with its route in [`api`], so the document never describes a route that is not
//! served.

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::changes::{self, Change, ChangeError, Kind};
use super::model::{self, Fields, HistoryEntry, Impact, Outage, OutageView, Resolution};
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
        .routes(routes!(list, create))
        .routes(routes!(one, patch))
}

/// Parse a JSON body, naming the field that is wrong.
pub fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("body", "a JSON object is required"));
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) {
        refuse_nul(&v)?;
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        // `?` when the error is not inside any field (a syntax error, the end of input).
        let path = match e.path().to_string() {
            p if p == "?" => ".".to_string(),
            p => p,
        };
        let inner = e.inner().to_string();
        // Missing and unknown fields are reported at their parent; the name is in the message.
        let named = inner
            .split('`')
            .nth(1)
            .filter(|_| inner.starts_with("missing field") || inner.starts_with("unknown field"));
        let field = match (path.as_str(), named) {
            (".", Some(n)) => n.to_string(),
            (".", None) => "body".to_string(),
            (p, Some(n)) if inner.starts_with("missing field") => format!("{p}.{n}"),
            (p, Some(n)) if inner.starts_with("unknown field") => {
                // serde reports unknown fields at their own path already in most cases.
                if p.ends_with(n) {
                    p.to_string()
                } else {
                    format!("{p}.{n}")
                }
            }
            (p, _) => p.to_string(),
        };
        let message = inner
            .split(" at line ")
            .next()
            .unwrap_or(&inner)
            .to_string();
        ApiError::bad_request(&field, message)
    })
}

fn first_problem(problems: Vec<(String, String)>) -> ApiError {
    match problems.into_iter().next() {
        Some((f, m)) => ApiError::bad_request(&f, m),
        None => ApiError::bad_request("body", "invalid"),
    }
}

fn actor(by: Option<&str>) -> String {
    let name: String = by
        .unwrap_or("api")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(64)
        .collect();
    format!("api:{}", if name.is_empty() { "api" } else { &name })
}

/// A new outage. The same checks as the `/announce` form apply.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "summary": "Checkout fails for card payments",
    "systems": ["payments"],
    "impact": {"sales": {"affected": "yes", "details": "no new orders"}},
    "severity": "critical",
    "eta": "2h",
    "resolution_assignee": "U0123ABCD",
    "communication_assignee": "U0456EFGH",
    "public": true,
    "by": "alertmanager"
}))]
struct NewAnnouncement {
    /// What is broken, as users see it (1 to 3000 characters, not only spaces).
    #[schema(min_length = 1, max_length = 3000)]
    summary: String,
    /// Ids from `announcements.systems`.
    #[schema(min_items = 1)]
    systems: Vec<String>,
    /// By audience (`announcements.audiences`); audiences left out are `unknown`.
    #[serde(default)]
    impact: BTreeMap<String, Impact>,
    /// One of `announcements.severities`.
    severity: String,
    #[schema(schema_with = model::eta_schema)]
    eta: String,
    /// A Slack user id (an active member).
    resolution_assignee: String,
    /// A Slack user id (an active member).
    communication_assignee: String,
    /// Show it on the public status page.
    #[serde(default)]
    public: bool,
    /// Who is announcing (a tool's name), recorded as `api:<by>`.
    #[serde(default)]
    by: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/announcements",
    operation_id = "announce",
    tag = "announcements",
    summary = "Announce an outage",
    description = "Posts one message in `announcements.channel`, pins it, and tells the audiences \
                   answered \"yes\", exactly as the `/announce` form does.",
    request_body = NewAnnouncement,
    responses(
        (status = 201, description = "Announced", body = OutageView, links(
            ("GetAnnouncement" = (operation_id = "getAnnouncement", parameters(("id" = "$response.body#/id")),
                                  description = "The outage and its history")),
            ("ChangeAnnouncement" = (operation_id = "changeAnnouncement", parameters(("id" = "$response.body#/id")),
                                     description = "Update, resolve or reopen it")),
        )),
        (status = 400, description = "A field is wrong (or outage announcements are not configured: \
                                      field `announcements.channel`); nothing was announced", body = BadRequestBody),
        (status = 503, description = "Slack could not be asked whether an assignee is an active person; \
                                      nothing was announced: retry after `Retry-After` seconds", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    )
)]
async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    require_api_token(&state, &headers)?;
    let settings = &state.settings().announcements;
    if settings.channel.is_none() {
        return Err(ApiError::bad_request(
            "announcements.channel",
            "outage announcements are not configured on this server",
        ));
    }
    let b: NewAnnouncement = body(&bytes)?;
    let mut fields = Fields {
        summary: b.summary,
        systems: b.systems,
        impact: b.impact,
        severity: b.severity,
        eta: b.eta,
        resolution_assignee: b.resolution_assignee,
        communication_assignee: b.communication_assignee,
        public: b.public,
    };
    model::complete_impact(settings, &mut fields);
    let mut problems = model::validate(settings, &fields);
    if problems.is_empty() {
        problems = changes::assignee_problems(&state, &fields, None)
            .await
            .map_err(|e| applied_error(e, ""))?;
    }
    if !problems.is_empty() {
        return Err(first_problem(problems));
    }
    let by = actor(b.by.as_deref());
    let outage = changes::announce(&state, fields, &by).await?;
    state
        .audit(
            super::FEATURE,
            "announce",
            &by,
            &format!("outage:{}", outage.id),
            "ok",
            json!({"via": "api"}),
        )
        .await;
    Ok((StatusCode::CREATED, Json(outage.to_json())).into_response())
}

/// How it was resolved.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ResolutionIn {
    /// What fixed it (1 to 3000 characters, not only spaces).
    #[schema(min_length = 1, max_length = 3000)]
    summary: String,
    #[serde(default)]
    postmortem: bool,
    #[serde(default)]
    report_url: Option<String>,
    /// Milliseconds since the epoch, between the outage's start and now (default: now).
    #[serde(default)]
    resolved_at: Option<i64>,
}

/// A change: fields with a `reason`, or `"state": "resolved"` with a `resolution`, or
/// `"state": "open"` to reopen. State changes come alone, without field changes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PatchAnnouncement {
    #[schema(min_length = 1, max_length = 3000)]
    summary: Option<String>,
    #[schema(min_items = 1)]
    systems: Option<Vec<String>>,
    /// Audiences given here replace theirs; others keep their answer.
    impact: Option<BTreeMap<String, Impact>>,
    severity: Option<String>,
    #[schema(schema_with = eta_change_schema)]
    eta: Option<String>,
    resolution_assignee: Option<String>,
    communication_assignee: Option<String>,
    public: Option<bool>,
    /// `resolved` or `open`.
    #[schema(schema_with = state_change_schema)]
    state: Option<String>,
    resolution: Option<ResolutionIn>,
    /// Why (required with field changes; posted in the thread with the change).
    #[schema(max_length = 1000)]
    reason: Option<String>,
    /// Who is changing it (a tool's name), recorded as `api:<by>`.
    by: Option<String>,
    /// The version the caller saw; a different current version is a 409.
    version: Option<i64>,
    /// Link the postmortem's report to a resolved outage (in a request of its own).
    postmortem: Option<PostmortemIn>,
}

/// A postmortem report.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://wiki.example.com/postmortems/2026-12-07-checkout", "summary": "A certificate expired; renewals now alert 30 days ahead."}))]
struct PostmortemIn {
    /// An http(s) link to the report.
    url: String,
    /// What it concluded (at most 3000 characters).
    #[schema(max_length = 3000)]
    summary: Option<String>,
}

fn eta_change_schema() -> utoipa::openapi::Object {
    nullable(model::eta_schema())
}

fn state_change_schema() -> utoipa::openapi::Object {
    nullable(model::state_schema())
}

/// The same enumeration, or null (an optional field of a PATCH may be null: unchanged).
fn nullable(mut o: utoipa::openapi::Object) -> utoipa::openapi::Object {
    o.schema_type = utoipa::openapi::schema::SchemaType::from_iter([
        utoipa::openapi::Type::String,
        utoipa::openapi::Type::Null,
    ]);
    if let Some(values) = o.enum_values.as_mut() {
        values.push(serde_json::Value::Null);
    }
    o
}

#[utoipa::path(
    patch,
    path = "/api/v1/announcements/{id}",
    operation_id = "changeAnnouncement",
    tag = "announcements",
    summary = "Update, reassign, resolve or reopen an outage, or add its postmortem",
    description = "Field changes need a `reason` and are posted as one thread reply listing what \
                   changed. With `version`, a change based on a stale read is refused with 409. \
                   `postmortem: {url, summary}` links the report to a resolved outage (alone in \
                   its request; an outage still open is a 409).",
    params(("id" = String, Path, description = "The outage id")),
    request_body = PatchAnnouncement,
    responses(
        (status = 200, description = "Changed", body = OutageView),
        (status = 400, description = "A field is wrong, or nothing would change; nothing was changed", body = BadRequestBody),
        (status = 404, description = "No such outage", body = ErrorBody),
        (status = 409, description = "The outage changed meanwhile (`version`), or it is resolved \
                                      and must be reopened first", body = ErrorBody),
        (status = 503, description = "Slack could not be asked whether a new assignee is an active \
                                      person; nothing was changed: retry after `Retry-After` seconds", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    )
)]
async fn patch(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    require_api_token(&state, &headers)?;
    let b: PatchAnnouncement = body(&bytes)?;
    let Some(outage) = model::load(state.db().pool(), &id).await? else {
        return Err(ApiError::NotFound(format!("no outage {id}")));
    };
    let change = requested_change(&state, &outage, b)?;
    let state_change = matches!(
        change.kind,
        Kind::Resolved | Kind::Reopened | Kind::Postmortem
    );
    if !state_change && !outage.is_open() {
        return Err(ApiError::Conflict(
            "the outage is resolved; reopen it first (\"state\": \"open\")".into(),
        ));
    }
    applied(changes::apply(&state, &id, change).await, &id)
}

/// The change a PATCH body asks for: a state change (resolve, reopen) or field and assignee
/// edits, never both in one request.
fn requested_change(
    state: &AppState,
    outage: &Outage,
    b: PatchAnnouncement,
) -> Result<Change, ApiError> {
    let by = actor(b.by.as_deref());
    let edits_fields = b.summary.is_some()
        || b.systems.is_some()
        || b.impact.is_some()
        || b.severity.is_some()
        || b.eta.is_some()
        || b.public.is_some();
    let edits_assignees = b.resolution_assignee.is_some() || b.communication_assignee.is_some();
    let reason = b
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned);
    if reason
        .as_deref()
        .is_some_and(|r| r.chars().count() > model::REASON_MAX)
    {
        return Err(ApiError::bad_request(
            "reason",
            format!("at most {} characters", model::REASON_MAX),
        ));
    }
    if let Some(p) = &b.postmortem {
        if edits_fields || edits_assignees || b.state.is_some() || b.resolution.is_some() {
            return Err(ApiError::bad_request(
                "postmortem",
                "add the postmortem in a request of its own, without other changes",
            ));
        }
        return super::postmortem::report_change(&p.url, p.summary.as_deref(), &by)
            .map_err(|(f, m)| ApiError::bad_request(&f, m));
    }
    match b.state.clone().as_deref() {
        Some(s) if edits_fields || edits_assignees => Err(ApiError::bad_request(
            "state",
            format!("change the state to {s:?} in a request of its own, without field changes"),
        )),
        Some(model::RESOLVED) => {
            resolution_change(state, outage, b.resolution, by, reason, b.version)
        }
        Some(model::OPEN) => Ok(Change {
            kind: Kind::Reopened,
            by: by.clone(),
            reason,
            expected_version: b.version,
            fields: None,
            resolution: None,
        }),
        Some(other) => Err(ApiError::bad_request(
            "state",
            format!("{other:?} is not a state; use \"resolved\" or \"open\""),
        )),
        None => edit_change(outage, b, by, reason, edits_fields),
    }
}

/// `"state": "resolved"`: the resolution is required and checked (its summary, when, the report
/// link); the reason defaults to its summary.
fn resolution_change(
    state: &AppState,
    outage: &Outage,
    resolution: Option<ResolutionIn>,
    by: String,
    reason: Option<String>,
    expected_version: Option<i64>,
) -> Result<Change, ApiError> {
    let Some(r) = resolution else {
        return Err(ApiError::bad_request(
            "resolution",
            "required to resolve: {\"summary\", \"postmortem\", \"report_url\", \"resolved_at\"}",
        ));
    };
    let summary = r.summary.trim().to_string();
    if summary.is_empty() || summary.chars().count() > model::SUMMARY_MAX {
        return Err(ApiError::bad_request(
            "resolution.summary",
            format!("say what fixed it (1 to {} characters)", model::SUMMARY_MAX),
        ));
    }
    let now = state.now_ms();
    let at = r.resolved_at.unwrap_or(now);
    if at > now + 60_000 || at < outage.started_at {
        return Err(ApiError::bad_request(
            "resolution.resolved_at",
            "must be between the outage's start and now (ms since the epoch)",
        ));
    }
    let report_url = r
        .report_url
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty());
    if report_url.as_deref().is_some_and(|u| !model::valid_url(u)) {
        return Err(ApiError::bad_request(
            "resolution.report_url",
            "must be an http(s) URL",
        ));
    }
    Ok(Change {
        kind: Kind::Resolved,
        by: by.clone(),
        reason: reason.or(Some(summary.clone())),
        expected_version,
        fields: None,
        resolution: Some((
            Resolution {
                summary,
                postmortem: r.postmortem,
                report_url,
                resolved_by: by.clone(),
                postmortem_summary: None,
            },
            at.min(now),
        )),
    })
}

/// Field or assignee edits (no state): something must change, and the reason is required, as it
/// is posted in the thread. Fields not given keep their value; given audiences replace theirs.
fn edit_change(
    outage: &Outage,
    b: PatchAnnouncement,
    by: String,
    reason: Option<String>,
    edits_fields: bool,
) -> Result<Change, ApiError> {
    let edits_assignees = b.resolution_assignee.is_some() || b.communication_assignee.is_some();
    if b.resolution.is_some() {
        return Err(ApiError::bad_request(
            "resolution",
            "only with \"state\": \"resolved\"",
        ));
    }
    if !edits_fields && !edits_assignees {
        return Err(ApiError::bad_request("body", "nothing to change"));
    }
    if reason.is_none() {
        return Err(ApiError::bad_request(
            "reason",
            "say why; it is posted in the thread with the change",
        ));
    }
    let mut f = outage.fields.clone();
    if let Some(v) = b.summary {
        f.summary = v;
    }
    if let Some(v) = b.systems {
        f.systems = v;
    }
    if let Some(v) = b.impact {
        f.impact.extend(v);
    }
    if let Some(v) = b.severity {
        f.severity = v;
    }
    if let Some(v) = b.eta {
        f.eta = v;
    }
    if let Some(v) = b.resolution_assignee {
        f.resolution_assignee = v;
    }
    if let Some(v) = b.communication_assignee {
        f.communication_assignee = v;
    }
    if let Some(v) = b.public {
        f.public = v;
    }
    Ok(Change {
        kind: if edits_fields {
            Kind::Updated
        } else {
            Kind::Reassigned
        },
        by: by.clone(),
        reason,
        expected_version: b.version,
        fields: Some(f),
        resolution: None,
    })
}

/// The answer to a PATCH once the write path has run: the outage, or why it was not changed.
fn applied(result: Result<Outage, ChangeError>, id: &str) -> Result<Response, ApiError> {
    match result {
        Ok(o) => Ok(Json(o.to_json()).into_response()),
        Err(e) => Err(applied_error(e, id)),
    }
}

/// The API error for a change that was refused or could not be made.
fn applied_error(e: ChangeError, id: &str) -> ApiError {
    match e {
        ChangeError::Invalid(p) => first_problem(p),
        ChangeError::NothingChanged => ApiError::bad_request(
            "body",
            "nothing would change: every given value is the current one",
        ),
        ChangeError::NotFound => ApiError::NotFound(format!("no outage {id}")),
        ChangeError::Conflict => ApiError::Conflict(
            "the outage changed meanwhile (version); read it again and retry".into(),
        ),
        ChangeError::WrongState(s) => ApiError::Conflict(format!("not changed: {s}")),
        ChangeError::Unavailable { field, message } => {
            ApiError::Unavailable(format!("{field}: {message}"))
        }
        ChangeError::Other(e) => ApiError::Internal(e),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only outages in this state.
    #[param(schema_with = model::state_schema)]
    state: Option<String>,
    /// At most this many, newest first (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// Outages, newest first.
#[derive(Debug, Serialize, ToSchema)]
struct AnnouncementList {
    announcements: Vec<OutageView>,
}

/// An outage with its history.
#[derive(Debug, Serialize, ToSchema)]
struct OutageDetail {
    #[serde(flatten)]
    outage: OutageView,
    history: Vec<HistoryEntry>,
}

#[utoipa::path(
    get,
    path = "/api/v1/announcements",
    operation_id = "listAnnouncements",
    tag = "announcements",
    summary = "List outages",
    params(ListQuery),
    responses(
        (status = 200, description = "Outages, newest first", body = AnnouncementList),
        (status = 400, description = "A query parameter is wrong", body = BadRequestBody),
    )
)]
async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<AnnouncementList>, ApiError> {
    require_api_token(&state, &headers)?;
    if let Some(s) = q.state.as_deref()
        && s != model::OPEN
        && s != model::RESOLVED
    {
        return Err(ApiError::bad_request("state", "use open or resolved"));
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit", "must be between 1 and 1000"));
    }
    let outages = model::list(state.db().pool(), q.state.as_deref(), limit).await?;
    Ok(Json(AnnouncementList {
        announcements: outages.iter().map(model::Outage::view).collect(),
    }))
}

#[utoipa::path(
    get,
    path = "/api/v1/announcements/{id}",
    operation_id = "getAnnouncement",
    tag = "announcements",
    summary = "One outage with its history",
    params(("id" = String, Path, description = "The outage id")),
    responses(
        (status = 200, description = "The outage and every change to it", body = OutageDetail),
        (status = 400, description = "The id is malformed (field `id`)", body = BadRequestBody),
        (status = 404, description = "No such outage", body = ErrorBody),
    )
)]
async fn one(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<OutageDetail>, ApiError> {
    require_api_token(&state, &headers)?;
    let Some(o) = model::load(state.db().pool(), &id).await? else {
        return Err(ApiError::NotFound(format!("no outage {id}")));
    };
    let history = model::history(state.db().pool(), &id).await?;
    Ok(Json(OutageDetail {
        outage: o.view(),
        history: history.iter().map(model::HistoryRow::view).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(raw: &str) -> String {
        match body::<NewAnnouncement>(raw.as_bytes()) {
            Err(ApiError::BadRequest { field, .. }) => field,
            other => panic!("expected a bad request, got {other:?}"),
        }
    }

    #[test]
    fn bad_bodies_name_the_field() {
        assert_eq!(field_of(""), "body");
        assert_eq!(field_of("{"), "body");
        assert_eq!(field_of(r#"{"systems": []}"#), "summary");
        assert_eq!(
            field_of(r#"{"summary": "x", "systems": "search"}"#),
            "systems"
        );
        assert_eq!(
            field_of(
                r#"{"summary":"x","systems":[],"severity":"a","eta":"2h","resolution_assignee":"U1","communication_assignee":"U1","colour":1}"#
            ),
            "colour"
        );
        assert_eq!(
            field_of(
                r#"{"summary":"x","systems":[],"severity":"a","eta":"2h","resolution_assignee":"U1","communication_assignee":"U1","impact":{"sales":{"affected":3}}}"#
            ),
            "impact.sales.affected"
        );
    }
}
