//! HTTP plumbing every provider client shares: sending with a timeout, turning every failure into
//! the one `ProviderError` taxonomy (keeping the provider's own message and code), honouring
//! `Retry-After`, reporting `Deprecation` / `Sunset` headers, and decoding JSON tolerantly (unknown
//! fields ignored; a missing required field is an error naming the field and the endpoint), except
//! for machine listings, which are read strictly ([`ListField`], [`on_page`]): a `null` or absent
//! list, or one bad page, is an error, never fewer machines. No provider answer can make a client
//! panic.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use tgp_actors::provider::ProviderError;
use tgp_events::ProviderName;
use tgp_events::events::FailureClass;

use super::api_change::{ApiChange, ApiChangeKind, ApiChangeReporter};
use super::config::ApiKey;

/// A provider's own error body, as each client parses it: (code, message).
pub type ErrorBodyParser = fn(&[u8]) -> Option<(Option<String>, String)>;

/// One provider's HTTP connection: base URL, key, and the shared reporting channel.
#[derive(Clone)]
pub struct ProviderHttp {
    /// Which provider, for errors and reports.
    pub provider: ProviderName,
    /// The host root (`https://console.vast.ai`), without a trailing slash; paths are appended.
    base: String,
    /// The API key; never printed.
    key: ApiKey,
    client: reqwest::Client,
    reporter: ApiChangeReporter,
    /// Parses the provider's error envelope.
    parse_error: ErrorBodyParser,
}

/// An answer that passed the status check.
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: bytes::Bytes,
}

impl ProviderHttp {
    /// A connection to `base` (the host root) with `key`; each call may take `timeout`
    /// ([`super::options::ClientOptions::request_timeout`]).
    pub fn new(
        provider: ProviderName,
        base: &str,
        key: ApiKey,
        timeout: Duration,
        reporter: ApiChangeReporter,
        parse_error: ErrorBodyParser,
    ) -> Self {
        // reqwest is built without a bundled crypto provider (async-nats already brings ring);
        // install ring once for the process. A second install is refused harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("tgp/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a reqwest client with a crypto provider installed");
        ProviderHttp { provider, base: base.trim_end_matches('/').to_string(), key, client, reporter, parse_error }
    }

    /// The key, for clients whose API wants it somewhere other than a Bearer header.
    pub fn key(&self) -> &ApiKey {
        &self.key
    }

    /// The shared reporter, for status values and shapes a client finds unexpected.
    pub fn reporter(&self) -> &ApiChangeReporter {
        &self.reporter
    }

    /// A request to `path` (appended to the base) with the key as a Bearer token.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base)).bearer_auth(self.key.expose())
    }

    /// A request to `path` without authentication headers (for APIs that take the key elsewhere).
    pub fn request_unauthenticated(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    /// Reports an API change seen at `endpoint`.
    pub fn report(&self, endpoint: &str, kind: ApiChangeKind) {
        self.reporter.report(ApiChange { provider: self.provider.clone(), endpoint: endpoint.to_string(), kind });
    }

    fn error(&self, class: FailureClass, message: impl Into<String>) -> ProviderError {
        ProviderError::new(&self.provider, class, message)
    }

    /// Sends `request` for `endpoint` (`GET /instances`, used in messages and reports) and returns
    /// a 2xx answer, or the error in the shared taxonomy.
    pub async fn send(&self, endpoint: &str, request: RequestBuilder) -> Result<Answer, ProviderError> {
        let response = request.send().await.map_err(|e| {
            let what = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "connection failed"
            } else {
                "request failed"
            };
            self.error(FailureClass::ProviderOutage, format!("{endpoint}: {what}: {e}"))
        })?;
        let status = response.status();
        let headers = response.headers().clone();
        self.watch_headers(endpoint, &headers);
        let body = response
            .bytes()
            .await
            .map_err(|e| self.error(FailureClass::ProviderOutage, format!("{endpoint}: reading the answer: {e}")))?;
        if status.is_success() {
            return Ok(Answer { status, headers, body });
        }
        Err(self.status_error(endpoint, status, &headers, &body))
    }

    /// Sends and decodes a JSON answer.
    pub async fn json<T: DeserializeOwned>(&self, endpoint: &str, request: RequestBuilder) -> Result<T, ProviderError> {
        let answer = self.send(endpoint, request).await?;
        self.decode(endpoint, &answer.body)
    }

    /// Decodes JSON tolerantly: unknown fields are ignored by the target types; a missing or
    /// mistyped field is a contract change naming the field and the endpoint, and is reported.
    pub fn decode<T: DeserializeOwned>(&self, endpoint: &str, body: &[u8]) -> Result<T, ProviderError> {
        serde_json::from_slice(body).map_err(|e| {
            let detail =
                if e.is_syntax() || e.is_eof() { format!("the answer is not valid JSON ({e})") } else { e.to_string() };
            self.report(endpoint, ApiChangeKind::UnexpectedShape(detail.clone()));
            self.error(FailureClass::ContractChanged, format!("{endpoint}: unexpected answer: {detail}"))
        })
    }

    fn watch_headers(&self, endpoint: &str, headers: &HeaderMap) {
        let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        if let Some(v) = value("deprecation") {
            self.report(endpoint, ApiChangeKind::Deprecation(v));
        }
        if let Some(v) = value("sunset") {
            self.report(endpoint, ApiChangeKind::Sunset(v));
        }
    }

    /// The taxonomy for a non-2xx answer; the provider's own code and message are kept. A 410 is
    /// classed as a contract change but not reported here: a client knows whether it means an
    /// operation went away (RunPod's spot API) or something ordinary (Vast's offer taken).
    pub fn status_error(&self, endpoint: &str, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ProviderError {
        let (code, message) = (self.parse_error)(body).unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            (None, text.chars().take(300).collect::<String>())
        });
        let class = match status.as_u16() {
            401 | 403 => FailureClass::Auth,
            404 => FailureClass::NotFound,
            410 => FailureClass::ContractChanged,
            429 => FailureClass::RateLimited,
            400 | 405 | 409 | 422 => FailureClass::InvalidRequest,
            500..=599 => FailureClass::ProviderOutage,
            _ => FailureClass::Unknown,
        };
        let mut error = self.error(class, format!("{endpoint}: HTTP {}: {message}", status.as_u16()));
        error.code = code;
        error.retry_after_seconds = retry_after(headers);
        error
    }
}

/// A listing's list field as it came: absent, `null`, or a list. Listings have come back `null`
/// or without their list while every machine kept running (skypilot#10517); read as "no
/// machines", tgp would declare them all lost. So a client takes the list only through
/// [`ListField::require`], which makes the other two a contract change. Use it with
/// `#[serde(default = "ListField::default")]` so that an absent field decodes as
/// [`ListField::Missing`] (plain `default` would ask the element type for `Default`).
#[derive(Clone, Debug)]
pub enum ListField<T> {
    /// The field is not in the answer.
    Missing,
    /// The field is `null`.
    Null,
    /// The list (maybe empty: an account with no machines).
    List(Vec<T>),
}

// Not derived: a derive would ask `T: Default`, and the default is the absent field whatever `T`.
#[allow(clippy::derivable_impls)]
impl<T> Default for ListField<T> {
    fn default() -> Self {
        ListField::Missing
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ListField<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Option::<Vec<T>>::deserialize(d)? {
            None => ListField::Null,
            Some(list) => ListField::List(list),
        })
    }
}

impl<T> ListField<T> {
    /// The list, or why there is none, in words that name the field.
    pub fn into_list(self, field: &str) -> Result<Vec<T>, String> {
        match self {
            ListField::List(list) => Ok(list),
            ListField::Null => Err(format!("`{field}` is null")),
            ListField::Missing => Err(format!("`{field}` is missing")),
        }
    }

    /// The list; `null` or absent is a contract change at `endpoint` (reported), never an empty
    /// list.
    pub fn require(self, http: &ProviderHttp, endpoint: &str, field: &str) -> Result<Vec<T>, ProviderError> {
        self.into_list(field).map_err(|what| {
            let detail = format!("{what} in a list answer; a listing without its list says nothing about the machines");
            http.report(endpoint, ApiChangeKind::UnexpectedShape(detail.clone()));
            http.error(FailureClass::ContractChanged, format!("{endpoint}: {detail}"))
        })
    }
}

/// `error` as met on page `page` (from 1) of a paged listing: one bad page refuses the whole
/// listing, because a partial one would make the machines on the missing pages look lost.
pub fn on_page(mut error: ProviderError, page: usize) -> ProviderError {
    error.message = format!("{} (page {page} of the listing; the whole listing is refused)", error.message);
    error
}

/// `Retry-After` as seconds: delta-seconds, or an HTTP date from now.
pub fn retry_after(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds);
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some((date.timestamp() - chrono::Utc::now().timestamp()).max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::retry_after;
    use reqwest::header::HeaderMap;

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(7));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        h.insert("retry-after", later.parse().unwrap());
        assert!(matches!(retry_after(&h), Some(28..=30)));
    }
}
