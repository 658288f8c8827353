//! A journal that is empty while the providers hold machines tgp labelled means the history was
//! lost (a deleted stream, the wrong server): starting over it would manage none of those
//! machines, which keep billing. The controller refuses to start then, naming them, unless the
//! operator says the empty journal is expected (`tgp run --allow-empty-journal`).

use std::sync::Arc;

use async_nats::jetstream::Context;
use tgp_actors::provider::ProviderClient;
use tgp_events::AttemptId;
use tgp_events::subjects::{EVENTS_STREAM, INSTANCE_EVENTS_PREFIX};

/// Why the controller will not start over this journal.
#[derive(Debug, thiserror::Error)]
pub enum EmptyJournalError {
    /// The journal holds no instance, yet machines carry tgp's labels.
    #[error(
        "the journal ({EVENTS_STREAM}) holds no instance, but the providers hold {} machine(s) labelled by tgp: {}. \
         Its history may have been deleted, or this is the wrong NATS server; starting would leave those machines \
         unmanaged. Point tgp at the right server, or start with --allow-empty-journal to adopt nothing and go on \
         (the machines then keep running until you terminate them at the provider)",
        machines.len(),
        machines.join(", ")
    )]
    LabelledMachines {
        /// `provider/machine (label)` for each.
        machines: Vec<String>,
    },
    /// The journal could not be read.
    #[error("cannot tell whether the journal is empty: {0}")]
    Journal(String),
}

/// Checks that the journal is not empty while `providers` hold machines labelled by tgp. A
/// provider that cannot be listed is logged and left out: the check asks for evidence, it does not
/// invent it.
pub async fn check(js: &Context, providers: &[Arc<dyn ProviderClient>]) -> Result<(), EmptyJournalError> {
    let stream = js.get_stream(EVENTS_STREAM).await.map_err(|e| EmptyJournalError::Journal(e.to_string()))?;
    match stream.get_last_raw_message_by_subject(&format!("{INSTANCE_EVENTS_PREFIX}.>")).await {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound => {}
        Err(e) => return Err(EmptyJournalError::Journal(e.to_string())),
    }
    let mut machines = Vec::new();
    for provider in providers {
        let name = provider.info().name;
        match provider.list_instances().await {
            Ok(found) => machines.extend(found.into_iter().filter(|m| m.status.still_exists()).filter_map(|m| {
                let label = m.label.filter(|l| AttemptId::from_label(l).is_some())?;
                Some(format!("{name}/{} ({label})", m.id))
            })),
            Err(e) => tracing::warn!(provider = %name, error = %e, "cannot list machines to check the empty journal"),
        }
    }
    if machines.is_empty() { Ok(()) } else { Err(EmptyJournalError::LabelledMachines { machines }) }
}
