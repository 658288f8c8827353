//! End to end through the real binary: launch and terminate over NATS, idempotency, bad input,
//! spot interruption and relaunch, and a controller killed mid-flight.

mod support;

use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use futures::StreamExt;
use serde_json::json;
use support::*;
use tgp_events::subjects::{DEAD_LETTERS_STREAM, HEADER_DEAD_CODE, HEADER_DEAD_REASON, SIM_INTERRUPT};

#[tokio::test]
async fn a_launch_runs_and_a_terminate_ends_it_at_the_provider() {
    let server = nats();
    let controller = ControllerProcess::start(&server, &server.dir());
    let (client, js) = client(&server).await;

    let accepted = request(&client, "tgp.api.launch", launch_body("H100", "prefer-spot")).await;
    assert_eq!(accepted["state"], "requested", "{accepted}");
    let id = accepted["instance_id"].as_str().unwrap().to_string();
    let running = wait_for_state(&client, &id, "running").await;
    assert!(running["connection"]["ssh_host"].is_string(), "running answers how to connect: {running}");

    let events = journaled(&js, &id).await;
    assert_eq!(types(&events), ["LaunchRequested", "OfferSelected", "LaunchAttempted", "Launched", "Running"]);

    let answer = request(&client, "tgp.api.terminate", json!({"instance_id": id})).await;
    assert!(answer["error"].is_null(), "{answer}");
    wait_for_state(&client, &id, "terminated").await;
    let events = journaled(&js, &id).await;
    assert_eq!(types(&events)[5..], ["TerminationRequested", "Terminated"]);

    let market = controller.market();
    assert_eq!(market.machines.len(), 1);
    assert!(market.machines.values().all(|m| m.status == "terminated"), "{:?}", market.machines);

    let again = request(&client, "tgp.api.terminate", json!({"instance_id": id})).await;
    assert_eq!(again["error"]["code"], "conflict", "terminating twice is refused: {again}");
}

#[tokio::test]
async fn one_idempotency_key_published_three_times_is_one_instance() {
    let server = nats();
    let controller = ControllerProcess::start(&server, &server.dir());
    let (client, js) = client(&server).await;

    let body = launch_body("L40S", "on-demand-only").to_string();
    for _ in 0..3 {
        let publish = PublishMessage::build().payload(body.clone().into()).message_id("nightly-train-42");
        js.send_publish("tgp.commands.launch", publish).await.unwrap().await.unwrap();
    }
    let mut with_key = launch_body("L40S", "on-demand-only");
    with_key["idempotency_key"] = "api-key-7".into();
    let answers: Vec<_> =
        futures::future::join_all((0..3).map(|_| request(&client, "tgp.api.launch", with_key.clone()))).await;
    assert!(answers.iter().all(|a| a["instance_id"] == "api-key-7"), "{answers:?}");

    wait_for_state(&client, "nightly-train-42", "running").await;
    wait_for_state(&client, "api-key-7", "running").await;
    for id in ["nightly-train-42", "api-key-7"] {
        let events = journaled(&js, id).await;
        assert_eq!(types(&events).iter().filter(|t| **t == "LaunchRequested").count(), 1, "{id}: {:?}", types(&events));
    }
    let market = controller.market();
    assert_eq!(market.launch_calls, 2, "one launch per key reached the provider");
}

#[tokio::test]
async fn bad_commands_get_an_error_and_a_dead_letter_and_the_next_one_works() {
    let server = nats();
    let _controller = ControllerProcess::start(&server, &server.dir());
    let (client, js) = client(&server).await;

    let cases = [
        (
            json!({"gpu_type": "H1000", "gpu_count": 1, "max_hourly_price": "3"}),
            "malformed_command",
            "unknown GPU type",
        ),
        (json!({"gpu_type": "H100", "gpu_count": 0, "max_hourly_price": "3"}), "invalid_command", "gpu_count"),
        (json!({"gpu_type": "H100", "gpu_count": 1, "max_hourly_price": "-1"}), "invalid_command", "above zero"),
        (json!({"gpu_type": "H100", "gpu_count": 1}), "malformed_command", "max_hourly_price"),
    ];
    for (body, code, text) in &cases {
        let answer = request(&client, "tgp.api.launch", body.clone()).await;
        assert_eq!(answer["error"]["code"], *code, "{answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains(text), "{answer}");
    }
    let garbage = client.request("tgp.api.launch", "{not json".into()).await.unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&garbage.payload).unwrap();
    assert_eq!(answer["error"]["code"], "malformed_command");
    js.send_publish("tgp.commands.launch", PublishMessage::build().payload("{\"gpu_type\": 7}".into()))
        .await
        .unwrap()
        .await
        .unwrap();

    let good = request(&client, "tgp.api.launch", launch_body("H100", "spot-only")).await;
    wait_for_state(&client, good["instance_id"].as_str().unwrap(), "running").await;

    // Dead letters hold whole commands (secrets included): only the admin reads them.
    let (_, operator) = admin(&server).await;
    let dead = operator.get_stream(DEAD_LETTERS_STREAM).await.unwrap();
    let consumer = dead.create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default()).await.unwrap();
    let expected = cases.len() + 2;
    assert_eq!(consumer.cached_info().num_pending as usize, expected, "every refused command is kept");
    let letters: Vec<_> = consumer.messages().await.unwrap().take(expected).collect().await;
    for letter in letters {
        let letter = letter.unwrap();
        let headers = letter.headers.as_ref().expect("dead letters carry headers");
        assert!(headers.get(HEADER_DEAD_REASON).is_some_and(|r| !r.as_str().is_empty()));
        assert!(headers.get(HEADER_DEAD_CODE).is_some());
        assert!(letter.subject.starts_with("tgp.dead.tgp."), "{}", letter.subject);
    }
}

#[tokio::test]
async fn a_spot_interruption_is_journaled_and_relaunched() {
    let server = nats();
    let controller = ControllerProcess::start(&server, &server.dir());
    let (client, js) = client(&server).await;

    let id = request(&client, "tgp.api.launch", launch_body("H100", "spot-only")).await["instance_id"]
        .as_str()
        .unwrap()
        .to_string();
    let before = wait_for_state(&client, &id, "running").await;
    let machine = before["provider_instance_id"].as_str().unwrap().to_string();
    // The simulated market takes its cues from the admin (a dev tool, not a client).
    let (market, _) = admin(&server).await;
    let cue = request(&market, SIM_INTERRUPT, json!({"provider_instance_id": machine})).await;
    assert!(cue["error"].is_null(), "{cue}");

    for _ in 0..100 {
        let now = wait_for_state(&client, &id, "running").await;
        if now["provider_instance_id"] != machine.as_str() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events = journaled(&js, &id).await;
    assert_eq!(
        types(&events)[5..],
        ["Interrupted", "OfferSelected", "LaunchAttempted", "Relaunched", "Running"],
        "{:?}",
        types(&events)
    );
    let market = controller.market();
    let live: Vec<_> = market.machines.values().filter(|m| m.status != "terminated").collect();
    assert_eq!(live.len(), 1, "the preempted machine was cleaned up: {live:?}");
    assert!(live[0].spot && live[0].id != machine);
}

#[tokio::test]
async fn a_killed_controller_rebuilds_from_the_journal_and_carries_on() {
    let server = nats();
    let first = ControllerProcess::start(&server, &server.dir());
    let (client, js) = client(&server).await;

    let mut ids = Vec::new();
    for gpu in ["H100", "A6000", "RTX4090"] {
        ids.push(
            request(&client, "tgp.api.launch", launch_body(gpu, "on-demand-only")).await["instance_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    for id in &ids {
        wait_for_state(&client, id, "running").await;
    }
    first.kill();

    // While tgp is down: a terminate waits in the durable command stream.
    let terminate = json!({"instance_id": ids[0], "reason": "while down"}).to_string();
    js.send_publish("tgp.commands.terminate", PublishMessage::build().payload(terminate.into()))
        .await
        .unwrap()
        .await
        .unwrap();

    let second = ControllerProcess::start(&server, &server.dir());
    wait_for_state(&client, &ids[0], "terminated").await;
    let list = request(&client, "tgp.api.list", json!({})).await;
    let listed: Vec<_> =
        list["instances"].as_array().unwrap().iter().map(|i| (i["instance_id"].clone(), i["state"].clone())).collect();
    let mut expected = vec![(json!(ids[1]), json!("running")), (json!(ids[2]), json!("running"))];
    expected.sort_by(|a, b| a.0.as_str().cmp(&b.0.as_str()));
    assert_eq!(listed, expected, "the two unterminated instances were rebuilt and run on");

    let market = second.market();
    assert_eq!(market.launch_calls, 3, "nothing was launched twice after the restart");
    let live: Vec<_> = market.machines.values().filter(|m| m.status != "terminated").map(|m| m.label.clone()).collect();
    assert_eq!(live.len(), 2, "exactly the journal's running instances remain: {live:?}");
    let events = journaled(&js, &ids[0]).await;
    assert_eq!(types(&events).last(), Some(&"Terminated"));
}

/// `tgp.api.list` in pages: each page holds at most `limit`, names where the next one starts,
/// and the pages together hold every instance once, in id order; `tgp list` reads them all.
#[tokio::test]
async fn a_list_asked_page_by_page_gives_every_instance_once() {
    let server = nats();
    let _controller = ControllerProcess::start(&server, &server.dir());
    let (client, _) = client(&server).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let accepted = request(&client, "tgp.api.launch", launch_body("H100", "on-demand-only")).await;
        ids.push(accepted["instance_id"].as_str().unwrap().to_string());
    }
    ids.sort();

    let (mut listed, mut pages, mut after) = (Vec::new(), 0, None);
    loop {
        let mut body = json!({"limit": 2});
        if let Some(after) = &after {
            body["after"] = json!(after);
        }
        let page = request(&client, "tgp.api.list", body).await;
        let instances = page["instances"].as_array().unwrap_or_else(|| panic!("a page: {page}"));
        assert!(!instances.is_empty() && instances.len() <= 2, "{page}");
        listed.extend(instances.iter().map(|i| i["instance_id"].as_str().unwrap().to_string()));
        pages += 1;
        match page["next_after"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!((listed, pages), (ids.clone(), 3), "every instance once, in id order, two at a time");
    let refused = request(&client, "tgp.api.list", json!({"limit": 0})).await;
    assert_eq!(refused["error"]["code"], "malformed_request", "{refused}");

    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_tgp"))
        .args(["list", "--nats-url", server.url()])
        .envs(as_role(&server, Role::Client))
        .output()
        .expect("tgp list runs");
    let printed = String::from_utf8_lossy(&cli.stdout);
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    assert!(ids.iter().all(|id| printed.contains(id.as_str())) && printed.contains("5 live instance(s)"), "{printed}");
}
