//! Given/when/then tests of every transition and refusal of the instance aggregate.

use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use tgp_events::events::{Connection, FailureClass, InstanceEvent, InterruptionReason, OfferSummary};
use tgp_events::{AttemptId, BillingGranularity, InstanceId, LaunchCommand, Money};

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
fn request(max_attempts: u32) -> LaunchCommand {
    LaunchCommand::from_json(
        format!(
            r#"{{"gpu_type":"H100","gpu_count":1,"max_hourly_price":"3","relaunch":{{"max_attempts":{max_attempts}}}}}"#
        )
        .as_bytes(),
    )
    .unwrap()
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

#[test]
fn no_fitting_offer_fails_the_chain() {
    framework()
        .given(vec![requested(3)])
        .when(C::NoOfferFits { message: "nothing under $3".into(), at: at() })
        .then_expect_events(vec![
            InstanceEvent::LaunchFailed {
                attempt_id: None,
                provider: None,
                class: FailureClass::NoOfferFits,
                message: "nothing under $3".into(),
                at: at(),
            },
            InstanceEvent::Failed { reason: "no offer fits: nothing under $3".into(), at: at() },
        ]);
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
