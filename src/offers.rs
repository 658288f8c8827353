//! Offers across providers, cheapest first, with a line per provider saying how it answered.
//! The controller answers `tgp.api.offers` with this through its provider actors (so every program
//! asking shares their limits and caches); `tgp offers` uses the same when no controller runs.

use std::sync::Arc;

use tgp_actors::provider::{Offer, OfferFilter, ProviderClient};
use tgp_actors::selection::unmet;
use tgp_events::api::{OfferView, OffersReply, OffersRequest, ProviderAnswer};
use tgp_events::{Money, SpotPolicy};

/// The filter an offers request means.
pub fn filter(request: &OffersRequest) -> OfferFilter {
    OfferFilter {
        gpu_type: request.gpu_type,
        min_gpu_count: request.gpu_count,
        regions: request.regions.clone(),
        max_machine_price: request.max_price.zip(request.gpu_count).map(|(price, count)| price * count),
        spot: request.spot_policy,
        needs: request.needs(),
    }
}

/// The price an offer is ranked by under a spot policy (`None`: not sold that way).
fn rank_price(offer: &Offer, policy: Option<SpotPolicy>) -> Option<Money> {
    match policy {
        Some(SpotPolicy::SpotOnly) => offer.spot_price,
        Some(SpotPolicy::OnDemandOnly) => offer.on_demand_price,
        _ => [offer.spot_price, offer.on_demand_price].into_iter().flatten().min(),
    }
}

/// The wire view of an offer.
pub fn view(offer: &Offer) -> OfferView {
    OfferView {
        provider: offer.provider.clone(),
        offer_id: offer.id.clone(),
        gpu_type: offer.gpu_type,
        provider_gpu_name: offer.provider_gpu_name.clone(),
        gpu_count: offer.gpu_count,
        region: offer.region.clone(),
        provider_region: offer.provider_region.clone(),
        on_demand_price: offer.on_demand_price,
        spot_price: offer.spot_price,
        reliability: offer.reliability.map(|r| r.to_string()),
        vcpus: offer.specs.vcpus,
        cpu_ram_gb: offer.specs.cpu_ram_gb,
        max_disk_gb: offer.specs.disk.max_gb(),
        secure: offer.specs.secure,
        available: offer.available,
        billing: offer.billing,
        observed_at: offer.observed_at,
    }
}

/// Asks every provider at once; `skipped` are providers not asked (no key, disabled), reported as such.
pub async fn gather(
    providers: &[Arc<dyn ProviderClient>],
    skipped: Vec<ProviderAnswer>,
    request: &OffersRequest,
) -> OffersReply {
    let filter = filter(request);
    let (providers, left_out): (Vec<_>, Vec<_>) = providers.iter().partition(|p| filter.needs.allows(&p.info().name));
    let asks = providers.into_iter().map(|p| {
        let filter = filter.clone();
        async move { (p.info().name, p.list_offers(&filter).await) }
    });
    let mut offers = Vec::new();
    let mut answers = skipped;
    answers.extend(left_out.into_iter().map(|p| ProviderAnswer {
        provider: p.info().name.to_string(),
        status: "left_out".into(),
        message: "not asked: the request's providers or exclude_providers leave it out".into(),
    }));
    for (provider, answer) in futures::future::join_all(asks).await {
        match answer {
            Ok(found) => {
                answers.push(ProviderAnswer {
                    provider: provider.to_string(),
                    status: "ok".into(),
                    message: format!("{} offers", found.len()),
                });
                offers.extend(found);
            }
            Err(e) => answers.push(ProviderAnswer {
                provider: provider.to_string(),
                status: if e.message.contains("provider disabled") { "disabled" } else { "error" }.into(),
                message: e.to_string(),
            }),
        }
    }
    // What a provider could not filter on is checked here, as selection checks it for a launch.
    offers.retain(|o| unmet(&filter.needs, o).is_none());
    offers.retain(|o| match (rank_price(o, request.spot_policy), request.max_price) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(price), Some(max)) => {
            price.as_decimal() <= max.as_decimal() * rust_decimal::Decimal::from(o.gpu_count.max(1))
        }
    });
    offers.sort_by(|a, b| {
        rank_price(a, request.spot_policy).cmp(&rank_price(b, request.spot_policy)).then_with(|| a.id.cmp(&b.id))
    });
    answers.sort_by(|a, b| a.provider.cmp(&b.provider));
    OffersReply { offers: offers.iter().map(view).collect(), providers: answers }
}
