//! The cost ledger: a fold over instance events into billed runs, and the arithmetic that turns
//! runs into money for any time range and grouping. The live cost projection and `tgp audit` both
//! use this one fold, so their totals agree by construction (and a test proves it).
//!
//! # The rules
//! - A **run** starts at `Launched` or `Relaunched` (at the price journaled there, the price the
//!   provider bills) and ends at `Interrupted`, `Terminated` or `Failed`.
//! - A finished run is billed per the provider's granularity: its length is rounded up to the unit
//!   (second, minute, hour) and raised to the minimum billed period. The billed time is laid out
//!   from the run's start, so rounding shows up just after the run ended.
//! - A run still open is billed up to the range's end (or now), not rounded: nothing is billed
//!   that has not been used yet.
//! - Money in a range is `price x overlap`, split by UTC day. Amounts are kept exact as dollar-
//!   milliseconds (a price times whole milliseconds: a sum that is exact in any order) and divided
//!   by 3,600,000 and rounded to cents only to be shown.
//! - The what-if on-demand cost of a spot run uses the on-demand price of the same offer, from the
//!   candidates of its `OfferSelected`; when none was offered, the run's own price.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tgp_events::events::{InstanceEvent, OfferSummary};
use tgp_events::{BillingGranularity, GpuType, InstanceId, Money, ProviderName, Region};

/// One billed run of one machine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// The chain it belongs to.
    pub instance: InstanceId,
    /// The machine.
    pub machine: String,
    /// Where.
    pub provider: ProviderName,
    /// What.
    pub gpu: Option<GpuType>,
    /// Where, standard region.
    pub region: Option<Region>,
    /// Spot?
    pub spot: bool,
    /// Hourly price billed.
    pub price: Money,
    /// Hourly price of the same offer on demand (for savings).
    pub on_demand_price: Money,
    /// How it is billed.
    pub billing: BillingGranularity,
    /// Billing starts.
    pub start: DateTime<Utc>,
    /// Billing stops (`None` while running).
    pub end: Option<DateTime<Utc>>,
}

impl Run {
    /// The end of the billed time: rounded and minimum applied for a finished run; `until` for an
    /// open one.
    pub fn billed_end(&self, until: DateTime<Utc>) -> DateTime<Utc> {
        match self.end {
            Some(end) => self.start + Duration::seconds(self.billing.billed_seconds_between(self.start, end) as i64),
            None => until.max(self.start),
        }
    }
}

/// What selection said about the chain's current offer.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct SelectedOffer {
    offer: OfferSummary,
    on_demand_price: Money,
}

/// The fold: every run, open or finished.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CostLedger {
    /// The current offer of each chain that has one.
    offers: HashMap<InstanceId, SelectedOffer>,
    /// Runs still billing, by chain.
    open: HashMap<InstanceId, Run>,
    /// Finished runs, in the order they ended.
    closed: Vec<Run>,
}

impl CostLedger {
    /// Folds one instance event.
    pub fn apply(&mut self, instance: &InstanceId, event: &InstanceEvent) {
        match event {
            InstanceEvent::OfferSelected { offer, candidates, .. } => {
                let on_demand_price = if offer.spot {
                    candidates
                        .iter()
                        .find(|c| {
                            !c.offer.spot && c.offer.provider == offer.provider && c.offer.offer_id == offer.offer_id
                        })
                        .map_or(offer.hourly_price, |c| c.offer.hourly_price)
                } else {
                    offer.hourly_price
                };
                self.offers.insert(instance.clone(), SelectedOffer { offer: offer.clone(), on_demand_price });
            }
            InstanceEvent::Launched { provider, provider_instance_id, hourly_price, spot, billing, at, .. }
            | InstanceEvent::Relaunched { provider, provider_instance_id, hourly_price, spot, billing, at, .. } => {
                self.close(instance, *at);
                let selected = self.offers.get(instance);
                let on_demand_price = match selected {
                    Some(s) if *spot => s.on_demand_price.max(*hourly_price),
                    _ => *hourly_price,
                };
                self.open.insert(
                    instance.clone(),
                    Run {
                        instance: instance.clone(),
                        machine: provider_instance_id.clone(),
                        provider: provider.clone(),
                        gpu: selected.map(|s| s.offer.gpu_type),
                        region: selected.map(|s| s.offer.region.clone()),
                        spot: *spot,
                        price: *hourly_price,
                        on_demand_price,
                        billing: *billing,
                        start: *at,
                        end: None,
                    },
                );
            }
            InstanceEvent::Interrupted { at, .. } => self.close(instance, *at),
            InstanceEvent::Reappeared { provider_instance_id, at, .. } => {
                // The machine declared lost billed all along: its run is reopened as one run
                // from its launch, and the replacement's (if any) ends here.
                self.close(instance, *at);
                if let Some(index) =
                    self.closed.iter().rposition(|r| &r.instance == instance && &r.machine == provider_instance_id)
                {
                    let mut run = self.closed.remove(index);
                    run.end = None;
                    self.open.insert(instance.clone(), run);
                }
            }
            InstanceEvent::Terminated { at, .. } | InstanceEvent::Failed { at, .. } => {
                self.close(instance, *at);
                self.offers.remove(instance);
            }
            _ => {}
        }
    }

    fn close(&mut self, instance: &InstanceId, at: DateTime<Utc>) {
        if let Some(mut run) = self.open.remove(instance) {
            run.end = Some(at.max(run.start));
            self.closed.push(run);
        }
    }

    /// Every run, finished ones first.
    pub fn runs(&self) -> impl Iterator<Item = &Run> {
        let mut open: Vec<&Run> = self.open.values().collect();
        open.sort_by(|a, b| (a.start, &a.instance).cmp(&(b.start, &b.instance)));
        self.closed.iter().chain(open)
    }

    /// Money per group for the range `[from, to)`, open runs billed up to `to`.
    pub fn totals(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        group_by: &[GroupField],
    ) -> BTreeMap<GroupKey, Totals> {
        let mut out: BTreeMap<GroupKey, Totals> = BTreeMap::new();
        for run in self.runs() {
            let billed_end = run.billed_end(to);
            let (start, end) = (run.start.max(from), billed_end.min(to));
            let mut day_start = start;
            while day_start < end {
                let next_day = (day_start.date_naive() + Duration::days(1)).and_time(chrono::NaiveTime::MIN).and_utc();
                let day_end = next_day.min(end);
                let ms = (day_end - day_start).num_milliseconds();
                let key = GroupKey::of(run, day_start.date_naive(), group_by);
                out.entry(key).or_default().add(run, ms);
                day_start = day_end;
            }
        }
        out
    }

    /// Money for the range `[from, to)`, all runs together.
    pub fn total(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Totals {
        Totals::sum(self.totals(from, to, &[]).values())
    }

    /// The current spend rate: the sum of the prices of open runs, per hour.
    pub fn spend_rate(&self) -> Money {
        self.open.values().fold(Money::ZERO, |sum, run| sum + run.price)
    }
}

/// Milliseconds in an hour: prices are per hour, time is kept in milliseconds.
const MS_PER_HOUR: i64 = 3_600_000;

/// Money and time of a group, exact.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Price times milliseconds, summed: exact.
    pub dollar_ms: Decimal,
    /// The same at on-demand prices.
    pub on_demand_dollar_ms: Decimal,
    /// Milliseconds billed.
    pub billed_ms: i64,
    /// Runs that contributed.
    pub runs: u64,
}

impl Totals {
    fn add(&mut self, run: &Run, ms: i64) {
        self.dollar_ms += run.price.as_decimal() * Decimal::from(ms);
        self.on_demand_dollar_ms += run.on_demand_price.as_decimal() * Decimal::from(ms);
        self.billed_ms += ms;
        self.runs += 1;
    }

    /// The totals of several groups together.
    pub fn sum<'a>(groups: impl IntoIterator<Item = &'a Totals>) -> Totals {
        groups.into_iter().fold(Totals::default(), |mut all, t| {
            all.merge(t);
            all
        })
    }

    /// Adds another group's totals.
    pub fn merge(&mut self, other: &Totals) {
        self.dollar_ms += other.dollar_ms;
        self.on_demand_dollar_ms += other.on_demand_dollar_ms;
        self.billed_ms += other.billed_ms;
        self.runs += other.runs;
    }

    /// Spend, exact.
    pub fn cost(&self) -> Money {
        Money::from_decimal(self.dollar_ms / Decimal::from(MS_PER_HOUR))
    }

    /// What the same hours would have cost on demand, exact.
    pub fn on_demand_cost(&self) -> Money {
        Money::from_decimal(self.on_demand_dollar_ms / Decimal::from(MS_PER_HOUR))
    }

    /// Hours billed.
    pub fn hours(&self) -> Decimal {
        Decimal::from(self.billed_ms) / Decimal::from(MS_PER_HOUR)
    }
}

/// What audits group by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupField {
    /// Per provider.
    Provider,
    /// Per standard GPU type.
    Gpu,
    /// Per standard region.
    Region,
    /// Spot or on demand.
    Spot,
    /// Per instance chain.
    Instance,
    /// Per UTC day.
    Day,
}

impl std::str::FromStr for GroupField {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim() {
            "provider" => GroupField::Provider,
            "gpu" => GroupField::Gpu,
            "region" => GroupField::Region,
            "spot" => GroupField::Spot,
            "instance" => GroupField::Instance,
            "day" => GroupField::Day,
            other => {
                return Err(format!("cannot group by {other:?}; use provider, gpu, region, spot, instance or day"));
            }
        })
    }
}

/// A group's identity; fields not grouped by are `None` (shown as `*`).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupKey {
    /// Provider.
    pub provider: Option<String>,
    /// GPU type.
    pub gpu: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// `spot` or `on-demand`.
    pub spot: Option<String>,
    /// Instance id.
    pub instance: Option<String>,
    /// UTC day.
    pub day: Option<NaiveDate>,
}

impl GroupKey {
    fn of(run: &Run, day: NaiveDate, by: &[GroupField]) -> Self {
        let has = |f| by.contains(&f);
        GroupKey {
            provider: has(GroupField::Provider).then(|| run.provider.to_string()),
            gpu: has(GroupField::Gpu).then(|| run.gpu.map_or("unknown".into(), |g| g.to_string())),
            region: has(GroupField::Region).then(|| run.region.as_ref().map_or("unknown".into(), |r| r.to_string())),
            spot: has(GroupField::Spot).then(|| if run.spot { "spot" } else { "on-demand" }.to_string()),
            instance: has(GroupField::Instance).then(|| run.instance.to_string()),
            day: has(GroupField::Day).then_some(day),
        }
    }
}

/// Parses `provider,gpu,...` into fields.
pub fn parse_group_by(names: &[String]) -> Result<Vec<GroupField>, String> {
    names.iter().flat_map(|n| n.split(',')).filter(|n| !n.trim().is_empty()).map(str::parse).collect()
}

fn row(key: &GroupKey, totals: &Totals) -> tgp_events::api::CostRow {
    let cost = totals.cost();
    let on_demand = totals.on_demand_cost();
    tgp_events::api::CostRow {
        provider: key.provider.clone(),
        gpu: key.gpu.clone(),
        region: key.region.clone(),
        spot: key.spot.clone(),
        instance: key.instance.clone(),
        day: key.day.map(|d| d.to_string()),
        hours: totals.hours().round_dp(6).normalize().to_string(),
        cost: cost.round_cents(),
        cost_exact: Money::from_decimal(cost.as_decimal().round_dp(10).normalize()),
        on_demand_cost: on_demand.round_cents(),
        savings: Money::from_decimal(on_demand.as_decimal() - cost.as_decimal()).round_cents(),
        runs: totals.runs,
    }
}

impl CostLedger {
    /// The report for a range and grouping: what `tgp audit` prints and `tgp.api.cost` answers.
    pub fn report(
        &self,
        from: Option<DateTime<Utc>>,
        to: DateTime<Utc>,
        group_by: &[GroupField],
        last_sequence: u64,
    ) -> tgp_events::api::CostReport {
        let groups = self.totals(from.unwrap_or(DateTime::<Utc>::MIN_UTC), to, group_by);
        let all = Totals::sum(groups.values());
        tgp_events::api::CostReport {
            from,
            to,
            group_by: group_by
                .iter()
                .map(|g| serde_json::to_value(g).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default())
                .collect(),
            rows: groups.iter().map(|(k, t)| row(k, t)).collect(),
            total: row(&GroupKey::default(), &all),
            last_sequence,
        }
    }

    /// Spend per provider per time bucket of `bucket` length in `[from, to)`, for charts.
    pub fn spend_series(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        bucket: Duration,
    ) -> BTreeMap<String, BTreeMap<DateTime<Utc>, Decimal>> {
        let mut out: BTreeMap<String, BTreeMap<DateTime<Utc>, Decimal>> = BTreeMap::new();
        let bucket_ms = bucket.num_milliseconds().max(1);
        for run in self.runs() {
            let (mut t, end) = (run.start.max(from), run.billed_end(to).min(to));
            while t < end {
                let index = (t - from).num_milliseconds() / bucket_ms;
                let bucket_start = from + Duration::milliseconds(index * bucket_ms);
                let bucket_end = (bucket_start + bucket).min(end);
                let ms = (bucket_end - t).num_milliseconds();
                *out.entry(run.provider.to_string()).or_default().entry(bucket_start).or_default() +=
                    run.price.as_decimal() * Decimal::from(ms) / Decimal::from(MS_PER_HOUR);
                t = bucket_end;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tgp_events::BillingUnit;

    fn run(billing: BillingGranularity, minutes: i64) -> Run {
        let start = DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z").unwrap().with_timezone(&Utc);
        Run {
            instance: "i".parse().unwrap(),
            machine: "m".into(),
            provider: "simulated".parse().unwrap(),
            gpu: Some(GpuType::H100),
            region: Some("us-east".parse().unwrap()),
            spot: true,
            price: "1.20".parse().unwrap(),
            on_demand_price: "2.40".parse().unwrap(),
            billing,
            start,
            end: Some(start + Duration::minutes(minutes)),
        }
    }

    #[test]
    fn hourly_billing_rounds_up_and_day_boundaries_split() {
        let hourly = BillingGranularity { unit: BillingUnit::Hour, minimum_seconds: 0 };
        let r = run(hourly, 61);
        assert_eq!(r.billed_end(Utc::now()) - r.start, Duration::hours(2));
        let mut t = Totals::default();
        t.add(&r, 2 * MS_PER_HOUR);
        assert_eq!(t.cost(), "2.40".parse().unwrap());
        assert_eq!(t.on_demand_cost(), "4.80".parse().unwrap());
    }

    #[test]
    fn a_machine_that_reappears_bills_as_one_run_and_its_replacement_ends_there() {
        use tgp_events::events::{Connection, InterruptionReason};
        let t0 = DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z").unwrap().with_timezone(&Utc);
        let hours = |h| t0 + Duration::hours(h);
        let (instance, provider): (InstanceId, tgp_events::ProviderName) =
            ("i".parse().unwrap(), "simulated".parse().unwrap());
        let price: Money = "1.20".parse().unwrap();
        let attempt = |n| tgp_events::AttemptId::new(&instance, n);
        let mut ledger = CostLedger::default();
        for event in [
            InstanceEvent::Launched {
                attempt_id: attempt(1),
                provider: provider.clone(),
                provider_instance_id: "m-1".into(),
                hourly_price: price,
                spot: false,
                billing: BillingGranularity::PER_SECOND,
                adopted: false,
                at: t0,
            },
            InstanceEvent::Interrupted {
                provider_instance_id: "m-1".into(),
                reason: InterruptionReason::Vanished,
                raw_status: "absent".into(),
                detected_by: "status_poll".into(),
                at: hours(1),
            },
            InstanceEvent::Relaunched {
                attempt_id: attempt(2),
                provider: provider.clone(),
                provider_instance_id: "m-2".into(),
                replaces: "m-1".into(),
                hourly_price: price,
                spot: false,
                billing: BillingGranularity::PER_SECOND,
                adopted: false,
                at: hours(1),
            },
            InstanceEvent::Reappeared {
                provider_instance_id: "m-1".into(),
                raw_status: "running".into(),
                connection: Connection::default(),
                detected_by: "status_poll".into(),
                replaced_by: Some("m-2".into()),
                abandoned_attempt: None,
                at: hours(2),
            },
            InstanceEvent::Terminated { provider_instance_id: Some("m-1".into()), at: hours(3) },
        ] {
            ledger.apply(&instance, &event);
        }
        let machines: Vec<(&str, Option<DateTime<Utc>>)> = ledger.runs().map(|r| (r.machine.as_str(), r.end)).collect();
        assert_eq!(machines, vec![("m-2", Some(hours(2))), ("m-1", Some(hours(3)))]);
        // m-1 three hours and m-2 one, at $1.20.
        assert_eq!(ledger.total(t0, hours(4)).cost(), "4.80".parse().unwrap());
    }
}
