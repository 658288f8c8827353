//! The projection runtime.
//!
//! # Guarantees
//! - Each projection reads `tgp.events.instance.>` (or `tgp.events.>`) with its own durable
//!   consumer (`projection-<name>`) and folds commits in stream order.
//! - The consumer heals (see [`crate::consumers`]): after an outage, a reconnect or its deletion it
//!   is recreated from the live checkpoint, so the projection neither double-counts nor skips.
//! - Its checkpoint (state plus the last stream sequence folded) is saved in the object store
//!   `tgp_projection_state` and the sequence in the key-value bucket `tgp_projections`, once the
//!   state is [`CHECKPOINT_EVERY`] stream sequences past the saved one, or [`CHECKPOINT_INTERVAL`]
//!   after the last save with anything unsaved (a projection may choose its own,
//!   `Projection::SAVE_EVERY` and `SAVE_INTERVAL`); only then are the commits acked. A state that
//!   starts far past its checkpoint (a start-up that read the whole history) is saved at once.
//! - At start it resumes from the checkpoint; commits at or below the checkpoint's sequence are
//!   skipped, so a crash between saving and acking folds nothing twice.
//! - [`rebuild`] folds from the first commit, ignoring the checkpoint, and gives the same state.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::Context;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::kv;
use async_nats::jetstream::object_store;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tgp_events::commit::{Commit, CommitDecodeError};
use tgp_events::provider_events::ProviderRecord;
use tgp_events::subjects::{EVENTS_STREAM, INSTANCE_EVENTS_ALL};
use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;

use super::Projection;
use crate::consumers::{self, OwnConsumer, Stopped};
use crate::journal::{JournalKey, Verifier};
use crate::journal::{JournalReader, StartAt};

/// Key-value bucket of projection checkpoints (name -> last stream sequence).
pub const CHECKPOINT_BUCKET: &str = "tgp_projections";
/// Object store of projection states at their checkpoints.
pub const STATE_STORE: &str = "tgp_projection_state";
/// By default, a checkpoint is saved once the state is this many stream sequences past it...
pub const CHECKPOINT_EVERY: u64 = 1000;
/// ...or this often, whichever comes first.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(2);

/// Why a projection cannot run: its checkpoint could not be loaded or saved, the journal could
/// not be read, or its consumer could not be bound. It names the projection once, and its
/// [`ProjectionFailure`] keeps the NATS or decoding error, so the checkpoint can be told apart from
/// the journal.
#[derive(Debug, thiserror::Error)]
#[error("projection {projection}: {failure}")]
pub struct ProjectionError {
    /// Which projection.
    pub projection: &'static str,
    /// What failed, with its cause.
    #[source]
    pub failure: ProjectionFailure,
}

impl ProjectionError {
    /// `failure`, in the projection named `projection`.
    pub fn new(projection: &'static str, failure: ProjectionFailure) -> Self {
        ProjectionError { projection, failure }
    }
}

/// What a projection failed at, each with the NATS or decoding error that caused it.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionFailure {
    /// The checkpoint bucket could not be opened.
    #[error("bucket {CHECKPOINT_BUCKET} (made with the journal's layout when tgp run starts): {0}")]
    CheckpointBucket(#[source] async_nats::jetstream::context::KeyValueError),
    /// The state store could not be opened.
    #[error("object store {STATE_STORE} (made with the journal's layout when tgp run starts): {0}")]
    StateStore(#[source] async_nats::jetstream::context::ObjectStoreError),
    /// The checkpoint's sequence could not be read from the bucket.
    #[error("reading its checkpoint: {0}")]
    ReadCheckpoint(#[source] kv::EntryError),
    /// The checkpoint holds something other than a stream sequence.
    #[error("its checkpoint is no sequence: {0}")]
    BadCheckpoint(#[source] std::num::ParseIntError),
    /// The saved state could not be read from the object store.
    #[error("reading its state: {0}")]
    ReadState(#[source] std::io::Error),
    /// The saved state does not decode (written by another version, or damaged).
    #[error("its saved state does not decode: {0}")]
    BadState(#[source] serde_json::Error),
    /// The state could not be encoded to be saved.
    #[error("encoding its state: {0}")]
    EncodeState(#[source] serde_json::Error),
    /// The state could not be written to the object store.
    #[error("saving its state: {0}")]
    SaveState(#[source] object_store::PutError),
    /// The checkpoint's sequence could not be written to the bucket.
    #[error("saving its checkpoint: {0}")]
    SaveCheckpoint(#[source] kv::PutError),
    /// The journal could not be opened or read.
    #[error("journal: {0}")]
    Journal(#[source] cqrs_es::persist::PersistenceError),
    /// A standby's task that kept it current panicked or was cancelled.
    #[error("the standby's folding task ended: {0}")]
    Warm(#[source] tokio::task::JoinError),
    /// A journal message could not be folded (it does not decode).
    #[error("{0}")]
    Fold(#[source] FoldError),
    /// The events stream could not be looked up to bind the consumer.
    #[error("stream {EVENTS_STREAM}: {0}")]
    Stream(#[source] async_nats::jetstream::context::GetStreamError),
    /// The stream's signing metadata is unreadable, so signatures cannot be checked.
    #[error("signing metadata of {EVENTS_STREAM}: {0}")]
    Verifier(#[source] crate::journal::SigningError),
    /// The durable consumer could not be created.
    #[error("its consumer: {0}")]
    Consumer(#[source] async_nats::jetstream::stream::ConsumerError),
    /// The consumer's messages could not be pulled.
    #[error("its consumer's messages: {0}")]
    Messages(#[source] async_nats::jetstream::consumer::StreamError),
}

/// Why a journal message could not be folded: the message is tgp's (signed, or checked) but
/// this tgp cannot read it, so the projection stops rather than skip what it should count.
#[derive(Debug, thiserror::Error)]
pub enum FoldError {
    /// A provider event does not decode.
    #[error("provider event at stream sequence {sequence}: {source}")]
    ProviderEvent {
        /// Its stream sequence.
        sequence: u64,
        /// What serde said.
        source: serde_json::Error,
    },
    /// An instance message is not a commit this tgp can read.
    #[error("journal message {sequence}: {source}")]
    Commit {
        /// Its stream sequence.
        sequence: u64,
        /// Why not: no commit at all, or an event that does not decode.
        source: CommitDecodeError,
    },
}

/// A projection's state with the last stream sequence it has folded.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Checkpointed<P> {
    /// The last stream sequence folded (0: none).
    pub last_sequence: u64,
    /// The state after it.
    pub state: P,
    /// The sequence of the checkpoint last loaded or saved: what a restart would read after. Not
    /// part of the checkpoint; a state folded far past it (a start-up that read the whole history)
    /// is saved at once, so the next start does not read it all again.
    #[serde(skip)]
    saved_sequence: u64,
}

impl<P: Projection> Checkpointed<P> {
    /// Folds one commit unless it was folded already.
    fn fold(&mut self, sequence: u64, at: chrono::DateTime<chrono::Utc>, commit: &Commit) {
        if sequence <= self.last_sequence {
            return;
        }
        for (_, event) in &commit.events {
            self.state.apply(at, &commit.instance, event);
        }
        self.last_sequence = sequence;
    }

    /// Moves past a message that was quarantined: it is never folded.
    pub fn skip(&mut self, sequence: u64) {
        self.last_sequence = self.last_sequence.max(sequence);
    }

    /// Folds one journal message of any kind (instance commit or provider event), unless it was
    /// folded already.
    pub fn fold_message(&mut self, message: &crate::journal::RawMessage) -> Result<(), FoldError> {
        if message.sequence <= self.last_sequence {
            return Ok(());
        }
        if message.subject.starts_with(tgp_events::subjects::PROVIDER_EVENTS_PREFIX) {
            let record: ProviderRecord = serde_json::from_slice(&message.payload)
                .map_err(|source| FoldError::ProviderEvent { sequence: message.sequence, source })?;
            self.state.apply_provider(message.at, &record.provider, &record.event);
            self.last_sequence = message.sequence;
            return Ok(());
        }
        if !message.subject.starts_with(tgp_events::subjects::INSTANCE_EVENTS_PREFIX) {
            // The controller's own events (`tgp.events.controller`): nothing here to fold.
            self.last_sequence = message.sequence;
            return Ok(());
        }
        let commit = Commit::decode(&message.payload)
            .map_err(|source| FoldError::Commit { sequence: message.sequence, source })?;
        self.fold(message.sequence, message.at, &commit);
        Ok(())
    }

    /// Folds every instance commit from `start` to the journal's end as of now, through the
    /// replay's fast path, reporting progress every 20,000 commits and at the end.
    pub async fn fold_replay(
        &mut self,
        reader: &JournalReader,
        start: StartAt,
        progress: impl Fn(u64, u64) + Send + Sync,
    ) -> Result<(), cqrs_es::persist::PersistenceError> {
        let mut last = (0, 0);
        reader
            .replay(start, |commit| {
                self.fold_replayed(&commit);
                if commit.progress.0 % 20_000 == 0 {
                    progress(commit.progress.0, commit.progress.1);
                }
                last = commit.progress;
            })
            .await?;
        progress(last.0, last.1);
        Ok(())
    }

    /// Folds a commit a replay has already decoded, unless it was folded already.
    pub fn fold_replayed(&mut self, commit: &crate::journal::ReplayedCommit) {
        if commit.sequence <= self.last_sequence {
            return;
        }
        for (_, event) in &commit.events {
            self.state.apply(commit.at, &commit.instance, event);
        }
        self.last_sequence = commit.sequence;
    }
}

/// A live projection, shared with whoever answers questions from it.
pub type Live<P> = Arc<RwLock<Checkpointed<P>>>;

/// Opens the checkpoint bucket and the state store. The layout made them, with the replicas
/// `tgp run` was asked for; a failed open (a cluster electing a leader) is an error to retry, never
/// a reason to make them again with other settings.
async fn stores<P: Projection>(js: &Context) -> Result<(kv::Store, object_store::ObjectStore), ProjectionError> {
    let projection = P::NAME;
    let kv = js
        .get_key_value(CHECKPOINT_BUCKET)
        .await
        .map_err(|source| ProjectionError::new(projection, ProjectionFailure::CheckpointBucket(source)))?;
    let objects = js
        .get_object_store(STATE_STORE)
        .await
        .map_err(|source| ProjectionError::new(projection, ProjectionFailure::StateStore(source)))?;
    Ok((kv, objects))
}

/// The saved checkpoint, when the bucket and the store agree on it.
async fn load<P: Projection>(js: &Context) -> Result<Checkpointed<P>, ProjectionError> {
    let projection = P::NAME;
    let (kv, objects) = stores::<P>(js).await?;
    let Some(sequence) = kv
        .get(P::NAME)
        .await
        .map_err(|source| ProjectionError::new(projection, ProjectionFailure::ReadCheckpoint(source)))?
    else {
        return Ok(Checkpointed::default());
    };
    let sequence: u64 = String::from_utf8_lossy(&sequence)
        .parse()
        .map_err(|source| ProjectionError::new(projection, ProjectionFailure::BadCheckpoint(source)))?;
    let mut object = match objects.get(P::NAME).await {
        Ok(o) => o,
        Err(_) => return Ok(Checkpointed::default()),
    };
    let mut bytes = Vec::new();
    object
        .read_to_end(&mut bytes)
        .await
        .map_err(|source| ProjectionError::new(projection, ProjectionFailure::ReadState(source)))?;
    let saved: Checkpointed<P> = serde_json::from_slice(&bytes)
        .map_err(|source| ProjectionError::new(projection, ProjectionFailure::BadState(source)))?;
    if saved.last_sequence != sequence {
        tracing::warn!(projection = P::NAME, "checkpoint and state disagree; rebuilding from the start");
        return Ok(Checkpointed::default());
    }
    Ok(Checkpointed { saved_sequence: sequence, ..saved })
}

async fn save<P: Projection>(js: &Context, live: &Live<P>) -> Result<u64, ProjectionError> {
    let projection = P::NAME;
    let (bytes, sequence) = {
        let guard = live.read().expect("projection lock");
        let bytes = serde_json::to_vec(&*guard)
            .map_err(|source| ProjectionError::new(projection, ProjectionFailure::EncodeState(source)))?;
        (bytes, guard.last_sequence)
    };
    let (kv, objects) = stores::<P>(js).await?;
    objects
        .put(P::NAME, &mut bytes.as_slice())
        .await
        .map_err(|source| ProjectionError::new(projection, ProjectionFailure::SaveState(source)))?;
    kv.put(P::NAME, sequence.to_string().into())
        .await
        .map_err(|source| ProjectionError::new(projection, ProjectionFailure::SaveCheckpoint(source)))?;
    let mut guard = live.write().expect("projection lock");
    guard.saved_sequence = guard.saved_sequence.max(sequence);
    Ok(sequence)
}

/// The saved checkpoint brought up to the journal's end as of now, and how many commits that
/// took: the commits after the checkpoint, folded through the replay's fast path. A start-up that
/// needs the projection current reads only what came after the checkpoint.
pub async fn catch_up<P: Projection>(
    js: &Context,
    reader: &JournalReader,
) -> Result<(Checkpointed<P>, u64), ProjectionError> {
    let mut checkpointed = load::<P>(js).await?;
    let start = StartAt::Sequence(checkpointed.last_sequence + 1);
    let from = checkpointed.last_sequence;
    let read = std::sync::atomic::AtomicU64::new(0);
    checkpointed
        .fold_replay(reader, start, |done, total| {
            read.store(done, std::sync::atomic::Ordering::Relaxed);
            if done < total {
                tracing::info!(projection = P::NAME, from, done, total, "catching up after the checkpoint");
            }
        })
        .await
        .map_err(|source| ProjectionError::new(P::NAME, ProjectionFailure::Journal(source)))?;
    Ok((checkpointed, read.into_inner()))
}

/// Loads the checkpoint and returns the live projection, to be kept current by [`follow`].
pub async fn resume<P: Projection>(js: &Context) -> Result<Live<P>, ProjectionError> {
    Ok(Arc::new(RwLock::new(load::<P>(js).await?)))
}

/// Keeps `live` current from its durable consumer on a spawned task, recreating the consumer
/// from the checkpoint whenever it stops delivering (see [`crate::consumers`]). Returns once the
/// consumer is bound.
/// `key` signs the controller events this consumer journals (its recoveries, what it quarantines).
pub async fn follow<P: Projection>(
    js: Context,
    key: JournalKey,
    live: Live<P>,
) -> Result<JoinHandle<()>, ProjectionError> {
    let quarantine = crate::journal::Quarantine::open(&js).await.announcing(js.clone(), key.clone());
    let consumer = Follower::<P> {
        js: js.clone(),
        live,
        durable: format!("projection-{}", P::NAME),
        messages: None,
        quarantine,
        verifier: Verifier::default(),
    };
    consumers::start(js, key, consumer).await
}

/// A projection's durable consumer and the live state it folds into.
struct Follower<P: Projection> {
    js: Context,
    live: Live<P>,
    /// `projection-<name>`.
    durable: String,
    /// The bound consumer's messages.
    messages: Option<pull::Stream>,
    /// Where a message that is not tgp's is recorded before it is skipped.
    quarantine: crate::journal::Quarantine,
    /// What signatures are checked against (the stream's metadata, read at each binding).
    verifier: Verifier,
}

impl<P: Projection> Follower<P> {
    /// How many stream sequences the live state is past the checkpoint a restart would load.
    fn unsaved(&self) -> u64 {
        let live = self.live.read().expect("projection lock");
        live.last_sequence.saturating_sub(live.saved_sequence)
    }
}

impl<P: Projection> OwnConsumer for Follower<P> {
    type Error = ProjectionError;

    fn name(&self) -> &str {
        &self.durable
    }

    /// The consumer restarts after the live checkpoint: a durable consumer cannot move back, so
    /// the old one is deleted and a new one created from there.
    async fn bind(&mut self) -> Result<u64, ProjectionError> {
        let projection = P::NAME;
        self.messages = None;
        let last = self.live.read().expect("projection lock").last_sequence;
        let stream = self
            .js
            .get_stream(EVENTS_STREAM)
            .await
            .map_err(|source| ProjectionError::new(projection, ProjectionFailure::Stream(source)))?;
        self.verifier = Verifier::from_metadata(&stream.cached_info().config.metadata)
            .map_err(|source| ProjectionError::new(projection, ProjectionFailure::Verifier(source)))?;
        let _ = stream.delete_consumer(&self.durable).await;
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(self.durable.clone()),
                filter_subject: P::SUBJECTS.into(),
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: last + 1 },
                ack_policy: AckPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|source| ProjectionError::new(projection, ProjectionFailure::Consumer(source)))?;
        self.messages = Some(
            consumer
                .messages()
                .await
                .map_err(|source| ProjectionError::new(projection, ProjectionFailure::Messages(source)))?,
        );
        Ok(last)
    }

    async fn consume(&mut self, reconnected: impl Future<Output = ()> + Send) -> Stopped {
        let Some(mut messages) = self.messages.take() else {
            return Stopped::Interrupted("not bound".into());
        };
        tokio::pin!(reconnected);
        // A state bound ahead of its checkpoint (the index of a start-up that read the history
        // after it) is saved at the first turn, so the next start reads none of that again.
        let mut saved_at = (self.unsaved() == 0).then(Instant::now);
        let mut unacked = None;
        loop {
            let next = tokio::select! {
                () = &mut reconnected => {
                    return Stopped::Interrupted("the connection to NATS was lost and regained".into());
                }
                next = tokio::time::timeout(CHECKPOINT_INTERVAL, messages.next()) => next,
            };
            match next {
                Ok(Some(Ok(message))) => {
                    let info = match message.info() {
                        Ok(info) => info,
                        Err(e) => return Stopped::Fatal(format!("message without JetStream info: {e}")),
                    };
                    let raw = crate::journal::RawMessage {
                        sequence: info.stream_sequence,
                        at: crate::journal::published_at(&info),
                        subject: message.subject.to_string(),
                        payload: message.payload.clone(),
                    };
                    // A message that is not tgp's (unsigned, forged, garbage) is quarantined and
                    // skipped: it must not freeze the projection nor move it. A signed one this
                    // tgp cannot read stops it, loudly.
                    let checked = self
                        .verifier
                        .check(raw.sequence, &raw.subject, message.headers.as_ref(), &raw.payload)
                        .map_err(crate::journal::quarantine::Refusal::Foreign)
                        .and_then(|()| crate::journal::quarantine::check_message(&raw.subject, &raw.payload));
                    match checked {
                        Err(refusal @ crate::journal::quarantine::Refusal::Foreign(_)) => {
                            self.quarantine.record(raw.sequence, &raw.subject, raw.at, &raw.payload, &refusal).await;
                            self.live.write().expect("projection lock").skip(raw.sequence);
                        }
                        Err(refusal) => return Stopped::Fatal(refusal.reason().to_string()),
                        Ok(()) => {
                            if let Err(e) = self.live.write().expect("projection lock").fold_message(&raw) {
                                return Stopped::Fatal(e.to_string());
                            }
                        }
                    }
                    unacked = Some(message);
                }
                Ok(Some(Err(e))) => return Stopped::Interrupted(e.to_string()),
                Ok(None) => return Stopped::Interrupted("its messages ended".into()),
                Err(_) => {}
            }
            // Counted from the checkpoint a restart would load, not from this binding.
            let unsaved = self.unsaved();
            let due = saved_at.is_none_or(|at| at.elapsed() >= P::SAVE_INTERVAL);
            if unsaved > 0 && (unsaved >= P::SAVE_EVERY || due) {
                // Unsaved folds stay in the live state, which the next binding resumes from.
                if let Err(e) = save(&self.js, &self.live).await {
                    return Stopped::Interrupted(format!("checkpoint not saved: {e}"));
                }
                if let Some(message) = unacked.take() {
                    let _ = message.ack().await;
                }
                saved_at = Some(Instant::now());
            }
        }
    }
}

/// Folds the whole journal from its first commit and saves the result as the checkpoint.
pub async fn rebuild<P: Projection>(
    js: &Context,
    progress: impl Fn(u64, u64) + Send + Sync,
) -> Result<Checkpointed<P>, ProjectionError> {
    let folded = fold_all::<P>(js, StartAt::Beginning, progress).await?;
    let live = Arc::new(RwLock::new(folded));
    save(js, &live).await?;
    let folded = live.read().expect("projection lock").clone();
    Ok(folded)
}

/// Folds every commit from `start` to the journal's end as of now.
pub async fn fold_all<P: Projection>(
    js: &Context,
    start: StartAt,
    progress: impl Fn(u64, u64) + Send + Sync,
) -> Result<Checkpointed<P>, ProjectionError> {
    let projection = P::NAME;
    let journal = |source| ProjectionError::new(projection, ProjectionFailure::Journal(source));
    let reader = JournalReader::open(js).await.map_err(journal)?;
    if P::SUBJECTS != INSTANCE_EVENTS_ALL {
        let mut read = reader.commits(P::SUBJECTS, start).await.map_err(journal)?;
        let total = read.remaining();
        let mut folded = Checkpointed::<P>::default();
        let mut done = 0;
        while let Some(message) = read.next_raw().await {
            folded
                .fold_message(&message.map_err(journal)?)
                .map_err(|source| ProjectionError::new(projection, ProjectionFailure::Fold(source)))?;
            done += 1;
            if done % 20_000 == 0 {
                progress(done, total);
            }
        }
        progress(done, total);
        return Ok(folded);
    }
    let mut folded = Checkpointed::<P>::default();
    folded.fold_replay(&reader, start, progress).await.map_err(journal)?;
    Ok(folded)
}

impl<P: Projection> Checkpointed<P> {
    /// A copy of the state, for answers computed outside the lock.
    pub fn snapshot(live: &Live<P>) -> Checkpointed<P> {
        live.read().expect("projection lock").clone()
    }
}
