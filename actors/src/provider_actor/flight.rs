//! A call on its way to the provider: the operations and their answers, their priority for
//! tokens, and the flight itself (attempts, retries of idempotent calls, booking each attempt).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix::prelude::*;
use backon::{ExponentialBuilder, Retryable};

use super::actor::{Attempted, Fetched, ProviderActor};
use super::books::{Books, Shared};
use super::cache::Landing;
use crate::provider::{LaunchReceipt, LaunchSpec, Offer, OfferFilter, ProviderClient, ProviderError, ProviderInstance};

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
    pub(super) fn offers_key(&self) -> Option<String> {
        match self {
            Operation::ListOffers(filter) => {
                // The provider lists decide which providers are asked, never what one answers:
                // launches that differ only in them share one call and one cached answer.
                let mut asked = filter.clone();
                asked.needs.providers.clear();
                asked.needs.exclude_providers.clear();
                Some(format!("{asked:?}"))
            }
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

/// A call on its way to the provider.
pub(super) struct Flight {
    /// The offers filter's key, for the cache and single flight.
    pub(super) offers_key: Option<String>,
    /// The first attempt's token is already taken.
    granted: bool,
}

impl Books {
    /// The call goes (past the breaker): it becomes the offers call in flight for its filter, and
    /// takes a token now when one is free and nobody waits for one.
    pub(super) fn take_off(&mut self, offers_key: Option<String>) -> Flight {
        if let Some(key) = &offers_key {
            self.offers_in_flight.insert(key.clone(), Vec::new());
        }
        let granted = self.waiting.iter().all(VecDeque::is_empty) && self.limiter.try_acquire().is_ok();
        Flight { offers_key, granted }
    }
}

/// Makes the call (attempts, retries of idempotent calls, booking each attempt) on the task that
/// runs it: the caller's own on the fast path, a worker's when the actor admitted it.
pub(super) async fn fly(
    shared: &Shared,
    addr: &Addr<ProviderActor>,
    op: Operation,
    flight: Flight,
) -> Result<Output, ProviderError> {
    // A token taken before waiting for a launch slot is given up: the call goes later, on a
    // fresh one, so the budget still spaces it from the calls made meanwhile.
    let waited = matches!(op, Operation::Launch(_)) && shared.launch_slot().await;
    let landing = Landing { shared, offers_key: flight.offers_key };
    let granted = AtomicBool::new(flight.granted && !waited);
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
        let backoff = ExponentialBuilder::default()
            .with_min_delay(shared.config.retry_delay)
            .with_max_delay(Duration::from_secs(30))
            .with_max_times(shared.config.retries)
            .with_jitter();
        let backoff = match shared.config.jitter_seed {
            Some(seed) => backoff.with_jitter_seed(seed),
            None => backoff,
        };
        attempt
            .retry(backoff)
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
