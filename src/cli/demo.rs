//! `tgp demo`: the whole system on the fake market (the four providers' fake servers on loopback,
//! driven by the real clients), talking to it over NATS like any program would. Four launches (one that cannot fit, to show why), a spot interruption and its relaunch,
//! then termination of everything, with every lifecycle event printed as the journal records it.

use std::time::Duration;

use anyhow::{Context as _, bail};
use tgp::controller::Controller;
use tgp::journal::{JournalReader, StartAt};
use tgp::render::describe;
use tgp_events::InstanceId;
use tgp_events::api::{ErrorReply, InstanceState, InstanceSummary};
use tgp_events::subjects::{API_GET, API_LAUNCH, API_TERMINATE, INSTANCE_EVENTS_ALL};

async fn call(client: &async_nats::Client, subject: &str, body: serde_json::Value) -> anyhow::Result<InstanceSummary> {
    let reply = client.request(subject.to_string(), body.to_string().into()).await?;
    if let Ok(e) = serde_json::from_slice::<ErrorReply>(&reply.payload) {
        bail!("{subject}: {} ({})", e.error.message, e.error.code);
    }
    Ok(serde_json::from_slice(&reply.payload)?)
}

async fn wait_for(
    client: &async_nats::Client,
    id: &InstanceId,
    done: impl Fn(&InstanceSummary) -> bool,
) -> anyhow::Result<InstanceSummary> {
    for _ in 0..120 {
        let s = call(client, API_GET, serde_json::json!({"instance_id": id})).await?;
        if done(&s) {
            return Ok(s);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("instance {id} did not get there within 30 s")
}

pub async fn run(nats: &tgp::connect::NatsOptions, controller: &Controller) -> anyhow::Result<()> {
    let client = tgp::connect::connect_with(nats, "tgp-demo").await?;
    let js = tgp::connect::jetstream(client.clone());
    let mut events = JournalReader::open(&js).await?.follow(INSTANCE_EVENTS_ALL, StartAt::New).await?;
    let printer = tokio::spawn(async move {
        while let Some(Ok((seq, at, commit))) = events.next().await {
            for record in &commit.events {
                if let Ok(event) = record.decode() {
                    println!("{seq:>5} {} {:<18} {}", at.format("%H:%M:%S%.3f"), commit.aggregate_id, describe(&event));
                }
            }
        }
    });
    let run = chrono::Utc::now().format("%H%M%S").to_string();
    let launches = [
        ("train", r#"{"gpu_type":"H100","gpu_count":1,"max_hourly_price":"3.00","spot_policy":"prefer-spot"}"#),
        ("infer", r#"{"gpu_type":"L40S","gpu_count":1,"max_hourly_price":"1.50","spot_policy":"on-demand-only"}"#),
        ("big", r#"{"gpu_type":"A100-80GB","gpu_count":8,"max_hourly_price":"2.00","spot_policy":"spot-only"}"#),
        // Nothing fits, and it asks not to wait for capacity (`0s`): it fails at once.
        ("too-cheap", r#"{"gpu_type":"RTX4090","gpu_count":1,"max_hourly_price":"0.05","wait_for_capacity":"0s"}"#),
    ];
    println!(
        "== tgp demo (NATS at {})\n== launching {} instances through tgp.api.launch",
        nats.redacted_url(),
        launches.len()
    );
    let mut ids = Vec::new();
    for (name, body) in launches {
        let mut body: serde_json::Value = serde_json::from_str(body)?;
        body["idempotency_key"] = format!("demo-{name}-{run}").into();
        ids.push(call(&client, API_LAUNCH, body).await?.instance_id);
    }
    let (train, runners) = (ids[0].clone(), &ids[..3]);
    for id in runners {
        wait_for(&client, id, |s| s.state == InstanceState::Running).await?;
    }
    wait_for(&client, &ids[3], |s| s.state == InstanceState::Failed).await?;
    let before = wait_for(&client, &train, |s| s.state == InstanceState::Running).await?;
    let machine = before.provider_instance_id.clone().context("a running instance has a machine")?;
    println!("== the provider takes {machine} away (instance {train}); tgp notices at its next poll");
    let cues = controller.cues.as_ref().context("the demo's market takes cues")?;
    anyhow::ensure!(cues.interrupt(&machine), "the market has no running machine {machine}");
    wait_for(&client, &train, |s| {
        s.state == InstanceState::Running && s.provider_instance_id.as_deref() != Some(&machine)
    })
    .await?;
    println!("== terminating everything through tgp.api.terminate");
    for id in runners {
        call(&client, API_TERMINATE, serde_json::json!({"instance_id": id, "reason": "demo over"})).await?;
    }
    for id in runners {
        wait_for(&client, id, |s| s.state == InstanceState::Terminated).await?;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    printer.abort();
    let left = cues.live_machines().len();
    println!("== done: {left} machine(s) left at the fake providers.");
    println!("== replay it: tgp watch --nats-url <url> --from-seq 1 (with tgp run), or read docs/events.md");
    Ok(())
}
