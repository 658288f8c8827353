//! The journal's bytes: the events of one decision as one message body, and back, each in one
//! step (no JSON value in between).
//!
//! A body reads
//! `{"aggregate_type":"instance","aggregate_id":"<id>","events":[{"sequence":3,"type":"Launched","data":{…},"version":1}]}`.
//! Each event carries its 1-based place in its instance's history, its type name, the schema
//! version of its data, and its data: the fields of [`InstanceEvent`], whose serde form is
//! `{"type": …, "data": …}`, so an event is encoded by flattening it into its record and decoded
//! by reading `type` and `data` back as the event. A `metadata` object, which journals before
//! schema 1's single codec could hold, is read and ignored (tgp never wrote anything into it).
//! `docs/decisions/0007-one-commit-codec.md` says why this is the only codec.
//!
//! Decoding is in two steps a reader can tell apart: [`RawCommit::parse`] reads the envelope (is
//! this a commit at all, and whose?), [`RawCommit::events`] the events (can this tgp read them?).
//! Quarantine needs the difference: garbage is skipped, a commit of a newer tgp stops the read.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::events::{INSTANCE_AGGREGATE, InstanceEvent, SCHEMA_VERSION};
use crate::ids::InstanceId;
use crate::limits::quote;

/// One commit as decoded: the instance and its events, each with its sequence in the instance's
/// history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    /// The instance the events belong to.
    pub instance: InstanceId,
    /// The events in order, with consecutive sequences.
    pub events: Vec<(u64, InstanceEvent)>,
}

#[derive(Serialize)]
struct CommitOut<'a> {
    aggregate_type: &'static str,
    aggregate_id: &'a InstanceId,
    events: Vec<EventRecord<'a>>,
}

/// One event in its wire form, `{"sequence":…,"type":…,"data":…,"version":…}`: how a commit
/// holds it, and how `tgp watch --json` prints it.
#[derive(Serialize)]
pub struct EventRecord<'a> {
    sequence: u64,
    #[serde(flatten)]
    event: &'a InstanceEvent,
    version: u32,
}

impl<'a> EventRecord<'a> {
    /// `event` at `sequence` in its instance's history, at the current schema version.
    pub fn new(sequence: u64, event: &'a InstanceEvent) -> Self {
        EventRecord { sequence, event, version: SCHEMA_VERSION }
    }
}

/// The body of one commit: `events` numbered from `first_sequence` on.
pub fn encode_commit(instance: &InstanceId, first_sequence: u64, events: &[InstanceEvent]) -> Vec<u8> {
    let events = events.iter().zip(first_sequence..).map(|(event, sequence)| EventRecord::new(sequence, event));
    let commit = CommitOut { aggregate_type: INSTANCE_AGGREGATE, aggregate_id: instance, events: events.collect() };
    serde_json::to_vec(&commit).expect("instance events always serialize")
}

/// A commit's envelope, its events not yet decoded (their data borrowed from the body).
#[derive(Deserialize)]
pub struct RawCommit<'a> {
    /// The instance the commit says it belongs to (not yet checked against its subject).
    pub aggregate_id: InstanceId,
    #[serde(borrow)]
    events: Vec<RawRecord<'a>>,
}

#[derive(Deserialize)]
struct RawRecord<'a> {
    sequence: u64,
    #[serde(rename = "type", borrow)]
    event_type: Cow<'a, str>,
    version: u32,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// Why a message body is not a commit this tgp can read.
#[derive(Debug, thiserror::Error)]
pub enum CommitDecodeError {
    /// Not a commit at all.
    #[error("not a commit: {0}")]
    NotACommit(#[source] serde_json::Error),
    /// A commit, but one of its events cannot be read.
    #[error(transparent)]
    Event(#[from] EventDecodeError),
}

impl Commit {
    /// The commit `body` holds, its envelope and events both decoded.
    pub fn decode(body: &[u8]) -> Result<Commit, CommitDecodeError> {
        let raw = RawCommit::parse(body).map_err(CommitDecodeError::NotACommit)?;
        let events = raw.events()?;
        Ok(Commit { instance: raw.aggregate_id, events })
    }
}

/// Why a commit's events cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum EventDecodeError {
    /// Written by a newer tgp; upgrade this reader.
    #[error(
        "event {sequence} ({}) has schema version {version}, this tgp reads up to {SCHEMA_VERSION}",
        quote(event_type)
    )]
    UnsupportedVersion {
        /// The event's sequence in its instance's history.
        sequence: u64,
        /// The event type.
        event_type: String,
        /// The version found.
        version: u32,
    },
    /// The type or data does not match any known event.
    #[error("event {sequence}: cannot decode {} v{version}: {source}", quote(event_type))]
    Invalid {
        /// The event's sequence in its instance's history.
        sequence: u64,
        /// The event type.
        event_type: String,
        /// The version found.
        version: u32,
        /// What serde said.
        source: serde_json::Error,
    },
}

impl<'a> RawCommit<'a> {
    /// The envelope of `body`, or serde's reason it is no commit.
    pub fn parse(body: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// How many events the commit holds.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True for a commit without events (which tgp never writes).
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The events with their sequences. A version newer than this crate knows is refused, never
    /// guessed at.
    pub fn events(&self) -> Result<Vec<(u64, InstanceEvent)>, EventDecodeError> {
        // The event's own serde form is `{"type":…,"data":…}`: rebuilt as text around the
        // borrowed data, in one buffer reused for every event.
        let mut text = String::new();
        self.events
            .iter()
            .map(|record| {
                if record.version > SCHEMA_VERSION {
                    return Err(EventDecodeError::UnsupportedVersion {
                        sequence: record.sequence,
                        event_type: record.event_type.to_string(),
                        version: record.version,
                    });
                }
                text.clear();
                text.push_str(r#"{"type":"#);
                text.push_str(&serde_json::to_string(&record.event_type).expect("a string serializes"));
                text.push_str(r#","data":"#);
                text.push_str(record.data.get());
                text.push('}');
                let event = serde_json::from_str(&text).map_err(|source| EventDecodeError::Invalid {
                    sequence: record.sequence,
                    event_type: record.event_type.to_string(),
                    version: record.version,
                    source,
                })?;
                Ok((record.sequence, event))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn requested() -> InstanceEvent {
        InstanceEvent::TerminationRequested { reason: "done".into(), limit: None, at: Utc::now() }
    }

    #[test]
    fn a_commit_round_trips() {
        let id: InstanceId = "job-1".parse().unwrap();
        let events =
            [requested(), InstanceEvent::Terminated { provider_instance_id: Some("m".into()), at: Utc::now() }];
        let body = encode_commit(&id, 4, &events);
        let commit = Commit::decode(&body).unwrap();
        assert_eq!(commit, Commit { instance: id, events: vec![(4, events[0].clone()), (5, events[1].clone())] });
    }

    #[test]
    fn the_body_has_the_fields_of_the_schema_1_wire_form() {
        let id: InstanceId = "job-1".parse().unwrap();
        let event = requested();
        let body: serde_json::Value =
            serde_json::from_slice(&encode_commit(&id, 1, std::slice::from_ref(&event))).unwrap();
        let tagged = serde_json::to_value(&event).unwrap();
        let wanted = serde_json::json!({
            "aggregate_type": "instance",
            "aggregate_id": "job-1",
            "events": [{"sequence": 1, "type": "TerminationRequested", "version": 1, "data": tagged["data"]}],
        });
        assert_eq!(body, wanted);
    }

    #[test]
    fn a_journal_written_before_the_codec_still_reads() {
        let body = br#"{"aggregate_type":"instance","aggregate_id":"a","events":[{"sequence":1,"type":"TerminationRequested","version":1,"data":{"reason":"done","limit":null,"at":"2026-01-01T00:00:00Z"}}],"metadata":{"source":"cli"}}"#;
        let events = RawCommit::parse(body).unwrap().events().unwrap();
        assert!(matches!(&events[..], [(1, InstanceEvent::TerminationRequested { reason, .. })] if reason == "done"));
    }

    #[test]
    fn a_future_version_or_an_unknown_type_is_a_clear_error() {
        let body = |event: &str, version: u32| {
            format!(
                r#"{{"aggregate_id":"a","events":[{{"sequence":2,"type":"{event}","version":{version},"data":{{}}}}]}}"#
            )
        };
        let newer = body("Launched", SCHEMA_VERSION + 1);
        let err = RawCommit::parse(newer.as_bytes()).unwrap().events().unwrap_err();
        assert!(matches!(err, EventDecodeError::UnsupportedVersion { sequence: 2, version: 2, .. }), "{err}");
        let unknown = body("Exploded", 1);
        let err = RawCommit::parse(unknown.as_bytes()).unwrap().events().unwrap_err();
        assert!(matches!(err, EventDecodeError::Invalid { sequence: 2, .. }), "{err}");
    }
}
