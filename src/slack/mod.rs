//! The interaction layer: the one place that talks to Slack.
//!
//! Inbound, two transports feed one dispatcher. Over HTTP ([`routes`], `slack.mode: http`) every
//! request is size-capped and verified on its raw bytes ([`verify`]); in Socket Mode ([`socket`],
//! `slack.mode: socket`) envelopes arrive over outbound WebSockets authenticated by the app-level
//! token. Either way the payload is parsed into forward-compatible shapes ([`payload`]) and
//! [`dispatch`]ed through the [`Registry`](crate::registry::Registry) to a feature's handler, whose
//! typed [`ack::Ack`] reaches Slack within its 3 s. No feature learns which transport carried a
//! request. Outbound, [`api::SlackApi`] is the only Web API client, with
//! rate limits, retries and typed errors. Features never parse Slack requests or call Slack
//! themselves; they use these pieces.
//!
//! Block Kit is built with slack-morphism's models ([`blocks`]) and sent as JSON; text a feature
//! receives as HTML (Spinnaker's judgment instructions) becomes mrkdwn through [`html`]. Every
//! text Slack renders is escaped on the way through these helpers.

pub mod ack;
pub mod api;
pub mod blocks;
pub mod choices;
pub mod dispatch;
pub mod html;
pub mod mrkdwn;
pub mod once;
pub mod payload;
pub mod routes;
pub mod socket;
pub mod verify;
