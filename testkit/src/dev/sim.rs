//! `tgp-dev sim`: a seeded, virtual-clock run of many instances on a misbehaving simulated market,
//! with a summary and the checks the run must pass.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::market::Chances;
use crate::sim::{SimConfig, SimReport, run};
use clap::Args;

use tgp::cli::parse_duration;

/// What to simulate: the seed, the length, the workload and how badly the market behaves.
#[derive(Args)]
#[command(after_help = "Examples:
  tgp-dev sim --seed 7 --duration 1h --instances 100
  tgp-dev sim --seed 7 --no-capacity 0.5 --providers 1      # a scarce market
  tgp-dev sim --seed 7 --events sim-0042                   # one chain's events

The same seed gives the same events (the digest line shows it). The run exits non-zero when a
check fails: a chain breaking the lifecycle, a machine the journal does not account for, an
attempt launched twice, a machine destroyed that its chain still wanted, or a chain that gave up
with attempts left on transient causes alone.")]
pub struct SimArgs {
    /// Seeds the workload and every misfortune.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Simulated time with misfortune, e.g. 30m or 1h (then 10 calm minutes to settle).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    duration: Duration,
    /// Instances launched over the first quarter of the run.
    #[arg(long, default_value_t = 100)]
    instances: usize,
    /// How often providers are polled.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    poll_interval: Duration,
    /// Simulated providers in the market (1 to 3).
    #[arg(long, default_value_t = 3)]
    providers: usize,
    #[command(flatten)]
    chances: Chances,
    /// Mean life of a spot machine before the provider preempts it.
    #[arg(long, default_value = "40m", value_parser = parse_duration)]
    mean_spot_life: Duration,
    /// Give up when the virtual clock has not moved a simulated minute in this much real time
    /// (an actor that keeps running without waiting on a timer holds the clock still forever).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    stall_timeout: Duration,
    /// Also print every event of these instances.
    #[arg(long, value_delimiter = ',')]
    events: Vec<tgp_events::InstanceId>,
}

/// Runs the simulation, prints its summary, and fails when a check failed.
pub fn sim(args: SimArgs) -> anyhow::Result<()> {
    let config = SimConfig {
        seed: args.seed,
        instances: args.instances,
        duration: args.duration,
        poll_interval: args.poll_interval,
        providers: args.providers,
        chances: args.chances,
        mean_spot_life: args.mean_spot_life,
    };
    config.validate()?;
    eprintln!(
        "simulating {} instances for {} (+{} to settle), seed {}",
        config.instances,
        minutes(config.duration),
        minutes(crate::sim::SETTLE),
        config.seed
    );
    let moved = watch_for_a_stall(args.stall_timeout);
    let report = run(config, move |at| {
        *moved.lock().expect("progress") = (Instant::now(), at);
        if at.as_secs() % 600 == 0 {
            eprintln!("  simulated {}", minutes(at));
        }
    })?;
    print(&report);
    for id in &args.events {
        println!("\nevents of {id}:");
        for event in report.chains.get(id).into_iter().flatten() {
            println!("  {}", tgp::render::describe(event));
        }
    }
    if !report.violations.is_empty() {
        anyhow::bail!("{} check(s) failed", report.violations.len());
    }
    Ok(())
}

/// Watches the progress a run reports and ends the process with a clear error when it stops:
/// the simulation runs on one thread that a spinning actor never hands back, so only another
/// thread can tell. Answers where the run reports its progress (when, and the simulated time).
fn watch_for_a_stall(timeout: Duration) -> Arc<Mutex<(Instant, Duration)>> {
    let moved = Arc::new(Mutex::new((Instant::now(), Duration::ZERO)));
    let watched = moved.clone();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let (when, at) = *watched.lock().expect("progress");
            if when.elapsed() >= timeout {
                eprintln!(
                    "error: the simulated clock has stood at {} for {} s of real time: some actor keeps running \
                     without waiting on a timer, so virtual time cannot move (a livelock in the code simulated)",
                    minutes(at),
                    when.elapsed().as_secs()
                );
                std::process::exit(3);
            }
        }
    });
    moved
}

fn minutes(d: Duration) -> String {
    format!("{}m", d.as_secs() / 60)
}

fn print(report: &SimReport) {
    println!(
        "{} of simulated time in {:.2} s of real time ({} commits)",
        minutes(report.simulated),
        report.wall.as_secs_f64(),
        report.commits
    );
    println!("outcomes:");
    for (outcome, n) in &report.outcomes {
        println!("  {n:>5}  {outcome}");
    }
    println!("events:");
    for (kind, n) in &report.events {
        println!("  {n:>5}  {kind}");
    }
    println!("provider calls:");
    for (call, n) in &report.provider_calls {
        println!("  {n:>5}  {call}");
    }
    println!("provider calls per instance-hour ({:.1} instance-hours):", report.instance_hours);
    for (operation, rate) in &report.calls_per_instance_hour {
        println!("  {rate:>9.2}  {operation}");
    }
    println!("provider events (the provider actors' limiters and breakers; the supervisor's suspect listings):");
    if report.provider_events.is_empty() {
        println!("  none");
    }
    for (kind, n) in &report.provider_events {
        println!("  {n:>5}  {kind}");
    }
    println!("adopted after a lost answer: {}", report.adopted);
    println!("running at the providers at the end: {}", report.running_at_end);
    println!(
        "cost: {} (on demand it would have been {})",
        report.cost.round_cents(),
        report.on_demand_cost.round_cents()
    );
    println!("digest of the events (timestamps aside): {}", report.digest);
    if report.violations.is_empty() {
        println!("checks: {}", crate::sim::CHECKS.join("; "));
    } else {
        println!("checks FAILED:");
        for (check, found) in &report.violations_by_check {
            println!("  {:>5}  {check}", found.len());
        }
        for (check, found) in report.violations_by_check.iter().filter(|(_, found)| !found.is_empty()) {
            println!("{check}: the first {} of {}:", found.len().min(SHOWN), found.len());
            for v in found.iter().take(SHOWN) {
                println!("  {v}");
            }
        }
    }
}

/// How many violations of each check the summary prints; every check's count is printed.
const SHOWN: usize = 20;
