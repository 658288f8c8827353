//! Where instance chains are kept, and how a decision is committed to them.
//!
//! [`Journal`] is what the actors need from a journal: append one decision's events as one commit
//! (refused when another writer got there first), read a chain back, keep snapshots, and hand
//! over every commit in journal order at start-up. tgp runs on the JetStream journal
//! (`tgp::journal::JetStreamJournal`); the simulation runs the same actors on an in-memory one
//! (`tgp_testkit::sim::journal::MemoryJournal`).
//!
//! The actor decides with [`Instance::decide`], appends the events of one decision in one call,
//! and only then folds them into its state. So a refused or failed commit leaves the state
//! untouched. (It does not go through cqrs-es's `CqrsFramework`, which reloads on every command,
//! nor its snapshot stores, which apply events twice: see `docs/decisions/`.)

use std::collections::BTreeMap;

use cqrs_es::persist::PersistenceError;
use tgp_events::{InstanceEvent, InstanceId};

use crate::aggregate::{Instance, InstanceCommand, InstanceError};

/// A snapshot is written every this many events, so loading one chain stays cheap however long
/// it lives.
pub const SNAPSHOT_EVERY: usize = 32;

/// A chain's state as of one of its events, kept so a load need not fold the whole chain.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The state after `sequence`.
    pub instance: Instance,
    /// The per-instance sequence of the last event the state includes.
    pub sequence: usize,
}

/// Where instance chains are kept. Implementations agree on what is stored and what conflicts;
/// they differ only in where the bytes go.
pub trait Journal: Send + Sync + 'static {
    /// Stores `events`, numbered from `first` on, as one commit of `instance`'s chain. Refused
    /// with `PersistenceError::OptimisticLockError` unless `first` follows the chain's last stored
    /// event (another writer went first).
    fn append(
        &self,
        instance: &InstanceId,
        first: usize,
        events: &[InstanceEvent],
    ) -> impl Future<Output = Result<(), PersistenceError>> + Send;

    /// The chain's events after sequence `after`, with their sequences.
    fn events_after(
        &self,
        instance: &InstanceId,
        after: usize,
    ) -> impl Future<Output = Result<Vec<(usize, InstanceEvent)>, PersistenceError>> + Send;

    /// The chain's latest snapshot, if one was kept.
    fn snapshot(
        &self,
        instance: &InstanceId,
    ) -> impl Future<Output = Result<Option<Snapshot>, PersistenceError>> + Send;

    /// Keeps `snapshot` as the chain's latest.
    fn save_snapshot(
        &self,
        instance: &InstanceId,
        snapshot: &Snapshot,
    ) -> impl Future<Output = Result<(), PersistenceError>> + Send;

    /// Calls `each(instance, events)` for every commit (its events with their sequences), in
    /// journal order: one pass, events decoded straight from the stored bytes, so a start-up
    /// rebuild costs little more than reading the journal.
    fn replay_all(
        &self,
        each: impl FnMut(InstanceId, Vec<(usize, InstanceEvent)>) + Send,
    ) -> impl Future<Output = Result<(), PersistenceError>> + Send;
}

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
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Loaded {
    /// The folded state.
    pub instance: Instance,
    /// The per-instance sequence of the last event (0: none).
    pub version: usize,
}

impl Loaded {
    /// Folds `event`, the chain's next: the one way a chain's state moves, whether it is loaded,
    /// replayed or indexed.
    pub fn fold(&mut self, sequence: usize, event: InstanceEvent) {
        self.instance.fold(event);
        self.version = sequence;
    }

    /// True while the chain has begun and not ended: it needs an actor.
    pub fn is_unfinished(&self) -> bool {
        self.instance.current_state().is_some_and(|s| !s.is_final())
    }

    /// Decides `command`, journals the events as one commit, then folds them in.
    /// Returns the events written (none when the command changes nothing).
    pub async fn commit<J: Journal>(
        &mut self,
        journal: &J,
        id: &InstanceId,
        command: InstanceCommand,
    ) -> Result<Vec<InstanceEvent>, CommitError> {
        let events = self.instance.decide(command)?;
        if events.is_empty() {
            return Ok(events);
        }
        match journal.append(id, self.version + 1, &events).await {
            Ok(()) => {}
            Err(PersistenceError::OptimisticLockError) => {
                *self = load(journal, id).await?;
                return Err(CommitError::Conflict(id.clone()));
            }
            Err(e) => return Err(e.into()),
        }
        let before = self.version;
        for event in &events {
            self.instance.fold(event.clone());
        }
        self.version += events.len();
        if self.version / SNAPSHOT_EVERY > before / SNAPSHOT_EVERY {
            let snapshot = Snapshot { instance: self.instance.clone(), sequence: self.version };
            // The commit is durable; a lost snapshot only costs a longer load later.
            if let Err(e) = journal.save_snapshot(id, &snapshot).await {
                tracing::warn!(instance = %id, error = %e, "snapshot not written");
            }
        }
        Ok(events)
    }
}

/// Loads one chain: from its snapshot and the events after it, or from all its events.
pub async fn load<J: Journal>(journal: &J, id: &InstanceId) -> Result<Loaded, PersistenceError> {
    let mut loaded = match journal.snapshot(id).await? {
        Some(Snapshot { instance, sequence }) => Loaded { instance, version: sequence },
        None => Loaded::default(),
    };
    for (sequence, event) in journal.events_after(id, loaded.version).await? {
        loaded.fold(sequence, event);
    }
    Ok(loaded)
}

/// Rebuilds every chain in one pass over the journal, in journal order; by id, so actors start
/// in the same order every run. (The controller starts from its index of unfinished chains
/// instead, which does not grow with finished history: `tgp::projections::live`.)
pub async fn load_all<J: Journal>(journal: &J) -> Result<BTreeMap<InstanceId, Loaded>, PersistenceError> {
    let mut all: BTreeMap<InstanceId, Loaded> = BTreeMap::new();
    journal
        .replay_all(|id, events| {
            let loaded = all.entry(id).or_default();
            for (sequence, event) in events {
                loaded.fold(sequence, event);
            }
        })
        .await?;
    Ok(all)
}
