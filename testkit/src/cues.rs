//! Cues over NATS: `tgp-dev run` serves `tgp.sim.interrupt` and `tgp.sim.cue` beside the
//! controller, so tests and demonstrations can take a machine away or change how the market
//! behaves, as a provider would. The product has no such subjects: real providers cannot be cued.

use std::sync::Arc;

use futures::StreamExt;
use serde::Deserialize;
use tgp_events::api::ErrorReply;
use tgp_events::subjects::{SIM_CUE, SIM_INTERRUPT};
use tokio::task::JoinHandle;

use crate::market::{Market, MarketCue};

/// A market that can take a machine away on cue, as a provider reclaiming spot capacity would:
/// the simulated market and the fake providers. Real providers cannot be told to.
pub trait MarketCues: Send + Sync {
    /// Interrupts a running machine; false when there is no such running machine.
    fn interrupt(&self, machine_id: &str) -> bool;
    /// Ids of machines that exist and are not terminated.
    fn live_machines(&self) -> Vec<String>;
    /// Changes how the market behaves; an error says why a market cannot.
    fn cue(&self, cue: &MarketCue) -> Result<(), String>;
}

impl MarketCues for Market {
    fn interrupt(&self, machine_id: &str) -> bool {
        Market::interrupt(self, machine_id)
    }
    fn live_machines(&self) -> Vec<String> {
        Market::live_machines(self)
    }
    fn cue(&self, cue: &MarketCue) -> Result<(), String> {
        Market::cue(self, cue);
        Ok(())
    }
}

/// `tgp.sim.interrupt`'s request.
#[derive(Deserialize)]
struct InterruptRequest {
    provider_instance_id: String,
}

/// Subscribes to the cue subjects and answers them from `market` until the task is aborted.
/// Returns once the subscriptions are registered at the server, so a cue sent after it is heard.
pub async fn serve(client: async_nats::Client, market: Arc<dyn MarketCues>) -> anyhow::Result<JoinHandle<()>> {
    let interrupts = client.subscribe(SIM_INTERRUPT).await?;
    let cues = client.subscribe(SIM_CUE).await?;
    client.flush().await?;
    let requests = futures::stream::select(interrupts, cues);
    Ok(tokio::spawn(answer(client, requests, market)))
}

async fn answer(
    client: async_nats::Client,
    mut requests: impl futures::Stream<Item = async_nats::Message> + Unpin,
    market: Arc<dyn MarketCues>,
) {
    while let Some(request) = requests.next().await {
        let reply = if request.subject.as_str() == SIM_CUE {
            answer_cue(&request.payload, market.as_ref())
        } else {
            answer_interrupt(&request.payload, market.as_ref())
        };
        if let Some(to) = request.reply {
            let _ = client.publish(to, reply.into()).await;
        }
    }
}

fn error(code: &str, message: impl Into<String>) -> String {
    serde_json::to_string(&ErrorReply::new(code, message.into())).expect("an error reply serializes")
}

fn answer_cue(payload: &[u8], market: &dyn MarketCues) -> String {
    match serde_json::from_slice::<MarketCue>(payload) {
        Ok(cue) => match market.cue(&cue) {
            Ok(()) => serde_json::json!({"cued": cue}).to_string(),
            Err(why) => error("unsupported", why),
        },
        Err(e) => error("malformed_request", e.to_string()),
    }
}

fn answer_interrupt(payload: &[u8], market: &dyn MarketCues) -> String {
    match serde_json::from_slice::<InterruptRequest>(payload) {
        Ok(req) if market.interrupt(&req.provider_instance_id) => {
            serde_json::json!({"interrupted": req.provider_instance_id}).to_string()
        }
        Ok(req) => error("not_found", format!("no running machine {}", req.provider_instance_id)),
        Err(e) => error("malformed_request", e.to_string()),
    }
}
