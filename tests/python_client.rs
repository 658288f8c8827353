//! A client written without tgp's code (Python, nats-py, following only docs/events.md) launches
//! an instance, follows its events and terminates it through the command stream.

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::*;

/// The Python with nats-py: `TGP_PYTHON`, else the repository's `.venv` (made by `scripts/test`),
/// else `python3`.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("TGP_PYTHON") {
        return p.into();
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if venv.exists() { venv } else { "python3".into() }
}

#[test]
fn a_python_program_launches_and_follows_an_instance_from_the_docs_alone() {
    let server = nats();
    let _controller = ControllerProcess::start(&server, &server.dir());
    let python = python();
    let check = Command::new(&python).args(["-c", "import nats, nkeys"]).output().expect("python runs");
    assert!(
        check.status.success(),
        "{} lacks nats-py or nkeys: run scripts/test (it installs them into .venv) or `pip install nats-py nkeys`",
        python.display()
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/follow_launch.py");
    // It connects as a user of tgp does: the `client` role's nkey.
    let out = Command::new(&python)
        .arg(script)
        .arg(server.url())
        .arg(server.seed_file(Role::Client))
        .output()
        .expect("the script runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "script failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("5 Running") && stdout.contains("python subscriber: OK"), "{stdout}");
}
