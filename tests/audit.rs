//! Cost audits: a hand-built journal audited to the cent (the arithmetic is in the comments), a
//! range that starts while runs are billing, the live cost projection equal to a fresh replay on
//! a generated day, and the Prometheus endpoint checked against the journal.

mod support;

use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng};
use serde_json::Value;
use support::journal_builder::*;
use support::*;
use tgp::journal::{JetStreamJournal, layout};
use tgp_events::GpuType;

/// The journal as tgp writes it (these tests play the controller).
async fn journal(server: &NatsServer) -> JetStreamJournal {
    let (_, js) = connect_as(server, Role::Tgp).await;
    layout::ensure(&js).await.unwrap();
    JetStreamJournal::open(js).await.unwrap()
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// `tgp audit` as the auditor role.
fn audit(server: &NatsServer, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_tgp"))
        .args(["audit", "--nats-url", server.url(), "--format", "json"])
        .args(args)
        .envs(as_role(server, Role::Auditor))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn row<'a>(report: &'a Value, field: &str, value: &str) -> &'a Value {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r[field] == value)
        .unwrap_or_else(|| panic!("no row {field}={value} in {report}"))
}

/// The hand-built journal, all times on 2026-11-20 (t0 = 10:00:00 UTC):
///
/// A: spot H100 on vastai at $1.20/h, per second; on demand it was offered at $2.40/h.
///    Launched 10:00:00, interrupted 11:30:30 -> 5,430 s -> 1.20 x 5430 / 3600 = $1.81
///    (on demand: 2.40 x 5430 / 3600 = $3.62).
///    Relaunched on demand on lambda at $2.40/h, per minute with a 10-minute minimum, 11:35:00,
///    terminated 11:39:10 -> 250 s -> 5 started minutes = 300 s -> minimum 600 s
///    -> 2.40 x 600 / 3600 = $0.40 (on demand: the same $0.40).
/// B: on-demand A100-80GB on lambda at $1.79/h, per hour. Launched 10:00:00, terminated 11:01:00
///    -> 61 min -> 2 started hours -> $3.58.
/// C: spot L40S on runpod at $0.45/h, per minute (60 s minimum), on demand $0.99/h. Launched
///    12:00:00, still running at the range's end 14:00:00 -> billed 2 h so far, not rounded
///    -> $0.90 (on demand $1.98).
/// Range 09:00 to 14:00: total 1.81 + 0.40 + 3.58 + 0.90 = $6.69; on demand 3.62 + 0.40 + 3.58 +
/// 1.98 = $9.58; saved $2.89. Per provider: vastai $1.81, lambda 0.40 + 3.58 = $3.98, runpod $0.90.
#[tokio::test]
async fn a_hand_built_journal_audits_to_the_cent() {
    let server = nats();
    let journal = journal(&server).await;
    let mut a = Chain::request(&journal, "audit-a", t("2026-11-20T09:59:00Z")).await;
    a.launch(
        &Buy {
            provider: "vastai",
            gpu: GpuType::H100,
            region: "us-east",
            price: "1.20",
            spot: true,
            on_demand: "2.40",
            billing: per_second(),
        },
        t("2026-11-20T10:00:00Z"),
    )
    .await;
    a.interrupt(t("2026-11-20T11:30:30Z")).await;
    a.launch(
        &Buy {
            provider: "lambda",
            gpu: GpuType::H100,
            region: "us-east",
            price: "2.40",
            spot: false,
            on_demand: "2.40",
            billing: per_minute(600),
        },
        t("2026-11-20T11:35:00Z"),
    )
    .await;
    a.terminate(t("2026-11-20T11:39:10Z")).await;
    let mut b = Chain::request(&journal, "audit-b", t("2026-11-20T09:59:00Z")).await;
    b.launch(
        &Buy {
            provider: "lambda",
            gpu: GpuType::A100_80GB,
            region: "us-west",
            price: "1.79",
            spot: false,
            on_demand: "1.79",
            billing: per_hour(),
        },
        t("2026-11-20T10:00:00Z"),
    )
    .await;
    b.terminate(t("2026-11-20T11:01:00Z")).await;
    let mut c = Chain::request(&journal, "audit-c", t("2026-11-20T11:59:00Z")).await;
    c.launch(
        &Buy {
            provider: "runpod",
            gpu: GpuType::L40S,
            region: "eu-central",
            price: "0.45",
            spot: true,
            on_demand: "0.99",
            billing: per_minute(60),
        },
        t("2026-11-20T12:00:00Z"),
    )
    .await;

    let range = ["--from", "2026-11-20T09:00:00Z", "--to", "2026-11-20T14:00:00Z"];
    let by_provider = audit(&server, &[&range[..], &["--group-by", "provider"]].concat());
    assert_eq!(by_provider["total"]["cost"], "6.69");
    assert_eq!(by_provider["total"]["on_demand_cost"], "9.58");
    assert_eq!(by_provider["total"]["savings"], "2.89");
    assert_eq!(row(&by_provider, "provider", "vastai")["cost"], "1.81");
    assert_eq!(row(&by_provider, "provider", "lambda")["cost"], "3.98");
    assert_eq!(row(&by_provider, "provider", "runpod")["cost"], "0.90");

    let by_instance = audit(&server, &[&range[..], &["--group-by", "instance,spot"]].concat());
    let a_rows: Vec<_> =
        by_instance["rows"].as_array().unwrap().iter().filter(|r| r["instance"] == "audit-a").collect();
    assert_eq!(a_rows.len(), 2, "spot and on-demand parts of A: {by_instance}");
    assert_eq!(row(&by_instance, "instance", "audit-b")["hours"], "2", "61 minutes billed as 2 hours");
    assert_eq!(row(&by_instance, "instance", "audit-c")["hours"], "2");

    // A range cutting runs: 11:00 to 11:30 holds half an hour of A ($0.60) and B's billed hours
    // run 10:00-12:00, so half an hour of B ($0.895).
    let cut = audit(&server, &["--from", "2026-11-20T11:00:00Z", "--to", "2026-11-20T11:30:00Z"]);
    assert_eq!(cut["total"]["cost_exact"], "1.495");
    assert_eq!(cut["total"]["cost"], "1.50");

    // CSV and the chart, as a user gets them. Hours: A 5,430 s + 600 s = 1.675 h, B 2 h, C 2 h.
    let out = Command::new(env!("CARGO_BIN_EXE_tgp"))
        .args(["audit", "--nats-url", server.url(), "--format", "csv", "--group-by", "gpu"])
        .envs(as_role(&server, Role::Auditor))
        .args(range)
        .arg("--chart")
        .arg(server.dir().join("spend.svg"))
        .output()
        .unwrap();
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(csv.starts_with("gpu,hours,cost,on_demand_cost,savings,runs\n"), "{csv}");
    assert!(csv.contains("TOTAL,5.675,6.69,9.58,2.89,4"), "{csv}");
    let svg = std::fs::read_to_string(server.dir().join("spend.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("lambda $3.98") && svg.contains("vastai $1.81"), "{svg}");
}

#[tokio::test]
async fn a_range_starting_while_runs_bill_finds_them_without_reading_before_it() {
    let server = nats();
    let journal = journal(&server).await;
    let d_at = Utc::now();
    let mut d = Chain::request(&journal, "early", d_at).await;
    d.launch(
        &Buy {
            provider: "vastai",
            gpu: GpuType::H100,
            region: "us-east",
            price: "3.60",
            spot: false,
            on_demand: "3.60",
            billing: per_second(),
        },
        d_at,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let from = Utc::now();
    let e_at = from + chrono::Duration::milliseconds(200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut e = Chain::request(&journal, "late", e_at).await;
    e.launch(
        &Buy {
            provider: "runpod",
            gpu: GpuType::H100,
            region: "us-east",
            price: "7.20",
            spot: false,
            on_demand: "7.20",
            billing: per_second(),
        },
        e_at,
    )
    .await;
    let to = from + chrono::Duration::seconds(10);
    let report = audit(
        &server,
        &["--from", &from.to_rfc3339(), "--to", &to.to_rfc3339(), "--lag", "0s", "--group-by", "instance"],
    );
    // D bills from the range start: 10 s at $3.60/h = $0.01; E from its launch: 9.8 s at $7.20/h.
    assert_eq!(row(&report, "instance", "early")["cost_exact"], "0.01");
    assert_eq!(row(&report, "instance", "late")["cost_exact"], "0.0196");
}

#[tokio::test]
async fn the_live_cost_projection_equals_a_fresh_audit_on_a_generated_day() {
    let server = nats();
    let journal = journal(&server).await;
    let day = t("2026-11-25T00:00:00Z");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(42);
    let offers = [
        ("vastai", GpuType::H100, "us-east", "1.13", true, "2.29", per_second()),
        ("lambda", GpuType::A100_80GB, "us-west", "1.79", false, "1.79", per_minute(600)),
        ("runpod", GpuType::L40S, "eu-central", "0.39", true, "0.79", per_minute(60)),
        ("paperspace", GpuType::A6000, "us-east", "1.89", false, "1.89", per_hour()),
    ];
    for i in 0..40 {
        let start = day + chrono::Duration::seconds(rng.random_range(0..20 * 3600));
        let mut chain = Chain::request(&journal, &format!("day-{i}"), start).await;
        let mut at = start + chrono::Duration::seconds(rng.random_range(5..60));
        for _ in 0..rng.random_range(1..4) {
            let (provider, gpu, region, price, spot, on_demand, billing) = offers[rng.random_range(0..offers.len())];
            chain.launch(&Buy { provider, gpu, region, price, spot, on_demand, billing }, at).await;
            at += chrono::Duration::seconds(rng.random_range(30..4 * 3600));
            if rng.random_bool(0.5) {
                chain.interrupt(at).await;
                at += chrono::Duration::seconds(rng.random_range(10..300));
            } else {
                break;
            }
        }
        if rng.random_bool(0.8) {
            chain.terminate(at).await;
        }
    }
    // No status polls: the generated machines exist at no provider, and the live projection is
    // compared with the journal as generated.
    let _controller = ControllerProcess::start_with(&server, &server.dir(), &["--poll-interval", "1h"]);
    let (client, js) = client(&server).await;
    let last = js.get_stream("TGP_EVENTS").await.unwrap().info().await.unwrap().state.last_sequence;
    let to = "2026-11-26T00:00:00Z";
    for group_by in [vec!["provider"], vec!["gpu", "spot"], vec!["instance", "day"], vec![]] {
        let body = serde_json::json!({"from": "2026-11-25T00:00:00Z", "to": to, "group_by": group_by});
        let mut live = Value::Null;
        for _ in 0..100 {
            live = request(&client, "tgp.api.cost", body.clone()).await;
            if live["last_sequence"] == last {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(live["last_sequence"], last, "the live projection caught up: {live}");
        let group = group_by.join(",");
        let mut args = vec!["--from", "2026-11-25T00:00:00Z", "--to", to];
        if !group.is_empty() {
            args.extend(["--group-by", &group]);
        } else {
            args.extend(["--group-by", ""]);
        }
        let replayed = audit(&server, &args);
        assert_eq!(live["rows"], replayed["rows"], "group by {group}");
        assert_eq!(live["total"], replayed["total"]);
        assert_ne!(live["total"]["cost"], "0", "the day cost something");
    }
    // A rebuild from zero gives the same state again.
    let out = Command::new(env!("CARGO_BIN_EXE_tgp"))
        .args(["projections", "rebuild", "cost", "--nats-url", server.url()])
        .envs(as_role(&server, Role::Tgp))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains(&format!("rebuilt to stream sequence {last}")), "{printed}");
}

#[tokio::test]
async fn the_metrics_endpoint_reports_the_journal() {
    let server = nats();
    let journal = journal(&server).await;
    let now = Utc::now() - chrono::Duration::hours(1);
    let mut a = Chain::request(&journal, "m-a", now).await;
    a.launch(
        &Buy {
            provider: "vastai",
            gpu: GpuType::H100,
            region: "us-east",
            price: "1.20",
            spot: true,
            on_demand: "2.40",
            billing: per_second(),
        },
        now,
    )
    .await;
    a.interrupt(now + chrono::Duration::minutes(10)).await;
    a.launch(
        &Buy {
            provider: "vastai",
            gpu: GpuType::H100,
            region: "us-east",
            price: "1.30",
            spot: true,
            on_demand: "2.40",
            billing: per_second(),
        },
        now + chrono::Duration::minutes(11),
    )
    .await;
    let mut b = Chain::request(&journal, "m-b", now).await;
    b.launch(
        &Buy {
            provider: "lambda",
            gpu: GpuType::A100_80GB,
            region: "us-west",
            price: "1.79",
            spot: false,
            on_demand: "1.79",
            billing: per_hour(),
        },
        now,
    )
    .await;
    b.terminate(now + chrono::Duration::minutes(30)).await;

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _controller =
        ControllerProcess::start_with(&server, &server.dir(), &["--metrics-addr", &format!("127.0.0.1:{port}")]);
    let mut text = String::new();
    for _ in 0..50 {
        text = scrape(port).await;
        if text.contains("tgp_relaunches_total") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let value = |series: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    assert_eq!(value("tgp_launches_total"), 2.0, "Launched: m-a once, m-b once");
    assert_eq!(value("tgp_relaunches_total"), 1.0);
    assert_eq!(value("tgp_interruptions_total{reason=\"preempted\"}"), 1.0);
    assert_eq!(value("tgp_instances{state=\"running\",provider=\"vastai\",spot=\"true\"}"), 1.0);
    assert_eq!(value("tgp_spend_rate_dollars_per_hour"), 1.30, "only m-a's relaunch bills now");
    // m-b: 30 min per hour -> 1 h x 1.79; m-a: 10 min x 1.20 + ~49 min x 1.30 and counting.
    let spent = value("tgp_spend_dollars");
    assert!(spent > 1.79 + 0.20 + 1.0 && spent < 1.79 + 0.20 + 1.30, "{spent}");
    assert!(text.contains("tgp_time_to_running_seconds_bucket{le=\"60\"}"), "{text}");
}

async fn scrape(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return String::new();
    };
    let _ = stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").await;
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out).await;
    out
}

#[tokio::test]
async fn prices_show_the_market_and_what_was_paid() {
    let server = nats();
    let _controller = ControllerProcess::start(&server, &server.dir());
    let (client, _) = client(&server).await;
    let id = request(&client, "tgp.api.launch", launch_body("H100", "on-demand-only")).await["instance_id"]
        .as_str()
        .unwrap()
        .to_string();
    let launched = wait_for_state(&client, &id, "running").await;
    let mut prices = Value::Null;
    for _ in 0..50 {
        prices = request(&client, "tgp.api.prices", serde_json::json!({"gpu": "H100"})).await;
        if prices["prices"].as_array().is_some_and(|p| !p.is_empty())
            && prices["market"].as_array().is_some_and(|m| !m.is_empty())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let paid = &prices["prices"][0];
    assert_eq!(
        (paid["provider"].as_str(), paid["gpu"].as_str(), paid["count"].as_u64()),
        (Some("simulated"), Some("H100"), Some(1))
    );
    assert_eq!(paid["last"], launched["hourly_price"], "the realized price is the billed one");
    let market = prices["market"].as_array().unwrap();
    assert!(market.iter().all(|m| m["gpu"] == "H100" && m["provider"] == "simulated"), "{market:?}");
    assert!(market.iter().any(|m| m["spot"] == false && m["count"].as_u64().unwrap() >= 1), "{market:?}");
    // Rebuilt from zero, over instance and provider subjects alike.
    let out = Command::new(env!("CARGO_BIN_EXE_tgp"))
        .args(["projections", "rebuild", "pricing", "--nats-url", server.url()])
        .envs(as_role(&server, Role::Tgp))
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && printed.contains(": 1 price rows"), "{printed}");
}

/// A projection opens the buckets the layout made and never makes them itself: made at first use
/// they would have defaults (one replica on a cluster asked for three). A missing state store is
/// an error that names it, and stays missing.
#[tokio::test]
async fn a_rebuild_whose_state_store_is_gone_names_it_and_does_not_make_another() {
    let server = nats();
    let (_, admin) = connect_as(&server, Role::Admin).await;
    layout::ensure(&admin).await.unwrap();
    admin.delete_object_store("tgp_projection_state").await.expect("the admin deletes the store");
    let out = Command::new(env!("CARGO_BIN_EXE_tgp"))
        .args(["projections", "rebuild", "pricing", "--nats-url", server.url()])
        .envs(as_role(&server, Role::Tgp))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the rebuild must fail: {stderr}");
    assert!(stderr.contains("object store tgp_projection_state"), "the store is named: {stderr}");
    assert!(admin.get_stream("OBJ_tgp_projection_state").await.is_err(), "no store was made in its place");
}
