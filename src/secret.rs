//! The secret string type every configuration section uses for tokens, passwords and keys.
//!
//! A primitive below every feature: it imports nothing from the crate, so any section's settings
//! type can hold secrets without depending on configuration loading. It must never print its
//! value: `Debug`, `Display` and `Serialize` show `[redacted]` (or `[unset]`), and
//! [`Secret::expose`] is the only way out.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A secret string. It can be read only through [`Secret::expose`]; `Debug`, `Display` and
/// `Serialize` print `[redacted]` (or `[unset]` when empty) so it never reaches a log line.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret value. Call sites are the only places a secret leaves this type; keep them few.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
    /// Whether a presented credential equals this secret, compared in constant time: both sides
    /// are MACed and the tags compared, so neither length nor content leaks through timing.
    pub fn matches(&self, presented: &[u8]) -> bool {
        use hmac::{Hmac, KeyInit, Mac};
        use sha2::Sha256;
        let key = b"slackops-secret-compare";
        let mac = |v: &[u8]| {
            let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
            m.update(v);
            m
        };
        let expected = mac(self.0.as_bytes()).finalize().into_bytes();
        mac(presented).verify_slice(&expected).is_ok()
    }
    fn shown(&self) -> &'static str {
        if self.is_empty() {
            "[unset]"
        } else {
            "[redacted]"
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.shown())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.shown())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.shown())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Environment values are parsed as structured data, so a numeric-looking token arrives
        // as a number: accept any scalar and keep its text.
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_owned()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Secret, E> {
                Ok(Secret::default())
            }
        }
        d.deserialize_any(V)
    }
}
