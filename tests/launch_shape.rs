//! A launch's machine shape through the whole system: `tgp run` on the real Vast.ai and RunPod
//! clients, pointed at their fakes. What is journaled (the offer chosen, every other offer's
//! verdict, the billed price) and what reached each fake are the outcomes.

mod support;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;
use tgp_events::events::InstanceEvent;
use tgp_events::{Money, Needs};
use tgp_testkit::fakes::FakeProvider;
use tgp_testkit::fakes::runpod::{RunPodFake, RunPodFakeConfig};
use tgp_testkit::fakes::vastai::{VastAiFake, VastAiFakeConfig};

/// `tgp run` with Vast.ai and RunPod (spot off, its default), killed on drop.
struct Tgp(Child);

impl Tgp {
    fn start(server: &NatsServer, dir: &std::path::Path, vast: &VastAiFake, runpod: &RunPodFake) -> Tgp {
        let child = tgp_run(server, dir)
            .args(["--poll-interval", "3s"])
            .env("TGP_VASTAI_URL", vast.url())
            .env("VAST_API_KEY", "key-vast")
            .env("TGP_RUNPOD_URL", runpod.url())
            .env("RUNPOD_API_KEY", "key-runpod")
            .env_remove("LAMBDA_API_KEY")
            .env_remove("PAPERSPACE_API_KEY")
            .stdout(Stdio::null())
            .spawn()
            .expect("tgp run starts");
        Tgp(child)
    }
}

impl Drop for Tgp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn fakes() -> (VastAiFake, RunPodFake) {
    let vast = VastAiFake::start(VastAiFakeConfig {
        boot_delay: Duration::from_millis(300),
        offers: 200,
        api_key: None,
        ..Default::default()
    })
    .await
    .unwrap();
    let runpod = RunPodFake::start(RunPodFakeConfig {
        boot_delay: Duration::from_millis(300),
        api_key: None,
        ..Default::default()
    })
    .await
    .unwrap();
    (vast, runpod)
}

/// Launches `body` once the controller answers; the instance id.
async fn launch(client: &async_nats::Client, body: Value) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Ok(reply)) =
            tokio::time::timeout(Duration::from_secs(2), client.request("tgp.api.launch", body.to_string().into()))
                .await
        {
            let accepted: Value = serde_json::from_slice(&reply.payload).unwrap();
            return accepted["instance_id"].as_str().unwrap_or_else(|| panic!("refused: {accepted}")).to_string();
        }
        assert!(Instant::now() < deadline, "no controller answered tgp.api.launch");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The first journaled event `pick` gives a value for.
fn first<'a, T>(events: &'a [InstanceEvent], pick: impl FnMut(&'a InstanceEvent) -> Option<T>) -> T {
    events.iter().find_map(pick).unwrap_or_else(|| panic!("no such event among {events:?}"))
}

fn selected(events: &[InstanceEvent]) -> (&tgp_events::events::OfferSummary, &[tgp_events::events::Candidate]) {
    first(events, |e| match e {
        InstanceEvent::OfferSelected { offer, candidates, .. } => Some((offer, candidates.as_slice())),
        _ => None,
    })
}

fn launched_price(events: &[InstanceEvent]) -> Money {
    first(events, |e| match e {
        InstanceEvent::Launched { hourly_price, .. } => Some(*hourly_price),
        _ => None,
    })
}

/// A float as Vast prints it, as exact money.
fn money_of(f: f64) -> Money {
    format!("{f}").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_gb_launch_is_chosen_journaled_and_billed_at_the_price_for_500_gb() {
    let server = nats();
    let dir = tempfile::tempdir().unwrap();
    let (vast, runpod) = fakes().await;
    let _tgp = Tgp::start(&server, dir.path(), &vast, &runpod);
    let (client, js) = client(&server).await;
    let body = json!({"gpu_type": "RTX4090", "gpu_count": 1, "max_hourly_price": "3.00",
                      "spot_policy": "on-demand-only", "disk_gb": 500, "min_vcpus": 4});
    let id = launch(&client, body).await;
    wait_for_state(&client, &id, "running").await;

    let events = journaled(&js, &id).await;
    let (offer, candidates) = selected(&events);
    assert_eq!(offer.provider.as_str(), "vastai", "RunPod cannot vouch for vCPUs");
    let held = vast.offers().into_iter().find(|o| o.id.to_string() == offer.offer_id).unwrap();
    let storage = (500.0 * held.storage_cost / 720.0 * 1e6).round() / 1e6;
    let expected = money_of(((held.dph_base + storage) * 1e6).round() / 1e6);
    assert!(storage > 0.05, "500 GB of storage costs something: {storage}");
    assert_eq!(offer.hourly_price, expected, "selected at compute plus storage for 500 GB");
    assert_eq!(launched_price(&events), expected, "journaled as billed");
    let created = vast.created_bodies().pop().unwrap();
    assert_eq!(created["disk"], 500);

    let runpod_verdicts: Vec<&str> =
        candidates.iter().filter(|c| c.offer.provider.as_str() == "runpod").map(|c| c.verdict.as_str()).collect();
    assert!(!runpod_verdicts.is_empty(), "RunPod's offers are candidates");
    assert!(runpod_verdicts.iter().all(|v| *v == "does not say its vCPUs; 4 asked"), "{runpod_verdicts:?}");
    assert!(runpod.pods().is_empty(), "nothing launched at RunPod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefer_spot_launch_kept_to_runpod_goes_on_demand_without_a_graphql_call() {
    let server = nats();
    let dir = tempfile::tempdir().unwrap();
    let (vast, runpod) = fakes().await;
    let _tgp = Tgp::start(&server, dir.path(), &vast, &runpod);
    let (client, js) = client(&server).await;
    let needs = Needs { providers: vec!["runpod".parse().unwrap()], disk_gb: Some(120), ..Needs::default() };
    let body = json!({"gpu_type": "RTX4090", "gpu_count": 1, "max_hourly_price": "3.00",
                      "spot_policy": "prefer-spot", "providers": needs.providers, "disk_gb": 120});
    let id = launch(&client, body).await;
    wait_for_state(&client, &id, "running").await;

    let events = journaled(&js, &id).await;
    let (offer, candidates) = selected(&events);
    assert_eq!((offer.provider.as_str(), offer.spot), ("runpod", false));
    assert!(candidates.iter().all(|c| c.offer.provider.as_str() == "runpod"), "Vast is not asked");
    assert!(runpod.graphql_documents().is_empty(), "no GraphQL call: {:?}", runpod.graphql_documents());
    let pod = runpod.pods().pop().unwrap();
    assert_eq!((pod.via, pod.spot, pod.disk), ("rest-v2", false, 120));
    let asked_vast = vast.control().seen().iter().filter(|r| r.path.starts_with("/api/v0/bundles")).count();
    assert_eq!(asked_vast, 0, "a provider the launch leaves out is never asked for offers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_that_allows_no_configured_provider_fails_at_once_naming_them() {
    let server = nats();
    let dir = tempfile::tempdir().unwrap();
    let (vast, runpod) = fakes().await;
    let _tgp = Tgp::start(&server, dir.path(), &vast, &runpod);
    let (client, js) = client(&server).await;
    let body = json!({"gpu_type": "RTX4090", "gpu_count": 1, "max_hourly_price": "3.00", "providers": ["vast"]});
    let id = launch(&client, body).await;
    wait_for_state(&client, &id, "failed").await;
    let events = journaled(&js, &id).await;
    let reason = first(&events, |e| match e {
        InstanceEvent::Failed { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert!(reason.contains("leave out every configured provider (runpod, vastai)"), "{reason}");
    assert!(vast.created_bodies().is_empty() && runpod.pods().is_empty(), "nothing launched");
}
