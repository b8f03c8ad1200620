//! Notifiers: every change to an outage or a maintenance window is sent as one JSON event to each
//! configured webhook, drawn as annotations on each configured Grafana ([`grafana`]), posted
//! as a notice in each subscribed Slack channel ([`channels`], subscribed with
//! `/announce subscribe`: [`subscribe`]), and, when public, emailed to the status page's
//! subscribers ([`crate::status::email`]). Deliveries go through the durable job queue, queued in the same
//! transaction as the change itself (the outbox pattern), so a change that committed is always
//! delivered and a failed delivery is retried, never only logged.
//!
//! A queued delivery stores the webhook's name and the event, never its URL or secret: those are
//! read from the configuration when the delivery runs, so a rotated secret applies to deliveries
//! still waiting. This module must never log a webhook's secret, URL query or a body.

pub mod channels;
pub mod grafana;
pub mod notice;
pub mod settings;
pub mod subscribe;

use std::time::Duration;

use anyhow::anyhow;
use async_trait::async_trait;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::jobs::{Job, JobError, NewJob};
use crate::registry::{JobHandler, Registry};
use crate::state::AppState;
use settings::{NotifierSettings, WebhookSettings};

pub use settings::EVENT_KINDS;

/// The job kind of one delivery to one webhook.
pub const JOB_DELIVER: &str = "notifiers.deliver";

/// Header carrying the event kind.
pub const HEADER_EVENT: &str = "x-slackops-event";
/// Header carrying the delivery's id (the same on every retry of one delivery).
pub const HEADER_DELIVERY: &str = "x-slackops-delivery";
/// Header carrying the signing time (Unix seconds), part of the signed text.
pub const HEADER_TIMESTAMP: &str = "x-slackops-timestamp";
/// Header carrying `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">` when a secret is set.
pub const HEADER_SIGNATURE: &str = "x-slackops-signature";

/// One change, as webhooks receive it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusEvent {
    /// `outage.announced`, `outage.updated`, `outage.reassigned`, `outage.resolved`,
    /// `outage.reopened`, `maintenance.scheduled`, `maintenance.updated`, `maintenance.started`,
    /// `maintenance.ended` or `maintenance.canceled`.
    pub kind: String,
    /// The outage's or maintenance window's id.
    pub id: String,
    /// When the change happened (ms since the epoch).
    pub at: i64,
    /// The outage or maintenance window after the change, as the API shows it.
    pub data: serde_json::Value,
}

/// A queued delivery.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Delivery {
    webhook: String,
    event: StatusEvent,
}

/// Queue `event` for every configured webhook inside the caller's transaction; the caller calls
/// `state.jobs().wake()` after committing.
pub async fn enqueue(
    state: &AppState,
    conn: &mut sqlx::AnyConnection,
    event: &StatusEvent,
) -> Result<(), sqlx::Error> {
    // Subscribed Slack channels and the status page's email subscribers hear of the public
    // changes (channels and status::email decide which).
    channels::enqueue(state, conn, event).await?;
    crate::status::email::queue_notice(state, conn, &event.kind, &event.id, event.at, &event.data)
        .await?;
    let settings = &state.settings().notifiers;
    if settings.webhooks.is_empty() && settings.grafana.is_empty() {
        return Ok(());
    }
    // The same event queued twice (a caller's retry) is delivered once per webhook.
    let digest = hex::encode(Sha256::digest(
        serde_json::to_vec(event).unwrap_or_default(),
    ));
    for w in settings.webhooks.iter().filter(|w| w.wants(&event.kind)) {
        let delivery = Delivery {
            webhook: w.name.clone(),
            event: event.clone(),
        };
        let job = NewJob::new(JOB_DELIVER, &delivery)
            .dedup(format!("{JOB_DELIVER}:{}:{}", w.name, &digest[..32]))
            .max_attempts(settings.max_attempts);
        state.jobs().insert(&mut *conn, job).await?;
    }
    if grafana::wanted(&event.kind) {
        for g in &settings.grafana {
            let target = g.target();
            let target_digest = hex::encode(Sha256::digest(target.as_bytes()));
            let job = NewJob::new(
                grafana::JOB_ANNOTATE,
                &grafana::Annotate {
                    target,
                    event: event.clone(),
                },
            )
            .dedup(format!(
                "{}:{}:{}",
                grafana::JOB_ANNOTATE,
                &target_digest[..16],
                &digest[..32]
            ))
            .max_attempts(settings.max_attempts);
            state.jobs().insert(&mut *conn, job).await?;
        }
    }
    Ok(())
}

/// Register the deliveries, and `subscribe`, `unsubscribe` and `subscriptions` as subcommands of
/// `announce_command` (`announcements.command`), which hands them over through the registry.
pub fn register(registry: &mut Registry, _settings: &NotifierSettings, announce_command: &str) {
    registry
        .job(JOB_DELIVER, DeliverJob)
        .job(grafana::JOB_ANNOTATE, grafana::AnnotateJob)
        .job(channels::JOB_NOTICE, channels::NoticeJob)
        .job(subscribe::JOB_SUBSCRIBE, subscribe::SubscribeJob)
        .subcommand(announce_command, "subscribe", subscribe::SubscribeCommand)
        .subcommand(
            announce_command,
            "unsubscribe",
            subscribe::UnsubscribeCommand,
        )
        .subcommand(announce_command, "subscriptions", subscribe::ListCommand);
}

/// The signature header's value for `body` signed at `timestamp` with `secret`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// POSTs one event to one webhook. Any failure (connection, timeout, a non-2xx answer) is
/// returned as a retry, so the queue's backoff applies until `notifiers.max_attempts`.
struct DeliverJob;

#[async_trait]
impl JobHandler for DeliverJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let d: Delivery = job.payload().map_err(JobError::Permanent)?;
        let settings = &state.settings().notifiers;
        let Some(hook) = settings.webhooks.iter().find(|w| w.name == d.webhook) else {
            // Removed from the configuration since: nobody to deliver to.
            tracing::warn!(webhook = %d.webhook, event = %d.event.kind, "webhook no longer configured; delivery dropped");
            return Ok(());
        };
        deliver(state, hook, &d.event, &job.id, settings.timeout_ms).await
    }
}

async fn deliver(
    state: &AppState,
    hook: &WebhookSettings,
    event: &StatusEvent,
    delivery_id: &str,
    timeout_ms: u64,
) -> Result<(), JobError> {
    let Some(url) = &hook.url else {
        return Err(JobError::Permanent(anyhow!(
            "webhook {} has no url",
            hook.name
        )));
    };
    let body = serde_json::to_vec(event).map_err(|e| JobError::Permanent(e.into()))?;
    let ts = state.clock().now_secs();
    let mut req = state
        .http()
        .post(url.clone())
        .timeout(Duration::from_millis(timeout_ms))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(HEADER_EVENT, &event.kind)
        .header(HEADER_DELIVERY, delivery_id)
        .header(HEADER_TIMESTAMP, ts.to_string());
    if !hook.secret.is_empty() {
        req = req.header(HEADER_SIGNATURE, signature(hook.secret.expose(), ts, &body));
    }
    let resp = req.body(body).send().await.map_err(|e| {
        // reqwest's error text includes the URL, which may carry a token: name the kind only.
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not connect"
        } else {
            "request failed"
        };
        JobError::from(anyhow!("webhook {}: {what}", hook.name))
    })?;
    let status = resp.status();
    if status.is_success() {
        tracing::info!(webhook = %hook.name, event = %event.kind, status = status.as_u16(), "webhook delivered");
        return Ok(());
    }
    let after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.min(3600)));
    let error = anyhow!("webhook {} answered HTTP {}", hook.name, status.as_u16());
    Err(JobError::Retry { error, after })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_an_hmac_of_timestamp_and_body() {
        // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac key
        assert_eq!(
            signature("key", 1_700_000_000, br#"{"a":1}"#),
            "sha256=a438e398bfafc57e4396bb7fc2304422f0f768e965d073ca313cb52e22e6ad03"
        );
    }

    #[test]
    fn event_filters_take_exact_kinds_and_prefixes() {
        let w = |e: &[&str]| WebhookSettings {
            events: e.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        assert!(w(&[]).wants("outage.resolved"));
        assert!(w(&["outage.*"]).wants("outage.resolved"));
        assert!(!w(&["outage.*"]).wants("maintenance.started"));
        assert!(w(&["maintenance.started"]).wants("maintenance.started"));
        assert!(!w(&["maintenance.started"]).wants("maintenance.ended"));
        assert!(!w(&["out*"]).wants("outage.resolved"));
    }
}
