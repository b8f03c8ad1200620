//! `POST /pager/pagerduty`, `/pager/opsgenie` and `/pager/grafana-oncall`: authenticate, read,
//! record, answer.
//!
//! The answer comes as soon as the event is recorded (PagerDuty wants a 2xx within 5 s, Grafana
//! OnCall waits 4 s): 202 for an event taken in, a duplicate or one nobody routes; 400 for a body
//! that is not the product's webhook (PagerDuty drops 4xx without retrying, reference
//! pager-incidents.md §A1 "Delivery"); 403 (PagerDuty) or 401 for bad credentials, with nothing
//! read; 503 when the database could not record it, so the product retries. Posting and updating
//! the Slack message are jobs queued in the same transaction as the change.

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tracing::{info, warn};

use super::model::{self, Incident, NewIncident, Reported};
use super::settings::PagerProvider;
use super::webhook::{self, Event, Refusal};
use super::{FEATURE, IncidentRef, JOB_POST, JOB_RENDER};
use crate::jobs::NewJob;
use crate::slack::routes::read_capped;
use crate::state::AppState;

/// PagerDuty's own client reads at most 2 MB (§A1 "Signature"); the others send less.
const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/pager/pagerduty", post(pagerduty))
        .route("/pager/opsgenie", post(opsgenie))
        .route("/pager/grafana-oncall", post(grafana_oncall))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The answer to a refused request; counted, logged without any credential.
fn refuse(state: &AppState, provider: PagerProvider, r: Refusal) -> Response {
    state.metrics().pager_refused(provider.as_str(), r.reason());
    warn!(
        provider = provider.as_str(),
        reason = r.reason(),
        "refused a pager webhook"
    );
    let (status, message) = match (provider, r) {
        (_, Refusal::Disabled) => (
            StatusCode::NOT_FOUND,
            "this webhook is not configured on this slackops".to_string(),
        ),
        // go-pagerduty: a missing header is malformed (400), no valid signature is 403.
        (PagerProvider::Pagerduty, Refusal::Missing) => (
            StatusCode::BAD_REQUEST,
            "missing X-PagerDuty-Signature".to_string(),
        ),
        (PagerProvider::Pagerduty, Refusal::Wrong) => (
            StatusCode::FORBIDDEN,
            "no valid signature in X-PagerDuty-Signature".to_string(),
        ),
        (_, Refusal::Missing) => (
            StatusCode::UNAUTHORIZED,
            "missing Authorization header".to_string(),
        ),
        (_, Refusal::Wrong) => (StatusCode::UNAUTHORIZED, "wrong credentials".to_string()),
    };
    (
        status,
        Json(json!({"error": "unauthorized", "message": message})),
    )
        .into_response()
}

async fn pagerduty(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let p = PagerProvider::Pagerduty;
    if state.settings().pager.pagerduty.webhook_secrets.is_empty() {
        return refuse(&state, p, Refusal::Disabled);
    }
    let bytes = match read_capped(&headers, body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let secrets = &state.settings().pager.pagerduty.webhook_secrets;
    if let Err(r) = webhook::verify_pagerduty(
        secrets,
        header_str(&headers, "x-pagerduty-signature"),
        &bytes,
    ) {
        return refuse(&state, p, r);
    }
    let delivery = header_str(&headers, "x-webhook-id");
    let event = json_body(&bytes).and_then(|v| webhook::pagerduty(&v, delivery));
    take_in(&state, p, event).await
}

async fn opsgenie(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let p = PagerProvider::Opsgenie;
    let token = &state.settings().pager.opsgenie.webhook_token;
    if let Err(r) =
        webhook::verify_bearer(token, header_str(&headers, header::AUTHORIZATION.as_str()))
    {
        return refuse(&state, p, r);
    }
    let bytes = match read_capped(&headers, body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let event = json_body(&bytes).and_then(|v| webhook::opsgenie(&v));
    take_in(&state, p, event).await
}

async fn grafana_oncall(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let p = PagerProvider::GrafanaOncall;
    let token = &state.settings().pager.grafana_oncall.webhook_token;
    if let Err(r) =
        webhook::verify_verbatim(token, header_str(&headers, header::AUTHORIZATION.as_str()))
    {
        return refuse(&state, p, r);
    }
    let bytes = match read_capped(&headers, body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let event = json_body(&bytes).and_then(|v| webhook::grafana_oncall(&v));
    take_in(&state, p, event).await
}

fn json_body(bytes: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("the body is not JSON: {e}"))
}

/// What became of an authenticated event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A new incident: its message is queued.
    Posted,
    /// A known incident changed: its message is re-rendered.
    Updated,
    /// Nothing new (an older event, or no change).
    Unchanged,
    /// This delivery or event was taken in before.
    Duplicate,
    /// No route serves the incident's service.
    Unrouted,
    /// Nothing to do with an incident (a ping, a test, a resolved incident never seen open).
    Ignored,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Posted => "posted",
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
            Outcome::Duplicate => "duplicate",
            Outcome::Unrouted => "unrouted",
            Outcome::Ignored => "ignored",
        }
    }
}

async fn take_in(
    state: &AppState,
    provider: PagerProvider,
    event: Result<Option<Event>, String>,
) -> Response {
    let event = match event {
        Ok(Some(e)) => e,
        Ok(None) => return accepted(state, provider, Outcome::Ignored),
        Err(message) => {
            state.metrics().pager_event(provider.as_str(), "malformed");
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "bad_request", "message": message})),
            )
                .into_response();
        }
    };
    match record(state, &event).await {
        Ok(outcome) => {
            info!(
                provider = provider.as_str(),
                kind = %event.kind,
                outcome = outcome.label(),
                "pager webhook taken in"
            );
            accepted(state, provider, outcome)
        }
        Err(e) => {
            warn!(provider = provider.as_str(), error = %e, "recording a pager webhook failed; the provider retries");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "unavailable", "message": "try again later"})),
            )
                .into_response()
        }
    }
}

fn accepted(state: &AppState, provider: PagerProvider, outcome: Outcome) -> Response {
    state
        .metrics()
        .pager_event(provider.as_str(), outcome.label());
    (
        StatusCode::ACCEPTED,
        Json(json!({"result": outcome.label()})),
    )
        .into_response()
}

/// Record an event in one transaction: its keys, the incident (new or changed) and the job that
/// posts or re-renders the message. Two replicas given the same delivery, or two deliveries of
/// one incident, meet on the unique keys and one of them wins.
pub async fn record(state: &AppState, e: &Event) -> anyhow::Result<Outcome> {
    let db = state.db();
    let now = state.now_ms();
    let mut tx = db.pool().begin().await?;
    for key in &e.keys {
        if !db.pager_claim_event(&mut *tx, key, now).await? {
            tx.rollback().await?;
            return Ok(Outcome::Duplicate);
        }
    }
    let existing = db
        .pager_incident_of(&mut *tx, e.provider, &e.incident_id)
        .await?;
    let outcome = match existing {
        Some(inc) => apply(state, &mut tx, &inc, e).await?,
        None => create(state, &mut tx, e).await?,
    };
    tx.commit().await?;
    if matches!(outcome, Outcome::Posted | Outcome::Updated) {
        state.jobs().wake();
    }
    if outcome == Outcome::Posted {
        // After the commit: on SQLite the audit log's write would wait for this transaction.
        let subject = format!("pager:{}:{}", e.provider.as_str(), e.incident_id);
        state
            .audit(
                FEATURE,
                "page",
                "system",
                &subject,
                "posted",
                json!({"kind": e.kind}),
            )
            .await;
    }
    Ok(outcome)
}

type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// The first event of an incident: posted when a route serves it and it is still open.
async fn create(state: &AppState, tx: &mut Tx, e: &Event) -> anyhow::Result<Outcome> {
    let status = match (e.status, e.kind.as_str()) {
        (Some(model::RESOLVED), _) => return Ok(Outcome::Ignored),
        (Some(s), _) => s,
        // Opsgenie fires a team's integrations with AddTeam when the alert reaches the team
        // after its creation (§B1 "Team routing"): still open, state unknown.
        (None, "AddTeam") => model::TRIGGERED,
        (None, _) => return Ok(Outcome::Ignored),
    };
    let settings = &state.settings().pager;
    let Some(route) = settings.route_for(e.provider, &e.services) else {
        info!(
            provider = e.provider.as_str(),
            "no pager.routes entry serves this incident's service; not posted"
        );
        return Ok(Outcome::Unrouted);
    };
    let assignees = e.assignees.clone().unwrap_or_default();
    let new = NewIncident {
        provider: e.provider,
        incident_id: &e.incident_id,
        title: &e.title,
        service: &e.service_name,
        urgency: e.urgency.as_deref(),
        url: e.url.as_deref(),
        opened_at: e.opened_at.unwrap_or(e.at),
        assignees: &assignees,
        route,
        status,
        status_at: e.at,
        by: &e.by,
    };
    let now = state.now_ms();
    match state.db().pager_insert(&mut **tx, &new, now).await? {
        Some(id) => {
            let job = NewJob::new(JOB_POST, &IncidentRef { id: id.clone() })
                .dedup(format!("{JOB_POST}:{id}"));
            state.jobs().insert(&mut **tx, job).await?;
            Ok(Outcome::Posted)
        }
        // Another delivery of this incident was recorded meanwhile (another replica).
        None => match state
            .db()
            .pager_incident_of(&mut **tx, e.provider, &e.incident_id)
            .await?
        {
            Some(inc) => apply(state, tx, &inc, e).await,
            None => Ok(Outcome::Unchanged),
        },
    }
}

/// A later event of a known incident: its state and assignees, unless a newer state is shown.
async fn apply(
    state: &AppState,
    tx: &mut Tx,
    inc: &Incident,
    e: &Event,
) -> anyhow::Result<Outcome> {
    let db = state.db();
    let now = state.now_ms();
    let mut changed = false;
    if let Some(status) = e.status {
        let r = Reported {
            status,
            at: e.at,
            by: &e.by,
        };
        changed |= db.pager_report(&mut **tx, &inc.id, &r, now).await?;
    }
    if let Some(a) = &e.assignees {
        changed |= db.pager_assign(&mut **tx, &inc.id, a, e.at, now).await?;
    }
    if !changed {
        return Ok(Outcome::Unchanged);
    }
    let job = NewJob::new(JOB_RENDER, &IncidentRef { id: inc.id.clone() });
    state.jobs().insert(&mut **tx, job).await?;
    Ok(Outcome::Updated)
}
