//! The launch command's limits end to end, through the real binary on the simulated market: a max
//! lifetime ends the chain, journaled with the limit, and leaves nothing running at the provider;
//! a budget that pays for no run launches nothing; a relaunch waits out its backoff. (A budget
//! stopping a running machine is tested with its arithmetic in actors/src/limit_tests.rs and in
//! the simulation: a real run would take minutes.)

mod support;

use serde_json::json;
use support::*;
use tgp_events::InstanceEvent;
use tgp_events::events::Limit;
use tgp_events::subjects::SIM_INTERRUPT;

fn limit_of(events: &[InstanceEvent]) -> Option<Limit> {
    events.iter().find_map(|e| match e {
        InstanceEvent::TerminationRequested { limit, .. } => *limit,
        _ => None,
    })
}

#[tokio::test]
async fn max_lifetime_terminates_the_instance_at_the_provider() {
    let server = nats();
    let controller = ControllerProcess::start(&server, &server.dir());
    let (client, js) = client(&server).await;

    let mut body = launch_body("H100", "on-demand-only");
    body["max_lifetime"] = json!("4s");
    let id = request(&client, "tgp.api.launch", body).await["instance_id"].as_str().unwrap().to_string();
    wait_for_state(&client, &id, "running").await;
    wait_for_state(&client, &id, "terminated").await;

    let events = journaled(&js, &id).await;
    assert_eq!(
        types(&events),
        [
            "LaunchRequested",
            "OfferSelected",
            "LaunchAttempted",
            "Launched",
            "Running",
            "TerminationRequested",
            "Terminated"
        ]
    );
    assert_eq!(limit_of(&events), Some(Limit::MaxLifetime));
    let (
        InstanceEvent::LaunchRequested { at: requested, .. },
        Some(InstanceEvent::TerminationRequested { at: ended, .. }),
    ) = (&events[0], events.get(5))
    else {
        panic!("{events:?}")
    };
    assert!(*ended - *requested >= chrono::Duration::seconds(4), "not before the lifetime: {requested} .. {ended}");
    let market = controller.market();
    assert!(market.machines.values().all(|m| m.status == "terminated"), "{:?}", market.machines);
}

#[tokio::test]
async fn a_budget_too_small_for_any_run_launches_nothing_and_says_why() {
    let server = nats();
    let controller = ControllerProcess::start(&server, &server.dir());
    let (client, js) = client(&server).await;

    // One cent does not pay for the simulated market's minimum billed minute on any H100.
    let mut body = launch_body("H100", "on-demand-only");
    body["budget"] = json!("0.01");
    let id = request(&client, "tgp.api.launch", body).await["instance_id"].as_str().unwrap().to_string();
    wait_for_state(&client, &id, "failed").await;

    let events = journaled(&js, &id).await;
    assert_eq!(types(&events), ["LaunchRequested", "LaunchFailed", "Failed"]);
    let InstanceEvent::Failed { reason, .. } = &events[2] else { unreachable!() };
    assert!(reason.contains("budget"), "{reason}");
    assert_eq!(controller.market().launch_calls, 0, "nothing launched, nothing billed");
}

#[tokio::test]
async fn a_relaunch_waits_out_its_backoff() {
    let server = nats();
    let _controller = ControllerProcess::start(&server, &server.dir());
    let (client, js) = client(&server).await;

    let mut body = launch_body("H100", "spot-only");
    body["relaunch"] = json!({"max_attempts": 3, "backoff_seconds": 2});
    let id = request(&client, "tgp.api.launch", body).await["instance_id"].as_str().unwrap().to_string();
    let before = wait_for_state(&client, &id, "running").await;
    let machine = before["provider_instance_id"].as_str().unwrap().to_string();
    // The simulated market takes its cues from the admin (a dev tool, not a client).
    let (market, _) = admin(&server).await;
    let cue = request(&market, SIM_INTERRUPT, json!({"provider_instance_id": machine})).await;
    assert!(cue["error"].is_null(), "{cue}");
    let mut events = journaled(&js, &id).await;
    for _ in 0..150 {
        if types(&events).contains(&"Relaunched") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        events = journaled(&js, &id).await;
    }
    let interrupted = events.iter().find_map(|e| match e {
        InstanceEvent::Interrupted { at, .. } => Some(*at),
        _ => None,
    });
    let second_attempt = events.iter().find_map(|e| match e {
        InstanceEvent::LaunchAttempted { attempt_number: 2, at, .. } => Some(*at),
        _ => None,
    });
    let (Some(interrupted), Some(second_attempt)) = (interrupted, second_attempt) else {
        panic!("no relaunch: {:?}", types(&events))
    };
    assert!(second_attempt - interrupted >= chrono::Duration::seconds(2), "{interrupted} .. {second_attempt}");
}
