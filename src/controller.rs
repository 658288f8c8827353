//! The controller, assembled: connect and check NATS, create or check the layout, open the
//! journal, rebuild the instances, then serve the command stream, the `tgp.api` service and the
//! simulated market's cue subject, and watch the streams for changes under it. `tgp run` and `tgp demo` are thin shells around this.

use std::sync::Arc;

use async_nats::jetstream::Context;
use futures::StreamExt;
use serde::Deserialize;
use tgp_actors::provider::Market;
use tgp_actors::supervisor::{Supervisor, SupervisorConfig};
use tgp_events::api::ErrorReply;
use tokio::task::JoinHandle;

use crate::connect::{ConnectError, NatsOptions, connect_controller, jetstream};
use crate::intake::SupervisorAddr;
use crate::journal::{JetStreamJournal, layout};
use crate::projections::cost::CostLedger;
use crate::projections::pricing::RealizedPrices;
use crate::projections::runner;
use crate::provider_events::JournaledProviderEvents;
use crate::providers::api_change::ApiChangeReporter;
use crate::simulated::{MarketCue, SimulatedProvider};
use tgp_actors::provider::ProviderClient;
use tgp_actors::provider_actor::{ProviderActorConfig, ProviderEventSink, ProviderHandle};

/// Request subject that interrupts a machine on cue (`{"provider_instance_id": "sim-3"}`). Served
/// only by a controller whose market has cues (the simulated market, the fakes).
pub const SIM_INTERRUPT: &str = "tgp.sim.interrupt";

/// Change how the market behaves (a [`MarketCue`] as JSON): refuse launches, lose launch
/// answers, withdraw spot capacity. Served only by a controller on the simulated market.
pub const SIM_CUE: &str = "tgp.sim.cue";

/// Everything a controller needs to start.
#[derive(Clone)]
pub struct ControllerConfig {
    /// The NATS server and how to authenticate to it.
    pub nats: NatsOptions,
    /// Poll interval and retry delay.
    pub supervisor: SupervisorConfig,
    /// The providers to use (real clients, the fakes' clients, or the simulated market).
    pub providers: Vec<Arc<dyn ProviderClient>>,
    /// How to take machines away on cue, when the market allows it (simulated market, fakes).
    pub cues: Option<Arc<dyn MarketCues>>,
    /// The clients' API-change reports, journaled as provider events.
    pub api_changes: Option<ApiChangeReporter>,
    /// Serve Prometheus metrics here, when given.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Limits, breaker, caches and retries of every provider actor.
    pub provider_actor: ProviderActorConfig,
    /// Start even when the journal is empty while the providers hold machines labelled by tgp.
    pub allow_empty_journal: bool,
    /// How often the streams are looked at for changes under the running controller.
    pub stream_check_interval: std::time::Duration,
    /// The key every journal message tgp writes is signed with (`docs/security.md`).
    pub journal_key: crate::journal::JournalKey,
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
    /// The journal is empty while tgp's machines run (or its emptiness could not be checked).
    #[error(transparent)]
    EmptyJournal(#[from] crate::empty_journal::EmptyJournalError),
    /// The metrics endpoint could not start.
    #[error("metrics endpoint: {0}")]
    Metrics(String),
    /// A subscription failed.
    #[error("subscribing: {0}")]
    Subscribe(String),
    /// The streams could not be looked at to be watched.
    #[error(transparent)]
    Guard(#[from] crate::journal::guard::GuardError),
}

/// A running controller. Its tasks stop when it is dropped.
pub struct Controller {
    /// Routes commands to instance actors.
    pub supervisor: SupervisorAddr,
    /// The market's cues, when it has them (the demo uses them).
    pub cues: Option<Arc<dyn MarketCues>>,
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
        // The recorder first, so every series registered from here on is served (a consumer's
        // recovery counter at 0, a provider actor's first gauges).
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
        }
        let client = connect_controller(&config.nats).await?;
        let js = jetstream(client.clone());
        layout::ensure(&js).await?;
        let key = config.journal_key.clone();
        let journal = JetStreamJournal::open_signed(js.clone(), key.clone()).await?;
        tracing::info!(key_id = key.id(), "journal messages are signed, and every read verifies them");
        let events = JournaledProviderEvents::new(js.clone(), key.clone());
        let sink: Arc<dyn ProviderEventSink> = Arc::new(events.clone());
        let handles: Vec<ProviderHandle> = config
            .providers
            .iter()
            .map(|client| ProviderHandle::start(client.clone(), config.provider_actor.clone(), sink.clone()))
            .collect();
        let clients: Vec<Arc<dyn ProviderClient>> =
            handles.iter().map(|h| Arc::new(h.clone()) as Arc<dyn ProviderClient>).collect();
        if !config.allow_empty_journal {
            crate::empty_journal::check(&js, &clients).await?;
        }
        let keyring = config.supervisor.keyring.clone();
        let supervisor_config = SupervisorConfig { events: Some(sink.clone()), ..config.supervisor };
        let supervisor = Supervisor::start(journal.clone(), Market::new(clients), supervisor_config).await?;
        let views = crate::api::Views {
            cost: runner::resume::<CostLedger>(&js).await?,
            prices: runner::resume::<RealizedPrices>(&js).await?,
            providers: handles,
            keyring: keyring.clone(),
        };
        let mut tasks = vec![
            runner::follow(js.clone(), key.clone(), views.cost.clone()).await?,
            runner::follow(js.clone(), key.clone(), views.prices.clone()).await?,
        ];
        if config.metrics_addr.is_some() {
            tasks.push(
                crate::projections::metrics::follow(js.clone(), key.clone()).await.map_err(ControllerError::Metrics)?,
            );
        }
        tasks.extend(crate::api::start(client.clone(), js.clone(), supervisor.clone(), views).await?);
        tasks.push(crate::intake::start(js.clone(), key.clone(), supervisor.clone(), keyring).await?);
        tasks.push(
            crate::journal::guard::watch(js.clone(), key.clone(), supervisor.clone(), config.stream_check_interval)
                .await?,
        );
        if let Some(reporter) = &config.api_changes {
            tasks.push(events.follow_api_changes(reporter));
        }
        if let Some(market) = config.cues.clone() {
            let interrupts =
                client.subscribe(SIM_INTERRUPT).await.map_err(|e| ControllerError::Subscribe(e.to_string()))?;
            let cues = client.subscribe(SIM_CUE).await.map_err(|e| ControllerError::Subscribe(e.to_string()))?;
            let requests = futures::stream::select(interrupts, cues);
            tasks.push(tokio::spawn(serve_cues(client.clone(), requests, market)));
        }
        // Subscriptions are sent, not yet known to be registered: one round trip to the server makes
        // sure every subject answers before the controller says it runs.
        client.flush().await.map_err(|e| ControllerError::Subscribe(e.to_string()))?;
        tracing::info!(nats = %config.nats.redacted_url(), "tgp controller running");
        Ok(Controller { supervisor, cues: config.cues, js, journal, tasks })
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A market that can take a machine away on cue, as a provider reclaiming spot capacity would:
/// the simulated market and the fake providers. Real providers cannot be told to.
pub trait MarketCues: Send + Sync {
    /// Interrupts a running machine; false when there is no such running machine.
    fn interrupt(&self, machine_id: &str) -> bool;
    /// Ids of machines that exist and are not terminated.
    fn live_machines(&self) -> Vec<String>;
    /// Changes how the market behaves; an error says why a market cannot.
    fn cue(&self, cue: &MarketCue) -> Result<(), String>;
}

impl MarketCues for SimulatedProvider {
    fn interrupt(&self, machine_id: &str) -> bool {
        SimulatedProvider::interrupt(self, machine_id).is_ok()
    }
    fn live_machines(&self) -> Vec<String> {
        self.machines().into_iter().filter(|m| m.status != "terminated").map(|m| m.id).collect()
    }
    fn cue(&self, cue: &MarketCue) -> Result<(), String> {
        SimulatedProvider::cue(self, cue);
        Ok(())
    }
}

async fn serve_cues(
    client: async_nats::Client,
    mut requests: impl futures::Stream<Item = async_nats::Message> + Unpin,
    market: Arc<dyn MarketCues>,
) {
    let malformed = |e: serde_json::Error| {
        serde_json::to_string(&ErrorReply::new("malformed_request", e.to_string())).expect("serializes")
    };
    while let Some(request) = requests.next().await {
        if request.subject.as_str() == SIM_CUE {
            let reply = match serde_json::from_slice::<MarketCue>(&request.payload) {
                Ok(cue) => match market.cue(&cue) {
                    Ok(()) => serde_json::json!({"cued": cue}).to_string(),
                    Err(why) => serde_json::to_string(&ErrorReply::new("unsupported", why)).expect("serializes"),
                },
                Err(e) => malformed(e),
            };
            if let Some(to) = request.reply {
                let _ = client.publish(to, reply.into()).await;
            }
            continue;
        }
        let reply = match serde_json::from_slice::<InterruptRequest>(&request.payload) {
            Ok(req) => {
                if market.interrupt(&req.provider_instance_id) {
                    serde_json::json!({"interrupted": req.provider_instance_id}).to_string()
                } else {
                    let message = format!("no running machine {}", req.provider_instance_id);
                    serde_json::to_string(&ErrorReply::new("not_found", message)).expect("serializes")
                }
            }
            Err(e) => malformed(e),
        };
        if let Some(to) = request.reply {
            let _ = client.publish(to, reply.into()).await;
        }
    }
}
