//! In-process fakes of the three paging products' incident APIs and webhook senders, on one local
//! server: PagerDuty under `/pd`, Opsgenie under `/og`, Grafana OnCall under `/gf`.
//!
//! Each follows `/work/shared/reference/pager-incidents.md`:
//! - **PagerDuty** (§A2): `GET /incidents/{id}`, `PUT /incidents/{id}` with `From` (required;
//!   missing: 400 code 2016 as pdpyras#78 reports; not a user: 400 `Requester User Not Found`
//!   1008), the reopening quirk (an `acknowledged` on a resolved incident reopens it and assigns
//!   the requester), a repeated acknowledge answered 200 with no change and no event, a repeated
//!   resolve 400 `Incident Already Resolved` 1001 ("Where the sources are silent"), a read-only
//!   key 403 `Access Denied` 2010; `GET /users/{id}`. Every change made through the API is sent
//!   as a V3 webhook (§A1): one event per POST, `v1=` HMAC-SHA256 of the raw body with each
//!   configured secret, `X-Webhook-Id` repeated on every retry, retried on 5xx, 429 and
//!   transport errors (intervals compressed), dropped on other 4xx; in order per incident.
//! - **Opsgenie** (§B2): `GET /v2/alerts/{id}`, `POST /v2/alerts/{id}/acknowledge|close`
//!   answering **202** with a `requestId`, processed later: `GET /v2/alerts/requests/{id}`
//!   answers 404 "Request not found. It might not be processed, yet." until then, and
//!   `isSuccess: false` with "Alert is already closed" for an acknowledge of a closed alert;
//!   `user` is accepted whatever it says. Auth `GenieKey`. Its webhook (§B1) signs nothing and
//!   carries the operator's custom header; one attempt, in order.
//! - **Grafana OnCall** (§C2): `GET /api/v1/alert_groups/{id}/`, `POST
//!   /api/v1/alert_groups/{id}/acknowledge|resolve` acting as the token's owner (200, empty
//!   body), 400 `{"detail": "Can't …"}` for a state that does not allow it (resolving an
//!   acknowledged group is allowed), 401 `Invalid token.`; throttled 429 with `Retry-After`.
//!   Its webhook (§C1) is built from the group's state when sent, never retried on non-2xx.
//!
//! Never kinder than the real APIs: a 202 is not success, a resolved incident reopens, an unknown
//! requester is refused.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

pub const PD_TOKEN: &str = "pd-write-token-0123456789";
pub const PD_READ_ONLY_TOKEN: &str = "pd-read-token-0123456789";
pub const PD_SECRET: &str = "pd-webhook-secret-0123456789";
pub const OG_KEY: &str = "og-api-key-0123456789";
pub const OG_WEBHOOK_TOKEN: &str = "og-webhook-token-0123456789";
pub const GF_TOKEN: &str = "gf-api-token-0123456789";
pub const GF_WEBHOOK_TOKEN: &str = "gf-webhook-token-0123456789";
/// The Grafana OnCall user owning `GF_TOKEN`.
pub const GF_TOKEN_OWNER: &str = "oncall-bot@example.com";

#[derive(Debug, Clone)]
pub struct PdIncident {
    pub id: String,
    pub title: String,
    pub service_id: String,
    pub service_name: String,
    pub status: String,
    /// (user id, name)
    pub assignees: Vec<(String, String)>,
    pub last_change_ms: i64,
}

#[derive(Debug, Clone)]
pub struct OgAlert {
    pub id: String,
    pub message: String,
    pub team_id: String,
    pub team_name: String,
    pub closed: bool,
    pub acknowledged: bool,
    pub updated_ns: i64,
}

#[derive(Debug, Clone)]
pub struct GfGroup {
    pub id: String,
    pub title: String,
    pub integration_id: String,
    pub state: String,
    pub created_ms: i64,
    pub acknowledged_ms: Option<i64>,
    pub resolved_ms: Option<i64>,
}

/// One call to a fake API, as recorded.
#[derive(Debug, Clone)]
pub struct ApiCall {
    pub method: String,
    pub path: String,
    pub from: Option<String>,
    pub body: Value,
}

#[derive(Debug, Clone)]
struct OgRequest {
    alert: String,
    action: String,
    user: String,
    due: Instant,
    /// Set once processed: (success, status text).
    result: Option<(bool, String)>,
}

#[derive(Default)]
struct Inner {
    pd: HashMap<String, PdIncident>,
    /// PagerDuty users: id → (email, name).
    pd_users: HashMap<String, (String, String)>,
    og: HashMap<String, OgAlert>,
    og_requests: HashMap<String, OgRequest>,
    og_delay: Duration,
    /// Scripted outcomes of the next Opsgenie requests (false: refused with this text).
    og_outcomes: VecDeque<(bool, String)>,
    gf: HashMap<String, GfGroup>,
    /// Scripted failures: product → statuses for its next write calls.
    faults: HashMap<String, VecDeque<u16>>,
    calls: Vec<ApiCall>,
    /// Where webhooks go (the service's base URL), once set.
    target: Option<String>,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(s: &Shared) -> MutexGuard<'_, Inner> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// The fake products.
#[derive(Clone)]
pub struct FakePager {
    addr: SocketAddr,
    inner: Shared,
    http: reqwest::Client,
}

pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl FakePager {
    pub async fn start() -> FakePager {
        // Its webhook senders build reqwest clients (reference toolchain: the rustls provider).
        slackops::telemetry::install_crypto_provider();
        let inner: Shared = Arc::default();
        let app = Router::new()
            .route("/pd/incidents/{id}", get(pd_get).put(pd_put))
            .route("/pd/users/{id}", get(pd_user))
            .route("/og/v2/alerts/{id}", get(og_get))
            .route("/og/v2/alerts/{id}/{action}", post(og_action))
            .route("/og/v2/alerts/requests/{rid}", get(og_request))
            .route("/gf/api/v1/alert_groups/{id}/", get(gf_get))
            .route("/gf/api/v1/alert_groups/{id}/{action}", post(gf_action))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        {
            let mut i = lock(&inner);
            i.og_delay = Duration::from_millis(300);
        }
        FakePager {
            addr,
            inner,
            http: reqwest::Client::new(),
        }
    }

    pub fn pagerduty_url(&self) -> String {
        format!("http://{}/pd", self.addr)
    }
    pub fn opsgenie_url(&self) -> String {
        format!("http://{}/og", self.addr)
    }
    pub fn grafana_url(&self) -> String {
        format!("http://{}/gf", self.addr)
    }
    /// Send webhooks of changes made through the APIs to this service.
    pub fn set_target(&self, base_url: &str) {
        lock(&self.inner).target = Some(base_url.trim_end_matches('/').to_string());
    }
    pub fn calls(&self) -> Vec<ApiCall> {
        lock(&self.inner).calls.clone()
    }
    /// Calls that change something (PUT and POST).
    pub fn writes(&self) -> Vec<ApiCall> {
        self.calls()
            .into_iter()
            .filter(|c| c.method != "GET")
            .collect()
    }
    /// The next `times` write calls to `product` (`pd`, `og`, `gf`) fail with `status`.
    pub fn fail_writes(&self, product: &str, status: u16, times: usize) {
        let mut i = lock(&self.inner);
        let q = i.faults.entry(product.to_string()).or_default();
        q.extend(std::iter::repeat_n(status, times));
    }

    // ----------------------------------------------------------------------------- PagerDuty

    pub fn pd_add_user(&self, id: &str, email: &str, name: &str) {
        lock(&self.inner)
            .pd_users
            .insert(id.into(), (email.into(), name.into()));
    }
    pub fn pd_add(&self, incident: PdIncident) {
        lock(&self.inner).pd.insert(incident.id.clone(), incident);
    }
    pub fn pd_incident(&self, id: &str) -> Option<PdIncident> {
        lock(&self.inner).pd.get(id).cloned()
    }
    /// A change made in PagerDuty itself (its app, escalation, auto-resolve), without a webhook.
    pub fn pd_set_status(&self, id: &str, status: &str) -> Option<PdIncident> {
        let mut i = lock(&self.inner);
        let inc = i.pd.get_mut(id)?;
        inc.status = status.into();
        inc.last_change_ms = now_ms();
        Some(inc.clone())
    }

    /// The V3 webhook body of an event about `inc` (§A1 "Envelope").
    pub fn pd_event(
        inc: &PdIncident,
        event_type: &str,
        occurred_ms: i64,
        agent: Option<(&str, &str)>,
    ) -> Value {
        let agent = match agent {
            Some((id, name)) => json!({"id": id, "type": "user_reference", "summary": name,
                "self": format!("https://api.pagerduty.com/users/{id}"),
                "html_url": format!("https://acme.pagerduty.com/users/{id}")}),
            None => Value::Null,
        };
        json!({"event": {
            "id": uuid::Uuid::new_v4().to_string(),
            "event_type": event_type,
            "resource_type": "incident",
            "occurred_at": iso(occurred_ms),
            "agent": agent,
            "client": if agent.is_null() { Value::Null } else { json!({"name": "PagerDuty"}) },
            "data": pd_incident_json(inc, true)
        }})
    }

    /// Deliver one webhook the way PagerDuty does: signed with every secret given (rotation),
    /// one `X-Webhook-Id` for all retries, retried on 5xx, 429 and transport errors (up to 5
    /// attempts, compressed intervals), dropped on other 4xx. The final status (0: never
    /// answered).
    pub async fn pd_deliver(&self, base: &str, body: &Value, secrets: &[&str]) -> u16 {
        let bytes = body.to_string().into_bytes();
        let sig = secrets
            .iter()
            .map(|s| slackops::pager::webhook::sign_pagerduty(s, &bytes))
            .collect::<Vec<_>>()
            .join(",");
        let webhook_id = uuid::Uuid::new_v4().to_string();
        deliver_pagerduty(&self.http, base, &bytes, &sig, &webhook_id).await
    }

    /// Deliver bytes with the given signature header and webhook id (retries as above).
    pub async fn pd_deliver_raw(
        &self,
        base: &str,
        bytes: &[u8],
        sig: &str,
        webhook_id: &str,
    ) -> u16 {
        deliver_pagerduty(&self.http, base, bytes, sig, webhook_id).await
    }

    // ----------------------------------------------------------------------------- Opsgenie

    pub fn og_add(&self, alert: OgAlert) {
        lock(&self.inner).og.insert(alert.id.clone(), alert);
    }
    pub fn og_alert(&self, id: &str) -> Option<OgAlert> {
        lock(&self.inner).og.get(id).cloned()
    }
    /// The next request is processed as a failure with this status text.
    pub fn og_fail_next_request(&self, status: &str) {
        lock(&self.inner)
            .og_outcomes
            .push_back((false, status.to_string()));
    }
    /// The webhook body Opsgenie sends for `action` on `alert` (§B1 "Body").
    pub fn og_event(alert: &OgAlert, action: &str, username: &str) -> Value {
        json!({"action": action,
            "alert": {"alertId": alert.id, "message": alert.message, "tags": [], "tinyId": "12",
                "entity": "", "alias": format!("alias-{}", alert.id), "createdAt": alert.updated_ns / 1_000_000,
                "updatedAt": alert.updated_ns, "username": username, "userId": "og-user",
                "priority": "P2", "teams": [alert.team_id],
                "responders": [{"id": alert.team_id, "type": "team", "name": alert.team_name}]},
            "source": {"name": "web", "type": "web"},
            "integrationName": "slackops", "integrationId": "int-1", "integrationType": "Webhook"})
    }
    /// Deliver an Opsgenie webhook with the custom header the operator configured (one attempt).
    pub async fn og_deliver(&self, base: &str, body: &Value, authorization: Option<&str>) -> u16 {
        let mut req = self
            .http
            .post(format!("{base}/pager/opsgenie"))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        req.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
    }

    // ----------------------------------------------------------------------------- Grafana

    pub fn gf_add(&self, group: GfGroup) {
        lock(&self.inner).gf.insert(group.id.clone(), group);
    }
    pub fn gf_group(&self, id: &str) -> Option<GfGroup> {
        lock(&self.inner).gf.get(id).cloned()
    }
    /// The "Forward All" webhook body for `event_type`, built from the group's state now (§C1).
    pub fn gf_event(&self, id: &str, event_type: &str, user_email: Option<&str>) -> Value {
        let g = self.gf_group(id).expect("group");
        gf_webhook(&g, event_type, user_email)
    }
    /// Deliver a Grafana OnCall webhook with `authorization` as the header value (never retried).
    pub async fn gf_deliver(&self, base: &str, body: &Value, authorization: Option<&str>) -> u16 {
        let mut req = self
            .http
            .post(format!("{base}/pager/grafana-oncall"))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        req.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
    }
}

/// PagerDuty's delivery (§A1 "Delivery, retries and ordering"): the same `X-Webhook-Id` on every
/// attempt; retried on 5xx, 429 and transport errors (up to 5 attempts, compressed intervals);
/// any other answer ends it. The final status (0: never answered).
async fn deliver_pagerduty(
    http: &reqwest::Client,
    base: &str,
    bytes: &[u8],
    sig: &str,
    webhook_id: &str,
) -> u16 {
    let mut last = 0;
    for attempt in 0..5u64 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
        }
        let res = http
            .post(format!("{base}/pager/pagerduty"))
            .header("content-type", "application/json")
            .header("user-agent", "PagerDuty-Webhook/V3.0")
            .header("x-pagerduty-signature", sig)
            .header("x-webhook-id", webhook_id)
            .header("x-webhook-subscription", "PSUB1")
            .body(bytes.to_vec())
            .send()
            .await;
        match res {
            Ok(r) => {
                last = r.status().as_u16();
                if !(r.status().is_server_error() || last == 429) {
                    return last;
                }
            }
            Err(_) => last = 0,
        }
    }
    last
}

fn pd_incident_json(inc: &PdIncident, webhook: bool) -> Value {
    let assignees: Vec<Value> = inc
        .assignees
        .iter()
        .map(|(id, name)| json!({"id": id, "type": "user_reference", "summary": name}))
        .collect();
    let mut v = json!({
        "id": inc.id, "type": "incident", "self": format!("https://api.pagerduty.com/incidents/{}", inc.id),
        "html_url": format!("https://acme.pagerduty.com/incidents/{}", inc.id),
        "number": 7, "status": inc.status, "incident_key": format!("key-{}", inc.id),
        "created_at": iso(inc.last_change_ms), "title": inc.title,
        "service": {"id": inc.service_id, "type": "service_reference", "summary": inc.service_name},
        "assignees": assignees, "priority": {"summary": "P1"}, "urgency": "high", "resolve_reason": null
    });
    if !webhook {
        v["last_status_change_at"] = json!(iso(inc.last_change_ms));
        v["assignments"] = json!(
            inc.assignees
                .iter()
                .map(|(id, name)| json!({"assignee": {"id": id, "summary": name}}))
                .collect::<Vec<_>>()
        );
    }
    v
}

fn pd_error(status: StatusCode, message: &str, code: u32) -> Response {
    (
        status,
        axum::Json(json!({"error": {"message": message, "code": code}})),
    )
        .into_response()
}

fn record(s: &Shared, method: &str, path: String, from: Option<String>, body: Value) {
    lock(s).calls.push(ApiCall {
        method: method.into(),
        path,
        from,
        body,
    });
}

fn fault(s: &Shared, product: &str) -> Option<u16> {
    lock(s)
        .faults
        .get_mut(product)
        .and_then(VecDeque::pop_front)
}

fn pd_auth(h: &HeaderMap) -> Result<bool, Box<Response>> {
    match h.get("authorization").and_then(|v| v.to_str().ok()) {
        Some(v) if v == format!("Token token={PD_TOKEN}") => Ok(true),
        Some(v) if v == format!("Token token={PD_READ_ONLY_TOKEN}") => Ok(false),
        _ => Err(Box::new(pd_error(
            StatusCode::UNAUTHORIZED,
            "Authentication failed",
            2006,
        ))),
    }
}

async fn pd_get(State(s): State<Shared>, h: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = pd_auth(&h) {
        return *r;
    }
    record(&s, "GET", format!("/incidents/{id}"), None, Value::Null);
    match lock(&s).pd.get(&id) {
        Some(inc) => axum::Json(json!({"incident": pd_incident_json(inc, false)})).into_response(),
        None => pd_error(StatusCode::NOT_FOUND, "Not Found", 2100),
    }
}

async fn pd_user(State(s): State<Shared>, h: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = pd_auth(&h) {
        return *r;
    }
    match lock(&s).pd_users.get(&id) {
        Some((email, name)) => {
            axum::Json(json!({"user": {"id": id, "email": email, "name": name, "type": "user"}}))
                .into_response()
        }
        None => pd_error(StatusCode::NOT_FOUND, "Not Found", 2100),
    }
}

async fn pd_put(
    State(s): State<Shared>,
    h: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let write = match pd_auth(&h) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let from = h
        .get("from")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    record(
        &s,
        "PUT",
        format!("/incidents/{id}"),
        from.clone(),
        v.clone(),
    );
    if let Some(code) = fault(&s, "pd") {
        return (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "<html>upstream error</html>",
        )
            .into_response();
    }
    if !write {
        return pd_error(StatusCode::FORBIDDEN, "Access Denied", 2010);
    }
    let Some(from) = from else {
        return pd_error(
            StatusCode::BAD_REQUEST,
            "You must specify a user's email address in the \"From\" header to perform this action",
            2016,
        );
    };
    let want = v
        .pointer("/incident/status")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let changed = {
        let mut guard = lock(&s);
        let i = &mut *guard;
        let Some(user) = i
            .pd_users
            .iter()
            .find(|(_, (e, _))| e.eq_ignore_ascii_case(&from))
            .map(|(id, (_, n))| (id.clone(), n.clone()))
        else {
            return pd_error(StatusCode::BAD_REQUEST, "Requester User Not Found", 1008);
        };
        let Some(inc) = i.pd.get_mut(&id) else {
            return pd_error(StatusCode::NOT_FOUND, "Not Found", 2100);
        };
        match (inc.status.as_str(), want.as_str()) {
            ("resolved", "resolved") => {
                return pd_error(StatusCode::BAD_REQUEST, "Incident Already Resolved", 1001);
            }
            ("acknowledged", "acknowledged") => None,
            (_, "acknowledged" | "resolved" | "triggered") => {
                inc.status = want.clone();
                inc.last_change_ms = now_ms();
                if want == "acknowledged" {
                    // Acknowledging (or reopening to acknowledged) assigns the requester.
                    inc.assignees = vec![user.clone()];
                }
                Some((inc.clone(), user, i.target.clone()))
            }
            _ => return pd_error(StatusCode::BAD_REQUEST, "Invalid Status Provided", 1003),
        }
    };
    let answer = lock(&s)
        .pd
        .get(&id)
        .map(|inc| pd_incident_json(inc, false))
        .unwrap_or(Value::Null);
    if let Some((inc, (uid, name), Some(target))) = changed {
        let event = FakePager::pd_event(
            &inc,
            &format!("incident.{}", inc.status),
            inc.last_change_ms,
            Some((&uid, &name)),
        );
        tokio::spawn(async move {
            let bytes = event.to_string().into_bytes();
            let sig = slackops::pager::webhook::sign_pagerduty(PD_SECRET, &bytes);
            let id = uuid::Uuid::new_v4().to_string();
            deliver_pagerduty(&reqwest::Client::new(), &target, &bytes, &sig, &id).await;
        });
    }
    axum::Json(json!({"incident": answer})).into_response()
}

fn og_auth(h: &HeaderMap) -> Result<(), Box<Response>> {
    if h.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("GenieKey {OG_KEY}")) {
        Ok(())
    } else {
        Err(Box::new((StatusCode::UNAUTHORIZED, axum::Json(json!({"message": "Could not authenticate", "took": 0.0, "requestId": uuid::Uuid::new_v4().to_string()}))).into_response()))
    }
}

/// Process the requests whose time has come (Opsgenie decides asynchronously).
fn og_process(s: &Shared) -> Vec<(OgAlert, String, String)> {
    let mut guard = lock(s);
    let i = &mut *guard;
    let now = Instant::now();
    let due: Vec<String> = i
        .og_requests
        .iter()
        .filter(|(_, r)| r.result.is_none() && r.due <= now)
        .map(|(k, _)| k.clone())
        .collect();
    let mut events = Vec::new();
    for rid in due {
        let req = i.og_requests.get(&rid).cloned().expect("request");
        let scripted = i.og_outcomes.pop_front();
        let result = match (scripted, i.og.get_mut(&req.alert)) {
            (Some(outcome), _) => outcome,
            (None, None) => (false, "Alert does not exist".to_string()),
            (None, Some(a)) if req.action == "acknowledge" && a.closed => {
                (false, "Alert is already closed".to_string())
            }
            (None, Some(a)) => {
                let before = (a.closed, a.acknowledged);
                if req.action == "close" {
                    a.closed = true
                } else {
                    a.acknowledged = true
                }
                if before != (a.closed, a.acknowledged) {
                    a.updated_ns = now_ms() * 1_000_000 + 1;
                    let action = if req.action == "close" {
                        "Close"
                    } else {
                        "Acknowledge"
                    };
                    events.push((a.clone(), action.to_string(), req.user.clone()));
                }
                (true, "Request processed successfully".to_string())
            }
        };
        if let Some(r) = i.og_requests.get_mut(&rid) {
            r.result = Some(result);
        }
    }
    events
}

async fn og_send_events(s: &Shared, events: Vec<(OgAlert, String, String)>) {
    let target = lock(s).target.clone();
    if let Some(target) = target {
        let http = reqwest::Client::new();
        for (alert, action, user) in events {
            let body = FakePager::og_event(&alert, &action, &user);
            let _ = http
                .post(format!("{target}/pager/opsgenie"))
                .header("authorization", format!("Bearer {OG_WEBHOOK_TOKEN}"))
                .json(&body)
                .send()
                .await;
        }
    }
}

async fn og_get(State(s): State<Shared>, h: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = og_auth(&h) {
        return *r;
    }
    record(&s, "GET", format!("/v2/alerts/{id}"), None, Value::Null);
    let events = og_process(&s);
    og_send_events(&s, events).await;
    match lock(&s).og.get(&id) {
        Some(a) => axum::Json(json!({"data": {"id": a.id, "message": a.message,
            "status": if a.closed { "closed" } else { "open" }, "acknowledged": a.acknowledged,
            "updatedAt": iso(a.updated_ns / 1_000_000)}, "took": 0.01, "requestId": uuid::Uuid::new_v4().to_string()})).into_response(),
        None => (StatusCode::NOT_FOUND, axum::Json(json!({"message": "Alert with id does not exist", "took": 0.0}))).into_response(),
    }
}

async fn og_action(
    State(s): State<Shared>,
    h: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if let Err(r) = og_auth(&h) {
        return *r;
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    record(
        &s,
        "POST",
        format!("/v2/alerts/{id}/{action}"),
        v.get("user").and_then(Value::as_str).map(str::to_owned),
        v.clone(),
    );
    if let Some(code) = fault(&s, "og") {
        return (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            axum::Json(json!({"message": "You are making too many requests!", "took": 0.0})),
        )
            .into_response();
    }
    if action != "acknowledge" && action != "close" {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"message": "Not found", "took": 0.0})),
        )
            .into_response();
    }
    let rid = uuid::Uuid::new_v4().to_string();
    let mut i = lock(&s);
    let due = Instant::now() + i.og_delay;
    i.og_requests.insert(
        rid.clone(),
        OgRequest {
            alert: id,
            action,
            user: v
                .get("user")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .into(),
            due,
            result: None,
        },
    );
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({"result": "Request will be processed", "took": 0.1, "requestId": rid})),
    )
        .into_response()
}

async fn og_request(State(s): State<Shared>, h: HeaderMap, Path(rid): Path<String>) -> Response {
    if let Err(r) = og_auth(&h) {
        return *r;
    }
    let events = og_process(&s);
    og_send_events(&s, events).await;
    let req = lock(&s).og_requests.get(&rid).cloned();
    match req {
        Some(OgRequest { result: Some((ok, status)), alert, action, .. }) => axum::Json(json!({"data": {
            "success": ok, "isSuccess": ok, "action": action, "processedAt": iso(now_ms()),
            "integrationId": "int-1", "status": status, "alertId": alert, "alias": format!("alias-{alert}")},
            "took": 0.01, "requestId": rid})).into_response(),
        _ => (StatusCode::NOT_FOUND, axum::Json(json!({"message": "Request not found. It might not be processed, yet.", "took": 0.0, "requestId": rid}))).into_response(),
    }
}

fn gf_auth(h: &HeaderMap) -> Result<(), Box<Response>> {
    if h.get("authorization").and_then(|v| v.to_str().ok()) == Some(GF_TOKEN) {
        Ok(())
    } else {
        Err(Box::new(
            (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"detail": "Invalid token."})),
            )
                .into_response(),
        ))
    }
}

fn gf_json(g: &GfGroup) -> Value {
    let t = |ms: Option<i64>| ms.map(iso).map(Value::String).unwrap_or(Value::Null);
    json!({"id": g.id, "integration_id": g.integration_id, "team_id": null, "route_id": "R1",
        "alerts_count": 1, "state": g.state, "created_at": iso(g.created_ms),
        "resolved_at": t(g.resolved_ms), "resolved_by": null, "acknowledged_at": t(g.acknowledged_ms),
        "acknowledged_by": null, "labels": [], "title": g.title, "silenced_at": null,
        "permalinks": {"slack": null, "slack_app": null, "telegram": null, "web": format!("https://oncall.example.com/alert-groups/{}", g.id)}})
}

fn gf_webhook(g: &GfGroup, event_type: &str, user_email: Option<&str>) -> Value {
    let time = match event_type {
        "resolve" => g.resolved_ms,
        "acknowledge" => g.acknowledged_ms,
        _ => None,
    }
    .unwrap_or(g.created_ms);
    json!({"event": {"type": event_type, "time": iso(time)},
        "user": user_email.map(|e| json!({"id": "UGF1", "username": e.split('@').next().unwrap_or(e), "email": e})),
        "alert_group": gf_json(g), "alert_group_id": g.id, "alert_payload": {},
        "integration": {"id": g.integration_id, "type": "alertmanager", "name": "prod alerts", "team": null},
        "notified_users": [], "users_to_be_notified": []})
}

async fn gf_get(State(s): State<Shared>, h: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = gf_auth(&h) {
        return *r;
    }
    record(
        &s,
        "GET",
        format!("/api/v1/alert_groups/{id}/"),
        None,
        Value::Null,
    );
    match lock(&s).gf.get(&id) {
        Some(g) => axum::Json(gf_json(g)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"detail": "Not found."})),
        )
            .into_response(),
    }
}

async fn gf_action(
    State(s): State<Shared>,
    h: HeaderMap,
    Path((id, action)): Path<(String, String)>,
) -> Response {
    if let Err(r) = gf_auth(&h) {
        return *r;
    }
    record(
        &s,
        "POST",
        format!("/api/v1/alert_groups/{id}/{action}"),
        Some(GF_TOKEN_OWNER.into()),
        Value::Null,
    );
    if let Some(code) = fault(&s, "gf") {
        let mut r = (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            axum::Json(json!({"detail": "Request was throttled."})),
        )
            .into_response();
        r.headers_mut()
            .insert("retry-after", "1".parse().expect("header"));
        return r;
    }
    let (group, target) = {
        let mut guard = lock(&s);
        let i = &mut *guard;
        let target = i.target.clone();
        let Some(g) = i.gf.get_mut(&id) else {
            return (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"detail": "Not found."})),
            )
                .into_response();
        };
        let refuse =
            |m: &str| (StatusCode::BAD_REQUEST, axum::Json(json!({"detail": m}))).into_response();
        match (g.state.as_str(), action.as_str()) {
            ("acknowledged", "acknowledge") => {
                return refuse("Can't acknowledge an acknowledged alert group");
            }
            ("resolved", "acknowledge") => {
                return refuse("Can't acknowledge a resolved alert group");
            }
            ("resolved", "resolve") => return refuse("Can't resolve a resolved alert group"),
            (_, "acknowledge") => {
                g.state = "acknowledged".into();
                g.acknowledged_ms = Some(now_ms());
            }
            (_, "resolve") => {
                g.state = "resolved".into();
                g.resolved_ms = Some(now_ms());
            }
            _ => {
                return (
                    StatusCode::NOT_FOUND,
                    axum::Json(json!({"detail": "Not found."})),
                )
                    .into_response();
            }
        }
        (g.clone(), target)
    };
    if let Some(target) = target {
        // The outgoing webhook names the token's owner, who "acted".
        let body = gf_webhook(&group, &action, Some(GF_TOKEN_OWNER));
        tokio::spawn(async move {
            let _ = reqwest::Client::new()
                .post(format!("{target}/pager/grafana-oncall"))
                .header("authorization", GF_WEBHOOK_TOKEN)
                .json(&body)
                .send()
                .await;
        });
    }
    StatusCode::OK.into_response()
}
