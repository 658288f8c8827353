//! The controller, assembled: connect and check NATS, create or check the layout, open the
//! journal, rebuild the instances, then serve the command stream, the `tgp.api` service and the
//! simulated market's cue subject. `tgp run` and `tgp demo` are thin shells around this.

use std::sync::Arc;

use async_nats::jetstream::Context;
use futures::StreamExt;
use serde::Deserialize;
use tgp_actors::provider::Market;
use tgp_actors::supervisor::{Supervisor, SupervisorConfig};
use tgp_events::api::ErrorReply;
use tokio::task::JoinHandle;

use crate::connect::{ConnectError, connect, jetstream};
use crate::intake::SupervisorAddr;
use crate::journal::{JetStreamJournal, layout};
use crate::projections::Projection;
use crate::projections::cost::CostLedger;
use crate::projections::pricing::RealizedPrices;
use crate::projections::runner::{self, Live};
use crate::provider_events::JournaledProviderEvents;
use crate::simulated::{SimulatedConfig, SimulatedProvider};
use tgp_actors::provider::ProviderClient;
use tgp_actors::provider_actor::{ProviderActorConfig, ProviderEventSink, ProviderHandle};

async fn follow_logged<P: Projection>(js: Context, live: Live<P>) {
    if let Err(e) = runner::follow(js, live).await {
        tracing::error!(error = %e, "projection stopped");
    }
}

/// Request subject that interrupts a simulated machine on cue (`{"provider_instance_id": "sim-3"}`).
/// Served only by a controller running the simulated market.
pub const SIM_INTERRUPT: &str = "tgp.sim.interrupt";

/// Everything a controller needs to start.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// The NATS server.
    pub nats_url: String,
    /// Poll interval and retry delay.
    pub supervisor: SupervisorConfig,
    /// The simulated market (the only market until the real providers land).
    pub simulated: SimulatedConfig,
    /// Serve Prometheus metrics here, when given.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Limits, breaker, caches and retries of every provider actor.
    pub provider_actor: ProviderActorConfig,
}

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// NATS unreachable, too old, or its layout wrong.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The layout could not be created or is wrong.
    #[error(transparent)]
    Layout(#[from] layout::LayoutError),
    /// The journal could not be opened or replayed.
    #[error("journal: {0}")]
    Journal(#[from] cqrs_es::persist::PersistenceError),
    /// The `tgp.api` service could not be registered.
    #[error(transparent)]
    Api(#[from] crate::api::ApiError),
    /// The command intake could not bind its consumer.
    #[error(transparent)]
    Intake(#[from] crate::intake::IntakeError),
    /// A projection could not resume.
    #[error(transparent)]
    Projection(#[from] crate::projections::runner::ProjectionError),
    /// The metrics endpoint could not start.
    #[error("metrics endpoint: {0}")]
    Metrics(String),
    /// A subscription failed.
    #[error("subscribing: {0}")]
    Subscribe(String),
    /// The simulated market's state file could not be read.
    #[error("simulated market state: {0}")]
    Market(#[from] std::io::Error),
}

/// A running controller. Its tasks stop when it is dropped.
pub struct Controller {
    /// Routes commands to instance actors.
    pub supervisor: SupervisorAddr,
    /// The simulated market, for the demo's cues.
    pub market: Arc<SimulatedProvider>,
    /// The JetStream context, for readers in the same process.
    pub js: Context,
    /// The journal, for readers in the same process.
    pub journal: JetStreamJournal,
    /// Intake, API and cue tasks.
    tasks: Vec<JoinHandle<()>>,
}

#[derive(Deserialize)]
struct InterruptRequest {
    provider_instance_id: String,
}

impl Controller {
    /// Starts everything. Must run inside an actix system.
    pub async fn start(config: ControllerConfig) -> Result<Self, ControllerError> {
        let client = connect(&config.nats_url, "tgp-controller").await?;
        let js = jetstream(client.clone());
        layout::ensure(&js).await?;
        let journal = JetStreamJournal::open(js.clone()).await?;
        let market = Arc::new(SimulatedProvider::new(config.simulated)?);
        let sink: Arc<dyn ProviderEventSink> = Arc::new(JournaledProviderEvents::new(js.clone()));
        let handles = vec![ProviderHandle::start(market.clone(), config.provider_actor.clone(), sink)];
        let clients: Vec<Arc<dyn ProviderClient>> =
            handles.iter().map(|h| Arc::new(h.clone()) as Arc<dyn ProviderClient>).collect();
        let supervisor = Supervisor::start(journal.clone(), Market::new(clients), config.supervisor).await?;
        let views = crate::api::Views {
            cost: runner::resume::<CostLedger>(&js).await?,
            prices: runner::resume::<RealizedPrices>(&js).await?,
            providers: handles,
        };
        let mut tasks = vec![
            tokio::spawn(follow_logged(js.clone(), views.cost.clone())),
            tokio::spawn(follow_logged(js.clone(), views.prices.clone())),
        ];
        if let Some(addr) = config.metrics_addr {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .with_http_listener(addr)
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full("tgp_time_to_running_seconds".into()),
                    &[1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0],
                )
                .map_err(|e| ControllerError::Metrics(e.to_string()))?
                .install()
                .map_err(|e| ControllerError::Metrics(e.to_string()))?;
            tasks.push(tokio::spawn(crate::projections::metrics::follow(js.clone())));
        }
        tasks.extend(crate::api::start(client.clone(), js.clone(), supervisor.clone(), views).await?);
        tasks.push(crate::intake::start(js.clone(), supervisor.clone()).await?);
        let cues = client.subscribe(SIM_INTERRUPT).await.map_err(|e| ControllerError::Subscribe(e.to_string()))?;
        tasks.push(tokio::spawn(serve_cues(client, cues, market.clone())));
        tracing::info!(nats = %config.nats_url, "tgp controller running");
        Ok(Controller { supervisor, market, js, journal, tasks })
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn serve_cues(client: async_nats::Client, mut requests: async_nats::Subscriber, market: Arc<SimulatedProvider>) {
    while let Some(request) = requests.next().await {
        let reply = match serde_json::from_slice::<InterruptRequest>(&request.payload) {
            Ok(req) => match market.interrupt(&req.provider_instance_id) {
                Ok(()) => serde_json::json!({"interrupted": req.provider_instance_id}).to_string(),
                Err(e) => serde_json::to_string(&ErrorReply::new("not_found", e.to_string())).expect("serializes"),
            },
            Err(e) => serde_json::to_string(&ErrorReply::new("malformed_request", e.to_string())).expect("serializes"),
        };
        if let Some(to) = request.reply {
            let _ = client.publish(to, reply.into()).await;
        }
    }
}
