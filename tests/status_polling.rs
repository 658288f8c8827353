//! Status polling does not grow with the number of instances: with 1,000 instances on one
//! provider, each poll interval costs one list call, fanned out to every instance actor.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use support::*;
use tgp::journal::{JetStreamJournal, layout};
use tgp_actors::provider::*;
use tgp_actors::provider_actor::limiter::Budget;
use tgp_actors::provider_actor::{ProviderActorConfig, ProviderEventSink};
use tgp_actors::supervisor::{Launch, List, SupervisorConfig};
use tgp_actors::system::{System, SystemBuilder};
use tgp_events::api::{InstanceState, ListRequest};
use tgp_events::provider_events::ProviderEvent;
use tgp_events::{GpuType, LaunchCommand, Money, ProviderName, Region};
use tgp_testkit::market::{Market, SimulatedConfig};

/// The simulated market, counting the list calls that reach it.
struct Counting {
    inner: Market,
    lists: AtomicUsize,
}

#[async_trait]
impl ProviderClient for Counting {
    fn info(&self) -> ProviderInfo {
        self.inner.info()
    }
    fn rate_limits(&self) -> RateLimits {
        self.inner.rate_limits()
    }
    fn translate_gpu(&self, gpu: GpuType) -> Option<String> {
        self.inner.translate_gpu(gpu)
    }
    fn translate_region(&self, region: &Region) -> Option<String> {
        self.inner.translate_region(region)
    }
    async fn list_offers(&self, filter: &OfferFilter) -> Result<Vec<Offer>, ProviderError> {
        self.inner.list_offers(filter).await
    }
    async fn normalized_pricing(
        &self,
        gpu: GpuType,
        region: &Region,
    ) -> Result<(Option<Money>, Option<Money>), ProviderError> {
        self.inner.normalized_pricing(gpu, region).await
    }
    async fn launch(&self, spec: &LaunchSpec) -> Result<LaunchReceipt, ProviderError> {
        self.inner.launch(spec).await
    }
    async fn terminate(&self, id: &str) -> Result<(), ProviderError> {
        self.inner.terminate(id).await
    }
    async fn status(&self, id: &str) -> Result<ProviderInstance, ProviderError> {
        self.inner.status(id).await
    }
    async fn list_instances(&self) -> Result<Vec<ProviderInstance>, ProviderError> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        self.inner.list_instances().await
    }
}

struct Ignore;
impl ProviderEventSink for Ignore {
    fn record(&self, _: &ProviderName, _: ProviderEvent) {}
}

#[actix::test]
async fn a_thousand_instances_cost_one_list_call_per_interval() {
    let server = nats();
    // These tests play the controller: they write the journal as tgp.
    let (_, js) = connect_as(&server, Role::Tgp).await;
    layout::ensure(&js).await.unwrap();
    let journal = JetStreamJournal::open(js).await.unwrap();
    let counting = Arc::new(Counting {
        inner: Market::simulated(SimulatedConfig { boot_time: Duration::from_millis(100), ..Default::default() })
            .unwrap(),
        lists: AtomicUsize::new(0),
    });
    let config =
        ProviderActorConfig { budget: Some(Budget { per_minute: 600_000, burst: 1000 }), ..Default::default() };
    let interval = Duration::from_millis(250);
    let System { supervisor, .. } = SystemBuilder::new(journal, Arc::new(Ignore))
        .providers([counting.clone() as Arc<dyn ProviderClient>], &config)
        .start(SupervisorConfig { poll_interval: interval, ..Default::default() })
        .await
        .unwrap();
    let request = LaunchCommand::from_json(br#"{"gpu_type":"RTX4090","gpu_count":1,"max_hourly_price":"2"}"#)
        .unwrap()
        .with_env(Default::default());
    let launches = (0..1000)
        .map(|i| supervisor.send(Launch { id: format!("poll-{i}").parse().unwrap(), request: request.clone() }));
    for answer in futures::future::join_all(launches).await {
        answer.unwrap().unwrap();
    }
    let running = ListRequest { state: Some(InstanceState::Running), ..ListRequest::default() };
    let mut count = 0;
    for _ in 0..240 {
        count = supervisor.send(List(running.clone())).await.unwrap().len();
        if count == 1000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(count, 1000, "every instance seen running through the batched polls");
    let before = counting.lists.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let calls = counting.lists.load(Ordering::SeqCst) - before;
    // Two seconds at one poll every 250 ms: at most 8 list calls (fewer if a busy machine delays
    // a tick), never one per instance.
    assert!((1..=10).contains(&calls), "{calls} list calls in 2 s for 1,000 instances");
}
