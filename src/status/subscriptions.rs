//! Email subscriptions to the status page: the form's endpoint (`POST /status/subscribe`), the
//! confirmation (`/status/confirm`) and the unsubscribe link (`/status/unsubscribe`, one-click as
//! RFC 8058 asks), and the abuse limits. The tokens they carry are made in [`super::tokens`].
//!
//! The page itself (`GET /status`) still never touches the database: the form's CSRF token is
//! signed, not stored. The endpoints here do (a subscription must be stored), and answer 503 when
//! it is down. Nothing here sends mail: confirmations are queued as jobs ([`super::email`]).
//!
//! What an abuser can do is bounded: a subscribe request needs a fresh form token (signed with
//! `status.subscriptions.secret`, expiring) and a same-origin browser context; each client address
//! gets `max_requests_per_client_per_hour` requests an hour (then 429); each email address gets
//! at most `max_emails_per_address_per_day` emails a day (enforced where they are sent); and the
//! answer is the same page whether or not the address is subscribed, so the form tells nobody who
//! is. A confirmation link's token is made with the key from a random nonce, and only its hash is
//! stored; an unsubscribe link is the subscriber's id signed with the key. Neither names the
//! address. Addresses never reach
//! logs or metric labels.

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::email::{ACTIVE, PENDING};
use super::render::{self, esc};
use super::settings::StatusSettings;
use super::tokens::{
    confirm_token, csrf_token, csrf_valid, random_b64, token_hash, unsubscribe_subscriber,
};
use crate::announcements::settings::SystemEntry;
use crate::state::AppState;
use crate::store::new_id;

// ----------------------------------------------------------------------------------- Client address

/// The client address a request is counted under: the connection's peer, or with
/// `trusted_proxy_hops` set, the `X-Forwarded-For` entry that many places from the right (the
/// address the outermost trusted proxy saw). IPv6 addresses count by /64, what one host usually
/// gets.
pub fn client_key(headers: &HeaderMap, peer: Option<IpAddr>, hops: u32) -> String {
    let mut addr = peer;
    if hops > 0 {
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if entries.len() >= hops as usize
            && let Ok(ip) = entries[entries.len() - hops as usize].parse::<IpAddr>()
        {
            addr = Some(ip);
        }
    }
    match addr {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        None => "unknown".into(),
    }
}

/// Whether a browser says this request comes from another site (Fetch Metadata, else `Origin`
/// against `Host` and `status.public_url`). Requests without either header (not a browser) pass;
/// the form token still applies to them.
fn cross_site(settings: &StatusSettings, headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return !matches!(site, "same-origin" | "none");
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Ok(origin) = url::Url::parse(origin) else {
        return true; // `null` and anything unreadable
    };
    let authority = |u: &url::Url| {
        u.host_str().map(|h| match u.port() {
            Some(p) => format!("{h}:{p}"),
            None => h.to_string(),
        })
    };
    let Some(origin) = authority(&origin) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let public = settings.public_url.as_ref().and_then(authority);
    !(host == Some(origin.as_str()) || public.as_deref() == Some(origin.as_str()))
}

// ----------------------------------------------------------------------------------- Pages

/// The page's content-security policy: no script at all, styles only inline, forms only to
/// this origin, never framed.
pub const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'";

/// What the subscribe form shows: what was typed, and why it was refused.
#[derive(Debug, Default, Clone)]
pub struct FormState {
    pub email: String,
    pub systems: Vec<String>,
    pub error: Option<String>,
}

/// The subscribe form's section, or nothing while subscriptions are off.
pub fn form_html(
    settings: &StatusSettings,
    catalogue: &[SystemEntry],
    form: &FormState,
    now: i64,
) -> String {
    if !settings.smtp.enabled() {
        return String::new();
    }
    let mut h = String::with_capacity(2048);
    h.push_str(
        "<section id=\"subscribe\">\n<h2>Get notified by email</h2>\n\
         <p class=\"rule\">We email you when an outage starts, changes or ends and when \
         maintenance is scheduled, starts or ends, for the systems you pick. You confirm your \
         address first; every email has a one-click unsubscribe link.</p>\n\
         <form method=\"post\" action=\"/status/subscribe\" class=\"subscribe\">\n",
    );
    h.push_str(&format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">\n",
        esc(&csrf_token(settings, now))
    ));
    let invalid = form.error.is_some();
    h.push_str(&format!(
        "<p><label for=\"sub-email\">Email address</label><br>\
         <input id=\"sub-email\" type=\"email\" name=\"email\" required maxlength=\"254\" \
         autocomplete=\"email\" value=\"{}\"{}></p>\n",
        esc(&form.email),
        if invalid {
            " aria-invalid=\"true\" aria-describedby=\"sub-error\""
        } else {
            ""
        }
    ));
    if let Some(e) = &form.error {
        h.push_str(&format!(
            "<p class=\"error\" id=\"sub-error\" role=\"alert\">{}</p>\n",
            esc(e)
        ));
    }
    if !catalogue.is_empty() {
        h.push_str("<fieldset>\n<legend>Systems (none ticked: all of them)</legend>\n");
        for s in catalogue {
            let checked = if form.systems.contains(&s.id) {
                " checked"
            } else {
                ""
            };
            h.push_str(&format!(
                "<label class=\"sys\"><input type=\"checkbox\" name=\"systems\" value=\"{}\"{checked}> {}</label>\n",
                esc(&s.id),
                esc(&s.name)
            ));
        }
        h.push_str("</fieldset>\n");
    }
    h.push_str("<p><button type=\"submit\">Subscribe</button></p>\n</form>\n</section>\n");
    h
}

/// An HTML answer with the page's headers (CSP, no sniffing, never cached: these pages carry
/// tokens), and no referrer (their URLs carry tokens too).
fn html(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// A small page in the status page's style: a heading, paragraphs (already escaped HTML) and a
/// link back.
fn small_page(
    settings: &StatusSettings,
    status: StatusCode,
    heading: &str,
    body: &str,
) -> Response {
    html(
        status,
        render::simple_page(
            &settings.title,
            heading,
            &format!("{body}<p><a href=\"/status\">Back to the status page</a></p>\n"),
        ),
    )
}

fn unavailable(settings: &StatusSettings) -> Response {
    let mut r = small_page(
        settings,
        StatusCode::SERVICE_UNAVAILABLE,
        "Please try again in a minute",
        "<p>Subscriptions cannot be changed right now. The status page itself keeps working.</p>\n",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
    r
}

fn count(state: &AppState, result: &str) {
    state.metrics().status_subscribe_request(result);
}

// ----------------------------------------------------------------------------------- Subscribe

/// `POST /status/subscribe` (form-encoded `csrf`, `email`, `systems`…).
pub async fn subscribe(State(state): State<AppState>, req: Request) -> Response {
    let settings = &state.settings().status;
    if !settings.smtp.enabled() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let headers = req.headers().clone();
    let client = client_key(&headers, peer, settings.subscriptions.trusted_proxy_hops);
    let body = match axum::body::to_bytes(req.into_body(), 16 * 1024).await {
        Ok(b) => b,
        Err(_) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
    };
    // The client limit comes first, so refused requests count too and a flood stays cheap.
    match admit(&state, &client).await {
        Ok(None) => {}
        Ok(Some(retry_after)) => {
            count(&state, "limited");
            tracing::warn!(client = %client, "status subscribe requests over the hourly limit");
            let mut r = small_page(
                settings,
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests",
                "<p>Too many subscribe requests came from your network. Please try again later.</p>\n",
            );
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&retry_after.to_string()).expect("digits"),
            );
            return r;
        }
        Err(e) => {
            count(&state, "unavailable");
            tracing::warn!(error = %crate::store::short_db_error(&e), "status subscribe: the database is unavailable");
            return unavailable(settings);
        }
    }
    let form = parse_form(&body);
    let now = state.now_ms();
    if cross_site(settings, &headers) || !csrf_valid(settings, &form.csrf, now) {
        count(&state, "forbidden");
        let state_form = FormState {
            email: form.email.clone(),
            systems: form.systems.clone(),
            error: Some(
                "This form expired or did not come from this page. Please submit it again.".into(),
            ),
        };
        return super::page_with_form(&state, StatusCode::FORBIDDEN, &state_form);
    }
    let catalogue = &state.settings().announcements.systems;
    let (email, systems) = match validate(catalogue, &form) {
        Ok(v) => v,
        Err(error) => {
            count(&state, "invalid");
            let state_form = FormState {
                email: form.email.clone(),
                systems: form.systems.clone(),
                error: Some(error),
            };
            return super::page_with_form(&state, StatusCode::BAD_REQUEST, &state_form);
        }
    };
    if let Err(e) = request_confirmation(&state, &email, &systems).await {
        count(&state, "unavailable");
        tracing::warn!(error = %crate::store::short_db_error(&e), "status subscribe: storing the request failed");
        return unavailable(settings);
    }
    state.jobs().wake();
    count(&state, "accepted");
    // The same answer whatever the address's state: the form must not tell who is subscribed.
    small_page(
        settings,
        StatusCode::OK,
        "Check your inbox",
        &format!(
            "<p>If {} can receive email, a message with a confirmation link is on its way. \
             Nothing more is sent until the link is opened and confirmed.</p>\n",
            esc(&email)
        ),
    )
}

#[derive(Debug, Default)]
struct SubscribeForm {
    csrf: String,
    email: String,
    systems: Vec<String>,
}

fn parse_form(body: &Bytes) -> SubscribeForm {
    let mut f = SubscribeForm::default();
    for (k, v) in form_urlencoded::parse(body) {
        match k.as_ref() {
            "csrf" => f.csrf = v.into_owned(),
            "email" => f.email = v.into_owned(),
            "systems" if f.systems.len() < 200 => f.systems.push(v.into_owned()),
            _ => {}
        }
    }
    f
}

/// The address (lower-cased) and the systems (catalogue order, no repeats), or what is wrong.
fn validate(catalogue: &[SystemEntry], f: &SubscribeForm) -> Result<(String, Vec<String>), String> {
    let email = f.email.trim();
    if email.is_empty() {
        return Err("Enter your email address.".into());
    }
    let ok = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.parse::<lettre::Address>().is_ok_and(|a| {
            let d = a.domain();
            d.contains('.') && !d.starts_with('.') && !d.ends_with('.')
        });
    if !ok {
        return Err("Enter an email address such as name@example.com.".into());
    }
    if let Some(unknown) = f
        .systems
        .iter()
        .find(|s| !catalogue.iter().any(|c| c.id == **s))
    {
        return Err(format!(
            "{} is not a system this page lists; tick systems from the list.",
            unknown.chars().take(64).collect::<String>()
        ));
    }
    let systems = catalogue
        .iter()
        .filter(|c| f.systems.contains(&c.id))
        .map(|c| c.id.clone())
        .collect();
    Ok((email.to_lowercase(), systems))
}

/// Count this request against the client's hourly limit. `Some(seconds)` when it is over the
/// limit (then it is not recorded).
async fn admit(state: &AppState, client: &str) -> Result<Option<u64>, sqlx::Error> {
    let now = state.now_ms();
    let hour = 3_600_000;
    let limit = i64::from(
        state
            .settings()
            .status
            .subscriptions
            .max_requests_per_client_per_hour,
    );
    let pool = state.db().pool();
    sqlx::query("DELETE FROM status_subscribe_requests WHERE at <= $1")
        .bind(now - hour)
        .execute(pool)
        .await?;
    let (n, oldest): (i64, Option<i64>) = sqlx::query_as(
        "SELECT COUNT(*), MIN(at) FROM status_subscribe_requests WHERE client = $1 AND at > $2",
    )
    .bind(client)
    .bind(now - hour)
    .fetch_one(pool)
    .await?;
    if n >= limit {
        let wait_ms = oldest.map_or(hour, |o| o + hour - now).max(1000);
        return Ok(Some((wait_ms as u64).div_ceil(1000)));
    }
    sqlx::query("INSERT INTO status_subscribe_requests (client, at) VALUES ($1, $2)")
        .bind(client)
        .bind(now)
        .execute(pool)
        .await?;
    Ok(None)
}

#[derive(Debug, sqlx::FromRow)]
struct ExistingRow {
    id: String,
}

/// Store the request and queue its confirmation email, in one transaction: a new address is
/// stored as pending; a known one (pending or active) gets a new confirmation link for the
/// systems asked for, which replaces any earlier link. An active subscription keeps its systems
/// until the new link is confirmed.
async fn request_confirmation(
    state: &AppState,
    email: &str,
    systems: &[String],
) -> Result<(), sqlx::Error> {
    let settings = &state.settings().status;
    let now = state.now_ms();
    let expires = now + i64::from(settings.subscriptions.confirm_ttl_hours) * 3_600_000;
    let systems_json = serde_json::to_string(systems).unwrap_or_else(|_| "[]".into());
    let nonce = random_b64(16);
    let mut tx = state.db().pool().begin().await?;
    // Unconfirmed requests are forgotten a day after their link expired.
    sqlx::query("DELETE FROM status_subscribers WHERE state = $1 AND confirm_expires_at < $2")
        .bind(PENDING)
        .bind(now - 86_400_000)
        .execute(&mut *tx)
        .await?;
    let existing: Option<ExistingRow> =
        sqlx::query_as("SELECT id FROM status_subscribers WHERE email = $1")
            .bind(email)
            .fetch_optional(&mut *tx)
            .await?;
    let id = match existing {
        Some(row) => {
            let hash = token_hash(&confirm_token(settings, &row.id, &nonce));
            sqlx::query(
                "UPDATE status_subscribers SET pending_systems = $1, confirm_hash = $2,
                        confirm_expires_at = $3, updated_at = $4,
                        systems = CASE WHEN state = $5 THEN $1 ELSE systems END
                 WHERE id = $6",
            )
            .bind(&systems_json)
            .bind(hash)
            .bind(expires)
            .bind(now)
            .bind(PENDING)
            .bind(&row.id)
            .execute(&mut *tx)
            .await?;
            row.id
        }
        None => {
            let id = new_id();
            let hash = token_hash(&confirm_token(settings, &id, &nonce));
            // A concurrent request for the same address may have inserted it meanwhile: then
            // this one changes nothing and sends nothing, which is what a repeat would do.
            let res = sqlx::query(
                "INSERT INTO status_subscribers (id, email, systems, state, pending_systems,
                        confirm_hash, confirm_expires_at, created_at, confirmed_at, updated_at)
                 VALUES ($1, $2, $3, $4, $3, $5, $6, $7, NULL, $7)
                 ON CONFLICT (email) DO NOTHING",
            )
            .bind(&id)
            .bind(email)
            .bind(&systems_json)
            .bind(PENDING)
            .bind(hash)
            .bind(expires)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if res.rows_affected() == 0 {
                tx.commit().await?;
                return Ok(());
            }
            id
        }
    };
    super::email::queue_confirmation(state, &mut tx, &id, &nonce).await?;
    tx.commit().await
}

// ----------------------------------------------------------------------------------- Confirm

#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: String,
}

/// `GET /status/confirm?token=…`: a page with a button. Opening the link changes nothing, so a
/// mail scanner that follows links cannot confirm an address for its owner.
pub async fn confirm_page(State(state): State<AppState>, Query(q): Query<TokenQuery>) -> Response {
    let settings = &state.settings().status;
    if !settings.smtp.enabled() {
        return StatusCode::NOT_FOUND.into_response();
    }
    small_page(
        settings,
        StatusCode::OK,
        "Confirm your subscription",
        &format!(
            "<p>Confirm that you want email from {} about its outages and maintenance.</p>\n\
             <form method=\"post\" action=\"/status/confirm?token={}\">\
             <p><button type=\"submit\">Confirm subscription</button></p></form>\n",
            esc(&settings.title),
            esc(&q.token)
        ),
    )
}

/// `POST /status/confirm?token=…`: activate the subscription (with the systems the request
/// asked for). An unknown, used or expired link is a 400 page saying to subscribe again.
pub async fn confirm(State(state): State<AppState>, Query(q): Query<TokenQuery>) -> Response {
    let settings = &state.settings().status;
    if !settings.smtp.enabled() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let now = state.now_ms();
    let res = sqlx::query(
        "UPDATE status_subscribers SET state = $1, systems = COALESCE(pending_systems, systems),
                pending_systems = NULL, confirm_hash = NULL, confirm_expires_at = NULL,
                confirmed_at = $2, updated_at = $2
         WHERE confirm_hash = $3 AND confirm_expires_at > $2",
    )
    .bind(ACTIVE)
    .bind(now)
    .bind(token_hash(q.token.trim()))
    .execute(state.db().pool())
    .await;
    match res {
        Ok(r) if r.rows_affected() == 1 => {
            count(&state, "confirmed");
            small_page(
                settings,
                StatusCode::OK,
                "You are subscribed",
                "<p>You will get an email when an outage or maintenance affects the systems you \
                 picked. Each email has a link to unsubscribe.</p>\n",
            )
        }
        Ok(_) => small_page(
            settings,
            StatusCode::BAD_REQUEST,
            "This link does not work",
            "<p>The confirmation link is unknown, was already used, or expired. Subscribe again \
             on the status page to get a new one.</p>\n",
        ),
        Err(e) => {
            tracing::warn!(error = %crate::store::short_db_error(&e), "status confirm: the database is unavailable");
            unavailable(settings)
        }
    }
}

// ----------------------------------------------------------------------------------- Unsubscribe

/// `GET /status/unsubscribe?token=…`: a page with a button (a GET never unsubscribes: link
/// scanners fetch links).
pub async fn unsubscribe_page(
    State(state): State<AppState>,
    Query(q): Query<TokenQuery>,
) -> Response {
    let settings = &state.settings().status;
    if unsubscribe_subscriber(settings, q.token.trim()).is_none() {
        return bad_unsubscribe_link(settings);
    }
    small_page(
        settings,
        StatusCode::OK,
        "Unsubscribe",
        &format!(
            "<p>Stop all email from {}?</p>\n\
             <form method=\"post\" action=\"/status/unsubscribe?token={}\">\
             <input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
             <p><button type=\"submit\">Unsubscribe</button></p></form>\n",
            esc(&settings.title),
            esc(q.token.trim())
        ),
    )
}

/// `POST /status/unsubscribe?token=…`: RFC 8058 one-click (body `List-Unsubscribe=One-Click`,
/// form-encoded or multipart; the token alone authorizes it, no cookie or CSRF token is sent),
/// and the button of the page above. Deletes the subscriber; answers the same whether or not it
/// still existed. Works while `status.smtp.url` is unset, so links in old emails keep working.
pub async fn unsubscribe(State(state): State<AppState>, Query(q): Query<TokenQuery>) -> Response {
    let settings = &state.settings().status;
    let Some(id) = unsubscribe_subscriber(settings, q.token.trim()) else {
        return bad_unsubscribe_link(settings);
    };
    let res = sqlx::query("DELETE FROM status_subscribers WHERE id = $1")
        .bind(&id)
        .execute(state.db().pool())
        .await;
    match res {
        Ok(r) => {
            if r.rows_affected() > 0 {
                count(&state, "unsubscribed");
                tracing::info!(subscriber = %id, "status email subscriber unsubscribed");
            }
            small_page(
                settings,
                StatusCode::OK,
                "You are unsubscribed",
                "<p>You will get no more email from this status page. You can subscribe again on \
                 the status page at any time.</p>\n",
            )
        }
        Err(e) => {
            tracing::warn!(error = %crate::store::short_db_error(&e), "status unsubscribe: the database is unavailable");
            unavailable(settings)
        }
    }
}

fn bad_unsubscribe_link(settings: &StatusSettings) -> Response {
    small_page(
        settings,
        StatusCode::BAD_REQUEST,
        "This link does not work",
        "<p>The unsubscribe link is incomplete or damaged. Use the link from the most recent \
         email, whole.</p>\n",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_addresses_come_from_the_peer_unless_proxies_are_trusted() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6, 203.0.113.9".parse().unwrap());
        let peer = Some("10.0.0.5".parse().unwrap());
        assert_eq!(client_key(&h, peer, 0), "10.0.0.5", "the header is ignored");
        assert_eq!(client_key(&h, peer, 1), "203.0.113.9");
        assert_eq!(client_key(&h, peer, 2), "6.6.6.6");
        assert_eq!(
            client_key(&h, peer, 3),
            "10.0.0.5",
            "fewer entries than hops"
        );
        let v6 = Some("2001:db8:1:2:3:4:5:6".parse().unwrap());
        assert_eq!(client_key(&HeaderMap::new(), v6, 0), "2001:db8:1:2::/64");
    }

    #[test]
    fn addresses_are_checked_and_lower_cased() {
        let cat = vec![SystemEntry {
            id: "api".into(),
            name: "API".into(),
            group: None,
        }];
        let f = |email: &str, systems: &[&str]| SubscribeForm {
            csrf: String::new(),
            email: email.into(),
            systems: systems.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(
            validate(&cat, &f(" Ann@Example.COM ", &["api", "api"])).unwrap(),
            ("ann@example.com".into(), vec!["api".to_string()])
        );
        for bad in [
            "",
            "ann",
            "ann@localhost",
            "a b@example.com",
            "ann@@example.com",
        ] {
            assert!(validate(&cat, &f(bad, &[])).is_err(), "{bad}");
        }
        assert!(validate(&cat, &f("ann@example.com", &["nope"])).is_err());
    }
}
