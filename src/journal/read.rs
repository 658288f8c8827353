//! Reading the journal: one instance's commits, or every commit from a point, in stream order.
//! One instance's commits are read with Direct Get ([`JournalReader::subject_commits_through`]);
//! reads of many subjects use ordered consumers (one round trip per batch, not per message). A
//! finite read stops at the message count pending when it started, so it never waits on an idle
//! subject.
//! Every read checks every message's signature ([`super::signing`]) and shape, and quarantines one
//! that does not verify or decode ([`super::quarantine`]): forgeries and garbage are skipped, never handed over, never an error; a commit of an
//! instance that this tgp cannot read fails the read, as an incomplete history must.

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::{Ordered, OrderedConfig};
use async_nats::jetstream::stream::Stream;
use chrono::{DateTime, Utc};
use cqrs_es::persist::PersistenceError;
use futures::StreamExt;
use tgp_events::InstanceId;
use tgp_events::commit::Commit;
use tgp_events::events::InstanceEvent;

use super::quarantine::{self, Quarantine, Refusal};
use super::signing::Verifier;

/// Where a read of the journal starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// The first commit.
    Beginning,
    /// This stream sequence.
    Sequence(u64),
    /// The first commit stored at or after this time (the server seeks; no scan).
    Time(DateTime<Utc>),
    /// Only commits stored from now on.
    New,
}

impl StartAt {
    fn policy(self) -> Result<DeliverPolicy, PersistenceError> {
        Ok(match self {
            StartAt::Beginning => DeliverPolicy::All,
            StartAt::Sequence(start_sequence) => DeliverPolicy::ByStartSequence { start_sequence },
            StartAt::Time(t) => DeliverPolicy::ByStartTime {
                start_time: time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(
                    t.timestamp_nanos_opt().unwrap_or_default(),
                ))
                .map_err(|e| PersistenceError::UnknownError(Box::new(e)))?,
            },
            StartAt::New => DeliverPolicy::New,
        })
    }
}

/// Reads commits from `TGP_EVENTS`.
#[derive(Clone)]
pub struct JournalReader {
    stream: Stream,
    /// Where messages that do not decode or verify go.
    quarantine: Quarantine,
    /// What signatures are checked against: the stream metadata's keys, or pinned ones.
    verifier: Verifier,
}

/// One commit as read: stream sequence, time stored, body.
pub type ReadCommit = (u64, DateTime<Utc>, Commit);

/// A read in progress.
pub struct CommitStream {
    /// `None` when the read is finite and already complete.
    messages: Option<Ordered>,
    /// Messages still to read in a finite read; `None` follows forever.
    remaining: Option<u64>,
    /// Where messages that do not decode or verify go.
    quarantine: Quarantine,
    /// What signatures are checked against.
    verifier: Verifier,
}

fn decode_error(what: String) -> PersistenceError {
    PersistenceError::DeserializationError(what.into())
}

impl CommitStream {
    /// Commits still to read in a finite read (0 for a follow).
    pub fn remaining(&self) -> u64 {
        self.remaining.unwrap_or(0)
    }

    /// The next commit that verifies and decodes (others are quarantined), or `None` at the end
    /// of a finite read.
    pub async fn next(&mut self) -> Option<Result<ReadCommit, PersistenceError>> {
        self.next_checked(|message, sequence, at| {
            quarantine::check_commit(&message.subject, &message.payload).map(|commit| (sequence, at, commit))
        })
        .await
    }

    /// The next message that verifies and decodes (others are quarantined), undecoded, for
    /// readers of more than instance commits: an instance commit, a provider or controller event.
    pub async fn next_raw(&mut self) -> Option<Result<RawMessage, PersistenceError>> {
        self.next_checked(|message, sequence, at| {
            quarantine::check_message(&message.subject, &message.payload).map(|()| RawMessage {
                sequence,
                at,
                subject: message.subject.to_string(),
                payload: message.payload.clone(),
            })
        })
        .await
    }

    /// The next message that verifies and passes `check`, as `check` makes it; every other one is
    /// quarantined and skipped (or ends the read, when it is a commit this tgp cannot read).
    async fn next_checked<T>(
        &mut self,
        check: impl Fn(&async_nats::jetstream::Message, u64, DateTime<Utc>) -> Result<T, Refusal>,
    ) -> Option<Result<T, PersistenceError>> {
        loop {
            let message = match self.next_message().await? {
                Ok(m) => m,
                Err(e) => return Some(Err(e)),
            };
            let (sequence, at) = match message_info(&message) {
                Ok(info) => info,
                Err(e) => return Some(Err(e)),
            };
            let checked = verified(&self.verifier, sequence, &message).and_then(|()| check(&message, sequence, at));
            match checked {
                Ok(item) => return Some(Ok(item)),
                Err(refusal) => {
                    if let Err(e) =
                        refuse(&self.quarantine, sequence, (&message.subject, &message.payload), at, refusal).await
                    {
                        return Some(Err(e));
                    }
                }
            }
        }
    }

    async fn next_message(&mut self) -> Option<Result<async_nats::jetstream::Message, PersistenceError>> {
        if self.remaining == Some(0) {
            return None;
        }
        let message = match self.messages.as_mut()?.next().await? {
            Ok(m) => m,
            Err(e) => return Some(Err(PersistenceError::ConnectionError(Box::new(e)))),
        };
        if let Some(n) = self.remaining.as_mut() {
            *n -= 1;
        }
        Some(Ok(message))
    }
}

/// How often a chain read asks again when the replica answering lags behind the head it read.
const REPLICA_CATCH_UP_TRIES: u32 = 5;
/// How long it waits between those tries.
const REPLICA_CATCH_UP_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// A chain read that could not reach the head it started from: an error, since a history with
/// commits missing must not pass for the whole one.
fn incomplete(subject: &str, from: u64, through: u64) -> PersistenceError {
    PersistenceError::ConnectionError(
        format!("{subject}: no commit found from stream sequence {from} up to its last, {through}; a replica lags or the stream lost messages")
            .into(),
    )
}

/// One journal message, undecoded.
pub struct RawMessage {
    /// Stream sequence.
    pub sequence: u64,
    /// When it was stored.
    pub at: DateTime<Utc>,
    /// Its subject.
    pub subject: String,
    /// Its body.
    pub payload: bytes::Bytes,
}

/// When the server stored a message, as a chrono time.
pub fn published_at(info: &async_nats::jetstream::message::Info<'_>) -> DateTime<Utc> {
    stored_at(info.published)
}

/// A server's timestamp (a consumer's `published`, a Direct Get's `time`) as a chrono time.
fn stored_at(time: time::OffsetDateTime) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(i64::try_from(time.unix_timestamp_nanos()).unwrap_or_default())
}

/// Quarantines a refused message; an error when the read must stop there (a commit of its own
/// instance that this tgp cannot read).
async fn refuse(
    quarantine: &Quarantine,
    sequence: u64,
    (subject, payload): (&str, &[u8]),
    at: DateTime<Utc>,
    refusal: Refusal,
) -> Result<(), PersistenceError> {
    quarantine.record(sequence, subject, at, payload, &refusal).await;
    match refusal {
        Refusal::Foreign(_) => Ok(()),
        Refusal::Unreadable { instance, reason } => {
            Err(decode_error(Refusal::unreadable_error(&instance, sequence, &reason)))
        }
    }
}

/// `Ok` when the message need not be signed or its signature verifies; else a refusal that
/// skips it (whoever wrote it, it is not tgp's).
fn verified(verifier: &Verifier, sequence: u64, message: &async_nats::jetstream::Message) -> Result<(), Refusal> {
    verifier.check(sequence, &message.subject, message.headers.as_ref(), &message.payload).map_err(Refusal::Foreign)
}

/// The commit a message holds, once its signature verifies and its shape is a commit's.
fn verified_commit(
    verifier: &Verifier,
    sequence: u64,
    subject: &str,
    headers: Option<&async_nats::HeaderMap>,
    payload: &[u8],
) -> Result<Commit, Refusal> {
    verifier.check(sequence, subject, headers, payload).map_err(Refusal::Foreign)?;
    quarantine::check_commit(subject, payload)
}

/// A message's stream sequence and the time it was stored.
fn message_info(message: &async_nats::jetstream::Message) -> Result<(u64, DateTime<Utc>), PersistenceError> {
    let info = message.info().map_err(|e| decode_error(format!("message without JetStream info: {e}")))?;
    Ok((info.stream_sequence, published_at(&info)))
}

impl JournalReader {
    pub(crate) fn new(stream: Stream, quarantine: Quarantine, verifier: Verifier) -> Self {
        JournalReader { stream, quarantine, verifier }
    }

    /// A reader for a program that only reads (`tgp watch`, audits): needs only `TGP_EVENTS`
    /// (and records what it quarantines in the quarantine bucket when that exists).
    pub async fn open(js: &async_nats::jetstream::Context) -> Result<Self, PersistenceError> {
        let stream = js
            .get_stream(tgp_events::subjects::EVENTS_STREAM)
            .await
            .map_err(|e| PersistenceError::ConnectionError(Box::new(e)))?;
        let verifier = Verifier::from_metadata(&stream.cached_info().config.metadata)
            .map_err(|e| PersistenceError::UnknownError(Box::new(e)))?;
        Ok(JournalReader { stream, quarantine: Quarantine::open(js).await, verifier })
    }

    /// This reader, verifying against `keys` instead of the keys in the stream's metadata (an
    /// auditor who does not trust whoever can edit the stream).
    pub fn pinned(self, keys: &[ed25519_dalek::VerifyingKey]) -> Self {
        JournalReader { verifier: self.verifier.pinned(keys), ..self }
    }

    /// What this reader (and its clones) have quarantined so far.
    pub fn quarantine(&self) -> &Quarantine {
        &self.quarantine
    }

    async fn read(&self, filter: &str, start: StartAt, follow: bool) -> Result<CommitStream, PersistenceError> {
        let consumer = self
            .stream
            .create_consumer(OrderedConfig {
                filter_subject: filter.to_string(),
                deliver_policy: start.policy()?,
                ..Default::default()
            })
            .await
            .map_err(|e| PersistenceError::ConnectionError(Box::new(e)))?;
        let pending = consumer.cached_info().num_pending;
        let (quarantine, verifier) = (self.quarantine.clone(), self.verifier.clone());
        if !follow && pending == 0 {
            return Ok(CommitStream { messages: None, remaining: Some(0), quarantine, verifier });
        }
        let messages = consumer.messages().await.map_err(|e| PersistenceError::ConnectionError(Box::new(e)))?;
        Ok(CommitStream { messages: Some(messages), remaining: (!follow).then_some(pending), quarantine, verifier })
    }

    /// Every commit on subjects matching `filter` from `start` up to the moment the read began.
    pub async fn commits(&self, filter: &str, start: StartAt) -> Result<CommitStream, PersistenceError> {
        self.read(filter, start, false).await
    }

    /// Commits on subjects matching `filter` from `start`, then new ones as they are stored.
    pub async fn follow(&self, filter: &str, start: StartAt) -> Result<CommitStream, PersistenceError> {
        self.read(filter, start, true).await
    }

    /// The commits of one subject up to stream sequence `through` (its last commit, as a Direct
    /// Get of its head said), each read with Direct Get: one request per commit, and no consumer.
    /// A burst of chain reads (a takeover's lookups, a list whose actors are busy) would otherwise
    /// make one ephemeral consumer each, which on a cluster is a proposal to the meta leader, and
    /// counts against the stream's consumer limit. Any replica answers (`allow_direct`).
    pub async fn subject_commits_through(
        &self,
        subject: &str,
        through: u64,
    ) -> Result<Vec<(u64, Commit)>, PersistenceError> {
        use async_nats::jetstream::stream::DirectGetErrorKind;
        let mut out = Vec::new();
        let (mut from, mut behind) = (1, 0);
        while from <= through {
            let message = match self.stream.direct_get_next_for_subject(subject, Some(from)).await {
                Ok(message) if message.sequence <= through => message,
                // The replica that answered has not stored the head yet (a Direct Get may be
                // served by any replica): asked again, never taken for the whole history.
                Ok(_) | Err(_) if behind < REPLICA_CATCH_UP_TRIES => {
                    behind += 1;
                    tokio::time::sleep(REPLICA_CATCH_UP_WAIT).await;
                    continue;
                }
                Ok(_) => return Err(incomplete(subject, from, through)),
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => return Err(incomplete(subject, from, through)),
                Err(e) => return Err(PersistenceError::ConnectionError(Box::new(e))),
            };
            let sequence = message.sequence;
            from = sequence + 1;
            match verified_commit(&self.verifier, sequence, subject, Some(&message.headers), &message.payload) {
                Ok(commit) => out.push((sequence, commit)),
                Err(refusal) => {
                    let at = stored_at(message.time);
                    refuse(&self.quarantine, sequence, (subject, &message.payload), at, refusal).await?
                }
            }
        }
        Ok(out)
    }

    /// All commits of one subject with their stream sequences.
    pub async fn subject_commits(&self, subject: &str) -> Result<Vec<(u64, Commit)>, PersistenceError> {
        let mut read = self.commits(subject, StartAt::Beginning).await?;
        let mut out = Vec::new();
        while let Some(next) = read.next().await {
            let (sequence, _, commit) = next?;
            out.push((sequence, commit));
        }
        Ok(out)
    }
}

/// One commit as a replay hands it over: decoded events, with where it is in the journal.
pub struct ReplayedCommit {
    /// Its stream sequence.
    pub sequence: u64,
    /// When it was stored.
    pub at: DateTime<Utc>,
    /// The instance.
    pub instance: InstanceId,
    /// Its events with their per-instance sequences.
    pub events: Vec<(usize, InstanceEvent)>,
    /// Commits handed over so far in this replay, and in all.
    pub progress: (u64, u64),
}

impl JournalReader {
    /// Every instance commit from `start` to the journal's end as of now, in order, decoded
    /// straight into events (no intermediate JSON values: this is the fast path of start-up
    /// rebuilds, projection rebuilds and audits).
    pub async fn replay(
        &self,
        start: StartAt,
        mut each: impl FnMut(ReplayedCommit) + Send,
    ) -> Result<(), PersistenceError> {
        let mut read = self.read(tgp_events::subjects::INSTANCE_EVENTS_ALL, start, false).await?;
        let total = read.remaining();
        let mut done = 0;
        while read.remaining != Some(0) {
            let Some(messages) = read.messages.as_mut() else {
                break;
            };
            let Some(message) = messages.next().await else {
                break;
            };
            let message = message.map_err(|e| PersistenceError::ConnectionError(Box::new(e)))?;
            if let Some(n) = read.remaining.as_mut() {
                *n -= 1;
            }
            let (sequence, at) = message_info(&message)?;
            done += 1;
            let decoded =
                verified_commit(&self.verifier, sequence, &message.subject, message.headers.as_ref(), &message.payload);
            match decoded {
                Ok(Commit { instance, events }) => {
                    let events = events.into_iter().map(|(s, event)| (s as usize, event)).collect();
                    each(ReplayedCommit { sequence, at, instance, events, progress: (done, total) });
                }
                Err(refusal) => {
                    refuse(&self.quarantine, sequence, (&message.subject, &message.payload), at, refusal).await?
                }
            }
        }
        Ok(())
    }
}
