//! The instance lifecycle events, as journaled on `tgp.events.instance.<instance_id>`.
//!
//! One journal message holds the events that one decision produced, stored together so a crash
//! never leaves half a decision; [`crate::commit`] turns them into a message body and back.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::commands::LaunchRequest;
use crate::gpu::GpuType;
use crate::ids::{AttemptId, InstanceId, ProviderName};
use crate::money::Money;
use crate::policy::BillingGranularity;
use crate::region::Region;

/// The schema version of every event type this crate writes. Bumped per event type when its data
/// changes incompatibly; readers refuse versions above the one they know.
pub const SCHEMA_VERSION: u32 = 1;

/// The aggregate type of instance chains, as it appears in commits.
pub const INSTANCE_AGGREGATE: &str = "instance";

/// One offer as selection saw it: enough to explain the choice later without the provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferSummary {
    /// Which provider offers it.
    pub provider: ProviderName,
    /// The provider's own id for the offer.
    pub offer_id: String,
    /// The standard GPU type.
    pub gpu_type: GpuType,
    /// GPUs in the machine.
    pub gpu_count: u32,
    /// The standard region.
    pub region: Region,
    /// What the whole machine costs per hour on this offer (the spot price for a spot offer).
    pub hourly_price: Money,
    /// Interruptible capacity?
    pub spot: bool,
}

/// A candidate considered by selection, and what became of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// The offer.
    pub offer: OfferSummary,
    /// `selected`, or why it lost (`more expensive than ...`, `over max price`, `spot not allowed`).
    pub verdict: String,
}

/// How to reach a running machine: what a user needs next.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// The public IP address, when the provider gives one.
    pub public_ip: Option<String>,
    /// Host to SSH to (may differ from the public IP behind a provider's proxy).
    pub ssh_host: Option<String>,
    /// Port to SSH to.
    pub ssh_port: Option<u16>,
    /// Login user, when the provider says.
    pub ssh_user: Option<String>,
}

impl Connection {
    /// The command line a user types to log in, when enough is known.
    pub fn ssh_command(&self) -> Option<String> {
        let host = self.ssh_host.as_ref().or(self.public_ip.as_ref())?;
        let user = self.ssh_user.as_deref().unwrap_or("root");
        Some(match self.ssh_port {
            Some(port) if port != 22 => format!("ssh -p {port} {user}@{host}"),
            _ => format!("ssh {user}@{host}"),
        })
    }
}

/// Why a running instance stopped without being asked to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterruptionReason {
    /// Another renter bid more for the spot capacity.
    Outbid,
    /// The provider took the capacity back.
    Preempted,
    /// The host machine failed or went offline.
    HostLost,
    /// Someone stopped it outside tgp (a console, another tool).
    StoppedOutsideTgp,
    /// The provider no longer lists it at all.
    Vanished,
}

/// The class of a launch failure, the same taxonomy for every provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// No offer fitted the request.
    NoOfferFits,
    /// The provider had no capacity for the offer.
    Capacity,
    /// The credentials were refused.
    Auth,
    /// The provider asked tgp to slow down.
    RateLimited,
    /// The provider refused the request as invalid.
    InvalidRequest,
    /// The provider does not know the offer or instance.
    NotFound,
    /// The provider failed (5xx, timeout, connection).
    ProviderOutage,
    /// The provider answered in a shape tgp does not understand.
    ContractChanged,
    /// The launch was started but its outcome is unknown (reconciliation settles it).
    Unknown,
}

/// A limit of the launch command that tgp enforced by ending the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// `max_lifetime` passed since the launch was requested.
    MaxLifetime,
    /// Going on would have spent more than `budget`.
    Budget,
}

/// Everything that can happen to an instance chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum InstanceEvent {
    /// A launch was accepted: the chain exists from here on.
    LaunchRequested {
        /// The chain's id (also the last token of the subject).
        instance_id: InstanceId,
        /// The command as accepted (validated), so policy can be applied later from the journal;
        /// its env values sealed, so the journal holds their names only in clear.
        request: LaunchRequest,
        /// When tgp accepted it.
        at: DateTime<Utc>,
    },
    /// Selection chose an offer; the candidates say why this one.
    OfferSelected {
        /// The chosen offer.
        offer: OfferSummary,
        /// The bid for a spot offer, when the provider takes one (the billed price).
        bid: Option<Money>,
        /// One line on why this offer.
        reason: String,
        /// Every offer considered, with its verdict.
        candidates: Vec<Candidate>,
        /// When the choice was made.
        at: DateTime<Utc>,
    },
    /// tgp is about to call the provider. Journaled first, so a crash after the call is found again.
    LaunchAttempted {
        /// Names or labels the provider instance.
        attempt_id: AttemptId,
        /// 1-based count over the chain.
        attempt_number: u32,
        /// Which provider is called.
        provider: ProviderName,
        /// The offer launched.
        offer_id: String,
        /// When the call was started.
        at: DateTime<Utc>,
    },
    /// The provider accepted the launch: billing starts here.
    Launched {
        /// The attempt that launched it.
        attempt_id: AttemptId,
        /// The provider.
        provider: ProviderName,
        /// The provider's id for the machine.
        provider_instance_id: String,
        /// The hourly price that will be billed for the whole machine.
        hourly_price: Money,
        /// Interruptible?
        spot: bool,
        /// How the provider bills it.
        billing: BillingGranularity,
        /// True when found by reconciliation after a crash rather than from the launch answer.
        adopted: bool,
        /// When the provider accepted it.
        at: DateTime<Utc>,
    },
    /// The machine is up; here is how to reach it.
    Running {
        /// The provider's id for the machine.
        provider_instance_id: String,
        /// Address, SSH host and port.
        connection: Connection,
        /// When tgp saw it running.
        at: DateTime<Utc>,
    },
    /// A launch attempt did not produce a machine.
    LaunchFailed {
        /// The failed attempt, when one was started (none when no offer fitted).
        attempt_id: Option<AttemptId>,
        /// The provider that failed, when one was called.
        provider: Option<ProviderName>,
        /// The failure class.
        class: FailureClass,
        /// The provider's or selection's own message.
        message: String,
        /// When it failed.
        at: DateTime<Utc>,
    },
    /// A machine stopped without being asked to: billing stops here.
    Interrupted {
        /// The provider's id for the machine.
        provider_instance_id: String,
        /// The classified reason.
        reason: InterruptionReason,
        /// The evidence: the provider's raw status.
        raw_status: String,
        /// How it was noticed (`status_poll`).
        detected_by: String,
        /// When tgp noticed.
        at: DateTime<Utc>,
    },
    /// A replacement machine was launched after an interruption: billing starts again here.
    Relaunched {
        /// The attempt that launched it.
        attempt_id: AttemptId,
        /// The provider.
        provider: ProviderName,
        /// The replacement's provider id.
        provider_instance_id: String,
        /// The machine it replaces.
        replaces: String,
        /// The hourly price that will be billed.
        hourly_price: Money,
        /// Interruptible?
        spot: bool,
        /// How the provider bills it.
        billing: BillingGranularity,
        /// True when found by reconciliation after a crash.
        adopted: bool,
        /// When the provider accepted it.
        at: DateTime<Utc>,
    },
    /// Someone asked to end the chain.
    TerminationRequested {
        /// Why.
        reason: String,
        /// The launch command's limit that ended the chain, when it was not a person's request.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<Limit>,
        /// When.
        at: DateTime<Utc>,
    },
    /// The chain is over and nothing of it runs at the provider (confirmed by the provider).
    Terminated {
        /// The machine that was terminated, if one was running.
        provider_instance_id: Option<String>,
        /// When the provider confirmed.
        at: DateTime<Utc>,
    },
    /// A machine carrying one of this chain's attempt labels was found running although the
    /// journal says it must not (the chain is over, or the attempt was superseded), and tgp
    /// destroyed it. Its run was never billed in the journal: this event is the trace of it.
    OrphanTerminated {
        /// The provider.
        provider: ProviderName,
        /// The machine destroyed.
        provider_instance_id: String,
        /// The label it carried.
        attempt_id: AttemptId,
        /// What the provider said about it (its raw status).
        raw_status: String,
        /// When tgp destroyed it.
        at: DateTime<Utc>,
    },
    /// A machine the chain had declared lost (journaled `Interrupted`) was seen running again.
    /// The chain takes it back as its current machine: it holds the user's work, and its run is
    /// billed as one run from its launch, as the provider billed it. A replacement launched
    /// meanwhile is given up (`replaced_by`): its run ends here and tgp destroys it.
    Reappeared {
        /// The machine taken back.
        provider_instance_id: String,
        /// The evidence: the provider's raw status when it was seen.
        raw_status: String,
        /// How to reach it.
        #[serde(default)]
        connection: Connection,
        /// How it was seen (`status_poll`, `status_call`).
        detected_by: String,
        /// The replacement machine launched meanwhile, if any: its run ends here.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replaced_by: Option<String>,
        /// The replacement attempt whose outcome was still being settled, if any: it is given
        /// up, and a machine of it that turns up later is an orphan.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        abandoned_attempt: Option<AttemptId>,
        /// When tgp saw it.
        at: DateTime<Utc>,
    },
    /// No offer fits now, but the chain has attempts left: it waits for capacity, selecting again
    /// at each offers refresh, until `until` (the launch's `wait_for_capacity`). Journaled once per
    /// wait.
    WaitingForCapacity {
        /// Why nothing fits now (selection's own message).
        reason: String,
        /// When the wait ends; the chain fails then if still nothing fits.
        until: DateTime<Utc>,
        /// When the wait began.
        at: DateTime<Utc>,
    },
    /// The chain gave up: attempts exhausted, no offer fits, or a fatal error.
    Failed {
        /// Why, in words.
        reason: String,
        /// When.
        at: DateTime<Utc>,
    },
}

impl InstanceEvent {
    /// The event's type name, as in the `type` field and the `Tgp-Event-Types` header.
    pub fn type_name(&self) -> &'static str {
        match self {
            InstanceEvent::LaunchRequested { .. } => "LaunchRequested",
            InstanceEvent::OfferSelected { .. } => "OfferSelected",
            InstanceEvent::LaunchAttempted { .. } => "LaunchAttempted",
            InstanceEvent::Launched { .. } => "Launched",
            InstanceEvent::Running { .. } => "Running",
            InstanceEvent::LaunchFailed { .. } => "LaunchFailed",
            InstanceEvent::Interrupted { .. } => "Interrupted",
            InstanceEvent::Relaunched { .. } => "Relaunched",
            InstanceEvent::TerminationRequested { .. } => "TerminationRequested",
            InstanceEvent::Terminated { .. } => "Terminated",
            InstanceEvent::Failed { .. } => "Failed",
            InstanceEvent::OrphanTerminated { .. } => "OrphanTerminated",
            InstanceEvent::Reappeared { .. } => "Reappeared",
            InstanceEvent::WaitingForCapacity { .. } => "WaitingForCapacity",
        }
    }
}

#[cfg(feature = "cqrs")]
impl cqrs_es::DomainEvent for InstanceEvent {
    fn event_type(&self) -> String {
        self.type_name().to_string()
    }
    fn event_version(&self) -> String {
        SCHEMA_VERSION.to_string()
    }
}
