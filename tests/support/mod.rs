//! Shared test support: a real nats-server per test, the real `tgp` binary as the controller,
//! and small helpers that talk to it over NATS the way any program would.
#![allow(dead_code)] // each test file uses a different part of this module

pub mod cluster;
pub mod journal_builder;
pub mod partition;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tgp::journal::{JournalReader, StartAt};
pub use tgp::nats_server::{NatsServer, Role};
use tgp_events::InstanceId;
use tgp_events::events::InstanceEvent;
use tgp_events::subjects::instance_events;
use tgp_testkit::market::MarketState;

/// A nats-server for one test; a clear failure when it is not installed.
/// The testkit's `tgp-dev` binary, beside `tgp` (`cargo test --workspace` builds it; a single
/// test run needs `cargo build -p tgp-testkit` first).
pub fn tgp_dev() -> PathBuf {
    let path = std::path::Path::new(env!("CARGO_BIN_EXE_tgp")).with_file_name("tgp-dev");
    assert!(
        path.exists(),
        "{} is not built: run `cargo build -p tgp-testkit` (or cargo test --workspace)",
        path.display()
    );
    path
}

pub fn nats() -> NatsServer {
    NatsServer::start().unwrap_or_else(|e| panic!("{e}"))
}

/// The journal key of the tgp processes of one test: `dir/journal.key`, made on first use (so a
/// restarted controller signs with the same key).
pub fn journal_key(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("journal.key");
    if !path.exists() {
        tgp::journal::JournalKey::create(&path).expect("a journal key");
    }
    path
}

/// A `tgp run` process against `server`, connected as the `tgp` role, on the simulated market
/// with a state file in `dir`.
pub struct ControllerProcess {
    child: Child,
    pub url: String,
    pub sim_state: PathBuf,
}

impl ControllerProcess {
    pub fn start(server: &NatsServer, dir: &std::path::Path) -> Self {
        Self::start_with(server, dir, &[])
    }

    /// Starts with extra `tgp run` arguments, and a secrets key kept in `dir` (made on first use),
    /// unless `extra` names one.
    pub fn start_with(server: &NatsServer, dir: &std::path::Path, extra: &[&str]) -> Self {
        Self::start_at(server.url(), &server.seed_file(Role::Tgp), dir, extra)
    }

    /// Starts against the server(s) at `url` (a comma-separated list for a cluster), connected
    /// with the `tgp` role's nkey seed file `tgp_seed`, with extra `tgp run` arguments.
    pub fn start_at(url: &str, tgp_seed: &std::path::Path, dir: &std::path::Path, extra: &[&str]) -> Self {
        let (process, lines) = Self::spawn_at(url, tgp_seed, dir, extra);
        let first = lines.recv_timeout(std::time::Duration::from_secs(300)).expect("tgp run prints a line");
        assert!(first.contains("tgp controller running"), "unexpected first line: {first}");
        process
    }

    /// As [`ControllerProcess::start_at`], without waiting: its stdout lines arrive on the
    /// receiver (a standby prints "tgp controller running" only once it leads).
    pub fn spawn_at(
        url: &str,
        tgp_seed: &std::path::Path,
        dir: &std::path::Path,
        extra: &[&str],
    ) -> (Self, std::sync::mpsc::Receiver<String>) {
        let sim_state = dir.join("simulated-market.json");
        let key = secrets_key(dir);
        let key_args: Vec<&std::ffi::OsStr> =
            if extra.contains(&"--secrets-key") { Vec::new() } else { vec!["--secrets-key".as_ref(), key.as_os_str()] };
        let mut child = Command::new(tgp_dev())
            .args(["run", "--market", "simulated", "--nats-url", url, "--sim-boot-time", "300ms"])
            .args(key_args)
            .args(if extra.contains(&"--poll-interval") { &[][..] } else { &["--poll-interval", "200ms"][..] })
            .args(if extra.contains(&"--settle-window") { &[][..] } else { &["--settle-window", "1s"][..] })
            .args(extra)
            .arg("--sim-state")
            .arg(&sim_state)
            .arg("--journal-key")
            .arg(journal_key(dir))
            .env("RUST_LOG", "warn")
            .env("NATS_NKEY", tgp_seed)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the tgp binary starts");
        let lines = lines_of(child.stdout.take().expect("piped stdout"));
        (ControllerProcess { child, url: url.to_string(), sim_state }, lines)
    }

    /// Kills the process the hard way (SIGKILL): no cleanup runs.
    pub fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("reaped");
    }

    /// The simulated market as the controller left it on disk.
    pub fn market(&self) -> MarketState {
        MarketState::read(&self.sim_state).unwrap_or_default()
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child's stdout, a line at a time, read on a thread of its own (so the child never blocks on
/// a full pipe, whether or not anyone reads the lines).
pub fn lines_of(stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    let (tell, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tell.send(line);
        }
    });
    lines
}

/// `tgp run` (the product binary) against `server` as the `tgp` role, signing with the journal key
/// and sealing with the secrets key of `dir`, logging at `TGP_TEST_LOG` (default `warn`). Tests
/// add their own flags and provider URLs, and spawn it.
pub fn tgp_run(server: &NatsServer, dir: &std::path::Path) -> Command {
    tgp_run_at(server.url(), &server.seed_file(Role::Tgp), dir)
}

/// [`tgp_run`], connected to NATS at `url` (a cluster's nodes, or proxies in front of them) with
/// the `tgp` role's nkey seed file `tgp_seed`.
pub fn tgp_run_at(url: &str, tgp_seed: &std::path::Path, dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tgp"));
    command
        .args(["run", "--nats-url", url])
        .arg("--journal-key")
        .arg(journal_key(dir))
        .arg("--secrets-key")
        .arg(secrets_key(dir))
        .env("NATS_NKEY", tgp_seed)
        .env("RUST_LOG", std::env::var("TGP_TEST_LOG").unwrap_or_else(|_| "warn".into()));
    command
}

/// The secrets key file of a test's `dir`, made (mode 0600) the first time.
pub fn secrets_key(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("secrets.key");
    if !path.exists() {
        tgp::secrets::keygen(&path).expect("a secrets key is written");
    }
    path
}

/// The environment that makes a `tgp` command connect to `server` as `role` (its nkey seed file),
/// whatever the test's own environment holds.
pub fn as_role(server: &NatsServer, role: Role) -> Vec<(&'static str, std::ffi::OsString)> {
    vec![("NATS_NKEY", server.seed_file(role).into_os_string())]
}

/// A connection as `role`, and its JetStream context.
pub async fn connect_as(server: &NatsServer, role: Role) -> (async_nats::Client, async_nats::jetstream::Context) {
    let client = tgp::connect::connect_with(&server.options(role), "tgp-test").await.expect("connects");
    let js = tgp::connect::jetstream(client.clone());
    (client, js)
}

/// A connection as the `client` role (what a user of tgp has), and its JetStream context.
pub async fn client(server: &NatsServer) -> (async_nats::Client, async_nats::jetstream::Context) {
    connect_as(server, Role::Client).await
}

/// A connection as the `admin` role, for tests that write raw messages on purpose (forgeries,
/// garbage) or read what no client may (dead letters).
pub async fn admin(server: &NatsServer) -> (async_nats::Client, async_nats::jetstream::Context) {
    connect_as(server, Role::Admin).await
}

/// A request with a JSON body; the JSON answer.
pub async fn request(client: &async_nats::Client, subject: &str, body: Value) -> Value {
    let reply =
        tokio::time::timeout(Duration::from_secs(10), client.request(subject.to_string(), body.to_string().into()))
            .await
            .expect("answered within 10 s")
            .expect("request delivered");
    serde_json::from_slice(&reply.payload).expect("JSON reply")
}

/// Polls `tgp.api.get` until the instance reaches `state` (15 s at most).
pub async fn wait_for_state(client: &async_nats::Client, id: &str, state: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..150 {
        last = request(client, "tgp.api.get", serde_json::json!({"instance_id": id})).await;
        if last["state"] == state {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("instance {id} never reached {state}; last answer {last}")
}

/// Every event journaled for an instance, in order.
pub async fn journaled(js: &async_nats::jetstream::Context, id: &str) -> Vec<InstanceEvent> {
    let id: InstanceId = id.parse().expect("an instance id");
    let reader = JournalReader::open(js).await.expect("journal exists");
    let mut commits = reader.commits(&instance_events(&id), StartAt::Beginning).await.expect("readable");
    let mut events = Vec::new();
    while let Some(next) = commits.next().await {
        let (_, _, commit) = next.expect("decodes");
        events.extend(commit.events.into_iter().map(|(_, event)| event));
    }
    events
}

/// The type names of a list of events.
pub fn types(events: &[InstanceEvent]) -> Vec<&'static str> {
    events.iter().map(InstanceEvent::type_name).collect()
}

/// A valid launch body.
pub fn launch_body(gpu: &str, policy: &str) -> Value {
    serde_json::json!({"gpu_type": gpu, "gpu_count": 1, "max_hourly_price": "3.00", "spot_policy": policy})
}
