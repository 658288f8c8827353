//! The controller, assembled: connect and check NATS, create or check the layout, open the
//! journal, rebuild the instances, then serve the command stream and the `tgp.api` service, and
//! watch the streams for changes under it. `tgp run` is a thin shell around this; `tgp-dev`
//! (the testkit) starts the same controller on its fake and simulated markets.

use std::sync::{Arc, RwLock};

use async_nats::jetstream::Context;
use tgp_actors::supervisor::SupervisorConfig;
use tgp_actors::system::{System, SystemBuilder};
use tokio::task::JoinHandle;

use crate::connect::{ConnectError, NatsOptions, connect_controller, jetstream};
use crate::intake::SupervisorAddr;
use crate::journal::{JetStreamJournal, layout};
use crate::leader::{Leadership, LeaseConfig};
use crate::projections::cost::CostLedger;
use crate::projections::pricing::RealizedPrices;
use crate::projections::runner;
use crate::projections::warm::WarmIndex;
use crate::provider_events::JournaledProviderEvents;
use crate::providers::api_change::ApiChangeReporter;
use crate::readiness::{Readiness, Stage};
use crate::task::AbortOnDrop;
use tgp_actors::provider::ProviderClient;
use tgp_actors::provider_actor::ProviderActorConfig;

/// 1 while this process leads, 0 while it stands by (from the moment it has connected).
pub const LEADER_GAUGE: &str = "tgp_leader";

/// Everything a controller needs to start.
#[derive(Clone)]
pub struct ControllerConfig {
    /// The NATS server and how to authenticate to it.
    pub nats: NatsOptions,
    /// Poll interval and retry delay.
    pub supervisor: SupervisorConfig,
    /// The providers to use (real clients, or the testkit's fakes and simulated market).
    pub providers: Vec<Arc<dyn ProviderClient>>,
    /// The clients' API-change reports, journaled as provider events.
    pub api_changes: Option<ApiChangeReporter>,
    /// Serve Prometheus metrics here, when given.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Serve the readiness probe (`GET /ready`: leader or warm standby) here, when given.
    pub ready_addr: Option<std::net::SocketAddr>,
    /// Limits, breaker, caches and retries of every provider actor.
    pub provider_actor: ProviderActorConfig,
    /// Start even when the journal is empty while the providers hold machines labelled by tgp.
    pub allow_empty_journal: bool,
    /// How often the streams are looked at for changes under the running controller.
    pub stream_check_interval: std::time::Duration,
    /// The key every journal message tgp writes is signed with (`docs/security.md`).
    pub journal_key: crate::journal::JournalKey,
    /// How this controller takes and holds the lease that makes it the leader.
    pub lease: LeaseConfig,
    /// How many replicas each stream and bucket is created with, and must have when it exists.
    pub replicas: layout::Replicas,
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
    Metrics(#[source] metrics_exporter_prometheus::BuildError),
    /// The subscriptions could not be flushed to the server.
    #[error("subscribing: {0}")]
    Subscribe(#[source] async_nats::client::FlushError),
    /// The streams could not be looked at to be watched.
    #[error(transparent)]
    Guard(#[from] crate::journal::guard::GuardError),
    /// The lease could not be taken.
    #[error(transparent)]
    Lease(#[from] crate::leader::LeaseError),
    /// `tgp.api.leader` could not be served.
    #[error(transparent)]
    WhoLeads(#[from] crate::who_leads::WhoLeadsError),
    /// The readiness probe could not be served.
    #[error(transparent)]
    Probe(#[from] crate::readiness::ProbeError),
}

/// A running controller. Its tasks stop when it is dropped.
pub struct Controller {
    /// Routes commands to instance actors.
    pub supervisor: SupervisorAddr,
    /// The JetStream context, for readers in the same process.
    pub js: Context,
    /// The journal, for readers in the same process.
    pub journal: JetStreamJournal,
    /// The lease this controller leads by; the controller must stop once it is lost.
    pub leadership: Leadership,
    /// Intake, API, projection and guard tasks.
    tasks: Vec<JoinHandle<()>>,
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
                .map_err(ControllerError::Metrics)?
                .install()
                .map_err(ControllerError::Metrics)?;
        }
        // The probe next, so that an orchestrator sees "not ready" from the first moment on.
        let readiness = Readiness::default();
        let probe = match config.ready_addr {
            Some(addr) => Some(AbortOnDrop::new(crate::readiness::serve(addr, readiness.clone()).await?)),
            None => None,
        };
        let client = connect_controller(&config.nats).await?;
        let js = jetstream(client.clone());
        layout::ensure_replicated(&js, config.replicas).await?;
        let key = config.journal_key.clone();
        let journal = JetStreamJournal::open_signed(js.clone(), key.clone()).await?;
        tracing::info!(key_id = key.id(), "journal messages are signed, and every read verifies them");
        // Leader and standbys alike say who leads (a command that finds no leader asks here).
        let who_leads = AbortOnDrop::new(
            crate::who_leads::answer(client.clone(), js.clone(), config.lease.name.clone(), readiness.clone()).await?,
        );
        // A standby keeps the index of unfinished chains current while it waits, so that taking
        // over reads only the last commits (`projections::warm`).
        let warm = WarmIndex::start(&js, journal.reader()).await?;
        readiness.set(Stage::WarmStandby);
        // Only the leader consumes commands, calls providers and runs actors: a standby waits here.
        metrics::gauge!(LEADER_GAUGE).set(0.0);
        let leadership = crate::leader::lead(&js, &config.nats, &config.lease, config.replicas.get(), |leader| {
            tracing::warn!(
                leader = %leader.name, host = %leader.host, pid = leader.pid, since = %leader.since,
                "standing by: another tgp leads; taking over when its lease lapses"
            );
        })
        .await?;
        tracing::info!(epoch = leadership.epoch, name = %leadership.holder.name, "leading");
        metrics::gauge!(LEADER_GAUGE).set(1.0);
        readiness.set(Stage::Leading);
        let journal = journal.leading(leadership.epoch, leadership.fence.clone());
        let events = JournaledProviderEvents::new(js.clone(), key.clone());
        let system = SystemBuilder::new(journal.clone(), Arc::new(events.clone()))
            .fence(leadership.fence.clone())
            .providers(config.providers.iter().cloned(), &config.provider_actor);
        if !config.allow_empty_journal {
            crate::empty_journal::check(&js, system.market().providers()).await?;
        }
        let keyring = config.supervisor.keyring.clone();
        // Start-up reads the index of unfinished chains (kept warm while standing by) and the
        // commits after it, not the whole journal (`projections::live`).
        let started = std::time::Instant::now();
        let (index, read) = warm.take().await?;
        tracing::info!(
            unfinished = index.state.chains().len(),
            checkpoint = index.last_sequence,
            commits_after_checkpoint = read,
            load_ms = started.elapsed().as_millis() as u64,
            "unfinished chains loaded from their index"
        );
        let System { supervisor, providers } = system.start_from(index.state.chains().clone(), config.supervisor);
        let views = crate::api::Views {
            cost: runner::resume::<CostLedger>(&js).await?,
            prices: runner::resume::<RealizedPrices>(&js).await?,
            providers,
            keyring: keyring.clone(),
            fence: leadership.fence.clone(),
        };
        let mut tasks = vec![
            who_leads.into_inner(),
            runner::follow(js.clone(), key.clone(), Arc::new(RwLock::new(index))).await?,
            runner::follow(js.clone(), key.clone(), views.cost.clone()).await?,
            runner::follow(js.clone(), key.clone(), views.prices.clone()).await?,
        ];
        tasks.extend(probe.map(AbortOnDrop::into_inner));
        if config.metrics_addr.is_some() {
            tasks.push(crate::projections::metrics::follow(js.clone(), key.clone()).await?);
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
        // Subscriptions are sent, not yet known to be registered: one round trip to the server makes
        // sure every subject answers before the controller says it runs.
        client.flush().await.map_err(ControllerError::Subscribe)?;
        tracing::info!(nats = %config.nats.redacted_url(), "tgp controller running");
        Ok(Controller { supervisor, js, journal, leadership, tasks })
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
