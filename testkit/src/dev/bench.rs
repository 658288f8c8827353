//! `tgp-dev bench journal`: tgp's journal measured against raw JetStream on the same server, in the
//! same run, so the ratio means something on any machine.
//!
//! 1. Appends: (a) raw publish-with-ack, pipelined across aggregates, on per-aggregate subjects
//!    with `Nats-Expected-Last-Subject-Sequence`; (b) the same number of commits through tgp's
//!    journal (`JetStreamJournal::append`), the same aggregates concurrently, unsigned;
//!    (c) the same again with signing on (each commit signed with Ed25519 over its subject,
//!    expected sequence and body), on fresh aggregates.
//! 2. Start-up as `tgp run` does it, from the index of unfinished chains (`projections::live`):
//!    a journal of N live instances (five events each, in two commits as the lifecycle writes
//!    them) is read (a) raw with an ordered consumer, (b) by the start-up from the index (its
//!    checkpoint brought to the end first, untimed, as a running controller keeps it; then the
//!    catch-up and an actor per chain), then (c) the same start-up once M finished instances are
//!    added. (b) against (a) and (c) against (b) are the ratios: start-up follows what is live.
//!    The journal is written before signing is switched on (trusted as a pre-signing journal).
//! 3. For comparison, the whole-journal replay tgp ran at start-up before the index, on the same
//!    journal (live, finished and the appends of 1, whose signed ones it verifies).
//! 4. Resident memory per idle instance actor: RSS after (b) minus before, over N.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::Config;
use bytes::Bytes;
use chrono::Utc;
use clap::Args;
use futures::StreamExt;
use tgp::journal::JetStreamJournal;
use tgp::projections::live::LiveChains;
use tgp::projections::runner;
use tgp_actors::supervisor::{LiveCount, SupervisorConfig};
use tgp_actors::system::{System, SystemBuilder};
use tgp_events::commit::encode_commit;
use tgp_events::events::{Connection, InstanceEvent, OfferSummary};
use tgp_events::subjects::{HEADER_LAST_SEQUENCE, HEADER_MSG_ID};
use tgp_events::{AttemptId, BillingGranularity, InstanceId, LaunchCommand};

use tgp::cli::NatsArgs;
use tgp::cli::controller::{journal_key, nats_or_private};

use crate::sim::provider_events::ProviderEventLog;

#[derive(Args)]
pub struct JournalBenchArgs {
    #[command(flatten)]
    nats: NatsArgs,
    /// Commits appended in each of the two append runs.
    #[arg(long, default_value_t = 20_000)]
    appends: usize,
    /// Aggregates the appends are spread over (and appended to concurrently).
    #[arg(long, default_value_t = 500)]
    aggregates: usize,
    /// Live instances in the start-up benchmark (five events each, in two commits).
    #[arg(long, default_value_t = 10_000)]
    instances: usize,
    /// Finished instances added for the second start-up (five events each, in two commits).
    #[arg(long, default_value_t = 1_000_000)]
    finished: usize,
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// The events of one instance's life up to running: what a rebuild folds.
pub(super) fn lifecycle(id: &InstanceId) -> Vec<InstanceEvent> {
    let at = Utc::now();
    let request = LaunchCommand::from_json(
        br#"{"gpu_type":"H100","gpu_count":1,"max_hourly_price":"3.00","image":"ubuntu:22.04"}"#,
    )
    .expect("valid command")
    .with_env(Default::default());
    let offer = OfferSummary {
        provider: "simulated".parse().expect("name"),
        offer_id: "h100-us-east-1x".into(),
        gpu_type: request.gpu_type,
        gpu_count: 1,
        region: "us-east".parse().expect("region"),
        hourly_price: "1.10".parse().expect("price"),
        spot: true,
    };
    let attempt_id = AttemptId::new(id, 1);
    vec![
        InstanceEvent::LaunchRequested { instance_id: id.clone(), request, at },
        InstanceEvent::OfferSelected {
            offer: offer.clone(),
            bid: Some(offer.hourly_price),
            reason: "cheapest".into(),
            candidates: vec![],
            at,
        },
        InstanceEvent::LaunchAttempted {
            attempt_id: attempt_id.clone(),
            attempt_number: 1,
            provider: offer.provider.clone(),
            offer_id: offer.offer_id.clone(),
            at,
        },
        InstanceEvent::Launched {
            attempt_id,
            provider: offer.provider,
            provider_instance_id: format!("m-{id}"),
            hourly_price: offer.hourly_price,
            spot: true,
            billing: BillingGranularity::PER_SECOND,
            adopted: false,
            at,
        },
        InstanceEvent::Running {
            provider_instance_id: format!("m-{id}"),
            connection: Connection {
                public_ip: Some("203.0.113.7".into()),
                ssh_host: None,
                ssh_port: Some(22),
                ssh_user: None,
            },
            at,
        },
    ]
}

fn commit_body(id: &InstanceId, events: &[InstanceEvent], first: u64) -> Bytes {
    Bytes::from(encode_commit(id, first, events))
}

/// Raw appends: rounds over all aggregates, each round pipelined (all sent, then all acks awaited).
async fn raw_appends(
    js: &async_nats::jetstream::Context,
    appends: usize,
    aggregates: usize,
) -> anyhow::Result<Duration> {
    js.create_stream(Config {
        name: "BENCH_RAW".into(),
        subjects: vec!["bench.raw.>".into()],
        allow_direct: true,
        ..Default::default()
    })
    .await?;
    let id: InstanceId = "bench".parse()?;
    let body = commit_body(&id, &lifecycle(&id)[4..], 5);
    let mut last = vec![0u64; aggregates];
    let started = Instant::now();
    let mut sent = 0;
    while sent < appends {
        let round = aggregates.min(appends - sent);
        let mut acks = Vec::with_capacity(round);
        for (a, expected) in last.iter().enumerate().take(round) {
            let msg = PublishMessage::build()
                .payload(body.clone())
                .message_id(uuid::Uuid::new_v4().simple().to_string())
                .expected_last_subject_sequence(*expected)
                .header(HEADER_LAST_SEQUENCE, "5");
            acks.push(js.send_publish(format!("bench.raw.a{a}"), msg).await?);
        }
        for (a, ack) in acks.into_iter().enumerate() {
            last[a] = ack.await?.sequence;
        }
        sent += round;
    }
    Ok(started.elapsed())
}

/// tgp appends: one task per aggregate (`<prefix>-<n>`), each committing in order through the
/// journal.
async fn tgp_appends(
    journal: &JetStreamJournal,
    prefix: &str,
    appends: usize,
    aggregates: usize,
) -> anyhow::Result<Duration> {
    let per = appends.div_ceil(aggregates);
    let started = Instant::now();
    let tasks = (0..aggregates).map(|a| {
        let journal = journal.clone();
        async move {
            let id: InstanceId = format!("{prefix}-{a}").parse().expect("id");
            let event = lifecycle(&id).pop().expect("events");
            for seq in 1..=per {
                journal.append(&id, seq, std::slice::from_ref(&event)).await?;
            }
            anyhow::Ok(())
        }
    });
    for r in futures::future::join_all(tasks).await {
        r?;
    }
    Ok(started.elapsed())
}

/// Publishes `instances` lifecycles (`<prefix>-<n>`), pipelined, each as the commits the lifecycle
/// writes. With `terminate`, each ends with `Terminated` in a commit of its own.
async fn populate_with(
    js: &async_nats::jetstream::Context,
    prefix: &str,
    instances: usize,
    terminate: bool,
) -> anyhow::Result<usize> {
    let mut window = Vec::new();
    let mut events = 0;
    let started = Instant::now();
    for i in 0..instances {
        let id: InstanceId = format!("{prefix}-{i:07}").parse()?;
        let mut life = lifecycle(&id);
        let commits = if terminate {
            life[4] = InstanceEvent::Terminated { provider_instance_id: Some(format!("m-{id}")), at: Utc::now() };
            [(0..4, 1u64), (4..5, 5)]
        } else {
            [(0..1, 1u64), (1..5, 2)]
        };
        events += life.len();
        let subject = tgp_events::subjects::instance_events(&id);
        for (range, first) in commits {
            let msg = PublishMessage::build()
                .payload(commit_body(&id, &life[range.clone()], first))
                .header(HEADER_MSG_ID, uuid::Uuid::new_v4().simple().to_string().as_str())
                .header(HEADER_LAST_SEQUENCE, (first + range.len() as u64 - 1).to_string().as_str());
            window.push(js.send_publish(subject.clone(), msg).await?);
        }
        if window.len() >= 2000 {
            for ack in window.drain(..) {
                ack.await?;
            }
        }
        if i > 0 && i % 20_000 == 0 {
            eprintln!("  populated {i} instances ({:.0} s)", started.elapsed().as_secs_f64());
        }
    }
    for ack in window {
        ack.await?;
    }
    Ok(events)
}

async fn raw_read(js: &async_nats::jetstream::Context) -> anyhow::Result<(usize, Duration)> {
    let started = Instant::now();
    let stream = js.get_stream(tgp_events::subjects::EVENTS_STREAM).await?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: tgp_events::subjects::INSTANCE_EVENTS_ALL.into(),
            ..Default::default()
        })
        .await?;
    let total = consumer.cached_info().num_pending as usize;
    let mut messages = consumer.messages().await?.take(total);
    let mut bytes = 0;
    while let Some(m) = messages.next().await {
        bytes += m?.payload.len();
    }
    anyhow::ensure!(bytes > 0, "nothing read");
    Ok((total, started.elapsed()))
}

pub async fn journal(args: JournalBenchArgs) -> anyhow::Result<()> {
    let (nats, _server) = nats_or_private(&args.nats, tgp::nats_server::Role::Admin)?;
    let url = nats.redacted_url();
    let client = tgp::connect::connect_with(&nats, "tgp-bench").await?;
    let js = tgp::connect::jetstream(client);
    tgp::journal::layout::ensure(&js).await?;
    let unsigned = JetStreamJournal::open(js.clone()).await?;
    println!("tgp-dev bench journal: nats-server at {url} configured by nats.conf (sync_interval: always)");

    // 2. Start-up as tgp run does it, from the index of unfinished chains.
    eprintln!("populating {} live instances...", args.instances);
    let live_events = populate_with(&js, "live", args.instances, false).await.context("populating")?;
    let (live_messages, raw_read_time) = raw_read(&js).await?;
    let rss_before = rss_bytes();
    let (none_finished, actors) = index_start_up(&js, &unsigned).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = rss_bytes();
    anyhow::ensure!(actors == args.instances, "expected {} live actors, found {actors}", args.instances);
    eprintln!("populating {} finished instances...", args.finished);
    let finished_events = populate_with(&js, "done", args.finished, true).await.context("populating")?;
    let (with_finished, actors) = index_start_up(&js, &unsigned).await?;
    anyhow::ensure!(actors == args.instances, "expected {} live actors, found {actors}", args.instances);

    // 1. Appends, on aggregates of their own (one event each: no chain the start-ups count).
    let raw = raw_appends(&js, args.appends, args.aggregates).await.context("raw appends")?;
    let ours = tgp_appends(&unsigned, "bench", args.appends, args.aggregates).await.context("tgp appends")?;
    // Signing on from here: the journal above is trusted as a pre-signing journal is.
    let (key, _key_dir) = journal_key(None, None, true)?;
    let journal = JetStreamJournal::open_signed(js.clone(), key).await?;
    let signed =
        tgp_appends(&journal, "bench-signed", args.appends, args.aggregates).await.context("signed appends")?;
    let (raw_rate, our_rate, signed_rate) =
        (rate(args.appends, raw), rate(args.appends, ours), rate(args.appends, signed));
    println!("appends ({} commits over {} aggregates):", args.appends, args.aggregates);
    println!("  raw JetStream publish+ack, pipelined, expected-seq: {raw_rate:>10.0} commits/s");
    println!("  tgp JetStreamJournal::append, unsigned:             {our_rate:>10.0} commits/s");
    println!("  tgp append, signed (Ed25519, signing on):           {signed_rate:>10.0} commits/s");
    println!("  ratio tgp/raw: {:.0}% (target >= 50%)", 100.0 * our_rate / raw_rate);
    println!("  ratio signed/raw: {:.0}% (target >= 50%)", 100.0 * signed_rate / raw_rate);

    // 3. The whole-journal replay tgp ran before the index, on the same journal.
    let started = Instant::now();
    let System { supervisor, .. } =
        SystemBuilder::new(journal, Arc::new(ProviderEventLog::default())).start(SupervisorConfig::default()).await?;
    supervisor.send(LiveCount).await?;
    let replay = started.elapsed();

    let all_events = live_events + finished_events + 2 * args.appends;
    println!(
        "start-up ({} live instances, {live_events} events in {live_messages} commits; then {} finished, \
         {finished_events} events more):",
        args.instances, args.finished
    );
    println!(
        "  raw ordered-consumer read of the live instances' events: {:.3} s ({:.0} events/s)",
        raw_read_time.as_secs_f64(),
        rate(live_events, raw_read_time)
    );
    println!("  tgp start-up from the index, 0 finished:           {:.3} s", none_finished.as_secs_f64());
    println!("  tgp start-up from the index, {:>9} finished:   {:.3} s", args.finished, with_finished.as_secs_f64());
    println!(
        "  with finished / without: {:.2}x (target within 1.2x); without / raw read: {:.2}x (target within 2x)",
        with_finished.as_secs_f64() / none_finished.as_secs_f64(),
        none_finished.as_secs_f64() / raw_read_time.as_secs_f64()
    );
    println!(
        "  whole-journal replay (tgp before the index), {all_events} events: {:.3} s ({:.0} events/s)",
        replay.as_secs_f64(),
        rate(all_events, replay)
    );
    println!(
        "memory: {:.0} bytes resident per idle instance actor ({} MiB for {}; target under 2048)",
        (rss_after.saturating_sub(rss_before)) as f64 / args.instances.max(1) as f64,
        (rss_after.saturating_sub(rss_before)) / (1 << 20),
        args.instances
    );
    Ok(())
}

/// What `tgp run` does at start-up, timed: the index's checkpoint (brought to the journal's end
/// first, untimed, as a running controller keeps it), the commits after it, and an actor per
/// unfinished chain. Returns the time and the actors started.
async fn index_start_up(
    js: &async_nats::jetstream::Context,
    journal: &JetStreamJournal,
) -> anyhow::Result<(Duration, usize)> {
    runner::rebuild::<LiveChains>(js, |_, _| {}).await?;
    let started = Instant::now();
    let (index, _) = runner::catch_up::<LiveChains>(js, &journal.reader()).await?;
    let System { supervisor, .. } = SystemBuilder::new(journal.clone(), Arc::new(ProviderEventLog::default()))
        .start_from(index.state.chains().clone(), SupervisorConfig::default());
    let actors = supervisor.send(LiveCount).await?;
    Ok((started.elapsed(), actors))
}

#[derive(Args)]
pub struct AuditBenchArgs {
    #[command(flatten)]
    nats: NatsArgs,
    /// Events in the journal (five per instance lifecycle, in two commits).
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
}

/// `tgp-dev bench audit`: a full audit replay against a raw ordered-consumer read of the same journal.
pub async fn audit(args: AuditBenchArgs) -> anyhow::Result<()> {
    let (nats, _server) = nats_or_private(&args.nats, tgp::nats_server::Role::Admin)?;
    let url = nats.redacted_url();
    let client = tgp::connect::connect_with(&nats, "tgp-bench").await?;
    let js = tgp::connect::jetstream(client);
    tgp::journal::layout::ensure(&js).await?;
    println!("tgp-dev bench audit: nats-server at {url} configured by nats.conf (sync_interval: always)");
    eprintln!("populating {} events...", args.events);
    let events = populate_with(&js, "i", args.events.div_ceil(5), true).await.context("populating")?;
    let (messages, raw) = raw_read(&js).await?;
    let started = Instant::now();
    let ledger = tgp::audit::replay(&js, None, chrono::Duration::hours(1), |_, _| {}).await?.ledger;
    let report =
        ledger.state.report(None, Utc::now(), &[tgp::projections::cost::GroupField::Provider], ledger.last_sequence);
    let audit = started.elapsed();
    println!(
        "audit replay of {events} events in {messages} commits (total {} over {} hours):",
        report.total.cost, report.total.hours
    );
    println!("  raw ordered-consumer read: {:>10.0} events/s ({:.2} s)", rate(events, raw), raw.as_secs_f64());
    println!("  tgp audit replay + report: {:>10.0} events/s ({:.2} s)", rate(events, audit), audit.as_secs_f64());
    println!("  ratio tgp/raw: {:.0}% (target >= 50%)", 100.0 * raw.as_secs_f64() / audit.as_secs_f64());
    Ok(())
}

#[derive(Args)]
pub struct ProvidersBenchArgs {
    /// Calls in the overhead comparison.
    #[arg(long, default_value_t = 3000)]
    calls: usize,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// The limit in the limiter run, per minute.
    #[arg(long, default_value_t = 1200)]
    per_minute: u32,
    /// Requests in the limiter run (all at once: excess demand).
    #[arg(long, default_value_t = 200)]
    demand: u32,
}

/// `tgp-dev bench providers`: the provider actor's cost over calling the client directly, against a
/// zero-latency fake (the direct call is the baseline here; no NATS is involved), with callers on
/// the runtime's worker threads and on the actix system thread, and the rate the limiter achieves
/// at the fake under excess demand. The fast path (docs/decisions/0006) keeps an admitted call off
/// the actor's thread, which is what the overhead figures measure.
pub async fn providers(args: ProvidersBenchArgs) -> anyhow::Result<()> {
    const ROUNDS: usize = 9;

    use crate::fakes::FakeProvider;
    use crate::fakes::lambda::{LambdaFake, LambdaFakeConfig};
    use tgp::providers::config::ProviderKind;
    use tgp_actors::provider::{OfferFilter, ProviderClient};
    use tgp_actors::provider_actor::limiter::Budget;
    use tgp_actors::provider_actor::{ProviderActorConfig, ProviderHandle};
    let fake = LambdaFake::start(LambdaFakeConfig { boot_delay: Duration::ZERO, ..Default::default() }).await?;
    let settings = crate::fakes::market::client_settings(&fake, ProviderKind::Lambda);
    let reporter = tgp::providers::api_change::ApiChangeReporter::default();
    let client: Arc<dyn ProviderClient> =
        Arc::new(tgp::providers::lambda::LambdaClient::from_settings(&settings, reporter)?);
    // Callers on the runtime's worker threads (as the API and intake tasks are), or on the actix
    // system thread (as the instance actors and the supervisor are).
    let run = |target: Arc<dyn ProviderClient>, on_workers: bool| {
        let (calls, concurrency) = (args.calls, args.concurrency);
        async move {
            let caller = |w: usize| {
                let target = target.clone();
                async move {
                    for _ in (w..calls).step_by(concurrency) {
                        target.list_instances().await?;
                    }
                    anyhow::Ok(())
                }
            };
            let started = Instant::now();
            if on_workers {
                for r in futures::future::join_all((0..concurrency).map(|w| tokio::spawn(caller(w)))).await {
                    r??;
                }
            } else {
                for r in futures::future::join_all((0..concurrency).map(caller)).await {
                    r?;
                }
            }
            anyhow::Ok(started.elapsed())
        }
    };
    let unlimited =
        ProviderActorConfig { budget: Some(Budget { per_minute: 60_000_000, burst: 10_000 }), ..Default::default() };
    let handle: Arc<dyn ProviderClient> =
        Arc::new(ProviderHandle::start(client.clone(), unlimited, Arc::new(ProviderEventLog::default())));
    run(client.clone(), true).await?; // warm up connections
    run(handle.clone(), true).await?;
    println!(
        "tgp-dev bench providers: Lambda fake on loopback, {} list calls, {} in flight, medians of {ROUNDS} rounds",
        args.calls, args.concurrency
    );
    for (on_workers, callers) in [(true, "worker threads"), (false, "the actix thread")] {
        // Each round runs both sides back to back, alternating which goes first (the second finds
        // the machine warmer); the overhead is the median of the rounds' ratios, so a burst of
        // load from elsewhere on a 2-core machine spoils one round, not the comparison.
        let (mut directs, mut actors, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let (direct, actor) = if round % 2 == 0 {
                let direct = run(client.clone(), on_workers).await?;
                (direct, run(handle.clone(), on_workers).await?)
            } else {
                let actor = run(handle.clone(), on_workers).await?;
                (run(client.clone(), on_workers).await?, actor)
            };
            directs.push(direct);
            actors.push(actor);
            ratios.push(100.0 * (actor.as_secs_f64() / direct.as_secs_f64() - 1.0));
        }
        directs.sort();
        actors.sort();
        ratios.sort_by(f64::total_cmp);
        println!("  callers on {callers}:");
        println!("    direct client calls (baseline): {:>8.0} calls/s", rate(args.calls, directs[ROUNDS / 2]));
        println!("    through the provider actor:     {:>8.0} calls/s", rate(args.calls, actors[ROUNDS / 2]));
        println!(
            "    overhead: {:.1}% (target under 10%; rounds from {:.1}% to {:.1}%)",
            ratios[ROUNDS / 2],
            ratios[0],
            ratios[ROUNDS - 1]
        );
    }

    let limited = ProviderActorConfig {
        budget: Some(Budget { per_minute: args.per_minute, burst: 1 }),
        offers_ttl: Duration::ZERO,
        ..Default::default()
    };
    let handle = ProviderHandle::start(client, limited, Arc::new(ProviderEventLog::default()));
    let before = fake.control().seen().len();
    let asks = (0..args.demand).map(|i| {
        let handle = handle.clone();
        let filter = OfferFilter {
            max_machine_price: Some(tgp_events::Money::from_cents(100_000 + i64::from(i))),
            ..Default::default()
        };
        async move { handle.list_offers(&filter).await }
    });
    for r in futures::future::join_all(asks).await {
        r?;
    }
    let times: Vec<_> = fake.control().seen()[before..].iter().map(|r| r.at).collect();
    let span = times.last().zip(times.first()).map(|(l, f)| l.duration_since(*f)).unwrap_or_default();
    let achieved = (times.len() - 1) as f64 / span.as_secs_f64() * 60.0;
    println!("limiter: {} requests at once against a limit of {}/min", args.demand, args.per_minute);
    println!(
        "  achieved at the fake: {achieved:.0}/min = {:.1}% of the limit (target 95-100%, never over)",
        100.0 * achieved / f64::from(args.per_minute)
    );
    Ok(())
}
