//! The `tgp` command line: the controller (`run`), the demo, the client commands, and benchmarks.
#![forbid(unsafe_code)]

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| args.default_log_filter().to_string());
    // async-nats logs whole messages at trace, launch commands (with their env values) among
    // them: its trace events are dropped whatever RUST_LOG says, so no level prints a secret.
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let no_nats_trace = tracing_subscriber::filter::filter_fn(|meta| {
        !(meta.target().starts_with("async_nats") && *meta.level() == tracing::Level::TRACE)
    });
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(no_nats_trace);
    tracing_subscriber::registry().with(tracing_subscriber::EnvFilter::new(filter)).with(fmt).init();
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
