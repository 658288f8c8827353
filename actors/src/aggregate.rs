//! The instance aggregate: the rules of one instance chain's life, as cqrs-es's `Aggregate`.
//!
//! It decides, it never acts: each command either yields the events that record a legal step or is
//! refused with an [`InstanceError`]. The instance actor performs the provider calls around it and
//! feeds their outcomes back in as commands, so every fact is journaled before anything relies on
//! it. The state it keeps is only what those rules need (and what `tgp.api.get` answers).

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};
use tgp_events::api::{InstanceState, InstanceSummary};
use tgp_events::events::{
    Candidate, Connection, FailureClass, INSTANCE_AGGREGATE, InstanceEvent, InterruptionReason, OfferSummary,
};
use tgp_events::{AttemptId, BillingGranularity, InstanceId, LaunchCommand, Money, ProviderName};

use crate::selection::offering_key;

/// What the instance actor asks of the aggregate.
#[derive(Clone, Debug, PartialEq)]
pub enum InstanceCommand {
    /// Start a chain.
    RequestLaunch {
        /// The chain's id.
        id: InstanceId,
        /// The validated command.
        request: LaunchCommand,
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
    /// Record that no offer fits: the chain fails.
    NoOfferFits {
        /// Why.
        message: String,
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
}

/// The state of one instance chain, folded from its events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// The chain's id; `None` before `LaunchRequested`.
    pub id: Option<InstanceId>,
    /// Where it is; meaningless while `id` is `None`.
    pub state: Option<InstanceState>,
    /// The accepted command (policy and image), boxed to keep idle instances small.
    pub request: Option<Box<LaunchCommand>>,
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
            C::NoOfferFits { message, at } => {
                if !matches!(state, S::Requested | S::Interrupted) {
                    return Err(self.wrong("give up selection"));
                }
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
            C::RequestTermination { reason, at } => {
                if state == S::Terminating {
                    return Err(InstanceError::AlreadyTerminating);
                }
                let mut events = vec![InstanceEvent::TerminationRequested { reason, at }];
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
            InstanceEvent::LaunchRequested { instance_id, request, .. } => {
                self.id = Some(instance_id);
                self.request = Some(Box::new(request));
                self.state = Some(S::Requested);
            }
            InstanceEvent::OfferSelected { offer, bid, .. } => {
                self.offer = Some((offer, bid));
                self.state = Some(S::Launching);
            }
            InstanceEvent::LaunchAttempted { attempt_id, attempt_number, at, .. } => {
                self.attempts = attempt_number;
                self.pending_attempt = Some((attempt_id, at));
            }
            InstanceEvent::Launched { provider, provider_instance_id, hourly_price, at, .. }
            | InstanceEvent::Relaunched { provider, provider_instance_id, hourly_price, at, .. } => {
                self.pending_attempt = None;
                self.machine = Some(Machine {
                    provider: Some(provider),
                    id: provider_instance_id,
                    hourly_price,
                    launched_at: Some(at),
                });
                self.connection = None;
                if !terminating {
                    self.state = Some(S::Starting);
                }
            }
            InstanceEvent::Running { connection, .. } => {
                self.connection = Some(connection);
                if !terminating {
                    self.state = Some(S::Running);
                }
            }
            InstanceEvent::LaunchFailed { .. } => {
                self.pending_attempt = None;
                if let Some((offer, _)) = self.offer.take() {
                    self.avoid.push(offering_key(&offer));
                }
                if !terminating {
                    self.state = Some(if self.replaces.is_some() { S::Interrupted } else { S::Requested });
                }
            }
            InstanceEvent::Interrupted { .. } => {
                if let Some((offer, _)) = self.offer.take() {
                    self.avoid.push(offering_key(&offer));
                }
                self.replaces = self.machine.take();
                self.connection = None;
                if !terminating {
                    self.state = Some(S::Interrupted);
                }
            }
            InstanceEvent::TerminationRequested { .. } => self.state = Some(S::Terminating),
            InstanceEvent::Terminated { .. } => {
                self.machine = None;
                self.state = Some(S::Terminated);
            }
            InstanceEvent::Failed { .. } => {
                self.machine = None;
                self.pending_attempt = None;
                self.state = Some(S::Failed);
            }
            InstanceEvent::OrphanTerminated { .. } => {}
        }
    }
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
