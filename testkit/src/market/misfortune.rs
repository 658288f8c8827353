//! The in-memory market's misfortunes, as a seeded schedule: what goes wrong with which call,
//! which listing and which machine, and when. `tgp-dev sim` turns them all on; the simulated
//! market of `tgp-dev run` is [`Chaos::quiet`]: machines boot and spot machines are preempted,
//! and nothing else goes wrong unless a cue says so.
//!
//! Every draw is a function of the seed and what it is about (an attempt's label, a machine, a
//! provider and the moment of a call), never of the order calls arrive in: instance actors run
//! concurrently, and the same seed must give the same events whatever order they run in.
//! Issue 10's misfortunes are here: listing glitches (empty, partial and `null` pages), cut-off
//! launch answers, bursts of 5xx, machines that really vanish and machines that hide for a while
//! and come back.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// The chance of each misfortune, from 0 to 1: what `tgp-dev sim` is given (its flags), what the
/// simulation's configuration holds, and what the market draws with. One list, so a new kind of
/// misfortune is added in one place.
#[derive(Clone, Copy, Debug, PartialEq, clap::Args)]
pub struct Chances {
    /// Chance a launch fails for lack of capacity.
    #[arg(long, default_value_t = Chances::SIM.no_capacity)]
    pub no_capacity: f64,
    /// Chance a provider call is answered 429.
    #[arg(long, default_value_t = Chances::SIM.rate_limited)]
    pub rate_limited: f64,
    /// Chance a launch's answer is lost (a timeout, a reset) although the machine starts
    /// (reconciliation adopts it).
    #[arg(long, default_value_t = Chances::SIM.lost_answer)]
    pub lost_answer: f64,
    /// Chance a launch's answer is cut off mid-body although the machine starts, so the client
    /// cannot parse it (`ContractChanged`).
    #[arg(long, default_value_t = Chances::SIM.cut_off)]
    pub cut_off: f64,
    /// Chance a listing of a provider's machines is a glitch: empty, partial or `null` (a
    /// `ContractChanged` error), a third each.
    #[arg(long, default_value_t = Chances::SIM.listing_glitch)]
    pub listing_glitch: f64,
    /// Chance, per provider and minute, that a burst of 5xx starts: for 10 to 90 s every call to
    /// that provider answers `ProviderOutage`.
    #[arg(long, default_value_t = Chances::SIM.outage_burst)]
    pub outage_burst: f64,
    /// Chance a machine really vanishes with its host (unlisted, status not found).
    #[arg(long, default_value_t = Chances::SIM.vanish)]
    pub vanish: f64,
    /// Chance a machine drops out of listings and status for 30 s to 10 min, then is back,
    /// running as before (it was never gone: the provider's API lost sight of it).
    #[arg(long, default_value_t = Chances::SIM.reappear)]
    pub reappear: f64,
}

impl Chances {
    /// Nothing goes wrong by chance (`tgp-dev run`'s market: misfortune only on cue).
    pub const NONE: Chances = Chances {
        no_capacity: 0.0,
        rate_limited: 0.0,
        lost_answer: 0.0,
        cut_off: 0.0,
        listing_glitch: 0.0,
        outage_burst: 0.0,
        vanish: 0.0,
        reappear: 0.0,
    };

    /// `tgp-dev sim`'s defaults: in an hour of 100 instances, every kind strikes several times.
    pub const SIM: Chances = Chances {
        no_capacity: 0.10,
        rate_limited: 0.03,
        lost_answer: 0.03,
        cut_off: 0.02,
        listing_glitch: 0.02,
        outage_burst: 0.01,
        vanish: 0.02,
        reappear: 0.03,
    };

    /// Names the first that is not a chance from 0 to 1.
    pub fn validate(&self) -> Result<(), String> {
        let named = [
            ("no_capacity", self.no_capacity),
            ("rate_limited", self.rate_limited),
            ("lost_answer", self.lost_answer),
            ("cut_off", self.cut_off),
            ("listing_glitch", self.listing_glitch),
            ("outage_burst", self.outage_burst),
            ("vanish", self.vanish),
            ("reappear", self.reappear),
        ];
        match named.into_iter().find(|(_, p)| !(0.0..=1.0).contains(p)) {
            Some((name, p)) => Err(format!("{name} must be a chance from 0 to 1, got {p}")),
            None => Ok(()),
        }
    }
}

/// How often things go wrong in the simulated market, until `calm_after`.
#[derive(Clone, Debug)]
pub struct Chaos {
    /// The seed every draw derives from.
    pub seed: u64,
    /// How often each misfortune strikes.
    pub chances: Chances,
    /// Mean time a spot machine runs before it is preempted; `None` for never.
    pub mean_spot_life: Option<Duration>,
    /// Shortest and longest boot: drawn in whole seconds between the two, or exactly the one
    /// when they are equal.
    pub boot: (Duration, Duration),
    /// From this moment nothing goes wrong any more, so the system can settle and be checked.
    pub calm_after: DateTime<Utc>,
}

/// A generator seeded by the seed and a key: the same key draws the same numbers in any run.
pub fn rng_for(seed: u64, key: &str) -> SmallRng {
    // FNV-1a: small, stable across platforms and Rust versions (unlike std's hashers).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    SmallRng::seed_from_u64(hash)
}

/// What a glitched listing looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Glitch {
    /// HTTP 200 in the right shape, no machines.
    Empty,
    /// Some machines are left out (each with a chance of one half, at least one).
    Partial,
    /// The list field is `null`: a contract error, not an empty list.
    Null,
}

/// What the schedule holds for one machine, drawn once when it is launched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fate {
    /// When it really vanishes, if it does.
    pub vanish_at: Option<DateTime<Utc>>,
    /// When it drops out of sight and when it is back, if it does.
    pub hidden: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

fn seconds(s: u64) -> chrono::Duration {
    chrono::Duration::seconds(s as i64)
}

impl Chaos {
    /// A market where nothing goes wrong by chance: machines boot in `boot` and spot machines
    /// live `mean_spot_life` on average. Misfortune comes only on cue.
    pub fn quiet(seed: u64, boot: Duration, mean_spot_life: Option<Duration>) -> Self {
        Chaos { seed, chances: Chances::NONE, mean_spot_life, boot: (boot, boot), calm_after: DateTime::<Utc>::MAX_UTC }
    }

    /// How long a machine takes to boot, drawn from `rng`.
    pub fn boot_time(&self, rng: &mut SmallRng) -> chrono::Duration {
        let (least, most) = self.boot;
        if least == most {
            return chrono::Duration::from_std(least).unwrap_or(chrono::Duration::MAX);
        }
        seconds(rng.random_range(least.as_secs()..=most.as_secs()))
    }

    /// When a spot machine launched `now` is preempted, drawn from `rng`; never after the calm.
    pub fn preempt_at(&self, rng: &mut SmallRng, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mean = self.mean_spot_life?;
        let life_ms = mean.as_millis() as f64 * -(1.0 - rng.random::<f64>()).ln();
        Some(now + chrono::Duration::milliseconds(life_ms as i64)).filter(|at| *at < self.calm_after)
    }

    /// Whether misfortune has stopped at `now`.
    pub fn calm(&self, now: DateTime<Utc>) -> bool {
        now >= self.calm_after
    }

    /// Whether the call keyed `key` at `now` is answered 429.
    pub fn rate_limits(&self, key: &str, now: DateTime<Utc>) -> bool {
        !self.calm(now)
            && self.chances.rate_limited > 0.0
            && rng_for(self.seed, key).random_bool(self.chances.rate_limited)
    }

    /// Whether a provider is in a burst of 5xx at `now`. Bursts start in a minute drawn for that
    /// minute, so a moment looks at the bursts of the two minutes before it too.
    pub fn in_outage(&self, provider: &str, now: DateTime<Utc>) -> bool {
        if self.calm(now) || self.chances.outage_burst <= 0.0 {
            return false;
        }
        let t = now.timestamp();
        let minute = t.div_euclid(60);
        (minute - 2..=minute).any(|m| {
            let mut rng = rng_for(self.seed, &format!("burst/{provider}/{m}"));
            if !rng.random_bool(self.chances.outage_burst) {
                return false;
            }
            let start = m * 60 + rng.random_range(0..60);
            let length = rng.random_range(10..=90);
            (start..start + length).contains(&t)
        })
    }

    /// Whether, and how, the listing of a provider taken at `now` is a glitch.
    pub fn glitch(&self, provider: &str, now: DateTime<Utc>) -> Option<Glitch> {
        if self.calm(now) {
            return None;
        }
        let mut rng = rng_for(self.seed, &format!("glitch/{provider}/{}", now.timestamp_millis()));
        if !rng.random_bool(self.chances.listing_glitch) {
            return None;
        }
        Some(match rng.random_range(0..3) {
            0 => Glitch::Empty,
            1 => Glitch::Partial,
            _ => Glitch::Null,
        })
    }

    /// Whether a partial listing taken at `now` leaves this machine out.
    pub fn omitted(&self, provider: &str, now: DateTime<Utc>, machine: &str) -> bool {
        rng_for(self.seed, &format!("omit/{provider}/{}/{machine}", now.timestamp_millis())).random_bool(0.5)
    }

    /// Whether the answer to the launch of `label` is cut off (the machine starts regardless).
    pub fn cut_off(&self, label: &str, now: DateTime<Utc>) -> bool {
        !self.calm(now) && rng_for(self.seed, &format!("cut-off/{label}")).random_bool(self.chances.cut_off)
    }

    /// The vanishing and hiding of the machine of `label`, up and running from `ready_at`: each
    /// between a minute and an hour after it is up, and only if it would happen (and a hiding
    /// end) before the calm.
    pub fn fate(&self, label: &str, ready_at: DateTime<Utc>) -> Fate {
        let mut rng = rng_for(self.seed, &format!("fate/{label}"));
        let vanishes = rng.random_bool(self.chances.vanish);
        let vanish_at = ready_at + seconds(rng.random_range(60..=3_600));
        let hides = rng.random_bool(self.chances.reappear);
        let hide_from = ready_at + seconds(rng.random_range(60..=3_600));
        let hide_until = hide_from + seconds(rng.random_range(30..=600));
        Fate {
            vanish_at: (vanishes && vanish_at < self.calm_after).then_some(vanish_at),
            hidden: (hides && hide_until < self.calm_after).then_some((hide_from, hide_until)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chaos() -> Chaos {
        Chaos {
            seed: 7,
            chances: Chances { listing_glitch: 0.5, outage_burst: 0.5, vanish: 0.5, reappear: 0.5, ..Chances::NONE },
            mean_spot_life: Some(Duration::from_secs(60)),
            boot: (Duration::from_secs(30), Duration::from_secs(120)),
            calm_after: crate::sim::epoch() + chrono::Duration::hours(6),
        }
    }

    #[test]
    fn draws_depend_on_what_they_are_about_not_on_order() {
        let c = chaos();
        let t = crate::sim::epoch() + chrono::Duration::minutes(5);
        let first: Vec<_> = (0..50).map(|i| c.glitch("sim-a", t + chrono::Duration::seconds(15 * i))).collect();
        let again: Vec<_> = (0..50).rev().map(|i| c.glitch("sim-a", t + chrono::Duration::seconds(15 * i))).collect();
        assert_eq!(first, again.into_iter().rev().collect::<Vec<_>>());
        assert!(first.contains(&Some(Glitch::Empty)) && first.contains(&Some(Glitch::Null)), "{first:?}");
        assert_eq!(c.fate("tgp-sim-0001-1", t), c.fate("tgp-sim-0001-1", t));
    }

    #[test]
    fn bursts_last_a_while_and_stop_at_the_calm() {
        let c = chaos();
        let seconds_out = (0..3_600).filter(|s| c.in_outage("sim-a", crate::sim::epoch() + seconds(*s))).count();
        assert!(seconds_out > 100 && seconds_out < 3_600, "{seconds_out} s of outage in an hour");
        assert!(!c.in_outage("sim-a", c.calm_after));
        assert_eq!(c.glitch("sim-a", c.calm_after), None);
    }
}
