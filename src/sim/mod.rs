//! `tgp sim`: the lifecycle of many instances over simulated hours, deterministic and fast.
//!
//! The real supervisor and instance actors run on a tokio runtime whose clock is paused: it
//! moves only when every task waits on a timer, and then jumps straight to the next one, so an
//! hour of polls, boots, backoffs and lifetimes takes seconds. The providers are simulated
//! ([`market`]) and misbehave on a seeded schedule; the journal keeps commits in memory
//! ([`journal`]); the users' launches and terminations are seeded too ([`workload`]). The same
//! seed gives the same events, chain by chain, timestamps included; the report's digest (of the
//! events without their timestamps) makes that easy to see.
//!
//! After the run the world is left to settle without misfortune, and then [`check`] proves what
//! the run must: every chain is lawful, the providers run exactly what the journal says runs, and
//! no attempt was launched twice.

pub mod check;
pub mod journal;
pub mod market;
pub mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use cqrs_es::persist::PersistenceError;
use sha2::{Digest, Sha256};
use tgp_actors::aggregate::Instance;
use tgp_actors::clock::Clock;
use tgp_actors::provider::{MachineStatus, Market, ProviderClient};
use tgp_actors::supervisor::{Launch, Supervisor, SupervisorConfig, Terminate};
use tgp_events::api::InstanceState;
use tgp_events::events::{FailureClass, Limit};
use tgp_events::{InstanceEvent, InstanceId, Money};

use crate::projections::cost::CostLedger;
use journal::MemoryJournal;
use market::{Chaos, SimProvider};

/// The names of the simulated providers, as many as a run uses.
pub const PROVIDER_NAMES: [&str; 3] = ["sim-a", "sim-b", "sim-c"];

/// How long the world is left to settle, without misfortune, before it is checked: longer than
/// the longest backoff, boot and poll together.
pub const SETTLE: Duration = Duration::from_secs(10 * 60);

/// What to simulate.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Seeds the workload and every misfortune.
    pub seed: u64,
    /// Instances launched, over the first quarter of the run.
    pub instances: usize,
    /// Simulated time with misfortune.
    pub duration: Duration,
    /// How often providers are polled.
    pub poll_interval: Duration,
    /// Providers in the market (1 to 3).
    pub providers: usize,
    /// Chance a launch fails for lack of capacity.
    pub no_capacity: f64,
    /// Chance a call is answered 429.
    pub rate_limited: f64,
    /// Chance a launch's answer is lost although the machine starts.
    pub lost_answer: f64,
    /// Mean life of a spot machine before preemption.
    pub mean_spot_life: Duration,
}

impl SimConfig {
    /// Checks what the types alone cannot: the number of providers and the chances.
    pub fn validate(&self) -> Result<(), SimError> {
        if !(1..=PROVIDER_NAMES.len()).contains(&self.providers) {
            return Err(SimError::Invalid(format!("providers must be 1 to {}", PROVIDER_NAMES.len())));
        }
        for (name, p) in
            [("no_capacity", self.no_capacity), ("rate_limited", self.rate_limited), ("lost_answer", self.lost_answer)]
        {
            if !(0.0..=1.0).contains(&p) {
                return Err(SimError::Invalid(format!("{name} must be a chance from 0 to 1, got {p}")));
            }
        }
        Ok(())
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            instances: 100,
            duration: Duration::from_secs(3_600),
            poll_interval: Duration::from_secs(15),
            providers: 3,
            no_capacity: 0.10,
            rate_limited: 0.03,
            lost_answer: 0.03,
            mean_spot_life: Duration::from_secs(40 * 60),
        }
    }
}

/// What a run did and whether it proved what it must.
#[derive(Clone, Debug)]
pub struct SimReport {
    /// The configuration.
    pub config: SimConfig,
    /// Simulated time, the settling included.
    pub simulated: Duration,
    /// Real time it took.
    pub wall: Duration,
    /// Events journaled, by type.
    pub events: BTreeMap<&'static str, usize>,
    /// Commits journaled.
    pub commits: usize,
    /// How the chains ended up, by outcome.
    pub outcomes: BTreeMap<String, usize>,
    /// Calls the providers received, by operation and outcome (`launch ok`, `launch capacity`).
    pub provider_calls: BTreeMap<String, usize>,
    /// Launches found by reconciliation after their answer was lost.
    pub adopted: usize,
    /// Machines running at the providers at the end.
    pub running_at_end: usize,
    /// What the journal says was spent, billed as the providers bill.
    pub cost: Money,
    /// The same hours at on-demand prices.
    pub on_demand_cost: Money,
    /// SHA-256 of every chain's events without their timestamps: equal for equal seeds.
    pub digest: String,
    /// Every rule a chain broke, every machine unaccounted for, every double launch; empty when
    /// the run proved what it must.
    pub violations: Vec<String>,
    /// Every chain's events.
    pub chains: BTreeMap<InstanceId, Vec<InstanceEvent>>,
}

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The configuration is unusable.
    #[error("invalid simulation: {0}")]
    Invalid(String),
    /// The runtime could not be built.
    #[error("cannot build the simulation's runtime: {0}")]
    Runtime(#[from] std::io::Error),
    /// The in-memory journal failed (an event did not decode).
    #[error("journal: {0}")]
    Journal(#[from] PersistenceError),
}

/// Runs a simulation to the end; `progress` is called with the simulated time every ten
/// simulated minutes.
pub fn run(config: SimConfig, progress: impl FnMut(Duration) + 'static) -> Result<SimReport, SimError> {
    config.validate()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build()?;
    let system = actix::System::with_tokio_rt(move || runtime);
    let started = Instant::now();
    let mut report = system.block_on(simulate(config, progress))?;
    report.wall = started.elapsed();
    Ok(report)
}

/// The date simulated runs start at: fixed, so the same seed gives the same timestamps.
pub fn epoch() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").expect("a valid date").with_timezone(&Utc)
}

async fn simulate(config: SimConfig, mut progress: impl FnMut(Duration)) -> Result<SimReport, SimError> {
    let clock = Clock::virtual_at(epoch());
    let calm_after = epoch() + chrono::Duration::from_std(config.duration).unwrap_or(chrono::Duration::MAX);
    let chaos = Chaos {
        seed: config.seed,
        no_capacity: config.no_capacity,
        rate_limited: config.rate_limited,
        lost_answer: config.lost_answer,
        mean_spot_life: config.mean_spot_life,
        boot_seconds: (30, 120),
        calm_after,
    };
    let providers: Vec<Arc<SimProvider>> = PROVIDER_NAMES[..config.providers]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let catalog_seed = config.seed.wrapping_mul(31).wrapping_add(i as u64);
            Arc::new(SimProvider::new(name.parse().expect("a valid name"), catalog_seed, clock, chaos.clone()))
        })
        .collect();
    let market = Market::new(providers.iter().map(|p| p.clone() as Arc<dyn ProviderClient>).collect());
    let journal = MemoryJournal::default();
    let supervisor_config = SupervisorConfig {
        poll_interval: config.poll_interval,
        retry_delay: Duration::from_secs(2),
        clock,
        ..SupervisorConfig::default()
    };
    let supervisor = Supervisor::start(journal.clone(), market, supervisor_config).await?;

    for arrival in workload::arrivals(config.seed, config.instances, config.duration) {
        let supervisor = supervisor.clone();
        actix::spawn(async move {
            tokio::time::sleep(arrival.after).await;
            let launched = supervisor.send(Launch { id: arrival.id.clone(), request: arrival.command }).await;
            if !matches!(launched, Ok(Ok(_))) {
                tracing::warn!(instance = %arrival.id, "simulated launch refused");
            }
            if let Some(at) = arrival.terminate_after {
                tokio::time::sleep(at.saturating_sub(arrival.after)).await;
                // Refused when the chain already ended (a limit, a failure): users are late too.
                let _ =
                    supervisor.send(Terminate { id: arrival.id, reason: "the simulated user is done".into() }).await;
            }
        });
    }
    let simulated = config.duration + SETTLE;
    let step = Duration::from_secs(600);
    let mut elapsed = Duration::ZERO;
    while elapsed < simulated {
        let next = (elapsed + step).min(simulated);
        tokio::time::sleep(next - elapsed).await;
        elapsed = next;
        progress(elapsed);
    }
    let end = clock.now();
    report(config, &journal, &providers, simulated, end)
}

fn report(
    config: SimConfig,
    journal: &MemoryJournal,
    providers: &[Arc<SimProvider>],
    simulated: Duration,
    end: DateTime<Utc>,
) -> Result<SimReport, SimError> {
    let chains = journal.chains()?;
    let mut violations = Vec::new();
    let mut events = BTreeMap::new();
    let mut outcomes = BTreeMap::new();
    let mut in_journal = BTreeSet::new();
    let mut waiting_to_relaunch = BTreeSet::new();
    let mut ledger = CostLedger::default();
    let mut digest = Sha256::new();
    let mut adopted = 0;
    for (id, chain) in &chains {
        if let Err(why) = check::validate_chain(id, chain) {
            violations.push(why);
        }
        let mut instance = Instance::default();
        digest.update(id.as_str());
        for event in chain {
            *events.entry(event.type_name()).or_default() += 1;
            adopted += usize::from(matches!(
                event,
                InstanceEvent::Launched { adopted: true, .. } | InstanceEvent::Relaunched { adopted: true, .. }
            ));
            ledger.apply(id, event);
            instance.fold(event.clone());
            digest.update(without_timestamps(event).as_bytes());
        }
        *outcomes.entry(outcome(&instance, chain)).or_default() += 1;
        violations.extend(check::limits_kept(id, chain, end, config.poll_interval));
        if instance.current_state() == Some(InstanceState::Interrupted)
            && let Some(lost) = &instance.replaces
        {
            waiting_to_relaunch.insert(lost.id.clone());
        }
        if let (Some(state), Some(machine)) = (instance.current_state(), &instance.machine)
            && !state.is_final()
            && let Some(provider) = &machine.provider
        {
            in_journal.insert((provider.to_string(), machine.id.clone()));
        }
    }
    let mut at_providers = BTreeSet::new();
    let mut provider_calls = BTreeMap::new();
    for provider in providers {
        for (id, machine) in provider.machines() {
            match machine.status(end).1 {
                MachineStatus::Running | MachineStatus::Starting => {
                    at_providers.insert((provider.name().to_string(), id));
                }
                MachineStatus::Interrupted(_) if !waiting_to_relaunch.contains(&id) => violations.push(format!(
                    "{} keeps the stopped machine {id}, which no chain waits to replace",
                    provider.name()
                )),
                _ => {}
            }
        }
        let calls = provider.calls();
        violations.extend(check::launched_twice(
            calls.iter().filter(|c| c.operation == "launch").map(|c| c.subject.as_str()),
        ));
        for call in calls {
            *provider_calls.entry(format!("{} {}", call.operation, call.outcome)).or_default() += 1;
        }
    }
    violations.extend(check::compare_machines(&at_providers, &in_journal));
    let totals = ledger.total(epoch(), end);
    Ok(SimReport {
        config,
        simulated,
        wall: Duration::ZERO,
        events,
        commits: journal.commit_count(),
        outcomes,
        provider_calls,
        adopted,
        running_at_end: at_providers.len(),
        cost: totals.cost(),
        on_demand_cost: totals.on_demand_cost(),
        digest: digest.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect(),
        violations,
        chains,
    })
}

/// An event's JSON with every `at` removed: what must be equal across runs of one seed even if
/// timestamps were not.
fn without_timestamps(event: &InstanceEvent) -> String {
    fn strip(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                map.remove("at");
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(event).expect("instance events serialize");
    strip(&mut value);
    value.to_string()
}

/// How a chain ended up, in a few words.
fn outcome(instance: &Instance, chain: &[InstanceEvent]) -> String {
    let limit = chain.iter().find_map(|e| match e {
        InstanceEvent::TerminationRequested { limit, .. } => Some(*limit),
        _ => None,
    });
    let failure = chain.iter().rev().find_map(|e| match e {
        InstanceEvent::LaunchFailed { class, .. } => Some(*class),
        _ => None,
    });
    match instance.current_state() {
        Some(InstanceState::Terminated) => match limit.flatten() {
            Some(Limit::MaxLifetime) => "terminated: max_lifetime reached".into(),
            Some(Limit::Budget) => "terminated: budget reached".into(),
            None => "terminated by the user".into(),
        },
        Some(InstanceState::Failed) if failure == Some(FailureClass::NoOfferFits) => "failed: no offer fits".into(),
        Some(InstanceState::Failed) => "failed: launch attempts used up".into(),
        Some(state) => format!("still {}", state.name()),
        None => "unknown".into(),
    }
}
