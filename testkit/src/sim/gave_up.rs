//! Check: no chain failed with attempts left when the only cause was transient.
//!
//! 429s, 5xx, timeouts, malformed answers and unknown outcomes say something about a provider's
//! health, not about whether a chain can have a machine (issue 10). A chain that ends `Failed`
//! before its attempts are used up must have had a cause that is not passing:
//! - a capacity error, or a permanent one (authentication, an invalid request, not found);
//! - a limit of its launch command;
//! - a real interruption (the market says the machine had stopped or vanished);
//! - no offer in the market that fits its request and budget at all;
//! - a `wait_for_capacity` that expired.
//!
//! It is a violation when none of those is found and a transient one is: a transient launch
//! failure, a machine declared lost while it was really alive, or "no offer fits" while the
//! market held a fitting offer (the offers were unreachable, or an offering was avoided after a
//! transient failure).

use std::collections::BTreeMap;

use tgp_events::events::FailureClass;
use tgp_events::{InstanceEvent, InstanceId};

use super::truth::MarketTruth;

/// Every chain that gave up on transient causes alone, in words.
pub fn gave_up_on_transients(chains: &BTreeMap<InstanceId, Vec<InstanceEvent>>, truth: &MarketTruth) -> Vec<String> {
    chains.iter().filter_map(|(id, chain)| gave_up(id, chain, truth)).collect()
}

/// The chain's verdict: `Some(why)` when it failed with attempts left on transient causes only.
fn gave_up(id: &InstanceId, chain: &[InstanceEvent], truth: &MarketTruth) -> Option<String> {
    use InstanceEvent as E;
    let Some(E::LaunchRequested { request, .. }) = chain.first() else { return None };
    let (failed, failed_at) = chain.iter().find_map(|e| match e {
        E::Failed { reason, at } => Some((reason, *at)),
        _ => None,
    })?;
    let attempts = chain.iter().filter(|e| matches!(e, E::LaunchAttempted { .. })).count() as u32;
    if attempts >= request.relaunch.max_attempts {
        return None;
    }
    let mut transient = Vec::new();
    for event in chain {
        let cause = match event {
            E::LaunchFailed { class: FailureClass::NoOfferFits, at, .. } => {
                if !truth.fitting.contains(&(id.clone(), *at)) {
                    return None;
                }
                "no offer fits, while the market held one".to_string()
            }
            E::LaunchFailed { class, .. } if is_transient(*class) => format!("{class:?}"),
            E::LaunchFailed { .. } => return None,
            E::Interrupted { provider_instance_id, at, .. } => {
                if !truth.alive_at(provider_instance_id, *at) {
                    return None;
                }
                format!("{provider_instance_id} declared lost while it ran")
            }
            E::TerminationRequested { limit: Some(_), .. } => return None,
            E::WaitingForCapacity { until, .. } if *until <= failed_at => return None,
            _ => continue,
        };
        transient.push(cause);
    }
    (!transient.is_empty()).then(|| {
        format!(
            "{id} failed with {attempts} of {} attempts used, on transient causes only ({}): {failed}",
            request.relaunch.max_attempts,
            transient.join(", ")
        )
    })
}

/// Failures about a provider's health or one lost answer, not about capacity or the request.
fn is_transient(class: FailureClass) -> bool {
    matches!(
        class,
        FailureClass::RateLimited
            | FailureClass::ProviderOutage
            | FailureClass::ContractChanged
            | FailureClass::Unknown
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(failures: &str, attempts: u32) -> Vec<InstanceEvent> {
        let mut json = String::from(
            r#"[{"type":"LaunchRequested","data":{"instance_id":"sim-0001","request":{"gpu_type":"H100","gpu_count":1,"max_hourly_price":"2","relaunch":{"max_attempts":5}},"at":"2026-01-01T00:00:00Z"}}"#,
        );
        for n in 1..=attempts {
            json.push_str(&format!(
                r#",{{"type":"LaunchAttempted","data":{{"attempt_id":"tgp-sim-0001-{n}","attempt_number":{n},"provider":"sim-a","offer_id":"o","at":"2026-01-01T00:00:0{n}Z"}}}}"#
            ));
        }
        json.push_str(failures);
        json.push_str(r#",{"type":"Failed","data":{"reason":"no offer fits","at":"2026-01-01T00:01:00Z"}}]"#);
        serde_json::from_str(&json).unwrap()
    }

    fn failure(class: &str, attempt: Option<u32>, second: u32) -> String {
        let attempt = attempt.map_or("null".to_string(), |n| format!(r#""tgp-sim-0001-{n}""#));
        format!(
            r#",{{"type":"LaunchFailed","data":{{"attempt_id":{attempt},"provider":null,"class":"{class}","message":"m","at":"2026-01-01T00:00:{second:02}Z"}}}}"#
        )
    }

    fn chains(chain: Vec<InstanceEvent>) -> BTreeMap<InstanceId, Vec<InstanceEvent>> {
        BTreeMap::from([("sim-0001".parse().unwrap(), chain)])
    }

    fn fitting_at_30s() -> MarketTruth {
        let at = crate::sim::epoch() + chrono::Duration::seconds(30);
        MarketTruth { fitting: [("sim-0001".parse().unwrap(), at)].into(), ..MarketTruth::default() }
    }

    #[test]
    fn a_chain_that_gave_up_after_one_429_fails_the_check() {
        // Today's code: a 429 on the only fitting offer avoids it, then "no offer fits" ends the chain.
        let events = chain(&(failure("rate_limited", Some(1), 10) + &failure("no_offer_fits", None, 30)), 1);
        let found = gave_up_on_transients(&chains(events), &fitting_at_30s());
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("1 of 5 attempts used, on transient causes only (RateLimited, no offer fits"));
    }

    #[test]
    fn offers_unreachable_in_an_outage_fail_the_check_too() {
        let events = chain(&failure("no_offer_fits", None, 30), 0);
        assert_eq!(gave_up_on_transients(&chains(events), &fitting_at_30s()).len(), 1);
    }

    #[test]
    fn only_an_expired_wait_for_capacity_is_a_cause() {
        let wait = |until: &str| {
            format!(
                r#",{{"type":"WaitingForCapacity","data":{{"reason":"none fits","until":"{until}","at":"2026-01-01T00:00:20Z"}}}}"#
            )
        };
        let failures =
            |until| failure("rate_limited", Some(1), 10) + &wait(until) + &failure("no_offer_fits", None, 30);
        let expired = chain(&failures("2026-01-01T00:00:50Z"), 1);
        assert_eq!(gave_up_on_transients(&chains(expired), &fitting_at_30s()), Vec::<String>::new());
        let cut_short = chain(&failures("2026-01-01T00:30:20Z"), 1);
        assert_eq!(gave_up_on_transients(&chains(cut_short), &fitting_at_30s()).len(), 1);
    }

    #[test]
    fn lawful_failures_pass_the_check() {
        let truth = fitting_at_30s();
        let lawful = [
            // Capacity: the offering was really unavailable.
            chain(&(failure("capacity", Some(1), 10) + &failure("no_offer_fits", None, 30)), 1),
            // Nothing in the market fits (the truth holds no fitting offer at 0:40).
            chain(&failure("no_offer_fits", None, 40), 0),
            // A permanent error.
            chain(&failure("auth", Some(1), 10), 1),
            // Every attempt used up, on 5xx.
            chain(&(1..=5).map(|n| failure("provider_outage", Some(n), 10 + n)).collect::<String>(), 5),
        ];
        for events in lawful {
            assert_eq!(gave_up_on_transients(&chains(events.clone()), &truth), Vec::<String>::new(), "{events:?}");
        }
    }
}
