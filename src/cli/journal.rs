//! `tgp journal check`: reads the whole journal through the checking reader, so every message that
//! does not decode is quarantined, then lists every quarantined message. Exits non-zero when there
//! is one, so a monitor can run it.

use std::collections::BTreeMap;

use crate::journal::{JournalKey, JournalReader, Quarantined, StartAt, signing};
use clap::{Args, Subcommand};
use cqrs_es::persist::PersistenceError;
use tgp_events::subjects::{EVENTS_SUBJECTS, QUARANTINE_BUCKET};

use super::NatsArgs;

#[derive(Args)]
pub struct JournalArgs {
    #[command(subcommand)]
    which: JournalCommand,
}

#[derive(Subcommand)]
enum JournalCommand {
    /// Read every journal message, quarantine the ones that do not decode or verify, and list
    /// every quarantined message (exit status 1 when there is one).
    Check(Box<CheckArgs>),
    /// Write a new journal signing key to FILE (readable by its owner only), for
    /// `tgp run --journal-key FILE`. Refuses to overwrite a file.
    Keygen {
        /// Where the key goes.
        file: std::path::PathBuf,
    },
}

#[derive(Args)]
struct CheckArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    pins: PinArgs,
}

/// Keys an auditor trusts instead of the ones recorded in the stream's metadata.
#[derive(Args)]
pub struct PinArgs {
    /// Verify signatures against this public key (base64, as `tgp journal keygen` prints it)
    /// instead of the keys in TGP_EVENTS's metadata; repeat for old keys after a rotation.
    #[arg(long = "journal-public-key", env = "TGP_JOURNAL_PUBLIC_KEY", value_delimiter = ',')]
    keys: Vec<String>,
}

impl PinArgs {
    /// `reader`, pinned to the keys given (unchanged when none are).
    pub fn apply(&self, reader: JournalReader) -> anyhow::Result<JournalReader> {
        if self.keys.is_empty() {
            return Ok(reader);
        }
        let keys = self.keys.iter().map(|k| signing::parse_public_key(k)).collect::<Result<Vec<_>, _>>()?;
        Ok(reader.pinned(&keys))
    }
}

pub async fn journal(args: JournalArgs) -> anyhow::Result<()> {
    match args.which {
        JournalCommand::Check(args) => check(*args).await,
        JournalCommand::Keygen { file } => {
            let key = JournalKey::create(&file)?;
            println!("wrote journal key {} to {} (mode 0600)", key.id(), file.display());
            println!(
                "public key (recorded in TGP_EVENTS's metadata when tgp run starts with it): {}",
                key.public_base64()
            );
            Ok(())
        }
    }
}

async fn check(args: CheckArgs) -> anyhow::Result<()> {
    let client = args.nats.connect("tgp-journal-check").await?;
    let js = crate::connect::jetstream(client);
    let reader = args.pins.apply(JournalReader::open(&js).await?)?;
    let mut read = reader.commits(EVENTS_SUBJECTS, StartAt::Beginning).await?;
    let total = read.remaining();
    let mut readable = 0u64;
    while let Some(message) = read.next_raw().await {
        match message {
            Ok(_) => readable += 1,
            // A commit this tgp cannot read fails other reads; it is recorded, and listed below.
            Err(PersistenceError::DeserializationError(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // What the bucket holds, and what this read found (a read-only credential cannot record).
    let mut all: BTreeMap<u64, Quarantined> =
        reader.quarantine().recorded().await?.into_iter().map(|q| (q.sequence, q)).collect();
    for q in reader.quarantine().found() {
        all.entry(q.sequence).or_insert(q);
    }
    println!("checked {total} journal message(s): {readable} readable, {} quarantined now", total - readable);
    if all.is_empty() {
        println!("no quarantined messages");
        return Ok(());
    }
    println!("quarantined messages ({QUARANTINE_BUCKET}), skipped by every read:");
    for q in all.values() {
        println!(
            "  seq {:<8} {:<40} stored {}  {} bytes  {}\n  {:<12} first bytes: {}",
            q.sequence,
            q.subject,
            q.stored_at.format("%Y-%m-%d %H:%M:%S"),
            q.bytes,
            q.reason,
            "",
            q.head
        );
    }
    anyhow::bail!("{} quarantined journal message(s)", all.len())
}
