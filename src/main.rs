//! The `tgp` command line: the controller (`run`), the demo, the client commands, and benchmarks.
#![forbid(unsafe_code)]

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| args.default_log_filter().to_string());
    // async-nats logs whole messages at trace, launch commands (with their env values) among
    // them: it is capped at debug whatever RUST_LOG says, so no level prints a secret.
    let filter = tracing_subscriber::EnvFilter::new(filter)
        .add_directive("async_nats=debug".parse().expect("a directive"))
        .add_directive("async_nats::connection=debug".parse().expect("a directive"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
