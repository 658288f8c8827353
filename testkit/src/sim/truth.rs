//! The market's truth, as the checks that can fail read it: which machines a terminate call
//! reached and what they really were then, when each machine was really alive, and at which
//! moments a chain's request had a fitting offer in the market whatever the calls answered.
//!
//! The journal says what tgp concluded; this says what was so. A run builds it from the simulated
//! providers ([`MarketTruth::of`]); a unit test builds it by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tgp_actors::aggregate::Instance;
use tgp_actors::provider::OfferFilter;
use tgp_actors::selection::{Selection, select};
use tgp_events::events::FailureClass;
use tgp_events::{InstanceEvent, InstanceId};

use crate::market::{Destruction, Market};

/// What was so in the market, for the checks.
#[derive(Clone, Debug, Default)]
pub struct MarketTruth {
    /// Every terminate call that reached a machine, with what the machine really was.
    pub destroyed: Vec<Destruction>,
    /// When each machine (by provider id) was alive: from its launch until it was destroyed,
    /// vanished or preempted (`None`: still alive at the end).
    pub alive: BTreeMap<String, (DateTime<Utc>, Option<DateTime<Utc>>)>,
    /// The moments a chain found no offer (`LaunchFailed` of class `no_offer_fits`) while the
    /// market did hold one that fitted its request and its budget.
    pub fitting: BTreeSet<(InstanceId, DateTime<Utc>)>,
}

impl MarketTruth {
    /// Whether the machine was really alive at `at`.
    pub fn alive_at(&self, machine: &str, at: DateTime<Utc>) -> bool {
        self.alive.get(machine).is_some_and(|(from, until)| *from <= at && until.is_none_or(|u| at < u))
    }

    /// The truth of a run's providers about its chains.
    pub fn of(providers: &[Arc<Market>], chains: &BTreeMap<InstanceId, Vec<InstanceEvent>>) -> Self {
        let mut truth = MarketTruth::default();
        for provider in providers {
            truth.destroyed.extend(provider.destroyed());
            for (id, machine) in provider.machines() {
                truth.alive.insert(id, (machine.launched_at, machine.alive_until()));
            }
        }
        for (id, chain) in chains {
            let mut instance = Instance::default();
            for event in chain {
                if let InstanceEvent::LaunchFailed { class: FailureClass::NoOfferFits, at, .. } = event
                    && offer_fits(providers, &instance, *at)
                {
                    truth.fitting.insert((id.clone(), *at));
                }
                instance.fold(event.clone());
            }
        }
        truth
    }
}

/// Whether any provider's catalog holds an offer that selection would choose for the chain at
/// `at`, with nothing avoided and only prices its budget can still pay for.
fn offer_fits(providers: &[Arc<Market>], instance: &Instance, at: DateTime<Utc>) -> bool {
    let Some(request) = &instance.request else { return false };
    let filter = OfferFilter::for_launch(request);
    let mut offers: Vec<_> = providers.iter().flat_map(|p| p.catalog().offers(&filter, at, true)).collect();
    for offer in &mut offers {
        for price in [&mut offer.spot_price, &mut offer.on_demand_price] {
            if price.is_some_and(|p| !instance.can_afford(p, offer.billing)) {
                *price = None;
            }
        }
    }
    matches!(select(request, &offers, &[]), Selection::Chosen { .. })
}
