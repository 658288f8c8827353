//! `tgp-dev` offers the development commands, and its `run` takes `tgp run`'s own options plus a
//! market. (Also what makes `cargo test --workspace` build the binary the product's tests drive.)

use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tgp-dev")).args(args).output().expect("tgp-dev runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into()
}

#[test]
fn tgp_dev_hosts_the_development_commands() {
    let text = help(&["--help"]);
    for command in ["run", "offers", "demo", "sim", "bench"] {
        assert!(text.contains(&format!("\n  {command} ")), "no {command} in:\n{text}");
    }
}

#[test]
fn tgp_dev_run_takes_tgp_runs_options_and_a_market() {
    let text = help(&["run", "--help"]);
    for option in ["--journal-key", "--poll-interval", "--absent-listings", "--market", "--sim-state"] {
        assert!(text.contains(option), "no {option} in:\n{text}");
    }
    assert!(text.contains("fakes") && text.contains("simulated"), "{text}");
}
