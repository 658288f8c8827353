//! A fake Vast.ai: the REST API tgp's client uses (shared/providers/vastai.md), over HTTP, with a
//! seeded market and instances that boot, and Vast's own ways of failing on cue:
//!
//! - interruption: an outbid instance goes `stopped` in all four state fields and loses `ports`
//!   ([`FakeProvider::interrupt`], or [`VastAiFake::set_min_bid`] above a running bid);
//! - no capacity: 410 `no_such_ask` with `cancel_unavail: true`, otherwise a *stopped* instance
//!   created with `success: true` ([`FakeProvider::set_no_capacity`]);
//! - the offer gone between search and rent: 404 `no_such_ask` ([`VastAiFake::remove_offer`]);
//! - a bid below the minimum: a stopped instance **and** `success: false` with `new_contract`;
//! - no `price`: silently on demand (`is_bid: false`);
//! - instances that never run: stuck `loading`, `exited`, or `created` with an OCI error
//!   ([`VastAiFake::set_boot_outcome`]), and any status value at all ([`VastAiFake::force_status`]);
//! - SSH only through Vast's proxy (`ports: null` while running; [`VastAiFake::set_proxy_only`]);
//! - bad offer data (null `cpu_cores`, `", US"` / null geolocations, trailing whitespace);
//! - a plain-text 429 with no `Retry-After` when an endpoint is called faster than
//!   [`VastAiFakeConfig::min_interval`]; the deprecated v0 list with a `Deprecation` header.
//!
//! The accepted key is `test-key` by default ([`VastAiFakeConfig::api_key`]; `None` accepts any
//! non-empty key), as a Bearer token or `?api_key=`. Offer search also answers without a key.

mod catalog;
mod instances;
mod listing;
mod respond;
mod routes;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use catalog::FakeOffer;
pub use instances::{BootOutcome, Pinned};

use super::{FakeControl, FakeProvider, FakeServer, Operation, id_after, ids_in_body};
use instances::FakeInstance;

/// How the fake market is seeded and how it behaves.
#[derive(Clone, Debug)]
pub struct VastAiFakeConfig {
    /// Seeds offers and prices: the same seed gives the same market.
    pub seed: u64,
    /// From rent to `running` (`null` for the first half, `loading` for the second).
    pub boot_delay: Duration,
    /// Offers in the market.
    pub offers: usize,
    /// The accepted key; `None` accepts any non-empty key.
    pub api_key: Option<String>,
    /// Minimum interval between calls to one endpoint; faster calls get a plain-text 429.
    pub min_interval: Option<Duration>,
    /// Instances per page of `GET /api/v1/instances/` (Vast: 25).
    pub page_size: u32,
    /// Send `Deprecation: true` on the legacy `GET /api/v0/instances/` list.
    pub deprecate_v0_list: bool,
    /// Answer a wrong key on `/bundles/` with 404 "Invalid user key" (the OpenAPI file's claim).
    pub bundles_bad_key_404: bool,
}

impl Default for VastAiFakeConfig {
    fn default() -> Self {
        VastAiFakeConfig {
            seed: 1,
            boot_delay: Duration::from_secs(3),
            offers: 48,
            api_key: Some("test-key".into()),
            min_interval: None,
            page_size: 25,
            deprecate_v0_list: true,
            bundles_bad_key_404: false,
        }
    }
}

/// The fake's state, behind one std mutex never held across an await.
struct FakeState {
    offers: Vec<FakeOffer>,
    instances: BTreeMap<u64, FakeInstance>,
    next_id: u64,
    no_capacity: bool,
    outcome: BootOutcome,
    proxy_only: bool,
    created: Vec<Value>,
    last_call: HashMap<&'static str, Instant>,
}

/// What the routes share.
struct Shared {
    config: VastAiFakeConfig,
    state: Mutex<FakeState>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running fake Vast.ai.
pub struct VastAiFake {
    server: FakeServer,
    shared: Arc<Shared>,
}

impl VastAiFake {
    /// Starts the fake on a free loopback port.
    pub async fn start(config: VastAiFakeConfig) -> std::io::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    /// Starts the fake on a given address (the demo uses fixed ports).
    pub async fn start_on(addr: SocketAddr, config: VastAiFakeConfig) -> std::io::Result<Self> {
        let state = FakeState {
            offers: catalog::seed_offers(config.seed, config.offers),
            instances: BTreeMap::new(),
            next_id: 12_345_678,
            no_capacity: false,
            outcome: BootOutcome::Running,
            proxy_only: false,
            created: Vec::new(),
            last_call: HashMap::new(),
        };
        let shared = Arc::new(Shared { config, state: Mutex::new(state) });
        let control = FakeControl::classified(classify);
        let server = FakeServer::start_on(addr, routes::router(shared.clone()), control).await?;
        Ok(VastAiFake { server, shared })
    }

    /// Every create body received (`PUT /api/v0/asks/{id}/`), in order.
    pub fn created_bodies(&self) -> Vec<Value> {
        self.shared.lock().created.clone()
    }

    /// The market's offers as the fake holds them.
    pub fn offers(&self) -> Vec<FakeOffer> {
        self.shared.lock().offers.clone()
    }

    /// One instance's JSON as `GET /api/v0/instances/{id}/` shows it.
    pub fn instance_json(&self, id: u64) -> Option<Value> {
        let state = self.shared.lock();
        state.instances.get(&id).map(|i| i.to_json(self.shared.config.boot_delay))
    }

    /// Someone else rents the offer: it leaves the market (a rent then gets 404 `no_such_ask`).
    pub fn remove_offer(&self, offer_id: u64) -> bool {
        let mut state = self.shared.lock();
        let before = state.offers.len();
        state.offers.retain(|o| o.id != offer_id);
        state.offers.len() < before
    }

    /// Sets an offer's minimum bid; running interruptible instances on it bidding less are
    /// outbid (stopped). False when there is no such offer.
    pub fn set_min_bid(&self, offer_id: u64, min_bid: f64) -> bool {
        let mut state = self.shared.lock();
        let Some(offer) = state.offers.iter_mut().find(|o| o.id == offer_id) else {
            return false;
        };
        offer.min_bid = min_bid;
        let boot = self.shared.config.boot_delay;
        for instance in state.instances.values_mut() {
            if instance.offer.id != offer_id {
                continue;
            }
            instance.offer.min_bid = min_bid;
            if instance.bid.is_some_and(|b| b < min_bid) && instance.running(boot) {
                instance.pinned = Some(Pinned::all("stopped"));
            }
        }
        true
    }

    /// How instances rented from now on boot.
    pub fn set_boot_outcome(&self, outcome: BootOutcome) {
        self.shared.lock().outcome = outcome;
    }

    /// Whether instances rented from now on run without direct ports (SSH through the proxy only).
    pub fn set_proxy_only(&self, proxy_only: bool) {
        self.shared.lock().proxy_only = proxy_only;
    }

    /// Pins an instance's `actual_status` (any value, `None` for null) and `status_msg`; the
    /// other state fields read `running`. False when there is no such instance.
    pub fn force_status(&self, id: u64, actual: Option<&str>, status_msg: Option<&str>) -> bool {
        self.pin(
            id,
            Pinned {
                actual: actual.map(str::to_string),
                status_msg: status_msg.map(str::to_string),
                ..Pinned::all("running")
            },
        )
    }

    /// Pins all four state fields of an instance. False when there is no such instance.
    pub fn pin(&self, id: u64, pinned: Pinned) -> bool {
        match self.shared.lock().instances.get_mut(&id) {
            Some(instance) => {
                instance.pinned = Some(pinned);
                true
            }
            None => false,
        }
    }
}

/// Vast's endpoints as [`Operation`]s: the rent, both instance lists, one instance, destroy (one,
/// or the CLI's bulk form with `instance_ids` in the body).
fn classify(method: &str, path: &str, body: &[u8]) -> Option<(Operation, Vec<String>)> {
    let list = matches!(path.trim_end_matches('/'), "/api/v1/instances" | "/api/v0/instances");
    match method {
        "PUT" if id_after(path, "/api/v0/asks/").is_some() => Some((Operation::Launch, Vec::new())),
        "GET" if list => Some((Operation::List, Vec::new())),
        "GET" => id_after(path, "/api/v0/instances/").map(|id| (Operation::Status, vec![id.to_string()])),
        "DELETE" if list => Some((Operation::Destroy, ids_in_body(body, "instance_ids"))),
        "DELETE" => id_after(path, "/api/v0/instances/").map(|id| (Operation::Destroy, vec![id.to_string()])),
        _ => None,
    }
}

impl FakeProvider for VastAiFake {
    fn url(&self) -> String {
        self.server.url()
    }

    fn control(&self) -> &FakeControl {
        &self.server.control
    }

    /// Outbid, the Vast way: all four state fields `stopped`, `ports` gone, the disk kept.
    fn interrupt(&self, machine_id: &str) -> bool {
        let Ok(id) = machine_id.trim().parse::<u64>() else {
            return false;
        };
        let boot = self.shared.config.boot_delay;
        let mut state = self.shared.lock();
        match state.instances.get_mut(&id) {
            Some(instance) if instance.running(boot) => {
                instance.pinned = Some(Pinned::all("stopped"));
                true
            }
            _ => false,
        }
    }

    fn set_no_capacity(&self, none: bool) {
        self.shared.lock().no_capacity = none;
    }

    /// Instances that exist, stopped ones included (they still bill storage).
    fn live_machines(&self) -> Vec<String> {
        self.shared.lock().instances.keys().map(u64::to_string).collect()
    }

    /// `instances` of a `GET /api/v1/instances/` page.
    fn list_pointer(&self) -> &'static str {
        "/instances"
    }

    /// The instance is gone (its offer rentable again): listings leave it out, and
    /// `GET /api/v0/instances/{id}/` answers Vast's not-found, `200 {"instances": null}`.
    fn vanish(&self, machine_id: &str) -> bool {
        let Ok(id) = machine_id.trim().parse::<u64>() else {
            return false;
        };
        let mut state = self.shared.lock();
        let Some(instance) = state.instances.remove(&id) else {
            return false;
        };
        if let Some(offer) = state.offers.iter_mut().find(|o| o.id == instance.offer.id) {
            offer.rented = false;
        }
        true
    }
}
