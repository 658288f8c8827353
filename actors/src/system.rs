//! The system assembled one way: each provider behind its provider actor, one supervisor over a
//! journal, and one sink for what is learnt about providers (circuits, rate cuts, suspect
//! listings), whether a provider actor or the supervisor learnt it.
//!
//! `tgp run` builds it over the JetStream journal, `tgp-dev sim` over the in-memory one on a
//! paused clock, the benchmarks over JetStream again, and the integration tests like `tgp run`. So
//! the limiter, breaker, caches, retries and evidence rules a simulation or a benchmark exercises
//! are the ones that run in production.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix::Addr;
use cqrs_es::persist::PersistenceError;
use tgp_events::InstanceId;

use crate::fence::{Fence, Fenced};
use crate::journal::{Journal, Loaded, load_all};
use crate::provider::{Market, ProviderClient};
use crate::provider_actor::{ProviderActorConfig, ProviderEventSink, ProviderHandle};
use crate::supervisor::{Supervisor, SupervisorConfig};

/// A system being assembled: its provider actors run from the moment they are added, so start-up
/// checks can reach the providers through them ([`SystemBuilder::market`]) before the supervisor
/// starts acting on the journal.
pub struct SystemBuilder<J: Journal> {
    journal: J,
    events: Arc<dyn ProviderEventSink>,
    providers: Vec<ProviderHandle>,
    fence: Fence,
}

/// A running system.
pub struct System<J: Journal> {
    /// Routes commands to the instance actors.
    pub supervisor: Addr<Supervisor<J>>,
    /// The provider actors, in the order the providers were added (for health and rate views).
    pub providers: Vec<ProviderHandle>,
}

impl<J: Journal> SystemBuilder<J> {
    /// A system over `journal`, whose provider events go to `events`.
    pub fn new(journal: J, events: Arc<dyn ProviderEventSink>) -> Self {
        SystemBuilder { journal, events, providers: Vec::new(), fence: Fence::open() }
    }

    /// Puts the providers added from now on behind `fence`: once it closes (the lease is lost),
    /// no call reaches them.
    pub fn fence(mut self, fence: Fence) -> Self {
        self.fence = fence;
        self
    }

    /// Puts each of `clients` behind a provider actor configured by `config`, started now. Must
    /// run inside an actix system.
    pub fn providers(
        mut self,
        clients: impl IntoIterator<Item = Arc<dyn ProviderClient>>,
        config: &ProviderActorConfig,
    ) -> Self {
        let (events, fence) = (&self.events, &self.fence);
        self.providers.extend(clients.into_iter().map(|client| {
            let fenced: Arc<dyn ProviderClient> = Arc::new(Fenced::new(client, fence.clone()));
            ProviderHandle::start(fenced, config.clone(), events.clone())
        }));
        self
    }

    /// The providers as the supervisor will see them: each through its actor.
    pub fn market(&self) -> Market {
        Market::new(self.providers.iter().map(|h| Arc::new(h.clone()) as Arc<dyn ProviderClient>).collect())
    }

    /// Rebuilds every chain from the journal in one pass and starts the supervisor and an actor
    /// per unfinished chain.
    pub async fn start(self, config: SupervisorConfig) -> Result<System<J>, PersistenceError> {
        let started = std::time::Instant::now();
        let mut chains = load_all(&self.journal).await?;
        let read = chains.len();
        chains.retain(|_, loaded| loaded.is_unfinished());
        tracing::info!(
            chains = read,
            unfinished = chains.len(),
            load_ms = started.elapsed().as_millis() as u64,
            "chains rebuilt from the whole journal"
        );
        Ok(self.start_from(chains, config))
    }

    /// Starts the supervisor and an actor per unfinished chain of `unfinished`, loaded by the
    /// caller (from an index of unfinished chains, so start-up need not read finished history).
    pub fn start_from(self, unfinished: BTreeMap<InstanceId, Loaded>, config: SupervisorConfig) -> System<J> {
        let market = self.market();
        let supervisor = Supervisor::start(self.journal, market, self.events, config, unfinished);
        System { supervisor, providers: self.providers }
    }
}
