//! The in-memory market's catalog: six GPU types in three regions in four sizes, priced from a
//! seed, and how a launch of one of its offers is quoted.

use chrono::{DateTime, Utc};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use tgp_actors::provider::{DiskRoom, LaunchSpec, Offer, OfferFilter, ProviderError, Specs};
use tgp_events::events::FailureClass;
use tgp_events::{BillingGranularity, BillingUnit, GpuType, Money, ProviderName, Region};

/// What an in-memory market sells and how it answers about it, the same for `tgp-dev run`'s
/// simulated market and `tgp-dev sim`'s providers (each with its own seed).
pub struct Catalog {
    provider: ProviderName,
    offers: Vec<Offer>,
}

impl Catalog {
    /// The catalog of `seed` for `provider`.
    pub fn new(seed: u64, provider: &ProviderName, now: DateTime<Utc>) -> Self {
        Catalog { provider: provider.clone(), offers: offer_table(seed, provider, now) }
    }

    /// The provider's name for a standard GPU type.
    pub fn translate_gpu(&self, gpu: GpuType) -> Option<String> {
        self.offers.iter().find(|o| o.gpu_type == Some(gpu)).map(|o| o.provider_gpu_name.clone())
    }

    /// The provider's name for a standard region.
    pub fn translate_region(&self, region: &Region) -> Option<String> {
        self.offers.iter().find(|o| o.region.as_ref() == Some(region)).map(|o| o.provider_region.clone())
    }

    /// The offers that fit, observed `now`; without spot prices while `spot` is withdrawn.
    pub fn offers(&self, filter: &OfferFilter, now: DateTime<Utc>, spot: bool) -> Vec<Offer> {
        self.offers
            .iter()
            .map(|o| Offer { observed_at: now, spot_price: o.spot_price.filter(|_| spot), ..o.clone() })
            .filter(|o| filter.matches(o))
            .collect()
    }

    /// The offer a launch names and the hourly price it will bill (the bid, for spot).
    pub fn quote(&self, spec: &LaunchSpec) -> Result<(&Offer, Money), ProviderError> {
        let offer = self.offers.iter().find(|o| o.id == spec.offer_id).ok_or_else(|| {
            ProviderError::new(&self.provider, FailureClass::NotFound, format!("no offer {}", spec.offer_id))
        })?;
        let price = if spec.spot { spec.bid.or(offer.spot_price) } else { offer.on_demand_price }.ok_or_else(|| {
            ProviderError::new(&self.provider, FailureClass::InvalidRequest, "offer not sold that way")
        })?;
        Ok((offer, price))
    }
}

/// The simulated catalog: six GPU types in three regions in four sizes, seeded prices around the
/// late-2026 market, exact to the cent.
fn offer_table(seed: u64, provider: &ProviderName, now: DateTime<Utc>) -> Vec<Offer> {
    // Base on-demand prices per GPU-hour, roughly the late-2026 market.
    const BASE: [(GpuType, &str, i64); 6] = [
        (GpuType::H100, "H100 SXM 80GB", 249),
        (GpuType::H200, "H200 SXM 141GB", 329),
        (GpuType::A100_80GB, "A100 SXM 80GB", 149),
        (GpuType::L40S, "L40S 48GB", 99),
        (GpuType::A6000, "RTX A6000 48GB", 59),
        (GpuType::RTX4090, "RTX 4090 24GB", 39),
    ];
    const REGIONS: [(&str, &str); 3] =
        [("us-east", "sim-us-east-1"), ("us-west", "sim-us-west-2"), ("eu-central", "sim-eu-central-1")];
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut offers = Vec::new();
    for (gpu, name, cents) in BASE {
        for (region, provider_region) in REGIONS {
            for count in [1u32, 2, 4, 8] {
                // +-20% around the base, exact to the cent.
                let per_gpu = cents * rng.random_range(80..=120) / 100;
                let spot_per_gpu = per_gpu * rng.random_range(35..=60) / 100;
                offers.push(Offer {
                    id: format!("{}-{}-{count}x", gpu.name().to_lowercase(), region),
                    provider: provider.clone(),
                    gpu_type: Some(gpu),
                    provider_gpu_name: name.to_string(),
                    gpu_count: count,
                    region: Some(region.parse().expect("standard region")),
                    provider_region: provider_region.to_string(),
                    on_demand_price: Some(Money::from_cents(per_gpu * i64::from(count))),
                    spot_price: Some(Money::from_cents(spot_per_gpu * i64::from(count))),
                    reliability: Some(Decimal::new(rng.random_range(950..=999), 3)),
                    available: rng.random_range(2..=20),
                    billing: BillingGranularity { unit: BillingUnit::Second, minimum_seconds: 60 },
                    observed_at: now,
                    specs: Specs {
                        vcpus: Some(12 * count),
                        cpu_ram_gb: Some(64 * count),
                        disk: DiskRoom::UpTo(500 * count),
                        secure: Some(true),
                    },
                });
            }
        }
    }
    offers
}
