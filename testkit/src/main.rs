//! `tgp-dev`: tgp on the testkit's markets, the demo, the simulation and the benchmarks.
#![forbid(unsafe_code)]

use clap::Parser;
use tgp_testkit::dev;

fn main() -> std::process::ExitCode {
    let args = dev::Cli::parse();
    tgp::cli::init_logging(args.default_log_filter());
    match dev::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
