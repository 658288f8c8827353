//! `tgp-dev`'s command line: tgp's controller and `offers` on the local markets, the demo, the
//! simulation and the benchmarks. `run` and `offers` take `tgp run`'s and `tgp offers`' own
//! options (flattened from `tgp::cli`), plus the market.

mod bench;
mod bench_failover;
mod bench_launch;
mod bench_selection;
mod demo;
mod market;
mod sim;

use clap::{Args, Parser, Subcommand};
use tgp::cli::controller::{RunArgs, actix_system};
use tgp::cli::offers::OffersArgs;

pub use market::{DevMarket, MarketKind, SimArgs};

/// tgp-dev: tgp on local fake providers or an in-memory simulated market, for trying tgp without
/// provider accounts, for tests, and for measuring it. Not part of the product: `tgp` is.
#[derive(Parser)]
#[command(version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// `tgp run` on a local market: the four fake providers (default) or the simulated market.
    /// It also serves `tgp.sim.interrupt` and `tgp.sim.cue`, to take machines away on cue.
    Run(Box<RunOnMarketArgs>),
    /// `tgp offers` from the four fake providers (without --nats-url).
    Offers(OffersOnFakesArgs),
    /// Start everything on the four fake providers and watch several instances live their lives.
    Demo(demo::DemoArgs),
    /// Simulate many instances for hours on a misbehaving market, on a virtual clock, in seconds:
    /// seeded (the same seed gives the same events) and checked.
    Sim(sim::SimArgs),
    /// Benchmarks measured against raw NATS in the same run.
    Bench(BenchArgs),
}

/// `tgp-dev run`.
#[derive(Args)]
struct RunOnMarketArgs {
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    market: market::MarketArgs,
    #[command(flatten)]
    sim: SimArgs,
}

/// `tgp-dev offers`.
#[derive(Args)]
struct OffersOnFakesArgs {
    #[command(flatten)]
    offers: OffersArgs,
    /// Ask the local fakes (the only market here; real providers are `tgp offers`).
    #[arg(long, value_enum, default_value = "fakes")]
    market: market::OffersMarket,
}

/// `tgp-dev bench`.
#[derive(Args)]
struct BenchArgs {
    #[command(subcommand)]
    which: BenchKind,
}

#[derive(Subcommand)]
enum BenchKind {
    /// Journal appends vs raw JetStream publishes, start-up rebuild vs a raw read, and memory per
    /// idle instance actor. Starts its own nats-server with nats.conf unless --nats-url is given.
    Journal(bench::JournalBenchArgs),
    /// A full `tgp audit` replay vs a raw read of the same journal (1,000,000 events by default).
    Audit(bench::AuditBenchArgs),
    /// The provider actor's overhead over direct client calls, and the limiter's achieved rate.
    Providers(bench::ProvidersBenchArgs),
    /// Launch command to `Launched` journaled against a zero-latency fake provider: p50, p90, p99
    /// and max over 1,000 launches, next to raw publish-with-ack on the same server, step by step.
    #[command(after_long_help = bench_launch::AFTER_HELP)]
    Launch(bench_launch::LaunchBenchArgs),
    /// The time from freezing the leading `tgp run` to its standby's first journaled decision: p50
    /// and p99 over 20 freezes, next to the lease's time to live.
    Failover(bench_failover::FailoverBenchArgs),
    /// Choosing an offer among one large Vast.ai search (10,000 offers): p50 and p99, next to one
    /// raw pass over the same offers for the lowest price. No NATS involved.
    Selection(bench_selection::SelectionBenchArgs),
}

impl Cli {
    /// The controller's logs say what it does; the rest stays quiet unless asked.
    pub fn default_log_filter(&self) -> &'static str {
        match self.command {
            Command::Run(_) => "info",
            // A simulation's misfortunes are the point, not news: its summary reports them.
            Command::Sim(_) => "error",
            _ => "warn",
        }
    }
}

/// Runs the chosen command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => actix_system().block_on(async move {
            let prepared = tgp::cli::controller::prepare(&args.run)?;
            let market = DevMarket::build(args.market.market, &args.sim).await?;
            let running = prepared.start(&args.run, market.built).await?;
            let client = tgp::connect::connect_with(&running.nats, "tgp-dev-cues").await?;
            let _cues = crate::cues::serve(client, market.cues).await?;
            running.serve_until_signal().await
        }),
        Command::Offers(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async move {
                let fakes = market::start_fakes(1, std::time::Duration::from_secs(1)).await?;
                tgp::cli::offers::show(args.offers, || Ok(fakes.settings())).await
            })
        }
        Command::Demo(args) => demo::demo(args),
        Command::Sim(args) => sim::sim(args),
        Command::Bench(args) => match args.which {
            BenchKind::Journal(a) => actix_system().block_on(bench::journal(a)),
            BenchKind::Audit(a) => actix_system().block_on(bench::audit(a)),
            BenchKind::Providers(a) => actix_system().block_on(bench::providers(a)),
            BenchKind::Launch(a) => actix_system().block_on(bench_launch::launch(a)),
            BenchKind::Failover(a) => actix_system().block_on(bench_failover::failover(a)),
            BenchKind::Selection(a) => actix_system().block_on(bench_selection::selection(a)),
        },
    }
}
