//! The simulation's providers: the simulated catalog behind the `ProviderClient` trait, on the
//! virtual clock, misbehaving on the seeded schedule of [`super::misfortune`], with a log of
//! every call it received and of every machine a terminate call reached: the market's truth,
//! which the checks hold the journal against.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rand::Rng;
use tgp_actors::clock::Clock;
use tgp_actors::provider::{
    LaunchReceipt, LaunchSpec, MachineStatus, Offer, OfferFilter, ProviderClient, ProviderError, ProviderInfo,
    ProviderInstance, RateLimits,
};
use tgp_events::events::{FailureClass, InterruptionReason};
use tgp_events::{GpuType, ProviderName, Region};

pub use super::misfortune::{Chaos, rng_for};
use super::misfortune::{Fate, Glitch};
use crate::simulated::{Catalog, ssh_connection};

/// One call the simulated provider received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// When (virtual time).
    pub at: DateTime<Utc>,
    /// `launch`, `terminate`, `list_instances`, `list_offers` or `status`.
    pub operation: &'static str,
    /// The attempt label (launch) or machine id (terminate, status); empty otherwise.
    pub subject: String,
    /// `ok`, or what went wrong: a failure class (`rate_limited`, `outage`, `capacity`), a lost or
    /// cut-off answer, a glitched listing (`empty`, `partial`, `null`), `not_found`.
    pub outcome: String,
}

/// What a machine really is at a moment, whatever the provider's API says about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Truth {
    /// Booting.
    Starting,
    /// Up.
    Running,
    /// Up, but out of the API's sight for a while (unlisted, `status` not found).
    Hidden,
    /// Stopped by the provider (preempted); the user's work on it is lost.
    Stopped,
    /// Vanished with its host; nothing is left.
    Gone,
    /// Destroyed by a terminate call.
    Terminated,
}

impl Truth {
    /// Whether the machine holds a user's work and would go on doing so: booting, up or hidden.
    pub fn alive(self) -> bool {
        matches!(self, Truth::Starting | Truth::Running | Truth::Hidden)
    }
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
    /// When it was launched.
    pub launched_at: DateTime<Utc>,
    /// When it becomes running.
    pub ready_at: DateTime<Utc>,
    /// When the provider takes it back (spot only, and only before the calm).
    pub preempt_at: Option<DateTime<Utc>>,
    /// Whether it vanishes or hides for a while.
    pub fate: Fate,
    /// When it was destroyed.
    pub terminated_at: Option<DateTime<Utc>>,
}

impl SimMachine {
    /// What it really is at `now`.
    pub fn truth(&self, now: DateTime<Utc>) -> Truth {
        let passed = |at: Option<DateTime<Utc>>| at.is_some_and(|at| at <= now);
        if self.terminated_at.is_some_and(|at| at <= now) {
            Truth::Terminated
        } else if passed(self.fate.vanish_at) {
            Truth::Gone
        } else if passed(self.preempt_at) {
            Truth::Stopped
        } else if self.fate.hidden.is_some_and(|(from, until)| from <= now && now < until) {
            Truth::Hidden
        } else if self.ready_at <= now {
            Truth::Running
        } else {
            Truth::Starting
        }
    }

    /// When it stopped being alive (destroyed, vanished or preempted), if it has.
    pub fn alive_until(&self) -> Option<DateTime<Utc>> {
        [self.terminated_at, self.fate.vanish_at, self.preempt_at].into_iter().flatten().min()
    }

    /// What the provider's API says about it at `now`: its raw word and what tgp makes of it;
    /// `None` when the API does not see it (vanished or hidden).
    pub fn status(&self, now: DateTime<Utc>) -> Option<(&'static str, MachineStatus)> {
        match self.truth(now) {
            Truth::Terminated => Some(("terminated", MachineStatus::Terminated)),
            Truth::Gone | Truth::Hidden => None,
            Truth::Stopped => Some(("preempted", MachineStatus::Interrupted(InterruptionReason::Preempted))),
            Truth::Running => Some(("running", MachineStatus::Running)),
            Truth::Starting => Some(("starting", MachineStatus::Starting)),
        }
    }
}

/// A terminate call that reached a machine, and what the machine really was when it did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destruction {
    /// When (virtual time).
    pub at: DateTime<Utc>,
    /// The provider.
    pub provider: String,
    /// The machine.
    pub machine: String,
    /// The attempt label it carried.
    pub label: String,
    /// What it was just before the call.
    pub was: Truth,
}

#[derive(Default)]
struct State {
    machines: BTreeMap<String, SimMachine>,
    calls: Vec<Call>,
    terminate_calls: BTreeMap<String, u32>,
    destroyed: Vec<Destruction>,
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

    /// Every terminate call that reached a machine, in order.
    pub fn destroyed(&self) -> Vec<Destruction> {
        self.state.lock().expect("sim provider state").destroyed.clone()
    }

    /// The provider's name.
    pub fn name(&self) -> &ProviderName {
        &self.name
    }

    /// Its catalog: what fits a request in truth, whatever the calls answer.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Logs a call and answers 5xx during a burst, or 429 when the seed says so.
    fn call(
        &self,
        state: &mut State,
        operation: &'static str,
        subject: &str,
        key: &str,
    ) -> Result<DateTime<Utc>, ProviderError> {
        let now = self.clock.now();
        let outage = self.chaos.in_outage(self.name.as_str(), now);
        let limited =
            !outage && !self.chaos.calm(now) && rng_for(self.chaos.seed, key).random_bool(self.chaos.rate_limited);
        let outcome = if outage {
            "outage"
        } else if limited {
            "rate_limited"
        } else {
            "ok"
        };
        state.calls.push(Call { at: now, operation, subject: subject.to_string(), outcome: outcome.into() });
        if outage {
            return Err(ProviderError::new(&self.name, FailureClass::ProviderOutage, "503 Service Unavailable"));
        }
        if limited {
            let mut e = ProviderError::new(&self.name, FailureClass::RateLimited, "429 Too Many Requests");
            e.retry_after_seconds = Some(2);
            return Err(e);
        }
        Ok(now)
    }

    fn mark(state: &mut State, outcome: &str) {
        state.calls.last_mut().expect("just logged").outcome = outcome.into();
    }

    fn describe(&self, m: &SimMachine, now: DateTime<Utc>) -> Option<ProviderInstance> {
        let (raw, status) = m.status(now)?;
        Some(ProviderInstance {
            id: m.id.clone(),
            label: Some(m.label.clone()),
            status,
            raw_status: raw.to_string(),
            connection: ssh_connection("203.0.113.7"),
            hourly_price: None,
            billing: None,
        })
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
        RateLimits { requests_per_minute: 6000, burst: 100, launches: None }
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
        let calm = self.chaos.calm(now);
        if !calm && rng.random_bool(self.chaos.no_capacity) {
            Self::mark(&mut state, "capacity");
            return Err(ProviderError::new(&self.name, FailureClass::Capacity, "no capacity for this offer right now"));
        }
        let boot = rng.random_range(self.chaos.boot_seconds.0..=self.chaos.boot_seconds.1);
        let life_ms = self.chaos.mean_spot_life.as_millis() as f64 * -(1.0 - rng.random::<f64>()).ln();
        let preempt_at = (spec.spot)
            .then(|| now + chrono::Duration::milliseconds(life_ms as i64))
            .filter(|at| *at < self.chaos.calm_after);
        let ready_at = now + chrono::Duration::seconds(boot as i64);
        let machine = SimMachine {
            id: format!("m-{label}"),
            label: label.clone(),
            spot: spec.spot,
            launched_at: now,
            ready_at,
            preempt_at,
            fate: self.chaos.fate(&label, ready_at),
            terminated_at: None,
        };
        state.machines.insert(machine.id.clone(), machine.clone());
        if !calm && rng.random_bool(self.chaos.lost_answer) {
            Self::mark(&mut state, "answer_lost");
            return Err(ProviderError::new(
                &self.name,
                FailureClass::ProviderOutage,
                "connection reset after the request was sent",
            ));
        }
        if self.chaos.cut_off(&label, now) {
            Self::mark(&mut state, "cut_off");
            return Err(ProviderError::new(
                &self.name,
                FailureClass::ContractChanged,
                "cannot parse the launch answer: EOF while parsing an object at line 1 column 48",
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
        let State { machines, destroyed, .. } = &mut *state;
        if let Some(m) = machines.get_mut(provider_instance_id) {
            let was = m.truth(now);
            if !matches!(was, Truth::Gone | Truth::Terminated) {
                destroyed.push(Destruction {
                    at: now,
                    provider: self.name.to_string(),
                    machine: m.id.clone(),
                    label: m.label.clone(),
                    was,
                });
                m.terminated_at = Some(now);
            }
        }
        Ok(())
    }

    /// Answers as a real provider does: the machine, `terminated` for a while after it was
    /// destroyed, and not found when it vanished, is out of sight, or never existed.
    async fn status(&self, provider_instance_id: &str) -> Result<ProviderInstance, ProviderError> {
        let mut state = self.state.lock().expect("sim provider state");
        let now = self.clock.now();
        let key = format!("status/{provider_instance_id}/{}", now.timestamp_millis());
        self.call(&mut state, "status", provider_instance_id, &key)?;
        match state.machines.get(provider_instance_id).and_then(|m| self.describe(m, now)) {
            Some(seen) => Ok(seen),
            None => {
                Self::mark(&mut state, "not_found");
                Err(ProviderError::new(
                    &self.name,
                    FailureClass::NotFound,
                    format!("no machine {provider_instance_id}"),
                ))
            }
        }
    }

    async fn list_instances(&self) -> Result<Vec<ProviderInstance>, ProviderError> {
        let mut state = self.state.lock().expect("sim provider state");
        let key = format!("list/{}/{}", self.name, self.clock.now().timestamp_millis());
        let now = self.call(&mut state, "list_instances", "", &key)?;
        let glitch = self.chaos.glitch(self.name.as_str(), now);
        let outcome = match glitch {
            None => "ok",
            Some(Glitch::Empty) => "empty",
            Some(Glitch::Partial) => "partial",
            Some(Glitch::Null) => "null",
        };
        Self::mark(&mut state, outcome);
        let listed = state
            .machines
            .values()
            .filter(|m| m.terminated_at.is_none())
            .filter_map(|m| self.describe(m, now))
            .collect::<Vec<_>>();
        match glitch {
            None => Ok(listed),
            Some(Glitch::Empty) => Ok(Vec::new()),
            Some(Glitch::Null) => Err(ProviderError::new(
                &self.name,
                FailureClass::ContractChanged,
                "the instance list is null, not a list",
            )),
            Some(Glitch::Partial) => {
                let name = self.name.as_str();
                let mut kept: Vec<ProviderInstance> =
                    listed.iter().filter(|m| !self.chaos.omitted(name, now, &m.id)).cloned().collect();
                if kept.len() == listed.len() {
                    kept.pop();
                }
                Ok(kept)
            }
        }
    }
}
