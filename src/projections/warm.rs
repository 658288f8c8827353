//! The index of unfinished chains kept current by a standby while it waits for the lease.
//!
//! The index's saved checkpoint lags the journal (it is saved every 10,000 commits or 30 s), so a
//! standby that took over cold would read every commit since it before acting. A warm standby
//! folds the journal's new commits as they come, so a takeover reads only the last second's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::Context;
use tokio::sync::Notify;

use super::Projection;
use super::live::LiveChains;
use super::runner::{Checkpointed, ProjectionError, ProjectionFailure, catch_up};
use crate::journal::{JournalReader, StartAt};
use crate::task::AbortOnDrop;

/// How often a standby folds the journal's new commits into its index.
const WARM_INTERVAL: Duration = Duration::from_secs(1);

/// A standby's index, folded forward on a spawned task until [`WarmIndex::take`].
pub struct WarmIndex {
    reader: JournalReader,
    stop: Arc<Notify>,
    /// Aborted when the index is dropped untaken (a start that failed).
    task: AbortOnDrop<Checkpointed<LiveChains>>,
}

impl WarmIndex {
    /// Loads the saved checkpoint, catches up to the journal's end, then keeps folding.
    pub async fn start(js: &Context, reader: JournalReader) -> Result<Self, ProjectionError> {
        let (mut index, _) = catch_up::<LiveChains>(js, &reader).await?;
        let stop = Arc::new(Notify::new());
        let (folder, stopped) = (reader.clone(), stop.clone());
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(WARM_INTERVAL) => {}
                    () = stopped.notified() => return index,
                }
                let from = StartAt::Sequence(index.last_sequence + 1);
                if let Err(e) = index.fold_replay(&folder, from, |_, _| {}).await {
                    // Read again at the next turn; the takeover's own read reports a lasting fault.
                    tracing::warn!(error = %e, "standby: the index of unfinished chains could not be brought forward");
                }
            }
        });
        Ok(WarmIndex { reader, stop, task: AbortOnDrop::new(task) })
    }

    /// Stops the folding and returns the index brought to the journal's end as of now, with the
    /// number of commits that last step read (what a takeover waited for).
    pub async fn take(self) -> Result<(Checkpointed<LiveChains>, u64), ProjectionError> {
        self.stop.notify_one();
        let task = self.task.into_inner();
        let mut index = task.await.map_err(|e| ProjectionError::new(LiveChains::NAME, ProjectionFailure::Warm(e)))?;
        let read = AtomicU64::new(0);
        let from = StartAt::Sequence(index.last_sequence + 1);
        index
            .fold_replay(&self.reader, from, |done, _| read.store(done, Ordering::Relaxed))
            .await
            .map_err(|source| ProjectionError::new(LiveChains::NAME, ProjectionFailure::Journal(source)))?;
        Ok((index, read.into_inner()))
    }
}
