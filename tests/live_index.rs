//! Start-up from the index of unfinished chains (`projections::live`): a checkpoint plus the
//! commits after it gives exactly the chains a replay of the whole journal gives, and reads only
//! the commits after the checkpoint, however many finished chains come before it.

mod support;

use chrono::{DateTime, Duration, Utc};
use support::journal_builder::*;
use support::*;
use tgp::journal::{JetStreamJournal, layout};
use tgp::projections::live::LiveChains;
use tgp::projections::runner;
use tgp_actors::journal::load_all;
use tgp_events::GpuType;

fn buy() -> Buy {
    Buy {
        provider: "vastai",
        gpu: GpuType::H100,
        region: "us-east",
        price: "1.20",
        spot: false,
        on_demand: "1.20",
        billing: per_second(),
    }
}

fn t(minutes: i64) -> DateTime<Utc> {
    "2026-11-20T10:00:00Z".parse::<DateTime<Utc>>().unwrap() + Duration::minutes(minutes)
}

async fn launched<'a>(journal: &'a JetStreamJournal, id: &str, at: i64) -> Chain<'a> {
    let mut chain = Chain::request(journal, id, t(at)).await;
    chain.launch(&buy(), t(at + 1)).await;
    chain
}

/// The chains a replay of the whole journal leaves unfinished.
async fn replayed(
    journal: &JetStreamJournal,
) -> std::collections::BTreeMap<tgp_events::InstanceId, tgp_actors::journal::Loaded> {
    let mut all = load_all(journal).await.unwrap();
    all.retain(|_, chain| chain.is_unfinished());
    all
}

#[tokio::test]
async fn start_up_reads_the_index_and_the_commits_after_it_and_loads_what_a_full_replay_loads() {
    let server = nats();
    let (_, js) = connect_as(&server, Role::Tgp).await;
    layout::ensure(&js).await.unwrap();
    let journal = JetStreamJournal::open(js.clone()).await.unwrap();

    // Finished history, then two chains still running, then the checkpoint.
    for i in 0..20 {
        launched(&journal, &format!("done-{i}"), i).await.terminate(t(i + 30)).await;
    }
    let mut running = launched(&journal, "running-a", 40).await;
    let _running_b = launched(&journal, "running-b", 41).await;
    let checkpoint = runner::rebuild::<LiveChains>(&js, |_, _| {}).await.unwrap();
    assert_eq!(checkpoint.state.chains().keys().map(|id| id.as_str()).collect::<Vec<_>>(), ["running-a", "running-b"]);

    // After the checkpoint: one running chain ends, one is interrupted, a new one starts.
    running.terminate(t(50)).await;
    let mut interrupted = launched(&journal, "running-c", 51).await;
    interrupted.interrupt(t(52)).await;
    let mut stream = js.get_stream("TGP_EVENTS").await.unwrap();
    let after_checkpoint = stream.info().await.unwrap().state.last_sequence - checkpoint.last_sequence;
    assert!(
        after_checkpoint > 0 && checkpoint.last_sequence > 20 * 5,
        "{after_checkpoint} {}",
        checkpoint.last_sequence
    );

    let reader = journal.reader();
    let (index, read) = runner::catch_up::<LiveChains>(&js, &reader).await.unwrap();
    assert_eq!(read, after_checkpoint, "only the commits after the checkpoint are read");
    assert_eq!(index.state.chains().keys().map(|id| id.as_str()).collect::<Vec<_>>(), ["running-b", "running-c"]);
    assert_eq!(index.state.chains(), &replayed(&journal).await, "the same chains, states and versions as a replay");
}

#[tokio::test]
async fn without_a_checkpoint_the_index_is_built_from_the_whole_journal() {
    let server = nats();
    let (_, js) = connect_as(&server, Role::Tgp).await;
    layout::ensure(&js).await.unwrap();
    let journal = JetStreamJournal::open(js.clone()).await.unwrap();
    launched(&journal, "old-done", 0).await.terminate(t(5)).await;
    let _old_running = launched(&journal, "old-running", 1).await;

    // A journal written before the index existed: no checkpoint, so everything is read once.
    let (index, read) = runner::catch_up::<LiveChains>(&js, &journal.reader()).await.unwrap();
    assert!(read >= 2 * 4, "the whole journal is read: {read}");
    assert_eq!(index.state.chains(), &replayed(&journal).await);
    assert_eq!(index.state.chains().keys().map(|id| id.as_str()).collect::<Vec<_>>(), ["old-running"]);
}

/// A standby's warm index folds what the leader journals while it waits: taking over reads none
/// of the commits made more than a fold interval before, and gives what a full replay gives.
#[tokio::test]
async fn a_warm_index_has_folded_the_leaders_commits_before_the_takeover() {
    let server = nats();
    let (_, js) = connect_as(&server, Role::Tgp).await;
    layout::ensure(&js).await.unwrap();
    let journal = JetStreamJournal::open(js.clone()).await.unwrap();
    let _before = launched(&journal, "before", 0).await;
    let warm = tgp::projections::warm::WarmIndex::start(&js, journal.reader()).await.unwrap();

    // The leader goes on: a chain ends and two start, none of it in any saved checkpoint.
    let mut ends = launched(&journal, "ends", 10).await;
    ends.terminate(t(20)).await;
    let _later = launched(&journal, "later", 21).await;
    let _last = launched(&journal, "last", 22).await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;

    let (index, read) = warm.take().await.unwrap();
    assert_eq!(read, 0, "every commit was folded while standing by");
    assert_eq!(index.state.chains().keys().map(|id| id.as_str()).collect::<Vec<_>>(), ["before", "last", "later"]);
    assert_eq!(index.state.chains(), &replayed(&journal).await, "the same chains as a replay");
}

/// A leader whose start-up read commits after the index's checkpoint (a whole history, the first
/// time) saves the index at once, though nothing new is journaled: otherwise the next process to
/// start (a restarted standby) reads all of it again before it is ready to take over.
#[tokio::test]
async fn an_index_loaded_past_its_checkpoint_is_saved_at_once() {
    let server = nats();
    let (_, js) = connect_as(&server, Role::Tgp).await;
    layout::ensure(&js).await.unwrap();
    let journal = JetStreamJournal::open(js.clone()).await.unwrap();
    for i in 0..5 {
        launched(&journal, &format!("done-{i}"), i).await.terminate(t(i + 10)).await;
    }
    let _running = launched(&journal, "running", 20).await;
    let (index, read) = runner::catch_up::<LiveChains>(&js, &journal.reader()).await.unwrap();
    assert!(read > 0, "no checkpoint yet: the whole journal is read");
    let folded_to = index.last_sequence;

    let key = tgp::journal::JournalKey::generate().unwrap();
    let _follower = runner::follow(js.clone(), key, std::sync::Arc::new(std::sync::RwLock::new(index))).await.unwrap();
    let checkpoints = js.get_key_value(runner::CHECKPOINT_BUCKET).await.unwrap();
    let name = <LiveChains as tgp::projections::Projection>::NAME;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let saved = loop {
        let saved =
            checkpoints.get(name).await.unwrap().and_then(|entry| String::from_utf8_lossy(&entry).parse::<u64>().ok());
        if saved == Some(folded_to) || std::time::Instant::now() > deadline {
            break saved;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(saved, Some(folded_to), "the index is saved where the start-up left it, with no new commit");

    let (again, read_again) = runner::catch_up::<LiveChains>(&js, &journal.reader()).await.unwrap();
    assert_eq!(read_again, 0, "the next start reads nothing it read before");
    assert_eq!(again.state.chains().keys().map(|id| id.as_str()).collect::<Vec<_>>(), ["running"]);
}
