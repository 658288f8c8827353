//! A standby controller: two `tgp run` processes on one journal and one provider (the Vast.ai
//! fake, shared). One leads; the other stands by without consuming a command or calling the
//! provider. The leader is killed with SIGKILL under load; the standby takes over, and an
//! interruption injected a second after the kill is still relaunched. Counted at the fake: every
//! attempt launched once, and every machine left running belongs to a live chain. A leader paused
//! (SIGSTOP) or cut off from NATS by a partition (proxies in front of a 3-node cluster that stop
//! passing bytes) makes no provider call once its lease could have lapsed.

mod support;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;
use tgp_testkit::fakes::FakeProvider;
use tgp_testkit::fakes::vastai::{VastAiFake, VastAiFakeConfig};

/// One `tgp run` on the real Vast.ai client, pointed at the fake; its stdout lines arrive on
/// `lines`.
struct Tgp {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Tgp {
    /// Started under `name`; its Vast key is `key-<name>`, so the fake tells its calls apart.
    fn start(server: &NatsServer, dir: &std::path::Path, name: &str, vast: &VastAiFake) -> Tgp {
        Tgp::start_at(server.url(), &server.seed_file(Role::Tgp), dir, name, vast, "2s", &[])
    }

    /// As [`Tgp::start`], connected to NATS at `url` (a server, a cluster, or proxies that can cut
    /// it off) with the `tgp` role's seed file `tgp_seed`, the lease's time to live `ttl`
    /// (`--lease-ttl`) and `extra` options.
    fn start_at(
        url: &str,
        tgp_seed: &std::path::Path,
        dir: &std::path::Path,
        name: &str,
        vast: &VastAiFake,
        ttl: &str,
        extra: &[&str],
    ) -> Tgp {
        let mut child = tgp_run_at(url, tgp_seed, dir)
            .args(["--name", name, "--lease-ttl", ttl])
            .args(extra)
            // Vast allows one request a second (its RateLimits): polls leave room for the rest.
            .args(["--poll-interval", "3s", "--settle-window", "6s"])
            .env("TGP_VASTAI_URL", vast.url())
            .env("VAST_API_KEY", format!("key-{name}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("tgp run starts");
        let lines = lines_of(child.stdout.take().expect("piped stdout"));
        Tgp { child, lines }
    }

    /// Whether it says it runs (leads) within `wait`.
    fn leads_within(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains("tgp controller running") => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    fn kill_9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// Sends `signal` (`STOP`, `CONT`) to the process.
    fn signal(&self, signal: &str) {
        let sent = Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status();
        assert!(sent.expect("kill runs").success(), "SIG{signal} sent");
    }

    /// Its exit status, if it exits within `wait`.
    fn exits_within(&mut self, wait: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("waitable") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Tgp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The whole HTTP/1.1 response to `GET path` at `addr` (the probe closes the connection).
fn get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("the probe accepts");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// Waits (a minute at most: Vast allows one request a second) until `id` runs; its summary.
async fn running(client: &async_nats::Client, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = request(client, "tgp.api.get", serde_json::json!({"instance_id": id})).await;
        if now["state"] == "running" {
            return now;
        }
        assert!(Instant::now() < deadline, "{id} never reached running: {now}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A request as a client of an HA deployment makes it: re-sent when it times out, since a leader
/// that froze still holds its subscriptions until the server drops its connection, and NATS may
/// hand a request to it.
async fn ask(client: &async_nats::Client, subject: &str, body: Value) -> Value {
    for _ in 0..20 {
        match client.request(subject.to_string(), body.to_string().into()).await {
            Ok(reply) => return serde_json::from_slice(&reply.payload).expect("JSON reply"),
            Err(e) => eprintln!("{subject}: {e}; asking again"),
        }
    }
    panic!("{subject} never answered")
}

/// The leader epoch of every instance commit, in journal order.
async fn epochs_in_order(js: &async_nats::jetstream::Context) -> Vec<u64> {
    use futures::StreamExt;
    let stream = js.get_stream("TGP_EVENTS").await.unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: "tgp.events.instance.>".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let pending = consumer.cached_info().num_pending as usize;
    let mut messages = consumer.messages().await.unwrap().take(pending);
    let mut epochs = Vec::new();
    while let Some(message) = messages.next().await {
        let message = message.unwrap();
        let epoch =
            message.headers.as_ref().and_then(|h| h.get("Tgp-Leader-Epoch")).map(|v| v.as_str().parse().unwrap());
        epochs.push(epoch.expect("every commit names its leader's epoch"));
    }
    epochs
}

/// Launch requests the fake received, by the attempt label they carry.
fn launches_by_label(vast: &VastAiFake) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for body in vast.created_bodies() {
        let label = body["label"].as_str().unwrap_or_default().to_string();
        *counts.entry(label).or_default() += 1;
    }
    counts
}

/// The Vast fake two tgp share: many offers (each one host, rented once; the tests need several
/// machines of one type), and any key, each tgp having its own, so its log tells whose calls it
/// received.
async fn vast_for_two() -> VastAiFake {
    VastAiFake::start(VastAiFakeConfig {
        boot_delay: Duration::from_millis(300),
        offers: 400,
        api_key: None,
        ..Default::default()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_from_a_killed_leader_and_nothing_is_launched_twice_or_left() {
    let server = nats();
    let dir = tempfile::tempdir().unwrap();
    // Many offers: each is one host, rented once, and the test needs six machines of one type.
    let vast = vast_for_two().await;
    let mut leader = Tgp::start(&server, dir.path(), "first", &vast);
    assert!(leader.leads_within(Duration::from_secs(30)), "the first tgp leads");
    let standby = Tgp::start(&server, dir.path(), "second", &vast);
    assert!(!standby.leads_within(Duration::from_secs(3)), "the second stands by while the first leads");

    let (client, js) = client(&server).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let accepted = request(&client, "tgp.api.launch", launch_body("RTX4090", "on-demand-only")).await;
        ids.push(accepted["instance_id"].as_str().unwrap_or_else(|| panic!("accepted: {accepted}")).to_string());
    }
    let mut machines = Vec::new();
    for id in &ids {
        let running = running(&client, id).await;
        machines.push(running["provider_instance_id"].as_str().unwrap().to_string());
    }
    let before = launches_by_label(&vast);
    assert_eq!(before.len(), 3, "three attempts reached the provider: {before:?}");

    // Under load: launch commands still arriving on the command stream while the leader dies,
    // each with its idempotency key (the instance id).
    leader.kill_9();
    let killed_at = Instant::now();
    let later: Vec<String> = (0..2).map(|i| format!("after-kill-{i}")).collect();
    for id in &later {
        let publish = async_nats::jetstream::message::PublishMessage::build()
            .payload(launch_body("RTX4090", "on-demand-only").to_string().into())
            .message_id(id);
        js.send_publish("tgp.commands.launch", publish).await.unwrap().await.expect("the command is stored");
    }
    tokio::time::sleep(Duration::from_secs(1).saturating_sub(killed_at.elapsed())).await;
    assert!(vast.interrupt(&machines[0]), "the first machine is taken away a second after the kill");

    let took_over =
        tokio::task::spawn_blocking(move || (standby.leads_within(Duration::from_secs(20)), standby)).await.unwrap();
    let (led, _standby) = took_over;
    assert!(led, "the standby took over");
    let takeover = killed_at.elapsed();
    // `tgp status` names the new leader.
    let status = Command::new(env!("CARGO_BIN_EXE_tgp"))
        .args(["status", "--json", "--nats-url", server.url()])
        .envs(as_role(&server, Role::Auditor))
        .output()
        .expect("tgp status runs");
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let status: Value = serde_json::from_slice(&status.stdout).expect("JSON status");
    assert_eq!(status["leader"]["name"], "second", "{status}");

    // The interrupted chain is relaunched on a new machine by the new leader.
    let deadline = Instant::now() + Duration::from_secs(60);
    let relaunched = loop {
        let now: Value = request(&client, "tgp.api.get", serde_json::json!({"instance_id": ids[0]})).await;
        if now["state"] == "running" && now["provider_instance_id"].as_str() != Some(machines[0].as_str()) {
            break now;
        }
        assert!(Instant::now() < deadline, "the interrupted chain was not relaunched: {now}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(relaunched["state"], "running");

    // The chains the old leader started go on, and the commands sent while no one led are taken
    // by the new leader from the command stream.
    for id in ids[1..].iter().chain(&later) {
        running(&client, id).await;
    }
    let counts = launches_by_label(&vast);
    assert!(counts.values().all(|n| *n == 1), "an attempt was launched twice: {counts:?}");
    // No orphan: every machine running at the fake is the machine of a live chain.
    let listed: Value = request(&client, "tgp.api.list", serde_json::json!({})).await;
    let billed: std::collections::BTreeSet<String> = listed["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["provider_instance_id"].as_str().map(str::to_string))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let live: std::collections::BTreeSet<String> = vast.live_machines().into_iter().collect();
        let strays: Vec<_> = live.difference(&billed).collect();
        if strays.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "machines running that no live chain bills: {strays:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(counts.len(), 3 + 1 + 2, "the first three, the relaunch and the two sent during the takeover");
    eprintln!("takeover {takeover:?} after the kill (lease 2 s); {} launches, each once", counts.len());
}

/// A leader paused past its lease (SIGSTOP: a frozen VM, a partition) is replaced; when it
/// resumes it finds its fence closed and exits, and no commit of its epoch lands after the new
/// leader's first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_paused_past_its_lease_is_replaced_and_exits_when_it_resumes_without_acting() {
    let server = nats();
    let dir = tempfile::tempdir().unwrap();
    let vast = vast_for_two().await;
    let mut old = Tgp::start(&server, dir.path(), "old", &vast);
    assert!(old.leads_within(Duration::from_secs(30)), "the first tgp leads");
    let standby = Tgp::start(&server, dir.path(), "new", &vast);
    let (client, js) = client(&server).await;
    let first = request(&client, "tgp.api.launch", launch_body("RTX4090", "on-demand-only")).await;
    let first = first["instance_id"].as_str().unwrap().to_string();
    running(&client, &first).await;

    old.signal("STOP");
    let paused_at = Instant::now();
    let (led, _standby) =
        tokio::task::spawn_blocking(move || (standby.leads_within(Duration::from_secs(20)), standby)).await.unwrap();
    assert!(led, "the standby took over from the paused leader");
    let takeover = paused_at.elapsed();
    assert!(takeover >= Duration::from_millis(1600), "not before the lease could lapse: {takeover:?}");

    // With an idempotency key, so a launch re-sent after a timeout is the same launch.
    let mut body = launch_body("RTX4090", "on-demand-only");
    body["idempotency_key"] = "after-the-pause".into();
    let second = ask(&client, "tgp.api.launch", body).await;
    let second = second["instance_id"].as_str().unwrap_or_else(|| panic!("accepted: {second}")).to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    while ask(&client, "tgp.api.get", serde_json::json!({"instance_id": second})).await["state"] != "running" {
        assert!(Instant::now() < deadline, "{second} never reached running");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The old leader wakes up with every timer overdue: its fence is closed before any runs.
    old.signal("CONT");
    let resumed_at = Instant::now();
    let status = tokio::task::spawn_blocking(move || old.exits_within(Duration::from_secs(10))).await.unwrap();
    let status = status.expect("the old leader exits when it finds its lease gone");
    assert!(!status.success(), "it exits with an error: {status}");

    let calls_after_resuming = vast
        .control()
        .seen()
        .into_iter()
        .filter(|call| call.at >= resumed_at && call.authorization.as_deref().is_some_and(|a| a.ends_with("key-old")))
        .count();
    assert_eq!(calls_after_resuming, 0, "the old leader called the provider after its lease was gone");
    let epochs = epochs_in_order(&js).await;
    assert!(epochs.windows(2).all(|w| w[0] <= w[1]), "a commit of an old epoch after a newer one: {epochs:?}");
    assert!(epochs.first() < epochs.last(), "two leaders wrote, one after the other: {epochs:?}");
    let counts = launches_by_label(&vast);
    assert!(counts.values().all(|n| *n == 1), "an attempt was launched twice: {counts:?}");
    eprintln!("takeover {takeover:?} after the pause (lease 2 s)");
}

/// While another process holds the lease (here one on another host that never answers), a
/// standby calls no provider and takes no command, but says who leads: `tgp.api.leader`
/// answers, and a command that finds no leader is told `not_leader` with the holder's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_no_command_and_names_the_leader() {
    let server = nats();
    let dir = tempfile::tempdir().unwrap();
    let vast = VastAiFake::start(VastAiFakeConfig { api_key: None, ..Default::default() }).await.unwrap();
    let (_, admin) = admin(&server).await;
    let lease = admin
        .create_key_value(async_nats::jetstream::kv::Config {
            bucket: "tgp_leader".into(),
            history: 1,
            max_age: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .unwrap();
    let ghost = serde_json::json!({"name": "ghost", "host": "elsewhere", "pid": 1, "since": "2026-12-03T09:00:00Z"});
    let epoch = lease.put("controller", ghost.to_string().into()).await.unwrap();
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let standby = Tgp::start_at(
        server.url(),
        &server.seed_file(Role::Tgp),
        dir.path(),
        "second",
        &vast,
        "120s",
        &["--ready-addr", &probe.to_string()],
    );

    let (client, _) = client(&server).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let who = loop {
        match client.request("tgp.api.leader", "{}".into()).await {
            Ok(reply) => break serde_json::from_slice::<Value>(&reply.payload).unwrap(),
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => panic!("tgp.api.leader never answered: {e}"),
        }
    };
    assert_eq!(who["leader"]["name"], "ghost", "{who}");
    assert_eq!(who["leader"]["epoch"], epoch, "{who}");
    assert_eq!(who["answered_by"], "second", "{who}");
    assert_eq!(who["answerer_leads"], false, "{who}");
    assert_eq!(who["answerer_ready"], true, "its index caught up with the (empty) journal: {who}");
    let ready = get(probe, "/ready");
    assert!(ready.starts_with("HTTP/1.1 200 OK\r\n"), "a warm standby is ready: {ready}");
    assert!(ready.ends_with("\r\n\r\nwarm standby: can take over at once\n"), "{ready}");

    let list = Command::new(env!("CARGO_BIN_EXE_tgp"))
        .args(["list", "--nats-url", server.url()])
        .envs(as_role(&server, Role::Client))
        .output()
        .expect("tgp list runs");
    let said = String::from_utf8_lossy(&list.stderr);
    assert!(!list.status.success(), "no controller takes the request");
    assert!(said.contains("not_leader") && said.contains("second stands by") && said.contains("ghost"), "{said}");
    assert!(!standby.leads_within(Duration::from_secs(1)), "the standby does not lead while the lease is held");
    assert!(vast.control().seen().is_empty(), "a standby called the provider: {:?}", vast.control().seen());
}

/// A leader cut off from NATS by a partition runs on, unlike a paused one: its own clock must stop
/// it acting once its lease could have lapsed, since nothing from NATS will tell it. It makes no
/// provider call from then on, through the partition and after it heals, when it finds the lease
/// held by the standby and exits. On the 3-node cluster, with R3 streams: the old leader reaches
/// each node through a proxy, and the cut takes all three, as a partition of its machine would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_partitioned_from_nats_calls_no_provider_once_its_lease_could_lapse() {
    let cluster = support::cluster::NatsCluster::start(3);
    let seed = cluster.seed_file(Role::Tgp);
    let dir = tempfile::tempdir().unwrap();
    let vast = vast_for_two().await;
    let mut network = Vec::new();
    for node in 0..3 {
        network.push(support::partition::Partition::to(&cluster.client_url(node)).await);
    }
    let through_proxies = network.iter().map(|proxy| proxy.url()).collect::<Vec<_>>().join(",");
    let ttl = Duration::from_secs(2);
    let r3 = ["--replicas", "3"];
    let mut old = Tgp::start_at(&through_proxies, &seed, dir.path(), "old", &vast, "2s", &r3);
    assert!(old.leads_within(Duration::from_secs(60)), "the first tgp leads");
    let standby = Tgp::start_at(&cluster.url(), &seed, dir.path(), "new", &vast, "2s", &r3);
    let (client, js) = cluster.connect(Role::Client).await;
    let first = request(&client, "tgp.api.launch", launch_body("RTX4090", "on-demand-only")).await;
    let first = first["instance_id"].as_str().unwrap().to_string();
    running(&client, &first).await;
    let polled = |key: &str, since: Instant| {
        vast.control()
            .seen()
            .into_iter()
            .filter(|call| call.at >= since && call.authorization.as_deref().is_some_and(|a| a.ends_with(key)))
            .count()
    };
    assert!(polled("key-old", Instant::now() - Duration::from_secs(10)) > 0, "the leader polls the provider");

    network.iter().for_each(|proxy| proxy.cut());
    let cut_at = Instant::now();
    let (led, _standby) =
        tokio::task::spawn_blocking(move || (standby.leads_within(Duration::from_secs(20)), standby)).await.unwrap();
    assert!(led, "the standby took over from the cut-off leader");
    // The partition lasts well past the takeover: the old leader's polls (every 3 s) and renewals
    // (which time out) keep coming due all along.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let lapsed_at = cut_at + ttl;
    assert_eq!(polled("key-old", lapsed_at), 0, "the cut-off leader called the provider after its lease could lapse");
    assert!(polled("key-new", lapsed_at) > 0, "the new leader polls the provider");

    network.iter().for_each(|proxy| proxy.heal());
    let status = tokio::task::spawn_blocking(move || old.exits_within(Duration::from_secs(30))).await.unwrap();
    let status = status.expect("the old leader exits once it learns its lease is gone");
    assert!(!status.success(), "it exits with an error: {status}");
    assert_eq!(polled("key-old", lapsed_at), 0, "the old leader called the provider after the partition healed");
    let epochs = epochs_in_order(&js).await;
    assert!(epochs.windows(2).all(|w| w[0] <= w[1]), "a commit of an old epoch after a newer one: {epochs:?}");
    running(&client, &first).await;
}
