//! Argument parsing and dispatch. Each command family lives in its own file.

mod audit;
mod bench;
mod bench_launch;
mod client;
mod controller;
mod demo;
mod offers;
mod sim;

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// tgp: rent GPUs across cloud marketplaces at the cheapest fitting price, keep them alive through
/// spot interruptions, and account for every cent. Programs talk to tgp over NATS (see
/// docs/events.md); these commands are the same calls for people.
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
    /// repository's nats.conf and a temporary store) and says where it listens.
    Run(controller::RunArgs),
    /// Start everything on the four fake providers and watch several instances live their lives.
    Demo(controller::DemoArgs),
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
    /// Benchmarks measured against raw NATS in the same run.
    Bench(controller::BenchArgs),
    /// Simulate many instances for hours on a misbehaving market, on a virtual clock, in seconds:
    /// seeded (the same seed gives the same events) and checked.
    Sim(sim::SimArgs),
}

/// Where the NATS server is.
#[derive(Args, Clone)]
pub struct NatsArgs {
    /// NATS server URL, e.g. nats://127.0.0.1:4222.
    #[arg(long, env = "NATS_URL")]
    pub nats_url: Option<String>,
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
            // A simulation's misfortunes are the point, not news: its summary reports them.
            Command::Sim(_) => "error",
            _ => "warn",
        }
    }
}

/// Runs the chosen command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => controller::run(args),
        Command::Demo(args) => controller::demo(args),
        Command::Bench(args) => controller::bench(args),
        Command::Sim(args) => sim::sim(args),
        Command::Offers(args) => client::block_on(offers::offers(args)),
        Command::Launch(args) => client::block_on(client::launch(args)),
        Command::Terminate(args) => client::block_on(client::terminate(args)),
        Command::Watch(args) => client::block_on(client::watch(args)),
        Command::Get(args) => client::block_on(client::get(args)),
        Command::List(args) => client::block_on(client::list(args)),
        Command::Audit(args) => client::block_on(audit::audit(args)),
        Command::Prices(args) => client::block_on(audit::prices(args)),
        Command::Projections(args) => client::block_on(audit::projections(args)),
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
