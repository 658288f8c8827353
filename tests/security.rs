//! Security, end to end through the real binary against real nats-servers that require
//! credentials: tgp connects with a user and password, a token, an nkey seed or TLS client
//! certificates; a wrong credential is a clear error that never holds the secret; and refused
//! commands are kept as dead letters with a short reason, however large the offending field.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use futures::StreamExt;
use serde_json::json;
use support::*;
use tgp::nats_server::NatsServer;
use tgp_events::subjects::{DEAD_LETTERS_STREAM, HEADER_DEAD_REASON};

const PASSWORD: &str = "S3cretPw-7f1c";
const WRONG: &str = "Wr0ngPw-93ab";

/// Runs the tgp binary with `env` set (and no NATS variables inherited): ok, stdout, stderr.
fn tgp(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tgp"));
    command.args(args);
    for var in [
        "NATS_URL",
        "NATS_USER",
        "NATS_PASSWORD",
        "NATS_TOKEN",
        "NATS_CREDS",
        "NATS_NKEY",
        "NATS_CA",
        "NATS_CERT",
        "NATS_KEY",
    ] {
        command.env_remove(var);
    }
    let out = command.envs(env.iter().copied()).output().expect("tgp runs");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

async fn tgp_async(args: Vec<String>, env: Vec<(&'static str, String)>) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        tgp(&args, &env)
    })
    .await
    .unwrap()
}

/// `http://host:port` of the server with `user:password@` put in.
fn with_userinfo(url: &str, userinfo: &str) -> String {
    url.replacen("nats://", &format!("nats://{userinfo}@"), 1)
}

/// A controller whose stdout and stderr (debug logs included) go to files, so a test can read
/// everything it printed.
struct LoggedController {
    child: std::process::Child,
    out: std::path::PathBuf,
    err: std::path::PathBuf,
}

impl LoggedController {
    fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let (out, err) = (dir.join("controller.out"), dir.join("controller.err"));
        let mut command = Command::new(support::tgp_dev());
        command
            .args(["run", "--market", "simulated", "--sim-boot-time", "300ms", "--poll-interval", "200ms"])
            .args(args)
            .env("TGP_JOURNAL_KEY", support::journal_key(dir))
            .env("RUST_LOG", "debug")
            .envs(env.iter().copied())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .stdin(Stdio::null());
        let child = command.spawn().expect("tgp run starts");
        let controller = LoggedController { child, out, err };
        for _ in 0..300 {
            if controller.printed().contains("tgp controller running") {
                return controller;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the controller did not start:\n{}", controller.printed());
    }

    fn printed(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        format!("{}{}", read(&self.out), read(&self.err))
    }
}

impl Drop for LoggedController {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn password_server() -> NatsServer {
    NatsServer::start_with(|_| format!("authorization {{ user: tgpuser, password: \"{PASSWORD}\" }}"))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn a_password_server_admits_tgp_and_no_password_is_ever_printed() {
    let server = password_server();
    let dir = server.dir();
    let secret_url = with_userinfo(server.url(), &format!("tgpuser:{PASSWORD}"));
    let controller = LoggedController::start(&dir, &["--nats-url", &secret_url], &[]);

    // A client with the password in the URL launches; one with user and password from the
    // environment, and one with the password in a file, list it.
    let (ok, out, err) = tgp_async(
        vec![
            "launch".into(),
            "--nats-url".into(),
            secret_url.clone(),
            "--gpu".into(),
            "H100".into(),
            "--max-price".into(),
            "3.00".into(),
            "--idempotency-key".into(),
            "auth-1".into(),
        ],
        vec![],
    )
    .await;
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("ready. connect with"), "{out}");
    let env = vec![
        ("NATS_URL", server.url().to_string()),
        ("NATS_USER", "tgpuser".into()),
        ("NATS_PASSWORD", PASSWORD.into()),
    ];
    let (ok, out, err) = tgp_async(vec!["list".into()], env).await;
    assert!(ok && out.contains("auth-1") && out.contains("running"), "{out}\n{err}");
    let password_file = dir.join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let (ok, out, err) = tgp_async(
        vec![
            "list".into(),
            "--nats-url".into(),
            server.url().into(),
            "--nats-user".into(),
            "tgpuser".into(),
            "--nats-password-file".into(),
            password_file.display().to_string(),
        ],
        vec![],
    )
    .await;
    assert!(ok && out.contains("auth-1"), "{out}\n{err}");

    // Wrong, missing and contradictory credentials: clear errors, and the secret in none of them.
    let wrong_url = with_userinfo(server.url(), &format!("tgpuser:{WRONG}"));
    let (ok, out, err) = tgp_async(vec!["list".into(), "--nats-url".into(), wrong_url], vec![]).await;
    assert!(!ok, "{out}");
    assert!(err.contains("refused the credentials") && err.contains("nats://tgpuser:***@127.0.0.1"), "{err}");
    assert!(!err.contains(WRONG) && !out.contains(WRONG), "{err}");
    let env =
        vec![("NATS_URL", server.url().to_string()), ("NATS_USER", "tgpuser".into()), ("NATS_PASSWORD", WRONG.into())];
    let (ok, _, err) = tgp_async(vec!["watch".into()], env).await;
    assert!(!ok && err.contains("refused the credentials") && !err.contains(WRONG), "{err}");
    let (ok, _, err) = tgp_async(vec!["list".into(), "--nats-url".into(), server.url().into()], vec![]).await;
    assert!(!ok && err.contains("refused the credentials"), "{err}");
    let env = vec![("NATS_URL", server.url().to_string()), ("NATS_USER", "tgpuser".into())];
    let (ok, _, err) = tgp_async(vec!["list".into()], env).await;
    assert!(!ok && err.contains("needs a password"), "{err}");
    let env = vec![("NATS_URL", secret_url.clone()), ("NATS_TOKEN", "tok".into())];
    let (ok, _, err) = tgp_async(vec!["list".into()], env).await;
    assert!(!ok && err.contains("one way") && !err.contains(PASSWORD), "{err}");

    // Terminate through the password URL; the controller printed its URL redacted, never the password.
    let (ok, out, err) =
        tgp_async(vec!["terminate".into(), "--nats-url".into(), secret_url, "auth-1".into()], vec![]).await;
    assert!(ok, "{out}\n{err}");
    let printed = controller.printed();
    assert!(printed.contains("tgpuser:***@127.0.0.1"), "{printed}");
    assert!(!printed.contains(PASSWORD), "the controller printed the password:\n{printed}");
}

#[tokio::test]
async fn a_token_server_admits_the_token_from_the_environment_or_a_file() {
    let token = "t0ken-5e5f1d";
    let server = NatsServer::start_with(|_| format!("authorization {{ token: \"{token}\" }}")).unwrap();
    let dir = server.dir();
    let _controller = LoggedController::start(&dir, &["--nats-url", server.url()], &[("NATS_TOKEN", token)]);
    let env = vec![("NATS_URL", server.url().to_string()), ("NATS_TOKEN", token.to_string())];
    let (ok, out, err) = tgp_async(vec!["list".into()], env).await;
    assert!(ok && out.contains("0 live instance(s)"), "{out}\n{err}");
    let file = dir.join("token");
    std::fs::write(&file, token).unwrap();
    let args = vec![
        "list".into(),
        "--nats-url".into(),
        server.url().into(),
        "--nats-token-file".into(),
        file.display().to_string(),
    ];
    let (ok, out, err) = tgp_async(args, vec![]).await;
    assert!(ok && out.contains("0 live instance(s)"), "{out}\n{err}");
    let in_url = with_userinfo(server.url(), token);
    let (ok, _, err) = tgp_async(vec!["list".into(), "--nats-url".into(), in_url], vec![]).await;
    assert!(ok, "{err}");
    let env = vec![("NATS_URL", server.url().to_string()), ("NATS_TOKEN", "not-the-t0ken".to_string())];
    let (ok, _, err) = tgp_async(vec!["list".into()], env).await;
    assert!(!ok && err.contains("refused the credentials") && !err.contains("not-the-t0ken"), "{err}");
}

#[tokio::test]
async fn an_nkey_server_admits_the_seed_in_a_file() {
    let user = nkeys::KeyPair::new_user();
    let public = user.public_key();
    let server = NatsServer::start_with(|_| format!("authorization {{ users: [ {{ nkey: {public} }} ] }}")).unwrap();
    let seed = server.dir().join("user.nk");
    std::fs::write(&seed, user.seed().unwrap()).unwrap();
    let _controller =
        LoggedController::start(&server.dir(), &["--nats-url", server.url()], &[("NATS_NKEY", seed.to_str().unwrap())]);
    let args =
        vec!["list".into(), "--nats-url".into(), server.url().into(), "--nats-nkey".into(), seed.display().to_string()];
    let (ok, out, err) = tgp_async(args, vec![]).await;
    assert!(ok && out.contains("0 live instance(s)"), "{out}\n{err}");
    let other = server.dir().join("other.nk");
    std::fs::write(&other, nkeys::KeyPair::new_user().seed().unwrap()).unwrap();
    let args = vec![
        "list".into(),
        "--nats-url".into(),
        server.url().into(),
        "--nats-nkey".into(),
        other.display().to_string(),
    ];
    let (ok, _, err) = tgp_async(args, vec![]).await;
    assert!(!ok && err.contains("refused the credentials"), "{err}");
}

/// A CA, and a server and a client certificate it signed, made with openssl in `dir`.
fn certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=tgp test CA",
    ]);
    for (name, ext) in [("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")] {
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ]);
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ]);
    }
}

#[tokio::test]
async fn a_tls_server_that_verifies_clients_admits_tgp_with_its_certificate() {
    let server = NatsServer::start_with(|dir| {
        certificates(dir);
        let file = |name: &str| dir.join(name).display().to_string();
        format!(
            "tls {{ cert_file: \"{}\", key_file: \"{}\", ca_file: \"{}\", verify: true }}",
            file("server.pem"),
            file("server.key"),
            file("ca.pem")
        )
    })
    .unwrap();
    let dir = server.dir();
    let tls_url = server.url().replacen("nats://", "tls://", 1);
    let file = |name: &str| dir.join(name).display().to_string();
    let env = [("NATS_CA", file("ca.pem")), ("NATS_CERT", file("client.pem")), ("NATS_KEY", file("client.key"))];
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _controller = LoggedController::start(&dir, &["--nats-url", &tls_url], &env_refs);
    let args = vec![
        "list".into(),
        "--nats-url".into(),
        tls_url.clone(),
        "--nats-ca".into(),
        file("ca.pem"),
        "--nats-cert".into(),
        file("client.pem"),
        "--nats-key".into(),
        file("client.key"),
    ];
    let (ok, out, err) = tgp_async(args, vec![]).await;
    assert!(ok && out.contains("0 live instance(s)"), "{out}\n{err}");
    // Without the client certificate the server refuses the handshake.
    let args = vec!["list".into(), "--nats-url".into(), tls_url, "--nats-ca".into(), file("ca.pem")];
    let (ok, _, err) = tgp_async(args, vec![]).await;
    assert!(!ok && err.contains("NATS at tls://127.0.0.1"), "{err}");
}

#[tokio::test]
async fn refused_commands_quote_little_and_every_one_is_kept_as_a_dead_letter() {
    let server = nats();
    let _controller = ControllerProcess::start(&server, &server.dir());
    let (client, _) = client(&server).await;
    // Dead letters hold whole commands: only the admin reads them.
    let (_, js) = admin(&server).await;
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGtQUDn9yRvtM3eSZXF1TKbqBVD/23JqbW1ZSVSbEwnj alice@laptop";
    let base = || json!({"gpu_type": "H100", "gpu_count": 1, "max_hourly_price": "3.00"});
    let with = |field: &str, value: serde_json::Value| {
        let mut body = base();
        body[field] = value;
        body
    };
    let huge = "x".repeat(900 * 1024);
    let cases = [
        (with("image", json!(huge)), "the command is 921"),
        (with("gpu_type", json!("H".repeat(50_000))), "field gpu_type holds a string of 50000 bytes"),
        (with("max_hourly_price", json!("1_000")), "plain decimal"),
        (with("max_hourly_price", json!("1e3")), "plain decimal"),
        (with("max_hourly_price", json!("+1")), "plain decimal"),
        (with("max_lifetime", json!("1h1h")), "each unit may appear once"),
        (with("ssh_public_key", json!(format!("{key}\n{key}"))), "more than one line"),
        (with("regions", json!(vec!["us-east"; 40])), "at most 32"),
    ];
    for (body, expected) in &cases {
        let answer = request(&client, "tgp.api.launch", body.clone()).await;
        let message = answer["error"]["message"].as_str().unwrap_or_else(|| panic!("refused: {answer}"));
        assert!(message.contains(expected), "{message}");
        assert!(message.len() <= 1024, "a refusal quotes at most 200 bytes: {} bytes", message.len());
    }

    let dead = js.get_stream(DEAD_LETTERS_STREAM).await.unwrap();
    let consumer = dead.create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default()).await.unwrap();
    assert_eq!(consumer.cached_info().num_pending as usize, cases.len(), "every refused command is kept");
    let letters: Vec<_> = consumer.messages().await.unwrap().take(cases.len()).collect().await;
    for (letter, (body, expected)) in letters.into_iter().zip(&cases) {
        let letter = letter.unwrap();
        let reason = letter.headers.as_ref().and_then(|h| h.get(HEADER_DEAD_REASON)).unwrap().as_str().to_string();
        assert!(reason.contains(expected) && reason.len() <= 1024, "{reason}");
        assert_eq!(letter.payload.len(), serde_json::to_vec(body).unwrap().len(), "the command is kept whole");
    }
    let accepted = request(&client, "tgp.api.launch", with("ssh_public_key", json!(key))).await;
    assert!(accepted["error"].is_null(), "a one-line OpenSSH key is accepted: {accepted}");
}

/// The journal and the dead letters are created with delete and purge denied: even the admin, who
/// may use the whole JetStream API, still cannot erase history, and the journal is unchanged.
#[tokio::test]
async fn the_journal_and_dead_letters_refuse_purge_and_delete() {
    let server = nats();
    let _controller = ControllerProcess::start(&server, &server.dir());
    let (client, _) = client(&server).await;
    // Even the admin, whom permissions do not stop, cannot erase history.
    let (_, js) = admin(&server).await;
    let mut body = launch_body("H100", "on-demand-only");
    body["idempotency_key"] = json!("kept-1");
    assert!(request(&client, "tgp.api.launch", body).await["error"].is_null());
    wait_for_state(&client, "kept-1", "running").await;
    let before = journaled(&js, "kept-1").await;

    for name in [tgp_events::subjects::EVENTS_STREAM, DEAD_LETTERS_STREAM] {
        let mut stream = js.get_stream(name).await.unwrap();
        let config = stream.info().await.unwrap().config.clone();
        assert!(config.deny_delete && config.deny_purge, "{name}: {config:?}");
        let messages = stream.info().await.unwrap().state.messages;
        assert!(stream.purge().await.is_err(), "{name}: purge refused");
        assert!(stream.purge().filter("tgp.events.instance.kept-1").await.is_err(), "{name}: filtered purge refused");
        if messages > 0 {
            assert!(stream.delete_message(1).await.is_err(), "{name}: delete refused");
        }
        assert_eq!(stream.info().await.unwrap().state.messages, messages, "{name}: nothing erased");
    }
    assert_eq!(journaled(&js, "kept-1").await, before, "the journal is unchanged");
    assert_eq!(wait_for_state(&client, "kept-1", "running").await["instance_id"], "kept-1");
}
