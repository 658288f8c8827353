//! The simulation's journal: the same [`Journal`] contract as the JetStream journal (ordered
//! commits per instance, a commit refused unless it follows the chain's last event, snapshots),
//! held in memory, with each commit stored as the same bytes ([`encode_commit`]). A simulated hour
//! must not wait on disks and sockets, whose timing would both slow it and let the virtual clock
//! jump while a write is in flight; everything the journal decides (what is stored, what
//! conflicts, how it is encoded) is the same.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use cqrs_es::persist::PersistenceError;
use tgp_actors::journal::{Journal, Snapshot};
use tgp_events::commit::{Commit, encode_commit};
use tgp_events::{InstanceEvent, InstanceId};

#[derive(Default)]
struct Store {
    /// Every commit's body, in journal order.
    log: Vec<Vec<u8>>,
    /// Each instance's commits (indices into `log`) and the sequence of its last event.
    chains: BTreeMap<InstanceId, (Vec<usize>, usize)>,
    /// Each instance's latest snapshot.
    snapshots: BTreeMap<InstanceId, Snapshot>,
}

/// An in-memory journal of instance events; clones share it.
#[derive(Clone, Default)]
pub struct MemoryJournal {
    store: Arc<Mutex<Store>>,
}

fn decode(body: &[u8]) -> Result<Commit, PersistenceError> {
    Commit::decode(body).map_err(|e| PersistenceError::DeserializationError(Box::new(e)))
}

impl MemoryJournal {
    /// Every instance's events, decoded, by instance id.
    pub fn chains(&self) -> Result<BTreeMap<InstanceId, Vec<InstanceEvent>>, PersistenceError> {
        let store = self.store.lock().expect("journal store");
        let mut chains = BTreeMap::new();
        for (id, (commits, _)) in &store.chains {
            let mut events = Vec::new();
            for &at in commits {
                events.extend(decode(&store.log[at])?.events.into_iter().map(|(_, event)| event));
            }
            chains.insert(id.clone(), events);
        }
        Ok(chains)
    }

    /// How many commits were stored.
    pub fn commit_count(&self) -> usize {
        self.store.lock().expect("journal store").log.len()
    }
}

impl Journal for MemoryJournal {
    async fn append(
        &self,
        instance: &InstanceId,
        first: usize,
        events: &[InstanceEvent],
    ) -> Result<(), PersistenceError> {
        // Refused as the JetStream journal refuses it, so the simulation and production agree.
        if events.is_empty() {
            return Err(PersistenceError::UnknownError("empty commit".into()));
        }
        let mut store = self.store.lock().expect("journal store");
        let at = store.log.len();
        let (commits, last) = store.chains.entry(instance.clone()).or_default();
        // The same rule as Nats-Expected-Last-Subject-Sequence: a commit must follow the last one.
        if first != *last + 1 {
            return Err(PersistenceError::OptimisticLockError);
        }
        commits.push(at);
        *last += events.len();
        store.log.push(encode_commit(instance, first as u64, events));
        Ok(())
    }

    async fn events_after(
        &self,
        instance: &InstanceId,
        after: usize,
    ) -> Result<Vec<(usize, InstanceEvent)>, PersistenceError> {
        let store = self.store.lock().expect("journal store");
        let mut events = Vec::new();
        for &at in store.chains.get(instance).map_or(&[][..], |(commits, _)| commits) {
            let commit = decode(&store.log[at])?;
            events.extend(commit.events.into_iter().map(|(s, e)| (s as usize, e)).filter(|(s, _)| *s > after));
        }
        Ok(events)
    }

    async fn snapshot(&self, instance: &InstanceId) -> Result<Option<Snapshot>, PersistenceError> {
        Ok(self.store.lock().expect("journal store").snapshots.get(instance).cloned())
    }

    async fn save_snapshot(&self, instance: &InstanceId, snapshot: &Snapshot) -> Result<(), PersistenceError> {
        self.store.lock().expect("journal store").snapshots.insert(instance.clone(), snapshot.clone());
        Ok(())
    }

    async fn replay_all(
        &self,
        mut each: impl FnMut(InstanceId, Vec<(usize, InstanceEvent)>) + Send,
    ) -> Result<(), PersistenceError> {
        let store = self.store.lock().expect("journal store");
        for body in &store.log {
            let commit = decode(body)?;
            each(commit.instance, commit.events.into_iter().map(|(s, e)| (s as usize, e)).collect());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> InstanceEvent {
        InstanceEvent::TerminationRequested { reason: "test".into(), limit: None, at: chrono::Utc::now() }
    }

    #[tokio::test]
    async fn a_commit_must_follow_the_last_one_as_on_jetstream() {
        let journal = MemoryJournal::default();
        let (a, b): (InstanceId, InstanceId) = ("a".parse().unwrap(), "b".parse().unwrap());
        journal.append(&a, 1, &[event(), event()]).await.unwrap();
        let stale = journal.append(&a, 2, &[event()]).await;
        assert!(matches!(stale, Err(PersistenceError::OptimisticLockError)), "{stale:?}");
        journal.append(&b, 1, &[event()]).await.unwrap();
        journal.append(&a, 3, &[event()]).await.unwrap();
        let empty = journal.append(&a, 4, &[]).await;
        assert!(matches!(empty, Err(PersistenceError::UnknownError(_))), "an empty commit is refused: {empty:?}");

        assert_eq!(journal.events_after(&a, 1).await.unwrap().len(), 2);
        let mut order = Vec::new();
        journal.replay_all(|id, events| order.push((id.to_string(), events.len()))).await.unwrap();
        assert_eq!(order, [("a".to_string(), 2), ("b".to_string(), 1), ("a".to_string(), 1)], "journal order");
    }
}
