//! One leader among several `tgp run` processes: a lease in a NATS key-value bucket.
//!
//! # The lease
//! The bucket [`LEADER_BUCKET`] holds one key, [`LEADER_KEY`], and its `max_age` is the lease's
//! time to live: a lease not renewed within it expires on the server. A process leads once it has
//! created the key (which fails while another holds it); it renews by updating the key at the
//! revision it last wrote, so a renewal can only extend its own lease. Its **epoch** is the
//! revision at which it took the lease: revisions only grow, so a later leader has a larger epoch.
//! Every commit carries the epoch of the leader that wrote it (`Tgp-Leader-Epoch`).
//!
//! # Fencing
//! A leader that cannot renew stops acting before the lease could be granted to another process:
//! its deadline is the time it *sent* its last successful renewal plus the time to live, less a
//! margin ([`margin`]); the server expires the lease no earlier than the time it *stored* that
//! renewal plus the time to live. Past the deadline its [`Fence`] refuses every provider call and
//! journal append, checked against the clock at the moment of the call.
//! - If it then takes the lease again and nobody else wrote it meanwhile (a NATS outage for
//!   everyone), nobody else led: it acts again, with the same epoch.
//! - If another process took it, the fence closes for good and [`Leadership::lost`] fires; `tgp
//!   run` exits at once (its supervisor, systemd or Kubernetes, starts it again, as a standby).
//!
//! A launch cut off mid-call is an unclear outcome, which the next leader settles from the
//! provider's listings by label.
//!
//! # Standby
//! A process that finds the lease held waits, looking every quarter of the time to live, and takes
//! it once it lapses. A lease left by a process on this host that no longer runs (a restart after
//! `kill -9`) is taken at once: the holder names its host and process id. A leader that shuts
//! down in order releases the lease ([`Leadership::release`]), so its standby need not wait.

use std::time::Duration;

use async_nats::jetstream::Context;
use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, Store};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tgp_actors::fence::Fence;
use tgp_events::subjects::{LEADER_BUCKET, LEADER_KEY};
use tokio::sync::watch;

use crate::connect::NatsOptions;
use renewal::{Lease, Renewing};

pub mod renewal;

/// Who holds the lease, as the key's value says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The name the process runs under (`--name`, default the host name).
    pub name: String,
    /// The host it runs on.
    pub host: String,
    /// Its process id on that host.
    pub pid: u32,
    /// When it took the lease.
    pub since: DateTime<Utc>,
}

impl Holder {
    /// This process, named `name`, taking the lease now.
    pub fn this_process(name: &str) -> Self {
        Holder { name: name.to_string(), host: host_name(), pid: std::process::id(), since: Utc::now() }
    }

    /// True when the holder is this very process.
    pub fn is_this_process(&self) -> bool {
        self.host == host_name() && self.pid == std::process::id()
    }

    /// True when the holder was a process on this host that no longer runs, or this very process
    /// (a controller it ran before and has dropped: one process runs one controller at a time).
    fn is_gone_here(&self) -> bool {
        self.host == host_name()
            && (self.pid == std::process::id() || !std::path::Path::new(&format!("/proc/{}", self.pid)).exists())
    }
}

/// This machine's host name (what `--name` defaults to).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// How the lease is held.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// This process's name in the lease.
    pub name: String,
    /// The lease's time to live: how long a dead leader keeps the others waiting.
    pub ttl: Duration,
}

/// `tgp run`'s default time to live of the lease.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

impl Default for LeaseConfig {
    /// Named after the host, with [`DEFAULT_TTL`].
    fn default() -> Self {
        LeaseConfig { name: host_name(), ttl: DEFAULT_TTL }
    }
}

/// How long before the lease's expiry a leader that could not renew stops: a fifth of the time to
/// live, at least 200 ms (clock rates differ, and a process needs a moment to stop).
pub fn margin(ttl: Duration) -> Duration {
    (ttl / 5).max(Duration::from_millis(200))
}

/// Why the lease could not be taken or watched.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The bucket could not be created or opened.
    #[error("lease bucket {LEADER_BUCKET}: {0}")]
    Bucket(#[source] async_nats::jetstream::context::CreateKeyValueError),
    /// The bucket exists with another time to live than asked: changing it silently could let
    /// two processes lead at once (one expecting the old, one the new).
    #[error(
        "lease bucket {LEADER_BUCKET} has a time to live of {found:?}, this tgp was started with --lease-ttl {asked:?}; \
         start every tgp of this journal with the same --lease-ttl, or delete the bucket while none runs \
         (`nats kv rm {LEADER_BUCKET}`)"
    )]
    TtlDiffers {
        /// The bucket's `max_age`.
        found: Duration,
        /// `--lease-ttl`.
        asked: Duration,
    },
    /// The bucket exists with another replica count than `--replicas`; it is never rescaled.
    #[error(
        "lease bucket {LEADER_BUCKET} (stream KV_{LEADER_BUCKET}) has {found} replicas, this tgp was started with \
         --replicas {asked}; `nats stream edit KV_{LEADER_BUCKET} --replicas {asked}`, or restart with --replicas {found}"
    )]
    ReplicasDiffer {
        /// The bucket's replicas.
        found: usize,
        /// `--replicas`.
        asked: usize,
    },
    /// The lease could not be read or written.
    #[error("lease {LEADER_BUCKET}/{LEADER_KEY}: {0}")]
    Lease(String),
    /// The thread that renews the lease could not be started.
    #[error("starting the thread that renews the lease: {0}")]
    RenewalThread(#[source] std::io::Error),
}

/// The lease, held.
pub struct Leadership {
    /// The revision at which the lease was taken; larger for every later leader.
    pub epoch: u64,
    /// Who holds it (this process).
    pub holder: Holder,
    /// Becomes true when the lease is lost (a renewal refused, or the deadline passed unrenewed).
    pub lost: watch::Receiver<bool>,
    /// Open while the lease holds: checked before every provider call and journal append.
    pub fence: Fence,
    renewing: Renewing,
    store: Store,
}

impl Leadership {
    /// Gives the lease up (an orderly shutdown, as the process's last step), unless it was lost
    /// already: a standby takes over at its next look instead of waiting for the lease to lapse.
    pub async fn release(&self) {
        if *self.lost.borrow() {
            return;
        }
        self.renewing.stop();
        // Only our own lease is given up: the revision check refuses if another took it since.
        if let Ok(Some((holder, revision))) = current(&self.store).await
            && holder == self.holder
            && let Err(e) = self.store.purge_expect_revision(LEADER_KEY, Some(revision)).await
        {
            tracing::warn!(error = %e, "the controller lease could not be released; it lapses by itself");
        }
    }
}

async fn bucket(js: &Context, config: &LeaseConfig, replicas: usize) -> Result<Store, LeaseError> {
    if let Ok(store) = js.get_key_value(LEADER_BUCKET).await {
        let status = store.status().await.map_err(|e| LeaseError::Lease(e.to_string()))?;
        if status.max_age() != config.ttl {
            return Err(LeaseError::TtlDiffers { found: status.max_age(), asked: config.ttl });
        }
        if status.info.config.num_replicas != replicas {
            return Err(LeaseError::ReplicasDiffer { found: status.info.config.num_replicas, asked: replicas });
        }
        return Ok(store);
    }
    js.create_key_value(kv::Config {
        bucket: LEADER_BUCKET.into(),
        description: "tgp's controller lease: its holder leads".into(),
        history: 1,
        max_age: config.ttl,
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .map_err(LeaseError::Bucket)
}

/// The lease's current holder, if any: `None` when nobody holds it, or when no tgp ever created
/// the bucket. Any other failure to read it (permissions, a lost connection) is an error, never
/// "nobody leads".
pub async fn holder(js: &Context) -> Result<Option<(Holder, u64)>, LeaseError> {
    match open_bucket(js).await? {
        Some(store) => current(&store).await,
        None => Ok(None),
    }
}

/// The lease's bucket, or `None` when no tgp ever created it; any other failure is an error.
pub(crate) async fn open_bucket(js: &Context) -> Result<Option<Store>, LeaseError> {
    use async_nats::jetstream::context::KeyValueErrorKind;
    match js.get_key_value(LEADER_BUCKET).await {
        Ok(store) => Ok(Some(store)),
        Err(e) if e.kind() == KeyValueErrorKind::GetBucket && is_missing(&e) => Ok(None),
        Err(e) => Err(LeaseError::Lease(e.to_string())),
    }
}

/// True when opening the bucket failed because its stream does not exist.
fn is_missing(error: &async_nats::jetstream::context::KeyValueError) -> bool {
    use async_nats::jetstream::context::{GetStreamError, GetStreamErrorKind};
    std::error::Error::source(error).and_then(|source| source.downcast_ref::<GetStreamError>()).is_some_and(|e| {
        matches!(e.kind(), GetStreamErrorKind::JetStream(j)
            if j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND)
    })
}

/// The lease's holder as its bucket says now.
pub(crate) async fn current(store: &Store) -> Result<Option<(Holder, u64)>, LeaseError> {
    let entry = store.entry(LEADER_KEY).await.map_err(|e| LeaseError::Lease(e.to_string()))?;
    Ok(entry.filter(|e| e.operation == Operation::Put).and_then(|e| {
        let holder: Holder = serde_json::from_slice(&e.value).ok()?;
        Some((holder, e.revision))
    }))
}

/// Waits until this process holds the lease, then keeps renewing it on a connection and a thread
/// of its own ([`renewal`]), connected with `nats`. The bucket is created with `replicas` replicas
/// when it does not exist. `standing_by` is called once per new holder seen while waiting.
pub async fn lead(
    js: &Context,
    nats: &NatsOptions,
    config: &LeaseConfig,
    replicas: usize,
    mut standing_by: impl FnMut(&Holder),
) -> Result<Leadership, LeaseError> {
    let store = bucket(js, config, replicas).await?;
    let mut seen: Option<Holder> = None;
    loop {
        let holder = Holder::this_process(&config.name);
        let value: bytes::Bytes = serde_json::to_vec(&holder).expect("a holder serializes").into();
        let sent = tokio::time::Instant::now();
        let taken = match store.create(LEADER_KEY, value.clone()).await {
            Ok(revision) => Some(revision),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => match current(&store).await? {
                // Left by a process of this host that is gone: taken over at once.
                Some((old, revision)) if old.is_gone_here() => {
                    store.update(LEADER_KEY, value.clone(), revision).await.ok()
                }
                Some((old, _)) => {
                    if seen.as_ref() != Some(&old) {
                        standing_by(&old);
                        seen = Some(old);
                    }
                    None
                }
                // Expired between the two calls: try again at once.
                None => continue,
            },
            Err(e) => return Err(LeaseError::Lease(e.to_string())),
        };
        if let Some(epoch) = taken {
            let (tell, lost) = watch::channel(false);
            let deadline = sent + config.ttl - margin(config.ttl);
            let fence = Fence::until(deadline.into_std());
            let lease = Lease { ttl: config.ttl, holder: holder.clone(), value, revision: epoch };
            let renewing = Renewing::start(nats.clone(), lease, tell, fence.clone())?;
            return Ok(Leadership { epoch, holder, lost, fence, renewing, store });
        }
        tokio::time::sleep(config.ttl / 4).await;
    }
}
