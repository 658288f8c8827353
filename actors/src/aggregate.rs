//! The instance aggregate: the rules of one instance chain's life, as cqrs-es's `Aggregate`.
//!
//! It decides, it never acts: each command either yields the events that record a legal step or is
//! refused with an [`InstanceError`]. The instance actor performs the provider calls around it and
//! feeds their outcomes back in as commands, so every fact is journaled before anything relies on
//! it. The state it keeps is only what those rules need (and what `tgp.api.get` answers).

use chrono::{DateTime, Duration, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tgp_events::api::{InstanceState, InstanceSummary};
use tgp_events::events::{
    Candidate, Connection, FailureClass, INSTANCE_AGGREGATE, InstanceEvent, InterruptionReason, Limit, OfferSummary,
};
use tgp_events::span::Span;
use tgp_events::{AttemptId, BillingGranularity, InstanceId, LaunchRequest, Money, ProviderName};

use crate::selection::offering_key;

/// How long before a budget runs out the chain is stopped: time for the termination call, so the
/// run's billed end stays inside the budget.
pub const BUDGET_MARGIN: Duration = Duration::seconds(60);

/// What the instance actor asks of the aggregate.
#[derive(Clone, Debug, PartialEq)]
pub enum InstanceCommand {
    /// Start a chain.
    RequestLaunch {
        /// The chain's id.
        id: InstanceId,
        /// The validated command.
        request: LaunchRequest,
        /// When it was accepted.
        at: DateTime<Utc>,
    },
    /// Record the chosen offer.
    SelectOffer {
        /// The winner.
        offer: OfferSummary,
        /// The bid for spot.
        bid: Option<Money>,
        /// Why.
        reason: String,
        /// Everything considered.
        candidates: Vec<Candidate>,
        /// When.
        at: DateTime<Utc>,
    },
    /// Record that no offer fits now: the chain waits for capacity (up to its launch's
    /// `wait_for_capacity`), or fails when the wait is over or cannot help.
    NoOfferFits {
        /// Why.
        message: String,
        /// Whether waiting could help: false when only the budget rules every price out.
        can_wait: bool,
        /// When.
        at: DateTime<Utc>,
    },
    /// Record the start of a provider call for the selected offer.
    StartAttempt {
        /// When.
        at: DateTime<Utc>,
    },
    /// Record the provider's acceptance of an attempt.
    RecordLaunched {
        /// Which attempt.
        attempt_id: AttemptId,
        /// The provider's machine id.
        provider_instance_id: String,
        /// The billed hourly price.
        hourly_price: Money,
        /// How it bills.
        billing: BillingGranularity,
        /// Found by reconciliation rather than from the call's answer.
        adopted: bool,
        /// When.
        at: DateTime<Utc>,
    },
    /// Record a failed attempt.
    RecordLaunchFailed {
        /// Which attempt.
        attempt_id: AttemptId,
        /// The failure class.
        class: FailureClass,
        /// The provider's message.
        message: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// Record that the machine is up (repeats are ignored: status polls repeat).
    RecordRunning {
        /// The machine seen running.
        provider_instance_id: String,
        /// How to reach it.
        connection: Connection,
        /// When.
        at: DateTime<Utc>,
    },
    /// Record that the machine stopped without being asked.
    RecordInterrupted {
        /// The machine.
        provider_instance_id: String,
        /// Classified reason.
        reason: InterruptionReason,
        /// The provider's raw status.
        raw_status: String,
        /// How it was noticed.
        detected_by: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// Record that a machine the chain declared lost was seen running again.
    RecordReappeared {
        /// The machine.
        provider_instance_id: String,
        /// The provider's raw status.
        raw_status: String,
        /// How to reach it.
        connection: Connection,
        /// How it was seen.
        detected_by: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// Ask for the end of the chain.
    RequestTermination {
        /// Why.
        reason: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// Record that a machine labelled with one of this chain's superseded attempts was destroyed.
    RecordOrphanCleanup {
        /// Its provider.
        provider: ProviderName,
        /// The machine.
        provider_instance_id: String,
        /// Its label.
        attempt_id: AttemptId,
        /// The provider's raw status.
        raw_status: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// End the chain if one of its limits (max lifetime, budget) is reached at `at`; nothing
    /// otherwise. The actor sends it when a limit's deadline passes.
    EnforceLimits {
        /// When.
        at: DateTime<Utc>,
    },
    /// Record the provider's confirmation that nothing runs.
    RecordTerminated {
        /// When.
        at: DateTime<Utc>,
    },
}

/// Why a command was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InstanceError {
    /// A launch for an instance that already exists.
    #[error("instance already exists (state {0})")]
    AlreadyExists(&'static str),
    /// Any command but a launch for an instance that does not exist.
    #[error("no such instance")]
    NotFound,
    /// The command does not fit where the chain is (an event out of order).
    #[error("cannot {action} while {state}")]
    WrongState {
        /// What was asked.
        action: &'static str,
        /// Where the chain is.
        state: &'static str,
    },
    /// An outcome for an attempt or machine that is not the current one.
    #[error("stale {what}: expected {expected}, got {got}")]
    Stale {
        /// Attempt or machine.
        what: &'static str,
        /// The current one.
        expected: String,
        /// The one reported.
        got: String,
    },
    /// Termination asked twice.
    #[error("termination already requested")]
    AlreadyTerminating,
    /// The chain is over.
    #[error("instance is already {0}")]
    Finished(&'static str),
}

/// The machine currently billed for this chain.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Its provider.
    pub provider: Option<ProviderName>,
    /// The provider's id.
    pub id: String,
    /// The hourly price billed.
    pub hourly_price: Money,
    /// When billing started: listings taken before this may not show it yet.
    pub launched_at: Option<DateTime<Utc>>,
    /// How the provider bills it: what its run costs when it ends.
    #[serde(default)]
    pub billing: Option<BillingGranularity>,
}

impl Machine {
    /// Dollar-seconds (price x billed seconds, exact) of a run of this machine ending at `end`.
    fn billed_dollar_seconds(&self, end: DateTime<Utc>) -> Decimal {
        let Some(start) = self.launched_at else { return Decimal::ZERO };
        let seconds = self.billing.unwrap_or(BillingGranularity::PER_SECOND).billed_seconds_between(start, end);
        self.hourly_price.as_decimal() * Decimal::from(seconds)
    }

    /// The latest moment this machine may run and keep its billed cost within `dollar_seconds`,
    /// given the provider's billing unit and minimum; `None` while its start is unknown.
    fn affordable_until(&self, dollar_seconds: Decimal) -> Option<DateTime<Utc>> {
        let start = self.launched_at?;
        let price = self.hourly_price.as_decimal();
        if price <= Decimal::ZERO {
            return None;
        }
        let billing = self.billing.unwrap_or(BillingGranularity::PER_SECOND);
        let seconds = u64::try_from((dollar_seconds / price).floor().max(Decimal::ZERO)).unwrap_or(u64::MAX);
        // The billed time of a run is its length rounded up to the unit, then raised to the
        // minimum: the longest affordable run ends on a unit boundary.
        let unit = billing.unit_seconds();
        let affordable = if u64::from(billing.minimum_seconds) > seconds { 0 } else { seconds / unit * unit };
        // Beyond chrono's range the budget is no limit at all.
        let end = start.checked_add_signed(Duration::try_seconds(i64::try_from(affordable).ok()?)?)? - BUDGET_MARGIN;
        Some(end.max(start))
    }
}

/// A machine the chain declared lost (`Interrupted`), kept so it can be taken back if it turns
/// up running again, and never destroyed as an orphan while the chain lives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LostMachine {
    /// The machine as it was billed.
    pub machine: Machine,
    /// Why it was declared lost.
    pub reason: InterruptionReason,
    /// When: its run was closed here.
    pub at: DateTime<Utc>,
}

/// The state of one instance chain, folded from its events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// The chain's id; `None` before `LaunchRequested`.
    pub id: Option<InstanceId>,
    /// Where it is; meaningless while `id` is `None`.
    pub state: Option<InstanceState>,
    /// The accepted command (policy and image), boxed to keep idle instances small.
    pub request: Option<Box<LaunchRequest>>,
    /// The offer chosen for the next or current attempt, with its bid.
    pub offer: Option<(OfferSummary, Option<Money>)>,
    /// Attempts started so far.
    pub attempts: u32,
    /// An attempt journaled whose outcome is not yet known, with when it started.
    pub pending_attempt: Option<(AttemptId, DateTime<Utc>)>,
    /// The machine being billed, while one is.
    pub machine: Option<Machine>,
    /// The last machine lost to an interruption: a later launch is a relaunch replacing it.
    pub replaces: Option<Machine>,
    /// How to reach the machine, once running.
    pub connection: Option<Connection>,
    /// Offerings that failed or were interrupted, avoided by the next selection.
    pub avoid: Vec<String>,
    /// When the launch was requested: the start of `max_lifetime`.
    #[serde(default)]
    pub requested_at: Option<DateTime<Utc>>,
    /// What the chain's finished runs cost, in dollar-seconds (price x billed seconds, exact).
    #[serde(default)]
    pub spent_dollar_seconds: Decimal,
    /// Setbacks (interruptions, failed launches other than for capacity) since the chain last
    /// ran, and when the last one happened: the relaunch backoff grows with them.
    #[serde(default)]
    pub setbacks: Option<(u32, DateTime<Utc>)>,
    /// Machines declared lost while the chain lives, oldest first.
    #[serde(default)]
    pub lost: Vec<LostMachine>,
    /// While the chain waits for capacity: when the wait ends.
    #[serde(default)]
    pub waiting_until: Option<DateTime<Utc>>,
}

impl Instance {
    /// Where the chain is, for replies; `None` before it exists.
    pub fn current_state(&self) -> Option<InstanceState> {
        self.id.as_ref().and(self.state)
    }

    fn state_name(&self) -> &'static str {
        self.current_state().map_or("absent", InstanceState::name)
    }

    /// The reply body for `tgp.api.*`.
    pub fn summary(&self) -> Option<InstanceSummary> {
        Some(InstanceSummary {
            instance_id: self.id.clone()?,
            state: self.state?,
            provider: self
                .machine
                .as_ref()
                .and_then(|m| m.provider.clone())
                .or_else(|| self.offer.as_ref().map(|(o, _)| o.provider.clone())),
            provider_instance_id: self.machine.as_ref().map(|m| m.id.clone()),
            hourly_price: self.machine.as_ref().map(|m| m.hourly_price),
            connection: self.connection.clone(),
        })
    }

    /// The first limit of the launch command that will be reached, and when: the chain's
    /// `max_lifetime`, or the moment its current run would bill past `budget` (less
    /// [`BUDGET_MARGIN`]); a spent budget is reached at once when no machine runs.
    pub fn limit_deadline(&self) -> Option<(Limit, DateTime<Utc>)> {
        let request = self.request.as_ref()?;
        let lifetime = request
            .max_lifetime
            .zip(self.requested_at)
            .and_then(|(span, requested)| requested.checked_add_signed(span.to_chrono()?))
            .map(|end| (Limit::MaxLifetime, end));
        let budget = self.budget_left().and_then(|left| {
            match &self.machine {
                Some(machine) => machine.affordable_until(left),
                None if left <= Decimal::ZERO => self.setbacks.map(|(_, at)| at).or(self.requested_at),
                None => None,
            }
            .map(|at| (Limit::Budget, at))
        });
        match (lifetime, budget) {
            (Some(l), Some(b)) => Some(if b.1 < l.1 { b } else { l }),
            (l, b) => l.or(b),
        }
    }

    /// Whether what is left of the budget pays for a run at `hourly_price` long enough to be worth
    /// starting: the provider's minimum billed period, and a minute beyond [`BUDGET_MARGIN`].
    /// Always true without a budget.
    pub fn can_afford(&self, hourly_price: Money, billing: BillingGranularity) -> bool {
        let Some(left) = self.budget_left() else { return true };
        let shortest = billing.billed_seconds(2 * BUDGET_MARGIN.num_seconds() as u64);
        hourly_price.as_decimal() * Decimal::from(shortest) <= left
    }

    /// What is left of the budget, in dollar-seconds; `None` without a budget (or one too large to
    /// count, which limits nothing).
    fn budget_left(&self) -> Option<Decimal> {
        let budget = self.request.as_ref()?.budget?;
        Some(budget.as_decimal().checked_mul(Decimal::from(3_600))? - self.spent_dollar_seconds)
    }

    /// When the next attempt may start, while the chain waits out a relaunch backoff.
    pub fn backoff_until(&self) -> Option<DateTime<Utc>> {
        if !matches!(self.current_state(), Some(InstanceState::Requested | InstanceState::Interrupted)) {
            return None;
        }
        let (setbacks, at) = self.setbacks?;
        let wait = self.request.as_ref()?.relaunch.backoff(setbacks);
        Some(at + Duration::from_std(wait).unwrap_or(Duration::MAX))
    }

    /// The next moment the chain must act of its own accord (a backoff ends or a limit is
    /// reached), so its actor can set one timer.
    pub fn next_wake(&self) -> Option<DateTime<Utc>> {
        let state = self.current_state()?;
        if state.is_final() {
            return None;
        }
        let limit = self.limit_deadline().filter(|_| state != InstanceState::Terminating).map(|(_, at)| at);
        // A chain waiting for capacity selected after its backoff: the backoff, long past, is no
        // reason to wake (waking for a past moment again and again would be a hot loop); the
        // actor rechecks capacity on its own timer.
        let backoff = self.backoff_until().filter(|_| self.waiting_until.is_none());
        match (limit, backoff) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn close_run(&mut self, end: DateTime<Utc>) {
        if let Some(machine) = self.machine.take() {
            self.spent_dollar_seconds += machine.billed_dollar_seconds(end);
        }
    }

    /// The machine declared lost with this provider id, if any.
    pub fn lost_machine(&self, provider_instance_id: &str) -> Option<&LostMachine> {
        self.lost.iter().find(|l| l.machine.id == provider_instance_id)
    }

    fn capacity_wait(&self) -> Span {
        self.request.as_ref().map_or(Span::from_secs(0), |r| r.capacity_wait())
    }

    fn max_attempts(&self) -> u32 {
        self.request.as_ref().map_or(1, |r| r.relaunch.max_attempts)
    }

    fn exists(&self) -> Result<InstanceState, InstanceError> {
        self.current_state().ok_or(InstanceError::NotFound)
    }

    fn wrong(&self, action: &'static str) -> InstanceError {
        InstanceError::WrongState { action, state: self.state_name() }
    }

    fn require_attempt(&self, attempt_id: &AttemptId) -> Result<(), InstanceError> {
        match &self.pending_attempt {
            Some((pending, _)) if pending == attempt_id => Ok(()),
            Some((pending, _)) => Err(InstanceError::Stale {
                what: "attempt",
                expected: pending.to_string(),
                got: attempt_id.to_string(),
            }),
            None => Err(self.wrong("record a launch outcome")),
        }
    }

    fn require_machine(&self, id: &str) -> Result<(), InstanceError> {
        match &self.machine {
            Some(m) if m.id == id => Ok(()),
            Some(m) => Err(InstanceError::Stale { what: "machine", expected: m.id.clone(), got: id.to_string() }),
            None => Err(self.wrong("observe a machine")),
        }
    }

    /// The events a command produces, or why it is refused.
    pub fn decide(&self, command: InstanceCommand) -> Result<Vec<InstanceEvent>, InstanceError> {
        use InstanceCommand as C;
        use InstanceState as S;
        if let C::RequestLaunch { id, request, at } = command {
            return match self.current_state() {
                Some(state) => Err(InstanceError::AlreadyExists(state.name())),
                None => Ok(vec![InstanceEvent::LaunchRequested { instance_id: id, request, at }]),
            };
        }
        let state = self.exists()?;
        if let C::RecordOrphanCleanup { provider, provider_instance_id, attempt_id, raw_status, at } = command {
            // A fact about the provider, accepted in every state, finished ones included; never
            // about the machine the chain is billing for.
            if self.machine.as_ref().is_some_and(|m| m.id == provider_instance_id)
                || self.pending_attempt.as_ref().is_some_and(|(a, _)| *a == attempt_id)
            {
                return Err(self.wrong("clean up its own current machine"));
            }
            return Ok(vec![InstanceEvent::OrphanTerminated {
                provider,
                provider_instance_id,
                attempt_id,
                raw_status,
                at,
            }]);
        }
        if state.is_final() {
            return Err(InstanceError::Finished(state.name()));
        }
        match command {
            C::RequestLaunch { .. } | C::RecordOrphanCleanup { .. } => unreachable!("handled above"),
            C::SelectOffer { offer, bid, reason, candidates, at } => {
                if !matches!(state, S::Requested | S::Interrupted) {
                    return Err(self.wrong("select an offer"));
                }
                Ok(vec![InstanceEvent::OfferSelected { offer, bid, reason, candidates, at }])
            }
            C::NoOfferFits { message, can_wait, at } => {
                if !matches!(state, S::Requested | S::Interrupted) {
                    return Err(self.wrong("give up selection"));
                }
                let wait = self.capacity_wait();
                let until = wait.to_chrono().and_then(|w| at.checked_add_signed(w));
                match (self.waiting_until, until) {
                    (Some(until), _) if can_wait && at < until => return Ok(vec![]),
                    (None, Some(until)) if can_wait && until > at => {
                        return Ok(vec![InstanceEvent::WaitingForCapacity { reason: message, until, at }]);
                    }
                    _ => {}
                }
                let message = match self.waiting_until {
                    Some(_) => format!("waited wait_for_capacity {wait} and still {message}"),
                    None => message,
                };
                Ok(vec![
                    InstanceEvent::LaunchFailed {
                        attempt_id: None,
                        provider: None,
                        class: FailureClass::NoOfferFits,
                        message: message.clone(),
                        at,
                    },
                    InstanceEvent::Failed { reason: format!("no offer fits: {message}"), at },
                ])
            }
            C::StartAttempt { at } => {
                let (Some((offer, _)), None, S::Launching) = (&self.offer, &self.pending_attempt, state) else {
                    return Err(self.wrong("start a launch attempt"));
                };
                let id = self.id.as_ref().expect("exists");
                Ok(vec![InstanceEvent::LaunchAttempted {
                    attempt_id: AttemptId::new(id, self.attempts + 1),
                    attempt_number: self.attempts + 1,
                    provider: offer.provider.clone(),
                    offer_id: offer.offer_id.clone(),
                    at,
                }])
            }
            C::RecordLaunched { attempt_id, provider_instance_id, hourly_price, billing, adopted, at } => {
                self.require_attempt(&attempt_id)?;
                let (offer, _) = self.offer.as_ref().ok_or_else(|| self.wrong("record a launch"))?;
                let provider = offer.provider.clone();
                let spot = offer.spot;
                Ok(vec![match &self.replaces {
                    Some(replaces) => InstanceEvent::Relaunched {
                        attempt_id,
                        provider,
                        provider_instance_id,
                        replaces: replaces.id.clone(),
                        hourly_price,
                        spot,
                        billing,
                        adopted,
                        at,
                    },
                    None => InstanceEvent::Launched {
                        attempt_id,
                        provider,
                        provider_instance_id,
                        hourly_price,
                        spot,
                        billing,
                        adopted,
                        at,
                    },
                }])
            }
            C::RecordLaunchFailed { attempt_id, class, message, at } => {
                self.require_attempt(&attempt_id)?;
                let provider = self.offer.as_ref().map(|(o, _)| o.provider.clone());
                let mut events = vec![InstanceEvent::LaunchFailed {
                    attempt_id: Some(attempt_id),
                    provider,
                    class,
                    message: message.clone(),
                    at,
                }];
                if state == S::Terminating {
                    events.push(InstanceEvent::Terminated { provider_instance_id: None, at });
                } else if is_permanent(class) {
                    let provider =
                        self.offer.as_ref().map_or_else(|| "the provider".into(), |(o, _)| o.provider.to_string());
                    events.push(InstanceEvent::Failed {
                        reason: format!("{provider} refused the launch ({}): {message}", class_name(class)),
                        at,
                    });
                } else if self.attempts >= self.max_attempts() {
                    events.push(InstanceEvent::Failed {
                        reason: format!("{} launch attempts used; last: {message}", self.attempts),
                        at,
                    });
                }
                Ok(events)
            }
            C::RecordRunning { provider_instance_id, connection, at } => {
                self.require_machine(&provider_instance_id)?;
                match state {
                    S::Starting => Ok(vec![InstanceEvent::Running { provider_instance_id, connection, at }]),
                    S::Running | S::Terminating => Ok(vec![]),
                    _ => Err(self.wrong("record running")),
                }
            }
            C::RecordInterrupted { provider_instance_id, reason, raw_status, detected_by, at } => {
                self.require_machine(&provider_instance_id)?;
                let mut events = vec![InstanceEvent::Interrupted {
                    provider_instance_id: provider_instance_id.clone(),
                    reason,
                    raw_status,
                    detected_by,
                    at,
                }];
                if state == S::Terminating {
                    events.push(InstanceEvent::Terminated { provider_instance_id: Some(provider_instance_id), at });
                } else if self.attempts >= self.max_attempts() {
                    events.push(InstanceEvent::Failed {
                        reason: format!("interrupted ({reason:?}) after {} launch attempts", self.attempts),
                        at,
                    });
                }
                Ok(events)
            }
            C::RecordReappeared { provider_instance_id, raw_status, connection, detected_by, at } => {
                if state == S::Terminating {
                    return Err(self.wrong("take back a machine"));
                }
                if self.lost_machine(&provider_instance_id).is_none() {
                    return Err(InstanceError::Stale {
                        what: "lost machine",
                        expected: self.lost.iter().map(|l| l.machine.id.as_str()).collect::<Vec<_>>().join(", "),
                        got: provider_instance_id,
                    });
                }
                Ok(vec![InstanceEvent::Reappeared {
                    provider_instance_id,
                    raw_status,
                    connection,
                    detected_by,
                    replaced_by: self.machine.as_ref().map(|m| m.id.clone()),
                    abandoned_attempt: self.pending_attempt.as_ref().map(|(a, _)| a.clone()),
                    at,
                }])
            }
            C::EnforceLimits { at } => {
                let reached = self.limit_deadline().filter(|(_, deadline)| *deadline <= at);
                let (Some((limit, _)), false) = (reached, state == S::Terminating) else {
                    return Ok(vec![]);
                };
                let request = self.request.as_ref().expect("a chain has its request");
                let reason = match limit {
                    Limit::MaxLifetime => format!(
                        "max_lifetime {} reached",
                        request.max_lifetime.map(|s| s.to_string()).unwrap_or_default()
                    ),
                    Limit::Budget => format!(
                        "budget {} reached (finished runs billed {})",
                        request.budget.unwrap_or_default(),
                        Money::from_decimal(self.spent_dollar_seconds / Decimal::from(3_600)).round_cents()
                    ),
                };
                let mut events = vec![InstanceEvent::TerminationRequested { reason, limit: Some(limit), at }];
                if self.machine.is_none() && self.pending_attempt.is_none() {
                    events.push(InstanceEvent::Terminated { provider_instance_id: None, at });
                }
                Ok(events)
            }
            C::RequestTermination { reason, at } => {
                if state == S::Terminating {
                    return Err(InstanceError::AlreadyTerminating);
                }
                let mut events = vec![InstanceEvent::TerminationRequested { reason, limit: None, at }];
                if self.machine.is_none() && self.pending_attempt.is_none() {
                    events.push(InstanceEvent::Terminated { provider_instance_id: None, at });
                }
                Ok(events)
            }
            C::RecordTerminated { at } => {
                if state != S::Terminating || self.pending_attempt.is_some() {
                    return Err(self.wrong("record termination"));
                }
                Ok(vec![InstanceEvent::Terminated {
                    provider_instance_id: self.machine.as_ref().map(|m| m.id.clone()),
                    at,
                }])
            }
        }
    }

    /// Folds one event into the state. Events are facts: this never refuses.
    pub fn fold(&mut self, event: InstanceEvent) {
        use InstanceState as S;
        let terminating = self.state == Some(S::Terminating);
        match event {
            InstanceEvent::LaunchRequested { instance_id, request, at } => {
                self.requested_at = Some(at);
                self.id = Some(instance_id);
                self.request = Some(Box::new(request));
                self.state = Some(S::Requested);
            }
            InstanceEvent::OfferSelected { offer, bid, .. } => {
                self.waiting_until = None;
                self.offer = Some((offer, bid));
                self.state = Some(S::Launching);
            }
            InstanceEvent::LaunchAttempted { attempt_id, attempt_number, at, .. } => {
                self.attempts = attempt_number;
                self.pending_attempt = Some((attempt_id, at));
            }
            InstanceEvent::Launched { provider, provider_instance_id, hourly_price, billing, at, .. }
            | InstanceEvent::Relaunched { provider, provider_instance_id, hourly_price, billing, at, .. } => {
                self.pending_attempt = None;
                self.machine = Some(Machine {
                    provider: Some(provider),
                    id: provider_instance_id,
                    hourly_price,
                    launched_at: Some(at),
                    billing: Some(billing),
                });
                self.connection = None;
                if !terminating {
                    self.state = Some(S::Starting);
                }
            }
            InstanceEvent::Running { connection, .. } => {
                self.connection = Some(connection);
                self.setbacks = None;
                if !terminating {
                    self.state = Some(S::Running);
                }
            }
            InstanceEvent::LaunchFailed { class, at, .. } => {
                self.pending_attempt = None;
                let offering_failed = matches!(class, FailureClass::Capacity | FailureClass::NotFound);
                if !offering_failed && class != FailureClass::NoOfferFits {
                    self.setbacks = Some((self.setbacks.map_or(0, |(n, _)| n) + 1, at));
                }
                // Only the provider's own word on the offering avoids it; a transient fault is
                // about the provider's health, which its breaker tracks.
                if let Some((offer, _)) = self.offer.take()
                    && offering_failed
                {
                    self.avoid.push(offering_key(&offer));
                }
                if !terminating {
                    self.state = Some(if self.replaces.is_some() { S::Interrupted } else { S::Requested });
                }
            }
            InstanceEvent::Interrupted { reason, at, .. } => {
                // A machine taken back or stopped says the offering's capacity is gone; one that
                // vanished says nothing about the offering.
                if let Some((offer, _)) = self.offer.take()
                    && reason != InterruptionReason::Vanished
                {
                    self.avoid.push(offering_key(&offer));
                }
                self.setbacks = Some((self.setbacks.map_or(0, |(n, _)| n) + 1, at));
                self.replaces = self.machine.clone();
                if let Some(machine) = self.machine.clone() {
                    self.lost.push(LostMachine { machine, reason, at });
                }
                self.close_run(at);
                self.connection = None;
                if !terminating {
                    self.state = Some(S::Interrupted);
                }
            }
            InstanceEvent::TerminationRequested { .. } => self.state = Some(S::Terminating),
            InstanceEvent::Terminated { at, .. } => {
                self.close_run(at);
                self.state = Some(S::Terminated);
            }
            InstanceEvent::Failed { at, .. } => {
                self.close_run(at);
                self.pending_attempt = None;
                self.state = Some(S::Failed);
            }
            InstanceEvent::OrphanTerminated { .. } => {}
            InstanceEvent::WaitingForCapacity { until, .. } => {
                // Nothing else is left: offerings that failed for capacity earlier get a new look
                // (the provider actor still hides each for its own while after the failure).
                self.avoid.clear();
                self.waiting_until = Some(until);
            }
            InstanceEvent::Reappeared { provider_instance_id, connection, at, .. } => {
                let Some(index) = self.lost.iter().position(|l| l.machine.id == provider_instance_id) else {
                    return;
                };
                let lost = self.lost.remove(index);
                // The replacement's run ends here; the original's run, closed when it was declared
                // lost, is reopened: the provider billed it all along, as one run.
                self.close_run(at);
                self.spent_dollar_seconds -= lost.machine.billed_dollar_seconds(lost.at);
                if self.replaces.as_ref().is_some_and(|r| r.id == lost.machine.id) {
                    self.replaces = None;
                }
                self.machine = Some(lost.machine);
                self.pending_attempt = None;
                self.offer = None;
                self.waiting_until = None;
                self.setbacks = None;
                self.connection = Some(connection);
                self.state = Some(S::Running);
            }
        }
    }
}

/// Errors no retry can cure: the credentials, or a request the provider will never take (a
/// missing SSH key, say). The chain fails at once, with the provider's message saying what to fix.
pub fn is_permanent(class: FailureClass) -> bool {
    matches!(class, FailureClass::Auth | FailureClass::InvalidRequest)
}

/// A failure class as it appears on the wire (`invalid_request`).
fn class_name(class: FailureClass) -> String {
    serde_json::to_value(class).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

impl Aggregate for Instance {
    const TYPE: &'static str = INSTANCE_AGGREGATE;
    type Command = InstanceCommand;
    type Event = InstanceEvent;
    type Error = InstanceError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &(), sink: &EventSink<Self>) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.fold(event);
    }
}
