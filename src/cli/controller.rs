//! `tgp run`, `tgp demo` and `tgp bench`: the commands that host a controller (or measure one).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use std::sync::Arc;

use tgp::connect::NatsOptions;
use tgp::controller::{Controller, ControllerConfig, MarketCues};
use tgp::fakes::FakeProvider;
use tgp::fakes::market::FakeMarket;
use tgp::journal::JournalKey;
use tgp::nats_server::{NatsServer, Role};
use tgp::providers::api_change::ApiChangeReporter;
use tgp::providers::config;
use tgp::simulated::SimulatedConfig;
use tgp::simulated::SimulatedProvider;
use tgp_actors::evidence::EvidenceConfig;
use tgp_actors::provider::ProviderClient;
use tgp_actors::provider_actor::ProviderActorConfig;
use tgp_actors::provider_actor::limiter::Budget;
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
    /// Start even if the journal holds no instance while the providers hold machines labelled by
    /// tgp (a deleted journal, the wrong server): those machines are then left running, unmanaged.
    /// Without it tgp refuses to start and names them.
    #[arg(long)]
    allow_empty_journal: bool,
    /// How often tgp looks at its streams while it runs. A stream deleted, recreated, reconfigured
    /// or stripped of messages (seen on two looks in a row) stops new launches, loudly; tgp
    /// recreates nothing.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    stream_check_interval: Duration,
    /// Key file(s) that seal launches' env values in the journal (`tgp secrets keygen FILE`
    /// makes one; mode 0600). Repeat it, or separate with commas, to rotate: the first seals,
    /// every one opens. Without one, a launch that carries env is refused.
    #[arg(long, env = "TGP_SECRETS_KEY", value_delimiter = ',')]
    secrets_key: Vec<std::path::PathBuf>,
    /// The file holding the key tgp signs every journal message with (0600; make one with
    /// `tgp journal keygen FILE`). Needed, except with a private nats-server (no --nats-url),
    /// where a key is made beside its store and deleted with it.
    #[arg(long, env = "TGP_JOURNAL_KEY")]
    journal_key: Option<std::path::PathBuf>,
    #[command(flatten)]
    evidence: EvidenceArgs,
    #[command(flatten)]
    market: MarketArgs,
    #[command(flatten)]
    sim: SimArgs,
}

/// How much evidence tgp wants before it concludes (docs/architecture.md, "What tgp concludes").
#[derive(Args, Clone)]
pub struct EvidenceArgs {
    /// A machine absent from this many consecutive listings is lost even when its own status call
    /// fails (a status call that answers "not found" confirms it at once).
    #[arg(long, default_value_t = 2)]
    absent_listings: u32,
    /// How far apart those listings must be (default: one poll interval).
    #[arg(long, value_parser = parse_duration)]
    absent_spacing: Option<Duration>,
    /// A launch whose answer was unclear (timeout, 5xx, cut off) is looked for by its label for
    /// three polls or this long, whichever is longer, before its attempt fails.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    settle_window: Duration,
    /// How long selection waits for a provider's offers before leaving it out of that selection.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    selection_wait: Duration,
}

impl EvidenceArgs {
    fn config(&self) -> EvidenceConfig {
        EvidenceConfig {
            absent_listings: self.absent_listings.max(1),
            absent_spacing: self.absent_spacing,
            settle_min: self.settle_window,
            ..EvidenceConfig::default()
        }
    }
}

/// Which providers the controller uses.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MarketKind {
    /// The real providers whose keys are configured (VAST_API_KEY, LAMBDA_API_KEY, RUNPOD_API_KEY,
    /// PAPERSPACE_API_KEY, or the config file).
    Providers,
    /// The four fake providers on loopback, driven by the real clients: everything works without
    /// accounts.
    Fakes,
    /// The in-memory simulated market (one provider, `simulated`; its machines can be kept in a file).
    Simulated,
}

/// Where providers come from.
#[derive(Args, Clone)]
pub struct MarketArgs {
    /// providers (real accounts), fakes (local fake providers) or simulated (in-memory market).
    #[arg(long, value_enum, default_value = "providers")]
    market: MarketKind,
    /// Provider configuration file (TOML; see docs/providers.md). Environment variables override it.
    #[arg(long, env = "TGP_CONFIG")]
    config: Option<PathBuf>,
}

/// A market ready for a controller; the fakes (when used) live as long as it does.
pub struct BuiltMarket {
    pub providers: Vec<Arc<dyn ProviderClient>>,
    pub cues: Option<Arc<dyn MarketCues>>,
    pub api_changes: Option<ApiChangeReporter>,
    pub description: String,
    /// Provider actor settings: real limits for real providers; generous ones for local fakes.
    pub provider_actor: ProviderActorConfig,
}

/// Builds the chosen market.
pub async fn build_market(args: &MarketArgs, sim: &SimArgs) -> anyhow::Result<BuiltMarket> {
    let reporter = ApiChangeReporter::default();
    match args.market {
        MarketKind::Simulated => {
            let market =
                Arc::new(SimulatedProvider::new(sim.config()).context("reading the simulated market's state")?);
            Ok(BuiltMarket {
                providers: vec![market.clone() as Arc<dyn ProviderClient>],
                cues: Some(market as Arc<dyn MarketCues>),
                api_changes: None,
                description: "the simulated market".into(),
                provider_actor: ProviderActorConfig::default(),
            })
        }
        MarketKind::Fakes => {
            let fakes = Arc::new(FakeMarket::start(sim.sim_seed, sim.sim_boot_time).await?);
            let (providers, skipped) = tgp::providers::build(&fakes.settings(), &reporter);
            anyhow::ensure!(skipped.is_empty(), "fake providers refused: {skipped:?}");
            let description = format!(
                "the fake market (vastai {}, lambda {}, runpod {}, paperspace {})",
                fakes.vastai.url(),
                fakes.lambda.url(),
                fakes.runpod.url(),
                fakes.paperspace.url()
            );
            // Local fakes have no real limits; the providers' own budgets would only slow the demo.
            let provider_actor =
                ProviderActorConfig { budget: Some(Budget { per_minute: 6000, burst: 50 }), ..Default::default() };
            Ok(BuiltMarket {
                providers,
                cues: Some(fakes as Arc<dyn MarketCues>),
                api_changes: Some(reporter),
                description,
                provider_actor,
            })
        }
        MarketKind::Providers => {
            let settings = config::resolve(args.config.as_deref(), |v| std::env::var(v).ok())?;
            let (providers, skipped) = tgp::providers::build(&settings, &reporter);
            for s in &skipped {
                eprintln!("provider {}: {} ({})", s.provider, s.status, s.message);
            }
            anyhow::ensure!(
                !providers.is_empty(),
                "no provider is enabled: set VAST_API_KEY, LAMBDA_API_KEY, RUNPOD_API_KEY or PAPERSPACE_API_KEY \
                 (see docs/providers.md), or try tgp without accounts: --market fakes"
            );
            let names: Vec<String> = providers.iter().map(|p| p.info().name.to_string()).collect();
            Ok(BuiltMarket {
                providers,
                cues: None,
                api_changes: Some(reporter),
                description: format!("providers {}", names.join(", ")),
                provider_actor: ProviderActorConfig::default(),
            })
        }
    }
}

/// The simulated market's settings (with `--market simulated`); the seed and boot time also
/// apply to the fakes.
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

/// The journal key: the file given, or, where tgp may make its own (a private nats-server's
/// directory, or a temporary directory for `tgp demo` and benches), a new one there. The guard
/// keeps a temporary directory alive.
pub fn journal_key(
    given: Option<&std::path::Path>,
    scratch: Option<&std::path::Path>,
    may_make: bool,
) -> anyhow::Result<(JournalKey, Option<tempfile::TempDir>)> {
    if let Some(path) = given {
        return Ok((JournalKey::load(path)?, None));
    }
    if let Some(dir) = scratch {
        return Ok((JournalKey::create(&dir.join("journal.key"))?, None));
    }
    anyhow::ensure!(
        may_make,
        "tgp run needs the key it signs its journal with: --journal-key FILE (or TGP_JOURNAL_KEY). \
         Make one with `tgp journal keygen /etc/tgp/journal.key` (readable by tgp only), and keep it: \
         docs/security.md says how to rotate it"
    );
    let dir = tempfile::Builder::new().prefix("tgp-journal-key-").tempdir()?;
    let key = JournalKey::create(&dir.path().join("journal.key"))?;
    Ok((key, Some(dir)))
}

/// The given NATS server, or a private server started for this process (kept alive by the guard),
/// connected to as `role` (its fresh nkey for that role).
pub fn nats_or_private(nats: &NatsArgs, role: Role) -> anyhow::Result<(NatsOptions, Option<NatsServer>)> {
    match nats.options()? {
        Some(options) => Ok((options, None)),
        None => {
            let server = NatsServer::start()?;
            eprintln!(
                "no --nats-url or NATS_URL: started a private nats-server at {} (store in {}, deleted on exit); \
                 connect as a client with NATS_NKEY={} (auditor: {})",
                server.url(),
                server.dir().display(),
                server.seed_file(Role::Client).display(),
                server.seed_file(Role::Auditor).display()
            );
            Ok((server.options(role), Some(server)))
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
        let (nats, server) = nats_or_private(&args.nats, Role::Tgp)?;
        let scratch = server.as_ref().map(NatsServer::dir);
        let (journal_key, _key_dir) = journal_key(args.journal_key.as_deref(), scratch.as_deref(), false)?;
        let url = nats.redacted_url();
        let keyring = Arc::new(tgp::secrets::keyring(&args.secrets_key)?);
        let market = build_market(&args.market, &args.sim).await?;
        let config = ControllerConfig {
            nats: nats.clone(),
            supervisor: SupervisorConfig {
                keyring,
                poll_interval: args.poll_interval,
                failpoint: args.failpoint,
                evidence: args.evidence.config(),
                selection_wait: args.evidence.selection_wait,
                ..Default::default()
            },
            providers: market.providers,
            cues: market.cues,
            api_changes: market.api_changes,
            metrics_addr: args.metrics_addr,
            provider_actor: market.provider_actor,
            allow_empty_journal: args.allow_empty_journal,
            stream_check_interval: args.stream_check_interval,
            journal_key,
        };
        let _controller = Controller::start(config).await.context("starting the controller")?;
        println!("tgp controller running on {}; NATS at {url}", market.description);
        let credentials = if url == nats.url { "" } else { " (with the credentials shown as ***)" };
        println!("try: tgp launch --nats-url {url} --gpu H100 --max-price 3.00{credentials}");
        shutdown_signal().await;
        eprintln!("shutting down");
        Ok(())
    })
}

#[derive(Args)]
pub struct DemoArgs {
    #[command(flatten)]
    nats: NatsArgs,
    /// Seed of the fake providers (offers, prices, capacity).
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

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
            sim_spot_interruptions: 0.0,
        };
        let market = build_market(&MarketArgs { market: MarketKind::Fakes, config: None }, &sim).await?;
        println!("== the market: {}", market.description);
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
            providers: market.providers,
            cues: market.cues,
            api_changes: market.api_changes,
            metrics_addr: None,
            provider_actor: market.provider_actor,
            allow_empty_journal: false,
            stream_check_interval: tgp::journal::guard::CHECK_INTERVAL,
            journal_key,
        };
        let controller = Controller::start(config).await.context("starting the controller")?;
        super::demo::run(&user, &controller).await
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
    /// The provider actor's overhead over direct client calls, and the limiter's achieved rate.
    Providers(super::bench::ProvidersBenchArgs),
    /// Launch command to `Launched` journaled against a zero-latency fake provider: p50, p90, p99
    /// and max over 1,000 launches, next to raw publish-with-ack on the same server, step by step.
    #[command(after_long_help = super::bench_launch::AFTER_HELP)]
    Launch(super::bench_launch::LaunchBenchArgs),
}

pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    match args.which {
        BenchKind::Journal(a) => actix_system().block_on(super::bench::journal(a)),
        BenchKind::Audit(a) => actix_system().block_on(super::bench::audit(a)),
        BenchKind::Providers(a) => actix_system().block_on(super::bench::providers(a)),
        BenchKind::Launch(a) => actix_system().block_on(super::bench_launch::launch(a)),
    }
}
