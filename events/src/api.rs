//! Bodies of the request/reply service on `tgp.api.*`. Every reply is either a success body or
//! `{"error": {"code": ..., "message": ...}}`.

use serde::{Deserialize, Serialize};

use crate::events::Connection;
use crate::ids::{InstanceId, ProviderName};
use crate::money::Money;

/// Where an instance chain is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Accepted; no offer chosen yet.
    Requested,
    /// An offer is chosen or a provider call is in flight.
    Launching,
    /// The provider accepted the launch; the machine is booting.
    Starting,
    /// Up and reachable.
    Running,
    /// A spot machine was taken away; a replacement is being found.
    Interrupted,
    /// Termination asked; waiting for the provider to confirm.
    Terminating,
    /// Over; nothing runs.
    Terminated,
    /// Gave up; nothing runs.
    Failed,
}

impl InstanceState {
    /// True for the two end states: nothing will happen to the chain again.
    pub fn is_final(self) -> bool {
        matches!(self, InstanceState::Terminated | InstanceState::Failed)
    }

    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            InstanceState::Requested => "requested",
            InstanceState::Launching => "launching",
            InstanceState::Starting => "starting",
            InstanceState::Running => "running",
            InstanceState::Interrupted => "interrupted",
            InstanceState::Terminating => "terminating",
            InstanceState::Terminated => "terminated",
            InstanceState::Failed => "failed",
        }
    }
}

/// What `tgp.api.launch`, `terminate`, `get` and (as a list) `list` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceSummary {
    /// The chain's id.
    pub instance_id: InstanceId,
    /// Where it is.
    pub state: InstanceState,
    /// The current provider, once an offer is chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderName>,
    /// The current provider machine, once launched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_instance_id: Option<String>,
    /// The hourly price being billed, once launched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly_price: Option<Money>,
    /// How to reach it, once running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<Connection>,
}

/// Body of `tgp.api.get` and `tgp.api.terminate` (which also takes an optional `reason`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetRequest {
    /// The instance asked about.
    pub instance_id: InstanceId,
}

/// Body of `tgp.api.list`: `{}` for every instance tgp holds in memory (unfinished ones), or filters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListRequest {
    /// Only instances in this state.
    #[serde(default)]
    pub state: Option<InstanceState>,
    /// Only instances at this provider.
    #[serde(default)]
    pub provider: Option<ProviderName>,
    /// Ask page by page: only instances whose id sorts after this one (the last page's
    /// `next_after`). A request with `after` or `limit` gets pages.
    #[serde(default)]
    pub after: Option<InstanceId>,
    /// At most this many instances in the reply (at least 1). A page also stops where one more
    /// instance would not fit in one NATS message.
    #[serde(default)]
    pub limit: Option<usize>,
}

impl ListRequest {
    /// True when the asker reads pages (it gave `after` or `limit`), and so reads `next_after`.
    pub fn pages(&self) -> bool {
        self.after.is_some() || self.limit.is_some()
    }
}

/// Reply of `tgp.api.list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListReply {
    /// The matching instances, ordered by id.
    pub instances: Vec<InstanceSummary>,
    /// More match: ask again with `after` set to this. Absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<InstanceId>,
}

/// An error reply, saying exactly what was wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Stable code: `malformed_command`, `invalid_command`, `not_found`, `conflict`,
    /// `unavailable` or `internal`.
    pub code: String,
    /// For the person reading it.
    pub message: String,
}

/// The envelope of an error reply: `{"error": {...}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// The error.
    pub error: ApiError,
}

impl ErrorReply {
    /// Builds the reply for a code and message.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        ErrorReply { error: ApiError { code: code.to_string(), message: message.into() } }
    }
}

/// Body of `tgp.api.cost`: the range (RFC 3339; default all time up to now) and the grouping.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostRequest {
    /// Range start (inclusive), by event time.
    #[serde(default)]
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// Range end (exclusive), by event time; default now.
    #[serde(default)]
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    /// Any of `provider`, `gpu`, `region`, `spot`, `instance`, `day`.
    #[serde(default)]
    pub group_by: Vec<String>,
}

/// One group of a cost report. Grouped-by fields are set; the others are absent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostRow {
    /// Provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// GPU type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<String>,
    /// Region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// `spot` or `on-demand`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spot: Option<String>,
    /// Instance id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// UTC day, `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    /// Hours billed, exact.
    pub hours: String,
    /// Spend rounded to cents.
    pub cost: Money,
    /// Spend, exact.
    pub cost_exact: Money,
    /// The same hours at on-demand prices, rounded to cents.
    pub on_demand_cost: Money,
    /// On-demand cost minus cost, rounded to cents: what spot saved.
    pub savings: Money,
    /// Run segments that contributed.
    pub runs: u64,
}

/// Answer of `tgp.api.cost`, and `tgp audit --format json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostReport {
    /// Range start, if any.
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// Range end.
    pub to: chrono::DateTime<chrono::Utc>,
    /// The grouping.
    pub group_by: Vec<String>,
    /// One row per group, ordered by its fields.
    pub rows: Vec<CostRow>,
    /// All groups together.
    pub total: CostRow,
    /// The last journal stream sequence folded into this answer.
    pub last_sequence: u64,
}

/// Body of `tgp.api.prices`: `{}` or `{"gpu": "H100"}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricesRequest {
    /// Only this GPU type.
    #[serde(default)]
    pub gpu: Option<String>,
}

/// Body of `tgp.api.offers` (the same filters as `tgp offers`); every field optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffersRequest {
    /// Standard GPU type.
    #[serde(default)]
    pub gpu_type: Option<crate::GpuType>,
    /// At least this many GPUs in one machine.
    #[serde(default)]
    pub gpu_count: Option<u32>,
    /// Only these standard regions.
    #[serde(default)]
    pub regions: Vec<crate::Region>,
    /// At most this per GPU-hour (as `max_hourly_price` in a launch).
    #[serde(default)]
    pub max_price: Option<Money>,
    /// `spot-only`, `on-demand-only` or `prefer-spot` (both).
    #[serde(default)]
    pub spot_policy: Option<crate::SpotPolicy>,
    /// Disk in GB: offers are priced with it, and those that cannot hold it are left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_gb: Option<u32>,
    /// At least this much CPU RAM, in GB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_cpu_ram_gb: Option<u32>,
    /// At least this many vCPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_vcpus: Option<u32>,
    /// Only these providers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ProviderName>,
    /// Never these providers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_providers: Vec<ProviderName>,
    /// At least this host reliability, 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_reliability: Option<rust_decimal::Decimal>,
    /// Only secure hosts.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secure_only: bool,
}

impl OffersRequest {
    /// The machine requirements the request carries, as a launch would carry them.
    pub fn needs(&self) -> crate::Needs {
        crate::Needs {
            disk_gb: self.disk_gb,
            min_cpu_ram_gb: self.min_cpu_ram_gb,
            min_vcpus: self.min_vcpus,
            providers: self.providers.clone(),
            exclude_providers: self.exclude_providers.clone(),
            min_reliability: self.min_reliability,
            secure_only: self.secure_only,
        }
    }
}

/// One offer as `tgp.api.offers` answers it. A GPU or region without a standard name is kept,
/// with `gpu_type` or `region` absent and the provider's own name given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferView {
    /// Which provider.
    pub provider: ProviderName,
    /// The provider's offer id.
    pub offer_id: String,
    /// Standard GPU type, when there is a translation.
    pub gpu_type: Option<crate::GpuType>,
    /// The provider's GPU name.
    pub provider_gpu_name: String,
    /// GPUs in the machine.
    pub gpu_count: u32,
    /// Standard region, when there is a translation.
    pub region: Option<crate::Region>,
    /// The provider's region name.
    pub provider_region: String,
    /// On-demand price of the machine per hour.
    pub on_demand_price: Option<Money>,
    /// Spot price (or minimum bid) of the machine per hour.
    pub spot_price: Option<Money>,
    /// Reliability 0..1, when the provider gives one.
    pub reliability: Option<String>,
    /// vCPUs the renter gets, when the offer says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpus: Option<u32>,
    /// CPU RAM the renter gets in GB, when the offer says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ram_gb: Option<u32>,
    /// The most disk the machine can have in GB, when the offer says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_disk_gb: Option<u32>,
    /// Whether the host is secure (a datacenter the provider vouches for), when the offer says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure: Option<bool>,
    /// Machines available.
    pub available: u32,
    /// Billing granularity and minimum.
    pub billing: crate::BillingGranularity,
    /// When the provider said so.
    pub observed_at: chrono::DateTime<chrono::Utc>,
}

/// How one provider answered an offers request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderAnswer {
    /// Which provider.
    pub provider: String,
    /// `ok`, `disabled`, `no_key` or `error`.
    pub status: String,
    /// Offers it gave, or why not.
    pub message: String,
}

/// Answer of `tgp.api.offers`: offers cheapest first, and a line per provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffersReply {
    /// The offers.
    pub offers: Vec<OfferView>,
    /// Each provider's answer.
    pub providers: Vec<ProviderAnswer>,
}

/// Body of `tgp.api.provider.disable` and `enable`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderToggle {
    /// Which provider.
    pub provider: ProviderName,
    /// Why (disable only).
    #[serde(default)]
    pub reason: Option<String>,
}

/// The holder of the controller lease, as `tgp.api.leader` names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderView {
    /// Its `--name`.
    pub name: String,
    /// The host it runs on.
    pub host: String,
    /// Its process id there.
    pub pid: u32,
    /// When it took the lease.
    pub since: chrono::DateTime<chrono::Utc>,
    /// Its epoch: the lease's revision when taken, written on every commit it makes.
    pub epoch: u64,
}

/// Answer of `tgp.api.leader`: who holds the lease now (none while it has lapsed), and which
/// process answered and whether that one leads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderReply {
    /// The lease's holder; `None` between a leader's end and the next one's start.
    pub leader: Option<LeaderView>,
    /// The `--name` of the process that answered.
    pub answered_by: String,
    /// True when the process that answered is the leader; false for a standby.
    pub answerer_leads: bool,
    /// True when the process that answered could act at once: it leads, or it stands by with its
    /// index of unfinished chains caught up. False while a standby just started is still folding
    /// the journal, when a takeover would start cold. Absent from older tgp: read as false.
    #[serde(default)]
    pub answerer_ready: bool,
}
