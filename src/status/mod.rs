//! The public status page (`/status`, `/status.json`, `/status/feed.atom`), served from an
//! in-memory snapshot so it stays up when the database does not.
//!
//! The handlers here never touch the database: they render the replica's [`StatusCache`], which
//! a background task per replica refreshes ([`snapshot::spawn_refresher`]). Before the first
//! snapshot has loaded they answer 503 with a clear message; after that they always answer, and
//! say how old the data is when refreshing fails. It is public: it shows only outages marked
//! public and public maintenance windows, and escapes every piece of text.
//!
//! With `status.smtp.url` set, the page also carries a subscribe form (no script: a plain form
//! with a signed CSRF token, so rendering it needs no database either); the subscription
//! endpoints ([`subscriptions`]) and the emails ([`email`]) live beside it.

pub mod cache;
pub mod email;
pub mod health;
pub mod mailer;
pub mod render;
pub mod settings;
pub mod snapshot;
pub mod subscriptions;
pub mod tokens;
pub mod uptime;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use subscriptions::FormState;

use crate::registry::Registry;
use crate::state::AppState;
use settings::StatusSettings;

pub use cache::StatusCache;
pub use snapshot::spawn_refresher;

/// The email subscriptions' jobs (registered whether or not SMTP is configured, so jobs queued
/// before it was turned off finish instead of failing).
pub fn register(registry: &mut Registry, _settings: &StatusSettings) {
    registry
        .job(email::JOB_FANOUT, email::FanoutJob)
        .job(email::JOB_SEND, email::SendJob);
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/status", get(page))
        .route("/status/", get(page))
        .route("/status.json", get(json))
        .route("/status/feed.atom", get(atom))
        .route(
            "/status/subscribe",
            axum::routing::post(subscriptions::subscribe),
        )
        .route(
            "/status/confirm",
            get(subscriptions::confirm_page).post(subscriptions::confirm),
        )
        .route(
            "/status/unsubscribe",
            get(subscriptions::unsubscribe_page).post(subscriptions::unsubscribe),
        )
}

/// Tell this replica's status page that outages or maintenance changed (call after committing):
/// it reloads at once instead of at the next interval. Other replicas catch up on their own.
pub fn changed(state: &AppState) {
    state.status().refresh_soon();
}

const NOT_READY: &str = "The status page is starting: its data has not been loaded from the \
                         database yet. Try again in a few seconds.";

fn not_ready(content_type: &'static str, body: String) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [
            (header::CONTENT_TYPE, content_type),
            (header::RETRY_AFTER, "5"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn with_headers(content_type: &'static str, body: String) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

async fn page(State(state): State<AppState>) -> Response {
    page_with_form(&state, StatusCode::OK, &FormState::default())
}

/// The page with the subscribe form in `form`'s state (what was typed, and why it was refused),
/// answered with `status`. Before the first snapshot, a 503 that still carries the form when it
/// was the form that was refused.
pub(crate) fn page_with_form(state: &AppState, status: StatusCode, form: &FormState) -> Response {
    let settings = &state.settings().status;
    let catalogue = &state.settings().announcements.systems;
    let form_html = subscriptions::form_html(settings, catalogue, form, state.now_ms());
    let Some(current) = state.status().current() else {
        let shown = if form.error.is_some() {
            form_html.as_str()
        } else {
            ""
        };
        let body = format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{}</title></head><body><h1>{}</h1><p>{NOT_READY}</p>{shown}</body></html>\n",
            render::esc(&settings.title),
            render::esc(&settings.title)
        );
        let code = if form.error.is_some() {
            status
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        let mut r = not_ready("text/html; charset=utf-8", body);
        *r.status_mut() = code;
        r.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(subscriptions::CSP),
        );
        return r;
    };
    let view = render::View::new(settings, catalogue, &current, state.now_ms());
    let mut r = with_headers("text/html; charset=utf-8", view.html_with(&form_html));
    *r.status_mut() = status;
    // No script runs on this page; forbid it outright. Forms post only to this origin.
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(subscriptions::CSP),
    );
    r
}

async fn json(State(state): State<AppState>) -> Response {
    let Some(current) = state.status().current() else {
        let body = serde_json::json!({"error": "not_ready", "message": NOT_READY}).to_string();
        return not_ready("application/json", body);
    };
    let view = render::View::new(
        &state.settings().status,
        &state.settings().announcements.systems,
        &current,
        state.now_ms(),
    );
    with_headers("application/json", view.json().to_string())
}

async fn atom(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(current) = state.status().current() else {
        return not_ready("text/plain; charset=utf-8", format!("{NOT_READY}\n"));
    };
    let view = render::View::new(
        &state.settings().status,
        &state.settings().announcements.systems,
        &current,
        state.now_ms(),
    );
    with_headers(
        "application/atom+xml; charset=utf-8",
        view.atom(&page_url(&state.settings().status, &headers)),
    )
}

/// The page's absolute URL: `status.public_url`, else built from the request's Host.
fn page_url(settings: &StatusSettings, headers: &HeaderMap) -> String {
    if let Some(u) = &settings.public_url {
        return u.as_str().trim_end_matches('/').to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    format!("http://{host}/status")
}
