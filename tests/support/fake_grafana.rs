//! A local Grafana HTTP annotations API (the legacy `/api/annotations`), following
//! /work/shared/reference/monitoring-integrations.md §2:
//! - Bearer auth: no credentials → 401 `auth.unauthorized`, a wrong token → 401 `api-key.invalid`
//!   (errutil shape);
//! - `POST /api/annotations` `{dashboardUID?, time?, timeEnd?, tags?, text}` → 200
//!   `{"message":"Annotation added","id":N}`; empty text → 400 `Failed to save annotation`; an
//!   undecodable body → 400 `bad request data`; `time` 0/absent → now, `timeEnd` absent → `time`
//!   (a point), `timeEnd < time` → swapped. **No idempotency key**: a repeated create is a second
//!   annotation;
//! - `PATCH /api/annotations/{id}`: only non-empty / non-zero values change (`tags` replaces);
//!   unknown id → 404 `Annotation not found`; non-numeric → 400 `annotationId is invalid`;
//! - `DELETE /api/annotations/{id}`; `GET /api/annotations?tags=a&tags=b&limit` (all tags must
//!   match; default limit 100), newest first.
//!
//! Failures on demand: the next N requests answer 500, or the next create is stored but its
//! answer is a 500 (a lost response).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use serde_json::{Value, json};

#[derive(Default)]
struct Inner {
    next_id: i64,
    annotations: BTreeMap<i64, Value>,
    fail_next: u32,
    lose_next_create: bool,
    /// `METHOD path` of every authenticated request.
    requests: Vec<String>,
}

#[derive(Clone)]
pub struct FakeGrafana {
    inner: Arc<Mutex<Inner>>,
    token: String,
    pub url: String,
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

impl FakeGrafana {
    pub async fn start(token: &str) -> FakeGrafana {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = FakeGrafana {
            inner: Arc::new(Mutex::new(Inner {
                next_id: 1,
                ..Default::default()
            })),
            token: token.to_string(),
            url: format!("http://{addr}"),
        };
        let app = Router::new()
            .route("/api/annotations", get(find).post(create))
            .route(
                "/api/annotations/{id}",
                patch(patch_one).delete(delete_one).get(get_one),
            )
            .with_state(fake.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        fake
    }

    /// The next `n` requests answer 500.
    pub fn fail_next(&self, n: u32) {
        self.inner.lock().unwrap().fail_next = n;
    }

    /// The next create is stored, but answered with a 500.
    pub fn lose_next_create(&self) {
        self.inner.lock().unwrap().lose_next_create = true;
    }

    pub fn annotations(&self) -> Vec<Value> {
        self.inner
            .lock()
            .unwrap()
            .annotations
            .values()
            .cloned()
            .collect()
    }

    pub fn requests(&self) -> Vec<String> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// Auth and scripted failures, before any route does its work.
    fn gate(&self, headers: &HeaderMap, what: String) -> Result<(), Box<Response>> {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let Some(token) = auth.strip_prefix("Bearer ") else {
            return Err(Box::new(answer(
                StatusCode::UNAUTHORIZED,
                json!({"message": "Unauthorized", "messageId": "auth.unauthorized",
                       "statusCode": 401, "traceID": ""}),
            )));
        };
        if token != self.token {
            return Err(Box::new(answer(
                StatusCode::UNAUTHORIZED,
                json!({"message": "Invalid API key", "messageId": "api-key.invalid",
                       "statusCode": 401, "traceID": ""}),
            )));
        }
        let mut g = self.inner.lock().unwrap();
        g.requests.push(what);
        if g.fail_next > 0 {
            g.fail_next -= 1;
            return Err(Box::new(answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"message": "Internal Server Error"}),
            )));
        }
        Ok(())
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn create(State(f): State<FakeGrafana>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = f.gate(&headers, "POST /api/annotations".into()) {
        return *r;
    }
    let Ok(b) = serde_json::from_slice::<Value>(&body) else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"message": "bad request data"}),
        );
    };
    let text = b["text"].as_str().unwrap_or("");
    if text.is_empty() {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"message": "Failed to save annotation"}),
        );
    }
    let mut time = b["time"]
        .as_i64()
        .filter(|t| *t != 0)
        .unwrap_or_else(now_ms);
    let mut end = b["timeEnd"].as_i64().filter(|t| *t != 0).unwrap_or(time);
    if end < time {
        std::mem::swap(&mut time, &mut end);
    }
    let mut g = f.inner.lock().unwrap();
    let id = g.next_id;
    g.next_id += 1;
    g.annotations.insert(
        id,
        json!({"id": id, "dashboardUID": b["dashboardUID"].as_str().unwrap_or(""), "panelId": 0,
               "userId": 1, "time": time, "timeEnd": end, "text": text,
               "tags": b["tags"].as_array().cloned().unwrap_or_default(), "data": {}}),
    );
    if std::mem::take(&mut g.lose_next_create) {
        return answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"message": "Internal Server Error"}),
        );
    }
    answer(
        StatusCode::OK,
        json!({"message": "Annotation added", "id": id}),
    )
}

fn parse_id(id: &str) -> Result<i64, Box<Response>> {
    id.parse().map_err(|_| {
        Box::new(answer(
            StatusCode::BAD_REQUEST,
            json!({"message": "annotationId is invalid"}),
        ))
    })
}

fn not_found() -> Response {
    answer(
        StatusCode::NOT_FOUND,
        json!({"message": "Annotation not found"}),
    )
}

async fn patch_one(
    State(f): State<FakeGrafana>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = f.gate(&headers, format!("PATCH /api/annotations/{id}")) {
        return *r;
    }
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let Ok(b) = serde_json::from_slice::<Value>(&body) else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"message": "bad request data"}),
        );
    };
    let mut g = f.inner.lock().unwrap();
    let Some(a) = g.annotations.get_mut(&id) else {
        return not_found();
    };
    if let Some(t) = b["text"].as_str().filter(|t| !t.is_empty()) {
        a["text"] = json!(t);
    }
    if let Some(tags) = b["tags"].as_array() {
        a["tags"] = json!(tags);
    }
    for k in ["time", "timeEnd"] {
        if let Some(t) = b[k].as_i64().filter(|t| *t != 0) {
            a[k] = json!(t);
        }
    }
    answer(StatusCode::OK, json!({"message": "Annotation patched"}))
}

async fn delete_one(
    State(f): State<FakeGrafana>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = f.gate(&headers, format!("DELETE /api/annotations/{id}")) {
        return *r;
    }
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    match f.inner.lock().unwrap().annotations.remove(&id) {
        Some(_) => answer(StatusCode::OK, json!({"message": "Annotation deleted"})),
        None => not_found(),
    }
}

async fn get_one(
    State(f): State<FakeGrafana>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = f.gate(&headers, format!("GET /api/annotations/{id}")) {
        return *r;
    }
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    match f.inner.lock().unwrap().annotations.get(&id) {
        Some(a) => answer(StatusCode::OK, a.clone()),
        None => not_found(),
    }
}

async fn find(State(f): State<FakeGrafana>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    if let Err(r) = f.gate(&headers, "GET /api/annotations".into()) {
        return *r;
    }
    let pairs: Vec<(String, String)> = form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let tags: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "tags")
        .map(|(_, v)| v.as_str())
        .collect();
    let limit = pairs
        .iter()
        .find(|(k, _)| k == "limit")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(100usize);
    let g = f.inner.lock().unwrap();
    let mut found: Vec<Value> = g
        .annotations
        .values()
        .filter(|a| {
            let have = a["tags"].as_array().cloned().unwrap_or_default();
            tags.iter().all(|t| have.iter().any(|h| h == t))
        })
        .cloned()
        .collect();
    found.sort_by_key(|a| std::cmp::Reverse(a["time"].as_i64().unwrap_or(0)));
    found.truncate(limit);
    answer(StatusCode::OK, Value::Array(found))
}
