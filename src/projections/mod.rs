//! Projections: everything tgp reports is a fold over the journal, so it can be rebuilt at any
//! time and an audit is a replay that must give the same answer.
//!
//! - [`cost`]: runs and money (the ledger the live cost projection and `tgp audit` share).
//! - [`pricing`]: prices actually paid, per provider, GPU, region and spot.
//! - [`metrics`]: Prometheus gauges and counters derived from the journal.
//! - [`live`]: the index of unfinished chains, which `tgp run` starts from; [`warm`]: the same
//!   index kept current by a standby, so a takeover reads only the last commits.
//! - [`runner`]: the runtime: each projection has its own durable consumer on `TGP_EVENTS` and a
//!   checkpoint (the last stream sequence folded, and the state at that sequence).

pub mod cost;
pub mod live;
pub mod metrics;
pub mod pricing;
pub mod runner;
pub mod warm;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tgp_events::provider_events::ProviderEvent;
use tgp_events::{InstanceEvent, InstanceId, ProviderName};

/// A fold over instance events that can be checkpointed and rebuilt.
pub trait Projection: Serialize + DeserializeOwned + Default + Clone + Send + Sync + 'static {
    /// Its name: the durable consumer is `projection-<name>`, the checkpoint is keyed by it.
    const NAME: &'static str;
    /// The journal subjects it reads: instance events only, unless it also folds provider events.
    const SUBJECTS: &'static str = tgp_events::subjects::INSTANCE_EVENTS_ALL;
    /// Its checkpoint is saved once the state is this many stream sequences past it...
    const SAVE_EVERY: u64 = runner::CHECKPOINT_EVERY;
    /// ...or this long after the last save while anything is unsaved, whichever comes first.
    const SAVE_INTERVAL: std::time::Duration = runner::CHECKPOINT_INTERVAL;
    /// Folds one event, journaled at `at`.
    fn apply(&mut self, at: DateTime<Utc>, instance: &InstanceId, event: &InstanceEvent);
    /// Folds one provider event (projections reading `tgp.events.>` only).
    fn apply_provider(&mut self, _at: DateTime<Utc>, _provider: &ProviderName, _event: &ProviderEvent) {}
}

impl Projection for cost::CostLedger {
    const NAME: &'static str = "cost";
    fn apply(&mut self, _: DateTime<Utc>, instance: &InstanceId, event: &InstanceEvent) {
        cost::CostLedger::apply(self, instance, event);
    }
}

impl Projection for pricing::RealizedPrices {
    const NAME: &'static str = "pricing";
    const SUBJECTS: &'static str = tgp_events::subjects::EVENTS_SUBJECTS;
    fn apply(&mut self, _: DateTime<Utc>, instance: &InstanceId, event: &InstanceEvent) {
        pricing::RealizedPrices::apply(self, instance, event);
    }
    fn apply_provider(&mut self, at: DateTime<Utc>, provider: &ProviderName, event: &ProviderEvent) {
        if let ProviderEvent::OfferSummary { lines } = event {
            self.observe_market(at, provider, lines);
        }
    }
}
