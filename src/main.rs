//! The `tgp` command line: the controller (`run`) and the client commands (`tgp::cli`).
#![forbid(unsafe_code)]

use clap::Parser;
use tgp::cli;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(args.default_log_filter());
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
