//! The JetStream journal against a real server: optimistic concurrency between racing writers,
//! one message per commit, de-duplication of a re-sent append, snapshots, and refusal of events
//! from a newer schema.

mod support;

use async_nats::jetstream::message::PublishMessage;
use cqrs_es::persist::PersistenceError;
use support::*;
use tgp::journal::{JetStreamJournal, layout};
use tgp_actors::aggregate::{Instance, InstanceCommand};
use tgp_actors::journal::{Journal, Loaded, SNAPSHOT_EVERY, load};
use tgp_events::InstanceId;
use tgp_events::events::InstanceEvent;
use tgp_events::subjects::{HEADER_LAST_SEQUENCE, HEADER_MSG_ID};

/// The journal as the controller holds it (these tests play tgp).
async fn journal(server: &NatsServer) -> (JetStreamJournal, async_nats::jetstream::Context) {
    let (_, js) = connect_as(server, Role::Tgp).await;
    layout::ensure(&js).await.expect("layout");
    (JetStreamJournal::open(js.clone()).await.expect("journal"), js)
}

fn event(reason: &str) -> InstanceEvent {
    InstanceEvent::TerminationRequested { reason: reason.into(), limit: None, at: chrono::Utc::now() }
}

fn id(name: &str) -> InstanceId {
    name.parse().unwrap()
}

async fn messages_on(js: &async_nats::jetstream::Context, id: &str) -> u64 {
    let stream = js.get_stream("TGP_EVENTS").await.unwrap();
    let info = stream.info_with_subjects(format!("tgp.events.instance.{id}")).await.unwrap();
    let counts: std::collections::HashMap<String, usize> =
        futures::StreamExt::collect::<Vec<_>>(info).await.into_iter().map(|r| r.unwrap()).collect();
    counts.values().sum::<usize>() as u64
}

#[tokio::test]
async fn two_writers_racing_on_one_aggregate_store_one_append() {
    let server = nats();
    let (a, js) = journal(&server).await;
    let (b, _) = journal(&server).await; // a second process: its own connection and caches

    let race = id("race");
    a.append(&race, 1, &[event("first")]).await.unwrap();
    b.events_after(&race, 0).await.unwrap(); // both now know sequence 1

    let (from_a, from_b) = ([event("from a")], [event("from b")]);
    let (ra, rb) = tokio::join!(a.append(&race, 2, &from_a), b.append(&race, 2, &from_b));
    let outcomes = [&ra, &rb];
    assert_eq!(outcomes.iter().filter(|r| r.is_ok()).count(), 1, "{ra:?} {rb:?}");
    assert!(outcomes.iter().any(|r| matches!(r, Err(PersistenceError::OptimisticLockError))), "{ra:?} {rb:?}");
    assert_eq!(messages_on(&js, "race").await, 2);

    // The loser, now behind, is refused again until it reloads.
    let loser = if ra.is_err() { &a } else { &b };
    let stale = loser.append(&race, 2, &[event("stale")]).await;
    assert!(matches!(stale, Err(PersistenceError::OptimisticLockError)));
    let events = loser.events_after(&race, 0).await.unwrap();
    assert_eq!(events.len(), 2);
    loser.append(&race, 3, &[event("after reload")]).await.unwrap();
    assert_eq!(messages_on(&js, "race").await, 3);
}

#[tokio::test]
async fn the_events_of_one_command_are_one_message() {
    let server = nats();
    let (journal, js) = journal(&server).await;
    let batch = [event("a"), event("b"), event("c")];
    journal.append(&id("batch"), 1, &batch).await.unwrap();
    assert_eq!(messages_on(&js, "batch").await, 1);
    let read = journal.events_after(&id("batch"), 0).await.unwrap();
    assert_eq!(read.iter().map(|(sequence, _)| *sequence).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(read.into_iter().map(|(_, e)| e).collect::<Vec<_>>(), batch.to_vec());
}

#[tokio::test]
async fn a_resent_append_is_stored_once() {
    let server = nats();
    let (_, js) = journal(&server).await;
    // The same message id and expected sequence twice: what the journal does after a lost ack.
    for _ in 0..2 {
        let publish = PublishMessage::build()
            .payload(r#"{"aggregate_type":"instance","aggregate_id":"dup","events":[]}"#.into())
            .message_id("one-attempt")
            .expected_last_subject_sequence(0)
            .header(HEADER_LAST_SEQUENCE, "0");
        let outcome = js.send_publish("tgp.events.instance.dup", publish).await.unwrap().await;
        // 2.9 answers a duplicate ack; 2.11+ refuses with a wrong-last-sequence: both store once.
        assert!(
            outcome.is_ok()
                || outcome.unwrap_err().kind() == async_nats::jetstream::context::PublishErrorKind::WrongLastSequence
        );
    }
    assert_eq!(messages_on(&js, "dup").await, 1);
}

#[tokio::test]
async fn snapshots_are_written_every_n_events_and_loads_use_them() {
    let server = nats();
    let (journal, _) = journal(&server).await;
    let id: InstanceId = "snap".parse().unwrap();
    let now = chrono::Utc::now;
    let request = tgp_events::LaunchCommand::from_json(
        br#"{"gpu_type":"H100","gpu_count":1,"max_hourly_price":"2","relaunch":{"max_attempts":50}}"#,
    )
    .unwrap()
    .with_env(Default::default());
    let offer = tgp_events::events::OfferSummary {
        provider: "simulated".parse().unwrap(),
        offer_id: "o".into(),
        gpu_type: tgp_events::GpuType::H100,
        gpu_count: 1,
        region: "us-east".parse().unwrap(),
        hourly_price: "1".parse().unwrap(),
        spot: false,
    };
    let mut loaded = Loaded::default();
    loaded.commit(&journal, &id, InstanceCommand::RequestLaunch { id: id.clone(), request, at: now() }).await.unwrap();
    // A long chain of failed attempts: three events a round, through the real commit path.
    while loaded.version <= SNAPSHOT_EVERY {
        let select = InstanceCommand::SelectOffer {
            offer: offer.clone(),
            bid: None,
            reason: "r".into(),
            candidates: vec![],
            at: now(),
        };
        loaded.commit(&journal, &id, select).await.unwrap();
        loaded.commit(&journal, &id, InstanceCommand::StartAttempt { at: now() }).await.unwrap();
        let attempt_id = loaded.instance.pending_attempt.clone().unwrap().0;
        let failed = InstanceCommand::RecordLaunchFailed {
            attempt_id,
            class: tgp_events::events::FailureClass::Capacity,
            message: "full".into(),
            at: now(),
        };
        loaded.commit(&journal, &id, failed).await.unwrap();
    }
    let snapshot = journal.snapshot(&id).await.unwrap().expect("a snapshot past SNAPSHOT_EVERY events");
    assert!(snapshot.sequence >= SNAPSHOT_EVERY && snapshot.sequence <= loaded.version);
    let from_snapshot: Instance = snapshot.instance;
    assert_eq!(from_snapshot.attempts as usize, (snapshot.sequence - 1) / 3);
    let reloaded = load(&journal, &id).await.unwrap();
    assert_eq!(reloaded.version, loaded.version);
    assert_eq!(reloaded.instance, loaded.instance, "snapshot + later events = the live state");
}

#[tokio::test]
async fn an_event_from_a_newer_schema_is_refused_clearly() {
    let server = nats();
    let (journal, js) = journal(&server).await;
    let body = serde_json::json!({
        "aggregate_type": "instance", "aggregate_id": "future",
        "events": [{"sequence": 1, "type": "LaunchRequested", "version": 99, "data": {}}]
    });
    let publish = PublishMessage::build()
        .payload(body.to_string().into())
        .header(HEADER_MSG_ID, "future-1")
        .header(HEADER_LAST_SEQUENCE, "1");
    js.send_publish("tgp.events.instance.future", publish).await.unwrap().await.unwrap();
    let err = journal.events_after(&id("future"), 0).await.unwrap_err();
    assert!(err.to_string().contains("schema version 99") && err.to_string().contains("upgrade"), "{err}");
}

/// Chains read at once: more than the 1,000 consumers per stream that nats-server 2.15 allows by
/// default (each read of a chain with commits is an ephemeral consumer until it lapses).
/// Reading chains leaves no consumer on the server: each is read with Direct Get. An ordered
/// consumer per read lingered until its inactivity threshold, so a burst of reads held one each
/// (up to the stream's consumer limit, and on a cluster each one a proposal to the meta leader).
#[tokio::test]
async fn reading_chains_makes_no_consumer() {
    let server = nats();
    let (journal, js) = journal(&server).await;
    let ids: Vec<InstanceId> = (0..50).map(|i| id(&format!("chain-{i:02}"))).collect();
    for id in &ids {
        journal.append(id, 1, &[event("first")]).await.expect("appended");
        journal.append(id, 2, &[event("second"), event("third")]).await.expect("appended");
    }
    let (reader, _) = self::journal(&server).await;
    for id in &ids {
        let events = reader.events_after(id, 0).await.expect("read");
        assert_eq!(events.iter().map(|(sequence, _)| *sequence).collect::<Vec<_>>(), [1, 2, 3], "{id}");
        assert_eq!(reader.events_after(id, 1).await.expect("read").len(), 2, "only the events after the first");
    }
    let consumers = js.get_stream("TGP_EVENTS").await.unwrap().info().await.unwrap().state.consumer_count;
    assert_eq!(consumers, 0, "consumers left on the stream by 100 chain reads");
}

const CHAINS_READ_AT_ONCE: usize = 1_500;

/// A start-up, a takeover or a burst reads thousands of chains within seconds: every read
/// succeeds, on a server whose default would refuse the consumers past the thousandth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_chains_read_at_once_are_all_read() {
    let server = nats();
    let (journal, _) = journal(&server).await;
    let ids: Vec<InstanceId> = (0..CHAINS_READ_AT_ONCE).map(|i| id(&format!("read-{i:04}"))).collect();
    let events: Vec<[InstanceEvent; 1]> = ids.iter().map(|i| [event(i.as_str())]).collect();
    let appends = ids.iter().zip(&events).map(|(i, e)| journal.append(i, 1, e));
    for appended in futures::future::join_all(appends).await {
        appended.expect("appended");
    }
    // A fresh journal: no head cached, so every read goes to the stream.
    let (reader, _) = self::journal(&server).await;
    let reads = ids.iter().map(|i| reader.events_after(i, 0));
    let read = futures::future::join_all(reads).await;
    let failed: Vec<String> = read.iter().filter_map(|r| r.as_ref().err().map(|e| format!("{e:?}"))).collect();
    assert!(
        failed.is_empty(),
        "{} of {CHAINS_READ_AT_ONCE} reads failed, the first: {:?}",
        failed.len(),
        failed.first()
    );
    assert!(read.iter().all(|r| r.as_ref().is_ok_and(|events| events.len() == 1)), "every chain's one commit read");
}
