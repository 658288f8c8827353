//! Connecting to NATS: one place that names the connection, authenticates it, waits for it, and
//! refuses a server too old for what tgp does.
//!
//! # Credentials
//! [`NatsOptions`] carries one way to authenticate ([`Auth`]: a `.creds` file, an nkey seed file,
//! user and password, or a token) and TLS files ([`Tls`]). A URL may carry `user:password@` or
//! `token@` instead; those are taken out of the URL before anything else sees it, so the client
//! library, its logs and tgp's errors only ever hold the bare address. Every URL tgp prints goes
//! through [`redact_url`]: `nats://user:***@host:4222`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::{ConnectErrorKind, ServerAddr};

use crate::journal::layout::{LayoutError, check_server_version};

/// A secret (password, token): kept out of `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret read from a file or the environment.
    pub fn new(text: impl Into<String>) -> Self {
        Secret(text.into())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// How tgp proves who it is to the NATS server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Auth {
    /// No credentials (or only those in the URL).
    #[default]
    None,
    /// A `.creds` file: a user JWT and its nkey seed (decentralized auth, `nsc`).
    CredsFile(PathBuf),
    /// A file holding an nkey seed (`SU...`), for servers that list users by public nkey.
    NkeySeedFile(PathBuf),
    /// A user and password.
    UserPassword {
        /// The user name.
        user: String,
        /// The password.
        password: Secret,
    },
    /// A token.
    Token(Secret),
}

/// TLS files. Any of them (or a `tls://` URL) makes TLS required.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tls {
    /// CA certificates (PEM) to trust for the server's certificate, besides the system's.
    pub ca: Option<PathBuf>,
    /// The client certificate (PEM), for servers that verify clients.
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub key: Option<PathBuf>,
}

impl Tls {
    fn any(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }
}

/// Where the NATS server is and how to authenticate to it: what every command that talks to
/// NATS is given. Its `Debug` output shows the URL redacted.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NatsOptions {
    /// Server URLs, comma-separated (`nats://`, `tls://`, or `host:port`); may carry credentials.
    pub url: String,
    /// Credentials given apart from the URL.
    pub auth: Auth,
    /// TLS files.
    pub tls: Tls,
}

impl std::fmt::Debug for NatsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsOptions")
            .field("url", &self.redacted_url())
            .field("auth", &self.auth)
            .field("tls", &self.tls)
            .finish()
    }
}

impl NatsOptions {
    /// Options with only a URL (which may carry `user:password@` or `token@`).
    pub fn from_url(url: impl Into<String>) -> Self {
        NatsOptions { url: url.into(), ..Default::default() }
    }

    /// The URL as it may be printed: passwords and tokens replaced by `***`.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

/// Why tgp could not connect. No variant's message holds a password or token.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL cannot be read.
    #[error("NATS URL {url} is not valid: {why}")]
    BadUrl {
        /// The URL, redacted.
        url: String,
        /// What is wrong.
        why: String,
    },
    /// The credentials or TLS options contradict each other or cannot be read.
    #[error("NATS credentials: {0}")]
    Credentials(String),
    /// The server refused the credentials.
    #[error(
        "NATS at {url} refused the credentials ({kind}): check the user and password, token, nkey or .creds file given"
    )]
    Refused {
        /// The URL, redacted.
        url: String,
        /// What the client said, without secrets.
        kind: ConnectErrorKind,
    },
    /// Nothing answered at the URL, or TLS failed.
    #[error("cannot connect to NATS at {url}: {source}")]
    Unreachable {
        /// The URL tried, redacted.
        url: String,
        /// What the client said.
        source: async_nats::ConnectError,
    },
    /// The server is too old or its JetStream layout is wrong.
    #[error(transparent)]
    Layout(#[from] LayoutError),
}

/// Connects to `url` (which may carry credentials) as `name` and checks the server version.
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client, ConnectError> {
    connect_with(&NatsOptions::from_url(url), name).await
}

/// Connects with `options` as `name` and checks the server version.
pub async fn connect_with(options: &NatsOptions, name: &str) -> Result<async_nats::Client, ConnectError> {
    connect_inbox(options, name, None).await
}

/// The inbox prefix of the controller's connection. Replies to tgp (the commands its intake pulls
/// from `TGP_COMMANDS`, which carry secrets, among them) go to subjects under it, and `nats.conf`
/// lets only the `tgp` role subscribe there; clients' replies stay under `_INBOX`.
pub const CONTROLLER_INBOX_PREFIX: &str = "_TGP_INBOX";

/// Connects the controller (`tgp run`) with `options`: like [`connect_with`], with its replies
/// under [`CONTROLLER_INBOX_PREFIX`].
pub async fn connect_controller(options: &NatsOptions) -> Result<async_nats::Client, ConnectError> {
    connect_inbox(options, "tgp-controller", Some(CONTROLLER_INBOX_PREFIX)).await
}

/// The connection the controller's lease is renewed on: its own, driven by a thread of its own
/// ([`crate::leader`]), with the controller's inbox prefix.
pub async fn connect_lease(options: &NatsOptions) -> Result<async_nats::Client, ConnectError> {
    connect_inbox(options, "tgp-lease", Some(CONTROLLER_INBOX_PREFIX)).await
}

async fn connect_inbox(
    options: &NatsOptions,
    name: &str,
    inbox: Option<&str>,
) -> Result<async_nats::Client, ConnectError> {
    let url = options.redacted_url();
    let (servers, in_url) = parse_servers(&options.url)?;
    let auth = match (in_url, &options.auth) {
        (Auth::None, given) => given.clone(),
        (from_url, Auth::None) => from_url,
        _ => {
            return Err(ConnectError::Credentials(
                "credentials are given both in the URL and as options; give them one way".into(),
            ));
        }
    };
    let mut connect =
        async_nats::ConnectOptions::new().name(name).connection_timeout(Duration::from_secs(5)).max_reconnects(None);
    if let Some(prefix) = inbox {
        connect = connect.custom_inbox_prefix(prefix);
    }
    connect = match auth {
        Auth::None => connect,
        Auth::CredsFile(path) => {
            readable(&path, "--nats-creds")?;
            connect
                .credentials_file(&path)
                .await
                .map_err(|e| ConnectError::Credentials(format!("cannot use the .creds file {}: {e}", path.display())))?
        }
        Auth::NkeySeedFile(path) => connect.nkey(read_seed(&path)?),
        Auth::UserPassword { user, password } => connect.user_and_password(user, password.0),
        Auth::Token(token) => connect.token(token.0),
    };
    if let Some(ca) = &options.tls.ca {
        readable(ca, "--nats-ca")?;
        connect = connect.add_root_certificates(ca.clone());
    }
    match (&options.tls.cert, &options.tls.key) {
        (Some(cert), Some(key)) => {
            readable(cert, "--nats-cert")?;
            readable(key, "--nats-key")?;
            connect = connect.add_client_certificate(cert.clone(), key.clone());
        }
        (None, None) => {}
        _ => {
            return Err(ConnectError::Credentials(
                "a client certificate needs both --nats-cert (NATS_CERT) and --nats-key (NATS_KEY)".into(),
            ));
        }
    }
    if options.tls.any() {
        connect = connect.require_tls(true);
    }
    let client = connect.connect(servers).await.map_err(|source| match source.kind() {
        kind @ (ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication) => {
            ConnectError::Refused { url: url.clone(), kind }
        }
        _ => ConnectError::Unreachable { url: url.clone(), source },
    })?;
    check_server_version(&client.server_info().version)?;
    Ok(client)
}

/// A JetStream context whose requests time out in 5 s (a timed-out append is settled by the
/// journal, see its docs).
pub fn jetstream(client: async_nats::Client) -> async_nats::jetstream::Context {
    async_nats::jetstream::ContextBuilder::new().timeout(Duration::from_secs(5)).build(client)
}

/// `text` as a URL, with `nats://` when it names no scheme (as the NATS clients read it).
fn parse_url(text: &str) -> Result<url::Url, url::ParseError> {
    if text.contains("://") { url::Url::parse(text) } else { url::Url::parse(&format!("nats://{text}")) }
}

fn decoded(part: &str) -> String {
    percent_encoding::percent_decode_str(part).decode_utf8_lossy().into_owned()
}

/// The bare server addresses, and the credentials the URLs carried (those of the first URL that
/// has any: `user:password@` or `token@`).
fn parse_servers(text: &str) -> Result<(Vec<ServerAddr>, Auth), ConnectError> {
    let bad = |why: String| ConnectError::BadUrl { url: redact_url(text), why };
    let mut servers = Vec::new();
    let mut auth = Auth::None;
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let mut url = parse_url(entry).map_err(|e| bad(e.to_string()))?;
        if auth == Auth::None && !url.username().is_empty() {
            auth = match url.password() {
                Some(password) => {
                    Auth::UserPassword { user: decoded(url.username()), password: Secret(decoded(password)) }
                }
                None => Auth::Token(Secret(decoded(url.username()))),
            };
        }
        url.set_username("")
            .and_then(|()| url.set_password(None))
            .map_err(|()| bad("cannot hold credentials".into()))?;
        servers.push(ServerAddr::from_url(url).map_err(|e| bad(e.to_string()))?);
    }
    if servers.is_empty() {
        return Err(bad("it names no server".into()));
    }
    Ok((servers, auth))
}

/// URLs as they may be printed: `nats://user:***@host`, `nats://***@host` (a token).
pub fn redact_url(text: &str) -> String {
    text.split(',')
        .map(|entry| {
            let entry = entry.trim();
            match parse_url(entry) {
                Ok(mut url) if !url.username().is_empty() => {
                    if url.password().is_some() {
                        let _ = url.set_password(Some("***"));
                    } else {
                        let _ = url.set_username("***");
                    }
                    url.to_string().trim_end_matches('/').to_string()
                }
                Ok(_) => entry.to_string(),
                // Unreadable: hide everything between the scheme and the last '@'.
                Err(_) => match (entry.find("://"), entry.rfind('@')) {
                    (Some(start), Some(at)) if at > start => format!("{}***{}", &entry[..start + 3], &entry[at..]),
                    (None, Some(at)) => format!("***{}", &entry[at..]),
                    _ => entry.to_string(),
                },
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn readable(path: &Path, option: &str) -> Result<(), ConnectError> {
    std::fs::metadata(path)
        .map(|_| ())
        .map_err(|e| ConnectError::Credentials(format!("{option} {}: {e}", path.display())))
}

/// The nkey seed in a seed file: its first line that is a user seed (`SU...`).
fn read_seed(path: &Path) -> Result<String, ConnectError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConnectError::Credentials(format!("--nats-nkey {}: {e}", path.display())))?;
    text.lines().map(str::trim).find(|l| l.starts_with("SU")).map(str::to_string).ok_or_else(|| {
        ConnectError::Credentials(format!(
            "--nats-nkey {}: no user nkey seed (a line starting SU) in it",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_tokens_never_print() {
        for (url, shown) in [
            ("nats://tgpuser:S3cretPw@127.0.0.1:4222", "nats://tgpuser:***@127.0.0.1:4222"),
            ("nats://s3cr3ttoken@host:4222", "nats://***@host:4222"),
            ("tls://u:p%40ss@a:1,tls://b:2", "tls://u:***@a:1,tls://b:2"),
            ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
            ("127.0.0.1:4222", "127.0.0.1:4222"),
            ("nats://u:S3cret@[bad", "nats://***@[bad"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn credentials_come_out_of_the_url() {
        let (servers, auth) = parse_servers("nats://tgp:p%40ss@127.0.0.1:4222, tls://b:4223").unwrap();
        assert_eq!(auth, Auth::UserPassword { user: "tgp".into(), password: Secret::new("p@ss") });
        assert_eq!(servers.len(), 2);
        assert!(servers.iter().all(|s| s.username().is_none() && s.password().is_none()));
        assert!(servers[1].tls_required());
        let (_, auth) = parse_servers("nats://tok@h:1").unwrap();
        assert_eq!(auth, Auth::Token(Secret::new("tok")));
        let err = parse_servers("nats://u:S3cret@h:notaport").unwrap_err().to_string();
        assert!(!err.contains("S3cret"), "{err}");
        assert!(format!("{:?}", Auth::Token(Secret::new("tok"))).contains("***"));
        let options = NatsOptions::from_url("nats://u:S3cret@h:1");
        assert!(!format!("{options:?}").contains("S3cret"), "{options:?}");
    }
}
