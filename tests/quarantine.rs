//! Poison survived: messages on the journal that do not decode (garbage, or a commit naming
//! another instance than its subject's) are quarantined by every read. tgp still starts, still
//! manages the other instances (a terminate reaches the provider), `tgp journal check` lists the
//! messages, and `tgp audit` names their count.

mod support;

use std::process::Command;

use async_nats::jetstream::message::PublishMessage;
use serde_json::json;
use support::*;
use tgp::journal::Quarantine;

/// Runs the tgp binary with the nkey seed file of the role it plays.
fn tgp(args: &[&str], nkey: std::path::PathBuf) -> (bool, String, String) {
    run_binary(env!("CARGO_BIN_EXE_tgp").into(), args, nkey)
}

/// Runs `binary` (tgp, or the testkit's tgp-dev) with the nkey seed file of the role it plays.
fn run_binary(binary: std::path::PathBuf, args: &[&str], nkey: std::path::PathBuf) -> (bool, String, String) {
    let out = Command::new(binary).args(args).env_remove("NATS_URL").env("NATS_NKEY", nkey).output().expect("tgp runs");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[tokio::test]
async fn garbage_on_the_journal_is_quarantined_and_tgp_manages_the_rest() {
    let server = nats();
    let controller = ControllerProcess::start(&server, &server.dir());
    let (client, _) = client(&server).await;
    // The forger writes raw messages, and the test reads the bucket: both need the admin.
    let (_, js) = admin(&server).await;
    let mut body = launch_body("H100", "on-demand-only");
    body["idempotency_key"] = json!("keep-1");
    let accepted = request(&client, "tgp.api.launch", body).await;
    assert!(accepted["error"].is_null(), "{accepted}");
    let running = wait_for_state(&client, "keep-1", "running").await;
    let machine = running["provider_instance_id"].as_str().unwrap().to_string();

    // Garbage beside it, and a well-formed commit that names keep-1 on another subject (it must not
    // be folded into keep-1: that would let any subject rewrite any instance).
    let publish = |subject: &'static str, body: String| {
        let js = js.clone();
        async move { js.send_publish(subject, PublishMessage::build().payload(body.into())).await.unwrap().await.unwrap() }
    };
    let garbage = publish("tgp.events.instance.x", "not json at all".into()).await.sequence;
    let forged = json!({"aggregate_type": "instance", "aggregate_id": "keep-1", "events": [
        {"sequence": 6, "type": "Terminated", "version": 1, "data": {"at": "2026-01-01T00:00:00Z", "reason": "forged"}}]});
    let misplaced = publish("tgp.events.instance.y", forged.to_string()).await.sequence;

    // A restart reads the whole journal: it must start, and keep-1 must still be running.
    controller.kill();
    let controller = ControllerProcess::start(&server, &server.dir());
    assert_eq!(wait_for_state(&client, "keep-1", "running").await["provider_instance_id"], machine.as_str());

    let url = server.url().to_string();
    let auditor = server.seed_file(Role::Auditor);
    let (ok, out, err) = tokio::task::spawn_blocking({
        let (url, auditor) = (url.clone(), auditor.clone());
        move || tgp(&["journal", "check", "--nats-url", &url], auditor)
    })
    .await
    .unwrap();
    assert!(!ok, "quarantined messages make the check fail: {out}");
    assert!(err.contains("2 quarantined journal message(s)"), "{err}");
    for line in [format!("seq {garbage:<8} tgp.events.instance.x"), format!("seq {misplaced:<8} tgp.events.instance.y")]
    {
        assert!(out.contains(&line), "no {line:?} in:\n{out}");
    }
    // Neither is signed by tgp: the signature check refuses them before the shape is read.
    assert_eq!(out.matches("not signed").count(), 2, "{out}");

    let (ok, out, err) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || tgp(&["audit", "--nats-url", &url, "--group-by", "instance"], auditor)
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("quarantined: 2 journal message(s) skipped"), "{out}");
    assert!(out.contains("keep-1") && !out.contains("\ny "), "{out}");

    // The bucket holds both, each once, however many reads skipped them.
    let recorded = Quarantine::open(&js).await.recorded().await.unwrap();
    let sequences: Vec<u64> = recorded.iter().map(|q| q.sequence).collect();
    assert_eq!(sequences, [garbage, misplaced]);

    // Managed as before: a terminate reaches the provider.
    let answer = request(&client, "tgp.api.terminate", json!({"instance_id": "keep-1"})).await;
    assert!(answer["error"].is_null(), "{answer}");
    wait_for_state(&client, "keep-1", "terminated").await;
    let market = controller.market();
    assert_eq!(market.machines.get(&machine).map(|m| m.status.as_str()), Some("terminated"), "{market:?}");
}

#[tokio::test]
async fn a_commit_of_an_instance_that_this_tgp_cannot_read_stops_the_start_loudly() {
    // Acting on an instance's history without one of its commits could relaunch a chain that ended
    // or lose a machine it launched: such a commit is quarantined and the start refused, by name.
    let server = nats();
    let (_, js) = admin(&server).await;
    tgp::journal::layout::ensure(&js).await.unwrap();
    let future = json!({"aggregate_type": "instance", "aggregate_id": "z", "events": [
        {"sequence": 1, "type": "LaunchRequested", "version": 99, "data": {}}]});
    let sequence = js
        .send_publish("tgp.events.instance.z", PublishMessage::build().payload(future.to_string().into()))
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence;
    let url = server.url().to_string();
    let key = journal_key(&server.dir()).display().to_string();
    let (ok, _, err) = tokio::task::spawn_blocking({
        let (url, nkey) = (url.clone(), server.seed_file(Role::Tgp));
        move || {
            run_binary(tgp_dev(), &["run", "--market", "simulated", "--nats-url", &url, "--journal-key", &key], nkey)
        }
    })
    .await
    .unwrap();
    assert!(!ok, "the start is refused");
    let expected = format!("instance z's commit at stream sequence {sequence} cannot be read by this tgp");
    assert!(err.contains(&expected) && err.contains("upgrade tgp"), "{err}");
    let auditor = server.seed_file(Role::Auditor);
    let (ok, out, _) =
        tokio::task::spawn_blocking(move || tgp(&["journal", "check", "--nats-url", &url], auditor)).await.unwrap();
    assert!(!ok && out.contains("tgp.events.instance.z") && out.contains("schema version 99"), "{out}");
}
