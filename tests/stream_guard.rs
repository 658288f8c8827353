//! A journal stream changed under a running tgp: deleted, or reconfigured so that it would drop
//! history. tgp notices (two looks in a row), says so on `tgp.events.controller`, refuses new
//! launches with the reason, goes on terminating, and recreates or reverts nothing.

mod support;

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use support::*;
use tgp_events::subjects::{CONTROLLER_EVENTS, EVENTS_STREAM};

/// A controller that looks at its streams every 200 ms, with one instance running, and a
/// subscription to `tgp.events.controller`.
async fn running_one(
    server: &tgp::nats_server::NatsServer,
) -> (ControllerProcess, async_nats::Client, async_nats::jetstream::Context, async_nats::Subscriber) {
    let controller = ControllerProcess::start_with(server, &server.dir(), &["--stream-check-interval", "200ms"]);
    let (client, _) = client(server).await;
    // Deleting and reconfiguring the journal takes more than tgp's own rights: an operator's.
    let (_, js) = admin(server).await;
    let mut body = launch_body("H100", "on-demand-only");
    body["idempotency_key"] = json!("kept-1");
    assert!(request(&client, "tgp.api.launch", body).await["error"].is_null());
    wait_for_state(&client, "kept-1", "running").await;
    let events = client.subscribe(CONTROLLER_EVENTS).await.unwrap();
    client.flush().await.unwrap();
    (controller, client, js, events)
}

/// The next `JournalStreamChanged` on a subscription to `tgp.events.controller` (10 s at most).
async fn stream_changed(events: &mut async_nats::Subscriber) -> Value {
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(message) = events.next().await {
            let event: Value = serde_json::from_slice(&message.payload).expect("a controller event");
            if event["type"] == "JournalStreamChanged" {
                return event;
            }
        }
        panic!("subscription ended")
    })
    .await
    .expect("tgp says the stream changed within 10 s")
}

/// A new launch is refused with the reason.
async fn launch_refused(client: &async_nats::Client, id: &str, why: &str) {
    let mut body = launch_body("H100", "on-demand-only");
    body["idempotency_key"] = json!(id);
    let refused = request(client, "tgp.api.launch", body).await;
    assert_eq!(refused["error"]["code"], "launches_stopped", "{refused}");
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(why) && message.contains("restart tgp"), "{message}");
}

#[tokio::test]
async fn a_deleted_journal_stops_launches_and_is_not_recreated() {
    let server = nats();
    let (controller, client, js, mut events) = running_one(&server).await;

    js.delete_stream(EVENTS_STREAM).await.expect("an admin may delete it");
    let event = stream_changed(&mut events).await;
    assert_eq!(event["data"]["stream"], EVENTS_STREAM);
    assert_eq!(event["data"]["change"], "deleted");

    launch_refused(&client, "after-delete", "TGP_EVENTS was deleted").await;
    // Several looks later, the journal is still gone: tgp made no new, empty one.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(js.get_stream(EVENTS_STREAM).await.is_err(), "tgp recreated the journal");
    let market = controller.market();
    assert_eq!(market.launch_calls, 1, "only the first launch reached the market");
    assert!(market.machines.values().any(|m| m.status != "terminated"), "the running machine is left alone");
}

#[tokio::test]
async fn a_journal_reconfigured_to_forget_stops_launches_and_terminations_go_on() {
    let server = nats();
    let (controller, client, js, mut events) = running_one(&server).await;

    let mut config = js.get_stream(EVENTS_STREAM).await.unwrap().cached_info().config.clone();
    config.max_age = Duration::from_secs(3600);
    js.update_stream(config).await.expect("an admin may reconfigure it");
    let event = stream_changed(&mut events).await;
    assert_eq!(event["data"]["change"], "reconfigured");
    assert!(event["data"]["detail"].as_str().unwrap().contains("max_age"), "{event}");

    launch_refused(&client, "after-reconfigure", "TGP_EVENTS was reconfigured: max_age").await;
    let ended = request(&client, "tgp.api.terminate", json!({"instance_id": "kept-1"})).await;
    assert!(ended["error"].is_null(), "{ended}");
    wait_for_state(&client, "kept-1", "terminated").await;
    assert!(controller.market().machines.values().all(|m| m.status == "terminated"), "the machine was terminated");
    let types = types(&journaled(&js, "kept-1").await);
    assert_eq!(types.last(), Some(&"Terminated"), "{types:?}");
    let now = js.get_stream(EVENTS_STREAM).await.unwrap().cached_info().config.clone();
    assert_eq!(now.max_age, Duration::from_secs(3600), "tgp reverted nothing");
}
