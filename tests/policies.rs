//! The lifecycle policies on the simulated market, through the real binary, with the market told
//! on cue (`tgp.sim.cue`) to refuse launches, lose a launch's answer, or withdraw spot capacity:
//! failover to the next offer, on-demand fallback (or failure when it is not allowed), and
//! termination while launching and while waiting to relaunch.

mod support;

use serde_json::{Value, json};
use support::*;
use tgp_events::InstanceEvent;
use tgp_events::events::{FailureClass, OfferSummary};
use tgp_events::subjects::{SIM_CUE, SIM_INTERRUPT};

async fn launch(client: &async_nats::Client, body: Value) -> String {
    let answer = request(client, "tgp.api.launch", body).await;
    answer["instance_id"].as_str().unwrap_or_else(|| panic!("launched: {answer}")).to_string()
}

async fn cue(client: &async_nats::Client, body: Value) {
    let answer = request(client, SIM_CUE, body).await;
    assert!(answer["error"].is_null(), "{answer}");
}

fn selected(events: &[InstanceEvent]) -> Vec<OfferSummary> {
    events
        .iter()
        .filter_map(|e| match e {
            InstanceEvent::OfferSelected { offer, .. } => Some(offer.clone()),
            _ => None,
        })
        .collect()
}

/// Waits until the instance's journal holds an event of type `kind`; its events then.
async fn journaled_until(js: &async_nats::jetstream::Context, id: &str, kind: &str) -> Vec<InstanceEvent> {
    for _ in 0..150 {
        let events = journaled(js, id).await;
        if types(&events).contains(&kind) {
            return events;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{id} never journaled {kind}: {:?}", types(&journaled(js, id).await))
}

#[tokio::test]
async fn the_cheapest_offer_without_capacity_fails_over_and_the_next_launch_skips_it() {
    let server = nats();
    let controller = ControllerProcess::start(&server, &server.dir());
    let (client, js) = client(&server).await;
    // The simulated market takes its cues from the admin (a dev tool, not a client).
    let (market, _) = admin(&server).await;

    cue(&market, json!({"refuse_launches": 1})).await;
    let first = launch(&client, launch_body("H100", "on-demand-only")).await;
    wait_for_state(&client, &first, "running").await;
    let events = journaled(&js, &first).await;
    assert_eq!(
        types(&events),
        [
            "LaunchRequested",
            "OfferSelected",
            "LaunchAttempted",
            "LaunchFailed",
            "OfferSelected",
            "LaunchAttempted",
            "Launched",
            "Running"
        ]
    );
    assert!(matches!(events[3], InstanceEvent::LaunchFailed { class: FailureClass::Capacity, .. }));
    let [cheapest, next] = &selected(&events)[..] else { panic!("two selections") };
    assert_ne!(cheapest.offer_id, next.offer_id, "failed over to another offer");
    assert!(next.hourly_price >= cheapest.hourly_price, "the next cheapest: {next:?} after {cheapest:?}");

    // Another chain asking the same does not try the offering that had no capacity.
    let second = launch(&client, launch_body("H100", "on-demand-only")).await;
    wait_for_state(&client, &second, "running").await;
    let events = journaled(&js, &second).await;
    assert_eq!(selected(&events).len(), 1);
    assert_ne!(selected(&events)[0].offer_id, cheapest.offer_id, "the failed offering is left out for a while");
    assert_eq!(controller.market().launch_calls, 3);
}

#[tokio::test]
async fn with_spot_gone_a_chain_falls_back_to_on_demand_when_allowed_and_fails_when_not() {
    let server = nats();
    let controller = ControllerProcess::start(&server, &server.dir());
    let (client, js) = client(&server).await;
    // The simulated market takes its cues from the admin (a dev tool, not a client).
    let (market, _) = admin(&server).await;

    let mut allowed = launch_body("H100", "prefer-spot");
    allowed["relaunch"] = json!({"max_attempts": 3, "on_demand_fallback": true, "backoff_seconds": 1});
    let mut refused = launch_body("L40S", "prefer-spot");
    refused["relaunch"] = json!({"max_attempts": 3, "on_demand_fallback": false, "backoff_seconds": 1});
    // Fail fast when spot is gone, rather than wait for spot capacity to come back.
    refused["wait_for_capacity"] = json!("0s");
    let (allowed, refused) = (launch(&client, allowed).await, launch(&client, refused).await);
    let machines = [
        wait_for_state(&client, &allowed, "running").await["provider_instance_id"].clone(),
        wait_for_state(&client, &refused, "running").await["provider_instance_id"].clone(),
    ];

    cue(&market, json!({"spot": false})).await;
    for machine in machines {
        let answer = request(&market, SIM_INTERRUPT, json!({"provider_instance_id": machine})).await;
        assert!(answer["error"].is_null(), "{answer}");
    }

    // Selection may still see spot prices cached by the provider actor for a few seconds; a spot
    // attempt then fails for capacity and the chain moves on: on demand is where it ends.
    let events = journaled_until(&js, &allowed, "Relaunched").await;
    let spots: Vec<bool> = selected(&events).iter().map(|o| o.spot).collect();
    assert_eq!((spots.first(), spots.last()), (Some(&true), Some(&false)), "spot first, on demand after: {spots:?}");
    let relaunched = events.iter().find(|e| e.type_name() == "Relaunched");
    assert!(matches!(relaunched, Some(InstanceEvent::Relaunched { spot: false, .. })), "{relaunched:?}");

    wait_for_state(&client, &refused, "failed").await;
    let events = journaled(&js, &refused).await;
    assert!(selected(&events).iter().all(|o| o.spot), "never on demand: {:?}", selected(&events));
    assert!(!types(&events).contains(&"Relaunched"));
    assert_eq!(types(&events).last(), Some(&"Failed"));

    // Nothing of the failed chain is left at the provider, the preempted machine included.
    let mut left = Vec::new();
    for _ in 0..50 {
        left = controller.market().machines.into_values().filter(|m| m.status != "terminated" && !m.spot).collect();
        let stopped: Vec<_> = controller.market().machines.into_values().filter(|m| m.status == "preempted").collect();
        if stopped.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(left.len(), 1, "only the on-demand replacement runs: {left:?}");
    assert!(controller.market().machines.values().all(|m| m.status != "preempted"), "stopped machines destroyed");
}

#[tokio::test]
async fn terminate_while_launching_settles_the_attempt_then_destroys_its_machine() {
    let server = nats();
    // Polls every 3 s: the attempt whose answer was lost stays open long enough to terminate.
    let controller = ControllerProcess::start_with(&server, &server.dir(), &["--poll-interval", "3s"]);
    let (client, js) = client(&server).await;
    // The simulated market takes its cues from the admin (a dev tool, not a client).
    let (market, _) = admin(&server).await;

    cue(&market, json!({"lose_launch_answers": 1})).await;
    let id = launch(&client, launch_body("H100", "on-demand-only")).await;
    journaled_until(&js, &id, "LaunchAttempted").await;
    assert_eq!(wait_for_state(&client, &id, "launching").await["state"], "launching");
    let answer = request(&client, "tgp.api.terminate", json!({"instance_id": id})).await;
    assert!(answer["error"].is_null(), "{answer}");

    wait_for_state(&client, &id, "terminated").await;
    let events = journaled(&js, &id).await;
    assert_eq!(
        types(&events),
        ["LaunchRequested", "OfferSelected", "LaunchAttempted", "TerminationRequested", "Launched", "Terminated"]
    );
    assert!(matches!(events[4], InstanceEvent::Launched { adopted: true, .. }), "adopted by its label");
    let market = controller.market();
    assert_eq!(market.launch_calls, 1, "never launched twice");
    assert!(market.machines.values().all(|m| m.status == "terminated"), "{:?}", market.machines);
}

#[tokio::test]
async fn terminate_while_waiting_to_relaunch_ends_the_chain_and_destroys_the_stopped_machine() {
    let server = nats();
    let controller = ControllerProcess::start(&server, &server.dir());
    let (client, js) = client(&server).await;
    // The simulated market takes its cues from the admin (a dev tool, not a client).
    let (market, _) = admin(&server).await;

    let mut body = launch_body("H100", "spot-only");
    body["relaunch"] = json!({"max_attempts": 3, "backoff_seconds": 60});
    let id = launch(&client, body).await;
    let machine = wait_for_state(&client, &id, "running").await["provider_instance_id"].as_str().unwrap().to_string();
    request(&market, SIM_INTERRUPT, json!({"provider_instance_id": machine})).await;
    wait_for_state(&client, &id, "interrupted").await;
    let answer = request(&client, "tgp.api.terminate", json!({"instance_id": id})).await;
    assert!(answer["error"].is_null(), "{answer}");

    wait_for_state(&client, &id, "terminated").await;
    let mut status = String::new();
    for _ in 0..50 {
        status = controller.market().machines[&machine].status.clone();
        if status == "terminated" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, "terminated", "the preempted machine is destroyed, not left to bill storage");
    let events = journaled(&js, &id).await;
    assert_eq!(
        types(&events)[5..8],
        ["Interrupted", "TerminationRequested", "Terminated"],
        "no relaunch: {:?}",
        types(&events)
    );
    assert_eq!(controller.market().launch_calls, 1);
}
