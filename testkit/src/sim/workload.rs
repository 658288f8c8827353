//! What the simulated users ask for: a seeded mix of launches (GPU types and counts, spot
//! policies, prices that fit and some that do not, relaunch policies, lifetimes and budgets)
//! arriving over the first quarter of the run, and some terminations by hand.

use std::time::Duration;

use rand::Rng;
use rand::seq::IndexedRandom;
use tgp_events::{GpuType, InstanceId, LaunchCommand, LaunchRequest, Money, RelaunchPolicy, Span, SpotPolicy};

use crate::market::rng_for;

/// One simulated user's launch.
#[derive(Clone, Debug)]
pub struct Arrival {
    /// When, from the start of the run.
    pub after: Duration,
    /// The instance id it is launched under.
    pub id: InstanceId,
    /// What is asked for.
    pub command: LaunchRequest,
    /// When the user terminates it by hand, from the start of the run, if they do.
    pub terminate_after: Option<Duration>,
}

/// The launches of a run: `instances` of them over `duration`, the same for the same seed.
pub fn arrivals(seed: u64, instances: usize, duration: Duration) -> Vec<Arrival> {
    const GPUS: [GpuType; 6] =
        [GpuType::H100, GpuType::H200, GpuType::A100_80GB, GpuType::L40S, GpuType::A6000, GpuType::RTX4090];
    let window_ms = (duration.as_millis() / 4).max(1) as u64;
    let total_ms = duration.as_millis() as u64;
    (0..instances)
        .map(|i| {
            let mut rng = rng_for(seed, &format!("workload/{i}"));
            let after_ms = rng.random_range(0..window_ms);
            let spot_policy = match rng.random_range(0..100) {
                0..60 => SpotPolicy::PreferSpot,
                60..85 => SpotPolicy::SpotOnly,
                _ => SpotPolicy::OnDemandOnly,
            };
            let command = LaunchCommand {
                gpu_type: *GPUS.choose(&mut rng).expect("GPU types"),
                gpu_count: *[1, 1, 1, 2, 4, 8].choose(&mut rng).expect("counts"),
                regions: Vec::new(),
                // Per GPU-hour, from 0.25 to 4.00: the cheapest types fit almost always, the
                // dearest sometimes not at all.
                max_hourly_price: Money::from_cents(rng.random_range(25..=400)),
                spot_policy,
                image: tgp_events::commands::DEFAULT_IMAGE.to_string(),
                env: Default::default(),
                ssh_public_key: None,
                wait_for_capacity: None,
                relaunch: RelaunchPolicy {
                    max_attempts: rng.random_range(2..=8),
                    on_demand_fallback: rng.random_bool(0.8),
                    backoff_seconds: rng.random_range(1..=30),
                    max_backoff_seconds: 300,
                },
                max_lifetime: rng
                    .random_bool(0.2)
                    .then(|| Span::from_secs(rng.random_range(600..=total_ms / 1000 / 2 + 600))),
                budget: rng.random_bool(0.15).then(|| Money::from_cents(rng.random_range(50..=1_000))),
                disk_gb: None,
                min_cpu_ram_gb: None,
                min_vcpus: None,
                providers: Vec::new(),
                exclude_providers: Vec::new(),
                min_reliability: None,
                secure_only: false,
                idempotency_key: None,
            };
            let terminate_after = rng
                .random_bool(0.25)
                .then(|| Duration::from_millis(rng.random_range(after_ms + 1..total_ms.max(after_ms + 2))));
            Arrival {
                after: Duration::from_millis(after_ms),
                id: format!("sim-{i:04}").parse().expect("a valid instance id"),
                command,
                terminate_after,
            }
        })
        .collect()
}
