//! The offers cache and single flight: a fresh answer for the same filter is reused, a call
//! already in flight for it is joined, and offerings marked unavailable are left out of answers
//! until their TTL passes.

use tgp_events::ProviderName;
use tgp_events::events::FailureClass;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::books::{Books, Shared};
use super::flight::{Operation, Output};
use crate::provider::{Offer, ProviderError};

/// A call answered without calling the provider.
pub(super) enum Early {
    /// From the books: refused while disabled, or cached offers.
    Answered(Result<Output, ProviderError>),
    /// Joined to the same offers call in flight.
    Joined(oneshot::Receiver<Result<Output, ProviderError>>),
}

impl Early {
    pub(super) async fn settle(self, name: &ProviderName) -> Result<Output, ProviderError> {
        match self {
            Early::Answered(result) => result,
            Early::Joined(receiver) => receiver.await.unwrap_or_else(|_| {
                Err(ProviderError::new(name, FailureClass::ProviderOutage, "offers call abandoned"))
            }),
        }
    }
}

impl Books {
    /// Answers a call from the books when it can: refused while disabled, cached, or joined.
    pub(super) fn early(&mut self, shared: &Shared, op: &Operation, offers_key: Option<&str>) -> Option<Early> {
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
pub(super) struct Landing<'a> {
    pub(super) shared: &'a Shared,
    pub(super) offers_key: Option<String>,
}

impl Landing<'_> {
    /// Books the result: offers cached and joiners answered (the fetched offers are returned, for
    /// the actor to journal their summary); a launch refused for capacity marks its offering
    /// unavailable.
    pub(super) fn land(
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
