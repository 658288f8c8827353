//! Given/when/then tests of every transition and refusal of the instance aggregate.

use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use tgp_events::events::{Connection, FailureClass, InstanceEvent, InterruptionReason, OfferSummary};
use tgp_events::{AttemptId, BillingGranularity, InstanceId, LaunchCommand, LaunchRequest, Money};

use crate::aggregate::{Instance, InstanceCommand as C, InstanceError};

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap()
}
fn id() -> InstanceId {
    "job-1".parse().unwrap()
}
fn money(s: &str) -> Money {
    s.parse().unwrap()
}
fn request(max_attempts: u32) -> LaunchRequest {
    LaunchCommand::from_json(
        format!(
            r#"{{"gpu_type":"H100","gpu_count":1,"max_hourly_price":"3","relaunch":{{"max_attempts":{max_attempts}}}}}"#
        )
        .as_bytes(),
    )
    .unwrap()
    .with_env(Default::default())
}
fn offer() -> OfferSummary {
    OfferSummary {
        provider: "simulated".parse().unwrap(),
        offer_id: "o-1".into(),
        gpu_type: tgp_events::GpuType::H100,
        gpu_count: 1,
        region: "us-east".parse().unwrap(),
        hourly_price: money("1.20"),
        spot: true,
    }
}
fn attempt(n: u32) -> AttemptId {
    AttemptId::new(&id(), n)
}

fn requested(max_attempts: u32) -> InstanceEvent {
    InstanceEvent::LaunchRequested { instance_id: id(), request: request(max_attempts), at: at() }
}
fn selected() -> InstanceEvent {
    InstanceEvent::OfferSelected {
        offer: offer(),
        bid: Some(money("1.20")),
        reason: "cheapest".into(),
        candidates: vec![],
        at: at(),
    }
}
fn attempted(n: u32) -> InstanceEvent {
    InstanceEvent::LaunchAttempted {
        attempt_id: attempt(n),
        attempt_number: n,
        provider: offer().provider,
        offer_id: "o-1".into(),
        at: at(),
    }
}
fn launched(n: u32, machine: &str) -> InstanceEvent {
    InstanceEvent::Launched {
        attempt_id: attempt(n),
        provider: offer().provider,
        provider_instance_id: machine.into(),
        hourly_price: money("1.20"),
        spot: true,
        billing: BillingGranularity::PER_SECOND,
        adopted: false,
        at: at(),
    }
}
fn running(machine: &str) -> InstanceEvent {
    InstanceEvent::Running { provider_instance_id: machine.into(), connection: Connection::default(), at: at() }
}
fn interrupted(machine: &str) -> InstanceEvent {
    InstanceEvent::Interrupted {
        provider_instance_id: machine.into(),
        reason: InterruptionReason::Preempted,
        raw_status: "EXITED".into(),
        detected_by: "status_poll".into(),
        at: at(),
    }
}
fn running_chain() -> Vec<InstanceEvent> {
    vec![requested(3), selected(), attempted(1), launched(1, "m-1"), running("m-1")]
}
fn framework() -> TestFramework<Instance> {
    TestFramework::with(())
}

#[test]
fn a_launch_starts_a_chain() {
    framework()
        .given_no_previous_events()
        .when(C::RequestLaunch { id: id(), request: request(3), at: at() })
        .then_expect_events(vec![requested(3)]);
}

#[test]
fn launching_twice_is_refused() {
    framework()
        .given(vec![requested(3)])
        .when(C::RequestLaunch { id: id(), request: request(3), at: at() })
        .then_expect_error(InstanceError::AlreadyExists("requested"));
}

#[test]
fn launching_while_running_is_refused() {
    framework()
        .given(running_chain())
        .when(C::RequestLaunch { id: id(), request: request(3), at: at() })
        .then_expect_error(InstanceError::AlreadyExists("running"));
}

#[test]
fn commands_for_an_unknown_instance_are_refused() {
    framework()
        .given_no_previous_events()
        .when(C::RequestTermination { reason: "x".into(), at: at() })
        .then_expect_error(InstanceError::NotFound);
}

#[test]
fn an_offer_is_selected_then_attempted_then_launched_then_running() {
    framework()
        .given(vec![requested(3)])
        .when(C::SelectOffer {
            offer: offer(),
            bid: Some(money("1.20")),
            reason: "cheapest".into(),
            candidates: vec![],
            at: at(),
        })
        .then_expect_events(vec![selected()]);
    framework()
        .given(vec![requested(3), selected()])
        .when(C::StartAttempt { at: at() })
        .then_expect_events(vec![attempted(1)]);
    framework()
        .given(vec![requested(3), selected(), attempted(1)])
        .when(C::RecordLaunched {
            attempt_id: attempt(1),
            provider_instance_id: "m-1".into(),
            hourly_price: money("1.20"),
            billing: BillingGranularity::PER_SECOND,
            adopted: false,
            at: at(),
        })
        .then_expect_events(vec![launched(1, "m-1")]);
    framework()
        .given(vec![requested(3), selected(), attempted(1), launched(1, "m-1")])
        .when(C::RecordRunning { provider_instance_id: "m-1".into(), connection: Connection::default(), at: at() })
        .then_expect_events(vec![running("m-1")]);
}

#[test]
fn running_seen_again_records_nothing() {
    framework()
        .given(running_chain())
        .when(C::RecordRunning { provider_instance_id: "m-1".into(), connection: Connection::default(), at: at() })
        .then_expect_events(vec![]);
}

#[test]
fn events_out_of_order_are_refused() {
    framework()
        .given(vec![requested(3)])
        .when(C::StartAttempt { at: at() })
        .then_expect_error(InstanceError::WrongState { action: "start a launch attempt", state: "requested" });
    framework()
        .given(vec![requested(3), selected()])
        .when(C::RecordRunning { provider_instance_id: "m-1".into(), connection: Connection::default(), at: at() })
        .then_expect_error(InstanceError::WrongState { action: "observe a machine", state: "launching" });
    framework()
        .given(running_chain())
        .when(C::SelectOffer { offer: offer(), bid: None, reason: "again".into(), candidates: vec![], at: at() })
        .then_expect_error(InstanceError::WrongState { action: "select an offer", state: "running" });
}

#[test]
fn an_outcome_for_another_attempt_is_stale() {
    framework()
        .given(vec![requested(3), selected(), attempted(1)])
        .when(C::RecordLaunchFailed {
            attempt_id: attempt(7),
            class: FailureClass::Capacity,
            message: "full".into(),
            at: at(),
        })
        .then_expect_error(InstanceError::Stale {
            what: "attempt",
            expected: attempt(1).to_string(),
            got: attempt(7).to_string(),
        });
}

#[test]
fn a_failed_attempt_returns_to_selection_until_attempts_run_out() {
    let failed = |n| InstanceEvent::LaunchFailed {
        attempt_id: Some(attempt(n)),
        provider: Some(offer().provider),
        class: FailureClass::Capacity,
        message: "no capacity".into(),
        at: at(),
    };
    framework()
        .given(vec![requested(2), selected(), attempted(1)])
        .when(C::RecordLaunchFailed {
            attempt_id: attempt(1),
            class: FailureClass::Capacity,
            message: "no capacity".into(),
            at: at(),
        })
        .then_expect_events(vec![failed(1)]);
    framework()
        .given(vec![requested(2), selected(), attempted(1), failed(1), selected(), attempted(2)])
        .when(C::RecordLaunchFailed {
            attempt_id: attempt(2),
            class: FailureClass::Capacity,
            message: "no capacity".into(),
            at: at(),
        })
        .then_expect_events(vec![
            failed(2),
            InstanceEvent::Failed { reason: "2 launch attempts used; last: no capacity".into(), at: at() },
        ]);
}

fn no_fit(at: DateTime<Utc>, can_wait: bool) -> C {
    C::NoOfferFits { message: "nothing under $3".into(), can_wait, at }
}

fn fold(events: Vec<InstanceEvent>) -> Instance {
    let mut instance = Instance::default();
    for event in events {
        instance.fold(event);
    }
    instance
}

#[test]
fn no_fitting_offer_waits_for_capacity_once_then_fails_naming_the_wait() {
    let waiting = InstanceEvent::WaitingForCapacity {
        reason: "nothing under $3".into(),
        until: at() + chrono::Duration::minutes(30),
        at: at(),
    };
    framework().given(vec![requested(3)]).when(no_fit(at(), true)).then_expect_events(vec![waiting.clone()]);
    // Still nothing a while later: the wait goes on, journaled once.
    let later = at() + chrono::Duration::minutes(10);
    framework().given(vec![requested(3), waiting.clone()]).when(no_fit(later, true)).then_expect_events(vec![]);
    let expired = at() + chrono::Duration::minutes(30);
    framework().given(vec![requested(3), waiting.clone()]).when(no_fit(expired, true)).then_expect_events(vec![
        InstanceEvent::LaunchFailed {
            attempt_id: None,
            provider: None,
            class: FailureClass::NoOfferFits,
            message: "waited wait_for_capacity 30m and still nothing under $3".into(),
            at: expired,
        },
        InstanceEvent::Failed {
            reason: "no offer fits: waited wait_for_capacity 30m and still nothing under $3".into(),
            at: expired,
        },
    ]);
    // An offer found ends the wait: the next dry spell waits again from its own start.
    let instance = fold(vec![requested(3), waiting, selected()]);
    assert_eq!(instance.waiting_until, None);
}

#[test]
fn no_fitting_offer_fails_at_once_when_waiting_cannot_help() {
    let failed = vec![
        InstanceEvent::LaunchFailed {
            attempt_id: None,
            provider: None,
            class: FailureClass::NoOfferFits,
            message: "nothing under $3".into(),
            at: at(),
        },
        InstanceEvent::Failed { reason: "no offer fits: nothing under $3".into(), at: at() },
    ];
    // Only the budget rules prices out: no wait brings a cheaper machine.
    framework().given(vec![requested(3)]).when(no_fit(at(), false)).then_expect_events(failed.clone());
    // `wait_for_capacity: 0s` keeps the fail-fast of old.
    let fail_fast = LaunchCommand::from_json(
        br#"{"gpu_type":"H100","gpu_count":1,"max_hourly_price":"3","wait_for_capacity":"0s"}"#,
    )
    .unwrap()
    .with_env(Default::default());
    framework()
        .given(vec![InstanceEvent::LaunchRequested { instance_id: id(), request: fail_fast, at: at() }])
        .when(no_fit(at(), true))
        .then_expect_events(failed);
}

#[test]
fn a_transient_launch_failure_backs_off_without_avoiding_the_offering() {
    for class in
        [FailureClass::RateLimited, FailureClass::ProviderOutage, FailureClass::ContractChanged, FailureClass::Unknown]
    {
        let failed = InstanceEvent::LaunchFailed {
            attempt_id: Some(attempt(1)),
            provider: Some(offer().provider),
            class,
            message: "try later".into(),
            at: at(),
        };
        framework()
            .given(vec![requested(3), selected(), attempted(1)])
            .when(C::RecordLaunchFailed { attempt_id: attempt(1), class, message: "try later".into(), at: at() })
            .then_expect_events(vec![failed.clone()]);
        let instance = fold(vec![requested(3), selected(), attempted(1), failed]);
        assert!(instance.avoid.is_empty(), "{class:?} avoided the offering");
        assert_eq!(instance.setbacks, Some((1, at())), "{class:?} backs off");
    }
    // The provider's own capacity error does avoid it.
    let capacity = InstanceEvent::LaunchFailed {
        attempt_id: Some(attempt(1)),
        provider: Some(offer().provider),
        class: FailureClass::Capacity,
        message: "no capacity".into(),
        at: at(),
    };
    assert_eq!(fold(vec![requested(3), selected(), attempted(1), capacity]).avoid.len(), 1);
}

#[test]
fn a_permanent_launch_error_fails_the_chain_at_once_with_the_fix() {
    let message = "no SSH key: set ssh_key_name for lambda";
    framework()
        .given(vec![requested(5), selected(), attempted(1)])
        .when(C::RecordLaunchFailed {
            attempt_id: attempt(1),
            class: FailureClass::InvalidRequest,
            message: message.into(),
            at: at(),
        })
        .then_expect_events(vec![
            InstanceEvent::LaunchFailed {
                attempt_id: Some(attempt(1)),
                provider: Some(offer().provider),
                class: FailureClass::InvalidRequest,
                message: message.into(),
                at: at(),
            },
            InstanceEvent::Failed {
                reason: format!("simulated refused the launch (invalid_request): {message}"),
                at: at(),
            },
        ]);
}

fn vanished(machine: &str, at: DateTime<Utc>) -> InstanceEvent {
    InstanceEvent::Interrupted {
        provider_instance_id: machine.into(),
        reason: InterruptionReason::Vanished,
        raw_status: "absent from the listing; status call: not found".into(),
        detected_by: "status_call".into(),
        at,
    }
}

#[test]
fn a_lost_machine_that_reappears_is_taken_back_and_its_replacement_given_up() {
    let lost_at = at() + chrono::Duration::hours(1);
    let back_at = at() + chrono::Duration::hours(2);
    let relaunched = InstanceEvent::Relaunched {
        attempt_id: attempt(2),
        provider: offer().provider,
        provider_instance_id: "m-2".into(),
        replaces: "m-1".into(),
        hourly_price: money("1.20"),
        spot: true,
        billing: BillingGranularity::PER_SECOND,
        adopted: false,
        at: lost_at,
    };
    let mut given = running_chain();
    given.extend([vanished("m-1", lost_at), selected(), attempted(2), relaunched, running("m-2")]);
    let reappeared = InstanceEvent::Reappeared {
        provider_instance_id: "m-1".into(),
        raw_status: "running".into(),
        connection: Connection::default(),
        detected_by: "status_poll".into(),
        replaced_by: Some("m-2".into()),
        abandoned_attempt: None,
        at: back_at,
    };
    framework()
        .given(given.clone())
        .when(C::RecordReappeared {
            provider_instance_id: "m-1".into(),
            raw_status: "running".into(),
            connection: Connection::default(),
            detected_by: "status_poll".into(),
            at: back_at,
        })
        .then_expect_events(vec![reappeared.clone()]);
    given.push(reappeared);
    let instance = fold(given.clone());
    assert_eq!(instance.current_state(), Some(tgp_events::api::InstanceState::Running));
    assert_eq!(instance.machine.as_ref().map(|m| m.id.as_str()), Some("m-1"));
    assert!(instance.lost.is_empty());
    // m-1 billed as one run from its launch; m-2's hour at $1.20 is closed: $1.20 spent.
    assert_eq!(
        instance.spent_dollar_seconds,
        rust_decimal::Decimal::from(1_20) / rust_decimal::Decimal::from(100) * rust_decimal::Decimal::from(3_600)
    );
    // Terminating it later ends m-1's run at the end: 3 hours of m-1 plus 1 of m-2 in all.
    let end = at() + chrono::Duration::hours(3);
    let mut done = given;
    done.extend([
        InstanceEvent::TerminationRequested { reason: "done".into(), limit: None, at: end },
        InstanceEvent::Terminated { provider_instance_id: Some("m-1".into()), at: end },
    ]);
    assert_eq!(fold(done).spent_dollar_seconds, rust_decimal::Decimal::from(4 * 3_600) * money("1.20").as_decimal());
}

#[test]
fn only_a_machine_declared_lost_can_reappear() {
    framework()
        .given(running_chain())
        .when(C::RecordReappeared {
            provider_instance_id: "m-9".into(),
            raw_status: "running".into(),
            connection: Connection::default(),
            detected_by: "status_poll".into(),
            at: at(),
        })
        .then_expect_error(InstanceError::Stale { what: "lost machine", expected: String::new(), got: "m-9".into() });
}

#[test]
fn an_interruption_leads_to_a_relaunch() {
    let mut given = running_chain();
    framework()
        .given(given.clone())
        .when(C::RecordInterrupted {
            provider_instance_id: "m-1".into(),
            reason: InterruptionReason::Preempted,
            raw_status: "EXITED".into(),
            detected_by: "status_poll".into(),
            at: at(),
        })
        .then_expect_events(vec![interrupted("m-1")]);
    given.extend([interrupted("m-1"), selected(), attempted(2)]);
    framework()
        .given(given)
        .when(C::RecordLaunched {
            attempt_id: attempt(2),
            provider_instance_id: "m-2".into(),
            hourly_price: money("1.20"),
            billing: BillingGranularity::PER_SECOND,
            adopted: false,
            at: at(),
        })
        .then_expect_events(vec![InstanceEvent::Relaunched {
            attempt_id: attempt(2),
            provider: offer().provider,
            provider_instance_id: "m-2".into(),
            replaces: "m-1".into(),
            hourly_price: money("1.20"),
            spot: true,
            billing: BillingGranularity::PER_SECOND,
            adopted: false,
            at: at(),
        }]);
}

#[test]
fn an_interruption_on_the_last_attempt_fails_the_chain() {
    framework()
        .given(vec![requested(1), selected(), attempted(1), launched(1, "m-1")])
        .when(C::RecordInterrupted {
            provider_instance_id: "m-1".into(),
            reason: InterruptionReason::Outbid,
            raw_status: "exited".into(),
            detected_by: "status_poll".into(),
            at: at(),
        })
        .then_expect_events(vec![
            InstanceEvent::Interrupted {
                provider_instance_id: "m-1".into(),
                reason: InterruptionReason::Outbid,
                raw_status: "exited".into(),
                detected_by: "status_poll".into(),
                at: at(),
            },
            InstanceEvent::Failed { reason: "interrupted (Outbid) after 1 launch attempts".into(), at: at() },
        ]);
}

#[test]
fn terminating_a_running_instance_waits_for_the_provider() {
    let requested_termination = InstanceEvent::TerminationRequested { reason: "done".into(), limit: None, at: at() };
    framework()
        .given(running_chain())
        .when(C::RequestTermination { reason: "done".into(), at: at() })
        .then_expect_events(vec![requested_termination.clone()]);
    let mut given = running_chain();
    given.push(requested_termination);
    framework()
        .given(given)
        .when(C::RecordTerminated { at: at() })
        .then_expect_events(vec![InstanceEvent::Terminated { provider_instance_id: Some("m-1".into()), at: at() }]);
}

#[test]
fn terminating_before_anything_runs_ends_at_once() {
    framework()
        .given(vec![requested(3)])
        .when(C::RequestTermination { reason: "changed my mind".into(), at: at() })
        .then_expect_events(vec![
            InstanceEvent::TerminationRequested { reason: "changed my mind".into(), limit: None, at: at() },
            InstanceEvent::Terminated { provider_instance_id: None, at: at() },
        ]);
}

#[test]
fn terminating_during_a_launch_records_the_launch_then_terminates() {
    let given = vec![
        requested(3),
        selected(),
        attempted(1),
        InstanceEvent::TerminationRequested { reason: "stop".into(), limit: None, at: at() },
    ];
    framework()
        .given(given.clone())
        .when(C::RecordTerminated { at: at() })
        .then_expect_error(InstanceError::WrongState { action: "record termination", state: "terminating" });
    framework()
        .given(given)
        .when(C::RecordLaunched {
            attempt_id: attempt(1),
            provider_instance_id: "m-1".into(),
            hourly_price: money("1.20"),
            billing: BillingGranularity::PER_SECOND,
            adopted: false,
            at: at(),
        })
        .then_expect_events(vec![launched(1, "m-1")]);
}

#[test]
fn terminating_twice_is_refused() {
    let mut given = running_chain();
    given.push(InstanceEvent::TerminationRequested { reason: "done".into(), limit: None, at: at() });
    framework()
        .given(given.clone())
        .when(C::RequestTermination { reason: "again".into(), at: at() })
        .then_expect_error(InstanceError::AlreadyTerminating);
    given.push(InstanceEvent::Terminated { provider_instance_id: Some("m-1".into()), at: at() });
    framework()
        .given(given)
        .when(C::RequestTermination { reason: "again".into(), at: at() })
        .then_expect_error(InstanceError::Finished("terminated"));
}

#[test]
fn an_orphan_cleanup_is_recorded_even_after_the_end_but_never_for_the_current_machine() {
    let orphan = |machine: &str, n: u32| C::RecordOrphanCleanup {
        provider: offer().provider,
        provider_instance_id: machine.into(),
        attempt_id: attempt(n),
        raw_status: "running".into(),
        at: at(),
    };
    let mut finished = running_chain();
    finished.push(InstanceEvent::TerminationRequested { reason: "done".into(), limit: None, at: at() });
    finished.push(InstanceEvent::Terminated { provider_instance_id: Some("m-1".into()), at: at() });
    framework().given(finished).when(orphan("m-1", 1)).then_expect_events(vec![InstanceEvent::OrphanTerminated {
        provider: offer().provider,
        provider_instance_id: "m-1".into(),
        attempt_id: attempt(1),
        raw_status: "running".into(),
        at: at(),
    }]);
    framework()
        .given(running_chain())
        .when(orphan("m-1", 1))
        .then_expect_error(InstanceError::WrongState { action: "clean up its own current machine", state: "running" });
}

#[test]
fn a_chain_waiting_for_capacity_does_not_wake_for_its_past_backoff() {
    // A failed attempt set a backoff; the chain selected after it and found nothing.
    let failed = InstanceEvent::LaunchFailed {
        attempt_id: Some(attempt(1)),
        provider: Some(offer().provider),
        class: FailureClass::ProviderOutage,
        message: "502".into(),
        at: at(),
    };
    let mut events = vec![requested(3), selected(), attempted(1), failed];
    assert!(fold(events.clone()).next_wake().is_some(), "the backoff's end wakes the chain");
    events.push(InstanceEvent::WaitingForCapacity {
        reason: "nothing fits".into(),
        until: at() + chrono::Duration::minutes(30),
        at: at() + chrono::Duration::minutes(1),
    });
    assert_eq!(fold(events).next_wake(), None, "the wait's rechecks are the actor's own timer");
}
