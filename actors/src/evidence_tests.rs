//! The evidence rules, one by one, on hand-built chains and listings.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use tgp_events::events::{Connection, FailureClass, InstanceEvent, InterruptionReason, OfferSummary};
use tgp_events::{AttemptId, BillingGranularity, InstanceId, LaunchCommand, ProviderName};

use crate::aggregate::{Instance, InstanceCommand as C};
use crate::evidence::*;
use crate::provider::{MachineStatus, ProviderError, ProviderInstance, ProviderListing};

fn t(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap() + chrono::Duration::seconds(seconds)
}
fn id() -> InstanceId {
    "job-1".parse().unwrap()
}
fn provider() -> ProviderName {
    "vastai".parse().unwrap()
}
fn attempt(n: u32) -> AttemptId {
    AttemptId::new(&id(), n)
}

/// A chain whose attempts launch `machines` in turn; each but the last is declared lost.
fn chain(machines: &[&str], lost: InterruptionReason) -> Vec<InstanceEvent> {
    let request = LaunchCommand::from_json(br#"{"gpu_type":"H100","gpu_count":1,"max_hourly_price":"3"}"#)
        .unwrap()
        .with_env(Default::default());
    let offer = OfferSummary {
        provider: provider(),
        offer_id: "o-1".into(),
        gpu_type: tgp_events::GpuType::H100,
        gpu_count: 1,
        region: "us-east".parse().unwrap(),
        hourly_price: "1.00".parse().unwrap(),
        spot: false,
    };
    let mut events = vec![InstanceEvent::LaunchRequested { instance_id: id(), request, at: t(0) }];
    for (i, machine) in machines.iter().enumerate() {
        let n = i as u32 + 1;
        events.push(InstanceEvent::OfferSelected {
            offer: offer.clone(),
            bid: None,
            reason: "cheapest".into(),
            candidates: vec![],
            at: t(0),
        });
        events.push(InstanceEvent::LaunchAttempted {
            attempt_id: attempt(n),
            attempt_number: n,
            provider: provider(),
            offer_id: "o-1".into(),
            at: t(0),
        });
        let launched = (
            attempt(n),
            provider(),
            machine.to_string(),
            "1.00".parse().unwrap(),
            false,
            BillingGranularity::PER_SECOND,
            false,
            t(0),
        );
        events.push(if i == 0 {
            InstanceEvent::Launched {
                attempt_id: launched.0,
                provider: launched.1,
                provider_instance_id: launched.2,
                hourly_price: launched.3,
                spot: launched.4,
                billing: launched.5,
                adopted: launched.6,
                at: launched.7,
            }
        } else {
            InstanceEvent::Relaunched {
                attempt_id: launched.0,
                provider: launched.1,
                provider_instance_id: launched.2,
                replaces: machines[i - 1].to_string(),
                hourly_price: launched.3,
                spot: launched.4,
                billing: launched.5,
                adopted: launched.6,
                at: launched.7,
            }
        });
        events.push(InstanceEvent::Running {
            provider_instance_id: machine.to_string(),
            connection: Connection::default(),
            at: t(1),
        });
        if i + 1 < machines.len() {
            events.push(InstanceEvent::Interrupted {
                provider_instance_id: machine.to_string(),
                reason: lost,
                raw_status: "gone".into(),
                detected_by: "status_call".into(),
                at: t(2),
            });
        }
    }
    events
}

fn fold(events: Vec<InstanceEvent>) -> Instance {
    let mut instance = Instance::default();
    for event in events {
        instance.fold(event);
    }
    instance
}

fn machine(id: &str, label: &AttemptId, status: MachineStatus) -> ProviderInstance {
    ProviderInstance {
        id: id.into(),
        label: Some(label.as_str().to_string()),
        status,
        raw_status: format!("{status:?}"),
        connection: Connection::default(),
        hourly_price: None,
        billing: None,
    }
}

fn listing(at: DateTime<Utc>, machines: Vec<ProviderInstance>, suspect: u32) -> ProviderListing {
    let mut listing = ProviderListing::new(provider(), at, machines);
    listing.suspect = suspect;
    listing
}

#[test]
fn a_listing_is_suspect_when_it_leaves_out_more_than_half_and_at_least_three() {
    let evidence = EvidenceConfig::default();
    assert!(evidence.is_suspect(3, 3));
    assert!(evidence.is_suspect(10, 6));
    assert!(!evidence.is_suspect(10, 5), "half is not more than half");
    assert!(!evidence.is_suspect(2, 2), "two machines are too few to suspect the listing");
    assert!(!evidence.is_suspect(100, 2));
}

#[test]
fn absences_count_only_from_believable_listings_far_enough_apart() {
    let spacing = Duration::from_secs(15);
    let mut absence = Absence::default();
    assert_eq!(absence.note("m-1", &listing(t(0), vec![], 0), spacing), 1);
    assert_eq!(absence.note("m-1", &listing(t(5), vec![], 0), spacing), 1, "too soon after the last");
    assert_eq!(absence.note("m-1", &listing(t(20), vec![], 1), spacing), 1, "a suspect listing counts for nothing");
    assert_eq!(absence.note("m-1", &listing(t(30), vec![], 0), spacing), 2);
    absence.clear();
    assert_eq!(absence.note("m-1", &listing(t(45), vec![], 0), spacing), 1, "seen in between: the count starts again");
    assert_eq!(absence.note("m-2", &listing(t(60), vec![], 0), spacing), 1, "another machine, another count");
    assert_eq!(Absence::default().note("m-1", &listing(t(0), vec![], 2), spacing), 0);
}

#[test]
fn only_a_definite_answer_or_enough_absences_confirm_a_machine_lost() {
    let running = fold(chain(&["m-1"], InterruptionReason::Vanished));
    let not_found = Err(ProviderError::new(&provider(), FailureClass::NotFound, "no such instance"));
    match confirmation(&running, &not_found, 1, 2, t(10)) {
        Confirmation::Confirmed(command) => assert!(matches!(
            *command,
            C::RecordInterrupted { reason: InterruptionReason::Vanished, ref detected_by, .. } if detected_by == "status_call"
        )),
        other => panic!("not found confirms: {other:?}"),
    }
    let alive = Ok(machine("m-1", &attempt(1), MachineStatus::Running));
    assert_eq!(confirmation(&running, &alive, 5, 2, t(10)), Confirmation::Seen, "the provider still shows it");
    for class in [FailureClass::ProviderOutage, FailureClass::ContractChanged, FailureClass::RateLimited] {
        let error = Err(ProviderError::new(&provider(), class, "no answer"));
        assert_eq!(confirmation(&running, &error, 1, 2, t(10)), Confirmation::Unconfirmed, "{class:?}");
        assert!(
            matches!(confirmation(&running, &error, 2, 2, t(10)), Confirmation::Confirmed(_)),
            "{class:?}: absent from two listings, and nothing says otherwise"
        );
    }
    let stopped = Ok(machine("m-1", &attempt(1), MachineStatus::Interrupted(InterruptionReason::Preempted)));
    assert!(matches!(
        confirmation(&running, &stopped, 1, 2, t(10)),
        Confirmation::Confirmed(command) if matches!(*command, C::RecordInterrupted { reason: InterruptionReason::Preempted, .. })
    ));
}

#[test]
fn an_unclear_launch_is_adopted_by_its_label_or_failed_only_after_the_window() {
    let mut events = chain(&["m-1"], InterruptionReason::Vanished);
    events.truncate(3); // requested, selected, attempted at t(0): the answer was unclear.
    let pending = fold(events);
    let window = Duration::from_secs(120);
    let empty = |at, suspect| listing(at, vec![], suspect);
    assert_eq!(observation(&pending, &empty(t(60), 0), t(60), window), Observed::Nothing, "inside the window");
    assert_eq!(observation(&pending, &empty(t(130), 1), t(130), window), Observed::Nothing, "a suspect listing");
    assert!(matches!(
        observation(&pending, &empty(t(130), 0), t(130), window),
        Observed::Command(command) if matches!(*command, C::RecordLaunchFailed { class: FailureClass::Unknown, .. })
    ));
    let found = listing(t(30), vec![machine("m-9", &attempt(1), MachineStatus::Starting)], 0);
    assert!(matches!(
        observation(&pending, &found, t(30), window),
        Observed::Command(command) if matches!(*command, C::RecordLaunched { adopted: true, ref provider_instance_id, .. } if provider_instance_id == "m-9")
    ));
}

#[test]
fn a_machine_declared_lost_that_runs_again_reappears_and_is_never_an_orphan() {
    let relaunched = fold(chain(&["m-1", "m-2"], InterruptionReason::Vanished));
    let both = listing(
        t(60),
        vec![machine("m-1", &attempt(1), MachineStatus::Running), machine("m-2", &attempt(2), MachineStatus::Running)],
        0,
    );
    assert!(own_orphans(&relaunched, &id(), &both).is_empty(), "the original holds the user's work");
    assert!(matches!(
        observation(&relaunched, &both, t(60), Duration::from_secs(120)),
        Observed::Command(command) if matches!(*command, C::RecordReappeared { ref provider_instance_id, .. } if provider_instance_id == "m-1")
    ));
    // Lingering stopped, it may be cleaned up once the replacement runs.
    let stopped = listing(
        t(60),
        vec![
            machine("m-1", &attempt(1), MachineStatus::Interrupted(InterruptionReason::HostLost)),
            machine("m-2", &attempt(2), MachineStatus::Running),
        ],
        0,
    );
    let orphans: Vec<String> = own_orphans(&relaunched, &id(), &stopped).into_iter().map(|(_, m)| m.id).collect();
    assert_eq!(orphans, vec!["m-1".to_string()]);
}

#[test]
fn a_superseded_machine_is_destroyed_only_once_its_chain_runs_on_another() {
    let mut events = chain(&["m-2"], InterruptionReason::Vanished);
    let stray = listing(
        t(60),
        vec![machine("m-1", &attempt(9), MachineStatus::Running), machine("m-2", &attempt(1), MachineStatus::Running)],
        0,
    );
    let orphans = own_orphans(&fold(events.clone()), &id(), &stray);
    assert_eq!(orphans.len(), 1, "the chain runs on m-2: a stray of another attempt goes");
    events.pop(); // Not running yet: the stray may be all the chain gets.
    assert!(own_orphans(&fold(events), &id(), &stray).is_empty());
}

#[test]
fn an_unclear_launch_answer_is_settled_a_clear_one_is_not() {
    for class in [FailureClass::ProviderOutage, FailureClass::ContractChanged, FailureClass::Unknown] {
        assert_eq!(LaunchAnswer::of(class), LaunchAnswer::Unclear, "{class:?}");
    }
    for class in [FailureClass::Capacity, FailureClass::RateLimited, FailureClass::Auth, FailureClass::InvalidRequest] {
        assert_eq!(LaunchAnswer::of(class), LaunchAnswer::Refused, "{class:?}");
    }
}
