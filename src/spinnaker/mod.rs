//! Spinnaker: the Gate client ([`gate`]) and echo's event intake ([`echo`]).
//!
//! slackops never patches Spinnaker: it reads echo's REST event forwarding and calls Gate's public
//! API the way Deck does. Features use [`gate::GateClient`] and register echo handlers; they do not
//! call Gate themselves.

pub mod echo;
pub mod gate;
