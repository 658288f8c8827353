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
    /// Seconds to wait before the attempt after a setback (an interruption or a failed launch),
    /// doubled for each further setback in a row, so a provider in trouble is not hammered.
    /// A failure for lack of capacity fails over to the next offer at once. Default 5.
    #[serde(default = "RelaunchPolicy::default_backoff_seconds")]
    pub backoff_seconds: u32,
    /// The longest wait between attempts, in seconds. Default 300.
    #[serde(default = "RelaunchPolicy::default_max_backoff_seconds")]
    pub max_backoff_seconds: u32,
}

impl RelaunchPolicy {
    fn default_max_attempts() -> u32 {
        5
    }
    fn default_on_demand_fallback() -> bool {
        true
    }
    fn default_backoff_seconds() -> u32 {
        5
    }
    fn default_max_backoff_seconds() -> u32 {
        300
    }

    /// The wait before the next attempt after `setbacks` setbacks in a row (none after none).
    pub fn backoff(&self, setbacks: u32) -> std::time::Duration {
        if setbacks == 0 {
            return std::time::Duration::ZERO;
        }
        let doubled = u64::from(self.backoff_seconds).saturating_mul(1u64 << (setbacks - 1).min(32));
        std::time::Duration::from_secs(doubled.min(u64::from(self.max_backoff_seconds)))
    }
}

impl Default for RelaunchPolicy {
    fn default() -> Self {
        RelaunchPolicy {
            max_attempts: Self::default_max_attempts(),
            on_demand_fallback: Self::default_on_demand_fallback(),
            backoff_seconds: Self::default_backoff_seconds(),
            max_backoff_seconds: Self::default_max_backoff_seconds(),
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

    /// The unit's length in seconds: billed time is a whole number of these.
    pub fn unit_seconds(self) -> u64 {
        match self.unit {
            BillingUnit::Second => 1,
            BillingUnit::Minute => 60,
            BillingUnit::Hour => 3_600,
        }
    }

    /// Seconds billed for a run from `start` to `end`: its length in started seconds, billed.
    pub fn billed_seconds_between(
        self,
        start: chrono::DateTime<chrono::Utc>,
        end: chrono::DateTime<chrono::Utc>,
    ) -> u64 {
        let used_ms = (end - start).num_milliseconds().max(0) as u64;
        self.billed_seconds(used_ms.div_ceil(1000))
    }

    /// Seconds billed for a run of `seconds`: rounded up to the unit, then raised to the minimum.
    pub fn billed_seconds(self, seconds: u64) -> u64 {
        let unit = self.unit_seconds();
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
        assert_eq!(p, RelaunchPolicy { max_attempts: 2, ..RelaunchPolicy::default() });
    }

    #[test]
    fn backoff_doubles_per_setback_up_to_the_cap() {
        let p = RelaunchPolicy { backoff_seconds: 5, max_backoff_seconds: 60, ..RelaunchPolicy::default() };
        let waits: Vec<u64> = (0..6).map(|n| p.backoff(n).as_secs()).collect();
        assert_eq!(waits, [0, 5, 10, 20, 40, 60]);
    }
}
