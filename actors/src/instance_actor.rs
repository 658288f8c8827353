//! One actix actor per live instance chain.
//!
//! It holds the chain in memory and handles one message at a time: every handler that awaits runs
//! as an `AtomicResponse`, so nothing interleaves across a provider call or a journal append.
//! Its loop is a reconcile loop in the kube-runtime manner: [`next_step`] looks at the state and
//! says what to do; the actor does it, journals the outcome *before* anything relies on it, and
//! asks itself to go on ([`Drive`]) until the chain waits for the outside world (a status poll, a
//! command) or is over, at which point it tells the supervisor and stops.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use cqrs_es::persist::PersistedEventRepository;
use tgp_events::api::{InstanceState, InstanceSummary};
use tgp_events::events::{FailureClass, InterruptionReason};
use tgp_events::{AttemptId, BillingGranularity, InstanceId, ProviderName};

use crate::aggregate::{Instance, InstanceCommand};
use crate::clock::Clock;
use crate::journal::{CommitError, Loaded};
use crate::provider::{LaunchSpec, MachineStatus, Market, ProviderError, ProviderInstance, ProviderListing};
use crate::selection::{Selection, select};

/// How long selection waits for a provider's offers; a slower provider is left out of this
/// selection rather than holding the launch (and the instance's mailbox) hostage.
pub const SELECTION_WAIT: Duration = Duration::from_secs(10);

/// What every instance actor shares: one `Arc` per actor keeps idle actors small.
pub struct Shared<R> {
    /// The journal.
    pub repo: R,
    /// The providers.
    pub market: Market,
    /// Told when a chain ends, so it can be dropped from memory.
    pub finished: Recipient<Finished>,
    /// Wait before retrying a step that failed for a passing reason (journal or provider outage).
    pub retry_delay: Duration,
    /// Crash on purpose at this point (crash-safety tests only).
    pub failpoint: Option<Failpoint>,
    /// Timestamps and deadlines: the wall clock, or a virtual one in `tgp sim`.
    pub clock: Clock,
}

/// A point where the process can be made to crash, so tests can prove that what was journaled
/// before it is enough to recover (`TGP_FAILPOINT` in `tgp run`). The process aborts: no
/// destructor, flush or goodbye runs, as in a real crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failpoint {
    /// After the provider accepted a launch, before `Launched` is journaled.
    AfterLaunchCall,
    /// After the provider confirmed a termination, before `Terminated` is journaled.
    AfterTerminateCall,
}

impl std::str::FromStr for Failpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "after-launch-call" => Ok(Failpoint::AfterLaunchCall),
            "after-terminate-call" => Ok(Failpoint::AfterTerminateCall),
            other => Err(format!("unknown failpoint {other:?}: after-launch-call or after-terminate-call")),
        }
    }
}

fn crash_at(shared_failpoint: Option<Failpoint>, here: Failpoint) {
    if shared_failpoint == Some(here) {
        eprintln!("failpoint {here:?}: aborting the process");
        std::process::abort();
    }
}

/// What the reconcile loop should do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Ask the market and choose an offer.
    Select,
    /// Journal an attempt and call the provider.
    Launch,
    /// Destroy the current machine, then record it.
    Terminate,
    /// Record the end: nothing runs.
    RecordTerminated,
    /// End the chain: a limit of its launch command is reached.
    EnforceLimits,
    /// Wait for a status poll (machine booting or running, or an attempt whose outcome is
    /// unknown), or for a relaunch backoff to end.
    Wait,
    /// The chain is over.
    Done,
}

/// The next step for a chain at `now`.
pub fn next_step(instance: &Instance, now: DateTime<Utc>) -> Step {
    let limit_reached = || instance.limit_deadline().is_some_and(|(_, at)| at <= now);
    match instance.current_state() {
        None => Step::Done,
        Some(state) if state.is_final() => Step::Done,
        Some(state) if state != InstanceState::Terminating && limit_reached() => Step::EnforceLimits,
        Some(InstanceState::Requested | InstanceState::Interrupted)
            if instance.backoff_until().is_some_and(|at| at > now) =>
        {
            Step::Wait
        }
        Some(InstanceState::Requested | InstanceState::Interrupted) => Step::Select,
        Some(InstanceState::Launching) if instance.pending_attempt.is_none() => Step::Launch,
        Some(InstanceState::Terminating) if instance.pending_attempt.is_some() => Step::Wait,
        Some(InstanceState::Terminating) if instance.machine.is_some() => Step::Terminate,
        Some(InstanceState::Terminating) => Step::RecordTerminated,
        Some(_) => Step::Wait,
    }
}

/// Sent to the supervisor when a chain is over.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Finished(pub InstanceId);

/// Run a command through the aggregate and journal it; answers the chain's summary.
#[derive(Message)]
#[rtype(result = "Result<InstanceSummary, CommitError>")]
pub struct Execute(pub InstanceCommand);

/// Answer the chain's summary without changing anything.
#[derive(Message)]
#[rtype(result = "Option<InstanceSummary>")]
pub struct GetSummary;

/// Go on with the reconcile loop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drive;

/// A provider's listing, fanned out by the status poller.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Observe(pub Arc<ProviderListing>);

/// The actor of one chain.
pub struct InstanceActor<R: PersistedEventRepository + 'static> {
    /// The chain's id (the subject token of its journal).
    id: InstanceId,
    /// Its state and journal position; taken out while a step runs.
    loaded: Loaded,
    /// Journal, market and supervisor.
    shared: Arc<Shared<R>>,
    /// The timer set for the chain's next wake (a backoff's end, a limit), and for when.
    wake: Option<(DateTime<Utc>, SpawnHandle)>,
}

impl<R: PersistedEventRepository + 'static> InstanceActor<R> {
    /// An actor for a chain loaded from the journal (or empty, for a new one).
    pub fn new(id: InstanceId, loaded: Loaded, shared: Arc<Shared<R>>) -> Self {
        InstanceActor { id, loaded, shared, wake: None }
    }

    /// Sets one timer for the moment the chain must act of its own accord, replacing an earlier
    /// one that no longer applies.
    fn schedule_wake(&mut self, ctx: &mut Context<Self>) {
        let next = self.loaded.instance.next_wake();
        if self.wake.as_ref().map(|(at, _)| *at) == next {
            return;
        }
        if let Some((_, handle)) = self.wake.take() {
            ctx.cancel_future(handle);
        }
        if let Some(at) = next {
            let handle = ctx.run_later(self.shared.clock.until(at), |act, ctx| {
                act.wake = None;
                drive(ctx);
            });
            self.wake = Some((at, handle));
        }
    }

    fn finish_if_over(&mut self, ctx: &mut Context<Self>) {
        if self.loaded.instance.current_state().is_some_and(InstanceState::is_final) {
            self.shared.finished.do_send(Finished(self.id.clone()));
            ctx.stop();
        }
    }

    /// Runs `work` on the owned chain state with the mailbox held, puts the state back, then
    /// drives on, retries later, or stops, as the outcome says.
    fn atomically<T, F>(
        &mut self,
        ctx: &mut Context<Self>,
        work: impl FnOnce(Loaded, Arc<Shared<R>>, InstanceId) -> F,
    ) -> AtomicResponse<Self, T>
    where
        T: 'static,
        F: Future<Output = (Loaded, Next, T)> + 'static,
    {
        let _ = ctx;
        let fut = work(std::mem::take(&mut self.loaded), self.shared.clone(), self.id.clone());
        AtomicResponse::new(Box::pin(fut.into_actor(self).map(|(loaded, next, out), act, ctx| {
            act.loaded = loaded;
            // After a failed step the retry comes first: a wake whose moment has passed would
            // otherwise drive again at once, and again, without the retry delay.
            let retrying = matches!(next, Next::RetryLater);
            match next {
                Next::Drive => drive(ctx),
                Next::RetryLater => {
                    ctx.run_later(act.shared.retry_delay, |_, ctx| drive(ctx));
                }
                Next::Idle => {}
            }
            if !retrying {
                act.schedule_wake(ctx);
            }
            act.finish_if_over(ctx);
            out
        })))
    }
}

/// Asks the actor to go on, through its mailbox.
///
/// Not `ctx.notify`: in actix 0.13.5 a notified message is a context item, and items are polled
/// right after the mailbox in the same pass, before a wait that the mailbox's last message just
/// registered is merged. So a notified `Drive` can run while an `AtomicResponse` holds the state
/// (observed here: a step saw an empty instance). Mailbox messages always wait for the wait.
fn drive<R: PersistedEventRepository + 'static>(ctx: &mut Context<InstanceActor<R>>) {
    ctx.address().do_send(Drive);
}

/// What to do after a step.
enum Next {
    /// Go on at once.
    Drive,
    /// Something passing failed: try again after the retry delay.
    RetryLater,
    /// Wait for a command or a status poll.
    Idle,
}

impl<R: PersistedEventRepository + 'static> Actor for InstanceActor<R> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        drive(ctx);
    }
}

impl<R: PersistedEventRepository + 'static> Handler<GetSummary> for InstanceActor<R> {
    type Result = Option<InstanceSummary>;
    fn handle(&mut self, _: GetSummary, _: &mut Context<Self>) -> Self::Result {
        self.loaded.instance.summary()
    }
}

impl<R: PersistedEventRepository + 'static> Handler<Execute> for InstanceActor<R> {
    type Result = AtomicResponse<Self, Result<InstanceSummary, CommitError>>;
    fn handle(&mut self, Execute(command): Execute, ctx: &mut Context<Self>) -> Self::Result {
        self.atomically(ctx, move |mut loaded, shared, id| async move {
            let result = loaded.commit(&shared.repo, &id, command, &serde_json::Value::Null).await;
            let summary = result.map(|_| loaded.instance.summary().expect("a committed chain exists"));
            (loaded, Next::Drive, summary)
        })
    }
}

impl<R: PersistedEventRepository + 'static> Handler<Drive> for InstanceActor<R> {
    type Result = AtomicResponse<Self, ()>;
    fn handle(&mut self, _: Drive, ctx: &mut Context<Self>) -> Self::Result {
        self.atomically(ctx, |mut loaded, shared, id| async move {
            let next = match advance(&mut loaded, &shared, &id).await {
                Ok(true) => Next::Drive,
                Ok(false) => Next::Idle,
                Err(e) => {
                    tracing::warn!(instance = %id, error = %e, "step failed; retrying");
                    Next::RetryLater
                }
            };
            (loaded, next, ())
        })
    }
}

impl<R: PersistedEventRepository + 'static> Handler<Observe> for InstanceActor<R> {
    type Result = AtomicResponse<Self, ()>;
    fn handle(&mut self, Observe(listing): Observe, ctx: &mut Context<Self>) -> Self::Result {
        let command = observation(&self.loaded.instance, &listing, self.shared.clock.now());
        // An interrupted offering is left out of the next selections, here and for every chain.
        let interrupted_offer = match &command {
            Some(InstanceCommand::RecordInterrupted { .. }) => {
                self.loaded.instance.offer.as_ref().map(|(o, _)| o.clone())
            }
            _ => None,
        };
        let orphans = own_orphans(&self.loaded.instance, &self.id, &listing);
        self.atomically(ctx, move |mut loaded, shared, id| async move {
            clean_up_orphans(&mut loaded, &shared, &id, &listing.provider, orphans).await;
            let Some(command) = command else {
                return (loaded, Next::Idle, ());
            };
            match loaded.commit(&shared.repo, &id, command, &serde_json::Value::Null).await {
                Ok(_) => {
                    if let Some(offer) = interrupted_offer
                        && let Some(provider) = shared.market.get(&offer.provider)
                    {
                        provider.report_unavailable(&offer.offer_id, offer.spot);
                    }
                    (loaded, Next::Drive, ())
                }
                Err(e) => {
                    tracing::warn!(instance = %id, error = %e, "could not record an observation");
                    (loaded, Next::Idle, ())
                }
            }
        })
    }
}

/// Performs one step. Ok(true): progress was made, drive on; Ok(false): wait.
async fn advance<R: PersistedEventRepository>(
    loaded: &mut Loaded,
    shared: &Shared<R>,
    id: &InstanceId,
) -> Result<bool, CommitError> {
    let meta = serde_json::Value::Null;
    let now = || shared.clock.now();
    let step = next_step(&loaded.instance, now());
    tracing::debug!(instance = %id, ?step, "step");
    match step {
        Step::Done | Step::Wait => Ok(false),
        Step::Select => {
            if let (Some(InstanceState::Interrupted), Some(stopped)) =
                (loaded.instance.current_state(), &loaded.instance.replaces)
                && let Some(provider) = stopped.provider.as_ref().and_then(|p| shared.market.get(p))
                && let Err(e) = provider.terminate(&stopped.id).await
            {
                // An interrupted machine may linger stopped at the provider (and bill storage), so
                // it is destroyed before it is replaced; destroying is idempotent.
                tracing::warn!(instance = %id, machine = %stopped.id, error = %e, "could not clean up the interrupted machine");
            }
            let request = loaded.instance.request.clone().expect("a requested chain has its request");
            let filter = crate::provider::OfferFilter::for_launch(&request);
            let asks = shared.market.providers().iter().map(|p| {
                let filter = filter.clone();
                async move {
                    let answer =
                        tokio::time::timeout(SELECTION_WAIT, p.list_offers(&filter)).await.unwrap_or_else(|_| {
                            Err(ProviderError::new(
                                &p.info().name,
                                FailureClass::ProviderOutage,
                                format!("no offers within {}s; left out of this selection", SELECTION_WAIT.as_secs()),
                            ))
                        });
                    (p.info().name, answer)
                }
            });
            let mut offers = Vec::new();
            for (provider, answer) in futures::future::join_all(asks).await {
                match answer {
                    Ok(mut found) => offers.append(&mut found),
                    Err(e) => tracing::warn!(%provider, error = %e, "no offers from provider"),
                }
            }
            let unaffordable = leave_out_unaffordable(&loaded.instance, &mut offers);
            let command = match select(&request, &offers, &loaded.instance.avoid) {
                Selection::Chosen { offer, bid, reason, candidates } => {
                    InstanceCommand::SelectOffer { offer, bid, reason, candidates, at: now() }
                }
                Selection::NoneFits { mut message, .. } => {
                    if unaffordable > 0 {
                        message.push_str(&format!(
                            "; {unaffordable} prices left out: their shortest run would bill past the budget"
                        ));
                    }
                    InstanceCommand::NoOfferFits { message, at: now() }
                }
            };
            loaded.commit(&shared.repo, id, command, &meta).await?;
            Ok(true)
        }
        Step::Launch => {
            loaded.commit(&shared.repo, id, InstanceCommand::StartAttempt { at: now() }, &meta).await?;
            let instance = &loaded.instance;
            let (attempt_id, _) = instance.pending_attempt.clone().expect("just journaled");
            let (offer, bid) = instance.offer.clone().expect("an attempt has an offer");
            let request = instance.request.as_ref().expect("a chain has its request");
            let Some(provider) = shared.market.get(&offer.provider) else {
                let command = InstanceCommand::RecordLaunchFailed {
                    attempt_id,
                    class: FailureClass::InvalidRequest,
                    message: format!("provider {} is not configured", offer.provider),
                    at: now(),
                };
                loaded.commit(&shared.repo, id, command, &meta).await?;
                return Ok(true);
            };
            let spec = LaunchSpec {
                attempt_id: attempt_id.clone(),
                offer_id: offer.offer_id.clone(),
                spot: offer.spot,
                bid,
                gpu_count: offer.gpu_count,
                image: request.image.clone(),
                env: request.env.clone(),
                ssh_public_key: request.ssh_public_key.clone(),
            };
            let answer = provider.launch(&spec).await;
            crash_at(shared.failpoint, Failpoint::AfterLaunchCall);
            let command = match answer {
                Ok(receipt) => InstanceCommand::RecordLaunched {
                    attempt_id,
                    provider_instance_id: receipt.provider_instance_id,
                    hourly_price: receipt.hourly_price,
                    billing: receipt.billing,
                    adopted: false,
                    at: now(),
                },
                // The call may have started a machine: leave the attempt open for the next
                // status poll to settle (adopt it by its label, or fail it).
                Err(e) if matches!(e.class, FailureClass::ProviderOutage | FailureClass::Unknown) => {
                    tracing::warn!(instance = %id, attempt = %attempt_id, error = %e, "launch outcome unknown");
                    return Ok(false);
                }
                Err(e) => {
                    InstanceCommand::RecordLaunchFailed { attempt_id, class: e.class, message: e.message, at: now() }
                }
            };
            loaded.commit(&shared.repo, id, command, &meta).await?;
            Ok(true)
        }
        Step::Terminate => {
            let machine = loaded.instance.machine.clone().expect("terminating a machine");
            let provider = machine.provider.as_ref().and_then(|p| shared.market.get(p));
            if let Some(provider) = provider {
                provider.terminate(&machine.id).await.map_err(|e| CommitError::Journal(format!("terminate: {e}")))?;
                crash_at(shared.failpoint, Failpoint::AfterTerminateCall);
            }
            loaded.commit(&shared.repo, id, InstanceCommand::RecordTerminated { at: now() }, &meta).await?;
            Ok(true)
        }
        Step::EnforceLimits => {
            loaded.commit(&shared.repo, id, InstanceCommand::EnforceLimits { at: now() }, &meta).await?;
            Ok(true)
        }
        Step::RecordTerminated => {
            loaded.commit(&shared.repo, id, InstanceCommand::RecordTerminated { at: now() }, &meta).await?;
            Ok(true)
        }
    }
}

/// Removes the prices whose shortest run the chain's budget cannot pay for (the provider's
/// minimum, and a minute beyond the termination margin); answers how many it removed.
fn leave_out_unaffordable(instance: &Instance, offers: &mut [crate::provider::Offer]) -> usize {
    let mut removed = 0;
    for offer in offers.iter_mut() {
        for price in [&mut offer.spot_price, &mut offer.on_demand_price] {
            if price.is_some_and(|p| !instance.can_afford(p, offer.billing)) {
                *price = None;
                removed += 1;
            }
        }
    }
    removed
}

/// Machines carrying this chain's label that the journal accounts for nowhere and that still
/// exist (running, or stopped and perhaps billing storage): an attempt that was superseded (failed
/// as unknown, then retried) and came up after all. The interrupted machine a relaunch replaces is
/// destroyed by the relaunch itself, so it is left alone while the chain waits to relaunch; once
/// replaced, it is an orphan like any other if it still exists.
fn own_orphans(instance: &Instance, id: &InstanceId, listing: &ProviderListing) -> Vec<(AttemptId, ProviderInstance)> {
    let current = instance.machine.as_ref().map(|m| m.id.as_str());
    let replaced = instance
        .replaces
        .as_ref()
        .filter(|_| instance.current_state() == Some(InstanceState::Interrupted))
        .map(|m| m.id.as_str());
    let pending = instance.pending_attempt.as_ref().map(|(a, _)| a);
    listing
        .of_instance(id)
        .filter(|(attempt, m)| {
            m.status.still_exists()
                && Some(m.id.as_str()) != current
                && Some(m.id.as_str()) != replaced
                && Some(*attempt) != pending
        })
        .map(|(attempt, m)| (attempt.clone(), m.clone()))
        .collect()
}

/// Destroys this chain's orphans and journals each; a failure is retried at the next poll.
async fn clean_up_orphans<R: PersistedEventRepository>(
    loaded: &mut Loaded,
    shared: &Shared<R>,
    id: &InstanceId,
    provider: &ProviderName,
    orphans: Vec<(AttemptId, ProviderInstance)>,
) {
    let Some(client) = shared.market.get(provider) else { return };
    for (attempt_id, machine) in orphans {
        if let Err(e) = client.terminate(&machine.id).await {
            tracing::warn!(instance = %id, machine = %machine.id, error = %e, "orphan not terminated yet");
            continue;
        }
        let command = InstanceCommand::RecordOrphanCleanup {
            provider: provider.clone(),
            provider_instance_id: machine.id.clone(),
            attempt_id,
            raw_status: machine.raw_status.clone(),
            at: shared.clock.now(),
        };
        if let Err(e) = loaded.commit(&shared.repo, id, command, &serde_json::Value::Null).await {
            tracing::warn!(instance = %id, machine = %machine.id, error = %e, "orphan terminated but not journaled");
        }
    }
}

/// What a provider listing tells this chain at `at`, as a command, if anything.
pub fn observation(instance: &Instance, listing: &ProviderListing, at: DateTime<Utc>) -> Option<InstanceCommand> {
    if let Some((attempt_id, started)) = &instance.pending_attempt {
        let (offer, bid) = instance.offer.as_ref()?;
        if offer.provider != listing.provider || listing.taken_at <= *started {
            return None;
        }
        return Some(match listing.by_label(attempt_id) {
            Some(machine) => InstanceCommand::RecordLaunched {
                attempt_id: attempt_id.clone(),
                provider_instance_id: machine.id.clone(),
                hourly_price: machine.hourly_price.or(*bid).unwrap_or(offer.hourly_price),
                billing: machine.billing.unwrap_or(BillingGranularity::PER_SECOND),
                adopted: true,
                at,
            },
            None => InstanceCommand::RecordLaunchFailed {
                attempt_id: attempt_id.clone(),
                class: FailureClass::Unknown,
                message: format!("no machine labelled {attempt_id} at {} after the launch call", listing.provider),
                at,
            },
        });
    }
    let machine = instance.machine.as_ref()?;
    if machine.provider.as_ref() != Some(&listing.provider) {
        return None;
    }
    let state = instance.current_state()?;
    let interrupted = |reason, raw_status: &str| InstanceCommand::RecordInterrupted {
        provider_instance_id: machine.id.clone(),
        reason,
        raw_status: raw_status.to_string(),
        detected_by: "status_poll".to_string(),
        at,
    };
    match listing.by_id.get(&machine.id) {
        None if machine.launched_at.is_some_and(|t| listing.taken_at <= t) => None,
        None if state == InstanceState::Terminating => Some(InstanceCommand::RecordTerminated { at }),
        None => Some(interrupted(InterruptionReason::Vanished, "absent from listing")),
        Some(seen) => match seen.status {
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
        },
    }
}
