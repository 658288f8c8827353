//! `tgp status`: who leads (the holder of the controller lease) and since when, and how far each
//! projection's saved checkpoint is behind the journal.

use anyhow::Context as _;
use clap::Args;
use serde_json::json;
use tgp_events::subjects::EVENTS_STREAM;

use super::NatsArgs;
use crate::projections::runner::CHECKPOINT_BUCKET;

/// `tgp status`'s options.
#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    nats: NatsArgs,
    /// Print JSON instead of lines.
    #[arg(long)]
    json: bool,
}

/// The projections whose checkpoints are shown, in the order shown.
const PROJECTIONS: [&str; 3] = ["live", "cost", "pricing"];

/// Shows the leader and the projections' lag, for an operator deciding whether a hand-over went
/// through. Reads only: the auditor role may read the lease and the checkpoints.
pub async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let client = args.nats.connect("tgp-status").await?;
    let js = crate::connect::jetstream(client);
    let leader = crate::leader::holder(&js).await?;
    let last = js.get_stream(EVENTS_STREAM).await?.info().await?.state.last_sequence;
    // tgp creates the bucket at start-up with the rest of its layout: missing or unreadable is an
    // error to show, never "no checkpoint".
    let checkpoints = js
        .get_key_value(CHECKPOINT_BUCKET)
        .await
        .with_context(|| format!("reading the checkpoint bucket {CHECKPOINT_BUCKET} (has tgp run started here?)"))?;
    let mut lags = Vec::new();
    for name in PROJECTIONS {
        let saved = checkpoints.get(name).await?.and_then(|v| String::from_utf8_lossy(&v).parse::<u64>().ok());
        lags.push((name, saved));
    }
    if args.json {
        let projections: Vec<_> = lags
            .iter()
            .map(|(name, saved)| json!({"name": name, "checkpoint": saved, "behind": saved.map(|s| last.saturating_sub(s))}))
            .collect();
        let leader = leader.map(
            |(holder, _)| json!({"name": holder.name, "host": holder.host, "pid": holder.pid, "since": holder.since}),
        );
        println!("{}", json!({"leader": leader, "journal_last_sequence": last, "projections": projections}));
        return Ok(());
    }
    match leader {
        Some((holder, _)) => println!(
            "leader: {} (host {}, pid {}) since {}",
            holder.name,
            holder.host,
            holder.pid,
            holder.since.format("%Y-%m-%d %H:%M:%S UTC")
        ),
        None => println!("leader: none (no tgp holds the lease; a running standby takes it at its next look)"),
    }
    println!("journal: last stream sequence {last}");
    for (name, saved) in lags {
        match saved {
            Some(saved) => println!(
                "projection {name}: checkpoint at {saved}, {} commits behind the journal (the leader's live state is ahead of its checkpoint)",
                last.saturating_sub(saved)
            ),
            None => println!("projection {name}: no checkpoint yet (it is built from the whole journal)"),
        }
    }
    Ok(())
}
