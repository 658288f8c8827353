//! Committing and loading instance chains through any cqrs-es `PersistedEventRepository`.
//!
//! The actor does not go through `CqrsFramework` (it reloads on every command) nor through
//! cqrs-es's snapshot stores (they apply events twice, see `docs/decisions/`): it decides with
//! [`Instance::decide`], persists the events of one decision in one `persist` call, and only then
//! folds them into its state. So a refused or failed commit leaves the state untouched.

use std::collections::HashMap;

use cqrs_es::persist::{PersistedEventRepository, PersistenceError, SerializedEvent};
use cqrs_es::{Aggregate, DomainEvent};
use tgp_events::{InstanceEvent, InstanceId};

use crate::aggregate::{Instance, InstanceCommand, InstanceError};

/// A snapshot is written every this many events, so loading one chain stays cheap however long
/// it lives.
pub const SNAPSHOT_EVERY: usize = 32;

/// Why a decision could not be journaled.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The aggregate refused the command.
    #[error(transparent)]
    Refused(#[from] InstanceError),
    /// Another writer appended first; the state was reloaded and the command may be retried.
    #[error("another writer changed instance {0} first")]
    Conflict(InstanceId),
    /// The journal could not be reached or answered strangely; the outcome may be unknown. The
    /// cause is kept whole so a caller can tell a connection error from a refused record.
    #[error("journal: {0}")]
    Journal(#[from] PersistenceError),
}

/// One chain as held in memory: its state and the sequence of its last journaled event.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    /// The folded state.
    pub instance: Instance,
    /// The per-instance sequence of the last event (0: none).
    pub version: usize,
}

impl Loaded {
    /// Decides `command`, journals the events as one commit, then folds them in.
    /// Returns the events written (none when the command changes nothing).
    pub async fn commit<R: PersistedEventRepository>(
        &mut self,
        repo: &R,
        id: &InstanceId,
        command: InstanceCommand,
        metadata: &serde_json::Value,
    ) -> Result<Vec<InstanceEvent>, CommitError> {
        let events = self.instance.decide(command)?;
        if events.is_empty() {
            return Ok(events);
        }
        let mut next = self.instance.clone();
        let mut serialized = Vec::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            serialized.push(SerializedEvent::new(
                id.to_string(),
                self.version + 1 + i,
                Instance::TYPE.to_string(),
                event.event_type(),
                event.event_version(),
                serde_json::to_value(event).map_err(PersistenceError::from)?,
                metadata.clone(),
            ));
            next.fold(event.clone());
        }
        let new_version = self.version + events.len();
        let snapshot = (new_version / SNAPSHOT_EVERY > self.version / SNAPSHOT_EVERY)
            .then(|| serde_json::to_value(&next).map(|json| (id.to_string(), json, new_version / SNAPSHOT_EVERY)))
            .transpose()
            .map_err(PersistenceError::from)?;
        match repo.persist::<Instance>(&serialized, snapshot).await {
            Ok(()) => {
                self.instance = next;
                self.version = new_version;
                Ok(events)
            }
            Err(PersistenceError::OptimisticLockError) => {
                *self = load(repo, id).await?;
                Err(CommitError::Conflict(id.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }
}

fn decode(event: &SerializedEvent) -> Result<InstanceEvent, PersistenceError> {
    serde_json::from_value(event.payload.clone()).map_err(PersistenceError::from)
}

/// Loads one chain: from its snapshot and the events after it, or from all its events.
pub async fn load<R: PersistedEventRepository>(repo: &R, id: &InstanceId) -> Result<Loaded, PersistenceError> {
    let (mut loaded, events) = match repo.get_snapshot::<Instance>(id.as_str()).await? {
        Some(snapshot) => {
            let instance: Instance = serde_json::from_value(snapshot.aggregate)?;
            let version = snapshot.current_sequence;
            (Loaded { instance, version }, repo.get_last_events::<Instance>(id.as_str(), version).await?)
        }
        None => (Loaded::default(), repo.get_events::<Instance>(id.as_str()).await?),
    };
    for event in &events {
        loaded.instance.fold(decode(event)?);
        loaded.version = event.sequence;
    }
    Ok(loaded)
}

/// A journal that can hand over every instance event in journal order in one pass.
///
/// cqrs-es's `stream_all_events` moves each event through a JSON `Value` and a channel, which
/// makes a start-up rebuild of 100,000 instances several times slower than reading the journal;
/// an implementation of this trait decodes commits straight into events instead.
pub trait ReplayAll {
    /// Calls `each(instance, events)` for every commit (its events with their sequences), in
    /// journal order.
    fn replay_all(
        &self,
        each: impl FnMut(InstanceId, Vec<(usize, InstanceEvent)>) + Send,
    ) -> impl Future<Output = Result<(), PersistenceError>> + Send;
}

/// Rebuilds every chain in one pass over the journal, in journal order.
pub async fn load_all<R: ReplayAll>(repo: &R) -> Result<HashMap<InstanceId, Loaded>, PersistenceError> {
    let mut all: HashMap<InstanceId, Loaded> = HashMap::new();
    repo.replay_all(|id, events| {
        let loaded = all.entry(id).or_default();
        for (sequence, event) in events {
            loaded.instance.fold(event);
            loaded.version = sequence;
        }
    })
    .await?;
    Ok(all)
}
