//! Secrets sealed: a launch's env values reach the provider, in its own wire form, and nobody
//! else. A real nats-server, the real `tgp run` binary (at `RUST_LOG=trace`) on fake providers
//! served from this test process, so the test reads what reached each provider.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use futures::StreamExt;
use serde_json::json;
use support::{NatsServer, Role, admin, as_role, client, nats, request, secrets_key, wait_for_state};
use tgp::providers::config::ProviderKind;
use tgp_events::subjects::{DEAD_LETTERS_STREAM, EVENTS_STREAM, HEADER_DEAD_CODE, HEADER_MSG_ID, LAUNCH_COMMAND};
use tgp_testkit::fakes::market::FAKE_KEY;
use tgp_testkit::fakes::runpod::{RunPodFake, RunPodFakeConfig};
use tgp_testkit::fakes::vastai::{VastAiFake, VastAiFakeConfig};
use tgp_testkit::fakes::{FakeProvider, Operation};

/// The value no one but the provider may see.
const VALUE: &str = "hf_SEALED_q7Zx93kLmW";

/// `tgp run` on one fake provider, logging at trace to `log`; `key` none: no secrets key.
fn tgp_run(server: &NatsServer, kind: ProviderKind, fake: &dyn FakeProvider, key: Option<&Path>, log: &Path) -> Child {
    let url = server.url();
    let mut command = Command::new(env!("CARGO_BIN_EXE_tgp"));
    // Vast's real limit (60/min) holds on its fake too: a poll a second leaves tokens for offers.
    command.args(["run", "--nats-url", url, "--poll-interval", "1s"]);
    command.args(["--settle-window", "1s"]);
    // The journal key lives beside the log, so a restarted tgp signs with the same key.
    command.arg("--journal-key").arg(support::journal_key(log.parent().expect("the test's dir")));
    if let Some(key) = key {
        command.arg("--secrets-key").arg(key);
    }
    for other in ProviderKind::ALL {
        command.env_remove(other.key_variable()).env_remove(other.url_variable());
    }
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
    let mut child = command
        .env_remove("TGP_SECRETS_KEY")
        .env(kind.key_variable(), FAKE_KEY)
        .env(kind.url_variable(), fake.url())
        .env("RUST_LOG", "trace")
        .envs(as_role(server, Role::Tgp))
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("tgp starts");
    let stdout = child.stdout.take().expect("piped");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let first = lines.next().expect("a first line").expect("readable");
    assert!(first.contains("tgp controller running"), "{first}");
    std::thread::spawn(move || for _ in lines {});
    child
}

fn stop(mut child: Child) {
    child.kill().expect("kill");
    child.wait().expect("reaped");
}

/// Publishes a launch with `env` {HF_TOKEN: VALUE} on `tgp.commands.launch` under id `id`.
async fn publish_launch(js: &async_nats::jetstream::Context, id: &str) {
    let body = json!({"gpu_type": "H100", "gpu_count": 1, "max_hourly_price": "9.00", "env": {"HF_TOKEN": VALUE}});
    let publish = PublishMessage::build().payload(body.to_string().into()).header(HEADER_MSG_ID, id);
    js.send_publish(LAUNCH_COMMAND, publish).await.expect("published").await.expect("stored");
}

/// The launch requests that reached `fake` and carry the value in one of `wire_forms`.
fn launches_with(fake: &dyn FakeProvider, wire_forms: &[String]) -> usize {
    let seen = fake.control().seen();
    seen.iter()
        .filter(|r| r.operation == Some(Operation::Launch) && wire_forms.iter().any(|w| r.body.contains(w)))
        .count()
}

/// RunPod's two forms: REST's env object (on demand), GraphQL's key/value list (spot).
fn runpod_wire_forms() -> [String; 2] {
    [format!(r#""HF_TOKEN":"{VALUE}""#), format!(r#"{{"key":"HF_TOKEN","value":"{VALUE}"}}"#)]
}

/// Every message of `stream`, raw (subject, headers and body), as text.
async fn raw_stream(js: &async_nats::jetstream::Context, stream: &str) -> Vec<String> {
    let mut stream = js.get_stream(stream).await.expect("stream exists");
    let last = stream.info().await.expect("info").state.last_sequence;
    let mut all = Vec::new();
    for seq in 1..=last {
        if let Ok(m) = stream.get_raw_message(seq).await {
            all.push(format!("{} {:?} {}", m.subject, m.headers, String::from_utf8_lossy(&m.payload)));
        }
    }
    all
}

/// Waits for `id` to run, for up to 60 s (the real rate limits apply to the fakes' clients).
async fn wait_long(nc: &async_nats::Client, id: &str) -> serde_json::Value {
    for _ in 0..3 {
        let answer = request(nc, "tgp.api.get", json!({"instance_id": id})).await;
        if answer["state"] == "running" {
            return answer;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    wait_for_state(nc, id, "running").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_reaches_runpod_only_and_a_relaunch_after_a_restart_still_carries_it() {
    let server = nats();
    let dir = tempfile::tempdir().unwrap();
    let (key, log) = (secrets_key(dir.path()), dir.path().join("tgp.log"));
    let runpod = RunPodFake::start(RunPodFakeConfig { boot_delay: Duration::from_millis(300), ..Default::default() })
        .await
        .unwrap();
    let (nc, user) = client(&server).await;
    // Only an operator may read everything (and the raw journal).
    let (operator, js) = admin(&server).await;
    let mut everything = operator.subscribe(">").await.unwrap();
    operator.flush().await.unwrap();

    let tgp = tgp_run(&server, ProviderKind::RunPod, &runpod, Some(&key), &log);
    publish_launch(&user, "sealed-1").await;
    let running = wait_long(&nc, "sealed-1").await;
    let wire = runpod_wire_forms();
    assert_eq!(launches_with(&runpod, wire.as_slice()), 1, "RunPod got the value in its env");
    let shown = request(&nc, "tgp.api.get", json!({"instance_id": "sealed-1"})).await;
    assert!(!shown.to_string().contains(VALUE), "{shown}");

    // A restart reads the key again; the interrupted machine is relaunched with the value.
    stop(tgp);
    let tgp = tgp_run(&server, ProviderKind::RunPod, &runpod, Some(&key), &log);
    let machine = running["provider_instance_id"].as_str().expect("a machine").to_string();
    assert!(runpod.interrupt(&machine), "the fake interrupts {machine}");
    for _ in 0..600 {
        if launches_with(&runpod, wire.as_slice()) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(launches_with(&runpod, wire.as_slice()), 2, "the relaunch after the restart carried the value");
    let events = support::journaled(&js, "sealed-1").await;
    assert!(events.iter().any(|e| e.type_name() == "Interrupted"), "{:?}", support::types(&events));
    stop(tgp);

    let journal = raw_stream(&js, EVENTS_STREAM).await;
    assert!(journal.iter().any(|m| m.contains("HF_TOKEN")), "the name is journaled");
    assert!(journal.iter().all(|m| !m.contains(VALUE)), "the value is nowhere in TGP_EVENTS");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.lines().count() > 100, "tgp logged at trace");
    assert!(!logged.contains(VALUE), "the value is nowhere in tgp's trace log");

    // On the bus: only the command as published, and its deliveries to tgp, hold it.
    let mut leaked = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), everything.next()).await {
        let command_delivery = m.reply.as_ref().is_some_and(|r| r.starts_with("$JS.ACK.TGP_COMMANDS."));
        if m.subject.as_str() != LAUNCH_COMMAND
            && !command_delivery
            && String::from_utf8_lossy(&m.payload).contains(VALUE)
        {
            leaked.push(m.subject.to_string());
        }
    }
    assert!(leaked.is_empty(), "the value was seen on {leaked:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_reaches_vast_in_its_wire_form() {
    let server = nats();
    let dir = tempfile::tempdir().unwrap();
    let (key, log) = (secrets_key(dir.path()), dir.path().join("tgp.log"));
    let vast = VastAiFake::start(VastAiFakeConfig { boot_delay: Duration::from_millis(300), ..Default::default() })
        .await
        .unwrap();
    let (nc, user) = client(&server).await;
    let (_, js) = admin(&server).await;
    let tgp = tgp_run(&server, ProviderKind::VastAi, &vast, Some(&key), &log);
    publish_launch(&user, "sealed-2").await;
    wait_long(&nc, "sealed-2").await;
    let wire = [format!(r#""HF_TOKEN":"{VALUE}""#)];
    assert_eq!(launches_with(&vast, wire.as_slice()), 1, "Vast got the value in its env object");
    stop(tgp);
    assert!(raw_stream(&js, EVENTS_STREAM).await.iter().all(|m| !m.contains(VALUE)));
    assert!(!std::fs::read_to_string(&log).unwrap().contains(VALUE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_an_env_launch_is_refused_and_its_dead_letter_keeps_no_value() {
    let server = nats();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tgp.log");
    let vast = VastAiFake::start(VastAiFakeConfig::default()).await.unwrap();
    let (nc, user) = client(&server).await;
    let (_, js) = admin(&server).await;
    let tgp = tgp_run(&server, ProviderKind::VastAi, &vast, None, &log);

    let body = json!({"gpu_type": "H100", "gpu_count": 1, "max_hourly_price": "9.00", "env": {"HF_TOKEN": VALUE}});
    let reply = request(&nc, "tgp.api.launch", body).await;
    assert_eq!(reply["error"]["code"], "no_secrets_key", "{reply}");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(message.contains("tgp secrets keygen") && message.contains("--secrets-key"), "{message}");
    assert!(!reply.to_string().contains(VALUE));
    publish_launch(&user, "nokey-1").await;
    // A launch without env still works without a key.
    let reply = request(&nc, "tgp.api.launch", support::launch_body("H100", "prefer-spot")).await;
    assert!(reply["instance_id"].is_string(), "{reply}");

    let mut dead = Vec::new();
    for _ in 0..100 {
        dead = raw_stream(&js, DEAD_LETTERS_STREAM).await;
        if dead.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop(tgp);
    assert_eq!(dead.len(), 2, "both refusals are kept: {dead:?}");
    assert!(dead.iter().all(|d| d.contains(HEADER_DEAD_CODE) && d.contains("no_secrets_key")), "{dead:?}");
    assert!(dead.iter().all(|d| d.contains("HF_TOKEN") && d.contains("(redacted)") && !d.contains(VALUE)));
    assert_eq!(launches_with(&vast, &[VALUE.to_string()]), 0);
    assert!(!std::fs::read_to_string(&log).unwrap().contains(VALUE));
}
