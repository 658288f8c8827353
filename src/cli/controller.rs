//! `tgp run`: the command that hosts a controller. Its pieces ([`prepare`], [`BuiltMarket`],
//! [`nats_or_private`], [`journal_key`]) are public because `tgp-dev` (the testkit) hosts the same
//! controller on its fake and simulated markets through them.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use std::sync::Arc;

use crate::connect::NatsOptions;
use crate::controller::{Controller, ControllerConfig};
use crate::journal::JournalKey;
use crate::leader::LeaseConfig;
use crate::nats_server::{NatsServer, Role};
use crate::providers::api_change::ApiChangeReporter;
use crate::providers::config;
use tgp_actors::evidence::EvidenceConfig;
use tgp_actors::provider::ProviderClient;
use tgp_actors::provider_actor::ProviderActorConfig;
use tgp_actors::supervisor::SupervisorConfig;

use super::{NatsArgs, parse_duration};

/// `tgp run`'s options (`tgp-dev run` takes the same ones, and a market).
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
    /// Serve a readiness probe at this address (e.g. 0.0.0.0:9465): `GET /ready` answers 200 once
    /// this process leads or stands by with its index caught up with the journal (it could take
    /// over at once), and 503 while it still folds the journal after a start.
    #[arg(long, env = "TGP_READY_ADDR")]
    ready_addr: Option<std::net::SocketAddr>,
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
    /// How many copies JetStream keeps of every stream, key-value bucket and object store tgp
    /// creates, each on another server: 1 (the default) on a single server, 3 on a 3-node cluster.
    ///
    /// Three replicas on separate machines, with `sync_interval: always` (as in nats.conf), are
    /// what keeps acknowledged writes through an OS crash or a lost machine: Jepsen's analysis of
    /// NATS 2.12.1 (Dec 2025) lost acknowledged writes with the default flush. tgp rescales
    /// nothing: a stream or bucket that exists with another count stops start-up, naming it and
    /// the fix (`nats stream edit <stream> --replicas N`, or `--replicas` with the count it has).
    #[arg(long, env = "TGP_REPLICAS", default_value = "1")]
    replicas: crate::journal::layout::Replicas,
    #[command(flatten)]
    evidence: EvidenceArgs,
    /// Provider configuration file (TOML; see docs/providers.md). Environment variables override it.
    #[arg(long, env = "TGP_CONFIG")]
    config: Option<PathBuf>,
    /// This process's name in the controller lease (default: the host name). Several `tgp run`
    /// on one journal elect one leader; the others stand by and take over when its lease lapses.
    #[arg(long, env = "TGP_NAME")]
    name: Option<String>,
    /// How long the lease lives unrenewed: how long a leader that died keeps its standby waiting.
    /// The leader renews every third of it and stops acting before it could lapse. Every tgp of
    /// one journal must use the same value.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    lease_ttl: Duration,
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

/// A market ready for a controller: its clients, and the settings its provider actors need.
/// Whatever serves the market (the testkit's fake servers) must live as long as the controller.
pub struct BuiltMarket {
    /// One client per enabled provider.
    pub providers: Vec<Arc<dyn ProviderClient>>,
    /// The clients' API-change reports, journaled as provider events.
    pub api_changes: Option<ApiChangeReporter>,
    /// What `tgp run` says it runs on.
    pub description: String,
    /// Provider actor settings: real limits for real providers; generous ones for local fakes.
    pub provider_actor: ProviderActorConfig,
}

/// The real providers whose keys are configured (the environment over the config file). Refuses
/// to start with none, and says how to enable one.
pub fn real_providers(config_file: Option<&std::path::Path>) -> anyhow::Result<BuiltMarket> {
    let reporter = ApiChangeReporter::default();
    let settings = config::resolve(config_file, |v| std::env::var(v).ok())?;
    let (providers, skipped) = crate::providers::build(&settings, &reporter);
    for s in &skipped {
        eprintln!("provider {}: {} ({})", s.provider, s.status, s.message);
    }
    anyhow::ensure!(
        !providers.is_empty(),
        "no provider is enabled: set VAST_API_KEY, LAMBDA_API_KEY, RUNPOD_API_KEY or PAPERSPACE_API_KEY \
         (see docs/providers.md), or try tgp without accounts on the local fakes: tgp-dev run --market fakes"
    );
    let names: Vec<String> = providers.iter().map(|p| p.info().name.to_string()).collect();
    Ok(BuiltMarket {
        providers,
        api_changes: Some(reporter),
        description: format!("providers {}", names.join(", ")),
        provider_actor: ProviderActorConfig::default(),
    })
}

/// One actix system on a multi-threaded tokio runtime: what every command hosting actors runs on.
pub fn actix_system() -> actix::SystemRunner {
    actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime")
    })
}

/// The journal key: the file given, or, where tgp may make its own (a private nats-server's
/// directory, or a temporary directory for `tgp-dev demo` and benches), a new one there. The guard
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

/// A controller started by [`Prepared::start`], with what it needs to keep alive (a private nats-server,
/// a temporary key directory).
pub struct Running {
    /// The controller itself.
    pub controller: Controller,
    /// How to reach its NATS server (as the `tgp` role).
    pub nats: NatsOptions,
    description: String,
    _server: Option<NatsServer>,
    _key_dir: Option<tempfile::TempDir>,
}

impl Running {
    /// Says where the controller runs and how to use it, then serves until SIGINT or SIGTERM.
    pub async fn serve_until_signal(self) -> anyhow::Result<()> {
        let url = self.nats.redacted_url();
        println!("tgp controller running on {}; NATS at {url}", self.description);
        let credentials = if url == self.nats.url { "" } else { " (with the credentials shown as ***)" };
        println!("try: tgp launch --nats-url {url} --gpu H100 --max-price 3.00{credentials}");
        let mut lost = self.controller.leadership.lost.clone();
        tokio::select! {
            () = shutdown_signal() => {}
            _ = lost.wait_for(|lost| *lost) => {
                // Exiting is the fence: no provider call and no commit can follow a lost lease.
                anyhow::bail!("the controller lease was lost (see the log above); exiting so that only the new leader acts")
            }
        }
        eprintln!("shutting down");
        self.controller.leadership.release().await;
        Ok(())
    }
}

/// What a controller needs before its market: NATS (a private server when none is given), the
/// journal key and the secrets keyring. Settled first, so a missing key is told before any
/// provider is asked.
pub struct Prepared {
    nats: NatsOptions,
    server: Option<NatsServer>,
    journal_key: JournalKey,
    key_dir: Option<tempfile::TempDir>,
    keyring: Arc<tgp_actors::keyring::Keyring>,
}

/// Settles NATS and the keys with `tgp run`'s options.
pub fn prepare(args: &RunArgs) -> anyhow::Result<Prepared> {
    let (nats, server) = nats_or_private(&args.nats, Role::Tgp)?;
    let scratch = server.as_ref().map(NatsServer::dir);
    let (journal_key, key_dir) = journal_key(args.journal_key.as_deref(), scratch.as_deref(), false)?;
    let keyring = Arc::new(crate::secrets::keyring(&args.secrets_key)?);
    Ok(Prepared { nats, server, journal_key, key_dir, keyring })
}

impl Prepared {
    /// Starts a controller with `tgp run`'s options on `market`. Must run inside an actix system.
    pub async fn start(self, args: &RunArgs, market: BuiltMarket) -> anyhow::Result<Running> {
        let Prepared { nats, server, journal_key, key_dir, keyring } = self;
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
            api_changes: market.api_changes,
            metrics_addr: args.metrics_addr,
            ready_addr: args.ready_addr,
            provider_actor: market.provider_actor,
            allow_empty_journal: args.allow_empty_journal,
            stream_check_interval: args.stream_check_interval,
            journal_key,
            lease: LeaseConfig {
                name: args.name.clone().unwrap_or_else(crate::leader::host_name),
                ttl: args.lease_ttl,
            },
            replicas: args.replicas,
        };
        let controller = Controller::start(config).await.context("starting the controller")?;
        Ok(Running { controller, nats, description: market.description, _server: server, _key_dir: key_dir })
    }
}

/// `tgp run`: the controller on the real providers.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    actix_system().block_on(async move {
        let prepared = prepare(&args)?;
        let market = real_providers(args.config.as_deref())?;
        prepared.start(&args, market).await?.serve_until_signal().await
    })
}
