//! The simulated market: a provider behind the same `ProviderClient` trait as the real ones, with
//! seeded offers and prices, machines that boot after a delay, and spot interruptions on cue or
//! at a seeded random rate. It is what `tgp-dev run --market simulated` and many tests run on: the whole system
//! works without any provider account. It is documented as simulated everywhere it appears
//! (provider name `simulated`, addresses from the TEST-NET-3 documentation range).
//!
//! With a state file, its machines survive a restart of tgp, which is what lets tests kill the
//! controller mid-flight and check that exactly the machines the journal accounts for remain.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tgp_actors::provider::{
    DiskRoom, LaunchReceipt, LaunchSpec, MachineStatus, Offer, OfferFilter, ProviderClient, ProviderError,
    ProviderInfo, ProviderInstance, RateLimits, Specs,
};
use tgp_events::events::{Connection, FailureClass, InterruptionReason};
use tgp_events::{BillingGranularity, BillingUnit, GpuType, Money, ProviderName, Region};

/// The simulated provider's name.
pub const SIMULATED: &str = "simulated";

/// How the simulated market behaves.
#[derive(Clone, Debug)]
pub struct SimulatedConfig {
    /// Seeds offers, prices and random interruptions: the same seed gives the same market.
    pub seed: u64,
    /// How long a machine takes from launch to running.
    pub boot_time: Duration,
    /// Chance that a running spot machine is preempted at each status poll (0 for never).
    pub spot_interruption_per_poll: f64,
    /// Where machines are kept across restarts, and shared by the `tgp-dev run` processes of one
    /// journal (each change reads it first: a standby that takes over sees its leader's machines);
    /// `None` keeps them in memory only.
    pub state_file: Option<PathBuf>,
}

impl Default for SimulatedConfig {
    fn default() -> Self {
        SimulatedConfig {
            seed: 1,
            boot_time: Duration::from_secs(2),
            spot_interruption_per_poll: 0.0,
            state_file: None,
        }
    }
}

/// One simulated machine.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SimMachine {
    /// Its id (`sim-<n>`).
    pub id: String,
    /// The attempt label tgp gave it.
    pub label: String,
    /// The offer it was launched from.
    pub offer_id: String,
    /// Spot?
    pub spot: bool,
    /// Billed hourly price.
    pub hourly_price: Money,
    /// When it becomes running.
    pub ready_at: DateTime<Utc>,
    /// `starting`, `running`, `preempted` or `terminated`.
    pub status: String,
    /// Its address.
    pub ip: String,
}

/// Machines and counters: what the state file holds.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SimState {
    /// Every machine ever launched, by id; terminated ones stay, marked.
    pub machines: BTreeMap<String, SimMachine>,
    /// Next machine number.
    pub next_id: u64,
    /// Launch calls received (for tests: a launch must never be sent twice for one attempt).
    pub launch_calls: u64,
    /// Launches still to refuse for lack of capacity (set on cue).
    #[serde(default)]
    pub refuse_launches: u32,
    /// Launches still to start whose answer is then lost (set on cue).
    #[serde(default)]
    pub lose_launch_answers: u32,
    /// Spot capacity withdrawn: no spot prices offered, spot launches refused (set on cue).
    #[serde(default)]
    pub spot_withdrawn: bool,
}

/// A change to how the simulated market behaves from now on, for tests and demonstrations
/// (`tgp.sim.cue`). Each field left out changes nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketCue {
    /// Refuse the next N launches for lack of capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refuse_launches: Option<u32>,
    /// Start the next N launched machines but lose the answers (as a timeout would).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lose_launch_answers: Option<u32>,
    /// Offer spot capacity (`true`) or withdraw it everywhere (`false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spot: Option<bool>,
}

/// The simulated provider.
pub struct SimulatedProvider {
    name: ProviderName,
    config: SimulatedConfig,
    catalog: Catalog,
    state: Mutex<(SimState, SmallRng)>,
}

/// What every simulated provider sells and how it answers about it: the simulated market here and
/// `tgp-dev sim`'s providers (each with its own seed) share it, so they quote and translate alike.
pub struct Catalog {
    provider: ProviderName,
    offers: Vec<Offer>,
}

/// How a simulated machine is reached: its documentation-range address, as root over SSH.
pub fn ssh_connection(ip: &str) -> Connection {
    Connection {
        public_ip: Some(ip.to_string()),
        ssh_host: Some(ip.to_string()),
        ssh_port: Some(22),
        ssh_user: Some("root".into()),
    }
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

impl SimulatedProvider {
    /// A market from its config; machines are read back from the state file when there is one.
    pub fn new(config: SimulatedConfig) -> Result<Self, std::io::Error> {
        let name: ProviderName = SIMULATED.parse().expect("valid provider name");
        let state = match &config.state_file {
            Some(path) if path.exists() => serde_json::from_slice(&std::fs::read(path)?)?,
            _ => SimState::default(),
        };
        let rng = SmallRng::seed_from_u64(config.seed.wrapping_add(1));
        Ok(SimulatedProvider {
            catalog: Catalog::new(config.seed, &name, Utc::now()),
            name,
            config,
            state: Mutex::new((state, rng)),
        })
    }

    fn with_state<T>(&self, change: impl FnOnce(&mut SimState, &mut SmallRng) -> T) -> T {
        let mut guard = self.state.lock().expect("simulated market state");
        let (state, rng) = &mut *guard;
        if let Some(path) = &self.config.state_file {
            // The file is the market: another process may have changed it since (the leader
            // before this standby took over, or a benchmark preempting a machine).
            match std::fs::read(path).map(|bytes| serde_json::from_slice::<SimState>(&bytes)) {
                Ok(Ok(saved)) => *state = saved,
                Ok(Err(e)) => {
                    tracing::warn!(path = %path.display(), error = %e, "simulated market unreadable; keeping the one in memory")
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "simulated market unreadable; keeping the one in memory")
                }
            }
        }
        let out = change(state, rng);
        if let Some(path) = &self.config.state_file {
            // Written on every change so a killed controller leaves the market as it was; through
            // a temporary file and a rename, so a reader (or a crash) never sees half a file.
            let temporary = path.with_extension("json.tmp");
            let written = std::fs::write(&temporary, serde_json::to_vec_pretty(state).expect("state serializes"))
                .and_then(|()| std::fs::rename(&temporary, path));
            if let Err(e) = written {
                tracing::warn!(path = %path.display(), error = %e, "cannot save the simulated market");
            }
        }
        out
    }

    /// Preempts a machine now, as a provider reclaiming spot capacity would.
    pub fn interrupt(&self, machine_id: &str) -> Result<(), ProviderError> {
        self.with_state(|state, _| match state.machines.get_mut(machine_id) {
            Some(m) if m.status != "terminated" => {
                m.status = "preempted".into();
                Ok(())
            }
            _ => Err(ProviderError::new(&self.name, FailureClass::NotFound, format!("no live machine {machine_id}"))),
        })
    }

    /// Changes how the market behaves from now on.
    pub fn cue(&self, cue: &MarketCue) {
        self.with_state(|state, _| {
            if let Some(n) = cue.refuse_launches {
                state.refuse_launches = n;
            }
            if let Some(n) = cue.lose_launch_answers {
                state.lose_launch_answers = n;
            }
            if let Some(spot) = cue.spot {
                state.spot_withdrawn = !spot;
            }
        });
    }

    /// A copy of the market's machines, for tests and the demo.
    pub fn machines(&self) -> Vec<SimMachine> {
        self.state.lock().expect("simulated market state").0.machines.values().cloned().collect()
    }

    /// Reads a state file written by a market (for tests that inspect a controller's market).
    pub fn read_state(path: &std::path::Path) -> Result<SimState, std::io::Error> {
        Ok(serde_json::from_slice(&std::fs::read(path)?)?)
    }

    fn refresh(&self, machine: &mut SimMachine, rng: &mut SmallRng, now: DateTime<Utc>) {
        if machine.status == "starting" && now >= machine.ready_at {
            machine.status = "running".into();
        } else if machine.status == "running"
            && machine.spot
            && self.config.spot_interruption_per_poll > 0.0
            && rng.random_bool(self.config.spot_interruption_per_poll.min(1.0))
        {
            machine.status = "preempted".into();
        }
    }

    fn describe(&self, m: &SimMachine) -> ProviderInstance {
        let status = match m.status.as_str() {
            "starting" => MachineStatus::Starting,
            "running" => MachineStatus::Running,
            "preempted" => MachineStatus::Interrupted(InterruptionReason::Preempted),
            _ => MachineStatus::Terminated,
        };
        ProviderInstance {
            id: m.id.clone(),
            label: Some(m.label.clone()),
            status,
            raw_status: m.status.clone(),
            connection: ssh_connection(&m.ip),
            hourly_price: Some(m.hourly_price),
            billing: Some(BillingGranularity { unit: BillingUnit::Second, minimum_seconds: 60 }),
        }
    }
}

#[async_trait]
impl ProviderClient for SimulatedProvider {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            name: self.name.clone(),
            supports_spot: true,
            supports_bids: false,
            docs_url: "docs/architecture.md#the-simulated-market".into(),
        }
    }

    fn rate_limits(&self) -> RateLimits {
        RateLimits { requests_per_minute: 6000, burst: 100, launches: None }
    }

    fn translate_gpu(&self, gpu: GpuType) -> Option<String> {
        self.catalog.translate_gpu(gpu)
    }

    fn translate_region(&self, region: &Region) -> Option<String> {
        self.catalog.translate_region(region)
    }

    async fn list_offers(&self, filter: &OfferFilter) -> Result<Vec<Offer>, ProviderError> {
        let spot_withdrawn = self.state.lock().expect("simulated market state").0.spot_withdrawn;
        Ok(self.catalog.offers(filter, Utc::now(), !spot_withdrawn))
    }

    async fn launch(&self, spec: &LaunchSpec) -> Result<LaunchReceipt, ProviderError> {
        let (offer, price) = self.catalog.quote(spec)?;
        let boot = chrono::Duration::from_std(self.config.boot_time).unwrap_or_default();
        let refused = self.with_state(|state, _| {
            // A spot launch with spot withdrawn is refused for that reason: it uses up no cue.
            let spot_gone = spec.spot && state.spot_withdrawn;
            let cued = !spot_gone && state.refuse_launches > 0;
            if cued {
                state.refuse_launches -= 1;
            }
            if spot_gone || cued {
                state.launch_calls += 1;
            }
            spot_gone || cued
        });
        if refused {
            return Err(ProviderError::new(&self.name, FailureClass::Capacity, "no capacity for this offer right now"));
        }
        let (machine, lost) = self.with_state(|state, _| {
            state.launch_calls += 1;
            state.next_id += 1;
            let n = state.next_id;
            let machine = SimMachine {
                id: format!("sim-{n}"),
                label: spec.attempt_id.to_string(),
                offer_id: offer.id.clone(),
                spot: spec.spot,
                hourly_price: price,
                ready_at: Utc::now() + boot,
                status: "starting".into(),
                ip: format!("203.0.113.{}", n % 254 + 1),
            };
            state.machines.insert(machine.id.clone(), machine.clone());
            let lost = state.lose_launch_answers > 0;
            state.lose_launch_answers = state.lose_launch_answers.saturating_sub(1);
            (machine, lost)
        });
        if lost {
            return Err(ProviderError::new(
                &self.name,
                FailureClass::ProviderOutage,
                "connection reset after the request was sent",
            ));
        }
        Ok(LaunchReceipt { provider_instance_id: machine.id, hourly_price: price, billing: offer.billing })
    }

    async fn terminate(&self, provider_instance_id: &str) -> Result<(), ProviderError> {
        self.with_state(|state, _| {
            if let Some(m) = state.machines.get_mut(provider_instance_id) {
                m.status = "terminated".into();
            }
        });
        Ok(())
    }

    async fn status(&self, provider_instance_id: &str) -> Result<ProviderInstance, ProviderError> {
        let now = Utc::now();
        self.with_state(|state, rng| match state.machines.get_mut(provider_instance_id) {
            Some(m) => {
                self.refresh(m, rng, now);
                Ok(self.describe(m))
            }
            None => Err(ProviderError::new(
                &self.name,
                FailureClass::NotFound,
                format!("no machine {provider_instance_id}"),
            )),
        })
    }

    async fn list_instances(&self) -> Result<Vec<ProviderInstance>, ProviderError> {
        let now = Utc::now();
        Ok(self.with_state(|state, rng| {
            state
                .machines
                .values_mut()
                .filter(|m| m.status != "terminated")
                .map(|m| {
                    self.refresh(m, rng, now);
                    self.describe(m)
                })
                .collect()
        }))
    }
}
