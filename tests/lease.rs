//! The controller lease under a busy or stuck leader (`src/leader/renewal.rs`). Each test blocks
//! the thread of its own single-threaded runtime, as thousands of actors or a long fold do to
//! `tgp run`'s, and looks at what the lease became meanwhile.

mod support;

use std::time::Duration;

use support::*;
use tgp::leader::{LeaseConfig, holder, lead, renewal::stuck_after};

const TTL: Duration = Duration::from_secs(1);

fn config(name: &str) -> LeaseConfig {
    LeaseConfig { name: name.into(), ttl: TTL }
}

/// A leader whose runtime is busy for three lease lifetimes still renews: the renewals run on a
/// thread and a connection of their own. They used to queue behind the work, so a leader under
/// load lost its lease to the standby.
#[tokio::test]
async fn a_leader_busy_for_longer_than_its_lease_keeps_it() {
    let server = nats();
    let (_, js) = connect_as(&server, Role::Tgp).await;
    let leadership = lead(&js, &server.options(Role::Tgp), &config("busy"), 1, |_| {}).await.unwrap();

    std::thread::sleep(TTL * 3);

    assert!(leadership.fence.is_open(), "the busy leader may still act");
    assert!(!*leadership.lost.borrow(), "nothing took its lease");
    let (held_by, revision) = holder(&js).await.unwrap().expect("the lease is held");
    assert_eq!(held_by.name, "busy");
    assert!(revision > leadership.epoch, "renewed while the runtime was busy: revision {revision}");
}

/// A leader whose runtime shows no pulse for [`stuck_after`] lets its lease lapse, so that a
/// standby can take over; before that it keeps it. Watched from a thread with a runtime and a
/// connection of its own.
#[tokio::test]
async fn a_leader_stuck_past_its_limit_lets_its_lease_lapse() {
    let server = nats();
    let (_, js) = connect_as(&server, Role::Tgp).await;
    let options = server.options(Role::Tgp);
    let leadership = lead(&js, &options, &config("stuck"), 1, |_| {}).await.unwrap();
    let stuck_at = std::time::Instant::now();
    let limit = stuck_after(TTL);
    let watcher = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            // Its own connection: the test's is driven by the runtime the test blocks.
            let js = tgp::connect::jetstream(tgp::connect::connect_with(&options, "watcher").await.unwrap());
            let mut last_held = None;
            while stuck_at.elapsed() < limit + TTL * 3 {
                match holder(&js).await.unwrap() {
                    Some(_) => last_held = Some(stuck_at.elapsed()),
                    None => return (last_held, Some(stuck_at.elapsed())),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (last_held, None)
        })
    });

    std::thread::sleep(limit + TTL * 3);

    let (last_held, lapsed) = watcher.join().unwrap();
    let lapsed = lapsed.expect("the stuck leader's lease lapsed");
    let last_held = last_held.expect("the lease was held at first");
    assert!(last_held >= limit - TTL, "held while the leader was only busy: last seen held after {last_held:?}");
    assert!(lapsed >= limit && lapsed <= limit + TTL * 3, "lapsed {lapsed:?} after the runtime stopped");
    assert!(
        !leadership.fence.is_open() || holder(&js).await.unwrap().is_some(),
        "acts only if it holds the lease again"
    );
}

/// Where no tgp ever ran, nobody leads: the missing bucket is an answer, not an error.
#[tokio::test]
async fn nobody_leads_where_no_tgp_ever_ran() {
    let server = nats();
    let (_, js) = connect_as(&server, Role::Tgp).await;
    assert_eq!(holder(&js).await.unwrap(), None);
    let leadership = lead(&js, &server.options(Role::Tgp), &config("first"), 1, |_| {}).await.unwrap();
    assert_eq!(
        holder(&js).await.unwrap().map(|(holder, epoch)| (holder.name, epoch)),
        Some(("first".into(), leadership.epoch))
    );
}
