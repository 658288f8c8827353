//! Offers on Lambda: the `/instance-types` answer, one offer per GPU instance type and region
//! with capacity, at the type's one on-demand price.

use std::collections::BTreeMap;

use chrono::Utc;
use reqwest::Method;
use tgp_actors::provider::{DiskRoom, Offer, ProviderError, Specs};
use tgp_events::Money;

use super::wire::{self, InstanceTypeEntry};
use super::{BILLING, LambdaClient, names, offer_id};
use crate::providers::gib_to_gb;

impl LambdaClient {
    /// Every instance type with its price and the regions that have capacity now; offers and
    /// launches both read it.
    pub(super) async fn instance_types(&self) -> Result<BTreeMap<String, InstanceTypeEntry>, ProviderError> {
        self.call(Method::GET, "/instance-types", None).await
    }

    /// Offers from an `/instance-types` answer: one per (GPU type, region with capacity). CPU
    /// types are not GPU offers and are left out; sold-out types have no region to offer.
    pub(super) fn offers(&self, types: &BTreeMap<String, InstanceTypeEntry>) -> Vec<Offer> {
        let now = Utc::now();
        let mut out = Vec::new();
        for entry in types.values() {
            let t = &entry.instance_type;
            if t.specs.gpus == 0 {
                continue;
            }
            for region in &entry.regions_with_capacity_available {
                out.push(Offer {
                    id: offer_id(&t.name, &region.name),
                    provider: self.name.clone(),
                    gpu_type: names::gpu_type(&t.name, &t.gpu_description),
                    provider_gpu_name: if t.gpu_description.is_empty() {
                        t.name.clone()
                    } else {
                        t.gpu_description.clone()
                    },
                    gpu_count: t.specs.gpus,
                    region: names::region(&region.name),
                    provider_region: region.name.clone(),
                    on_demand_price: Some(Money::from_cents(t.price_cents_per_hour)),
                    spot_price: None,
                    reliability: None,
                    // Lambda gives no quantity: listed means at least one can launch now.
                    available: 1,
                    billing: BILLING,
                    observed_at: now,
                    specs: specs(&t.specs),
                });
            }
        }
        out
    }
}

/// What an instance type's `specs` say, in tgp's units: Lambda gives GiB, a launch asks GB. Local
/// storage is fixed per type and included in its price. Lambda runs its own datacenters, so every
/// host is secure. A zero (or a missing field) says nothing.
fn specs(specs: &wire::Specs) -> Specs {
    let known = |n: u32| (n > 0).then_some(n);
    Specs {
        vcpus: known(specs.vcpus),
        cpu_ram_gb: known(specs.memory_gib).and_then(gib_to_gb),
        disk: known(specs.storage_gib).and_then(gib_to_gb).map_or(DiskRoom::Unknown, DiskRoom::UpTo),
        secure: Some(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gib_become_whole_gb_and_zero_says_nothing() {
        let s = specs(&wire::Specs { gpus: 1, vcpus: 26, memory_gib: 200, storage_gib: 1024 });
        assert_eq!((s.vcpus, s.cpu_ram_gb, s.disk), (Some(26), Some(214), DiskRoom::UpTo(1099)));
        let silent = specs(&wire::Specs { gpus: 1, vcpus: 0, memory_gib: 0, storage_gib: 0 });
        assert_eq!((silent.vcpus, silent.cpu_ram_gb, silent.disk), (None, None, DiskRoom::Unknown));
    }
}
