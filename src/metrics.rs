//! Prometheus metrics, served as text at `GET /metrics`.
//!
//! The registry lives in [`AppState`](crate::state::AppState), not in a global, so several service
//! instances (tests, benchmarks) keep separate counts. Label values come from small closed sets
//! (route templates, reason codes, Slack method names); never put user input or ids in a label.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobState {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    pub kind: String,
}

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
    pub jobs_depth: Family<JobState, Gauge>,
    pub jobs_attempt_failures: Family<JobKind, Counter>,
    pub jobs_exhausted: Family<JobKind, Counter>,
    pub jobs_succeeded: Family<JobKind, Counter>,
    pub gate_calls: Family<MethodOutcome, Counter>,
    pub echo_events: Family<Kind, Counter>,
    pub oncall_groups: Family<Kind, Counter>,
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
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    ])
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("slackops");
        let http_requests = Family::<RouteStatus, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route template and status",
            http_requests.clone(),
        );
        let http_duration = Family::<Route, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route template",
            http_duration.clone(),
        );
        let signature_failures = Family::<Reason, Counter>::default();
        registry.register(
            "slack_signature_failures",
            "Slack requests refused by signature verification, by reason",
            signature_failures.clone(),
        );
        let slack_api_calls = Family::<MethodOutcome, Counter>::default();
        registry.register(
            "slack_api_calls",
            "Slack Web API calls by method and outcome (ok, error code, ratelimited, http_5xx, transport)",
            slack_api_calls.clone(),
        );
        let slack_dispatch = Family::<Kind, Counter>::default();
        registry.register(
            "slack_dispatched",
            "Verified Slack requests dispatched, by kind (command, block_actions, view_submission, event, unhandled)",
            slack_dispatch.clone(),
        );
        let slack_late_acks = Counter::default();
        registry.register(
            "slack_handler_deadline_exceeded",
            "Handlers that missed the ack deadline and continued in the background",
            slack_late_acks.clone(),
        );
        let slack_duplicate_events = Counter::default();
        registry.register(
            "slack_duplicate_events",
            "Events API deliveries dropped as duplicates of an already processed event_id",
            slack_duplicate_events.clone(),
        );
        let jobs_depth = Family::<JobState, Gauge>::default();
        registry.register(
            "jobs",
            "Jobs in the queue by state (pending, running, failed), sampled at scrape",
            jobs_depth.clone(),
        );
        let jobs_attempt_failures = Family::<JobKind, Counter>::default();
        registry.register(
            "job_attempt_failures",
            "Job attempts that failed and were rescheduled or exhausted",
            jobs_attempt_failures.clone(),
        );
        let jobs_exhausted = Family::<JobKind, Counter>::default();
        registry.register(
            "jobs_exhausted",
            "Jobs that exhausted their retries and were kept as failed",
            jobs_exhausted.clone(),
        );
        let jobs_succeeded = Family::<JobKind, Counter>::default();
        registry.register("jobs_succeeded", "Jobs completed", jobs_succeeded.clone());
        let gate_calls = Family::<MethodOutcome, Counter>::default();
        registry.register(
            "gate_calls",
            "Spinnaker Gate calls by operation and outcome",
            gate_calls.clone(),
        );
        let echo_events = Family::<Kind, Counter>::default();
        registry.register(
            "echo_events",
            "Spinnaker echo events received, by handling (accepted, ignored, rejected)",
            echo_events.clone(),
        );
        let oncall_groups = Family::<Kind, Counter>::default();
        registry.register(
            "oncall_group_syncs",
            "On-call user-group syncs by outcome (updated, unchanged, kept_empty, failed)",
            oncall_groups.clone(),
        );
        let (socket_connections, socket_envelopes, socket_reconnects) =
            register_socket(&mut registry);
        Self {
            registry,
            http_requests,
            http_duration,
            signature_failures,
            slack_api_calls,
            slack_dispatch,
            slack_late_acks,
            slack_duplicate_events,
            jobs_depth,
            jobs_attempt_failures,
            jobs_exhausted,
            jobs_succeeded,
            gate_calls,
            echo_events,
            oncall_groups,
            socket_connections,
            socket_envelopes,
            socket_reconnects,
        }
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

    pub fn echo_event(&self, kind: &str) {
        self.echo_events
            .get_or_create(&Kind {
                kind: kind.to_string(),
            })
            .inc();
    }
}

/// Socket Mode's metrics, registered in every mode so dashboards and alerts can query them (they
/// stay at zero over HTTP). The envelope types and reconnect reasons are pre-created at zero.
fn register_socket(
    registry: &mut Registry,
) -> (
    Gauge,
    Family<EnvelopeType, Counter>,
    Family<Reason, Counter>,
) {
    let connections = Gauge::default();
    registry.register(
        "socket_connections",
        "Socket Mode connections open and greeted by Slack's hello",
        connections.clone(),
    );
    let envelopes = Family::<EnvelopeType, Counter>::default();
    registry.register(
        "socket_envelopes",
        "Socket Mode envelopes received, by type (events_api, interactive, slash_commands, other)",
        envelopes.clone(),
    );
    for t in ["events_api", "interactive", "slash_commands"] {
        let _ = envelopes.get_or_create(&EnvelopeType { r#type: t.into() });
    }
    let reconnects = Family::<Reason, Counter>::default();
    registry.register(
        "socket_reconnects",
        "Socket Mode connection attempts after the first, by reason: warning, refresh_requested, closed, dropped, stale, disconnect, too_many_websockets, link_disabled, open_failed, auth_failed, handshake_failed, hello_timeout",
        reconnects.clone(),
    );
    for r in ["warning", "refresh_requested", "dropped", "stale"] {
        let _ = reconnects.get_or_create(&Reason { reason: r.into() });
    }
    (connections, envelopes, reconnects)
}

pub type SharedMetrics = Arc<Metrics>;
