//! slackops: Spinnaker operations from Slack.
//!
//! A small service a platform team runs next to Spinnaker so people decide from Slack: approve or
//! reject Manual Judgments, start and cancel pipelines, keep on-call user groups current, announce
//! outages. Slack stays true to what Spinnaker says. `docs/architecture.md` in this repository
//! draws the shape: what happens to a request, the rooms below and what each may import, the
//! guarantees and the code that keeps each, and how to add a feature. From the bottom up:
//!
//! - primitives: [`secret`], [`principals`], [`settings_check`], [`clock`], [`backoff`];
//! - settings: each feature's `settings` module, composed by [`config`];
//! - store, jobs and clients: [`store`], [`jobs`], [`slack::api`], [`spinnaker::gate`],
//!   [`oncall::providers`], [`authz`], [`metrics`], [`telemetry`];
//! - the shared state: [`state`];
//! - the interaction layer: [`registry`] (handler traits and the dispatch table), [`slack`]
//!   (verify, parse, dispatch, ack; Block Kit and HTML-to-mrkdwn helpers), [`spinnaker::echo`],
//!   [`http`], [`error`], [`policy`];
//! - features: [`approvals`] and [`pipelines`] (Manual Judgments and the pipeline slash command),
//!   [`oncall`] (Slack user groups kept in step with the on-call schedule), [`announcements`],
//!   [`maintenance`], [`status`], [`notifiers`] (outage announcements, scheduled maintenance, the
//!   public status page and the webhooks told of every change), [`pager`] (PagerDuty, Opsgenie
//!   and Grafana OnCall incidents acknowledged, resolved and announced from Slack);
//! - composition: [`features`] (where features plug in), [`startup`], [`cli`].

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
pub mod openapi;
pub mod pager;
pub mod pipelines;
pub mod policy;
pub mod principals;
pub mod registry;
pub mod secret;
pub mod settings_check;
pub mod slack;
pub mod spinnaker;
pub mod startup;
pub mod state;
pub mod status;
pub mod store;
pub mod telemetry;
