//! Spinnaker: the Gate client ([`gate`]) and echo's event intake ([`echo`]).
//!
//! slackops never patches Spinnaker: it reads echo's REST event forwarding and calls Gate's public
//! API the way Deck does. Features use [`gate::GateClient`] and register echo handlers; they do not
//! call Gate themselves.

pub mod echo;
pub mod gate;

use url::Url;

/// Deck's page for an execution.
pub fn deck_url(deck: &Url, application: &str, execution_id: &str) -> String {
    let base = deck.as_str().trim_end_matches('/');
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "{base}/#/applications/{}/executions/details/{}",
        enc(application),
        enc(execution_id)
    )
}
