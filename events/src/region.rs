//! Standard regions. Providers name places their own way (`us-east-1`, `NY2`, a country code);
//! commands and events use these names and each provider client translates.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The standard region names tgp understands.
pub const STANDARD_REGIONS: [&str; 12] = [
    "us-east",
    "us-central",
    "us-west",
    "us-south",
    "canada",
    "eu-west",
    "eu-central",
    "eu-north",
    "asia-east",
    "asia-south",
    "oceania",
    "south-america",
];

/// A standard region, such as `us-east`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Region(String);

/// The name is not a standard region.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown region {input:?}; known regions: {}", STANDARD_REGIONS.join(", "))]
pub struct UnknownRegion {
    /// The rejected name.
    pub input: String,
}

impl Region {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Region {
    type Err = UnknownRegion;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        if STANDARD_REGIONS.contains(&lower.as_str()) {
            Ok(Region(lower))
        } else {
            Err(UnknownRegion { input: s.to_string() })
        }
    }
}

impl TryFrom<String> for Region {
    type Error = UnknownRegion;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Region> for String {
    fn from(r: Region) -> String {
        r.0
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
