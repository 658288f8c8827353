//! tgp's own consumers heal: a real nats-server stopped for 15 s and restarted on the same port
//! and store while machines bill, and consumers deleted under a running controller. Afterwards
//! the live projections (`tgp.api.cost`, `tgp.api.prices`) agree with a replay of the journal
//! (`tgp audit`, a rebuild) to the cent, commands still arrive, and each recovery is journaled on
//! `tgp.events.controller` and counted in `tgp_consumer_recoveries_total`.

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use serde_json::{Value, json};
use support::*;
use tgp::journal::{JournalReader, StartAt};
use tgp::projections::pricing::RealizedPrices;
use tgp::projections::runner;
use tgp_events::controller_events::{ControllerEvent, ControllerRecord};
use tgp_events::subjects::{CONTROLLER_EVENTS, EVENTS_STREAM};

fn audit(url: &str, to: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_tgp"))
        .args(["audit", "--nats-url", url, "--format", "json", "--group-by", "instance", "--to", to])
        .output()
        .expect("tgp audit runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON audit")
}

/// Waits until the live cost projection has folded what a fresh audit replays, then compares
/// the two to the cent, per instance and in total. Returns the live answer.
async fn cost_agrees_with_audit(client: &async_nats::Client, url: &str) -> Value {
    let to = (chrono::Utc::now() + chrono::Duration::minutes(1)).to_rfc3339();
    let body = json!({"to": to, "group_by": ["instance"]});
    let (mut live, mut replayed) = (Value::Null, Value::Null);
    for _ in 0..100 {
        replayed = audit(url, &to);
        live = request(client, "tgp.api.cost", body.clone()).await;
        if live["last_sequence"] == replayed["last_sequence"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(live["last_sequence"], replayed["last_sequence"], "the live cost caught up:\n{live}\n{replayed}");
    assert_eq!(live["rows"], replayed["rows"], "per instance");
    assert_eq!(live["total"], replayed["total"]);
    live
}

/// Waits until the live pricing projection has folded what a rebuild folds, and compares them.
async fn prices_agree_with_a_rebuild(client: &async_nats::Client, js: &async_nats::jetstream::Context) {
    let (mut live, mut rebuilt) = (Value::Null, Value::Null);
    for _ in 0..100 {
        let folded = runner::fold_all::<RealizedPrices>(js, StartAt::Beginning, |_, _| {}).await.expect("rebuilds");
        rebuilt = json!({
            "prices": folded.state.rows(None),
            "market": folded.state.market(None),
            "last_sequence": folded.last_sequence,
        });
        live = request(client, "tgp.api.prices", json!({})).await;
        if live == rebuilt {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(live, rebuilt, "the live prices equal a rebuild");
}

/// The consumers whose recovery is journaled on `tgp.events.controller`.
async fn recovered(js: &async_nats::jetstream::Context) -> BTreeSet<String> {
    let reader = JournalReader::open(js).await.expect("journal");
    let mut read = reader.commits(CONTROLLER_EVENTS, StartAt::Beginning).await.expect("readable");
    let mut consumers = BTreeSet::new();
    while let Some(message) = read.next_raw().await {
        let record: ControllerRecord = serde_json::from_slice(&message.expect("read").payload).expect("decodes");
        if let ControllerEvent::ConsumerRecovered { consumer, .. } = record.event {
            consumers.insert(consumer);
        }
    }
    consumers
}

/// Polls until every one of `wanted` has journaled a recovery (10 s at most).
async fn wait_for_recoveries(js: &async_nats::jetstream::Context, wanted: &[&str]) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for _ in 0..100 {
        seen = recovered(js).await;
        if wanted.iter().all(|c| seen.contains(*c)) {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("recoveries journaled for {seen:?}, wanted {wanted:?}")
}

/// One series of the controller's Prometheus endpoint.
async fn metric(port: u16, series: &str) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("metrics endpoint answers");
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").await.expect("request sent");
    let mut text = String::new();
    stream.read_to_string(&mut text).await.expect("answer read");
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

async fn launch(client: &async_nats::Client, gpu: &str) -> String {
    let accepted = request(client, "tgp.api.launch", launch_body(gpu, "on-demand-only")).await;
    accepted["instance_id"].as_str().unwrap_or_else(|| panic!("launched: {accepted}")).to_string()
}

async fn launch_durably(js: &async_nats::jetstream::Context, gpu: &str, key: &str) {
    let body = launch_body(gpu, "on-demand-only").to_string();
    let publish = PublishMessage::build().payload(body.into()).message_id(key);
    js.send_publish("tgp.commands.launch", publish).await.expect("published").await.expect("stored");
}

async fn terminate(client: &async_nats::Client, id: &str) {
    let answer = request(client, "tgp.api.terminate", json!({"instance_id": id})).await;
    assert!(answer["error"].is_null(), "{answer}");
    wait_for_state(client, id, "terminated").await;
}

/// Waits until the controller answers on `tgp.api` again after the server came back (its
/// connection and ours reconnect each in their own time; until then a request has no responders).
async fn wait_for_controller(client: &async_nats::Client) {
    for _ in 0..100 {
        let asked = client.request("tgp.api.list", "".into());
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), asked).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the controller never answered after the restart")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port()
}

#[tokio::test]
async fn after_a_15_s_outage_the_projections_agree_with_the_audit() {
    let mut server = nats();
    let port = free_port();
    let _controller =
        ControllerProcess::start_with(server.url(), &server.dir(), &["--metrics-addr", &format!("127.0.0.1:{port}")]);
    let (client, js) = client(server.url()).await;

    let before = [launch(&client, "H100").await, launch(&client, "A100-80GB").await];
    for id in &before {
        wait_for_state(&client, id, "running").await;
    }
    let first = cost_agrees_with_audit(&client, server.url()).await;
    assert_ne!(first["total"]["cost"], "0", "two machines bill: {first}");

    // The outage: 15 s with no server while both machines keep billing at the provider.
    server.stop();
    tokio::time::sleep(Duration::from_secs(15)).await;
    server.restart().expect("the server restarts on the same port and store");
    wait_for_controller(&client).await;

    // Commands taken after the outage, on both ways in, and a terminate, all folded into cost.
    launch_durably(&js, "L40S", "after-outage").await;
    let api = launch(&client, "H100").await;
    for id in ["after-outage", api.as_str()] {
        wait_for_state(&client, id, "running").await;
    }
    for id in before.iter().map(String::as_str).chain(["after-outage", api.as_str()]) {
        terminate(&client, id).await;
    }
    let last = cost_agrees_with_audit(&client, server.url()).await;
    let instances: BTreeSet<_> = last["rows"].as_array().unwrap().iter().map(|r| r["instance"].to_string()).collect();
    assert_eq!(instances.len(), 4, "all four instances are billed: {last}");
    prices_agree_with_a_rebuild(&client, &js).await;

    let consumers = ["metrics", "projection-cost", "projection-pricing", "tgp-intake"];
    wait_for_recoveries(&js, &consumers).await;
    for consumer in consumers {
        let series = format!("tgp_consumer_recoveries_total{{consumer=\"{consumer}\"}}");
        assert!(metric(port, &series).await >= 1.0, "{series}");
    }
}

#[tokio::test]
async fn deleted_consumers_are_recreated_and_catch_up() {
    let server = nats();
    let port = free_port();
    let _controller =
        ControllerProcess::start_with(server.url(), &server.dir(), &["--metrics-addr", &format!("127.0.0.1:{port}")]);
    let (client, js) = client(server.url()).await;
    let early = launch(&client, "H100").await;
    wait_for_state(&client, &early, "running").await;
    cost_agrees_with_audit(&client, server.url()).await;
    assert!(recovered(&js).await.is_empty(), "nothing to recover from yet");
    assert_eq!(metric(port, "tgp_consumer_recoveries_total{consumer=\"projection-cost\"}").await, 0.0);

    let events = js.get_stream(EVENTS_STREAM).await.unwrap();
    for durable in ["projection-cost", "projection-pricing"] {
        events.delete_consumer(durable).await.unwrap_or_else(|e| panic!("{durable}: {e}"));
    }
    js.get_stream("TGP_COMMANDS").await.unwrap().delete_consumer("tgp-intake").await.expect("intake deleted");
    wait_for_recoveries(&js, &["projection-cost", "projection-pricing", "tgp-intake"]).await;

    // A command after the deletion still arrives, and the projections fold what follows.
    launch_durably(&js, "A100-80GB", "after-delete").await;
    wait_for_state(&client, "after-delete", "running").await;
    terminate(&client, &early).await;
    terminate(&client, "after-delete").await;
    let last = cost_agrees_with_audit(&client, server.url()).await;
    assert_eq!(last["rows"].as_array().unwrap().len(), 2, "{last}");
    prices_agree_with_a_rebuild(&client, &js).await;
    assert!(metric(port, "tgp_consumer_recoveries_total{consumer=\"projection-cost\"}").await >= 1.0);
}

#[tokio::test]
async fn garbage_on_the_journal_does_not_stop_the_projections() {
    let server = nats();
    let _controller = ControllerProcess::start(server.url(), &server.dir());
    let (client, js) = client(server.url()).await;
    let early = launch(&client, "H100").await;
    wait_for_state(&client, &early, "running").await;
    cost_agrees_with_audit(&client, server.url()).await;

    // Garbage on an instance subject, as any client with publish rights could write it.
    js.send_publish("tgp.events.instance.x", PublishMessage::build().payload("not json at all".into()))
        .await
        .unwrap()
        .await
        .unwrap();
    // What follows is still folded: the live cost and prices keep up with the journal.
    let later = launch(&client, "A100-80GB").await;
    wait_for_state(&client, &later, "running").await;
    terminate(&client, &early).await;
    let last = cost_agrees_with_audit(&client, server.url()).await;
    assert_eq!(last["rows"].as_array().unwrap().len(), 2, "{last}");
    prices_agree_with_a_rebuild(&client, &js).await;
}
