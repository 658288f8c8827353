//! Where an offer falls short of a launch's [`Needs`]: decided without allocating, since selection
//! asks it of every offer in a search and writes out only the verdicts it keeps.

use std::fmt;

use rust_decimal::Decimal;
use tgp_events::{Needs, ProviderName};

use crate::provider::{DiskRoom, Offer};

/// Why an offer does not meet a launch's needs; its `Display` is the verdict journaled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shortfall<'a> {
    /// The launch's provider lists leave this provider out.
    ProviderLeftOut(&'a ProviderName),
    /// Less disk than asked.
    DiskTooSmall {
        /// GB the offer holds at most.
        room: u32,
        /// GB asked.
        asked: u32,
    },
    /// The offer does not say how much disk it holds.
    DiskUnknown {
        /// GB asked.
        asked: u32,
    },
    /// Less of a resource than asked.
    Below {
        /// The resource, as a verdict names it (`CPU RAM`, `vCPUs`).
        what: &'static str,
        /// Its unit, with a leading space (`" GB"`), or none.
        unit: &'static str,
        /// What the offer has.
        has: u32,
        /// What was asked.
        asked: u32,
    },
    /// The offer does not say how much of a resource it has.
    Silent {
        /// The resource.
        what: &'static str,
        /// Its unit.
        unit: &'static str,
        /// What was asked.
        asked: u32,
    },
    /// A reliability score under the minimum.
    Unreliable {
        /// The offer's score.
        score: Decimal,
        /// The minimum asked.
        min: Decimal,
    },
    /// No reliability score, and a minimum was asked.
    NoScore {
        /// The minimum asked.
        min: Decimal,
    },
    /// Not a secure host, and only secure hosts were asked.
    NotSecure,
    /// The offer does not say whether its host is secure.
    SecureUnknown,
}

impl fmt::Display for Shortfall<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shortfall::ProviderLeftOut(p) => write!(f, "provider {p} is left out by the launch"),
            Shortfall::DiskTooSmall { room, asked } => write!(f, "holds at most {room} GB of disk, {asked} asked"),
            Shortfall::DiskUnknown { asked } => write!(f, "does not say how much disk it holds; {asked} GB asked"),
            Shortfall::Below { what, unit, has, asked } => write!(f, "has {has}{unit} {what}, {asked}{unit} asked"),
            Shortfall::Silent { what, unit, asked } => write!(f, "does not say its {what}; {asked}{unit} asked"),
            Shortfall::Unreliable { score, min } => write!(f, "reliability {score} is under {min}"),
            Shortfall::NoScore { min } => write!(f, "gives no reliability score; at least {min} asked"),
            Shortfall::NotSecure => f.write_str("not a secure host (secure_only)"),
            Shortfall::SecureUnknown => f.write_str("does not say whether its host is secure (secure_only)"),
        }
    }
}

/// Where an offer falls short of a launch's needs, or `None` when it meets them all. An offer that
/// does not say what a need asks about falls short: tgp cannot vouch for what it was not told.
pub fn unmet<'a>(needs: &Needs, offer: &'a Offer) -> Option<Shortfall<'a>> {
    let specs = &offer.specs;
    if !needs.allows(&offer.provider) {
        return Some(Shortfall::ProviderLeftOut(&offer.provider));
    }
    if let Some(asked) = needs.disk_gb {
        match specs.disk {
            DiskRoom::UpTo(room) if room < asked => return Some(Shortfall::DiskTooSmall { room, asked }),
            DiskRoom::Unknown => return Some(Shortfall::DiskUnknown { asked }),
            DiskRoom::UpTo(_) | DiskRoom::PlacedAtLaunch => {}
        }
    }
    let at_least = |what, unit, asked: Option<u32>, has: Option<u32>| match (asked, has) {
        (Some(asked), Some(has)) if has < asked => Some(Shortfall::Below { what, unit, has, asked }),
        (Some(asked), None) => Some(Shortfall::Silent { what, unit, asked }),
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
            Some(score) if score < min => return Some(Shortfall::Unreliable { score, min }),
            None => return Some(Shortfall::NoScore { min }),
            Some(_) => {}
        }
    }
    match (needs.secure_only, specs.secure) {
        (true, Some(false)) => Some(Shortfall::NotSecure),
        (true, None) => Some(Shortfall::SecureUnknown),
        _ => None,
    }
}
