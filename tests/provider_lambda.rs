//! Contract tests of the Lambda client against the fake Lambda (and against the note's example
//! payloads served verbatim), plus a read-only live test when LAMBDA_API_KEY is set.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::Value;
use tgp::providers::api_change::{ApiChangeKind, ApiChangeReporter};
use tgp::providers::config::{ApiKey, ProviderKind, ProviderSettings};
use tgp::providers::lambda::{LambdaClient, ssh_key_name};
use tgp_actors::provider::{LaunchSpec, MachineStatus, OfferFilter, ProviderClient};
use tgp_events::events::{FailureClass, InterruptionReason};
use tgp_events::{AttemptId, BillingUnit, GpuType, InstanceId, Money, Region, SpotPolicy};
use tgp_testkit::fakes::lambda::{LambdaFake, LambdaFakeConfig};
use tgp_testkit::fakes::{Cue, FakeControl, FakeProvider, FakeServer, ListGlitch, Misbehaviour, Operation};

const PUBLIC_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0v3ExampleKeyForTests tgp@test";
const H100: &str = "gpu_1x_h100_pcie";

fn settings(url: &str, key: &str, options: &[(&str, &str)]) -> ProviderSettings {
    let mut all: BTreeMap<String, String> =
        BTreeMap::from([("launch_interval_ms".into(), "0".into()), ("launches_per_minute".into(), "0".into())]);
    all.extend(options.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    ProviderSettings {
        kind: ProviderKind::Lambda,
        url: url.to_string(),
        key: Some(ApiKey::new(key)),
        options: all,
        disabled: None,
    }
}

struct Setup {
    fake: LambdaFake,
    client: LambdaClient,
    reporter: ApiChangeReporter,
}

async fn setup_with(config: LambdaFakeConfig, options: &[(&str, &str)]) -> Setup {
    let fake = LambdaFake::start(config).await.unwrap();
    // Deterministic capacity for the tests: H100 PCIe in us-east-1 only.
    fake.clear_capacity();
    fake.set_capacity(H100, "us-east-1", true);
    let reporter = ApiChangeReporter::default();
    let client = LambdaClient::from_settings(&settings(&fake.url(), "test-key", options), reporter.clone()).unwrap();
    Setup { fake, client, reporter }
}

async fn setup() -> Setup {
    setup_with(LambdaFakeConfig::default(), &[]).await
}

fn attempt(n: u32) -> AttemptId {
    AttemptId::new(&"job-7".parse::<InstanceId>().unwrap(), n)
}

fn spec(n: u32, offer: &str) -> LaunchSpec {
    LaunchSpec {
        attempt_id: attempt(n),
        offer_id: offer.to_string(),
        spot: false,
        bid: None,
        gpu_count: 1,
        image: "nvcr.io/nvidia/pytorch:24.05-py3".into(),
        env: BTreeMap::from([("HF_TOKEN".to_string(), "it's secret".into())]),
        ssh_public_key: Some(PUBLIC_KEY.into()),
        disk_gb: None,
    }
}

fn h100_offer() -> String {
    format!("{H100}@us-east-1")
}

/// Polls until the machine reports `want` (bounded; no timing is asserted).
async fn wait_for(client: &LambdaClient, id: &str, want: MachineStatus) {
    for _ in 0..200 {
        if client.status(id).await.map(|m| m.status) == Ok(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{id} never reached {want:?}");
}

fn error_body(code: &str, message: &str) -> String {
    serde_json::json!({"error": {"code": code, "message": message}}).to_string()
}

#[tokio::test]
async fn info_rate_limits_and_translations() {
    let s = setup().await;
    let info = s.client.info();
    assert_eq!(info.name.as_str(), "lambda");
    assert!(!info.supports_spot && !info.supports_bids);
    assert_eq!(s.client.rate_limits().requests_per_minute, 60);
    assert_eq!(s.client.translate_gpu(GpuType::H100).as_deref(), Some("h100"));
    assert_eq!(s.client.translate_gpu(GpuType::A100_80GB).as_deref(), Some("a100_80gb"));
    assert_eq!(s.client.translate_gpu(GpuType::RTX4090), None);
    let region = |r: &str| r.parse::<Region>().unwrap();
    assert_eq!(s.client.translate_region(&region("us-east")).as_deref(), Some("us-east-1"));
    assert_eq!(s.client.translate_region(&region("eu-central")).as_deref(), Some("europe-central-1"));
    assert_eq!(s.client.translate_region(&region("canada")), None);
}

#[tokio::test]
async fn offers_are_normalized_and_filtered() {
    let s = setup().await;
    s.fake.set_capacity("gpu_1x_gh200", "us-west-1", true);
    s.fake.set_capacity("gpu_1x_a10", "europe-south-1", true);
    s.fake.set_capacity("gpu_8x_h100_sxm5", "us-east-1", true);
    s.fake.set_capacity("cpu_4x_general", "us-east-1", true);
    let all = s.client.list_offers(&OfferFilter::default()).await.unwrap();
    assert_eq!(all.len(), 4, "{all:#?}"); // the CPU type is not a GPU offer
    let h100 = all.iter().find(|o| o.id == h100_offer()).unwrap();
    assert_eq!(h100.gpu_type, Some(GpuType::H100));
    assert_eq!(h100.gpu_count, 1);
    assert_eq!(h100.provider_gpu_name, "H100 (80 GB PCIe)");
    assert_eq!(h100.region, Some("us-east".parse().unwrap()));
    assert_eq!(h100.provider_region, "us-east-1");
    let cents = s.fake.price_cents(H100).unwrap();
    assert_eq!(h100.on_demand_price, Some(Money::from_cents(cents)));
    assert_eq!(h100.spot_price, None);
    assert_eq!(h100.available, 1);
    assert_eq!(h100.billing.unit, BillingUnit::Minute);
    // Untranslated names are kept, marked.
    let gh200 = all.iter().find(|o| o.id == "gpu_1x_gh200@us-west-1").unwrap();
    assert_eq!((gh200.gpu_type, gh200.provider_gpu_name.as_str()), (None, "GH200 (96 GB)"));
    let italy = all.iter().find(|o| o.id == "gpu_1x_a10@europe-south-1").unwrap();
    assert_eq!((italy.region.clone(), italy.gpu_type), (None, Some(GpuType::A10)));

    let filter = |f: OfferFilter| {
        let c = &s.client;
        async move { c.list_offers(&f).await.unwrap().into_iter().map(|o| o.id).collect::<Vec<_>>() }
    };
    let h100s =
        OfferFilter { gpu_type: Some(GpuType::H100), regions: vec!["us-east".parse().unwrap()], ..Default::default() };
    assert_eq!(filter(h100s.clone()).await.len(), 2);
    let eight = OfferFilter { min_gpu_count: Some(8), ..h100s.clone() };
    assert_eq!(filter(eight).await, vec!["gpu_8x_h100_sxm5@us-east-1".to_string()]);
    let cheap = OfferFilter { max_machine_price: Some(Money::from_cents(cents)), ..h100s.clone() };
    assert_eq!(filter(cheap).await, vec![h100_offer()]);
    let too_cheap = OfferFilter { max_machine_price: Some(Money::from_cents(cents - 1)), ..h100s.clone() };
    assert!(filter(too_cheap).await.is_empty());
    let spot = OfferFilter { spot: Some(SpotPolicy::SpotOnly), ..h100s.clone() };
    assert!(filter(spot).await.is_empty(), "Lambda has no spot");
    let on_demand = OfferFilter { spot: Some(SpotPolicy::OnDemandOnly), ..h100s };
    assert_eq!(filter(on_demand).await.len(), 2);
}

#[tokio::test]
async fn normalized_pricing_is_the_cheapest_price_per_gpu_hour() {
    let s = setup().await;
    s.fake.set_capacity("gpu_1x_h100_sxm5", "us-east-2", true);
    let us_east: Region = "us-east".parse().unwrap();
    let (on_demand, spot) = s.client.normalized_pricing(GpuType::H100, &us_east).await.unwrap();
    let pcie = s.fake.price_cents(H100).unwrap();
    let sxm = s.fake.price_cents("gpu_1x_h100_sxm5").unwrap();
    assert_eq!(on_demand, Some(Money::from_cents(pcie.min(sxm))));
    assert_eq!(spot, None);
    let none = s.client.normalized_pricing(GpuType::B200, &us_east).await.unwrap();
    assert_eq!(none, (None, None));
}

#[tokio::test]
async fn launch_sends_name_tag_key_image_and_env_as_lambda_takes_them() {
    let s = setup().await;
    let receipt = s.client.launch(&spec(1, &h100_offer())).await.unwrap();
    assert_eq!(receipt.hourly_price, Money::from_cents(s.fake.price_cents(H100).unwrap()));
    assert_eq!(receipt.billing.unit, BillingUnit::Minute);
    let key_name = ssh_key_name(PUBLIC_KEY).unwrap();
    assert_eq!(s.fake.ssh_keys(), vec![(key_name.clone(), PUBLIC_KEY.to_string())]);

    let sent = s.fake.launch_requests();
    let body = &sent[0];
    assert_eq!(body["name"], "tgp-job-7-1");
    assert_eq!(body["tags"], serde_json::json!([{"key": "tgp-attempt", "value": "tgp-job-7-1"}]));
    assert_eq!(body["ssh_key_names"], serde_json::json!([key_name]));
    // Lambda's API spec 1.8.3 has no `quantity`: a launch starts one machine.
    assert!(body.get("quantity").is_none(), "no quantity: {body}");
    assert_eq!(body["region_name"], "us-east-1");
    assert_eq!(body["instance_type_name"], H100);
    // Every field of the spec 1.8.3 example request is sent.
    let example: Value = serde_json::from_str(include_str!("fixtures/lambda/launch_request.json")).unwrap();
    for field in example.as_object().unwrap().keys() {
        assert!(body.get(field).is_some(), "{field} missing from {body}");
    }
    let user_data = s.fake.user_data(&receipt.provider_instance_id).unwrap();
    assert!(user_data.contains("'nvcr.io/nvidia/pytorch:24.05-py3'"), "{user_data}");
    assert!(user_data.contains(r"-e 'HF_TOKEN=it'\''s secret'"), "{user_data}");

    let id = receipt.provider_instance_id;
    wait_for(&s.client, &id, MachineStatus::Running).await;
    let machine = s.client.status(&id).await.unwrap();
    assert_eq!(machine.label.as_deref(), Some("tgp-job-7-1"));
    assert_eq!(machine.raw_status, "active");
    let ip = s.fake.instance(&id).unwrap()["ip"].as_str().unwrap().to_string();
    assert_eq!(machine.connection.public_ip.as_deref(), Some(ip.as_str()));
    assert_eq!(machine.connection.ssh_user.as_deref(), Some("ubuntu"));
    assert_eq!(machine.connection.ssh_port, Some(22));
    assert_eq!(machine.hourly_price, Some(receipt.hourly_price));

    // The same key is registered once.
    s.client.launch(&spec(2, &h100_offer())).await.unwrap();
    assert_eq!(s.fake.ssh_keys().len(), 1);
    assert_eq!(s.fake.control().count("POST", "/api/v1/ssh-keys"), 1);
}

#[tokio::test]
async fn a_configured_key_name_is_used_as_is() {
    let s = setup_with(LambdaFakeConfig::default(), &[("ssh_key_name", "team-key")]).await;
    s.fake.add_ssh_key("team-key", PUBLIC_KEY);
    let mut no_key = spec(1, &h100_offer());
    no_key.ssh_public_key = None;
    s.client.launch(&no_key).await.unwrap();
    assert_eq!(s.fake.launch_requests()[0]["ssh_key_names"], serde_json::json!(["team-key"]));
    assert_eq!(s.fake.control().count("GET", "/api/v1/ssh-keys"), 0);
}

#[tokio::test]
async fn what_lambda_cannot_take_is_refused_before_any_call() {
    let s = setup().await;
    let mut cases = Vec::new();
    let mut no_key = spec(1, &h100_offer());
    no_key.ssh_public_key = None;
    cases.push(("no SSH key", no_key));
    cases.push(("spot", LaunchSpec { spot: true, ..spec(1, &h100_offer()) }));
    cases.push(("bad offer", spec(1, "h100-anywhere")));
    let mut bad_env = spec(1, &h100_offer());
    bad_env.env.insert("NOT-A-NAME".into(), "x".into());
    cases.push(("bad env", bad_env));
    cases.push(("bad image", LaunchSpec { image: "two words".into(), ..spec(1, &h100_offer()) }));
    for (what, spec) in cases {
        let e = s.client.launch(&spec).await.unwrap_err();
        assert_eq!(e.class, FailureClass::InvalidRequest, "{what}: {e}");
    }
    assert!(s.fake.control().seen().is_empty(), "{:?}", s.fake.control().seen());
    let e = s.client.launch(&LaunchSpec { gpu_count: 8, ..spec(1, &h100_offer()) }).await.unwrap_err();
    assert_eq!(e.class, FailureClass::InvalidRequest, "{e}");
    assert!(e.message.contains("GPUs"), "{e}");
    assert_eq!(s.fake.control().count("POST", "/api/v1/instance-operations/launch"), 0);
    assert!(s.fake.live_machines().is_empty());
}

#[tokio::test]
async fn no_capacity_is_a_capacity_error_listed_or_raced() {
    let s = setup().await;
    // Not listed in that region: refused before the launch call.
    let e = s.client.launch(&spec(1, &format!("{H100}@us-west-1"))).await.unwrap_err();
    assert_eq!(e.class, FailureClass::Capacity, "{e}");
    assert_eq!(s.fake.control().count("POST", "/api/v1/instance-operations/launch"), 0);
    // Listed, then gone at launch (Lambda's race): Lambda's own code, classed as capacity.
    s.fake.set_no_capacity(true);
    let e = s.client.launch(&spec(2, &h100_offer())).await.unwrap_err();
    assert_eq!(e.class, FailureClass::Capacity, "{e}");
    assert_eq!(e.code.as_deref(), Some("instance-operations/launch/insufficient-capacity"));
    assert!(e.message.contains("Not enough capacity"), "{e}");
    assert!(s.fake.live_machines().is_empty());
    s.fake.set_no_capacity(false);
    s.client.launch(&spec(3, &h100_offer())).await.unwrap();
    assert_eq!(s.fake.live_machines().len(), 1);
}

#[tokio::test]
async fn a_wrong_key_is_an_auth_error_with_lambdas_code() {
    let s = setup().await;
    let wrong = LambdaClient::from_settings(&settings(&s.fake.url(), "nope", &[]), s.reporter.clone()).unwrap();
    let e = wrong.list_offers(&OfferFilter::default()).await.unwrap_err();
    assert_eq!(e.class, FailureClass::Auth);
    assert_eq!(e.code.as_deref(), Some("global/invalid-api-key"));
    let seen = s.fake.control().seen();
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer nope"));
    s.client.list_instances().await.unwrap();
    assert_eq!(s.fake.control().seen()[1].authorization.as_deref(), Some("Bearer test-key"));
}

#[tokio::test]
async fn unknown_instances_are_not_found_and_terminate_ok() {
    let s = setup().await;
    let e = s.client.status("0000000000000000000000000000dead").await.unwrap_err();
    assert_eq!(e.class, FailureClass::NotFound);
    assert_eq!(e.code.as_deref(), Some("global/object-does-not-exist"));
    s.client.terminate("0000000000000000000000000000dead").await.unwrap();
    let e = s.client.status("../ssh-keys").await.unwrap_err();
    assert_eq!(e.class, FailureClass::InvalidRequest);
}

#[tokio::test]
async fn rate_limits_keep_retry_after() {
    let s = setup().await;
    let body = error_body("global/too-many-requests", "Too many requests.");
    s.fake.control().cue(Cue::once(
        "/api/v1/instances",
        Misbehaviour::Status { code: 429, body: body.clone(), retry_after: Some("7".into()) },
    ));
    let e = s.client.list_instances().await.unwrap_err();
    assert_eq!((e.class, e.retry_after_seconds), (FailureClass::RateLimited, Some(7)));
    s.fake.control().cue(Cue::once("/api/v1/instances", Misbehaviour::Status { code: 429, body, retry_after: None }));
    let e = s.client.list_instances().await.unwrap_err();
    assert_eq!((e.class, e.retry_after_seconds), (FailureClass::RateLimited, None));
}

#[tokio::test]
async fn the_fakes_own_launch_limit_answers_429_json_or_html() {
    for html in [false, true] {
        let config = LambdaFakeConfig {
            launch_interval: Some(Duration::from_secs(60)),
            rate_limit_html: html,
            ..Default::default()
        };
        let s = setup_with(config, &[]).await;
        s.client.launch(&spec(1, &h100_offer())).await.unwrap();
        let e = s.client.launch(&spec(2, &h100_offer())).await.unwrap_err();
        assert_eq!(e.class, FailureClass::RateLimited, "{e}");
        assert!(e.retry_after_seconds.is_some_and(|s| s > 0), "{e:?}");
        assert_eq!(html, e.message.contains("rate limited"), "{e}");
        assert_eq!(s.fake.live_machines().len(), 1);
    }
}

#[tokio::test]
async fn server_errors_are_outages_and_keep_the_code() {
    let s = setup().await;
    let body = error_body("global/internal-error", "An internal server error occurred.");
    s.fake
        .control()
        .cue(Cue::once("/api/v1/instance-types", Misbehaviour::Status { code: 500, body, retry_after: None }));
    let e = s.client.list_offers(&OfferFilter::default()).await.unwrap_err();
    assert_eq!(e.class, FailureClass::ProviderOutage);
    assert_eq!(e.code.as_deref(), Some("global/internal-error"));
    s.fake.control().cue(Cue::once(
        "/api/v1/instances",
        Misbehaviour::Status { code: 503, body: "<html>down</html>".into(), retry_after: None },
    ));
    let e = s.client.list_instances().await.unwrap_err();
    assert_eq!((e.class, e.code), (FailureClass::ProviderOutage, None));
}

#[tokio::test]
async fn broken_or_renamed_json_is_a_contract_change_naming_the_field() {
    let s = setup().await;
    let mut changes = s.reporter.subscribe();
    s.fake.control().cue(Cue::once("/api/v1/instance-types", Misbehaviour::MalformedJson));
    let e = s.client.list_offers(&OfferFilter::default()).await.unwrap_err();
    assert_eq!(e.class, FailureClass::ContractChanged, "{e}");
    assert!(e.message.contains("not valid JSON"), "{e}");
    let rename = Misbehaviour::RenameField { from: "price_cents_per_hour".into(), to: "price_per_hour".into() };
    s.fake.control().cue(Cue::once("/api/v1/instance-types", rename));
    let e = s.client.list_offers(&OfferFilter::default()).await.unwrap_err();
    assert_eq!(e.class, FailureClass::ContractChanged);
    assert!(e.message.contains("price_cents_per_hour") && e.message.contains("/api/v1/instance-types"), "{e}");
    let first = changes.recv().await.unwrap();
    assert!(matches!(first.kind, ApiChangeKind::UnexpectedShape(_)), "{first:?}");
}

#[tokio::test]
async fn deprecation_headers_are_reported() {
    let s = setup().await;
    let mut changes = s.reporter.subscribe();
    let sunset = "Wed, 01 Sep 2027 00:00:00 GMT";
    s.fake.control().cue(Cue::once("/api/v1/instances", Misbehaviour::Deprecated { sunset: sunset.into() }));
    s.client.list_instances().await.unwrap();
    let mut kinds = [changes.recv().await.unwrap(), changes.recv().await.unwrap()];
    kinds.sort_by_key(|c| format!("{:?}", c.kind));
    assert_eq!(kinds[0].kind, ApiChangeKind::Deprecation("true".into()));
    assert_eq!(kinds[1].kind, ApiChangeKind::Sunset(sunset.into()));
    assert_eq!(kinds[0].endpoint, "GET /api/v1/instances");
}

#[tokio::test]
async fn every_status_value_maps_and_unknown_ones_are_reported() {
    // Nothing moves on by itself here: each status stays until the test changes it.
    let slow = Duration::from_secs(600);
    let config =
        LambdaFakeConfig { boot_delay: slow, terminating_delay: slow, terminated_linger: slow, ..Default::default() };
    let s = setup_with(config, &[]).await;
    let mut changes = s.reporter.subscribe();
    let id = s.client.launch(&spec(1, &h100_offer())).await.unwrap().provider_instance_id;
    let booting = s.client.status(&id).await.unwrap();
    assert_eq!(booting.connection.public_ip, None, "no ip while booting");
    let table = [
        ("booting", MachineStatus::Starting),
        ("active", MachineStatus::Running),
        ("unhealthy", MachineStatus::Starting),
        ("terminating", MachineStatus::Terminated),
        ("terminated", MachineStatus::Terminated),
        ("preempted", MachineStatus::Interrupted(InterruptionReason::Preempted)),
        ("hibernating", MachineStatus::Starting),
    ];
    for (raw, want) in table {
        assert!(s.fake.set_status(&id, raw));
        let one = s.client.status(&id).await.unwrap();
        let listed = s.client.list_instances().await.unwrap();
        assert_eq!((one.raw_status.as_str(), one.status), (raw, want));
        assert_eq!(listed[0].status, want, "{raw}");
    }
    let change = changes.recv().await.unwrap();
    assert_eq!(change.kind, ApiChangeKind::UnknownStatus("hibernating".into()));
    assert_eq!(change.endpoint, format!("GET /api/v1/instances/{id}"));
}

#[tokio::test]
async fn an_interruption_is_lambdas_preempted_status() {
    let config = LambdaFakeConfig { boot_delay: Duration::from_secs(600), ..Default::default() };
    let s = setup_with(config, &[]).await;
    let id = s.client.launch(&spec(1, &h100_offer())).await.unwrap().provider_instance_id;
    assert!(!s.fake.interrupt(&id), "only an active machine can be preempted");
    assert!(s.fake.set_status(&id, "active"));
    assert!(s.fake.interrupt(&id));
    let listed = s.client.list_instances().await.unwrap();
    assert_eq!(listed[0].status, MachineStatus::Interrupted(InterruptionReason::Preempted));
    assert_eq!(listed[0].raw_status, "preempted");
}

#[tokio::test]
async fn terminate_is_ok_while_going_and_once_gone() {
    let config = LambdaFakeConfig {
        terminating_delay: Duration::from_secs(600),
        terminated_linger: Duration::ZERO,
        ..Default::default()
    };
    let s = setup_with(config, &[]).await;
    let id = s.client.launch(&spec(1, &h100_offer())).await.unwrap().provider_instance_id;
    wait_for(&s.client, &id, MachineStatus::Running).await;
    s.client.terminate(&id).await.unwrap();
    assert!(s.fake.live_machines().is_empty());
    assert_eq!(s.client.status(&id).await.unwrap().status, MachineStatus::Terminated);
    // Lambda answers a second terminate with global/unknown; the machine is going, so Ok.
    s.client.terminate(&id).await.unwrap();
    let terminates = s.fake.control().count("POST", "/api/v1/instance-operations/terminate");
    assert_eq!(terminates, 2);
    // Torn down: `terminated`, then gone from the account (404).
    assert!(s.fake.set_status(&id, "terminated"));
    assert_eq!(s.client.status(&id).await.unwrap_err().class, FailureClass::NotFound);
    s.client.terminate(&id).await.unwrap();
}

#[tokio::test]
async fn terminate_keeps_a_real_failure() {
    let s = setup().await;
    let id = s.client.launch(&spec(1, &h100_offer())).await.unwrap().provider_instance_id;
    let body = error_body("global/internal-error", "An internal server error occurred.");
    s.fake.control().cue(Cue::once(
        "/api/v1/instance-operations/terminate",
        Misbehaviour::Status { code: 500, body, retry_after: None },
    ));
    let e = s.client.terminate(&id).await.unwrap_err();
    assert_eq!(e.class, FailureClass::ProviderOutage);
    assert_eq!(s.fake.live_machines(), vec![id]);
}

#[tokio::test]
async fn list_instances_is_one_call_per_page() {
    let s = setup().await;
    let a = s.client.launch(&spec(1, &h100_offer())).await.unwrap().provider_instance_id;
    let b = s.client.launch(&spec(2, &h100_offer())).await.unwrap().provider_instance_id;
    let before = s.fake.control().count("GET", "/api/v1/instances");
    let listed = s.client.list_instances().await.unwrap();
    assert_eq!(s.fake.control().count("GET", "/api/v1/instances"), before + 1);
    let mut ids: Vec<_> = listed.iter().map(|m| m.id.clone()).collect();
    ids.sort();
    let mut want = vec![a, b];
    want.sort();
    assert_eq!(ids, want);
    let labels: Vec<_> = listed.iter().filter_map(|m| m.label.clone()).collect();
    assert_eq!(labels.len(), 2);
}

#[tokio::test]
async fn undocumented_fields_are_ignored() {
    let s = setup_with(LambdaFakeConfig { extra_fields: true, ..Default::default() }, &[]).await;
    assert_eq!(s.client.list_offers(&OfferFilter::default()).await.unwrap().len(), 1);
    let id = s.client.launch(&spec(1, &h100_offer())).await.unwrap().provider_instance_id;
    s.client.launch(&spec(2, &h100_offer())).await.unwrap(); // reads the key list with workspace_id
    assert_eq!(s.client.status(&id).await.unwrap().label.as_deref(), Some("tgp-job-7-1"));
    assert_eq!(s.client.list_instances().await.unwrap().len(), 2);
}

#[tokio::test]
async fn the_fake_speaks_lambdas_quirks() {
    let s = setup().await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}/api/v1{p}", s.fake.url());
    // Basic auth with the key as user name works; no auth is Lambda's 401 envelope.
    let basic = http.get(url("/instances")).header("authorization", "Basic dGVzdC1rZXk6").send().await.unwrap();
    assert_eq!(basic.status(), StatusCode::OK);
    let none: Value = http.get(url("/instances")).send().await.unwrap().json().await.unwrap();
    assert_eq!(none["error"]["code"], "global/invalid-api-key");
    // The old host is served with a Deprecation header.
    let old = http
        .get(url("/instances"))
        .bearer_auth("test-key")
        .header("host", "cloud.lambdalabs.com")
        .send()
        .await
        .unwrap();
    assert_eq!(old.headers().get("deprecation").unwrap(), "true");
    // A JSON body without a content type is read; quantity 2 is refused as Lambda does.
    s.fake.add_ssh_key("k", PUBLIC_KEY);
    let body =
        format!(r#"{{"region_name":"us-east-1","instance_type_name":"{H100}","ssh_key_names":["k"],"quantity":2}}"#);
    let answer = http.post(url("/instance-operations/launch")).bearer_auth("test-key").body(body).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "global/invalid-parameters");
    assert_eq!(answer["error"]["message"], "quantity: Input should be less than or equal to 1");
}

/// A handler answering a fixture file as JSON.
macro_rules! fixture {
    ($file:literal) => {
        || async { ([("content-type", "application/json")], include_str!(concat!("fixtures/lambda/", $file))) }
    };
}

/// Serves the note's example payloads verbatim on Lambda's paths.
async fn fixture_server() -> FakeServer {
    let router = Router::new()
        .route("/api/v1/instance-types", get(fixture!("instance_types.json")))
        .route(
            "/api/v1/instances",
            get(|| async {
                let one: Value = serde_json::from_str(include_str!("fixtures/lambda/instance.json")).unwrap();
                axum::Json(serde_json::json!({"data": [one["data"]]}))
            }),
        )
        .route("/api/v1/instances/0920582c7ff041399e34823a0be62549", get(fixture!("instance.json")))
        .route(
            "/api/v1/instances/00000000000000000000000000000000",
            get(|| async { (StatusCode::NOT_FOUND, include_str!("fixtures/lambda/error_instance_not_found.json")) }),
        )
        .route("/api/v1/ssh-keys", get(fixture!("ssh_keys.json")))
        .route("/api/v1/instance-operations/launch", post(fixture!("launch.json")))
        .route("/api/v1/instance-operations/terminate", post(fixture!("terminate.json")));
    FakeServer::start(router, FakeControl::default()).await.unwrap()
}

#[tokio::test]
async fn the_notes_example_payloads_parse() {
    let server = fixture_server().await;
    let opts = [("ssh_key_name", "my-public-key")];
    let client =
        LambdaClient::from_settings(&settings(&server.url(), "k", &opts), ApiChangeReporter::default()).unwrap();
    let offers = client.list_offers(&OfferFilter::default()).await.unwrap();
    let ids: Vec<_> = offers.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, ["gpu_1x_h100_pcie@us-west-1", "gpu_1x_h100_pcie@us-west-2"]); // B200: no capacity
    assert!(offers.iter().all(|o| o.gpu_type == Some(GpuType::H100)
        && o.on_demand_price == Some("3.29".parse().unwrap())
        && o.region == Some("us-west".parse().unwrap())));

    let machine = client.status("0920582c7ff041399e34823a0be62549").await.unwrap();
    assert_eq!(machine.status, MachineStatus::Running);
    assert_eq!(machine.connection.ssh_host.as_deref(), Some("198.51.100.2"));
    assert_eq!(machine.hourly_price, Some("3.29".parse().unwrap()));
    // "tgp-7f3a9c-a1" does not end in an attempt number, so it is not taken for a tgp label.
    assert_eq!(machine.label, None);
    assert_eq!(client.list_instances().await.unwrap().len(), 1);
    let gone = client.status("00000000000000000000000000000000").await.unwrap_err();
    assert_eq!(gone.class, FailureClass::NotFound);

    let receipt = client.launch(&spec(1, "gpu_1x_h100_pcie@us-west-1")).await.unwrap();
    assert_eq!(receipt.provider_instance_id, "0920582c7ff041399e34823a0be62549");
    assert_eq!(receipt.hourly_price, "3.29".parse().unwrap());
    client.terminate("0920582c7ff041399e34823a0be62549").await.unwrap();

    let capacity = Router::new().route("/api/v1/instance-types", get(fixture!("instance_types.json"))).route(
        "/api/v1/instance-operations/launch",
        post(|| async { (StatusCode::BAD_REQUEST, include_str!("fixtures/lambda/error_insufficient_capacity.json")) }),
    );
    let server = FakeServer::start(capacity, FakeControl::default()).await.unwrap();
    let client =
        LambdaClient::from_settings(&settings(&server.url(), "k", &opts), ApiChangeReporter::default()).unwrap();
    let e = client.launch(&spec(1, "gpu_1x_h100_pcie@us-west-1")).await.unwrap_err();
    assert_eq!(e.class, FailureClass::Capacity);
    assert!(e.message.contains("Try a different region"), "{e}");
}

#[tokio::test]
async fn live_read_only() {
    let Ok(key) = std::env::var("LAMBDA_API_KEY") else {
        println!("skipped: LAMBDA_API_KEY not set");
        return;
    };
    let url = std::env::var("TGP_LAMBDA_URL").unwrap_or_else(|_| ProviderKind::Lambda.default_url().into());
    let client = LambdaClient::from_settings(&settings(&url, &key, &[]), ApiChangeReporter::default()).unwrap();
    let offers = client.list_offers(&OfferFilter::default()).await.unwrap();
    println!("{} Lambda offers now", offers.len());
    assert!(offers.iter().all(|o| o.on_demand_price.is_some() && o.spot_price.is_none()));
    let machines = client.list_instances().await.unwrap();
    println!("{} Lambda instances", machines.len());
}

// ---------------------------------------------------------------------------------------------
// Listings that say nothing, and the one-machine answers that do (issue 10).

async fn two_launched(s: &Setup) -> Vec<String> {
    let mut ids = Vec::new();
    for n in 1..=2 {
        ids.push(s.client.launch(&spec(n, &h100_offer())).await.unwrap().provider_instance_id);
    }
    ids.sort();
    ids
}

fn sorted_ids(listed: &[tgp_actors::provider::ProviderInstance]) -> Vec<String> {
    let mut ids: Vec<String> = listed.iter().map(|m| m.id.clone()).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_null_or_missing_list_is_a_contract_change_never_an_empty_account() {
    let s = setup().await;
    let ids = two_launched(&s).await;
    s.fake.control().cue(s.fake.list_glitch_cue(ListGlitch::Empty, 1));
    assert_eq!(s.client.list_instances().await.unwrap().len(), 0, "an empty list is an answer");
    let mut changes = s.reporter.subscribe();
    for glitch in [ListGlitch::Null, ListGlitch::Missing] {
        s.fake.control().cue(s.fake.list_glitch_cue(glitch.clone(), 1));
        let e = s.client.list_instances().await.unwrap_err();
        assert_eq!(e.class, FailureClass::ContractChanged, "{glitch:?}: {e}");
        assert!(e.message.contains("GET /api/v1/instances") && e.message.contains("`data`"), "{e}");
        assert!(matches!(changes.try_recv().unwrap().kind, ApiChangeKind::UnexpectedShape(_)));
    }
    let gone = Misbehaviour::Status { code: 410, body: error_body("global/not-found", "Gone"), retry_after: None };
    s.fake.control().cue(s.fake.list_cue(gone, 1));
    assert!(s.client.list_instances().await.is_err(), "410 is not an empty account");
    s.fake.control().cue(s.fake.list_glitch_cue(ListGlitch::Omit(ids[0].clone()), 1));
    assert_eq!(sorted_ids(&s.client.list_instances().await.unwrap()), ids[1..].to_vec());
    assert_eq!(sorted_ids(&s.client.list_instances().await.unwrap()), ids, "the glitch was once");
    assert!(ids.iter().all(|id| s.fake.destroy_calls(id) == 0));
}

#[tokio::test]
async fn status_is_not_found_only_on_lambdas_own_answer() {
    let s = setup().await;
    let ids = two_launched(&s).await;
    let unknown = "0123456789abcdef0123456789abcdef";
    assert_eq!(s.client.status(unknown).await.unwrap_err().class, FailureClass::NotFound);
    assert!(s.fake.vanish(&ids[0]));
    assert_eq!(s.client.status(&ids[0]).await.unwrap_err().class, FailureClass::NotFound);
    assert_eq!(sorted_ids(&s.client.list_instances().await.unwrap()), ids[1..].to_vec());
    let cue = |code: u16, body: &str| {
        s.fake.control().cue(Cue::on(
            Operation::Status,
            Misbehaviour::Status { code, body: body.into(), retry_after: None },
            1,
        ))
    };
    cue(404, "<html>Not Found</html>");
    assert_eq!(s.client.status(&ids[1]).await.unwrap_err().class, FailureClass::Unknown, "a proxy's 404");
    cue(500, &error_body("global/internal-error", "An internal server error occurred."));
    assert_eq!(s.client.status(&ids[1]).await.unwrap_err().class, FailureClass::ProviderOutage);
    s.fake.control().cue(Cue::on(Operation::Status, Misbehaviour::MalformedJson, 1));
    assert_eq!(s.client.status(&ids[1]).await.unwrap_err().class, FailureClass::ContractChanged);
    assert!(s.client.status(&ids[1]).await.is_ok());
}

#[tokio::test]
async fn a_cut_off_or_stalled_launch_is_no_capacity_verdict_and_the_machine_exists() {
    let s = setup_with(LambdaFakeConfig::default(), &[("request_timeout_ms", "300")]).await;
    s.fake.control().cue(s.fake.launch_cue(Misbehaviour::MalformedJson, 1));
    let e = s.client.launch(&spec(1, &h100_offer())).await.unwrap_err();
    assert_eq!(e.class, FailureClass::ContractChanged, "{e}");
    assert_eq!(s.fake.live_machines().len(), 1, "the launch happened");
    s.fake.control().cue(s.fake.launch_cue(Misbehaviour::StallAfterServing(Duration::from_millis(1500)), 1));
    let e = s.client.launch(&spec(2, &h100_offer())).await.unwrap_err();
    assert_eq!(e.class, FailureClass::ProviderOutage, "{e}");
    assert_eq!(s.fake.live_machines().len(), 2, "the stalled launch happened too");
    let listed = s.client.list_instances().await.unwrap();
    let labels: Vec<String> = listed.iter().filter_map(|m| m.label.clone()).collect();
    assert!(labels.contains(&attempt(1).as_str().to_string()) && labels.contains(&attempt(2).as_str().to_string()));
    let id = s.fake.live_machines()[0].clone();
    assert_eq!(s.fake.destroy_calls(&id), 0);
    s.client.terminate(&id).await.unwrap();
    assert_eq!(s.fake.destroy_calls(&id), 1, "the id is read from the terminate body");
}

#[tokio::test]
async fn instance_type_specs_become_offer_specs_and_a_disk_too_big_is_refused_with_why() {
    let s = setup().await;
    s.fake.set_capacity("gpu_1x_h100_sxm5", "us-east-1", true);
    let offers =
        s.client.list_offers(&OfferFilter { gpu_type: Some(GpuType::H100), ..Default::default() }).await.unwrap();
    let pcie = offers.iter().find(|o| o.id == h100_offer()).unwrap();
    // specs: 26 vCPUs, 200 GiB RAM, 1024 GiB disk, in GB.
    assert_eq!((pcie.specs.vcpus, pcie.specs.cpu_ram_gb), (Some(26), Some(214)));
    assert_eq!(pcie.specs.disk, tgp_actors::provider::DiskRoom::UpTo(1099));
    assert_eq!(pcie.specs.secure, Some(true));

    let needs = tgp_events::Needs { disk_gb: Some(2000), min_cpu_ram_gb: Some(220), ..Default::default() };
    assert_eq!(
        tgp_actors::selection::unmet(&needs, pcie).map(|s| s.to_string()).as_deref(),
        Some("holds at most 1099 GB of disk, 2000 asked")
    );
    let sxm = offers.iter().find(|o| o.id == "gpu_1x_h100_sxm5@us-east-1").unwrap();
    assert_eq!(tgp_actors::selection::unmet(&needs, sxm), None, "2764 GiB of disk and 225 GiB of RAM fit");
    let reliable = tgp_events::Needs { min_reliability: Some("0.9".parse().unwrap()), ..Default::default() };
    assert_eq!(
        tgp_actors::selection::unmet(&reliable, sxm).map(|s| s.to_string()).as_deref(),
        Some("gives no reliability score; at least 0.9 asked")
    );
}
