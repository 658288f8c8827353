//! The durable way in: commands published on `tgp.commands.launch` and `tgp.commands.terminate`
//! land in the work-queue stream `TGP_COMMANDS` and wait there while tgp is down.
//!
//! # Guarantees
//! - A command is acknowledged only after its outcome is journaled (or it is dead-lettered), so a
//!   crash before that redelivers it, and the redelivery lands on the same instance: the instance
//!   id is the command's `Nats-Msg-Id` (its idempotency key), or `cmd-<stream sequence>` without one.
//! - A command that cannot be decoded or is invalid is never retried and never dropped: it is
//!   kept in `TGP_DEAD_LETTERS` on `tgp.dead.<original subject>` with the reason in headers, and
//!   the intake carries on with the next one.
//! - A command that keeps failing for a passing reason (journal down) is retried with a delay,
//!   and dead-lettered after [`MAX_DELIVERIES`].
//! - The consumer heals (see [`crate::consumers`]): after an outage, a reconnect or its deletion
//!   it is bound again, and the work queue delivers every command not yet acknowledged.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix::Addr;
use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{AckPolicy, pull};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{AckKind, Context, Message};
use bytes::Bytes;
use futures::StreamExt;
use tgp_actors::aggregate::InstanceError;
use tgp_actors::keyring::Keyring;
use tgp_actors::supervisor::{Launch, Supervisor, SupervisorError, Terminate};
use tgp_events::commands::CommandError;
use tgp_events::subjects::{
    COMMANDS_STREAM, DEAD_LETTERS_PREFIX, HEADER_DEAD_CODE, HEADER_DEAD_REASON, HEADER_MSG_ID, LAUNCH_COMMAND,
    TERMINATE_COMMAND,
};
use tgp_events::{InstanceId, LaunchCommand, TerminateCommand};
use tokio::task::JoinHandle;

use crate::consumers::{self, OwnConsumer, Stopped};
use crate::journal::JetStreamJournal;

/// The durable consumer's name on `TGP_COMMANDS`.
pub const INTAKE_CONSUMER: &str = "tgp-intake";

/// Deliveries of one command before it is dead-lettered.
pub const MAX_DELIVERIES: i64 = 5;

/// Commands handled at once.
const CONCURRENCY: usize = 64;

/// The supervisor's address as the front doors use it.
pub type SupervisorAddr = Addr<Supervisor<JetStreamJournal>>;

/// Why the intake could not bind its durable consumer on `TGP_COMMANDS`: each variant names the
/// NATS call that failed, so an operator knows whether the stream, the consumer or its pull
/// request is at fault. At start this stops tgp; later, the consumer is bound again.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The commands stream could not be looked up (missing, or NATS unreachable).
    #[error("command intake: stream {COMMANDS_STREAM}: {0}")]
    Stream(#[source] async_nats::jetstream::context::GetStreamError),
    /// The durable consumer could not be found or created.
    #[error("command intake: consumer {INTAKE_CONSUMER}: {0}")]
    Consumer(#[source] async_nats::jetstream::stream::ConsumerError),
    /// The consumer's messages could not be pulled.
    #[error("command intake: consumer {INTAKE_CONSUMER}'s messages: {0}")]
    Messages(#[source] async_nats::jetstream::consumer::StreamError),
}

/// Keeps a refused command in `TGP_DEAD_LETTERS` with why. Failing to do so is logged loudly:
/// the command is then still in its original stream or with its requester. The reason is kept to
/// one line of at most [`tgp_events::limits::MAX_REFUSAL_BYTES`], so it always fits in a header.
pub async fn dead_letter(js: &Context, subject: &str, msg_id: Option<&str>, body: Bytes, code: &str, reason: &str) {
    let reason = tgp_events::limits::bounded(reason.replace(['\r', '\n'], " "));
    // A launch's env values may be secrets: the dead letter keeps their names only.
    let body = if subject.ends_with(".launch") { crate::secrets::redact_launch_body(&body) } else { body };
    let mut publish = PublishMessage::build()
        .payload(body)
        .header(HEADER_DEAD_CODE, code)
        .header(HEADER_DEAD_REASON, reason.as_str());
    if let Some(id) = msg_id {
        publish = publish.header("Tgp-Original-Msg-Id", id);
    }
    let stored = match js.send_publish(format!("{DEAD_LETTERS_PREFIX}.{subject}"), publish).await {
        Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match stored {
        Ok(()) => tracing::warn!(%subject, %code, %reason, "command refused and dead-lettered"),
        Err(e) => {
            tracing::error!(%subject, %code, %reason, error = %e, "command refused; dead letter NOT stored")
        }
    }
}

/// The error code of a launch with env values refused because tgp has no secrets key.
pub const NO_SECRETS_KEY: &str = "no_secrets_key";

/// What became of one command.
enum Outcome {
    Done,
    Refused { code: String, reason: String },
    RetryLater(String),
}

fn refused(e: &CommandError) -> Outcome {
    Outcome::Refused { code: e.code().into(), reason: e.to_string() }
}

fn from_supervisor(result: Result<Result<impl Sized, SupervisorError>, actix::MailboxError>) -> Outcome {
    match result {
        Ok(Ok(_)) => Outcome::Done,
        Ok(Err(e @ (SupervisorError::Journal(_) | SupervisorError::Unavailable(_) | SupervisorError::Conflict(_)))) => {
            Outcome::RetryLater(e.to_string())
        }
        Ok(Err(e)) => Outcome::Refused { code: e.code().into(), reason: e.to_string() },
        Err(e) => Outcome::RetryLater(e.to_string()),
    }
}

fn header(headers: Option<&HeaderMap>, name: &str) -> Option<String> {
    headers?.get(name).map(|v| v.as_str().to_string())
}

async fn handle(message: &Message, supervisor: &SupervisorAddr, keyring: &Keyring) -> Outcome {
    let msg_id = header(message.headers.as_ref(), HEADER_MSG_ID);
    match message.subject.as_str() {
        LAUNCH_COMMAND => {
            let request = match LaunchCommand::from_json(&message.payload) {
                Ok(r) => r,
                Err(e) => return refused(&e),
            };
            let key = msg_id.or_else(|| request.idempotency_key.clone());
            let id = match key {
                Some(key) => match key.parse::<InstanceId>() {
                    Ok(id) => id,
                    Err(e) => {
                        return refused(&CommandError::Invalid(format!("Nats-Msg-Id (the idempotency key): {e}")));
                    }
                },
                None => {
                    let sequence = message.info().map(|i| i.stream_sequence).unwrap_or_default();
                    format!("cmd-{sequence}").parse().expect("a valid id")
                }
            };
            match keyring.seal_launch(&id, request) {
                Ok(request) => from_supervisor(supervisor.send(Launch { id, request }).await),
                Err(e) => Outcome::Refused { code: NO_SECRETS_KEY.into(), reason: e.to_string() },
            }
        }
        TERMINATE_COMMAND => match TerminateCommand::from_json(&message.payload) {
            Ok(cmd) => {
                let reason = cmd.reason.unwrap_or_else(|| "requested on tgp.commands.terminate".into());
                match supervisor.send(Terminate { id: cmd.instance_id, reason }).await {
                    // A redelivered terminate (tgp crashed before the ack) finds its own work
                    // done or under way: that is success, not a dead letter.
                    Ok(Err(SupervisorError::Refused(
                        InstanceError::AlreadyTerminating | InstanceError::Finished("terminated"),
                    ))) => Outcome::Done,
                    other => from_supervisor(other),
                }
            }
            Err(e) => refused(&e),
        },
        other => Outcome::Refused {
            code: "unknown_command".into(),
            reason: format!("no command is published on {other}; use {LAUNCH_COMMAND} or {TERMINATE_COMMAND}"),
        },
    }
}

/// Binds the durable consumer on `TGP_COMMANDS`, then consumes it on a spawned task, rebinding it
/// whenever it stops delivering (see [`crate::consumers`]). Returns once the consumer is bound, so
/// commands published from then on are seen.
/// `key` signs the controller event journaled when the intake consumer recovers.
pub async fn start(
    js: Context,
    key: crate::journal::JournalKey,
    supervisor: SupervisorAddr,
    keyring: Arc<Keyring>,
) -> Result<JoinHandle<()>, IntakeError> {
    consumers::start(js.clone(), key, Intake { js, supervisor, keyring, messages: None }).await
}

/// The intake's durable consumer and where it hands commands.
struct Intake {
    js: Context,
    supervisor: SupervisorAddr,
    /// Seals a launch's env values before it reaches the supervisor (and the journal).
    keyring: Arc<Keyring>,
    /// The bound consumer's messages.
    messages: Option<pull::Stream>,
}

impl OwnConsumer for Intake {
    type Error = IntakeError;

    fn name(&self) -> &str {
        INTAKE_CONSUMER
    }

    /// The durable is found, or created again if it is gone: the work queue keeps every command
    /// not yet acknowledged, and the new consumer delivers those.
    async fn bind(&mut self) -> Result<u64, IntakeError> {
        self.messages = None;
        let stream = self.js.get_stream(COMMANDS_STREAM).await.map_err(IntakeError::Stream)?;
        let consumer = stream
            .get_or_create_consumer(
                INTAKE_CONSUMER,
                pull::Config {
                    durable_name: Some(INTAKE_CONSUMER.into()),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(60),
                    max_ack_pending: 1024,
                    ..Default::default()
                },
            )
            .await
            .map_err(IntakeError::Consumer)?;
        let acked = consumer.cached_info().ack_floor.stream_sequence;
        self.messages = Some(consumer.messages().await.map_err(IntakeError::Messages)?);
        Ok(acked)
    }

    /// Handles commands concurrently until the consumer errs or ends, or the connection was
    /// regained; commands already in hand are finished first (an unacknowledged one comes back).
    async fn consume(&mut self, reconnected: impl Future<Output = ()> + Send) -> Stopped {
        let Some(messages) = self.messages.take() else {
            return Stopped::Interrupted("not bound".into());
        };
        let why = Mutex::new(None::<String>);
        let reconnected = async {
            reconnected.await;
            *why.lock().unwrap_or_else(PoisonError::into_inner) =
                Some("the connection to NATS was lost and regained".into());
        };
        let (js, supervisor, keyring) = (&self.js, &self.supervisor, &*self.keyring);
        messages
            .take_until(reconnected)
            .take_while(|message| {
                if let Err(e) = message {
                    *why.lock().unwrap_or_else(PoisonError::into_inner) = Some(e.to_string());
                }
                std::future::ready(message.is_ok())
            })
            .filter_map(|message| std::future::ready(message.ok()))
            .for_each_concurrent(CONCURRENCY, |message| deliver(js, supervisor, keyring, message))
            .await;
        let why = why.into_inner().unwrap_or_else(PoisonError::into_inner);
        Stopped::Interrupted(why.unwrap_or_else(|| "its messages ended".into()))
    }
}

/// Handles one delivered command and acknowledges it as its outcome says.
async fn deliver(js: &Context, supervisor: &SupervisorAddr, keyring: &Keyring, message: Message) {
    let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
    let outcome = match handle(&message, supervisor, keyring).await {
        Outcome::RetryLater(reason) if delivered >= MAX_DELIVERIES => {
            Outcome::Refused { code: "gave_up".into(), reason: format!("failed {delivered} times, last: {reason}") }
        }
        other => other,
    };
    let acked = match outcome {
        Outcome::Done => message.ack().await,
        Outcome::Refused { code, reason } => {
            let msg_id = header(message.headers.as_ref(), HEADER_MSG_ID);
            dead_letter(js, &message.subject, msg_id.as_deref(), message.payload.clone(), &code, &reason).await;
            message.ack().await
        }
        Outcome::RetryLater(reason) => {
            tracing::warn!(%reason, delivered, "command will be retried");
            message.ack_with(AckKind::Nak(Some(Duration::from_secs(2)))).await
        }
    };
    if let Err(e) = acked {
        tracing::warn!(error = %e, "command ack failed; it will be redelivered and land on the same instance");
    }
}
