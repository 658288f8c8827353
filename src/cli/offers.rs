//! `tgp offers`: offers across every enabled provider, cheapest first, with a line per provider.
//! With a controller reachable over NATS it asks `tgp.api.offers` (sharing the provider actors'
//! limits and caches); otherwise it builds the clients itself from the configuration.

use crate::providers::api_change::ApiChangeReporter;
use crate::providers::config::{self, ProviderSettings};
use anyhow::Context as _;
use clap::Args;
use tgp_events::api::{ErrorReply, OffersReply, OffersRequest};
use tgp_events::subjects::API_OFFERS;
use tgp_events::{GpuType, Money, Needs, Region, SpotPolicy};

use super::NatsArgs;
use super::needs::NeedsArgs;
use super::offers_table::{self, SortBy};

/// `tgp offers`' options (`tgp-dev offers` takes the same ones, and a market).
#[derive(Args)]
pub struct OffersArgs {
    #[command(flatten)]
    nats: NatsArgs,
    /// GPU type: H100, A100-80GB, L40S, RTX4090, ...
    #[arg(long)]
    gpu: Option<GpuType>,
    /// GPUs in one machine (at least).
    #[arg(long)]
    count: Option<u32>,
    /// Regions (repeat or comma-separate).
    #[arg(long, value_delimiter = ',')]
    region: Vec<Region>,
    /// Only spot (interruptible) offers.
    #[arg(long, conflicts_with = "on_demand")]
    spot: bool,
    /// Only on-demand offers.
    #[arg(long)]
    on_demand: bool,
    /// At most this per GPU-hour, in dollars.
    #[arg(long)]
    max_price: Option<Money>,
    /// Order: price (cheapest machine), gpu-price (cheapest per GPU-hour) or provider.
    #[arg(long, value_enum, default_value_t = SortBy::Price)]
    sort: SortBy,
    /// The cheapest on-demand and spot price per GPU-hour for each GPU type at each provider.
    #[arg(long)]
    summary: bool,
    /// Print JSON (the `tgp.api.offers` answer, or the summary rows).
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// Print CSV, prices as exact decimals.
    #[arg(long)]
    csv: bool,
    /// Provider configuration file (TOML); environment variables override it.
    #[arg(long, env = "TGP_CONFIG")]
    config: Option<std::path::PathBuf>,
    #[command(flatten)]
    needs: NeedsArgs,
}

async fn from_controller(nats: &crate::connect::NatsOptions, request: &OffersRequest) -> anyhow::Result<OffersReply> {
    let client = crate::connect::connect_with(nats, "tgp-offers").await?;
    let reply = client
        .request(API_OFFERS, serde_json::to_vec(request)?.into())
        .await
        .context("no controller answers on tgp.api.offers")?;
    if let Ok(e) = serde_json::from_slice::<ErrorReply>(&reply.payload) {
        anyhow::bail!("{} ({})", e.error.message, e.error.code);
    }
    Ok(serde_json::from_slice(&reply.payload)?)
}

async fn direct(settings: &[ProviderSettings], request: &OffersRequest) -> anyhow::Result<OffersReply> {
    let reporter = ApiChangeReporter::default();
    let (clients, skipped) = crate::providers::build(settings, &reporter);
    Ok(crate::offers::gather(&clients, skipped, request).await)
}

/// `tgp offers`: from the controller when NATS is given, else from the configured providers.
pub async fn offers(args: OffersArgs) -> anyhow::Result<()> {
    let config_file = args.config.clone();
    show(args, || config::resolve(config_file.as_deref(), |v| std::env::var(v).ok()).map_err(Into::into)).await
}

/// Prints the offers: from the controller when NATS is given, else straight from the providers
/// `settings` gives (the configured ones for `tgp offers`, the local fakes for `tgp-dev offers`).
pub async fn show(
    args: OffersArgs,
    settings: impl FnOnce() -> anyhow::Result<Vec<ProviderSettings>>,
) -> anyhow::Result<()> {
    let Needs { disk_gb, min_cpu_ram_gb, min_vcpus, providers, exclude_providers, min_reliability, secure_only } =
        args.needs.needs()?;
    let request = OffersRequest {
        gpu_type: args.gpu,
        gpu_count: args.count,
        regions: args.region.clone(),
        max_price: args.max_price,
        spot_policy: if args.spot {
            Some(SpotPolicy::SpotOnly)
        } else if args.on_demand {
            Some(SpotPolicy::OnDemandOnly)
        } else {
            None
        },
        disk_gb,
        min_cpu_ram_gb,
        min_vcpus,
        providers,
        exclude_providers,
        min_reliability,
        secure_only,
    };
    let reply = match args.nats.options()? {
        Some(nats) => from_controller(&nats, &request).await?,
        None => direct(&settings()?, &request).await?,
    };
    if args.summary {
        let rows = offers_table::summary(&reply.offers);
        if args.json {
            println!("{}", serde_json::to_string_pretty(&rows)?);
        } else if args.csv {
            print!("{}", offers_table::summary_csv(&rows));
        } else {
            print!("{}", offers_table::summary_table(&rows));
            println!(
                "cheapest price per GPU-hour of each GPU type at each provider, over {} offers",
                reply.offers.len()
            );
        }
    } else if args.json {
        let offers = offers_table::sorted(&reply.offers, args.sort).into_iter().cloned().collect();
        println!("{}", serde_json::to_string_pretty(&OffersReply { offers, providers: reply.providers.clone() })?);
    } else if args.csv {
        print!("{}", offers_table::csv(&offers_table::sorted(&reply.offers, args.sort)));
    } else {
        print!("{}", offers_table::table(&offers_table::sorted(&reply.offers, args.sort)));
        println!(
            "{} offers, by {} (machine prices and per GPU-hour; `?` marks a name with no standard translation, `…` a shortened one)",
            reply.offers.len(),
            match args.sort {
                SortBy::Price => "machine price",
                SortBy::GpuPrice => "price per GPU-hour",
                SortBy::Provider => "provider",
            }
        );
    }
    if args.json || args.csv {
        return Ok(());
    }
    for p in &reply.providers {
        println!("  {:<11} {:<8} {}", p.provider, p.status, p.message);
    }
    if reply.providers.iter().all(|p| p.status == "no_key") {
        println!("no provider has a key: see docs/providers.md, or try the local fakes: tgp-dev offers --market fakes");
    }
    Ok(())
}
