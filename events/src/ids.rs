//! Identifiers. An instance id is also a NATS subject token (`tgp.events.instance.<id>`), so it is
//! validated once here and nowhere else has to worry about `.`, `*`, `>` or spaces.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest id accepted; keeps subjects and provider labels short.
pub const MAX_ID_LEN: usize = 64;

/// Why a string cannot be an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} is not a valid {what}: use 1 to {MAX_ID_LEN} letters, digits, '-' or '_'", crate::limits::quote(input))]
pub struct IdError {
    /// Which kind of id was being parsed.
    pub what: &'static str,
    /// The rejected text.
    pub input: String,
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_ID_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The id of one instance chain: it stays the same across relaunches, so cost follows it.
///
/// A launch with an idempotency key (the `Nats-Msg-Id` of a command on `tgp.commands.launch`, or
/// `idempotency_key` on `tgp.api.launch`) gets that key as its instance id, which is what makes a
/// retried launch land on the same instance and lets a publisher know the id before tgp answers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstanceId(String);

impl InstanceId {
    /// A fresh id for a launch without an idempotency key (time-ordered, so ids sort by age).
    pub fn generate() -> Self {
        InstanceId(format!("i-{}", uuid_v7_simple()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn uuid_v7_simple() -> String {
    // Sixteen hex digits of time (ms) and randomness from the std hasher: unique enough for ids
    // that are also checked for collision by the journal's optimistic concurrency.
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let now = chrono::Utc::now();
    let mut h = RandomState::new().build_hasher();
    h.write_i64(now.timestamp_nanos_opt().unwrap_or_default());
    format!("{:011x}{:016x}", now.timestamp_millis(), h.finish())
}

impl FromStr for InstanceId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if is_token(s) {
            Ok(InstanceId(s.to_string()))
        } else {
            Err(IdError { what: "instance id", input: s.to_string() })
        }
    }
}

impl TryFrom<String> for InstanceId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<InstanceId> for String {
    fn from(id: InstanceId) -> String {
        id.0
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of one launch attempt. The provider instance is named or labelled with it, so after a
/// crash reconciliation can tell which provider instance belongs to which journaled attempt.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AttemptId(String);

/// Prefix of every name or label tgp gives a provider instance; instances without it are never
/// touched by tgp.
pub const ATTEMPT_PREFIX: &str = "tgp-";

impl AttemptId {
    /// The id of attempt `number` (1-based) of `instance`: `tgp-<instance>-<number>`.
    pub fn new(instance: &InstanceId, number: u32) -> Self {
        AttemptId(format!("{ATTEMPT_PREFIX}{instance}-{number}"))
    }

    /// The id as text, as written into the provider's name or label field.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The instance chain this attempt belongs to.
    pub fn instance(&self) -> Option<InstanceId> {
        let rest = self.0.strip_prefix(ATTEMPT_PREFIX)?;
        rest.rsplit_once('-')?.0.parse().ok()
    }

    /// Recognises a label written by tgp, for reconciliation.
    pub fn from_label(label: &str) -> Option<Self> {
        let rest = label.strip_prefix(ATTEMPT_PREFIX)?;
        let (instance, number) = rest.rsplit_once('-')?;
        (is_token(instance) && number.parse::<u32>().is_ok()).then(|| AttemptId(label.to_string()))
    }
}

impl fmt::Display for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A provider's name as tgp knows it (`vastai`, `lambda`, `runpod`, `paperspace`, `simulated`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProviderName(String);

impl ProviderName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ProviderName {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if is_token(s) && s.bytes().all(|b| !b.is_ascii_uppercase()) {
            Ok(ProviderName(s.to_string()))
        } else {
            Err(IdError { what: "provider name (lower case)", input: s.to_string() })
        }
    }
}

impl TryFrom<String> for ProviderName {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ProviderName> for String {
    fn from(p: ProviderName) -> String {
        p.0
    }
}

impl fmt::Display for ProviderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_are_single_subject_tokens() {
        assert!("abc-123_x".parse::<InstanceId>().is_ok());
        for bad in ["", "a.b", "a*", "a>", "a b", &"x".repeat(65)] {
            assert!(bad.parse::<InstanceId>().is_err(), "{bad:?} accepted");
        }
        let generated = InstanceId::generate();
        assert!(generated.as_str().parse::<InstanceId>().is_ok());
        assert!(serde_json::from_str::<InstanceId>("\"a.b\"").is_err());
    }

    #[test]
    fn attempt_ids_round_trip_through_labels() {
        let id: InstanceId = "job-7".parse().unwrap();
        let attempt = AttemptId::new(&id, 3);
        assert_eq!(attempt.as_str(), "tgp-job-7-3");
        assert_eq!(AttemptId::from_label("tgp-job-7-3"), Some(attempt.clone()));
        assert_eq!(attempt.instance(), Some(id));
        assert_eq!(AttemptId::from_label("my-own-box"), None);
    }
}
