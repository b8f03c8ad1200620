//! The interaction layer: the one place that talks to Slack.
//!
//! Inbound, every request from Slack is size-capped, verified on its raw bytes ([`verify`]),
//! parsed into forward-compatible shapes ([`payload`]), and dispatched through the
//! [`Registry`](crate::registry::Registry) to a feature's handler, whose typed [`ack::Ack`] reaches
//! Slack within its 3 s ([`routes`]). Outbound, [`api::SlackApi`] is the only Web API client, with
//! rate limits, retries and typed errors. Features never parse Slack requests or call Slack
//! themselves; they use these pieces.
//!
//! Block Kit is built with slack-morphism's models ([`blocks`]) and sent as JSON; text a feature
//! receives as HTML (Spinnaker's judgment instructions) becomes mrkdwn through [`html`]. Every
//! text Slack renders is escaped on the way through these helpers.

pub mod ack;
pub mod api;
pub mod blocks;
pub mod html;
pub mod payload;
pub mod routes;
pub mod verify;
