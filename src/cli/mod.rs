//! `tgp`'s command line: argument parsing and dispatch, one file per command family. A library
//! module because `tgp-dev` (the testkit's development binary) reuses `run`'s and `offers`'
//! options and hosting on its fake and simulated markets.

mod audit;
mod client;
pub mod controller;
mod journal;
mod needs;
mod nkeys;
pub mod offers;
mod offers_table;
mod status;

pub use client::list_all;

use std::path::PathBuf;
use std::time::Duration;

use crate::connect::{Auth, NatsOptions, Secret, Tls};
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

/// tgp: rent GPUs across cloud marketplaces at the cheapest fitting price, keep them alive through
/// spot interruptions, and account for every cent. Programs talk to tgp over NATS (see
/// docs/events.md); these commands are the same calls for people.
///
/// Without provider accounts, `tgp-dev` (cargo build -p tgp-testkit) runs the same controller on
/// local fake providers, and hosts the demo, the simulation and the benchmarks.
#[derive(Parser)]
#[command(version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller: journal, instance actors, command intake and the tgp.api service.
    ///
    /// Without --nats-url or NATS_URL it starts a private nats-server (from PATH, with the
    /// repository's nats.conf, a temporary store and fresh nkeys for its roles), connects as
    /// `tgp`, and says where it listens and where the client's and auditor's nkey seeds are.
    Run(controller::RunArgs),
    /// Offers across every enabled provider, cheapest first, with a line per provider.
    Offers(offers::OffersArgs),
    /// Launch an instance and follow it until it runs; prints how to connect.
    Launch(client::LaunchArgs),
    /// Terminate an instance (in any state) and wait until the provider confirms.
    Terminate(client::TerminateArgs),
    /// Print lifecycle events as they happen, or replay them from a sequence or a time.
    Watch(client::WatchArgs),
    /// Show one instance.
    Get(client::GetArgs),
    /// List the instances the controller manages.
    List(client::ListArgs),
    /// Cost of a time range, replayed from the journal, grouped, as a table, CSV or JSON.
    Audit(audit::AuditArgs),
    /// Prices actually paid, per provider, GPU, region and spot (from the controller).
    Prices(audit::PricesArgs),
    /// Manage projections (rebuild one from the journal).
    Projections(audit::ProjectionsArgs),
    /// Who leads (the controller lease's holder) and since when, and how far each projection's
    /// checkpoint is behind the journal. The auditor role is enough.
    Status(status::StatusArgs),
    /// Check the journal: list the messages that do not decode and were quarantined.
    Journal(journal::JournalArgs),
    /// Make a fresh nkey for each NATS role (tgp, client, auditor, admin): the seed files and the
    /// `nkeys.conf` that `nats.conf` includes (`scripts/dev-creds` runs it).
    Nkeys(nkeys::NkeysArgs),
    /// Keys that seal launches' env values in the journal.
    Secrets(SecretsArgs),
}

/// `tgp secrets`.
#[derive(Args)]
struct SecretsArgs {
    #[command(subcommand)]
    command: SecretsCommand,
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Write a new random key to FILE (mode 0600; never overwrites), and print its id. Give it to
    /// `tgp run --secrets-key FILE`; keep it as long as the journal holds values it sealed.
    Keygen {
        /// Where to write the key.
        file: PathBuf,
    },
}

/// The help heading of the NATS connection flags (per flag: a struct-wide heading would carry
/// over to the options declared after them).
const NATS_HEADING: &str = "NATS connection";

/// Where the NATS server is and how to authenticate: the same options, and the nats CLI's
/// environment variable names, on every command that talks to NATS. Secrets come from files or
/// the environment, never from the command line (where `ps` would show them).
#[derive(Args, Clone)]
pub struct NatsArgs {
    /// NATS server URL(s), comma-separated: nats://host:4222, or tls://host:4222 to require TLS.
    /// May carry user:password@ or token@ (never printed).
    #[arg(long, env = "NATS_URL", hide_env_values = true, help_heading = NATS_HEADING)]
    pub nats_url: Option<String>,
    /// A .creds file (user JWT and nkey seed) to authenticate with.
    #[arg(long, env = "NATS_CREDS", help_heading = NATS_HEADING)]
    pub nats_creds: Option<PathBuf>,
    /// A file holding an nkey seed (SU...) to authenticate with.
    #[arg(long, env = "NATS_NKEY", help_heading = NATS_HEADING)]
    pub nats_nkey: Option<PathBuf>,
    /// User to authenticate as; the password is read from --nats-password-file or NATS_PASSWORD.
    #[arg(long, env = "NATS_USER", help_heading = NATS_HEADING)]
    pub nats_user: Option<String>,
    /// File holding --nats-user's password (or set NATS_PASSWORD).
    #[arg(long, help_heading = NATS_HEADING)]
    pub nats_password_file: Option<PathBuf>,
    /// File holding a token to authenticate with (or set NATS_TOKEN).
    #[arg(long, help_heading = NATS_HEADING)]
    pub nats_token_file: Option<PathBuf>,
    /// CA certificate file (PEM) to trust for the server's TLS certificate; makes TLS required.
    #[arg(long, env = "NATS_CA", help_heading = NATS_HEADING)]
    pub nats_ca: Option<PathBuf>,
    /// Client certificate file (PEM) for servers that verify clients; needs --nats-key.
    #[arg(long, env = "NATS_CERT", help_heading = NATS_HEADING)]
    pub nats_cert: Option<PathBuf>,
    /// The client certificate's private key file (PEM).
    #[arg(long, env = "NATS_KEY", help_heading = NATS_HEADING)]
    pub nats_key: Option<PathBuf>,
}

/// A secret from a file (trimmed), or else from an environment variable.
fn secret(file: Option<&PathBuf>, var: &str, what: &str) -> anyhow::Result<Option<Secret>> {
    if let Some(path) = file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading the {what} file {}", path.display()))?;
        let text = text.trim();
        anyhow::ensure!(!text.is_empty(), "the {what} file {} is empty", path.display());
        return Ok(Some(Secret::new(text)));
    }
    Ok(std::env::var(var).ok().filter(|v| !v.is_empty()).map(Secret::new))
}

impl NatsArgs {
    /// The connection options, or `None` when no server is given. Refuses two ways to
    /// authenticate at once rather than picking one.
    pub fn options(&self) -> anyhow::Result<Option<NatsOptions>> {
        let Some(url) = &self.nats_url else {
            return Ok(None);
        };
        let password = secret(self.nats_password_file.as_ref(), "NATS_PASSWORD", "password")?;
        let token = secret(self.nats_token_file.as_ref(), "NATS_TOKEN", "token")?;
        let mut ways = Vec::new();
        if let Some(path) = &self.nats_creds {
            ways.push(("--nats-creds (NATS_CREDS)", Auth::CredsFile(path.clone())));
        }
        if let Some(path) = &self.nats_nkey {
            ways.push(("--nats-nkey (NATS_NKEY)", Auth::NkeySeedFile(path.clone())));
        }
        match (&self.nats_user, password) {
            (Some(user), Some(password)) => {
                ways.push(("--nats-user (NATS_USER)", Auth::UserPassword { user: user.clone(), password }))
            }
            (Some(_), None) => anyhow::bail!(
                "--nats-user (NATS_USER) needs a password: --nats-password-file or NATS_PASSWORD \
                 (for a token, use --nats-token-file or NATS_TOKEN)"
            ),
            (None, Some(_)) => anyhow::bail!("a NATS password is given without --nats-user (NATS_USER)"),
            (None, None) => {}
        }
        if let Some(token) = token {
            ways.push(("--nats-token-file (NATS_TOKEN)", Auth::Token(token)));
        }
        if ways.len() > 1 {
            let names: Vec<&str> = ways.iter().map(|(name, _)| *name).collect();
            anyhow::bail!("give one way to authenticate to NATS, not {}", names.join(" and "));
        }
        Ok(Some(NatsOptions {
            url: url.clone(),
            auth: ways.pop().map_or(Auth::None, |(_, auth)| auth),
            tls: Tls { ca: self.nats_ca.clone(), cert: self.nats_cert.clone(), key: self.nats_key.clone() },
        }))
    }

    /// The options of a client command, which needs a server.
    pub fn required(&self) -> anyhow::Result<NatsOptions> {
        self.options()?.ok_or_else(|| {
            anyhow::anyhow!(
                "no NATS server given: pass --nats-url or set NATS_URL to the server `tgp run` uses (it prints it at start)"
            )
        })
    }

    /// Connects a client command as `name`.
    pub async fn connect(&self, name: &str) -> anyhow::Result<async_nats::Client> {
        Ok(crate::connect::connect_with(&self.required()?, name).await?)
    }
}

/// Parses a span as launch commands write it (`15s`, `2m`, `1h30m`, `7d`: [`tgp_events::Span`]),
/// milliseconds for the short waits of tests and benches (`500ms`), or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Some(ms) = text.strip_suffix("ms") {
        return ms
            .parse()
            .map(Duration::from_millis)
            .map_err(|_| format!("{text:?}: milliseconds must be a whole number"));
    }
    // Plain seconds, zero included (a span is never zero, a wait may be).
    if let Ok(seconds) = text.strip_suffix('s').unwrap_or(text).parse() {
        return Ok(Duration::from_secs(seconds));
    }
    text.parse::<tgp_events::Span>().map(tgp_events::Span::to_std).map_err(|e| e.to_string())
}

impl Cli {
    /// Logs for the controller say what it does; client commands stay quiet unless asked.
    pub fn default_log_filter(&self) -> &'static str {
        match self.command {
            Command::Run(_) => "info",
            _ => "warn",
        }
    }
}

/// Logs to stderr, filtered by RUST_LOG or else `default`. async-nats logs whole messages at
/// trace, launch commands (with their env values) among them: its trace events are dropped
/// whatever RUST_LOG says, so no level prints a secret. `tgp` and `tgp-dev` both log this way.
pub fn init_logging(default: &str) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| default.to_string());
    let no_nats_trace = tracing_subscriber::filter::filter_fn(|meta| {
        !(meta.target().starts_with("async_nats") && *meta.level() == tracing::Level::TRACE)
    });
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(no_nats_trace);
    tracing_subscriber::registry().with(tracing_subscriber::EnvFilter::new(filter)).with(fmt).init();
}

/// Runs the chosen command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => controller::run(args),
        Command::Secrets(SecretsArgs { command: SecretsCommand::Keygen { file } }) => {
            let id = crate::secrets::keygen(&file)?;
            println!("wrote secrets key {id} to {}", file.display());
            Ok(())
        }
        Command::Nkeys(args) => nkeys::nkeys(args),
        Command::Offers(args) => client::block_on(offers::offers(args)),
        Command::Launch(args) => client::block_on(client::launch(args)),
        Command::Terminate(args) => client::block_on(client::terminate(args)),
        Command::Watch(args) => client::block_on(client::watch(args)),
        Command::Get(args) => client::block_on(client::get(args)),
        Command::List(args) => client::block_on(client::list(args)),
        Command::Audit(args) => client::block_on(audit::audit(args)),
        Command::Prices(args) => client::block_on(audit::prices(args)),
        Command::Projections(args) => client::block_on(audit::projections(args)),
        Command::Status(args) => client::block_on(status::status(args)),
        Command::Journal(args) => client::block_on(journal::journal(args)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_spans_milliseconds_or_seconds() {
        for (text, expected) in
            [("500ms", 500), ("0s", 0), ("15", 15_000), ("15s", 15_000), ("1h30m", 5_400_000), ("7d", 604_800_000)]
        {
            assert_eq!(parse_duration(text), Ok(Duration::from_millis(expected)), "{text}");
        }
        assert!(parse_duration("1.5ms").unwrap_err().contains("whole number"));
        assert!(parse_duration("3w").unwrap_err().contains("units are d, h, m and s"));
    }
}
