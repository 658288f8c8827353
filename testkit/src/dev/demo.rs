//! `tgp-dev demo`: the whole system on the fake market (the four providers' fake servers on loopback,
//! driven by the real clients), talking to it over NATS like any program would. Four launches (one that cannot fit, to show why), a spot interruption and its relaunch,
//! then termination of everything, with every lifecycle event printed as the journal records it.

use std::time::Duration;

use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::Args;
use tgp::cli::NatsArgs;
use tgp::cli::controller::{actix_system, journal_key, nats_or_private};
use tgp::controller::{Controller, ControllerConfig};
use tgp::journal::{JournalReader, StartAt};
use tgp::nats_server::{NatsServer, Role};
use tgp::render::describe;
use tgp_actors::supervisor::SupervisorConfig;
use tgp_events::InstanceId;
use tgp_events::api::{ErrorReply, InstanceState, InstanceSummary};
use tgp_events::subjects::{API_GET, API_LAUNCH, API_TERMINATE, INSTANCE_EVENTS_ALL};

use super::market::{DevMarket, MarketKind, SimArgs};
use crate::cues::MarketCues;

/// `tgp-dev demo`'s options.
#[derive(Args)]
pub struct DemoArgs {
    #[command(flatten)]
    nats: NatsArgs,
    /// Seed of the fake providers (offers, prices, capacity).
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

/// Starts a controller on the fakes (and a private nats-server, without --nats-url), then runs
/// the demo against it as a client.
pub fn demo(args: DemoArgs) -> anyhow::Result<()> {
    actix_system().block_on(async move {
        let (nats, server) = nats_or_private(&args.nats, Role::Tgp)?;
        // On a private server the demo's user connects as a client, as a real one would.
        let user = server.as_ref().map_or_else(|| nats.clone(), |s| s.options(Role::Client));
        let scratch = server.as_ref().map(NatsServer::dir);
        let (journal_key, _key_dir) = journal_key(None, scratch.as_deref(), true)?;
        let sim = SimArgs {
            sim_seed: args.seed,
            sim_state: None,
            sim_boot_time: Duration::from_secs(1),
            sim_spot_life: None,
        };
        let market = DevMarket::build(MarketKind::Fakes, &sim).await?;
        println!("== the market: {}", market.built.description);
        // The demo's own key, for its run only: its env values are sealed like a real deployment's.
        let key = tgp_actors::keyring::SecretKey::from_bytes(&tgp_actors::keyring::SecretKey::generate());
        let config = ControllerConfig {
            nats: nats.clone(),
            supervisor: SupervisorConfig {
                keyring: Arc::new(tgp_actors::keyring::Keyring::new(vec![key])),
                poll_interval: Duration::from_millis(500),
                retry_delay: Duration::from_secs(1),
                ..SupervisorConfig::default()
            },
            providers: market.built.providers,
            api_changes: market.built.api_changes,
            metrics_addr: None,
            ready_addr: None,
            provider_actor: market.built.provider_actor,
            allow_empty_journal: false,
            stream_check_interval: tgp::journal::guard::CHECK_INTERVAL,
            journal_key,
            lease: tgp::leader::LeaseConfig::default(),
            replicas: tgp::journal::layout::Replicas::ONE,
        };
        let _controller = Controller::start(config).await.context("starting the controller")?;
        run(&user, market.cues.as_ref()).await
    })
}

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

async fn run(nats: &tgp::connect::NatsOptions, cues: &dyn MarketCues) -> anyhow::Result<()> {
    let client = tgp::connect::connect_with(nats, "tgp-demo").await?;
    let js = tgp::connect::jetstream(client.clone());
    let mut events = JournalReader::open(&js).await?.follow(INSTANCE_EVENTS_ALL, StartAt::New).await?;
    let printer = tokio::spawn(async move {
        while let Some(Ok((seq, at, commit))) = events.next().await {
            for (_, event) in &commit.events {
                println!("{seq:>5} {} {:<18} {}", at.format("%H:%M:%S%.3f"), commit.instance, describe(event));
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
        "== tgp-dev demo (NATS at {})\n== launching {} instances through tgp.api.launch",
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
