//! Offers: the REST v2 catalog (one call per cloud) joined with GraphQL spot prices while RunPod
//! still serves them, as whole-machine offers; and the offer id that carries what a launch needs.

use chrono::Utc;
use reqwest::Method;
use rust_decimal::Decimal;
use serde_json::json;
use tgp_actors::provider::{DiskRoom, Offer, ProviderError, Specs};
use tgp_events::{BillingGranularity, Money};

use super::graphql::{self, GpuTypesData, SPOT_PRICES};
use super::wire::{CatalogGpu, CatalogGpus, stock_level};
use super::{RunPodClient, names};
use crate::providers::api_change::ApiChangeKind;

/// RunPod's two clouds: RunPod's data centers, and third-party hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cloud {
    Secure,
    Community,
}

impl Cloud {
    pub(super) fn wire(self) -> &'static str {
        match self {
            Cloud::Secure => "SECURE",
            Cloud::Community => "COMMUNITY",
        }
    }

    fn parse(s: &str) -> Option<Cloud> {
        match s {
            "SECURE" => Some(Cloud::Secure),
            "COMMUNITY" => Some(Cloud::Community),
            _ => None,
        }
    }
}

/// What an offer id names: `<CLOUD>/<location>/<gpu count>/<gpuTypeId>` (the GPU id last, so
/// any character in it is kept).
pub(super) struct OfferKey {
    pub(super) cloud: Cloud,
    pub(super) location: String,
    pub(super) count: u32,
    pub(super) gpu: String,
}

impl OfferKey {
    pub(super) fn id(&self) -> String {
        format!("{}/{}/{}/{}", self.cloud.wire(), self.location, self.count, self.gpu)
    }

    pub(super) fn parse(id: &str) -> Option<OfferKey> {
        let mut parts = id.splitn(4, '/');
        let cloud = Cloud::parse(parts.next()?)?;
        let location = parts.next()?.to_string();
        let count = parts.next()?.parse().ok()?;
        let gpu = parts.next()?.to_string();
        (!location.is_empty() && !gpu.is_empty() && count > 0).then_some(OfferKey { cloud, location, count, gpu })
    }
}

/// Percent-encodes one path segment (GPU ids contain spaces).
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl RunPodClient {
    /// One GPU type of the v2 catalog for a cloud and count, with where it is.
    pub(super) async fn catalog(
        &self,
        cloud: Cloud,
        count: u32,
        gpu: Option<&str>,
    ) -> Result<Vec<CatalogGpu>, ProviderError> {
        let path = match gpu {
            Some(id) => format!("/v2/catalog/gpus/{}", segment(id)),
            None => "/v2/catalog/gpus".to_string(),
        };
        let request = self.rest.request(Method::GET, &path).query(&[
            ("include", "AVAILABILITY"),
            ("product", "POD"),
            ("cloud", cloud.wire()),
            ("count", &count.to_string()),
        ]);
        let endpoint = format!("GET {}", if gpu.is_some() { "/v2/catalog/gpus/{id}" } else { "/v2/catalog/gpus" });
        if gpu.is_some() {
            Ok(vec![self.rest.json::<CatalogGpu>(&endpoint, request).await?])
        } else {
            Ok(self.rest.json::<CatalogGpus>(&endpoint, request).await?.gpus)
        }
    }

    /// Global spot prices per GPU type; empty when spot is off or the query fails (then offers
    /// simply carry no spot price: on-demand keeps working).
    pub(super) async fn spot_prices(&self) -> Vec<graphql::GqlGpuType> {
        if !self.spot_available() {
            return Vec::new();
        }
        match self.graphql::<GpuTypesData>("SpotPrices", SPOT_PRICES, json!({})).await {
            Ok(data) => data.gpu_types,
            Err(e) => {
                tracing::warn!(error = %e, "runpod: no spot prices this time");
                Vec::new()
            }
        }
    }

    pub(super) fn offers_of(
        &self,
        gpu: &CatalogGpu,
        cloud: Cloud,
        count: u32,
        spot: &[graphql::GqlGpuType],
    ) -> Vec<Offer> {
        let sold = match cloud {
            Cloud::Secure => gpu.secure != Some(false),
            Cloud::Community => gpu.community != Some(false),
        };
        let max = gpu.max_count.as_ref().and_then(|m| match cloud {
            Cloud::Secure => m.secure,
            Cloud::Community => m.community,
        });
        if !sold || max.is_some_and(|m| count > m) {
            return Vec::new();
        }
        let per_gpu = match cloud {
            Cloud::Secure => gpu.price.secure,
            Cloud::Community => gpu.price.community,
        }
        .filter(|p| *p > Decimal::ZERO);
        let spot_per_gpu = spot
            .iter()
            .find(|s| s.id == gpu.id)
            .and_then(|s| match cloud {
                Cloud::Secure => s.secure_spot_price,
                Cloud::Community => s.community_spot_price,
            })
            .filter(|p| *p > Decimal::ZERO);
        if per_gpu.is_none() && spot_per_gpu.is_none() {
            return Vec::new();
        }
        let machine = |p: Decimal| Money::from_decimal(p * Decimal::from(count));
        gpu.data_centers
            .iter()
            .map(|dc| {
                let level = dc.availability.as_deref().unwrap_or("NONE");
                let available = stock_level(level).unwrap_or_else(|| {
                    self.rest
                        .report("GET /v2/catalog/gpus", ApiChangeKind::UnknownStatus(format!("availability {level}")));
                    1
                });
                let key = OfferKey { cloud, location: dc.id.clone(), count, gpu: gpu.id.clone() };
                Offer {
                    id: key.id(),
                    provider: self.name.clone(),
                    gpu_type: names::standard_gpu(&gpu.id),
                    provider_gpu_name: gpu.id.clone(),
                    gpu_count: count,
                    region: names::standard_region(&dc.id),
                    provider_region: dc.id.clone(),
                    on_demand_price: per_gpu.map(machine),
                    spot_price: spot_per_gpu.map(machine),
                    reliability: None,
                    available,
                    billing: BillingGranularity::PER_SECOND,
                    observed_at: Utc::now(),
                    // RunPod takes the disk size at launch and places the pod where it fits.
                    specs: Specs {
                        disk: DiskRoom::PlacedAtLaunch,
                        secure: Some(cloud == Cloud::Secure),
                        ..Specs::default()
                    },
                }
            })
            .collect()
    }
}
