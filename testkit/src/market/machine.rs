//! One machine of the in-memory market: what the provider shows of it (its status word, moved
//! along its schedule as time passes) and what it really is (its [`Truth`], which the
//! simulation's checks hold the journal against).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tgp_actors::provider::{MachineStatus, ProviderInstance};
use tgp_events::events::{Connection, InterruptionReason};
use tgp_events::{BillingGranularity, Money};

use super::misfortune::Fate;

/// Booting.
pub const STARTING: &str = "starting";
/// Up.
pub const RUNNING: &str = "running";
/// Taken back by the provider (spot); its disk is kept, and billed, until it is terminated.
pub const PREEMPTED: &str = "preempted";
/// Vanished with its host: the API no longer knows it.
pub const GONE: &str = "gone";
/// Destroyed by a terminate call.
pub const TERMINATED: &str = "terminated";

/// Where every machine of the market answers: an address of the TEST-NET-3 documentation range,
/// where nothing listens.
pub const ADDRESS: &str = "203.0.113.7";

/// What a machine really is at a moment, whatever the provider's API says about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Truth {
    /// Booting.
    Starting,
    /// Up.
    Running,
    /// Up, but out of the API's sight for a while (unlisted, `status` not found).
    Hidden,
    /// Stopped by the provider (preempted); the user's work on it is lost.
    Stopped,
    /// Vanished with its host; nothing is left.
    Gone,
    /// Destroyed by a terminate call.
    Terminated,
}

impl Truth {
    /// Whether the machine holds a user's work and would go on doing so: booting, up or hidden.
    pub fn alive(self) -> bool {
        matches!(self, Truth::Starting | Truth::Running | Truth::Hidden)
    }
}

/// One machine. The state file of `tgp-dev run --market simulated` holds these, so tests read
/// and set `status` there as an operator would read a provider's console.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Machine {
    /// Its id ([`super::MachineIds`]).
    pub id: String,
    /// The attempt label tgp gave it.
    pub label: String,
    /// The offer it was launched from.
    pub offer_id: String,
    /// Spot?
    pub spot: bool,
    /// Billed hourly price.
    pub hourly_price: Money,
    /// How it is billed.
    pub billing: BillingGranularity,
    /// When it was launched.
    pub launched_at: DateTime<Utc>,
    /// When it becomes running.
    pub ready_at: DateTime<Utc>,
    /// What the provider showed at the last call that looked ([`STARTING`], [`RUNNING`],
    /// [`PREEMPTED`], [`GONE`], [`TERMINATED`]); [`Machine::status_at`] moves it along.
    pub status: String,
    /// When the provider takes it back (spot only, and only before the calm).
    pub preempt_at: Option<DateTime<Utc>>,
    /// Whether it vanishes or hides for a while.
    #[serde(default)]
    pub fate: Fate,
    /// When a terminate call destroyed it.
    pub terminated_at: Option<DateTime<Utc>>,
}

impl Machine {
    /// Its status word at `now`: the recorded one, moved along the schedule (booted, preempted,
    /// vanished) by what has come due since. Terminated and gone are for good.
    pub fn status_at(&self, now: DateTime<Utc>) -> &str {
        let passed = |at: Option<DateTime<Utc>>| at.is_some_and(|at| at <= now);
        match self.status.as_str() {
            TERMINATED | GONE => &self.status,
            _ if passed(self.fate.vanish_at) => GONE,
            _ if passed(self.preempt_at) => PREEMPTED,
            STARTING if self.ready_at <= now => RUNNING,
            status => status,
        }
    }

    /// Records what has come due by `now`.
    pub fn advance(&mut self, now: DateTime<Utc>) {
        let status = self.status_at(now);
        if status != self.status {
            self.status = status.to_string();
        }
    }

    /// Takes it back now, as a provider reclaiming spot capacity does.
    pub fn preempt(&mut self, now: DateTime<Utc>) {
        self.preempt_at = Some(now);
        self.advance(now);
    }

    /// What it really is at `now`.
    pub fn truth(&self, now: DateTime<Utc>) -> Truth {
        match self.status_at(now) {
            TERMINATED => Truth::Terminated,
            GONE => Truth::Gone,
            PREEMPTED => Truth::Stopped,
            _ if self.fate.hidden.is_some_and(|(from, until)| from <= now && now < until) => Truth::Hidden,
            RUNNING => Truth::Running,
            _ => Truth::Starting,
        }
    }

    /// When it stopped being alive (destroyed, vanished or preempted), if it has.
    pub fn alive_until(&self) -> Option<DateTime<Utc>> {
        [self.terminated_at, self.fate.vanish_at, self.preempt_at].into_iter().flatten().min()
    }

    /// What the provider's API says about it at `now`; `None` when the API does not see it
    /// (vanished or hidden).
    pub fn describe(&self, now: DateTime<Utc>) -> Option<ProviderInstance> {
        let (raw, status) = match self.truth(now) {
            Truth::Terminated => (TERMINATED, MachineStatus::Terminated),
            Truth::Gone | Truth::Hidden => return None,
            Truth::Stopped => (PREEMPTED, MachineStatus::Interrupted(InterruptionReason::Preempted)),
            Truth::Running => (RUNNING, MachineStatus::Running),
            Truth::Starting => (STARTING, MachineStatus::Starting),
        };
        Some(ProviderInstance {
            id: self.id.clone(),
            label: Some(self.label.clone()),
            status,
            raw_status: raw.to_string(),
            connection: ssh_connection(),
            hourly_price: Some(self.hourly_price),
            billing: Some(self.billing),
        })
    }
}

/// How a machine of the market is reached: its documentation-range address, as root over SSH.
pub fn ssh_connection() -> Connection {
    Connection {
        public_ip: Some(ADDRESS.to_string()),
        ssh_host: Some(ADDRESS.to_string()),
        ssh_port: Some(22),
        ssh_user: Some("root".into()),
    }
}
