//! Journaling what happens to tgp itself (see [`tgp_events::controller_events`]): one place that
//! writes `tgp.events.controller`, for the consumers that heal and the stream guard.

use async_nats::jetstream::Context;
use async_nats::jetstream::context::PublishErrorKind;
use chrono::Utc;
use tgp_events::controller_events::{ControllerEvent, ControllerRecord};
use tgp_events::events::SCHEMA_VERSION;
use tgp_events::subjects::CONTROLLER_EVENTS;

use crate::journal::JournalKey;

/// Journals a controller event, signed with `key` like every message tgp writes; when no stream takes it (the journal was deleted), publishes it
/// for whoever listens. A failure is logged. It is an
/// observation, like a provider event: losing it loses no money, and what it says is also in
/// the log and the metrics.
pub async fn publish(js: &Context, key: &JournalKey, event: ControllerEvent) {
    let kind = event.type_name();
    let record = ControllerRecord { at: Utc::now(), version: SCHEMA_VERSION, event };
    let body = match serde_json::to_vec(&record) {
        Ok(body) => body,
        Err(e) => return tracing::error!(event = kind, error = %e, "controller event not serializable"),
    };
    match crate::journal::signing::publish(js, key, CONTROLLER_EVENTS.into(), body.clone()).await {
        Ok(()) => {}
        // No stream takes the subject (the journal was deleted): say it to whoever listens.
        Err(e) if e.kind() == PublishErrorKind::StreamNotFound => {
            tracing::warn!(event = kind, "no stream takes controller events; publishing this one unstored");
            let headers = key.headers(CONTROLLER_EVENTS, None, &body);
            if let Err(e) = js.client().publish_with_headers(CONTROLLER_EVENTS, headers, body.into()).await {
                tracing::warn!(event = kind, error = %e, "controller event not published either");
            }
        }
        Err(e) => tracing::warn!(event = kind, error = %e, "controller event not journaled"),
    }
}
