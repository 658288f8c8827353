//! Offer selection: from every provider's offers, the cheapest that fits the launch command, with
//! a verdict for each candidate so `OfferSelected` can explain the choice. Pure: no I/O, no clock.

use tgp_events::events::{Candidate, OfferSummary};
use tgp_events::{LaunchCommand, Money, Needs, SpotPolicy};

use crate::provider::{DiskRoom, Offer};

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

/// Keeps the first [`MAX_CANDIDATES`]; says how many were left out, if any.
fn cap(candidates: &mut Vec<Candidate>, line: &mut String) {
    if candidates.len() > MAX_CANDIDATES {
        let more = candidates.len() - MAX_CANDIDATES;
        candidates.truncate(MAX_CANDIDATES);
        line.push_str(&format!("; {more} more candidates considered and not kept (the first {MAX_CANDIDATES} are)"));
    }
}

/// A key naming one offering, so a failed or interrupted one can be avoided on the next try.
pub fn offering_key(offer: &OfferSummary) -> String {
    format!("{}/{}/{}", offer.provider, offer.offer_id, if offer.spot { "spot" } else { "on-demand" })
}

/// Chooses the cheapest fitting offer. Spot options are considered when the policy allows them;
/// with `prefer-spot`, on-demand options are used only when no spot option fits and the relaunch
/// policy allows on-demand fallback. Offerings in `avoid` are refused. Ties go to the more
/// reliable offer, then to provider and offer id so the choice is deterministic.
pub fn select<V>(request: &LaunchCommand<V>, offers: &[Offer], avoid: &[String]) -> Selection {
    let max = request.max_machine_price();
    let needs = request.needs();
    let mut fitting: Vec<(OfferSummary, Option<rust_decimal::Decimal>)> = Vec::new();
    let mut refused: Vec<Candidate> = Vec::new();
    for offer in offers {
        for spot in [true, false] {
            let Some(summary) = offer.summary(spot) else {
                continue;
            };
            let verdict = if summary.gpu_type != request.gpu_type {
                Some(format!("GPU is {}, not {}", summary.gpu_type, request.gpu_type))
            } else if offer.gpu_count != request.gpu_count {
                Some(format!("has {} GPUs, {} asked", offer.gpu_count, request.gpu_count))
            } else if !request.regions.is_empty() && !request.regions.contains(&summary.region) {
                Some(format!("region {} not asked for", summary.region))
            } else if let Some(why) = unmet(&needs, offer) {
                Some(why)
            } else if spot && request.spot_policy == SpotPolicy::OnDemandOnly {
                Some("spot not allowed (on-demand-only)".to_string())
            } else if !spot && request.spot_policy == SpotPolicy::SpotOnly {
                Some("on-demand not allowed (spot-only)".to_string())
            } else if summary.hourly_price > max {
                Some(format!("{} per hour is over the maximum {}", summary.hourly_price, max))
            } else if offer.available == 0 {
                Some("no capacity available".to_string())
            } else if avoid.contains(&offering_key(&summary)) {
                Some("failed or interrupted recently".to_string())
            } else {
                None
            };
            match verdict {
                Some(why) => refused.push(Candidate { offer: summary, verdict: why }),
                None => fitting.push((summary, offer.reliability)),
            }
        }
    }
    let spot_fits = fitting.iter().any(|(o, _)| o.spot);
    if request.spot_policy == SpotPolicy::PreferSpot && spot_fits {
        let (spot, on_demand): (Vec<_>, Vec<_>) = fitting.into_iter().partition(|(o, _)| o.spot);
        fitting = spot;
        refused.extend(
            on_demand
                .into_iter()
                .map(|(o, _)| Candidate { offer: o, verdict: "a spot offer fits (prefer-spot)".to_string() }),
        );
    } else if request.spot_policy == SpotPolicy::PreferSpot && !request.relaunch.on_demand_fallback {
        refused.extend(
            fitting.drain(..).map(|(o, _)| Candidate {
                offer: o,
                verdict: "no spot fits and on-demand fallback is off".to_string(),
            }),
        );
    }
    fitting.sort_by(|(a, ra), (b, rb)| {
        a.hourly_price
            .cmp(&b.hourly_price)
            .then(rb.cmp(ra))
            .then_with(|| (&a.provider, &a.offer_id).cmp(&(&b.provider, &b.offer_id)))
    });
    let mut fitting = fitting.into_iter();
    let Some((winner, _)) = fitting.next() else {
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
        cap(&mut refused, &mut message);
        return Selection::NoneFits { message, candidates: refused };
    };
    let mut candidates = vec![Candidate { offer: winner.clone(), verdict: "selected".into() }];
    candidates.extend(fitting.map(|(o, _)| Candidate {
        verdict: format!("{} per hour, more than {}", o.hourly_price, winner.hourly_price),
        offer: o,
    }));
    candidates.extend(refused);
    let mut reason = format!(
        "cheapest fitting {} offer: {} per hour at {} in {}",
        if winner.spot { "spot" } else { "on-demand" },
        winner.hourly_price,
        winner.provider,
        winner.region
    );
    cap(&mut candidates, &mut reason);
    let bid = winner.spot.then_some(winner.hourly_price);
    Selection::Chosen { offer: winner, bid, reason, candidates }
}

/// Why an offer falls short of a launch's needs, or `None` when it meets them all. An offer that
/// does not say what a need asks about falls short: tgp cannot vouch for what it was not told.
pub fn unmet(needs: &Needs, offer: &Offer) -> Option<String> {
    let specs = &offer.specs;
    if !needs.allows(&offer.provider) {
        return Some(format!("provider {} is left out by the launch", offer.provider));
    }
    if let Some(asked) = needs.disk_gb {
        match specs.disk {
            DiskRoom::UpTo(room) if room < asked => {
                return Some(format!("holds at most {room} GB of disk, {asked} asked"));
            }
            DiskRoom::Unknown => return Some(format!("does not say how much disk it holds; {asked} GB asked")),
            DiskRoom::UpTo(_) | DiskRoom::PlacedAtLaunch => {}
        }
    }
    let at_least = |what: &str, unit: &str, asked: Option<u32>, has: Option<u32>| match (asked, has) {
        (Some(asked), Some(has)) if has < asked => Some(format!("has {has}{unit} {what}, {asked}{unit} asked")),
        (Some(asked), None) => Some(format!("does not say its {what}; {asked}{unit} asked")),
        _ => None,
    };
    if let Some(why) = at_least("CPU RAM", " GB", needs.min_cpu_ram_gb, specs.cpu_ram_gb) {
        return Some(why);
    }
    if let Some(why) = at_least("vCPUs", "", needs.min_vcpus, specs.vcpus) {
        return Some(why);
    }
    if let Some(min) = needs.min_reliability {
        match offer.reliability {
            Some(r) if r < min => return Some(format!("reliability {r} is under {min}")),
            None => return Some(format!("gives no reliability score; at least {min} asked")),
            Some(_) => {}
        }
    }
    if needs.secure_only {
        match specs.secure {
            Some(true) => {}
            Some(false) => return Some("not a secure host (secure_only)".to_string()),
            None => return Some("does not say whether its host is secure (secure_only)".to_string()),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use tgp_events::{BillingGranularity, GpuType};

    use crate::provider::Specs;

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
