//! The Gate client: the only code that calls Spinnaker.
//!
//! It speaks to Gate exactly as Deck does (reference/spinnaker.md §1) and knows its quirks:
//! `GET /pipelines/{id}` answers 200 with an empty body when orca refused the read, a stage PATCH
//! answers 200 even for a finished stage (and with an empty body for an unknown stage), and errors
//! come as Spring error bodies whose `message` is worth quoting to a user. Authentication is one of
//! none, basic, bearer (OAuth or Gate API token) or an x509 client certificate; with
//! `impersonate`, the acting person's email is also sent as `X-SPINNAKER-USER` (header-auth mode).

use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{instrument, warn};
use url::Url;

use crate::config::{GateAuthKind, SpinnakerSettings};
use crate::metrics::SharedMetrics;

/// A failed Gate call, keyed on what the caller can do about it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GateError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("rejected: {0}")]
    BadRequest(String),
    #[error(
        "Gate refused slackops' credentials (HTTP 401); an operator must check slackops' Gate credentials (spinnaker.auth)"
    )]
    Unauthorized,
    #[error(
        "access denied (HTTP 403): {0}; an operator must check the Spinnaker permissions of slackops' Gate account (and of the acting person's email with spinnaker.auth.impersonate)"
    )]
    Forbidden(String),
    #[error("Gate answered HTTP {status}: {message}")]
    Server { status: u16, message: String },
    #[error("Gate did not answer in time")]
    Timeout,
    #[error("cannot reach Gate: {0}")]
    Unreachable(String),
    #[error(
        "Gate answered with an empty body (it hides upstream errors this way; often a permission problem)"
    )]
    Empty,
    #[error("unexpected answer from Gate: {0}")]
    Decode(String),
}

impl GateError {
    /// Worth retrying later.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            GateError::Server { .. } | GateError::Timeout | GateError::Unreachable(_)
        )
    }
    /// For a refusal (Gate would not let slackops in, or not do this): what the operator should
    /// check. `None` for other failures.
    pub fn operator_check(&self) -> Option<&'static str> {
        match self {
            GateError::Unauthorized => Some(
                "Gate does not accept slackops' credentials: check spinnaker.auth (kind, and the token, password or client certificate it names) against Gate's authentication settings",
            ),
            GateError::Forbidden(_) => Some(
                "Gate authenticated slackops but refused the operation: check the Fiat permissions of slackops' Spinnaker account on the application (with spinnaker.auth.impersonate, those of the acting person's email, and that Gate trusts X-SPINNAKER-USER)",
            ),
            GateError::Empty => Some(
                "Gate answered 200 with an empty body, which is how it hides an orca refusal: check the read permissions of slackops' Spinnaker account on the application",
            ),
            _ => None,
        }
    }

    fn outcome(&self) -> &'static str {
        match self {
            GateError::NotFound(_) => "not_found",
            GateError::BadRequest(_) => "bad_request",
            GateError::Unauthorized => "unauthorized",
            GateError::Forbidden(_) => "forbidden",
            // Gate's own rate limiter (and a proxy's) answers 429.
            GateError::Server { status: 429, .. } => "ratelimited",
            GateError::Server { status, .. } if *status < 500 => "http_4xx",
            GateError::Server { .. } => "http_5xx",
            GateError::Timeout => "timeout",
            GateError::Unreachable(_) => "unreachable",
            GateError::Empty => "empty",
            GateError::Decode(_) => "decode",
        }
    }
}

impl From<GateError> for crate::jobs::JobError {
    fn from(e: GateError) -> Self {
        if e.is_transient() {
            crate::jobs::JobError::Retry {
                error: e.into(),
                after: None,
            }
        } else {
            crate::jobs::JobError::Permanent(e.into())
        }
    }
}

/// A judgment as Deck sends it, plus context keys that record the Slack user (orca keeps unknown
/// keys in the stage context).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JudgmentPatch {
    /// `continue` or `stop`.
    pub judgment_status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub judgment_input: Option<String>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// A manual trigger (Gate v1 trigger body).
#[derive(Debug, Clone, Serialize)]
pub struct ManualTrigger {
    #[serde(rename = "type")]
    pub kind: String,
    pub user: String,
    pub parameters: serde_json::Map<String, Value>,
    pub artifacts: Vec<Value>,
    pub notifications: Vec<Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TriggerRef {
    #[serde(rename = "ref")]
    pub reference: String,
}

impl TriggerRef {
    /// The execution id from `/pipelines/<id>`.
    pub fn execution_id(&self) -> &str {
        self.reference.rsplit('/').next().unwrap_or(&self.reference)
    }
}

#[derive(Clone)]
pub struct GateClient {
    http: reqwest::Client,
    base: Url,
    settings: SpinnakerSettings,
    metrics: SharedMetrics,
}

impl std::fmt::Debug for GateClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateClient")
            .field("base", &self.base.as_str())
            .finish()
    }
}

impl GateClient {
    /// Builds its own HTTP client: an x509 identity belongs to Gate's client only.
    pub fn new(settings: &SpinnakerSettings, metrics: SharedMetrics) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.request_timeout_ms))
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("slackops/", env!("CARGO_PKG_VERSION")));
        let auth = &settings.auth;
        if auth.kind == GateAuthKind::X509 {
            let pem = format!(
                "{}\n{}\n",
                auth.client_cert.expose(),
                auth.client_key.expose()
            );
            let id = reqwest::Identity::from_pem(pem.as_bytes()).map_err(|e| {
                anyhow::anyhow!("spinnaker.auth.client_cert/client_key are not a valid PEM certificate and key: {e}")
            })?;
            builder = builder.identity(id);
        }
        if !auth.ca_cert.is_empty() {
            for cert in reqwest::Certificate::from_pem_bundle(auth.ca_cert.expose().as_bytes())
                .map_err(|e| {
                    anyhow::anyhow!("spinnaker.auth.ca_cert is not a valid PEM bundle: {e}")
                })?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let mut base = settings.gate_url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Ok(Self {
            http: builder.build()?,
            base,
            settings: settings.clone(),
            metrics,
        })
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        acting_email: Option<&str>,
    ) -> Result<RequestBuilder, GateError> {
        let url = self
            .base
            .join(path.trim_start_matches('/'))
            .map_err(|e| GateError::Decode(format!("bad path {path}: {e}")))?;
        let mut req = self
            .http
            .request(method, url)
            .header("accept", "application/json");
        let auth = &self.settings.auth;
        req = match auth.kind {
            GateAuthKind::Basic => req.basic_auth(
                auth.username.clone().unwrap_or_default(),
                Some(auth.password.expose()),
            ),
            GateAuthKind::Bearer => req.bearer_auth(auth.token.expose()),
            GateAuthKind::None | GateAuthKind::X509 => req,
        };
        if auth.impersonate
            && let Some(email) = acting_email
        {
            req = req.header("X-SPINNAKER-USER", email);
        }
        Ok(req)
    }

    /// One call, counted and (when refused) logged.
    async fn send(
        &self,
        op: &'static str,
        req: RequestBuilder,
    ) -> Result<(StatusCode, bytes::Bytes), GateError> {
        let (path, result) = self.exchange(req).await;
        self.record(op, &path, &result);
        result
    }

    /// One call: its path (for the log), and the body of a 2xx answer or the error keyed on
    /// the status.
    async fn exchange(
        &self,
        req: RequestBuilder,
    ) -> (String, Result<(StatusCode, bytes::Bytes), GateError>) {
        let req = match req.build() {
            Ok(r) => r,
            Err(e) => {
                return (
                    String::new(),
                    Err(GateError::Decode(e.without_url().to_string())),
                );
            }
        };
        let path = req.url().path().to_string();
        (path, self.execute(req).await)
    }

    async fn execute(
        &self,
        req: reqwest::Request,
    ) -> Result<(StatusCode, bytes::Bytes), GateError> {
        let resp = self.http.execute(req).await.map_err(|e| {
            if e.is_timeout() {
                GateError::Timeout
            } else {
                GateError::Unreachable(e.without_url().to_string())
            }
        })?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| {
            if e.is_timeout() {
                GateError::Timeout
            } else {
                GateError::Unreachable(e.without_url().to_string())
            }
        })?;
        if status.is_success() {
            return Ok((status, body));
        }
        let message = spring_message(&body)
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
        Err(match status.as_u16() {
            400 | 422 => GateError::BadRequest(message),
            401 => GateError::Unauthorized,
            403 => GateError::Forbidden(message),
            404 => GateError::NotFound(message),
            s => GateError::Server { status: s, message },
        })
    }

    /// Count every call by outcome, and log every refusal (once, here, whoever called) with what
    /// the operator should check. Never the credentials, the request or the response body.
    fn record<T>(&self, op: &'static str, path: &str, result: &Result<T, GateError>) {
        self.metrics.gate_call(
            op,
            match result {
                Ok(_) => "ok",
                Err(e) => e.outcome(),
            },
        );
        if let Err(e) = result
            && let Some(check) = e.operator_check()
        {
            warn!(
                gate.operation = op,
                gate.path = path,
                gate.outcome = e.outcome(),
                auth.kind = ?self.settings.auth.kind,
                check,
                "Gate refused slackops"
            );
        }
    }

    async fn json<T: DeserializeOwned>(
        &self,
        op: &'static str,
        req: RequestBuilder,
    ) -> Result<T, GateError> {
        let (path, result) = self.exchange(req).await;
        let result = match result {
            // An empty 200 is how Gate hides an orca refusal.
            Ok((_, body)) if body.iter().all(u8::is_ascii_whitespace) => Err(GateError::Empty),
            Ok((_, body)) => {
                serde_json::from_slice(&body).map_err(|e| GateError::Decode(e.to_string()))
            }
            Err(e) => Err(e),
        };
        self.record(op, &path, &result);
        result
    }

    /// `GET /pipelines/{id}`: the execution.
    #[instrument(name = "gate.get_execution", skip(self))]
    pub async fn execution(&self, execution_id: &str) -> Result<Value, GateError> {
        let req = self.request(
            Method::GET,
            &format!("pipelines/{}", seg(execution_id)),
            None,
        )?;
        self.json("get_execution", req).await
    }

    /// `PATCH /pipelines/{id}/stages/{stageId}`: judge. Returns the execution when Gate sends it;
    /// `None` for Gate's empty 200 (unknown stage). The answer says nothing about the outcome:
    /// callers must read the execution again until the stage leaves RUNNING.
    #[instrument(name = "gate.patch_stage", skip(self, patch, acting_email))]
    pub async fn patch_stage(
        &self,
        execution_id: &str,
        stage_id: &str,
        patch: &JudgmentPatch,
        acting_email: Option<&str>,
    ) -> Result<Option<Value>, GateError> {
        let req = self
            .request(
                Method::PATCH,
                &format!("pipelines/{}/stages/{}", seg(execution_id), seg(stage_id)),
                acting_email,
            )?
            .json(patch);
        let (_, body) = self.send("patch_stage", req).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        Ok(serde_json::from_slice(&body).ok())
    }

    /// `POST /pipelines/{app}/{pipeline}` (trigger v1, synchronous): the new execution's reference.
    #[instrument(name = "gate.trigger", skip(self, trigger, acting_email))]
    pub async fn trigger(
        &self,
        application: &str,
        pipeline: &str,
        trigger: &ManualTrigger,
        acting_email: Option<&str>,
    ) -> Result<TriggerRef, GateError> {
        let req = self
            .request(
                Method::POST,
                &format!("pipelines/{}/{}", seg(application), seg(pipeline)),
                acting_email,
            )?
            .json(trigger);
        self.json("trigger", req).await
    }

    /// `PUT /pipelines/{id}/cancel?reason=…`
    #[instrument(name = "gate.cancel", skip(self, reason, acting_email))]
    pub async fn cancel(
        &self,
        execution_id: &str,
        reason: &str,
        acting_email: Option<&str>,
    ) -> Result<(), GateError> {
        let req = self
            .request(
                Method::PUT,
                &format!("pipelines/{}/cancel", seg(execution_id)),
                acting_email,
            )?
            .query(&[("reason", reason)]);
        self.send("cancel", req).await.map(|_| ())
    }

    /// `GET /applications/{app}/pipelineConfigs/{name}`
    pub async fn pipeline_config(&self, application: &str, name: &str) -> Result<Value, GateError> {
        let req = self.request(
            Method::GET,
            &format!(
                "applications/{}/pipelineConfigs/{}",
                seg(application),
                seg(name)
            ),
            None,
        )?;
        self.json("pipeline_config", req).await
    }

    /// `GET /applications/{app}/pipelineConfigs`
    pub async fn pipeline_configs(&self, application: &str) -> Result<Vec<Value>, GateError> {
        let req = self.request(
            Method::GET,
            &format!("applications/{}/pipelineConfigs", seg(application)),
            None,
        )?;
        self.json("pipeline_configs", req).await
    }

    /// `GET /applications/{app}/pipelines?statuses=…&limit=…` (`limit` counts per pipeline config).
    pub async fn executions(
        &self,
        application: &str,
        statuses: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Vec<Value>, GateError> {
        let mut req = self.request(
            Method::GET,
            &format!("applications/{}/pipelines", seg(application)),
            None,
        )?;
        if let Some(s) = statuses {
            req = req.query(&[("statuses", s)]);
        }
        if let Some(l) = limit {
            req = req.query(&[("limit", l.to_string())]);
        }
        self.json("list_executions", req).await
    }

    /// `GET /applications/{app}`: whether the application exists (and its attributes).
    pub async fn application(&self, application: &str) -> Result<Value, GateError> {
        let req = self.request(
            Method::GET,
            &format!("applications/{}", seg(application)),
            None,
        )?;
        self.json("get_application", req).await
    }

    /// `GET /auth/user`: who Gate thinks slackops is (for `check-config --probe`).
    pub async fn whoami(&self) -> Result<Value, GateError> {
        let req = self.request(Method::GET, "auth/user", None)?;
        self.json("whoami", req).await
    }
}

/// One URL path segment, percent-encoded (ids and names come from users).
fn seg(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// The `message` of a Spring error body, if any.
fn spring_message(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get("message")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .or_else(|| v.get("error").and_then(Value::as_str))
        .map(|m| m.chars().take(500).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(seg("deploy prod/x"), "deploy%20prod%2Fx");
        assert_eq!(seg("01J6EXEC"), "01J6EXEC");
    }

    #[test]
    fn spring_messages_are_quoted() {
        assert_eq!(
            spring_message(br#"{"status":400,"error":"Bad Request","message":"Required parameter env is missing"}"#).as_deref(),
            Some("Required parameter env is missing")
        );
        assert_eq!(spring_message(b"<html>").as_deref(), None);
    }

    #[test]
    fn judgment_patch_serializes_like_deck_plus_context() {
        let mut extra = serde_json::Map::new();
        extra.insert("slackUser".into(), "U1".into());
        let p = JudgmentPatch {
            judgment_status: "continue".into(),
            judgment_input: Some("rollback".into()),
            extra,
        };
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::json!({"judgmentStatus":"continue","judgmentInput":"rollback","slackUser":"U1"})
        );
    }
}
