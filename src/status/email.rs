//! The status page's emails: confirmations of subscribe requests, and notices of public outages
//! (opened, updated, reopened, resolved) and public maintenance (scheduled, started, ended,
//! canceled) to the confirmed subscribers whose systems they touch.
//!
//! Notices come from the one place outage and maintenance changes already leave the service:
//! [`crate::notifiers::enqueue`], in the change's own transaction, calls [`queue_notice`], which
//! queues one fan-out job per change. The fan-out job queues one send job per matching
//! subscriber, with the dedup key `(change, version, subscriber)`, so a re-run sends nobody a
//! second notice. A send job delivers one email over SMTP: transient failures (4xx answers,
//! connection errors, timeouts) are retried with the job queue's backoff, permanent ones (5xx)
//! are kept as failed at once.
//!
//! Before sending, each email takes a place in `status_email_sends` (keyed by its job, so a retry
//! keeps its place); only the first `status.subscriptions.max_emails_per_address_per_day` places
//! of an address in 24 hours are sent, the rest are skipped and counted. Addresses and SMTP
//! credentials never reach a log line: logs name the subscriber's id and the SMTP reply code.

use anyhow::anyhow;
use async_trait::async_trait;
use lettre::Message;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, header::HeaderName, header::HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::health::Health;
use super::mailer::{self, SmtpFailure};
use super::settings::StatusSettings;
use super::tokens;
use crate::announcements::settings::SystemEntry;
use crate::jobs::{Job, JobError, NewJob};
use crate::notifiers::notice;
use crate::registry::JobHandler;
use crate::state::AppState;

/// A subscriber's state before the address is confirmed.
pub const PENDING: &str = "pending";
/// A subscriber that gets notices.
pub const ACTIVE: &str = "active";

/// One change's fan-out to the subscribers.
pub const JOB_FANOUT: &str = "status.email.fanout";
/// One email to one subscriber.
pub const JOB_SEND: &str = "status.email.send";

/// A change as subscribers are told of it: the event's kind, the outage's or window's id, when,
/// and the outage or window after the change, as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Notice {
    pub kind: String,
    pub id: String,
    pub at: i64,
    pub data: Value,
}

impl Notice {
    fn version(&self) -> i64 {
        self.data["version"].as_i64().unwrap_or(0)
    }
    fn systems(&self) -> Vec<String> {
        notice::systems(&self.data)
    }
    /// `kind:id:version`, what dedup keys name the change by.
    fn key(&self) -> String {
        format!("{}:{}:{}", self.kind, self.id, self.version())
    }
}

/// What one send job sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Email {
    /// The confirmation of a subscribe request; the link is made again from the nonce.
    Confirm {
        nonce: String,
    },
    Notice {
        notice: Notice,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Send {
    subscriber: String,
    email: Email,
}

impl Email {
    fn label(&self) -> &'static str {
        match self {
            Email::Confirm { .. } => "confirm",
            Email::Notice { .. } => "notice",
        }
    }
}

/// Queue the notice of a change inside the change's transaction (called by
/// [`crate::notifiers::enqueue`]). Nothing is queued while subscriptions are off, for kinds
/// subscribers are not told of, or for anything not public.
pub async fn queue_notice(
    state: &AppState,
    conn: &mut sqlx::AnyConnection,
    kind: &str,
    id: &str,
    at: i64,
    data: &Value,
) -> Result<(), sqlx::Error> {
    if !state.settings().status.smtp.enabled() || !notice::noticed(kind, data) {
        return Ok(());
    }
    let notice = Notice {
        kind: kind.to_string(),
        id: id.to_string(),
        at,
        data: data.clone(),
    };
    let job = NewJob::new(JOB_FANOUT, &notice).dedup(format!("{JOB_FANOUT}:{}", notice.key()));
    state.jobs().insert(&mut *conn, job).await?;
    Ok(())
}

/// Queue the confirmation email of a subscribe request inside its transaction.
pub(crate) async fn queue_confirmation(
    state: &AppState,
    conn: &mut sqlx::AnyConnection,
    subscriber: &str,
    nonce: &str,
) -> Result<(), sqlx::Error> {
    let send = Send {
        subscriber: subscriber.to_string(),
        email: Email::Confirm {
            nonce: nonce.to_string(),
        },
    };
    let job = NewJob::new(JOB_SEND, &send)
        .dedup(format!("{JOB_SEND}:confirm:{subscriber}:{nonce}"))
        .max_attempts(state.settings().status.smtp.max_attempts);
    state.jobs().insert(&mut *conn, job).await?;
    Ok(())
}

#[derive(Debug, sqlx::FromRow)]
struct SubscriberRow {
    id: String,
    email: String,
    systems: String,
    state: String,
    confirm_hash: Option<String>,
    confirm_expires_at: Option<i64>,
    pending_systems: Option<String>,
}

/// Turns one change into one send job per active subscriber whose systems it touches.
pub struct FanoutJob;

#[async_trait]
impl JobHandler for FanoutJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let notice: Notice = job.payload().map_err(JobError::Permanent)?;
        if !state.settings().status.smtp.enabled() {
            return Ok(());
        }
        let systems = notice.systems();
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT id, systems FROM status_subscribers WHERE state = $1")
                .bind(ACTIVE)
                .fetch_all(state.db().pool())
                .await
                .map_err(|e| anyhow!(crate::store::short_db_error(&e)))?;
        let mut tx = state
            .db()
            .pool()
            .begin()
            .await
            .map_err(|e| anyhow!(crate::store::short_db_error(&e)))?;
        let mut queued = 0;
        for (id, picked) in rows {
            let picked: Vec<String> = serde_json::from_str(&picked).unwrap_or_default();
            if !notice::reaches(&picked, &systems) {
                continue;
            }
            let send = Send {
                subscriber: id.clone(),
                email: Email::Notice {
                    notice: notice.clone(),
                },
            };
            let new = NewJob::new(JOB_SEND, &send)
                .dedup(format!("{JOB_SEND}:{}:{id}", notice.key()))
                .max_attempts(state.settings().status.smtp.max_attempts);
            if state
                .jobs()
                .insert(&mut *tx, new)
                .await
                .map_err(|e| anyhow!(crate::store::short_db_error(&e)))?
                .is_some()
            {
                queued += 1;
            }
        }
        tx.commit()
            .await
            .map_err(|e| anyhow!(crate::store::short_db_error(&e)))?;
        state.jobs().wake();
        tracing::info!(event = %notice.kind, id = %notice.id, queued, "status email notices queued");
        Ok(())
    }
}

/// Sends one email to one subscriber.
pub struct SendJob;

#[async_trait]
impl JobHandler for SendJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let send: Send = job.payload().map_err(JobError::Permanent)?;
        let label = send.email.label();
        let result = deliver(state, job, &send).await;
        let outcome = match &result {
            Ok(o) => *o,
            Err(JobError::Permanent(_)) => "failed",
            Err(JobError::Retry { .. }) if job.is_last_attempt() => "failed",
            Err(_) => "retried",
        };
        state.metrics().status_email(label, outcome);
        result.map(|_| ())
    }
}

fn db_error(e: sqlx::Error) -> JobError {
    JobError::from(anyhow!(crate::store::short_db_error(&e)))
}

/// Deliver one email, or say why not: `sent`, `skipped` (the subscriber is gone or the request
/// was superseded or expired), `limited` (over the address's daily limit).
async fn deliver(state: &AppState, job: &Job, send: &Send) -> Result<&'static str, JobError> {
    let settings = &state.settings().status;
    if !settings.smtp.enabled() {
        return Ok("skipped");
    }
    let row: Option<SubscriberRow> = sqlx::query_as(
        "SELECT id, email, systems, state, confirm_hash, confirm_expires_at, pending_systems
         FROM status_subscribers WHERE id = $1",
    )
    .bind(&send.subscriber)
    .fetch_optional(state.db().pool())
    .await
    .map_err(db_error)?;
    let Some(sub) = row else {
        return Ok("skipped"); // unsubscribed (or an unconfirmed request forgotten) since
    };
    let now = state.now_ms();
    let (subject, body, unsubscribe) = match &send.email {
        Email::Confirm { nonce } => {
            let token = tokens::confirm_token(settings, &sub.id, nonce);
            let current = sub.confirm_hash.as_deref() == Some(&tokens::token_hash(&token));
            if !current || sub.confirm_expires_at.is_none_or(|at| at <= now) {
                return Ok("skipped"); // a newer request replaced this link, or it expired
            }
            let picked: Vec<String> = sub
                .pending_systems
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or_default();
            let (subject, body) = confirmation_text(
                settings,
                &state.settings().announcements.systems,
                &picked,
                &tokens::confirm_url(settings, &token),
            );
            (subject, body, None)
        }
        Email::Notice { notice } => {
            if sub.state != ACTIVE {
                return Ok("skipped");
            }
            let unsubscribe = tokens::unsubscribe_url(settings, &sub.id);
            let picked: Vec<String> = serde_json::from_str(&sub.systems).unwrap_or_default();
            let (subject, body) = notice_text(
                settings,
                &state.settings().announcements.systems,
                notice,
                &picked,
                &unsubscribe,
            );
            (subject, body, Some(unsubscribe))
        }
    };
    if !reserve(state, job, &sub.email, now)
        .await
        .map_err(db_error)?
    {
        tracing::warn!(
            subscriber = %sub.id,
            email = send.email.label(),
            limit = settings.subscriptions.max_emails_per_address_per_day,
            "status email skipped: the address reached its daily limit"
        );
        return Ok("limited");
    }
    let message = build_message(settings, job, &sub.email, &subject, body, unsubscribe)
        .map_err(JobError::Permanent)?;
    match state.mailer().send(message).await {
        Ok(()) => {
            tracing::info!(subscriber = %sub.id, email = send.email.label(), "status email sent");
            Ok("sent")
        }
        Err(SmtpFailure::Permanent(code)) => {
            // Not sent: the place is given back.
            release(state, job).await.map_err(db_error)?;
            tracing::warn!(subscriber = %sub.id, email = send.email.label(), code = %code, "status email refused permanently by the mail server");
            Err(JobError::Permanent(anyhow!(
                "the mail server refused the email permanently ({code})"
            )))
        }
        Err(SmtpFailure::Transient(what)) => {
            tracing::warn!(subscriber = %sub.id, email = send.email.label(), error = %what, attempt = job.attempts, "status email not sent; retrying");
            if job.is_last_attempt() {
                release(state, job).await.map_err(db_error)?;
            }
            Err(JobError::from(anyhow!("sending the email failed: {what}")))
        }
    }
}

/// Take this job's place among the address's emails of the last 24 hours; false (and the place
/// given back) when earlier ones fill the limit. Earlier places win, so concurrent sends never
/// exceed it.
async fn reserve(state: &AppState, job: &Job, email: &str, now: i64) -> Result<bool, sqlx::Error> {
    let day = 86_400_000;
    let limit = i64::from(
        state
            .settings()
            .status
            .subscriptions
            .max_emails_per_address_per_day,
    );
    let pool = state.db().pool();
    sqlx::query("DELETE FROM status_email_sends WHERE at <= $1")
        .bind(now - day)
        .execute(pool)
        .await?;
    sqlx::query(
        "INSERT INTO status_email_sends (id, email, at) VALUES ($1, $2, $3)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&job.id)
    .bind(email)
    .bind(now)
    .execute(pool)
    .await?;
    let mine: i64 = sqlx::query_scalar("SELECT at FROM status_email_sends WHERE id = $1")
        .bind(&job.id)
        .fetch_one(pool)
        .await?;
    let earlier: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM status_email_sends
         WHERE email = $1 AND at > $2 AND (at < $3 OR (at = $3 AND id < $4))",
    )
    .bind(email)
    .bind(now - day)
    .bind(mine)
    .bind(&job.id)
    .fetch_one(pool)
    .await?;
    if earlier >= limit {
        release(state, job).await?;
        return Ok(false);
    }
    Ok(true)
}

async fn release(state: &AppState, job: &Job) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM status_email_sends WHERE id = $1")
        .bind(&job.id)
        .execute(state.db().pool())
        .await?;
    Ok(())
}

// ----------------------------------------------------------------------------------- SMTP

fn build_message(
    settings: &StatusSettings,
    job: &Job,
    to: &str,
    subject: &str,
    body: String,
    unsubscribe: Option<String>,
) -> anyhow::Result<Message> {
    let from: Mailbox = settings
        .smtp
        .from
        .trim()
        .parse()
        .map_err(|_| anyhow!("status.smtp.from is not an address"))?;
    let to: Mailbox = to
        .parse()
        .map_err(|_| anyhow!("the subscriber's address cannot be used"))?;
    let mut b = Message::builder()
        .from(from)
        .to(to)
        .subject(subject)
        // Stable across retries, so a receiver can drop a duplicate of an ambiguous attempt.
        .message_id(Some(format!(
            "<{}@{}>",
            job.id,
            mailer::from_domain(&settings.smtp)
        )))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-generated".into(),
        ));
    if let Some(url) = unsubscribe {
        b = b
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe"),
                format!("<{url}>"),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                "List-Unsubscribe=One-Click".into(),
            ));
    }
    b.header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| anyhow!("building the email failed: {e}"))
}

// ----------------------------------------------------------------------------------- Texts

fn names(catalogue: &[SystemEntry], ids: &[String]) -> String {
    ids.iter()
        .map(|i| {
            catalogue
                .iter()
                .find(|s| s.id == *i)
                .map(|s| s.name.clone())
                .unwrap_or_else(|| i.clone())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A time as the page shows it, in its zone.
fn time(settings: &StatusSettings, ms: i64) -> String {
    let offset = settings.offset_secs().unwrap_or(0);
    chrono::DateTime::from_timestamp_millis(ms + i64::from(offset) * 1000)
        .map(|d| {
            format!(
                "{} {}",
                d.format("%a %Y-%m-%d %H:%M"),
                settings.zone_label()
            )
        })
        .unwrap_or_default()
}

fn time_of(settings: &StatusSettings, v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => n.as_i64().map(|ms| time(settings, ms)),
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|d| time(settings, d.timestamp_millis())),
        _ => None,
    }
}

fn eta_text(eta: &str) -> &str {
    match eta {
        "30m" => "under 30 minutes",
        "2h" => "about 2 hours",
        "8h" => "about 8 hours",
        "24h" => "about 24 hours",
        _ => "unknown",
    }
}

fn footer(settings: &StatusSettings, catalogue: &[SystemEntry], picked: &[String]) -> String {
    let which = if picked.is_empty() {
        "all systems".to_string()
    } else {
        names(catalogue, picked)
    };
    format!(
        "\n-- \nYou get this email because you subscribed to {} ({which}).\n",
        settings.title
    )
}

/// Subject and plain-text body of a notice. Only what the public page shows is said.
fn notice_text(
    settings: &StatusSettings,
    catalogue: &[SystemEntry],
    n: &Notice,
    picked: &[String],
    unsubscribe: &str,
) -> (String, String) {
    let d = &n.data;
    let s = |k: &str| d[k].as_str().unwrap_or("").trim().to_string();
    let systems = names(catalogue, &n.systems());
    let page = tokens::base_url(settings);
    let mut body = String::new();
    let subject;
    if n.kind.starts_with("outage.") {
        let summary = s("summary");
        let (word, headline) = match n.kind.as_str() {
            "outage.announced" => ("Outage", "A new outage was reported."),
            "outage.reopened" => ("Reopened", "An outage was reopened."),
            "outage.resolved" => ("Resolved", "An outage is resolved."),
            _ => ("Update", "An outage was updated."),
        };
        subject = format!("[{}] {word}: {summary}", settings.title);
        let open = s("state") == "open";
        body.push_str(&format!("{headline}\n\n{summary}\n\n"));
        body.push_str(&format!(
            "State: {}\n",
            if open { "Open" } else { "Resolved" }
        ));
        body.push_str(&format!(
            "Severity: {}\n",
            Health::from_severity(&s("severity")).text()
        ));
        body.push_str(&format!("Systems: {systems}\n"));
        if let Some(t) = time_of(settings, &d["started_at"]) {
            body.push_str(&format!("Started: {t}\n"));
        }
        if open {
            body.push_str(&format!("Expected resolution: {}\n", eta_text(&s("eta"))));
        } else if let Some(t) = time_of(settings, &d["resolved_at"]) {
            body.push_str(&format!("Resolved: {t}\n"));
        }
    } else {
        let title = s("title");
        let (word, headline) = match n.kind.as_str() {
            "maintenance.started" => ("Maintenance started", "Maintenance has started."),
            "maintenance.ended" => ("Maintenance completed", "Maintenance is completed."),
            "maintenance.canceled" => ("Maintenance canceled", "Maintenance was canceled."),
            _ => ("Scheduled maintenance", "Maintenance is scheduled."),
        };
        subject = format!("[{}] {word}: {title}", settings.title);
        body.push_str(&format!("{headline}\n\n{title}\n"));
        let summary = s("summary");
        if !summary.is_empty() {
            body.push_str(&format!("{summary}\n"));
        }
        body.push('\n');
        body.push_str(&format!("Systems: {systems}\n"));
        if let (Some(from), Some(to)) = (
            time_of(settings, &d["starts_at"]),
            time_of(settings, &d["ends_at"]),
        ) {
            body.push_str(&format!("When: {from} to {to}\n"));
        }
    }
    body.push_str(&format!("\nCurrent status: {page}\n"));
    body.push_str(&footer(settings, catalogue, picked));
    body.push_str(&format!("Unsubscribe: {unsubscribe}\n"));
    (subject, body)
}

fn confirmation_text(
    settings: &StatusSettings,
    catalogue: &[SystemEntry],
    picked: &[String],
    link: &str,
) -> (String, String) {
    let which = if picked.is_empty() {
        "all systems".to_string()
    } else {
        names(catalogue, picked)
    };
    let hours = settings.subscriptions.confirm_ttl_hours;
    (
        format!("[{}] Confirm your subscription", settings.title),
        format!(
            "Someone, hopefully you, asked for email from {} about outages and maintenance \
             of: {which}.\n\nTo confirm, open this link within {hours} hours and press Confirm:\n\
             {link}\n\nIf it was not you, ignore this email: nothing more will be sent.\n\n\
             Status page: {}\n",
            settings.title,
            tokens::base_url(settings)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_says_only_what_the_page_shows() {
        let s = StatusSettings {
            public_url: Some("https://status.example.com/status".parse().unwrap()),
            ..Default::default()
        };
        let cat = vec![SystemEntry {
            id: "api".into(),
            name: "Public API".into(),
            group: None,
        }];
        let n = Notice {
            kind: "outage.resolved".into(),
            id: "o1".into(),
            at: 0,
            data: serde_json::json!({"summary": "Checkout fails", "state": "resolved",
                "severity": "critical", "systems": ["api"], "started_at": 1_800_000_000_000_i64,
                "resolved_at": 1_800_000_600_000_i64, "public": true, "version": 3,
                "resolution": {"summary": "internal detail"}}),
        };
        let (subject, body) = notice_text(&s, &cat, &n, &[], "https://x/unsub");
        assert_eq!(subject, "[Service status] Resolved: Checkout fails");
        assert!(body.contains("Systems: Public API"));
        assert!(body.contains("Severity: Major outage"));
        assert!(body.contains("Current status: https://status.example.com/status"));
        assert!(body.contains("Unsubscribe: https://x/unsub"));
        assert!(!body.contains("internal detail"));
    }
}
