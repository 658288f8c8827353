//! Offer selection: from every provider's offers, the cheapest that fits the launch command, with
//! a verdict for each candidate so `OfferSelected` can explain the choice. Pure: no I/O, no clock.

use tgp_events::events::{Candidate, OfferSummary};
use tgp_events::{GpuType, LaunchCommand, Money, Region, SpotPolicy};

use crate::provider::Offer;
pub use crate::shortfall::{Shortfall, unmet};

/// The outcome of selection.
#[derive(Clone, Debug, PartialEq)]
pub enum Selection {
    /// The winner, with why, and every candidate with its verdict.
    Chosen {
        /// The chosen offer.
        offer: OfferSummary,
        /// The bid for spot (the spot price itself: the minimum that wins the capacity).
        bid: Option<Money>,
        /// One line on why.
        reason: String,
        /// All candidates, the winner first.
        candidates: Vec<Candidate>,
    },
    /// Nothing fits; the candidates say why each was refused.
    NoneFits {
        /// Why, in one line.
        message: String,
        /// All candidates with their verdicts.
        candidates: Vec<Candidate>,
    },
}

/// The most candidates one `OfferSelected` (or `NoneFits`) keeps. A commit must fit the server's
/// `max_payload` (1 MB in nats.conf) and a candidate takes about 200 bytes, while a large search
/// (Vast's `search_limit`) can give tens of thousands: the winner and the cheapest are kept, and
/// the reason says how many more were considered.
pub const MAX_CANDIDATES: usize = 2_000;

/// A key naming one offering, so a failed or interrupted one can be avoided on the next try.
pub fn offering_key(offer: &OfferSummary) -> String {
    format!("{}/{}/{}", offer.provider, offer.offer_id, if offer.spot { "spot" } else { "on-demand" })
}

/// An offering key taken apart: provider, offer id (which may hold `/`), spot.
fn parse_key(key: &str) -> Option<(&str, &str, bool)> {
    let (provider, rest) = key.split_once('/')?;
    let (id, kind) = rest.rsplit_once('/')?;
    Some((provider, id, kind == "spot"))
}

/// One purchasable option of an offer (spot or on demand), borrowed: selection looks at every
/// option of a search and builds an [`OfferSummary`] only for the candidates it keeps.
#[derive(Clone, Copy)]
struct Choice<'a> {
    offer: &'a Offer,
    spot: bool,
    price: Money,
    gpu: GpuType,
    region: &'a Region,
}

impl<'a> Choice<'a> {
    /// The option, when the offer is sold that way and its GPU and region have standard names.
    fn of(offer: &'a Offer, spot: bool) -> Option<Self> {
        let price = if spot { offer.spot_price } else { offer.on_demand_price }?;
        Some(Choice { offer, spot, price, gpu: offer.gpu_type?, region: offer.region.as_ref()? })
    }

    fn summary(&self) -> OfferSummary {
        OfferSummary {
            provider: self.offer.provider.clone(),
            offer_id: self.offer.id.clone(),
            gpu_type: self.gpu,
            gpu_count: self.offer.gpu_count,
            region: self.region.clone(),
            hourly_price: self.price,
            spot: self.spot,
        }
    }
}

/// Why an option is refused, decided without allocating; written out only for the kept ones.
enum Refusal<'a> {
    Gpu(GpuType),
    Count(u32),
    Region(&'a Region),
    Needs(Shortfall<'a>),
    SpotNotAllowed,
    OnDemandNotAllowed,
    OverMax(Money),
    NoCapacity,
    Avoided,
    SpotFits,
    NoFallback,
}

impl Refusal<'_> {
    fn verdict(&self, asked: &LaunchCommand<impl Sized>) -> String {
        match self {
            Refusal::Gpu(gpu) => format!("GPU is {gpu}, not {}", asked.gpu_type),
            Refusal::Count(n) => format!("has {n} GPUs, {} asked", asked.gpu_count),
            Refusal::Region(region) => format!("region {region} not asked for"),
            Refusal::Needs(why) => why.to_string(),
            Refusal::SpotNotAllowed => "spot not allowed (on-demand-only)".to_string(),
            Refusal::OnDemandNotAllowed => "on-demand not allowed (spot-only)".to_string(),
            Refusal::OverMax(price) => format!("{price} per hour is over the maximum {}", asked.max_machine_price()),
            Refusal::NoCapacity => "no capacity available".to_string(),
            Refusal::Avoided => "failed or interrupted recently".to_string(),
            Refusal::SpotFits => "a spot offer fits (prefer-spot)".to_string(),
            Refusal::NoFallback => "no spot fits and on-demand fallback is off".to_string(),
        }
    }
}

/// Chooses the cheapest fitting offer. Spot options are considered when the policy allows them;
/// with `prefer-spot`, on-demand options are used only when no spot option fits and the relaunch
/// policy allows on-demand fallback. Offerings in `avoid` are refused. Ties go to the more
/// reliable offer, then to provider and offer id so the choice is deterministic.
pub fn select<V>(request: &LaunchCommand<V>, offers: &[Offer], avoid: &[String]) -> Selection {
    let max = request.max_machine_price();
    let needs = request.needs();
    let avoided: Vec<(&str, &str, bool)> = avoid.iter().filter_map(|k| parse_key(k)).collect();
    let mut fitting: Vec<Choice<'_>> = Vec::new();
    let mut refused: Vec<(Choice<'_>, Refusal<'_>)> = Vec::new();
    for offer in offers {
        // The same for both options of an offer; asked only of an offer that gets that far.
        let mut shortfall = None;
        for spot in [true, false] {
            let Some(option) = Choice::of(offer, spot) else {
                continue;
            };
            let refusal = if option.gpu != request.gpu_type {
                Some(Refusal::Gpu(option.gpu))
            } else if offer.gpu_count != request.gpu_count {
                Some(Refusal::Count(offer.gpu_count))
            } else if !request.regions.is_empty() && !request.regions.contains(option.region) {
                Some(Refusal::Region(option.region))
            } else if let Some(why) = *shortfall.get_or_insert_with(|| unmet(&needs, offer)) {
                Some(Refusal::Needs(why))
            } else if spot && request.spot_policy == SpotPolicy::OnDemandOnly {
                Some(Refusal::SpotNotAllowed)
            } else if !spot && request.spot_policy == SpotPolicy::SpotOnly {
                Some(Refusal::OnDemandNotAllowed)
            } else if option.price > max {
                Some(Refusal::OverMax(option.price))
            } else if offer.available == 0 {
                Some(Refusal::NoCapacity)
            } else if avoided.iter().any(|(p, id, s)| *p == offer.provider.as_str() && *id == offer.id && *s == spot) {
                Some(Refusal::Avoided)
            } else {
                None
            };
            match refusal {
                Some(why) => refused.push((option, why)),
                None => fitting.push(option),
            }
        }
    }
    if request.spot_policy == SpotPolicy::PreferSpot {
        if fitting.iter().any(|o| o.spot) {
            let (spot, on_demand): (Vec<_>, Vec<_>) = fitting.into_iter().partition(|o| o.spot);
            fitting = spot;
            refused.extend(on_demand.into_iter().map(|o| (o, Refusal::SpotFits)));
        } else if !request.relaunch.on_demand_fallback {
            refused.extend(fitting.drain(..).map(|o| (o, Refusal::NoFallback)));
        }
    }
    fitting.sort_by(|a, b| {
        a.price
            .cmp(&b.price)
            .then(b.offer.reliability.cmp(&a.offer.reliability))
            .then_with(|| (&a.offer.provider, &a.offer.id).cmp(&(&b.offer.provider, &b.offer.id)))
    });
    let considered = fitting.len() + refused.len();
    let kept_refused = |room: usize| {
        refused.iter().take(room).map(|(o, why)| Candidate { offer: o.summary(), verdict: why.verdict(request) })
    };
    let more = |line: &mut String| {
        if considered > MAX_CANDIDATES {
            let more = considered - MAX_CANDIDATES;
            line.push_str(&format!(
                "; {more} more candidates considered and not kept (the first {MAX_CANDIDATES} are)"
            ));
        }
    };
    let Some(winner) = fitting.first().copied() else {
        let mut message = if refused.is_empty() {
            format!(
                "no provider has an offer of {}x {} at most {} per GPU-hour",
                request.gpu_count, request.gpu_type, request.max_hourly_price
            )
        } else {
            format!(
                "none of {} offers fits {}x {} at most {} per GPU-hour",
                refused.len(),
                request.gpu_count,
                request.gpu_type,
                request.max_hourly_price
            )
        };
        more(&mut message);
        return Selection::NoneFits { message, candidates: kept_refused(MAX_CANDIDATES).collect() };
    };
    let offer = winner.summary();
    let mut candidates = vec![Candidate { offer: offer.clone(), verdict: "selected".into() }];
    candidates.extend(fitting.iter().skip(1).take(MAX_CANDIDATES - 1).map(|o| Candidate {
        offer: o.summary(),
        verdict: format!("{} per hour, more than {}", o.price, winner.price),
    }));
    let room = MAX_CANDIDATES - candidates.len();
    candidates.extend(kept_refused(room));
    let mut reason = format!(
        "cheapest fitting {} offer: {} per hour at {} in {}",
        if winner.spot { "spot" } else { "on-demand" },
        winner.price,
        winner.offer.provider,
        winner.region
    );
    more(&mut reason);
    let bid = winner.spot.then_some(winner.price);
    Selection::Chosen { offer, bid, reason, candidates }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use tgp_events::{BillingGranularity, GpuType};

    use crate::provider::{DiskRoom, Specs};

    fn offer(id: &str, on_demand: &str, spot: Option<&str>) -> Offer {
        Offer {
            id: id.into(),
            provider: "simulated".parse().unwrap(),
            gpu_type: Some(GpuType::H100),
            provider_gpu_name: "H100 SXM".into(),
            gpu_count: 1,
            region: Some("us-east".parse().unwrap()),
            provider_region: "us-east-1".into(),
            on_demand_price: Some(on_demand.parse().unwrap()),
            spot_price: spot.map(|s| s.parse().unwrap()),
            reliability: None,
            available: 1,
            billing: BillingGranularity::PER_SECOND,
            observed_at: Utc::now(),
            specs: Specs::default(),
        }
    }

    fn request(policy: &str, fallback: bool) -> LaunchCommand {
        LaunchCommand::from_json(
            format!(
                r#"{{"gpu_type":"H100","gpu_count":1,"max_hourly_price":"3.00","spot_policy":"{policy}",
                "relaunch":{{"max_attempts":3,"on_demand_fallback":{fallback}}}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn prefer_spot_takes_the_cheapest_spot_and_explains_the_rest() {
        let offers = [offer("a", "2.50", Some("1.20")), offer("b", "2.00", Some("1.10")), offer("c", "3.50", None)];
        let Selection::Chosen { offer, bid, candidates, .. } = select(&request("prefer-spot", true), &offers, &[])
        else {
            panic!("nothing chosen")
        };
        assert_eq!((offer.offer_id.as_str(), offer.spot), ("b", true));
        assert_eq!(bid, Some("1.10".parse().unwrap()));
        assert_eq!(candidates.len(), 5, "every option is listed");
        assert!(candidates.iter().any(|c| c.verdict.contains("over the maximum")));
    }

    #[test]
    fn avoided_offerings_are_skipped_and_fallback_is_honoured() {
        let offers = [offer("a", "2.50", Some("1.20"))];
        let avoid = vec!["simulated/a/spot".to_string()];
        let chosen = select(&request("prefer-spot", true), &offers, &avoid);
        assert!(matches!(chosen, Selection::Chosen { ref offer, .. } if !offer.spot));
        let refused = select(&request("prefer-spot", false), &offers, &avoid);
        assert!(matches!(refused, Selection::NoneFits { .. }));
        let spot_only = select(&request("spot-only", true), &offers, &avoid);
        assert!(matches!(spot_only, Selection::NoneFits { .. }));
    }

    #[test]
    fn a_huge_search_keeps_the_winner_and_the_cheapest_and_says_how_many_more() {
        let offers: Vec<Offer> =
            (0..1_500).map(|i| offer(&format!("o{i}"), &format!("{}.00", 1 + i % 3), Some("0.50"))).collect();
        let Selection::Chosen { reason, candidates, .. } = select(&request("prefer-spot", true), &offers, &[]) else {
            panic!("a spot offer fits")
        };
        assert_eq!(candidates.len(), MAX_CANDIDATES);
        assert_eq!(candidates[0].verdict, "selected");
        assert!(reason.ends_with("; 1000 more candidates considered and not kept (the first 2000 are)"), "{reason}");
    }

    fn verdicts(selection: &Selection) -> Vec<(String, String)> {
        let (Selection::Chosen { candidates, .. } | Selection::NoneFits { candidates, .. }) = selection;
        candidates.iter().map(|c| (c.offer.offer_id.clone(), c.verdict.clone())).collect()
    }

    #[test]
    fn needs_refuse_offers_that_fall_short_or_do_not_say() {
        let mut roomy = offer("roomy", "2.00", None);
        roomy.specs = Specs { vcpus: Some(32), cpu_ram_gb: Some(128), disk: DiskRoom::UpTo(1000), secure: Some(true) };
        roomy.reliability = Some("0.99".parse().unwrap());
        let mut small = offer("small", "1.00", None);
        small.specs = Specs { vcpus: Some(8), cpu_ram_gb: Some(32), disk: DiskRoom::UpTo(100), secure: Some(false) };
        small.reliability = Some("0.90".parse().unwrap());
        let silent = offer("silent", "0.50", None);
        let mut request = request("on-demand-only", true);
        request.disk_gb = Some(500);
        request.min_cpu_ram_gb = Some(64);
        request.min_reliability = Some("0.95".parse().unwrap());
        request.secure_only = true;
        let offers = [small, silent, roomy];
        let disk = verdicts(&select(&request, &offers, &[]));
        assert_eq!(disk[0], ("roomy".to_string(), "selected".to_string()));
        assert!(disk.contains(&("small".into(), "holds at most 100 GB of disk, 500 asked".into())));
        assert!(disk.contains(&("silent".into(), "does not say how much disk it holds; 500 GB asked".into())));
        request.disk_gb = None;
        let ram = verdicts(&select(&request, &offers, &[]));
        assert!(ram.contains(&("small".into(), "has 32 GB CPU RAM, 64 GB asked".into())));
        assert!(ram.contains(&("silent".into(), "does not say its CPU RAM; 64 GB asked".into())));
        request.min_cpu_ram_gb = None;
        let reliability = verdicts(&select(&request, &offers, &[]));
        assert!(reliability.contains(&("small".into(), "reliability 0.90 is under 0.95".into())));
        request.min_reliability = None;
        let secure = verdicts(&select(&request, &offers, &[]));
        assert!(secure.contains(&("small".into(), "not a secure host (secure_only)".into())));
        request.exclude_providers = vec!["simulated".parse().unwrap()];
        let excluded = select(&request, &offers, &[]);
        assert!(matches!(excluded, Selection::NoneFits { .. }));
        assert!(verdicts(&excluded).iter().all(|(_, v)| v == "provider simulated is left out by the launch"));
    }
}
