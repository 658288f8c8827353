//! Contract tests of the RunPod client against the RunPod fake (REST v2 + GraphQL), RunPod's own
//! example payloads (tests/fixtures/runpod), and a read-only live test when RUNPOD_API_KEY is set.

use std::collections::BTreeMap;
use std::time::Duration;

use tgp::providers::api_change::{ApiChange, ApiChangeKind, ApiChangeReporter};
use tgp::providers::config::{ApiKey, ProviderKind, ProviderSettings};
use tgp::providers::runpod::{RunPodClient, wire};
use tgp_actors::provider::{LaunchSpec, MachineStatus, OfferFilter, ProviderClient, ProviderInstance};
use tgp_events::events::{FailureClass, InterruptionReason};
use tgp_events::{AttemptId, GpuType, InstanceId, Money, Region, SpotPolicy};
use tgp_testkit::fakes::runpod::{RunPodFake, RunPodFakeConfig, SpotSchema};
use tgp_testkit::fakes::{Cue, FakeProvider, ListGlitch, Misbehaviour, Operation};
use tokio::sync::broadcast::Receiver;

const A6000: &str = "NVIDIA RTX A6000";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/runpod/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn settings(url: &str, key: &str, options: &[(&str, &str)]) -> ProviderSettings {
    ProviderSettings {
        kind: ProviderKind::RunPod,
        url: url.to_string(),
        key: Some(ApiKey::new(key)),
        options: options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        disabled: None,
    }
}

struct Env {
    fake: RunPodFake,
    client: RunPodClient,
    reports: Receiver<ApiChange>,
}

async fn env_with(config: RunPodFakeConfig, options: &[(&str, &str)]) -> Env {
    let fake = RunPodFake::start(config).await.unwrap();
    let reporter = ApiChangeReporter::default();
    let reports = reporter.subscribe();
    let client = RunPodClient::from_settings(&settings(&fake.url(), "test-key", options), reporter).unwrap();
    Env { fake, client, reports }
}

/// An account that still rents spot through GraphQL (`spot = graphql`), as most tests here need.
async fn env() -> Env {
    env_with(RunPodFakeConfig::default(), &[("spot", "graphql")]).await
}

fn attempt(n: u32) -> AttemptId {
    AttemptId::new(&InstanceId::generate(), n)
}

fn spec(offer_id: &str, count: u32, spot: bool, bid: Option<&str>) -> LaunchSpec {
    LaunchSpec {
        attempt_id: attempt(1),
        offer_id: offer_id.to_string(),
        spot,
        bid: bid.map(|b| b.parse().unwrap()),
        gpu_count: count,
        image: "runpod/pytorch:2.4.0".into(),
        env: BTreeMap::from([("MODEL".to_string(), "llama-3".into())]),
        ssh_public_key: Some("ssh-ed25519 AAAAC3 user@host".into()),
        disk_gb: None,
    }
}

fn reports(rx: &mut Receiver<ApiChange>) -> Vec<ApiChangeKind> {
    std::iter::from_fn(|| rx.try_recv().ok()).map(|c| c.kind).collect()
}

/// An in-stock offer of `gpu` for `count` GPUs (spot when asked).
async fn offer_for(e: &Env, gpu: GpuType, count: u32, spot: bool) -> tgp_actors::provider::Offer {
    let filter = OfferFilter {
        gpu_type: Some(gpu),
        min_gpu_count: Some(count),
        spot: Some(if spot { SpotPolicy::SpotOnly } else { SpotPolicy::OnDemandOnly }),
        ..OfferFilter::default()
    };
    let offers = e.client.list_offers(&filter).await.unwrap();
    offers.into_iter().find(|o| o.available > 0 && o.provider_region.starts_with("US")).expect("an offer in stock")
}

async fn wait_status(client: &RunPodClient, id: &str, want: MachineStatus) -> ProviderInstance {
    for _ in 0..200 {
        let seen = client.status(id).await.unwrap();
        if seen.status == want {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{id} never reached {want:?}");
}

#[tokio::test]
async fn static_facts_and_translation() {
    let e = env().await;
    let info = e.client.info();
    assert_eq!(info.name.as_str(), "runpod");
    assert!(info.supports_spot && info.supports_bids && e.client.spot_available());
    assert_eq!(e.client.rate_limits().requests_per_minute, 100);
    assert_eq!(e.client.translate_gpu(GpuType::H100).as_deref(), Some("NVIDIA H100 80GB HBM3"));
    assert_eq!(e.client.translate_gpu(GpuType::A10), None);
    let eu: Region = "eu-central".parse().unwrap();
    assert_eq!(e.client.translate_region(&eu).as_deref(), Some("EU-RO-1"));
    assert_eq!(e.client.translate_region(&"south-america".parse().unwrap()), None);
}

#[tokio::test]
async fn offers_are_whole_machines_and_honour_the_filter() {
    let e = env().await;
    let all = e.client.list_offers(&OfferFilter::default()).await.unwrap();
    assert!(all.len() > 20, "{}", all.len());
    // One catalog call per cloud, one GraphQL call for spot prices.
    assert_eq!(e.fake.control().count("GET", "/v2/catalog/gpus"), 2);
    assert_eq!(e.fake.control().count("POST", "/graphql"), 1);
    // Untranslatable names are kept, marked.
    let ada = all.iter().find(|o| o.provider_gpu_name == "NVIDIA RTX 6000 Ada Generation").unwrap();
    assert_eq!(ada.gpu_type, None);
    let africa = all.iter().find(|o| o.provider_region == "AF-ZA-1").unwrap();
    assert_eq!(africa.region, None);
    let ks = all
        .iter()
        .find(|o| o.provider_region == "US-KS-2" && o.provider_gpu_name == A6000 && o.id.starts_with("SECURE/"))
        .unwrap();
    assert_eq!(ks.region.as_ref().unwrap().as_str(), "us-central");
    assert_eq!(ks.gpu_type, Some(GpuType::A6000));
    assert_eq!(ks.billing, tgp_events::BillingGranularity::PER_SECOND);
    assert!(ks.spot_price.unwrap() < ks.on_demand_price.unwrap());

    let two = OfferFilter { gpu_type: Some(GpuType::A6000), min_gpu_count: Some(2), ..OfferFilter::default() };
    let doubled = e.client.list_offers(&two).await.unwrap();
    assert!(doubled.iter().all(|o| o.gpu_type == Some(GpuType::A6000) && o.gpu_count == 2));
    let ks2 = doubled.iter().find(|o| o.id == ks.id.replace("/1/", "/2/")).unwrap();
    assert_eq!(ks2.on_demand_price, Some(ks.on_demand_price.unwrap() * 2));
    assert_eq!(ks2.spot_price, Some(ks.spot_price.unwrap() * 2));

    let us_central: Region = "us-central".parse().unwrap();
    let cap = ks.spot_price.unwrap();
    let filter = OfferFilter {
        regions: vec![us_central.clone()],
        max_machine_price: Some(cap),
        spot: Some(SpotPolicy::SpotOnly),
        ..OfferFilter::default()
    };
    let spot = e.client.list_offers(&filter).await.unwrap();
    assert!(!spot.is_empty());
    assert!(spot.iter().all(|o| o.region.as_ref() == Some(&us_central) && o.spot_price.is_some_and(|p| p <= cap)));
    let before = e.fake.control().count("POST", "/graphql");
    let on_demand = OfferFilter { spot: Some(SpotPolicy::OnDemandOnly), ..OfferFilter::default() };
    assert!(e.client.list_offers(&on_demand).await.unwrap().iter().all(|o| o.on_demand_price.is_some()));
    assert_eq!(e.fake.control().count("POST", "/graphql"), before, "no spot query for on-demand only");

    let (od, sp) = e.client.normalized_pricing(GpuType::A6000, &us_central).await.unwrap();
    assert!(od.unwrap() <= ks.on_demand_price.unwrap() && sp.unwrap() <= ks.spot_price.unwrap());
}

/// RunPod ended spot pods in September 2026: by default tgp asks no spot price, offers none, and
/// a prefer-spot request finds on-demand offers only, launched through REST v2, with not one
/// GraphQL call.
#[tokio::test]
async fn spot_is_off_by_default_and_graphql_is_never_called() {
    let e = env_with(RunPodFakeConfig::default(), &[]).await;
    let info = e.client.info();
    assert!(!info.supports_spot && !info.supports_bids && !e.client.spot_available());
    let prefer =
        OfferFilter { gpu_type: Some(GpuType::A6000), spot: Some(SpotPolicy::PreferSpot), ..OfferFilter::default() };
    let offers = e.client.list_offers(&prefer).await.unwrap();
    assert!(!offers.is_empty() && offers.iter().all(|o| o.spot_price.is_none() && o.on_demand_price.is_some()));
    let spot_only = OfferFilter { spot: Some(SpotPolicy::SpotOnly), ..OfferFilter::default() };
    assert!(e.client.list_offers(&spot_only).await.unwrap().is_empty(), "no RunPod offer for spot");
    let offer = offers.iter().find(|o| o.available > 0).expect("an offer in stock");
    let receipt = e.client.launch(&spec(&offer.id, 1, false, None)).await.unwrap();
    let pod = e.fake.pods().into_iter().find(|p| p.id == receipt.provider_instance_id).unwrap();
    assert_eq!((pod.via, pod.spot), ("rest-v2", false));
    let err = e.client.launch(&spec(&offer.id, 1, true, None)).await.unwrap_err();
    assert!(err.message.contains("spot"), "{err}");
    assert_eq!(e.fake.control().count("POST", "/graphql"), 0, "a GraphQL call with spot off");
    let refused =
        RunPodClient::from_settings(&settings(&e.fake.url(), "k", &[("spot", "on")]), ApiChangeReporter::default());
    assert!(refused.is_err_and(|e| e.message.contains("graphql")), "an unknown spot option is refused");
}

#[tokio::test]
async fn on_demand_launch_runs_and_terminates() {
    let e = env().await;
    let offer = offer_for(&e, GpuType::A6000, 1, false).await;
    let spec = spec(&offer.id, 1, false, None);
    let receipt = e.client.launch(&spec).await.unwrap();
    assert_eq!(receipt.hourly_price, offer.on_demand_price.unwrap());
    let pod = e.fake.pods().into_iter().find(|p| p.id == receipt.provider_instance_id).unwrap();
    assert_eq!(pod.name, spec.attempt_id.as_str());
    assert_eq!(pod.image, "runpod/pytorch:2.4.0");
    assert_eq!(pod.env.get("MODEL").map(String::as_str), Some("llama-3"));
    assert_eq!(pod.env.get("PUBLIC_KEY").map(String::as_str), Some("ssh-ed25519 AAAAC3 user@host"));
    assert!(!pod.env.contains_key(wire::SPOT_MARKER));
    assert_eq!((pod.via, pod.spot, pod.start_ssh), ("rest-v2", false, true));
    assert_eq!(pod.ports, vec!["22/tcp".to_string()]);
    assert_eq!(pod.location, offer.provider_region);
    let seen = e.fake.control().seen();
    let create = seen.iter().find(|r| r.method == "POST" && r.path == "/v2/pods").unwrap();
    assert_eq!(create.authorization.as_deref(), Some("Bearer test-key"));

    let running = wait_status(&e.client, &receipt.provider_instance_id, MachineStatus::Running).await;
    assert_eq!(running.label.as_deref(), Some(spec.attempt_id.as_str()));
    assert_eq!(running.raw_status, "RUNNING");
    assert_eq!(running.connection.ssh_port, Some(pod.ssh_port));
    assert_eq!(running.connection.ssh_user.as_deref(), Some("root"));
    assert!(running.connection.ssh_host.as_deref().unwrap().starts_with("203.0.113."));
    assert_eq!(running.connection.public_ip, running.connection.ssh_host);
    assert_eq!(running.hourly_price, Some(receipt.hourly_price));

    e.client.terminate(&receipt.provider_instance_id).await.unwrap();
    assert!(e.fake.live_machines().is_empty());
    e.client.terminate(&receipt.provider_instance_id).await.unwrap(); // already gone: still Ok
    let err = e.client.status(&receipt.provider_instance_id).await.unwrap_err();
    assert_eq!(err.class, FailureClass::NotFound);
}

#[tokio::test]
async fn spot_launch_bids_per_gpu_and_exited_is_an_interruption() {
    let mut e = env().await;
    let offer = offer_for(&e, GpuType::A6000, 2, true).await;
    // The machine bid is split per GPU: RunPod charges bidPerGpu × GPUs.
    let machine_bid = offer.spot_price.unwrap() + Money::from_cents(10);
    let mut spec = spec(&offer.id, 2, true, None);
    spec.bid = Some(machine_bid);
    let receipt = e.client.launch(&spec).await.unwrap();
    let pod = e.fake.pods().into_iter().find(|p| p.id == receipt.provider_instance_id).unwrap();
    assert_eq!(pod.via, "graphql");
    assert_eq!(
        pod.bid_per_gpu.map(Money::from_decimal),
        Some(Money::from_decimal(machine_bid.as_decimal() / rust_decimal::Decimal::from(2)))
    );
    assert_eq!(Money::from_decimal(pod.cost), machine_bid);
    assert_eq!(receipt.hourly_price, machine_bid);
    assert_eq!(pod.name, spec.attempt_id.as_str());
    assert_eq!(pod.env.get("PUBLIC_KEY").map(String::as_str), Some("ssh-ed25519 AAAAC3 user@host"));
    assert_eq!(pod.env.get(wire::SPOT_MARKER).map(String::as_str), Some("1"));
    // Variables, not interpolated text; key in the Bearer header.
    let docs = e.fake.graphql_documents();
    let (doc, vars) = docs.iter().find(|(d, _)| d.contains("podRentInterruptable")).unwrap();
    assert!(doc.contains("$input: PodRentInterruptableInput!"), "{doc}");
    assert_eq!(vars["input"]["name"], spec.attempt_id.as_str());
    assert_eq!(vars["input"]["gpuCount"], 2);
    let auth: Vec<_> =
        e.fake.control().seen().into_iter().filter(|r| r.path == "/graphql").map(|r| r.authorization).collect();
    assert!(auth.iter().all(|a| a.as_deref() == Some("Bearer test-key")));

    wait_status(&e.client, &pod.id, MachineStatus::Running).await;
    assert!(e.fake.interrupt(&pod.id));
    let seen = e.client.status(&pod.id).await.unwrap();
    assert_eq!(seen.status, MachineStatus::Interrupted(InterruptionReason::Preempted));
    assert_eq!(seen.raw_status, "EXITED");
    assert_eq!(seen.hourly_price, None, "an EXITED pod bills no compute");
    assert!(reports(&mut e.reports).is_empty());
}

#[tokio::test]
async fn a_bid_below_the_minimum_is_capacity_and_spends_nothing() {
    let e = env().await;
    let offer = offer_for(&e, GpuType::RTX4090, 1, true).await;
    let low = spec(&offer.id, 1, true, Some("0.01"));
    let err = e.client.launch(&low).await.unwrap_err();
    assert_eq!(err.class, FailureClass::Capacity, "{err}");
    assert!(e.fake.pods().is_empty());
    assert!(!e.fake.graphql_documents().iter().any(|(d, _)| d.contains("podRentInterruptable")));
}

#[tokio::test]
async fn what_runpod_cannot_take_is_refused_before_any_call() {
    let e = env().await;
    let offer = offer_for(&e, GpuType::A6000, 1, false).await;
    let mut cases = vec![spec("no-such-offer", 1, false, None), spec(&offer.id, 2, false, None)];
    let mut conflict = spec(&offer.id, 1, false, None);
    conflict.env.insert("PUBLIC_KEY".into(), "ssh-rsa other".into());
    let mut no_image = spec(&offer.id, 1, false, None);
    no_image.image = " ".into();
    let mut marker = spec(&offer.id, 1, false, None);
    marker.env.insert(wire::SPOT_MARKER.into(), "0".into());
    cases.extend([conflict, no_image, marker]);
    for case in cases {
        let err = e.client.launch(&case).await.unwrap_err();
        assert_eq!(err.class, FailureClass::InvalidRequest, "{err}");
    }
    assert_eq!(e.fake.control().count("POST", "/v2/pods"), 0);
    assert_eq!(e.fake.control().count("GET", "/v2/catalog/gpus/"), 0);
}

#[tokio::test]
async fn every_status_value_maps() {
    let mut e = env_with(
        RunPodFakeConfig { boot_delay: Duration::from_secs(3600), ..RunPodFakeConfig::default() },
        &[("spot", "graphql")],
    )
    .await;
    let offer = offer_for(&e, GpuType::A6000, 1, false).await;
    let id = e.client.launch(&spec(&offer.id, 1, false, None)).await.unwrap().provider_instance_id;
    let first = e.client.status(&id).await.unwrap();
    assert_eq!((first.status, first.raw_status.as_str()), (MachineStatus::Starting, "PROVISIONING"));
    assert_eq!(first.connection, Default::default());
    use InterruptionReason::*;
    let table = [
        ("PROVISIONING", MachineStatus::Starting),
        ("STARTING", MachineStatus::Starting),
        ("RUNNING", MachineStatus::Starting), // runtime still null: container not up
        ("EXITED", MachineStatus::Interrupted(StoppedOutsideTgp)),
        ("ERROR", MachineStatus::Interrupted(HostLost)),
        ("TERMINATED", MachineStatus::Terminated),
    ];
    for (raw, want) in table {
        e.fake.override_status(&id, raw);
        let seen = e.client.status(&id).await.unwrap();
        assert_eq!((seen.raw_status.as_str(), seen.status), (raw, want));
    }
    assert!(reports(&mut e.reports).is_empty());
    e.fake.override_status(&id, "HIBERNATING");
    let listed = e.client.list_instances().await.unwrap();
    let seen = listed.iter().find(|p| p.id == id).unwrap();
    assert_eq!((seen.raw_status.as_str(), seen.status), ("HIBERNATING", MachineStatus::Starting));
    assert_eq!(reports(&mut e.reports), vec![ApiChangeKind::UnknownStatus("HIBERNATING".into())]);

    // The fake's own transitions: stopped by the user, and a pod RunPod lost.
    let e = env().await;
    let offer = offer_for(&e, GpuType::A6000, 1, false).await;
    let a = e.client.launch(&spec(&offer.id, 1, false, None)).await.unwrap().provider_instance_id;
    let b = e.client.launch(&spec(&offer.id, 1, false, None)).await.unwrap().provider_instance_id;
    wait_status(&e.client, &a, MachineStatus::Running).await;
    assert!(e.fake.stop_by_user(&a) && e.fake.fail_pod(&b));
    assert_eq!(e.client.status(&a).await.unwrap().status, MachineStatus::Interrupted(StoppedOutsideTgp));
    assert_eq!(e.client.status(&b).await.unwrap().raw_status, "ERROR");
    // GraphQL desiredStatus values, for pods seen through GraphQL.
    assert_eq!(
        wire::graphql_status("EXITED", Some("INTERRUPTABLE"), false),
        Some(MachineStatus::Interrupted(Preempted))
    );
    assert_eq!(
        wire::graphql_status("EXITED", Some("RESERVED"), false),
        Some(MachineStatus::Interrupted(StoppedOutsideTgp))
    );
    for (raw, want) in [
        ("CREATED", MachineStatus::Starting),
        ("RESTARTING", MachineStatus::Starting),
        ("PAUSED", MachineStatus::Interrupted(StoppedOutsideTgp)),
        ("DEAD", MachineStatus::Interrupted(HostLost)),
        ("TERMINATED", MachineStatus::Terminated),
    ] {
        assert_eq!(wire::graphql_status(raw, None, false), Some(want));
    }
    assert_eq!(wire::graphql_status("RUNNING", None, true), Some(MachineStatus::Running));
    assert_eq!(wire::graphql_status("SLEEPING", None, false), None);
}

#[tokio::test]
async fn a_pod_that_never_becomes_ready_stays_starting() {
    let e = env_with(
        RunPodFakeConfig { boot_delay: Duration::from_millis(10), ..RunPodFakeConfig::default() },
        &[("spot", "graphql")],
    )
    .await;
    e.fake.set_never_ready(true);
    let offer = offer_for(&e, GpuType::A6000, 1, false).await;
    let id = e.client.launch(&spec(&offer.id, 1, false, None)).await.unwrap().provider_instance_id;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let seen = e.client.status(&id).await.unwrap();
    assert_eq!((seen.status, seen.raw_status.as_str()), (MachineStatus::Starting, "STARTING"));
}

#[tokio::test]
async fn one_list_call_holds_every_pod() {
    let e = env().await;
    e.fake.add_foreign_pods(30);
    let offer = offer_for(&e, GpuType::A6000, 1, false).await;
    let spec = spec(&offer.id, 1, false, None);
    let id = e.client.launch(&spec).await.unwrap().provider_instance_id;
    let listed = e.client.list_instances().await.unwrap();
    assert_eq!(listed.len(), 31);
    assert_eq!(e.fake.control().count("GET", "/v2/pods"), 1, "v2 lists every pod in one answer, no pages");
    let ours = listed.iter().find(|p| p.id == id).unwrap();
    assert_eq!(ours.label.as_deref(), Some(spec.attempt_id.as_str()));
    assert_eq!(listed.iter().filter(|p| p.label.as_deref().is_some_and(|l| l.starts_with("console-pod-"))).count(), 30);
    let query = e.fake.control().seen().into_iter().find(|r| r.method == "GET" && r.path == "/v2/pods").unwrap().query;
    assert_eq!(query.as_deref(), Some("includeClusterPods=false"));
}

#[tokio::test]
async fn error_classes() {
    let mut e = env().await;
    // Auth.
    let bad =
        RunPodClient::from_settings(&settings(&e.fake.url(), "wrong", &[]), ApiChangeReporter::default()).unwrap();
    let err = bad.list_instances().await.unwrap_err();
    assert_eq!(err.class, FailureClass::Auth);
    assert!(err.message.contains("invalid api key"), "{err}");
    // Not found.
    assert_eq!(e.client.status("nosuchpod0000").await.unwrap_err().class, FailureClass::NotFound);
    // Capacity on create (REST v2: 400 with RunPod's detail) although the catalog says in stock.
    let offer = offer_for(&e, GpuType::A6000, 1, false).await;
    e.fake.set_no_capacity(true);
    let err = e.client.launch(&spec(&offer.id, 1, false, None)).await.unwrap_err();
    assert_eq!(err.class, FailureClass::Capacity, "{err}");
    assert!(err.message.contains("no longer any instances available"));
    // Capacity inside HTTP 200 on GraphQL.
    let spot_offer = offer_for(&e, GpuType::A6000, 1, true).await;
    let err = e.client.launch(&spec(&spot_offer.id, 1, true, None)).await.unwrap_err();
    assert_eq!(err.class, FailureClass::Capacity, "{err}");
    assert_eq!(err.code.as_deref(), Some("BAD_USER_INPUT"));
    e.fake.set_no_capacity(false);
    // The "catalog says High, create says no" quirk.
    e.fake.set_stock(A6000, &offer.provider_region, 3);
    e.fake.set_capacity_failure(A6000, &offer.provider_region, 100);
    let err = e.client.launch(&spec(&offer.id, 1, false, None)).await.unwrap_err();
    assert_eq!(err.class, FailureClass::Capacity);
    assert!(e.fake.pods().is_empty());
    e.fake.set_capacity_failure(A6000, &offer.provider_region, 0);
    // Rate limited, with and without Retry-After.
    let limited = r#"{"title":"Too Many Requests","status":429,"detail":"rate limit exceeded for the minute window"}"#;
    e.fake.control().cue(Cue::once(
        "/v2/pods",
        Misbehaviour::Status { code: 429, body: limited.into(), retry_after: Some("7".into()) },
    ));
    let err = e.client.list_instances().await.unwrap_err();
    assert_eq!((err.class, err.retry_after_seconds), (FailureClass::RateLimited, Some(7)));
    assert!(err.message.contains("minute window"));
    e.fake
        .control()
        .cue(Cue::once("/v2/pods", Misbehaviour::Status { code: 429, body: limited.into(), retry_after: None }));
    let err = e.client.list_instances().await.unwrap_err();
    assert_eq!((err.class, err.retry_after_seconds), (FailureClass::RateLimited, None));
    // 5xx.
    e.fake
        .control()
        .cue(Cue::once("/v2/pods", Misbehaviour::Status { code: 502, body: "bad gateway".into(), retry_after: None }));
    assert_eq!(e.client.list_instances().await.unwrap_err().class, FailureClass::ProviderOutage);
    // Malformed JSON and a renamed required field.
    e.fake.control().cue(Cue::once("/v2/pods", Misbehaviour::MalformedJson));
    assert_eq!(e.client.list_instances().await.unwrap_err().class, FailureClass::ContractChanged);
    e.fake.add_foreign_pods(1);
    e.fake
        .control()
        .cue(Cue::once("/v2/pods", Misbehaviour::RenameField { from: "status".into(), to: "state".into() }));
    let err = e.client.list_instances().await.unwrap_err();
    assert_eq!(err.class, FailureClass::ContractChanged);
    assert!(err.message.contains("status") && err.message.contains("GET /v2/pods"), "{err}");
    e.fake
        .control()
        .cue(Cue::once("/v2/catalog/gpus", Misbehaviour::RenameField { from: "price".into(), to: "pricing".into() }));
    let err = e.client.list_offers(&OfferFilter::default()).await.unwrap_err();
    assert!(err.class == FailureClass::ContractChanged && err.message.contains("price"), "{err}");
    // Deprecation / Sunset.
    let _ = reports(&mut e.reports);
    e.fake
        .control()
        .cue(Cue::once("/v2/pods", Misbehaviour::Deprecated { sunset: "Sat, 01 May 2027 00:00:00 GMT".into() }));
    e.client.list_instances().await.unwrap();
    let kinds = reports(&mut e.reports);
    assert!(kinds.contains(&ApiChangeKind::Deprecation("true".into())), "{kinds:?}");
    assert!(kinds.contains(&ApiChangeKind::Sunset("Sat, 01 May 2027 00:00:00 GMT".into())));
}

fn gone(kinds: &[ApiChangeKind]) -> usize {
    kinds.iter().filter(|k| matches!(k, ApiChangeKind::OperationGone(_))).count()
}

#[tokio::test]
async fn graphql_retired_turns_spot_off_once() {
    let mut e = env().await;
    let spot_offer = offer_for(&e, GpuType::A6000, 1, true).await;
    e.fake.retire_graphql();
    let offers = e.client.list_offers(&OfferFilter::default()).await.unwrap();
    assert!(!offers.is_empty() && offers.iter().all(|o| o.spot_price.is_none()));
    assert!(!e.client.spot_available() && !e.client.info().supports_spot);
    let graphql_calls = e.fake.control().count("POST", "/graphql");
    e.client.list_offers(&OfferFilter::default()).await.unwrap();
    let err = e.client.launch(&spec(&spot_offer.id, 1, true, None)).await.unwrap_err();
    assert_eq!(err.class, FailureClass::InvalidRequest);
    assert!(err.message.contains("spot"), "{err}");
    assert_eq!(e.fake.control().count("POST", "/graphql"), graphql_calls, "no more GraphQL once spot is off");
    assert_eq!(gone(&reports(&mut e.reports)), 1);
    // On demand still works.
    let offer = offer_for(&e, GpuType::A6000, 1, false).await;
    e.client.launch(&spec(&offer.id, 1, false, None)).await.unwrap();
}

#[tokio::test]
async fn a_410_cue_on_graphql_turns_spot_off() {
    let mut e = env().await;
    e.fake.control().cue(Cue::once(
        "/graphql",
        Misbehaviour::Status { code: 410, body: r#"{"errors":[{"message":"Gone"}]}"#.into(), retry_after: None },
    ));
    let spot = OfferFilter { spot: Some(SpotPolicy::SpotOnly), ..OfferFilter::default() };
    assert!(e.client.list_offers(&spot).await.unwrap().is_empty());
    assert!(!e.client.spot_available());
    assert_eq!(gone(&reports(&mut e.reports)), 1);
}

#[tokio::test]
async fn the_spot_mutation_vanishing_turns_spot_off_once() {
    let mut e = env().await;
    let offer = offer_for(&e, GpuType::A6000, 1, true).await;
    e.fake.set_spot_schema(SpotSchema::MutationRemoved);
    let err = e.client.launch(&spec(&offer.id, 1, true, Some("5.00"))).await.unwrap_err();
    // The minimum-bid lookup already finds no spot capacity (prices now answer null) ...
    assert_eq!(err.class, FailureClass::Capacity, "{err}");
    // ... so send the mutation the way it would go out with a stale price: it is refused by the schema.
    e.fake.set_spot_schema(SpotSchema::Live);
    e.fake.control().cue(Cue::once(
        "/graphql",
        Misbehaviour::Status {
            code: 200,
            body: fixture("graphql_gpu_types.json").replace("NVIDIA RTX A4000", A6000),
            retry_after: None,
        },
    ));
    e.fake.set_spot_schema(SpotSchema::MutationRemoved);
    let err = e.client.launch(&spec(&offer.id, 1, true, Some("5.00"))).await.unwrap_err();
    assert_eq!(err.class, FailureClass::InvalidRequest, "{err}");
    assert!(err.message.contains("podRentInterruptable"), "{err}");
    assert!(!e.client.spot_available());
    let calls = e.fake.control().count("POST", "/graphql");
    let err = e.client.launch(&spec(&offer.id, 1, true, Some("5.00"))).await.unwrap_err();
    assert_eq!(err.class, FailureClass::InvalidRequest);
    assert_eq!(e.fake.control().count("POST", "/graphql"), calls);
    assert_eq!(gone(&reports(&mut e.reports)), 1);
    assert!(e.fake.pods().is_empty());
}

#[tokio::test]
async fn spot_price_fields_vanishing_turn_spot_off() {
    let mut e = env().await;
    e.fake.set_spot_schema(SpotSchema::FieldsRemoved);
    let offers = e.client.list_offers(&OfferFilter::default()).await.unwrap();
    assert!(!offers.is_empty() && offers.iter().all(|o| o.spot_price.is_none()));
    assert!(!e.client.spot_available());
    let kinds = reports(&mut e.reports);
    assert_eq!(gone(&kinds), 1);
    assert!(matches!(&kinds[0], ApiChangeKind::OperationGone(m) if m.contains("secureSpotPrice")), "{kinds:?}");
}

#[tokio::test]
async fn runpod_example_payloads_parse() {
    let e = env_with(RunPodFakeConfig::default(), &[("cloud", "secure"), ("spot", "graphql")]).await;
    // The v2 catalog example, served for the secure-cloud call; the GraphQL GPU-types example for spot.
    let ok = |body: String| Misbehaviour::Status { code: 200, body, retry_after: None };
    e.fake.control().cue(Cue::once("/v2/catalog/gpus", ok(fixture("v2_catalog_gpus.json"))));
    e.fake.control().cue(Cue::once("/graphql", ok(fixture("graphql_gpu_types.json"))));
    let offers = e.client.list_offers(&OfferFilter::default()).await.unwrap();
    assert_eq!(offers.len(), 1);
    let o = &offers[0];
    assert_eq!(o.id, "SECURE/US-KS-2/1/NVIDIA GeForce RTX 4090");
    assert_eq!((o.gpu_type, o.region.as_ref().map(Region::as_str)), (Some(GpuType::RTX4090), Some("us-central")));
    assert_eq!(o.on_demand_price, Some("0.44".parse().unwrap()));
    assert_eq!((o.spot_price, o.available), (None, 3));

    // The v2 pod example through status().
    e.fake.control().cue(Cue::once("/v2/pods/7h9k2m4n6p", ok(fixture("v2_pod_running.json"))));
    let pod = e.client.status("7h9k2m4n6p").await.unwrap();
    assert_eq!((pod.status, pod.label.as_deref()), (MachineStatus::Running, Some("pytorch-training")));
    assert_eq!(pod.connection.ssh_host.as_deref(), Some("195.26.233.3"));
    assert_eq!((pod.connection.ssh_port, pod.connection.ssh_user.as_deref()), (Some(34446), Some("root")));
    assert_eq!(pod.connection.public_ip.as_deref(), Some("195.26.233.3"));
    assert_eq!(pod.hourly_price, Some("0.44".parse().unwrap()));
    let listed =
        wire::parse_pod_list(format!("{{\"pods\": [{}]}}", fixture("v2_pod_running.json")).as_bytes()).unwrap();
    assert_eq!(listed[0].status, MachineStatus::Running);

    // The spot example: minimum bid 0.2 for the A4000 in EU-RO-1, then the rent answer.
    e.fake.control().cue(Cue::once("/graphql", ok(fixture("graphql_gpu_types.json"))));
    e.fake.control().cue(Cue::once("/graphql", ok(fixture("graphql_rent.json"))));
    let receipt = e.client.launch(&spec("SECURE/EU-RO-1/1/NVIDIA RTX A4000", 1, true, Some("0.25"))).await.unwrap();
    assert_eq!(receipt.provider_instance_id, "fkjbybgpwuvmhk");
    assert_eq!(receipt.hourly_price, "0.25".parse().unwrap());

    // Errors: the GraphQL capacity error inside HTTP 200, and v2's capacity problem.
    e.fake.control().cue(Cue::once("/graphql", ok(fixture("graphql_gpu_types.json"))));
    e.fake.control().cue(Cue::once("/graphql", ok(fixture("graphql_capacity_error.json"))));
    let err = e.client.launch(&spec("SECURE/EU-RO-1/1/NVIDIA RTX A4000", 1, true, None)).await.unwrap_err();
    assert_eq!((err.class, err.code.as_deref()), (FailureClass::Capacity, Some("...")));
    let offer = offer_for(&e, GpuType::A6000, 1, false).await;
    e.fake.control().cue(Cue {
        path_prefix: "/v2/pods".into(),
        method: Some("POST".into()),
        times: 1,
        misbehaviour: Misbehaviour::Status { code: 400, body: fixture("v2_capacity_error.json"), retry_after: None },
    });
    assert_eq!(e.client.launch(&spec(&offer.id, 1, false, None)).await.unwrap_err().class, FailureClass::Capacity);
    e.fake.control().cue(Cue::once(
        "/v2/pods/abc",
        Misbehaviour::Status { code: 404, body: fixture("v2_not_found.json"), retry_after: None },
    ));
    let err = e.client.status("abc").await.unwrap_err();
    assert!(err.class == FailureClass::NotFound && err.message.contains("pod not found"));

    // The GraphQL pod example maps through the GraphQL status table.
    let v: serde_json::Value = serde_json::from_str(&fixture("graphql_pod_running.json")).unwrap();
    let p = &v["data"]["pod"];
    let status =
        wire::graphql_status(p["desiredStatus"].as_str().unwrap(), p["podType"].as_str(), !p["runtime"].is_null());
    assert_eq!(status, Some(MachineStatus::Running));
}

#[tokio::test]
async fn the_fake_speaks_both_graphql_styles_and_auth_forms() {
    let e = env().await;
    let http = reqwest::Client::new();
    let url = format!("{}/graphql", e.fake.url());
    // Literal style with ?api_key=, as runpod-python used to send it.
    let literal = r#"mutation { podFindAndDeployOnDemand(input: { name: "job-1", imageName: "runpod/pytorch:2.4.0", cloudType: SECURE, gpuTypeId: "NVIDIA RTX A6000", gpuCount: 1, ports: "8888/http,22/tcp", env: [{ key: "JUPYTER_PASSWORD", value: "secret" }] }) { podId: id imageName env machine { podHostId } } }"#;
    let answer: serde_json::Value = http
        .post(format!("{url}?api_key=test-key"))
        .json(&serde_json::json!({"query": literal}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pod = &answer["data"]["podFindAndDeployOnDemand"];
    assert_eq!(pod["env"], serde_json::json!(["JUPYTER_PASSWORD=secret"]));
    assert!(pod["podId"].as_str().is_some() && pod.get("id").is_none(), "{answer}");
    assert_eq!(e.fake.pods()[0].ports, vec!["8888/http".to_string(), "22/tcp".to_string()]);
    // No key: 401 in GraphQL's shape (gpuTypes alone stays public, as gpuhunt uses it).
    let r =
        http.post(&url).json(&serde_json::json!({"query": "query { myself { pods { id } } }"})).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("API key"));
    let r = http.post(&url).json(&serde_json::json!({"query": "{ gpuTypes { id } }"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Unknown input fields are validation errors (HTTP 400), as on RunPod.
    let r = http.post(&url).bearer_auth("test-key").json(&serde_json::json!({"query": "mutation { podResume(input: {podId: \"x\", allowedCudaVersions: [\"12.8\"]}) { id } }"})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["message"],
        "Field \"allowedCudaVersions\" is not defined by type \"PodResumeInput\"."
    );
    // Terminating a missing pod: an error inside HTTP 200.
    let r = http
        .post(&url)
        .bearer_auth("test-key")
        .json(&serde_json::json!({"query": "mutation { podTerminate(input: {podId: \"gone\"}) }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["message"], "pod not found to terminate");
    // REST v2 without a key: problem+json 401.
    let r = http.get(format!("{}/v2/pods", e.fake.url())).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn live_read_only() {
    let Ok(key) = std::env::var("RUNPOD_API_KEY") else {
        println!("skipped: RUNPOD_API_KEY not set");
        return;
    };
    let client =
        RunPodClient::from_settings(&settings("https://api.runpod.io", &key, &[]), ApiChangeReporter::default())
            .unwrap();
    let offers = client.list_offers(&OfferFilter::default()).await.unwrap();
    assert!(!offers.is_empty());
    let instances = client.list_instances().await.unwrap();
    println!(
        "runpod live: {} offers, {} pods, spot available: {}",
        offers.len(),
        instances.len(),
        client.spot_available()
    );
}

// ---------------------------------------------------------------------------------------------
// Listings that say nothing, and the one-machine answers that do (issue 10).

fn sorted_ids(listed: &[ProviderInstance]) -> Vec<String> {
    let mut ids: Vec<String> = listed.iter().map(|m| m.id.clone()).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_null_or_missing_list_is_a_contract_change_never_an_empty_account() {
    let mut e = env().await;
    e.fake.add_foreign_pods(2);
    let ids = e.fake.live_machines();
    assert_eq!(sorted_ids(&e.client.list_instances().await.unwrap()), ids);
    e.fake.control().cue(e.fake.list_glitch_cue(ListGlitch::Empty, 1));
    assert_eq!(e.client.list_instances().await.unwrap().len(), 0, "an empty list is an answer");
    let _ = reports(&mut e.reports);
    for glitch in [ListGlitch::Null, ListGlitch::Missing] {
        e.fake.control().cue(e.fake.list_glitch_cue(glitch.clone(), 1));
        let err = e.client.list_instances().await.unwrap_err();
        assert_eq!(err.class, FailureClass::ContractChanged, "{glitch:?}: {err}");
        assert!(err.message.contains("GET /v2/pods") && err.message.contains("`pods`"), "{err}");
        assert!(matches!(reports(&mut e.reports)[..], [ApiChangeKind::UnexpectedShape(_)]));
    }
    let gone = r#"{"title":"Gone","status":410,"detail":"this endpoint is retired"}"#;
    e.fake.control().cue(e.fake.list_cue(Misbehaviour::Status { code: 410, body: gone.into(), retry_after: None }, 1));
    assert_eq!(e.client.list_instances().await.unwrap_err().class, FailureClass::ContractChanged);
    e.fake.control().cue(e.fake.list_glitch_cue(ListGlitch::Omit(ids[0].clone()), 1));
    assert_eq!(sorted_ids(&e.client.list_instances().await.unwrap()), ids[1..].to_vec());
    assert!(ids.iter().all(|id| e.fake.destroy_calls(id) == 0));
    // The parser tools use refuses a null list too.
    assert!(wire::parse_pod_list(br#"{"pods": null}"#).is_err());
    assert!(wire::parse_pod_list(br#"{}"#).is_err());
    assert!(wire::parse_pod_list(br#"{"pods": []}"#).unwrap().is_empty());
}

#[tokio::test]
async fn status_is_not_found_only_on_runpods_own_answer() {
    let e = env().await;
    e.fake.add_foreign_pods(2);
    let ids = e.fake.live_machines();
    assert_eq!(e.client.status("nosuchpod0000").await.unwrap_err().class, FailureClass::NotFound);
    assert!(e.fake.vanish(&ids[0]));
    assert_eq!(e.client.status(&ids[0]).await.unwrap_err().class, FailureClass::NotFound);
    assert_eq!(sorted_ids(&e.client.list_instances().await.unwrap()), ids[1..].to_vec());
    assert_eq!(e.client.status("not a pod id").await.unwrap_err().class, FailureClass::InvalidRequest);
    let cue = |code: u16, body: &str| {
        e.fake.control().cue(Cue::on(
            Operation::Status,
            Misbehaviour::Status { code, body: body.into(), retry_after: None },
            1,
        ))
    };
    cue(404, "404 page not found");
    assert_eq!(e.client.status(&ids[1]).await.unwrap_err().class, FailureClass::Unknown, "not RunPod's answer");
    cue(503, "upstream connect error");
    assert_eq!(e.client.status(&ids[1]).await.unwrap_err().class, FailureClass::ProviderOutage);
    e.fake.control().cue(Cue::on(Operation::Status, Misbehaviour::MalformedJson, 1));
    assert_eq!(e.client.status(&ids[1]).await.unwrap_err().class, FailureClass::ContractChanged);
    assert!(e.client.status(&ids[1]).await.is_ok());
}

#[tokio::test]
async fn a_cut_off_or_stalled_launch_is_no_capacity_verdict_and_the_pod_exists() {
    let e = env_with(RunPodFakeConfig::default(), &[("request_timeout_ms", "300"), ("spot", "graphql")]).await;
    let on_demand = offer_for(&e, GpuType::A6000, 1, false).await;
    let spot = offer_for(&e, GpuType::A6000, 1, true).await;
    let stall = || Misbehaviour::StallAfterServing(Duration::from_millis(1500));
    let cases = [
        (spec(&on_demand.id, 1, false, None), Misbehaviour::MalformedJson, FailureClass::ContractChanged),
        (spec(&on_demand.id, 1, false, None), stall(), FailureClass::ProviderOutage),
        (spec(&spot.id, 1, true, None), Misbehaviour::MalformedJson, FailureClass::ContractChanged),
        (spec(&spot.id, 1, true, None), stall(), FailureClass::ProviderOutage),
    ];
    for (n, (spec, misbehaviour, class)) in cases.into_iter().enumerate() {
        e.fake.control().cue(e.fake.launch_cue(misbehaviour.clone(), 1));
        let err = e.client.launch(&spec).await.unwrap_err();
        assert_eq!(err.class, class, "{misbehaviour:?}, spot {}: {err}", spec.spot);
        assert_eq!(e.fake.live_machines().len(), n + 1, "the pod was made");
        assert!(e.fake.pods().iter().any(|p| p.name == spec.attempt_id.as_str()), "named after its attempt");
    }
    assert!(e.client.spot_available(), "a broken answer is not spot going away");
    let id = e.fake.live_machines()[0].clone();
    assert_eq!(e.fake.destroy_calls(&id), 0);
    e.client.terminate(&id).await.unwrap();
    e.client.terminate(&id).await.unwrap();
    assert_eq!(e.fake.destroy_calls(&id), 2);
}

#[tokio::test]
async fn secure_only_asks_the_secure_cloud_alone_and_a_launch_sends_its_disk() {
    let e = env_with(RunPodFakeConfig::default(), &[]).await;
    let needs = tgp_events::Needs { secure_only: true, ..Default::default() };
    let filter = OfferFilter { gpu_type: Some(GpuType::A6000), needs, ..OfferFilter::default() };
    let offers = e.client.list_offers(&filter).await.unwrap();
    assert!(!offers.is_empty());
    assert!(offers.iter().all(|o| o.id.starts_with("SECURE/") && o.specs.secure == Some(true)), "{offers:?}");
    let catalog: Vec<String> = e
        .fake
        .control()
        .seen()
        .into_iter()
        .filter(|r| r.path.starts_with("/v2/catalog/gpus"))
        .map(|r| r.query.unwrap_or_default())
        .collect();
    assert!(!catalog.is_empty() && catalog.iter().all(|q| q.contains("cloud=SECURE")), "{catalog:?}");

    // RunPod's catalog says nothing of vCPUs or RAM: a launch asking for them leaves RunPod out.
    let cpus = tgp_events::Needs { min_vcpus: Some(8), ..Default::default() };
    assert_eq!(
        tgp_actors::selection::unmet(&cpus, &offers[0]).map(|s| s.to_string()).as_deref(),
        Some("does not say its vCPUs; 8 asked")
    );

    let offer = offer_for(&e, GpuType::A6000, 1, false).await;
    let mut spec = spec(&offer.id, 1, false, None);
    spec.disk_gb = Some(200);
    let receipt = e.client.launch(&spec).await.unwrap();
    let pod = e.fake.pods().into_iter().find(|p| p.id == receipt.provider_instance_id).unwrap();
    assert_eq!(pod.disk, 200, "REST v2's `disk`");
}
