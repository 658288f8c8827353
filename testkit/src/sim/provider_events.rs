//! What the provider actors in front of the simulated providers said: circuits opened and
//! closed, rate cuts after 429s. Counted for the report, so a run shows its limiters and breakers
//! at work.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tgp_actors::provider_actor::ProviderEventSink;
use tgp_events::ProviderName;
use tgp_events::provider_events::{CircuitState, ProviderEvent};

/// Provider events, counted by kind (`circuit open`, `rate limited`, ...).
#[derive(Default)]
pub struct ProviderEventLog {
    counts: Mutex<BTreeMap<String, usize>>,
}

impl ProviderEventLog {
    /// The counts so far.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        self.counts.lock().expect("provider event log").clone()
    }
}

impl ProviderEventSink for ProviderEventLog {
    fn record(&self, _provider: &ProviderName, event: ProviderEvent) {
        let kind = match event {
            ProviderEvent::CircuitChanged { state: CircuitState::Open, .. } => "circuit open",
            ProviderEvent::CircuitChanged { state: CircuitState::HalfOpen, .. } => "circuit half-open",
            ProviderEvent::CircuitChanged { state: CircuitState::Closed, .. } => "circuit closed",
            ProviderEvent::RateLimited { .. } => "rate limited (rate cut)",
            ProviderEvent::OfferSummary { .. } => "offers answered (market line)",
            ProviderEvent::Health { .. } => "health changed",
            ProviderEvent::ListingSuspect { .. } => "listing suspect",
            other => other.type_name(),
        };
        *self.counts.lock().expect("provider event log").entry(kind.to_string()).or_default() += 1;
    }
}
