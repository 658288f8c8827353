//! What an observation proves: the rules that turn listings, status answers and unclear launch
//! answers into the facts a chain journals.
//!
//! A listing can be empty, partial or stale, and an answer can be lost after the provider acted.
//! So nothing here concludes from one look:
//! - A machine absent from a listing is lost only when its own status call says so (not found,
//!   or terminated), or when it is absent from [`EvidenceConfig::absent_listings`] listings taken
//!   at least [`EvidenceConfig::absent_spacing`] apart, none of them suspect. An error confirms
//!   nothing.
//! - A listing that leaves out more than half (and at least a few) of the machines expected there
//!   is suspect: it counts toward no absence. The provider is listed again at once; only if that
//!   listing is suspect too is each absent machine asked about by itself (one listing is cheaper
//!   than a status call per machine, and a glitch rarely lasts).
//! - A launch whose answer is unclear is settled by looking for its attempt's label for a window.
//! - A machine declared lost that turns up running is taken back (`Reappeared`).
//! - A machine is destroyed as an orphan only with positive evidence its chain does not want it.
//!
//! Everything here is pure: the instance actor makes the calls and journals what these say.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tgp_events::api::InstanceState;
use tgp_events::events::{FailureClass, InterruptionReason};
use tgp_events::{AttemptId, BillingGranularity, InstanceId};

use crate::aggregate::{Instance, InstanceCommand};
use crate::provider::{MachineStatus, ProviderError, ProviderInstance, ProviderListing};

/// How much evidence tgp wants before it concludes, and how long it settles unclear launches.
#[derive(Clone, Debug, PartialEq)]
pub struct EvidenceConfig {
    /// Consecutive listings a machine must be absent from to be lost without a definite status
    /// answer (K).
    pub absent_listings: u32,
    /// How far apart those listings must be (T); `None`: one poll interval.
    pub absent_spacing: Option<Duration>,
    /// A listing that leaves out at least this many expected machines...
    pub suspect_min_omitted: u32,
    /// ...and more than this share of them (in percent) is suspect.
    pub suspect_share_percent: u32,
    /// An unclear launch is settled after this many polls...
    pub settle_polls: u32,
    /// ...or this long, whichever is longer.
    pub settle_min: Duration,
}

impl Default for EvidenceConfig {
    fn default() -> Self {
        EvidenceConfig {
            absent_listings: 2,
            absent_spacing: None,
            suspect_min_omitted: 3,
            suspect_share_percent: 50,
            settle_polls: 3,
            settle_min: Duration::from_secs(120),
        }
    }
}

impl EvidenceConfig {
    /// The settlement window for a poll interval: `settle_polls` polls or `settle_min`.
    pub fn settle_window(&self, poll_interval: Duration) -> Duration {
        (poll_interval * self.settle_polls).max(self.settle_min)
    }

    /// Whether a listing that left out `omitted` of `expected` machines is suspect.
    pub fn is_suspect(&self, expected: u32, omitted: u32) -> bool {
        omitted >= self.suspect_min_omitted
            && u64::from(omitted) * 100 > u64::from(expected) * u64::from(self.suspect_share_percent)
    }
}

/// How a launch call that erred ended, by the class of its error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LaunchAnswer {
    /// The provider said no, clearly: nothing was started.
    Refused,
    /// The call ended without a clear answer (a timeout, a 5xx, an answer cut off or not
    /// understood): the provider may have started the machine. Settled by looking for its label.
    Unclear,
}

impl LaunchAnswer {
    /// The answer a launch error gives. A 429 is a clear no; an outage or a malformed answer may
    /// hide a machine that was started.
    pub fn of(class: FailureClass) -> Self {
        match class {
            FailureClass::ProviderOutage | FailureClass::ContractChanged | FailureClass::Unknown => {
                LaunchAnswer::Unclear
            }
            _ => LaunchAnswer::Refused,
        }
    }
}

/// A chain's record of the consecutive listings its machine was absent from. Kept in memory: a
/// restart starts the count again, which only asks for more evidence.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Absence {
    /// The machine counted, the listings counted, and when the last counted one was taken.
    counted: Option<(String, u32, DateTime<Utc>)>,
}

impl Absence {
    /// Counts a listing `machine` was absent from (unless it is suspect, or closer than `spacing`
    /// to the last one counted) and answers how many count now.
    pub fn note(&mut self, machine: &str, listing: &ProviderListing, spacing: Duration) -> u32 {
        let spacing = chrono::Duration::from_std(spacing).unwrap_or(chrono::Duration::MAX);
        match &mut self.counted {
            Some((id, count, last)) if id == machine => {
                if listing.suspect == 0 && listing.taken_at - *last >= spacing {
                    *count += 1;
                    *last = listing.taken_at;
                }
                *count
            }
            _ if listing.suspect > 0 => 0,
            _ => {
                self.counted = Some((machine.to_string(), 1, listing.taken_at));
                1
            }
        }
    }

    /// The machine was seen: the count starts again.
    pub fn clear(&mut self) {
        self.counted = None;
    }
}

/// What a listing tells a chain.
#[derive(Clone, Debug, PartialEq)]
pub enum Observed {
    /// Nothing to journal.
    Nothing,
    /// A fact to journal (boxed: commands are large, and most listings say nothing).
    Command(Box<InstanceCommand>),
    /// The chain's machine is absent: ask the provider about it before concluding anything.
    Absent(String),
}

/// What a provider listing tells this chain at `at`. `settle_window` is how long an unclear
/// launch is looked for before its attempt is failed.
pub fn observation(
    instance: &Instance,
    listing: &ProviderListing,
    at: DateTime<Utc>,
    settle_window: Duration,
) -> Observed {
    if let Some(command) = reappeared(instance, listing, at) {
        return Observed::Command(Box::new(command));
    }
    if let Some((attempt_id, started)) = &instance.pending_attempt {
        let Some((offer, bid)) = instance.offer.as_ref() else { return Observed::Nothing };
        if offer.provider != listing.provider || listing.taken_at <= *started {
            return Observed::Nothing;
        }
        return match listing.by_label(attempt_id) {
            Some(machine) => Observed::Command(Box::new(InstanceCommand::RecordLaunched {
                attempt_id: attempt_id.clone(),
                provider_instance_id: machine.id.clone(),
                hourly_price: machine.hourly_price.or(*bid).unwrap_or(offer.hourly_price),
                billing: machine.billing.unwrap_or(BillingGranularity::PER_SECOND),
                adopted: true,
                at,
            })),
            None if listing.suspect > 0 => Observed::Nothing,
            None if listing.taken_at - *started >= chrono::Duration::from_std(settle_window).unwrap_or_default() => {
                Observed::Command(Box::new(InstanceCommand::RecordLaunchFailed {
                    attempt_id: attempt_id.clone(),
                    class: FailureClass::Unknown,
                    message: format!(
                        "the launch call's answer was unclear, and no machine labelled {attempt_id} appeared at {} \
                         within {}s",
                        listing.provider,
                        settle_window.as_secs()
                    ),
                    at,
                }))
            }
            None => Observed::Nothing,
        };
    }
    let Some(machine) = instance.machine.as_ref() else { return Observed::Nothing };
    if machine.provider.as_ref() != Some(&listing.provider) {
        return Observed::Nothing;
    }
    let Some(state) = instance.current_state() else { return Observed::Nothing };
    match listing.by_id.get(&machine.id) {
        None if machine.launched_at.is_some_and(|t| listing.taken_at <= t) => Observed::Nothing,
        None => Observed::Absent(machine.id.clone()),
        Some(seen) => seen_says(instance, state, seen, "status_poll", at)
            .map_or(Observed::Nothing, |c| Observed::Command(Box::new(c))),
    }
}

/// A machine of this chain declared lost, seen running again in the listing.
fn reappeared(instance: &Instance, listing: &ProviderListing, at: DateTime<Utc>) -> Option<InstanceCommand> {
    if instance.current_state()? == InstanceState::Terminating {
        return None;
    }
    let back = instance.lost.iter().rev().find_map(|lost| {
        (lost.machine.provider.as_ref() == Some(&listing.provider))
            .then(|| listing.by_id.get(&lost.machine.id))
            .flatten()
            .filter(|m| m.status == MachineStatus::Running)
    })?;
    Some(InstanceCommand::RecordReappeared {
        provider_instance_id: back.id.clone(),
        raw_status: back.raw_status.clone(),
        connection: back.connection.clone(),
        detected_by: "status_poll".to_string(),
        at,
    })
}

/// What the provider's own word on the chain's current machine says (`detected_by` names where
/// it came from: a listing or a status call).
fn seen_says(
    instance: &Instance,
    state: InstanceState,
    seen: &ProviderInstance,
    detected_by: &str,
    at: DateTime<Utc>,
) -> Option<InstanceCommand> {
    let machine = instance.machine.as_ref()?;
    let interrupted = |reason, raw_status: &str| InstanceCommand::RecordInterrupted {
        provider_instance_id: machine.id.clone(),
        reason,
        raw_status: raw_status.to_string(),
        detected_by: detected_by.to_string(),
        at,
    };
    match seen.status {
        MachineStatus::Running if state == InstanceState::Starting => Some(InstanceCommand::RecordRunning {
            provider_instance_id: machine.id.clone(),
            connection: seen.connection.clone(),
            at,
        }),
        MachineStatus::Interrupted(reason) if state != InstanceState::Terminating => {
            Some(interrupted(reason, &seen.raw_status))
        }
        MachineStatus::Terminated if state == InstanceState::Terminating => {
            Some(InstanceCommand::RecordTerminated { at })
        }
        MachineStatus::Terminated => Some(interrupted(InterruptionReason::StoppedOutsideTgp, &seen.raw_status)),
        _ => None,
    }
}

/// What the chain may conclude about its machine, absent from a listing, from the machine's own
/// status call and the count of listings it was absent from (`absences` of the `needed`).
/// `Seen` means the provider answered for the machine: the listing was wrong. `Confirmed` carries
/// the fact to journal (gone, stopped, or up while booting); `Unconfirmed` concludes nothing yet.
pub fn confirmation(
    instance: &Instance,
    status: &Result<ProviderInstance, ProviderError>,
    absences: u32,
    needed: u32,
    at: DateTime<Utc>,
) -> Confirmation {
    let Some(state) = instance.current_state() else { return Confirmation::Unconfirmed };
    let Some(machine) = instance.machine.as_ref() else { return Confirmation::Unconfirmed };
    let gone = |raw_status: String, detected_by: &str| {
        Confirmation::Confirmed(Box::new(if state == InstanceState::Terminating {
            InstanceCommand::RecordTerminated { at }
        } else {
            InstanceCommand::RecordInterrupted {
                provider_instance_id: machine.id.clone(),
                reason: InterruptionReason::Vanished,
                raw_status,
                detected_by: detected_by.to_string(),
                at,
            }
        }))
    };
    match status {
        Err(e) if e.class == FailureClass::NotFound => {
            gone(format!("absent from the listing; status call: not found ({})", e.message), "status_call")
        }
        Ok(seen) => match seen_says(instance, state, seen, "status_call", at) {
            Some(command) => Confirmation::Confirmed(Box::new(command)),
            None => Confirmation::Seen,
        },
        Err(_) if absences >= needed => {
            gone(format!("absent from {absences} consecutive listings; the status call failed"), "status_poll")
        }
        Err(_) => Confirmation::Unconfirmed,
    }
}

/// What a status call and the listings together establish about an absent machine.
#[derive(Clone, Debug, PartialEq)]
pub enum Confirmation {
    /// A fact to journal: the machine is gone, stopped, or (while booting) up.
    Confirmed(Box<InstanceCommand>),
    /// The provider still shows it: the listing was wrong.
    Seen,
    /// Not enough evidence yet: look again at the next poll.
    Unconfirmed,
}

/// Machines carrying this chain's label that the journal accounts for nowhere and that still
/// exist: an attempt that was superseded (settled as failed, then retried) and came up after
/// all, a replacement given up when the original reappeared, or a machine declared lost that
/// lingers stopped. They are destroyed only with positive evidence that the chain does not want
/// them: the chain runs on another machine, or it was asked to terminate. A machine the chain
/// declared lost that is up again is never one of them while the chain runs (it is taken back),
/// nor is the attempt still being settled.
pub fn own_orphans(
    instance: &Instance,
    id: &InstanceId,
    listing: &ProviderListing,
) -> Vec<(AttemptId, ProviderInstance)> {
    let terminating = match instance.current_state() {
        Some(InstanceState::Running) => false,
        Some(InstanceState::Terminating) => true,
        _ => return Vec::new(),
    };
    let current = instance.machine.as_ref().map(|m| m.id.as_str());
    let pending = instance.pending_attempt.as_ref().map(|(a, _)| a);
    listing
        .of_instance(id)
        .filter(|(attempt, m)| {
            m.status.still_exists()
                && Some(m.id.as_str()) != current
                && Some(*attempt) != pending
                && (terminating
                    || instance.lost_machine(&m.id).is_none()
                    || !matches!(m.status, MachineStatus::Running | MachineStatus::Starting))
        })
        .map(|(attempt, m)| (attempt.clone(), m.clone()))
        .collect()
}
