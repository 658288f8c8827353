//! The Vast.ai client: tgp's `ProviderClient` over Vast's REST API (shared/providers/vastai.md).
//!
//! Offers come from `POST /api/v0/bundles/` (the query object is the body; `type` `"on-demand"` or
//! `"bid"`); each offer is one machine slice, priced for the whole slice per hour: on demand at
//! `dph_total` (storage for the disk tgp allocates included), spot at `min_bid` plus
//! `storage_total_cost` (a bid rental pays storage too). A launch rents with
//! `PUT /api/v0/asks/{id}/` (label = attempt id, `price` = the bid less storage for interruptible,
//! `null` for on demand), status is `GET /api/v0/instances/{id}/`, polling is the paginated
//! `GET /api/v1/instances/` (one call per 25-instance page), and `DELETE /api/v0/instances/{id}/`
//! destroys. An outbid instance shows as stopped (there is no "outbid" value). Vast bills per
//! second with no minimum. Translation tables: [`names`]; JSON shapes and status meaning: [`wire`].

mod launch;
pub mod names;
mod offers;
pub mod wire;

use async_trait::async_trait;
use chrono::Utc;
use reqwest::Method;
use serde_json::{Value, json};
use tgp_actors::provider::{
    LaunchReceipt, LaunchSpec, MachineStatus, Offer, OfferFilter, ProviderClient, ProviderError, ProviderInfo,
    ProviderInstance, RateLimits,
};
use tgp_events::events::{Connection, FailureClass};
use tgp_events::{BillingGranularity, GpuType, Money, ProviderName, Region, SpotPolicy};

use super::api_change::{ApiChangeKind, ApiChangeReporter};
use super::config::{ConfigError, ProviderKind, ProviderSettings};
use super::http::{self, ProviderHttp};
use super::options::ClientOptions;
use wire::{InstancePage, WireInstance};

/// tgp's name for Vast.ai.
pub const PROVIDER: &str = "vastai";
/// Disk (GB) allocated to an instance whose launch names no `disk_gb`, unless the `disk_gb` option
/// says otherwise; it is billed as storage and priced into `dph_total` through `allocated_storage`.
pub const DEFAULT_DISK_GB: u32 = 40;
/// Vast's smallest disk; a launch asking for less gets (and pays for) this much.
pub const MIN_DISK_GB: u32 = 8;
/// Offers asked for per search unless the `search_limit` option says otherwise.
pub const DEFAULT_SEARCH_LIMIT: u32 = 200;
/// Instances per page of `GET /api/v1/instances/` (Vast's maximum).
pub const PAGE_SIZE: u32 = 25;
/// Pages followed before a listing is called broken (25 000 instances).
const MAX_PAGES: usize = 1000;
/// Vast bills running compute and existing storage per second, with no minimum.
pub const BILLING: BillingGranularity = BillingGranularity::PER_SECOND;

const SEARCH: &str = "POST /api/v0/bundles/";
const LIST: &str = "GET /api/v1/instances/";

/// How an offer search prices offers: `type` in the query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pricing {
    OnDemand,
    Bid,
}

impl Pricing {
    fn wire(self) -> &'static str {
        match self {
            Pricing::OnDemand => "on-demand",
            Pricing::Bid => "bid",
        }
    }
}

/// A Vast.ai account, spoken to over its REST API.
pub struct VastAiClient {
    http: ProviderHttp,
    name: ProviderName,
    disk_gb: u32,
    search_limit: u32,
}

impl VastAiClient {
    /// Builds the client from its settings: the host root (`https://console.vast.ai`), the key
    /// (sent as a Bearer token), and the options `disk_gb`, `search_limit` and
    /// `request_timeout_ms`.
    pub fn from_settings(settings: &ProviderSettings, reporter: ApiChangeReporter) -> Result<Self, ProviderError> {
        let options = ClientOptions::new(ProviderKind::VastAi, settings);
        let read = || -> Result<Self, ConfigError> {
            let disk_gb = options.number("disk_gb", DEFAULT_DISK_GB, MIN_DISK_GB..=u32::MAX)?;
            let search_limit = options.number("search_limit", DEFAULT_SEARCH_LIMIT, 1..=u32::MAX)?;
            let http = options.http(options.url(), reporter, wire::parse_error)?;
            Ok(VastAiClient { http, name: options.name(), disk_gb, search_limit })
        };
        read().map_err(|e| options.refusal(e))
    }

    fn error(&self, class: FailureClass, message: impl Into<String>) -> ProviderError {
        ProviderError::new(&self.name, class, message)
    }

    /// Vast answers a bad key on `/bundles/` with a 404 "Invalid user key" (OpenAPI): that is auth.
    fn reclass_auth(&self, mut e: ProviderError) -> ProviderError {
        if e.message.contains("Invalid user key") || e.code.as_deref() == Some("auth_error") {
            e.class = FailureClass::Auth;
        }
        e
    }

    /// One instance, mapped; unknown status values are reported, never fatal.
    fn describe(&self, endpoint: &str, w: WireInstance) -> ProviderInstance {
        let (status, raw_status, known) = wire::machine_status(&w);
        if !known {
            self.http.report(endpoint, ApiChangeKind::UnknownStatus(raw_status.clone()));
        }
        let trimmed = |s: &Option<String>| s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
        let connection = if status == MachineStatus::Running {
            let public_ip = trimmed(&w.public_ipaddr);
            let proxy_port = w.ssh_port.and_then(|p| u16::try_from(p).ok());
            let (ssh_host, ssh_port) = match (trimmed(&w.ssh_host), proxy_port) {
                // Vast's proxy works even where the host's direct ports are blocked.
                (Some(host), Some(port)) => (Some(host), Some(port)),
                _ => match wire::host_port(w.ports.as_ref(), 22) {
                    Some(port) => (public_ip.clone(), Some(port)),
                    None => (None, None),
                },
            };
            Connection { public_ip, ssh_user: ssh_host.as_ref().map(|_| "root".to_string()), ssh_host, ssh_port }
        } else {
            Connection::default()
        };
        ProviderInstance {
            id: w.id.to_string(),
            label: trimmed(&w.label),
            status,
            raw_status,
            connection,
            // What an interruptible rental is billed is unconfirmed; the journaled bid is used.
            hourly_price: match w.is_bid {
                Some(true) => None,
                _ => w.dph_total.map(Money::from_decimal),
            },
            billing: Some(BILLING),
        }
    }

    fn instance_id(&self, id: &str) -> Result<u64, ProviderError> {
        id.trim().parse().map_err(|_| {
            self.error(FailureClass::InvalidRequest, format!("{id:?} is not a Vast instance id (a whole number)"))
        })
    }

    /// One page of the instance list, optionally filtered on stored columns. A 410 (Vast's
    /// `deprecated_endpoint`) is an error and reported as the list going away, never "no
    /// machines" (skypilot#10517).
    async fn list_page(&self, after: Option<&str>, filters: Option<&Value>) -> Result<InstancePage, ProviderError> {
        let mut query: Vec<(&str, String)> =
            vec![("limit", PAGE_SIZE.to_string()), ("order_by", json!([{"col": "id", "dir": "asc"}]).to_string())];
        if let Some(filters) = filters {
            query.push(("select_filters", filters.to_string()));
        }
        if let Some(token) = after {
            query.push(("after_token", token.to_string()));
        }
        let request = self.http.request(Method::GET, "/api/v1/instances/").query(&query);
        self.http.json(LIST, request).await.inspect_err(|e| {
            if e.class == FailureClass::ContractChanged && e.message.starts_with(&format!("{LIST}: HTTP 410")) {
                self.http.report(LIST, ApiChangeKind::OperationGone(e.message.clone()));
            }
        })
    }

    /// Every instance matching `filters`, following `next_token`: one call per page. Any bad
    /// page (an error, a `null` or absent list, a broken cursor) refuses the whole listing.
    async fn list_all(&self, filters: Option<&Value>) -> Result<Vec<ProviderInstance>, ProviderError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for page_number in 1..=MAX_PAGES {
            let on_page = |e| http::on_page(e, page_number);
            let page = self.list_page(token.as_deref(), filters).await.map_err(on_page)?;
            let instances = page.instances.require(&self.http, LIST, "instances").map_err(on_page)?;
            out.extend(instances.into_iter().map(|w| self.describe(LIST, w)));
            match page.next_token.filter(|t| !t.trim().is_empty()) {
                Some(next) if token.as_deref() == Some(next.as_str()) => {
                    return Err(self.error(
                        FailureClass::ContractChanged,
                        format!("{LIST}: next_token {next:?} repeats; pagination broken"),
                    ));
                }
                Some(next) => token = Some(next),
                None => return Ok(out),
            }
        }
        Err(self
            .error(FailureClass::ContractChanged, format!("{LIST}: more than {MAX_PAGES} pages; pagination broken")))
    }
}

#[async_trait]
impl ProviderClient for VastAiClient {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            name: self.name.clone(),
            supports_spot: true,
            supports_bids: true,
            docs_url: "https://docs.vast.ai/api-reference/introduction".into(),
        }
    }

    /// 60 requests a minute (tgp's default; Vast publishes no figure) and no burst: Vast enforces a
    /// minimum interval between calls per endpoint, not a bucket.
    fn rate_limits(&self) -> RateLimits {
        RateLimits { requests_per_minute: 60, burst: 1, launches: None }
    }

    fn translate_gpu(&self, gpu: GpuType) -> Option<String> {
        names::vast_gpu_names(gpu).first().map(|n| n.to_string())
    }

    /// The country codes the `geolocation` search filter takes for the region (`"US"`,
    /// `"SE,NO,FI,..."`): Vast has no regions of its own.
    fn translate_region(&self, region: &Region) -> Option<String> {
        let countries = names::region_countries(region);
        (!countries.is_empty()).then(|| countries.join(","))
    }

    async fn list_offers(&self, filter: &OfferFilter) -> Result<Vec<Offer>, ProviderError> {
        let pricing = match filter.spot {
            Some(SpotPolicy::SpotOnly) => Pricing::Bid,
            _ => Pricing::OnDemand,
        };
        let offers = self.search(&self.search_query(filter, pricing)).await?;
        let now = Utc::now();
        Ok(offers.into_iter().map(|o| self.normalize(o, pricing, now)).filter(|o| filter.matches(o)).collect())
    }

    async fn launch(&self, spec: &LaunchSpec) -> Result<LaunchReceipt, ProviderError> {
        launch::launch(self, spec).await
    }

    async fn terminate(&self, provider_instance_id: &str) -> Result<(), ProviderError> {
        launch::terminate(self, provider_instance_id).await
    }

    /// One instance. Vast's "not found or destroyed" is `200 {"instances": null}` (vast-cli; a
    /// 404 with Vast's `no_such_instance` / `not_found` code is taken as the same): that alone is
    /// `NotFound`. A 404 without Vast's envelope (a proxy, a wrong host root) concludes nothing
    /// and is `Unknown`.
    async fn status(&self, provider_instance_id: &str) -> Result<ProviderInstance, ProviderError> {
        let id = self.instance_id(provider_instance_id)?;
        let endpoint = "GET /api/v0/instances/{id}/";
        let request = self.http.request(Method::GET, &format!("/api/v0/instances/{id}/")).query(&[("owner", "me")]);
        let answer: wire::OneInstance = self.http.json(endpoint, request).await.map_err(|mut e| {
            let vasts_own = matches!(e.code.as_deref(), Some("no_such_instance" | "not_found"));
            if e.class == FailureClass::NotFound && !vasts_own {
                e.class = FailureClass::Unknown;
                e.message =
                    format!("{} (not Vast's not-found answer; nothing is concluded about instance {id})", e.message);
            }
            e
        })?;
        match answer.instances {
            Some(w) => Ok(self.describe(endpoint, w)),
            None => Err(self.error(
                FailureClass::NotFound,
                format!("{endpoint}: instance {id} not found or destroyed (instances: null)"),
            )),
        }
    }

    async fn list_instances(&self) -> Result<Vec<ProviderInstance>, ProviderError> {
        self.list_all(None).await
    }
}
