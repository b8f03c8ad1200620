//! Slack request signing (v0), checked on the raw body bytes before anything parses them.
//!
//! `v0=hex(HMAC-SHA256(signing_secret, "v0:{timestamp}:{body}"))`, compared in constant time, with
//! the timestamp within 300 s of now in *both* directions (bolt-js checks only the past). The clock
//! is injected so Slack's 2018 known-answer vector verifies in tests. Failures carry a reason for
//! the metrics label; neither the received nor the expected signature is ever logged or returned.
//!
//! As strict as Slack's own SDKs, no more lenient: the received header must equal `v0=` followed
//! by the *lowercase* hex digest, byte for byte (an uppercase digest is refused, as
//! `hmac.compare_digest` in python-slack-sdk refuses it), and a request that carries either header
//! more than once is refused rather than judged by one of its copies.

use axum::http::HeaderMap;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::clock::SharedClock;
use crate::secret::Secret;

/// Slack's replay window.
pub const MAX_SKEW_SECS: i64 = 300;

pub const HEADER_SIGNATURE: &str = "x-slack-signature";
pub const HEADER_TIMESTAMP: &str = "x-slack-request-timestamp";

/// Why a request was refused. `reason()` is a stable label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing X-Slack-Request-Timestamp header")]
    MissingTimestamp,
    #[error("missing X-Slack-Signature header")]
    MissingSignature,
    #[error("malformed X-Slack-Request-Timestamp header")]
    MalformedTimestamp,
    #[error("malformed X-Slack-Signature header")]
    MalformedSignature,
    #[error("unknown signature version")]
    UnknownVersion,
    #[error("request timestamp is too old")]
    Stale,
    #[error("request timestamp is in the future")]
    Future,
    #[error("signature does not match")]
    BadSignature,
    #[error("more than one X-Slack-Request-Timestamp header")]
    DuplicateTimestamp,
    #[error("more than one X-Slack-Signature header")]
    DuplicateSignature,
}

impl VerifyError {
    /// Every reason, so each is exported from the start (see `Metrics::preset`).
    pub const ALL: [VerifyError; 10] = [
        VerifyError::MissingTimestamp,
        VerifyError::MissingSignature,
        VerifyError::MalformedTimestamp,
        VerifyError::MalformedSignature,
        VerifyError::UnknownVersion,
        VerifyError::Stale,
        VerifyError::Future,
        VerifyError::BadSignature,
        VerifyError::DuplicateTimestamp,
        VerifyError::DuplicateSignature,
    ];

    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::MissingTimestamp => "missing_timestamp",
            VerifyError::MissingSignature => "missing_signature",
            VerifyError::MalformedTimestamp => "malformed_timestamp",
            VerifyError::MalformedSignature => "malformed_signature",
            VerifyError::UnknownVersion => "unknown_version",
            VerifyError::Stale => "stale_timestamp",
            VerifyError::Future => "future_timestamp",
            VerifyError::BadSignature => "bad_signature",
            VerifyError::DuplicateTimestamp => "duplicate_timestamp",
            VerifyError::DuplicateSignature => "duplicate_signature",
        }
    }
}

/// Verifies requests with one signing secret.
#[derive(Clone)]
pub struct SignatureVerifier {
    secret: Secret,
    clock: SharedClock,
}

impl std::fmt::Debug for SignatureVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignatureVerifier")
    }
}

impl SignatureVerifier {
    pub fn new(secret: Secret, clock: SharedClock) -> Self {
        Self { secret, clock }
    }

    /// Check the headers against the raw body.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), VerifyError> {
        let ts = single_header(headers, HEADER_TIMESTAMP)
            .map_err(|_| VerifyError::DuplicateTimestamp)?
            .ok_or(VerifyError::MissingTimestamp)?;
        let sig = single_header(headers, HEADER_SIGNATURE)
            .map_err(|_| VerifyError::DuplicateSignature)?
            .ok_or(VerifyError::MissingSignature)?;
        self.verify_parts(ts, sig, body)
    }

    pub fn verify_parts(
        &self,
        timestamp: &str,
        signature: &str,
        body: &[u8],
    ) -> Result<(), VerifyError> {
        let ts: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| VerifyError::MalformedTimestamp)?;
        let (version, hex_sig) = signature
            .split_once('=')
            .ok_or(VerifyError::MalformedSignature)?;
        if version != "v0" {
            return Err(VerifyError::UnknownVersion);
        }
        if hex_sig.len() != 64 || !hex_sig.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(VerifyError::MalformedSignature);
        }
        let now = self.clock.now_secs();
        if now - ts > MAX_SKEW_SECS {
            return Err(VerifyError::Stale);
        }
        if ts - now > MAX_SKEW_SECS {
            return Err(VerifyError::Future);
        }
        let mut mac = self.mac(timestamp.trim());
        mac.update(body);
        let expected = format!("v0={}", hex::encode(mac.finalize().into_bytes()));
        // The whole header against `v0=<lowercase hex>`, byte for byte and in constant time:
        // decoding the hex first would accept uppercase digits Slack never sends.
        if constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
        }
    }

    fn mac(&self, timestamp: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.secret.expose().as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(b"v0:");
        mac.update(timestamp.as_bytes());
        mac.update(b":");
        mac
    }

    /// The signature Slack would send; used by tests and the load benchmark.
    pub fn sign(&self, timestamp: i64, body: &[u8]) -> String {
        sign(self.secret.expose(), timestamp, body)
    }
}

/// `v0=<hex>` for a secret, timestamp and body.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// A header the request carries more than once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepeatedHeader;

/// The one value of a header: `Ok(None)` when absent (or empty, or not text), `Err` when the
/// request carries it more than once. `HeaderMap::get` would silently pick the first copy.
pub fn single_header<'a>(
    headers: &'a HeaderMap,
    name: &str,
) -> Result<Option<&'a str>, RepeatedHeader> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(RepeatedHeader);
    }
    Ok(first
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty()))
}

/// Equal bytes, in time that depends only on the lengths (which are public: a signature header
/// has a fixed length).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;

    /// `ALL` lists every variant once: a new variant fails to compile here until it has an
    /// index, and then fails the assertion until `ALL` has it.
    #[test]
    fn all_lists_every_reason_once() {
        let index = |e: VerifyError| match e {
            VerifyError::MissingTimestamp => 0,
            VerifyError::MissingSignature => 1,
            VerifyError::MalformedTimestamp => 2,
            VerifyError::MalformedSignature => 3,
            VerifyError::UnknownVersion => 4,
            VerifyError::Stale => 5,
            VerifyError::Future => 6,
            VerifyError::BadSignature => 7,
            VerifyError::DuplicateTimestamp => 8,
            VerifyError::DuplicateSignature => 9,
        };
        let mut seen: Vec<usize> = VerifyError::ALL.iter().map(|e| index(*e)).collect();
        seen.sort_unstable();
        seen.dedup();
        // 10 = the number of arms above.
        assert_eq!(
            seen,
            (0..10).collect::<Vec<_>>(),
            "VerifyError::ALL must list every variant once"
        );
    }

    const KAT1_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const KAT1_TS: i64 = 1531420618;

    fn verifier(secret: &str, now: i64) -> SignatureVerifier {
        SignatureVerifier::new(Secret::new(secret), Arc::new(ManualClock::at_secs(now)))
    }

    #[test]
    fn kat2_slack_morphism_precoded_vector() {
        let v = verifier("fa2c05deeef5a4077494e89f54394de0", 1531420620);
        assert_eq!(
            v.verify_parts(
                "1531420618",
                "v0=baa91ef62d346e56607bbdd278a8acd570b91226854f15a382f43d33be42f666",
                b"test-body"
            ),
            Ok(())
        );
    }

    #[test]
    fn derived_vectors_for_empty_json_and_utf8_bodies() {
        let v = verifier(KAT1_SECRET, KAT1_TS);
        let cases: [(&[u8], &str); 3] = [
            (b"", "v0=55f41ec73231010289b54e669149ea021fccab11b5524355523533ce930cb739"),
            (
                br#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#,
                "v0=f9bd80929259f3f6d5fe3a3186c453c89cd1ad4862815a15837584f31c993652",
            ),
            (
                "{\"text\":\"héllo 🎉\"}".as_bytes(),
                "v0=dd4c04dea269bdec452455ba97b325a481e15aa0ed9e6efbd2440a51df0b6a03",
            ),
        ];
        for (body, sig) in cases {
            assert_eq!(v.verify_parts("1531420618", sig, body), Ok(()));
            assert_eq!(v.sign(KAT1_TS, body), sig);
        }
    }

    #[test]
    fn window_is_two_sided_and_inclusive_at_300s() {
        let body = b"x";
        let sig = sign(KAT1_SECRET, KAT1_TS, body);
        assert_eq!(
            verifier(KAT1_SECRET, KAT1_TS + 300).verify_parts("1531420618", &sig, body),
            Ok(())
        );
        assert_eq!(
            verifier(KAT1_SECRET, KAT1_TS - 300).verify_parts("1531420618", &sig, body),
            Ok(())
        );
        assert_eq!(
            verifier(KAT1_SECRET, KAT1_TS + 301).verify_parts("1531420618", &sig, body),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            verifier(KAT1_SECRET, KAT1_TS - 301).verify_parts("1531420618", &sig, body),
            Err(VerifyError::Future)
        );
    }

    #[test]
    fn malformed_headers_are_named() {
        let v = verifier(KAT1_SECRET, KAT1_TS);
        assert_eq!(
            v.verify_parts("abc", "v0=00", b""),
            Err(VerifyError::MalformedTimestamp)
        );
        assert_eq!(
            v.verify_parts("1531420618", "v0", b""),
            Err(VerifyError::MalformedSignature)
        );
        assert_eq!(
            v.verify_parts("1531420618", "v0=zz", b""),
            Err(VerifyError::MalformedSignature)
        );
        assert_eq!(
            v.verify_parts("1531420618", &format!("v1={}", "0".repeat(64)), b""),
            Err(VerifyError::UnknownVersion)
        );
        assert_eq!(
            v.verify(&HeaderMap::new(), b""),
            Err(VerifyError::MissingTimestamp)
        );
    }

    #[test]
    fn uppercase_hex_is_refused_even_when_the_digest_matches() {
        let v = verifier(KAT1_SECRET, KAT1_TS);
        let sig = sign(KAT1_SECRET, KAT1_TS, b"x");
        let upper = format!("v0={}", sig["v0=".len()..].to_ascii_uppercase());
        assert_ne!(upper, sig);
        assert_eq!(
            v.verify_parts("1531420618", &upper, b"x"),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(v.verify_parts("1531420618", &sig, b"x"), Ok(()));
    }

    #[test]
    fn a_second_signature_or_timestamp_header_is_refused() {
        let v = verifier(KAT1_SECRET, KAT1_TS);
        let sig = sign(KAT1_SECRET, KAT1_TS, b"x");
        let good = || {
            let mut h = HeaderMap::new();
            h.insert(HEADER_TIMESTAMP, "1531420618".parse().unwrap());
            h.insert(HEADER_SIGNATURE, sig.parse().unwrap());
            h
        };
        assert_eq!(v.verify(&good(), b"x"), Ok(()));
        let mut two_sigs = good();
        two_sigs.append(HEADER_SIGNATURE, "v0=00".parse().unwrap());
        assert_eq!(
            v.verify(&two_sigs, b"x"),
            Err(VerifyError::DuplicateSignature)
        );
        let mut two_ts = good();
        two_ts.append(HEADER_TIMESTAMP, "1531420618".parse().unwrap());
        assert_eq!(
            v.verify(&two_ts, b"x"),
            Err(VerifyError::DuplicateTimestamp)
        );
    }

    #[test]
    fn constant_time_eq_compares_every_byte() {
        assert!(constant_time_eq(b"v0=ab", b"v0=ab"));
        assert!(!constant_time_eq(b"v0=ab", b"v0=aB"));
        assert!(!constant_time_eq(b"v0=ab", b"v0=abc"));
    }
}
