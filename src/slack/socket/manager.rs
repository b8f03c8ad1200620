//! The connections a replica holds: `slack.socket_connections` slots, each keeping one connection
//! up for as long as the service runs.
//!
//! A slot opens its connection, and when Slack announces a refresh (`warning` or
//! `refresh_requested`) opens the replacement *first* and only then lets the old connection
//! drain, so envelopes keep a connection to land on. A connection that drops or goes stale is
//! replaced at once (with a little jitter); failures to open one (`apps.connections.open` errors,
//! HTTP 429 with `Retry-After`, 5xx, timeouts, refused handshakes, a missing `hello`) back off
//! exponentially with jitter, capped (src/backoff.rs), honouring `Retry-After`. A token Slack
//! refuses is logged as a configuration error naming `slack.app_token`, and retried slowly.
//!
//! Never logs the app token or a ticketed URL.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, error, info, info_span, warn};

use super::connection::{self, AckRoute, ConnEvent, OpenError, Running, Shared};
use crate::state::AppState;

/// Delays after failed attempts: 0.5–1 s, 1–2 s, … up to 30 s.
const RETRY_BASE: Duration = Duration::from_millis(1000);
const RETRY_CAP: Duration = Duration::from_secs(30);
/// Delays after a refused token or a disabled app: 30 s doubling to 5 min.
const CONFIG_RETRY_BASE: Duration = Duration::from_secs(30);
const CONFIG_RETRY_CAP: Duration = Duration::from_secs(300);
/// A connection that dies sooner than this after its hello counts as a failed attempt, so a
/// connection that flaps backs off instead of looping on `apps.connections.open`.
const MIN_HEALTHY: Duration = Duration::from_secs(10);

/// Hold `slack.socket_connections` connections until `stop`, then close them gracefully: stop
/// reading, let in-flight acks out, close each socket.
pub async fn run(state: AppState, stop: CancellationToken) {
    let shared = Shared {
        state: state.clone(),
        route: AckRoute::default(),
        stop: stop.clone(),
        tasks: TaskTracker::new(),
    };
    let ids = std::sync::Arc::new(AtomicU64::new(0));
    let n = state.settings().slack.socket_connections.max(1);
    info!(connections = n, "Socket Mode: connecting to Slack");
    let slots: Vec<_> = (0..n)
        .map(|slot| {
            let s = Slot {
                shared: shared.clone(),
                ids: ids.clone(),
            };
            tokio::spawn(s.run().instrument(info_span!("socket_slot", slot)))
        })
        .collect();
    for s in slots {
        let _ = s.await;
    }
    shared.tasks.close();
    shared.tasks.wait().await;
    info!("Socket Mode: every connection is closed");
}

struct Slot {
    shared: Shared,
    ids: std::sync::Arc<AtomicU64>,
}

impl Slot {
    async fn run(self) {
        let mut next_reason: Option<&'static str> = None;
        let mut failures = 0u32;
        let mut current: Option<Running> = None;
        loop {
            let mut live = match current.take() {
                Some(l) => l,
                None => match self.connect(next_reason, &mut failures).await {
                    Some(l) => l,
                    None => return,
                },
            };
            let event = tokio::select! {
                _ = self.shared.stop.cancelled() => return,
                ev = live.events.recv() => ev,
            };
            match event {
                Some(ConnEvent::Replace(reason)) => {
                    info!(
                        reason = reason.as_str(),
                        "opening the replacement before the old connection drains"
                    );
                    let next = self
                        .connect(Some(refresh_label(&reason)), &mut failures)
                        .await;
                    live.drain.cancel();
                    match next {
                        Some(n) => current = Some(n),
                        None => return,
                    }
                }
                Some(ConnEvent::Ended(reason)) => {
                    next_reason = Some(reason);
                    let short_lived = live.opened_at.elapsed() < MIN_HEALTHY;
                    let wait = if short_lived {
                        failures += 1;
                        crate::backoff::exponential(failures, RETRY_BASE, RETRY_CAP)
                    } else {
                        failures = 0;
                        Duration::from_millis(rand::rng().random_range(0..250))
                    };
                    if !self.pause(wait).await {
                        return;
                    }
                }
                None => next_reason = Some("dropped"),
            }
        }
    }

    /// Open a connection, retrying with backoff until it is up or the service stops. `reason` is
    /// the label of this reconnect (`None` for the first connection).
    async fn connect(&self, reason: Option<&'static str>, failures: &mut u32) -> Option<Running> {
        let state = &self.shared.state;
        let mut reason = reason;
        loop {
            if self.shared.stop.is_cancelled() {
                return None;
            }
            if let Some(r) = reason {
                state.metrics().socket_reconnect(r);
            }
            let attempt = connection::open(state.slack(), &state.settings().slack);
            let result = tokio::select! {
                _ = self.shared.stop.cancelled() => return None,
                r = attempt => r,
            };
            match result {
                Ok(opened) => {
                    let id = self.ids.fetch_add(1, Ordering::SeqCst) + 1;
                    info!(
                        connection = id,
                        app_id = opened.hello.app_id.as_deref().unwrap_or(""),
                        num_connections = opened.hello.num_connections.unwrap_or(0),
                        refresh_in_secs = opened.hello.approximate_connection_time.unwrap_or(0),
                        "Socket Mode connection up (hello received)"
                    );
                    return Some(connection::spawn(&self.shared, opened, id));
                }
                Err(e) => {
                    *failures += 1;
                    reason = Some(e.reason());
                    let wait = retry_delay(&e, *failures);
                    log_failure(&e, wait);
                    if !self.pause(wait).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Sleep unless the service stops first; false when it stopped.
    async fn pause(&self, wait: Duration) -> bool {
        tokio::select! {
            _ = self.shared.stop.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        }
    }
}

fn refresh_label(reason: &super::protocol::DisconnectReason) -> &'static str {
    match reason {
        super::protocol::DisconnectReason::Warning => "warning",
        _ => "refresh_requested",
    }
}

/// Capped, jittered exponential backoff; at least Slack's `Retry-After` when it sent one.
pub fn retry_delay(e: &OpenError, failures: u32) -> Duration {
    let backoff = if e.is_configuration() {
        crate::backoff::exponential(failures, CONFIG_RETRY_BASE, CONFIG_RETRY_CAP)
    } else {
        crate::backoff::exponential(failures, RETRY_BASE, RETRY_CAP)
    };
    match e.retry_after() {
        Some(after) => backoff.max(after + Duration::from_millis(rand::rng().random_range(0..500))),
        None => backoff,
    }
}

fn log_failure(e: &OpenError, wait: Duration) {
    let wait_ms = wait.as_millis() as u64;
    if matches!(
        e,
        OpenError::Refused(super::protocol::DisconnectReason::LinkDisabled)
    ) {
        error!(
            error = %e,
            wait_ms,
            "Slack refused Socket Mode: it is switched off in the app's settings (Socket Mode page, or socket_mode_enabled in the app manifest)"
        );
    } else if e.is_configuration() {
        error!(
            error = %e,
            key = "slack.app_token",
            wait_ms,
            "Slack refused Socket Mode: check slack.app_token (env SLACKOPS_SLACK__APP_TOKEN or slack.app_token_file): an app-level token (xapp-…) with the connections:write scope, for an app with Socket Mode enabled"
        );
    } else {
        warn!(error = %e, reason = e.reason(), wait_ms, "opening a Socket Mode connection failed; retrying");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slack::api::{SlackError, SlackErrorCode};

    #[test]
    fn retry_after_is_honoured_and_backoff_is_capped() {
        let limited = OpenError::Api(SlackError::RateLimited {
            method: "apps.connections.open".into(),
            retry_after: Duration::from_secs(7),
        });
        let d = retry_delay(&limited, 1);
        assert!(d >= Duration::from_secs(7), "{d:?}");
        assert!(d < Duration::from_secs(8), "{d:?}");
        let server = OpenError::Api(SlackError::Server {
            method: "apps.connections.open".into(),
            status: 503,
        });
        for n in 1..40 {
            assert!(retry_delay(&server, n) <= RETRY_CAP);
        }
        assert!(retry_delay(&server, 1) <= RETRY_BASE);
        assert_eq!(server.reason(), "open_failed");
    }

    #[test]
    fn refused_tokens_are_configuration_errors_with_a_slow_retry() {
        for code in ["invalid_auth", "not_authed", "not_allowed_token_type"] {
            let e = OpenError::Api(SlackError::Api {
                method: "apps.connections.open".into(),
                code: SlackErrorCode::parse(code),
                detail: vec![],
            });
            assert!(e.is_configuration(), "{code}");
            assert_eq!(e.reason(), "auth_failed");
            assert!(retry_delay(&e, 1) >= CONFIG_RETRY_BASE / 2);
        }
        let internal = OpenError::Api(SlackError::Api {
            method: "apps.connections.open".into(),
            code: SlackErrorCode::parse("internal_error"),
            detail: vec![],
        });
        assert!(!internal.is_configuration());
    }
}
