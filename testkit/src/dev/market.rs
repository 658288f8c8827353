//! The local markets `tgp-dev` runs tgp on: the four fake providers on loopback (driven by the
//! real clients) or the in-memory simulated market.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use tgp::cli::controller::BuiltMarket;
use tgp::cli::parse_duration;
use tgp::providers::api_change::ApiChangeReporter;
use tgp_actors::provider::ProviderClient;
use tgp_actors::provider_actor::ProviderActorConfig;
use tgp_actors::provider_actor::limiter::Budget;

use crate::cues::MarketCues;
use crate::fakes::FakeProvider;
use crate::fakes::market::FakeMarket;
use crate::market::{Market, SimulatedConfig};

/// Which local market.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MarketKind {
    /// The four fake providers on loopback, driven by the real clients: everything works without
    /// accounts.
    Fakes,
    /// The in-memory simulated market (one provider, `simulated`; its machines can be kept in a file).
    Simulated,
}

/// `tgp-dev offers`' market: the fakes (the simulated market has no HTTP front to ask).
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OffersMarket {
    /// The four fake providers on loopback.
    Fakes,
}

/// Where `tgp-dev run`'s providers come from.
#[derive(Args, Clone)]
pub struct MarketArgs {
    /// fakes (the four fake providers) or simulated (the in-memory market).
    #[arg(long, value_enum, default_value = "fakes")]
    pub market: MarketKind,
}

/// The simulated market's settings (with `--market simulated`); the seed and boot time also
/// apply to the fakes.
#[derive(Args, Clone)]
pub struct SimArgs {
    /// Seed of the market's offers, prices and random interruptions.
    #[arg(long, default_value_t = 1)]
    pub sim_seed: u64,
    /// Keep the simulated market's machines in this file, so they survive a restart.
    #[arg(long)]
    pub sim_state: Option<PathBuf>,
    /// Time from launch to running.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub sim_boot_time: Duration,
    /// Mean time a simulated spot machine runs before it is preempted, e.g. 10m (default: never;
    /// `tgp.sim.interrupt` still can).
    #[arg(long, value_parser = parse_duration)]
    pub sim_spot_life: Option<Duration>,
}

/// A local market, ready for a controller, and its cues. The cues hold the market (the fake
/// servers stop when the last handle goes).
pub struct DevMarket {
    /// The clients and provider-actor settings, as `tgp run` takes them.
    pub built: BuiltMarket,
    /// How to take its machines away on cue.
    pub cues: Arc<dyn MarketCues>,
}

/// Starts the four fake providers.
pub async fn start_fakes(seed: u64, boot_time: Duration) -> anyhow::Result<Arc<FakeMarket>> {
    Ok(Arc::new(FakeMarket::start(seed, boot_time).await.context("starting the fake providers")?))
}

impl DevMarket {
    /// Builds the chosen market.
    pub async fn build(kind: MarketKind, sim: &SimArgs) -> anyhow::Result<Self> {
        match kind {
            MarketKind::Simulated => {
                let config = SimulatedConfig {
                    seed: sim.sim_seed,
                    boot_time: sim.sim_boot_time,
                    mean_spot_life: sim.sim_spot_life,
                    state_file: sim.sim_state.clone(),
                };
                let market = Arc::new(Market::simulated(config).context("reading the simulated market's state")?);
                let built = BuiltMarket {
                    providers: vec![market.clone() as Arc<dyn ProviderClient>],
                    api_changes: None,
                    description: "the simulated market".into(),
                    provider_actor: ProviderActorConfig::default(),
                };
                Ok(DevMarket { built, cues: market })
            }
            MarketKind::Fakes => {
                let fakes = start_fakes(sim.sim_seed, sim.sim_boot_time).await?;
                let reporter = ApiChangeReporter::default();
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
                let built = BuiltMarket { providers, api_changes: Some(reporter), description, provider_actor };
                Ok(DevMarket { built, cues: fakes })
            }
        }
    }
}
