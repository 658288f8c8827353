//! The supervisor: routes commands to instance actors by id, rebuilds every unfinished chain from
//! the journal at start-up (one pass), polls each provider's machines in one list call per
//! interval and fans the listing out, and forgets chains once they are over.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use cqrs_es::persist::PersistenceError;
use tgp_events::api::{InstanceSummary, ListRequest};
use tgp_events::{InstanceId, LaunchRequest};

use crate::aggregate::{InstanceCommand, InstanceError};
use crate::clock::Clock;
use crate::evidence::EvidenceConfig;
use crate::instance_actor::{
    Execute, Failpoint, Finished, GetSummary, InstanceActor, Observe, Shared, StepError, Tracked, TrackedMachine,
};
use crate::journal::{CommitError, Journal, Loaded, load};
use crate::keyring::Keyring;
use crate::provider::{Market, ProviderListing};
use crate::provider_actor::ProviderEventSink;
use tgp_events::ProviderName;
use tgp_events::provider_events::ProviderEvent;

/// How the supervisor and its actors behave.
#[derive(Clone)]
pub struct SupervisorConfig {
    /// How often each provider's machines are listed (one call per provider per interval).
    pub poll_interval: Duration,
    /// Wait before retrying a step that failed for a passing reason.
    pub retry_delay: Duration,
    /// Crash on purpose at this point (crash-safety tests only).
    pub failpoint: Option<Failpoint>,
    /// Timestamps and deadlines: the wall clock, or a virtual one in `tgp-dev sim`.
    pub clock: Clock,
    /// How much evidence a conclusion needs.
    pub evidence: EvidenceConfig,
    /// How long selection waits for a provider's offers (a provider whose breaker is closed but
    /// slow to answer) before leaving it out of that selection.
    pub selection_wait: Duration,
    /// While a chain waits for capacity, how often it selects again.
    pub capacity_recheck: Duration,
    /// The keys that open journaled env values, for launches and relaunches; the first seals.
    pub keyring: Arc<Keyring>,
}

impl std::fmt::Debug for SupervisorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisorConfig")
            .field("poll_interval", &self.poll_interval)
            .field("retry_delay", &self.retry_delay)
            .field("failpoint", &self.failpoint)
            .field("evidence", &self.evidence)
            .field("selection_wait", &self.selection_wait)
            .field("capacity_recheck", &self.capacity_recheck)
            .field("keyring", &self.keyring)
            .finish_non_exhaustive()
    }
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            poll_interval: Duration::from_secs(15),
            retry_delay: Duration::from_secs(2),
            failpoint: None,
            clock: Clock::System,
            evidence: EvidenceConfig::default(),
            selection_wait: Duration::from_secs(30),
            capacity_recheck: Duration::from_secs(30),
            keyring: Arc::default(),
        }
    }
}

/// Why a request to the supervisor failed.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// No chain has this id, live or journaled.
    #[error("no instance {0}")]
    NotFound(InstanceId),
    /// The aggregate refused the command.
    #[error("{0}")]
    Refused(#[from] InstanceError),
    /// Another writer changed the chain first.
    #[error("instance {0} was changed concurrently; retry")]
    Conflict(InstanceId),
    /// The journal failed; the outcome may be unknown, so a retry is safe (it lands on the same
    /// chain).
    #[error("journal: {0}")]
    Journal(#[from] PersistenceError),
    /// The instance's actor stopped while asked.
    #[error("instance {0} is not available right now; retry")]
    Unavailable(InstanceId),
    /// New launches are stopped: the journal changed under tgp (see [`StopLaunches`]).
    #[error("tgp takes no new launches: {0}; an operator must restore the journal and restart tgp")]
    LaunchesStopped(JournalChanged),
}

impl From<CommitError> for SupervisorError {
    fn from(e: CommitError) -> Self {
        match e {
            CommitError::Refused(r) => SupervisorError::Refused(r),
            CommitError::Conflict(id) => SupervisorError::Conflict(id),
            CommitError::Journal(j) => SupervisorError::Journal(j),
        }
    }
}

impl SupervisorError {
    /// The stable code for `{"error": {"code": ...}}` replies.
    pub fn code(&self) -> &'static str {
        match self {
            SupervisorError::NotFound(_) => "not_found",
            SupervisorError::Refused(_) | SupervisorError::Conflict(_) => "conflict",
            SupervisorError::Journal(_) | SupervisorError::Unavailable(_) => "unavailable",
            SupervisorError::LaunchesStopped(_) => "launches_stopped",
        }
    }
}

type Reply = Result<InstanceSummary, SupervisorError>;

/// How long a question waits for an instance actor busy with a provider call before it is
/// answered from the journal instead (the actor journals before it acts, so the journal is current).
const BUSY: Duration = Duration::from_millis(250);

/// Start a chain, or answer the existing one with this id (a retried launch is not a second one).
#[derive(Message)]
#[rtype(result = "Result<InstanceSummary, SupervisorError>")]
pub struct Launch {
    /// The chain's id.
    pub id: InstanceId,
    /// The validated command.
    pub request: LaunchRequest,
}

/// Take no new chains from now on, for this reason: the journal that would account for them
/// cannot be trusted. A launch of a chain that exists still answers it; chains already running,
/// relaunches and terminations go on.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopLaunches(pub JournalChanged);

/// Why launches were stopped: a journal stream changed under a running tgp.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct JournalChanged {
    /// The stream that changed.
    pub stream: String,
    /// How, as a stable word (`deleted`, `recreated`, ...).
    pub change: &'static str,
    /// What was seen, for the operator.
    pub detail: String,
}

/// End a chain.
#[derive(Message)]
#[rtype(result = "Result<InstanceSummary, SupervisorError>")]
pub struct Terminate {
    /// Which.
    pub id: InstanceId,
    /// Why.
    pub reason: String,
}

/// One chain's summary, live or from the journal.
#[derive(Message)]
#[rtype(result = "Result<InstanceSummary, SupervisorError>")]
pub struct Get(pub InstanceId);

/// The live chains, filtered.
#[derive(Message)]
#[rtype(result = "Vec<InstanceSummary>")]
pub struct List(pub ListRequest);

/// How many chains are in memory (for tests and benchmarks).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct LiveCount;

/// Routes, rebuilds, polls.
pub struct Supervisor<J: Journal + 'static> {
    /// The actors of unfinished chains, in id order: each listing reaches them in the same order
    /// every run, so their provider calls queue at the limiter the same way (a seed's simulation
    /// repeats itself).
    live: BTreeMap<InstanceId, Addr<InstanceActor<J>>>,
    /// Handed to every actor.
    shared: Arc<Shared<J>>,
    /// Status poll interval.
    poll_interval: Duration,
    /// Machines whose orphan check is in flight, so a slow check is not started twice.
    cleaning: HashSet<String>,
    /// The machine each live chain bills: what each provider's listing should hold.
    tracked: HashMap<InstanceId, TrackedMachine>,
    /// Providers whose last listings were suspect, and how many in a row.
    suspected: HashMap<ProviderName, u32>,
    /// Where suspect listings are said.
    events: Arc<dyn ProviderEventSink>,
    /// How much evidence a conclusion needs.
    evidence: EvidenceConfig,
    /// Why new launches are refused, once they are ([`StopLaunches`]).
    launches_stopped: Option<JournalChanged>,
}

impl<J: Journal + 'static> Supervisor<J> {
    /// Starts an actor for each unfinished chain of `chains` (as loaded from the journal), and
    /// the supervisor. Must run inside an actix system. Started through
    /// [`crate::system::SystemBuilder`], so every caller assembles the same system.
    pub(crate) fn start(
        journal: J,
        market: Market,
        events: Arc<dyn ProviderEventSink>,
        config: SupervisorConfig,
        chains: BTreeMap<InstanceId, Loaded>,
    ) -> Addr<Self> {
        let started = std::time::Instant::now();
        let ctx = Context::new();
        let shared = Arc::new(Shared {
            journal,
            market,
            finished: ctx.address().recipient(),
            retry_delay: config.retry_delay,
            failpoint: config.failpoint,
            clock: config.clock,
            tracked: ctx.address().recipient(),
            absent_spacing: config.evidence.absent_spacing.unwrap_or(config.poll_interval),
            settle_window: config.evidence.settle_window(config.poll_interval),
            evidence: config.evidence.clone(),
            selection_wait: config.selection_wait,
            capacity_recheck: config.capacity_recheck,
            keyring: config.keyring.clone(),
        });
        let mut supervisor = Supervisor {
            live: BTreeMap::new(),
            shared,
            poll_interval: config.poll_interval,
            cleaning: HashSet::new(),
            tracked: HashMap::new(),
            suspected: HashMap::new(),
            events,
            evidence: config.evidence,
            launches_stopped: None,
        };
        let mut rebuilt = 0usize;
        for (id, loaded) in chains {
            if loaded.is_unfinished() {
                supervisor.spawn(id, loaded);
                rebuilt += 1;
            }
        }
        tracing::info!(rebuilt, spawn_ms = started.elapsed().as_millis() as u64, "instance actors started");
        ctx.run(supervisor)
    }
}

impl<J: Journal + 'static> Supervisor<J> {
    fn spawn(&mut self, id: InstanceId, loaded: Loaded) -> Addr<InstanceActor<J>> {
        let addr = InstanceActor::new(id.clone(), loaded, self.shared.clone()).start();
        self.live.insert(id, addr.clone());
        addr
    }

    fn poll(&mut self, ctx: &mut Context<Self>) {
        for provider in self.shared.market.providers().to_vec() {
            self.poll_one(provider, ctx);
        }
    }

    /// Lists one provider's machines and fans the listing out; after a first suspect listing,
    /// lists it again soon, before any chain asks about its machine by itself.
    fn poll_one(&mut self, provider: Arc<dyn crate::provider::ProviderClient>, ctx: &mut Context<Self>) {
        let clock = self.shared.clock;
        let again = provider.clone();
        let fut = async move {
            let taken_at = clock.now();
            let name = provider.info().name;
            provider.list_instances().await.map(|machines| ProviderListing::new(name, taken_at, machines))
        };
        ctx.spawn(fut.into_actor(self).map(move |answer, act, ctx| match answer {
            Ok(mut listing) => {
                listing.suspect = act.suspect(&listing);
                let listing = Arc::new(listing);
                for addr in act.live.values() {
                    addr.do_send(Observe(listing.clone()));
                }
                act.clean_up_after_finished_chains(&listing, ctx);
                if listing.suspect == 1 {
                    let soon = (act.poll_interval / 4).min(Duration::from_secs(2));
                    ctx.run_later(soon, move |act, ctx| act.poll_one(again, ctx));
                }
            }
            Err(e) => tracing::warn!(error = %e, "status poll failed"),
        }));
    }
}

impl<J: Journal + 'static> Supervisor<J> {
    /// Whether a listing leaves out too many of the machines the live chains bill at its
    /// provider to be believed; journals a `ListingSuspect` when a provider's listings turn so.
    fn suspect(&mut self, listing: &ProviderListing) -> u32 {
        let expected: Vec<&TrackedMachine> = self
            .tracked
            .values()
            .filter(|m| m.provider == listing.provider && m.launched_at.is_none_or(|t| t < listing.taken_at))
            .collect();
        let omitted = expected.iter().filter(|m| !listing.by_id.contains_key(&m.id)).count();
        let (expected, omitted) = (expected.len() as u32, omitted as u32);
        let suspect = self.evidence.is_suspect(expected, omitted);
        if !suspect {
            self.suspected.remove(&listing.provider);
            return 0;
        }
        let listed = listing.by_id.len() as u32;
        tracing::warn!(provider = %listing.provider, expected, listed, omitted, "suspect listing: no machine is concluded lost from it");
        let streak = self.suspected.entry(listing.provider.clone()).or_default();
        *streak += 1;
        if *streak == 1 {
            self.events.record(&listing.provider, ProviderEvent::ListingSuspect { expected, listed, omitted });
        }
        *streak
    }

    /// Machines labelled by tgp whose chain is over but that still exist (running, or stopped by
    /// an interruption and perhaps billing storage) are orphans: each is
    /// destroyed and journaled (`OrphanTerminated`) on its chain. Live chains check their own
    /// machines; a label whose chain the journal does not know is never touched (it may belong to
    /// another tgp, or to someone's own naming).
    fn clean_up_after_finished_chains(&mut self, listing: &ProviderListing, ctx: &mut Context<Self>) {
        for (id, machines) in &listing.by_instance {
            if self.live.contains_key(id) {
                continue;
            }
            for (attempt, machine_id) in machines {
                let Some(machine) = listing.by_id.get(machine_id) else { continue };
                let (attempt, id) = (attempt.clone(), id.clone());
                if !machine.status.still_exists() || !self.cleaning.insert(machine.id.clone()) {
                    continue;
                }
                let (shared, provider, machine) = (self.shared.clone(), listing.provider.clone(), machine.clone());
                let machine_id = machine.id.clone();
                let check = async move {
                    let mut loaded = load(&shared.journal, &id).await?;
                    if !loaded.instance.current_state().is_some_and(|s| s.is_final()) {
                        return Ok::<_, StepError>(());
                    }
                    let Some(client) = shared.market.get(&provider) else { return Ok(()) };
                    client
                        .terminate(&machine.id)
                        .await
                        .map_err(|source| StepError::Terminate { machine: machine.id.clone(), source })?;
                    tracing::warn!(instance = %id, machine = %machine.id, "orphan terminated");
                    let command = InstanceCommand::RecordOrphanCleanup {
                        provider,
                        provider_instance_id: machine.id,
                        attempt_id: attempt,
                        raw_status: machine.raw_status,
                        at: shared.clock.now(),
                    };
                    loaded.commit(&shared.journal, &id, command).await?;
                    Ok(())
                };
                ctx.spawn(check.into_actor(self).map(move |outcome, act, _| {
                    act.cleaning.remove(&machine_id);
                    if let Err(e) = outcome {
                        tracing::warn!(error = %e, class = ?e.class(), "orphan check failed; retried at the next poll");
                    }
                }));
            }
        }
    }
}

impl<J: Journal + 'static> Actor for Supervisor<J> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.poll_interval, |act, ctx| act.poll(ctx));
    }
}

impl<J: Journal + 'static> Handler<Finished> for Supervisor<J> {
    type Result = ();
    fn handle(&mut self, Finished(id): Finished, _: &mut Context<Self>) {
        self.live.remove(&id);
        self.tracked.remove(&id);
    }
}

impl<J: Journal + 'static> Handler<Tracked> for Supervisor<J> {
    type Result = ();
    fn handle(&mut self, Tracked { id, machine }: Tracked, _: &mut Context<Self>) {
        match machine {
            Some(machine) if self.live.contains_key(&id) => {
                self.tracked.insert(id, machine);
            }
            _ => {
                self.tracked.remove(&id);
            }
        }
    }
}

impl<J: Journal + 'static> Handler<LiveCount> for Supervisor<J> {
    type Result = usize;
    fn handle(&mut self, _: LiveCount, _: &mut Context<Self>) -> usize {
        self.live.len()
    }
}

/// Sends a command to a live actor; a refused repeat launch answers the chain as it is.
async fn execute<J: Journal + 'static>(
    addr: Addr<InstanceActor<J>>,
    id: InstanceId,
    command: InstanceCommand,
) -> Reply {
    let is_launch = matches!(command, InstanceCommand::RequestLaunch { .. });
    match addr.send(Execute(command)).await {
        Ok(Ok(summary)) => Ok(summary),
        Ok(Err(CommitError::Refused(InstanceError::AlreadyExists(_)))) if is_launch => {
            addr.send(GetSummary).await.ok().flatten().ok_or(SupervisorError::Unavailable(id))
        }
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(SupervisorError::Unavailable(id)),
    }
}

impl<J: Journal + 'static> Handler<Launch> for Supervisor<J> {
    type Result = ResponseActFuture<Self, Reply>;
    fn handle(&mut self, Launch { id, request }: Launch, _: &mut Context<Self>) -> Self::Result {
        let command = InstanceCommand::RequestLaunch { id: id.clone(), request, at: self.shared.clock.now() };
        if let Some(addr) = self.live.get(&id).cloned() {
            return Box::pin(execute(addr, id, command).into_actor(self));
        }
        if let Some(why) = &self.launches_stopped {
            return Box::pin(actix::fut::ready(Err(SupervisorError::LaunchesStopped(why.clone()))));
        }
        let shared = self.shared.clone();
        let lookup = {
            let id = id.clone();
            async move { load(&shared.journal, &id).await }
        };
        Box::pin(lookup.into_actor(self).then(move |found, act, _| {
            let fut: std::pin::Pin<Box<dyn Future<Output = Reply>>> = match found {
                Err(e) => Box::pin(std::future::ready(Err(e.into()))),
                Ok(loaded) if loaded.version > 0 => {
                    let summary = loaded.instance.summary().ok_or(SupervisorError::NotFound(id.clone()));
                    if !loaded.instance.current_state().is_some_and(|s| s.is_final()) && !act.live.contains_key(&id) {
                        act.spawn(id.clone(), loaded);
                    }
                    Box::pin(std::future::ready(summary))
                }
                Ok(_) => {
                    let addr = match act.live.get(&id) {
                        Some(addr) => addr.clone(),
                        None => act.spawn(id.clone(), Loaded::default()),
                    };
                    Box::pin(execute(addr, id, command))
                }
            };
            fut.into_actor(act)
        }))
    }
}

impl<J: Journal + 'static> Handler<StopLaunches> for Supervisor<J> {
    type Result = ();
    fn handle(&mut self, StopLaunches(why): StopLaunches, _: &mut Context<Self>) {
        tracing::error!(reason = %why, "new launches stopped");
        self.launches_stopped.get_or_insert(why);
    }
}

impl<J: Journal + 'static> Handler<Terminate> for Supervisor<J> {
    type Result = ResponseFuture<Reply>;
    fn handle(&mut self, Terminate { id, reason }: Terminate, _: &mut Context<Self>) -> Self::Result {
        let command = InstanceCommand::RequestTermination { reason, at: self.shared.clock.now() };
        if let Some(addr) = self.live.get(&id).cloned() {
            return Box::pin(execute(addr, id, command));
        }
        let shared = self.shared.clone();
        Box::pin(async move {
            let loaded = load(&shared.journal, &id).await?;
            match loaded.instance.current_state() {
                None => Err(SupervisorError::NotFound(id)),
                Some(state) => Err(SupervisorError::Refused(InstanceError::Finished(state.name()))),
            }
        })
    }
}

impl<J: Journal + 'static> Handler<Get> for Supervisor<J> {
    type Result = ResponseFuture<Reply>;
    fn handle(&mut self, Get(id): Get, _: &mut Context<Self>) -> Self::Result {
        let live = self.live.get(&id).cloned();
        let shared = self.shared.clone();
        Box::pin(async move {
            if let Some(addr) = live
                && let Ok(Ok(Some(summary))) = tokio::time::timeout(BUSY, addr.send(GetSummary)).await
            {
                return Ok(summary);
            }
            // Unknown, finished, or busy with a provider call: the journal holds the answer.
            let loaded = load(&shared.journal, &id).await?;
            loaded.instance.summary().ok_or(SupervisorError::NotFound(id))
        })
    }
}

impl<J: Journal + 'static> Handler<List> for Supervisor<J> {
    type Result = ResponseFuture<Vec<InstanceSummary>>;
    fn handle(&mut self, List(filter): List, _: &mut Context<Self>) -> Self::Result {
        let shared = self.shared.clone();
        let asks: Vec<_> = self
            .live
            .iter()
            .map(|(id, addr)| {
                let (id, addr, shared) = (id.clone(), addr.clone(), shared.clone());
                async move {
                    match tokio::time::timeout(BUSY, addr.send(GetSummary)).await {
                        Ok(Ok(summary)) => summary,
                        _ => load(&shared.journal, &id).await.ok().and_then(|l| l.instance.summary()),
                    }
                }
            })
            .collect();
        Box::pin(async move {
            let mut found: Vec<InstanceSummary> = futures::future::join_all(asks)
                .await
                .into_iter()
                .flatten()
                .filter(|s| filter.state.is_none_or(|st| st == s.state))
                .filter(|s| filter.provider.as_ref().is_none_or(|p| s.provider.as_ref() == Some(p)))
                .collect();
            found.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
            found
        })
    }
}
