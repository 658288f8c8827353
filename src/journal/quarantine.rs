//! Quarantine: the journal's defence against a message it cannot read.
//!
//! The bus is not trusted: anyone who may publish on `tgp.events.>` can store any bytes there, and
//! the stream denies delete, so a bad message stays for good. Every read of the journal (start-up
//! rebuild, instance loads, projections' rebuilds, `tgp audit`, `tgp watch`, `tgp journal check`)
//! therefore checks each message and, when it does not decode, **quarantines** it:
//! - it is skipped: never folded, never acted on, never an error that stops the read;
//! - it is recorded in the key-value bucket [`QUARANTINE_BUCKET`] under its stream sequence, with
//!   its subject, size, first bytes and why (the first record of a message is kept);
//! - it is counted in the metric `tgp_journal_quarantined_total` (each time a read skips one) and
//!   logged at error level.
//!
//! # What a message must be, and what happens when it is not ([`Refusal`])
//! On `tgp.events.instance.<id>`: a commit whose `aggregate_id` is `<id>`, with at least one
//! event, every event of a schema version this tgp reads and of a known shape. On
//! `tgp.events.provider.<name>`: a provider event record. Nothing else belongs on `tgp.events.>`.
//! - A message that is no commit of its subject's instance at all (not JSON, another shape,
//!   another instance's id, no events) is [`Refusal::Foreign`]: quarantined and skipped, and the
//!   read goes on. This is what garbage on the bus is.
//! - A commit of its subject's instance whose events this tgp cannot read (a newer schema version,
//!   an unknown event) is [`Refusal::Unreadable`]: quarantined, and the read fails with "upgrade
//!   tgp", as it did before quarantine existed. Without that commit the instance's history is
//!   incomplete, and acting on an incomplete history (relaunching a chain that ended, missing a
//!   machine it launched) is how money and machines are lost.
//!
//! # Caveats
//! - The shape checks here come after the signature check ([`super::signing::Verifier`]): a
//!   message that is unsigned (from the journal's `signed_from` on), signed by an unknown key or
//!   whose signature does not verify is [`Refusal::Foreign`] whatever it holds, so only a commit
//!   tgp signed can be [`Refusal::Unreadable`] and stop a start-up. Messages stored before signing
//!   was switched on are checked for shape only.
//! - The controller's quarantine announces each message it records first in a
//!   `JournalMessageQuarantined` event on `tgp.events.controller` ([`Quarantine::announcing`]).
//! - A reader without write access to the bucket (a read-only credential) still skips and logs;
//!   its records stay in memory ([`Quarantine::found`]).

use std::sync::{Arc, Mutex};

use async_nats::jetstream::Context;
use async_nats::jetstream::kv::{self, Store};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tgp_events::commit::{Commit, RawCommit};
use tgp_events::controller_events::{ControllerEvent, ControllerRecord};
use tgp_events::limits::{QUOTE_BYTES, bounded, quote};
use tgp_events::provider_events::ProviderRecord;
use tgp_events::subjects::{CONTROLLER_EVENTS, INSTANCE_EVENTS_PREFIX, PROVIDER_EVENTS_PREFIX, QUARANTINE_BUCKET};

/// One quarantined message, as the bucket keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantined {
    /// Its stream sequence in `TGP_EVENTS` (also the bucket key).
    pub sequence: u64,
    /// The subject it was stored on.
    pub subject: String,
    /// Why it was refused.
    pub reason: String,
    /// When the server stored it.
    pub stored_at: DateTime<Utc>,
    /// When a read first refused it.
    pub found_at: DateTime<Utc>,
    /// Its body's size in bytes.
    pub bytes: usize,
    /// Its first bytes, quoted (at most 200), so an operator can tell garbage from a forgery.
    pub head: String,
}

/// Why the quarantine bucket could not be read.
#[derive(Debug, thiserror::Error)]
#[error("quarantine bucket {QUARANTINE_BUCKET}: {0}")]
pub struct QuarantineError(String);

/// Where a reader puts what it refuses. Cheap to clone; clones share what they found.
#[derive(Clone)]
pub struct Quarantine {
    /// The bucket, when it exists (the controller creates it; a reader never does).
    bucket: Option<Store>,
    /// What this reader refused, in the order found.
    found: Arc<Mutex<Vec<Quarantined>>>,
    /// The controller's quarantine announces each message it records first in a signed health
    /// event on `tgp.events.controller`; readers (audit, watch) do not.
    announce: Option<(Context, super::JournalKey)>,
}

impl Quarantine {
    /// The quarantine of this server: its bucket when the controller has created it, else
    /// records in memory only.
    pub async fn open(js: &Context) -> Self {
        Quarantine { bucket: js.get_key_value(QUARANTINE_BUCKET).await.ok(), found: Arc::default(), announce: None }
    }

    /// This quarantine, announcing each message it records first in a `JournalMessageQuarantined`
    /// event on `tgp.events.controller`, signed with `key`.
    pub fn announcing(self, js: Context, key: super::JournalKey) -> Self {
        Quarantine { announce: Some((js, key)), ..self }
    }

    async fn announce(&self, entry: &Quarantined) {
        let Some((js, key)) = &self.announce else {
            return;
        };
        let event = ControllerEvent::JournalMessageQuarantined {
            sequence: entry.sequence,
            subject: entry.subject.clone(),
            reason: entry.reason.clone(),
        };
        crate::controller_events::publish(js, key, event).await;
    }

    /// Quarantines a message loudly: logs it, counts it, and records it in the bucket.
    pub(crate) async fn record(
        &self,
        sequence: u64,
        subject: &str,
        stored_at: DateTime<Utc>,
        payload: &[u8],
        refusal: &Refusal,
    ) {
        let entry = Quarantined {
            sequence,
            subject: subject.to_string(),
            reason: bounded(refusal.reason().to_string()),
            stored_at,
            found_at: Utc::now(),
            bytes: payload.len(),
            head: quote(&String::from_utf8_lossy(&payload[..payload.len().min(QUOTE_BYTES)])),
        };
        metrics::counter!("tgp_journal_quarantined_total").increment(1);
        tracing::error!(
            sequence,
            %subject,
            reason = %entry.reason,
            "journal message quarantined: not acted on (`tgp journal check` lists it)"
        );
        // Recorded before (by tgp, or an earlier read): nothing to write. A read-only reader
        // (client, auditor) would otherwise wait out a refused write for each message.
        let unrecorded = match &self.bucket {
            Some(bucket) => !matches!(bucket.entry(sequence.to_string()).await, Ok(Some(_))),
            None => false,
        };
        if let (Some(bucket), true) = (&self.bucket, unrecorded) {
            let body = serde_json::to_vec(&entry).expect("a quarantine record serializes");
            match bucket.create(sequence.to_string(), body.into()).await {
                Ok(_) => self.announce(&entry).await,
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(e) => {
                    tracing::error!(sequence, error = %e, "quarantined message NOT recorded in {QUARANTINE_BUCKET}")
                }
            }
        }
        self.found.lock().expect("quarantine list").push(entry);
    }

    /// Messages this reader has skipped so far.
    pub fn count(&self) -> u64 {
        self.found.lock().expect("quarantine list").len() as u64
    }

    /// What this reader has skipped so far.
    pub fn found(&self) -> Vec<Quarantined> {
        self.found.lock().expect("quarantine list").clone()
    }

    /// Every message recorded in the bucket, by stream sequence (none when it does not exist).
    pub async fn recorded(&self) -> Result<Vec<Quarantined>, QuarantineError> {
        let Some(bucket) = &self.bucket else {
            return Ok(Vec::new());
        };
        let err = |e: &dyn std::fmt::Display| QuarantineError(e.to_string());
        let mut keys = bucket.keys().await.map_err(|e| err(&e))?;
        let mut all = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| err(&e))?;
            if let Some(body) = bucket.get(&key).await.map_err(|e| err(&e))? {
                all.push(serde_json::from_slice::<Quarantined>(&body).map_err(|e| err(&e))?);
            }
        }
        all.sort_by_key(|q| q.sequence);
        Ok(all)
    }
}

/// Creates the bucket, with `replicas` replicas, when it does not exist (the controller does, at
/// start-up).
pub async fn ensure_bucket(js: &Context, replicas: super::layout::Replicas) -> Result<(), String> {
    if js.get_key_value(QUARANTINE_BUCKET).await.is_ok() {
        return Ok(());
    }
    js.create_key_value(kv::Config {
        bucket: QUARANTINE_BUCKET.into(),
        description: "journal messages tgp could not read and skipped, by stream sequence".into(),
        history: 1,
        storage: async_nats::jetstream::stream::StorageType::File,
        num_replicas: replicas.get(),
        ..Default::default()
    })
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// Why a message was quarantined, and what that means for the read that found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not a commit of the subject's instance at all: skipped, the read goes on.
    Foreign(String),
    /// A commit of the subject's instance whose events this tgp cannot read: the read fails.
    Unreadable {
        /// The instance whose history it belongs to.
        instance: String,
        /// Why its events cannot be read.
        reason: String,
    },
}

impl Refusal {
    /// Why, for the quarantine record.
    pub fn reason(&self) -> &str {
        match self {
            Refusal::Foreign(reason) | Refusal::Unreadable { reason, .. } => reason,
        }
    }

    /// The error a read of an [`Refusal::Unreadable`] commit fails with.
    pub fn unreadable_error(instance: &str, sequence: u64, reason: &str) -> String {
        format!(
            "instance {instance}'s commit at stream sequence {sequence} cannot be read by this tgp: {reason}; \
             upgrade tgp (`tgp journal check` lists it)"
        )
    }
}

/// The instance id a subject names, when it is an instance subject.
fn instance_of(subject: &str) -> Option<&str> {
    subject.strip_prefix(INSTANCE_EVENTS_PREFIX)?.strip_prefix('.')
}

/// A commit that is what an instance subject must hold, or why not.
pub fn check_commit(subject: &str, payload: &[u8]) -> Result<Commit, Refusal> {
    let Some(id) = instance_of(subject) else {
        return Err(Refusal::Foreign(format!("{subject} is not an instance subject ({INSTANCE_EVENTS_PREFIX}.<id>)")));
    };
    let raw = RawCommit::parse(payload).map_err(|e| Refusal::Foreign(format!("not a commit: {e}")))?;
    if raw.aggregate_id.as_str() != id {
        return Err(Refusal::Foreign(format!(
            "the commit names instance {} but is stored on instance {id}'s subject",
            quote(raw.aggregate_id.as_str())
        )));
    }
    if raw.is_empty() {
        return Err(Refusal::Foreign("the commit holds no events".into()));
    }
    let events = raw.events().map_err(|e| Refusal::Unreadable { instance: id.to_string(), reason: e.to_string() })?;
    Ok(Commit { instance: raw.aggregate_id, events })
}

/// Checks any message on `tgp.events.>`: an instance commit or a provider event record.
pub fn check_message(subject: &str, payload: &[u8]) -> Result<(), Refusal> {
    if instance_of(subject).is_some() {
        return check_commit(subject, payload).map(|_| ());
    }
    if subject.strip_prefix(PROVIDER_EVENTS_PREFIX).is_some_and(|rest| rest.starts_with('.')) {
        return serde_json::from_slice::<ProviderRecord>(payload)
            .map(|_| ())
            .map_err(|e| Refusal::Foreign(format!("not a provider event: {e}")));
    }
    if subject == CONTROLLER_EVENTS {
        return serde_json::from_slice::<ControllerRecord>(payload)
            .map(|_| ())
            .map_err(|e| Refusal::Foreign(format!("not a controller event: {e}")));
    }
    Err(Refusal::Foreign(format!("{subject} is not a subject tgp writes")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(id: &str, events: &str) -> Vec<u8> {
        format!(r#"{{"aggregate_type":"instance","aggregate_id":"{id}","events":{events},"metadata":{{}}}}"#)
            .into_bytes()
    }

    #[test]
    fn only_well_formed_commits_on_their_own_subject_pass() {
        let subject = "tgp.events.instance.a";
        for (payload, why) in [
            (b"not json".to_vec(), "not a commit"),
            (commit("b", "[]"), "names instance \"b\""),
            (commit("a", "[]"), "no events"),
        ] {
            match check_commit(subject, &payload).unwrap_err() {
                Refusal::Foreign(reason) => assert!(reason.contains(why), "{reason}"),
                other => panic!("{other:?}"),
            }
        }
        for (payload, why) in [
            (commit("a", r#"[{"sequence":1,"type":"Launched","version":99,"data":{}}]"#), "schema version 99"),
            (commit("a", r#"[{"sequence":1,"type":"Nonsense","version":1,"data":{}}]"#), "event 1"),
        ] {
            match check_commit(subject, &payload).unwrap_err() {
                Refusal::Unreadable { instance, reason } => {
                    assert!(instance == "a" && reason.contains(why), "{reason}")
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(check_message("tgp.events.other", b"{}").unwrap_err().reason().contains("not a subject tgp writes"));
        assert!(
            check_message("tgp.events.provider.vastai", b"[]").unwrap_err().reason().contains("not a provider event")
        );
    }
}
