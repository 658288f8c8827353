//! RunPod fake: REST v2 (catalog and pod lifecycle) and GraphQL (`/graphql`: GPU types with spot
//! prices and `lowestPrice`, pods, `myself.pods`, on-demand and spot rent, stop, resume,
//! terminate), parsing the documents clients send in either style. Seeded catalog, pods that go
//! PROVISIONING → STARTING → RUNNING over the boot delay, and on cue: spot interruption (EXITED,
//! "Exited by Runpod"), no capacity in RunPod's words, creates that fail for capacity although the
//! catalog says in stock, pods that never become ready, GraphQL errors inside HTTP 200, idempotent
//! terminate, the spot mutation (or the spot price fields) removed from the schema, and GraphQL
//! retired (410 Gone).
//!
//! Keys: with `api_key: Some(k)` (default `test-key`) only `k` is accepted, else any non-empty key.
//! REST v2 takes it as `Authorization: Bearer`; GraphQL as Bearer or `?api_key=`.

mod graphql;
pub mod parse;
mod rest;
mod schema;
pub mod state;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use serde_json::Value;

use self::state::{COMMUNITY_DCS, FakeGpu, FakePod, Phase, SECURE_DCS};
use super::{FakeControl, FakeProvider, FakeServer, Operation, id_after};

/// How the fake behaves.
#[derive(Clone, Debug)]
pub struct RunPodFakeConfig {
    /// Seeds the catalog, ids and ports.
    pub seed: u64,
    /// Launch to RUNNING (first half PROVISIONING, second half STARTING).
    pub boot_delay: Duration,
    /// The accepted key; `None` accepts any non-empty key.
    pub api_key: Option<String>,
}

impl Default for RunPodFakeConfig {
    fn default() -> Self {
        RunPodFakeConfig { seed: 1, boot_delay: Duration::from_millis(100), api_key: Some("test-key".into()) }
    }
}

/// How much of spot the GraphQL schema still has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpotSchema {
    /// Everything.
    Live,
    /// `podRentInterruptable` and `podBidResume` are gone; spot prices answer null.
    MutationRemoved,
    /// Also `secureSpotPrice`, `communitySpotPrice` and `minimumBidPrice` are gone.
    FieldsRemoved,
}

/// RunPod's capacity message (GraphQL `errors[0].message`, REST v2 `detail`).
pub const NO_CAPACITY: &str =
    "There are no longer any instances available with the requested specifications. Please refresh and try again.";
/// The spot variant.
pub const NO_SPOT_CAPACITY: &str =
    "There are no instances available with the request specifications. Please try again later.";

pub(crate) struct World {
    config: RunPodFakeConfig,
    gpus: Vec<FakeGpu>,
    stock: BTreeMap<(String, String), usize>,
    pods: BTreeMap<String, FakePod>,
    rng: SmallRng,
    no_capacity: bool,
    capacity_failures: BTreeMap<(String, String), u32>,
    never_ready: bool,
    spot: SpotSchema,
    graphql_gone: bool,
    status_override: BTreeMap<String, String>,
    documents: Vec<(String, Value)>,
}

pub(crate) type Shared = Arc<Mutex<World>>;

pub(crate) fn lock(shared: &Shared) -> MutexGuard<'_, World> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a create asks for, from either API.
pub(crate) struct CreateRequest {
    pub name: String,
    pub image: String,
    pub env: BTreeMap<String, String>,
    pub gpu: String,
    pub count: u32,
    pub cloud: String,
    pub locations: Vec<String>,
    pub ports: Vec<String>,
    pub start_ssh: bool,
    pub disk: u32,
    pub bid_per_gpu: Option<Decimal>,
    pub via: &'static str,
}

/// Why a create failed.
pub(crate) enum CreateError {
    Capacity(&'static str),
    Invalid(String),
}

impl World {
    fn key_ok(&self, key: &str) -> bool {
        !key.is_empty() && self.config.api_key.as_deref().is_none_or(|k| k == key)
    }

    fn gpu(&self, id: &str) -> Option<&FakeGpu> {
        self.gpus.iter().find(|g| g.id == id)
    }

    fn places(cloud: &str) -> Vec<&'static str> {
        let list: &[(&str, &str)] = if cloud == "COMMUNITY" { &COMMUNITY_DCS } else { &SECURE_DCS };
        list.iter().map(|(id, _)| *id).collect()
    }

    fn level(&self, gpu: &str, place: &str) -> usize {
        self.stock.get(&(gpu.to_string(), place.to_string())).copied().unwrap_or(0)
    }

    fn phase(&self, pod: &FakePod) -> Phase {
        pod.phase(self.config.boot_delay, self.never_ready)
    }

    fn prices(gpu: &FakeGpu, cloud: &str) -> (Option<Decimal>, Option<Decimal>) {
        if cloud == "COMMUNITY" {
            (gpu.community_price, gpu.community_spot)
        } else {
            (gpu.secure_price, gpu.secure_spot)
        }
    }

    pub(crate) fn create(&mut self, req: CreateRequest) -> Result<FakePod, CreateError> {
        let gpu = self
            .gpu(&req.gpu)
            .cloned()
            .ok_or_else(|| CreateError::Invalid(format!("unknown gpu type {:?}", req.gpu)))?;
        if req.count == 0 || req.count > gpu.max_count {
            return Err(CreateError::Invalid(format!(
                "gpu count {} is not between 1 and {}",
                req.count, gpu.max_count
            )));
        }
        let (price, spot_price) = Self::prices(&gpu, &req.cloud);
        let capacity = if req.bid_per_gpu.is_some() { NO_SPOT_CAPACITY } else { NO_CAPACITY };
        if self.no_capacity {
            return Err(CreateError::Capacity(capacity));
        }
        let places = Self::places(&req.cloud);
        let wanted: Vec<&str> =
            if req.locations.is_empty() { places.clone() } else { req.locations.iter().map(String::as_str).collect() };
        let location = wanted
            .into_iter()
            .find(|p| places.contains(p) && self.level(gpu.id, p) > 0)
            .ok_or(CreateError::Capacity(capacity))?
            .to_string();
        let percent = self.capacity_failures.get(&(gpu.id.to_string(), location.clone())).copied().unwrap_or(0);
        if percent > 0 && self.rng.random_range(0..100) < percent {
            return Err(CreateError::Capacity(capacity));
        }
        let cost = match req.bid_per_gpu {
            Some(bid) => {
                let minimum = spot_price.ok_or(CreateError::Capacity(NO_SPOT_CAPACITY))?;
                if bid < minimum {
                    return Err(CreateError::Capacity(
                        "Your bid per GPU is below the minimum bid price for this GPU type.",
                    ));
                }
                bid * Decimal::from(req.count)
            }
            None => {
                price.ok_or_else(|| CreateError::Invalid(format!("{} is not sold on {} cloud", gpu.id, req.cloud)))?
                    * Decimal::from(req.count)
            }
        };
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let id: String = (0..14).map(|_| ALPHABET[self.rng.random_range(0..ALPHABET.len())] as char).collect();
        let pod = FakePod {
            id: id.clone(),
            name: req.name,
            image: req.image,
            env: req.env,
            gpu: gpu.id.to_string(),
            gpu_count: req.count,
            cloud: req.cloud,
            location,
            ports: req.ports,
            start_ssh: req.start_ssh,
            disk: req.disk,
            spot: req.bid_per_gpu.is_some(),
            bid_per_gpu: req.bid_per_gpu,
            cost,
            via: req.via,
            created: Instant::now(),
            exited: None,
            error: false,
            ssh_port: self.rng.random_range(10000..60000),
            host: self.rng.random_range(2..250),
        };
        self.pods.insert(id, pod.clone());
        Ok(pod)
    }
}

/// The RunPod fake: a [`FakeServer`] serving REST v2 and GraphQL over one seeded world.
pub struct RunPodFake {
    server: FakeServer,
    world: Shared,
}

impl RunPodFake {
    /// Starts the fake on a free loopback port.
    pub async fn start(config: RunPodFakeConfig) -> std::io::Result<Self> {
        let (gpus, stock) = state::catalog(config.seed);
        let world = Arc::new(Mutex::new(World {
            rng: SmallRng::seed_from_u64(config.seed.wrapping_add(7)),
            config,
            gpus,
            stock,
            pods: BTreeMap::new(),
            no_capacity: false,
            capacity_failures: BTreeMap::new(),
            never_ready: false,
            spot: SpotSchema::Live,
            graphql_gone: false,
            status_override: BTreeMap::new(),
            documents: Vec::new(),
        }));
        let router = Router::new()
            .route("/v2/catalog/gpus", get(rest::catalog))
            .route("/v2/catalog/gpus/{id}", get(rest::catalog_one))
            .route("/v2/pods", get(rest::list).post(rest::create))
            .route("/v2/pods/{id}", get(rest::get_pod).delete(rest::terminate))
            .route("/v2/pods/{id}/action", post(rest::action))
            .route("/graphql", post(graphql::serve))
            .with_state(world.clone());
        let server = FakeServer::start(router, FakeControl::classified(classify)).await?;
        Ok(RunPodFake { server, world })
    }

    fn world(&self) -> MutexGuard<'_, World> {
        lock(&self.world)
    }

    /// Every pod the fake holds (not terminated), with what the client sent.
    pub fn pods(&self) -> Vec<FakePod> {
        self.world().pods.values().cloned().collect()
    }

    /// GraphQL documents and variables received, in order.
    pub fn graphql_documents(&self) -> Vec<(String, Value)> {
        self.world().documents.clone()
    }

    /// Makes `percent`% of creates of `gpu` in `location` fail for capacity, whatever the stock.
    pub fn set_capacity_failure(&self, gpu: &str, location: &str, percent: u32) {
        self.world().capacity_failures.insert((gpu.into(), location.into()), percent.min(100));
    }

    /// Sets the stock level (0 NONE … 3 HIGH) of a GPU type at a place.
    pub fn set_stock(&self, gpu: &str, location: &str, level: usize) {
        self.world().stock.insert((gpu.into(), location.into()), level.min(3));
    }

    /// Pods stay STARTING with no runtime forever (a broken image).
    pub fn set_never_ready(&self, never: bool) {
        self.world().never_ready = never;
    }

    /// Removes spot from the GraphQL schema, partly or wholly.
    pub fn set_spot_schema(&self, spot: SpotSchema) {
        self.world().spot = spot;
    }

    /// GraphQL answers 410 Gone from now on (the announced retirement).
    pub fn retire_graphql(&self) {
        self.world().graphql_gone = true;
    }

    /// A pod stopped by its user (EXITED, "Exited by User").
    pub fn stop_by_user(&self, id: &str) -> bool {
        self.world().pods.get_mut(id).map(|p| p.exited = Some("User")).is_some()
    }

    /// A pod RunPod could not keep (ERROR).
    pub fn fail_pod(&self, id: &str) -> bool {
        self.world().pods.get_mut(id).map(|p| p.error = true).is_some()
    }

    /// Shows `status` as the pod's REST v2 status (a value the client may not know).
    pub fn override_status(&self, id: &str, status: &str) {
        self.world().status_override.insert(id.into(), status.into());
    }

    /// Adds `n` on-demand pods made outside tgp (console), for listing tests.
    pub fn add_foreign_pods(&self, n: usize) {
        let mut world = self.world();
        for i in 0..n {
            let req = CreateRequest {
                name: format!("console-pod-{i}"),
                image: "runpod/pytorch:2.4.0".into(),
                env: BTreeMap::new(),
                gpu: "NVIDIA RTX A6000".into(),
                count: 1,
                cloud: "SECURE".into(),
                locations: Vec::new(),
                ports: vec!["8888/http".into()],
                start_ssh: false,
                disk: 20,
                bid_per_gpu: None,
                via: "console",
            };
            let no_capacity = std::mem::replace(&mut world.no_capacity, false);
            let _ = world.create(req);
            world.no_capacity = no_capacity;
        }
    }
}

/// RunPod's endpoints as [`Operation`]s: REST v2, and the GraphQL mutations that create or
/// terminate a pod (by the mutation's name in the document).
fn classify(method: &str, path: &str, body: &[u8]) -> Option<(Operation, Vec<String>)> {
    let text = String::from_utf8_lossy(body);
    match (method, path.trim_end_matches('/')) {
        ("POST", "/v2/pods") => Some((Operation::Launch, Vec::new())),
        ("GET", "/v2/pods") => Some((Operation::List, Vec::new())),
        ("POST", "/graphql")
            if ["podRentInterruptable", "podFindAndDeployOnDemand"].iter().any(|m| text.contains(m)) =>
        {
            Some((Operation::Launch, Vec::new()))
        }
        ("POST", "/graphql") if text.contains("podTerminate") => Some((Operation::Destroy, pod_ids(&text))),
        ("POST", p) if p.ends_with("/action") && text.contains("terminate") => {
            id_after(p.trim_end_matches("/action"), "/v2/pods/").map(|id| (Operation::Destroy, vec![id.to_string()]))
        }
        ("GET", _) => id_after(path, "/v2/pods/").map(|id| (Operation::Status, vec![id.to_string()])),
        ("DELETE", _) => id_after(path, "/v2/pods/").map(|id| (Operation::Destroy, vec![id.to_string()])),
        _ => None,
    }
}

/// The pod ids a GraphQL document or its variables name: every `podId` string value.
fn pod_ids(text: &str) -> Vec<String> {
    text.split("podId")
        .skip(1)
        .filter_map(|rest| {
            let rest = rest.trim_start_matches(|c: char| c == '"' || c == '\\' || c == ':' || c.is_whitespace());
            let id: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
            (!id.is_empty()).then_some(id)
        })
        .collect()
}

impl FakeProvider for RunPodFake {
    fn url(&self) -> String {
        self.server.url()
    }

    fn control(&self) -> &FakeControl {
        &self.server.control
    }

    fn interrupt(&self, machine_id: &str) -> bool {
        let mut world = self.world();
        let boot = world.config.boot_delay;
        let never = world.never_ready;
        match world.pods.get_mut(machine_id) {
            Some(pod) if pod.phase(boot, never) == Phase::Running => {
                pod.exited = Some("Runpod");
                true
            }
            _ => false,
        }
    }

    fn set_no_capacity(&self, none: bool) {
        self.world().no_capacity = none;
    }

    fn live_machines(&self) -> Vec<String> {
        self.world().pods.keys().cloned().collect()
    }

    /// `pods` of `GET /v2/pods`.
    fn list_pointer(&self) -> &'static str {
        "/pods"
    }

    /// Gone as a terminated pod is: not listed, and `GET /v2/pods/{id}` answers 404
    /// `pod not found`.
    fn vanish(&self, machine_id: &str) -> bool {
        self.world().pods.remove(machine_id).is_some()
    }
}
