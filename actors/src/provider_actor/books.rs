//! The books of one provider, shared by its actor and its handles behind one short-held lock: the
//! limiter and its token queue, the breaker, the offers cache and the provider's state. Taking a
//! token and booking an attempt's outcome live here; the actor books what changes state.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use actix::prelude::*;
use tgp_events::ProviderName;
use tgp_events::events::FailureClass;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::actor::{Attempted, Dispatch, ProviderActor, ProviderActorConfig};
use super::breaker::{BreakerConfig, CircuitBreaker};
use super::flight::{Output, Priority};
use super::limiter::{AdaptiveLimiter, Budget, Jitter};
use super::spacing::LaunchSlots;
use crate::provider::{LaunchSpacing, Offer, ProviderClient, ProviderError};

/// What the actor and its handles share: the client and the books, behind one lock that is never
/// held across an await.
pub(super) struct Shared {
    pub(super) name: ProviderName,
    /// The name as a metrics label, cloned without allocating on every call.
    pub(super) label: Arc<str>,
    pub(super) client: Arc<dyn ProviderClient>,
    pub(super) config: ProviderActorConfig,
    pub(super) books: Mutex<Books>,
}

/// The provider's books: everything a call consults or changes.
pub(super) struct Books {
    pub(super) limiter: AdaptiveLimiter,
    /// Calls waiting for a token, by priority.
    pub(super) waiting: [VecDeque<oneshot::Sender<()>>; 4],
    /// A `Dispatch` is scheduled or on its way to the actor.
    pub(super) dispatch_armed: bool,
    pub(super) breaker: CircuitBreaker,
    /// Offers answers by filter, with when they were fetched.
    pub(super) offers: HashMap<String, (Instant, Vec<Offer>)>,
    /// Askers joined to an offers call in flight, by filter.
    pub(super) offers_in_flight: HashMap<String, Vec<oneshot::Sender<Result<Output, ProviderError>>>>,
    /// Offerings to leave out until then.
    pub(super) unavailable: HashMap<(String, bool), Instant>,
    /// Why the provider is disabled, when it is.
    pub(super) disabled: Option<String>,
    /// Health as last journaled.
    pub(super) healthy: Option<bool>,
    /// Launch slots, for a provider whose launches have a limit of their own.
    pub(super) launch_slots: Option<LaunchSlots>,
}

impl Shared {
    pub(super) fn books(&self) -> MutexGuard<'_, Books> {
        // Nothing panics while holding the lock; if something did, the books are still whole.
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn error(&self, class: FailureClass, message: impl Into<String>) -> ProviderError {
        ProviderError::new(&self.name, class, message)
    }

    /// Waits for a token at `priority`, queued behind higher priorities; the actor grants it.
    pub(super) async fn acquire(&self, addr: &Addr<ProviderActor>, priority: Priority) -> Result<(), ProviderError> {
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

    /// Waits for a launch slot, where the provider spaces its launches; the wait is measured.
    /// Returns whether it waited (a token taken before the wait is then stale).
    pub(super) async fn launch_slot(&self) -> bool {
        let Some(slot) = self.books().launch_slots.as_mut().map(|slots| slots.reserve(tokio::time::Instant::now()))
        else {
            return false;
        };
        let wait = slot.saturating_duration_since(tokio::time::Instant::now());
        metrics::histogram!("tgp_provider_launch_spacing_wait_seconds", "provider" => self.label.clone())
            .record(wait.as_secs_f64());
        if wait.is_zero() {
            return false;
        }
        tracing::debug!(wait_ms = wait.as_millis() as u64, "waiting for a launch slot");
        tokio::time::sleep_until(slot).await;
        true
    }

    /// Books one attempt: counters here; anything that changes state, by the actor (waited for, so
    /// the caller's next call sees it).
    pub(super) async fn book(&self, addr: &Addr<ProviderActor>, attempt: Attempted, elapsed: Duration) {
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
    pub(super) fn new(budget: Budget, launches: Option<LaunchSpacing>, breaker: BreakerConfig, jitter: Jitter) -> Self {
        Books {
            limiter: AdaptiveLimiter::with_jitter(budget, jitter),
            waiting: Default::default(),
            dispatch_armed: false,
            breaker: CircuitBreaker::new(breaker),
            offers: HashMap::new(),
            offers_in_flight: HashMap::new(),
            unavailable: HashMap::new(),
            disabled: None,
            healthy: None,
            launch_slots: launches.map(LaunchSlots::new),
        }
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
}
