//! tgp's own NATS consumers (command intake, projections, metrics) and how they heal.
//!
//! async-nats does not bring a JetStream consumer back by itself: a pull consumer whose durable
//! was deleted ends its stream, and one whose durable is missing after a reconnect keeps yielding
//! heartbeat and no-responders errors forever without a message (nats-io/nats.rs#1584). So every
//! consumer tgp owns runs under [`start`], which recreates it whenever it stops delivering.
//!
//! # Guarantees
//! - A consumer is rebound when its message stream errs or ends, and whenever the connection to
//!   NATS was lost and regained since it was bound (the client's connect count moved): a pull
//!   request sent before an outage is never trusted to still be served after it.
//! - Rebinding retries with capped exponential backoff until it succeeds; it never gives up.
//! - Each consumer resumes after the last message it took in (a projection: its checkpoint; the
//!   intake: the work queue's unacknowledged commands), so nothing is counted twice or skipped.
//! - Each recovery is said three ways: a `ConsumerRecovered` event on `tgp.events.controller`, the
//!   counter `tgp_consumer_recoveries_total{consumer=...}`, and a warning in the log.
//! - A message the consumer cannot use at all (it does not decode) is not an outage: the consumer
//!   stops with an error rather than rebinding onto the same message forever.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::Context;
use tgp_events::controller_events::ControllerEvent;
use tokio::task::JoinHandle;

/// The first wait before rebinding a consumer that stopped, doubled up to [`REBIND_MAX_DELAY`].
pub const REBIND_FIRST_DELAY: Duration = Duration::from_millis(250);
/// The longest wait between two attempts to rebind.
pub const REBIND_MAX_DELAY: Duration = Duration::from_secs(5);
/// The counter of recoveries, by consumer.
pub const RECOVERIES: &str = "tgp_consumer_recoveries_total";
/// How often a consumer checks whether the connection was lost and regained.
const RECONNECT_CHECK: Duration = Duration::from_millis(250);

/// Why a consumer's session ended.
#[derive(Debug)]
pub enum Stopped {
    /// Delivery stopped for a passing reason (an outage, a deleted consumer, a reconnect): rebind.
    Interrupted(String),
    /// The consumer cannot go on (a message it cannot use): stop, loudly.
    Fatal(String),
}

/// A consumer tgp owns: bound (created or recreated where it left off), then consumed until it
/// stops.
pub trait OwnConsumer: Send + 'static {
    /// Why binding failed: the owner's own error, so the caller that starts it gets the cause
    /// (which NATS call, and its error) and not a sentence.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Its name, in the metric's label, the health event and the log (the durable's name).
    fn name(&self) -> &str;

    /// Creates the consumer, or recreates it where this one left off. Returns the last stream
    /// sequence already taken in (it resumes after it).
    fn bind(&mut self) -> impl Future<Output = Result<u64, Self::Error>> + Send;

    /// Takes in messages from the bound consumer until it stops, or until `reconnected`
    /// resolves (the connection was lost and regained: rebind). Says why it stopped.
    fn consume(&mut self, reconnected: impl Future<Output = ()> + Send) -> impl Future<Output = Stopped> + Send;
}

/// Resolves once the client has connected again since its connect count was `connects`.
async fn reconnected(client: async_nats::Client, connects: u64) {
    let statistics = client.statistics();
    while statistics.connects.load(Ordering::Relaxed) == connects {
        tokio::time::sleep(RECONNECT_CHECK).await;
    }
}

/// Binds `consumer` (an error here is the caller's: tgp cannot start without it), then consumes it
/// on a spawned task that rebinds it whenever it stops, for as long as the task lives.
/// `key` signs the `ConsumerRecovered` events it journals.
pub async fn start<C: OwnConsumer>(
    js: Context,
    key: crate::journal::JournalKey,
    mut consumer: C,
) -> Result<JoinHandle<()>, C::Error> {
    let client = js.client();
    let mut connects = client.statistics().connects.load(Ordering::Relaxed);
    consumer.bind().await?;
    // The series exists from the start, at 0, so a dashboard's rate() sees the first recovery.
    metrics::counter!(RECOVERIES, "consumer" => consumer.name().to_string()).increment(0);
    Ok(tokio::spawn(async move {
        loop {
            let reason = match consumer.consume(reconnected(client.clone(), connects)).await {
                Stopped::Interrupted(reason) => reason,
                Stopped::Fatal(reason) => {
                    return tracing::error!(consumer = consumer.name(), %reason, "consumer stopped for good");
                }
            };
            tracing::warn!(consumer = consumer.name(), %reason, "consumer stopped delivering; recreating it");
            let mut delay = REBIND_FIRST_DELAY;
            let resumed_after = loop {
                tokio::time::sleep(delay).await;
                // Bound while disconnected, its requests would wait in the client's buffer and
                // the reconnect would then unbind it again at once: wait for the connection.
                while client.connection_state() != async_nats::connection::State::Connected {
                    tokio::time::sleep(RECONNECT_CHECK).await;
                }
                connects = client.statistics().connects.load(Ordering::Relaxed);
                match consumer.bind().await {
                    Ok(sequence) => break sequence,
                    Err(e) => {
                        tracing::warn!(consumer = consumer.name(), error = %e, ?delay, "consumer not recreated yet");
                        delay = (delay * 2).min(REBIND_MAX_DELAY);
                    }
                }
            };
            recovered(&js, &key, consumer.name(), reason, resumed_after).await;
        }
    }))
}

/// Says that `consumer` recovered: the counter, the log, and the journal.
async fn recovered(js: &Context, key: &crate::journal::JournalKey, consumer: &str, reason: String, resumed_after: u64) {
    metrics::counter!(RECOVERIES, "consumer" => consumer.to_string()).increment(1);
    tracing::warn!(consumer, %reason, resumed_after, "consumer recreated and resumed");
    crate::controller_events::publish(
        js,
        key,
        ControllerEvent::ConsumerRecovered { consumer: consumer.into(), reason, resumed_after },
    )
    .await;
}
