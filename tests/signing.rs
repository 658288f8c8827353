//! A journal only tgp writes: commits signed with another key, unsigned, or copied from another
//! instance's subject are quarantined by every read, real `tgp run` against a real nats-server;
//! a journal written before signing is still read once signing is on.

mod support;

use std::process::Command;
use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use chrono::{TimeZone, Utc};
use serde_json::Value;
use support::journal_builder::{Buy, Chain, per_second};
use support::*;
use tgp::journal::{JetStreamJournal, JournalKey, JournalReader, StartAt, layout};
use tgp_events::commit::encode_commit;
use tgp_events::controller_events::{ControllerEvent, ControllerRecord};
use tgp_events::events::InstanceEvent;
use tgp_events::subjects::{CONTROLLER_EVENTS, EVENTS_STREAM, HEADER_LAST_SEQUENCE};

/// Runs `tgp` with `env` (a role's credential, or nothing for commands that need no NATS).
fn tgp(args: &[&str], env: Vec<(&'static str, std::ffi::OsString)>) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tgp")).args(args).envs(env).output().expect("tgp runs");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn audit_total(server: &NatsServer, to: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_tgp"))
        .args(["audit", "--nats-url", server.url(), "--format", "json", "--to", to])
        .envs(as_role(server, Role::Auditor))
        .output()
        .expect("tgp runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let audit: Value = serde_json::from_slice(&out.stdout).expect("a JSON audit on stdout");
    audit["total"].clone()
}

async fn publish(js: &async_nats::jetstream::Context, subject: &str, message: PublishMessage) -> u64 {
    js.send_publish(subject.to_string(), message).await.unwrap().await.unwrap().sequence
}

#[tokio::test]
async fn forged_unsigned_and_replayed_commits_are_quarantined_and_change_nothing() {
    let server = nats();
    let dir = server.dir();
    let controller = ControllerProcess::start(&server, &dir);
    let (client, _) = client(&server).await;
    // The forger: an operator's credential (a client's cannot publish on tgp.events.>).
    let (_, js) = admin(&server).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let accepted = request(&client, "tgp.api.launch", launch_body("H100", "on-demand-only")).await;
        ids.push(accepted["instance_id"].as_str().unwrap().to_string());
    }
    let (a, b) = (ids[0].clone(), ids[1].clone());
    let running = wait_for_state(&client, &a, "running").await;
    wait_for_state(&client, &b, "running").await;
    let machine = running["provider_instance_id"].as_str().unwrap().to_string();
    let to = (Utc::now() + chrono::Duration::minutes(30)).to_rfc3339();
    let total_before = audit_total(&server, &to);

    // A forged `Terminated` for `a`, well formed, as an attacker would write it.
    let next = journaled(&js, &a).await.len() as u64 + 1;
    let forged = [InstanceEvent::Terminated { provider_instance_id: Some(machine.clone()), at: Utc::now() }];
    let body = encode_commit(&a.parse().unwrap(), next, &forged);
    let subject = format!("tgp.events.instance.{a}");
    let stream = js.get_stream(EVENTS_STREAM).await.unwrap();
    let head = stream.direct_get_last_for_subject(&subject).await.unwrap().sequence;
    let mut headers = JournalKey::generate().unwrap().headers(&subject, Some(head), &body);
    headers.insert(HEADER_LAST_SEQUENCE, next.to_string().as_str());
    let other_key = publish(&js, &subject, PublishMessage::build().headers(headers).payload(body.clone().into())).await;
    let unsigned = publish(
        &js,
        &subject,
        PublishMessage::build().header(HEADER_LAST_SEQUENCE, next.to_string().as_str()).payload(body.into()),
    )
    .await;
    // A replay: `b`'s last commit, signed by tgp, copied with its headers onto `a`'s subject.
    let b_last = stream.direct_get_last_for_subject(format!("tgp.events.instance.{b}")).await.unwrap();
    // (Its `Nats-*` headers stay behind: the server would check them.)
    let mut copied = async_nats::HeaderMap::new();
    for (name, values) in b_last.headers.iter() {
        let name: &str = name.as_ref();
        if name.starts_with("Tgp-") {
            copied.insert(name, values[0].as_str());
        }
    }
    let replayed =
        publish(&js, &subject, PublishMessage::build().headers(copied).payload(b_last.payload.clone())).await;

    // The live projections quarantine each as it arrives, and announce it in a health event on
    // tgp.events.controller, signed by tgp.
    let mut announced = Vec::new();
    for _ in 0..50 {
        let reader = JournalReader::open(&js).await.unwrap();
        let mut read = reader.commits(CONTROLLER_EVENTS, StartAt::Beginning).await.unwrap();
        announced.clear();
        while let Some(message) = read.next_raw().await {
            let record: ControllerRecord = serde_json::from_slice(&message.unwrap().payload).unwrap();
            if let ControllerEvent::JournalMessageQuarantined { sequence, .. } = record.event {
                announced.push(sequence);
            }
        }
        if [other_key, unsigned, replayed].iter().all(|s| announced.contains(s)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!([other_key, unsigned, replayed].iter().all(|s| announced.contains(s)), "announced: {announced:?}");

    controller.kill();
    let restarted = ControllerProcess::start(&server, &dir);
    let after = wait_for_state(&client, &a, "running").await;
    assert_eq!(after["provider_instance_id"], machine.as_str(), "the instance is untouched");
    assert_eq!(restarted.market().machines[&machine].status, "running", "the machine still runs at the fake");
    assert!(!types(&journaled(&js, &a).await).contains(&"Terminated"), "no reader hands the forged Terminated over");
    assert_eq!(audit_total(&server, &to), total_before, "the audit's total is unchanged");

    let (ok, out) = tgp(&["journal", "check", "--nats-url", server.url()], as_role(&server, Role::Auditor));
    assert!(!ok, "quarantined messages make the check fail: {out}");
    for (sequence, why) in [(other_key, "unknown key"), (unsigned, "not signed"), (replayed, "does not verify")] {
        let line = out.lines().find(|l| l.contains(&format!("seq {sequence} "))).unwrap_or_else(|| panic!("{out}"));
        assert!(line.contains(why), "seq {sequence}: {line}");
    }

    // The forger's key pinned: tgp's own commits no longer verify, and the check says so.
    let pinned = JournalKey::generate().unwrap().public_base64();
    let args = ["journal", "check", "--nats-url", server.url(), "--journal-public-key", &pinned];
    let (ok, out) = tgp(&args, as_role(&server, Role::Auditor));
    assert!(!ok && out.contains("unknown key"), "{out}");
}

#[tokio::test]
async fn a_journal_written_before_signing_is_still_read_after() {
    let server = nats();
    let (client, _) = client(&server).await;
    // An older tgp's journal, written as it was (an operator's credential writes it here).
    let (_, js) = admin(&server).await;
    layout::ensure(&js).await.unwrap();
    // Old-format commits: no signature, no signing record in the stream's metadata.
    let unsigned = JetStreamJournal::open(js.clone()).await.unwrap();
    let t = |h: u32| Utc.with_ymd_and_hms(2026, 11, 2, h, 0, 0).unwrap();
    let buy = Buy {
        provider: "simulated",
        gpu: "H100".parse().unwrap(),
        region: "us-east",
        price: "2.00",
        spot: false,
        on_demand: "2.00",
        billing: per_second(),
    };
    let mut chain = Chain::request(&unsigned, "old-one", t(9)).await;
    chain.launch(&buy, t(9)).await;
    chain.terminate(t(10)).await;
    let to = t(12).to_rfc3339();
    assert_eq!(audit_total(&server, &to)["cost"], "2.00");

    let dir = server.dir();
    let controller = ControllerProcess::start(&server, &dir);
    let old = request(&client, "tgp.api.get", serde_json::json!({"instance_id": "old-one"})).await;
    assert_eq!(old["state"], "terminated", "the pre-signing history was rebuilt: {old}");
    let accepted = request(&client, "tgp.api.launch", launch_body("H100", "on-demand-only")).await;
    let new = accepted["instance_id"].as_str().unwrap().to_string();
    wait_for_state(&client, &new, "running").await;
    controller.kill();

    // Both histories are read after a restart; nothing is quarantined; the old cost stands.
    let _restarted = ControllerProcess::start(&server, &dir);
    wait_for_state(&client, &new, "running").await;
    assert_eq!(types(&journaled(&js, "old-one").await).last(), Some(&"Terminated"));
    assert_eq!(audit_total(&server, &to)["cost"], "2.00");
    let (ok, out) = tgp(&["journal", "check", "--nats-url", server.url()], as_role(&server, Role::Auditor));
    assert!(ok && out.contains("no quarantined messages"), "{out}");
    // The stream's metadata names the key and where signing starts.
    let info = js.get_stream(EVENTS_STREAM).await.unwrap().cached_info().config.metadata.clone();
    assert!(info.contains_key("tgp.journal.keys") && info.contains_key("tgp.journal.signed_from"), "{info:?}");
}

#[tokio::test]
async fn tgp_run_without_a_journal_key_refuses_with_how_to_make_one() {
    let server = nats();
    let (ok, out) = tgp(&["run", "--nats-url", server.url()], as_role(&server, Role::Tgp));
    assert!(!ok && out.contains("--journal-key") && out.contains("tgp journal keygen"), "{out}");
    let path = server.dir().join("k");
    let (ok, out) = tgp(&["journal", "keygen", path.to_str().unwrap()], vec![]);
    assert!(ok && out.contains("mode 0600"), "{out}");
    let (ok, out) = tgp(&["journal", "keygen", path.to_str().unwrap()], vec![]);
    assert!(!ok && out.contains("never overwrites"), "{out}");
}
