//! `tgp-dev sim`: the lifecycle of many instances over simulated hours, deterministic and fast.
//!
//! The real supervisor and instance actors run on a tokio runtime whose clock is paused: it
//! moves only when every task waits on a timer, and then jumps straight to the next one, so an
//! hour of polls, boots, backoffs and lifetimes takes seconds. The providers are the in-memory
//! market ([`crate::market`]), misbehaving on its seeded schedule with every misfortune on; the journal keeps commits in memory
//! ([`journal`]); the users' launches and terminations are seeded too ([`workload`]). The same
//! seed gives the same events, chain by chain, timestamps included; the report's digest (of the
//! events without their timestamps) makes that easy to see.
//!
//! After the run the world is left to settle without misfortune, and then [`check`] proves what
//! the run must: every chain is lawful, the providers run exactly what the journal says runs, and
//! no attempt was launched twice. Two more checks hold the journal against the market's truth
//! ([`truth`]): no machine its chain still wanted was destroyed ([`wanted`]), and no chain gave
//! up with attempts left on transient causes alone ([`gave_up`]). The report (`report.rs`) gives
//! the figures, provider calls per instance-hour among them, and every check's findings.

pub mod check;
pub mod gave_up;
pub mod journal;
pub mod provider_events;
mod report;
pub mod truth;
pub mod wanted;
pub mod workload;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use cqrs_es::persist::PersistenceError;
use tgp_actors::clock::Clock;
use tgp_actors::provider::ProviderClient;
use tgp_actors::provider_actor::ProviderActorConfig;
use tgp_actors::supervisor::{Launch, SupervisorConfig, Terminate};
use tgp_actors::system::{System, SystemBuilder};

use crate::market::{Chances, Chaos, Market};
use journal::MemoryJournal;
use provider_events::ProviderEventLog;
pub use report::{
    ACCOUNTED, CHECKS, LAUNCHED_ONCE, LAWFUL, LIMITS, NO_TRANSIENT_GIVE_UP, NOTHING_STOPPED, SimReport, WANTED_KEPT,
};

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
    /// How often each misfortune strikes.
    pub chances: Chances,
    /// Mean life of a spot machine before preemption.
    pub mean_spot_life: Duration,
}

impl SimConfig {
    /// Checks what the types alone cannot: the number of providers and the chances.
    pub fn validate(&self) -> Result<(), SimError> {
        if !(1..=PROVIDER_NAMES.len()).contains(&self.providers) {
            return Err(SimError::Invalid(format!("providers must be 1 to {}", PROVIDER_NAMES.len())));
        }
        self.chances.validate().map_err(SimError::Invalid)?;
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
            chances: Chances::SIM,
            mean_spot_life: Duration::from_secs(40 * 60),
        }
    }
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

/// Runs a simulation to the end; `progress` is called with the simulated time every simulated
/// minute (so a caller can tell a long run from one whose virtual clock stopped moving).
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
        chances: config.chances,
        mean_spot_life: Some(config.mean_spot_life),
        boot: (Duration::from_secs(30), Duration::from_secs(120)),
        calm_after,
    };
    let providers: Vec<Arc<Market>> = PROVIDER_NAMES[..config.providers]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let catalog_seed = config.seed.wrapping_mul(31).wrapping_add(i as u64);
            Arc::new(Market::new(name.parse().expect("a valid name"), catalog_seed, clock, chaos.clone()))
        })
        .collect();
    // Each provider behind its provider actor, assembled as `tgp run` assembles it: the limiter,
    // the breaker, the caches and the retries run on the paused clock too, their jitter seeded.
    let provider_events = Arc::new(ProviderEventLog::default());
    let actor_config = ProviderActorConfig { jitter_seed: Some(config.seed), ..ProviderActorConfig::default() };
    let journal = MemoryJournal::default();
    let supervisor_config = SupervisorConfig {
        poll_interval: config.poll_interval,
        retry_delay: Duration::from_secs(2),
        clock,
        ..SupervisorConfig::default()
    };
    let System { supervisor, .. } = SystemBuilder::new(journal.clone(), provider_events.clone())
        .providers(providers.iter().map(|p| p.clone() as Arc<dyn ProviderClient>), &actor_config)
        .start(supervisor_config)
        .await?;

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
    let step = Duration::from_secs(60);
    let mut elapsed = Duration::ZERO;
    while elapsed < simulated {
        let next = (elapsed + step).min(simulated);
        tokio::time::sleep(next - elapsed).await;
        elapsed = next;
        progress(elapsed);
    }
    let end = clock.now();
    report::report(config, &journal, &providers, &provider_events, simulated, end)
}
