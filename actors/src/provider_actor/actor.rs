//! The provider actor: the only one that admits past a breaker that is not closed, grants queued
//! tokens, adapts the limiter and journals provider events; its configuration, messages and event
//! sink.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use tgp_events::events::FailureClass;
use tgp_events::provider_events::{CircuitState, MarketLine, ProviderEvent};
use tgp_events::{Money, ProviderName};
use tokio::time::Instant;

use super::books::{Books, Shared};
use super::breaker::{Admission, BreakerConfig};
use super::flight::{Operation, Output, fly};
use super::limiter::{self, Budget, Jitter};
use crate::provider::{Offer, ProviderClient, ProviderError};

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
    /// Seeds the jitter of retries and of 429 backoffs; `None` (production) takes it from the
    /// clock. The simulation seeds it, so the same seed gives the same waits on its paused clock.
    pub jitter_seed: Option<u64>,
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
            jitter_seed: None,
        }
    }
}

/// Run one operation through the actor (the path for calls the breaker does not simply admit).
#[derive(Message)]
#[rtype(result = "Result<Output, ProviderError>")]
pub struct Call(pub Operation);

/// Grant tokens to queued calls.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Dispatch;

/// The outcome of one attempt that changes the books beyond counters: the actor books it.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Attempted {
    pub(super) operation: &'static str,
    pub(super) class: Option<FailureClass>,
    pub(super) retry_after: Option<u64>,
}

/// Offers were fetched: the actor journals their summary (offers are cached for a while, so this
/// round trip is rare).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Fetched(pub(super) Vec<Offer>);

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

/// The actor: the only one that admits past a breaker that is not closed, grants queued tokens,
/// adapts the limiter, and journals provider events.
pub struct ProviderActor {
    pub(super) shared: Arc<Shared>,
    sink: Arc<dyn ProviderEventSink>,
}

impl ProviderActor {
    /// An actor in front of `client`.
    pub fn new(client: Arc<dyn ProviderClient>, config: ProviderActorConfig, sink: Arc<dyn ProviderEventSink>) -> Self {
        let limits = client.rate_limits();
        let budget = config.budget.unwrap_or(Budget { per_minute: limits.requests_per_minute, burst: limits.burst });
        let jitter = Jitter::from_seed(config.jitter_seed);
        let books = Mutex::new(Books::new(budget, limits.launches, config.breaker, jitter));
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
