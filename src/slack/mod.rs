//! The interaction layer: the one place that talks to Slack.
//!
//! Inbound, every request from Slack is size-capped, verified on its raw bytes ([`verify`]),
//! parsed into forward-compatible shapes ([`payload`]), and dispatched through the
//! [`Registry`](crate::registry::Registry) to a feature's handler, whose typed [`ack::Ack`] reaches
//! Slack within its 3 s ([`routes`]). Outbound, [`api::SlackApi`] is the only Web API client, with
//! rate limits, retries and typed errors. Features never parse Slack requests or call Slack
//! themselves; they use these pieces.
//!
//! Block Kit is built with slack-morphism's models ([`blocks`]) and sent as JSON.

pub mod ack;
pub mod api;
pub mod blocks;
pub mod payload;
pub mod routes;
pub mod verify;
