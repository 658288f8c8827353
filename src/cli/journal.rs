//! `tgp journal check`: reads the whole journal through the checking reader, so every message that
//! does not decode is quarantined, then lists every quarantined message. Exits non-zero when there
//! is one, so a monitor can run it.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use cqrs_es::persist::PersistenceError;
use tgp::journal::{JournalReader, Quarantined, StartAt};
use tgp_events::subjects::{EVENTS_SUBJECTS, QUARANTINE_BUCKET};

use super::NatsArgs;

#[derive(Args)]
pub struct JournalArgs {
    #[command(subcommand)]
    which: JournalCommand,
}

#[derive(Subcommand)]
enum JournalCommand {
    /// Read every journal message, quarantine the ones that do not decode, and list every
    /// quarantined message (exit status 1 when there is one).
    Check(CheckArgs),
}

#[derive(Args)]
struct CheckArgs {
    #[command(flatten)]
    nats: NatsArgs,
}

pub async fn journal(args: JournalArgs) -> anyhow::Result<()> {
    match args.which {
        JournalCommand::Check(args) => check(args).await,
    }
}

async fn check(args: CheckArgs) -> anyhow::Result<()> {
    let client = args.nats.connect("tgp-journal-check").await?;
    let js = tgp::connect::jetstream(client);
    let reader = JournalReader::open(&js).await?;
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
