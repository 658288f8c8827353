//! The command line against a running controller: `tgp launch` follows an instance until it runs
//! and says how to connect; `tgp terminate` waits for the provider; `tgp watch` replays the
//! journal from a sequence; a missing NATS URL is a clear error.

mod support;

use std::process::Command;

use support::*;

/// Runs `binary` without NATS_URL: success, stdout, stderr.
fn run(binary: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(binary).args(args).env_remove("NATS_URL").output().expect("the binary runs");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn tgp(args: &[&str]) -> (bool, String, String) {
    run(env!("CARGO_BIN_EXE_tgp"), args)
}

/// The testkit's `tgp-dev` (offers from the fakes, benchmarks).
fn tgp_dev(args: &[&str]) -> (bool, String, String) {
    run(support::tgp_dev(), args)
}

#[tokio::test]
async fn launch_follows_until_running_and_terminate_waits_for_the_provider() {
    let server = nats();
    let controller = ControllerProcess::start(&server, &server.dir());
    let url = server.url().to_string();
    let nkey = server.seed_file(Role::Client).display().to_string();

    let (ok, out, err) = tokio::task::spawn_blocking({
        let (url, nkey) = (url.clone(), nkey.clone());
        move || {
            tgp(&[
                "launch",
                "--nats-url",
                &url,
                "--nats-nkey",
                &nkey,
                "--gpu",
                "a100-80gb",
                "--max-price",
                "2.50",
                "--idempotency-key",
                "cli-1",
            ])
        }
    })
    .await
    .unwrap();
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("instance cli-1 accepted"), "{out}");
    assert!(out.contains("offer selected") && out.contains("ready. connect with: ssh root@203.0.113."), "{out}");

    let (ok, out, err) = tokio::task::spawn_blocking({
        let (url, nkey) = (url.clone(), nkey.clone());
        move || tgp(&["terminate", "--nats-url", &url, "--nats-nkey", &nkey, "cli-1"])
    })
    .await
    .unwrap();
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("terminated sim-1"), "{out}");
    assert!(controller.market().machines.values().all(|m| m.status == "terminated"));

    // `watch` follows forever; give it a moment, then read what it printed of the replay.
    let mut watch = Command::new(env!("CARGO_BIN_EXE_tgp"))
        .args(["watch", "--nats-url", &url, "--nats-nkey", &nkey, "--from-seq", "1", "--instance", "cli-1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    watch.kill().unwrap();
    let replay = String::from_utf8_lossy(&watch.wait_with_output().unwrap().stdout).to_string();
    for line in ["launch requested", "launching at simulated as tgp-cli-1-1", "running sim-1", "terminated sim-1"] {
        assert!(replay.contains(line), "watch lacks {line:?}:\n{replay}");
    }
}

#[test]
fn client_commands_without_a_nats_url_say_what_to_do() {
    let (ok, _, err) = tgp(&["list"]);
    assert!(!ok);
    assert!(err.contains("--nats-url") && err.contains("NATS_URL"), "{err}");
}

#[test]
fn a_bad_launch_is_refused_before_anything_is_sent() {
    let (ok, _, err) = tgp(&["launch", "--nats-url", "nats://127.0.0.1:1", "--gpu", "H1000", "--max-price", "2"]);
    assert!(!ok);
    assert!(err.contains("unknown GPU type \"H1000\""), "{err}");
}

#[test]
fn offers_span_the_four_fake_providers_cheapest_first() {
    let (ok, out, err) = tgp_dev(&["offers", "--market", "fakes", "--gpu", "H100", "--json"]);
    assert!(ok, "{err}");
    let reply: serde_json::Value = serde_json::from_str(&out).unwrap();
    let providers = reply["providers"].as_array().unwrap();
    assert_eq!(providers.len(), 4, "{providers:?}");
    assert!(providers.iter().all(|p| p["status"] == "ok"), "{providers:?}");
    let offers = reply["offers"].as_array().unwrap();
    let from: std::collections::BTreeSet<_> = offers.iter().map(|o| o["provider"].as_str().unwrap()).collect();
    assert!(from.len() >= 3, "offers from several providers: {from:?}");
    let cheapest = |o: &serde_json::Value| -> rust_decimal::Decimal {
        ["spot_price", "on_demand_price"]
            .iter()
            .filter_map(|k| o[*k].as_str().map(|p| p.parse().unwrap()))
            .min()
            .unwrap()
    };
    assert!(offers.windows(2).all(|w| cheapest(&w[0]) <= cheapest(&w[1])), "cheapest first");
    assert!(offers.iter().all(|o| o["gpu_type"] == "H100"));
}

/// The table's forms on the four fakes: per-GPU order, the summary, and the machine-shape filters
/// (offers that cannot vouch for a need are left out).
#[test]
fn offers_sort_by_gpu_price_summarize_and_filter_on_machine_shape() {
    let (ok, out, err) = tgp_dev(&["offers", "--market", "fakes", "--sort", "gpu-price", "--csv"]);
    assert!(ok, "{err}");
    let per_gpu: Vec<rust_decimal::Decimal> = out
        .lines()
        .skip(1)
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            [cells[cells.len() - 9], cells[cells.len() - 7]].iter().filter_map(|c| c.parse().ok()).min().unwrap()
        })
        .collect();
    assert!(per_gpu.len() > 10 && per_gpu.windows(2).all(|w| w[0] <= w[1]), "cheapest per GPU first:\n{out}");

    let (ok, out, err) = tgp_dev(&["offers", "--market", "fakes", "--gpu", "H100", "--summary"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("GPU") && out.contains("ON-DEMAND/GPU"), "{out}");
    for provider in ["vastai", "lambda", "runpod"] {
        assert!(out.lines().any(|l| l.starts_with("H100") && l.contains(provider)), "{provider} in:\n{out}");
    }

    let (ok, out, err) =
        tgp_dev(&["offers", "--market", "fakes", "--min-vcpus", "8", "--secure-only", "--disk-gb", "200", "--json"]);
    assert!(ok, "{err}");
    let reply: serde_json::Value = serde_json::from_str(&out).unwrap();
    let offers = reply["offers"].as_array().unwrap();
    assert!(!offers.is_empty(), "{reply}");
    for o in offers {
        assert!(o["vcpus"].as_u64().unwrap() >= 8 && o["secure"] == true, "{o}");
        assert_ne!(o["provider"], "runpod", "RunPod does not say its vCPUs");
    }
}

/// RunPod ended spot pods in September 2026: `offers --spot` lists spot from the others, and
/// none from RunPod, whose client is left at its default (`spot = off`).
#[test]
fn spot_offers_come_from_every_provider_but_runpod() {
    let (ok, out, err) = tgp_dev(&["offers", "--market", "fakes", "--spot", "--json"]);
    assert!(ok, "{err}");
    let reply: serde_json::Value = serde_json::from_str(&out).unwrap();
    let offers = reply["offers"].as_array().unwrap();
    assert!(offers.iter().any(|o| o["provider"] == "vastai"), "spot offers from Vast.ai: {reply}");
    assert!(offers.iter().all(|o| o["provider"] != "runpod" && o["spot_price"].is_string()), "{reply}");
}

#[test]
fn offers_without_keys_say_which_key_is_missing() {
    let out = Command::new(env!("CARGO_BIN_EXE_tgp"))
        .args(["offers"])
        .env_remove("NATS_URL")
        .env_remove("VAST_API_KEY")
        .env_remove("LAMBDA_API_KEY")
        .env_remove("RUNPOD_API_KEY")
        .env_remove("PAPERSPACE_API_KEY")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for var in ["VAST_API_KEY", "LAMBDA_API_KEY", "RUNPOD_API_KEY", "PAPERSPACE_API_KEY"] {
        assert!(text.contains(var), "{text}");
    }
    assert!(text.contains("--market fakes"), "{text}");
}

#[test]
fn the_launch_bench_reports_percentiles_next_to_raw_nats_and_terminates_what_it_launched() {
    let (ok, out, err) = tgp_dev(&["bench", "launch", "--launches", "5", "--warmup", "1"]);
    assert!(ok, "{out}\n{err}");
    for line in ["launch command -> Launched journaled (5 launches", "raw JetStream publish+ack", "ratio launch/raw"] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
    assert!(out.contains("p50") && out.contains("p99"), "{out}");
    assert!(out.contains("4.00 journal commits"), "{out}");
    assert!(out.contains("terminated 6 of 6 instances") && out.contains("0 machines left at the fake"), "{out}");
}

#[test]
fn the_selection_bench_reports_percentiles_next_to_a_raw_pass_over_the_same_offers() {
    let (ok, out, err) = tgp_dev(&["bench", "selection", "--offers", "500", "--rounds", "5"]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("500 offers from one Vast.ai search"), "{out}");
    for line in
        ["launch plain: chose", "launch with a machine shape: chose", "raw lowest-price pass", "ratio select/raw"]
    {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
}

#[tokio::test]
async fn the_launch_bench_refuses_a_server_where_a_controller_takes_commands() {
    let server = nats();
    let _controller = ControllerProcess::start(&server, &server.dir());
    let url = server.url().to_string();
    let nkey = server.seed_file(Role::Admin).display().to_string();
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        tgp_dev(&["bench", "launch", "--nats-url", &url, "--nats-nkey", &nkey, "--launches", "5"])
    })
    .await
    .unwrap();
    assert!(!ok);
    assert!(err.contains("a tgp controller serves this NATS server"), "{err}");
}
