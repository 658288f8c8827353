//! What happens to a provider, as journaled on `tgp.events.provider.<provider>`: circuit changes,
//! rate limiting, API changes, spot switched off, disabled or enabled at run time, health.
//! One message per event: `{"type": ..., "version": 1, "provider": ..., "at": ..., "data": {...}}`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::ProviderName;

/// The state of a provider's circuit breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Calls go through.
    Closed,
    /// Calls fail fast until the open period ends.
    Open,
    /// One probe call is let through to test recovery.
    HalfOpen,
}

/// One line of a market summary: the offers of one GPU type, region and kind at one provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketLine {
    /// Standard GPU type, or `?` and the provider's name when it has no translation.
    pub gpu: String,
    /// Standard region, or `?` and the provider's name.
    pub region: String,
    /// Spot prices (or minimum bids) or on-demand prices.
    pub spot: bool,
    /// Offers seen.
    pub count: u32,
    /// Cheapest price per GPU-hour.
    pub min: crate::Money,
    /// Median price per GPU-hour (the lower middle for an even count).
    pub median: crate::Money,
}

/// Something that happened to a provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ProviderEvent {
    /// The circuit breaker changed state.
    CircuitChanged {
        /// The new state.
        state: CircuitState,
        /// Why (the failures that tripped it, or the probe's outcome).
        reason: String,
    },
    /// The provider answered 429; tgp paused and slowed down.
    RateLimited {
        /// Seconds the provider asked to wait, if it said.
        retry_after_seconds: Option<u64>,
        /// The request rate tgp now allows itself, per minute.
        new_rate_per_minute: u32,
    },
    /// The provider's API moved: deprecation, sunset, version, unknown status, unexpected shape.
    ApiChanged {
        /// The endpoint.
        endpoint: String,
        /// What was seen (`deprecation`, `sunset`, `api_version`, `unknown_status`,
        /// `unexpected_shape`, `operation_gone`).
        kind: String,
        /// The detail (header value, status value, serde's message).
        detail: String,
    },
    /// Spot launches were switched off for this provider (RunPod's spot API went away).
    SpotSwitchedOff {
        /// Why.
        reason: String,
    },
    /// The provider was disabled at run time: no new launches; running machines are still
    /// watched and terminated.
    Disabled {
        /// Why.
        reason: String,
    },
    /// The provider was enabled again.
    Enabled,
    /// Offers were fetched from the provider: a bounded summary, one line per GPU type, region
    /// and kind (what the pricing projection's market view is folded from).
    OfferSummary {
        /// The lines.
        lines: Vec<MarketLine>,
    },
    /// A status listing left out more of the machines tgp expects there than a glitch would
    /// explain (more than half, and at least a few). No machine is concluded lost from it: each
    /// is confirmed by its own status call.
    ListingSuspect {
        /// Machines tgp expected in the listing.
        expected: u32,
        /// Machines the listing held.
        listed: u32,
        /// Expected machines it left out.
        omitted: u32,
    },
    /// The health check's outcome changed (journaled on changes only).
    Health {
        /// Whether the provider answered its last status poll.
        healthy: bool,
        /// The error, when not healthy.
        detail: Option<String>,
    },
}

impl ProviderEvent {
    /// The type name, as in the `type` field.
    pub fn type_name(&self) -> &'static str {
        match self {
            ProviderEvent::CircuitChanged { .. } => "CircuitChanged",
            ProviderEvent::RateLimited { .. } => "RateLimited",
            ProviderEvent::ApiChanged { .. } => "ApiChanged",
            ProviderEvent::SpotSwitchedOff { .. } => "SpotSwitchedOff",
            ProviderEvent::Disabled { .. } => "Disabled",
            ProviderEvent::Enabled => "Enabled",
            ProviderEvent::Health { .. } => "Health",
            ProviderEvent::OfferSummary { .. } => "OfferSummary",
            ProviderEvent::ListingSuspect { .. } => "ListingSuspect",
        }
    }
}

/// A provider event as journaled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderRecord {
    /// Which provider.
    pub provider: ProviderName,
    /// When.
    pub at: DateTime<Utc>,
    /// Schema version of the event.
    pub version: u32,
    /// The event.
    #[serde(flatten)]
    pub event: ProviderEvent,
}
