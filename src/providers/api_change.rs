//! API-change detection, the seed's "API update strategy": every sign that a provider's API is
//! moving under tgp (a `Deprecation` or `Sunset` header, an API-version header, a status value no
//! table knows, a missing field or an unexpected shape) is reported through one channel. Today the
//! channel logs a warning and keeps the reports for whoever subscribes; the provider actors will
//! journal them on `tgp.events.provider.<provider>`.

use tgp_events::ProviderName;
use tokio::sync::broadcast;

/// What changed, or seems to have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiChangeKind {
    /// A `Deprecation` header: the endpoint is deprecated (value as sent).
    Deprecation(String),
    /// A `Sunset` header: the endpoint goes away at this date (value as sent).
    Sunset(String),
    /// An API-version header the client was not written against.
    ApiVersion(String),
    /// A status value no translation table knows.
    UnknownStatus(String),
    /// A required field missing, or a value of the wrong shape.
    UnexpectedShape(String),
    /// An operation the provider no longer serves (e.g. a GraphQL mutation gone, HTTP 410).
    OperationGone(String),
}

/// One report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiChange {
    /// Which provider.
    pub provider: ProviderName,
    /// Which endpoint (`POST /api/v0/bundles/`).
    pub endpoint: String,
    /// What was seen.
    pub kind: ApiChangeKind,
}

/// The channel. Cheap to clone; every client of a controller shares one.
#[derive(Clone, Debug)]
pub struct ApiChangeReporter {
    sender: broadcast::Sender<ApiChange>,
}

impl Default for ApiChangeReporter {
    fn default() -> Self {
        ApiChangeReporter { sender: broadcast::channel(256).0 }
    }
}

impl ApiChangeReporter {
    /// Reports a change: logged now, and sent to every subscriber.
    pub fn report(&self, change: ApiChange) {
        tracing::warn!(provider = %change.provider, endpoint = %change.endpoint, change = ?change.kind, "provider API change");
        let _ = self.sender.send(change);
    }

    /// Receives reports from now on (tests, and the provider actors later).
    pub fn subscribe(&self) -> broadcast::Receiver<ApiChange> {
        self.sender.subscribe()
    }
}
