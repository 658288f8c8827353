//! One actix actor per provider: it owns the provider's client, rate limiter, circuit breaker and
//! caches, and nothing else calls the provider. The rest of tgp talks to it through
//! [`ProviderHandle`], which implements the same `ProviderClient` trait, so the instance actors and
//! selection do not change when limits, breakers and caches are put in front of a provider.
//!
//! # What every call goes through
//! 1. Disabled providers refuse new work (offers, launches); status and terminate still go.
//! 2. Offers: a fresh cached answer for the same filter is returned; a call already in flight for
//!    it is joined (single flight). Offerings marked unavailable (capacity errors, interruptions)
//!    are removed from answers until their TTL passes.
//! 3. The circuit breaker admits the call, lets it through as the half-open probe, or fails it fast.
//! 4. Each attempt takes a token; when tokens are scarce the attempt queues and they go to
//!    terminate, then launch, then status, then offers. A 429 pauses the provider (its
//!    `Retry-After`, or backoff with jitter) and halves the rate, which climbs back to the
//!    configured one within a minute of the last 429 (`limiter.rs`); the configured budget is
//!    never exceeded.
//! 5. Idempotent calls (offers, status, list, terminate) are retried with capped exponential
//!    backoff and jitter on rate limits and outages; a launch is never blindly retried (an
//!    uncertain launch is settled by the lifecycle's attempt reconciliation).
//!
//! # The fast path (docs/decisions/0006-provider-fast-path.md)
//! The books (limiter, breaker, token queue, caches) are shared, behind one short-held lock,
//! between the actor and its handles. When the breaker is closed, a token is free now and nobody
//! is queued for one, the handle makes the HTTP call on the caller's own task and books an outcome
//! that changes nothing but counters itself (a success, or a refusal of that one request, with the
//! limiter at its configured rate and the breaker staying closed): the common call never crosses
//! the actor's thread. Everything else goes through
//! the actor: the breaker when it is not closed (open, the half-open probe), the token queue (the
//! actor grants queued tokens by priority and wakes on the limiter's clock), every outcome that
//! changes state (429s adapt the limiter, outages feed the breaker, health changes),
//! and every provider event, which only the actor journals.

pub mod breaker;
pub mod limiter;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use actix::prelude::*;
use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use tgp_events::events::FailureClass;
use tgp_events::provider_events::{CircuitState, MarketLine, ProviderEvent};
use tgp_events::{GpuType, Money, ProviderName, Region};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::provider::{
    LaunchReceipt, LaunchSpec, Offer, OfferFilter, ProviderClient, ProviderError, ProviderInfo, ProviderInstance,
    RateLimits,
};
use breaker::{Admission, BreakerConfig, CircuitBreaker};
use limiter::{AdaptiveLimiter, Budget};

/// Where provider events go (the journal, in the controller).
pub trait ProviderEventSink: Send + Sync {
    /// Records one event; must not block.
    fn record(&self, provider: &ProviderName, event: ProviderEvent);
}

/// How a provider actor behaves.
#[derive(Clone, Debug)]
pub struct ProviderActorConfig {
    /// Requests per minute and burst; default: the provider's own `rate_limits()`.
    pub budget: Option<Budget>,
    /// Circuit breaker thresholds.
    pub breaker: BreakerConfig,
    /// How long an offers answer is reused.
    pub offers_ttl: Duration,
    /// How long an offering stays unavailable after a capacity error or an interruption.
    pub unavailable_ttl: Duration,
    /// Retries of idempotent calls (after the first attempt).
    pub retries: usize,
    /// First retry delay (doubling, with jitter, capped at 30 s).
    pub retry_delay: Duration,
}

impl Default for ProviderActorConfig {
    fn default() -> Self {
        ProviderActorConfig {
            budget: None,
            breaker: BreakerConfig::default(),
            offers_ttl: Duration::from_secs(30),
            unavailable_ttl: Duration::from_secs(600),
            retries: 4,
            retry_delay: Duration::from_millis(250),
        }
    }
}

/// Which calls get tokens first when they are scarce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// Stopping spend comes first.
    Terminate = 0,
    /// Then starting what was asked for.
    Launch = 1,
    /// Then watching what runs.
    Status = 2,
    /// Then browsing.
    Offers = 3,
}

/// One operation on the provider.
#[derive(Clone, Debug)]
pub enum Operation {
    /// List offers.
    ListOffers(OfferFilter),
    /// Launch.
    Launch(LaunchSpec),
    /// Terminate a machine.
    Terminate(String),
    /// One machine's status.
    Status(String),
    /// Every machine.
    ListInstances,
}

impl Operation {
    fn name(&self) -> &'static str {
        match self {
            Operation::ListOffers(_) => "list_offers",
            Operation::Launch(_) => "launch",
            Operation::Terminate(_) => "terminate",
            Operation::Status(_) => "status",
            Operation::ListInstances => "list_instances",
        }
    }

    /// The cache and single-flight key of an offers call.
    fn offers_key(&self) -> Option<String> {
        match self {
            Operation::ListOffers(filter) => Some(format!("{filter:?}")),
            _ => None,
        }
    }

    fn priority(&self) -> Priority {
        match self {
            Operation::ListOffers(_) => Priority::Offers,
            Operation::Launch(_) => Priority::Launch,
            Operation::Terminate(_) => Priority::Terminate,
            Operation::Status(_) | Operation::ListInstances => Priority::Status,
        }
    }
}

/// What an operation answers.
#[derive(Clone, Debug)]
pub enum Output {
    /// Offers.
    Offers(Vec<Offer>),
    /// A launch receipt.
    Launched(LaunchReceipt),
    /// Done (terminate).
    Done,
    /// One machine.
    Instance(ProviderInstance),
    /// Machines.
    Instances(Vec<ProviderInstance>),
}

async fn perform(client: &dyn ProviderClient, op: &Operation) -> Result<Output, ProviderError> {
    Ok(match op {
        Operation::ListOffers(filter) => Output::Offers(client.list_offers(filter).await?),
        Operation::Launch(spec) => Output::Launched(client.launch(spec).await?),
        Operation::Terminate(id) => {
            client.terminate(id).await?;
            Output::Done
        }
        Operation::Status(id) => Output::Instance(client.status(id).await?),
        Operation::ListInstances => Output::Instances(client.list_instances().await?),
    })
}

/// Run one operation through the actor (the path for calls the breaker does not simply admit).
#[derive(Message)]
#[rtype(result = "Result<Output, ProviderError>")]
pub struct Call(pub Operation);

/// Grant tokens to queued calls.
#[derive(Message)]
#[rtype(result = "()")]
struct Dispatch;

/// The outcome of one attempt that changes the books beyond counters: the actor books it.
#[derive(Message)]
#[rtype(result = "()")]
struct Attempted {
    operation: &'static str,
    class: Option<FailureClass>,
    retry_after: Option<u64>,
}

/// Offers were fetched: the actor journals their summary (offers are cached for a while, so this
/// round trip is rare).
#[derive(Message)]
#[rtype(result = "()")]
struct Fetched(Vec<Offer>);

/// Disable (with why) or enable the provider.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetEnabled(pub Option<String>);

/// An offering (offer id, spot or not) is not available for a while.
#[derive(Message)]
#[rtype(result = "()")]
pub struct MarkUnavailable {
    /// The provider's offer id.
    pub offer_id: String,
    /// The spot side or the on-demand side.
    pub spot: bool,
}

/// What the actor and its handles share: the client and the books, behind one lock that is never
/// held across an await.
struct Shared {
    name: ProviderName,
    /// The name as a metrics label, cloned without allocating on every call.
    label: Arc<str>,
    client: Arc<dyn ProviderClient>,
    config: ProviderActorConfig,
    books: Mutex<Books>,
}

/// The provider's books: everything a call consults or changes.
struct Books {
    limiter: AdaptiveLimiter,
    /// Calls waiting for a token, by priority.
    waiting: [VecDeque<oneshot::Sender<()>>; 4],
    /// A `Dispatch` is scheduled or on its way to the actor.
    dispatch_armed: bool,
    breaker: CircuitBreaker,
    /// Offers answers by filter, with when they were fetched.
    offers: HashMap<String, (Instant, Vec<Offer>)>,
    /// Askers joined to an offers call in flight, by filter.
    offers_in_flight: HashMap<String, Vec<oneshot::Sender<Result<Output, ProviderError>>>>,
    /// Offerings to leave out until then.
    unavailable: HashMap<(String, bool), Instant>,
    /// Why the provider is disabled, when it is.
    disabled: Option<String>,
    /// Health as last journaled.
    healthy: Option<bool>,
}

/// A call answered without calling the provider.
enum Early {
    /// From the books: refused while disabled, or cached offers.
    Answered(Result<Output, ProviderError>),
    /// Joined to the same offers call in flight.
    Joined(oneshot::Receiver<Result<Output, ProviderError>>),
}

impl Early {
    async fn settle(self, name: &ProviderName) -> Result<Output, ProviderError> {
        match self {
            Early::Answered(result) => result,
            Early::Joined(receiver) => receiver.await.unwrap_or_else(|_| {
                Err(ProviderError::new(name, FailureClass::ProviderOutage, "offers call abandoned"))
            }),
        }
    }
}

/// A call on its way to the provider.
struct Flight {
    /// The offers filter's key, for the cache and single flight.
    offers_key: Option<String>,
    /// The first attempt's token is already taken.
    granted: bool,
}

impl Shared {
    fn books(&self) -> MutexGuard<'_, Books> {
        // Nothing panics while holding the lock; if something did, the books are still whole.
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn error(&self, class: FailureClass, message: impl Into<String>) -> ProviderError {
        ProviderError::new(&self.name, class, message)
    }

    /// Waits for a token at `priority`, queued behind higher priorities; the actor grants it.
    async fn acquire(&self, addr: &Addr<ProviderActor>, priority: Priority) -> Result<(), ProviderError> {
        let stopped = || self.error(FailureClass::ProviderOutage, "provider actor stopped");
        let receiver = {
            let mut books = self.books();
            if books.waiting.iter().all(VecDeque::is_empty) && books.limiter.try_acquire().is_ok() {
                return Ok(());
            }
            if !addr.connected() {
                return Err(stopped());
            }
            let (sender, receiver) = oneshot::channel();
            books.waiting[priority as usize].push_back(sender);
            if !books.dispatch_armed {
                books.dispatch_armed = true;
                addr.do_send(Dispatch);
            }
            receiver
        };
        tracing::debug!(?priority, "waiting for a token");
        receiver.await.map_err(|_| stopped())
    }

    /// Books one attempt: counters here; anything that changes state, by the actor (waited for, so
    /// the caller's next call sees it).
    async fn book(&self, addr: &Addr<ProviderActor>, attempt: Attempted, elapsed: Duration) {
        let outcome: metrics::SharedString = match attempt.class {
            None => "ok".into(),
            Some(c) => format!("{c:?}").to_lowercase().into(),
        };
        metrics::counter!("tgp_provider_requests_total", "provider" => self.label.clone(), "operation" => attempt.operation, "outcome" => outcome).increment(1);
        metrics::histogram!("tgp_provider_request_duration_seconds", "provider" => self.label.clone(), "operation" => attempt.operation).record(elapsed.as_secs_f64());
        let quiet = self.books().book_quietly(&attempt);
        if !quiet {
            // A stopped actor has no books left to keep.
            let _ = addr.send(attempt).await;
        }
    }
}

impl Books {
    fn new(budget: Budget, breaker: BreakerConfig) -> Self {
        Books {
            limiter: AdaptiveLimiter::new(budget),
            waiting: Default::default(),
            dispatch_armed: false,
            breaker: CircuitBreaker::new(breaker),
            offers: HashMap::new(),
            offers_in_flight: HashMap::new(),
            unavailable: HashMap::new(),
            disabled: None,
            healthy: None,
        }
    }

    /// Answers a call from the books when it can: refused while disabled, cached, or joined.
    fn early(&mut self, shared: &Shared, op: &Operation, offers_key: Option<&str>) -> Option<Early> {
        if let (Some(reason), Operation::ListOffers(_) | Operation::Launch(_)) = (&self.disabled, op) {
            let error = shared.error(FailureClass::InvalidRequest, format!("provider disabled: {reason}"));
            return Some(Early::Answered(Err(error)));
        }
        let key = offers_key?;
        if let Some((at, offers)) = self.offers.get(key)
            && at.elapsed() < shared.config.offers_ttl
        {
            let offers = offers.clone();
            return Some(Early::Answered(Ok(Output::Offers(self.without_unavailable(offers)))));
        }
        let waiters = self.offers_in_flight.get_mut(key)?;
        let (sender, receiver) = oneshot::channel();
        waiters.push(sender);
        Some(Early::Joined(receiver))
    }

    /// The call goes (past the breaker): it becomes the offers call in flight for its filter, and
    /// takes a token now when one is free and nobody waits for one.
    fn take_off(&mut self, offers_key: Option<String>) -> Flight {
        if let Some(key) = &offers_key {
            self.offers_in_flight.insert(key.clone(), Vec::new());
        }
        let granted = self.waiting.iter().all(VecDeque::is_empty) && self.limiter.try_acquire().is_ok();
        Flight { offers_key, granted }
    }

    /// Books an outcome that changes nothing but counters: not a 429, not an outage, the limiter
    /// at its configured rate, the breaker closed and staying closed, and no health change to
    /// journal. Returns false, booking nothing, when the actor must book it.
    fn book_quietly(&mut self, a: &Attempted) -> bool {
        match a.class {
            Some(FailureClass::RateLimited | FailureClass::ProviderOutage) => return false,
            None if !self.limiter.is_settled() => return false,
            _ => {}
        }
        if a.operation == "list_instances" && self.healthy != Some(true) {
            return false;
        }
        self.breaker.record_quiet_success()
    }

    fn without_unavailable(&mut self, mut offers: Vec<Offer>) -> Vec<Offer> {
        let now = Instant::now();
        self.unavailable.retain(|_, until| *until > now);
        for offer in &mut offers {
            if self.unavailable.contains_key(&(offer.id.clone(), true)) {
                offer.spot_price = None;
            }
            if self.unavailable.contains_key(&(offer.id.clone(), false)) {
                offer.on_demand_price = None;
            }
        }
        offers.retain(|o| o.spot_price.is_some() || o.on_demand_price.is_some());
        offers
    }
}

/// An offers call in flight; if its caller gives up before it lands, its joiners are told and the
/// next asker calls again.
struct Landing<'a> {
    shared: &'a Shared,
    offers_key: Option<String>,
}

impl Landing<'_> {
    /// Books the result: offers cached and joiners answered (the fetched offers are returned, for
    /// the actor to journal their summary); a launch refused for capacity marks its offering
    /// unavailable.
    fn land(
        mut self,
        op: &Operation,
        result: Result<Output, ProviderError>,
    ) -> (Result<Output, ProviderError>, Option<Vec<Offer>>) {
        let mut books = self.shared.books();
        if let Some(key) = self.offers_key.take() {
            let fetched = match &result {
                Ok(Output::Offers(offers)) => {
                    books.offers.insert(key.clone(), (Instant::now(), offers.clone()));
                    Some(offers.clone())
                }
                _ => None,
            };
            let result = match result {
                Ok(Output::Offers(offers)) => Ok(Output::Offers(books.without_unavailable(offers))),
                other => other,
            };
            for waiter in books.offers_in_flight.remove(&key).unwrap_or_default() {
                let _ = waiter.send(result.clone());
            }
            return (result, fetched);
        }
        if let (Operation::Launch(spec), Err(e)) = (op, &result)
            && e.class == FailureClass::Capacity
        {
            books
                .unavailable
                .insert((spec.offer_id.clone(), spec.spot), Instant::now() + self.shared.config.unavailable_ttl);
            books.offers.clear();
        }
        (result, None)
    }
}

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.offers_key.take() {
            // Dropping the joiners' senders tells them the call was abandoned.
            self.shared.books().offers_in_flight.remove(&key);
        }
    }
}

/// Makes the call (attempts, retries of idempotent calls, booking each attempt) on the task that
/// runs it: the caller's own on the fast path, a worker's when the actor admitted it.
async fn fly(
    shared: &Shared,
    addr: &Addr<ProviderActor>,
    op: Operation,
    flight: Flight,
) -> Result<Output, ProviderError> {
    let landing = Landing { shared, offers_key: flight.offers_key };
    let granted = AtomicBool::new(flight.granted);
    let (name, priority, idempotent) = (op.name(), op.priority(), !matches!(op, Operation::Launch(_)));
    let (op_ref, granted) = (&op, &granted);
    let attempt = move || async move {
        if !granted.swap(false, Ordering::Relaxed) {
            shared.acquire(addr, priority).await?;
        }
        let started = std::time::Instant::now();
        tracing::debug!(operation = name, "calling the provider");
        let result = perform(shared.client.as_ref(), op_ref).await;
        let (class, retry_after) = match &result {
            Ok(_) => (None, None),
            Err(e) => (Some(e.class), e.retry_after_seconds),
        };
        shared.book(addr, Attempted { operation: name, class, retry_after }, started.elapsed()).await;
        result
    };
    let result = if idempotent {
        attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(shared.config.retry_delay)
                    .with_max_delay(Duration::from_secs(30))
                    .with_max_times(shared.config.retries)
                    .with_jitter(),
            )
            .when(ProviderError::is_retryable)
            .adjust(|e, backoff| backoff.map(|d| e.retry_after_seconds.map_or(d, Duration::from_secs)))
            .await
    } else {
        attempt().await
    };
    let (result, fetched) = landing.land(&op, result);
    if let Some(offers) = fetched {
        // Journaled before the caller goes on; a stopped actor journals nothing more.
        let _ = addr.send(Fetched(offers)).await;
    }
    result
}

/// The actor: the only one that admits past a breaker that is not closed, grants queued tokens,
/// adapts the limiter, and journals provider events.
pub struct ProviderActor {
    shared: Arc<Shared>,
    sink: Arc<dyn ProviderEventSink>,
}

impl ProviderActor {
    /// An actor in front of `client`.
    pub fn new(client: Arc<dyn ProviderClient>, config: ProviderActorConfig, sink: Arc<dyn ProviderEventSink>) -> Self {
        let limits = client.rate_limits();
        let budget = config.budget.unwrap_or(Budget { per_minute: limits.requests_per_minute, burst: limits.burst });
        let books = Mutex::new(Books::new(budget, config.breaker));
        let name = client.info().name;
        let label = Arc::from(name.as_str());
        ProviderActor { shared: Arc::new(Shared { name, label, client, config, books }), sink }
    }

    fn event(&self, event: ProviderEvent) {
        self.sink.record(&self.shared.name, event);
    }

    fn dispatch(&self, books: &mut Books, ctx: &mut Context<Self>) {
        while let Some(queue) = books.waiting.iter_mut().find(|q| !q.is_empty()) {
            // Skip callers that gave up.
            if queue.front().is_some_and(|s| s.is_closed()) {
                queue.pop_front();
                continue;
            }
            match books.limiter.try_acquire() {
                Ok(()) => {
                    // A caller may give up between the check above and here: the token goes to
                    // the next one in line rather than being lost.
                    while let Some(sender) = queue.pop_front() {
                        if sender.send(()).is_ok() {
                            break;
                        }
                    }
                }
                Err(wait) => {
                    if !books.dispatch_armed {
                        books.dispatch_armed = true;
                        ctx.notify_later(Dispatch, wait.max(Duration::from_millis(1)));
                    }
                    break;
                }
            }
        }
        let queued: usize = books.waiting.iter().map(VecDeque::len).sum();
        metrics::gauge!("tgp_provider_queued_requests", "provider" => self.shared.label.clone()).set(queued as f64);
    }

    fn gauges(&self, books: &Books) {
        let provider = self.shared.label.clone();
        let state = match books.breaker.state() {
            CircuitState::Closed => 0.0,
            CircuitState::HalfOpen => 1.0,
            CircuitState::Open => 2.0,
        };
        metrics::gauge!("tgp_provider_circuit_state", "provider" => provider.clone()).set(state);
        metrics::gauge!("tgp_provider_rate_per_minute", "provider" => provider)
            .set(f64::from(books.limiter.current_per_minute()));
    }
}

impl Actor for ProviderActor {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        self.gauges(&self.shared.books());
    }

    /// The handles outlive the actor and share its books: callers still queued for a token are
    /// told it stopped, rather than waiting for a grant that will never come.
    fn stopped(&mut self, _: &mut Context<Self>) {
        self.shared.books().waiting.iter_mut().for_each(VecDeque::clear);
    }
}

impl Handler<Dispatch> for ProviderActor {
    type Result = ();
    fn handle(&mut self, _: Dispatch, ctx: &mut Context<Self>) {
        let shared = self.shared.clone();
        let mut books = shared.books();
        books.dispatch_armed = false;
        self.dispatch(&mut books, ctx);
    }
}

impl Handler<Attempted> for ProviderActor {
    type Result = ();
    fn handle(&mut self, a: Attempted, ctx: &mut Context<Self>) {
        let shared = self.shared.clone();
        let mut books = shared.books();
        match a.class {
            Some(FailureClass::RateLimited) => {
                metrics::counter!("tgp_provider_rate_limited_total", "provider" => shared.label.clone()).increment(1);
                let rate = books.limiter.on_rate_limited(a.retry_after.map(Duration::from_secs));
                self.event(ProviderEvent::RateLimited {
                    retry_after_seconds: a.retry_after,
                    new_rate_per_minute: rate,
                });
                // Wake the queue when the pause ends.
                self.dispatch(&mut books, ctx);
                // The rate climbs back by time: the gauge shows it back even if no call comes.
                ctx.run_later(limiter::RECOVERY, |actor, _| actor.gauges(&actor.shared.books()));
            }
            None => books.limiter.on_success(),
            Some(_) => {}
        }
        let healthy = !matches!(a.class, Some(FailureClass::ProviderOutage));
        if let Some(state) = books.breaker.record(healthy) {
            self.event(ProviderEvent::CircuitChanged {
                state,
                reason: if healthy { "probe succeeded".into() } else { format!("{} failed", a.operation) },
            });
        }
        if a.operation == "list_instances" && books.healthy != Some(healthy) {
            books.healthy = Some(healthy);
            self.event(ProviderEvent::Health { healthy, detail: (!healthy).then(|| "status poll failed".to_string()) });
        }
        self.gauges(&books);
    }
}

impl Handler<Fetched> for ProviderActor {
    type Result = ();
    fn handle(&mut self, Fetched(offers): Fetched, _: &mut Context<Self>) {
        self.event(ProviderEvent::OfferSummary { lines: market_lines(&offers) });
    }
}

impl Handler<SetEnabled> for ProviderActor {
    type Result = ();
    fn handle(&mut self, SetEnabled(disabled): SetEnabled, _: &mut Context<Self>) {
        let shared = self.shared.clone();
        let mut books = shared.books();
        match (&books.disabled, &disabled) {
            (None, Some(reason)) => self.event(ProviderEvent::Disabled { reason: reason.clone() }),
            (Some(_), None) => self.event(ProviderEvent::Enabled),
            _ => {}
        }
        books.disabled = disabled;
        books.offers.clear();
    }
}

impl Handler<MarkUnavailable> for ProviderActor {
    type Result = ();
    fn handle(&mut self, m: MarkUnavailable, _: &mut Context<Self>) {
        let until = Instant::now() + self.shared.config.unavailable_ttl;
        self.shared.books().unavailable.insert((m.offer_id, m.spot), until);
    }
}

impl Handler<Call> for ProviderActor {
    type Result = ResponseFuture<Result<Output, ProviderError>>;

    fn handle(&mut self, Call(op): Call, ctx: &mut Context<Self>) -> Self::Result {
        let shared = self.shared.clone();
        let offers_key = op.offers_key();
        let flight = {
            let mut books = shared.books();
            if let Some(early) = books.early(&shared, &op, offers_key.as_deref()) {
                drop(books);
                return Box::pin(async move { early.settle(&shared.name).await });
            }
            let (admission, changed) = books.breaker.admit();
            if let Some(state) = changed {
                self.event(ProviderEvent::CircuitChanged { state, reason: "open period over; probing".into() });
                self.gauges(&books);
            }
            if let Admission::Refuse(wait) = admission {
                let message = format!("circuit open; next try in {}s", wait.as_secs().max(1));
                return Box::pin(actix::fut::ready(Err(shared.error(FailureClass::ProviderOutage, message))));
            }
            books.take_off(offers_key)
        };
        // The HTTP work runs on the runtime's worker threads, not on the actor's.
        let addr = ctx.address();
        Box::pin(async move {
            let name = shared.name.clone();
            tokio::spawn(async move { fly(&shared, &addr, op, flight).await }).await.unwrap_or_else(|e| {
                Err(ProviderError::new(&name, FailureClass::Unknown, format!("provider call panicked: {e}")))
            })
        })
    }
}

/// A bounded summary of offers: one line per GPU type, region and kind, prices per GPU-hour.
pub fn market_lines(offers: &[Offer]) -> Vec<MarketLine> {
    let mut groups: std::collections::BTreeMap<(String, String, bool), Vec<Money>> = Default::default();
    for offer in offers {
        let gpu = offer.gpu_type.map_or_else(|| format!("?{}", offer.provider_gpu_name), |g| g.to_string());
        let region = offer.region.as_ref().map_or_else(|| format!("?{}", offer.provider_region), |r| r.to_string());
        let per_gpu =
            |p: Money| Money::from_decimal(p.as_decimal() / rust_decimal::Decimal::from(offer.gpu_count.max(1)));
        for (spot, price) in [(true, offer.spot_price), (false, offer.on_demand_price)] {
            if let Some(price) = price {
                groups.entry((gpu.clone(), region.clone(), spot)).or_default().push(per_gpu(price));
            }
        }
    }
    groups
        .into_iter()
        .map(|((gpu, region, spot), mut prices)| {
            prices.sort();
            MarketLine {
                gpu,
                region,
                spot,
                count: prices.len() as u32,
                min: prices[0],
                median: prices[(prices.len() - 1) / 2],
            }
        })
        .collect()
}

/// The provider as the rest of tgp sees it: the same trait, every call under the actor's books.
#[derive(Clone)]
pub struct ProviderHandle {
    /// The actor.
    pub addr: Addr<ProviderActor>,
    /// The books and client shared with the actor, for the fast path.
    shared: Arc<Shared>,
}

impl ProviderHandle {
    /// Starts the actor for `client` and returns its handle.
    pub fn start(
        client: Arc<dyn ProviderClient>,
        config: ProviderActorConfig,
        sink: Arc<dyn ProviderEventSink>,
    ) -> Self {
        let actor = ProviderActor::new(client, config, sink);
        let shared = actor.shared.clone();
        ProviderHandle { addr: actor.start(), shared }
    }

    /// The fast path when the breaker is closed (the call runs on the caller's task); through the
    /// actor otherwise.
    async fn call(&self, op: Operation) -> Result<Output, ProviderError> {
        let shared = self.shared.as_ref();
        let offers_key = op.offers_key();
        let step = {
            let mut books = shared.books();
            match books.early(shared, &op, offers_key.as_deref()) {
                Some(early) => Err(early),
                None if books.breaker.is_closed() => Ok(Some(books.take_off(offers_key))),
                None => Ok(None),
            }
        };
        match step {
            Err(early) => early.settle(&shared.name).await,
            // An offers call others may join, and whose caller may stop waiting (selection gives a
            // provider 10 s): it runs on its own task, so it always lands, is booked by the breaker
            // and fills the cache, whoever is still waiting.
            Ok(Some(flight)) if flight.offers_key.is_some() => {
                let (shared, addr) = (self.shared.clone(), self.addr.clone());
                tokio::spawn(async move { fly(&shared, &addr, op, flight).await }).await.unwrap_or_else(|e| {
                    Err(self.shared.error(FailureClass::Unknown, format!("offers call failed: {e}")))
                })
            }
            Ok(Some(flight)) => fly(shared, &self.addr, op, flight).await,
            Ok(None) => self
                .addr
                .send(Call(op))
                .await
                .unwrap_or_else(|_| Err(shared.error(FailureClass::ProviderOutage, "provider actor stopped"))),
        }
    }

    fn unexpected(&self) -> ProviderError {
        self.shared.error(FailureClass::Unknown, "provider actor answered another operation")
    }
}

#[async_trait]
impl ProviderClient for ProviderHandle {
    fn info(&self) -> ProviderInfo {
        self.shared.client.info()
    }
    fn rate_limits(&self) -> RateLimits {
        self.shared.client.rate_limits()
    }
    fn translate_gpu(&self, gpu: GpuType) -> Option<String> {
        self.shared.client.translate_gpu(gpu)
    }
    fn translate_region(&self, region: &Region) -> Option<String> {
        self.shared.client.translate_region(region)
    }
    async fn list_offers(&self, filter: &OfferFilter) -> Result<Vec<Offer>, ProviderError> {
        match self.call(Operation::ListOffers(filter.clone())).await? {
            Output::Offers(o) => Ok(o),
            _ => Err(self.unexpected()),
        }
    }
    async fn launch(&self, spec: &LaunchSpec) -> Result<LaunchReceipt, ProviderError> {
        match self.call(Operation::Launch(spec.clone())).await? {
            Output::Launched(r) => Ok(r),
            _ => Err(self.unexpected()),
        }
    }
    async fn terminate(&self, id: &str) -> Result<(), ProviderError> {
        match self.call(Operation::Terminate(id.to_string())).await? {
            Output::Done => Ok(()),
            _ => Err(self.unexpected()),
        }
    }
    async fn status(&self, id: &str) -> Result<ProviderInstance, ProviderError> {
        match self.call(Operation::Status(id.to_string())).await? {
            Output::Instance(i) => Ok(i),
            _ => Err(self.unexpected()),
        }
    }
    async fn list_instances(&self) -> Result<Vec<ProviderInstance>, ProviderError> {
        match self.call(Operation::ListInstances).await? {
            Output::Instances(i) => Ok(i),
            _ => Err(self.unexpected()),
        }
    }
    fn report_unavailable(&self, offer_id: &str, spot: bool) {
        self.addr.do_send(MarkUnavailable { offer_id: offer_id.to_string(), spot });
    }
}
