//! `tgp run`, `tgp demo` and `tgp bench`: the commands that host a controller (or measure one).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use std::sync::Arc;

use tgp::controller::{Controller, ControllerConfig, MarketCues};
use tgp::nats_server::NatsServer;
use tgp::simulated::SimulatedConfig;
use tgp::simulated::SimulatedProvider;
use tgp_actors::provider::ProviderClient;
use tgp_actors::supervisor::SupervisorConfig;

use super::{NatsArgs, parse_duration};

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    nats: NatsArgs,
    /// How often each provider's machines are listed (one call per provider).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    poll_interval: Duration,
    /// Crash on purpose at a point (crash-safety tests): after-launch-call, after-terminate-call.
    #[arg(long, env = "TGP_FAILPOINT", hide = true)]
    failpoint: Option<tgp_actors::instance_actor::Failpoint>,
    /// Serve Prometheus metrics at this address (e.g. 127.0.0.1:9464), path /metrics.
    #[arg(long)]
    metrics_addr: Option<std::net::SocketAddr>,
    #[command(flatten)]
    sim: SimArgs,
}

/// The simulated market (the only market until the real provider clients land).
#[derive(Args, Clone)]
pub struct SimArgs {
    /// Seed of the simulated market's offers, prices and random interruptions.
    #[arg(long, default_value_t = 1)]
    sim_seed: u64,
    /// Keep the simulated market's machines in this file, so they survive a restart.
    #[arg(long)]
    sim_state: Option<PathBuf>,
    /// Time from launch to running on the simulated market.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    sim_boot_time: Duration,
    /// Chance that a running simulated spot machine is preempted at each poll (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    sim_spot_interruptions: f64,
}

impl SimArgs {
    fn config(&self) -> SimulatedConfig {
        SimulatedConfig {
            seed: self.sim_seed,
            boot_time: self.sim_boot_time,
            spot_interruption_per_poll: self.sim_spot_interruptions,
            state_file: self.sim_state.clone(),
        }
    }
}

fn actix_system() -> actix::SystemRunner {
    actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime")
    })
}

/// The given NATS URL, or a private server started for this process (kept alive by the guard).
pub fn nats_or_private(nats: &NatsArgs) -> anyhow::Result<(String, Option<NatsServer>)> {
    match &nats.nats_url {
        Some(url) => Ok((url.clone(), None)),
        None => {
            let server = NatsServer::start()?;
            eprintln!(
                "no --nats-url or NATS_URL: started a private nats-server at {} (store in {}, deleted on exit)",
                server.url(),
                server.dir().display()
            );
            Ok((server.url().to_string(), Some(server)))
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    actix_system().block_on(async move {
        let (url, _server) = nats_or_private(&args.nats)?;
        let market =
            Arc::new(SimulatedProvider::new(args.sim.config()).context("reading the simulated market's state")?);
        let config = ControllerConfig {
            nats_url: url.clone(),
            supervisor: SupervisorConfig {
                poll_interval: args.poll_interval,
                failpoint: args.failpoint,
                ..Default::default()
            },
            providers: vec![market.clone() as Arc<dyn ProviderClient>],
            cues: Some(market as Arc<dyn MarketCues>),
            api_changes: None,
            metrics_addr: args.metrics_addr,
            provider_actor: Default::default(),
        };
        let _controller = Controller::start(config).await.context("starting the controller")?;
        println!("tgp controller running on the simulated market; NATS at {url}");
        println!("try: tgp launch --nats-url {url} --gpu H100 --max-price 3.00");
        shutdown_signal().await;
        eprintln!("shutting down");
        Ok(())
    })
}

#[derive(Args)]
pub struct DemoArgs {
    #[command(flatten)]
    nats: NatsArgs,
    /// Seed of the simulated market.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

pub fn demo(args: DemoArgs) -> anyhow::Result<()> {
    actix_system().block_on(async move {
        let (url, _server) = nats_or_private(&args.nats)?;
        let market = Arc::new(SimulatedProvider::new(SimulatedConfig {
            seed: args.seed,
            boot_time: Duration::from_secs(1),
            ..Default::default()
        })?);
        let config = ControllerConfig {
            nats_url: url.clone(),
            supervisor: SupervisorConfig {
                poll_interval: Duration::from_millis(500),
                retry_delay: Duration::from_secs(1),
                failpoint: None,
            },
            providers: vec![market.clone() as Arc<dyn ProviderClient>],
            cues: Some(market as Arc<dyn MarketCues>),
            api_changes: None,
            metrics_addr: None,
            provider_actor: Default::default(),
        };
        let controller = Controller::start(config).await.context("starting the controller")?;
        super::demo::run(&url, &controller).await
    })
}

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    which: BenchKind,
}

#[derive(Subcommand)]
enum BenchKind {
    /// Journal appends vs raw JetStream publishes, start-up rebuild vs a raw read, and memory per
    /// idle instance actor. Starts its own nats-server with nats.conf unless --nats-url is given.
    Journal(super::bench::JournalBenchArgs),
    /// A full `tgp audit` replay vs a raw read of the same journal (1,000,000 events by default).
    Audit(super::bench::AuditBenchArgs),
}

pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    match args.which {
        BenchKind::Journal(a) => actix_system().block_on(super::bench::journal(a)),
        BenchKind::Audit(a) => actix_system().block_on(super::bench::audit(a)),
    }
}
