//! Prometheus metrics, served as text at `GET /metrics`.
//!
//! The registry lives in [`AppState`](crate::state::AppState), not in a global, so several service
//! instances (tests, benchmarks) keep separate counts. Label values come from small closed sets
//! (route templates, reason codes, Slack method names); never put user input or ids in a label.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatus {
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Route {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodOutcome {
    pub method: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobKind {
    pub kind: String,
}

/// A `state` label: of a job in the queue, or of a judgment.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Group {
    pub group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderReason {
    pub provider: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderAction {
    pub provider: String,
    pub action: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindResult {
    pub kind: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Build {
    version: String,
}

/// A gauge of seconds with a fraction.
pub type Seconds = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EnvelopeType {
    pub r#type: String,
}

/// Every metric the service exports.
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<RouteStatus, Counter>,
    pub http_duration: Family<Route, Histogram>,
    pub signature_failures: Family<Reason, Counter>,
    pub slack_api_calls: Family<MethodOutcome, Counter>,
    pub slack_dispatch: Family<Kind, Counter>,
    pub slack_late_acks: Counter,
    pub slack_duplicate_events: Counter,
    pub slack_duplicate_interactions: Counter,
    pub jobs_depth: Family<StateLabel, Gauge>,
    pub jobs_attempt_failures: Family<JobKind, Counter>,
    pub jobs_exhausted: Family<JobKind, Counter>,
    pub jobs_succeeded: Family<JobKind, Counter>,
    pub gate_calls: Family<MethodOutcome, Counter>,
    pub echo_events: Family<Kind, Counter>,
    pub oncall_groups: Family<Kind, Counter>,
    /// Pager webhooks refused before their body was read, by provider and reason.
    pub pager_refused: Family<ProviderReason, Counter>,
    /// Authenticated pager webhooks, by provider and what became of them.
    pub pager_events: Family<ProviderReason, Counter>,
    /// Acknowledge and resolve clicks carried out, by provider, action and outcome.
    pub pager_actions: Family<ProviderAction, Counter>,
    /// Status page emails by kind (`confirm`, `notice`) and result.
    pub status_emails: Family<KindResult, Counter>,
    /// Status page subscribe form requests and link uses, by result.
    pub status_subscribe_requests: Family<ResultLabel, Counter>,
    // Sampled when `/metrics` is scraped (see `http::metrics`):
    pub ready: Gauge,
    pub jobs_due: Gauge,
    pub jobs_oldest_due_age: Seconds,
    pub judgments: Family<StateLabel, Gauge>,
    pub oncall_last_sync: Family<Group, Gauge>,
    pub oncall_interval: Gauge,
    pub status_snapshot_age: Seconds,
    /// Socket Mode connections that received `hello` and are open (draining ones included).
    pub socket_connections: Gauge,
    pub socket_envelopes: Family<EnvelopeType, Counter>,
    pub socket_reconnects: Family<Reason, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 3.0, 5.0,
    ])
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Self {
            registry: Registry::with_prefix("slackops"),
            http_requests: Family::<RouteStatus, Counter>::default(),
            http_duration: Family::<Route, Histogram>::new_with_constructor(
                latency_histogram as fn() -> Histogram,
            ),
            signature_failures: Family::<Reason, Counter>::default(),
            slack_api_calls: Family::<MethodOutcome, Counter>::default(),
            slack_dispatch: Family::<Kind, Counter>::default(),
            slack_late_acks: Counter::default(),
            slack_duplicate_events: Counter::default(),
            slack_duplicate_interactions: Counter::default(),
            jobs_depth: Family::<StateLabel, Gauge>::default(),
            jobs_attempt_failures: Family::<JobKind, Counter>::default(),
            jobs_exhausted: Family::<JobKind, Counter>::default(),
            jobs_succeeded: Family::<JobKind, Counter>::default(),
            gate_calls: Family::<MethodOutcome, Counter>::default(),
            pager_refused: Family::<ProviderReason, Counter>::default(),
            pager_events: Family::<ProviderReason, Counter>::default(),
            pager_actions: Family::<ProviderAction, Counter>::default(),
            status_emails: Family::<KindResult, Counter>::default(),
            status_subscribe_requests: Family::<ResultLabel, Counter>::default(),
            echo_events: Family::<Kind, Counter>::default(),
            oncall_groups: Family::<Kind, Counter>::default(),
            ready: Gauge::default(),
            jobs_due: Gauge::default(),
            jobs_oldest_due_age: Seconds::default(),
            judgments: Family::<StateLabel, Gauge>::default(),
            oncall_last_sync: Family::<Group, Gauge>::default(),
            oncall_interval: Gauge::default(),
            status_snapshot_age: Seconds::default(),
            socket_connections: Gauge::default(),
            socket_envelopes: Family::<EnvelopeType, Counter>::default(),
            socket_reconnects: Family::<Reason, Counter>::default(),
        };
        m.register_request_metrics();
        m.register_work_metrics();
        m.register_sampled_metrics();
        m.register_socket_metrics();
        m
    }

    /// HTTP requests, Slack signature checks and dispatch.
    fn register_request_metrics(&mut self) {
        let r = &mut self.registry;
        r.register(
            "http_requests",
            "HTTP requests by route template and status",
            self.http_requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "HTTP request latency by route template",
            self.http_duration.clone(),
        );
        r.register(
            "slack_signature_failures",
            "Slack requests refused by signature verification, by reason",
            self.signature_failures.clone(),
        );
        r.register(
            "slack_api_calls",
            "Slack Web API calls by method and outcome (ok, error code, ratelimited, http_5xx, transport)",
            self.slack_api_calls.clone(),
        );
        r.register(
            "slack_dispatched",
            "Verified Slack requests dispatched, by kind (command, block_actions, view_submission, event, unhandled)",
            self.slack_dispatch.clone(),
        );
        r.register(
            "slack_handler_deadline_exceeded",
            "Handlers that missed the ack deadline and continued in the background",
            self.slack_late_acks.clone(),
        );
        r.register(
            "slack_duplicate_events",
            "Events API deliveries dropped as duplicates of an already processed event_id",
            self.slack_duplicate_events.clone(),
        );
        r.register(
            "slack_duplicate_interactions",
            "Modal submissions and clicks answered without acting: a repeat of one already acted on",
            self.slack_duplicate_interactions.clone(),
        );
    }

    /// The job queue, Gate, echo and the on-call sync.
    fn register_work_metrics(&mut self) {
        let r = &mut self.registry;
        r.register(
            "jobs",
            "Jobs in the queue by state (pending, running, failed), sampled at scrape",
            self.jobs_depth.clone(),
        );
        r.register(
            "job_attempt_failures",
            "Job attempts that failed and were rescheduled or exhausted",
            self.jobs_attempt_failures.clone(),
        );
        r.register(
            "jobs_exhausted",
            "Jobs that exhausted their retries and were kept as failed",
            self.jobs_exhausted.clone(),
        );
        r.register(
            "jobs_succeeded",
            "Jobs completed",
            self.jobs_succeeded.clone(),
        );
        r.register(
            "gate_calls",
            "Spinnaker Gate calls by operation and outcome",
            self.gate_calls.clone(),
        );
        r.register(
            "echo_events",
            "Spinnaker echo events received, by handling (accepted, ignored, rejected)",
            self.echo_events.clone(),
        );
        r.register(
            "oncall_group_syncs",
            "On-call user-group syncs by outcome (updated, unchanged, kept_empty, failed)",
            self.oncall_groups.clone(),
        );
        r.register(
            "pager_webhook_refusals",
            "Pager webhooks refused before their body was read, by provider and reason (disabled, missing, wrong)",
            self.pager_refused.clone(),
        );
        r.register(
            "pager_webhook_events",
            "Authenticated pager webhooks by provider and outcome (posted, updated, unchanged, duplicate, unrouted, ignored, malformed)",
            self.pager_events.clone(),
        );
        r.register(
            "pager_actions",
            "Acknowledge and resolve clicks carried out, by provider, action and outcome (done, not_done)",
            self.pager_actions.clone(),
        );
        r.register(
            "status_emails",
            "Status page emails by kind (confirm, notice) and result (sent, limited, skipped, retried, failed)",
            self.status_emails.clone(),
        );
        r.register(
            "status_subscribe_requests",
            "Status page subscription requests by result (accepted, invalid, forbidden, limited, unavailable, confirmed, unsubscribed)",
            self.status_subscribe_requests.clone(),
        );
    }

    /// Gauges sampled when Prometheus scrapes (readiness, the due backlog, judgments, on-call
    /// sync times, the status snapshot's age) and the build's version.
    fn register_sampled_metrics(&mut self) {
        let r = &mut self.registry;
        r.register(
            "ready",
            "1 when this replica is ready (the database answers and is migrated), else 0; sampled at scrape",
            self.ready.clone(),
        );
        r.register(
            "jobs_due",
            "Pending jobs whose time has come and that no worker has claimed yet, sampled at scrape",
            self.jobs_due.clone(),
        );
        r.register(
            "jobs_oldest_due_age_seconds",
            "How long the oldest due pending job has waited past its run time (0 when none), sampled at scrape",
            self.jobs_oldest_due_age.clone(),
        );
        r.register(
            "judgments",
            "Manual Judgments in the database by state, sampled at scrape",
            self.judgments.clone(),
        );
        r.register(
            "oncall_group_last_sync_timestamp_seconds",
            "When each configured on-call group was last synced successfully (Unix seconds; 0 = never), from the database, sampled at scrape",
            self.oncall_last_sync.clone(),
        );
        r.register(
            "oncall_sync_interval_seconds",
            "oncall.interval_secs while the periodic on-call sync is on (groups configured), else 0",
            self.oncall_interval.clone(),
        );
        r.register(
            "status_snapshot_age_seconds",
            "Age of the status page snapshot this replica serves (since start when none has loaded), sampled at scrape",
            self.status_snapshot_age.clone(),
        );
        r.register(
            "build",
            "The running slackops version",
            Info::new(Build {
                version: env!("CARGO_PKG_VERSION").to_string(),
            }),
        );
    }

    /// Export labelled counters at 0 before their first event, so a rule's `increase()` sees the
    /// first failure of a kind (a series that appears at 1 has no earlier sample to compare with).
    pub fn preset(&self, presets: &LabelPresets<'_>) {
        for kind in &presets.job_kinds {
            let labels = JobKind {
                kind: kind.to_string(),
            };
            let _ = self.jobs_succeeded.get_or_create(&labels);
            let _ = self.jobs_attempt_failures.get_or_create(&labels);
            let _ = self.jobs_exhausted.get_or_create(&labels);
        }
        for reason in presets.signature_failures {
            let _ = self.signature_failures.get_or_create(&Reason {
                reason: reason.to_string(),
            });
        }
        for outcome in presets.oncall_outcomes {
            let _ = self.oncall_groups.get_or_create(&Kind {
                kind: outcome.to_string(),
            });
        }
        for state in presets.judgment_states {
            let _ = self.judgments.get_or_create(&StateLabel {
                state: state.to_string(),
            });
        }
        for kind in ["confirm", "notice"] {
            for result in ["sent", "limited", "skipped", "retried", "failed"] {
                let _ = self.status_emails.get_or_create(&KindResult {
                    kind: kind.into(),
                    result: result.into(),
                });
            }
        }
    }

    /// Socket Mode: connections up, envelopes by type, reconnects by reason. Registered in
    /// every mode (zero over HTTP) so dashboards and alert rules can always query them.
    fn register_socket_metrics(&mut self) {
        let r = &mut self.registry;
        r.register(
            "socket_connections",
            "Socket Mode connections open and greeted by Slack's hello",
            self.socket_connections.clone(),
        );
        r.register(
            "socket_envelopes",
            "Socket Mode envelopes received, by type (events_api, interactive, slash_commands, other)",
            self.socket_envelopes.clone(),
        );
        for t in ["events_api", "interactive", "slash_commands"] {
            let _ = self
                .socket_envelopes
                .get_or_create(&EnvelopeType { r#type: t.into() });
        }
        r.register(
            "socket_reconnects",
            "Socket Mode connection attempts after the first, by reason: warning, refresh_requested, closed, dropped, stale, disconnect, too_many_websockets, link_disabled, open_failed, auth_failed, handshake_failed, hello_timeout",
            self.socket_reconnects.clone(),
        );
        for reason in ["warning", "refresh_requested", "dropped", "stale"] {
            let _ = self.socket_reconnects.get_or_create(&Reason {
                reason: reason.into(),
            });
        }
    }

    pub fn socket_envelope(&self, kind: &str) {
        self.socket_envelopes
            .get_or_create(&EnvelopeType {
                r#type: kind.to_string(),
            })
            .inc();
    }

    pub fn socket_reconnect(&self, reason: &str) {
        self.socket_reconnects
            .get_or_create(&Reason {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn signature_failure(&self, reason: &str) {
        self.signature_failures
            .get_or_create(&Reason {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn slack_call(&self, method: &str, outcome: &str) {
        self.slack_api_calls
            .get_or_create(&MethodOutcome {
                method: method.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn gate_call(&self, op: &str, outcome: &str) {
        self.gate_calls
            .get_or_create(&MethodOutcome {
                method: op.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn dispatched(&self, kind: &str) {
        self.slack_dispatch
            .get_or_create(&Kind {
                kind: kind.to_string(),
            })
            .inc();
    }

    pub fn oncall_group(&self, outcome: &str) {
        self.oncall_groups
            .get_or_create(&Kind {
                kind: outcome.to_string(),
            })
            .inc();
    }

    pub fn pager_refused(&self, provider: &str, reason: &str) {
        self.pager_refused
            .get_or_create(&ProviderReason {
                provider: provider.into(),
                reason: reason.into(),
            })
            .inc();
    }

    pub fn pager_event(&self, provider: &str, outcome: &str) {
        self.pager_events
            .get_or_create(&ProviderReason {
                provider: provider.into(),
                reason: outcome.into(),
            })
            .inc();
    }

    pub fn pager_action(&self, provider: &str, action: &str, outcome: &str) {
        self.pager_actions
            .get_or_create(&ProviderAction {
                provider: provider.into(),
                action: action.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn status_email(&self, kind: &str, result: &str) {
        self.status_emails
            .get_or_create(&KindResult {
                kind: kind.into(),
                result: result.into(),
            })
            .inc();
    }

    pub fn status_subscribe_request(&self, result: &str) {
        self.status_subscribe_requests
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    pub fn echo_event(&self, kind: &str) {
        self.echo_events
            .get_or_create(&Kind {
                kind: kind.to_string(),
            })
            .inc();
    }
}

/// The closed label sets exported at 0 from the start (see [`Metrics::preset`]).
#[derive(Debug, Default)]
pub struct LabelPresets<'a> {
    pub job_kinds: Vec<&'a str>,
    pub signature_failures: &'a [&'a str],
    pub oncall_outcomes: &'a [&'a str],
    pub judgment_states: &'a [&'a str],
}

pub type SharedMetrics = Arc<Metrics>;
