//! Provider events into the journal: what the provider actors observe (circuit changes, rate
//! limits, disable/enable, health) and what the clients report about API changes, each published
//! on `tgp.events.provider.<provider>` in `TGP_EVENTS`.

use async_nats::jetstream::Context;
use chrono::Utc;
use tgp_actors::provider_actor::ProviderEventSink;
use tgp_events::ProviderName;
use tgp_events::events::SCHEMA_VERSION;
use tgp_events::provider_events::{ProviderEvent, ProviderRecord};
use tgp_events::subjects::provider_events;

use crate::providers::api_change::{ApiChange, ApiChangeKind, ApiChangeReporter};

/// Publishes provider events to the journal. Publishing is fire-and-forget with a log line on
/// failure: a provider event is an observation, and losing one in an outage loses no money.
#[derive(Clone)]
pub struct JournaledProviderEvents {
    js: Context,
    /// Every provider event is signed: the journal's readers quarantine what is not.
    key: crate::journal::JournalKey,
}

impl JournaledProviderEvents {
    /// A sink publishing through `js`, signing with `key`.
    pub fn new(js: Context, key: crate::journal::JournalKey) -> Self {
        JournaledProviderEvents { js, key }
    }

    /// Journals the clients' API-change reports as `ApiChanged` events, until the reporter closes.
    pub fn follow_api_changes(&self, reporter: &ApiChangeReporter) -> tokio::task::JoinHandle<()> {
        let mut changes = reporter.subscribe();
        let sink = self.clone();
        tokio::spawn(async move {
            loop {
                match changes.recv().await {
                    Ok(change) => {
                        let provider = change.provider.clone();
                        // RunPod's only retired operations are its spot ones: the client has
                        // switched spot off, and that is journaled as such too.
                        let spot_off =
                            matches!(&change.kind, ApiChangeKind::OperationGone(_)) && provider.as_str() == "runpod";
                        let reason = format!("{} is gone", change.endpoint);
                        sink.record(&provider, api_changed(change));
                        if spot_off {
                            sink.record(&provider, ProviderEvent::SpotSwitchedOff { reason });
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "API-change reports were dropped")
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        })
    }
}

fn api_changed(change: ApiChange) -> ProviderEvent {
    let (kind, detail) = match change.kind {
        ApiChangeKind::Deprecation(v) => ("deprecation", v),
        ApiChangeKind::Sunset(v) => ("sunset", v),
        ApiChangeKind::ApiVersion(v) => ("api_version", v),
        ApiChangeKind::UnknownStatus(v) => ("unknown_status", v),
        ApiChangeKind::UnexpectedShape(v) => ("unexpected_shape", v),
        ApiChangeKind::OperationGone(v) => ("operation_gone", v),
    };
    ProviderEvent::ApiChanged { endpoint: change.endpoint, kind: kind.into(), detail }
}

impl ProviderEventSink for JournaledProviderEvents {
    fn record(&self, provider: &ProviderName, event: ProviderEvent) {
        tracing::info!(%provider, event = event.type_name(), "provider event");
        let record = ProviderRecord { provider: provider.clone(), at: Utc::now(), version: SCHEMA_VERSION, event };
        let (js, key, subject) = (self.js.clone(), self.key.clone(), provider_events(provider));
        let body = match serde_json::to_vec(&record) {
            Ok(b) => b,
            Err(e) => return tracing::error!(error = %e, "provider event not serializable"),
        };
        tokio::spawn(async move {
            if let Err(e) = crate::journal::signing::publish(&js, &key, subject, body).await {
                tracing::warn!(error = %e, "provider event not journaled");
            }
        });
    }
}
