//! `tgp audit`: the cost of a time range, replayed from the journal.
//!
//! # How the range is read
//! Ranges are by event time (the `at` of each event). The journal is indexed by the time each
//! commit was stored, which is within moments of its events' times; `lag` (default an hour) is
//! the allowance between the two. With a start, the replay begins at the first commit stored at
//! or after `from - lag` (JetStream seeks there; no scan of bodies before it). Runs that were
//! already billing then are found from a headers-only pass over the commits before that point
//! (their `Tgp-Event-Types` header), and only those instances' earlier histories are read. Without
//! a start, everything is replayed. The replay reads to the journal's end as of its start: runs
//! that end after the range are clipped to it.
//!
//! A message that does not decode is quarantined by the reader and skipped; [`Replayed`] says how
//! many, and `tgp audit` names the count in its footer.
//!
//! The fold is the live cost projection's own (`projections::cost::CostLedger`), so an audit and
//! the live projection agree on every total.

use std::collections::HashSet;

use async_nats::jetstream::Context;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use tgp_events::InstanceId;
use tgp_events::subjects::{EVENTS_STREAM, HEADER_AGGREGATE_ID, HEADER_EVENT_TYPES, INSTANCE_EVENTS_ALL};

use crate::journal::{JournalReader, StartAt, published_at};
use crate::projections::cost::CostLedger;
use crate::projections::runner::Checkpointed;

/// Why an audit failed.
#[derive(Debug, thiserror::Error)]
#[error("audit: {0}")]
pub struct AuditError(String);

fn err(e: impl std::fmt::Display) -> AuditError {
    AuditError(e.to_string())
}

/// Instances billing at the first commit stored at or after `before`, and that commit's sequence.
async fn open_before(js: &Context, before: DateTime<Utc>) -> Result<(HashSet<InstanceId>, Option<u64>), AuditError> {
    let stream = js.get_stream(EVENTS_STREAM).await.map_err(err)?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: INSTANCE_EVENTS_ALL.into(),
            deliver_policy: DeliverPolicy::All,
            headers_only: true,
            ..Default::default()
        })
        .await
        .map_err(err)?;
    let pending = consumer.cached_info().num_pending;
    let mut open = HashSet::new();
    if pending == 0 {
        return Ok((open, None));
    }
    let mut messages = consumer.messages().await.map_err(err)?.take(pending as usize);
    while let Some(message) = messages.next().await {
        let message = message.map_err(err)?;
        let info = message.info().map_err(err)?;
        if published_at(&info) >= before {
            return Ok((open, Some(info.stream_sequence)));
        }
        let headers = message.headers.as_ref();
        let header = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str().to_string());
        let (Some(id), Some(types)) = (header(HEADER_AGGREGATE_ID), header(HEADER_EVENT_TYPES)) else {
            continue;
        };
        let Ok(id) = id.parse::<InstanceId>() else {
            continue;
        };
        for event_type in types.split(',') {
            match event_type {
                "Launched" | "Relaunched" => {
                    open.insert(id.clone());
                }
                "Interrupted" | "Terminated" | "Failed" => {
                    open.remove(&id);
                }
                _ => {}
            }
        }
    }
    Ok((open, None))
}

/// What an audit replay folded, and what it had to skip.
pub struct Replayed {
    /// The cost ledger over the range.
    pub ledger: Checkpointed<CostLedger>,
    /// Journal messages the replay read but quarantined (they do not decode): not in the ledger.
    pub quarantined: u64,
}

/// Replays what the range needs into a ledger; `progress(done, total)` is called as it goes.
pub async fn replay(
    js: &Context,
    from: Option<DateTime<Utc>>,
    lag: Duration,
    progress: impl Fn(u64, u64) + Send + Sync,
) -> Result<Replayed, AuditError> {
    let reader = JournalReader::open(js).await.map_err(err)?;
    let ledger = replay_into(js, &reader, from, lag, progress).await?;
    Ok(Replayed { ledger, quarantined: reader.quarantine().count() })
}

async fn replay_into(
    js: &Context,
    reader: &JournalReader,
    from: Option<DateTime<Utc>>,
    lag: Duration,
    progress: impl Fn(u64, u64) + Send + Sync,
) -> Result<Checkpointed<CostLedger>, AuditError> {
    let mut ledger = Checkpointed::<CostLedger>::default();
    let start = match from {
        None => StartAt::Beginning,
        Some(from) => {
            let (open, boundary) = open_before(js, from - lag).await?;
            let Some(boundary) = boundary else {
                // Nothing stored after the start: the runs open before it are all there is.
                for id in &open {
                    fold_history(reader, &mut ledger, id, u64::MAX).await?;
                }
                return Ok(ledger);
            };
            for id in &open {
                fold_history(reader, &mut ledger, id, boundary).await?;
            }
            StartAt::Sequence(boundary)
        }
    };
    ledger.fold_replay(reader, start, progress).await.map_err(err)?;
    Ok(ledger)
}

/// Folds one instance's commits stored before `boundary`.
async fn fold_history(
    reader: &JournalReader,
    ledger: &mut Checkpointed<CostLedger>,
    id: &InstanceId,
    boundary: u64,
) -> Result<(), AuditError> {
    for (sequence, commit) in reader.subject_commits(&tgp_events::subjects::instance_events(id)).await.map_err(err)? {
        if sequence >= boundary {
            break;
        }
        for (_, event) in &commit.events {
            ledger.state.apply(id, event);
        }
        ledger.last_sequence = ledger.last_sequence.max(sequence);
    }
    Ok(())
}
