//! Launching: what RunPod cannot take is refused before any call; on-demand pods through REST v2
//! (after a catalog check that also gives the price), spot pods through GraphQL
//! `podRentInterruptable` with the machine bid split per GPU and checked against the minimum bid.

use reqwest::Method;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::json;
use tgp_actors::provider::{LaunchReceipt, LaunchSpec, ProviderError};
use tgp_events::events::FailureClass;
use tgp_events::{BillingGranularity, Money};

use super::graphql::{GpuTypesData, MINIMUM_BID, RENT_SPOT, RentData};
use super::offers::{Cloud, OfferKey};
use super::wire::{Pod, SPOT_MARKER, stock_level};
use super::{RunPodClient, names};

impl RunPodClient {
    /// Checks the spec, builds the environment (with the SSH key as `PUBLIC_KEY`) and launches.
    pub(super) async fn launch_checked(&self, spec: &LaunchSpec) -> Result<LaunchReceipt, ProviderError> {
        let invalid = |m: String| self.error(FailureClass::InvalidRequest, m);
        let key = OfferKey::parse(&spec.offer_id)
            .ok_or_else(|| invalid(format!("{:?} is not a RunPod offer id", spec.offer_id)))?;
        if spec.gpu_count != key.count {
            return Err(invalid(format!("offer {} is for {} GPUs, not {}", spec.offer_id, key.count, spec.gpu_count)));
        }
        if spec.image.trim().is_empty() {
            return Err(invalid("RunPod needs an image".into()));
        }
        let mut env = serde_json::Map::new();
        for (k, v) in &spec.env {
            if k.is_empty() || k.contains('=') || k == SPOT_MARKER {
                return Err(invalid(format!("RunPod cannot take the environment variable {k:?}")));
            }
            env.insert(k.clone(), json!(v.expose()));
        }
        if let Some(ssh) = &spec.ssh_public_key {
            // RunPod's images install PUBLIC_KEY into root's authorized_keys.
            match spec.env.get("PUBLIC_KEY") {
                Some(other) if other.expose() != ssh => {
                    return Err(invalid("PUBLIC_KEY in the environment differs from the SSH key".into()));
                }
                _ => env.insert("PUBLIC_KEY".into(), json!(ssh)),
            };
        }
        if spec.spot { self.launch_spot(spec, &key, env).await } else { self.launch_on_demand(spec, &key, env).await }
    }

    async fn launch_on_demand(
        &self,
        spec: &LaunchSpec,
        key: &OfferKey,
        env: serde_json::Map<String, serde_json::Value>,
    ) -> Result<LaunchReceipt, ProviderError> {
        let gpu = self.catalog(key.cloud, key.count, Some(&key.gpu)).await?;
        let gpu = gpu
            .first()
            .ok_or_else(|| self.error(FailureClass::NotFound, format!("RunPod has no GPU type {:?}", key.gpu)))?;
        if self.offers_of(gpu, key.cloud, key.count, &[]).is_empty() {
            return Err(self.error(
                FailureClass::InvalidRequest,
                format!("RunPod does not sell {} × {} on {} cloud", key.count, key.gpu, key.cloud.wire()),
            ));
        }
        let per_gpu = match key.cloud {
            Cloud::Secure => gpu.price.secure,
            Cloud::Community => gpu.price.community,
        }
        .unwrap_or_default();
        let place = gpu.data_centers.iter().find(|dc| dc.id == key.location);
        if place.and_then(|dc| dc.availability.as_deref()).and_then(stock_level).is_none_or(|l| l == 0) {
            return Err(self.error(
                FailureClass::Capacity,
                format!("RunPod lists no {} × {} in {} now", key.count, key.gpu, key.location),
            ));
        }
        let body = json!({
            "name": spec.attempt_id.as_str(),
            "image": spec.image,
            "gpu": {"id": key.gpu, "count": key.count},
            "cloud": key.cloud.wire(),
            "dataCenterIds": [key.location],
            "disk": spec.disk_gb.unwrap_or(self.container_disk_gb),
            "ports": ["22/tcp"],
            "env": env,
            "startSsh": true,
        });
        let endpoint = "POST /v2/pods";
        let request = self.rest.request(Method::POST, "/v2/pods").json(&body);
        let pod: Pod = self.rest.json(endpoint, request).await.map_err(|mut e| {
            let m = e.message.to_ascii_lowercase();
            if m.contains("instances available") || m.contains("not enough free gpus") {
                e.class = FailureClass::Capacity;
            } else if m.contains("http 402") {
                e.class = FailureClass::InvalidRequest;
            }
            e
        })?;
        let price = pod.cost.filter(|c| *c > Decimal::ZERO).unwrap_or(per_gpu * Decimal::from(key.count));
        Ok(LaunchReceipt {
            provider_instance_id: pod.id,
            hourly_price: Money::from_decimal(price),
            billing: BillingGranularity::PER_SECOND,
        })
    }

    async fn launch_spot(
        &self,
        spec: &LaunchSpec,
        key: &OfferKey,
        mut env: serde_json::Map<String, serde_json::Value>,
    ) -> Result<LaunchReceipt, ProviderError> {
        if !self.spot_available() {
            return Err(self.error(
                FailureClass::InvalidRequest,
                "RunPod no longer serves spot pods; spot is off for this client, launch on demand",
            ));
        }
        let secure = key.cloud == Cloud::Secure;
        let mut place = json!({"gpuCount": key.count, "secureCloud": secure});
        let field = if names::is_data_center(&key.location) { "dataCenterId" } else { "countryCode" };
        place[field] = json!(key.location);
        let data: GpuTypesData = self
            .graphql("MinimumBid", MINIMUM_BID, json!({"gpuTypesInput": {"id": key.gpu}, "lowestPriceInput": place}))
            .await?;
        let lowest = data
            .gpu_types
            .into_iter()
            .find(|g| g.id == key.gpu)
            .ok_or_else(|| self.error(FailureClass::NotFound, format!("RunPod has no GPU type {:?}", key.gpu)))?
            .lowest_price;
        let in_stock =
            lowest.as_ref().and_then(|l| l.stock_status.as_deref()).is_some_and(|s| !s.eq_ignore_ascii_case("none"));
        let minimum =
            lowest.and_then(|l| l.minimum_bid_price).filter(|p| *p > Decimal::ZERO && in_stock).ok_or_else(|| {
                self.error(
                    FailureClass::Capacity,
                    format!("RunPod has no spot {} × {} in {} now", key.count, key.gpu, key.location),
                )
            })?;
        // The bid tgp holds is for the whole machine; RunPod charges bidPerGpu × GPUs. Rounded
        // down to a tenth of a cent so the machine never costs more than the bid.
        let per_gpu = match spec.bid {
            Some(bid) => {
                (bid.as_decimal() / Decimal::from(key.count)).round_dp_with_strategy(3, RoundingStrategy::ToZero)
            }
            None => minimum,
        };
        if per_gpu < minimum {
            return Err(self.error(
                FailureClass::Capacity,
                format!(
                    "bid ${per_gpu}/GPU-hour is below RunPod's minimum ${minimum} for {} × {} in {}",
                    key.count, key.gpu, key.location
                ),
            ));
        }
        env.insert(SPOT_MARKER.into(), json!("1"));
        let env: Vec<_> = env.into_iter().map(|(k, v)| json!({"key": k, "value": v})).collect();
        let mut input = json!({
            "name": spec.attempt_id.as_str(),
            "imageName": spec.image,
            "gpuTypeId": key.gpu,
            "gpuCount": key.count,
            "bidPerGpu": per_gpu.to_f64().unwrap_or_default(),
            "cloudType": key.cloud.wire(),
            "containerDiskInGb": spec.disk_gb.unwrap_or(self.container_disk_gb),
            "volumeInGb": 0,
            "ports": "22/tcp",
            "startSsh": true,
            "supportPublicIp": true,
            "env": env,
        });
        input[field] = json!(key.location);
        let data: RentData = self.graphql("podRentInterruptable", RENT_SPOT, json!({"input": input})).await?;
        let pod = data.pod.ok_or_else(|| {
            self.error(FailureClass::ContractChanged, "podRentInterruptable answered no pod and no error")
        })?;
        let price = pod.cost_per_hr.filter(|c| *c > Decimal::ZERO).unwrap_or(per_gpu * Decimal::from(key.count));
        Ok(LaunchReceipt {
            provider_instance_id: pod.id,
            hourly_price: Money::from_decimal(price),
            billing: BillingGranularity::PER_SECOND,
        })
    }
}
