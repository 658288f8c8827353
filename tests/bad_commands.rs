//! Bad input gets a clear error and loses nothing: 1,000 generated bad launch and terminate
//! commands on `tgp.api.*` get 1,000 error replies, and 200 more on `tgp.commands.*` (no reply
//! there); all 1,200 are kept as dead letters, and not one reaches the market.

mod support;

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use support::*;
use tgp_events::subjects::{DEAD_LETTERS_STREAM, HEADER_DEAD_REASON};

/// A valid launch, which each generator breaks in one way.
fn valid_launch() -> Value {
    json!({"gpu_type": "H100", "gpu_count": 1, "max_hourly_price": "3.00", "spot_policy": "prefer-spot"})
}

fn junk(rng: &mut SmallRng, len: usize) -> String {
    (0..len).map(|_| rng.random_range(0x20u8..0x7f) as char).collect()
}

/// One bad command: its subject suffix (`launch` or `terminate`) and body. Every kind is bad
/// by construction; `n` picks the kind, `rng` the details.
fn bad_command(n: usize, rng: &mut SmallRng) -> (&'static str, Vec<u8>) {
    let launch = |body: Value| ("launch", serde_json::to_vec(&body).unwrap());
    let broken = |field: &str, value: Value| {
        let mut body = valid_launch();
        body[field] = value;
        launch(body)
    };
    match n % 14 {
        // Not JSON: an object cut off after a random prefix.
        0 => ("launch", format!("{{\"gpu_type\": \"H100\", {}", junk(rng, 1 + n % 40)).into_bytes()),
        1 => launch([json!([1, 2, 3]), json!(42), json!("launch"), json!(null)][n % 4].clone()),
        2 => {
            let mut body = valid_launch();
            body.as_object_mut().unwrap().remove(["gpu_type", "gpu_count", "max_hourly_price"][n % 3]);
            launch(body)
        }
        3 => broken(&format!("unknown_{}", rng.random_range(0..1000)), json!(true)),
        4 => {
            broken("max_hourly_price", json!(["1_000", "1e3", "+1", "-1", "0", "", "abc", "1.2.3", " 3", "$3"][n % 10]))
        }
        5 => broken("gpu_count", [json!(0), json!(17), json!(-1), json!(1.5), json!("1")][n % 5].clone()),
        6 => broken("max_lifetime", json!(["1h1h", "xyz", "1", "-5m", "30m1h", "0s"][n % 6])),
        7 => broken("gpu_type", json!("H".repeat(rng.random_range(65..100_000)))),
        8 => broken("regions", json!(vec!["us-east"; rng.random_range(33..200)])),
        9 => broken("env", json!({["1BAD", "A-B", "", "ÄÖ"][n % 4]: "x"})),
        10 => broken("ssh_public_key", json!(["ssh-ed25519 AAAA\nssh-ed25519 BBBB", "not a key", "ssh-rsa"][n % 3])),
        11 => broken("idempotency_key", json!(format!("has spaces {}", junk(rng, 5)))),
        12 => ("terminate", serde_json::to_vec(&json!({"instance_id": format!("bad id {n}")})).unwrap()),
        _ => ("terminate", serde_json::to_vec(&json!({"reason": "no instance named"})).unwrap()),
    }
}

#[tokio::test]
async fn every_bad_command_is_answered_and_kept_and_none_launches() {
    let server = nats();
    let controller = ControllerProcess::start(&server, &server.dir());
    let (client, js) = client(&server).await;
    let mut rng = SmallRng::seed_from_u64(11);

    let mut refused = 0;
    for n in 0..1000 {
        let (what, body) = bad_command(n, &mut rng);
        let reply =
            tokio::time::timeout(Duration::from_secs(10), client.request(format!("tgp.api.{what}"), body.into()))
                .await
                .expect("answered within 10 s")
                .expect("delivered");
        let answer: Value = serde_json::from_slice(&reply.payload).expect("a JSON reply");
        let message = answer["error"]["message"].as_str().unwrap_or_else(|| panic!("command {n} accepted: {answer}"));
        assert!(!message.is_empty() && message.len() <= 1024, "command {n}: {message}");
        refused += 1;
    }
    assert_eq!(refused, 1000);
    for n in 1000..1200 {
        let (what, body) = bad_command(n, &mut rng);
        js.publish(format!("tgp.commands.{what}"), body.into()).await.unwrap().await.expect("the command is stored");
    }

    // Only tgp and operators read the dead letters (they hold commands as sent).
    let (_, operator) = admin(&server).await;
    let mut dead = operator.get_stream(DEAD_LETTERS_STREAM).await.unwrap();
    let mut kept = 0;
    for _ in 0..300 {
        kept = dead.info().await.unwrap().state.messages;
        if kept >= 1200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(kept, 1200, "every refused command is a dead letter");
    let last = dead.get_last_raw_message_by_subject("tgp.dead.tgp.commands.terminate").await.unwrap();
    assert!(last.headers.get(HEADER_DEAD_REASON).is_some(), "a dead letter says why");
    assert_eq!(controller.market().launch_calls, 0, "no bad command reached the market");
}
