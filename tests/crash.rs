//! Crash safety with real process kills: tgp aborts at a failpoint between a provider's answer and
//! the journal append; after a restart exactly the machines the journal accounts for exist, the
//! orphaned launch is adopted, and nothing was launched twice.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::*;
use tgp_events::events::InstanceEvent;

/// Starts `tgp run` with a failpoint and waits for it to abort.
fn crashing_controller(url: &str, dir: &std::path::Path, failpoint: &str) -> std::process::Child {
    let child = Command::new(env!("CARGO_BIN_EXE_tgp"))
        .args([
            "run",
            "--market",
            "simulated",
            "--nats-url",
            url,
            "--poll-interval",
            "200ms",
            "--sim-boot-time",
            "300ms",
        ])
        .arg("--sim-state")
        .arg(dir.join("simulated-market.json"))
        .env("TGP_FAILPOINT", failpoint)
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    child
}

async fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    for _ in 0..100 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("tgp did not crash at its failpoint")
}

#[tokio::test]
async fn a_crash_after_the_launch_call_is_adopted_after_restart() {
    let server = nats();
    let mut crashing = crashing_controller(server.url(), &server.dir(), "after-launch-call");
    let (client, js) = client(server.url()).await;
    let accepted = request(&client, "tgp.api.launch", launch_body("H100", "spot-only")).await;
    let id = accepted["instance_id"].as_str().unwrap().to_string();
    let status = wait_exit(&mut crashing).await;
    assert!(!status.success(), "aborted: {status:?}");
    let before = journaled(&js, &id).await;
    assert_eq!(
        types(&before),
        ["LaunchRequested", "OfferSelected", "LaunchAttempted"],
        "the launch answer was never journaled"
    );

    let restarted = ControllerProcess::start(server.url(), &server.dir());
    let running = wait_for_state(&client, &id, "running").await;
    let events = journaled(&js, &id).await;
    assert!(
        events.iter().any(|e| matches!(e, InstanceEvent::Launched { adopted: true, .. })),
        "adopted by its label: {:?}",
        types(&events)
    );
    let market = restarted.market();
    assert_eq!(market.launch_calls, 1, "never launched twice for one attempt");
    assert_eq!(market.machines.len(), 1);
    assert_eq!(running["provider_instance_id"], json!(market.machines.keys().next().unwrap()));
}

#[tokio::test]
async fn a_crash_after_the_terminate_call_is_finished_after_restart() {
    let server = nats();
    let first = ControllerProcess::start(server.url(), &server.dir());
    let (client, js) = client(server.url()).await;
    let id = request(&client, "tgp.api.launch", launch_body("L40S", "on-demand-only")).await["instance_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for_state(&client, &id, "running").await;
    first.kill();

    let mut crashing = crashing_controller(server.url(), &server.dir(), "after-terminate-call");
    // On the durable stream: the crash may come before any reply could be sent.
    let terminate = json!({"instance_id": id}).to_string();
    js.send_publish(
        "tgp.commands.terminate",
        async_nats::jetstream::message::PublishMessage::build().payload(terminate.into()),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    wait_exit(&mut crashing).await;
    let before = journaled(&js, &id).await;
    assert_eq!(types(&before).last(), Some(&"TerminationRequested"), "{:?}", types(&before));

    let restarted = ControllerProcess::start(server.url(), &server.dir());
    wait_for_state(&client, &id, "terminated").await;
    let events = journaled(&js, &id).await;
    assert_eq!(types(&events).iter().filter(|t| **t == "Terminated").count(), 1);
    let market = restarted.market();
    assert_eq!(market.launch_calls, 1);
    assert!(market.machines.values().all(|m| m.status == "terminated"), "{:?}", market.machines);
    // The terminate command, redelivered after the crash, was not dead-lettered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dead = js.get_stream("TGP_DEAD_LETTERS").await.unwrap().info().await.unwrap().state.messages;
    assert_eq!(dead, 0);
}
