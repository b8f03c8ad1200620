//! The API contract: `docs/openapi.json` is what the code generates, the service serves it
//! without a token, every documented operation is routed, answers what the document says for
//! missing tokens and bad query parameters, and the bodies it returns have the documented fields.

use serde_json::{Value, json};

use crate::helpers::{API_TOKEN, spawn_app};

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");

#[test]
fn the_committed_openapi_document_is_the_generated_one() {
    let generated = slackops::openapi::json();
    if std::env::var_os("SLACKOPS_BLESS").is_some() {
        std::fs::write(COMMITTED, &generated).expect("write docs/openapi.json");
        return;
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is not what the code generates. Regenerate it with\n\
         \x20   cargo run -q -- openapi > docs/openapi.json\n\
         (or SLACKOPS_BLESS=1 cargo test --test api openapi), review the diff and commit it."
    );
}

#[tokio::test]
async fn the_document_is_served_without_a_token() {
    let app = spawn_app().await;
    let resp = app.get("/api/v1/openapi.json").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let served: Value = resp.json().await.expect("JSON");
    assert_eq!(
        served,
        serde_json::to_value(slackops::openapi::document()).expect("document")
    );
    assert_eq!(served["openapi"], "3.1.0");
    app.stop().await;
}

/// Every (method, path) the document lists, with `{id}` filled in.
fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            ops.push((method.clone(), path.replace("{id}", "01NOSUCHID")));
        }
    }
    ops
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_refuses_a_missing_token_as_documented() {
    let app = spawn_app().await;
    let doc = serde_json::to_value(slackops::openapi::document()).expect("document");
    let ops = operations(&doc);
    assert_eq!(ops.len(), 12, "{ops:?}");
    for (method, path) in ops {
        if path == slackops::openapi::PATH {
            continue;
        }
        let resp = app
            .client
            .request(
                method.to_uppercase().parse().expect("method"),
                app.url(&path),
            )
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .expect("request");
        assert_eq!(
            resp.status(),
            401,
            "{method} {path} is routed and asks for the token"
        );
        assert_eq!(
            resp.headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer realm=\"slackops\""),
            "{method} {path}"
        );
        let body: Value = resp.json().await.expect("JSON");
        assert_eq!(body["error"], "unauthorized", "{method} {path}: {body}");
        assert!(body["message"].is_string(), "{method} {path}: {body}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_query_parameter_of_the_wrong_type_is_a_json_400_naming_it() {
    // Regression: axum's Query answered these with a plain-text 400 the document does not allow.
    let app = spawn_app().await;
    for path in [
        "/api/v1/announcements?limit=ten",
        "/api/v1/maintenances?limit=1.5",
        "/api/v1/judgments?state=awaiting&limit=99999999999999999999",
        "/api/v1/judgments?limit=1&limit=2",
    ] {
        let resp = app
            .client
            .get(app.url(path))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 400, "{path}");
        let body: Value = resp.json().await.expect("a JSON body");
        assert_eq!(body["error"], "bad_request", "{path}: {body}");
        assert_eq!(body["field"], "limit", "{path}: {body}");
    }
    app.stop().await;
}

/// The property names a schema allows, following `$ref` and `allOf`.
pub fn documented_fields(doc: &Value, schema: &Value) -> Vec<String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().expect("ref name");
        return documented_fields(doc, &doc["components"]["schemas"][name]);
    }
    let mut fields: Vec<String> = schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        fields.extend(documented_fields(doc, part));
    }
    fields.sort();
    fields
}

pub fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
    k.sort();
    k
}

#[tokio::test]
async fn a_scheduled_maintenance_window_has_exactly_the_documented_fields() {
    let app = spawn_app().await;
    let doc = serde_json::to_value(slackops::openapi::document()).expect("document");
    let start = chrono::Utc::now() + chrono::Duration::hours(1);
    let resp = app
        .client
        .post(app.url("/api/v1/maintenances"))
        .bearer_auth(API_TOKEN)
        .json(&json!({
            "title": "Database upgrade",
            "starts_at": start.to_rfc3339(),
            "ends_at": (start + chrono::Duration::hours(1)).to_rfc3339(),
        }))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.expect("JSON");
    let schema = &doc["paths"]["/api/v1/maintenances"]["post"]["responses"]["201"]["content"]["application/json"]
        ["schema"];
    assert_eq!(keys(&created), documented_fields(&doc, schema));

    let id = created["id"].as_str().expect("id");
    let one: Value = app
        .client
        .get(app.url(&format!("/api/v1/maintenances/{id}")))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON");
    assert_eq!(one, created);
    app.stop().await;
}

/// The fields of the named component schema.
pub fn schema_fields(name: &str) -> Vec<String> {
    let doc = serde_json::to_value(slackops::openapi::document()).expect("document");
    let schema = json!({ "$ref": format!("#/components/schemas/{name}") });
    documented_fields(&doc, &schema)
}

#[tokio::test]
async fn text_with_a_nul_character_is_a_400_naming_the_field_on_every_database() {
    // Regression: PostgreSQL's text cannot hold NUL, so these reached the database and answered
    // 500 there (SQLite stored them).
    for db in crate::helpers::TestDb::all("openapi::text_with_a_nul_character").await {
        let engine = db.engine;
        let app = crate::helpers::TestAppBuilder::new(db)
            .await
            .settings(|s| s.announcements.channel = Some("C0OUTAGES".into()))
            .spawn()
            .await;
        let start = chrono::Utc::now() + chrono::Duration::hours(1);
        let window = |title: &str| {
            json!({
                "title": title,
                "starts_at": start.to_rfc3339(),
                "ends_at": (start + chrono::Duration::hours(1)).to_rfc3339(),
            })
        };
        let cases = [
            ("GET", "/api/v1/announcements/a%00b".to_string(), None, "id"),
            ("GET", "/api/v1/maintenances/%00".to_string(), None, "id"),
            (
                "POST",
                "/api/v1/maintenances/%00/cancel".to_string(),
                None,
                "id",
            ),
            (
                "GET",
                "/api/v1/judgments?state=%00".to_string(),
                None,
                "state",
            ),
            (
                "POST",
                "/api/v1/maintenances".to_string(),
                Some(window("DB\u{0} upgrade")),
                "title",
            ),
            (
                "POST",
                "/api/v1/announcements".to_string(),
                Some(json!({"summary": "x", "systems": ["a\u{0}"]})),
                "systems[0]",
            ),
            (
                "PATCH",
                "/api/v1/announcements/01ANY".to_string(),
                Some(json!({"summary": "fine", "reason": "because\u{0}"})),
                "reason",
            ),
        ];
        for (method, path, body, field) in cases {
            let mut req = app
                .client
                .request(method.parse().expect("method"), app.url(&path))
                .bearer_auth(API_TOKEN);
            if let Some(b) = &body {
                req = req.json(b);
            }
            let resp = req.send().await.expect("request");
            assert_eq!(resp.status(), 400, "{engine:?}: {method} {path}");
            let v: Value = resp.json().await.expect("JSON");
            assert_eq!(
                v["error"], "bad_request",
                "{engine:?}: {method} {path}: {v}"
            );
            assert_eq!(v["field"], field, "{engine:?}: {method} {path}: {v}");
        }
        // The same window without the NUL is scheduled: the refusal was about the character.
        let ok = app
            .client
            .post(app.url("/api/v1/maintenances"))
            .bearer_auth(API_TOKEN)
            .json(&window("DB upgrade"))
            .send()
            .await
            .expect("request");
        assert_eq!(ok.status(), 201, "{engine:?}");
        app.stop().await;
    }
}
