//! Provider configuration: a TOML file, with environment variables overriding it.
//!
//! ```toml
//! [vastai]
//! enabled = true
//! url = "https://console.vast.ai"   # the host root; tgp appends the provider's own paths
//! api_key_file = "/etc/tgp/vast.key"
//! ```
//!
//! Environment: `TGP_VASTAI_URL`, `TGP_LAMBDA_URL`, `TGP_RUNPOD_URL`, `TGP_PAPERSPACE_URL` (host
//! roots, e.g. `http://127.0.0.1:8081`, to point at a fake or a proxy); `VAST_API_KEY`,
//! `LAMBDA_API_KEY`, `RUNPOD_API_KEY`, `PAPERSPACE_API_KEY`. A provider without a key is disabled
//! and says so. Keys are never printed: [`ApiKey`] redacts itself.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// An API key. `Debug` and `Display` print `[redacted]`; only the HTTP layer calls `expose`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key (surrounding whitespace, e.g. a file's trailing newline, is dropped).
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into().trim().to_string())
    }

    /// The key itself, for the request that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The four real providers, with their defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProviderKind {
    /// Vast.ai.
    VastAi,
    /// Lambda Cloud.
    Lambda,
    /// RunPod.
    RunPod,
    /// Paperspace (DigitalOcean).
    Paperspace,
}

impl ProviderKind {
    /// All four.
    pub const ALL: [ProviderKind; 4] =
        [ProviderKind::VastAi, ProviderKind::Lambda, ProviderKind::RunPod, ProviderKind::Paperspace];

    /// tgp's name for it, the key of its config section.
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::VastAi => "vastai",
            ProviderKind::Lambda => "lambda",
            ProviderKind::RunPod => "runpod",
            ProviderKind::Paperspace => "paperspace",
        }
    }

    /// The real host root.
    pub fn default_url(self) -> &'static str {
        match self {
            ProviderKind::VastAi => "https://console.vast.ai",
            ProviderKind::Lambda => "https://cloud.lambda.ai",
            ProviderKind::RunPod => "https://api.runpod.io",
            ProviderKind::Paperspace => "https://api.paperspace.com",
        }
    }

    /// The variable that overrides the host root.
    pub fn url_variable(self) -> &'static str {
        match self {
            ProviderKind::VastAi => "TGP_VASTAI_URL",
            ProviderKind::Lambda => "TGP_LAMBDA_URL",
            ProviderKind::RunPod => "TGP_RUNPOD_URL",
            ProviderKind::Paperspace => "TGP_PAPERSPACE_URL",
        }
    }

    /// The variable holding the API key.
    pub fn key_variable(self) -> &'static str {
        match self {
            ProviderKind::VastAi => "VAST_API_KEY",
            ProviderKind::Lambda => "LAMBDA_API_KEY",
            ProviderKind::RunPod => "RUNPOD_API_KEY",
            ProviderKind::Paperspace => "PAPERSPACE_API_KEY",
        }
    }
}

/// One provider's section of the file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSection {
    /// Off means never used, even with a key.
    pub enabled: Option<bool>,
    /// Host root.
    pub url: Option<String>,
    /// A file holding the key.
    pub api_key_file: Option<PathBuf>,
    /// Provider-specific settings (Lambda's SSH key name, Paperspace's template, ...).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// One provider's resolved configuration.
#[derive(Clone, Debug)]
pub struct ProviderSettings {
    /// Which provider.
    pub kind: ProviderKind,
    /// Host root to append paths to.
    pub url: String,
    /// The key, when there is one.
    pub key: Option<ApiKey>,
    /// Provider-specific settings.
    pub options: BTreeMap<String, String>,
    /// Why it is not used, when it is not.
    pub disabled: Option<String>,
}

/// How long one provider call may take unless `request_timeout_ms` says otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the configuration cannot be used: which file, which provider or which option, and why. It
/// is its own type, not a `ProviderError`, because nothing was asked of a provider yet; a client
/// that refuses its settings says so with [`crate::providers::options::ClientOptions::refusal`].
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file cannot be read.
    #[error("cannot read the configuration file {path}")]
    Read {
        /// Which file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("{path}: {message}")]
    Parse {
        /// Which file.
        path: PathBuf,
        /// What is wrong, with its position.
        message: String,
    },
    /// A provider's `api_key_file` cannot be read.
    #[error("{provider}: cannot read api_key_file {path}")]
    KeyFile {
        /// Which provider's section.
        provider: &'static str,
        /// Which file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A client was built for a provider that has no key.
    #[error("{provider}: no API key (set {variable} or api_key_file)")]
    NoKey {
        /// Which provider.
        provider: &'static str,
        /// The variable that would hold it.
        variable: &'static str,
    },
    /// An option's value is not one the client can use.
    #[error("{provider} option {key} = {value:?}: expected {expected}")]
    BadOption {
        /// Which provider.
        provider: &'static str,
        /// Which option.
        key: &'static str,
        /// The value given.
        value: String,
        /// What the option takes.
        expected: String,
    },
    /// A file an option names cannot be used (Paperspace's `price_table`).
    #[error("{provider} option {key}: the file it names cannot be used")]
    OptionFile {
        /// Which provider.
        provider: &'static str,
        /// Which option.
        key: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The whole file: one optional section per provider.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    vastai: Option<ProviderSection>,
    lambda: Option<ProviderSection>,
    runpod: Option<ProviderSection>,
    paperspace: Option<ProviderSection>,
}

/// Resolves every provider from an optional file and the environment (`env` is a lookup, so tests
/// need not touch the process environment).
pub fn resolve(
    file: Option<&Path>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<ProviderSettings>, ConfigError> {
    let parsed: ConfigFile = match file {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
            toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })?
        }
        None => ConfigFile::default(),
    };
    let mut out = Vec::new();
    for kind in ProviderKind::ALL {
        let section = match kind {
            ProviderKind::VastAi => parsed.vastai.clone(),
            ProviderKind::Lambda => parsed.lambda.clone(),
            ProviderKind::RunPod => parsed.runpod.clone(),
            ProviderKind::Paperspace => parsed.paperspace.clone(),
        }
        .unwrap_or_default();
        let url = env(kind.url_variable()).or(section.url.clone()).unwrap_or_else(|| kind.default_url().to_string());
        let key = match (env(kind.key_variable()), &section.api_key_file) {
            (Some(k), _) if !k.trim().is_empty() => Some(ApiKey::new(k)),
            (_, Some(path)) => {
                Some(ApiKey::new(std::fs::read_to_string(path).map_err(|source| ConfigError::KeyFile {
                    provider: kind.name(),
                    path: path.clone(),
                    source,
                })?))
            }
            _ => None,
        };
        let disabled = if section.enabled == Some(false) {
            Some("disabled in the configuration".to_string())
        } else if key.is_none() {
            Some(format!("no API key (set {} or api_key_file)", kind.key_variable()))
        } else {
            None
        };
        out.push(ProviderSettings { kind, url, key, options: section.options, disabled });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{ApiKey, ProviderKind, resolve};

    #[test]
    fn keys_never_print() {
        let key = ApiKey::new("sk-live-123456\n");
        assert_eq!(key.expose(), "sk-live-123456");
        assert!(!format!("{key:?} {key}").contains("123456"));
        let settings = resolve(None, |v| (v == "LAMBDA_API_KEY").then(|| "secret-lambda".into())).unwrap();
        let printed = format!("{settings:?}");
        assert!(!printed.contains("secret-lambda"), "{printed}");
    }

    #[test]
    fn environment_overrides_the_file_and_no_key_disables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tgp.toml");
        std::fs::write(&path, "[vastai]\nurl = \"https://proxy.example\"\n[runpod]\nenabled = false\n").unwrap();
        let env = |v: &str| match v {
            "TGP_VASTAI_URL" => Some("http://127.0.0.1:8081".to_string()),
            "VAST_API_KEY" | "RUNPOD_API_KEY" => Some("k".to_string()),
            _ => None,
        };
        let all = resolve(Some(&path), env).unwrap();
        let by = |k: ProviderKind| all.iter().find(|s| s.kind == k).unwrap();
        assert_eq!(by(ProviderKind::VastAi).url, "http://127.0.0.1:8081");
        assert!(by(ProviderKind::VastAi).disabled.is_none());
        assert!(by(ProviderKind::RunPod).disabled.as_deref().unwrap().contains("disabled"));
        assert!(by(ProviderKind::Lambda).disabled.as_deref().unwrap().contains("LAMBDA_API_KEY"));
        assert_eq!(by(ProviderKind::Paperspace).url, "https://api.paperspace.com");
    }

    #[test]
    fn a_bad_file_says_where() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tgp.toml");
        std::fs::write(&path, "[vastai]\nurll = 1\n").unwrap();
        let err = resolve(Some(&path), |_| None).unwrap_err().to_string();
        assert!(err.contains("tgp.toml") && err.contains("urll"), "{err}");
    }
}
