//! Contract tests of the Paperspace client against the Paperspace fake, the note's example
//! payloads, and a read-only live test that runs only with `PAPERSPACE_API_KEY`.

use std::collections::BTreeMap;
use std::time::Duration;

use tgp::providers::api_change::{ApiChangeKind, ApiChangeReporter};
use tgp::providers::config::{ApiKey, ProviderKind, ProviderSettings};
use tgp::providers::paperspace::{PaperspaceClient, wire};
use tgp_actors::provider::{LaunchSpec, MachineStatus, OfferFilter, ProviderClient, ProviderError, ProviderInstance};
use tgp_events::events::{FailureClass, InterruptionReason};
use tgp_events::{AttemptId, BillingUnit, GpuType, InstanceId, Money, Region, SpotPolicy};
use tgp_testkit::fakes::paperspace::{PaperspaceFake, PaperspaceFakeConfig, state::NY2};
use tgp_testkit::fakes::{Cue, FakeProvider, ListGlitch, Misbehaviour, Operation};

const AMS1: &str = "Europe (AMS1)";

fn settings(url: &str, key: &str, options: &[(&str, &str)]) -> ProviderSettings {
    ProviderSettings {
        kind: ProviderKind::Paperspace,
        url: url.to_string(),
        key: Some(ApiKey::new(key)),
        options: options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        disabled: None,
    }
}

async fn setup(options: &[(&str, &str)]) -> (PaperspaceFake, PaperspaceClient, ApiChangeReporter) {
    setup_with(PaperspaceFakeConfig::default(), options).await
}

async fn setup_with(
    config: PaperspaceFakeConfig,
    options: &[(&str, &str)],
) -> (PaperspaceFake, PaperspaceClient, ApiChangeReporter) {
    let fake = PaperspaceFake::start(config).await.unwrap();
    let reporter = ApiChangeReporter::default();
    let client =
        PaperspaceClient::from_settings(&settings(&fake.url(), "test-key", options), reporter.clone()).unwrap();
    (fake, client, reporter)
}

fn money(s: &str) -> Money {
    s.parse().unwrap()
}

fn spec(client: &PaperspaceClient, machine_type: &str, region: &str, count: u32) -> LaunchSpec {
    LaunchSpec {
        attempt_id: AttemptId::new(&InstanceId::generate(), 1),
        offer_id: client.offer_id(machine_type, region),
        spot: false,
        bid: None,
        gpu_count: count,
        image: "ubuntu:22.04".into(),
        env: BTreeMap::new(),
        ssh_public_key: None,
        disk_gb: None,
    }
}

async fn wait_for(client: &PaperspaceClient, id: &str, want: fn(&MachineStatus) -> bool) -> ProviderInstance {
    let mut last = client.status(id).await.unwrap();
    for _ in 0..200 {
        if want(&last.status) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        last = client.status(id).await.unwrap();
    }
    last
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/paperspace/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[tokio::test]
async fn info_limits_and_translations() {
    let (_fake, client, _) = setup(&[]).await;
    let info = client.info();
    assert_eq!(info.name.as_str(), "paperspace");
    assert!(!info.supports_spot && !info.supports_bids);
    assert_eq!(client.rate_limits().requests_per_minute, 200);
    assert_eq!(client.translate_gpu(GpuType::A100_80GB).as_deref(), Some("A100-80G"));
    assert_eq!(client.translate_gpu(GpuType::A100_40GB).as_deref(), Some("A100"));
    assert_eq!(client.translate_gpu(GpuType::RTX4090), None);
    let region = |r: &str| client.translate_region(&r.parse::<Region>().unwrap());
    assert_eq!(region("us-east").as_deref(), Some(NY2));
    assert_eq!(region("eu-west").as_deref(), Some(AMS1));
    assert_eq!(region("asia-east"), None);
}

#[tokio::test]
async fn offers_come_from_the_dated_table_checked_for_availability() {
    let (fake, client, _) = setup(&[]).await;
    fake.set_available("A4000", AMS1, false);
    let offers = client.list_offers(&OfferFilter::default()).await.unwrap();
    let table = client.price_table();
    let expected: usize = table.machine_types.values().map(|r| r.regions.len()).sum();
    assert_eq!(offers.len(), expected);
    assert_eq!(fake.control().count("GET", "/v1/machine-availability"), expected);
    for offer in &offers {
        assert!(offer.id.ends_with(&format!("/prices-{}", table.as_of)), "{}", offer.id);
        assert_eq!(offer.spot_price, None);
        assert_eq!(offer.on_demand_price, table.hourly(&offer.provider_gpu_name));
        assert_eq!(offer.billing.unit, BillingUnit::Hour);
        assert_eq!(offer.available, u32::from(fake.is_available(&offer.provider_gpu_name, &offer.provider_region)));
    }
    let h100x8 = offers.iter().find(|o| o.provider_gpu_name == "H100x8").unwrap();
    assert_eq!((h100x8.gpu_type, h100x8.gpu_count), (Some(GpuType::H100), 8));
    assert_eq!(h100x8.on_demand_price, Some(money("47.60")));
    assert_eq!(h100x8.region, Some("us-east".parse().unwrap()));
    assert_eq!(h100x8.id, format!("H100x8/NY2/prices-{}", table.as_of));
    // No standard name: kept, marked, never selected.
    let a4000 = offers.iter().find(|o| o.provider_gpu_name == "A4000" && o.provider_region == AMS1).unwrap();
    assert_eq!((a4000.gpu_type, a4000.available), (None, 0));
    assert!(a4000.summary(false).is_none());
}

#[tokio::test]
async fn offers_honour_the_filter_and_spot_only_gets_none() {
    let (fake, client, _) = setup(&[]).await;
    let filter = OfferFilter { gpu_type: Some(GpuType::A100_80GB), min_gpu_count: Some(2), ..Default::default() };
    let mut names: Vec<_> =
        client.list_offers(&filter).await.unwrap().into_iter().map(|o| o.provider_gpu_name).collect();
    names.sort();
    assert_eq!(names, ["A100-80Gx2", "A100-80Gx4", "A100-80Gx8"]);
    let eu = OfferFilter { regions: vec!["eu-west".parse().unwrap()], ..Default::default() };
    let offers = client.list_offers(&eu).await.unwrap();
    assert!(!offers.is_empty() && offers.iter().all(|o| o.provider_region == AMS1));
    let cheap = OfferFilter { max_machine_price: Some(money("0.60")), ..Default::default() };
    let offers = client.list_offers(&cheap).await.unwrap();
    assert!(!offers.is_empty() && offers.iter().all(|o| o.on_demand_price <= Some(money("0.60"))));
    let before = fake.control().count("GET", "/v1/machine-availability");
    let spot = OfferFilter { spot: Some(SpotPolicy::SpotOnly), ..Default::default() };
    assert!(client.list_offers(&spot).await.unwrap().is_empty());
    assert_eq!(fake.control().count("GET", "/v1/machine-availability"), before);
    let us_east = "us-east".parse().unwrap();
    assert_eq!(client.normalized_pricing(GpuType::H100, &us_east).await.unwrap(), (Some(money("5.95")), None));
    let eu_west = "eu-west".parse().unwrap();
    assert_eq!(client.normalized_pricing(GpuType::H100, &eu_west).await.unwrap(), (None, None));
}

#[tokio::test]
async fn a_price_table_file_overrides_the_shipped_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prices.toml");
    let table = "as_of = \"2026-10-01\"\ncurrency = \"USD\"\n[machine_types.\"A4000\"]\nhourly = \"0.70\"\nregions = [\"West Coast (CA1)\"]\n[machine_types.\"RTX9000\"]\nhourly = \"9.00\"\nregions = [\"East Coast (NY2)\"]\n";
    std::fs::write(&path, table).unwrap();
    let (_fake, client, _) = setup(&[("price_table", path.to_str().unwrap())]).await;
    let offers = client.list_offers(&OfferFilter::default()).await.unwrap();
    assert_eq!(offers.len(), 2);
    assert_eq!(offers[0].id, "A4000/CA1/prices-2026-10-01");
    assert_eq!(offers[0].on_demand_price, Some(money("0.70")));
    // A type the API refuses (a stale table) stays visible and unavailable.
    assert_eq!((offers[1].provider_gpu_name.as_str(), offers[1].available, offers[1].gpu_type), ("RTX9000", 0, None));
    std::fs::write(
        &path,
        "as_of = \"2026-10-01\"\ncurrency = \"USD\"\n[machine_types.A4000]\nhourly = 0.7\nregions = []\n",
    )
    .unwrap();
    let err = PaperspaceClient::from_settings(
        &settings("http://127.0.0.1:1", "k", &[("price_table", path.to_str().unwrap())]),
        ApiChangeReporter::default(),
    )
    .err()
    .unwrap();
    assert_eq!(err.class, FailureClass::InvalidRequest);
    assert!(err.message.contains("prices.toml"), "{}", err.message);
}

#[tokio::test]
async fn launch_names_the_machine_and_passes_key_and_env_in_a_startup_script() {
    let (fake, client, _) = setup(&[]).await;
    fake.set_available("A100-80G", NY2, true);
    let mut spec = spec(&client, "A100-80G", NY2, 1);
    spec.env.insert("HF_TOKEN".into(), "it's secret".into());
    spec.ssh_public_key = Some("ssh-ed25519 AAAAC3Nza tgp@test".into());
    let receipt = client.launch(&spec).await.unwrap();
    assert_eq!((receipt.hourly_price, receipt.billing.unit), (money("3.18"), BillingUnit::Hour));
    let sent = fake.create_request(&receipt.provider_instance_id).unwrap();
    assert_eq!(sent["name"], spec.attempt_id.as_str());
    assert_eq!(sent["machineType"], "A100-80G");
    assert_eq!(sent["region"], NY2);
    assert_eq!(sent["templateId"], "tkni3aa4", "the Ubuntu 22.04 template found by the lookup");
    assert_eq!((sent["diskSize"].as_u64(), sent["startOnCreate"].as_bool()), (Some(100), Some(true)));
    let scripts = fake.startup_scripts();
    assert_eq!(scripts.len(), 1);
    assert_eq!(sent["startupScriptId"], scripts[0].id.as_str());
    assert_eq!(scripts[0].name, spec.attempt_id.as_str());
    assert!(
        scripts[0].script.contains("echo 'ssh-ed25519 AAAAC3Nza tgp@test' >> /home/paperspace/.ssh/authorized_keys")
    );
    assert!(scripts[0].script.contains(r"export HF_TOKEN='it'\''s secret'"), "{}", scripts[0].script);
    assert!(scripts[0].is_run_once);

    let running = wait_for(&client, &receipt.provider_instance_id, |s| *s == MachineStatus::Running).await;
    assert_eq!(running.status, MachineStatus::Running);
    assert_eq!(running.raw_status, "ready");
    assert_eq!(running.label.as_deref(), Some(spec.attempt_id.as_str()));
    assert_eq!(running.connection.ssh_user.as_deref(), Some("paperspace"));
    assert_eq!(running.connection.ssh_port, Some(22));
    assert!(running.connection.public_ip.as_deref().unwrap().starts_with("198.51.100."));
    assert_eq!(running.hourly_price, Some(money("3.18")));
    let listed = client.list_instances().await.unwrap();
    assert_eq!(listed.iter().filter(|m| m.label.as_deref() == Some(spec.attempt_id.as_str())).count(), 1);

    client.terminate(&receipt.provider_instance_id).await.unwrap();
    assert!(fake.live_machines().is_empty());
    assert!(fake.startup_scripts().is_empty(), "the attempt's script is deleted with the machine");
    client.terminate(&receipt.provider_instance_id).await.unwrap();
    let gone = client.status(&receipt.provider_instance_id).await.unwrap_err();
    assert_eq!((gone.class, gone.code.as_deref()), (FailureClass::NotFound, Some("NOT_FOUND")));
}

#[tokio::test]
async fn templates_come_from_the_option_the_h100_table_or_the_image() {
    let (fake, client, _) = setup(&[("template_id", "t0nspur5")]).await;
    for (t, r) in [("A4000", NY2), ("H100", NY2)] {
        fake.set_available(t, r, true);
    }
    let id = client.launch(&spec(&client, "A4000", NY2, 1)).await.unwrap().provider_instance_id;
    assert_eq!(fake.create_request(&id).unwrap()["templateId"], "t0nspur5");
    assert_eq!(fake.control().count("GET", "/v1/os-templates"), 0);
    assert!(fake.startup_scripts().is_empty(), "no key and no env: no script");

    let (fake, client, _) = setup(&[]).await;
    fake.set_available("H100", NY2, true);
    let id = client.launch(&spec(&client, "H100", NY2, 1)).await.unwrap().provider_instance_id;
    assert_eq!(fake.create_request(&id).unwrap()["templateId"], "tiq8mhti");
    let mut own = spec(&client, "H100", NY2, 1);
    own.image = "paperspace-template:tiq8mhti".into();
    let id = client.launch(&own).await.unwrap().provider_instance_id;
    assert_eq!(fake.create_request(&id).unwrap()["templateId"], "tiq8mhti");
}

#[tokio::test]
async fn what_paperspace_cannot_take_is_refused_before_any_call() {
    let (fake, client, _) = setup(&[]).await;
    let base = spec(&client, "A100-80G", NY2, 1);
    let mut cases = Vec::new();
    let mut s = base.clone();
    s.image = "pytorch/pytorch:2.3.0-cuda12.1".into();
    cases.push((s, "container image"));
    let mut s = base.clone();
    s.spot = true;
    cases.push((s, "no preemptible"));
    let mut s = base.clone();
    s.env.insert("BAD-NAME".into(), "x".into());
    cases.push((s, "BAD-NAME"));
    let mut s = base.clone();
    s.ssh_public_key = Some("ssh-ed25519 AAAA\nrm -rf /".into());
    cases.push((s, "SSH public key"));
    let mut s = base.clone();
    s.gpu_count = 2;
    cases.push((s, "does not have 2 GPUs"));
    let mut s = base.clone();
    s.offer_id = "RTX9000/NY2/prices-2026-01-01".into();
    cases.push((s, "not in the price table"));
    for (s, why) in cases {
        let err = client.launch(&s).await.unwrap_err();
        assert_eq!(err.class, FailureClass::InvalidRequest, "{why}");
        assert!(err.message.contains(why), "{why}: {}", err.message);
    }
    assert!(fake.control().seen().is_empty(), "nothing reached Paperspace");
}

#[tokio::test]
async fn a_retried_launch_adopts_the_machine_of_its_attempt() {
    let (fake, client, _) = setup(&[]).await;
    fake.set_available("P4000", NY2, true);
    let s = spec(&client, "P4000", NY2, 1);
    let first = client.launch(&s).await.unwrap();
    let second = client.launch(&s).await.unwrap();
    assert_eq!(first.provider_instance_id, second.provider_instance_id);
    assert_eq!(fake.control().count("POST", "/v1/machines"), 1);
    assert_eq!(fake.machines_named(s.attempt_id.as_str()).len(), 1);
}

#[tokio::test]
async fn capacity_failures_in_all_three_forms() {
    let (fake, client, _) = setup(&[]).await;
    // 1. Availability says no: refused before create.
    fake.set_no_capacity(true);
    let mut s = spec(&client, "A4000", NY2, 1);
    s.ssh_public_key = Some("ssh-ed25519 AAAA k".into());
    let err = client.launch(&s).await.unwrap_err();
    assert_eq!(err.class, FailureClass::Capacity);
    assert_eq!(fake.control().count("POST", "/v1/machines"), 0);
    fake.set_no_capacity(false);
    fake.set_available("A4000", NY2, true);
    // 2. A synchronous refusal whose message says capacity: re-classed; the script is removed.
    let body = r#"{"code":"BAD_REQUEST","message":"We are currently out of capacity for the selected VM type. Try again in a few minutes, or select a different instance."}"#;
    fake.control().cue(Cue {
        path_prefix: "/v1/machines".into(),
        method: Some("POST".into()),
        times: 1,
        misbehaviour: Misbehaviour::Status { code: 400, body: body.into(), retry_after: None },
    });
    let err = client.launch(&s).await.unwrap_err();
    assert_eq!((err.class, err.code.as_deref()), (FailureClass::Capacity, Some("BAD_REQUEST")));
    assert!(fake.startup_scripts().is_empty());
    // 3. Silent: the create succeeds and the machine ends off (the note's quirk 1).
    fake.set_silent_capacity_failure(true);
    let id = client.launch(&s).await.unwrap().provider_instance_id;
    let seen = wait_for(&client, &id, |s| matches!(s, MachineStatus::Interrupted(_))).await;
    assert_eq!(seen.status, MachineStatus::Interrupted(InterruptionReason::StoppedOutsideTgp));
    assert_eq!(seen.raw_status, "off");
    assert_eq!(seen.connection.public_ip, None);
}

#[tokio::test]
async fn a_machine_turned_off_outside_tgp_is_interrupted() {
    let (fake, client, _) = setup(&[]).await;
    fake.set_available("A4000", NY2, true);
    let id = client.launch(&spec(&client, "A4000", NY2, 1)).await.unwrap().provider_instance_id;
    assert!(!fake.interrupt(&id), "not running yet");
    wait_for(&client, &id, |s| *s == MachineStatus::Running).await;
    assert!(fake.interrupt(&id));
    let seen = client.status(&id).await.unwrap();
    assert_eq!(seen.status, MachineStatus::Interrupted(InterruptionReason::StoppedOutsideTgp));
    assert!(["stopping", "off"].contains(&seen.raw_status.as_str()));
}

#[tokio::test]
async fn every_state_is_mapped_and_unknown_ones_are_reported() {
    let (fake, client, reporter) = setup(&[]).await;
    let id = fake.seed_machines("tgp-i-states", 1).remove(0);
    let mut changes = reporter.subscribe();
    let stopped = MachineStatus::Interrupted(InterruptionReason::StoppedOutsideTgp);
    for (state, want) in [
        ("provisioning", MachineStatus::Starting),
        ("starting", MachineStatus::Starting),
        ("serviceready", MachineStatus::Starting),
        ("restarting", MachineStatus::Starting),
        ("upgrading", MachineStatus::Starting),
        ("ready", MachineStatus::Running),
        ("stopping", stopped),
        ("off", stopped),
        ("hibernating", MachineStatus::Starting),
    ] {
        assert!(fake.force_state(&id, state));
        let seen = client.status(&id).await.unwrap();
        assert_eq!((seen.status, seen.raw_status.as_str()), (want, state));
    }
    let change = changes.recv().await.unwrap();
    assert_eq!(change.kind, ApiChangeKind::UnknownStatus("hibernating".into()));
    assert_eq!(change.endpoint, "GET /v1/machines/{id}");
}

#[tokio::test]
async fn list_instances_follows_every_page_with_one_call_each() {
    let (fake, client, _) = setup(&[]).await;
    let ids = fake.seed_machines("tgp-i-page", 45);
    let listed = client.list_instances().await.unwrap();
    assert_eq!(listed.len(), 45);
    let mut got: Vec<_> = listed.iter().map(|m| m.id.clone()).collect();
    let mut want = ids.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(fake.control().count("GET", "/v1/machines"), 3, "20 + 20 + 5");
    let queries: Vec<_> = fake.control().seen().into_iter().filter_map(|r| r.query).collect();
    assert!(queries.iter().filter(|q| q.contains("after=")).count() == 2, "{queries:?}");
}

#[tokio::test]
async fn errors_land_in_the_taxonomy() {
    let (fake, client, reporter) = setup(&[]).await;
    let wrong = PaperspaceClient::from_settings(&settings(&fake.url(), "wrong", &[]), reporter.clone()).unwrap();
    let err = wrong.list_instances().await.unwrap_err();
    assert_eq!((err.class, err.code.as_deref()), (FailureClass::Auth, Some("UNAUTHORIZED")));
    assert_eq!(fake.control().seen()[0].authorization.as_deref(), Some("Bearer wrong"));

    let err = client.status("psmissing").await.unwrap_err();
    assert_eq!((err.class, err.code.as_deref()), (FailureClass::NotFound, Some("NOT_FOUND")));

    let status = |code: u16, retry: Option<&str>| Misbehaviour::Status {
        code,
        body: String::from_utf8(fixture("error_rate_limited.json")).unwrap(),
        retry_after: retry.map(str::to_string),
    };
    fake.control().cue(Cue::once("/v1/machines", status(429, Some("7"))));
    let err = client.list_instances().await.unwrap_err();
    assert_eq!(
        (err.class, err.retry_after_seconds, err.code.as_deref()),
        (FailureClass::RateLimited, Some(7), Some("TOO_MANY_REQUESTS"))
    );
    fake.control().cue(Cue::once("/v1/machines", status(429, None)));
    let err = client.list_instances().await.unwrap_err();
    assert_eq!((err.class, err.retry_after_seconds), (FailureClass::RateLimited, None));
    let outage = Misbehaviour::Status {
        code: 503,
        body: r#"{"code":"INTERNAL_SERVER_ERROR","message":"down"}"#.into(),
        retry_after: None,
    };
    fake.control().cue(Cue::once("/v1/machines", outage));
    assert!(client.list_instances().await.unwrap_err().is_retryable());

    fake.seed_machines("tgp-i-err", 1);
    fake.control().cue(Cue::once("/v1/machines", Misbehaviour::MalformedJson));
    let err = client.list_instances().await.unwrap_err();
    assert_eq!(err.class, FailureClass::ContractChanged);
    let rename = Misbehaviour::RenameField { from: "state".into(), to: "status".into() };
    fake.control().cue(Cue::once("/v1/machines", rename));
    let err = client.list_instances().await.unwrap_err();
    assert_eq!(err.class, FailureClass::ContractChanged);
    assert!(err.message.contains("`state`"), "{}", err.message);

    let mut changes = reporter.subscribe();
    fake.control()
        .cue(Cue::once("/v1/machines", Misbehaviour::Deprecated { sunset: "Wed, 01 Jul 2027 00:00:00 GMT".into() }));
    client.list_instances().await.unwrap();
    let change = changes.recv().await.unwrap();
    assert_eq!(change.kind, ApiChangeKind::Deprecation("true".into()));
    assert_eq!(changes.recv().await.unwrap().kind, ApiChangeKind::Sunset("Wed, 01 Jul 2027 00:00:00 GMT".into()));
}

#[tokio::test]
async fn the_fakes_own_rate_limit_and_start_race() {
    let config = PaperspaceFakeConfig { rate_limit_per_minute: Some(2), ..Default::default() };
    let (fake, client, _) = setup_with(config, &[]).await;
    client.list_instances().await.unwrap();
    client.list_instances().await.unwrap();
    let err: ProviderError = client.list_instances().await.unwrap_err();
    assert_eq!((err.class, err.retry_after_seconds), (FailureClass::RateLimited, None));

    // Booting for ten minutes: the start certainly races the boot.
    let slow = PaperspaceFakeConfig { boot_delay: Duration::from_secs(600), ..Default::default() };
    let (fake2, _client2, _) = setup_with(slow, &[]).await;
    let id = fake2.seed_machines("tgp-i-race", 1).remove(0);
    let http = reqwest::Client::new();
    let answer =
        http.patch(format!("{}/v1/machines/{id}/start", fake2.url())).bearer_auth("test-key").send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 400);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["message"], "This machine is currently starting.");
    drop(fake);
}

#[tokio::test]
async fn the_notes_payloads_parse() {
    let (_fake, client, _) = setup(&[]).await;
    let machine = client.parse_machine(&fixture("machine.json")).unwrap();
    assert_eq!((machine.id.as_str(), machine.status), ("psclbvqpc", MachineStatus::Running));
    assert_eq!(machine.label, None, "job-1-head is not a tgp name");
    assert_eq!(machine.connection.public_ip.as_deref(), Some("184.105.3.20"));
    assert_eq!(machine.connection.ssh_command().as_deref(), Some("ssh paperspace@184.105.3.20"));
    assert_eq!(machine.hourly_price, Some(money("3.18")));

    let (machines, next) = client.parse_machine_page(&fixture("machine_page.json")).unwrap();
    assert_eq!(next.as_deref(), Some("psq7wd0mz"));
    assert_eq!(machines[0].status, MachineStatus::Starting);
    assert_eq!(machines[0].label.as_deref(), Some("tgp-0192f3c4a1b2-1"));
    assert_eq!(machines[0].hourly_price, Some(money("47.60")));
    assert_eq!(machines[1].status, MachineStatus::Interrupted(InterruptionReason::StoppedOutsideTgp));
    assert_eq!(machines[1].hourly_price, None, "A6000 has no price in the shipped table");

    let created: wire::MachineMutation = serde_json::from_slice(&fixture("create_response.json")).unwrap();
    assert_eq!((created.data.id.as_str(), created.data.state.as_str()), ("psclbvqpc", "provisioning"));
    let availability: wire::Availability = serde_json::from_slice(&fixture("availability.json")).unwrap();
    assert!(availability.available);
    assert_eq!(
        wire::parse_error_body(&fixture("error_not_found.json")),
        Some((Some("NOT_FOUND".into()), "Machine not found".into()))
    );
    // Our create body has the note's field names and types.
    let note: serde_json::Value = serde_json::from_slice(&fixture("create_request.json")).unwrap();
    let ours = serde_json::to_value(wire::CreateMachine {
        name: "job-1-head",
        machine_type: "A100-80G",
        region: NY2,
        disk_size: 100,
        template_id: "tiq8mhti",
        public_ip_type: "dynamic",
        startup_script_id: Some("sabc123"),
        start_on_create: true,
        enable_nvlink: false,
        auto_shutdown_enabled: false,
        email_password: false,
    })
    .unwrap();
    for (key, value) in ours.as_object().unwrap() {
        assert_eq!(note.get(key), Some(value), "{key}");
    }
}

/// Read-only against the real API; runs only when `PAPERSPACE_API_KEY` is set.
#[tokio::test]
async fn live_read_only() {
    let Ok(key) = std::env::var("PAPERSPACE_API_KEY") else {
        println!("skipped: PAPERSPACE_API_KEY not set");
        return;
    };
    let client = PaperspaceClient::from_settings(
        &settings(ProviderKind::Paperspace.default_url(), &key, &[]),
        ApiChangeReporter::default(),
    )
    .unwrap();
    let filter = OfferFilter { gpu_type: Some(GpuType::A100_80GB), min_gpu_count: Some(1), ..Default::default() };
    let offers = client.list_offers(&filter).await.unwrap();
    assert!(offers.iter().all(|o| o.gpu_type == Some(GpuType::A100_80GB)));
    let machines = client.list_instances().await.unwrap();
    println!("{} offers, {} machines", offers.len(), machines.len());
}

// ---------------------------------------------------------------------------------------------
// Listings that say nothing, and the one-machine answers that do (issue 10).

fn sorted_ids(listed: &[ProviderInstance]) -> Vec<String> {
    let mut ids: Vec<String> = listed.iter().map(|m| m.id.clone()).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_null_or_missing_list_on_any_page_is_a_contract_change_never_an_empty_account() {
    let (fake, client, reporter) = setup_with(PaperspaceFakeConfig { page_size: 2, ..Default::default() }, &[]).await;
    let mut ids = fake.seed_machines("tgp-i-glitch", 3);
    ids.sort();
    assert_eq!(sorted_ids(&client.list_instances().await.unwrap()), ids);
    fake.control().cue(fake.list_glitch_cue(ListGlitch::Empty, 2));
    assert_eq!(client.list_instances().await.unwrap().len(), 0, "an empty list is an answer");
    let mut changes = reporter.subscribe();
    for glitch in [ListGlitch::Null, ListGlitch::Missing] {
        fake.control().cue(fake.list_glitch_cue(glitch.clone(), 1));
        let e = client.list_instances().await.unwrap_err();
        assert_eq!(e.class, FailureClass::ContractChanged, "{glitch:?}: {e}");
        assert!(e.message.contains("GET /v1/machines") && e.message.contains("`items`"), "{e}");
        assert!(e.message.contains("page 1"), "{e}");
        assert!(matches!(changes.try_recv().unwrap().kind, ApiChangeKind::UnexpectedShape(_)));
    }
    // Page 1 fine, page 2 null: the whole listing is refused, not the first page returned.
    fake.control().cue(fake.list_cue(Misbehaviour::Slow(Duration::ZERO), 1));
    fake.control().cue(fake.list_glitch_cue(ListGlitch::Null, 1));
    let e = client.list_instances().await.unwrap_err();
    assert!(e.class == FailureClass::ContractChanged && e.message.contains("page 2"), "{e}");
    let gone = r#"{"code":"GONE","message":"This endpoint is gone"}"#;
    fake.control().cue(fake.list_cue(Misbehaviour::Status { code: 410, body: gone.into(), retry_after: None }, 1));
    assert_eq!(client.list_instances().await.unwrap_err().class, FailureClass::ContractChanged);
    fake.control().cue(fake.list_glitch_cue(ListGlitch::Omit(ids[0].clone()), 2));
    assert_eq!(sorted_ids(&client.list_instances().await.unwrap()), ids[1..].to_vec());
    assert!(ids.iter().all(|id| fake.destroy_calls(id) == 0));
    assert!(client.parse_machine_page(br#"{"items": null, "hasMore": false}"#).is_err());
}

#[tokio::test]
async fn status_is_not_found_only_on_paperspaces_own_answer() {
    let (fake, client, _) = setup(&[]).await;
    let ids = fake.seed_machines("tgp-i-status", 2);
    assert_eq!(client.status("psnosuch1").await.unwrap_err().class, FailureClass::NotFound);
    assert!(fake.vanish(&ids[0]));
    assert!(!fake.vanish(&ids[0]));
    assert_eq!(client.status(&ids[0]).await.unwrap_err().class, FailureClass::NotFound);
    assert_eq!(sorted_ids(&client.list_instances().await.unwrap()), vec![ids[1].clone()]);
    let cue = |code: u16, body: &str| {
        fake.control().cue(Cue::on(
            Operation::Status,
            Misbehaviour::Status { code, body: body.into(), retry_after: None },
            1,
        ))
    };
    cue(404, "<html><body>Not Found</body></html>");
    assert_eq!(client.status(&ids[1]).await.unwrap_err().class, FailureClass::Unknown, "a proxy's 404");
    cue(500, r#"{"code":"INTERNAL_SERVER_ERROR","message":"oops"}"#);
    assert_eq!(client.status(&ids[1]).await.unwrap_err().class, FailureClass::ProviderOutage);
    fake.control().cue(Cue::on(Operation::Status, Misbehaviour::MalformedJson, 1));
    assert_eq!(client.status(&ids[1]).await.unwrap_err().class, FailureClass::ContractChanged);
    assert!(client.status(&ids[1]).await.is_ok());
}

#[tokio::test]
async fn a_cut_off_or_stalled_create_is_no_capacity_verdict_and_the_machine_exists() {
    let (fake, client, _) = setup(&[("request_timeout_ms", "300")]).await;
    fake.set_available("P4000", NY2, true);
    let cut = spec(&client, "P4000", NY2, 1);
    fake.control().cue(fake.launch_cue(Misbehaviour::MalformedJson, 1));
    let e = client.launch(&cut).await.unwrap_err();
    assert_eq!(e.class, FailureClass::ContractChanged, "{e}");
    assert_eq!(fake.machines_named(cut.attempt_id.as_str()).len(), 1, "the create happened");
    let stalled = spec(&client, "P4000", NY2, 1);
    fake.control().cue(fake.launch_cue(Misbehaviour::StallAfterServing(Duration::from_millis(1500)), 1));
    let e = client.launch(&stalled).await.unwrap_err();
    assert_eq!(e.class, FailureClass::ProviderOutage, "{e}");
    assert_eq!(fake.machines_named(stalled.attempt_id.as_str()).len(), 1, "the stalled create happened too");
    assert_eq!(fake.live_machines().len(), 2);
    // Launching the same attempt again adopts its machine instead of making a second one.
    let again = client.launch(&cut).await.unwrap();
    assert_eq!(vec![again.provider_instance_id.clone()], fake.machines_named(cut.attempt_id.as_str()));
    assert_eq!(fake.control().count("POST", "/v1/machines"), 2);
    assert_eq!(fake.destroy_calls(&again.provider_instance_id), 0);
    client.terminate(&again.provider_instance_id).await.unwrap();
    assert_eq!(fake.destroy_calls(&again.provider_instance_id), 1);
}

#[tokio::test]
async fn machine_type_specs_come_from_the_table_and_a_launch_sends_its_disk() {
    let (fake, client, _) = setup(&[]).await;
    fake.set_available("A100-80G", NY2, true);
    let offers = client.list_offers(&OfferFilter::default()).await.unwrap();
    let a100 = offers.iter().find(|o| o.provider_gpu_name == "A100-80G").unwrap();
    // The table's 12 vCPUs and 80 GiB; a 50 GB to 2 TB disk; Paperspace's own datacenters.
    assert_eq!((a100.specs.vcpus, a100.specs.cpu_ram_gb, a100.specs.secure), (Some(12), Some(85), Some(true)));
    assert_eq!(a100.specs.disk, tgp_actors::provider::DiskRoom::UpTo(2000));
    let unlisted = offers.iter().find(|o| o.specs.vcpus.is_none()).expect("a type the table gives no specs for");
    let cpus = tgp_events::Needs { min_vcpus: Some(8), ..Default::default() };
    assert_eq!(tgp_actors::selection::unmet(&cpus, a100), None);
    assert_eq!(
        tgp_actors::selection::unmet(&cpus, unlisted).map(|s| s.to_string()).as_deref(),
        Some("does not say its vCPUs; 8 asked")
    );

    let mut big = spec(&client, "A100-80G", NY2, 1);
    big.disk_gb = Some(500);
    let receipt = client.launch(&big).await.unwrap();
    assert_eq!(fake.create_request(&receipt.provider_instance_id).unwrap()["diskSize"], 500);
    let mut small = spec(&client, "A100-80G", NY2, 1);
    small.disk_gb = Some(20);
    let receipt = client.launch(&small).await.unwrap();
    assert_eq!(fake.create_request(&receipt.provider_instance_id).unwrap()["diskSize"], 50, "Paperspace's smallest");
}
