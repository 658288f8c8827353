//! The index of unfinished chains: every chain that has begun and not ended, with its state and
//! version, kept as a projection of the journal with a checkpoint ([`super::runner`]).
//!
//! `tgp run` starts from it: the checkpoint, then the commits stored after it
//! ([`super::runner::catch_up`]), so start-up reads what is live and what is recent, never the
//! finished history before the checkpoint, however long tgp has run. A chain leaves the index
//! with its final event; a finished chain's later events (an orphan destroyed after the end) do
//! not bring it back, as they do not reopen the chain.
//!
//! The state is folded by [`Loaded::fold`], the same step a full replay takes, so a chain indexed
//! is the chain a replay would load (`tests/live_index.rs` holds the two against each other).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tgp_actors::journal::Loaded;
use tgp_events::{InstanceEvent, InstanceId};

use super::Projection;

/// Every unfinished chain, by id.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LiveChains {
    chains: BTreeMap<InstanceId, Loaded>,
}

impl LiveChains {
    /// Folds one event of `instance`'s chain.
    pub fn apply(&mut self, instance: &InstanceId, event: &InstanceEvent) {
        let chain = match self.chains.get_mut(instance) {
            Some(chain) => chain,
            // A chain begins with its launch request; any other event of a chain not held here
            // belongs to one that ended (or began before a history this index never saw).
            None if matches!(event, InstanceEvent::LaunchRequested { .. }) => {
                self.chains.entry(instance.clone()).or_default()
            }
            None => return,
        };
        chain.fold(chain.version + 1, event.clone());
        if !chain.is_unfinished() {
            self.chains.remove(instance);
        }
    }

    /// The chains, for the supervisor to start an actor each.
    pub fn chains(&self) -> &BTreeMap<InstanceId, Loaded> {
        &self.chains
    }
}

impl Projection for LiveChains {
    const NAME: &'static str = "live";
    // Its state grows with the live chains (about 2 KB each); saved less often than the small
    // projections, since what a checkpoint saves is only how far a start-up must read after it.
    const SAVE_EVERY: u64 = 10_000;
    const SAVE_INTERVAL: Duration = Duration::from_secs(30);
    fn apply(&mut self, _: DateTime<Utc>, instance: &InstanceId, event: &InstanceEvent) {
        LiveChains::apply(self, instance, event);
    }
}
