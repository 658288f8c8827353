//! `tgp-dev bench selection`: choosing an offer for a launch among the offers of one large Vast.ai
//! search, as every selection does, next to the least work any choice must do on the same offers
//! in the same run (one pass for the lowest price). The offers come from the real Vast.ai client
//! against the Vast.ai fake, so they carry what real answers carry: untranslated names, missing
//! fields, spot and on-demand prices.

use std::hint::black_box;
use std::time::{Duration, Instant};

use clap::Args;
use tgp::providers::api_change::ApiChangeReporter;
use tgp::providers::config::ProviderKind;
use tgp::providers::vastai::VastAiClient;
use tgp_actors::provider::{Offer, OfferFilter, ProviderClient};
use tgp_actors::selection::{Selection, select};
use tgp_events::{LaunchCommand, Money};

use super::bench_launch::Summary;
use crate::fakes::market::client_settings;
use crate::fakes::vastai::{VastAiFake, VastAiFakeConfig};

/// `tgp-dev bench selection` options.
#[derive(Args)]
pub struct SelectionBenchArgs {
    /// Offers in the one search selection chooses from.
    #[arg(long, default_value_t = 10_000)]
    offers: usize,
    /// Selections timed (each also times the raw pass).
    #[arg(long, default_value_t = 500)]
    rounds: usize,
}

/// The launches timed: a plain one, and one whose machine shape is checked on every offer.
const LAUNCHES: [(&str, &str); 2] = [
    ("plain", r#"{"gpu_type":"H100","gpu_count":1,"max_hourly_price":"3.00","spot_policy":"prefer-spot"}"#),
    (
        "with a machine shape",
        r#"{"gpu_type":"H100","gpu_count":1,"max_hourly_price":"3.00","spot_policy":"prefer-spot",
            "disk_gb":200,"min_vcpus":8,"min_cpu_ram_gb":32,"min_reliability":"0.95","secure_only":true}"#,
    ),
];

/// The least work any selection does: one pass over the offers for the lowest price.
fn lowest_price(offers: &[Offer]) -> Option<Money> {
    offers.iter().filter_map(|o| [o.spot_price, o.on_demand_price].into_iter().flatten().min()).min()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs the benchmark and prints p50 and p99 of selection and of the raw pass, and their ratio.
pub async fn selection(args: SelectionBenchArgs) -> anyhow::Result<()> {
    // Twice the offers at the fake: a default search leaves out the unverified and the rented, and
    // `search_limit` then cuts the answer to the size asked.
    let held = args.offers.saturating_mul(2);
    let fake = VastAiFake::start(VastAiFakeConfig { offers: held, api_key: None, ..Default::default() }).await?;
    let mut settings = client_settings(&fake, ProviderKind::VastAi);
    settings.options.insert("search_limit".into(), args.offers.to_string());
    let client = VastAiClient::from_settings(&settings, ApiChangeReporter::default())?;
    let offers = client.list_offers(&OfferFilter::default()).await?;
    anyhow::ensure!(!offers.is_empty(), "the Vast.ai fake answered no offers");
    println!(
        "tgp-dev bench selection: {} offers from one Vast.ai search (the fake, real client), {} rounds",
        offers.len(),
        args.rounds
    );
    for (name, body) in LAUNCHES {
        let request = LaunchCommand::from_json(body.as_bytes())?;
        let chosen = match select(&request, &offers, &[]) {
            Selection::Chosen { offer, candidates, .. } => {
                format!("{} at {} ({} candidates with verdicts)", offer.offer_id, offer.hourly_price, candidates.len())
            }
            Selection::NoneFits { message, .. } => format!("none: {message}"),
        };
        let (mut chose, mut raw) = (Vec::with_capacity(args.rounds), Vec::with_capacity(args.rounds));
        for _ in 0..args.rounds {
            let started = Instant::now();
            black_box(select(black_box(&request), black_box(&offers), &[]));
            chose.push(started.elapsed());
            let started = Instant::now();
            black_box(lowest_price(black_box(&offers)));
            raw.push(started.elapsed());
        }
        let (chose, raw) = (Summary::of(&chose), Summary::of(&raw));
        println!("  launch {name}: chose {chosen}");
        println!("    select():            p50 {:8.3} ms  p99 {:8.3} ms", ms(chose.p50), ms(chose.p99));
        println!("    raw lowest-price pass: p50 {:8.3} ms  p99 {:8.3} ms", ms(raw.p50), ms(raw.p99));
        println!(
            "    ratio select/raw:    p50 {:.1}x  p99 {:.1}x (target: select p99 under 5 ms)",
            ms(chose.p50) / ms(raw.p50).max(1e-6),
            ms(chose.p99) / ms(raw.p99).max(1e-6)
        );
    }
    Ok(())
}
