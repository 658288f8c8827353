//! `tgp-dev bench launch`: the latency of one launch, from the program's publish on
//! `tgp.commands.launch` to its `Launched` commit being journaled, against a zero-latency provider,
//! measured next to the raw JetStream publish-with-ack on the same server in the same run.
//!
//! Everything is the product's own code: the controller is `Controller::start` (what `tgp run`
//! runs), the provider is the Lambda fake on loopback (booting takes no time) driven by the real
//! Lambda client behind its provider actor (as `tgp run --market fakes` drives it), and the bench
//! talks to the controller only over NATS, as docs/events.md tells any program to: a JetStream
//! publish with a `Nats-Msg-Id`, and a JetStream consumer on `tgp.events.instance.>`. A consumer
//! rather than a plain subscription, because a plain subscriber is handed a commit when it is
//! published, before the server has stored it (or refused it); the consumer only sees what is
//! journaled, which is what "`Launched` journaled" means.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::fakes::FakeProvider;
use crate::fakes::lambda::{LambdaFake, LambdaFakeConfig};
use crate::fakes::market::client_settings;
use anyhow::{Context as _, bail};
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use clap::Args;
use futures::StreamExt;
use tgp::controller::{Controller, ControllerConfig};
use tgp::providers::api_change::ApiChangeReporter;
use tgp::providers::config::{ProviderKind, ProviderSettings};
use tgp_actors::provider::{
    LaunchReceipt, LaunchSpec, Offer, OfferFilter, ProviderClient, ProviderError, ProviderInfo, ProviderInstance,
    RateLimits,
};
use tgp_actors::provider_actor::ProviderActorConfig;
use tgp_actors::provider_actor::limiter::Budget;
use tgp_actors::supervisor::SupervisorConfig;
use tgp_events::subjects::{
    API_GET, EVENTS_STREAM, HEADER_AGGREGATE_ID, HEADER_EVENT_TYPES, INSTANCE_EVENTS_ALL, LAUNCH_COMMAND, SERVICE_NAME,
    TERMINATE_COMMAND,
};
use tgp_events::{AttemptId, GpuType, InstanceId, LaunchCommand, Region};
use tokio::sync::oneshot;

use tgp::cli::controller::{journal_key, nats_or_private};
use tgp::cli::{NatsArgs, parse_duration};

/// What `tgp-dev bench launch --help` says after the options: what is measured and how to read it.
pub const AFTER_HELP: &str = "\
What it measures: for each launch, the time from publishing the launch command on
tgp.commands.launch (JetStream, with a Nats-Msg-Id that becomes the instance id) to its Launched
commit arriving at a JetStream consumer of tgp.events.instance.> (so: journaled, fsynced). The
controller runs in this process (the code `tgp run` runs); the provider is the Lambda fake on
loopback with no boot delay, driven by the real Lambda client behind its provider actor, with an
unlimited request budget (a provider's rate limit is the provider's latency, not tgp's).

The raw figure: publish-with-ack on a file-stored stream of the same server (so fsynced, as
nats.conf says), with the expected-last-subject-sequence check the journal uses, the same number
of times and with as many in flight; half before the launches and half after. A launch makes
several such writes in a row (the command, then one journal commit per step); the report counts
them and gives the ratio both per launch and per write.

Where the time goes: each launch's milestones as the bench saw them (command stored, then each
commit journaled), p50 and p99 of each step.

At the end every instance is terminated through tgp.commands.terminate and its Terminated
awaited, so a journal on a server given with --nats-url is left consistent and no fake machine
is left running. A server given with --nats-url must have no tgp controller on it (one would take
the bench's commands); the bench checks, and refuses.

Examples:
  tgp-dev bench launch                          # 1,000 launches, one at a time, private nats-server
  tgp-dev bench launch --concurrency 8          # 8 launches in flight
  tgp-dev bench launch --poll-interval 1h       # without status polls journaling Running meanwhile";

/// What `tgp-dev bench launch` takes: how many launches, how many at once, and the controller's poll
/// interval (the launch body and the provider are fixed, so runs compare).
#[derive(Args)]
pub struct LaunchBenchArgs {
    #[command(flatten)]
    nats: NatsArgs,
    /// Launches measured (after the warm-up ones).
    #[arg(long, default_value_t = 1000)]
    launches: usize,
    /// Launches in flight at once (each worker publishes its next command once the last is Launched).
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Launches made first and not measured: connections, the first offers call, caches.
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// The controller's status poll interval, as `tgp run --poll-interval` (its default): polls
    /// journal `Running` for launched instances while the bench goes on, as they would in use.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    poll_interval: Duration,
    /// Give up on one launch after this long.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
}

/// The launch every measured command asks for: one H100 at most $5/h, which the Lambda fake
/// always has (on demand; Lambda has no spot).
const LAUNCH_BODY: &str = r#"{"gpu_type":"H100","gpu_count":1,"max_hourly_price":"5.00","image":"ubuntu:22.04"}"#;

/// Event types that end a launch without a machine.
const LAUNCH_FAILURES: [&str; 2] = ["LaunchFailed", "Failed"];

/// The journal milestones of one launch, in order.
const STAGES: [&str; 4] = ["LaunchRequested", "OfferSelected", "LaunchAttempted", "Launched"];

/// What the watcher knows of one instance the bench waits on.
struct Track {
    /// The event type that completes the wait (`Launched`, then `Terminated`).
    until: &'static str,
    /// Each event as it arrived: its type, when the bench saw it journaled, and when the
    /// controller decided it (its `at`).
    seen: Vec<Seen>,
    /// Commits seen for this instance.
    commits: usize,
    /// Told when `until` (Ok) or a failure (Err) is seen.
    done: Option<oneshot::Sender<Result<(), String>>>,
}

/// One event of a tracked instance as the bench saw it.
struct Seen {
    kind: String,
    journaled: Instant,
    decided: Option<DateTime<Utc>>,
    /// When the server stored the commit (its timestamp; same machine, same clock).
    stored: Option<DateTime<Utc>>,
}

type Tracks = Arc<Mutex<HashMap<String, Track>>>;

/// The `at` of each event in a commit body, in order (`None` where it cannot be read).
fn decided_at(body: &[u8]) -> Vec<Option<DateTime<Utc>>> {
    let commit: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let events = commit.get("events").and_then(|e| e.as_array()).cloned().unwrap_or_default();
    events.iter().map(|e| e.pointer("/data/at").and_then(|a| a.as_str()).and_then(|a| a.parse().ok())).collect()
}

/// Follows every instance commit as it is journaled and wakes whoever waits on it.
async fn watch(js: async_nats::jetstream::Context, tracks: Tracks) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let stream = js.get_stream(EVENTS_STREAM).await?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: INSTANCE_EVENTS_ALL.into(),
            deliver_policy: DeliverPolicy::New,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    Ok(tokio::spawn(async move {
        while let Some(message) = messages.next().await {
            let now = Instant::now();
            let Ok(message) = message else { continue };
            let Some(headers) = message.headers.as_ref() else { continue };
            let (Some(id), Some(types)) = (headers.get(HEADER_AGGREGATE_ID), headers.get(HEADER_EVENT_TYPES)) else {
                continue;
            };
            let mut tracks = tracks.lock().expect("tracks");
            let Some(track) = tracks.get_mut(id.as_str()) else { continue };
            track.commits += 1;
            let decided = decided_at(&message.payload);
            let stored = message.info().ok().map(|info| tgp::journal::published_at(&info));
            for (i, kind) in types.as_str().split(',').enumerate() {
                let at = decided.get(i).copied().flatten();
                track.seen.push(Seen { kind: kind.to_string(), journaled: now, decided: at, stored });
                let outcome = if kind == track.until {
                    Ok(())
                } else if LAUNCH_FAILURES.contains(&kind) {
                    Err(format!("{kind} journaled"))
                } else {
                    continue;
                };
                if let Some(done) = track.done.take() {
                    let _ = done.send(outcome);
                }
            }
        }
    }))
}

/// Registers a wait for `until` on instance `id`.
fn expect(tracks: &Tracks, id: &str, until: &'static str) -> oneshot::Receiver<Result<(), String>> {
    let (done, wait) = oneshot::channel();
    let mut tracks = tracks.lock().expect("tracks");
    let track =
        tracks.entry(id.to_string()).or_insert_with(|| Track { until, seen: Vec::new(), commits: 0, done: None });
    track.until = until;
    track.done = Some(done);
    wait
}

/// Percentiles of a set of durations.
pub(super) struct Summary {
    pub(super) p50: Duration,
    p90: Duration,
    pub(super) p99: Duration,
    max: Duration,
}

impl Summary {
    pub(super) fn of(samples: &[Duration]) -> Summary {
        let mut sorted = samples.to_vec();
        sorted.sort();
        let at = |q: f64| sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
        Summary { p50: at(0.50), p90: at(0.90), p99: at(0.99), max: at(1.0) }
    }

    fn line(&self) -> String {
        format!("p50 {}  p90 {}  p99 {}  max {}", ms(self.p50), ms(self.p90), ms(self.p99), ms(self.max))
    }
}

fn ms(d: Duration) -> String {
    format!("{:7.2} ms", d.as_secs_f64() * 1000.0)
}

/// The steps of one launch, each from the end of the one before; they add up to the total.
const STEPS: [&str; 6] = [
    "publish -> command stored (ack)",
    "-> LaunchRequested decided",
    "-> OfferSelected decided",
    "-> LaunchAttempted decided",
    "-> Launched decided",
    "-> Launched seen journaled",
];

/// What happens in each of [`STEPS`].
const STEP_CONTENTS: [&str; 6] = [
    "1 write: the command into TGP_COMMANDS",
    "intake delivery, supervisor routing",
    "journal lookup + 1 write (LaunchRequested), offers (cached), selection",
    "1 write (OfferSelected)",
    "1 write (LaunchAttempted), the provider's launch call",
    "1 write (Launched), delivery to the bench's consumer",
];

/// One measured launch.
struct Timing {
    total: Duration,
    /// Each of [`STEPS`].
    steps: [Duration; 6],
    /// Commits journaled for the instance up to `Launched`.
    commits: usize,
    /// For each commit after the first: from its decision until the server received it (tgp
    /// encodes and sends; the first one's decision also precedes the lookup of the id).
    sends: Vec<Duration>,
}

/// Publishes one launch command and waits until its `Launched` is journaled.
async fn launch_one(
    js: &async_nats::jetstream::Context,
    tracks: &Tracks,
    id: &str,
    timeout: Duration,
) -> anyhow::Result<Timing> {
    let wait = expect(tracks, id, "Launched");
    let (started, wall) = (Instant::now(), Utc::now());
    let command = PublishMessage::build().payload(Bytes::from_static(LAUNCH_BODY.as_bytes())).message_id(id);
    js.send_publish(LAUNCH_COMMAND, command).await?.await.context("publishing a launch command")?;
    let stored = Instant::now();
    let outcome = tokio::time::timeout(timeout, wait).await;
    let total = started.elapsed();
    let track = tracks.lock().expect("tracks").remove(id).expect("tracked");
    match outcome {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(why))) => bail!("launch {id} failed: {why} (seen: {:?})", kinds(&track)),
        Ok(Err(_)) => bail!("the event watcher stopped while waiting for {id}"),
        Err(_) => bail!("launch {id}: no Launched within {timeout:?} (seen: {:?})", kinds(&track)),
    }
    // Decision times are wall-clock (`at`); placed on the bench's monotonic clock from `wall`.
    let on_clock = |at: DateTime<Utc>| started + (at - wall).to_std().unwrap_or_default();
    let mut marks = vec![started, stored];
    for stage in STAGES {
        let seen = track.seen.iter().find(|s| s.kind == stage);
        marks.push(seen.and_then(|s| s.decided).map(on_clock).unwrap_or(*marks.last().expect("marks")));
    }
    marks.push(track.seen.iter().find(|s| s.kind == "Launched").map(|s| s.journaled).unwrap_or(started + total));
    let mut steps = [Duration::ZERO; 6];
    for (i, step) in steps.iter_mut().enumerate() {
        *step = marks[i + 1].saturating_duration_since(marks[i]);
    }
    let sends = track
        .seen
        .iter()
        .filter(|s| s.kind != "LaunchRequested")
        .filter_map(|s| Some((s.stored? - s.decided?).to_std().unwrap_or_default()))
        .collect();
    Ok(Timing { total, steps, commits: track.commits, sends })
}

fn kinds(track: &Track) -> Vec<&str> {
    track.seen.iter().map(|s| s.kind.as_str()).collect()
}

/// Runs `count` jobs numbered from `first` on `concurrency` workers, each taking the next number
/// when its last job is done (`job(worker, number)`); prints progress every tenth under `label`.
async fn in_workers<T, F, Fut>(
    first: usize,
    count: usize,
    concurrency: usize,
    label: Option<&str>,
    job: F,
) -> anyhow::Result<Vec<T>>
where
    F: Fn(usize, usize) -> Fut + Clone,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let step = (count / 10).max(1);
    let started = Instant::now();
    let workers = (0..concurrency.min(count).max(1)).map(|worker| {
        let (next, done, job) = (&next, &done, job.clone());
        async move {
            let mut out = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    return anyhow::Ok(out);
                }
                out.push(job(worker, first + n).await?);
                let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                if let Some(label) = label
                    && count >= 100
                    && finished % step == 0
                {
                    eprintln!("  {label}: {finished}/{count} ({:.1} s)", started.elapsed().as_secs_f64());
                }
            }
        }
    });
    let mut all = Vec::with_capacity(count);
    for result in futures::future::join_all(workers).await {
        all.extend(result?);
    }
    Ok(all)
}

/// The raw figure: publish-with-ack on a file-stored stream with the journal's optimistic
/// concurrency header, one subject per worker under `prefix`, `count` times; each publish's latency.
async fn raw_publishes(
    js: &async_nats::jetstream::Context,
    prefix: &str,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<Duration>> {
    let body = Bytes::from(vec![b'x'; 600]);
    let heads: Vec<Mutex<u64>> = (0..concurrency).map(|_| Mutex::new(0)).collect();
    let heads = &heads;
    let last = |w: usize| *heads[w].lock().expect("heads");
    in_workers(0, count, concurrency, None, |w, _| {
        let body = body.clone();
        async move {
            let message = PublishMessage::build()
                .payload(body)
                .message_id(uuid::Uuid::new_v4().simple().to_string())
                .expected_last_subject_sequence(last(w));
            let started = Instant::now();
            let ack = js.send_publish(format!("{prefix}.w{w}"), message).await?.await?;
            let took = started.elapsed();
            *heads[w].lock().expect("heads") = ack.sequence;
            anyhow::Ok(took)
        }
    })
    .await
}

/// The provider's client with its launch calls timed, so the provider's share of a launch can be
/// told apart from tgp's: it sits under the provider actor, where the real client sits.
struct TimedLaunches {
    inner: Arc<dyn ProviderClient>,
    /// How long each launch call took, by attempt id.
    took: Mutex<HashMap<String, Duration>>,
}

impl TimedLaunches {
    /// The launch call of the first attempt of each instance numbered in `range`.
    fn taken(&self, range: std::ops::Range<usize>, id_of: &impl Fn(usize) -> String) -> Vec<Duration> {
        let took = self.took.lock().expect("timings");
        range
            .filter_map(|n| {
                let id: InstanceId = id_of(n).parse().ok()?;
                took.get(AttemptId::new(&id, 1).as_str()).copied()
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl ProviderClient for TimedLaunches {
    fn info(&self) -> ProviderInfo {
        self.inner.info()
    }
    fn rate_limits(&self) -> RateLimits {
        self.inner.rate_limits()
    }
    fn translate_gpu(&self, gpu: GpuType) -> Option<String> {
        self.inner.translate_gpu(gpu)
    }
    fn translate_region(&self, region: &Region) -> Option<String> {
        self.inner.translate_region(region)
    }
    async fn list_offers(&self, filter: &OfferFilter) -> Result<Vec<Offer>, ProviderError> {
        self.inner.list_offers(filter).await
    }
    async fn launch(&self, spec: &LaunchSpec) -> Result<LaunchReceipt, ProviderError> {
        let started = Instant::now();
        let receipt = self.inner.launch(spec).await;
        self.took.lock().expect("timings").insert(spec.attempt_id.as_str().to_string(), started.elapsed());
        receipt
    }
    async fn terminate(&self, provider_instance_id: &str) -> Result<(), ProviderError> {
        self.inner.terminate(provider_instance_id).await
    }
    async fn status(&self, provider_instance_id: &str) -> Result<ProviderInstance, ProviderError> {
        self.inner.status(provider_instance_id).await
    }
    async fn list_instances(&self) -> Result<Vec<ProviderInstance>, ProviderError> {
        self.inner.list_instances().await
    }
    fn report_unavailable(&self, offer_id: &str, spot: bool) {
        self.inner.report_unavailable(offer_id, spot)
    }
}

/// A tgp controller already on the server would take the bench's commands, and launch on its own
/// providers: refuse to run next to one.
async fn refuse_if_a_controller_runs(client: &async_nats::Client) -> anyhow::Result<()> {
    let ping = client.request(format!("$SRV.PING.{SERVICE_NAME}"), Bytes::new());
    if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), ping).await {
        bail!(
            "a tgp controller serves this NATS server: its intake would take the bench's launch commands. \
             Run the bench against a server without a controller, or without --nats-url (a private server)"
        );
    }
    Ok(())
}

/// The Lambda fake with no boot or tear-down delay, and settings that point the real client at it.
async fn zero_latency_lambda() -> anyhow::Result<(LambdaFake, ProviderSettings)> {
    let fake = LambdaFake::start(LambdaFakeConfig {
        boot_delay: Duration::ZERO,
        terminating_delay: Duration::ZERO,
        ..Default::default()
    })
    .await
    .context("starting the Lambda fake")?;
    fake.add_demo_ssh_key();
    let settings = client_settings(&fake, ProviderKind::Lambda);
    Ok((fake, settings))
}

/// `tgp-dev bench launch`; see [`AFTER_HELP`].
pub async fn launch(args: LaunchBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.launches > 0 && args.concurrency > 0, "--launches and --concurrency must be at least 1");
    LaunchCommand::from_json(LAUNCH_BODY.as_bytes()).context("the bench's launch command")?;
    let (nats, _server) = nats_or_private(&args.nats, tgp::nats_server::Role::Admin)?;
    // The bench's own key, made in a temporary directory: its commits are signed as tgp run's are.
    let (journal_key, _key_dir) = journal_key(None, None, true)?;
    let url = nats.redacted_url();
    let client = tgp::connect::connect_with(&nats, "tgp-bench-launch").await?;
    let server = match args.nats.nats_url {
        Some(_) => {
            refuse_if_a_controller_runs(&client).await?;
            format!("nats-server at {url} (given: its own configuration)")
        }
        None => format!("private nats-server at {url} configured by nats.conf (sync_interval: always)"),
    };
    let js = tgp::connect::jetstream(client);

    let (fake, settings) = zero_latency_lambda().await?;
    let reporter = ApiChangeReporter::default();
    let (mut providers, skipped) = tgp::providers::build(&[settings], &reporter);
    anyhow::ensure!(skipped.is_empty() && providers.len() == 1, "the Lambda client refused the fake: {skipped:?}");
    let launch_calls = Arc::new(TimedLaunches { inner: providers.remove(0), took: Mutex::default() });
    let unlimited =
        ProviderActorConfig { budget: Some(Budget { per_minute: 60_000_000, burst: 10_000 }), ..Default::default() };
    let controller = Controller::start(ControllerConfig {
        nats: nats.clone(),
        supervisor: SupervisorConfig { poll_interval: args.poll_interval, ..Default::default() },
        providers: vec![launch_calls.clone() as Arc<dyn ProviderClient>],
        api_changes: Some(reporter),
        metrics_addr: None,
        ready_addr: None,
        provider_actor: unlimited,
        // The bench launches on a fresh fake: nothing labelled exists yet.
        allow_empty_journal: false,
        stream_check_interval: tgp::journal::guard::CHECK_INTERVAL,
        journal_key,
        lease: tgp::leader::LeaseConfig::default(),
        replicas: tgp::journal::layout::Replicas::ONE,
    })
    .await
    .context("starting the controller")?;
    let tracks: Tracks = Arc::default();
    let watcher = watch(js.clone(), tracks.clone()).await.context("following the journal")?;
    println!(
        "tgp-dev bench launch: {server}; controller in-process, status polls every {:?}; Lambda fake at {} \
         (zero latency) through the real client and its provider actor",
        args.poll_interval,
        fake.url()
    );

    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let bench = Bench { js: &js, tracks: &tracks, run, published: Mutex::default() };
    let measured = bench.measure(&args, &launch_calls).await;
    // Whatever the measurement's outcome, nothing it launched is left running or half-journaled.
    let cleaned = bench.terminate_all(&fake).await;
    watcher.abort();
    drop(controller);
    measured.and(cleaned)
}

/// One run's connection, the instances it waits on, and the token that makes its ids unique
/// (a server given with --nats-url remembers `Nats-Msg-Id`s for 24 hours).
struct Bench<'a> {
    js: &'a async_nats::jetstream::Context,
    tracks: &'a Tracks,
    run: String,
    /// Ids whose launch command was published.
    published: Mutex<Vec<String>>,
}

impl Bench<'_> {
    fn id(&self, n: usize) -> String {
        format!("bench-{}-{n}", self.run)
    }

    /// The warm-up, the measured launches and the raw publishes around them; prints the report.
    async fn measure(&self, args: &LaunchBenchArgs, launch_calls: &TimedLaunches) -> anyhow::Result<()> {
        let (n, k, js) = (args.launches, args.concurrency, self.js);
        let raw_stream = "TGP_BENCH_RAW_PUBLISH";
        let raw_subject = "tgp-bench.raw-publish";
        let _ = js.delete_stream(raw_stream).await;
        js.create_stream(StreamConfig {
            name: raw_stream.into(),
            subjects: vec![format!("{raw_subject}.>")],
            storage: StorageType::File,
            ..Default::default()
        })
        .await
        .context("creating the raw benchmark stream")?;
        let half = n / 2;
        let before = raw_publishes(js, &format!("{raw_subject}.before"), half.max(1), k).await;
        let launch_job = |_, i: usize| {
            let id = self.id(i);
            self.published.lock().expect("published").push(id.clone());
            async move { launch_one(js, self.tracks, &id, args.timeout).await }
        };
        let launches = async {
            in_workers(0, args.warmup, k, None, launch_job).await?;
            in_workers(args.warmup, n, k, Some("launches"), launch_job).await
        }
        .await;
        let after = raw_publishes(js, &format!("{raw_subject}.after"), (n - half).max(1), k).await;
        let _ = js.delete_stream(raw_stream).await;
        let timings = launches?;
        let mut raw = before.context("raw publishes")?;
        raw.extend(after.context("raw publishes")?);

        let totals: Vec<Duration> = timings.iter().map(|t| t.total).collect();
        let (ours, base) = (Summary::of(&totals), Summary::of(&raw));
        let commits = timings.iter().map(|t| t.commits).sum::<usize>() as f64 / timings.len() as f64;
        let writes = 1.0 + commits;
        println!("launch command -> Launched journaled ({n} launches, {k} in flight, after {} warm-up):", args.warmup);
        println!("  {}   (target p99 under 20 ms)", ours.line());
        println!("raw JetStream publish+ack, file storage, same server ({} publishes, {k} in flight):", raw.len());
        println!("  {}", base.line());
        println!(
            "a launch makes {writes:.2} stored writes in a row: its command on TGP_COMMANDS and {commits:.2} journal \
             commits (LaunchRequested, OfferSelected, LaunchAttempted, Launched); the intake's ack of the command \
             (which deletes it from the work queue) is off that path"
        );
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
        println!(
            "  ratio launch/raw:            p50 {:5.2}x  p99 {:5.2}x",
            ratio(ours.p50, base.p50),
            ratio(ours.p99, base.p99)
        );
        println!(
            "  ratio per write (launch/{writes:.0} raw): p50 {:5.2}x  p99 {:5.2}x",
            ratio(ours.p50, base.p50) / writes,
            ratio(ours.p99, base.p99) / writes
        );
        println!(
            "where the time goes (p50 and p99 of each step, from the end of the one before; \"decided\" is the \
             event's `at`):"
        );
        for (i, (name, contents)) in STEPS.iter().zip(STEP_CONTENTS).enumerate() {
            let step: Vec<Duration> = timings.iter().map(|t| t.steps[i]).collect();
            let s = Summary::of(&step);
            println!("  {name:<32} p50 {}  p99 {}   {contents}", ms(s.p50), ms(s.p99));
        }
        let calls = launch_calls.taken(args.warmup..args.warmup + n, &|i| self.id(i));
        if !calls.is_empty() {
            let s = Summary::of(&calls);
            println!(
                "  {:<32} p50 {}  p99 {}   the Lambda client's launch (GET instance-types, POST launch) at the fake",
                "  of which the provider call",
                ms(s.p50),
                ms(s.p99)
            );
        }
        let sends: Vec<Duration> = timings.iter().flat_map(|t| t.sends.iter().copied()).collect();
        if !sends.is_empty() {
            let s = Summary::of(&sends);
            println!(
                "  {:<32} p50 {}  p99 {}   OfferSelected, LaunchAttempted, Launched: from `at` to the server's \
                 timestamp (tgp encodes and sends)",
                "commit: decided -> at server",
                ms(s.p50),
                ms(s.p99)
            );
        }
        Ok(())
    }

    /// Terminates every instance whose launch was published, through `tgp.commands.terminate`,
    /// and waits for each `Terminated`; then checks that no machine is left at the fake.
    async fn terminate_all(&self, fake: &LambdaFake) -> anyhow::Result<()> {
        let published = std::mem::take(&mut *self.published.lock().expect("published"));
        // A chain that already ended (a launch that failed for good) would refuse its terminate,
        // and an id never journaled has nothing to end: ask the controller, end only the others.
        let client = self.js.client();
        let states = futures::future::join_all(published.iter().map(|id| {
            let client = client.clone();
            async move {
                let body = serde_json::json!({"instance_id": id}).to_string();
                let reply = client.request(API_GET, body.into()).await.ok()?;
                let answer: serde_json::Value = serde_json::from_slice(&reply.payload).ok()?;
                answer["state"].as_str().map(str::to_string)
            }
        }))
        .await;
        let ids: Vec<String> = published
            .iter()
            .zip(states)
            .filter(|(_, state)| state.as_deref().is_some_and(|s| s != "failed" && s != "terminated"))
            .map(|(id, _)| id.clone())
            .collect();
        if ids.len() < published.len() {
            println!(
                "cleanup: {} of {} launches already over or never journaled",
                published.len() - ids.len(),
                published.len()
            );
        }
        let started = Instant::now();
        let terminations = ids.iter().map(|id| async move {
            let wait = expect(self.tracks, id, "Terminated");
            let body = serde_json::json!({"instance_id": id, "reason": "tgp-dev bench launch is over"}).to_string();
            self.js.send_publish(TERMINATE_COMMAND, PublishMessage::build().payload(body.into())).await?.await?;
            match tokio::time::timeout(Duration::from_secs(60), wait).await {
                Ok(Ok(Ok(()))) => anyhow::Ok(()),
                _ => bail!("instance {id}: no Terminated within 60 s"),
            }
        });
        let unconfirmed: Vec<String> = futures::future::join_all(terminations)
            .await
            .into_iter()
            .filter_map(|r| r.err().map(|e| e.to_string()))
            .collect();
        let left = fake.live_machines().len();
        println!(
            "cleanup: terminated {} of {} instances through {TERMINATE_COMMAND} in {:.1} s; {left} machines left at \
             the fake",
            ids.len() - unconfirmed.len(),
            ids.len(),
            started.elapsed().as_secs_f64()
        );
        anyhow::ensure!(unconfirmed.is_empty(), "cleanup incomplete: {}", unconfirmed.join("; "));
        anyhow::ensure!(left == 0, "{left} machines still run at the fake after every Terminated");
        Ok(())
    }
}
