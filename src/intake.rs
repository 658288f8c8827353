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

use std::time::Duration;

use actix::Addr;
use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{AckPolicy, pull};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{AckKind, Context, Message};
use bytes::Bytes;
use futures::StreamExt;
use tgp_actors::aggregate::InstanceError;
use tgp_actors::supervisor::{Launch, Supervisor, SupervisorError, Terminate};
use tgp_events::commands::CommandError;
use tgp_events::subjects::{
    COMMANDS_STREAM, DEAD_LETTERS_PREFIX, HEADER_DEAD_CODE, HEADER_DEAD_REASON, HEADER_MSG_ID, LAUNCH_COMMAND,
    TERMINATE_COMMAND,
};
use tgp_events::{InstanceId, LaunchCommand, TerminateCommand};
use tokio::task::JoinHandle;

use crate::journal::JetStreamJournal;

/// The durable consumer's name on `TGP_COMMANDS`.
pub const INTAKE_CONSUMER: &str = "tgp-intake";

/// Deliveries of one command before it is dead-lettered.
pub const MAX_DELIVERIES: i64 = 5;

/// Commands handled at once.
const CONCURRENCY: usize = 64;

/// The supervisor's address as the front doors use it.
pub type SupervisorAddr = Addr<Supervisor<JetStreamJournal>>;

/// Why the intake stopped.
#[derive(Debug, thiserror::Error)]
#[error("command intake: {0}")]
pub struct IntakeError(String);

/// Keeps a refused command in `TGP_DEAD_LETTERS` with why. Failing to do so is logged loudly:
/// the command is then still in its original stream or with its requester. The reason is kept to
/// one line of at most [`tgp_events::limits::MAX_REFUSAL_BYTES`], so it always fits in a header.
pub async fn dead_letter(js: &Context, subject: &str, msg_id: Option<&str>, body: Bytes, code: &str, reason: &str) {
    let reason = tgp_events::limits::bounded(reason.replace(['\r', '\n'], " "));
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

async fn handle(message: &Message, supervisor: &SupervisorAddr) -> Outcome {
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
            from_supervisor(supervisor.send(Launch { id, request }).await)
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

/// Binds the durable consumer on `TGP_COMMANDS`, then consumes it on a spawned task. Returns
/// once the consumer is bound, so commands published from then on are seen.
pub async fn start(js: Context, supervisor: SupervisorAddr) -> Result<JoinHandle<()>, IntakeError> {
    let stream = js.get_stream(COMMANDS_STREAM).await.map_err(|e| IntakeError(e.to_string()))?;
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
        .map_err(|e| IntakeError(e.to_string()))?;
    let messages = consumer.messages().await.map_err(|e| IntakeError(e.to_string()))?;
    Ok(tokio::spawn(messages.for_each_concurrent(CONCURRENCY, move |message| {
        let js = js.clone();
        let supervisor = supervisor.clone();
        async move {
            let message = match message {
                Ok(m) => m,
                Err(e) => return tracing::warn!(error = %e, "command intake read failed"),
            };
            let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
            let outcome = match handle(&message, &supervisor).await {
                Outcome::RetryLater(reason) if delivered >= MAX_DELIVERIES => Outcome::Refused {
                    code: "gave_up".into(),
                    reason: format!("failed {delivered} times, last: {reason}"),
                },
                other => other,
            };
            let acked = match outcome {
                Outcome::Done => message.ack().await,
                Outcome::Refused { code, reason } => {
                    let msg_id = header(message.headers.as_ref(), HEADER_MSG_ID);
                    dead_letter(&js, &message.subject, msg_id.as_deref(), message.payload.clone(), &code, &reason)
                        .await;
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
    })))
}
