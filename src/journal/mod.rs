//! The journal: tgp-actors' [`Journal`] over NATS JetStream.
//!
//! # Layout
//! Stream `TGP_EVENTS` holds one subject per instance, `tgp.events.instance.<id>`. One message is
//! one commit: the events of one decision in one body ([`tgp_events::commit`]), so a crash can never
//! store half a decision. Headers name the aggregate, the first and last per-instance sequence, the event types
//! and the schema version.
//!
//! # Guarantees of [`JetStreamJournal::append`]
//! - **Optimistic concurrency.** Each append states, in `Nats-Expected-Last-Subject-Sequence`, the
//!   stream sequence of the last commit it saw on the instance's subject. A writer that is behind is
//!   refused by the server and gets `PersistenceError::OptimisticLockError`, which a commit reports
//!   as a conflict after reloading the chain.
//! - **Exactly once per write attempt.** Each append carries a fresh `Nats-Msg-Id`; a re-send of the
//!   same append (after a lost ack) reuses it and is stored once. Two racing writers never share an
//!   id, so de-duplication can never hide a conflict.
//! - **Unknown outcomes are settled.** A publish that times out may still be stored (the client
//!   buffers it across a reconnect). The journal re-sends the same message (same id, same expected
//!   sequence) until the server answers: stored, a duplicate of ours, or a conflict; a conflict is
//!   then checked against the subject's last message, which is ours if the first send landed.
//!
//! # Reads
//! Every read goes through [`JournalReader`], which quarantines a message that does not verify
//! ([`signing`]) or decode ([`quarantine`]): a bad message on the bus is skipped and recorded,
//! never acted on, and never stops a start-up.
//!
//! # Signing
//! [`JetStreamJournal::open_signed`] (what the controller uses) signs each commit over its
//! subject, its expected last-subject sequence and its body, and records its public key in the
//! stream's metadata; [`JetStreamJournal::open`] writes unsigned commits, as a journal from before
//! signing holds them.
//!
//! # Caveats
//! - Reads of one instance use Direct Get (the last commit of its subject, then each commit up to
//!   it): no consumer, so a burst of reads costs the server no consumer state; audits and
//!   replays of many subjects use ordered consumers.
//! - Snapshots live in the `tgp_snapshots` key-value bucket, as `{"aggregate": <state>,
//!   "current_sequence": n, "current_snapshot": n / 32}` (the shape cqrs-es's snapshot stores
//!   used, which older journals hold).

pub mod guard;
pub mod layout;
pub mod quarantine;
mod read;
pub mod signing;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::context::{Context, PublishErrorKind};
use async_nats::jetstream::kv::Store;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{DirectGetErrorKind, Stream};
use bytes::Bytes;
use cqrs_es::persist::PersistenceError;
use serde::{Deserialize, Serialize};
use tgp_actors::aggregate::Instance;
use tgp_actors::fence::Fence;
use tgp_actors::journal::{Journal, SNAPSHOT_EVERY, Snapshot};
use tgp_events::commit::encode_commit;
use tgp_events::events::SCHEMA_VERSION;
use tgp_events::subjects::{
    HEADER_AGGREGATE_ID, HEADER_EVENT_TYPES, HEADER_FIRST_SEQUENCE, HEADER_LAST_SEQUENCE, HEADER_LEADER_EPOCH,
    HEADER_MSG_ID, HEADER_SCHEMA_VERSION, INSTANCE_EVENTS_PREFIX,
};
use tgp_events::{InstanceEvent, InstanceId};

pub use quarantine::{Quarantine, Quarantined};
pub use read::{CommitStream, JournalReader, RawMessage, ReplayedCommit, StartAt, published_at};
pub use signing::{JournalKey, SigningError, Verifier};

/// How many times an append whose publish timed out is re-sent before its outcome is reported
/// as unknown.
const RESENDS_ON_TIMEOUT: usize = 5;

/// Where an instance's subject stands: the stream sequence of its last commit and the
/// per-instance sequence of that commit's last event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SubjectHead {
    stream_sequence: u64,
    last_event: u64,
}

/// The JetStream journal. Cheap to clone; clones share the connection and the head cache.
#[derive(Clone)]
pub struct JetStreamJournal {
    /// For publishing appends.
    js: Context,
    /// `TGP_EVENTS`, for reads and Direct Get.
    stream: Stream,
    /// The snapshot bucket.
    snapshots: Store,
    /// Last known head of each subject this process wrote or read, saving a round trip per
    /// append. A stale entry is harmless: the server refuses the append and the head is re-read.
    heads: Arc<Mutex<HashMap<String, SubjectHead>>>,
    /// Where this process's reads put messages that do not decode or verify.
    quarantine: Quarantine,
    /// What reads check signatures against (from the stream's metadata at open).
    verifier: Verifier,
    /// The key appends are signed with; `None` writes unsigned commits (a journal from before
    /// signing, as tests build one), which a signed journal quarantines.
    key: Option<JournalKey>,
    /// The epoch of the leader writing (`crate::leader`), carried by every commit, and the fence
    /// its appends stop at once its lease is lost.
    epoch: Option<(u64, Fence)>,
}

/// A snapshot as stored in the bucket (borrowed to write, owned when read).
#[derive(Serialize, Deserialize)]
struct StoredSnapshot<'a> {
    aggregate: Cow<'a, Instance>,
    current_sequence: usize,
    current_snapshot: usize,
}

fn connection_error(e: impl std::error::Error + Send + Sync + 'static) -> PersistenceError {
    PersistenceError::ConnectionError(Box::new(e))
}

fn unknown(message: String) -> PersistenceError {
    PersistenceError::UnknownError(message.into())
}

impl JetStreamJournal {
    /// Opens the journal; the streams and bucket must exist ([`layout::ensure`] creates them).
    pub async fn open(js: Context) -> Result<Self, PersistenceError> {
        let stream = js.get_stream(tgp_events::subjects::EVENTS_STREAM).await.map_err(connection_error)?;
        let snapshots = js.get_key_value(tgp_events::subjects::SNAPSHOTS_BUCKET).await.map_err(connection_error)?;
        let quarantine = Quarantine::open(&js).await;
        let verifier = Verifier::from_metadata(&stream.cached_info().config.metadata).map_err(connection_error)?;
        Ok(JetStreamJournal {
            js,
            stream,
            snapshots,
            heads: Arc::default(),
            quarantine,
            verifier,
            key: None,
            epoch: None,
        })
    }

    /// Opens the journal for tgp itself: `key` is recorded in the stream's metadata
    /// ([`signing::enable`]), every append is signed with it, and reads verify.
    pub async fn open_signed(js: Context, key: JournalKey) -> Result<Self, PersistenceError> {
        signing::enable(&js, &key).await.map_err(connection_error)?;
        let quarantine = Quarantine::open(&js).await.announcing(js.clone(), key.clone());
        let journal = Self::open(js).await?;
        Ok(JetStreamJournal { key: Some(key), quarantine, ..journal })
    }

    /// This journal, writing as the leader of `epoch`: each commit says so in `Tgp-Leader-Epoch`,
    /// and no append is sent once `fence` is closed.
    pub fn leading(self, epoch: u64, fence: Fence) -> Self {
        JetStreamJournal { epoch: Some((epoch, fence)), ..self }
    }

    /// A reader of the whole journal, for replays and `tgp watch`; it shares this journal's
    /// quarantine and verifier.
    pub fn reader(&self) -> JournalReader {
        JournalReader::new(self.stream.clone(), self.quarantine.clone(), self.verifier.clone())
    }

    fn subject(aggregate_id: &str) -> String {
        format!("{INSTANCE_EVENTS_PREFIX}.{aggregate_id}")
    }

    /// The subject's last commit, read from the server: its stream sequence, last event sequence
    /// and message id.
    async fn read_head(&self, subject: &str) -> Result<Option<(SubjectHead, String)>, PersistenceError> {
        match self.stream.direct_get_last_for_subject(subject).await {
            Ok(msg) => {
                // The server's last message decides the expected sequence of the next append, but
                // only a message that verifies says where the history stands: after a forged or
                // unsigned message, the last commit that verifies does.
                let last_event = if self.verifier.check(msg.sequence, subject, Some(&msg.headers), &msg.payload).is_ok()
                {
                    msg.headers
                        .get(HEADER_LAST_SEQUENCE)
                        .and_then(|v| v.as_str().parse().ok())
                        .ok_or_else(|| unknown(format!("{subject}: last commit lacks {HEADER_LAST_SEQUENCE}")))?
                } else {
                    let commits = self.reader().subject_commits_through(subject, msg.sequence).await?;
                    commits.last().and_then(|(_, c)| c.events.last()).map_or(0, |(sequence, _)| *sequence)
                };
                let msg_id = msg.headers.get(HEADER_MSG_ID).map(|v| v.as_str().to_string()).unwrap_or_default();
                Ok(Some((SubjectHead { stream_sequence: msg.sequence, last_event }, msg_id)))
            }
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(connection_error(e)),
        }
    }

    async fn head(&self, subject: &str) -> Result<SubjectHead, PersistenceError> {
        if let Some(head) = self.heads.lock().expect("head cache").get(subject) {
            return Ok(*head);
        }
        let head = self.read_head(subject).await?.map_or(SubjectHead { stream_sequence: 0, last_event: 0 }, |(h, _)| h);
        self.remember(subject, head);
        Ok(head)
    }

    fn remember(&self, subject: &str, head: SubjectHead) {
        self.heads.lock().expect("head cache").insert(subject.to_string(), head);
    }

    fn forget(&self, subject: &str) {
        self.heads.lock().expect("head cache").remove(subject);
    }

    /// Appends one commit: `events`, numbered from `first` on. See the module docs for the
    /// guarantees.
    pub async fn append(
        &self,
        instance: &InstanceId,
        first: usize,
        events: &[InstanceEvent],
    ) -> Result<(), PersistenceError> {
        if events.is_empty() {
            return Err(unknown("empty commit".into()));
        }
        if let Some((epoch, fence)) = &self.epoch
            && !fence.is_open()
        {
            return Err(unknown(format!("not appended: the lease of epoch {epoch} is lost, another controller leads")));
        }
        let last = first + events.len() - 1;
        let subject = Self::subject(instance.as_str());
        let head = self.head(&subject).await?;
        if head.last_event + 1 != first as u64 {
            // Our caller is behind the journal (or the cache is): either way, a conflict.
            self.forget(&subject);
            return Err(PersistenceError::OptimisticLockError);
        }
        let body = Bytes::from(encode_commit(instance, first as u64, events));
        let types: Vec<&str> = events.iter().map(InstanceEvent::type_name).collect();
        let msg_id = uuid::Uuid::new_v4().simple().to_string();
        let mut signature = self
            .key
            .as_ref()
            .map_or_else(async_nats::HeaderMap::new, |key| key.headers(&subject, Some(head.stream_sequence), &body));
        if let Some((epoch, _)) = &self.epoch {
            signature.insert(HEADER_LEADER_EPOCH, epoch.to_string().as_str());
        }
        let message = || {
            PublishMessage::build()
                .headers(signature.clone())
                .payload(body.clone())
                .message_id(&msg_id)
                .expected_last_subject_sequence(head.stream_sequence)
                .header(HEADER_AGGREGATE_ID, instance.as_str())
                .header(HEADER_FIRST_SEQUENCE, first.to_string().as_str())
                .header(HEADER_LAST_SEQUENCE, last.to_string().as_str())
                .header(HEADER_EVENT_TYPES, types.join(",").as_str())
                .header(HEADER_SCHEMA_VERSION, SCHEMA_VERSION.to_string().as_str())
        };
        let mut timeouts = 0;
        loop {
            let sent = match self.js.send_publish(subject.clone(), message()).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match sent {
                Ok(ack) => {
                    if ack.duplicate && !self.is_ours(&subject, &msg_id).await? {
                        self.forget(&subject);
                        return Err(PersistenceError::OptimisticLockError);
                    }
                    self.remember(&subject, SubjectHead { stream_sequence: ack.sequence, last_event: last as u64 });
                    return Ok(());
                }
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    self.forget(&subject);
                    return if self.is_ours(&subject, &msg_id).await? {
                        Ok(())
                    } else {
                        Err(PersistenceError::OptimisticLockError)
                    };
                }
                Err(e) if e.kind() == PublishErrorKind::TimedOut && timeouts < RESENDS_ON_TIMEOUT => {
                    timeouts += 1;
                    tracing::warn!(%subject, attempt = timeouts, "journal append timed out; re-sending the same message");
                    tokio::time::sleep(Duration::from_millis(200 * timeouts as u64)).await;
                }
                Err(e) => {
                    self.forget(&subject);
                    return Err(connection_error(e));
                }
            }
        }
    }

    /// True when the subject's last commit is the one with `msg_id` (our append landed).
    async fn is_ours(&self, subject: &str, msg_id: &str) -> Result<bool, PersistenceError> {
        Ok(match self.read_head(subject).await? {
            Some((head, id)) if id == msg_id => {
                self.remember(subject, head);
                true
            }
            _ => false,
        })
    }
}

impl Journal for JetStreamJournal {
    async fn append(
        &self,
        instance: &InstanceId,
        first: usize,
        events: &[InstanceEvent],
    ) -> Result<(), PersistenceError> {
        JetStreamJournal::append(self, instance, first, events).await
    }

    async fn events_after(
        &self,
        instance: &InstanceId,
        after: usize,
    ) -> Result<Vec<(usize, InstanceEvent)>, PersistenceError> {
        let subject = Self::subject(instance.as_str());
        // The head first: an empty subject (a new instance's), or one already read up to
        // `after`, needs no further read; else each commit up to the head, by Direct Get.
        let head = match self.read_head(&subject).await? {
            None => {
                self.remember(&subject, SubjectHead { stream_sequence: 0, last_event: 0 });
                return Ok(Vec::new());
            }
            Some((head, _)) if head.last_event as usize <= after => {
                self.remember(&subject, head);
                return Ok(Vec::new());
            }
            Some((head, _)) => head,
        };
        let commits = self.reader().subject_commits_through(&subject, head.stream_sequence).await?;
        let mut events = Vec::new();
        for (stream_sequence, commit) in commits {
            if let Some((last, _)) = commit.events.last() {
                self.remember(&subject, SubjectHead { stream_sequence, last_event: *last });
            }
            events.extend(
                commit
                    .events
                    .into_iter()
                    .map(|(sequence, event)| (sequence as usize, event))
                    .filter(|(s, _)| *s > after),
            );
        }
        Ok(events)
    }

    async fn snapshot(&self, instance: &InstanceId) -> Result<Option<Snapshot>, PersistenceError> {
        let Some(bytes) = self.snapshots.get(instance.as_str()).await.map_err(connection_error)? else {
            return Ok(None);
        };
        let stored: StoredSnapshot = serde_json::from_slice(&bytes)?;
        Ok(Some(Snapshot { instance: stored.aggregate.into_owned(), sequence: stored.current_sequence }))
    }

    async fn save_snapshot(&self, instance: &InstanceId, snapshot: &Snapshot) -> Result<(), PersistenceError> {
        let stored = StoredSnapshot {
            aggregate: Cow::Borrowed(&snapshot.instance),
            current_sequence: snapshot.sequence,
            current_snapshot: snapshot.sequence / SNAPSHOT_EVERY,
        };
        self.snapshots.put(instance.as_str(), serde_json::to_vec(&stored)?.into()).await.map_err(connection_error)?;
        Ok(())
    }

    async fn replay_all(
        &self,
        mut each: impl FnMut(InstanceId, Vec<(usize, InstanceEvent)>) + Send,
    ) -> Result<(), PersistenceError> {
        self.reader().replay(StartAt::Beginning, |commit| each(commit.instance, commit.events)).await
    }
}
