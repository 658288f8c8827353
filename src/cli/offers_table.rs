//! How `tgp offers` prints: an aligned table with the price per GPU-hour beside the machine's, a
//! summary of the cheapest per GPU type and provider (like `sky show-gpus`), and CSV. Pure: it
//! takes an answer of `tgp.api.offers` and returns text, so each form is tested without a market.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use clap::ValueEnum;
use rust_decimal::Decimal;
use tgp_events::Money;
use tgp_events::api::OfferView;

/// The order of the offers table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum SortBy {
    /// Cheapest machine first (its spot or on-demand price, whichever is lower), as answered.
    #[default]
    Price,
    /// Cheapest per GPU-hour first: an 8-GPU machine compares with 1-GPU ones.
    GpuPrice,
    /// By provider, then cheapest first.
    Provider,
}

/// Decimals a per-GPU price is shown to (the exact figure is in the JSON's machine prices).
const PER_GPU_DECIMALS: u32 = 4;

/// A machine price per GPU, exact.
fn per_gpu(price: Option<Money>, gpus: u32) -> Option<Decimal> {
    price.map(|p| p.as_decimal() / Decimal::from(gpus.max(1)))
}

/// The cheapest price an offer is sold at per GPU-hour (spot or on demand).
fn cheapest_per_gpu(o: &OfferView) -> Option<Decimal> {
    [per_gpu(o.spot_price, o.gpu_count), per_gpu(o.on_demand_price, o.gpu_count)].into_iter().flatten().min()
}

fn cheapest(o: &OfferView) -> Option<Money> {
    [o.spot_price, o.on_demand_price].into_iter().flatten().min()
}

/// The offers in the order asked (stable: ties keep the answer's order).
pub fn sorted(offers: &[OfferView], by: SortBy) -> Vec<&OfferView> {
    let mut out: Vec<&OfferView> = offers.iter().collect();
    match by {
        SortBy::Price => out.sort_by_key(|o| cheapest(o)),
        SortBy::GpuPrice => out.sort_by_key(|o| cheapest_per_gpu(o)),
        SortBy::Provider => out.sort_by(|a, b| a.provider.cmp(&b.provider).then(cheapest(a).cmp(&cheapest(b)))),
    }
    out
}

/// `text` in at most `width` characters: a longer one keeps its start and, past an ellipsis, its
/// end, where ids and places differ most (`SECURE/US-TX-3/1…IA H100 80GB HBM3`, `us-south
/// (Yutak…Tokyo, JP)`).
pub fn fit(text: &str, width: usize) -> String {
    let count = text.chars().count();
    if count <= width {
        return text.to_string();
    }
    let head = (width.saturating_sub(1)) / 2;
    let tail = width.saturating_sub(1) - head;
    let start: String = text.chars().take(head).collect();
    let end: String = text.chars().skip(count - tail).collect();
    format!("{start}…{end}")
}

fn dollars(d: Option<Decimal>) -> String {
    d.map_or("-".to_string(), |d| Money::from_decimal(d.round_dp(PER_GPU_DECIMALS)).to_string())
}

fn machine(p: Option<Money>) -> String {
    p.map_or("-".to_string(), |p| p.to_string())
}

fn gpu_name(o: &OfferView) -> String {
    o.gpu_type.map_or_else(|| format!("? {}", o.provider_gpu_name), |g| g.to_string())
}

fn region_name(o: &OfferView) -> String {
    match &o.region {
        Some(r) => format!("{r} ({})", o.provider_region),
        None => format!("? {}", o.provider_region),
    }
}

/// The offers table: one line per offer, columns aligned whatever the names' lengths.
pub fn table(offers: &[&OfferView]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:<34} {:<16} {:>2} {:<26} {:>10} {:>10} {:>10} {:>10} {:>5}",
        "PROVIDER", "OFFER", "GPU", "N", "REGION", "ON-DEMAND", "/GPU", "SPOT", "/GPU", "AVAIL"
    );
    for o in offers {
        let _ = writeln!(
            out,
            "{:<10} {:<34} {:<16} {:>2} {:<26} {:>10} {:>10} {:>10} {:>10} {:>5}",
            fit(o.provider.as_str(), 10),
            fit(&o.offer_id, 34),
            fit(&gpu_name(o), 16),
            o.gpu_count,
            fit(&region_name(o), 26),
            fit(&machine(o.on_demand_price), 10),
            fit(&dollars(per_gpu(o.on_demand_price, o.gpu_count)), 10),
            fit(&machine(o.spot_price), 10),
            fit(&dollars(per_gpu(o.spot_price, o.gpu_count)), 10),
            o.available
        );
    }
    out
}

/// One line of the summary: the cheapest per GPU-hour of one GPU type at one provider.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SummaryRow {
    /// The standard GPU type, or `? <provider's name>` without a translation.
    pub gpu: String,
    /// The provider.
    pub provider: String,
    /// The cheapest on-demand price per GPU-hour, exact.
    pub on_demand_per_gpu: Option<Decimal>,
    /// The cheapest spot price per GPU-hour, exact.
    pub spot_per_gpu: Option<Decimal>,
    /// Offers of this type at this provider.
    pub offers: usize,
}

/// The cheapest on-demand and spot price per GPU-hour for each GPU type at each provider, by
/// GPU type, then provider.
pub fn summary(offers: &[OfferView]) -> Vec<SummaryRow> {
    let mut rows: BTreeMap<(String, String), SummaryRow> = BTreeMap::new();
    for o in offers {
        let (gpu, provider) = (gpu_name(o), o.provider.to_string());
        let row = rows.entry((gpu.clone(), provider.clone())).or_insert(SummaryRow {
            gpu,
            provider,
            on_demand_per_gpu: None,
            spot_per_gpu: None,
            offers: 0,
        });
        row.offers += 1;
        let lower = |seen: Option<Decimal>, new: Option<Decimal>| [seen, new].into_iter().flatten().min();
        row.on_demand_per_gpu = lower(row.on_demand_per_gpu, per_gpu(o.on_demand_price, o.gpu_count));
        row.spot_per_gpu = lower(row.spot_per_gpu, per_gpu(o.spot_price, o.gpu_count));
    }
    rows.into_values().collect()
}

/// The summary as an aligned table.
pub fn summary_table(rows: &[SummaryRow]) -> String {
    let mut out = String::new();
    let _ =
        writeln!(out, "{:<18} {:<10} {:>14} {:>14} {:>6}", "GPU", "PROVIDER", "ON-DEMAND/GPU", "SPOT/GPU", "OFFERS");
    for r in rows {
        let _ = writeln!(
            out,
            "{:<18} {:<10} {:>14} {:>14} {:>6}",
            fit(&r.gpu, 18),
            fit(&r.provider, 10),
            dollars(r.on_demand_per_gpu),
            dollars(r.spot_per_gpu),
            r.offers
        );
    }
    out
}

/// A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_string() }
}

fn number(d: Option<Decimal>) -> String {
    d.map(|d| d.normalize().to_string()).unwrap_or_default()
}

/// The offers as CSV, exact prices as plain decimals (empty where not sold that way).
pub fn csv(offers: &[&OfferView]) -> String {
    let mut out = String::from(
        "provider,offer_id,gpu_type,provider_gpu_name,gpu_count,region,provider_region,on_demand_price,\
         on_demand_per_gpu,spot_price,spot_per_gpu,vcpus,cpu_ram_gb,max_disk_gb,secure,reliability,available\n",
    );
    for o in offers {
        let opt = |v: Option<u32>| v.map(|n| n.to_string()).unwrap_or_default();
        let cells = [
            field(o.provider.as_str()),
            field(&o.offer_id),
            o.gpu_type.map(|g| g.to_string()).unwrap_or_default(),
            field(&o.provider_gpu_name),
            o.gpu_count.to_string(),
            o.region.as_ref().map(ToString::to_string).unwrap_or_default(),
            field(&o.provider_region),
            number(o.on_demand_price.map(Money::as_decimal)),
            number(per_gpu(o.on_demand_price, o.gpu_count)),
            number(o.spot_price.map(Money::as_decimal)),
            number(per_gpu(o.spot_price, o.gpu_count)),
            opt(o.vcpus),
            opt(o.cpu_ram_gb),
            opt(o.max_disk_gb),
            o.secure.map(|s| s.to_string()).unwrap_or_default(),
            o.reliability.clone().unwrap_or_default(),
            o.available.to_string(),
        ];
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// The summary as CSV.
pub fn summary_csv(rows: &[SummaryRow]) -> String {
    let mut out = String::from("gpu,provider,on_demand_per_gpu,spot_per_gpu,offers\n");
    for r in rows {
        let _ = writeln!(
            out,
            "{},{},{},{},{}",
            field(&r.gpu),
            field(&r.provider),
            number(r.on_demand_per_gpu),
            number(r.spot_per_gpu),
            r.offers
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(
        provider: &str,
        id: &str,
        gpus: u32,
        on_demand: Option<&str>,
        spot: Option<&str>,
        place: &str,
    ) -> OfferView {
        OfferView {
            provider: provider.parse().unwrap(),
            offer_id: id.into(),
            gpu_type: Some(tgp_events::GpuType::H100),
            provider_gpu_name: "H100 SXM".into(),
            gpu_count: gpus,
            region: Some("asia-east".parse().unwrap()),
            provider_region: place.into(),
            on_demand_price: on_demand.map(|p| p.parse().unwrap()),
            spot_price: spot.map(|p| p.parse().unwrap()),
            reliability: None,
            vcpus: None,
            cpu_ram_gb: None,
            max_disk_gb: None,
            secure: None,
            available: 1,
            billing: tgp_events::BillingGranularity::PER_SECOND,
            observed_at: chrono::Utc::now(),
        }
    }

    fn market() -> Vec<OfferView> {
        vec![
            offer("vastai", "27384100", 8, Some("16.00"), Some("8.00"), "Yutakachō, Shinagawa District, Tokyo, JP"),
            offer("lambda", "gpu_1x_h100_pcie@asia-northeast-2", 1, Some("3.29"), None, "asia-northeast-2"),
            offer("runpod", "SECURE/AP-JP-1/1/NVIDIA H100 80GB HBM3", 1, Some("2.99"), None, "AP-JP-1"),
        ]
    }

    #[test]
    fn every_line_of_the_table_is_as_wide_as_its_header_whatever_the_names() {
        let offers = market();
        let text = table(&sorted(&offers, SortBy::Price));
        let widths: Vec<usize> = text.lines().map(|l| l.chars().count()).collect();
        assert!(widths.iter().all(|w| *w == widths[0]), "{widths:?}\n{text}");
        assert!(text.contains("us…") || text.contains("…"), "long names are shortened:\n{text}");
        assert!(text.contains("Tokyo, JP)"), "a place keeps its end:\n{text}");
        let vast = text.lines().find(|l| l.starts_with("vastai")).unwrap();
        assert!(vast.contains("$16.00") && vast.contains("$2.00") && vast.contains("$1.00"), "{vast}");
    }

    #[test]
    fn gpu_price_order_puts_the_8_gpu_machine_first() {
        let offers = market();
        let by_machine: Vec<&str> = sorted(&offers, SortBy::Price).iter().map(|o| o.provider.as_str()).collect();
        assert_eq!(by_machine, ["runpod", "lambda", "vastai"]);
        let by_gpu: Vec<&str> = sorted(&offers, SortBy::GpuPrice).iter().map(|o| o.provider.as_str()).collect();
        assert_eq!(by_gpu, ["vastai", "runpod", "lambda"]);
        let by_provider: Vec<&str> = sorted(&offers, SortBy::Provider).iter().map(|o| o.provider.as_str()).collect();
        assert_eq!(by_provider, ["lambda", "runpod", "vastai"]);
    }

    #[test]
    fn the_summary_keeps_the_cheapest_per_gpu_of_each_type_at_each_provider() {
        let mut offers = market();
        offers.push(offer("vastai", "27384101", 1, Some("1.90"), Some("1.20"), "Texas, US"));
        let rows = summary(&offers);
        let vast = rows.iter().find(|r| r.provider == "vastai").unwrap();
        assert_eq!(vast.on_demand_per_gpu, Some("1.90".parse().unwrap()));
        assert_eq!(vast.spot_per_gpu, Some("1.00".parse().unwrap()), "the 8-GPU machine's spot, per GPU");
        assert_eq!(vast.offers, 2);
        assert_eq!(rows.len(), 3);
        assert!(summary_csv(&rows).contains("H100,vastai,1.9,1,2\n"), "{}", summary_csv(&rows));
    }

    #[test]
    fn csv_quotes_what_needs_quoting_and_keeps_exact_prices() {
        let offers = market();
        let text = csv(&sorted(&offers, SortBy::Price));
        assert_eq!(text.lines().count(), 4);
        assert!(text.contains("\"Yutakachō, Shinagawa District, Tokyo, JP\""), "{text}");
        assert!(text.contains(",16,2,8,1,"), "machine and per-GPU prices as plain decimals: {text}");
    }
}
