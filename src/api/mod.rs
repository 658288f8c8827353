//! The request/reply way in: `tgp.api.launch`, `terminate`, `get` and `list`, run as a NATS
//! service (so `nats micro ls` and other service tooling discover it as `tgp`). Every answer is a
//! JSON body: the success shape, or `{"error": {"code": ..., "message": ...}}`. A launch or
//! terminate that cannot be decoded or is invalid is also kept as a dead letter.

use async_nats::jetstream::Context;
use async_nats::service::ServiceExt;
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use std::sync::Arc;

use tgp_actors::fence::Fence;
use tgp_actors::keyring::Keyring;
use tgp_actors::supervisor::{Get, Launch, SupervisorError, Terminate};
use tgp_events::api::{CostRequest, ErrorReply, GetRequest, OffersRequest, PricesRequest, ProviderToggle};
use tgp_events::subjects::{
    API_COST, API_GET, API_LAUNCH, API_LIST, API_OFFERS, API_PREFIX, API_PRICES, API_PROVIDER_DISABLE,
    API_PROVIDER_ENABLE, API_TERMINATE, SERVICE_NAME,
};
use tgp_events::{InstanceId, LaunchCommand, TerminateCommand};
use tokio::task::JoinHandle;

mod list;

use crate::intake::{NO_SECRETS_KEY, SupervisorAddr, dead_letter};
use crate::projections::cost::{CostLedger, parse_group_by};
use crate::projections::pricing::RealizedPrices;
use crate::projections::runner::Live;
use tgp_actors::provider::ProviderClient;
use tgp_actors::provider_actor::{ProviderHandle, SetEnabled};

/// The live projections the service answers from.
#[derive(Clone)]
pub struct Views {
    /// Spend.
    pub cost: Live<CostLedger>,
    /// Prices paid.
    pub prices: Live<RealizedPrices>,
    /// The provider actors.
    pub providers: Vec<ProviderHandle>,
    /// Seals a launch's env values before anything is journaled.
    pub keyring: Arc<Keyring>,
    /// Open while this controller leads: a command waits a moment for it, then is refused.
    pub fence: Fence,
}

/// How long a command waits for a lapsed lease to be held again (a NATS outage just ended)
/// before it is answered `not_leader`.
const LEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The answer to a command while this controller does not lead: its lease lapsed (NATS was
/// unreachable, or it was paused) and is not held again yet. The client may send it again; with
/// an idempotency key the second send is the same command.
fn not_leading() -> Bytes {
    error(
        "not_leader",
        "this controller's lease has lapsed and is not held again yet: it takes no command now; \
         send it again (with an idempotency key a second send is the same command)",
    )
}

/// Requests handled at once per endpoint.
const CONCURRENCY: usize = 64;

/// Why the `tgp.api` service could not start: registering it, or subscribing one endpoint. Both
/// stop tgp at start, and the NATS error is kept as the cause (permissions, a lost connection).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The service could not be registered with NATS.
    #[error("tgp.api service: {0}")]
    Register(#[source] async_nats::Error),
    /// One endpoint could not be subscribed.
    #[error("tgp.api service: {subject}: {source}")]
    Endpoint {
        /// The endpoint's subject.
        subject: &'static str,
        /// What NATS said.
        source: async_nats::Error,
    },
}

fn json<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("replies serialize"))
}

/// A `{"error": {"code", "message"}}` body.
pub(crate) fn error(code: &str, message: impl Into<String>) -> Bytes {
    json(&ErrorReply::new(code, message))
}

fn supervisor_reply<T: Serialize>(result: Result<Result<T, SupervisorError>, actix::MailboxError>) -> Bytes {
    match result {
        Ok(Ok(value)) => json(&value),
        Ok(Err(e)) => error(e.code(), e.to_string()),
        Err(e) => error("unavailable", format!("tgp is shutting down: {e}")),
    }
}

async fn launch(js: &Context, supervisor: &SupervisorAddr, keyring: &Keyring, body: &Bytes) -> Bytes {
    let request = match LaunchCommand::from_json(body) {
        Ok(r) => r,
        Err(e) => {
            dead_letter(js, API_LAUNCH, None, body.clone(), e.code(), &e.to_string()).await;
            return error(e.code(), e.to_string());
        }
    };
    let id = match &request.idempotency_key {
        Some(key) => key.parse().expect("validated with the command"),
        None => InstanceId::generate(),
    };
    let request = match keyring.seal_launch(&id, request) {
        Ok(sealed) => sealed,
        Err(e) => {
            dead_letter(js, API_LAUNCH, None, body.clone(), NO_SECRETS_KEY, &e.to_string()).await;
            return error(NO_SECRETS_KEY, e.to_string());
        }
    };
    supervisor_reply(supervisor.send(Launch { id, request }).await)
}

async fn terminate(js: &Context, supervisor: &SupervisorAddr, body: &Bytes) -> Bytes {
    match TerminateCommand::from_json(body) {
        Ok(cmd) => {
            let reason = cmd.reason.unwrap_or_else(|| "requested on tgp.api.terminate".into());
            supervisor_reply(supervisor.send(Terminate { id: cmd.instance_id, reason }).await)
        }
        Err(e) => {
            dead_letter(js, API_TERMINATE, None, body.clone(), e.code(), &e.to_string()).await;
            error(e.code(), e.to_string())
        }
    }
}

async fn get(supervisor: &SupervisorAddr, body: &Bytes) -> Bytes {
    match serde_json::from_slice::<GetRequest>(body) {
        Ok(req) => supervisor_reply(supervisor.send(Get(req.instance_id)).await),
        Err(e) => error("malformed_request", format!("expected {{\"instance_id\": \"...\"}}: {e}")),
    }
}

fn cost(views: &Views, body: &Bytes) -> Bytes {
    let request: CostRequest = if body.iter().all(u8::is_ascii_whitespace) {
        CostRequest::default()
    } else {
        match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                return error("malformed_request", format!("expected {{\"from\", \"to\", \"group_by\"}}: {e}"));
            }
        }
    };
    let group_by = match parse_group_by(&request.group_by) {
        Ok(g) => g,
        Err(e) => return error("malformed_request", e),
    };
    let to = request.to.unwrap_or_else(chrono::Utc::now);
    let live = views.cost.read().expect("projection lock");
    json(&live.state.report(request.from, to, &group_by, live.last_sequence))
}

fn prices(views: &Views, body: &Bytes) -> Bytes {
    let request: PricesRequest = if body.iter().all(u8::is_ascii_whitespace) {
        PricesRequest::default()
    } else {
        match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                return error("malformed_request", format!("expected {{}} or {{\"gpu\": \"H100\"}}: {e}"));
            }
        }
    };
    let live = views.prices.read().expect("projection lock");
    json(&serde_json::json!({
        "prices": live.state.rows(request.gpu.as_deref()),
        "market": live.state.market(request.gpu.as_deref()),
        "last_sequence": live.last_sequence,
    }))
}

async fn offers(views: &Views, body: &Bytes) -> Bytes {
    let request: OffersRequest = if body.iter().all(u8::is_ascii_whitespace) {
        OffersRequest::default()
    } else {
        match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return error("malformed_request", format!("offers filter: {e}")),
        }
    };
    let clients: Vec<std::sync::Arc<dyn ProviderClient>> =
        views.providers.iter().map(|h| std::sync::Arc::new(h.clone()) as std::sync::Arc<dyn ProviderClient>).collect();
    json(&crate::offers::gather(&clients, Vec::new(), &request).await)
}

async fn toggle(views: &Views, body: &Bytes, enable: bool) -> Bytes {
    let request: ProviderToggle = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return error("malformed_request", format!("expected {{\"provider\": \"...\"}}: {e}")),
    };
    let Some(handle) = views.providers.iter().find(|h| h.info().name == request.provider) else {
        let known: Vec<String> = views.providers.iter().map(|h| h.info().name.to_string()).collect();
        return error("not_found", format!("no provider {}; running: {}", request.provider, known.join(", ")));
    };
    let disabled = (!enable).then(|| request.reason.unwrap_or_else(|| "disabled on tgp.api.provider.disable".into()));
    match handle.addr.send(SetEnabled(disabled)).await {
        Ok(()) => json(&serde_json::json!({"provider": request.provider, "enabled": enable})),
        Err(e) => error("unavailable", e.to_string()),
    }
}

/// Registers the service and its endpoints, then answers requests on spawned tasks (returned
/// so the caller decides their lifetime). Returns once every endpoint is subscribed.
pub async fn start(
    client: async_nats::Client,
    js: Context,
    supervisor: SupervisorAddr,
    views: Views,
) -> Result<Vec<JoinHandle<()>>, ApiError> {
    let service = client
        .service_builder()
        .description("tgp: GPU instances across cloud marketplaces")
        .start(SERVICE_NAME, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(ApiError::Register)?;
    let group = service.group(API_PREFIX);
    // What the server takes in one message: a list longer than that is answered page by page.
    let max_payload = client.server_info().max_payload;
    let mut tasks = Vec::new();
    for (name, subject) in [
        ("launch", API_LAUNCH),
        ("terminate", API_TERMINATE),
        ("get", API_GET),
        ("list", API_LIST),
        ("cost", API_COST),
        ("prices", API_PRICES),
        ("offers", API_OFFERS),
        ("provider-disable", API_PROVIDER_DISABLE),
        ("provider-enable", API_PROVIDER_ENABLE),
    ] {
        let suffix = subject.trim_start_matches(API_PREFIX).trim_start_matches('.');
        let endpoint = group
            .endpoint_builder()
            .name(name)
            .add(suffix)
            .await
            .map_err(|source| ApiError::Endpoint { subject, source })?;
        let (js, supervisor, views) = (js.clone(), supervisor.clone(), views.clone());
        tasks.push(tokio::spawn(endpoint.for_each_concurrent(CONCURRENCY, move |request| {
            let (js, supervisor, views) = (js.clone(), supervisor.clone(), views.clone());
            async move {
                let body = &request.message.payload;
                let reply = match name {
                    "launch" | "terminate" if !views.fence.wait_open(LEASE_WAIT).await => not_leading(),
                    "launch" => launch(&js, &supervisor, &views.keyring, body).await,
                    "terminate" => terminate(&js, &supervisor, body).await,
                    "get" => get(&supervisor, body).await,
                    "cost" => cost(&views, body),
                    "prices" => prices(&views, body),
                    "offers" => offers(&views, body).await,
                    "provider-disable" => toggle(&views, body, false).await,
                    "provider-enable" => toggle(&views, body, true).await,
                    _ => list::list(&supervisor, body, max_payload).await,
                };
                if let Err(e) = request.respond(Ok(reply)).await {
                    tracing::warn!(endpoint = name, error = %e, "reply not sent");
                }
            }
        })));
    }
    // The service's own discovery endpoints (`$SRV.PING.tgp`, ...) live as long as it does.
    tasks.push(tokio::spawn(async move {
        std::future::pending::<()>().await;
        drop(service);
    }));
    Ok(tasks)
}
