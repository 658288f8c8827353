//! Contract tests of the Vast.ai client against the Vast.ai fake (and against the wire examples of
//! shared/providers/vastai.md, served as they are), plus a read-only live test that runs only when
//! `VAST_API_KEY` is set.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post, put};
use serde_json::{Value, json};
use tgp::providers::api_change::{ApiChangeKind, ApiChangeReporter};
use tgp::providers::config::{ApiKey, ProviderKind, ProviderSettings};
use tgp::providers::vastai::VastAiClient;
use tgp_actors::provider::{LaunchSpec, MachineStatus, Offer, OfferFilter, ProviderClient, ProviderError};
use tgp_events::events::{FailureClass, InterruptionReason};
use tgp_events::{AttemptId, BillingGranularity, GpuType, InstanceId, Money, Region, SpotPolicy};
use tgp_testkit::fakes::vastai::{BootOutcome, VastAiFake, VastAiFakeConfig};
use tgp_testkit::fakes::{Cue, FakeControl, FakeProvider, FakeServer, ListGlitch, Misbehaviour, Operation};

fn settings(url: &str, key: &str) -> ProviderSettings {
    ProviderSettings {
        kind: ProviderKind::VastAi,
        url: url.to_string(),
        key: Some(ApiKey::new(key)),
        options: BTreeMap::new(),
        disabled: None,
    }
}

fn client_for(url: &str, key: &str) -> (VastAiClient, ApiChangeReporter) {
    let reporter = ApiChangeReporter::default();
    let client = VastAiClient::from_settings(&settings(url, key), reporter.clone()).unwrap();
    (client, reporter)
}

async fn fake_with(config: VastAiFakeConfig) -> (VastAiFake, VastAiClient, ApiChangeReporter) {
    let fake = VastAiFake::start(config).await.unwrap();
    let (client, reporter) = client_for(&fake.url(), "test-key");
    (fake, client, reporter)
}

async fn fake() -> (VastAiFake, VastAiClient, ApiChangeReporter) {
    fake_with(VastAiFakeConfig { boot_delay: Duration::from_millis(100), ..Default::default() }).await
}

fn money(s: &str) -> Money {
    s.parse().unwrap()
}

/// A float as Vast prints it, as exact money.
fn money_of(f: f64) -> Money {
    format!("{f}").parse().unwrap()
}

fn spec(offer: &Offer, spot: bool, attempt: u32) -> LaunchSpec {
    let instance: InstanceId = "i-vast-test".parse().unwrap();
    LaunchSpec {
        attempt_id: AttemptId::new(&instance, attempt),
        offer_id: offer.id.clone(),
        spot,
        bid: if spot { offer.spot_price } else { None },
        gpu_count: offer.gpu_count,
        image: "pytorch/pytorch:latest".into(),
        env: BTreeMap::from([("HF_TOKEN".to_string(), "hf_x".into())]),
        ssh_public_key: Some("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample me@laptop".into()),
        disk_gb: None,
    }
}

fn h100_filter() -> OfferFilter {
    OfferFilter { gpu_type: Some(GpuType::H100), regions: vec!["us-south".parse().unwrap()], ..Default::default() }
}

async fn first_h100(client: &VastAiClient) -> Offer {
    client.list_offers(&h100_filter()).await.unwrap().remove(0)
}

/// Polls `status` until `done` holds (bounded; no timing is asserted).
async fn wait_for(
    client: &VastAiClient,
    id: &str,
    done: impl Fn(MachineStatus) -> bool,
) -> tgp_actors::provider::ProviderInstance {
    for _ in 0..200 {
        let seen = client.status(id).await.unwrap();
        if done(seen.status) {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("instance {id} never reached the awaited status");
}

fn class(result: Result<impl std::fmt::Debug, ProviderError>) -> ProviderError {
    result.expect_err("an error")
}

#[tokio::test]
async fn info_limits_and_translations() {
    let (_fake, client, _) = fake().await;
    let info = client.info();
    assert_eq!(info.name.as_str(), "vastai");
    assert!(info.supports_spot && info.supports_bids);
    assert_eq!(client.rate_limits().requests_per_minute, 60);
    assert_eq!(client.translate_gpu(GpuType::H100).as_deref(), Some("H100 SXM"));
    assert_eq!(client.translate_gpu(GpuType::A6000).as_deref(), Some("RTX A6000"));
    let region = |r: &str| client.translate_region(&r.parse::<Region>().unwrap());
    assert_eq!(region("us-east").as_deref(), Some("US"));
    assert!(region("eu-north").unwrap().split(',').any(|c| c == "SE"));
}

#[tokio::test]
async fn offers_are_normalized_whole_machine_prices_and_nothing_is_dropped() {
    let (fake, client, _) = fake().await;
    let offers = client.list_offers(&OfferFilter::default()).await.unwrap();
    let held = fake.offers();
    let expected = held.iter().filter(|o| o.verification == "verified").count();
    assert_eq!(offers.len(), expected, "every verified offer, none dropped");
    for offer in &offers {
        let o = held.iter().find(|h| h.id.to_string() == offer.id).unwrap();
        let storage = (40.0 * o.storage_cost / 720.0 * 1e6).round() / 1e6;
        let total = ((o.dph_base + storage) * 1e6).round() / 1e6;
        assert_eq!(offer.on_demand_price, Some(money_of(total)), "{}", offer.id);
        // A bid rental pays storage too: the spot price is the minimum bid plus the storage.
        assert_eq!(offer.spot_price, Some(money_of(o.min_bid) + money_of(storage)), "{}", offer.id);
        assert_eq!(offer.gpu_count, o.num_gpus);
        assert_eq!(offer.provider_gpu_name, o.gpu_name.trim());
        assert_eq!(offer.billing, BillingGranularity::PER_SECOND);
        assert_eq!(offer.available, 1);
        assert!(offer.reliability.is_some());
    }
    let unnamed: Vec<_> = offers.iter().filter(|o| o.gpu_type.is_none()).collect();
    assert!(unnamed.iter().any(|o| o.provider_gpu_name == "RTX 6000Ada"));
    assert!(unnamed.iter().any(|o| o.provider_gpu_name == "H100 NVL"));
    let placeless: Vec<_> = offers.iter().filter(|o| o.region.is_none()).collect();
    assert!(placeless.iter().any(|o| o.provider_region.is_empty()), "null geolocation kept");
    assert!(placeless.iter().any(|o| o.provider_region == ", US"), "\", US\" kept");
    let texas = offers.iter().find(|o| o.provider_region == "Texas, US").unwrap();
    assert_eq!(texas.region.as_ref().map(Region::as_str), Some("us-south"));
}

#[tokio::test]
async fn offers_honour_the_filter() {
    let (_fake, client, _) = fake().await;
    let all = client.list_offers(&OfferFilter::default()).await.unwrap();
    let max = money("3.00");
    let filter = OfferFilter {
        gpu_type: None,
        min_gpu_count: Some(2),
        regions: vec![],
        max_machine_price: Some(max),
        spot: Some(SpotPolicy::SpotOnly),
        needs: Default::default(),
    };
    let spot = client.list_offers(&filter).await.unwrap();
    let wanted = all.iter().filter(|o| o.gpu_count >= 2).filter(|o| o.spot_price.is_some_and(|p| p <= max)).count();
    assert_eq!(spot.len(), wanted);
    assert!(!spot.is_empty() && spot.len() < all.len());
    for o in &spot {
        assert!(o.gpu_count >= 2);
        assert!(o.spot_price.unwrap() <= max && o.on_demand_price.is_none());
    }
    let ondemand = OfferFilter {
        gpu_type: Some(GpuType::A100_40GB),
        spot: Some(SpotPolicy::OnDemandOnly),
        max_machine_price: Some(money("100")),
        ..Default::default()
    };
    let a100 = client.list_offers(&ondemand).await.unwrap();
    assert!(!a100.is_empty());
    assert!(a100.iter().all(|o| o.gpu_type == Some(GpuType::A100_40GB)));
    let regions =
        OfferFilter { regions: vec!["us-west".parse().unwrap(), "eu-north".parse().unwrap()], ..Default::default() };
    let placed = client.list_offers(&regions).await.unwrap();
    assert!(!placed.is_empty());
    for o in &placed {
        let r = o.region.as_ref().map(Region::as_str);
        assert!(matches!(r, Some("us-west" | "eu-north")), "{o:?}");
    }
}

#[tokio::test]
async fn normalized_pricing_is_the_cheapest_price_per_gpu_hour() {
    let (_fake, client, _) = fake().await;
    let region: Region = "us-south".parse().unwrap();
    let (on_demand, spot) = client.normalized_pricing(GpuType::H100, &region).await.unwrap();
    let offers = client.list_offers(&h100_filter()).await.unwrap();
    let single = offers.iter().filter(|o| o.gpu_count == 1);
    assert_eq!(on_demand, single.clone().filter_map(|o| o.on_demand_price).min());
    assert_eq!(spot, single.filter_map(|o| o.spot_price).min());
    assert!(on_demand.is_some() && spot.is_some());
}

#[tokio::test]
async fn on_demand_launch_sends_label_image_env_and_key_and_runs() {
    let (fake, client, _) = fake().await;
    let offer = first_h100(&client).await;
    let spec = spec(&offer, false, 1);
    let receipt = client.launch(&spec).await.unwrap();
    assert_eq!(receipt.hourly_price, offer.on_demand_price.unwrap());
    assert_eq!(receipt.billing, BillingGranularity::PER_SECOND);
    let body = fake.created_bodies().pop().unwrap();
    assert_eq!(body["label"], spec.attempt_id.as_str());
    assert_eq!(body["image"], "pytorch/pytorch:latest");
    assert_eq!(body["env"], json!({"HF_TOKEN": "hf_x"}));
    assert_eq!(body["price"], Value::Null, "on demand: price null");
    assert_eq!(body["cancel_unavail"], true);
    assert_eq!(body["client_id"], "me");
    assert_eq!(body["disk"], 40);
    let onstart = body["onstart"].as_str().unwrap();
    assert!(
        onstart.contains("echo 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample me@laptop' >> /root/.ssh/authorized_keys")
    );
    let id: u64 = receipt.provider_instance_id.parse().unwrap();
    assert_eq!(fake.instance_json(id).unwrap()["is_bid"], false);
    let running = wait_for(&client, &receipt.provider_instance_id, |s| s == MachineStatus::Running).await;
    assert_eq!(running.label.as_deref(), Some(spec.attempt_id.as_str()));
    assert_eq!(running.raw_status, "running");
    let json = fake.instance_json(id).unwrap();
    let c = &running.connection;
    assert_eq!(c.public_ip.as_deref(), json["public_ipaddr"].as_str().map(str::trim));
    assert_eq!(c.ssh_host.as_deref(), json["ssh_host"].as_str());
    assert_eq!(c.ssh_port.map(u64::from), json["ssh_port"].as_u64());
    assert_eq!(c.ssh_user.as_deref(), Some("root"));
    assert!(running.hourly_price.is_some());
    assert_eq!(fake.control().count("PUT", "/api/v0/asks/"), 1);
}

#[tokio::test]
async fn spot_launch_bids_the_minimum_for_the_whole_machine() {
    let (fake, client, _) = fake().await;
    let offer = first_h100(&client).await;
    let spec = spec(&offer, true, 1);
    let receipt = client.launch(&spec).await.unwrap();
    assert_eq!(receipt.hourly_price, offer.spot_price.unwrap());
    // Vast is sent the compute bid: tgp's bid less the storage Vast bills beside it.
    let held = fake.offers().into_iter().find(|o| o.id.to_string() == offer.id).unwrap();
    let body = fake.created_bodies().pop().unwrap();
    assert_eq!(money_of(body["price"].as_f64().unwrap()), money_of(held.min_bid));
    let id: u64 = receipt.provider_instance_id.parse().unwrap();
    assert_eq!(fake.instance_json(id).unwrap()["is_bid"], true);
    let seen = wait_for(&client, &receipt.provider_instance_id, |s| s == MachineStatus::Running).await;
    assert_eq!(seen.hourly_price, None, "the bid paid is unconfirmed in instance JSON");
    // Outbid, Vast's way: stopped everywhere, not destroyed.
    assert!(fake.interrupt(&receipt.provider_instance_id));
    let seen = client.status(&receipt.provider_instance_id).await.unwrap();
    assert_eq!(seen.status, MachineStatus::Interrupted(InterruptionReason::Outbid));
    assert_eq!(seen.raw_status, "stopped");
    assert_eq!(fake.live_machines(), vec![receipt.provider_instance_id.clone()]);
    let listed = client.list_instances().await.unwrap();
    assert_eq!(listed[0].status, MachineStatus::Interrupted(InterruptionReason::Outbid));
}

#[tokio::test]
async fn a_rising_minimum_bid_outbids_a_running_instance() {
    let (fake, client, _) = fake().await;
    let offer = first_h100(&client).await;
    let receipt = client.launch(&spec(&offer, true, 1)).await.unwrap();
    let id = receipt.provider_instance_id.clone();
    wait_for(&client, &id, |s| s == MachineStatus::Running).await;
    assert!(fake.set_min_bid(offer.id.parse().unwrap(), 50.0));
    let seen = client.status(&id).await.unwrap();
    assert_eq!(seen.status, MachineStatus::Interrupted(InterruptionReason::Outbid));
}

#[tokio::test]
async fn what_vast_cannot_take_is_refused_before_any_call() {
    let (fake, client, _) = fake().await;
    let offer = first_h100(&client).await;
    let searches = fake.control().count("POST", "/api/v0/bundles");
    let mut cases = Vec::new();
    let mut s = spec(&offer, true, 1);
    s.bid = None;
    cases.push(("spot without a bid", s));
    let mut s = spec(&offer, true, 1);
    s.bid = Some(money("129"));
    cases.push(("bid above 128", s));
    let mut s = spec(&offer, false, 1);
    s.env.insert("-p 8000:8000".into(), "1".into());
    cases.push(("a Docker flag as env", s));
    let mut s = spec(&offer, false, 1);
    s.image = "  ".into();
    cases.push(("no image", s));
    let mut s = spec(&offer, false, 1);
    s.ssh_public_key = Some("not a key'; rm -rf /".into());
    cases.push(("a bad key", s));
    let mut s = spec(&offer, false, 1);
    s.offer_id = "abc".into();
    cases.push(("a bad offer id", s));
    for (what, s) in cases {
        let e = class(client.launch(&s).await);
        assert_eq!(e.class, FailureClass::InvalidRequest, "{what}: {e}");
    }
    assert_eq!(fake.control().count("PUT", "/api/v0/asks/"), 0);
    assert_eq!(fake.control().count("POST", "/api/v0/bundles"), searches);
    assert!(fake.created_bodies().is_empty());
}

#[tokio::test]
async fn no_capacity_is_vasts_410_no_such_ask() {
    let (fake, client, _) = fake().await;
    let offer = first_h100(&client).await;
    fake.set_no_capacity(true);
    let e = class(client.launch(&spec(&offer, false, 1)).await);
    assert_eq!(e.class, FailureClass::Capacity, "{e}");
    assert_eq!(e.code.as_deref(), Some("no_such_ask"));
    assert!(fake.live_machines().is_empty(), "cancel_unavail: nothing stopped left behind");
}

#[tokio::test]
async fn an_offer_gone_before_the_rent_is_capacity() {
    let (fake, client, _) = fake().await;
    let offer = first_h100(&client).await;
    let offer_id: u64 = offer.id.parse().unwrap();
    // Gone before the re-check: nothing is rented.
    assert!(fake.remove_offer(offer_id));
    let e = class(client.launch(&spec(&offer, false, 1)).await);
    assert_eq!(e.class, FailureClass::Capacity, "{e}");
    assert_eq!(fake.control().count("PUT", "/api/v0/asks/"), 0);
    // Gone between the re-check and the rent: Vast's 404 no_such_ask.
    let still_there = json!({"offers": [{"id": offer_id, "gpu_name": "H100 SXM", "num_gpus": 1,
        "dph_total": 2.0, "min_bid": 1.0}]});
    fake.control().cue(Cue::once(
        "/api/v0/bundles",
        Misbehaviour::Status { code: 200, body: still_there.to_string(), retry_after: None },
    ));
    let e = class(client.launch(&spec(&offer, false, 2)).await);
    assert_eq!(e.class, FailureClass::Capacity, "{e}");
    assert!(e.message.contains("no_such_ask"), "{e}");
}

#[tokio::test]
async fn a_bid_below_the_minimum_is_capacity_and_leaves_nothing() {
    let (fake, client, _) = fake().await;
    let offer = first_h100(&client).await;
    let offer_id: u64 = offer.id.parse().unwrap();
    // Caught by the re-check: the minimum rose above tgp's bid.
    assert!(fake.set_min_bid(offer_id, 40.0));
    let e = class(client.launch(&spec(&offer, true, 1)).await);
    assert_eq!((e.class, e.code.as_deref()), (FailureClass::Capacity, Some("invalid_price")));
    assert_eq!(fake.control().count("PUT", "/api/v0/asks/"), 0);
    // Rising between re-check and rent: Vast makes a stopped instance and says success: false.
    let stale = json!({"offers": [{"id": offer_id, "gpu_name": "H100 SXM", "num_gpus": 1,
        "dph_total": 2.0, "min_bid": 0.5, "storage_total_cost": 0.008333}]});
    fake.control().cue(Cue::once(
        "/api/v0/bundles",
        Misbehaviour::Status { code: 200, body: stale.to_string(), retry_after: None },
    ));
    let e = class(client.launch(&spec(&offer, true, 2)).await);
    assert_eq!((e.class, e.code.as_deref()), (FailureClass::Capacity, Some("invalid_price")));
    assert_eq!(fake.control().count("PUT", "/api/v0/asks/"), 1);
    assert_eq!(fake.control().count("DELETE", "/api/v0/instances/"), 1);
    assert!(fake.live_machines().is_empty(), "the stopped instance was destroyed");
}

#[tokio::test]
async fn terminate_succeeds_when_gone_or_already_gone() {
    let (fake, client, _) = fake().await;
    let offer = first_h100(&client).await;
    let id = client.launch(&spec(&offer, false, 1)).await.unwrap().provider_instance_id;
    client.terminate(&id).await.unwrap();
    assert!(fake.live_machines().is_empty());
    client.terminate(&id).await.unwrap();
    for body in [
        include_str!("fixtures/vastai/error_404_no_such_instance.json"),
        include_str!("fixtures/vastai/error_404_destroy.json"),
    ] {
        fake.control().cue(Cue::once(
            "/api/v0/instances/",
            Misbehaviour::Status { code: 404, body: body.into(), retry_after: None },
        ));
        client.terminate("999").await.unwrap();
    }
    fake.control().cue(Cue::once(
        "/api/v0/instances/",
        Misbehaviour::Status {
            code: 200,
            body: r#"{"success": false, "error": "no_such_instance", "msg": "gone"}"#.into(),
            retry_after: None,
        },
    ));
    client.terminate("998").await.unwrap();
    assert_eq!(class(client.terminate("abc").await).class, FailureClass::InvalidRequest);
    let e = class(client.status(&id).await);
    assert_eq!(e.class, FailureClass::NotFound, "instances: null is not found");
}

#[tokio::test]
async fn every_status_value_maps() {
    let (fake, client, reporter) = fake().await;
    let mut changes = reporter.subscribe();
    let offer = first_h100(&client).await;
    let id = client.launch(&spec(&offer, false, 1)).await.unwrap().provider_instance_id;
    let n: u64 = id.parse().unwrap();
    use InterruptionReason::*;
    use MachineStatus::*;
    let table: &[(Option<&str>, Option<&str>, MachineStatus)] = &[
        (None, None, Starting),
        (Some("created"), None, Starting),
        (Some("loading"), None, Starting),
        (Some("rebooting"), None, Starting),
        (Some("recycling"), None, Starting),
        (Some("running"), None, Running),
        (Some("stopped"), None, Interrupted(StoppedOutsideTgp)),
        (Some("frozen"), None, Interrupted(StoppedOutsideTgp)),
        (Some("exited"), None, Interrupted(HostLost)),
        (Some("unknown"), None, Interrupted(HostLost)),
        (Some("offline"), None, Interrupted(HostLost)),
        (Some("destroyed"), None, Terminated),
        (Some("created"), Some(": OCI runtime create failed: no such file"), Interrupted(HostLost)),
    ];
    for (actual, msg, expected) in table {
        assert!(fake.force_status(n, *actual, *msg));
        let seen = client.status(&id).await.unwrap();
        assert_eq!(seen.status, *expected, "{actual:?} {msg:?}");
        assert_eq!(seen.raw_status.split(':').next(), Some(actual.unwrap_or("null")));
        let listed = client.list_instances().await.unwrap();
        assert_eq!(listed[0].status, *expected, "listed {actual:?}");
    }
    assert!(changes.try_recv().is_err(), "known values are not reported");
    // A value the note does not know: Starting, and reported.
    assert!(fake.force_status(n, Some("scheduling"), None));
    let seen = client.status(&id).await.unwrap();
    assert_eq!((seen.status, seen.raw_status.as_str()), (Starting, "scheduling"));
    let change = changes.try_recv().unwrap();
    assert_eq!(change.kind, ApiChangeKind::UnknownStatus("scheduling".into()));
    assert_eq!(change.endpoint, "GET /api/v0/instances/{id}/");
}

#[tokio::test]
async fn instances_that_never_run_and_ssh_through_the_proxy_only() {
    let (fake, client, _) = fake().await;
    let offers = client.list_offers(&OfferFilter::default()).await.unwrap();
    fake.set_boot_outcome(BootOutcome::Exits);
    let exits = client.launch(&spec(&offers[0], false, 1)).await.unwrap();
    let seen = wait_for(&client, &exits.provider_instance_id, |s| s != MachineStatus::Starting).await;
    assert_eq!(seen.status, MachineStatus::Interrupted(InterruptionReason::HostLost));
    assert_eq!(seen.raw_status, "exited");
    fake.set_boot_outcome(BootOutcome::OciError);
    let oci = client.launch(&spec(&offers[1], false, 2)).await.unwrap();
    let seen = client.status(&oci.provider_instance_id).await.unwrap();
    assert_eq!(seen.status, MachineStatus::Interrupted(InterruptionReason::HostLost));
    assert!(seen.raw_status.starts_with("created: ") && seen.raw_status.contains("OCI runtime"));
    fake.set_boot_outcome(BootOutcome::Running);
    fake.set_proxy_only(true);
    let proxied = client.launch(&spec(&offers[2], false, 3)).await.unwrap();
    let id = proxied.provider_instance_id;
    let seen = wait_for(&client, &id, |s| s == MachineStatus::Running).await;
    let json = fake.instance_json(id.parse().unwrap()).unwrap();
    assert_eq!(json["ports"], Value::Null);
    assert_eq!(seen.connection.ssh_host.as_deref(), json["ssh_host"].as_str());
    assert_ne!(seen.connection.ssh_host, seen.connection.public_ip);
}

#[tokio::test]
async fn list_instances_follows_pages_one_call_each() {
    let (fake, client, _) =
        fake_with(VastAiFakeConfig { boot_delay: Duration::from_millis(100), page_size: 2, ..Default::default() })
            .await;
    let offers = client.list_offers(&OfferFilter::default()).await.unwrap();
    let mut ids = Vec::new();
    for (i, offer) in offers.iter().take(5).enumerate() {
        ids.push(client.launch(&spec(offer, false, i as u32 + 1)).await.unwrap().provider_instance_id);
    }
    let before = fake.control().count("GET", "/api/v1/instances");
    let listed = client.list_instances().await.unwrap();
    assert_eq!(fake.control().count("GET", "/api/v1/instances") - before, 3, "5 instances, 2 a page");
    let mut got: Vec<String> = listed.iter().map(|m| m.id.clone()).collect();
    got.sort();
    ids.sort();
    assert_eq!(got, ids);
    let queries: Vec<String> = fake
        .control()
        .seen()
        .into_iter()
        .filter(|r| r.path.starts_with("/api/v1/instances"))
        .filter_map(|r| r.query)
        .collect();
    assert!(queries.iter().skip(1).all(|q| q.contains("after_token=")), "{queries:?}");
    assert!(fake.control().seen().iter().all(|r| r.authorization.as_deref() == Some("Bearer test-key")));
}

#[tokio::test]
async fn errors_map_to_the_taxonomy() {
    let (fake, client, reporter) = fake().await;
    let cue = |path: &str, code: u16, body: &str, retry: Option<&str>| {
        fake.control().cue(Cue::once(
            path,
            Misbehaviour::Status { code, body: body.into(), retry_after: retry.map(str::to_string) },
        ))
    };
    // auth
    let (bad, _) = client_for(&fake.url(), "wrong-key");
    let e = class(bad.list_instances().await);
    assert_eq!((e.class, e.code.as_deref()), (FailureClass::Auth, Some("auth_error")));
    assert_eq!(class(bad.list_offers(&OfferFilter::default()).await).class, FailureClass::Auth);
    // rate limited, with and without Retry-After
    cue("/api/v1/instances", 429, "API requests too frequent", Some("7"));
    let e = class(client.list_instances().await);
    assert_eq!((e.class, e.retry_after_seconds), (FailureClass::RateLimited, Some(7)));
    cue("/api/v0/bundles", 429, include_str!("fixtures/vastai/error_429_detail.json"), None);
    let e = class(client.list_offers(&OfferFilter::default()).await);
    assert_eq!((e.class, e.retry_after_seconds), (FailureClass::RateLimited, None));
    assert!(e.message.contains("threshold=4.5"), "{e}");
    // 5xx
    cue("/api/v1/instances", 502, "<html>Bad Gateway</html>", None);
    assert_eq!(class(client.list_instances().await).class, FailureClass::ProviderOutage);
    // malformed JSON and renamed required fields
    let mut changes = reporter.subscribe();
    fake.control().cue(Cue::once("/api/v0/bundles", Misbehaviour::MalformedJson));
    let e = class(client.list_offers(&OfferFilter::default()).await);
    assert_eq!(e.class, FailureClass::ContractChanged);
    assert!(matches!(changes.try_recv().unwrap().kind, ApiChangeKind::UnexpectedShape(_)));
    fake.control().cue(Cue::once(
        "/api/v0/bundles",
        Misbehaviour::RenameField { from: "gpu_name".into(), to: "gpu_model".into() },
    ));
    let e = class(client.list_offers(&OfferFilter::default()).await);
    assert_eq!(e.class, FailureClass::ContractChanged);
    assert!(e.message.contains("gpu_name"), "{e}");
    let offer = first_h100(&client).await;
    let id = client.launch(&spec(&offer, false, 1)).await.unwrap().provider_instance_id;
    fake.control().cue(Cue::once(
        "/api/v1/instances",
        Misbehaviour::RenameField { from: "actual_status".into(), to: "status".into() },
    ));
    let e = class(client.list_instances().await);
    assert!(e.class == FailureClass::ContractChanged && e.message.contains("actual_status"), "{e}");
    // Deprecation and Sunset headers are reported
    let mut changes = reporter.subscribe();
    fake.control().cue(Cue::once(
        "/api/v0/instances/",
        Misbehaviour::Deprecated { sunset: "Sat, 01 Aug 2026 00:00:00 GMT".into() },
    ));
    client.status(&id).await.unwrap();
    let kinds: Vec<ApiChangeKind> = std::iter::from_fn(|| changes.try_recv().ok()).map(|c| c.kind).collect();
    assert!(kinds.contains(&ApiChangeKind::Deprecation("true".into())), "{kinds:?}");
    assert!(kinds.contains(&ApiChangeKind::Sunset("Sat, 01 Aug 2026 00:00:00 GMT".into())));
}

#[tokio::test]
async fn the_fakes_own_quirks_plain_text_429_and_404_for_a_bad_search_key() {
    let (_fake, client, _) = fake_with(VastAiFakeConfig {
        min_interval: Some(Duration::from_secs(3600)),
        bundles_bad_key_404: true,
        ..Default::default()
    })
    .await;
    client.list_offers(&OfferFilter::default()).await.unwrap();
    let e = class(client.list_offers(&OfferFilter::default()).await);
    assert_eq!((e.class, e.retry_after_seconds), (FailureClass::RateLimited, None));
    assert!(e.message.contains("API requests too frequent"), "{e}");
    let fake = VastAiFake::start(VastAiFakeConfig { bundles_bad_key_404: true, ..Default::default() }).await.unwrap();
    let (bad, _) = client_for(&fake.url(), "wrong-key");
    let e = class(bad.list_offers(&OfferFilter::default()).await);
    assert_eq!(e.class, FailureClass::Auth, "404 Invalid user key is auth: {e}");
}

/// Serves the note's example payloads as they are.
async fn fixture_server(routes: Router) -> (FakeServer, VastAiClient) {
    let server = FakeServer::start(routes, FakeControl::default()).await.unwrap();
    let (client, _) = client_for(&server.url(), "k");
    (server, client)
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/vastai/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[tokio::test]
async fn the_notes_examples_parse() {
    let (offers, instance, list, create) =
        (fixture("offers.json"), fixture("instance.json"), fixture("instances_v1.json"), fixture("create.json"));
    let routes = Router::new()
        .route("/api/v0/bundles/", post(move || async move { offers }))
        .route("/api/v0/instances/{id}/", get(move || async move { instance }))
        .route("/api/v1/instances/", get(move || async move { list }))
        .route("/api/v0/asks/{id}/", put(move || async move { create }));
    let (_server, client) = fixture_server(routes).await;
    let got = client.list_offers(&OfferFilter::default()).await.unwrap();
    assert_eq!(got.len(), 1);
    let o = &got[0];
    assert_eq!(o.id, "27384109");
    assert_eq!((o.gpu_type, o.provider_gpu_name.as_str(), o.gpu_count), (Some(GpuType::H100), "H100 SXM", 1));
    assert_eq!((o.region.as_ref().map(Region::as_str), o.provider_region.as_str()), (Some("us-south"), "Texas, US"));
    assert_eq!((o.on_demand_price, o.spot_price), (Some(money("1.858333")), Some(money("1.108333"))));
    assert_eq!(o.reliability, Some("0.9971".parse().unwrap()));
    let one = client.status("12345678").await.unwrap();
    assert_eq!((one.status, one.label.as_deref()), (MachineStatus::Running, Some("tgp-7f3a9c-a1")));
    assert_eq!(one.connection.public_ip.as_deref(), Some("203.0.113.17"), "trailing space trimmed");
    assert_eq!((one.connection.ssh_host.as_deref(), one.connection.ssh_port), (Some("ssh4.vast.ai"), Some(34566)));
    assert_eq!(one.hourly_price, Some(money("1.870833")));
    let all = client.list_instances().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!((all[0].status, all[0].hourly_price), (MachineStatus::Running, Some(money("1.870833"))));
    assert_eq!(
        (all[1].status, all[1].label.clone(), all[1].raw_status.as_str()),
        (MachineStatus::Starting, None, "null")
    );
    assert_eq!(all[1].hourly_price, None, "is_bid");
    let receipt = client.launch(&spec(o, false, 1)).await.unwrap();
    assert_eq!((receipt.provider_instance_id.as_str(), receipt.hourly_price), ("12345678", money("1.858333")));
}

#[tokio::test]
async fn the_notes_error_bodies_classify() {
    let offers = fixture("offers.json");
    let routes = |status: u16, body: String| {
        let offers = offers.clone();
        Router::new()
            .route("/api/v0/bundles/", post(move || async move { offers }))
            .route(
                "/api/v0/asks/{id}/",
                put(move || async move { (axum::http::StatusCode::from_u16(status).unwrap(), body) }),
            )
            .route(
                "/api/v0/instances/{id}/",
                get(|| async { r#"{"instances": null}"# })
                    .delete(|| async { (axum::http::StatusCode::NOT_FOUND, fixture("error_404_destroy.json")) }),
            )
            .route(
                "/api/v1/instances/",
                get(|| async { r#"{"success": true, "instances": null, "next_token": null}"# }),
            )
    };
    for (status, file, expected) in [
        (404, "error_404_no_such_ask.json", FailureClass::Capacity),
        (410, "error_410_no_such_ask.json", FailureClass::Capacity),
        (401, "error_401.json", FailureClass::Auth),
        (429, "error_429_detail.json", FailureClass::RateLimited),
        (400, "error_envelope.json", FailureClass::InvalidRequest),
    ] {
        let (_server, client) = fixture_server(routes(status, fixture(file))).await;
        let offer = client.list_offers(&OfferFilter::default()).await.unwrap().remove(0);
        let e = class(client.launch(&spec(&offer, false, 1)).await);
        assert_eq!(e.class, expected, "{file}: {e}");
        if status != 429 {
            assert!(e.code.is_some(), "{file}: the provider's code kept");
        }
        client.terminate("12345678").await.unwrap();
        assert_eq!(class(client.status("12345678").await).class, FailureClass::NotFound);
        let e = class(client.list_instances().await);
        assert_eq!(e.class, FailureClass::ContractChanged, "a list of null is not an empty account: {e}");
    }
}

#[tokio::test]
async fn live_read_only() {
    let Ok(key) = std::env::var("VAST_API_KEY") else {
        println!("skipped: VAST_API_KEY not set");
        return;
    };
    let (client, _) = client_for("https://console.vast.ai", &key);
    let offers = client.list_offers(&h100_filter()).await.unwrap();
    println!("live: {} H100 offers in us-south", offers.len());
    assert!(offers.iter().all(|o| o.gpu_type == Some(GpuType::H100)));
    let instances = client.list_instances().await.unwrap();
    println!("live: {} instances", instances.len());
}

#[tokio::test]
async fn a_refused_bid_sweeps_any_instance_left_with_the_label() {
    let offers = fixture("offers.json");
    let listed = json!({"success": true, "next_token": null, "instances": [
        {"id": 777, "label": "tgp-i-vast-test-1", "actual_status": "stopped", "cur_state": "stopped"},
        {"id": 778, "label": "someone-else", "actual_status": "running"}]})
    .to_string();
    let routes = Router::new()
        .route("/api/v0/bundles/", post(move || async move { offers }))
        .route(
            "/api/v0/asks/{id}/",
            put(|| async {
                let body = r#"{"success":false,"error":"invalid_price","msg":"bid too low"}"#;
                (axum::http::StatusCode::BAD_REQUEST, body)
            }),
        )
        .route("/api/v1/instances/", get(move || async move { listed }))
        .route("/api/v0/instances/{id}/", axum::routing::delete(|| async { r#"{"success": true}"# }));
    let (server, client) = fixture_server(routes).await;
    let offer = client.list_offers(&OfferFilter::default()).await.unwrap().remove(0);
    let mut s = spec(&offer, true, 1);
    s.bid = Some(money("1.2"));
    let e = class(client.launch(&s).await);
    assert_eq!((e.class, e.code.as_deref()), (FailureClass::Capacity, Some("invalid_price")));
    let seen = server.control.seen();
    let list = seen.iter().find(|r| r.path == "/api/v1/instances/").unwrap();
    assert!(list.query.as_deref().unwrap().contains("select_filters="));
    let deleted: Vec<&str> = seen.iter().filter(|r| r.method == "DELETE").map(|r| r.path.as_str()).collect();
    assert_eq!(deleted, vec!["/api/v0/instances/777/"], "only the labelled one");
}

// ---------------------------------------------------------------------------------------------
// Listings that say nothing, and the one-machine answers that do (issue 10).

/// Three running instances at a fake that lists two a page (so the listing takes two pages).
async fn three_listed() -> (VastAiFake, VastAiClient, ApiChangeReporter, Vec<String>) {
    let (fake, client, reporter) =
        fake_with(VastAiFakeConfig { boot_delay: Duration::from_millis(100), page_size: 2, ..Default::default() })
            .await;
    let offers = client.list_offers(&OfferFilter::default()).await.unwrap();
    let mut ids = Vec::new();
    for (i, offer) in offers.iter().take(3).enumerate() {
        ids.push(client.launch(&spec(offer, false, i as u32 + 1)).await.unwrap().provider_instance_id);
    }
    ids.sort();
    (fake, client, reporter, ids)
}

fn listed_ids(listed: &[tgp_actors::provider::ProviderInstance]) -> Vec<String> {
    let mut ids: Vec<String> = listed.iter().map(|m| m.id.clone()).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_null_or_missing_list_is_a_contract_change_never_an_empty_account() {
    let (fake, client, reporter, ids) = three_listed().await;
    assert_eq!(listed_ids(&client.list_instances().await.unwrap()), ids);
    // An empty list in the right shape is an answer: the caller decides what it is worth.
    fake.control().cue(fake.list_glitch_cue(ListGlitch::Empty, 2));
    assert_eq!(client.list_instances().await.unwrap().len(), 0);
    let mut changes = reporter.subscribe();
    for glitch in [ListGlitch::Null, ListGlitch::Missing] {
        fake.control().cue(fake.list_glitch_cue(glitch.clone(), 1));
        let e = class(client.list_instances().await);
        assert_eq!(e.class, FailureClass::ContractChanged, "{glitch:?}: {e}");
        assert!(e.message.contains("GET /api/v1/instances/") && e.message.contains("`instances`"), "{e}");
        assert!(e.message.contains("page 1"), "{e}");
        assert!(matches!(changes.try_recv().unwrap().kind, ApiChangeKind::UnexpectedShape(_)));
    }
    // One bad page refuses the whole listing: page 1 is fine, page 2 is null.
    fake.control().cue(fake.list_cue(Misbehaviour::Slow(Duration::ZERO), 1));
    fake.control().cue(fake.list_glitch_cue(ListGlitch::Null, 1));
    let e = class(client.list_instances().await);
    assert!(e.class == FailureClass::ContractChanged && e.message.contains("page 2"), "{e}");
    // One machine left out is left out, and only that one.
    fake.control().cue(fake.list_glitch_cue(ListGlitch::Omit(ids[0].clone()), 2));
    assert_eq!(listed_ids(&client.list_instances().await.unwrap()), ids[1..].to_vec());
    assert_eq!(fake.live_machines().len(), 3, "nothing was destroyed");
    assert!(ids.iter().all(|id| fake.destroy_calls(id) == 0));
}

#[tokio::test]
async fn vasts_deprecated_endpoint_410_on_the_list_is_an_error_and_reported() {
    let (fake, client, reporter, _ids) = three_listed().await;
    let mut changes = reporter.subscribe();
    let gone = r#"{"success": false, "error": "deprecated_endpoint", "msg": "This endpoint is deprecated; use /api/v1/instances/"}"#;
    fake.control().cue(fake.list_cue(Misbehaviour::Status { code: 410, body: gone.into(), retry_after: None }, 1));
    let e = class(client.list_instances().await);
    assert_eq!((e.class, e.code.as_deref()), (FailureClass::ContractChanged, Some("deprecated_endpoint")), "{e}");
    assert!(matches!(changes.try_recv().unwrap().kind, ApiChangeKind::OperationGone(_)));
}

#[tokio::test]
async fn status_is_not_found_only_on_vasts_own_answer() {
    let (fake, client, _, ids) = three_listed().await;
    assert_eq!(class(client.status("424242").await).class, FailureClass::NotFound, "never existed");
    assert!(fake.vanish(&ids[0]));
    assert!(!fake.vanish(&ids[0]), "already gone");
    let e = class(client.status(&ids[0]).await);
    assert_eq!(e.class, FailureClass::NotFound, "{e}");
    assert!(!listed_ids(&client.list_instances().await.unwrap()).contains(&ids[0]));
    // What is not Vast's own "not found" concludes nothing.
    let not_found = |body: &str| Misbehaviour::Status { code: 404, body: body.into(), retry_after: None };
    fake.control().cue(Cue::on(Operation::Status, not_found("<html>404 Not Found</html>"), 1));
    assert_eq!(class(client.status(&ids[1]).await).class, FailureClass::Unknown);
    fake.control().cue(Cue::on(Operation::Status, not_found(r#"{"success":false,"error":"no_such_instance"}"#), 1));
    assert_eq!(class(client.status(&ids[1]).await).class, FailureClass::NotFound);
    fake.control().cue(Cue::on(Operation::Status, Misbehaviour::MalformedJson, 1));
    assert_eq!(class(client.status(&ids[1]).await).class, FailureClass::ContractChanged);
    fake.control().cue(Cue::on(
        Operation::Status,
        Misbehaviour::RenameField { from: "instances".into(), to: "x".into() },
        1,
    ));
    assert_eq!(class(client.status(&ids[1]).await).class, FailureClass::ContractChanged, "no instances field");
    let status_500 = Misbehaviour::Status { code: 500, body: "oops".into(), retry_after: None };
    fake.control().cue(Cue::on(Operation::Status, status_500, 1));
    assert_eq!(class(client.status(&ids[1]).await).class, FailureClass::ProviderOutage);
    assert!(client.status(&ids[1]).await.is_ok());
}

#[tokio::test]
async fn a_cut_off_or_stalled_rent_is_no_capacity_verdict_and_the_instance_exists() {
    let (fake, _, _) = fake().await;
    let mut quick = settings(&fake.url(), "test-key");
    quick.options.insert("request_timeout_ms".into(), "300".into());
    let client = VastAiClient::from_settings(&quick, ApiChangeReporter::default()).unwrap();
    let offers = client.list_offers(&OfferFilter::default()).await.unwrap();
    fake.control().cue(fake.launch_cue(Misbehaviour::MalformedJson, 1));
    let e = class(client.launch(&spec(&offers[0], false, 1)).await);
    assert_eq!(e.class, FailureClass::ContractChanged, "{e}");
    assert_eq!(fake.live_machines().len(), 1, "the rent happened");
    fake.control().cue(fake.launch_cue(Misbehaviour::StallAfterServing(Duration::from_millis(1500)), 1));
    let e = class(client.launch(&spec(&offers[1], false, 2)).await);
    assert_eq!(e.class, FailureClass::ProviderOutage, "{e}");
    assert!(e.message.contains("timed out"), "{e}");
    assert_eq!(fake.live_machines().len(), 2, "the stalled rent happened too");
    // The machines carry their attempts' labels, so the poll can adopt them.
    let labels: Vec<Option<String>> = client.list_instances().await.unwrap().into_iter().map(|m| m.label).collect();
    assert_eq!(labels.iter().flatten().count(), 2, "{labels:?}");
    let first = &fake.live_machines()[0];
    assert_eq!(fake.destroy_calls(first), 0);
    client.terminate(first).await.unwrap();
    client.terminate(first).await.unwrap();
    assert_eq!(fake.destroy_calls(first), 2, "both calls reached the fake");
    quick.options.insert("request_timeout_ms".into(), "soon".into());
    let e = VastAiClient::from_settings(&quick, ApiChangeReporter::default()).err().expect("refused");
    assert!(e.class == FailureClass::InvalidRequest && e.message.contains("request_timeout_ms"), "{e}");
}

/// A bid rental on 500 GB of disk: the spot price
/// is the minimum bid plus Vast's storage for 500 GB, the receipt (what tgp journals and bills)
/// says that price to the cent, and Vast is sent the compute part as its `price`.
#[tokio::test]
async fn a_spot_launch_on_500_gb_is_priced_with_its_storage() {
    let fake = VastAiFake::start(VastAiFakeConfig { boot_delay: Duration::from_millis(100), ..Default::default() })
        .await
        .unwrap();
    let mut with_disk = settings(&fake.url(), "test-key");
    with_disk.options.insert("disk_gb".into(), "500".into());
    let client = VastAiClient::from_settings(&with_disk, ApiChangeReporter::default()).unwrap();
    let offer = first_h100(&client).await;
    let held = fake.offers().into_iter().find(|o| o.id.to_string() == offer.id).unwrap();
    let storage = (500.0 * held.storage_cost / 720.0 * 1e6).round() / 1e6;
    assert!(storage > 0.05, "500 GB of storage costs something: {storage}");
    assert_eq!(offer.spot_price, Some(money_of(held.min_bid) + money_of(storage)));

    let receipt = client.launch(&spec(&offer, true, 1)).await.unwrap();
    assert_eq!(receipt.hourly_price, money_of(held.min_bid) + money_of(storage), "billed bid + storage");
    let body = fake.created_bodies().pop().unwrap();
    assert_eq!(body["disk"], 500);
    assert_eq!(money_of(body["price"].as_f64().unwrap()), money_of(held.min_bid), "Vast's price is the compute bid");
}

#[tokio::test]
async fn machine_needs_reach_vast_as_search_filters_and_every_offer_meets_them() {
    let (fake, client, _) = fake_with(VastAiFakeConfig { offers: 200, ..Default::default() }).await;
    let needs = tgp_events::Needs {
        disk_gb: Some(500),
        min_cpu_ram_gb: Some(40),
        min_vcpus: Some(8),
        min_reliability: Some("0.95".parse().unwrap()),
        secure_only: true,
        ..Default::default()
    };
    let all = client.list_offers(&OfferFilter::default()).await.unwrap();
    let filter = OfferFilter { needs: needs.clone(), ..Default::default() };
    let offers = client.list_offers(&filter).await.unwrap();
    let seen = fake.control().seen();
    let search = seen.iter().rev().find(|r| r.path.starts_with("/api/v0/bundles")).unwrap();
    let query: Value = serde_json::from_str(&search.body).unwrap();
    assert_eq!(query["allocated_storage"], 500, "the disk is priced in: {query}");
    assert_eq!(query["disk_space"], json!({"gte": 500}));
    assert_eq!(query["cpu_ram"], json!({"gte": 40_000}), "MB of the host's RAM");
    assert_eq!(query["cpu_cores_effective"], json!({"gte": 8}));
    assert_eq!(query["reliability2"], json!({"gte": 0.95}));
    assert_eq!(query["datacenter"], json!({"eq": true}));

    assert!(!offers.is_empty() && offers.len() < all.len(), "{} of {}", offers.len(), all.len());
    let held = fake.offers();
    for offer in &offers {
        let o = held.iter().find(|h| h.id.to_string() == offer.id).unwrap();
        assert!(o.hosting_type >= 1 && o.disk_space >= 500.0 && o.reliability >= 0.95, "{o:?}");
        let storage = (500.0 * o.storage_cost / 720.0 * 1e6).round() / 1e6;
        assert_eq!(offer.on_demand_price, Some(money_of(((o.dph_base + storage) * 1e6).round() / 1e6)));
        // Vast's server filters the host's RAM; the renter's share is checked on the offer.
        let share = tgp_actors::selection::unmet(&needs, offer);
        let expected_share = o.cpu_ram * u64::from(o.cpu_cores.unwrap_or(0)) / 2 / u64::from(o.cpu_cores.unwrap_or(1));
        assert_eq!(share.is_none(), expected_share >= 40_000, "{offer:?}: {share:?}");
    }
    let community = all.iter().filter(|o| o.specs.secure == Some(false)).count();
    assert!(community > 0, "the fake has community hosts for secure_only to leave out");
}
