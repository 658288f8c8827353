//! The simulation's journal: the same cqrs-es repository contract as the JetStream journal
//! (ordered commits per instance, optimistic concurrency on the expected sequence, snapshots),
//! held in memory. A simulated hour must not wait on disks and sockets, whose timing would both
//! slow it and let the virtual clock jump while a write is in flight; everything the journal
//! decides (what is stored, what conflicts) is the same.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use cqrs_es::Aggregate;
use cqrs_es::persist::{PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot};
use tgp_actors::journal::ReplayAll;

use tgp::journal::replay_stream_of;
use tgp_events::{InstanceEvent, InstanceId};

#[derive(Default)]
struct Store {
    /// Every instance's events, in order.
    events: BTreeMap<String, Vec<SerializedEvent>>,
    /// Snapshots: the state and the sequence it covers.
    snapshots: BTreeMap<String, SerializedSnapshot>,
    /// Commits in journal order: instance and how many events.
    commits: Vec<(String, usize)>,
}

/// An in-memory journal of instance events; clones share it.
#[derive(Clone, Default)]
pub struct MemoryJournal {
    store: Arc<Mutex<Store>>,
}

impl Store {
    /// Every commit in journal order: its instance and its events.
    fn commits(&self) -> impl Iterator<Item = (&str, &[SerializedEvent])> {
        let mut read: BTreeMap<&str, usize> = BTreeMap::new();
        self.commits.iter().map(move |(id, count)| {
            let start = read.entry(id).or_default();
            let events = &self.events[id][*start..*start + count];
            *start += count;
            (id.as_str(), events)
        })
    }
}

fn decode(event: &SerializedEvent) -> Result<InstanceEvent, PersistenceError> {
    Ok(serde_json::from_value(event.payload.clone())?)
}

impl MemoryJournal {
    /// Every instance's events, decoded, by instance id.
    pub fn chains(&self) -> Result<BTreeMap<InstanceId, Vec<InstanceEvent>>, PersistenceError> {
        let store = self.store.lock().expect("journal store");
        let mut chains = BTreeMap::new();
        for (id, events) in &store.events {
            let id: InstanceId = id.parse().map_err(|e| PersistenceError::UnknownError(Box::new(e)))?;
            chains.insert(id, events.iter().map(decode).collect::<Result<Vec<_>, _>>()?);
        }
        Ok(chains)
    }

    /// How many commits were stored.
    pub fn commit_count(&self) -> usize {
        self.store.lock().expect("journal store").commits.len()
    }
}

impl ReplayAll for MemoryJournal {
    async fn replay_all(
        &self,
        mut each: impl FnMut(InstanceId, Vec<(usize, InstanceEvent)>) + Send,
    ) -> Result<(), PersistenceError> {
        let store = self.store.lock().expect("journal store");
        for (id, events) in store.commits() {
            let instance: InstanceId = id.parse().map_err(|e| PersistenceError::UnknownError(Box::new(e)))?;
            each(
                instance,
                events.iter().map(|e| Ok((e.sequence, decode(e)?))).collect::<Result<_, PersistenceError>>()?,
            );
        }
        Ok(())
    }
}

impl PersistedEventRepository for MemoryJournal {
    async fn get_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.get_last_events::<A>(aggregate_id, 0).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let store = self.store.lock().expect("journal store");
        Ok(store
            .events
            .get(aggregate_id)
            .map(|events| events.iter().filter(|e| e.sequence > last_sequence).cloned().collect())
            .unwrap_or_default())
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        let store = self.store.lock().expect("journal store");
        Ok(store.snapshots.get(aggregate_id).map(|s| SerializedSnapshot {
            aggregate_id: s.aggregate_id.clone(),
            aggregate: s.aggregate.clone(),
            current_sequence: s.current_sequence,
            current_snapshot: s.current_snapshot,
        }))
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, serde_json::Value, usize)>,
    ) -> Result<(), PersistenceError> {
        let Some(first) = events.first() else { return Ok(()) };
        let mut store = self.store.lock().expect("journal store");
        let stored = store.events.entry(first.aggregate_id.clone()).or_default();
        // The same rule as Nats-Expected-Last-Subject-Sequence: a commit must follow the last one.
        if first.sequence != stored.len() + 1 {
            return Err(PersistenceError::OptimisticLockError);
        }
        stored.extend(events.iter().cloned());
        let last = stored.len();
        store.commits.push((first.aggregate_id.clone(), events.len()));
        if let Some((id, aggregate, current_snapshot)) = snapshot_update {
            store.snapshots.insert(
                id.clone(),
                SerializedSnapshot { aggregate_id: id, aggregate, current_sequence: last, current_snapshot },
            );
        }
        Ok(())
    }

    async fn stream_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<ReplayStream, PersistenceError> {
        let events = self.get_events::<A>(aggregate_id).await?;
        replay_stream_of(events).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        let all: Vec<SerializedEvent> = {
            let store = self.store.lock().expect("journal store");
            store.commits().flat_map(|(_, events)| events.iter().cloned()).collect()
        };
        replay_stream_of(all).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tgp_actors::aggregate::Instance;

    fn event(id: &str, sequence: usize) -> SerializedEvent {
        let event = InstanceEvent::TerminationRequested { reason: "test".into(), limit: None, at: chrono::Utc::now() };
        SerializedEvent {
            aggregate_id: id.into(),
            sequence,
            aggregate_type: "instance".into(),
            event_type: event.type_name().into(),
            event_version: "1".into(),
            payload: serde_json::to_value(&event).unwrap(),
            metadata: serde_json::Value::Null,
        }
    }

    #[tokio::test]
    async fn a_commit_must_follow_the_last_one_as_on_jetstream() {
        let journal = MemoryJournal::default();
        journal.persist::<Instance>(&[event("a", 1), event("a", 2)], None).await.unwrap();
        let stale = journal.persist::<Instance>(&[event("a", 2)], None).await;
        assert!(matches!(stale, Err(PersistenceError::OptimisticLockError)), "{stale:?}");
        journal.persist::<Instance>(&[event("b", 1)], None).await.unwrap();
        journal.persist::<Instance>(&[event("a", 3)], None).await.unwrap();

        assert_eq!(journal.get_last_events::<Instance>("a", 1).await.unwrap().len(), 2);
        let mut order = Vec::new();
        journal.replay_all(|id, events| order.push((id.to_string(), events.len()))).await.unwrap();
        assert_eq!(order, [("a".to_string(), 2), ("b".to_string(), 1), ("a".to_string(), 1)], "journal order");
    }
}
