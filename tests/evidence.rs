//! tgp acts only on confirmed facts: against the fakes of all four providers, through their real
//! clients and provider actors, a glitched listing or one bad launch answer never loses, destroys
//! or doubles a machine; a machine that really vanished is confirmed and relaunched; a chain with
//! no offer waits for capacity; a permanent error fails at once with the fix.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::Addr;
use support::*;
use tgp::journal::{JetStreamJournal, layout};
use tgp::nats_server::NatsServer;
use tgp::providers::api_change::ApiChangeReporter;
use tgp::providers::config::ProviderKind;
use tgp_actors::evidence::EvidenceConfig;
use tgp_actors::provider::ProviderClient;
use tgp_actors::provider_actor::limiter::Budget;
use tgp_actors::provider_actor::{ProviderActorConfig, ProviderEventSink};
use tgp_actors::supervisor::{Get, Launch, Supervisor, SupervisorConfig};
use tgp_actors::system::{System, SystemBuilder};
use tgp_events::api::{InstanceState, InstanceSummary};
use tgp_events::events::{FailureClass, InstanceEvent, InterruptionReason};
use tgp_events::provider_events::ProviderEvent;
use tgp_events::{LaunchCommand, ProviderName};
use tgp_testkit::fakes::market::{FakeMarket, client_settings};
use tgp_testkit::fakes::{FakeProvider, ListGlitch, Misbehaviour, Operation};
use tgp_testkit::market::{Market, MarketCue, SimulatedConfig};

const KINDS: [ProviderKind; 4] =
    [ProviderKind::VastAi, ProviderKind::Lambda, ProviderKind::RunPod, ProviderKind::Paperspace];

/// Keeps the provider events the supervisor and provider actors journal.
#[derive(Default)]
struct Collected(Mutex<Vec<(ProviderName, ProviderEvent)>>);

impl ProviderEventSink for Collected {
    fn record(&self, provider: &ProviderName, event: ProviderEvent) {
        self.0.lock().unwrap().push((provider.clone(), event));
    }
}

/// One provider's fake, its real client behind a provider actor, and a supervisor on a real
/// journal, polling fast and settling unclear launches within a second.
struct Rig {
    _server: NatsServer,
    js: async_nats::jetstream::Context,
    market: FakeMarket,
    kind: ProviderKind,
    supervisor: Addr<Supervisor<JetStreamJournal>>,
    events: Arc<Collected>,
}

async fn journal(server: &NatsServer) -> (async_nats::jetstream::Context, JetStreamJournal) {
    // These tests play the controller: they write the journal as tgp.
    let (_, js) = connect_as(server, Role::Tgp).await;
    layout::ensure(&js).await.unwrap();
    let journal = JetStreamJournal::open(js.clone()).await.unwrap();
    (js, journal)
}

fn supervisor_config() -> SupervisorConfig {
    SupervisorConfig {
        poll_interval: Duration::from_millis(200),
        retry_delay: Duration::from_millis(200),
        evidence: EvidenceConfig { settle_min: Duration::from_secs(1), ..EvidenceConfig::default() },
        capacity_recheck: Duration::from_millis(300),
        ..SupervisorConfig::default()
    }
}

impl Rig {
    async fn start(kind: ProviderKind, options: &[(&str, Option<&str>)]) -> Rig {
        if let Ok(filter) = std::env::var("TGP_TEST_LOG") {
            let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
        }
        let server = nats();
        let (js, journal) = journal(&server).await;
        let market = FakeMarket::start(7, Duration::from_millis(200)).await.unwrap();
        let fake = fake_of(&market, kind);
        let mut settings = client_settings(fake, kind);
        settings.options.insert("request_timeout_ms".into(), "1000".into());
        for (key, value) in options {
            match value {
                Some(value) => settings.options.insert(key.to_string(), value.to_string()),
                None => settings.options.remove(*key),
            };
        }
        let (clients, skipped) = tgp::providers::build(&[settings], &ApiChangeReporter::default());
        assert!(skipped.is_empty(), "{skipped:?}");
        let events = Arc::new(Collected::default());
        let System { supervisor, .. } = SystemBuilder::new(journal, events.clone())
            .providers(clients, &fast_actor())
            .start(supervisor_config())
            .await
            .unwrap();
        Rig { _server: server, js, market, kind, supervisor, events }
    }

    fn fake(&self) -> &dyn FakeProvider {
        fake_of(&self.market, self.kind)
    }

    async fn launch(&self, id: &str) -> String {
        let request = LaunchCommand::from_json(
            br#"{"gpu_type":"H100","gpu_count":1,"max_hourly_price":"20","spot_policy":"on-demand-only",
                 "relaunch":{"max_attempts":5,"backoff_seconds":1}}"#,
        )
        .unwrap()
        .with_env(Default::default());
        self.supervisor.send(Launch { id: id.parse().unwrap(), request }).await.unwrap().unwrap();
        let summary = self.wait_for(id, InstanceState::Running).await;
        summary.provider_instance_id.expect("a running chain has its machine")
    }

    async fn summary(&self, id: &str) -> InstanceSummary {
        self.supervisor.send(Get(id.parse().unwrap())).await.unwrap().unwrap()
    }

    async fn wait_for(&self, id: &str, state: InstanceState) -> InstanceSummary {
        wait_for(&self.supervisor, id, state).await
    }

    fn calls(&self, operation: Operation) -> usize {
        self.fake().control().seen().iter().filter(|r| r.operation == Some(operation)).count()
    }

    /// Waits until the fake has answered `n` more listings than `since`, then two polls more.
    async fn listings_pass(&self, since: usize, n: usize) {
        for _ in 0..300 {
            if self.calls(Operation::List) >= since + n {
                tokio::time::sleep(Duration::from_millis(500)).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{:?}: the fake answered only {} listings", self.kind, self.calls(Operation::List) - since);
    }
}

/// A provider actor whose budget the fast polls of these tests cannot exhaust (the providers' own
/// limits, at five listings a second, would starve every other call), and whose offers are never
/// reused (a Vast offer is one machine: the chain before may have just rented it).
fn fast_actor() -> ProviderActorConfig {
    ProviderActorConfig {
        budget: Some(Budget { per_minute: 60_000, burst: 100 }),
        offers_ttl: Duration::from_millis(1),
        ..Default::default()
    }
}

/// Polls the supervisor until the chain reaches `state` (40 s at most).
async fn wait_for(supervisor: &Addr<Supervisor<JetStreamJournal>>, id: &str, state: InstanceState) -> InstanceSummary {
    let mut last = None;
    for _ in 0..400 {
        let summary = supervisor.send(Get(id.parse().unwrap())).await.unwrap().unwrap();
        if summary.state == state {
            return summary;
        }
        last = Some(summary);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{id} never reached {state:?}; last {last:?}")
}

fn fake_of(market: &FakeMarket, kind: ProviderKind) -> &dyn FakeProvider {
    match kind {
        ProviderKind::VastAi => &market.vastai,
        ProviderKind::Lambda => &market.lambda,
        ProviderKind::RunPod => &market.runpod,
        ProviderKind::Paperspace => &market.paperspace,
    }
}

fn count(events: &[InstanceEvent], name: &str) -> usize {
    events.iter().filter(|e| e.type_name() == name).count()
}

async fn glitched_listings_leave_running_machines_alone(kind: ProviderKind) {
    let rig = Rig::start(kind, &[]).await;
    let ids = ["glitch-a", "glitch-b", "glitch-c"];
    let mut machines = Vec::new();
    for id in ids {
        machines.push(rig.launch(id).await);
    }
    let (fake, since) = (rig.fake(), rig.calls(Operation::List));
    for glitch in [ListGlitch::Empty, ListGlitch::Null, ListGlitch::Missing, ListGlitch::Omit(machines[0].clone())] {
        fake.control().cue(fake.list_glitch_cue(glitch, 3));
    }
    let gone = Misbehaviour::Status { code: 410, body: r#"{"error":"deprecated_endpoint"}"#.into(), retry_after: None };
    fake.control().cue(fake.list_cue(gone, 3));
    rig.listings_pass(since, 16).await;

    for (id, machine) in ids.iter().zip(&machines) {
        let events = journaled(&rig.js, id).await;
        assert_eq!(count(&events, "Interrupted"), 0, "{kind:?} {id}: {events:?}");
        assert_eq!(rig.summary(id).await.state, InstanceState::Running, "{kind:?} {id}");
        assert_eq!(fake.destroy_calls(machine), 0, "{kind:?}: {machine} was destroyed");
        assert!(fake.live_machines().contains(machine), "{kind:?}: {machine} is gone at the fake");
    }
    assert_eq!(rig.calls(Operation::Launch), 3, "{kind:?}: no extra launch");
    // Absent machines were asked about one by one, and the empty page was called suspect.
    assert!(fake.control().calls(Operation::Status, &machines[0]) >= 1, "{kind:?}: no status call confirmed");
    let suspects =
        rig.events.0.lock().unwrap().iter().filter(|(_, e)| matches!(e, ProviderEvent::ListingSuspect { .. })).count();
    assert!(suspects >= 1, "{kind:?}: an empty page of 3 expected machines is suspect");
}

#[actix::test]
async fn vastai_glitched_listings_leave_running_machines_alone() {
    glitched_listings_leave_running_machines_alone(ProviderKind::VastAi).await;
}

#[actix::test]
async fn lambda_glitched_listings_leave_running_machines_alone() {
    glitched_listings_leave_running_machines_alone(ProviderKind::Lambda).await;
}

#[actix::test]
async fn runpod_glitched_listings_leave_running_machines_alone() {
    glitched_listings_leave_running_machines_alone(ProviderKind::RunPod).await;
}

#[actix::test]
async fn paperspace_glitched_listings_leave_running_machines_alone() {
    glitched_listings_leave_running_machines_alone(ProviderKind::Paperspace).await;
}

#[actix::test]
async fn a_machine_that_really_vanished_is_confirmed_by_its_status_call_and_relaunched() {
    for kind in KINDS {
        let rig = Rig::start(kind, &[]).await;
        let machine = rig.launch("vanish").await;
        assert!(rig.fake().vanish(&machine), "{kind:?}: the fake knows {machine}");
        let mut events = Vec::new();
        for _ in 0..300 {
            events = journaled(&rig.js, "vanish").await;
            if count(&events, "Relaunched") == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let interrupted = events.iter().find_map(|e| match e {
            InstanceEvent::Interrupted { reason, detected_by, provider_instance_id, .. } => {
                Some((*reason, detected_by.clone(), provider_instance_id.clone()))
            }
            _ => None,
        });
        assert_eq!(
            interrupted,
            Some((InterruptionReason::Vanished, "status_call".to_string(), machine.clone())),
            "{kind:?}: {events:?}"
        );
        assert_eq!(count(&events, "Relaunched"), 1, "{kind:?}: {events:?}");
        let now = rig.wait_for("vanish", InstanceState::Running).await;
        assert_ne!(now.provider_instance_id.as_deref(), Some(machine.as_str()));
    }
}

/// One bad answer on the launch of the chosen offer: the chain runs on one machine, the offering is
/// not avoided (a transient fault is not the offering's), and a machine the provider did start is
/// adopted, never launched twice nor destroyed.
async fn one_bad_launch_answer_still_runs_one_machine(kind: ProviderKind) {
    let faults = [
        ("500", Misbehaviour::Status { code: 500, body: r#"{"error":"internal"}"#.into(), retry_after: None }, false),
        (
            "429",
            Misbehaviour::Status { code: 429, body: r#"{"error":"slow down"}"#.into(), retry_after: Some("1".into()) },
            false,
        ),
        ("cut-off", Misbehaviour::MalformedJson, true),
        ("timeout", Misbehaviour::StallAfterServing(Duration::from_secs(2)), true),
    ];
    // A rig per fault: a fake's supply of one offering can be a single machine.
    for (name, fault, provider_acted) in faults {
        let rig = Rig::start(kind, &[]).await;
        let id = format!("fault-{name}");
        let launches = rig.calls(Operation::Launch);
        rig.fake().control().cue(rig.fake().launch_cue(fault, 1));
        let machine = rig.launch(&id).await;
        let events = journaled(&rig.js, &id).await;
        assert_eq!(count(&events, "Failed"), 0, "{kind:?} {name}: {events:?}");
        // A transient fault is not the offering's: no later selection refuses it as failed.
        let avoided: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                InstanceEvent::OfferSelected { candidates, .. } => Some(candidates),
                _ => None,
            })
            .flatten()
            .filter(|c| c.verdict.contains("failed or interrupted"))
            .map(|c| c.offer.offer_id.as_str())
            .collect();
        assert!(avoided.is_empty(), "{kind:?} {name}: the offering was avoided: {avoided:?}");
        let adopted = events.iter().any(|e| matches!(e, InstanceEvent::Launched { adopted: true, .. }));
        let failures: Vec<FailureClass> = events
            .iter()
            .filter_map(|e| match e {
                InstanceEvent::LaunchFailed { class, .. } => Some(*class),
                _ => None,
            })
            .collect();
        if provider_acted {
            assert!(adopted, "{kind:?} {name}: the machine started by the call is adopted: {events:?}");
            assert!(failures.is_empty(), "{kind:?} {name}: {failures:?}");
            assert_eq!(rig.calls(Operation::Launch) - launches, 1, "{kind:?} {name}: launched once");
        } else {
            assert_eq!(failures.len(), 1, "{kind:?} {name}: one failed attempt, retried: {events:?}");
            assert_eq!(rig.calls(Operation::Launch) - launches, 2, "{kind:?} {name}: the fault, then the retry");
        }
        assert_eq!(rig.fake().destroy_calls(&machine), 0, "{kind:?} {name}");
        // One chain, one machine: nothing doubled, nothing left over.
        assert_eq!(rig.fake().live_machines(), vec![machine], "{kind:?} {name}");
    }
}

#[actix::test]
async fn vastai_one_bad_launch_answer_still_runs_one_machine() {
    one_bad_launch_answer_still_runs_one_machine(ProviderKind::VastAi).await;
}

#[actix::test]
async fn lambda_one_bad_launch_answer_still_runs_one_machine() {
    one_bad_launch_answer_still_runs_one_machine(ProviderKind::Lambda).await;
}

#[actix::test]
async fn runpod_one_bad_launch_answer_still_runs_one_machine() {
    one_bad_launch_answer_still_runs_one_machine(ProviderKind::RunPod).await;
}

#[actix::test]
async fn paperspace_one_bad_launch_answer_still_runs_one_machine() {
    one_bad_launch_answer_still_runs_one_machine(ProviderKind::Paperspace).await;
}

#[actix::test]
async fn a_permanent_error_fails_the_chain_at_once_with_the_fix() {
    // Lambda without an SSH key name, and a launch without a key of its own.
    let rig = Rig::start(ProviderKind::Lambda, &[("ssh_key_name", None)]).await;
    let request = LaunchCommand::from_json(
        br#"{"gpu_type":"H100","gpu_count":1,"max_hourly_price":"20","relaunch":{"max_attempts":5}}"#,
    )
    .unwrap()
    .with_env(Default::default());
    rig.supervisor.send(Launch { id: "no-key".parse().unwrap(), request }).await.unwrap().unwrap();
    rig.wait_for("no-key", InstanceState::Failed).await;
    let events = journaled(&rig.js, "no-key").await;
    assert_eq!(count(&events, "LaunchAttempted"), 1, "no attempts burnt: {events:?}");
    let reason = events.iter().find_map(|e| match e {
        InstanceEvent::Failed { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert!(reason.as_deref().is_some_and(|r| r.contains("ssh_key_name")), "the fix is named: {reason:?}");
}

/// A chain that finds no offer waits for capacity, and runs when capacity comes back; a chain
/// whose wait runs out fails, naming the wait.
#[actix::test]
async fn a_chain_waits_for_capacity_and_fails_only_when_the_wait_runs_out() {
    let server = nats();
    let (js, journal) = journal(&server).await;
    let simulated = Arc::new(
        Market::simulated(SimulatedConfig { boot_time: Duration::from_millis(100), ..Default::default() }).unwrap(),
    );
    simulated.cue(&MarketCue { spot: Some(false), ..Default::default() });
    let events = Arc::new(Collected::default());
    let System { supervisor, .. } = SystemBuilder::new(journal, events)
        .providers(
            [simulated.clone() as Arc<dyn ProviderClient>],
            &ProviderActorConfig { offers_ttl: Duration::from_millis(100), ..Default::default() },
        )
        .start(supervisor_config())
        .await
        .unwrap();
    let spot_only = |wait: &str| {
        LaunchCommand::from_json(
            format!(
                r#"{{"gpu_type":"RTX4090","gpu_count":1,"max_hourly_price":"5","spot_policy":"spot-only","wait_for_capacity":"{wait}"}}"#
            )
            .as_bytes(),
        )
        .unwrap()
        .with_env(Default::default())
    };
    for (id, wait) in [("patient", "10m"), ("hurried", "2s")] {
        supervisor.send(Launch { id: id.parse().unwrap(), request: spot_only(wait) }).await.unwrap().unwrap();
    }
    // The hurried chain's two seconds run out while spot is withdrawn.
    wait_for(&supervisor, "hurried", InstanceState::Failed).await;
    let failed = journaled(&js, "hurried").await;
    assert_eq!(count(&failed, "WaitingForCapacity"), 1, "{failed:?}");
    let reason = failed.iter().find_map(|e| match e {
        InstanceEvent::Failed { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert!(reason.as_deref().is_some_and(|r| r.contains("wait_for_capacity 2s")), "{reason:?}");
    // Spot comes back: the patient chain, still waiting, runs.
    let patient = supervisor.send(Get("patient".parse().unwrap())).await.unwrap().unwrap();
    assert_eq!(patient.state, InstanceState::Requested);
    simulated.cue(&MarketCue { spot: Some(true), ..Default::default() });
    wait_for(&supervisor, "patient", InstanceState::Running).await;
    let waited = journaled(&js, "patient").await;
    assert_eq!(count(&waited, "WaitingForCapacity"), 1, "journaled once: {waited:?}");
    assert_eq!(count(&waited, "LaunchFailed"), 0, "{waited:?}");
}
