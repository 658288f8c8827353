//! Provider actors against a fake provider, counting what reaches it: the rate limit holds at the
//! fake under a burst, concurrent identical offer requests share one call, a 429 slows the actor
//! down and nothing is lost, the circuit opens, fails fast, half-opens and closes, and status
//! polling of 1,000 instances costs one list call per interval. The fast path (calls made on the
//! caller's task) keeps every rule: its outcomes feed the breaker, scarce tokens still go to
//! terminate first, and an offers call its caller gave up on still lands, for the next caller and the cache.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tgp::providers::api_change::ApiChangeReporter;
use tgp::providers::config::ProviderKind;
use tgp_actors::provider::{OfferFilter, ProviderClient};
use tgp_actors::provider_actor::breaker::BreakerConfig;
use tgp_actors::provider_actor::limiter::Budget;
use tgp_actors::provider_actor::{ProviderActorConfig, ProviderEventSink, ProviderHandle};
use tgp_events::events::FailureClass;
use tgp_events::provider_events::{CircuitState, ProviderEvent};
use tgp_events::{Money, ProviderName};
use tgp_testkit::fakes::lambda::{LambdaFake, LambdaFakeConfig};
use tgp_testkit::fakes::market::client_settings;
use tgp_testkit::fakes::{Cue, FakeProvider, Misbehaviour};

/// Keeps the provider events for assertions.
#[derive(Default)]
struct Recorded(Mutex<Vec<ProviderEvent>>);

impl ProviderEventSink for Recorded {
    fn record(&self, _: &ProviderName, event: ProviderEvent) {
        self.0.lock().unwrap().push(event);
    }
}

async fn lambda() -> LambdaFake {
    LambdaFake::start(LambdaFakeConfig::default()).await.unwrap()
}

fn client(fake: &LambdaFake) -> Arc<dyn ProviderClient> {
    let settings = client_settings(fake, ProviderKind::Lambda);
    Arc::new(tgp::providers::lambda::LambdaClient::from_settings(&settings, ApiChangeReporter::default()).unwrap())
}

/// A distinct filter per `i`, so neither the cache nor single flight merges the requests.
fn filter(i: u32) -> OfferFilter {
    OfferFilter { max_machine_price: Some(Money::from_cents(10_000 + i64::from(i))), ..Default::default() }
}

const TYPES: &str = "/api/v1/instance-types";
const INSTANCES: &str = "/api/v1/instances";
const TERMINATE: &str = "/api/v1/instance-operations/terminate";

fn outage(times: u32) -> Cue {
    let body = r#"{"error": {"code": "global/internal-error", "message": "oops"}}"#;
    Cue {
        path_prefix: INSTANCES.into(),
        method: None,
        times,
        misbehaviour: Misbehaviour::Status { code: 503, body: body.into(), retry_after: None },
    }
}

#[actix::test]
async fn a_burst_never_exceeds_the_limit_at_the_provider() {
    let fake = lambda().await;
    let config = ProviderActorConfig {
        budget: Some(Budget { per_minute: 1200, burst: 2 }),
        offers_ttl: Duration::ZERO,
        ..Default::default()
    };
    let handle = ProviderHandle::start(client(&fake), config, Arc::new(Recorded::default()));
    let answers = futures::future::join_all((0..50).map(|i| {
        let handle = handle.clone();
        async move { handle.list_offers(&filter(i)).await }
    }))
    .await;
    assert!(answers.iter().all(Result::is_ok), "every request answered");
    let seen: Vec<_> = fake.control().seen().into_iter().filter(|r| r.path == TYPES).map(|r| r.at).collect();
    assert_eq!(seen.len(), 50, "one call per distinct request");
    // 20 per second with a burst of 2: in any one-second window at most 2 + 20 requests.
    for (i, start) in seen.iter().enumerate() {
        let in_window = seen[i..].iter().filter(|t| t.duration_since(*start) < Duration::from_secs(1)).count();
        assert!(in_window <= 22, "{in_window} requests within a second of request {i}");
    }
}

#[actix::test]
async fn concurrent_identical_offer_requests_share_one_call() {
    let fake = lambda().await;
    let handle = ProviderHandle::start(client(&fake), ProviderActorConfig::default(), Arc::new(Recorded::default()));
    let answers = futures::future::join_all((0..500).map(|_| {
        let handle = handle.clone();
        async move { handle.list_offers(&filter(0)).await.unwrap().len() }
    }))
    .await;
    assert!(answers[0] > 0 && answers.iter().all(|n| *n == answers[0]));
    assert_eq!(fake.control().count("GET", TYPES), 1, "single flight, then the cache");
}

#[actix::test]
async fn a_429_slows_the_actor_and_no_request_is_lost() {
    let fake = lambda().await;
    let events = Arc::new(Recorded::default());
    let config = ProviderActorConfig {
        budget: Some(Budget { per_minute: 6000, burst: 5 }),
        offers_ttl: Duration::ZERO,
        retry_delay: Duration::from_millis(50),
        ..Default::default()
    };
    let handle = ProviderHandle::start(client(&fake), config, events.clone());
    let body = r#"{"error": {"code": "global/too-many-requests", "message": "slow down"}}"#;
    fake.control().cue(Cue {
        path_prefix: TYPES.into(),
        method: None,
        times: 2,
        misbehaviour: Misbehaviour::Status { code: 429, body: body.into(), retry_after: Some("1".into()) },
    });
    let answers = futures::future::join_all((0..10).map(|i| {
        let handle = handle.clone();
        async move { handle.list_offers(&filter(i)).await }
    }))
    .await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    let seen: Vec<_> = fake.control().seen().into_iter().filter(|r| r.path == TYPES).map(|r| r.at).collect();
    assert_eq!(seen.len(), 12, "10 requests and the 2 that were refused");
    let paused = seen.windows(2).map(|w| w[1].duration_since(w[0])).max().unwrap();
    assert!(paused >= Duration::from_millis(900), "the actor honoured Retry-After: 1 (longest gap {paused:?})");
    let recorded = events.0.lock().unwrap();
    let rate_events: Vec<_> = recorded.iter().filter(|e| matches!(e, ProviderEvent::RateLimited { .. })).collect();
    assert!(!rate_events.is_empty());
    assert!(matches!(
        rate_events[0],
        ProviderEvent::RateLimited { retry_after_seconds: Some(1), new_rate_per_minute: 3000 }
    ));
}

#[actix::test]
async fn the_circuit_opens_fails_fast_half_opens_and_closes() {
    let fake = lambda().await;
    let events = Arc::new(Recorded::default());
    let config = ProviderActorConfig {
        offers_ttl: Duration::ZERO,
        retries: 0,
        breaker: BreakerConfig { consecutive_failures: 3, open_for: Duration::from_millis(300), ..Default::default() },
        ..Default::default()
    };
    let handle = ProviderHandle::start(client(&fake), config, events.clone());
    let body = r#"{"error": {"code": "global/internal-error", "message": "oops"}}"#;
    fake.control().cue(Cue {
        path_prefix: TYPES.into(),
        method: None,
        times: 3,
        misbehaviour: Misbehaviour::Status { code: 503, body: body.into(), retry_after: None },
    });
    for i in 0..3 {
        let e = handle.list_offers(&filter(i)).await.unwrap_err();
        assert_eq!(e.class, FailureClass::ProviderOutage);
    }
    let fast = handle.list_offers(&filter(3)).await.unwrap_err();
    assert!(fast.message.contains("circuit open"), "{fast}");
    assert_eq!(fake.control().count("GET", TYPES), 3, "failing fast reaches nothing");
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(handle.list_offers(&filter(4)).await.is_ok(), "the probe goes through");
    assert!(handle.list_offers(&filter(5)).await.is_ok());
    let states: Vec<CircuitState> = events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            ProviderEvent::CircuitChanged { state, .. } => Some(*state),
            _ => None,
        })
        .collect();
    assert_eq!(states, [CircuitState::Open, CircuitState::HalfOpen, CircuitState::Closed]);
}

#[actix::test]
async fn a_disabled_provider_refuses_new_work_but_still_terminates() {
    let fake = lambda().await;
    let events = Arc::new(Recorded::default());
    let handle = ProviderHandle::start(client(&fake), ProviderActorConfig::default(), events.clone());
    handle.addr.send(tgp_actors::provider_actor::SetEnabled(Some("maintenance".into()))).await.unwrap();
    let refused = handle.list_offers(&filter(0)).await.unwrap_err();
    assert!(refused.message.contains("disabled: maintenance"), "{refused}");
    assert!(
        handle.terminate("0920582c7ff041399e34823a0be62549").await.is_ok(),
        "terminate of a gone machine still goes"
    );
    handle.addr.send(tgp_actors::provider_actor::SetEnabled(None)).await.unwrap();
    assert!(handle.list_offers(&filter(0)).await.is_ok());
    let kinds: Vec<_> = events.0.lock().unwrap().iter().map(|e| e.type_name()).collect();
    assert_eq!(kinds, ["Disabled", "Enabled", "OfferSummary"], "offers fetched after enabling are summarized");
}

#[actix::test]
async fn fast_path_successes_and_failures_both_feed_the_breaker() {
    let fake = lambda().await;
    let events = Arc::new(Recorded::default());
    // Only the error rate can trip it: 50% of the last 20 calls, once 4 are known.
    let breaker =
        BreakerConfig { consecutive_failures: 100, error_rate: 0.5, window: 20, min_calls: 4, ..Default::default() };
    let config = ProviderActorConfig { retries: 0, breaker, ..Default::default() };
    let handle = ProviderHandle::start(client(&fake), config, events.clone());
    // Callers on worker tasks, as the API's are.
    let list = |handle: ProviderHandle| async move {
        tokio::spawn(async move { handle.list_instances().await }).await.unwrap()
    };
    for _ in 0..6 {
        list(handle.clone()).await.unwrap();
    }
    fake.control().cue(outage(4));
    for _ in 0..4 {
        assert_eq!(list(handle.clone()).await.unwrap_err().class, FailureClass::ProviderOutage);
    }
    // 4 failures in 10 calls: closed, which it would not be had the 6 successes gone uncounted.
    list(handle.clone()).await.expect("closed: the call goes");
    assert_eq!(fake.control().count("GET", INSTANCES), 11);
    fake.control().cue(outage(10));
    for _ in 0..3 {
        list(handle.clone()).await.unwrap_err();
    }
    // 7 failures in 14 calls: open.
    let fast = list(handle.clone()).await.unwrap_err();
    assert!(fast.message.contains("circuit open"), "{fast}");
    assert_eq!(fake.control().count("GET", INSTANCES), 14, "failing fast reaches nothing");
    let recorded = events.0.lock().unwrap();
    let changes: Vec<_> = recorded.iter().filter(|e| matches!(e, ProviderEvent::CircuitChanged { .. })).collect();
    assert!(matches!(changes[..], [ProviderEvent::CircuitChanged { state: CircuitState::Open, .. }]), "{changes:?}");
    let health: Vec<_> = recorded
        .iter()
        .filter_map(|e| match e {
            ProviderEvent::Health { healthy, .. } => Some(*healthy),
            _ => None,
        })
        .collect();
    assert_eq!(health, [true, false, true, false], "each health change journaled once");
}

#[actix::test]
async fn scarce_tokens_go_to_terminate_before_offers() {
    let fake = lambda().await;
    let config = ProviderActorConfig {
        budget: Some(Budget { per_minute: 120, burst: 1 }),
        offers_ttl: Duration::ZERO,
        ..Default::default()
    };
    let handle = ProviderHandle::start(client(&fake), config, Arc::new(Recorded::default()));
    // The first offers call takes the only token; the other three queue, then the terminate does.
    let offers = (0..4).map(|i| {
        let handle = handle.clone();
        async move { handle.list_offers(&filter(i)).await.map(|_| ()) }
    });
    let terminate = {
        let handle = handle.clone();
        async move { handle.terminate("0920582c7ff041399e34823a0be62549").await }
    };
    let calls: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = _>>>> =
        offers.map(|f| Box::pin(f) as _).chain([Box::pin(terminate) as _]).collect();
    let answers = futures::future::join_all(calls).await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    let order: Vec<_> = fake
        .control()
        .seen()
        .into_iter()
        .filter_map(|r| match r.path.as_str() {
            TYPES => Some("offers"),
            TERMINATE => Some("terminate"),
            _ => None,
        })
        .collect();
    assert_eq!(order, ["offers", "terminate", "offers", "offers", "offers"]);
}

#[actix::test]
async fn an_offers_call_its_caller_gave_up_on_still_lands_and_serves_the_next() {
    let fake = lambda().await;
    let handle = ProviderHandle::start(client(&fake), ProviderActorConfig::default(), Arc::new(Recorded::default()));
    fake.control().cue(Cue {
        path_prefix: TYPES.into(),
        method: None,
        times: 1,
        misbehaviour: Misbehaviour::Slow(Duration::from_secs(2)),
    });
    let abandoned = tokio::time::timeout(Duration::from_millis(200), handle.list_offers(&filter(0))).await;
    assert!(abandoned.is_err(), "the caller gave up on the slow call");
    // The same filter again joins the call in flight, which lands although its caller left.
    let again = tokio::time::timeout(Duration::from_secs(10), handle.list_offers(&filter(0))).await;
    assert!(again.expect("not stranded").is_ok());
    assert_eq!(fake.control().count("GET", TYPES), 1, "one call, shared");
    let cached = tokio::time::timeout(Duration::from_secs(1), handle.list_offers(&filter(0))).await;
    assert!(cached.expect("answered from the cache").is_ok());
    assert_eq!(fake.control().count("GET", TYPES), 1, "and cached");
}

/// Lambda's launch limit (API spec 1.8.3: one per 12 s and five per minute) is in the client's
/// `RateLimits`, and the provider actor schedules launches by it. The fake enforces both limits
/// (a launch too soon gets 429), and the arrivals are measured there.
#[actix::test]
async fn six_lambda_launches_take_a_minute_and_never_come_within_twelve_seconds() {
    let fake = LambdaFake::start(LambdaFakeConfig {
        launch_interval: Some(Duration::from_secs(12)),
        launches_per_minute: Some(5),
        ..Default::default()
    })
    .await
    .unwrap();
    fake.add_demo_ssh_key();
    fake.set_capacity("gpu_1x_a10", "us-east-1", true);
    let mut settings = client_settings(&fake, ProviderKind::Lambda);
    settings.options.remove("launch_interval_ms");
    settings.options.remove("launches_per_minute");
    let client = tgp::providers::lambda::LambdaClient::from_settings(&settings, ApiChangeReporter::default()).unwrap();
    let spacing = client.rate_limits().launches.expect("Lambda spaces its launches");
    assert_eq!((spacing.min_interval, spacing.per_minute), (Duration::from_secs(12), 5));
    let handle = ProviderHandle::start(Arc::new(client), ProviderActorConfig::default(), Arc::new(Recorded::default()));
    let instance: tgp_events::InstanceId = "spaced".parse().unwrap();
    let launches = futures::future::join_all((1..=6).map(|n| {
        let handle = handle.clone();
        let spec = tgp_actors::provider::LaunchSpec {
            attempt_id: tgp_events::AttemptId::new(&instance, n),
            offer_id: "gpu_1x_a10@us-east-1".into(),
            spot: false,
            bid: None,
            gpu_count: 1,
            image: "ubuntu:22.04".into(),
            env: Default::default(),
            ssh_public_key: None,
            disk_gb: None,
        };
        async move { handle.launch(&spec).await }
    }))
    .await;
    assert!(launches.iter().all(Result::is_ok), "no launch refused: {launches:?}");
    let at: Vec<_> = fake
        .control()
        .seen()
        .into_iter()
        .filter(|r| r.path.ends_with("/instance-operations/launch"))
        .map(|r| r.at)
        .collect();
    assert_eq!(at.len(), 6, "six launch calls, none refused and retried");
    for pair in at.windows(2) {
        let gap = pair[1].duration_since(pair[0]);
        assert!(gap >= Duration::from_secs(12), "two launches {gap:?} apart");
    }
    let span = at[5].duration_since(at[0]);
    assert!(span >= Duration::from_secs(60), "six launches in {span:?}");
}
