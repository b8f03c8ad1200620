//! The OpenAPI 3.1 document of `/api/v1`, generated from the handlers' `#[utoipa::path]`
//! annotations and the request and response types (utoipa), served at
//! `GET /api/v1/openapi.json` and committed as `docs/openapi.json`.
//!
//! Each feature's `api()` registers its routes and their operations together (utoipa-axum), and
//! the feature's own router is built from the same `api()`, so the document cannot describe a
//! route that is not served, nor miss one that is. What every operation shares (the Bearer token,
//! 401 and 500 with their bodies) is added here once. The document itself needs no token: it
//! holds no data, and clients are generated from it.
//!
//! This module never changes behaviour: it only describes. `slackops openapi` prints the document;
//! a test fails when `docs/openapi.json` is not what this module generates.

use std::sync::LazyLock;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::OpenApi;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, ObjectBuilder, Ref, RefOr, Response, ResponseBuilder, Type,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{BadRequestBody, ErrorBody};
use crate::state::AppState;

/// Where the document is served.
pub const PATH: &str = "/api/v1/openapi.json";
/// The name of the security scheme every operation but [`PATH`] requires.
const TOKEN: &str = "api_token";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "slackops API",
        description = "Announce and update outages, schedule maintenance and read Manual Judgments \
from monitoring, CI and tools: the same checks and the same Slack messages as the Slack forms.\n\n\
**Authentication.** Every operation except this document needs one of the server's `api.tokens` as \
`Authorization: Bearer <token>`; without it the answer is 401 (also while `api.tokens` is empty: \
the API is then off).\n\n\
**Errors.** A bad request is a 400 whose `field` names what is wrong: a JSON path into the body \
(`summary`, `impact.sales.affected`, `resolution.summary`), a query parameter (`limit`), or `body` \
when the body as a whole is wrong (not JSON, not an object, nothing to change); nothing is changed. \
Every other error is an `ErrorBody` with a machine-readable `error` (`unauthorized`, `not_found`, \
`conflict`, `internal`) and a `message`; a 500 carries the `error_id` of the server's log line.\n\n\
Times are milliseconds since the epoch for outages and judgments, RFC 3339 for maintenance windows.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(ErrorBody, BadRequestBody)),
    tags(
        (name = "announcements", description = "Outage announcements"),
        (name = "alerts", description = "Monitoring alerts that propose outages (Prometheus Alertmanager)"),
        (name = "maintenances", description = "Scheduled maintenance windows"),
        (name = "judgments", description = "Spinnaker Manual Judgments decided from Slack"),
        (name = "meta", description = "This document"),
    )
)]
struct ApiDoc;

/// The routes of `/api/v1` with their operations: every feature's, and this document's.
fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(crate::announcements::api::api())
        .merge(crate::announcements::alerts_api::api())
        .merge(crate::maintenance::api::api())
        .merge(crate::approvals::api::api())
        .routes(routes!(document_json))
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = api().split_for_parts().1;
    add_authentication(&mut doc);
    doc
}

/// The document as committed: pretty JSON with a final newline.
pub fn json() -> String {
    let mut s = serde_json::to_string_pretty(&document()).unwrap_or_default();
    s.push('\n');
    s
}

static JSON: LazyLock<String> = LazyLock::new(json);

/// `GET /api/v1/openapi.json`.
pub fn routes() -> Router<AppState> {
    OpenApiRouter::new()
        .routes(routes!(document_json))
        .split_for_parts()
        .0
}

#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    operation_id = "getOpenApiDocument",
    tag = "meta",
    summary = "This OpenAPI document",
    description = "Needs no token.",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of /api/v1", body = Object, content_type = "application/json"))
)]
async fn document_json() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], JSON.as_str())
}

/// The Bearer token on every operation but the document's, with its 401, and the 500 any
/// operation may answer.
fn add_authentication(doc: &mut utoipa::openapi::OpenApi) {
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            TOKEN,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("One of the server's `api.tokens`."))
                    .build(),
            ),
        );
    for (path, item) in doc.paths.paths.iter_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in operations.into_iter().flatten() {
            op.responses.responses.insert(
                "500".into(),
                error("The server failed; `error_id` names its log line"),
            );
            if path != PATH {
                require_token(op);
            }
        }
    }
}

fn require_token(op: &mut Operation) {
    op.security = Some(vec![SecurityRequirement::new(TOKEN, Vec::<String>::new())]);
    let mut unauthorized = ResponseBuilder::new()
        .description("No token, an unknown token, or the API is off (`api.tokens` is empty)")
        .header(
            "WWW-Authenticate",
            HeaderBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .description(Some("`Bearer realm=\"slackops\"`"))
                .build(),
        );
    unauthorized = unauthorized.content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build(),
    );
    op.responses
        .responses
        .insert("401".into(), RefOr::T(unauthorized.build()));
}

fn error(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_but_the_document_asks_for_the_token_and_documents_its_errors() {
        let doc = serde_json::to_value(document()).expect("serializes");
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().expect("paths");
        assert!(paths.len() >= 6, "{paths:?}");
        for (path, item) in paths {
            for (method, op) in item.as_object().expect("path item") {
                let where_ = format!("{method} {path}");
                assert!(op["responses"]["500"].is_object(), "{where_}");
                if path == PATH {
                    assert_eq!(op["security"], serde_json::json!([{}]), "{where_}");
                    continue;
                }
                assert_eq!(
                    op["security"],
                    serde_json::json!([{ TOKEN: [] }]),
                    "{where_}"
                );
                assert!(op["responses"]["401"]["headers"]["WWW-Authenticate"].is_object());
                let bad = &op["responses"]["400"];
                if bad.is_object() {
                    assert_eq!(
                        bad["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/BadRequestBody",
                        "{where_}"
                    );
                }
            }
        }
        let bad = &doc["components"]["schemas"]["BadRequestBody"];
        assert_eq!(
            bad["required"],
            serde_json::json!(["error", "field", "message"])
        );
    }
}
