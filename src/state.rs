//! The one shared state: cheap handles to everything a handler or job needs.
//!
//! Built once at start-up by [`crate::startup`]; cloning it clones an `Arc`. Caches live here, not
//! in statics, so each service instance (and each test) has its own.
//!
//! It sits below the interaction layer and the features (docs/architecture.md): it must never
//! import a feature's handlers or the registry, only the clients, the store, the job queue and
//! the features' long-lived parts kept in files of their own (`oncall::clients`,
//! `status::cache`, `status::mailer`).

use std::any::Any;
use std::sync::Arc;

use tokio_util::task::TaskTracker;

use crate::authz::Authz;
use crate::clock::SharedClock;
use crate::config::Settings;
use crate::jobs::JobQueue;
use crate::metrics::{Metrics, SharedMetrics};
use crate::slack::api::SlackApi;
use crate::slack::socket::health::SocketHealth;
use crate::slack::verify::SignatureVerifier;
use crate::spinnaker::gate::GateClient;
use crate::store::Db;

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Arc<Settings>,
    db: Db,
    jobs: JobQueue,
    slack: SlackApi,
    gate: GateClient,
    authz: Authz,
    verifier: SignatureVerifier,
    clock: SharedClock,
    metrics: SharedMetrics,
    /// The dispatch table, held without naming its type: see [`StateParts::registry`].
    registry: Arc<dyn Any + Send + Sync>,
    tasks: TaskTracker,
    http: reqwest::Client,
    /// The status page's snapshot (per replica; see `crate::status`).
    status: Arc<crate::status::cache::StatusCache>,
    /// The status page's SMTP client (see `crate::status::mailer`).
    mailer: crate::status::mailer::Mailer,
    oncall: Arc<crate::oncall::clients::Oncall>,
    /// Socket Mode connections up (always ready in HTTP mode).
    socket: SocketHealth,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// Everything [`AppState::new`] needs; assembled by `startup`.
pub struct StateParts {
    pub settings: Settings,
    pub db: Db,
    pub clock: SharedClock,
    /// The dispatch table, a [`crate::registry::Registry`]. The state holds it without naming its
    /// type: the registry's handler traits take an `AppState`, so naming the registry here would
    /// make this file and `registry.rs` import each other. `AppState::registry` (defined in
    /// `registry.rs`, next to the type) hands it back typed.
    pub registry: Arc<dyn Any + Send + Sync>,
    pub http: reqwest::Client,
}

impl AppState {
    pub fn new(parts: StateParts) -> anyhow::Result<Self> {
        let metrics: SharedMetrics = Arc::new(Metrics::new());
        let settings = Arc::new(parts.settings);
        let slack = SlackApi::new(&settings.slack, parts.http.clone(), metrics.clone());
        let gate = GateClient::new(&settings.spinnaker, metrics.clone())?;
        let verifier =
            SignatureVerifier::new(settings.slack.signing_secret.clone(), parts.clock.clone());
        let jobs = JobQueue::new(parts.db.clone(), parts.clock.clone(), settings.jobs.clone());
        let authz = Authz::new(
            slack.clone(),
            std::time::Duration::from_secs(settings.approvals.membership_cache_secs),
        );
        let oncall = crate::oncall::clients::Oncall::new(&settings.oncall, parts.http.clone());
        let socket = SocketHealth::new(
            settings.slack.mode == crate::config::SlackMode::Socket,
            metrics.socket_connections.clone(),
        );
        let mailer = crate::status::mailer::Mailer::new(&settings.status);
        Ok(Self {
            inner: Arc::new(Inner {
                settings,
                db: parts.db,
                jobs,
                slack,
                gate,
                authz,
                verifier,
                clock: parts.clock,
                metrics,
                registry: parts.registry,
                tasks: TaskTracker::new(),
                http: parts.http,
                status: Arc::new(crate::status::cache::StatusCache::new()),
                mailer,
                oncall,
                socket,
            }),
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }
    pub fn db(&self) -> &Db {
        &self.inner.db
    }
    pub fn jobs(&self) -> &JobQueue {
        &self.inner.jobs
    }
    pub fn slack(&self) -> &SlackApi {
        &self.inner.slack
    }
    pub fn gate(&self) -> &GateClient {
        &self.inner.gate
    }
    /// Who may act (shared by every feature).
    pub fn authz(&self) -> &Authz {
        &self.inner.authz
    }
    pub fn verifier(&self) -> &SignatureVerifier {
        &self.inner.verifier
    }
    pub fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }
    pub fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }
    /// The dispatch table, untyped; [`AppState::registry`] is the typed view.
    pub(crate) fn registry_untyped(&self) -> &(dyn Any + Send + Sync) {
        &*self.inner.registry
    }
    /// Background tasks (handlers past their ack deadline, jobs) that shutdown waits for.
    pub fn tasks(&self) -> &TaskTracker {
        &self.inner.tasks
    }
    /// The shared outbound HTTP client (connection pool).
    pub fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }
    /// The status page's in-memory snapshot.
    pub fn status(&self) -> &crate::status::cache::StatusCache {
        &self.inner.status
    }
    /// The status page's SMTP client.
    pub fn mailer(&self) -> &crate::status::mailer::Mailer {
        &self.inner.mailer
    }

    /// Socket Mode's connection count, for readiness.
    pub fn socket_health(&self) -> &SocketHealth {
        &self.inner.socket
    }

    /// The on-call feature's provider clients and lookup cache.
    pub fn oncall(&self) -> &Arc<crate::oncall::clients::Oncall> {
        &self.inner.oncall
    }

    /// Record a decision in the audit log. A failure is logged, not returned: the decision has
    /// been taken and the caller's answer must not depend on the log.
    pub async fn audit(
        &self,
        feature: &str,
        action: &str,
        actor: &str,
        subject: &str,
        outcome: &str,
        detail: serde_json::Value,
    ) {
        let entry = crate::store::audit::AuditEntry {
            feature,
            action,
            actor,
            subject,
            outcome,
            detail: Some(detail),
        };
        if let Err(e) = self.db().audit(self.now_ms(), entry).await {
            tracing::warn!(error = %crate::store::short_db_error(&e), "writing the audit log failed");
        }
    }

    /// Claim an Events API `event_id`. False when it was already processed.
    pub async fn claim_event(&self, event_id: &str) -> Result<bool, sqlx::Error> {
        let res = sqlx::query(
            "INSERT INTO slack_events_seen (event_id, seen_at) VALUES ($1, $2)
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(event_id)
        .bind(self.now_ms())
        .execute(self.db().pool())
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Forget a claimed event whose handler failed, so Slack's retry runs it.
    pub async fn forget_event(&self, event_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM slack_events_seen WHERE event_id = $1")
            .bind(event_id)
            .execute(self.db().pool())
            .await?;
        Ok(())
    }
}
