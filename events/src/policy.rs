//! How an instance may be bought and billed: the user's spot policy, the relaunch policy, and the
//! provider's billing granularity that the cost projection honours.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Whether a launch may use interruptible (spot) capacity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SpotPolicy {
    /// Only interruptible capacity; no spot offer fits means no launch.
    SpotOnly,
    /// Only on-demand capacity.
    OnDemandOnly,
    /// Spot when a spot offer fits, on-demand otherwise. The default: cheapest that keeps running.
    #[default]
    PreferSpot,
}

impl SpotPolicy {
    /// The wire name (`spot-only`, `on-demand-only`, `prefer-spot`).
    pub fn name(self) -> &'static str {
        match self {
            SpotPolicy::SpotOnly => "spot-only",
            SpotPolicy::OnDemandOnly => "on-demand-only",
            SpotPolicy::PreferSpot => "prefer-spot",
        }
    }
}

/// The text is not a spot policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown spot policy {0:?}; use spot-only, on-demand-only or prefer-spot")]
pub struct UnknownSpotPolicy(pub String);

impl FromStr for SpotPolicy {
    type Err = UnknownSpotPolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "spot-only" => Ok(SpotPolicy::SpotOnly),
            "on-demand-only" => Ok(SpotPolicy::OnDemandOnly),
            "prefer-spot" => Ok(SpotPolicy::PreferSpot),
            other => Err(UnknownSpotPolicy(other.to_string())),
        }
    }
}

impl fmt::Display for SpotPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What to do when a launch fails or a spot instance is interrupted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaunchPolicy {
    /// Launch attempts allowed for the whole chain, the first included. Default 5.
    #[serde(default = "RelaunchPolicy::default_max_attempts")]
    pub max_attempts: u32,
    /// After a spot interruption, or when no spot offer fits, may an on-demand offer be used
    /// (with `prefer-spot`)? Default true.
    #[serde(default = "RelaunchPolicy::default_on_demand_fallback")]
    pub on_demand_fallback: bool,
}

impl RelaunchPolicy {
    fn default_max_attempts() -> u32 {
        5
    }
    fn default_on_demand_fallback() -> bool {
        true
    }
}

impl Default for RelaunchPolicy {
    fn default() -> Self {
        RelaunchPolicy {
            max_attempts: Self::default_max_attempts(),
            on_demand_fallback: Self::default_on_demand_fallback(),
        }
    }
}

/// How a provider rounds the time it bills: the unit, and the minimum billed on any run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BillingGranularity {
    /// The billing unit.
    pub unit: BillingUnit,
    /// The shortest period billed for a run, in seconds (0 when there is none).
    pub minimum_seconds: u32,
}

/// A billing unit: usage is rounded up to a whole number of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BillingUnit {
    /// Per second.
    Second,
    /// Per started minute.
    Minute,
    /// Per started hour.
    Hour,
}

impl BillingGranularity {
    /// Per second with no minimum.
    pub const PER_SECOND: BillingGranularity = BillingGranularity { unit: BillingUnit::Second, minimum_seconds: 0 };

    /// Seconds billed for a run of `seconds`: rounded up to the unit, then raised to the minimum.
    pub fn billed_seconds(self, seconds: u64) -> u64 {
        let unit = match self.unit {
            BillingUnit::Second => 1,
            BillingUnit::Minute => 60,
            BillingUnit::Hour => 3600,
        };
        let rounded = seconds.div_ceil(unit) * unit;
        rounded.max(u64::from(self.minimum_seconds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn billing_rounds_up_and_honours_the_minimum() {
        let per_minute = BillingGranularity { unit: BillingUnit::Minute, minimum_seconds: 600 };
        assert_eq!(per_minute.billed_seconds(61), 600);
        assert_eq!(per_minute.billed_seconds(601), 660);
        let per_hour = BillingGranularity { unit: BillingUnit::Hour, minimum_seconds: 0 };
        assert_eq!(per_hour.billed_seconds(3601), 7200);
        assert_eq!(BillingGranularity::PER_SECOND.billed_seconds(7), 7);
    }

    #[test]
    fn relaunch_defaults_fill_missing_fields() {
        let p: RelaunchPolicy = serde_json::from_str(r#"{"max_attempts": 2}"#).unwrap();
        assert_eq!(p, RelaunchPolicy { max_attempts: 2, on_demand_fallback: true });
    }
}
