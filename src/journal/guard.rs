//! Watching tgp's streams under a running controller: a journal stream deleted, recreated,
//! reconfigured or stripped of history while tgp runs is detected, said loudly, and stops new
//! launches. Nothing is recreated.
//!
//! Why stop launches: every launch is a promise to account for a machine until it ends, and the
//! journal is where that account lives. With the journal gone or changed under it, tgp could rent
//! machines it cannot remember after a restart. Terminations go on (they spend nothing, and each is
//! journaled where the journal still takes writes); so do the chains already running.
//!
//! Why recreate nothing: a stream that was deleted may be restored from a backup, and one that was
//! reconfigured was changed by someone with the rights to do it. Writing a fresh, empty journal over
//! that would hide what happened and make every running machine an unmanaged one. The operator
//! decides, then restarts tgp.
//!
//! # What counts as evidence
//! Each stream is looked at every check interval (`STREAM.INFO`). A change is concluded only when
//! two looks in a row show it against the stream as tgp found it at start (its creation time, its
//! configuration) and as tgp last saw it (its first sequence and message count): one answer is not
//! proof. An error, a timeout or JetStream being unavailable shows nothing.

use std::collections::HashMap;
use std::time::Duration;

use actix::Addr;
use async_nats::jetstream::Context;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::stream::{Config, Info};
use tgp_actors::journal::Journal;
use tgp_actors::supervisor::{JournalChanged, StopLaunches, Supervisor};
use tgp_events::controller_events::ControllerEvent;
use tgp_events::subjects::{COMMANDS_STREAM, DEAD_LETTERS_STREAM, EVENTS_STREAM};
use tokio::task::JoinHandle;

/// How often each stream is looked at, unless `tgp run --stream-check-interval` says otherwise.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// The counter of confirmed changes, by stream and kind.
pub const STREAM_CHANGES: &str = "tgp_journal_stream_changes_total";

/// 1 while new launches are stopped because a stream changed under tgp.
pub const LAUNCHES_STOPPED: &str = "tgp_launches_stopped";

/// The streams watched, and whether each keeps history (append-only: its first message never
/// goes away) or is a work queue (messages leave once handled).
const WATCHED: [(&str, bool); 3] = [(EVENTS_STREAM, true), (DEAD_LETTERS_STREAM, true), (COMMANDS_STREAM, false)];

/// Configuration fields that tgp itself may change on a stream it runs on (its key records in
/// the metadata) or that say nothing about what the stream keeps.
const IGNORED_FIELDS: [&str; 2] = ["metadata", "description"];

/// What a look at a stream showed.
#[derive(Clone, Debug)]
pub enum Look {
    /// The server answered with the stream's info.
    Found(Box<Info>),
    /// The server answered that the stream does not exist.
    Missing,
    /// No answer that says anything (an error, a timeout, JetStream unavailable).
    Unknown(String),
}

/// A change to a stream under a running tgp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The stream no longer exists.
    Deleted,
    /// A stream of that name exists, but not the one tgp started on: it was deleted and created again.
    Recreated,
    /// Its configuration changed; each entry names a field, its old and its new value.
    Reconfigured(Vec<String>),
    /// Messages of a stream that keeps history are gone (a purge, a delete, or a new age or size limit).
    HistoryRemoved {
        /// Messages and first sequence when last seen.
        before: (u64, u64),
        /// Messages and first sequence now.
        now: (u64, u64),
    },
}

impl Change {
    /// A short name, for the metric's label and the event.
    pub fn kind(&self) -> &'static str {
        match self {
            Change::Deleted => "deleted",
            Change::Recreated => "recreated",
            Change::Reconfigured(_) => "reconfigured",
            Change::HistoryRemoved { .. } => "history_removed",
        }
    }

    /// What happened, in a sentence an operator can act on.
    pub fn describe(&self, stream: &str) -> String {
        match self {
            Change::Deleted => format!("stream {stream} was deleted"),
            Change::Recreated => format!("stream {stream} was deleted and created again (its creation time changed)"),
            Change::Reconfigured(fields) => format!("stream {stream} was reconfigured: {}", fields.join("; ")),
            Change::HistoryRemoved { before, now } => format!(
                "messages of stream {stream} were removed: it held {} from sequence {}, now {} from sequence {}",
                before.0, before.1, now.0, now.1
            ),
        }
    }
}

/// One stream as tgp found it at start and last saw it.
#[derive(Clone, Debug)]
pub struct Baseline {
    /// When the stream tgp started on was created.
    created: time::OffsetDateTime,
    /// Its configuration at start.
    config: Config,
    /// Messages and first sequence at the last look that showed no change.
    last_seen: (u64, u64),
    /// Whether the stream keeps history.
    keeps_history: bool,
}

impl Baseline {
    /// The stream as found now.
    pub fn of(info: &Info, keeps_history: bool) -> Self {
        Baseline {
            created: info.created,
            config: info.config.clone(),
            last_seen: (info.state.messages, info.state.first_sequence),
            keeps_history,
        }
    }

    /// The change a look shows, if any. Pure: the caller keeps the evidence.
    pub fn change(&self, look: &Look) -> Option<Change> {
        let info = match look {
            Look::Missing => return Some(Change::Deleted),
            Look::Unknown(_) => return None,
            Look::Found(info) => info,
        };
        if info.created != self.created {
            return Some(Change::Recreated);
        }
        let fields = config_changes(&self.config, &info.config);
        if !fields.is_empty() {
            return Some(Change::Reconfigured(fields));
        }
        let now = (info.state.messages, info.state.first_sequence);
        let (messages, first) = self.last_seen;
        // An append-only stream only grows, and its first message stays. (An empty stream has no
        // first message to keep.)
        if self.keeps_history && (now.0 < messages || (messages > 0 && now.1 > first)) {
            return Some(Change::HistoryRemoved { before: self.last_seen, now });
        }
        None
    }

    /// Takes in a look that showed no change.
    fn saw(&mut self, info: &Info) {
        self.last_seen = (info.state.messages, info.state.first_sequence);
    }
}

/// The fields that differ between two configurations, as `field: old -> new`, leaving out
/// [`IGNORED_FIELDS`].
pub fn config_changes(before: &Config, after: &Config) -> Vec<String> {
    let fields = |config: &Config| match serde_json::to_value(config) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let (before, after) = (fields(before), fields(after));
    let mut names: Vec<&String> = before.keys().chain(after.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|name| !IGNORED_FIELDS.contains(&name.as_str()))
        .filter_map(|name| {
            let (old, new) = (before.get(name), after.get(name));
            (old != new).then(|| {
                let show = |v: Option<&serde_json::Value>| v.map_or("(none)".to_string(), |v| v.to_string());
                format!("{name}: {} -> {}", show(old), show(new))
            })
        })
        .collect()
}

/// Looks at one stream.
pub async fn look(js: &Context, stream: &str) -> Look {
    match js.get_stream(stream).await {
        Ok(found) => Look::Found(Box::new(found.cached_info().clone())),
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(inner) if inner.error_code() == ErrorCode::STREAM_NOT_FOUND => Look::Missing,
            _ => Look::Unknown(e.to_string()),
        },
    }
}

/// Why the guard could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot look at stream {stream} to watch it: {detail}")]
pub struct GuardError {
    /// Which stream.
    stream: String,
    /// What the server said.
    detail: String,
}

/// Takes each stream's baseline now (after the layout was ensured), then watches them on a
/// spawned task. A confirmed change is logged at error level, counted, journaled as a
/// `JournalStreamChanged` controller event signed with `key` where the journal still takes it
/// (and published on `tgp.events.controller` either way), and stops new launches at the
/// supervisor.
pub async fn watch<R>(
    js: Context,
    key: super::JournalKey,
    supervisor: Addr<Supervisor<R>>,
    every: Duration,
) -> Result<JoinHandle<()>, GuardError>
where
    R: Journal,
{
    let mut baselines = HashMap::new();
    for (stream, keeps_history) in WATCHED {
        match look(&js, stream).await {
            Look::Found(info) => baselines.insert(stream, Baseline::of(&info, keeps_history)),
            Look::Missing => {
                return Err(GuardError { stream: stream.into(), detail: "it does not exist".into() });
            }
            Look::Unknown(detail) => return Err(GuardError { stream: stream.into(), detail }),
        };
    }
    metrics::gauge!(LAUNCHES_STOPPED).set(0.0);
    Ok(tokio::spawn(async move {
        // The change each stream showed at its last look, awaiting a second look.
        let mut pending: HashMap<&str, Change> = HashMap::new();
        while !baselines.is_empty() {
            tokio::time::sleep(every).await;
            let mut said = Vec::new();
            for (&stream, baseline) in baselines.iter_mut() {
                let seen = look(&js, stream).await;
                match (baseline.change(&seen), &seen) {
                    (Some(change), _) if pending.get(stream).is_some_and(|first| first.kind() == change.kind()) => {
                        confirmed(&js, &key, &supervisor, stream, &change).await;
                        said.push(stream);
                    }
                    (Some(change), _) => {
                        tracing::warn!(stream, change = %change.describe(stream), "stream looks changed; looking again");
                        pending.insert(stream, change);
                    }
                    (None, Look::Found(info)) => {
                        baseline.saw(info);
                        pending.remove(stream);
                    }
                    (None, _) => {}
                }
            }
            // A stream whose change was confirmed is watched no more: it was said once, and tgp
            // takes no launches until an operator has looked and restarted it.
            for stream in said {
                baselines.remove(stream);
                pending.remove(stream);
            }
        }
    }))
}

/// Says a confirmed change every way tgp can, and stops new launches.
async fn confirmed<R>(
    js: &Context,
    key: &super::JournalKey,
    supervisor: &Addr<Supervisor<R>>,
    stream: &str,
    change: &Change,
) where
    R: Journal,
{
    let what = change.describe(stream);
    tracing::error!(
        stream,
        change = change.kind(),
        "{what}. tgp takes no new launches until an operator restores the stream (or accepts the change) \
         and restarts tgp; running chains and terminations go on where the journal takes writes; \
         tgp recreates nothing"
    );
    metrics::counter!(STREAM_CHANGES, "stream" => stream.to_string(), "change" => change.kind()).increment(1);
    metrics::gauge!(LAUNCHES_STOPPED).set(1.0);
    supervisor.do_send(StopLaunches(JournalChanged {
        stream: stream.into(),
        change: change.kind(),
        detail: what.clone(),
    }));
    let event =
        ControllerEvent::JournalStreamChanged { stream: stream.into(), change: change.kind().into(), detail: what };
    crate::controller_events::publish(js, key, event).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_record_in_the_metadata_is_no_change_but_a_new_age_limit_is() {
        let before = Config { name: "TGP_EVENTS".into(), deny_delete: true, ..Default::default() };
        let mut after = before.clone();
        after.metadata.insert("tgp.journal.keys".into(), "k1".into());
        after.description = Some("renamed".into());
        assert!(config_changes(&before, &after).is_empty());
        after.max_age = Duration::from_secs(60);
        let changes = config_changes(&before, &after);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert!(changes[0].starts_with("max_age: "), "{changes:?}");
    }
}
