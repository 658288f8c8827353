//! The simulation's providers: the simulated catalog behind the `ProviderClient` trait, on the
//! virtual clock, misbehaving on a seeded schedule (no capacity, 429s, a launch whose answer is
//! lost although the machine starts, spot preemptions), with a log of every call it received.
//!
//! Every misfortune is drawn from the seed and what it is about (an attempt's label, a machine,
//! the time of a poll), never from the order calls arrive in: instance actors run concurrently,
//! and the same seed must give the same events whatever order they happen to run in.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tgp_actors::clock::Clock;
use tgp_actors::provider::{
    LaunchReceipt, LaunchSpec, MachineStatus, Offer, OfferFilter, ProviderClient, ProviderError, ProviderInfo,
    ProviderInstance, RateLimits,
};
use tgp_events::events::{FailureClass, InterruptionReason};
use tgp_events::{GpuType, ProviderName, Region};

use crate::simulated::{Catalog, ssh_connection};

/// How often things go wrong in the simulated market, until `calm_after`.
#[derive(Clone, Debug)]
pub struct Chaos {
    /// The seed every draw derives from.
    pub seed: u64,
    /// Chance that a launch fails for lack of capacity.
    pub no_capacity: f64,
    /// Chance that a call is answered 429.
    pub rate_limited: f64,
    /// Chance that a launch starts the machine but its answer is lost (a timeout, a reset).
    pub lost_answer: f64,
    /// Mean time a spot machine runs before it is preempted.
    pub mean_spot_life: Duration,
    /// Shortest and longest boot, in seconds.
    pub boot_seconds: (u64, u64),
    /// From this moment nothing goes wrong any more, so the system can settle and be checked.
    pub calm_after: DateTime<Utc>,
}

/// A generator seeded by the seed and a key: the same key draws the same numbers in any run.
pub fn rng_for(seed: u64, key: &str) -> SmallRng {
    // FNV-1a: small, stable across platforms and Rust versions (unlike std's hashers).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    SmallRng::seed_from_u64(hash)
}

/// One call the simulated provider received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// When (virtual time).
    pub at: DateTime<Utc>,
    /// `launch`, `terminate`, `list_instances`, `list_offers` or `status`.
    pub operation: &'static str,
    /// The attempt label (launch) or machine id (terminate, status); empty otherwise.
    pub subject: String,
    /// `ok`, or the failure class.
    pub outcome: String,
}

/// One simulated machine.
#[derive(Clone, Debug)]
pub struct SimMachine {
    /// Its id.
    pub id: String,
    /// The attempt label it was launched with.
    pub label: String,
    /// Spot?
    pub spot: bool,
    /// When it becomes running.
    pub ready_at: DateTime<Utc>,
    /// When the provider takes it back (spot only, and only before the calm).
    pub preempt_at: Option<DateTime<Utc>>,
    /// When it was destroyed.
    pub terminated_at: Option<DateTime<Utc>>,
}

impl SimMachine {
    /// Its status at `now`: the provider's word for it and what tgp makes of it.
    pub fn status(&self, now: DateTime<Utc>) -> (&'static str, MachineStatus) {
        if self.terminated_at.is_some() {
            ("terminated", MachineStatus::Terminated)
        } else if self.preempt_at.is_some_and(|at| at <= now) {
            ("preempted", MachineStatus::Interrupted(InterruptionReason::Preempted))
        } else if self.ready_at <= now {
            ("running", MachineStatus::Running)
        } else {
            ("starting", MachineStatus::Starting)
        }
    }
}

#[derive(Default)]
struct State {
    machines: BTreeMap<String, SimMachine>,
    calls: Vec<Call>,
    terminate_calls: BTreeMap<String, u32>,
}

/// A simulated provider on the virtual clock.
pub struct SimProvider {
    name: ProviderName,
    catalog: Catalog,
    clock: Clock,
    chaos: Chaos,
    state: Mutex<State>,
}

impl SimProvider {
    /// A provider named `name` with the catalog of `catalog_seed`.
    pub fn new(name: ProviderName, catalog_seed: u64, clock: Clock, chaos: Chaos) -> Self {
        SimProvider {
            catalog: Catalog::new(catalog_seed, &name, clock.now()),
            name,
            clock,
            chaos,
            state: Mutex::default(),
        }
    }

    /// Every call received, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().expect("sim provider state").calls.clone()
    }

    /// Every machine ever launched, by id.
    pub fn machines(&self) -> BTreeMap<String, SimMachine> {
        self.state.lock().expect("sim provider state").machines.clone()
    }

    /// The provider's name.
    pub fn name(&self) -> &ProviderName {
        &self.name
    }

    fn calm(&self, now: DateTime<Utc>) -> bool {
        now >= self.chaos.calm_after
    }

    /// Logs a call and answers 429 when the seed says so.
    fn call(
        &self,
        state: &mut State,
        operation: &'static str,
        subject: &str,
        key: &str,
    ) -> Result<DateTime<Utc>, ProviderError> {
        let now = self.clock.now();
        let limited = !self.calm(now) && rng_for(self.chaos.seed, key).random_bool(self.chaos.rate_limited);
        state.calls.push(Call {
            at: now,
            operation,
            subject: subject.to_string(),
            outcome: if limited { "rate_limited".into() } else { "ok".into() },
        });
        if limited {
            let mut e = ProviderError::new(&self.name, FailureClass::RateLimited, "429 Too Many Requests");
            e.retry_after_seconds = Some(2);
            return Err(e);
        }
        Ok(now)
    }

    fn describe(&self, m: &SimMachine, now: DateTime<Utc>) -> ProviderInstance {
        let (raw, status) = m.status(now);
        ProviderInstance {
            id: m.id.clone(),
            label: Some(m.label.clone()),
            status,
            raw_status: raw.to_string(),
            connection: ssh_connection("203.0.113.7"),
            hourly_price: None,
            billing: None,
        }
    }
}

#[async_trait]
impl ProviderClient for SimProvider {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            name: self.name.clone(),
            supports_spot: true,
            supports_bids: false,
            docs_url: "docs/simulation.md".into(),
        }
    }

    fn rate_limits(&self) -> RateLimits {
        RateLimits { requests_per_minute: 6000, burst: 100 }
    }

    fn translate_gpu(&self, gpu: GpuType) -> Option<String> {
        self.catalog.translate_gpu(gpu)
    }

    fn translate_region(&self, region: &Region) -> Option<String> {
        self.catalog.translate_region(region)
    }

    async fn list_offers(&self, filter: &OfferFilter) -> Result<Vec<Offer>, ProviderError> {
        let mut state = self.state.lock().expect("sim provider state");
        let key = format!("offers/{}/{}", self.name, self.clock.now().timestamp_millis());
        let now = self.call(&mut state, "list_offers", "", &key)?;
        Ok(self.catalog.offers(filter, now, true))
    }

    async fn launch(&self, spec: &LaunchSpec) -> Result<LaunchReceipt, ProviderError> {
        let label = spec.attempt_id.to_string();
        let mut state = self.state.lock().expect("sim provider state");
        let now = self.call(&mut state, "launch", &label, &format!("launch-429/{label}"))?;
        let (offer, price) = self.catalog.quote(spec)?;
        let mut rng = rng_for(self.chaos.seed, &format!("launch/{label}"));
        let calm = self.calm(now);
        if !calm && rng.random_bool(self.chaos.no_capacity) {
            state.calls.last_mut().expect("just logged").outcome = "capacity".into();
            return Err(ProviderError::new(&self.name, FailureClass::Capacity, "no capacity for this offer right now"));
        }
        let boot = rng.random_range(self.chaos.boot_seconds.0..=self.chaos.boot_seconds.1);
        let life_ms = self.chaos.mean_spot_life.as_millis() as f64 * -(1.0 - rng.random::<f64>()).ln();
        let preempt_at = (spec.spot)
            .then(|| now + chrono::Duration::milliseconds(life_ms as i64))
            .filter(|at| *at < self.chaos.calm_after);
        let machine = SimMachine {
            id: format!("m-{label}"),
            label: label.clone(),
            spot: spec.spot,
            ready_at: now + chrono::Duration::seconds(boot as i64),
            preempt_at,
            terminated_at: None,
        };
        state.machines.insert(machine.id.clone(), machine.clone());
        if !calm && rng.random_bool(self.chaos.lost_answer) {
            state.calls.last_mut().expect("just logged").outcome = "answer_lost".into();
            return Err(ProviderError::new(
                &self.name,
                FailureClass::ProviderOutage,
                "connection reset after the request was sent",
            ));
        }
        Ok(LaunchReceipt { provider_instance_id: machine.id, hourly_price: price, billing: offer.billing })
    }

    async fn terminate(&self, provider_instance_id: &str) -> Result<(), ProviderError> {
        let mut state = self.state.lock().expect("sim provider state");
        let n = {
            let n = state.terminate_calls.entry(provider_instance_id.to_string()).or_default();
            *n += 1;
            *n
        };
        let now =
            self.call(&mut state, "terminate", provider_instance_id, &format!("terminate/{provider_instance_id}/{n}"))?;
        if let Some(m) = state.machines.get_mut(provider_instance_id) {
            m.terminated_at.get_or_insert(now);
        }
        Ok(())
    }

    async fn status(&self, provider_instance_id: &str) -> Result<ProviderInstance, ProviderError> {
        let mut state = self.state.lock().expect("sim provider state");
        let now = self.clock.now();
        let key = format!("status/{provider_instance_id}/{}", now.timestamp_millis());
        self.call(&mut state, "status", provider_instance_id, &key)?;
        match state.machines.get(provider_instance_id) {
            Some(m) => Ok(self.describe(m, now)),
            None => Err(ProviderError::new(
                &self.name,
                FailureClass::NotFound,
                format!("no machine {provider_instance_id}"),
            )),
        }
    }

    async fn list_instances(&self) -> Result<Vec<ProviderInstance>, ProviderError> {
        let mut state = self.state.lock().expect("sim provider state");
        let key = format!("list/{}/{}", self.name, self.clock.now().timestamp_millis());
        let now = self.call(&mut state, "list_instances", "", &key)?;
        Ok(state.machines.values().filter(|m| m.terminated_at.is_none()).map(|m| self.describe(m, now)).collect())
    }
}
