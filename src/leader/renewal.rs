//! Renewing the lease where the controller's own load cannot delay it.
//!
//! The controller runs its actors, folds and `tgp.api` on one runtime, and its commands and
//! commits on one NATS connection. Under load (10,000 launches at once on two cores) a renewal
//! queued behind that work came too late: the leader's fence closed, the standby took the lease,
//! and the new leader, as busy, could lose it the same way. So the lease is renewed on a thread of
//! its own, with a single-threaded runtime and a NATS connection of its own.
//!
//! A leader whose main runtime is stuck (a deadlock, a fold that never ends) must still give way:
//! a task on the main runtime beats a pulse every third of the time to live, and the renewal
//! thread renews only while the pulse is younger than [`stuck_after`]. Past it the lease lapses
//! and a standby takes over; should the main runtime come back, it finds the lease taken and stops.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv::{self, CreateErrorKind, Store};
use tgp_actors::fence::Fence;
use tgp_events::subjects::{LEADER_BUCKET, LEADER_KEY};
use tokio::sync::watch;

use super::{Holder, LeaseError, current, margin};
use crate::connect::{NatsOptions, connect_lease};
use crate::task::AbortOnDrop;

/// The lease as this process took it.
pub(super) struct Lease {
    /// Its time to live.
    pub ttl: Duration,
    /// This process, as the key names it.
    pub holder: Holder,
    /// The key's value (the holder, encoded).
    pub value: bytes::Bytes,
    /// The revision this process last wrote (its epoch, at first).
    pub revision: u64,
}

/// How long the main runtime may show no pulse before the lease is left to lapse: ten times the
/// time to live (100 s at the default 10 s). A leader busy for seconds keeps its lease; one stuck
/// for that long gives it up.
pub fn stuck_after(ttl: Duration) -> Duration {
    ttl * 10
}

/// The renewal thread and the pulse task; both stop when this is dropped.
pub(super) struct Renewing {
    stop: watch::Sender<bool>,
    _pulse: AbortOnDrop<()>,
}

impl Renewing {
    /// Starts the pulse on the current runtime and the renewals on a thread of their own,
    /// connected with `nats`. `lost` is told, and `fence` closed for good, when another process
    /// takes the lease.
    pub fn start(nats: NatsOptions, lease: Lease, lost: watch::Sender<bool>, fence: Fence) -> Result<Self, LeaseError> {
        let pulse = Arc::new(Mutex::new(Instant::now()));
        let beating = pulse.clone();
        let interval = lease.ttl / 3;
        let beat = tokio::spawn(async move {
            loop {
                *beating.lock().expect("pulse") = Instant::now();
                tokio::time::sleep(interval).await;
            }
        });
        let (stop, mut stopped) = watch::channel(false);
        std::thread::Builder::new()
            .name("tgp-lease".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        // Nothing would renew: stop leading now, as a lost lease does.
                        tracing::error!(error = %e, "no runtime to renew the controller lease on: this process stops leading");
                        fence.close();
                        let _ = lost.send(true);
                        return;
                    }
                };
                runtime.block_on(async move {
                    tokio::select! {
                        () = renew(nats, lease, lost, fence, pulse) => {}
                        // Told to stop, or the leadership dropped.
                        _ = stopped.wait_for(|stop| *stop) => {}
                    }
                });
            })
            .map_err(LeaseError::RenewalThread)?;
        Ok(Renewing { stop, _pulse: AbortOnDrop::new(beat) })
    }

    /// Stops renewing (before the lease is released).
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }
}

impl Drop for Renewing {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The lease's bucket on a connection of its own, tried until it opens: meanwhile the fence
/// closes by itself at the deadline.
async fn store(nats: &NatsOptions, ttl: Duration) -> Store {
    // A renewal that waits longer than a third of the TTL is better sent again.
    let timeout = (ttl / 3).clamp(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        match connect_lease(nats).await {
            Ok(client) => {
                let js = async_nats::jetstream::ContextBuilder::new().timeout(timeout).build(client);
                match js.get_key_value(LEADER_BUCKET).await {
                    Ok(store) => return store,
                    Err(e) => {
                        tracing::warn!(error = %e, "the lease bucket could not be opened to renew it; trying again")
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "no connection to renew the controller lease on; trying again"),
        }
        tokio::time::sleep(ttl / 10).await;
    }
}

/// Renews every third of the time to live. Past the deadline the fence is closed by itself; the
/// lease is then taken again if nobody else wrote it meanwhile (its revision is the next after
/// ours: only the lease lives in the bucket, and expiry writes nothing), and the fence reopens:
/// nobody else led, so what this process holds in memory is still the truth. If another process
/// took it, the fence closes for good and `lost` is said. No renewal is sent while the main
/// runtime shows no pulse.
async fn renew(nats: NatsOptions, lease: Lease, lost: watch::Sender<bool>, fence: Fence, pulse: Arc<Mutex<Instant>>) {
    let Lease { ttl, holder, value, mut revision } = lease;
    let store = store(&nats, ttl).await;
    let (mut stopped, mut stuck) = (false, false);
    loop {
        // Every third of the TTL; more often once the lease lapsed, to act again soon after NATS
        // is back.
        tokio::time::sleep(if stopped { ttl / 10 } else { ttl / 3 }).await;
        if !fence.is_open() && !stopped {
            tracing::error!(
                "the controller lease was not renewed in time: this process stops acting until it holds it again"
            );
            stopped = true;
        }
        let silent = pulse.lock().expect("pulse").elapsed();
        if silent > stuck_after(ttl) {
            if !stuck {
                tracing::error!(
                    silent_s = silent.as_secs(),
                    "the controller has not run for this long: its lease is left to lapse so that a standby takes over"
                );
                stuck = true;
            }
            continue;
        }
        stuck = false;
        let sent = tokio::time::Instant::now();
        let outcome = match store.update(LEADER_KEY, value.clone(), revision).await {
            Ok(next) => Ok(next),
            // The key changed since our last write: expired (then free), or taken.
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                match store.create(LEADER_KEY, value.clone()).await {
                    Ok(next) if next == revision + 1 => Ok(next),
                    Ok(_) => Err(true),
                    Err(e) if e.kind() == CreateErrorKind::AlreadyExists => match current(&store).await {
                        // Our own renewal that timed out but landed: carry on from it.
                        Ok(Some((found, at))) if found == holder && at == revision + 1 => {
                            revision = at;
                            continue;
                        }
                        Ok(_) => Err(true),
                        Err(_) => Err(false),
                    },
                    Err(_) => Err(false),
                }
            }
            Err(_) => Err(false),
        };
        match outcome {
            Ok(next) => {
                revision = next;
                fence.extend((sent + ttl - margin(ttl)).into_std());
                if stopped {
                    tracing::warn!("the controller lease is held again and nobody led meanwhile: acting again");
                    stopped = false;
                }
            }
            Err(true) => {
                tracing::error!("the controller lease was taken by another process: this process stops leading");
                fence.close();
                let _ = lost.send(true);
                return;
            }
            // A passing error (NATS unreachable): tried again; the deadline stops acting meanwhile.
            Err(false) => tracing::warn!("the controller lease could not be renewed; trying again"),
        }
    }
}
