//! The email subscriptions' tokens and links: the form's CSRF token, the confirmation token and
//! the unsubscribe token, all made with one key derived from `status.subscriptions.secret`, each
//! for one purpose only; and the absolute links emails carry (off `status.public_url`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::settings::StatusSettings;

type HmacSha256 = Hmac<Sha256>;

/// The subscriptions' signing key, derived from `status.subscriptions.secret` so the configured
/// value itself is used for nothing else.
fn key(settings: &StatusSettings) -> [u8; 32] {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(
        settings.subscriptions.secret.expose().trim().as_bytes(),
    )
    .expect("HMAC takes keys of any length");
    m.update(b"slackops status subscriptions v1");
    m.finalize().into_bytes().into()
}

/// A MAC for one purpose over `parts` (length-prefixed, so parts cannot run into each other).
fn mac(settings: &StatusSettings, purpose: &str, parts: &[&str]) -> HmacSha256 {
    let mut m =
        <HmacSha256 as KeyInit>::new_from_slice(&key(settings)).expect("any key length works");
    for p in std::iter::once(purpose).chain(parts.iter().copied()) {
        m.update(&(p.len() as u64).to_be_bytes());
        m.update(p.as_bytes());
    }
    m
}

pub(crate) fn random_b64(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// A form token issued at `now` (ms): `<issued secs>.<nonce>.<mac>`.
pub fn csrf_token(settings: &StatusSettings, now: i64) -> String {
    let issued = (now / 1000).to_string();
    let nonce = random_b64(12);
    let tag = mac(settings, "csrf", &[&issued, &nonce])
        .finalize()
        .into_bytes();
    format!("{issued}.{nonce}.{}", URL_SAFE_NO_PAD.encode(tag))
}

/// Whether a key is configured: without one, no token is ever accepted (configuration checks
/// require it while subscriptions are on).
fn keyed(settings: &StatusSettings) -> bool {
    !settings.subscriptions.secret.is_empty()
}

/// Whether a form token is ours and fresh at `now` (ms).
pub fn csrf_valid(settings: &StatusSettings, token: &str, now: i64) -> bool {
    if !keyed(settings) {
        return false;
    }
    let mut it = token.split('.');
    let (Some(issued), Some(nonce), Some(tag), None) = (it.next(), it.next(), it.next(), it.next())
    else {
        return false;
    };
    let Ok(issued_secs) = issued.parse::<i64>() else {
        return false;
    };
    let Ok(tag) = URL_SAFE_NO_PAD.decode(tag) else {
        return false;
    };
    if mac(settings, "csrf", &[issued, nonce])
        .verify_slice(&tag)
        .is_err()
    {
        return false;
    }
    let age = now / 1000 - issued_secs;
    // A minute of clock skew between replicas is forgiven.
    (-60..=i64::from(settings.subscriptions.form_ttl_mins) * 60).contains(&age)
}

/// The confirmation token of a subscriber's request `nonce` (the nonce travels in the job; the
/// token can only be made again with the key, and only its hash is stored).
pub fn confirm_token(settings: &StatusSettings, subscriber: &str, nonce: &str) -> String {
    URL_SAFE_NO_PAD.encode(
        mac(settings, "confirm", &[subscriber, nonce])
            .finalize()
            .into_bytes(),
    )
}

/// What is stored of a confirmation token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A subscriber's unsubscribe token: `<id>.<mac>`. It never expires (an unsubscribe link must
/// work as long as the emails carrying it may be read).
pub fn unsubscribe_token(settings: &StatusSettings, subscriber: &str) -> String {
    let tag = mac(settings, "unsubscribe", &[subscriber])
        .finalize()
        .into_bytes();
    format!("{subscriber}.{}", URL_SAFE_NO_PAD.encode(tag))
}

/// The subscriber an unsubscribe token names, if it is ours.
pub fn unsubscribe_subscriber(settings: &StatusSettings, token: &str) -> Option<String> {
    if !keyed(settings) {
        return None;
    }
    let (id, tag) = token.rsplit_once('.')?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    mac(settings, "unsubscribe", &[id])
        .verify_slice(&tag)
        .ok()?;
    Some(id.to_string())
}

/// The page's base URL (`status.public_url`, without a trailing slash); links in emails hang off
/// it. Configuration checks require it while subscriptions are on.
pub fn base_url(settings: &StatusSettings) -> String {
    settings
        .public_url
        .as_ref()
        .map(|u| u.as_str().trim_end_matches('/').to_string())
        .unwrap_or_else(|| "/status".into())
}

pub fn confirm_url(settings: &StatusSettings, token: &str) -> String {
    format!("{}/confirm?token={token}", base_url(settings))
}

pub fn unsubscribe_url(settings: &StatusSettings, subscriber: &str) -> String {
    format!(
        "{}/unsubscribe?token={}",
        base_url(settings),
        unsubscribe_token(settings, subscriber)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn settings() -> StatusSettings {
        let mut s = StatusSettings {
            public_url: Some("https://status.example.com/status".parse().unwrap()),
            ..Default::default()
        };
        s.subscriptions.secret = Secret::new("k".repeat(40));
        s
    }

    #[test]
    fn form_tokens_verify_expire_and_resist_tampering() {
        let s = settings();
        let now = 1_800_000_000_000;
        let t = csrf_token(&s, now);
        assert!(csrf_valid(&s, &t, now));
        assert!(csrf_valid(&s, &t, now + 119 * 60_000));
        assert!(!csrf_valid(&s, &t, now + 121 * 60_000), "expired");
        assert!(!csrf_valid(&s, &t, now - 5 * 60_000), "from the future");
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        parts[0] = (now / 1000 + 3600).to_string();
        assert!(
            !csrf_valid(&s, &parts.join("."), now),
            "issued time is signed"
        );
        assert!(!csrf_valid(&s, "", now));
        let mut other = settings();
        other.subscriptions.secret = Secret::new("x".repeat(40));
        assert!(!csrf_valid(&other, &t, now), "another key");
    }

    #[test]
    fn unsubscribe_tokens_name_their_subscriber_and_nothing_else() {
        let s = settings();
        let t = unsubscribe_token(&s, "sub-1");
        assert_eq!(unsubscribe_subscriber(&s, &t).as_deref(), Some("sub-1"));
        let forged = t.replacen("sub-1", "sub-2", 1);
        assert_eq!(unsubscribe_subscriber(&s, &forged), None);
        assert_eq!(unsubscribe_subscriber(&s, "sub-1"), None);
        // A confirmation token is not an unsubscribe token.
        let c = confirm_token(&s, "sub-1", "n");
        assert_eq!(unsubscribe_subscriber(&s, &format!("sub-1.{c}")), None);
        assert_eq!(
            unsubscribe_url(&s, "sub-1"),
            format!("https://status.example.com/status/unsubscribe?token={t}")
        );
    }
}
