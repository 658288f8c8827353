//! A provider's failure keeps its class all the way to the journal: a launch the provider refuses
//! is journaled `LaunchFailed` with the class the provider gave, through the provider actor, the
//! instance actor and the aggregate, never relabelled on the way.

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use support::*;
use tgp::journal::{JetStreamJournal, layout};
use tgp_actors::provider::*;
use tgp_actors::provider_actor::{ProviderActorConfig, ProviderEventSink};
use tgp_actors::supervisor::{Launch, SupervisorConfig};
use tgp_actors::system::{System, SystemBuilder};
use tgp_events::events::{FailureClass, InstanceEvent};
use tgp_events::provider_events::ProviderEvent;
use tgp_events::{BillingGranularity, GpuType, LaunchCommand, ProviderName, Region};

/// A provider with one offer whose every launch is refused with `class`.
struct Refusing {
    name: ProviderName,
    class: FailureClass,
}

#[async_trait]
impl ProviderClient for Refusing {
    fn info(&self) -> ProviderInfo {
        ProviderInfo { name: self.name.clone(), supports_spot: false, supports_bids: false, docs_url: String::new() }
    }
    fn rate_limits(&self) -> RateLimits {
        RateLimits { requests_per_minute: 600, burst: 100, launches: None }
    }
    fn translate_gpu(&self, gpu: GpuType) -> Option<String> {
        Some(gpu.to_string())
    }
    fn translate_region(&self, region: &Region) -> Option<String> {
        Some(region.to_string())
    }
    async fn list_offers(&self, _: &OfferFilter) -> Result<Vec<Offer>, ProviderError> {
        Ok(vec![Offer {
            id: "h100-1".into(),
            provider: self.name.clone(),
            gpu_type: Some(GpuType::H100),
            provider_gpu_name: "H100".into(),
            gpu_count: 1,
            region: Some("us-east".parse().unwrap()),
            provider_region: "us-east".into(),
            on_demand_price: Some("1.00".parse().unwrap()),
            spot_price: None,
            reliability: None,
            available: 1,
            billing: BillingGranularity::PER_SECOND,
            observed_at: chrono::Utc::now(),
            specs: Default::default(),
        }])
    }
    async fn launch(&self, _: &LaunchSpec) -> Result<LaunchReceipt, ProviderError> {
        Err(ProviderError::new(&self.name, self.class, format!("refused as {:?} on purpose", self.class)))
    }
    async fn terminate(&self, _: &str) -> Result<(), ProviderError> {
        Ok(())
    }
    async fn status(&self, id: &str) -> Result<ProviderInstance, ProviderError> {
        Err(ProviderError::new(&self.name, FailureClass::NotFound, format!("no machine {id}")))
    }
    async fn list_instances(&self) -> Result<Vec<ProviderInstance>, ProviderError> {
        Ok(Vec::new())
    }
}

struct Ignore;
impl ProviderEventSink for Ignore {
    fn record(&self, _: &ProviderName, _: ProviderEvent) {}
}

/// The class of the first `LaunchFailed` journaled for `id` (10 s at most).
async fn first_failure(js: &async_nats::jetstream::Context, id: &str) -> (FailureClass, String) {
    for _ in 0..100 {
        let failed = journaled(js, id).await.into_iter().find_map(|e| match e {
            InstanceEvent::LaunchFailed { class, message, .. } => Some((class, message)),
            _ => None,
        });
        if let Some(failed) = failed {
            return failed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{id} never journaled LaunchFailed: {:?}", types(&journaled(js, id).await))
}

#[actix::test]
async fn a_refused_launch_is_journaled_with_the_class_the_provider_gave() {
    let server = nats();
    // This test plays the controller: it writes the journal as tgp.
    let (_, js) = connect_as(&server, Role::Tgp).await;
    layout::ensure(&js).await.unwrap();
    let request = LaunchCommand::from_json(br#"{"gpu_type":"H100","gpu_count":1,"max_hourly_price":"2"}"#)
        .unwrap()
        .with_env(Default::default());
    // Every class a provider refuses a launch with outright (an unclear answer is settled from the
    // listings instead, see `evidence::LaunchAnswer`).
    for class in [
        FailureClass::Capacity,
        FailureClass::Auth,
        FailureClass::RateLimited,
        FailureClass::InvalidRequest,
        FailureClass::NotFound,
    ] {
        let name: ProviderName = format!("refusing-{class:?}").to_lowercase().parse().unwrap();
        let provider = Refusing { name: name.clone(), class };
        let journal = JetStreamJournal::open(js.clone()).await.unwrap();
        let System { supervisor, .. } = SystemBuilder::new(journal, Arc::new(Ignore))
            .providers([Arc::new(provider) as Arc<dyn ProviderClient>], &ProviderActorConfig::default())
            .start(SupervisorConfig::default())
            .await
            .unwrap();
        let id = format!("refused-{class:?}").to_lowercase();
        supervisor.send(Launch { id: id.parse().unwrap(), request: request.clone() }).await.unwrap().unwrap();
        let (journaled_class, message) = first_failure(&js, &id).await;
        assert_eq!(journaled_class, class, "{message}");
        assert!(message.contains("on purpose"), "the provider's own message is journaled: {message}");
    }
}
