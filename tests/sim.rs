//! The seeded simulation (issue 5's simulated hour): 100 instances for an hour on a market that
//! preempts spot machines, runs out of capacity, answers 429 and loses launch answers. Every chain
//! must be lawful, the providers must run exactly what the journal says runs, no attempt may be
//! launched twice, no stopped machine may be left, every limit must hold (no chain outlives its
//! lifetime or its budget), and the same seed must give the same events.

use std::process::Command;

use tgp::sim::{SimConfig, run};

fn count(report: &tgp::sim::SimReport, kind: &str) -> usize {
    report.events.get(kind).copied().unwrap_or(0)
}

#[test]
fn a_seeded_hour_of_100_instances_is_lawful_and_the_same_seed_gives_the_same_events() {
    let config = SimConfig { seed: 7, instances: 100, ..SimConfig::default() };
    let first = run(config.clone(), |_| {}).expect("the simulation runs");
    assert_eq!(first.violations, Vec::<String>::new());
    assert_eq!(first.chains.len(), 100);

    // The market misbehaved in every way it can, and tgp went through each path.
    assert!(count(&first, "Interrupted") >= 10, "{:?}", first.events);
    assert!(count(&first, "Relaunched") >= 10, "{:?}", first.events);
    assert!(first.adopted >= 1, "a lost launch answer was adopted by reconciliation");
    for call in ["launch capacity", "launch rate_limited", "launch answer_lost", "list_instances rate_limited"] {
        assert!(first.provider_calls.get(call).is_some_and(|n| *n > 0), "no {call}: {:?}", first.provider_calls);
    }
    assert!(first.outcomes.contains_key("terminated: max_lifetime reached"), "{:?}", first.outcomes);
    assert!(first.outcomes.contains_key("terminated by the user"), "{:?}", first.outcomes);
    assert!(first.outcomes.contains_key("terminated: budget reached"), "{:?}", first.outcomes);
    assert!(count(&first, "OrphanTerminated") >= 1, "stopped machines of ended chains were destroyed");
    assert!(first.cost > tgp_events::Money::ZERO && first.cost < first.on_demand_cost);

    let again = run(config.clone(), |_| {}).expect("the simulation runs");
    assert_eq!(again.digest, first.digest);
    assert!(again.chains == first.chains, "the same seed gives the same events, timestamps included");
    assert_eq!(again.cost, first.cost);

    let other = run(SimConfig { seed: 8, ..config }, |_| {}).expect("the simulation runs");
    assert_ne!(other.digest, first.digest, "another seed, another history");
    assert_eq!(other.violations, Vec::<String>::new());
}

#[test]
fn tgp_sim_prints_a_summary_and_passes_its_checks() {
    let output = Command::new(env!("CARGO_BIN_EXE_tgp"))
        .args(["sim", "--seed", "3", "--instances", "30", "--duration", "30m", "--events", "sim-0001"])
        .output()
        .expect("tgp runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    for line in ["40m of simulated time", "outcomes:", "provider calls:", "digest of the events", "events of sim-0001"]
    {
        assert!(stdout.contains(line), "{line:?} missing from:\n{stdout}");
    }
    assert!(stdout.contains("checks: every chain lawful"), "{stdout}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("simulated 40m"), "progress is shown");
}
