//! Black-box tests: the real service on port 0 against local fake Slack and Gate servers
//! (tests/support), on SQLite and, when `SLACKOPS_TEST_POSTGRES_URL` is set, PostgreSQL.
//! One test binary, so the service is linked once.

#[path = "../support/mod.rs"]
mod support;

mod alerts;
mod announcements;
mod approvals_command;
mod approvals_faults;
mod approvals_flow;
mod approvals_home;
mod approvals_quorum;
mod approvals_support;
mod approvals_timers;
mod config_cli;
mod escaping;
mod grafana;
mod helpers;
mod jobs;
mod maintenance;
mod monitoring;
mod oncall;
mod oncall_handoffs;
mod oncall_reminders;
mod oncall_rotation;
mod oncall_topics;
mod openapi;
mod ops;
mod pager;
mod pipelines;
mod postmortems;
mod slack_client;
mod slack_layer;
mod socket_mode;
mod status;
mod status_subscriptions;
mod subscriptions;
