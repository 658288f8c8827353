//! RunPod client. On-demand pods and the catalog go through REST v2 (`/v2/...` under the host
//! root, `https://api.runpod.io` by default).
//!
//! RunPod ended spot pods on 11 September 2026, and its GraphQL API (the only one that ever
//! rented them) follows REST v1 out in early 2027, so spot is **off** unless the `spot = graphql`
//! option asks for it, for accounts that still have it. Then spot goes through GraphQL (`/graphql`
//! under the same root, or the `graphql_url` option's): spot prices, the minimum bid, and
//! `podRentInterruptable` with `bidPerGpu` per GPU. When spot disappears there too (410, or the
//! schema refusing the mutation or a price field), spot is switched off for this client: offers
//! carry no spot price and spot launches are refused before anything reaches RunPod.
//!
//! Options (`[runpod] options`): `cloud` = `all` (default) | `secure` | `community`;
//! `container_disk_gb` (default 50); `spot` = `off` (default) | `graphql`; `graphql_url` (host
//! root for GraphQL); `request_timeout_ms` (per call; default 30000).

mod graphql;
mod launch;
pub mod names;
mod offers;
pub mod wire;

use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use reqwest::Method;
use tgp_actors::provider::{
    LaunchReceipt, LaunchSpec, Offer, OfferFilter, ProviderClient, ProviderError, ProviderInfo, ProviderInstance,
    RateLimits,
};
use tgp_events::events::FailureClass;
use tgp_events::{GpuType, Money, ProviderName, Region, SpotPolicy};

use self::offers::Cloud;
use self::wire::{Pod, PodList, pod_instance};
use super::api_change::{ApiChangeKind, ApiChangeReporter};
use super::config::{ConfigError, ProviderKind, ProviderSettings};
use super::http::ProviderHttp;
use super::options::ClientOptions;

/// The RunPod client: why it exists is to speak RunPod's two APIs behind the one trait.
pub struct RunPodClient {
    name: ProviderName,
    rest: ProviderHttp,
    graphql: ProviderHttp,
    spot: AtomicBool,
    clouds: Vec<Cloud>,
    container_disk_gb: u32,
}

impl RunPodClient {
    /// A client for the account in `settings` (host root in `settings.url`).
    pub fn from_settings(settings: &ProviderSettings, reporter: ApiChangeReporter) -> Result<Self, ProviderError> {
        let options = ClientOptions::new(ProviderKind::RunPod, settings);
        let read = || -> Result<Self, ConfigError> {
            let choice = |k: &str| options.text(k).map(str::to_ascii_lowercase);
            let clouds = match choice("cloud").as_deref() {
                None | Some("all") => vec![Cloud::Secure, Cloud::Community],
                Some("secure") => vec![Cloud::Secure],
                Some("community") => vec![Cloud::Community],
                Some(other) => {
                    return Err(ConfigError::BadOption {
                        provider: ProviderKind::RunPod.name(),
                        key: "cloud",
                        value: other.to_string(),
                        expected: "all, secure or community".into(),
                    });
                }
            };
            let spot = match choice("spot").as_deref() {
                None | Some("off") => false,
                Some("graphql") => true,
                Some(other) => {
                    return Err(ConfigError::BadOption {
                        provider: ProviderKind::RunPod.name(),
                        key: "spot",
                        value: other.to_string(),
                        expected: "off (RunPod ended spot pods in September 2026) or graphql (an account that still \
                                   rents spot through GraphQL)"
                            .into(),
                    });
                }
            };
            let container_disk_gb = options.number("container_disk_gb", 50, 1..=u32::MAX)?;
            let graphql_root = options.text("graphql_url").unwrap_or(options.url());
            let parse = wire::parse_error;
            Ok(RunPodClient {
                rest: options.http(options.url(), reporter.clone(), parse)?,
                graphql: options.http(graphql_root, reporter, parse)?,
                spot: AtomicBool::new(spot),
                name: options.name(),
                clouds,
                container_disk_gb,
            })
        };
        read().map_err(|e| options.refusal(e))
    }

    /// Whether spot is still offered: false once RunPod retired it (reported once).
    pub fn spot_available(&self) -> bool {
        self.spot.load(Ordering::SeqCst)
    }

    fn error(&self, class: FailureClass, message: impl Into<String>) -> ProviderError {
        ProviderError::new(&self.name, class, message)
    }

    fn instance(&self, endpoint: &str, pod: &Pod) -> ProviderInstance {
        let (instance, unknown) = pod_instance(pod);
        if unknown {
            self.rest.report(endpoint, ApiChangeKind::UnknownStatus(pod.status.clone()));
        }
        instance
    }

    fn pod_path(&self, id: &str) -> Result<String, ProviderError> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(self.error(FailureClass::NotFound, format!("{id:?} is not a RunPod pod id")));
        }
        Ok(format!("/v2/pods/{id}"))
    }
}

#[async_trait]
impl ProviderClient for RunPodClient {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            name: self.name.clone(),
            supports_spot: self.spot_available(),
            supports_bids: self.spot_available(),
            docs_url: "https://docs.runpod.io/api-reference-v2/overview".into(),
        }
    }

    fn rate_limits(&self) -> RateLimits {
        // RunPod 100/min (tgp's design figure; the v2 spec's example quota of 60/min is unconfirmed).
        RateLimits { requests_per_minute: 100, burst: 10, launches: None }
    }

    fn translate_gpu(&self, gpu: GpuType) -> Option<String> {
        names::runpod_gpu(gpu).map(str::to_string)
    }

    fn translate_region(&self, region: &Region) -> Option<String> {
        names::runpod_region(region).map(str::to_string)
    }

    async fn list_offers(&self, filter: &OfferFilter) -> Result<Vec<Offer>, ProviderError> {
        let count = filter.min_gpu_count.unwrap_or(1).max(1);
        let spot = if filter.spot == Some(SpotPolicy::OnDemandOnly) { Vec::new() } else { self.spot_prices().await };
        let mut offers = Vec::new();
        // Secure-only asks the secure cloud alone; RunPod's catalog says nothing of vCPUs or RAM,
        // so a launch that asks for them leaves RunPod's offers out (`selection::unmet`).
        let clouds = self.clouds.iter().filter(|c| !filter.needs.secure_only || **c == Cloud::Secure);
        for cloud in clouds {
            for gpu in self.catalog(*cloud, count, None).await? {
                if filter.gpu_type.is_some() && names::standard_gpu(&gpu.id) != filter.gpu_type {
                    continue;
                }
                offers.extend(self.offers_of(&gpu, *cloud, count, &spot));
            }
        }
        offers.retain(|o| filter.regions.is_empty() || o.region.as_ref().is_some_and(|r| filter.regions.contains(r)));
        let fits = |p: Option<Money>| p.is_some_and(|p| filter.max_machine_price.is_none_or(|max| p <= max));
        offers.retain(|o| match filter.spot {
            Some(SpotPolicy::SpotOnly) => fits(o.spot_price),
            Some(SpotPolicy::OnDemandOnly) => fits(o.on_demand_price),
            _ => fits(o.spot_price) || fits(o.on_demand_price),
        });
        Ok(offers)
    }

    async fn launch(&self, spec: &LaunchSpec) -> Result<LaunchReceipt, ProviderError> {
        self.launch_checked(spec).await
    }

    async fn terminate(&self, provider_instance_id: &str) -> Result<(), ProviderError> {
        let path = match self.pod_path(provider_instance_id) {
            Ok(path) => path,
            Err(_) => return Ok(()), // no such pod can exist
        };
        match self.rest.send("DELETE /v2/pods/{id}", self.rest.request(Method::DELETE, &path)).await {
            Ok(_) => Ok(()),
            Err(e) if e.class == FailureClass::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// One pod. Only RunPod's own not-found (a 404 problem+json, `"detail": "pod not found"`) is
    /// `NotFound`; a 404 without it (a proxy, a wrong host root) concludes nothing and is
    /// `Unknown`. An id RunPod could never have given is refused as invalid.
    async fn status(&self, provider_instance_id: &str) -> Result<ProviderInstance, ProviderError> {
        let path = self.pod_path(provider_instance_id).map_err(|mut e| {
            e.class = FailureClass::InvalidRequest;
            e
        })?;
        let endpoint = "GET /v2/pods/{id}";
        let pod: Pod = self.rest.json(endpoint, self.rest.request(Method::GET, &path)).await.map_err(|mut e| {
            let runpods_own = e.code.is_some() && e.message.to_ascii_lowercase().contains("not found");
            if e.class == FailureClass::NotFound && !runpods_own {
                e.class = FailureClass::Unknown;
                e.message = format!(
                    "{} (not RunPod's not-found answer; nothing is concluded about pod {provider_instance_id})",
                    e.message
                );
            }
            e
        })?;
        Ok(self.instance(endpoint, &pod))
    }

    /// v2 lists every pod in one answer (no pagination in the spec); cluster members excluded.
    /// `pods` `null` or absent is an error, never "no pods".
    async fn list_instances(&self) -> Result<Vec<ProviderInstance>, ProviderError> {
        let endpoint = "GET /v2/pods";
        let request = self.rest.request(Method::GET, "/v2/pods").query(&[("includeClusterPods", "false")]);
        let list: PodList = self.rest.json(endpoint, request).await?;
        let pods = list.pods.require(&self.rest, endpoint, "pods")?;
        Ok(pods.iter().map(|p| self.instance(endpoint, p)).collect())
    }
}
