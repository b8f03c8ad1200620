//! slackops: Spinnaker operations from Slack.
//!
//! A small service a platform team runs next to Spinnaker so people decide from Slack: approve or
//! reject Manual Judgments, start and cancel pipelines, keep on-call user groups current, announce
//! outages. Slack stays true to what Spinnaker says. See `DESIGN.md` in the shared docs for the
//! shape:
//!
//! - [`slack`]: the interaction layer (verify, parse, dispatch, ack; the Web API client), over
//!   HTTP or Socket Mode;
//! - [`registry`] and [`features`]: where features plug their handlers in;
//! - [`approvals`] and [`pipelines`]: Manual Judgments and the pipeline slash command;
//! - [`oncall`]: Slack user groups kept in step with the on-call schedule;
//! - [`announcements`], [`maintenance`], [`status`], [`notifiers`]: outage announcements, scheduled
//!   maintenance, the public status page and the webhooks told of every change;
//! - [`spinnaker`]: the Gate client and echo's event intake;
//! - [`store`] and [`jobs`]: the database (SQLite or PostgreSQL) and the durable job queue;
//! - [`config`], [`startup`], [`state`], [`cli`]: configuration, lifecycle, shared state, commands.

pub mod announcements;
pub mod approvals;
pub mod authz;
pub mod backoff;
pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod features;
pub mod http;
pub mod jobs;
pub mod maintenance;
pub mod metrics;
pub mod notifiers;
pub mod oncall;
pub mod pipelines;
pub mod registry;
pub mod slack;
pub mod spinnaker;
pub mod startup;
pub mod state;
pub mod status;
pub mod store;
pub mod telemetry;
