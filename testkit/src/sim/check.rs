//! What a simulated run must prove, checked from the outside: every chain's events follow the
//! lifecycle, the providers run exactly the machines the journal says run, and no attempt was
//! launched twice. The chain check is a second, independent reading of the lifecycle rules (not
//! the aggregate replayed), so a bug in the aggregate cannot hide itself.

use std::collections::{BTreeMap, BTreeSet};

use std::time::Duration;

use chrono::{DateTime, Utc};
use tgp_events::events::Limit;
use tgp_events::{AttemptId, InstanceEvent, InstanceId, SpotPolicy};

use tgp::projections::cost::CostLedger;

/// Checks one chain's events; the first rule broken, with where.
pub fn validate_chain(id: &InstanceId, events: &[InstanceEvent]) -> Result<(), String> {
    let mut chain = Chain::default();
    for (i, event) in events.iter().enumerate() {
        chain.step(id, i, event).map_err(|why| format!("{id} event {} ({}): {why}", i + 1, event.type_name()))?;
    }
    Ok(())
}

/// What the chain check keeps.
#[derive(Default)]
struct Chain {
    max_attempts: u32,
    max_machine_price: Option<tgp_events::Money>,
    spot_allowed: bool,
    on_demand_allowed: bool,
    attempts: u32,
    offer_selected: bool,
    pending: Option<AttemptId>,
    machine: Option<String>,
    running: bool,
    interrupted: Option<String>,
    terminating: bool,
    finished: bool,
}

impl Chain {
    fn step(&mut self, id: &InstanceId, index: usize, event: &InstanceEvent) -> Result<(), String> {
        use InstanceEvent as E;
        if index == 0 {
            let E::LaunchRequested { instance_id, request, .. } = event else {
                return Err("a chain starts with LaunchRequested".into());
            };
            if instance_id != id {
                return Err(format!("requested for {instance_id}"));
            }
            self.max_attempts = request.relaunch.max_attempts;
            self.max_machine_price = Some(request.max_machine_price());
            self.spot_allowed = request.spot_policy != SpotPolicy::OnDemandOnly;
            self.on_demand_allowed = match request.spot_policy {
                SpotPolicy::OnDemandOnly => true,
                SpotPolicy::SpotOnly => false,
                SpotPolicy::PreferSpot => request.relaunch.on_demand_fallback,
            };
            return Ok(());
        }
        if self.finished && !matches!(event, E::OrphanTerminated { .. }) {
            return Err("after the chain ended".into());
        }
        match event {
            E::LaunchRequested { .. } => return Err("requested twice".into()),
            E::OfferSelected { offer, .. } => {
                if self.machine.is_some() || self.pending.is_some() || self.offer_selected {
                    return Err("an offer chosen while one is in use".into());
                }
                if self.max_machine_price.is_some_and(|max| offer.hourly_price > max) {
                    return Err(format!("offer at {} over the maximum", offer.hourly_price));
                }
                if (offer.spot && !self.spot_allowed) || (!offer.spot && !self.on_demand_allowed) {
                    return Err(format!(
                        "a {} offer against the spot policy",
                        if offer.spot { "spot" } else { "on-demand" }
                    ));
                }
                self.offer_selected = true;
            }
            E::LaunchAttempted { attempt_id, attempt_number, .. } => {
                if !self.offer_selected || self.pending.is_some() {
                    return Err("an attempt without a fresh offer".into());
                }
                if *attempt_number != self.attempts + 1 || *attempt_id != AttemptId::new(id, *attempt_number) {
                    return Err(format!("attempt {attempt_id} numbered {attempt_number} after {}", self.attempts));
                }
                if *attempt_number > self.max_attempts {
                    return Err(format!("attempt {attempt_number} of at most {}", self.max_attempts));
                }
                self.attempts = *attempt_number;
                self.pending = Some(attempt_id.clone());
            }
            E::Launched { attempt_id, provider_instance_id, .. }
            | E::Relaunched { attempt_id, provider_instance_id, .. } => {
                if self.pending.as_ref() != Some(attempt_id) {
                    return Err(format!("outcome of {attempt_id}, pending {:?}", self.pending));
                }
                match (event, &self.interrupted) {
                    (E::Launched { .. }, Some(lost)) => return Err(format!("Launched after {lost} was lost")),
                    (E::Relaunched { replaces, .. }, lost) if lost.as_ref() != Some(replaces) => {
                        return Err(format!("replaces {replaces}, but the lost machine is {lost:?}"));
                    }
                    _ => {}
                }
                self.pending = None;
                self.offer_selected = false;
                self.machine = Some(provider_instance_id.clone());
                self.running = false;
            }
            E::LaunchFailed { attempt_id, .. } => {
                if let Some(attempt_id) = attempt_id {
                    if self.pending.as_ref() != Some(attempt_id) {
                        return Err(format!("failure of {attempt_id}, pending {:?}", self.pending));
                    }
                    self.pending = None;
                }
                self.offer_selected = false;
            }
            E::Running { provider_instance_id, .. } => {
                if self.machine.as_ref() != Some(provider_instance_id) || self.running {
                    return Err(format!("running {provider_instance_id}, current {:?}", self.machine));
                }
                self.running = true;
            }
            E::Interrupted { provider_instance_id, .. } => {
                if self.machine.as_ref() != Some(provider_instance_id) {
                    return Err(format!("interrupted {provider_instance_id}, current {:?}", self.machine));
                }
                self.interrupted = self.machine.take();
                self.running = false;
            }
            E::TerminationRequested { .. } => {
                if self.terminating {
                    return Err("termination requested twice".into());
                }
                self.terminating = true;
            }
            E::Terminated { provider_instance_id, .. } => {
                if !self.terminating || self.pending.is_some() || *provider_instance_id != self.machine {
                    return Err(format!("terminated {provider_instance_id:?}, current {:?}", self.machine));
                }
                self.finished = true;
            }
            E::Failed { .. } => self.finished = true,
            E::WaitingForCapacity { .. } => {
                if self.machine.is_some() || self.pending.is_some() || self.offer_selected {
                    return Err("waiting for capacity while an offer is in use".into());
                }
            }
            E::Reappeared { provider_instance_id, replaced_by, .. } => {
                if self.terminating || *replaced_by != self.machine {
                    return Err(format!(
                        "{provider_instance_id} reappeared replacing {replaced_by:?}, current {:?}",
                        self.machine
                    ));
                }
                if self.interrupted.as_ref() == Some(provider_instance_id) {
                    self.interrupted = None;
                }
                self.pending = None;
                self.offer_selected = false;
                self.machine = Some(provider_instance_id.clone());
                self.running = true;
            }
            E::OrphanTerminated { provider_instance_id, .. } => {
                if self.machine.as_ref() == Some(provider_instance_id) {
                    return Err("the current machine cleaned up as an orphan".into());
                }
            }
        }
        Ok(())
    }
}

/// Checks a chain kept its launch command's limits up to `end`: no limit termination before its
/// deadline, no chain alive well past its `max_lifetime` (one poll and the termination margin
/// allowed), and a bill within its `budget`.
pub fn limits_kept(id: &InstanceId, events: &[InstanceEvent], end: DateTime<Utc>, poll: Duration) -> Vec<String> {
    let Some(InstanceEvent::LaunchRequested { request, at: requested, .. }) = events.first() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let lifetime_end = request.max_lifetime.and_then(|l| l.to_chrono()).map(|l| *requested + l);
    let mut ended = None;
    for event in events {
        match event {
            InstanceEvent::TerminationRequested { limit: Some(Limit::MaxLifetime), at, .. }
                if lifetime_end.is_none_or(|deadline| *at < deadline) =>
            {
                out.push(format!("{id}: ended for max_lifetime at {at}, before {lifetime_end:?}"));
            }
            InstanceEvent::Terminated { at, .. } | InstanceEvent::Failed { at, .. } => ended = Some(*at),
            _ => {}
        }
    }
    let grace = chrono::Duration::from_std(poll).unwrap_or_default() + chrono::Duration::seconds(60);
    if let Some(deadline) = lifetime_end
        && ended.unwrap_or(end) > deadline + grace
    {
        out.push(format!("{id}: lived past its max_lifetime ({deadline}) until {}", ended.unwrap_or(end)));
    }
    if let Some(budget) = request.budget {
        let mut ledger = CostLedger::default();
        events.iter().for_each(|e| ledger.apply(id, e));
        let spent = ledger.total(*requested, end);
        if spent.cost() > budget {
            out.push(format!("{id}: billed {} against a budget of {budget}", spent.cost()));
        }
    }
    out
}

/// Machines a provider bills for compute at the end, by provider and id, against those the
/// journal says run: any difference, in words.
pub fn compare_machines(
    at_providers: &BTreeSet<(String, String)>,
    in_journal: &BTreeSet<(String, String)>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (provider, machine) in at_providers.difference(in_journal) {
        out.push(format!("{provider} runs {machine}, which the journal does not account for"));
    }
    for (provider, machine) in in_journal.difference(at_providers) {
        out.push(format!("the journal says {machine} runs at {provider}, which does not run it"));
    }
    out
}

/// Attempt labels a provider received more than one launch for: each is a double launch.
pub fn launched_twice<'a>(labels: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
    for label in labels {
        *counts.entry(label).or_default() += 1;
    }
    counts.into_iter().filter(|(_, n)| *n > 1).map(|(label, n)| format!("{label} launched {n} times")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> InstanceId {
        "sim-0001".parse().unwrap()
    }

    fn chain(extra: &str) -> Vec<InstanceEvent> {
        let at = r#""at":"2026-01-01T00:00:00Z""#;
        let offer = r#"{"provider":"sim-a","offer_id":"o","gpu_type":"H100","gpu_count":1,"region":"us-east","hourly_price":"1.00","spot":true}"#;
        let json = format!(
            r#"[{{"type":"LaunchRequested","data":{{"instance_id":"sim-0001","request":{{"gpu_type":"H100","gpu_count":1,"max_hourly_price":"2"}},{at}}}}},
               {{"type":"OfferSelected","data":{{"offer":{offer},"bid":null,"reason":"cheapest","candidates":[],{at}}}}},
               {{"type":"LaunchAttempted","data":{{"attempt_id":"tgp-sim-0001-1","attempt_number":1,"provider":"sim-a","offer_id":"o",{at}}}}}
               {extra}]"#
        );
        serde_json::from_str(&json).unwrap()
    }

    #[test]
    fn a_lawful_chain_passes_and_a_broken_one_says_where() {
        let launched = r#",{"type":"Launched","data":{"attempt_id":"tgp-sim-0001-1","provider":"sim-a","provider_instance_id":"m-1","hourly_price":"1.00","spot":true,"billing":{"unit":"second","minimum_seconds":0},"adopted":false,"at":"2026-01-01T00:00:00Z"}}"#;
        assert_eq!(validate_chain(&id(), &chain(launched)), Ok(()));
        let twice = launched.repeat(2);
        let err = validate_chain(&id(), &chain(&twice)).unwrap_err();
        assert!(err.contains("event 5 (Launched)"), "{err}");
        let on_demand_only = chain("").into_iter().next().map(|e| match e {
            InstanceEvent::LaunchRequested { instance_id, mut request, at } => {
                request.spot_policy = SpotPolicy::OnDemandOnly;
                InstanceEvent::LaunchRequested { instance_id, request, at }
            }
            other => other,
        });
        let mut against_policy = chain("");
        against_policy[0] = on_demand_only.unwrap();
        let err = validate_chain(&id(), &against_policy).unwrap_err();
        assert!(err.contains("a spot offer against the spot policy"), "{err}");
        let running_other =
            r#",{"type":"Running","data":{"provider_instance_id":"m-9","connection":{},"at":"2026-01-01T00:00:00Z"}}"#;
        let err = validate_chain(&id(), &chain(&format!("{launched}{running_other}"))).unwrap_err();
        assert!(err.contains("running m-9"), "{err}");
    }

    #[test]
    fn an_overspent_budget_and_an_outlived_lifetime_are_reported() {
        let t0: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let request = tgp_events::LaunchCommand::from_json(
            br#"{"gpu_type":"H100","gpu_count":1,"max_hourly_price":"2","budget":"1.00","max_lifetime":"1h"}"#,
        )
        .unwrap()
        .with_env(Default::default());
        let events = vec![
            InstanceEvent::LaunchRequested { instance_id: id(), request, at: t0 },
            InstanceEvent::Launched {
                attempt_id: AttemptId::new(&id(), 1),
                provider: "sim-a".parse().unwrap(),
                provider_instance_id: "m-1".into(),
                hourly_price: "2.00".parse().unwrap(),
                spot: false,
                billing: tgp_events::BillingGranularity::PER_SECOND,
                adopted: false,
                at: t0,
            },
        ];
        // Thirty minutes at $2/h is exactly the budget; two hours is over both limits.
        let half_hour = t0 + chrono::Duration::minutes(30);
        assert_eq!(limits_kept(&id(), &events, half_hour, Duration::from_secs(15)), Vec::<String>::new());
        let found = limits_kept(&id(), &events, t0 + chrono::Duration::hours(2), Duration::from_secs(15));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("lived past its max_lifetime") && found[1].contains("billed $4.00"), "{found:?}");
    }

    #[test]
    fn a_double_launch_and_an_unaccounted_machine_are_reported() {
        assert_eq!(launched_twice(["a", "b", "a"]), ["a launched 2 times"]);
        let providers = BTreeSet::from([("p".to_string(), "m-1".to_string()), ("p".into(), "m-2".into())]);
        let journal = BTreeSet::from([("p".to_string(), "m-1".to_string())]);
        assert_eq!(compare_machines(&providers, &journal), ["p runs m-2, which the journal does not account for"]);
    }
}
