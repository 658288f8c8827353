//! Nothing runs at a provider that the journal does not account for: a tgp-labelled machine of a
//! finished chain, or of a superseded attempt of a live chain, is destroyed and journaled as
//! `OrphanTerminated`; machines without a tgp label, or with a label no chain in the journal
//! owns, are never touched.

mod support;

use serde_json::json;
use support::*;
use tgp_events::events::InstanceEvent;
use tgp_testkit::market::{Machine, MarketState};

fn running_copy(of: &Machine, id: &str, label: &str) -> Machine {
    Machine { id: id.into(), label: label.into(), status: "running".into(), ..of.clone() }
}

#[tokio::test]
async fn orphans_are_terminated_and_journaled_and_foreign_machines_left_alone() {
    let server = nats();
    let first = ControllerProcess::start(&server, &server.dir());
    let (client, js) = client(&server).await;
    let done = request(&client, "tgp.api.launch", launch_body("H100", "on-demand-only")).await["instance_id"]
        .as_str()
        .unwrap()
        .to_string();
    let live = request(&client, "tgp.api.launch", launch_body("L40S", "on-demand-only")).await["instance_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for_state(&client, &done, "running").await;
    let live_machine =
        wait_for_state(&client, &live, "running").await["provider_instance_id"].as_str().unwrap().to_string();
    request(&client, "tgp.api.terminate", json!({"instance_id": done})).await;
    wait_for_state(&client, &done, "terminated").await;
    first.kill();

    // While tgp is down the provider misbehaves: the terminated machine runs again, a superseded
    // attempt of the live chain shows up, and two machines that are not tgp's run beside them.
    let path = server.dir().join("simulated-market.json");
    let mut state = MarketState::read(&path).unwrap();
    let template = state.machines.values().next().unwrap().clone();
    let done_machine = state.machines.values().find(|m| m.label == format!("tgp-{done}-1")).unwrap().id.clone();
    state.machines.get_mut(&done_machine).unwrap().status = "running".into();
    let extra = [
        running_copy(&template, "sim-90", &format!("tgp-{live}-7")),
        running_copy(&template, "sim-91", "my-own-box"),
        running_copy(&template, "sim-92", "tgp-nobody-knows-1"),
    ];
    for machine in extra {
        state.machines.insert(machine.id.clone(), machine);
    }
    std::fs::write(&path, serde_json::to_vec(&state).unwrap()).unwrap();

    let second = ControllerProcess::start(&server, &server.dir());
    let mut market = second.market();
    for _ in 0..50 {
        market = second.market();
        if market.machines[&done_machine].status == "terminated" && market.machines["sim-90"].status == "terminated" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(market.machines[&done_machine].status, "terminated", "the finished chain's machine");
    assert_eq!(market.machines["sim-90"].status, "terminated", "the superseded attempt's machine");
    assert_eq!(market.machines["sim-91"].status, "running", "no tgp label: never touched");
    assert_eq!(market.machines["sim-92"].status, "running", "a chain the journal does not know: never touched");
    assert_eq!(market.machines[&live_machine].status, "running", "the live chain runs on");

    let orphan = |events: &[InstanceEvent], machine: &str| {
        events.iter().any(|e| matches!(e, InstanceEvent::OrphanTerminated { provider_instance_id, .. } if provider_instance_id == machine))
    };
    let done_events = journaled(&js, &done).await;
    assert!(orphan(&done_events, &done_machine), "{:?}", types(&done_events));
    let live_events = journaled(&js, &live).await;
    assert!(orphan(&live_events, "sim-90"), "{:?}", types(&live_events));
    assert_eq!(wait_for_state(&client, &live, "running").await["provider_instance_id"], live_machine.as_str());
}
