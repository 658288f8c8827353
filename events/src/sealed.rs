//! The two forms an `env` value takes: [`Secret`], the plain value, which lives only in memory,
//! and [`SealedValue`], the AEAD-sealed value, which is what the journal holds.
//!
//! A launch's env values are often credentials (`HF_TOKEN`, cloud keys). The types here make a
//! leak a compile error rather than a review item: [`Secret`] implements neither `Serialize` nor
//! `Display`, and its `Debug` prints only its size, so a plain value cannot be written into an
//! event ([`crate::events::InstanceEvent::LaunchRequested`] holds a
//! [`crate::commands::LaunchRequest`], whose env is [`SealedValue`]s), a reply or a log line.
//! The sealing itself (XChaCha20-Poly1305, the keys) lives in `tgp-actors`' `keyring`; this crate
//! only carries the wire form.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A plain env value, as a launch command carries it to tgp. Readable only through
/// [`Secret::expose`], by the code that hands it to a provider.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a plain value (what unsealing produces).
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The plain value, for the one place that must send it: a provider's launch request.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its size in bytes (limits are checked on it; the value itself is never quoted).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Wraps a plain value (tests and programs that build a launch spec by hand).
impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_string())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes, not shown>)", self.0.len())
    }
}

/// One env value as journaled: sealed with XChaCha20-Poly1305 under the key `key`, with the
/// instance id and the env name as associated data, so it opens only for that variable of that
/// launch. `{"key": "k-1a2b…", "nonce": "<base64, 24 bytes>", "sealed": "<base64>"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedValue {
    /// The id of the key that sealed it (see `tgp secrets keygen`); a key ring opens it only
    /// with that key.
    pub key: String,
    /// The random 24-byte nonce, base64 (standard alphabet, padded).
    pub nonce: String,
    /// Ciphertext and 16-byte tag, base64 (standard alphabet, padded).
    pub sealed: String,
}

/// What a launch's size limits measure of an env value: its plain size.
pub trait EnvValue {
    /// The value's size in bytes.
    fn byte_len(&self) -> usize;
}

impl EnvValue for Secret {
    fn byte_len(&self) -> usize {
        self.len()
    }
}

/// A client program writes its launch with plain strings (`LaunchCommand<String>`); tgp reads
/// them as [`Secret`]s.
impl EnvValue for String {
    fn byte_len(&self) -> usize {
        self.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_shows_only_its_size() {
        let secret: Secret = serde_json::from_str(r#""hf_topsecret""#).unwrap();
        assert_eq!(secret.expose(), "hf_topsecret");
        let shown = format!("{secret:?} {:?}", Some(&secret));
        assert!(!shown.contains("topsecret"), "{shown}");
        assert!(shown.contains("12 bytes"), "{shown}");
    }
}
