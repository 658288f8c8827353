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
use cqrs_es::persist::PersistenceError;
use tgp_events::api::{InstanceState, InstanceSummary};
use tgp_events::events::{FailureClass, InterruptionReason};
use tgp_events::{AttemptId, InstanceId, ProviderName};

use crate::aggregate::{Instance, InstanceCommand};
use crate::clock::Clock;
use crate::evidence::{
    Absence, Confirmation, EvidenceConfig, LaunchAnswer, Observed, confirmation, observation, own_orphans,
};
use crate::journal::{CommitError, Journal, Loaded};
use crate::keyring::Keyring;
use crate::provider::{LaunchSpec, Market, ProviderError, ProviderInstance, ProviderListing};
use crate::selection::{Selection, select};

/// What every instance actor shares: one `Arc` per actor keeps idle actors small.
pub struct Shared<J> {
    /// The journal.
    pub journal: J,
    /// The providers.
    pub market: Market,
    /// Told when a chain ends, so it can be dropped from memory.
    pub finished: Recipient<Finished>,
    /// Wait before retrying a step that failed for a passing reason (journal or provider outage).
    pub retry_delay: Duration,
    /// Crash on purpose at this point (crash-safety tests only).
    pub failpoint: Option<Failpoint>,
    /// Timestamps and deadlines: the wall clock, or a virtual one in `tgp-dev sim`.
    pub clock: Clock,
    /// Told which machine each chain bills, so a listing that leaves out many can be suspected.
    pub tracked: Recipient<Tracked>,
    /// How much evidence a conclusion needs.
    pub evidence: EvidenceConfig,
    /// How far apart the listings a machine is absent from must be to count.
    pub absent_spacing: Duration,
    /// How long an unclear launch is looked for before its attempt fails.
    pub settle_window: Duration,
    /// How long selection waits for a provider's offers; a slower provider is left out of this
    /// selection rather than holding the launch (and the instance's mailbox) hostage.
    pub selection_wait: Duration,
    /// While a chain waits for capacity, how often it selects again (about the offers' refresh).
    pub capacity_recheck: Duration,
    /// Opens the journaled env values at each launch and relaunch (read once, at start).
    pub keyring: Arc<Keyring>,
}

/// Which machine a chain bills now, and at which provider, with when it was launched (a listing
/// taken before may not show it): the supervisor counts what each listing should hold.
#[derive(Message, Clone, Debug, PartialEq)]
#[rtype(result = "()")]
pub struct Tracked {
    /// The chain.
    pub id: InstanceId,
    /// Its machine, if one bills.
    pub machine: Option<TrackedMachine>,
}

/// A machine a listing should hold.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackedMachine {
    /// Its provider.
    pub provider: ProviderName,
    /// The provider's id.
    pub id: String,
    /// When it was launched.
    pub launched_at: Option<DateTime<Utc>>,
}

impl TrackedMachine {
    fn of(instance: &Instance) -> Option<Self> {
        let machine = instance.machine.as_ref()?;
        Some(TrackedMachine {
            provider: machine.provider.clone()?,
            id: machine.id.clone(),
            launched_at: machine.launched_at,
        })
    }
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
pub struct InstanceActor<J: Journal + 'static> {
    /// The chain's id (the subject token of its journal).
    id: InstanceId,
    /// Its state and journal position; taken out while a step runs.
    loaded: Loaded,
    /// The listings the current machine was absent from; taken out with `loaded`.
    absence: Absence,
    /// The machine last reported to the supervisor.
    reported: Option<TrackedMachine>,
    /// Journal, market and supervisor.
    shared: Arc<Shared<J>>,
    /// The timer set for the chain's next wake (a backoff's end, a limit), and for when.
    wake: Option<(DateTime<Utc>, SpawnHandle)>,
}

impl<J: Journal + 'static> InstanceActor<J> {
    /// An actor for a chain loaded from the journal (or empty, for a new one).
    pub fn new(id: InstanceId, loaded: Loaded, shared: Arc<Shared<J>>) -> Self {
        InstanceActor { id, loaded, shared, wake: None, absence: Absence::default(), reported: None }
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

    /// Tells the supervisor when the chain's machine changed.
    fn report_machine(&mut self) {
        let now = TrackedMachine::of(&self.loaded.instance);
        if now != self.reported {
            self.reported = now.clone();
            self.shared.tracked.do_send(Tracked { id: self.id.clone(), machine: now });
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
        work: impl FnOnce(Held, Arc<Shared<J>>, InstanceId) -> F,
    ) -> AtomicResponse<Self, T>
    where
        T: 'static,
        F: Future<Output = (Held, Next, T)> + 'static,
    {
        let _ = ctx;
        let held = Held { loaded: std::mem::take(&mut self.loaded), absence: std::mem::take(&mut self.absence) };
        let fut = work(held, self.shared.clone(), self.id.clone());
        AtomicResponse::new(Box::pin(fut.into_actor(self).map(|(held, next, out), act, ctx| {
            act.loaded = held.loaded;
            act.absence = held.absence;
            // After a failed step the retry comes first: a wake whose moment has passed would
            // otherwise drive again at once, and again, without the retry delay.
            let retrying = matches!(next, Next::RetryLater);
            match next {
                Next::Drive => drive(ctx),
                Next::RetryLater => {
                    ctx.run_later(act.shared.retry_delay, |_, ctx| drive(ctx));
                }
                Next::DriveIn(after) => {
                    ctx.run_later(after, |_, ctx| drive(ctx));
                }
                Next::Idle => {}
            }
            if !retrying {
                act.schedule_wake(ctx);
            }
            act.report_machine();
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
fn drive<J: Journal + 'static>(ctx: &mut Context<InstanceActor<J>>) {
    ctx.address().do_send(Drive);
}

/// What a step holds while it runs: the chain, and the evidence gathered about its machine.
#[derive(Default)]
pub struct Held {
    /// The chain.
    loaded: Loaded,
    /// The listings its machine was absent from.
    absence: Absence,
}

/// Why a step on a chain failed. Each is passing as far as the chain knows, so the step is tried
/// again after the retry delay; the variants keep a provider's failure apart from the journal's,
/// so the log says which one to look at and the provider's [`FailureClass`] survives.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StepError {
    /// The chain could not be loaded from the journal.
    #[error("loading the chain: {0}")]
    Load(#[from] PersistenceError),
    /// The outcome could not be journaled.
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// The provider did not terminate the machine: the chain stays terminating and bills on.
    #[error("terminate {machine}: {source}")]
    Terminate {
        /// The provider's id for the machine.
        machine: String,
        /// The provider's answer, with its class.
        #[source]
        source: ProviderError,
    },
}

impl StepError {
    /// The provider's class when a provider call failed (none for the journal's failures).
    pub(crate) fn class(&self) -> Option<FailureClass> {
        match self {
            StepError::Terminate { source, .. } => Some(source.class),
            StepError::Load(_) | StepError::Commit(_) => None,
        }
    }
}

/// What to do after a step.
enum Next {
    /// Go on at once.
    Drive,
    /// Something passing failed: try again after the retry delay.
    RetryLater,
    /// Look again after this long (waiting for capacity).
    DriveIn(Duration),
    /// Wait for a command or a status poll.
    Idle,
}

impl<J: Journal + 'static> Actor for InstanceActor<J> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.report_machine();
        drive(ctx);
    }
}

impl<J: Journal + 'static> Handler<GetSummary> for InstanceActor<J> {
    type Result = Option<InstanceSummary>;
    fn handle(&mut self, _: GetSummary, _: &mut Context<Self>) -> Self::Result {
        self.loaded.instance.summary()
    }
}

impl<J: Journal + 'static> Handler<Execute> for InstanceActor<J> {
    type Result = AtomicResponse<Self, Result<InstanceSummary, CommitError>>;
    fn handle(&mut self, Execute(command): Execute, ctx: &mut Context<Self>) -> Self::Result {
        self.atomically(ctx, move |mut held, shared, id| async move {
            let result = held.loaded.commit(&shared.journal, &id, command).await;
            let summary = result.map(|_| held.loaded.instance.summary().expect("a committed chain exists"));
            (held, Next::Drive, summary)
        })
    }
}

impl<J: Journal + 'static> Handler<Drive> for InstanceActor<J> {
    type Result = AtomicResponse<Self, ()>;
    fn handle(&mut self, _: Drive, ctx: &mut Context<Self>) -> Self::Result {
        self.atomically(ctx, |mut held, shared, id| async move {
            let next = match advance(&mut held.loaded, &shared, &id).await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(instance = %id, error = %e, class = ?e.class(), "step failed; retrying");
                    Next::RetryLater
                }
            };
            (held, next, ())
        })
    }
}

impl<J: Journal + 'static> Handler<Observe> for InstanceActor<J> {
    type Result = AtomicResponse<Self, ()>;
    fn handle(&mut self, Observe(listing): Observe, ctx: &mut Context<Self>) -> Self::Result {
        let orphans = own_orphans(&self.loaded.instance, &self.id, &listing);
        let (spacing, window) = (self.shared.absent_spacing, self.shared.settle_window);
        self.atomically(ctx, move |mut held, shared, id| async move {
            clean_up_orphans(&mut held.loaded, &shared, &id, &listing.provider, orphans).await;
            let now = shared.clock.now();
            let command = match observation(&held.loaded.instance, &listing, now, window) {
                Observed::Nothing => {
                    held.absence.clear();
                    None
                }
                Observed::Command(command) => {
                    held.absence.clear();
                    Some(*command)
                }
                // The supervisor lists again at once: a second look is cheaper than a status
                // call for every machine the glitch left out.
                Observed::Absent(_) if listing.suspect == 1 => None,
                Observed::Absent(machine) => {
                    let absences = held.absence.note(&machine, &listing, spacing);
                    confirm_absence(&mut held, &shared, &id, &listing.provider, &machine, absences).await
                }
            };
            let Some(command) = command else {
                return (held, Next::Idle, ());
            };
            tracing::debug!(instance = %id, ?command, "observed");
            // An offering whose machine was taken back is left out of the next selections, here
            // and for every chain; a vanished machine says nothing about capacity.
            let interrupted_offer = match &command {
                InstanceCommand::RecordInterrupted { reason, .. } if *reason != InterruptionReason::Vanished => {
                    held.loaded.instance.offer.clone()
                }
                _ => None,
            };
            match held.loaded.commit(&shared.journal, &id, command).await {
                Ok(_) => {
                    if let Some((offer, _)) = interrupted_offer
                        && let Some(provider) = shared.market.get(&offer.provider)
                    {
                        provider.report_unavailable(&offer.offer_id, offer.spot);
                    }
                    (held, Next::Drive, ())
                }
                Err(e) => {
                    tracing::warn!(instance = %id, error = %e, "could not record an observation");
                    (held, Next::Idle, ())
                }
            }
        })
    }
}

/// Asks the provider about the chain's machine, absent from a listing, and answers what may be
/// concluded: a definite status answer, or enough absences without a contrary answer.
async fn confirm_absence<J: Journal>(
    held: &mut Held,
    shared: &Shared<J>,
    id: &InstanceId,
    provider: &ProviderName,
    machine: &str,
    absences: u32,
) -> Option<InstanceCommand> {
    let client = shared.market.get(provider)?;
    let status = client.status(machine).await;
    let verdict =
        confirmation(&held.loaded.instance, &status, absences, shared.evidence.absent_listings, shared.clock.now());
    match verdict {
        Confirmation::Confirmed(command) => Some(*command),
        Confirmation::Seen => {
            tracing::info!(instance = %id, %machine, %provider, "absent from a listing, but its status call shows it");
            held.absence.clear();
            None
        }
        Confirmation::Unconfirmed => {
            let error = status.err().map(|e| e.to_string()).unwrap_or_default();
            tracing::warn!(instance = %id, %machine, %provider, absences, %error, "absent from a listing; not confirmed yet");
            None
        }
    }
}

/// Performs one step, and says what to do next.
async fn advance<J: Journal>(loaded: &mut Loaded, shared: &Shared<J>, id: &InstanceId) -> Result<Next, StepError> {
    let now = || shared.clock.now();
    let step = next_step(&loaded.instance, now());
    tracing::debug!(instance = %id, ?step, "step");
    match step {
        Step::Done | Step::Wait => Ok(Next::Idle),
        Step::Select => {
            // A machine seen stopped may linger (and bill storage): it is destroyed before it is
            // replaced. One that vanished is left alone: if it was there all along, it comes back.
            if let (Some(InstanceState::Interrupted), Some(stopped)) =
                (loaded.instance.current_state(), &loaded.instance.replaces)
                && loaded.instance.lost_machine(&stopped.id).is_some_and(|l| l.reason != InterruptionReason::Vanished)
                && let Some(provider) = stopped.provider.as_ref().and_then(|p| shared.market.get(p))
                && let Err(e) = provider.terminate(&stopped.id).await
            {
                tracing::warn!(instance = %id, machine = %stopped.id, error = %e, "could not clean up the interrupted machine");
            }
            let request = loaded.instance.request.clone().expect("a requested chain has its request");
            let filter = crate::provider::OfferFilter::for_launch(&request);
            let configured: Vec<_> = shared.market.providers().iter().map(|p| p.info().name).collect();
            if !configured.is_empty() && !configured.iter().any(|p| filter.needs.allows(p)) {
                // Waiting cannot help: no provider the launch allows is configured here.
                let mut names: Vec<&str> = configured.iter().map(|p| p.as_str()).collect();
                names.sort_unstable();
                let names = names.join(", ");
                let message = format!(
                    "the launch's providers and exclude_providers leave out every configured provider ({names})"
                );
                let command = InstanceCommand::NoOfferFits { message, can_wait: false, at: now() };
                loaded.commit(&shared.journal, id, command).await?;
                return Ok(Next::Drive);
            }
            let wait = shared.selection_wait;
            // A provider the launch leaves out is not asked at all.
            let asks = shared.market.providers().iter().filter(|p| filter.needs.allows(&p.info().name)).map(|p| {
                let filter = filter.clone();
                async move {
                    let answer = tokio::time::timeout(wait, p.list_offers(&filter)).await.unwrap_or_else(|_| {
                        Err(ProviderError::new(
                            &p.info().name,
                            FailureClass::ProviderOutage,
                            format!("no offers within {}s; left out of this selection", wait.as_secs()),
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
                    InstanceCommand::NoOfferFits { message, can_wait: unaffordable == 0, at: now() }
                }
            };
            loaded.commit(&shared.journal, id, command).await?;
            Ok(match loaded.instance.waiting_until {
                Some(until) if !loaded.instance.current_state().is_some_and(InstanceState::is_final) => {
                    Next::DriveIn(shared.capacity_recheck.min(shared.clock.until(until)).max(Duration::from_millis(1)))
                }
                _ => Next::Drive,
            })
        }
        Step::Launch => {
            loaded.commit(&shared.journal, id, InstanceCommand::StartAttempt { at: now() }).await?;
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
                loaded.commit(&shared.journal, id, command).await?;
                return Ok(Next::Drive);
            };
            // The plain values exist from here to the provider call, in memory only.
            let env = match shared.keyring.unseal_env(id, &request.env) {
                Ok(env) => env,
                Err(e) => {
                    let command = InstanceCommand::RecordLaunchFailed {
                        attempt_id,
                        class: FailureClass::InvalidRequest,
                        message: e.to_string(),
                        at: now(),
                    };
                    loaded.commit(&shared.journal, id, command).await?;
                    return Ok(Next::Drive);
                }
            };
            let spec = LaunchSpec {
                attempt_id: attempt_id.clone(),
                offer_id: offer.offer_id.clone(),
                spot: offer.spot,
                bid,
                gpu_count: offer.gpu_count,
                image: request.image.clone(),
                env,
                ssh_public_key: request.ssh_public_key.clone(),
                disk_gb: request.disk_gb,
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
                // The call may have started a machine: leave the attempt open for the status polls
                // to settle within the settlement window (adopt it by its label, or fail it).
                Err(e) if LaunchAnswer::of(e.class) == LaunchAnswer::Unclear => {
                    tracing::warn!(instance = %id, attempt = %attempt_id, error = %e, "launch outcome unclear; settling it");
                    return Ok(Next::Idle);
                }
                Err(e) => {
                    InstanceCommand::RecordLaunchFailed { attempt_id, class: e.class, message: e.message, at: now() }
                }
            };
            loaded.commit(&shared.journal, id, command).await?;
            Ok(Next::Drive)
        }
        Step::Terminate => {
            let machine = loaded.instance.machine.clone().expect("terminating a machine");
            let provider = machine.provider.as_ref().and_then(|p| shared.market.get(p));
            if let Some(provider) = provider {
                provider
                    .terminate(&machine.id)
                    .await
                    .map_err(|source| StepError::Terminate { machine: machine.id.clone(), source })?;
                crash_at(shared.failpoint, Failpoint::AfterTerminateCall);
            }
            loaded.commit(&shared.journal, id, InstanceCommand::RecordTerminated { at: now() }).await?;
            Ok(Next::Drive)
        }
        Step::EnforceLimits => {
            loaded.commit(&shared.journal, id, InstanceCommand::EnforceLimits { at: now() }).await?;
            Ok(Next::Drive)
        }
        Step::RecordTerminated => {
            loaded.commit(&shared.journal, id, InstanceCommand::RecordTerminated { at: now() }).await?;
            Ok(Next::Drive)
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

/// Destroys this chain's orphans and journals each; a failure is retried at the next poll.
async fn clean_up_orphans<J: Journal>(
    loaded: &mut Loaded,
    shared: &Shared<J>,
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
        if let Err(e) = loaded.commit(&shared.journal, id, command).await {
            tracing::warn!(instance = %id, machine = %machine.id, error = %e, "orphan terminated but not journaled");
        }
    }
}
