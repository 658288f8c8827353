//! Realized prices: what tgp actually paid, per provider, GPU, region and spot, from `Launched`
//! and `Relaunched`. (Market summaries of offers join this projection when the provider actors
//! journal them.)

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use tgp_events::events::{InstanceEvent, OfferSummary};
use tgp_events::provider_events::MarketLine;
use tgp_events::{InstanceId, Money, ProviderName};

/// Which prices are compared with each other.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PriceKey {
    /// Provider.
    pub provider: String,
    /// Standard GPU type.
    pub gpu: String,
    /// Standard region.
    pub region: String,
    /// Spot?
    pub spot: bool,
}

impl PriceKey {
    /// The key as one string, for JSON maps (whose keys must be strings).
    fn id(&self) -> String {
        format!("{}|{}|{}|{}", self.provider, self.gpu, self.region, self.spot)
    }
}

/// Every price paid for one key, as a histogram (distinct prices are few).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PriceStats {
    /// How often each price was paid.
    pub histogram: BTreeMap<Money, u64>,
    /// The most recent.
    pub last: Option<Money>,
}

/// One row of `tgp prices`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PriceRow {
    /// What the row is about.
    #[serde(flatten)]
    pub key: PriceKey,
    /// Launches at these prices.
    pub count: u64,
    /// Cheapest paid.
    pub min: Money,
    /// Median paid (the lower middle for an even count).
    pub median: Money,
    /// Dearest paid.
    pub max: Money,
    /// Most recent.
    pub last: Money,
}

/// The projection's state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RealizedPrices {
    /// Current offer of each live chain (for GPU and region of its launch).
    offers: HashMap<InstanceId, OfferSummary>,
    /// Prices per key.
    /// Keyed by a string form of the key (JSON object keys must be strings), with the key itself.
    prices: BTreeMap<String, (PriceKey, PriceStats)>,
    /// The market as last summarized by each provider, per provider, GPU, region and kind.
    #[serde(default)]
    market: BTreeMap<String, MarketRow>,
}

/// The latest market summary line for one provider, GPU, region and kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MarketRow {
    /// What it is about.
    #[serde(flatten)]
    pub key: PriceKey,
    /// Offers seen.
    pub count: u32,
    /// Cheapest per GPU-hour.
    pub min: Money,
    /// Median per GPU-hour.
    pub median: Money,
    /// When the provider's offers were fetched.
    pub observed_at: chrono::DateTime<chrono::Utc>,
}

impl RealizedPrices {
    /// Folds one event of `instance`.
    pub fn apply(&mut self, instance: &InstanceId, event: &InstanceEvent) {
        match event {
            InstanceEvent::OfferSelected { offer, .. } => {
                self.offers.insert(instance.clone(), offer.clone());
            }
            InstanceEvent::Launched { hourly_price, spot, provider, .. }
            | InstanceEvent::Relaunched { hourly_price, spot, provider, .. } => {
                let offer = self.offers.get(instance);
                let key = PriceKey {
                    provider: provider.to_string(),
                    gpu: offer.map_or("unknown".into(), |o| o.gpu_type.to_string()),
                    region: offer.map_or("unknown".into(), |o| o.region.to_string()),
                    spot: *spot,
                };
                let id = key.id();
                let (_, stats) = self.prices.entry(id).or_insert_with(|| (key, PriceStats::default()));
                *stats.histogram.entry(*hourly_price).or_default() += 1;
                stats.last = Some(*hourly_price);
            }
            InstanceEvent::Terminated { .. } | InstanceEvent::Failed { .. } => {
                self.offers.remove(instance);
            }
            _ => {}
        }
    }

    /// Folds a provider's offer summary: each line replaces the previous one for its key.
    pub fn observe_market(&mut self, at: chrono::DateTime<chrono::Utc>, provider: &ProviderName, lines: &[MarketLine]) {
        for line in lines {
            let key = PriceKey {
                provider: provider.to_string(),
                gpu: line.gpu.clone(),
                region: line.region.clone(),
                spot: line.spot,
            };
            let id = key.id();
            self.market
                .insert(id, MarketRow { key, count: line.count, min: line.min, median: line.median, observed_at: at });
        }
    }

    /// The market view, optionally for one GPU type, ordered by key.
    pub fn market(&self, gpu: Option<&str>) -> Vec<MarketRow> {
        self.market.values().filter(|r| gpu.is_none_or(|g| r.key.gpu.eq_ignore_ascii_case(g))).cloned().collect()
    }

    /// Rows, optionally for one GPU type, ordered by key.
    pub fn rows(&self, gpu: Option<&str>) -> Vec<PriceRow> {
        self.prices
            .values()
            .filter(|(k, _)| gpu.is_none_or(|g| k.gpu.eq_ignore_ascii_case(g)))
            .filter_map(|(key, stats)| {
                let count: u64 = stats.histogram.values().sum();
                let min = *stats.histogram.keys().next()?;
                let max = *stats.histogram.keys().next_back()?;
                let mut seen = 0;
                let half = count.div_ceil(2);
                let median = stats.histogram.iter().find_map(|(price, n)| {
                    seen += n;
                    (seen >= half).then_some(*price)
                })?;
                Some(PriceRow { key: key.clone(), count, min, median, max, last: stats.last.unwrap_or(max) })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_round_trips_through_json() {
        let mut prices = RealizedPrices::default();
        let key = PriceKey { provider: "vastai".into(), gpu: "H100".into(), region: "us-east".into(), spot: true };
        let mut stats = PriceStats::default();
        stats.histogram.insert("1.10".parse().unwrap(), 2);
        stats.histogram.insert("1.30".parse().unwrap(), 1);
        prices.prices.insert("k".into(), (key, stats));
        let json = serde_json::to_string(&prices).expect("checkpoints serialize");
        let back: RealizedPrices = serde_json::from_str(&json).unwrap();
        let rows = back.rows(Some("h100"));
        assert_eq!((rows[0].count, rows[0].median.to_string()), (3, "$1.10".to_string()));
    }
}
