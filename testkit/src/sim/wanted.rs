//! Check: no machine that its chain still wanted was destroyed.
//!
//! A machine holds a user's work; tgp may destroy one only with positive evidence that its chain
//! does not want it (issue 10). The check holds every terminate call that reached a machine that
//! was really alive (booting, up, or up but out of the API's sight) against the chain's journal
//! up to that moment. The call was lawful only when
//! - the chain had been asked to end (`TerminationRequested`) or had ended, or
//! - the machine was an orphan: neither the chain's current machine nor its pending attempt,
//!   never declared lost (a lost machine that turns up is the chain's to take back, not to
//!   destroy), and superseded by a replacement that runs (`Running` journaled for the chain's
//!   current machine): until then it may be the only machine the chain can have.
//!
//! Destroying a stopped, vanished or already destroyed machine destroys no work and is not
//! looked at.

use std::collections::{BTreeMap, BTreeSet};

use tgp_events::{AttemptId, InstanceEvent, InstanceId};

use crate::market::Destruction;

/// Every destruction of a machine its chain still wanted, in words.
pub fn wanted_destroyed(chains: &BTreeMap<InstanceId, Vec<InstanceEvent>>, destroyed: &[Destruction]) -> Vec<String> {
    let mut out = Vec::new();
    for d in destroyed.iter().filter(|d| d.was.alive()) {
        let what = format!("{} destroyed {} ({:?}, label {}) at {}", d.provider, d.machine, d.was, d.label, d.at);
        let Some(instance) = AttemptId::from_label(&d.label).and_then(|a| a.instance()) else {
            out.push(format!("{what}: the label names no tgp chain"));
            continue;
        };
        let Some(chain) = chains.get(&instance) else {
            out.push(format!("{what}: the journal has no chain {instance}"));
            continue;
        };
        let view = ChainView::until(chain, d.at);
        if view.ending {
            continue;
        }
        if let Some(why) = view.wants(&d.machine, &d.label) {
            out.push(format!("{what}: {instance} still wanted it ({why})"));
        }
    }
    out
}

/// What a chain's journal said at one moment about its machines.
#[derive(Default)]
struct ChainView {
    /// Asked to end, or ended.
    ending: bool,
    /// The machine it runs or waits for.
    current: Option<String>,
    /// Whether the current machine was seen running.
    running: bool,
    /// The attempt whose outcome it waits for.
    pending: Option<AttemptId>,
    /// Machines it declared lost.
    lost: BTreeSet<String>,
}

impl ChainView {
    /// The chain as its events up to `at` (included) say.
    fn until(chain: &[InstanceEvent], at: chrono::DateTime<chrono::Utc>) -> Self {
        use InstanceEvent as E;
        let mut view = ChainView::default();
        for event in chain.iter().take_while(|e| event_at(e) <= at) {
            match event {
                E::LaunchAttempted { attempt_id, .. } => view.pending = Some(attempt_id.clone()),
                E::Launched { provider_instance_id, .. } | E::Relaunched { provider_instance_id, .. } => {
                    view.pending = None;
                    view.current = Some(provider_instance_id.clone());
                    view.running = false;
                }
                E::Running { provider_instance_id, .. } => {
                    view.running = view.current.as_ref() == Some(provider_instance_id);
                }
                E::LaunchFailed { attempt_id: Some(_), .. } => view.pending = None,
                E::Interrupted { provider_instance_id, .. } => {
                    view.lost.insert(provider_instance_id.clone());
                    view.current = None;
                    view.running = false;
                }
                E::Reappeared { provider_instance_id, abandoned_attempt, .. } => {
                    view.lost.remove(provider_instance_id);
                    view.current = Some(provider_instance_id.clone());
                    view.running = true;
                    if abandoned_attempt.is_some() {
                        view.pending = None;
                    }
                }
                E::TerminationRequested { .. } | E::Terminated { .. } | E::Failed { .. } => view.ending = true,
                _ => {}
            }
        }
        view
    }

    /// Why the chain wanted this machine, if it did.
    fn wants(&self, machine: &str, label: &str) -> Option<&'static str> {
        if self.current.as_deref() == Some(machine) {
            Some("its current machine")
        } else if self.pending.as_ref().is_some_and(|a| a.as_str() == label) {
            Some("the machine of its pending attempt")
        } else if self.lost.contains(machine) {
            Some("declared lost, so it was never superseded: the chain's to take back")
        } else if self.current.is_none() || !self.running {
            Some("no replacement ran yet, so it was not superseded")
        } else {
            None
        }
    }
}

/// When an event happened.
pub fn event_at(event: &InstanceEvent) -> chrono::DateTime<chrono::Utc> {
    use InstanceEvent as E;
    match event {
        E::LaunchRequested { at, .. }
        | E::OfferSelected { at, .. }
        | E::LaunchAttempted { at, .. }
        | E::Launched { at, .. }
        | E::Running { at, .. }
        | E::LaunchFailed { at, .. }
        | E::Interrupted { at, .. }
        | E::Relaunched { at, .. }
        | E::TerminationRequested { at, .. }
        | E::Terminated { at, .. }
        | E::OrphanTerminated { at, .. }
        | E::Reappeared { at, .. }
        | E::WaitingForCapacity { at, .. }
        | E::Failed { at, .. } => *at,
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;
    use crate::market::Truth;

    fn at(minute: i64) -> DateTime<Utc> {
        crate::sim::epoch() + chrono::Duration::minutes(minute)
    }

    fn events(json: &str) -> Vec<InstanceEvent> {
        serde_json::from_str(json).unwrap()
    }

    /// A chain whose machine `m-1` was declared vanished after an empty listing at minute 10,
    /// and relaunched on `m-2`.
    fn relaunched_after_a_glitch() -> BTreeMap<InstanceId, Vec<InstanceEvent>> {
        let chain = events(
            r#"[
            {"type":"LaunchRequested","data":{"instance_id":"sim-0001","request":{"gpu_type":"H100","gpu_count":1,"max_hourly_price":"2"},"at":"2026-01-01T00:00:00Z"}},
            {"type":"LaunchAttempted","data":{"attempt_id":"tgp-sim-0001-1","attempt_number":1,"provider":"sim-a","offer_id":"o","at":"2026-01-01T00:00:00Z"}},
            {"type":"Launched","data":{"attempt_id":"tgp-sim-0001-1","provider":"sim-a","provider_instance_id":"m-1","hourly_price":"1.00","spot":false,"billing":{"unit":"second","minimum_seconds":0},"adopted":false,"at":"2026-01-01T00:00:00Z"}},
            {"type":"Interrupted","data":{"provider_instance_id":"m-1","reason":"vanished","raw_status":"absent from listing","detected_by":"status_poll","at":"2026-01-01T00:10:00Z"}},
            {"type":"LaunchAttempted","data":{"attempt_id":"tgp-sim-0001-2","attempt_number":2,"provider":"sim-a","offer_id":"o","at":"2026-01-01T00:10:00Z"}},
            {"type":"Relaunched","data":{"attempt_id":"tgp-sim-0001-2","provider":"sim-a","provider_instance_id":"m-2","replaces":"m-1","hourly_price":"1.00","spot":false,"billing":{"unit":"second","minimum_seconds":0},"adopted":false,"at":"2026-01-01T00:10:00Z"}},
            {"type":"Running","data":{"provider_instance_id":"m-2","connection":{},"at":"2026-01-01T00:12:00Z"}},
            {"type":"TerminationRequested","data":{"reason":"done","at":"2026-01-01T00:50:00Z"}}
        ]"#,
        );
        BTreeMap::from([("sim-0001".parse().unwrap(), chain)])
    }

    fn destroyed(machine: &str, label: &str, minute: i64, was: Truth) -> Destruction {
        Destruction { at: at(minute), provider: "sim-a".into(), machine: machine.into(), label: label.into(), was }
    }

    #[test]
    fn destroying_a_machine_declared_lost_that_was_running_fails_the_check() {
        let chains = relaunched_after_a_glitch();
        // Today's relaunch destroys the "lost" machine first: it was running all along.
        let found = wanted_destroyed(&chains, &[destroyed("m-1", "tgp-sim-0001-1", 10, Truth::Running)]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("sim-0001 still wanted it (declared lost"), "{found:?}");
        // The current machine, before anyone asked to end the chain.
        let found = wanted_destroyed(&chains, &[destroyed("m-2", "tgp-sim-0001-2", 20, Truth::Hidden)]);
        assert!(found.len() == 1 && found[0].contains("its current machine"), "{found:?}");
    }

    #[test]
    fn lawful_destructions_pass_the_check() {
        let chains = relaunched_after_a_glitch();
        let lawful = [
            // The lost machine really was preempted, so no work was destroyed.
            destroyed("m-1", "tgp-sim-0001-1", 10, Truth::Stopped),
            // After the user asked to end the chain.
            destroyed("m-2", "tgp-sim-0001-2", 50, Truth::Running),
            // An orphan: attempt 3 was never current, pending or declared lost, and m-2 runs.
            destroyed("m-3", "tgp-sim-0001-3", 20, Truth::Running),
        ];
        assert_eq!(wanted_destroyed(&chains, &lawful), Vec::<String>::new());
    }

    #[test]
    fn the_machine_of_a_pending_attempt_is_wanted() {
        let mut chains = relaunched_after_a_glitch();
        let chain = chains.values_mut().next().unwrap();
        chain.truncate(5);
        let found = wanted_destroyed(&chains, &[destroyed("m-2", "tgp-sim-0001-2", 11, Truth::Starting)]);
        assert!(found.len() == 1 && found[0].contains("pending attempt"), "{found:?}");
    }

    #[test]
    fn the_replacement_of_a_machine_that_reappeared_may_go_and_the_original_is_kept() {
        let mut chains = relaunched_after_a_glitch();
        let chain = chains.values_mut().next().unwrap();
        let reappeared = r#"{"type":"Reappeared","data":{"provider_instance_id":"m-1","raw_status":"running","detected_by":"status_poll","replaced_by":"m-2","at":"2026-01-01T00:20:00Z"}}"#;
        chain.insert(chain.len() - 1, serde_json::from_str(reappeared).unwrap());
        let replacement = wanted_destroyed(&chains, &[destroyed("m-2", "tgp-sim-0001-2", 20, Truth::Running)]);
        assert_eq!(replacement, Vec::<String>::new());
        let original = wanted_destroyed(&chains, &[destroyed("m-1", "tgp-sim-0001-1", 21, Truth::Running)]);
        assert!(original.len() == 1 && original[0].contains("its current machine"), "{original:?}");
    }

    #[test]
    fn an_orphan_may_go_only_once_a_replacement_runs() {
        let chains = relaunched_after_a_glitch();
        // m-3 of a superseded attempt turns up while m-2 still boots (minute 11): not yet.
        let early = wanted_destroyed(&chains, &[destroyed("m-3", "tgp-sim-0001-3", 11, Truth::Running)]);
        assert!(early.len() == 1 && early[0].contains("no replacement ran yet"), "{early:?}");
        let later = wanted_destroyed(&chains, &[destroyed("m-3", "tgp-sim-0001-3", 12, Truth::Running)]);
        assert_eq!(later, Vec::<String>::new());
    }
}
