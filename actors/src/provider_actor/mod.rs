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
//! 4. Each attempt waits for a token; when tokens are scarce they go to terminate, then launch,
//!    then status, then offers. A 429 pauses the provider (its `Retry-After`, or backoff with
//!    jitter) and halves the rate; successes ramp it back up.
//! 5. Idempotent calls (offers, status, list, terminate) are retried with capped exponential
//!    backoff and jitter on rate limits and outages; a launch is never blindly retried (an
//!    uncertain launch is settled by the lifecycle's attempt reconciliation).

pub mod breaker;
pub mod limiter;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
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

/// Run one operation.
#[derive(Message)]
#[rtype(result = "Result<Output, ProviderError>")]
pub struct Call(pub Operation);

/// Wait for a token at a priority.
#[derive(Message)]
#[rtype(result = "Result<(), ProviderError>")]
struct Acquire(Priority);

/// Grant tokens to waiting calls.
#[derive(Message)]
#[rtype(result = "()")]
struct Dispatch;

/// The outcome of one attempt, fed back into the limiter, breaker and metrics.
#[derive(Message)]
#[rtype(result = "()")]
struct Attempted {
    operation: &'static str,
    class: Option<FailureClass>,
    retry_after: Option<u64>,
    elapsed: Duration,
}

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

/// The actor.
pub struct ProviderActor {
    name: ProviderName,
    client: Arc<dyn ProviderClient>,
    config: ProviderActorConfig,
    limiter: AdaptiveLimiter,
    /// Calls waiting for a token, by priority.
    waiting: [VecDeque<oneshot::Sender<()>>; 4],
    /// A `Dispatch` is already scheduled.
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
    sink: Arc<dyn ProviderEventSink>,
}

impl ProviderActor {
    /// An actor in front of `client`.
    pub fn new(client: Arc<dyn ProviderClient>, config: ProviderActorConfig, sink: Arc<dyn ProviderEventSink>) -> Self {
        let limits = client.rate_limits();
        let budget = config.budget.unwrap_or(Budget { per_minute: limits.requests_per_minute, burst: limits.burst });
        ProviderActor {
            name: client.info().name,
            limiter: AdaptiveLimiter::new(budget),
            breaker: CircuitBreaker::new(config.breaker),
            client,
            config,
            waiting: Default::default(),
            dispatch_armed: false,
            offers: HashMap::new(),
            offers_in_flight: HashMap::new(),
            unavailable: HashMap::new(),
            disabled: None,
            healthy: None,
            sink,
        }
    }

    fn event(&self, event: ProviderEvent) {
        self.sink.record(&self.name, event);
    }

    fn error(&self, class: FailureClass, message: impl Into<String>) -> ProviderError {
        ProviderError::new(&self.name, class, message)
    }

    fn dispatch(&mut self, ctx: &mut Context<Self>) {
        while let Some(queue) = self.waiting.iter_mut().find(|q| !q.is_empty()) {
            // Skip callers that gave up.
            if queue.front().is_some_and(|s| s.is_closed()) {
                queue.pop_front();
                continue;
            }
            match self.limiter.try_acquire() {
                Ok(()) => {
                    if let Some(sender) = queue.pop_front() {
                        let _ = sender.send(());
                    }
                }
                Err(wait) => {
                    if !self.dispatch_armed {
                        self.dispatch_armed = true;
                        ctx.notify_later(Dispatch, wait.max(Duration::from_millis(1)));
                    }
                    break;
                }
            }
        }
        let queued: usize = self.waiting.iter().map(VecDeque::len).sum();
        metrics::gauge!("tgp_provider_queued_requests", "provider" => self.name.to_string()).set(queued as f64);
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

impl Actor for ProviderActor {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
    }
}

impl Handler<Acquire> for ProviderActor {
    type Result = ResponseFuture<Result<(), ProviderError>>;
    fn handle(&mut self, Acquire(priority): Acquire, ctx: &mut Context<Self>) -> Self::Result {
        let (sender, receiver) = oneshot::channel();
        self.waiting[priority as usize].push_back(sender);
        self.dispatch(ctx);
        let name = self.name.clone();
        Box::pin(async move {
            receiver
                .await
                .map_err(|_| ProviderError::new(&name, FailureClass::ProviderOutage, "provider actor stopped"))
        })
    }
}

impl Handler<Dispatch> for ProviderActor {
    type Result = ();
    fn handle(&mut self, _: Dispatch, ctx: &mut Context<Self>) {
        self.dispatch_armed = false;
        self.dispatch(ctx);
    }
}

impl Handler<Attempted> for ProviderActor {
    type Result = ();
    fn handle(&mut self, a: Attempted, ctx: &mut Context<Self>) {
        let provider = self.name.to_string();
        let outcome = a.class.map_or("ok".to_string(), |c| format!("{c:?}").to_lowercase());
        metrics::counter!("tgp_provider_requests_total", "provider" => provider.clone(), "operation" => a.operation, "outcome" => outcome).increment(1);
        metrics::histogram!("tgp_provider_request_duration_seconds", "provider" => provider.clone(), "operation" => a.operation).record(a.elapsed.as_secs_f64());
        match a.class {
            Some(FailureClass::RateLimited) => {
                metrics::counter!("tgp_provider_rate_limited_total", "provider" => provider.clone()).increment(1);
                let rate = self.limiter.on_rate_limited(a.retry_after.map(Duration::from_secs));
                self.event(ProviderEvent::RateLimited {
                    retry_after_seconds: a.retry_after,
                    new_rate_per_minute: rate,
                });
                // Wake the queue when the pause ends.
                self.dispatch(ctx);
            }
            Some(_) | None => {
                if a.class.is_none() {
                    self.limiter.on_success();
                }
            }
        }
        let healthy = !matches!(a.class, Some(FailureClass::ProviderOutage));
        if let Some(state) = self.breaker.record(healthy) {
            self.event(ProviderEvent::CircuitChanged {
                state,
                reason: if healthy { "probe succeeded".into() } else { format!("{} failed", a.operation) },
            });
        }
        if a.operation == "list_instances" && self.healthy != Some(healthy) {
            self.healthy = Some(healthy);
            self.event(ProviderEvent::Health { healthy, detail: (!healthy).then(|| "status poll failed".to_string()) });
        }
        let state = match self.breaker.state() {
            CircuitState::Closed => 0.0,
            CircuitState::HalfOpen => 1.0,
            CircuitState::Open => 2.0,
        };
        metrics::gauge!("tgp_provider_circuit_state", "provider" => provider.clone()).set(state);
        metrics::gauge!("tgp_provider_rate_per_minute", "provider" => provider)
            .set(f64::from(self.limiter.current_per_minute()));
    }
}

impl Handler<SetEnabled> for ProviderActor {
    type Result = ();
    fn handle(&mut self, SetEnabled(disabled): SetEnabled, _: &mut Context<Self>) {
        match (&self.disabled, &disabled) {
            (None, Some(reason)) => self.event(ProviderEvent::Disabled { reason: reason.clone() }),
            (Some(_), None) => self.event(ProviderEvent::Enabled),
            _ => {}
        }
        self.disabled = disabled;
        self.offers.clear();
    }
}

impl Handler<MarkUnavailable> for ProviderActor {
    type Result = ();
    fn handle(&mut self, m: MarkUnavailable, _: &mut Context<Self>) {
        self.unavailable.insert((m.offer_id, m.spot), Instant::now() + self.config.unavailable_ttl);
    }
}

impl Handler<Call> for ProviderActor {
    type Result = ResponseActFuture<Self, Result<Output, ProviderError>>;

    fn handle(&mut self, Call(op): Call, ctx: &mut Context<Self>) -> Self::Result {
        let ready = |r: Result<Output, ProviderError>| -> Self::Result { Box::pin(actix::fut::ready(r)) };
        if let (Some(reason), Operation::ListOffers(_) | Operation::Launch(_)) = (&self.disabled, &op) {
            return ready(Err(self.error(FailureClass::InvalidRequest, format!("provider disabled: {reason}"))));
        }
        let offers_key = match &op {
            Operation::ListOffers(filter) => Some(format!("{filter:?}")),
            _ => None,
        };
        if let Some(key) = &offers_key {
            if let Some((at, offers)) = self.offers.get(key)
                && at.elapsed() < self.config.offers_ttl
            {
                let offers = offers.clone();
                return ready(Ok(Output::Offers(self.without_unavailable(offers))));
            }
            if let Some(waiters) = self.offers_in_flight.get_mut(key) {
                let (sender, receiver) = oneshot::channel();
                waiters.push(sender);
                let name = self.name.clone();
                return Box::pin(
                    async move {
                        receiver.await.unwrap_or_else(|_| {
                            Err(ProviderError::new(&name, FailureClass::ProviderOutage, "offers call abandoned"))
                        })
                    }
                    .into_actor(self),
                );
            }
            self.offers_in_flight.insert(key.clone(), Vec::new());
        }
        let (admission, changed) = self.breaker.admit();
        if let Some(state) = changed {
            self.event(ProviderEvent::CircuitChanged { state, reason: "open period over; probing".into() });
        }
        if let Admission::Refuse(wait) = admission {
            let error = self
                .error(FailureClass::ProviderOutage, format!("circuit open; next try in {}s", wait.as_secs().max(1)));
            if let Some(key) = &offers_key {
                for waiter in self.offers_in_flight.remove(key).unwrap_or_default() {
                    let _ = waiter.send(Err(error.clone()));
                }
            }
            return ready(Err(error));
        }
        let (addr, client, name) = (ctx.address(), self.client.clone(), op.name());
        let idempotent = !matches!(op, Operation::Launch(_));
        let priority = op.priority();
        let (retries, delay) = (self.config.retries, self.config.retry_delay);
        let launched_offer = match &op {
            Operation::Launch(spec) => Some((spec.offer_id.clone(), spec.spot)),
            _ => None,
        };
        // When nobody waits and a token is free, the first attempt takes it here and skips a
        // round trip through the mailbox; retries (and busy times) queue by priority.
        let granted = Arc::new(std::sync::atomic::AtomicBool::new(
            self.waiting.iter().all(VecDeque::is_empty) && self.limiter.try_acquire().is_ok(),
        ));
        let attempt = move || {
            let (addr, client, op, granted) = (addr.clone(), client.clone(), op.clone(), granted.clone());
            async move {
                if !granted.swap(false, std::sync::atomic::Ordering::SeqCst) {
                    tracing::debug!(operation = name, "waiting for a token");
                    addr.send(Acquire(priority)).await.map_err(|_| {
                        ProviderError::new(&client.info().name, FailureClass::ProviderOutage, "provider actor stopped")
                    })??;
                }
                let started = std::time::Instant::now();
                tracing::debug!(operation = name, "calling the provider");
                let result = perform(client.as_ref(), &op).await;
                let (class, retry_after) = match &result {
                    Ok(_) => (None, None),
                    Err(e) => (Some(e.class), e.retry_after_seconds),
                };
                addr.do_send(Attempted { operation: name, class, retry_after, elapsed: started.elapsed() });
                result
            }
        };
        let calls = async move {
            if idempotent {
                attempt
                    .retry(
                        ExponentialBuilder::default()
                            .with_min_delay(delay)
                            .with_max_delay(Duration::from_secs(30))
                            .with_max_times(retries)
                            .with_jitter(),
                    )
                    .when(ProviderError::is_retryable)
                    .adjust(|e, backoff| backoff.map(|d| e.retry_after_seconds.map_or(d, Duration::from_secs)))
                    .await
            } else {
                attempt().await
            }
        };
        // The HTTP work runs on the runtime's worker threads; the actor's own thread only keeps
        // the books (tokens, breaker, caches), so one busy provider does not serialize its calls.
        let provider = self.name.clone();
        let work = async move {
            tokio::spawn(calls).await.unwrap_or_else(|e| {
                Err(ProviderError::new(&provider, FailureClass::Unknown, format!("provider call panicked: {e}")))
            })
        };
        Box::pin(work.into_actor(self).map(move |result, act, _| {
            if let Some(key) = offers_key {
                if let Ok(Output::Offers(offers)) = &result {
                    act.offers.insert(key.clone(), (Instant::now(), offers.clone()));
                    act.event(ProviderEvent::OfferSummary { lines: market_lines(offers) });
                }
                let result = match result {
                    Ok(Output::Offers(offers)) => Ok(Output::Offers(act.without_unavailable(offers))),
                    other => other,
                };
                for waiter in act.offers_in_flight.remove(&key).unwrap_or_default() {
                    let _ = waiter.send(result.clone());
                }
                return result;
            }
            if let (Some((offer_id, spot)), Err(e)) = (launched_offer, &result)
                && e.class == FailureClass::Capacity
            {
                act.unavailable.insert((offer_id, spot), Instant::now() + act.config.unavailable_ttl);
                act.offers.clear();
            }
            result
        }))
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

/// The provider as the rest of tgp sees it: the same trait, every call through the actor.
#[derive(Clone)]
pub struct ProviderHandle {
    /// The actor.
    pub addr: Addr<ProviderActor>,
    /// For the calls that need no I/O (info, limits, name translation).
    client: Arc<dyn ProviderClient>,
}

impl ProviderHandle {
    /// Starts the actor for `client` and returns its handle.
    pub fn start(
        client: Arc<dyn ProviderClient>,
        config: ProviderActorConfig,
        sink: Arc<dyn ProviderEventSink>,
    ) -> Self {
        let addr = ProviderActor::new(client.clone(), config, sink).start();
        ProviderHandle { addr, client }
    }

    async fn call(&self, op: Operation) -> Result<Output, ProviderError> {
        self.addr.send(Call(op)).await.unwrap_or_else(|_| {
            Err(ProviderError::new(&self.client.info().name, FailureClass::ProviderOutage, "provider actor stopped"))
        })
    }

    fn unexpected(&self) -> ProviderError {
        ProviderError::new(&self.client.info().name, FailureClass::Unknown, "provider actor answered another operation")
    }
}

#[async_trait]
impl ProviderClient for ProviderHandle {
    fn info(&self) -> ProviderInfo {
        self.client.info()
    }
    fn rate_limits(&self) -> RateLimits {
        self.client.rate_limits()
    }
    fn translate_gpu(&self, gpu: GpuType) -> Option<String> {
        self.client.translate_gpu(gpu)
    }
    fn translate_region(&self, region: &Region) -> Option<String> {
        self.client.translate_region(region)
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
