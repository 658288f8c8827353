//! `tgp.api.list`, page by page where the list does not fit in one NATS message.
//!
//! A reply larger than the server's `max_payload` (1 MiB by default, about 4,500 instances) is
//! refused by the server, so the asker would only see a timeout. An asker that reads pages (it
//! gives `after` or `limit`) gets as many instances as fit, and `next_after` to ask for the rest.
//! One that does not is told, with `too_large`, how to ask, rather than given part of the list as
//! if it were all of it.

use bytes::Bytes;
use tgp_actors::supervisor::List;
use tgp_events::api::{InstanceSummary, ListReply, ListRequest};

use super::{error, json};
use crate::intake::SupervisorAddr;

/// Room kept in a message for the reply's envelope (`{"instances":[...],"next_after":"..."}`).
const ENVELOPE: usize = 512;

/// Answers one `tgp.api.list` request, in replies of at most `max_payload` bytes.
pub(super) async fn list(supervisor: &SupervisorAddr, body: &Bytes, max_payload: usize) -> Bytes {
    let request = if body.iter().all(u8::is_ascii_whitespace) {
        Ok(ListRequest::default())
    } else {
        serde_json::from_slice::<ListRequest>(body)
    };
    let request = match request {
        Ok(request) if request.limit == Some(0) => return error("malformed_request", "limit must be at least 1"),
        Ok(request) => request,
        Err(e) => {
            return error(
                "malformed_request",
                format!("expected {{}} or {{\"state\", \"provider\", \"after\", \"limit\"}}: {e}"),
            );
        }
    };
    match supervisor.send(List(request.clone())).await {
        Ok(instances) => match page(instances, &request, max_payload) {
            Ok(reply) => json(&reply),
            Err(TooLarge { count }) => error(
                "too_large",
                format!(
                    "{count} instances match, more than one NATS message holds ({max_payload} bytes): \
                     ask page by page with {{\"limit\": 1000}}, then {{\"after\": <next_after>}} until no next_after \
                     comes back (`tgp list` does)"
                ),
            ),
        },
        Err(e) => error("unavailable", format!("tgp is shutting down: {e}")),
    }
}

/// A whole list asked for in one reply that does not fit in one.
#[derive(Debug, PartialEq, Eq)]
struct TooLarge {
    count: usize,
}

/// The reply to `request` from `instances` (ordered by id): all of them when they fit, else a page
/// for an asker that reads pages, else [`TooLarge`].
fn page(instances: Vec<InstanceSummary>, request: &ListRequest, max_payload: usize) -> Result<ListReply, TooLarge> {
    let budget = max_payload.saturating_sub(ENVELOPE);
    let after = |summary: &InstanceSummary| request.after.as_ref().is_none_or(|after| summary.instance_id > *after);
    let mut matching = instances.into_iter().filter(after).peekable();
    let (mut taken, mut bytes) = (Vec::new(), 0);
    while let Some(next) = matching.peek() {
        let size = serde_json::to_vec(next).expect("summaries serialize").len() + 1;
        if request.limit.is_some_and(|limit| taken.len() >= limit) || (bytes + size > budget && !taken.is_empty()) {
            break;
        }
        bytes += size;
        taken.extend(matching.next());
    }
    let rest = matching.count();
    if rest > 0 && !request.pages() {
        return Err(TooLarge { count: taken.len() + rest });
    }
    let next_after = (rest > 0).then(|| taken.last().map(|s: &InstanceSummary| s.instance_id.clone())).flatten();
    Ok(ListReply { instances: taken, next_after })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tgp_events::api::InstanceState;

    fn summaries(n: usize) -> Vec<InstanceSummary> {
        (0..n)
            .map(|i| InstanceSummary {
                instance_id: format!("i-{i:05}").parse().unwrap(),
                state: InstanceState::Running,
                provider: Some("vastai".parse().unwrap()),
                provider_instance_id: Some(format!("{}", 1_000_000 + i)),
                hourly_price: Some("1.20".parse().unwrap()),
                connection: None,
            })
            .collect()
    }

    fn size(summaries: &[InstanceSummary]) -> usize {
        serde_json::to_vec(summaries).unwrap().len()
    }

    #[test]
    fn a_list_that_fits_comes_whole_with_no_next_page() {
        let reply = page(summaries(10), &ListRequest::default(), 1 << 20).unwrap();
        assert_eq!(reply.instances.len(), 10);
        assert_eq!(reply.next_after, None);
    }

    #[test]
    fn pages_fit_the_message_and_together_hold_every_instance_once() {
        let all = summaries(500);
        let max_payload = size(&all[..100]) + ENVELOPE;
        let mut request = ListRequest { limit: Some(1000), ..ListRequest::default() };
        let mut seen = Vec::new();
        loop {
            let reply = page(all.clone(), &request, max_payload).unwrap();
            assert!(serde_json::to_vec(&reply).unwrap().len() <= max_payload, "a page fits one message");
            assert!(!reply.instances.is_empty());
            seen.extend(reply.instances.iter().map(|s| s.instance_id.clone()));
            match reply.next_after {
                Some(after) => request.after = Some(after),
                None => break,
            }
        }
        assert_eq!(seen, all.iter().map(|s| s.instance_id.clone()).collect::<Vec<_>>());
    }

    #[test]
    fn a_limit_cuts_the_page_and_says_where_to_go_on() {
        let request = ListRequest { limit: Some(3), ..ListRequest::default() };
        let reply = page(summaries(10), &request, 1 << 20).unwrap();
        assert_eq!(reply.instances.len(), 3);
        assert_eq!(reply.next_after.as_ref().map(|id| id.as_str()), Some("i-00002"));
    }

    #[test]
    fn a_whole_list_too_large_for_one_message_is_refused_not_cut() {
        let all = summaries(500);
        let max_payload = size(&all[..100]) + ENVELOPE;
        let refused = page(all, &ListRequest::default(), max_payload).unwrap_err();
        assert_eq!(refused.count, 500);
    }
}
