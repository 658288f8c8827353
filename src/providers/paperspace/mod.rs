//! Paperspace (DigitalOcean) machines through the public v1 API (`https://api.paperspace.com/v1`,
//! `Authorization: Bearer <key>`); the settings URL is the host root and `/v1/...` is appended.
//!
//! What makes Paperspace different, and why this client looks as it does:
//! - **No preemptible machines.** Every offer is on demand; a spot launch is `invalid_request`.
//! - **No price API** and no machine-type listing. Offers are the rows of a dated price table
//!   shipped with tgp ([`prices`]), checked against `GET /machine-availability`. The table's date
//!   is in every offer id (`A100-80G/NY2/prices-2026-11-27`) and logged when the client starts.
//! - Machines are VMs: the launch image chooses an OS template; SSH key and environment go into a
//!   run-once startup script ([`launch`]).
//! - An interruption is a machine turned `off` (or `stopping`) outside tgp.
//!
//! Options (`[paperspace] options` in tgp's configuration): `template_id` (the OS template for
//! `ubuntu:` images), `price_table` (a path replacing the shipped table), `disk_size` (GB,
//! default 100).

pub mod launch;
mod machines;
pub mod prices;
pub mod wire;

use std::path::Path;

use async_trait::async_trait;
use chrono::Utc;
use reqwest::Method;
use tgp_actors::provider::{
    DiskRoom, LaunchReceipt, LaunchSpec, MachineStatus, Offer, OfferFilter, ProviderClient, ProviderError,
    ProviderInfo, ProviderInstance, RateLimits, Specs,
};
use tgp_events::events::{Connection, FailureClass};
use tgp_events::{AttemptId, BillingGranularity, BillingUnit, GpuType, ProviderName, Region, SpotPolicy};

use self::prices::PriceTable;
use self::wire::{Availability, Machine, Page};
use super::api_change::{ApiChangeKind, ApiChangeReporter};
use super::config::{ConfigError, ProviderKind, ProviderSettings};
use super::http::{self, ProviderHttp};
use super::options::ClientOptions;

/// Items asked per list page (the API's maximum).
pub const PAGE_LIMIT: u32 = 120;
/// A listing longer than this many pages is a provider loop, not an account.
const MAX_PAGES: usize = 1000;
/// The smallest and largest boot disk Paperspace creates, in GB.
pub const MIN_DISK_GB: u32 = 50;
/// See [`MIN_DISK_GB`].
pub const MAX_DISK_GB: u32 = 2000;
/// How Paperspace bills utilisation: by the hour. Per-second metering is claimed only by a third
/// party (unconfirmed), so tgp assumes started hours, the costlier reading. Monthly storage and
/// access fees are not part of the hourly price.
pub const BILLING: BillingGranularity = BillingGranularity { unit: BillingUnit::Hour, minimum_seconds: 0 };

const EP_AVAILABILITY: &str = "GET /v1/machine-availability";
const EP_CREATE: &str = "POST /v1/machines";
const EP_LIST: &str = "GET /v1/machines";
const EP_GET: &str = "GET /v1/machines/{id}";
const EP_DELETE: &str = "DELETE /v1/machines/{id}";
const EP_TEMPLATES: &str = "GET /v1/os-templates";
const EP_SCRIPTS: &str = "GET /v1/startup-scripts";
const EP_SCRIPT_CREATE: &str = "POST /v1/startup-scripts";
const EP_SCRIPT_DELETE: &str = "DELETE /v1/startup-scripts/{id}";

/// The Paperspace client. Paperspace has no preemptible machines and no price API: offers are on
/// demand only, priced from the dated table in [`prices`].
pub struct PaperspaceClient {
    http: ProviderHttp,
    name: ProviderName,
    prices: PriceTable,
    template_id: Option<String>,
    disk_size: u32,
}

impl PaperspaceClient {
    /// Builds the client from its settings (host root, key, options `template_id`,
    /// `price_table`, `disk_size`, `request_timeout_ms`); refuses a missing key or a bad price
    /// table or option.
    pub fn from_settings(settings: &ProviderSettings, reporter: ApiChangeReporter) -> Result<Self, ProviderError> {
        let options = ClientOptions::new(ProviderKind::Paperspace, settings);
        let read = || -> Result<Self, ConfigError> {
            let prices =
                PriceTable::load(options.text("price_table").map(Path::new)).map_err(|e| ConfigError::OptionFile {
                    provider: ProviderKind::Paperspace.name(),
                    key: "price_table",
                    source: e.into(),
                })?;
            let disk_size = options.number("disk_size", 100, MIN_DISK_GB..=MAX_DISK_GB)?;
            let template_id = options.text("template_id").filter(|t| !t.is_empty()).map(str::to_string);
            tracing::info!(as_of = %prices.as_of, "Paperspace has no price API: offers are priced from tgp's price table as of this date");
            let base = format!("{}/v1", options.url().trim_end_matches('/'));
            let http = options.http(&base, reporter, wire::parse_error_body)?;
            Ok(PaperspaceClient { http, name: options.name(), prices, template_id, disk_size })
        };
        read().map_err(|e| options.refusal(e))
    }

    /// The price table in use (its `as_of` date is what offers state).
    pub fn price_table(&self) -> &PriceTable {
        &self.prices
    }

    /// The offer id for a machine type in a region: `<type>/<region code>/prices-<as_of>`, so the
    /// price table's date is visible wherever the offer is shown.
    pub fn offer_id(&self, machine_type: &str, api_region: &str) -> String {
        format!("{machine_type}/{}/prices-{}", wire::short_from_api(api_region), self.prices.as_of)
    }

    /// Decodes one machine (the answer of `GET /machines/{id}`), as `status` does.
    pub fn parse_machine(&self, body: &[u8]) -> Result<ProviderInstance, ProviderError> {
        let machine: Machine = self.http.decode(EP_GET, body)?;
        Ok(self.instance(EP_GET, machine))
    }

    /// Decodes one page of `GET /machines`: the machines and the next cursor (`items` `null`
    /// or absent is an error, as in a listing).
    pub fn parse_machine_page(&self, body: &[u8]) -> Result<(Vec<ProviderInstance>, Option<String>), ProviderError> {
        let page: Page<Machine> = self.http.decode(EP_LIST, body)?;
        let next = page.has_more.then_some(page.next_page).flatten();
        let items = page.items.require(&self.http, EP_LIST, "items")?;
        let machines = items.into_iter().map(|m| self.instance(EP_LIST, m)).collect();
        Ok((machines, next))
    }

    fn error(&self, class: FailureClass, message: impl Into<String>) -> ProviderError {
        ProviderError::new(&self.name, class, message)
    }

    fn instance(&self, endpoint: &str, m: Machine) -> ProviderInstance {
        let status = if m.dt_deleted.is_some() {
            MachineStatus::Terminated
        } else {
            wire::map_state(&m.state).unwrap_or_else(|| {
                // Unknown states are watched as starting: a new value is most likely another
                // transition (like `upgrading`), and calling it terminated would let tgp forget a
                // machine that may still bill.
                self.http.report(endpoint, ApiChangeKind::UnknownStatus(m.state.clone()));
                MachineStatus::Starting
            })
        };
        let connection = match (&status, &m.public_ip) {
            (MachineStatus::Running, Some(ip)) => Connection {
                public_ip: Some(ip.clone()),
                ssh_host: Some(ip.clone()),
                ssh_port: Some(22),
                ssh_user: Some(launch::SSH_USER.to_string()),
            },
            _ => Connection::default(),
        };
        ProviderInstance {
            label: AttemptId::from_label(&m.name).map(|_| m.name.clone()),
            hourly_price: self.prices.hourly(&m.machine_type),
            billing: Some(BILLING),
            raw_status: m.state,
            status,
            connection,
            id: m.id,
        }
    }

    fn check_id(&self, id: &str) -> Result<(), ProviderError> {
        if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            Ok(())
        } else {
            Err(self.error(FailureClass::InvalidRequest, format!("{id:?} is not a Paperspace id")))
        }
    }

    async fn available(&self, machine_type: &str, api_region: &str) -> Result<bool, ProviderError> {
        let request = self
            .http
            .request(Method::GET, "/machine-availability")
            .query(&[("machineType", machine_type), ("region", api_region)]);
        let answer: Availability = self.http.json(EP_AVAILABILITY, request).await?;
        Ok(answer.available)
    }

    /// Every page of a list endpoint, one call per page. Any bad page (an error, `items` `null`
    /// or absent, a broken cursor) refuses the whole listing: a partial one would make the
    /// machines on the other pages look gone.
    async fn list_all<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        endpoint: &str,
        filters: &[(&str, &str)],
    ) -> Result<Vec<T>, ProviderError> {
        let mut items = Vec::new();
        let mut after: Option<String> = None;
        for page_number in 1..=MAX_PAGES {
            let on_page = |e| http::on_page(e, page_number);
            let limit = PAGE_LIMIT.to_string();
            let mut query: Vec<(&str, &str)> = vec![("limit", limit.as_str())];
            query.extend_from_slice(filters);
            if let Some(cursor) = after.as_deref() {
                query.push(("after", cursor));
            }
            let request = self.http.request(Method::GET, path).query(&query);
            let page: Page<T> = self.http.json(endpoint, request).await.map_err(on_page)?;
            items.extend(page.items.require(&self.http, endpoint, "items").map_err(on_page)?);
            match (page.has_more, page.next_page) {
                (true, Some(next)) if after.as_deref() != Some(next.as_str()) => after = Some(next),
                (true, _) => {
                    let what = "hasMore without a new nextPage cursor".to_string();
                    self.http.report(endpoint, ApiChangeKind::UnexpectedShape(what.clone()));
                    return Err(on_page(self.error(FailureClass::ContractChanged, format!("{endpoint}: {what}"))));
                }
                (false, _) => return Ok(items),
            }
        }
        Err(self.error(FailureClass::ContractChanged, format!("{endpoint}: more than {MAX_PAGES} pages")))
    }
}

#[async_trait]
impl ProviderClient for PaperspaceClient {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            name: self.name.clone(),
            supports_spot: false,
            supports_bids: false,
            docs_url: "https://docs.digitalocean.com/reference/paperspace/api-reference/".into(),
        }
    }

    /// 200 requests a minute, the figure tgp's notes give; Paperspace documents none.
    fn rate_limits(&self) -> RateLimits {
        RateLimits { requests_per_minute: 200, burst: 10, launches: None }
    }

    fn translate_gpu(&self, gpu: GpuType) -> Option<String> {
        wire::label_from_gpu(gpu).map(str::to_string)
    }

    fn translate_region(&self, region: &Region) -> Option<String> {
        wire::api_from_region(region).map(str::to_string)
    }

    /// On-demand offers from the price table, one availability call per machine type and region
    /// that passes the filter. Spot-only asks get none: Paperspace has no preemptible machines.
    async fn list_offers(&self, filter: &OfferFilter) -> Result<Vec<Offer>, ProviderError> {
        if filter.spot == Some(SpotPolicy::SpotOnly) {
            return Ok(Vec::new());
        }
        let now = Utc::now();
        let mut offers = Vec::new();
        for (label, row) in &self.prices.machine_types {
            let (base, count) = wire::split_label(label);
            let gpu = wire::gpu_from_label(base);
            if filter.gpu_type.is_some_and(|g| gpu != Some(g))
                || filter.min_gpu_count.is_some_and(|n| count < n)
                || filter.max_machine_price.is_some_and(|max| row.hourly > max)
            {
                continue;
            }
            for api_region in &row.regions {
                let region = wire::region_from_api(api_region);
                if !filter.regions.is_empty() && !region.as_ref().is_some_and(|r| filter.regions.contains(r)) {
                    continue;
                }
                let available = match self.available(label, api_region).await {
                    Ok(available) => available,
                    // The table names a type or region the API refuses: the table is stale. The
                    // offer stays visible, unavailable, and the refusal is logged.
                    Err(e) if matches!(e.class, FailureClass::InvalidRequest | FailureClass::NotFound) => {
                        tracing::warn!(error = %e, machine_type = %label, region = %api_region, "Paperspace refuses a price-table entry");
                        false
                    }
                    Err(e) => return Err(e),
                };
                offers.push(Offer {
                    id: self.offer_id(label, api_region),
                    provider: self.name.clone(),
                    gpu_type: gpu,
                    provider_gpu_name: label.clone(),
                    gpu_count: count,
                    region,
                    provider_region: api_region.clone(),
                    on_demand_price: Some(row.hourly),
                    spot_price: None,
                    reliability: None,
                    available: u32::from(available),
                    billing: BILLING,
                    observed_at: now,
                    specs: specs(row),
                });
            }
        }
        Ok(offers)
    }

    /// Checks everything Paperspace cannot take before any call; see [`launch`].
    async fn launch(&self, spec: &LaunchSpec) -> Result<LaunchReceipt, ProviderError> {
        self.launch_machine(spec).await
    }

    /// Deletes the machine (Ok when already gone), then its startup script, if tgp made one.
    async fn terminate(&self, provider_instance_id: &str) -> Result<(), ProviderError> {
        self.terminate_machine(provider_instance_id).await
    }

    /// One machine. Only Paperspace's own not-found (404 with code `NOT_FOUND`) is `NotFound`;
    /// a 404 without it (a proxy, a wrong host root) concludes nothing and is `Unknown`. A
    /// machine with `dtDeleted` set is `Ok(Terminated)`.
    async fn status(&self, provider_instance_id: &str) -> Result<ProviderInstance, ProviderError> {
        self.check_id(provider_instance_id)?;
        let request = self.http.request(Method::GET, &format!("/machines/{provider_instance_id}"));
        let machine: Machine = self.http.json(EP_GET, request).await.map_err(|mut e| {
            if e.class == FailureClass::NotFound && e.code.as_deref() != Some("NOT_FOUND") {
                e.class = FailureClass::Unknown;
                e.message = format!(
                    "{} (not Paperspace's not-found answer; nothing is concluded about machine {provider_instance_id})",
                    e.message
                );
            }
            e
        })?;
        Ok(self.instance(EP_GET, machine))
    }

    async fn list_instances(&self) -> Result<Vec<ProviderInstance>, ProviderError> {
        let machines: Vec<Machine> = self.list_all("/machines", EP_LIST, &[]).await?;
        Ok(machines.into_iter().map(|m| self.instance(EP_LIST, m)).collect())
    }
}

/// What a price-table row says of its machine type. A machine's disk is a block volume of 50 GB
/// to 2 TB chosen at creation, and Paperspace runs its own datacenters, so every host is secure.
fn specs(row: &prices::PriceRow) -> Specs {
    Specs {
        vcpus: row.vcpus,
        cpu_ram_gb: row.memory_gib.and_then(super::gib_to_gb),
        disk: DiskRoom::UpTo(MAX_DISK_GB),
        secure: Some(true),
    }
}
