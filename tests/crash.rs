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
fn crashing_controller(server: &NatsServer, dir: &std::path::Path, failpoint: &str) -> std::process::Child {
    let child = Command::new(tgp_dev())
        .args([
            "run",
            "--market",
            "simulated",
            "--nats-url",
            server.url(),
            "--poll-interval",
            "200ms",
            "--sim-boot-time",
            "300ms",
        ])
        .arg("--sim-state")
        .arg(dir.join("simulated-market.json"))
        .envs(as_role(server, Role::Tgp))
        .env("TGP_FAILPOINT", failpoint)
        .env("TGP_JOURNAL_KEY", journal_key(dir))
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
    let mut crashing = crashing_controller(&server, &server.dir(), "after-launch-call");
    let (client, js) = client(&server).await;
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

    let restarted = ControllerProcess::start(&server, &server.dir());
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
    let first = ControllerProcess::start(&server, &server.dir());
    let (client, js) = client(&server).await;
    let id = request(&client, "tgp.api.launch", launch_body("L40S", "on-demand-only")).await["instance_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for_state(&client, &id, "running").await;
    first.kill();

    let mut crashing = crashing_controller(&server, &server.dir(), "after-terminate-call");
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

    let restarted = ControllerProcess::start(&server, &server.dir());
    wait_for_state(&client, &id, "terminated").await;
    let events = journaled(&js, &id).await;
    assert_eq!(types(&events).iter().filter(|t| **t == "Terminated").count(), 1);
    let market = restarted.market();
    assert_eq!(market.launch_calls, 1);
    assert!(market.machines.values().all(|m| m.status == "terminated"), "{:?}", market.machines);
    // The terminate command, redelivered after the crash, was not dead-lettered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, operator) = admin(&server).await;
    let dead = operator.get_stream("TGP_DEAD_LETTERS").await.unwrap().info().await.unwrap().state.messages;
    assert_eq!(dead, 0);
}

/// A journal lost under running machines (a deleted stream, the wrong server): tgp refuses to
/// start over it and names the machines it would leave unmanaged, unless told the empty journal is
/// expected.
#[tokio::test]
async fn an_empty_journal_while_labelled_machines_run_refuses_the_start() {
    let first = nats();
    let controller = ControllerProcess::start(&first, &first.dir());
    let (client, _) = client(&first).await;
    let mut body = launch_body("H100", "on-demand-only");
    body["idempotency_key"] = json!("held-1");
    assert!(request(&client, "tgp.api.launch", body).await["error"].is_null());
    let machine =
        wait_for_state(&client, "held-1", "running").await["provider_instance_id"].as_str().unwrap().to_string();
    controller.kill();

    // The same market, a server with no journal.
    let empty = nats();
    let state = first.dir().join("simulated-market.json");
    let refused = tokio::task::spawn_blocking({
        let (url, state, role, key) =
            (empty.url().to_string(), state.clone(), as_role(&empty, Role::Tgp), journal_key(&first.dir()));
        move || {
            Command::new(tgp_dev())
                .args(["run", "--market", "simulated", "--nats-url", &url, "--sim-state"])
                .arg(&state)
                .envs(role)
                .env("TGP_JOURNAL_KEY", &key)
                .env("RUST_LOG", "error")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "started over an empty journal: {stderr}");
    assert!(stderr.contains("labelled by tgp") && stderr.contains(&machine), "{stderr}");
    assert!(stderr.contains("--allow-empty-journal"), "the way out is named: {stderr}");

    let allowed = ControllerProcess::start_with(&empty, &first.dir(), &["--allow-empty-journal"]);
    assert!(allowed.market().machines.contains_key(&machine), "nothing was destroyed");
}
