//! Offer search on Vast.ai (shared/providers/vastai.md 3.1): the query object built from tgp's
//! filter (with the official CLI's default filters), and each offer normalized: the whole slice's
//! hourly price on demand (`dph_total`, storage for the allocated disk included) and as spot
//! (`min_bid` plus `storage_total_cost`, the same storage), its standard GPU and region where the
//! names translate.

use chrono::{DateTime, Utc};
use reqwest::Method;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Map, Value, json};
use tgp_actors::provider::{DiskRoom, Offer, OfferFilter, ProviderError, Specs};
use tgp_events::{Money, SpotPolicy};

use super::wire::{OffersAnswer, WireOffer};
use super::{BILLING, MIN_DISK_GB, Pricing, SEARCH, VastAiClient, names};

impl VastAiClient {
    /// The search query for a filter, with the official CLI's default filters.
    pub(super) fn search_query(&self, filter: &OfferFilter, pricing: Pricing) -> Value {
        let mut q = Map::new();
        q.insert("verified".into(), json!({"eq": true}));
        q.insert("external".into(), json!({"eq": false}));
        q.insert("rentable".into(), json!({"eq": true}));
        q.insert("rented".into(), json!({"eq": false}));
        if let Some(gpu) = filter.gpu_type {
            q.insert("gpu_name".into(), json!({"in": names::vast_gpu_names(gpu)}));
            let mut ram = Map::new();
            match names::gpu_ram_bounds(gpu) {
                (Some(low), _) => ram.insert("gte".into(), json!(low)),
                (_, Some(high)) => ram.insert("lt".into(), json!(high)),
                _ => None,
            };
            if !ram.is_empty() {
                q.insert("gpu_ram".into(), Value::Object(ram));
            }
        }
        if let Some(n) = filter.min_gpu_count {
            q.insert("num_gpus".into(), json!({"gte": n}));
        }
        if !filter.regions.is_empty() {
            let mut countries: Vec<&str> = filter.regions.iter().flat_map(names::region_countries).collect();
            countries.sort_unstable();
            countries.dedup();
            q.insert("geolocation".into(), json!({"in": countries}));
        }
        // Only a bound, re-checked exactly on the answer; the server compares floats anyway.
        if let (Pricing::OnDemand, Some(SpotPolicy::OnDemandOnly), Some(max)) =
            (pricing, filter.spot, filter.max_machine_price)
            && let Some(bound) = max.as_decimal().to_f64()
        {
            q.insert("dph_total".into(), json!({"lte": bound}));
        }
        // Bounds for the needs Vast can filter; each is re-checked exactly on the offers
        // (`selection::unmet`). `cpu_ram` filters the host's RAM, of which the renter gets a share:
        // a host with less cannot give enough.
        let needs = &filter.needs;
        let disk = self.disk_for(needs.disk_gb);
        q.insert("disk_space".into(), json!({"gte": disk}));
        if let Some(gb) = needs.min_cpu_ram_gb {
            q.insert("cpu_ram".into(), json!({"gte": u64::from(gb) * 1000}));
        }
        if let Some(n) = needs.min_vcpus {
            q.insert("cpu_cores_effective".into(), json!({"gte": n}));
        }
        if let Some(bound) = needs.min_reliability.and_then(|r| r.to_f64()) {
            q.insert("reliability2".into(), json!({"gte": bound}));
        }
        if needs.secure_only {
            q.insert("datacenter".into(), json!({"eq": true}));
        }
        q.insert("order".into(), json!([["dph_total", "asc"]]));
        q.insert("type".into(), json!(pricing.wire()));
        q.insert("allocated_storage".into(), json!(disk));
        q.insert("limit".into(), json!(self.search_limit));
        Value::Object(q)
    }

    pub(super) async fn search(&self, query: &Value) -> Result<Vec<WireOffer>, ProviderError> {
        let request = self.http.request(Method::POST, "/api/v0/bundles/").json(query);
        let answer: OffersAnswer = self.http.json(SEARCH, request).await.map_err(|e| self.reclass_auth(e))?;
        Ok(answer.offers.unwrap_or_default())
    }

    /// One Vast offer, normalized. Untranslated GPU or region names give `None` (kept, marked).
    pub(super) fn normalize(&self, o: WireOffer, pricing: Pricing, now: DateTime<Utc>) -> Offer {
        let geolocation = o.geolocation.as_deref().unwrap_or("").trim().to_string();
        let positive = |d: Option<Decimal>| d.filter(|p| *p > Decimal::ZERO).map(Money::from_decimal);
        // A bid rental pays its bid plus storage for the disk asked for, as on demand does (where
        // `dph_total` holds both): the spot price is the minimum bid plus `storage_total_cost`.
        // An offer that does not say what its storage costs has no spot price tgp can vouch for.
        let spot = match (o.min_bid.filter(|b| *b > Decimal::ZERO), o.storage_total_cost) {
            (Some(bid), Some(storage)) if storage >= Decimal::ZERO => Some(Money::from_decimal(bid + storage)),
            _ => None,
        };
        let (on_demand_price, spot_price) = match pricing {
            Pricing::OnDemand => (positive(o.dph_total), spot),
            // A bid search prices offers at the minimum bid; what `dph_total` then holds is
            // unconfirmed, so it is never read as an on-demand price.
            Pricing::Bid => (None, spot),
        };
        Offer {
            id: o.id.to_string(),
            provider: self.name.clone(),
            gpu_type: names::gpu_type(&o.gpu_name, o.gpu_ram),
            provider_gpu_name: o.gpu_name.trim().to_string(),
            gpu_count: o.num_gpus,
            region: names::region(&geolocation),
            provider_region: geolocation,
            on_demand_price,
            spot_price,
            reliability: o.reliability2.or(o.reliability),
            available: u32::from(o.rentable != Some(false) && o.rented != Some(true)),
            billing: BILLING,
            observed_at: now,
            specs: specs(&o),
        }
    }

    /// The disk a launch gets: what it asks, else the `disk_gb` option, and never under Vast's
    /// minimum.
    pub(super) fn disk_for(&self, asked: Option<u32>) -> u32 {
        asked.unwrap_or(self.disk_gb).max(MIN_DISK_GB)
    }
}

/// What a Vast offer says of its machine. The renter's vCPUs are `cpu_cores_effective`, and its
/// RAM the same share of the host's (`cpu_ram × effective / cores`, gpuhunt's rule); a host that
/// reports no cores says nothing of the RAM share.
fn specs(o: &WireOffer) -> Specs {
    let effective = o.cpu_cores_effective.filter(|e| *e > Decimal::ZERO);
    let ram_share = match (o.cpu_ram, o.cpu_cores.filter(|c| *c > 0), effective) {
        (Some(mb), Some(cores), Some(effective)) => {
            (Decimal::from(mb) * effective / Decimal::from(cores) / Decimal::from(1000)).floor().to_u32()
        }
        _ => None,
    };
    Specs {
        vcpus: effective.and_then(|e| e.floor().to_u32()),
        cpu_ram_gb: ram_share,
        disk: o.disk_space.and_then(|d| d.floor().to_u32()).map_or(DiskRoom::Unknown, DiskRoom::UpTo),
        secure: o.hosting_type.map(|h| h >= 1),
    }
}
