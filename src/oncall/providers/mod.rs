//! On-call providers behind one interface: who is on call during a time window.
//!
//! One client per product ([`pagerduty`], [`opsgenie`], [`grafana`]) plus static rotas from the
//! configuration ([`rota`]). Each client is built once with its `base_url` and token (the test
//! seam) and shares one retrying HTTP helper ([`Http`]): 429 is waited out using the provider's
//! own hint (PagerDuty's `ratelimit-reset`, else `Retry-After`) when that is short, 5xx, timeouts
//! and transport errors are retried with capped exponential backoff and jitter; anything else is
//! a typed [`ProviderError`]. Tokens, request bodies and response bodies are never logged.

pub mod grafana;
pub mod opsgenie;
pub mod pagerduty;
pub mod rota;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use serde_json::Value;
use tracing::{debug, warn};

use super::settings::{OncallSettings, ProviderKind, SourceSettings};
use crate::clock::Millis;
use crate::oncall::model::{Person, Shift};

/// A failed provider call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    #[error("{provider}: rate limited, retry after {}s", .retry_after.as_secs())]
    RateLimited {
        provider: &'static str,
        retry_after: Duration,
    },
    #[error("{provider}: HTTP {status}")]
    Server { provider: &'static str, status: u16 },
    #[error("{provider}: timed out")]
    Timeout { provider: &'static str },
    #[error("{provider}: {message}")]
    Transport {
        provider: &'static str,
        message: String,
    },
    #[error("{provider}: refused with HTTP {status}: {message}")]
    Refused {
        provider: &'static str,
        status: u16,
        message: String,
    },
    #[error("{provider}: unexpected answer: {message}")]
    Decode {
        provider: &'static str,
        message: String,
    },
    #[error("{0}")]
    NotConfigured(String),
}

impl ProviderError {
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ProviderError::RateLimited { .. }
                | ProviderError::Server { .. }
                | ProviderError::Timeout { .. }
                | ProviderError::Transport { .. }
        )
    }
    /// A short label for alert throttling and the audit log.
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderError::RateLimited { .. } => "rate_limited",
            ProviderError::Server { .. } => "server_error",
            ProviderError::Timeout { .. } => "timeout",
            ProviderError::Transport { .. } => "transport",
            ProviderError::Refused { .. } => "refused",
            ProviderError::Decode { .. } => "decode",
            ProviderError::NotConfigured(_) => "not_configured",
        }
    }
}

/// What a provider answered for one source: the shifts, and which of its endpoints answered,
/// so a plan can say where "nobody" or a name came from.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub shifts: Vec<Shift>,
    /// One short line per endpoint that answered (`pagerduty /oncalls: schedule PABC123`).
    pub sources: Vec<String>,
}

/// The line a provider without several endpoints answers with: its name and schedules.
pub fn default_source(source: &SourceSettings) -> String {
    let what = match (&source.rota, source.schedules.is_empty()) {
        (Some(rota), _) => format!("rota {rota}"),
        (None, false) => format!("schedule {}", source.schedules.join(", ")),
        (None, true) => format!(
            "escalation policy {}",
            source.escalation_policies.join(", ")
        ),
    };
    format!("{}: {what}", source.provider.as_str())
}

/// Who is on call: every shift overlapping `[from, until]`.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// [`Provider::shifts`] and which endpoints answered. A provider that asks one endpoint per
    /// source keeps this default; one with a fallback (PagerDuty) says which answered.
    async fn answer(
        &self,
        source: &SourceSettings,
        from: Millis,
        until: Millis,
    ) -> Result<Answer, ProviderError> {
        Ok(Answer {
            shifts: self.shifts(source, from, until).await?,
            sources: vec![default_source(source)],
        })
    }
    /// Shifts overlapping the window. A shift without `start` is already running; without `end`
    /// it has no known end (a permanent on-call, or a provider that does not say).
    async fn shifts(
        &self,
        source: &SourceSettings,
        from: Millis,
        until: Millis,
    ) -> Result<Vec<Shift>, ProviderError>;
    /// Whether shift start and end times are known (Opsgenie's who-is-on-call does not give them).
    fn knows_shift_times(&self) -> bool {
        true
    }
    /// For providers without shift times: who comes on call next after `after`, when known.
    async fn next(
        &self,
        _source: &SourceSettings,
        _after: Millis,
    ) -> Result<Option<Vec<Person>>, ProviderError> {
        Ok(None)
    }
}

/// Every configured provider.
pub struct Providers {
    pub pagerduty: Option<pagerduty::PagerDuty>,
    pub opsgenie: Option<opsgenie::Opsgenie>,
    pub grafana: Option<grafana::Grafana>,
    pub rotas: HashMap<String, rota::Rota>,
}

impl Providers {
    pub fn new(settings: &OncallSettings, client: reqwest::Client) -> Self {
        let http = Http {
            client,
            timeout: Duration::from_millis(settings.request_timeout_ms.max(1)),
            max_attempts: settings.max_attempts.max(1),
            max_wait: Duration::from_secs(settings.max_retry_wait_secs),
        };
        let pagerduty = (!settings.pagerduty.token.is_empty())
            .then(|| pagerduty::PagerDuty::new(&settings.pagerduty, http.clone()));
        let opsgenie = (!settings.opsgenie.token.is_empty())
            .then(|| opsgenie::Opsgenie::new(&settings.opsgenie, http.clone()));
        let grafana = settings
            .grafana
            .base_url
            .as_ref()
            .filter(|_| !settings.grafana.token.is_empty())
            .map(|url| {
                grafana::Grafana::new(
                    url,
                    &settings.grafana.token,
                    http.clone(),
                    Duration::from_secs(settings.lookup_cache_secs),
                )
            });
        let rotas = settings
            .rotas
            .iter()
            .filter_map(|(name, r)| Some((name.clone(), rota::Rota::parse(r).ok()?)))
            .collect();
        Self {
            pagerduty,
            opsgenie,
            grafana,
            rotas,
        }
    }

    /// The provider serving a source.
    pub fn for_source(&self, source: &SourceSettings) -> Result<&dyn Provider, ProviderError> {
        let missing =
            |what: &str| ProviderError::NotConfigured(format!("{what} is not configured"));
        Ok(match source.provider {
            ProviderKind::Pagerduty => self
                .pagerduty
                .as_ref()
                .map(|p| p as &dyn Provider)
                .ok_or_else(|| missing("oncall.pagerduty"))?,
            ProviderKind::Opsgenie => self
                .opsgenie
                .as_ref()
                .map(|p| p as &dyn Provider)
                .ok_or_else(|| missing("oncall.opsgenie"))?,
            ProviderKind::Grafana => self
                .grafana
                .as_ref()
                .map(|p| p as &dyn Provider)
                .ok_or_else(|| missing("oncall.grafana"))?,
            ProviderKind::Static => {
                let name = source.rota.as_deref().unwrap_or_default();
                self.rotas
                    .get(name)
                    .map(|p| p as &dyn Provider)
                    .ok_or_else(|| missing(&format!("oncall.rotas.{name}")))?
            }
        })
    }
}

/// The retrying HTTP helper every provider client uses.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    timeout: Duration,
    max_attempts: u32,
    max_wait: Duration,
}

impl Http {
    /// GET JSON, retrying transient failures. `build` makes a fresh request for every attempt.
    pub async fn get_json(
        &self,
        provider: &'static str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Value, ProviderError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let err = match self.once(provider, &build).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            log_refusal(&err);
            if attempt >= self.max_attempts || !err.is_transient() {
                return Err(err);
            }
            let wait = match &err {
                ProviderError::RateLimited { retry_after, .. } => {
                    if *retry_after > self.max_wait {
                        return Err(err);
                    }
                    *retry_after + Duration::from_millis(rand::rng().random_range(0..250))
                }
                _ => crate::backoff::upstream(attempt),
            };
            debug!(
                provider,
                attempt,
                wait_ms = wait.as_millis() as u64,
                error = %err,
                "provider call failed; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// One attempt of a call that changes something (an acknowledge, a resolve): never retried
    /// here, since none of the products takes an idempotency key; the caller's job retries
    /// after reading the current state again. An empty success body is `Value::Null`.
    pub async fn send_once(
        &self,
        provider: &'static str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<(u16, Value), ProviderError> {
        let (status, bytes) = self.answer(provider, &build).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok((status, Value::Null));
        }
        let v = serde_json::from_slice(&bytes).map_err(|_| ProviderError::Decode {
            provider,
            message: format!("HTTP {status}, body is not JSON"),
        })?;
        Ok((status, v))
    }

    async fn once(
        &self,
        provider: &'static str,
        build: &impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Value, ProviderError> {
        let (status, bytes) = self.answer(provider, build).await?;
        serde_json::from_slice(&bytes).map_err(|_| ProviderError::Decode {
            provider,
            message: format!("HTTP {status}, body is not JSON"),
        })
    }

    /// Send once; a success's status and body, or the typed error.
    async fn answer(
        &self,
        provider: &'static str,
        build: &impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<(u16, bytes::Bytes), ProviderError> {
        let resp = build(&self.client)
            .timeout(self.timeout)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| transport(provider, e))?;
        let status = resp.status();
        if status.as_u16() == 429 {
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .filter(|v| v.is_finite() && *v >= 0.0)
            };
            // PagerDuty: `ratelimit-reset` (seconds until the window resets); others: Retry-After.
            let secs = header("ratelimit-reset")
                .or_else(|| header("retry-after"))
                .unwrap_or(5.0);
            return Err(ProviderError::RateLimited {
                provider,
                retry_after: Duration::from_secs_f64(secs.min(86_400.0)),
            });
        }
        if status.is_server_error() {
            return Err(ProviderError::Server {
                provider,
                status: status.as_u16(),
            });
        }
        let bytes = resp.bytes().await.map_err(|e| transport(provider, e))?;
        if !status.is_success() {
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            // Each product names its error differently; keep only a short message.
            let message = v
                .pointer("/error/message")
                .or_else(|| v.get("message"))
                .or_else(|| v.get("detail"))
                .and_then(Value::as_str)
                .unwrap_or("no error message")
                .chars()
                .take(200)
                .collect();
            return Err(ProviderError::Refused {
                provider,
                status: status.as_u16(),
                message,
            });
        }
        Ok((status.as_u16(), bytes))
    }
}

/// Log a provider's refusal of slackops' credentials (401, 403) once per call, with what the
/// operator should check; the sync counts it as a failed group (`oncall_group_syncs{kind="failed"}`).
/// Never the token or a body.
fn log_refusal(err: &ProviderError) {
    if let ProviderError::Refused {
        provider,
        status: status @ (401 | 403),
        ..
    } = err
    {
        let check = if *status == 401 {
            "the provider does not accept slackops' API token: check oncall.<provider>.token (or token_file) and that the key is still active"
        } else {
            "the provider accepted the token but refused the read: give the API key read access to schedules, on-calls and users"
        };
        warn!(
            provider = *provider,
            status = *status,
            check,
            "on-call provider refused slackops"
        );
    }
}

fn transport(provider: &'static str, e: reqwest::Error) -> ProviderError {
    if e.is_timeout() {
        ProviderError::Timeout { provider }
    } else {
        ProviderError::Transport {
            provider,
            message: e.without_url().to_string(),
        }
    }
}

/// RFC 3339 in UTC, seconds precision: what the providers take.
pub fn iso(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Milliseconds from an RFC 3339 time, if it is one.
pub fn parse_time(v: Option<&Value>) -> Option<Millis> {
    let s = v?.as_str()?;
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_through_rfc3339() {
        let ms = 1_795_000_000_000;
        let s = iso(ms);
        assert!(s.ends_with('Z'), "{s}");
        assert_eq!(parse_time(Some(&Value::String(s))), Some(ms));
        assert_eq!(parse_time(Some(&Value::Null)), None);
    }
}
