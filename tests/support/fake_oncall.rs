//! In-process fakes of the three on-call products slackops reads, on one local server:
//! PagerDuty under `/pd`, Opsgenie under `/og`, Grafana OnCall under `/grafana`.
//!
//! Each follows `/work/shared/reference/oncall-and-announcements.md` §D "Provider APIs for the
//! on-call sync":
//! - **PagerDuty REST v2** (§D "PagerDuty REST v2"): `GET /oncalls` with `schedule_ids[]`
//!   (a `null` entry adds permanent on-calls), `escalation_policy_ids[]`, `include[]=users`,
//!   `since`/`until` (default now; at most 90 days apart), `limit` (default 25, at most 100) /
//!   `offset` with `more` (and `offset + limit` at most 10,000); items
//!   `{user, schedule, escalation_policy, escalation_level, start, end}` with null `start`/`end`
//!   for permanent on-calls; without `include[]=users` the user is a bare reference with no email.
//!   Auth `Authorization: Token token=…`. Rate limit: 429 with `ratelimit-limit`,
//!   `ratelimit-remaining` and `ratelimit-reset` (seconds).
//!   On-calls exist per escalation rule, so a schedule no escalation policy references returns
//!   **nothing** from `/oncalls` ([`FakeOncall::pd_add_unreferenced`]); only
//!   `GET /schedules/{id}?since&until` shows who it puts on call, in
//!   `final_schedule.rendered_schedule_entries` (filled only when `since`/`until` are given; the
//!   missing one is 2 weeks from the other; entries clipped to the window unless `overflow=true`;
//!   users are bare references, no email).
//! - **Opsgenie** (§D "Opsgenie"): `GET /v2/schedules/{id}/on-calls?scheduleIdentifierType=id|name
//!   &flat=true&date=` → `data.onCallRecipients` (emails) or, without `flat`, `onCallParticipants`;
//!   `/next-on-calls` → `data.nextOnCallRecipients` (no shift times).
//!   Auth `Authorization: GenieKey …`; a key without access to the schedule gets 403 with code
//!   40301; an unescaped `+` in `date` arrives as a space and is refused.
//! - **Grafana OnCall** (§D "Grafana OnCall public API"): `GET /api/v1/schedules/{id}/` →
//!   `on_call_now`; `GET /api/v1/schedules/{id}/final_shifts?start_date&end_date` (both required,
//!   at most 365 days; shifts clipped to the window; one page); `GET /api/v1/users/{id}/` with
//!   `slack: [{user_id, team_id}]`. Auth: the token alone in `Authorization`.
//!
//! Guiding rule, as for the Slack fake: never kinder than the real API. Error bodies are shaped
//! like each product's documented errors; where the exact text is undocumented the fake says so.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

pub const PD_TOKEN: &str = "pd-token-0123456789";
pub const OG_TOKEN: &str = "og-key-0123456789";
pub const GRAFANA_TOKEN: &str = "grafana-token-0123456789";

const DAY_MS: i64 = 86_400_000;

/// One PagerDuty on-call entry (an escalation rule's target at a level, for a time).
#[derive(Debug, Clone)]
pub struct PdOncall {
    pub user_id: String,
    pub email: String,
    pub name: String,
    /// `None`: a permanent on-call (the policy targets the user directly).
    pub schedule: Option<String>,
    pub policy: String,
    pub level: u32,
    /// ms; `None` for permanent on-calls.
    pub start: Option<i64>,
    pub end: Option<i64>,
}

impl PdOncall {
    /// A scheduled on-call at level 1 of policy `PEP1`, from `start` to `end` (ms).
    pub fn scheduled(user: &str, email: &str, schedule: &str, start: i64, end: i64) -> Self {
        Self {
            user_id: user.into(),
            email: email.into(),
            name: user.into(),
            schedule: Some(schedule.into()),
            policy: "PEP1".into(),
            level: 1,
            start: Some(start),
            end: Some(end),
        }
    }
}

/// A scripted failure for the next request(s) to one product.
#[derive(Debug, Clone)]
pub enum OncallFault {
    /// 429. PagerDuty sends `ratelimit-reset: N`; the others `Retry-After`-less 429s with `X-RateLimit-*`.
    RateLimited { reset_secs: u64 },
    /// HTTP status with an HTML body (a load balancer).
    Server(u16),
    /// Sleep, then answer normally.
    Delay(Duration),
}

#[derive(Debug, Clone)]
pub struct RecordedCall {
    pub product: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub at: Instant,
}

/// Opsgenie rota entries: (start, end, email), times in ms.
type OgEntries = Vec<(Option<i64>, Option<i64>, String)>;

#[derive(Default)]
struct Inner {
    pd: Vec<PdOncall>,
    /// Shifts of schedules that no escalation policy references: in `/schedules/{id}` only.
    pd_unreferenced: Vec<PdOncall>,
    /// Schedules that exist (`/schedules/{id}` answers 404 for others). Clearing the shifts
    /// leaves them: a schedule nobody is on is still a schedule.
    pd_schedules: std::collections::BTreeSet<String>,
    /// Opsgenie schedule id → (name, entries (start, end, email)).
    og: BTreeMap<String, (String, OgEntries)>,
    og_forbidden: Vec<String>,
    /// Grafana schedule id → on_call_now user ids.
    gf_now: BTreeMap<String, Vec<String>>,
    /// Grafana schedule id → shifts (user_pk, start, end).
    gf_shifts: BTreeMap<String, Vec<(String, i64, i64)>>,
    /// Grafana user id → (email, slack user id).
    gf_users: BTreeMap<String, (String, Option<String>)>,
    faults: HashMap<String, VecDeque<OncallFault>>,
    calls: Vec<RecordedCall>,
    latency: Duration,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(s: &Shared) -> MutexGuard<'_, Inner> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct FakeOncall {
    addr: SocketAddr,
    inner: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeOncall {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeOncall {
    pub async fn start() -> FakeOncall {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake oncall: bind");
        let addr = listener.local_addr().expect("local addr");
        let inner: Shared = Arc::default();
        let app = Router::new()
            .route("/pd/oncalls", get(pd_oncalls))
            .route("/pd/users/{id}", get(pd_user))
            .route("/pd/schedules/{id}", get(pd_schedule))
            .route("/og/v2/schedules/{id}/on-calls", get(og_oncalls))
            .route("/og/v2/schedules/{id}/next-on-calls", get(og_next_oncalls))
            .route("/grafana/api/v1/schedules/{id}/", get(gf_schedule))
            .route(
                "/grafana/api/v1/schedules/{id}/final_shifts",
                get(gf_final_shifts),
            )
            .route("/grafana/api/v1/users/{id}/", get(gf_user))
            .with_state(inner.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeOncall {
            addr,
            inner,
            server,
        }
    }

    fn state(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    pub fn pagerduty_url(&self) -> String {
        format!("http://{}/pd", self.addr)
    }
    pub fn opsgenie_url(&self) -> String {
        format!("http://{}/og", self.addr)
    }
    pub fn grafana_url(&self) -> String {
        format!("http://{}/grafana", self.addr)
    }

    /// Every answer comes after `latency` (benchmarks).
    pub fn set_latency(&self, latency: Duration) {
        self.state().latency = latency;
    }

    pub fn pd_add(&self, entry: PdOncall) {
        let mut st = self.state();
        if let Some(s) = &entry.schedule {
            st.pd_schedules.insert(s.clone());
        }
        st.pd.push(entry);
    }
    /// A schedule that exists, with nobody on it yet.
    pub fn pd_add_schedule(&self, id: &str) {
        self.state().pd_schedules.insert(id.into());
    }
    pub fn pd_clear(&self) {
        let mut st = self.state();
        st.pd.clear();
        st.pd_unreferenced.clear();
    }
    /// A shift on a schedule that no escalation policy references (its `policy` and `level` are
    /// ignored): `/oncalls` never lists it, `/schedules/{id}` does (§D).
    pub fn pd_add_unreferenced(&self, entry: PdOncall) {
        let mut st = self.state();
        if let Some(s) = &entry.schedule {
            st.pd_schedules.insert(s.clone());
        }
        st.pd_unreferenced.push(entry);
    }

    /// Opsgenie: `email` is on call on `schedule` (named `name`) from `start` to `end` (ms; `None`: open).
    pub fn og_add(
        &self,
        schedule: &str,
        name: &str,
        email: &str,
        start: Option<i64>,
        end: Option<i64>,
    ) {
        self.state()
            .og
            .entry(schedule.into())
            .or_insert_with(|| (name.into(), Vec::new()))
            .1
            .push((start, end, email.into()));
    }
    /// The key no longer has access to this schedule (403, code 40301).
    pub fn og_forbid(&self, schedule: &str) {
        self.state().og_forbidden.push(schedule.into());
    }

    pub fn gf_add_user(&self, id: &str, email: &str, slack_id: Option<&str>) {
        self.state()
            .gf_users
            .insert(id.into(), (email.into(), slack_id.map(str::to_owned)));
    }
    pub fn gf_set_on_call_now(&self, schedule: &str, users: &[&str]) {
        self.state().gf_now.insert(
            schedule.into(),
            users.iter().map(|u| u.to_string()).collect(),
        );
    }
    pub fn gf_add_shift(&self, schedule: &str, user: &str, start: i64, end: i64) {
        self.state()
            .gf_shifts
            .entry(schedule.into())
            .or_default()
            .push((user.into(), start, end));
    }

    /// `product`: `pagerduty`, `opsgenie` or `grafana`.
    pub fn fail_next(&self, product: &str, fault: OncallFault, times: usize) {
        let mut st = self.state();
        let q = st.faults.entry(product.into()).or_default();
        for _ in 0..times {
            q.push_back(fault.clone());
        }
    }

    pub fn calls(&self, product: &str) -> Vec<RecordedCall> {
        self.state()
            .calls
            .iter()
            .filter(|c| c.product == product)
            .cloned()
            .collect()
    }
    pub fn reset_calls(&self) {
        self.state().calls.clear();
    }
}

// ------------------------------------------------------------------------------ shared

fn query_pairs(q: &Option<String>) -> Vec<(String, String)> {
    q.as_deref()
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .unwrap_or_default()
}

fn one<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn all<'a>(q: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    q.iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn json_resp(status: StatusCode, v: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn parse_iso(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.timestamp_millis())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Record the call, wait the latency, apply a scripted fault (its response, if any).
async fn enter(
    shared: &Shared,
    product: &str,
    path: String,
    query: &[(String, String)],
) -> Option<Response> {
    let (fault, latency) = {
        let mut st = lock(shared);
        st.calls.push(RecordedCall {
            product: product.into(),
            path,
            query: query.to_vec(),
            at: Instant::now(),
        });
        let f = st.faults.get_mut(product).and_then(VecDeque::pop_front);
        (f, st.latency)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match fault? {
        OncallFault::Delay(d) => {
            tokio::time::sleep(d).await;
            None
        }
        OncallFault::RateLimited { reset_secs } => Some(match product {
            // PagerDuty (support.pagerduty.com/docs/rest-api-rate-limits): the reset is in seconds.
            "pagerduty" => (
                StatusCode::TOO_MANY_REQUESTS,
                [
                    ("ratelimit-limit", "960".to_string()),
                    ("ratelimit-remaining", "0".to_string()),
                    ("ratelimit-reset", reset_secs.to_string()),
                    ("content-type", "application/json".to_string()),
                ],
                json!({"error": {"message": "Rate Limit Exceeded", "code": 2020}}).to_string(),
            )
                .into_response(),
            _ => (
                StatusCode::TOO_MANY_REQUESTS,
                [
                    ("retry-after", reset_secs.to_string()),
                    ("content-type", "application/json".to_string()),
                ],
                json!({"message": "Too many requests"}).to_string(),
            )
                .into_response(),
        }),
        OncallFault::Server(code) => Some(
            (
                StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY),
                [(header::CONTENT_TYPE, "text/html")],
                format!("<html><body><h1>{code}</h1></body></html>"),
            )
                .into_response(),
        ),
    }
}

// ------------------------------------------------------------------------------ PagerDuty

fn pd_error(status: StatusCode, message: &str, code: u32, errors: &[&str]) -> Response {
    // Shape of PagerDuty's documented errors: {"error": {"message", "code", "errors"}}.
    json_resp(
        status,
        json!({"error": {"message": message, "code": code, "errors": errors}}),
    )
}

fn pd_authorized(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Token token={PD_TOKEN}"))
}

fn pd_user_json(e: &PdOncall, full: bool) -> Value {
    let base = json!({
        "id": e.user_id,
        "summary": e.name,
        "self": format!("https://api.pagerduty.com/users/{}", e.user_id),
        "html_url": format!("https://example.pagerduty.com/users/{}", e.user_id),
    });
    if full {
        let mut v = base;
        v["type"] = json!("user");
        v["name"] = json!(e.name);
        v["email"] = json!(e.email);
        v["time_zone"] = json!("Etc/UTC");
        v
    } else {
        let mut v = base;
        v["type"] = json!("user_reference");
        v
    }
}

async fn pd_oncalls(
    State(shared): State<Shared>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let q = query_pairs(&raw);
    if let Some(r) = enter(&shared, "pagerduty", "/oncalls".into(), &q).await {
        return r;
    }
    if !pd_authorized(&headers) {
        return pd_error(StatusCode::UNAUTHORIZED, "Unauthorized", 2006, &[]);
    }
    let now = now_ms();
    let since = match one(&q, "since").map(parse_iso) {
        None => now,
        Some(Some(t)) => t,
        Some(None) => {
            return pd_error(
                StatusCode::BAD_REQUEST,
                "Invalid Input Provided",
                2001,
                &["Since is not a valid date"],
            );
        }
    };
    let until = match one(&q, "until").map(parse_iso) {
        None => now,
        Some(Some(t)) => t,
        Some(None) => {
            return pd_error(
                StatusCode::BAD_REQUEST,
                "Invalid Input Provided",
                2001,
                &["Until is not a valid date"],
            );
        }
    };
    if until < since {
        return pd_error(
            StatusCode::BAD_REQUEST,
            "Invalid Input Provided",
            2001,
            &["Until must be after since"],
        );
    }
    if until - since > 90 * DAY_MS {
        return pd_error(
            StatusCode::BAD_REQUEST,
            "Invalid Input Provided",
            2001,
            &["The window may be at most 90 days"],
        );
    }
    let limit: u64 = one(&q, "limit")
        .and_then(|v| v.parse().ok())
        .unwrap_or(25)
        .clamp(1, 100);
    let offset: u64 = one(&q, "offset").and_then(|v| v.parse().ok()).unwrap_or(0);
    if offset + limit > 10_000 {
        return pd_error(
            StatusCode::BAD_REQUEST,
            "Invalid Input Provided",
            2001,
            &["Offset must be less than 10000"],
        );
    }
    let schedules = all(&q, "schedule_ids[]");
    let policies = all(&q, "escalation_policy_ids[]");
    let users_included = all(&q, "include[]").contains(&"users");
    let st = lock(&shared);
    let mut matching: Vec<&PdOncall> = st
        .pd
        .iter()
        .filter(|e| e.start.is_none_or(|s| s <= until) && e.end.is_none_or(|en| en > since))
        .filter(|e| {
            schedules.is_empty()
                || match &e.schedule {
                    Some(s) => schedules.contains(&s.as_str()),
                    None => schedules.contains(&"null"),
                }
        })
        .filter(|e| policies.is_empty() || policies.contains(&e.policy.as_str()))
        .collect();
    matching.sort_by(|a, b| {
        (&a.policy, a.level, a.start, &a.user_id).cmp(&(&b.policy, b.level, b.start, &b.user_id))
    });
    let total = matching.len() as u64;
    let page: Vec<Value> = matching
        .iter()
        .skip(offset as usize)
        .take(limit as usize)
        .map(|e| {
            json!({
                "escalation_policy": {"id": e.policy, "type": "escalation_policy_reference", "summary": e.policy},
                "escalation_level": e.level,
                "schedule": e.schedule.as_ref().map(|s| json!({"id": s, "type": "schedule_reference", "summary": s})),
                "user": pd_user_json(e, users_included),
                "start": e.start.map(iso),
                "end": e.end.map(iso),
            })
        })
        .collect();
    let more = offset + (page.len() as u64) < total;
    let total_v = if one(&q, "total") == Some("true") {
        json!(total)
    } else {
        Value::Null
    };
    json_resp(
        StatusCode::OK,
        json!({"oncalls": page, "limit": limit, "offset": offset, "more": more, "total": total_v}),
    )
}

async fn pd_user(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = enter(&shared, "pagerduty", format!("/users/{id}"), &[]).await {
        return r;
    }
    if !pd_authorized(&headers) {
        return pd_error(StatusCode::UNAUTHORIZED, "Unauthorized", 2006, &[]);
    }
    let st = lock(&shared);
    match st
        .pd
        .iter()
        .chain(&st.pd_unreferenced)
        .find(|e| e.user_id == id)
    {
        Some(e) => json_resp(StatusCode::OK, json!({"user": pd_user_json(e, true)})),
        None => pd_error(StatusCode::NOT_FOUND, "Not Found", 2100, &[]),
    }
}

/// `GET /schedules/{id}`: the schedule with its final layer. Entries come from every shift on the
/// schedule, referenced by a policy or not, once per (user, start, end) however many policies
/// and levels use it; permanent on-calls belong to no schedule.
async fn pd_schedule(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let q = query_pairs(&raw);
    if let Some(r) = enter(&shared, "pagerduty", format!("/schedules/{id}"), &q).await {
        return r;
    }
    if !pd_authorized(&headers) {
        return pd_error(StatusCode::UNAUTHORIZED, "Unauthorized", 2006, &[]);
    }
    let parse = |key: &str| one(&q, key).map(parse_iso);
    let (since, until) = match (parse("since"), parse("until")) {
        (Some(None), _) | (_, Some(None)) => {
            return pd_error(
                StatusCode::BAD_REQUEST,
                "Invalid Input Provided",
                2001,
                &["Since and until must be valid dates"],
            );
        }
        (None, None) => (None, None),
        (Some(Some(s)), None) => (Some(s), Some(s + 14 * DAY_MS)),
        (None, Some(Some(u))) => (Some(u - 14 * DAY_MS), Some(u)),
        (Some(Some(s)), Some(Some(u))) => (Some(s), Some(u)),
    };
    let overflow = one(&q, "overflow") == Some("true");
    let st = lock(&shared);
    let on_schedule: Vec<&PdOncall> = st
        .pd
        .iter()
        .chain(&st.pd_unreferenced)
        .filter(|e| e.schedule.as_deref() == Some(id.as_str()))
        .collect();
    if !st.pd_schedules.contains(&id) {
        return pd_error(StatusCode::NOT_FOUND, "Not Found", 2100, &[]);
    }
    let mut rendered: Vec<(String, i64, i64, &PdOncall)> = Vec::new();
    if let (Some(since), Some(until)) = (since, until) {
        for e in &on_schedule {
            let (Some(start), Some(end)) = (e.start, e.end) else {
                continue;
            };
            if start >= until || end <= since {
                continue;
            }
            let (start, end) = if overflow {
                (start, end)
            } else {
                (start.max(since), end.min(until))
            };
            if !rendered
                .iter()
                .any(|(u, s, en, _)| *u == e.user_id && *s == start && *en == end)
            {
                rendered.push((e.user_id.clone(), start, end, e));
            }
        }
    }
    rendered.sort_by_key(|(u, s, _, _)| (*s, u.clone()));
    let entries: Vec<Value> = rendered
        .iter()
        .map(|(_, start, end, e)| {
            json!({"start": iso(*start), "end": iso(*end), "user": pd_user_json(e, false)})
        })
        .collect();
    let policies: Vec<Value> = st
        .pd
        .iter()
        .filter(|e| e.schedule.as_deref() == Some(id.as_str()))
        .map(
            |e| json!({"id": e.policy, "type": "escalation_policy_reference", "summary": e.policy}),
        )
        .collect();
    json_resp(
        StatusCode::OK,
        json!({"schedule": {
            "id": id, "type": "schedule", "summary": id, "name": id, "time_zone": "Etc/UTC",
            "escalation_policies": policies,
            "final_schedule": {
                "name": "Final Schedule",
                // Filled only when since/until are given (§D).
                "rendered_schedule_entries": since.map(|_| Value::Array(entries)),
            },
        }}),
    )
}

// ------------------------------------------------------------------------------ Opsgenie

fn og_error(status: StatusCode, message: &str, code: Option<u32>) -> Response {
    let mut v =
        json!({"message": message, "took": 0.002, "requestId": uuid::Uuid::new_v4().to_string()});
    if let Some(c) = code {
        v["code"] = json!(c);
    }
    json_resp(status, v)
}

async fn og_oncalls(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let q = query_pairs(&raw);
    if let Some(r) = enter(
        &shared,
        "opsgenie",
        format!("/v2/schedules/{id}/on-calls"),
        &q,
    )
    .await
    {
        return r;
    }
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&format!("GenieKey {OG_TOKEN}"))
    {
        return og_error(StatusCode::UNAUTHORIZED, "Could not authenticate", None);
    }
    let at = match one(&q, "date") {
        None => now_ms(),
        // An unescaped `+` in the offset arrives as a space.
        Some(d) => match parse_iso(d) {
            Some(t) => t,
            None => return og_error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid date", None),
        },
    };
    let by_name = one(&q, "scheduleIdentifierType") == Some("name");
    let st = lock(&shared);
    let found = st.og.iter().find(
        |(sid, (name, _))| {
            if by_name { *name == id } else { **sid == id }
        },
    );
    let Some((sid, (name, entries))) = found else {
        return og_error(
            StatusCode::NOT_FOUND,
            &format!("Schedule with identifier [{id}] does not exist"),
            None,
        );
    };
    if st.og_forbidden.contains(sid) {
        return og_error(
            StatusCode::FORBIDDEN,
            "You are not authorized to access this schedule",
            Some(40301),
        );
    }
    let on: Vec<&String> = entries
        .iter()
        .filter(|(s, e, _)| s.is_none_or(|s| s <= at) && e.is_none_or(|e| e > at))
        .map(|(_, _, email)| email)
        .collect();
    let parent = json!({"id": sid, "name": name, "enabled": true});
    let data = if one(&q, "flat") == Some("true") {
        json!({"_parent": parent, "onCallRecipients": on})
    } else {
        json!({"_parent": parent, "onCallParticipants": on.iter().map(|e| json!({"id": format!("id-{e}"), "name": e, "type": "user"})).collect::<Vec<_>>()})
    };
    json_resp(
        StatusCode::OK,
        json!({"data": data, "took": 0.012, "requestId": uuid::Uuid::new_v4().to_string()}),
    )
}

/// `next-on-calls`: the people of the first shift starting after `date` (default now). With
/// `flat=true`, `nextOnCallRecipients` and `exactNextOnCallRecipients` (usernames); no times.
async fn og_next_oncalls(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let q = query_pairs(&raw);
    if let Some(r) = enter(
        &shared,
        "opsgenie",
        format!("/v2/schedules/{id}/next-on-calls"),
        &q,
    )
    .await
    {
        return r;
    }
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&format!("GenieKey {OG_TOKEN}"))
    {
        return og_error(StatusCode::UNAUTHORIZED, "Could not authenticate", None);
    }
    let at = match one(&q, "date") {
        None => now_ms(),
        Some(d) => match parse_iso(d) {
            Some(t) => t,
            None => return og_error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid date", None),
        },
    };
    let by_name = one(&q, "scheduleIdentifierType") == Some("name");
    let st = lock(&shared);
    let Some((sid, (name, entries))) = st
        .og
        .iter()
        .find(|(sid, (name, _))| if by_name { *name == id } else { **sid == id })
    else {
        return og_error(
            StatusCode::NOT_FOUND,
            &format!("Schedule with identifier [{id}] does not exist"),
            None,
        );
    };
    if st.og_forbidden.contains(sid) {
        return og_error(
            StatusCode::FORBIDDEN,
            "You are not authorized to access this schedule",
            Some(40301),
        );
    }
    let next = entries
        .iter()
        .filter_map(|(s, _, _)| s.filter(|s| *s > at))
        .min();
    let people: Vec<&String> = entries
        .iter()
        .filter(|(s, _, _)| next.is_some() && *s == next)
        .map(|(_, _, e)| e)
        .collect();
    let parent = json!({"id": sid, "name": name, "enabled": true});
    let data = if one(&q, "flat") == Some("true") {
        json!({"_parent": parent, "nextOnCallRecipients": people, "exactNextOnCallRecipients": people})
    } else {
        let p: Vec<Value> = people
            .iter()
            .map(|e| json!({"id": format!("id-{e}"), "name": e, "type": "user"}))
            .collect();
        json!({"_parent": parent, "nextOnCallParticipants": p, "exactNextOnCallParticipants": p})
    };
    json_resp(
        StatusCode::OK,
        json!({"data": data, "took": 0.01, "requestId": uuid::Uuid::new_v4().to_string()}),
    )
}

// ------------------------------------------------------------------------------ Grafana OnCall

fn gf_authorized(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(GRAFANA_TOKEN)
}

fn gf_denied() -> Response {
    // Django REST framework's answer to a bad token.
    json_resp(
        StatusCode::UNAUTHORIZED,
        json!({"detail": "Invalid token."}),
    )
}

async fn gf_schedule(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = enter(&shared, "grafana", format!("/schedules/{id}/"), &[]).await {
        return r;
    }
    if !gf_authorized(&headers) {
        return gf_denied();
    }
    let st = lock(&shared);
    let Some(now) = st.gf_now.get(&id) else {
        return json_resp(StatusCode::NOT_FOUND, json!({"detail": "Not found."}));
    };
    json_resp(
        StatusCode::OK,
        json!({
            "id": id, "team_id": null, "name": format!("schedule {id}"), "type": "web",
            "time_zone": "UTC", "on_call_now": now, "shifts": [],
            "slack": {"channel_id": null, "user_group_id": null}
        }),
    )
}

async fn gf_final_shifts(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let q = query_pairs(&raw);
    if let Some(r) = enter(
        &shared,
        "grafana",
        format!("/schedules/{id}/final_shifts"),
        &q,
    )
    .await
    {
        return r;
    }
    if !gf_authorized(&headers) {
        return gf_denied();
    }
    let date =
        |k: &str| one(&q, k).and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
    let (Some(start), Some(end)) = (date("start_date"), date("end_date")) else {
        return json_resp(
            StatusCode::BAD_REQUEST,
            json!({"detail": "start_date and end_date are required (YYYY-MM-DD)"}),
        );
    };
    if end < start || (end - start).num_days() > 365 {
        return json_resp(
            StatusCode::BAD_REQUEST,
            json!({"detail": "the window must be 0 to 365 days"}),
        );
    }
    let from = start
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc()
        .timestamp_millis();
    let until = end
        .and_hms_opt(23, 59, 59)
        .expect("end of day")
        .and_utc()
        .timestamp_millis()
        + 999;
    let st = lock(&shared);
    let Some(shifts) = st
        .gf_shifts
        .get(&id)
        .or_else(|| st.gf_now.get(&id).map(|_| &EMPTY))
    else {
        return json_resp(StatusCode::NOT_FOUND, json!({"detail": "Not found."}));
    };
    let results: Vec<Value> = shifts
        .iter()
        .filter(|(_, s, e)| *s < until && *e > from)
        .map(|(u, s, e)| {
            let (email, _) = st.gf_users.get(u).cloned().unwrap_or_default();
            json!({
                "user_pk": u, "user_email": email, "user_username": email.split('@').next().unwrap_or(""),
                // Clipped to the window.
                "shift_start": iso((*s).max(from)), "shift_end": iso((*e).min(until)),
            })
        })
        .collect();
    json_resp(
        StatusCode::OK,
        json!({"count": results.len(), "next": null, "previous": null, "results": results}),
    )
}

static EMPTY: Vec<(String, i64, i64)> = Vec::new();

async fn gf_user(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = enter(&shared, "grafana", format!("/users/{id}/"), &[]).await {
        return r;
    }
    if !gf_authorized(&headers) {
        return gf_denied();
    }
    let st = lock(&shared);
    match st.gf_users.get(&id) {
        Some((email, slack)) => json_resp(
            StatusCode::OK,
            json!({
                "id": id, "email": email, "username": email.split('@').next().unwrap_or(""),
                "role": "user", "timezone": "UTC", "teams": [],
                "slack": slack.as_ref().map(|s| vec![json!({"user_id": s, "team_id": "T0FAKE"})]).unwrap_or_default(),
            }),
        ),
        None => json_resp(StatusCode::NOT_FOUND, json!({"detail": "Not found."})),
    }
}
