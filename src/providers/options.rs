//! A provider's settings as its client reads them, the one way all four clients do: the key it
//! needs, its options typed and checked, the per-call timeout and the HTTP connection built from
//! them. A value a client cannot use is a [`ConfigError`] naming the provider, the option and what
//! it takes; [`ClientOptions::refusal`] turns it into the client's refusal to start.

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use tgp_actors::provider::ProviderError;
use tgp_events::ProviderName;
use tgp_events::events::FailureClass;

use super::api_change::ApiChangeReporter;
use super::config::{ApiKey, ConfigError, DEFAULT_REQUEST_TIMEOUT, ProviderKind, ProviderSettings};
use super::http::{ErrorBodyParser, ProviderHttp};

/// One provider's settings, read for its client.
pub struct ClientOptions<'a> {
    kind: ProviderKind,
    settings: &'a ProviderSettings,
}

impl<'a> ClientOptions<'a> {
    /// The settings `kind`'s client starts from (the client names itself: `kind`, not the section
    /// the settings came from).
    pub fn new(kind: ProviderKind, settings: &'a ProviderSettings) -> Self {
        ClientOptions { kind, settings }
    }

    /// The provider's name, for its errors and events.
    pub fn name(&self) -> ProviderName {
        // One of four constants, not a provider answer: it always parses.
        self.kind.name().parse().expect("the four provider names are valid names")
    }

    /// The host root from the settings.
    pub fn url(&self) -> &'a str {
        &self.settings.url
    }

    /// An option's text, trimmed; `None` when it is not set.
    pub fn text(&self, key: &str) -> Option<&'a str> {
        self.settings.options.get(key).map(|v| v.trim())
    }

    /// A whole-number option: `default` when unset; refused unless it is a whole number in
    /// `allowed`.
    pub fn number(&self, key: &'static str, default: u32, allowed: RangeInclusive<u32>) -> Result<u32, ConfigError> {
        let expected = match (allowed.start(), allowed.end()) {
            (min, &u32::MAX) => format!("a whole number of at least {min}"),
            (min, max) => format!("a whole number from {min} to {max}"),
        };
        Ok(self.parsed(key, |n| allowed.contains(n), expected)?.unwrap_or(default))
    }

    /// An option in milliseconds: `default` when unset; refused unless it is a whole number of at
    /// least `min_ms`.
    pub fn millis(&self, key: &'static str, default: Duration, min_ms: u64) -> Result<Duration, ConfigError> {
        let expected = format!("a whole number of milliseconds, at least {min_ms}");
        Ok(self.parsed(key, |ms| *ms >= min_ms, expected)?.map_or(default, Duration::from_millis))
    }

    /// The time one HTTP call to the provider may take: option `request_timeout_ms`, else
    /// [`DEFAULT_REQUEST_TIMEOUT`]. An operator behind a slow proxy lengthens it; tests of stalled
    /// answers shorten it so they need not wait 30 s.
    pub fn request_timeout(&self) -> Result<Duration, ConfigError> {
        self.millis("request_timeout_ms", DEFAULT_REQUEST_TIMEOUT, 1)
    }

    /// The API key; refused, naming the variable to set, when there is none.
    pub fn key(&self) -> Result<ApiKey, ConfigError> {
        let (provider, variable) = (self.kind.name(), self.kind.key_variable());
        self.settings.key.clone().ok_or(ConfigError::NoKey { provider, variable })
    }

    /// The HTTP connection to `root` that every client opens: its key, its timeout, and the
    /// provider's own error-body parser.
    pub fn http(
        &self,
        root: &str,
        reporter: ApiChangeReporter,
        parse_error: ErrorBodyParser,
    ) -> Result<ProviderHttp, ConfigError> {
        Ok(ProviderHttp::new(self.name(), root, self.key()?, self.request_timeout()?, reporter, parse_error))
    }

    /// The client's refusal to start on these settings, in the taxonomy of provider failures (a
    /// missing key is `Auth`, anything else `InvalidRequest`), its message the whole chain of
    /// causes, so `tgp offers` shows the provider and why.
    pub fn refusal(&self, error: ConfigError) -> ProviderError {
        let class = match error {
            ConfigError::NoKey { .. } => FailureClass::Auth,
            _ => FailureClass::InvalidRequest,
        };
        let mut message = error.to_string();
        let mut cause = std::error::Error::source(&error);
        while let Some(c) = cause {
            message = format!("{message}: {c}");
            cause = c.source();
        }
        ProviderError::new(&self.name(), class, message)
    }

    /// An option parsed as `T` and checked by `ok`; `None` when it is not set.
    fn parsed<T: FromStr + Display>(
        &self,
        key: &'static str,
        ok: impl Fn(&T) -> bool,
        expected: String,
    ) -> Result<Option<T>, ConfigError> {
        let Some(value) = self.settings.options.get(key) else {
            return Ok(None);
        };
        match value.trim().parse::<T>() {
            Ok(n) if ok(&n) => Ok(Some(n)),
            _ => Err(ConfigError::BadOption { provider: self.kind.name(), key, value: value.clone(), expected }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{ClientOptions, ProviderKind, ProviderSettings};
    use std::time::Duration;
    use tgp_events::events::FailureClass;

    fn settings(options: &[(&str, &str)]) -> ProviderSettings {
        ProviderSettings {
            kind: ProviderKind::VastAi,
            url: "http://127.0.0.1:1".into(),
            key: None,
            options: options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
            disabled: None,
        }
    }

    #[test]
    fn a_bad_option_names_the_provider_the_option_and_what_it_takes() {
        let s = settings(&[("disk_gb", "4"), ("request_timeout_ms", " 250 ")]);
        let options = ClientOptions::new(ProviderKind::VastAi, &s);
        assert_eq!(options.request_timeout().unwrap(), Duration::from_millis(250));
        assert_eq!(options.number("search_limit", 200, 1..=u32::MAX).unwrap(), 200);
        let e = options.number("disk_gb", 40, 8..=u32::MAX).unwrap_err();
        assert_eq!(e.to_string(), "vastai option disk_gb = \"4\": expected a whole number of at least 8");
        let refusal = options.refusal(e);
        assert_eq!(refusal.class, FailureClass::InvalidRequest);
        assert!(refusal.message.contains("disk_gb"), "{refusal}");
    }

    #[test]
    fn no_key_is_an_auth_refusal_that_says_which_variable() {
        let s = settings(&[]);
        let options = ClientOptions::new(ProviderKind::VastAi, &s);
        let refusal = options.refusal(options.key().unwrap_err());
        assert_eq!(refusal.class, FailureClass::Auth);
        assert!(refusal.message.contains("VAST_API_KEY"), "{refusal}");
    }
}
