//! The one interface every provider implements, and the normalized shapes it speaks.
//!
//! The instance actors and selection only ever see these types; each concrete client (in the `tgp`
//! crate) translates its provider's wire format into them. Nothing here does I/O.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tgp_events::events::{Connection, FailureClass, InterruptionReason, OfferSummary};
use tgp_events::{
    AttemptId, BillingGranularity, GpuType, InstanceId, LaunchCommand, Money, Needs, ProviderName, Region, SpotPolicy,
};

/// One offer, normalized across providers.
#[derive(Clone, Debug, PartialEq)]
pub struct Offer {
    /// The provider's id for the offer (what its launch call takes).
    pub id: String,
    /// Which provider.
    pub provider: ProviderName,
    /// Standard GPU type; `None` when the provider's name has no translation yet (the offer is
    /// kept and shown, marked, but never selected).
    pub gpu_type: Option<GpuType>,
    /// The provider's own GPU name.
    pub provider_gpu_name: String,
    /// GPUs in the machine.
    pub gpu_count: u32,
    /// Standard region; `None` when the provider's name has no translation yet (kept, marked).
    pub region: Option<Region>,
    /// The provider's own region name.
    pub provider_region: String,
    /// Hourly price of the whole machine on demand, when offered on demand.
    pub on_demand_price: Option<Money>,
    /// Hourly price of the whole machine as spot (or the minimum bid), when offered as spot.
    pub spot_price: Option<Money>,
    /// Reliability score from 0 to 1, where the provider gives one (as a decimal string's value).
    pub reliability: Option<rust_decimal::Decimal>,
    /// Machines of this kind available now.
    pub available: u32,
    /// How the provider bills it.
    pub billing: BillingGranularity,
    /// When the provider said so.
    pub observed_at: DateTime<Utc>,
    /// What the offer says of the machine beyond its GPUs.
    pub specs: Specs,
}

/// What an offer says of the machine beyond its GPUs, for the launch's [`Needs`]. `None` (or
/// [`DiskRoom::Unknown`]) where the provider does not say: such an offer is excluded whenever a
/// launch asks about that field, since tgp cannot vouch for it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Specs {
    /// vCPUs the renter gets (on a shared host, its share).
    pub vcpus: Option<u32>,
    /// CPU RAM the renter gets, in GB (on a shared host, its share).
    pub cpu_ram_gb: Option<u32>,
    /// How much disk the machine can have.
    pub disk: DiskRoom,
    /// Whether the host is secure: a datacenter the provider vouches for.
    pub secure: Option<bool>,
}

/// How much disk an offer's machine can have.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DiskRoom {
    /// The offer does not say.
    #[default]
    Unknown,
    /// At most this many GB.
    UpTo(u32),
    /// The provider takes the size at launch and places the machine where it fits (RunPod); a
    /// size it cannot place fails the launch as a capacity failure.
    PlacedAtLaunch,
}

impl DiskRoom {
    /// The most GB, where the offer gives a number.
    pub fn max_gb(self) -> Option<u32> {
        match self {
            DiskRoom::UpTo(gb) => Some(gb),
            _ => None,
        }
    }
}

impl Offer {
    /// The offer as one purchasable option: spot or on demand, with its price. `None` when it is
    /// not sold that way, or its GPU or region has no standard name.
    pub fn summary(&self, spot: bool) -> Option<OfferSummary> {
        let price = if spot { self.spot_price } else { self.on_demand_price }?;
        Some(OfferSummary {
            provider: self.provider.clone(),
            offer_id: self.id.clone(),
            gpu_type: self.gpu_type?,
            gpu_count: self.gpu_count,
            region: self.region.clone()?,
            hourly_price: price,
            spot,
        })
    }
}

/// What to look for when listing offers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OfferFilter {
    /// Only this GPU type.
    pub gpu_type: Option<GpuType>,
    /// At least this many GPUs in one machine.
    pub min_gpu_count: Option<u32>,
    /// Only these regions (empty: any).
    pub regions: Vec<Region>,
    /// Only machines at most this price per hour (the spot price for spot).
    pub max_machine_price: Option<Money>,
    /// Spot only, on demand only, or either.
    pub spot: Option<SpotPolicy>,
    /// Disk, CPU, host and provider requirements. Clients translate what their API can filter on
    /// and price the disk asked for; the rest is checked on the offers by selection
    /// ([`crate::selection::unmet`]), which records why an offer falls short.
    pub needs: Needs,
}

impl OfferFilter {
    /// Does a normalized offer fit? Clients call it after the provider's own (often coarser)
    /// filtering, so every provider filters the same way.
    pub fn matches(&self, offer: &Offer) -> bool {
        let price_ok = |p: Option<Money>| match (p, self.max_machine_price) {
            (Some(p), Some(max)) => p <= max,
            (Some(_), None) => true,
            (None, _) => false,
        };
        self.gpu_type.is_none_or(|g| offer.gpu_type == Some(g))
            && self.min_gpu_count.is_none_or(|n| offer.gpu_count >= n)
            && (self.regions.is_empty() || offer.region.as_ref().is_some_and(|r| self.regions.contains(r)))
            && match self.spot {
                Some(SpotPolicy::SpotOnly) => price_ok(offer.spot_price),
                Some(SpotPolicy::OnDemandOnly) => price_ok(offer.on_demand_price),
                _ => price_ok(offer.spot_price) || price_ok(offer.on_demand_price),
            }
    }

    /// The filter that finds candidates for a launch command.
    pub fn for_launch<V>(request: &LaunchCommand<V>) -> Self {
        OfferFilter {
            gpu_type: Some(request.gpu_type),
            min_gpu_count: Some(request.gpu_count),
            regions: request.regions.clone(),
            max_machine_price: Some(request.max_machine_price()),
            spot: Some(request.spot_policy),
            needs: request.needs(),
        }
    }
}

/// What tgp asks a provider to start.
#[derive(Clone, Debug, PartialEq)]
pub struct LaunchSpec {
    /// Names or labels the machine, so reconciliation can find it.
    pub attempt_id: AttemptId,
    /// The offer to launch.
    pub offer_id: String,
    /// Spot (with `bid`) or on demand.
    pub spot: bool,
    /// The bid for spot capacity, where the provider takes one.
    pub bid: Option<Money>,
    /// GPUs wanted.
    pub gpu_count: u32,
    /// Image, environment and SSH key from the launch command.
    pub image: String,
    /// Environment variables.
    pub env: std::collections::BTreeMap<String, tgp_events::sealed::Secret>,
    /// SSH public key.
    pub ssh_public_key: Option<String>,
    /// Disk in GB from the launch command; `None` leaves the provider client's default.
    pub disk_gb: Option<u32>,
}

/// The provider's answer to a launch: the machine, and what it will bill.
#[derive(Clone, Debug, PartialEq)]
pub struct LaunchReceipt {
    /// The provider's id for the machine.
    pub provider_instance_id: String,
    /// The hourly price it will bill for the whole machine.
    pub hourly_price: Money,
    /// How it bills.
    pub billing: BillingGranularity,
}

/// A machine's state as the provider reports it, mapped to what tgp cares about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MachineStatus {
    /// Created, booting.
    Starting,
    /// Up.
    Running,
    /// Stopped without tgp asking.
    Interrupted(InterruptionReason),
    /// Gone or being destroyed.
    Terminated,
}

impl MachineStatus {
    /// Whether the machine still exists at the provider: booting, up, or stopped by an
    /// interruption (a stopped machine may still bill storage until it is destroyed).
    pub fn still_exists(self) -> bool {
        !matches!(self, MachineStatus::Terminated)
    }
}

/// One machine in a provider's listing.
#[derive(Clone, Debug, PartialEq)]
pub struct ProviderInstance {
    /// The provider's id for the machine.
    pub id: String,
    /// The name or label tgp gave it, if any; machines without one are never touched.
    pub label: Option<String>,
    /// Its mapped status.
    pub status: MachineStatus,
    /// The provider's raw status, kept as evidence.
    pub raw_status: String,
    /// How to reach it.
    pub connection: Connection,
    /// The hourly price it bills, when the listing says (used when adopting it after a crash).
    pub hourly_price: Option<Money>,
    /// How it bills, when the listing says.
    pub billing: Option<BillingGranularity>,
}

/// One provider's machines at one moment: what status polling fans out to the instance actors.
#[derive(Clone, Debug)]
pub struct ProviderListing {
    /// Whose machines.
    pub provider: ProviderName,
    /// When the list call started: a machine launched after this may be missing without being gone.
    pub taken_at: DateTime<Utc>,
    /// The machines by provider id.
    pub by_id: HashMap<String, ProviderInstance>,
    /// The ids of machines carrying a tgp attempt label, by the chain the label names: each of
    /// thousands of instance actors finds its own machines without scanning the listing. Ordered,
    /// so that the orphan sweep calls the provider in the same order every run (the simulation's
    /// digests depend on it once the provider actor's limiter queues those calls).
    pub by_instance: BTreeMap<InstanceId, Vec<(AttemptId, String)>>,
    /// How many listings in a row, this one included, left out more of the machines tgp expects
    /// there than a glitch would explain (0: none, it is believable). No absence from a suspect
    /// listing counts toward a conclusion; after the first, the provider is listed again at once
    /// before any machine is asked about by itself (see [`crate::evidence`]).
    pub suspect: u32,
}

impl ProviderListing {
    /// Indexes a provider's answer.
    pub fn new(provider: ProviderName, taken_at: DateTime<Utc>, machines: Vec<ProviderInstance>) -> Self {
        let mut by_instance: BTreeMap<InstanceId, Vec<(AttemptId, String)>> = BTreeMap::new();
        for m in &machines {
            if let Some(attempt) = m.label.as_deref().and_then(AttemptId::from_label)
                && let Some(instance) = attempt.instance()
            {
                by_instance.entry(instance).or_default().push((attempt, m.id.clone()));
            }
        }
        let by_id = machines.into_iter().map(|m| (m.id.clone(), m)).collect();
        ProviderListing { provider, taken_at, by_id, by_instance, suspect: 0 }
    }

    /// The machine carrying a tgp attempt label.
    pub fn by_label(&self, attempt: &AttemptId) -> Option<&ProviderInstance> {
        let machines = self.by_instance.get(&attempt.instance()?)?;
        machines.iter().find(|(a, _)| a == attempt).and_then(|(_, id)| self.by_id.get(id))
    }

    /// The labelled machines of one chain, with their attempts.
    pub fn of_instance(&self, instance: &InstanceId) -> impl Iterator<Item = (&AttemptId, &ProviderInstance)> {
        self.by_instance
            .get(instance)
            .into_iter()
            .flatten()
            .filter_map(|(attempt, id)| self.by_id.get(id).map(|m| (attempt, m)))
    }
}

/// Static facts about a provider, for docs, `tgp offers` and selection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderInfo {
    /// Its name.
    pub name: ProviderName,
    /// Offers interruptible capacity?
    pub supports_spot: bool,
    /// Takes bids for spot?
    pub supports_bids: bool,
    /// Where its documentation lives.
    pub docs_url: String,
}

/// A provider's request budget, the figure the rate limiter enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimits {
    /// Requests allowed per minute.
    pub requests_per_minute: u32,
    /// Burst above the steady rate.
    pub burst: u32,
    /// A tighter limit on launch calls alone, where the provider has one (Lambda's one per 12 s
    /// and five per minute). The provider actor schedules launches by it, so the wait is seen
    /// in its metrics and never spent inside a client.
    pub launches: Option<LaunchSpacing>,
}

/// How far apart launch calls must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchSpacing {
    /// The least time between two launch calls.
    pub min_interval: std::time::Duration,
    /// The most launch calls in any minute (0: no such limit).
    pub per_minute: u32,
}

/// A failed provider call, in the one taxonomy all providers share.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{provider}: {class:?}: {message}{}", code.as_ref().map(|c| format!(" (code {c})")).unwrap_or_default())]
pub struct ProviderError {
    /// Which provider.
    pub provider: ProviderName,
    /// The class, which decides retries and failover.
    pub class: FailureClass,
    /// The provider's own message, or what went wrong talking to it.
    pub message: String,
    /// The provider's own error code, when it gives one.
    pub code: Option<String>,
    /// Seconds to wait, from a `Retry-After` header.
    pub retry_after_seconds: Option<u64>,
}

impl ProviderError {
    /// Builds an error without a code or retry hint.
    pub fn new(provider: &ProviderName, class: FailureClass, message: impl Into<String>) -> Self {
        ProviderError {
            provider: provider.clone(),
            class,
            message: message.into(),
            code: None,
            retry_after_seconds: None,
        }
    }

    /// The same error with the provider's own code.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// True for errors a retry may cure: rate limits and outages.
    pub fn is_retryable(&self) -> bool {
        matches!(self.class, FailureClass::RateLimited | FailureClass::ProviderOutage)
    }
}

/// The operations tgp needs from every provider. Implementations talk the provider's real wire
/// format (or, for the simulated market, keep the state in memory); callers never learn which.
#[async_trait]
pub trait ProviderClient: Send + Sync {
    /// Name, capabilities and documentation.
    fn info(&self) -> ProviderInfo;
    /// The provider's request budget.
    fn rate_limits(&self) -> RateLimits;
    /// The provider's own GPU name for a standard type, if it has one.
    fn translate_gpu(&self, gpu: GpuType) -> Option<String>;
    /// The provider's own region name for a standard region, if it has one.
    fn translate_region(&self, region: &Region) -> Option<String>;
    /// Offers matching the filter, normalized.
    async fn list_offers(&self, filter: &OfferFilter) -> Result<Vec<Offer>, ProviderError>;
    /// The cheapest price per GPU-hour for a GPU type in a region: (on demand, spot). Derived
    /// from `list_offers` the same way for every provider, so prices compare across providers.
    async fn normalized_pricing(
        &self,
        gpu: GpuType,
        region: &Region,
    ) -> Result<(Option<Money>, Option<Money>), ProviderError> {
        let filter = OfferFilter { gpu_type: Some(gpu), regions: vec![region.clone()], ..Default::default() };
        let offers = self.list_offers(&filter).await?;
        let per_gpu = |price: Option<Money>, gpus: u32| {
            price.map(|p| Money::from_decimal(p.as_decimal() / rust_decimal::Decimal::from(gpus.max(1))))
        };
        Ok((
            offers.iter().filter_map(|o| per_gpu(o.on_demand_price, o.gpu_count)).min(),
            offers.iter().filter_map(|o| per_gpu(o.spot_price, o.gpu_count)).min(),
        ))
    }
    /// Starts a machine, named or labelled with the attempt id.
    async fn launch(&self, spec: &LaunchSpec) -> Result<LaunchReceipt, ProviderError>;
    /// Destroys a machine. Succeeds when it is gone, including when it was already gone.
    async fn terminate(&self, provider_instance_id: &str) -> Result<(), ProviderError>;
    /// One machine's state.
    async fn status(&self, provider_instance_id: &str) -> Result<ProviderInstance, ProviderError>;
    /// Every machine in the account, in one call (pages aside): how status is polled.
    async fn list_instances(&self) -> Result<Vec<ProviderInstance>, ProviderError>;
    /// An offering failed for lack of capacity or was interrupted: leave it out for a while.
    /// Clients without a cache ignore it; the provider actor's handle remembers it.
    fn report_unavailable(&self, _offer_id: &str, _spot: bool) {}
}

/// Every provider tgp may use, by name.
#[derive(Clone, Default)]
pub struct Market {
    providers: Vec<Arc<dyn ProviderClient>>,
}

impl Market {
    /// A market of the given providers.
    pub fn new(providers: Vec<Arc<dyn ProviderClient>>) -> Self {
        Market { providers }
    }

    /// All providers.
    pub fn providers(&self) -> &[Arc<dyn ProviderClient>] {
        &self.providers
    }

    /// One provider by name.
    pub fn get(&self, name: &ProviderName) -> Option<&Arc<dyn ProviderClient>> {
        self.providers.iter().find(|p| &p.info().name == name)
    }
}
