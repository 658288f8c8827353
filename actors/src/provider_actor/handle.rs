//! The handle: the provider as the rest of tgp sees it, taking the fast path on the caller's own
//! task when the breaker is closed and going through the actor otherwise.

use std::sync::Arc;

use actix::prelude::*;
use async_trait::async_trait;
use tgp_events::events::FailureClass;
use tgp_events::{GpuType, Region};

use super::actor::{Call, MarkUnavailable, ProviderActor, ProviderActorConfig, ProviderEventSink};
use super::books::Shared;
use super::flight::{Operation, Output, fly};
use crate::provider::{
    LaunchReceipt, LaunchSpec, Offer, OfferFilter, ProviderClient, ProviderError, ProviderInfo, ProviderInstance,
    RateLimits,
};

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
