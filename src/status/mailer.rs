//! The one SMTP client of the status page's emails, built once per service from `status.smtp`
//! and held by the state (like every other upstream's client): the TLS configuration and its root
//! certificates are loaded at start-up, not again for every email.
//!
//! It only sends and says how a failure should be treated; what to send, to whom and how often
//! is [`super::email`]'s. It logs nothing: the caller logs with the subscriber's id, and neither
//! the URL's credentials nor an address ever reach a message of this module.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::settings::{SmtpSettings, StatusSettings};

/// Why an email was not sent.
pub enum SmtpFailure {
    /// A 5xx answer (its code), or a URL that cannot be used: retrying cannot help.
    Permanent(String),
    /// A 4xx answer, a connection or TLS error, a timeout: what happened, without addresses.
    Transient(String),
}

/// The transport, or why `status.smtp.url` gave none (told on every send, as a permanent failure,
/// so the emails show as failed jobs rather than the service refusing to start). `None` while
/// email is off.
pub struct Mailer {
    transport: Option<Result<AsyncSmtpTransport<Tokio1Executor>, String>>,
    timeout: Duration,
}

impl Mailer {
    pub fn new(settings: &StatusSettings) -> Self {
        let smtp = &settings.smtp;
        Self {
            transport: smtp.enabled().then(|| transport(smtp, settings)),
            timeout: Duration::from_millis(smtp.timeout_ms),
        }
    }

    /// Send one email, bounded by twice the configured timeout.
    pub async fn send(&self, message: Message) -> Result<(), SmtpFailure> {
        let transport = match &self.transport {
            Some(Ok(t)) => t,
            Some(Err(why)) => return Err(SmtpFailure::Permanent(why.clone())),
            None => return Err(SmtpFailure::Permanent("status.smtp.url is not set".into())),
        };
        match tokio::time::timeout(self.timeout * 2, transport.send(message)).await {
            Err(_) => Err(SmtpFailure::Transient("timed out".into())),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(failure(&e)),
        }
    }
}

fn transport(
    smtp: &SmtpSettings,
    settings: &StatusSettings,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp.url.expose().trim())
        // lettre's message names neither the URL nor its password.
        .map_err(|e| format!("status.smtp.url is unusable: {e}"))?;
    if !smtp.username.is_empty() {
        b = b.credentials(Credentials::new(
            smtp.username.expose().to_string(),
            smtp.password.expose().to_string(),
        ));
    }
    let hello = settings
        .public_url
        .as_ref()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| from_domain(smtp));
    Ok(b.hello_name(ClientId::Domain(hello))
        .timeout(Some(Duration::from_millis(smtp.timeout_ms)))
        .build())
}

/// How a refused or failed send should be treated.
fn failure(e: &lettre::transport::smtp::Error) -> SmtpFailure {
    let code = e.status().map(|c| c.to_string());
    if e.is_permanent() {
        SmtpFailure::Permanent(code.unwrap_or_else(|| "5xx".into()))
    } else if e.is_transient() {
        SmtpFailure::Transient(format!(
            "the mail server answered {}",
            code.unwrap_or_else(|| "4xx".into())
        ))
    } else if e.is_timeout() {
        SmtpFailure::Transient("timed out".into())
    } else if e.is_tls() {
        SmtpFailure::Transient("TLS failed".into())
    } else {
        SmtpFailure::Transient("could not talk to the mail server".into())
    }
}

/// The domain of the sender's address, for Message-ID and EHLO.
pub fn from_domain(smtp: &SmtpSettings) -> String {
    smtp.from
        .trim()
        .parse::<Mailbox>()
        .map(|m| m.email.domain().to_string())
        .unwrap_or_else(|_| "localhost".into())
}
