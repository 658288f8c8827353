//! `tgp-dev bench failover`: how long instances go unattended when the leading `tgp run` is lost.
//!
//! Two `tgp-dev run` processes (the product's controller on the simulated market, whose state file
//! both share) lead and stand by on one private nats-server. The journal first holds `--finished`
//! finished instances (signed commits written straight to the journal) and `--instances` live
//! ones (launched through the leader). Each round then:
//! 1. waits until the standby answers `tgp.api.leader` as ready (it watches the lease, and its
//!    index of unfinished chains has caught up with the journal);
//! 2. freezes the leader with SIGSTOP: like a machine gone elsewhere, it renews nothing and its
//!    lease must lapse (a `kill -9` on the same host is noticed at once through the dead pid, which
//!    measures nothing about the lease);
//! 3. preempts one running machine in the market, as the provider would, so there is something
//!    to decide;
//! 4. measures from the freeze to the lease's new holder (`since` in the lease) and to the first
//!    commit journaled with the new epoch (the `Interrupted` of that machine, or any other);
//! 5. kills the frozen process and starts it again as the standby.
//!
//! The raw figure beside it is the lease's time to live, the floor a standby waits by design: the
//! ratio says how much of the gap is tgp's own work.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::message::PublishMessage;
use chrono::Utc;
use clap::Args;
use futures::StreamExt;
use tgp::cli::parse_duration;
use tgp::journal::{JetStreamJournal, JournalKey};
use tgp::nats_server::{NatsServer, Role};
use tgp_events::InstanceId;
use tgp_events::api::{InstanceState, LeaderReply, ListRequest};
use tgp_events::events::InstanceEvent;
use tgp_events::subjects::{
    API_LEADER, API_LIST, EVENTS_STREAM, HEADER_LEADER_EPOCH, HEADER_MSG_ID, INSTANCE_EVENTS_ALL,
};

use super::bench::lifecycle;
use super::bench_launch::Summary;
use crate::market::MarketState;

/// `tgp-dev bench failover`'s options.
#[derive(Args)]
pub struct FailoverBenchArgs {
    /// Freezes of the leader measured.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// The lease's time to live (`tgp run --lease-ttl`): the standby's floor.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    lease_ttl: Duration,
    /// Live instances, launched through the leader before the first round.
    #[arg(long, default_value_t = 1_000)]
    instances: usize,
    /// Finished instances written to the journal first (five events each, in two signed commits).
    #[arg(long, default_value_t = 10_000)]
    finished: usize,
}

/// One `tgp-dev run` of the bench.
struct Controller {
    name: String,
    child: Child,
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What every controller of the run shares.
struct Setup {
    server: NatsServer,
    dir: tempfile::TempDir,
    ttl: Duration,
}

impl Setup {
    fn journal_key(&self) -> PathBuf {
        self.dir.path().join("journal.key")
    }

    fn market(&self) -> PathBuf {
        self.dir.path().join("simulated-market.json")
    }

    fn start(&self, name: &str) -> anyhow::Result<Controller> {
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log")))?;
        let child = Command::new(std::env::current_exe()?)
            .args(["run", "--market", "simulated", "--nats-url", self.server.url(), "--name", name])
            .arg("--lease-ttl")
            .arg(format!("{}ms", self.ttl.as_millis()))
            .args(["--poll-interval", "500ms", "--settle-window", "5s", "--sim-boot-time", "300ms"])
            .arg("--sim-state")
            .arg(self.market())
            .arg("--journal-key")
            .arg(self.journal_key())
            .arg("--secrets-key")
            .arg(self.dir.path().join("secrets.key"))
            .env("NATS_NKEY", self.server.seed_file(Role::Tgp))
            .env("RUST_LOG", std::env::var("TGP_BENCH_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting tgp-dev run")?;
        Ok(Controller { name: name.into(), child })
    }
}

/// Writes `count` finished instances, signed, as `tgp run` would have journaled them.
async fn write_finished(js: &async_nats::jetstream::Context, key: JournalKey, count: usize) -> anyhow::Result<()> {
    let journal = JetStreamJournal::open_signed(js.clone(), key).await?;
    let started = Instant::now();
    let written = futures::stream::iter(0..count)
        .map(|i| {
            let journal = journal.clone();
            async move {
                let id: InstanceId = format!("done-{i:07}").parse()?;
                let mut life = lifecycle(&id);
                life[4] = InstanceEvent::Terminated { provider_instance_id: Some(format!("m-{id}")), at: Utc::now() };
                journal.append(&id, 1, &life[..4]).await?;
                journal.append(&id, 5, &life[4..]).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(512);
    futures::pin_mut!(written);
    let mut done = 0;
    while let Some(result) = written.next().await {
        result?;
        done += 1;
        if done % 20_000 == 0 {
            eprintln!("  {done} finished instances written ({:.0} s)", started.elapsed().as_secs_f64());
        }
    }
    Ok(())
}

/// Launches `count` instances through the leader, once one leads (within `leads_within`), and
/// waits until all run.
async fn launch_live(
    client: &async_nats::Client,
    js: &async_nats::jetstream::Context,
    count: usize,
    leads_within: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + leads_within;
    while client.request(API_LIST, "{}".into()).await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "no controller leads {leads_within:?} after starting");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 0..count {
        let body = serde_json::json!({"gpu_type": "H100", "gpu_count": 1, "max_hourly_price": "9.00",
            "spot_policy": "spot-only", "image": "ubuntu:22.04"});
        let message = PublishMessage::build()
            .payload(body.to_string().into())
            .header(HEADER_MSG_ID, format!("live-{i:06}").as_str());
        js.send_publish("tgp.commands.launch", message).await?.await?;
    }
    let deadline = Instant::now() + Duration::from_secs(60 + count as u64 / 5);
    loop {
        // A leader busy taking thousands of commands may answer late: a timeout is "not yet".
        let running = ListRequest { state: Some(InstanceState::Running), ..ListRequest::default() };
        let running = match tgp::cli::list_all(client, running).await {
            Ok(running) => running.len(),
            Err(e) => {
                eprintln!("  the leader did not answer yet ({e:#})");
                0
            }
        };
        if running >= count {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {running} of {count} instances ran in time");
        }
        eprintln!("  {running} of {count} live instances running");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Waits until `standby` answers `tgp.api.leader` as a warm standby, its index caught up with the
/// journal (one queue group: asked until it is the one that answers), and returns the lease's
/// epoch then. A standby still folding the journal after its start would measure a cold start.
async fn standby_ready(client: &async_nats::Client, standby: &str, within: Duration) -> anyhow::Result<u64> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(reply) = client.request(API_LEADER, "{}".into()).await {
            let who: LeaderReply = serde_json::from_slice(&reply.payload)?;
            if let (Some(leader), false, true) = (&who.leader, who.answerer_leads, who.answerer_ready)
                && who.answered_by == standby
            {
                return Ok(leader.epoch);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{standby} did not answer as a warm standby within {within:?}")
}

/// Preempts one running spot machine in the market's state file, as the provider would.
fn preempt_one(market: &Path) -> anyhow::Result<String> {
    let mut state = MarketState::read(market)?;
    let machine = state
        .machines
        .values_mut()
        .find(|m| m.status == crate::market::machine::RUNNING && m.spot)
        .context("no running spot machine to preempt")?;
    machine.preempt(Utc::now());
    let id = machine.id.clone();
    state.write(market)?;
    Ok(id)
}

fn signal(child: &Child, name: &str) -> anyhow::Result<()> {
    let sent = Command::new("kill").arg(format!("-{name}")).arg(child.id().to_string()).status()?;
    anyhow::ensure!(sent.success(), "SIG{name} not sent");
    Ok(())
}

/// One round's figures, each from the freeze: the lease taken by the standby, the new leader
/// answering `tgp.api.list` (started up), its first commit.
struct Round {
    lease_taken: Duration,
    answering: Duration,
    first_decision: Duration,
}

/// How long after `frozen` a controller first answers `tgp.api.list`. A request handed to the
/// frozen one is lost, so each is given a short time and sent again.
async fn first_answer(client: async_nats::Client, frozen: Instant) -> Duration {
    loop {
        let asked = client.request(API_LIST, r#"{"state":"interrupted"}"#.into());
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(250), asked).await {
            return frozen.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Freezes `leader`, preempts a machine, and waits for the first commit of a newer epoch.
async fn round(
    client: &async_nats::Client,
    js: &async_nats::jetstream::Context,
    setup: &Setup,
    leader: &Controller,
    epoch: u64,
) -> anyhow::Result<Round> {
    let consumer = js
        .get_stream(EVENTS_STREAM)
        .await?
        .create_consumer(OrderedConfig {
            filter_subject: INSTANCE_EVENTS_ALL.into(),
            deliver_policy: DeliverPolicy::New,
            ..Default::default()
        })
        .await?;
    let mut commits = consumer.messages().await?;
    let frozen_wall = Utc::now();
    let frozen = Instant::now();
    signal(&leader.child, "STOP")?;
    let answering = tokio::spawn(first_answer(client.clone(), frozen));
    let machine = preempt_one(&setup.market())?;
    let limit = setup.ttl * 4 + Duration::from_secs(30);
    let first_decision = loop {
        let next = tokio::time::timeout_at((frozen + limit).into(), commits.next())
            .await
            .with_context(|| format!("no commit of a new leader within {limit:?} (machine {machine} preempted)"))?
            .context("the journal's consumer ended")??;
        let of = next.headers.as_ref().and_then(|h| h.get(HEADER_LEADER_EPOCH)).and_then(|v| v.as_str().parse().ok());
        if of.is_some_and(|of: u64| of > epoch) {
            break frozen.elapsed();
        }
    };
    let (holder, _) = tgp::leader::holder(js).await?.context("the lease is held after the takeover")?;
    let lease_taken = (holder.since - frozen_wall).to_std().unwrap_or_default();
    let answering = tokio::time::timeout(limit, answering).await.context("the new leader never answered")??;
    Ok(Round { lease_taken, answering, first_decision })
}

/// Runs the benchmark and prints p50 and p99 next to the lease's time to live.
pub async fn failover(args: FailoverBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.rounds > 0 && args.instances > 0, "--rounds and --instances must be at least 1");
    let setup = Setup { server: NatsServer::start()?, dir: tempfile::tempdir()?, ttl: args.lease_ttl };
    eprintln!("the controllers' logs are in {} while the benchmark runs", setup.dir.path().display());
    let key = JournalKey::create(&setup.journal_key())?;
    tgp::secrets::keygen(&setup.dir.path().join("secrets.key"))?;
    let admin = tgp::connect::connect_with(&setup.server.options(Role::Admin), "tgp-bench-failover").await?;
    let js = tgp::connect::jetstream(admin.clone());
    tgp::journal::layout::ensure(&js).await?;
    eprintln!("writing {} finished instances...", args.finished);
    write_finished(&js, key, args.finished).await?;

    let mut leader = setup.start("a")?;
    let mut standby = setup.start("b")?;
    eprintln!("launching {} live instances through the leader...", args.instances);
    // Their first start folds every finished commit into the live index (it has no checkpoint
    // yet), both processes at once: give it time by the size of the history.
    let leads_within = Duration::from_secs(60 + args.finished as u64 / 5_000);
    launch_live(&admin, &js, args.instances, leads_within).await?;
    // Both started at once: either may have taken the lease.
    let (first, _) = tgp::leader::holder(&js).await?.context("a controller leads")?;
    if first.name == standby.name {
        std::mem::swap(&mut leader, &mut standby);
    }

    let mut rounds = Vec::new();
    for n in 1..=args.rounds {
        let epoch = standby_ready(&admin, &standby.name, leads_within).await?;
        let measured = round(&admin, &js, &setup, &leader, epoch).await?;
        eprintln!(
            "  round {n}: lease taken after {:.2} s, answering after {:.2} s, first decision after {:.2} s",
            measured.lease_taken.as_secs_f64(),
            measured.answering.as_secs_f64(),
            measured.first_decision.as_secs_f64()
        );
        rounds.push(measured);
        let name = leader.name.clone();
        drop(leader);
        leader = std::mem::replace(&mut standby, setup.start(&name)?);
    }
    let taken = Summary::of(&rounds.iter().map(|r| r.lease_taken).collect::<Vec<_>>());
    let answering = Summary::of(&rounds.iter().map(|r| r.answering).collect::<Vec<_>>());
    let decided = Summary::of(&rounds.iter().map(|r| r.first_decision).collect::<Vec<_>>());
    let ttl = args.lease_ttl.as_secs_f64();
    println!(
        "failover over {} freezes of the leader ({} live instances, {} finished in the journal), lease TTL {ttl:.2} s:",
        args.rounds, args.instances, args.finished
    );
    println!("  freeze -> lease taken by the standby:  p50 {:.2} s  p99 {:.2} s", secs(taken.p50), secs(taken.p99));
    println!(
        "  freeze -> new leader answers tgp.api:  p50 {:.2} s  p99 {:.2} s",
        secs(answering.p50),
        secs(answering.p99)
    );
    println!("  freeze -> first journaled decision:    p50 {:.2} s  p99 {:.2} s", secs(decided.p50), secs(decided.p99));
    println!(
        "  first decision / lease TTL (the raw floor): p50 {:.2}x  p99 {:.2}x (target: p99 under 5 s)",
        secs(decided.p50) / ttl,
        secs(decided.p99) / ttl
    );
    Ok(())
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
