//! Socket Mode: Slack's second transport, with no public endpoint (`slack.mode: socket`).
//!
//! slackops opens outbound WebSockets to Slack (`apps.connections.open` with the app-level token,
//! through the one Web API client) and receives the same slash commands, interactions and events
//! that HTTP mode receives as signed POSTs, wrapped in envelopes. Each envelope goes through the
//! shared [`dispatch`](crate::slack::dispatch) and is acknowledged on the socket within the ack
//! deadline, with the response payload the HTTP answer would carry. The protocol and its sources
//! are in reference/slack-socket-mode.md.
//!
//! - [`protocol`]: the messages on the wire, parsed and built (pure);
//! - [`envelope`]: one envelope through the dispatcher, and its ack;
//! - [`connection`]: one connection's life (open, hello, serve, keep alive, drain, close);
//! - [`manager`]: the slots that keep `slack.socket_connections` connections up;
//! - [`health`]: the count `/readyz` and the `slackops_socket_connections` gauge read;
//! - [`probe`]: `check-config --probe` opens one connection and closes it.
//!
//! This module never logs the app token, a ticketed URL or a payload, and no feature depends on it.

pub mod connection;
pub mod envelope;
pub mod health;
pub mod manager;
pub mod probe;
pub mod protocol;

pub use manager::run;
