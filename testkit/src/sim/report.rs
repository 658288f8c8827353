//! What a simulated run did, in figures, and what its checks found: built once the world has
//! settled, from the journal and the simulated providers' logs and truth.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tgp_actors::aggregate::Instance;
use tgp_events::api::InstanceState;
use tgp_events::events::{FailureClass, Limit};
use tgp_events::{InstanceEvent, InstanceId, Money};

use super::journal::MemoryJournal;
use super::provider_events::ProviderEventLog;
use super::truth::MarketTruth;
use super::{SimConfig, SimError, check, epoch, gave_up, wanted};
use crate::market::{Market, Truth};
use tgp::projections::cost::CostLedger;

/// The checks a run makes, by the names the report counts violations under.
pub const CHECKS: [&str; 7] =
    [LAWFUL, LIMITS, ACCOUNTED, NOTHING_STOPPED, LAUNCHED_ONCE, WANTED_KEPT, NO_TRANSIENT_GIVE_UP];
/// Every chain follows the lifecycle.
pub const LAWFUL: &str = "every chain lawful";
/// No chain outlived its lifetime or its budget.
pub const LIMITS: &str = "limits kept";
/// The providers run exactly what the journal says runs.
pub const ACCOUNTED: &str = "every machine accounted for";
/// No stopped machine is left unless its chain waits to replace it.
pub const NOTHING_STOPPED: &str = "nothing stopped left behind";
/// No attempt label was launched twice.
pub const LAUNCHED_ONCE: &str = "no attempt launched twice";
/// No machine its chain still wanted was destroyed.
pub const WANTED_KEPT: &str = "no wanted machine destroyed";
/// No chain gave up with attempts left on transient causes alone.
pub const NO_TRANSIENT_GIVE_UP: &str = "no chain gave up on transient causes";

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
    /// Hours the chains were live (from `LaunchRequested` to their end, or to the end of the
    /// run), summed: what polling and confirmation cost is counted against.
    pub instance_hours: f64,
    /// Provider calls per instance-hour, by operation (`list`, `status`, `launch`, `terminate`,
    /// `offers`), whatever their outcome.
    pub calls_per_instance_hour: BTreeMap<&'static str, f64>,
    /// What the provider actors journaled in front of the providers, by kind (`circuit open`,
    /// `rate limited (rate cut)`).
    pub provider_events: BTreeMap<String, usize>,
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
    /// The same violations by the check that found them (every check named, the ones that
    /// passed with none).
    pub violations_by_check: BTreeMap<&'static str, Vec<String>>,
    /// Every chain's events.
    pub chains: BTreeMap<InstanceId, Vec<InstanceEvent>>,
}

/// The report of a run that ended at `end`, its checks made.
pub(super) fn report(
    config: SimConfig,
    journal: &MemoryJournal,
    providers: &[Arc<Market>],
    provider_events: &ProviderEventLog,
    simulated: Duration,
    end: DateTime<Utc>,
) -> Result<SimReport, SimError> {
    let chains = journal.chains()?;
    let mut violations = Vec::new();
    let mut by_check: BTreeMap<&'static str, Vec<String>> = CHECKS.iter().map(|c| (*c, Vec::new())).collect();
    let mut found = |check: &'static str, what: Vec<String>, violations: &mut Vec<String>| {
        violations.extend(what.iter().cloned());
        by_check.entry(check).or_default().extend(what);
    };
    let mut events = BTreeMap::new();
    let mut outcomes = BTreeMap::new();
    let mut in_journal = BTreeSet::new();
    let mut waiting_to_relaunch = BTreeSet::new();
    let mut ledger = CostLedger::default();
    let mut digest = Sha256::new();
    let mut adopted = 0;
    for (id, chain) in &chains {
        if let Err(why) = check::validate_chain(id, chain) {
            found(LAWFUL, vec![why], &mut violations);
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
        found(LIMITS, check::limits_kept(id, chain, end, config.poll_interval), &mut violations);
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
    let mut calls_by_operation: BTreeMap<&'static str, usize> =
        ["list", "status", "launch", "terminate", "offers"].into_iter().map(|op| (op, 0)).collect();
    for provider in providers {
        for (id, machine) in provider.machines() {
            match machine.truth(end) {
                Truth::Running | Truth::Starting | Truth::Hidden => {
                    at_providers.insert((provider.name().to_string(), id));
                }
                Truth::Stopped if !waiting_to_relaunch.contains(&id) => {
                    let what =
                        format!("{} keeps the stopped machine {id}, which no chain waits to replace", provider.name());
                    found(NOTHING_STOPPED, vec![what], &mut violations)
                }
                _ => {}
            }
        }
        let calls = provider.calls();
        let twice = check::launched_twice(calls.iter().filter(|c| c.operation == "launch").map(|c| c.subject.as_str()));
        found(LAUNCHED_ONCE, twice, &mut violations);
        for call in calls {
            *provider_calls.entry(format!("{} {}", call.operation, call.outcome)).or_default() += 1;
            *calls_by_operation.entry(short_operation(call.operation)).or_default() += 1;
        }
    }
    found(ACCOUNTED, check::compare_machines(&at_providers, &in_journal), &mut violations);
    let truth = MarketTruth::of(providers, &chains);
    found(WANTED_KEPT, wanted::wanted_destroyed(&chains, &truth.destroyed), &mut violations);
    found(NO_TRANSIENT_GIVE_UP, gave_up::gave_up_on_transients(&chains, &truth), &mut violations);
    let violations_by_check = by_check;
    let instance_hours = live_hours(&chains, end);
    let calls_per_instance_hour = calls_by_operation
        .into_iter()
        .map(|(operation, n)| (operation, if instance_hours > 0.0 { n as f64 / instance_hours } else { 0.0 }))
        .collect();
    let totals = ledger.total(epoch(), end);
    Ok(SimReport {
        config,
        simulated,
        wall: Duration::ZERO,
        events,
        commits: journal.commit_count(),
        outcomes,
        provider_calls,
        instance_hours,
        calls_per_instance_hour,
        provider_events: provider_events.counts(),
        adopted,
        running_at_end: at_providers.len(),
        cost: totals.cost(),
        on_demand_cost: totals.on_demand_cost(),
        digest: digest.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect(),
        violations,
        violations_by_check,
        chains,
    })
}

/// The short name of a provider operation, as the per-instance-hour counts name it.
fn short_operation(operation: &'static str) -> &'static str {
    match operation {
        "list_instances" => "list",
        "list_offers" => "offers",
        other => other,
    }
}

/// Hours the chains were live, summed: each from its `LaunchRequested` to its `Terminated` or
/// `Failed`, or to `end`.
fn live_hours(chains: &BTreeMap<InstanceId, Vec<InstanceEvent>>, end: DateTime<Utc>) -> f64 {
    let seconds: i64 = chains
        .values()
        .filter_map(|chain| {
            let start = wanted::event_at(chain.first()?);
            let ended = chain.iter().find_map(|e| match e {
                InstanceEvent::Terminated { at, .. } | InstanceEvent::Failed { at, .. } => Some(*at),
                _ => None,
            });
            Some((ended.unwrap_or(end) - start).num_seconds().max(0))
        })
        .sum();
    seconds as f64 / 3_600.0
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
