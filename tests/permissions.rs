//! The roles of `nats.conf`, against a real nats-server started with the project's configuration
//! and a real `tgp run` connected as `tgp`: a `client` launches, follows and terminates, and cannot
//! write the journal, purge, delete or reconfigure a stream, touch tgp's durable consumers, write a
//! bucket or read the commands; an `auditor` replays (`tgp audit`) and cannot command. Every refusal
//! is the server's permission violation for that subject, and the journal is unchanged by them.

mod support;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use serde_json::json;
use support::*;
use tgp_events::subjects::{COMMANDS_STREAM, EVENTS_STREAM, SNAPSHOTS_BUCKET};

/// A connection as `role` that keeps every error the server sends it (permission violations
/// among them), and a JetStream context that gives up on an unanswered request after 2 s.
struct Watched {
    client: async_nats::Client,
    js: jetstream::Context,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Watched {
    async fn connect(server: &NatsServer, role: Role) -> Self {
        let seed = std::fs::read_to_string(server.seed_file(role)).unwrap().trim().to_string();
        let errors = Arc::new(Mutex::new(Vec::new()));
        let seen = errors.clone();
        let client = async_nats::ConnectOptions::with_nkey(seed)
            .event_callback(move |event| {
                let seen = seen.clone();
                async move {
                    if let async_nats::Event::ServerError(e) = event {
                        seen.lock().unwrap().push(e.to_string());
                    }
                }
            })
            .connect(server.url())
            .await
            .expect("connects");
        let js = jetstream::ContextBuilder::new().timeout(Duration::from_secs(2)).build(client.clone());
        Watched { client, js, errors }
    }

    /// Waits for the server's permission violation naming `subject` (5 s at most).
    async fn refused(&self, what: &str, subject: &str) {
        for _ in 0..50 {
            let errors = self.errors.lock().unwrap().clone();
            if errors.iter().any(|e| e.to_lowercase().contains("permissions violation") && e.contains(subject)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{what}: no permission violation for {subject}; the server said {:?}", self.errors.lock().unwrap());
    }
}

/// The journal's last sequence and message count, as the admin sees it.
async fn journal_state(admin: &jetstream::Context) -> (u64, u64) {
    let state = admin.get_stream(EVENTS_STREAM).await.unwrap().info().await.unwrap().state.clone();
    (state.last_sequence, state.messages)
}

#[tokio::test]
async fn a_client_launches_follows_and_terminates_and_can_write_nothing_of_tgps() {
    let server = nats();
    let controller = ControllerProcess::start(&server, &server.dir());
    let (_, admin) = admin(&server).await;
    let client = Watched::connect(&server, Role::Client).await;

    // Launch and follow, as a user does: a request, and a subscription to the instance's events.
    let mut follow = client.client.subscribe("tgp.events.instance.perm-1").await.unwrap();
    let mut body = launch_body("H100", "on-demand-only");
    body["idempotency_key"] = json!("perm-1");
    let accepted = request(&client.client, "tgp.api.launch", body).await;
    assert!(accepted["error"].is_null(), "{accepted}");
    let running = wait_for_state(&client.client, "perm-1", "running").await;
    let machine = running["provider_instance_id"].as_str().unwrap().to_string();
    let followed = tokio::time::timeout(Duration::from_secs(10), follow.next()).await.expect("an event").unwrap();
    assert!(String::from_utf8_lossy(&followed.payload).contains("perm-1"));
    let events = journaled(&client.js, "perm-1").await;
    assert_eq!(types(&events).last(), Some(&"Running"), "the client replays the journal");
    let before = journal_state(&admin).await;

    // Writing the journal.
    let forged = json!({"aggregate_type": "instance", "aggregate_id": "x", "events": []}).to_string();
    let publish = client.js.publish("tgp.events.instance.x", forged.into()).await;
    assert!(publish.is_err() || publish.unwrap().await.is_err(), "a forged event is not stored");
    client.refused("publish an event", "tgp.events.instance.x").await;

    // Purging, deleting and reconfiguring the journal.
    let mut events_stream = client.js.get_stream(EVENTS_STREAM).await.expect("a client reads the stream's info");
    assert!(events_stream.purge().await.is_err());
    client.refused("purge", "$JS.API.STREAM.PURGE.TGP_EVENTS").await;
    assert!(events_stream.purge().filter("tgp.events.instance.perm-1").await.is_err());
    assert!(client.js.delete_stream(EVENTS_STREAM).await.is_err());
    client.refused("delete the stream", "$JS.API.STREAM.DELETE.TGP_EVENTS").await;
    let mut config = events_stream.info().await.unwrap().config.clone();
    config.max_messages = 1;
    assert!(client.js.update_stream(config).await.is_err());
    client.refused("update the stream", "$JS.API.STREAM.UPDATE.TGP_EVENTS").await;
    assert!(client.js.delete_stream(COMMANDS_STREAM).await.is_err(), "nor any other stream");
    client.refused("delete the command stream", "$JS.API.STREAM.DELETE.TGP_COMMANDS").await;
    assert!(events_stream.delete_message(1).await.is_err());
    client.refused("delete a message", "$JS.API.STREAM.MSG.DELETE.TGP_EVENTS").await;

    // tgp's durable consumers: neither deleted nor replaced by one of the same name.
    assert!(events_stream.delete_consumer("projection-cost").await.is_err());
    client.refused("delete tgp's consumer", "$JS.API.CONSUMER.DELETE.TGP_EVENTS.projection-cost").await;
    let takeover = events_stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("projection-pricing".into()),
            filter_subject: "tgp.events.instance.perm-1".into(),
            ..Default::default()
        })
        .await;
    assert!(takeover.is_err(), "a client cannot redefine tgp's consumer");
    client.refused("redefine tgp's consumer", "$JS.API.CONSUMER.CREATE.TGP_EVENTS.projection-pricing").await;
    let names: Vec<String> =
        admin.get_stream(EVENTS_STREAM).await.unwrap().consumer_names().map(|n| n.unwrap()).collect().await;
    assert!(
        names.contains(&"projection-cost".to_string()) && names.contains(&"projection-pricing".to_string()),
        "{names:?}"
    );

    // The snapshot bucket: not opened, not written by its subject.
    assert!(client.js.get_key_value(SNAPSHOTS_BUCKET).await.is_err());
    client.refused("open the snapshots", "$JS.API.STREAM.INFO.KV_tgp_snapshots").await;
    let write = client.js.publish("$KV.tgp_snapshots.perm-1", "{}".into()).await;
    assert!(write.is_err() || write.unwrap().await.is_err(), "a snapshot is not written");
    client.refused("write a snapshot", "$KV.tgp_snapshots.perm-1").await;
    // Nor through a consumer of its own delivering the journal onto the bucket's subjects (the
    // server delivers a push consumer's messages only where someone subscribed, and a client may
    // not subscribe there).
    let snapshots = admin.get_stream("KV_tgp_snapshots").await.unwrap().info().await.unwrap().state.messages;
    let _relay = events_stream
        .create_consumer(consumer::push::Config {
            deliver_subject: "$KV.tgp_snapshots.perm-1".into(),
            filter_subject: "tgp.events.instance.perm-1".into(),
            ..Default::default()
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let relayed = admin.get_stream("KV_tgp_snapshots").await.unwrap().info().await.unwrap().state.messages;
    assert_eq!(relayed, snapshots, "nothing relayed into the snapshots");
    let snapshot = admin.get_key_value(SNAPSHOTS_BUCKET).await.unwrap().entry("perm-1").await.unwrap();
    assert!(snapshot.is_none_or(|e| &e.value[..] != b"{}"), "the snapshot is tgp's");

    // The commands carry secrets: a client reads neither the stream nor the subjects.
    assert!(client.js.get_stream(COMMANDS_STREAM).await.is_err());
    client.refused("read the commands", "$JS.API.STREAM.INFO.TGP_COMMANDS").await;
    let _spy = client.client.subscribe("tgp.commands.>").await.unwrap();
    client.refused("subscribe to the commands", "tgp.commands.>").await;

    assert_eq!(journal_state(&admin).await, before, "the journal is unchanged");

    // Terminate, end to end: the request, the event followed, the machine gone at the provider.
    let answer = request(&client.client, "tgp.api.terminate", json!({"instance_id": "perm-1"})).await;
    assert!(answer["error"].is_null(), "{answer}");
    wait_for_state(&client.client, "perm-1", "terminated").await;
    let mut saw_terminated = false;
    while let Ok(Some(message)) = tokio::time::timeout(Duration::from_secs(5), follow.next()).await {
        if String::from_utf8_lossy(&message.payload).contains("\"Terminated\"") {
            saw_terminated = true;
            break;
        }
    }
    assert!(saw_terminated, "the client followed the termination");
    assert_eq!(controller.market().machines[&machine].status, "terminated");
}

#[tokio::test]
async fn an_auditor_replays_the_journal_and_cannot_command() {
    let server = nats();
    let _controller = ControllerProcess::start(&server, &server.dir());
    let (client, _) = client(&server).await;
    let (_, admin) = admin(&server).await;
    let mut body = launch_body("H100", "on-demand-only");
    body["idempotency_key"] = json!("audited-1");
    assert!(request(&client, "tgp.api.launch", body).await["error"].is_null());
    wait_for_state(&client, "audited-1", "running").await;

    let out = Command::new(env!("CARGO_BIN_EXE_tgp"))
        .args(["audit", "--nats-url", server.url(), "--group-by", "instance", "--format", "json"])
        .envs(as_role(&server, Role::Auditor))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["rows"].as_array().unwrap().iter().any(|r| r["instance"] == "audited-1"), "{report}");

    let auditor = Watched::connect(&server, Role::Auditor).await;
    let commands_before = admin.get_stream(COMMANDS_STREAM).await.unwrap().info().await.unwrap().state.clone();
    let launch = json!({"gpu_type": "H100", "gpu_count": 1, "max_hourly_price": "3.00"}).to_string();
    let publish = auditor.js.publish("tgp.commands.launch", launch.clone().into()).await;
    assert!(publish.is_err() || publish.unwrap().await.is_err(), "an auditor's command is not stored");
    auditor.refused("publish a command", "tgp.commands.launch").await;
    assert!(auditor.client.request("tgp.api.launch", launch.into()).await.is_err());
    auditor.refused("request a launch", "tgp.api.launch").await;
    let commands_after = admin.get_stream(COMMANDS_STREAM).await.unwrap().info().await.unwrap().state.clone();
    assert_eq!(commands_after.last_sequence, commands_before.last_sequence, "no command reached tgp");
    let listed = request(&auditor.client, "tgp.api.list", json!({})).await;
    assert!(listed.to_string().contains("audited-1"), "an auditor reads what runs: {listed}");

    // `tgp status` reads the lease; an auditor cannot write it.
    let lease = auditor.js.get_key_value("tgp_leader").await.expect("an auditor opens the lease bucket");
    assert!(lease.get("controller").await.unwrap().is_some(), "an auditor reads who leads");
    assert!(lease.put("controller", "forged".into()).await.is_err(), "an auditor cannot take the lease");
    auditor.refused("write the lease", "$KV.tgp_leader.controller").await;
}

/// The Kubernetes cluster's configuration grants exactly the permissions tested here.
#[test]
fn the_kubernetes_nats_config_has_the_roles_of_nats_conf() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let roles = |text: &str, end: &str| -> Vec<String> {
        let start = text.find("# Who may do what.").expect("the roles' start");
        let stop = start + text[start..].find(end).expect("the roles' end");
        text[start..stop].lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
    };
    let conf = std::fs::read_to_string(root.join("nats.conf")).unwrap();
    let kube = std::fs::read_to_string(root.join("deploy/kubernetes/nats-jetstream.yaml")).unwrap();
    assert_eq!(roles(&kube, "# The roles' public nkeys"), roles(&conf, "# The users:"));
}
