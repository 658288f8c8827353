//! `tgp.api.leader`: every `tgp run`, leader or standby, answers who holds the controller lease.
//!
//! Only the leader serves the other `tgp.api.*` endpoints, so between a leader's death and its
//! standby's takeover a command finds no responder at all. A client that asks here then learns
//! whether a tgp runs, who leads, and that a standby is waiting, instead of a bare "no
//! responders". Every process answers in one queue group, so each request gets one answer.

use async_nats::jetstream::Context;
use futures::StreamExt;
use tgp_events::api::{LeaderReply, LeaderView};
use tgp_events::subjects::{API_LEADER, API_LEADER_GROUP};
use tokio::task::JoinHandle;

use async_nats::jetstream::kv::Store;

use crate::leader::{Holder, LeaseError, current, open_bucket};
use crate::readiness::Readiness;

/// Why `tgp.api.leader` could not be served: the subscription was refused (permissions, a lost
/// connection).
#[derive(Debug, thiserror::Error)]
#[error("subscribing {API_LEADER}: {0}")]
pub struct WhoLeadsError(#[source] async_nats::SubscribeError);

/// Answers `tgp.api.leader` for this process, named `name` and as far along as `readiness`,
/// until the task is aborted. Started before the process waits for the lease, so a standby
/// answers too.
pub async fn answer(
    client: async_nats::Client,
    js: Context,
    name: String,
    readiness: Readiness,
) -> Result<JoinHandle<()>, WhoLeadsError> {
    let mut requests = client.queue_subscribe(API_LEADER, API_LEADER_GROUP.into()).await.map_err(WhoLeadsError)?;
    Ok(tokio::spawn(async move {
        let mut bucket = None;
        while let Some(request) = requests.next().await {
            let Some(reply_to) = request.reply else { continue };
            let body = match lease_now(&js, &mut bucket).await {
                Ok(lease) => {
                    serde_json::to_vec(&reply(&name, lease, readiness.is_ready())).expect("a LeaderReply encodes")
                }
                Err(e) => crate::api::error("unavailable", format!("the lease could not be read: {e}")).to_vec(),
            };
            if let Err(e) = client.publish(reply_to, body.into()).await {
                tracing::warn!(error = %e, "who-leads reply not sent");
            }
        }
    }))
}

/// The lease as it is now, read through the bucket opened by an earlier request: one lookup per
/// request, not a stream lookup and a bucket lookup before it. A failed read drops the bucket, so
/// the next request opens it again (recreated by an admin, or moved to another cluster leader).
async fn lease_now(js: &Context, bucket: &mut Option<Store>) -> Result<Option<(Holder, u64)>, LeaseError> {
    let store = match bucket {
        Some(store) => store,
        None => match open_bucket(js).await? {
            Some(store) => bucket.insert(store),
            // No tgp ever created it: nobody leads, and the next request looks again.
            None => return Ok(None),
        },
    };
    let lease = current(store).await;
    if lease.is_err() {
        *bucket = None;
    }
    lease
}

/// The answer, from the lease as read (`None` when it has lapsed) and whether this process is
/// `ready` (leader or warm standby).
fn reply(name: &str, lease: Option<(Holder, u64)>, ready: bool) -> LeaderReply {
    let answerer_leads = lease.as_ref().is_some_and(|(holder, _)| holder.is_this_process());
    LeaderReply {
        leader: lease.map(|(holder, epoch)| LeaderView {
            name: holder.name,
            host: holder.host,
            pid: holder.pid,
            since: holder.since,
            epoch,
        }),
        answered_by: name.to_string(),
        answerer_leads,
        answerer_ready: ready || answerer_leads,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standby_names_the_leader_and_says_it_does_not_lead() {
        let other = Holder { name: "first".into(), host: "elsewhere".into(), pid: 1, since: chrono::Utc::now() };
        let answer = reply("second", Some((other.clone(), 7)), false);
        assert_eq!(answer.leader.as_ref().map(|l| (l.name.as_str(), l.epoch)), Some(("first", 7)));
        assert_eq!(answer.answered_by, "second");
        assert!(!answer.answerer_leads && !answer.answerer_ready, "still catching up");
        assert!(reply("second", Some((other, 7)), true).answerer_ready, "warm");
    }

    #[test]
    fn the_leader_says_it_leads_and_a_lapsed_lease_names_nobody() {
        let answer = reply("me", Some((Holder::this_process("me"), 3)), false);
        assert!(answer.answerer_leads && answer.answerer_ready);
        let lapsed = reply("me", None, false);
        assert!(lapsed.leader.is_none() && !lapsed.answerer_leads);
    }
}
