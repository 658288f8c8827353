//! Prometheus metrics derived from the journal: instances by state, provider and spot; launch,
//! interruption, relaunch and failure totals; time to running; the current spend rate and the
//! cumulative spend. The controller folds the journal from its first commit at start (so totals
//! cover the whole history) and keeps following it, through outages (its consumer heals). Names follow Prometheus conventions: `tgp_`
//! prefix, `_total` counters, base units (`_seconds`, `_dollars`).
//!
//! Money here is an `f64` only because Prometheus samples are; exact figures come from
//! `tgp audit` and `tgp.api.cost`.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use rust_decimal::prelude::ToPrimitive;
use tgp_events::api::InstanceState;
use tgp_events::{InstanceEvent, InstanceId};

use super::cost::CostLedger;
use super::runner::{ProjectionError, ProjectionFailure};
use crate::consumers::{OwnConsumer, Stopped};
use crate::journal::{CommitStream, JournalReader, StartAt};
use std::future::Future;
use tgp_events::subjects::INSTANCE_EVENTS_ALL;

/// What each live chain looks like to the gauges.
#[derive(Clone, Debug)]
struct ChainLook {
    state: InstanceState,
    provider: String,
    spot: bool,
    requested_at: DateTime<Utc>,
    ran: bool,
}

/// The fold behind the metrics.
#[derive(Default)]
pub struct MetricsState {
    chains: HashMap<InstanceId, ChainLook>,
    counters: BTreeMap<(&'static str, String), u64>,
    cost: CostLedger,
}

impl MetricsState {
    /// Folds one event and records time-to-running observations as they happen.
    pub fn apply(&mut self, instance: &InstanceId, event: &InstanceEvent) {
        self.cost.apply(instance, event);
        let mut count = |name: &'static str, label: String| *self.counters.entry((name, label)).or_default() += 1;
        match event {
            InstanceEvent::LaunchRequested { at, .. } => {
                self.chains.insert(
                    instance.clone(),
                    ChainLook {
                        state: InstanceState::Requested,
                        provider: "none".into(),
                        spot: false,
                        requested_at: *at,
                        ran: false,
                    },
                );
            }
            InstanceEvent::Launched { .. } => count("tgp_launches_total", String::new()),
            InstanceEvent::Relaunched { .. } => count("tgp_relaunches_total", String::new()),
            InstanceEvent::Interrupted { reason, .. } => {
                count("tgp_interruptions_total", format!("{reason:?}").to_lowercase())
            }
            InstanceEvent::LaunchFailed { class, .. } => {
                count("tgp_launch_failures_total", format!("{class:?}").to_lowercase())
            }
            InstanceEvent::Failed { .. } => count("tgp_failures_total", String::new()),
            _ => {}
        }
        let Some(chain) = self.chains.get_mut(instance) else {
            return;
        };
        match event {
            InstanceEvent::OfferSelected { offer, .. } => {
                chain.state = InstanceState::Launching;
                chain.provider = offer.provider.to_string();
                chain.spot = offer.spot;
            }
            InstanceEvent::Launched { .. } | InstanceEvent::Relaunched { .. } => chain.state = InstanceState::Starting,
            InstanceEvent::Running { at, .. } => {
                if !chain.ran {
                    chain.ran = true;
                    let seconds = (*at - chain.requested_at).num_milliseconds() as f64 / 1000.0;
                    metrics::histogram!("tgp_time_to_running_seconds").record(seconds);
                }
                chain.state = InstanceState::Running;
            }
            InstanceEvent::Interrupted { .. } => chain.state = InstanceState::Interrupted,
            InstanceEvent::TerminationRequested { .. } => chain.state = InstanceState::Terminating,
            InstanceEvent::Terminated { .. } | InstanceEvent::Failed { .. } => {
                self.chains.remove(instance);
            }
            _ => {}
        }
    }

    /// Sets every gauge and counter from the fold (called after each batch of commits).
    pub fn publish(&self, now: DateTime<Utc>) {
        let mut by: BTreeMap<(InstanceState, String, bool), u64> = BTreeMap::new();
        for chain in self.chains.values() {
            *by.entry((chain.state, chain.provider.clone(), chain.spot)).or_default() += 1;
        }
        // Zero the series of every combination seen before, so a state left empty reads 0.
        for state in [
            InstanceState::Requested,
            InstanceState::Launching,
            InstanceState::Starting,
            InstanceState::Running,
            InstanceState::Interrupted,
            InstanceState::Terminating,
        ] {
            by.entry((state, "none".into(), false)).or_default();
        }
        for ((state, provider, spot), n) in by {
            metrics::gauge!("tgp_instances", "state" => state.name(), "provider" => provider, "spot" => spot.to_string()).set(n as f64);
        }
        for ((name, label), n) in &self.counters {
            match *name {
                "tgp_interruptions_total" => metrics::counter!(*name, "reason" => label.clone()).absolute(*n),
                "tgp_launch_failures_total" => metrics::counter!(*name, "class" => label.clone()).absolute(*n),
                _ => metrics::counter!(*name).absolute(*n),
            }
        }
        let spent: rust_decimal::Decimal =
            self.cost.totals(DateTime::<Utc>::MIN_UTC, now, &[]).values().map(|t| t.cost().as_decimal()).sum();
        metrics::gauge!("tgp_spend_rate_dollars_per_hour")
            .set(self.cost.spend_rate().as_decimal().to_f64().unwrap_or(0.0));
        metrics::gauge!("tgp_spend_dollars").set(spent.to_f64().unwrap_or(0.0));
    }
}

/// The consumer's name, in the recovery metric and event.
const CONSUMER: &str = "metrics";

/// Folds the whole journal into the metrics, then keeps following it on a spawned task (an
/// ordered consumer, recreated after the last commit folded whenever it stops delivering: see
/// [`crate::consumers`]); publishes after each batch and at least every half second.
/// `key` signs the controller event journaled when the consumer recovers.
pub async fn follow(
    js: async_nats::jetstream::Context,
    key: crate::journal::JournalKey,
) -> Result<tokio::task::JoinHandle<()>, ProjectionError> {
    let follower = Follower {
        js: js.clone(),
        state: MetricsState::default(),
        last_sequence: 0,
        commits: None,
        dirty: true,
        published: std::time::Instant::now(),
    };
    crate::consumers::start(js, key, follower).await
}

/// The metrics fold and the journal read feeding it.
struct Follower {
    js: async_nats::jetstream::Context,
    state: MetricsState,
    /// The last stream sequence folded (0: none).
    last_sequence: u64,
    /// The bound read.
    commits: Option<CommitStream>,
    /// Folded since last published.
    dirty: bool,
    published: std::time::Instant,
}

impl OwnConsumer for Follower {
    type Error = ProjectionError;

    fn name(&self) -> &str {
        CONSUMER
    }

    async fn bind(&mut self) -> Result<u64, ProjectionError> {
        self.commits = None;
        let journal = |source| ProjectionError::new(CONSUMER, ProjectionFailure::Journal(source));
        let reader = JournalReader::open(&self.js).await.map_err(journal)?;
        let start = match self.last_sequence {
            0 => StartAt::Beginning,
            last => StartAt::Sequence(last + 1),
        };
        let commits = reader.follow(INSTANCE_EVENTS_ALL, start).await.map_err(journal)?;
        self.commits = Some(commits);
        Ok(self.last_sequence)
    }

    async fn consume(&mut self, reconnected: impl Future<Output = ()> + Send) -> Stopped {
        let Some(mut commits) = self.commits.take() else {
            return Stopped::Interrupted("not bound".into());
        };
        tokio::pin!(reconnected);
        let tick = std::time::Duration::from_millis(500);
        loop {
            if self.dirty && self.published.elapsed() >= tick {
                self.publish();
            }
            let next = tokio::select! {
                () = &mut reconnected => {
                    return Stopped::Interrupted("the connection to NATS was lost and regained".into());
                }
                next = tokio::time::timeout(tick, commits.next()) => next,
            };
            match next {
                Ok(Some(Ok((sequence, _, commit)))) => {
                    for (_, event) in &commit.events {
                        self.state.apply(&commit.instance, event);
                    }
                    self.last_sequence = sequence;
                    self.dirty = true;
                    continue;
                }
                Ok(Some(Err(e))) => return Stopped::Interrupted(e.to_string()),
                Ok(None) => return Stopped::Interrupted("its messages ended".into()),
                Err(_) => {}
            }
            if self.dirty {
                self.publish();
            }
        }
    }
}

impl Follower {
    fn publish(&mut self) {
        self.state.publish(Utc::now());
        (self.dirty, self.published) = (false, std::time::Instant::now());
    }
}
