//! A fake of Paperspace's v1 machines API (`/v1/...`) as tgp's client uses it: Bearer key check
//! (401 `{"code":"UNAUTHORIZED",...}`; the accepted key is `config.api_key`, `test-key` by
//! default), machine availability seeded per type and region, create/get/list (cursor pages,
//! newest first)/delete, start/stop, machine events, OS templates and startup scripts.
//!
//! Machines go `provisioning` → `starting` → `serviceready` → `ready` over `boot_delay`; the
//! public IP appears only at `ready`. Quirks of the note: capacity failures are silent (the create
//! succeeds, the machine ends `off` with its create event in `error`); availability is not
//! success ([`PaperspaceFake::set_silent_capacity_failure`]); start is refused unless `off`;
//! optional undocumented rate limit (429 without `Retry-After`); an interruption is the machine
//! turned off outside tgp (`stopping`, then `off`).

mod respond;
mod routes;
pub mod state;
mod templates;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use self::state::{Delays, FakeScript, Phase, World};
use super::{FakeControl, FakeProvider, FakeServer, Operation, id_after};

/// How the fake behaves.
#[derive(Clone, Debug)]
pub struct PaperspaceFakeConfig {
    /// Seeds ids, addresses and capacity: the same seed gives the same world.
    pub seed: u64,
    /// Create or start to `ready`.
    pub boot_delay: Duration,
    /// `stopping` to `off`.
    pub stop_delay: Duration,
    /// The one key accepted as `Authorization: Bearer <key>`.
    pub api_key: String,
    /// Most items per list page, whatever `limit` asks (the real default is unconfirmed).
    pub page_size: usize,
    /// Requests per minute before 429 (Paperspace documents none), or no limit.
    pub rate_limit_per_minute: Option<usize>,
}

impl Default for PaperspaceFakeConfig {
    fn default() -> Self {
        PaperspaceFakeConfig {
            seed: 1,
            boot_delay: Duration::from_millis(100),
            stop_delay: Duration::from_millis(50),
            api_key: "test-key".into(),
            page_size: 20,
            rate_limit_per_minute: None,
        }
    }
}

/// State shared by the routes and the handle.
pub(crate) struct Shared {
    pub(crate) config: PaperspaceFakeConfig,
    world: Mutex<World>,
}

impl Shared {
    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        // A panicking test thread must not take the fake down with it.
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn delays(&self) -> Delays {
        Delays { boot: self.config.boot_delay, stop: self.config.stop_delay }
    }
}

/// A running Paperspace fake.
pub struct PaperspaceFake {
    server: FakeServer,
    shared: Arc<Shared>,
}

impl PaperspaceFake {
    /// Starts the fake on a free loopback port.
    pub async fn start(config: PaperspaceFakeConfig) -> std::io::Result<Self> {
        let shared = Arc::new(Shared { world: Mutex::new(World::new(config.seed)), config });
        let control = FakeControl::classified(classify);
        let server = FakeServer::start(routes::router(shared.clone()), control).await?;
        Ok(PaperspaceFake { server, shared })
    }

    /// Whether a machine type has capacity in a region (API region string) now.
    pub fn is_available(&self, machine_type: &str, region: &str) -> bool {
        self.shared.world().is_available(machine_type, region)
    }

    /// Sets capacity for a machine type in a region.
    pub fn set_available(&self, machine_type: &str, region: &str, available: bool) {
        self.shared.world().available.insert((machine_type.into(), region.into()), available);
    }

    /// Creates succeed but the machines end `off` with the create event in `error`, while
    /// availability still answers yes (the note's "availability is not success").
    pub fn set_silent_capacity_failure(&self, fail: bool) {
        self.shared.world().silent_capacity_failure = fail;
    }

    /// Makes a machine report this `state` from now on (any string, to exercise every value).
    pub fn force_state(&self, machine_id: &str, state: &str) -> bool {
        let mut world = self.shared.world();
        match world.machines.get_mut(machine_id) {
            Some(m) => {
                m.phase = Phase::Raw(state.into());
                true
            }
            None => false,
        }
    }

    /// The create body the fake received for a machine.
    pub fn create_request(&self, machine_id: &str) -> Option<Value> {
        self.shared.world().machines.get(machine_id).map(|m| m.request.clone())
    }

    /// Ids of the live machines carrying this name.
    pub fn machines_named(&self, name: &str) -> Vec<String> {
        let world = self.shared.world();
        world.machines.values().filter(|m| m.name == name && m.deleted.is_none()).map(|m| m.id.clone()).collect()
    }

    /// The startup scripts that exist.
    pub fn startup_scripts(&self) -> Vec<FakeScript> {
        self.shared.world().scripts.values().cloned().collect()
    }

    /// The machine's `state` now, when it exists (deleted machines included).
    pub fn machine_state(&self, machine_id: &str) -> Option<String> {
        let world = self.shared.world();
        let m = world.machines.get(machine_id)?;
        Some(state::state_of(m, Instant::now(), self.shared.delays()))
    }

    /// Adds `count` machines directly (not through the API), named `<prefix>-<n>`, booted.
    pub fn seed_machines(&self, prefix: &str, count: usize) -> Vec<String> {
        (0..count)
            .map(|n| {
                routes::insert_machine(
                    &self.shared,
                    &format!("{prefix}-{n}"),
                    "A4000",
                    state::NY2,
                    "tkni3aa4",
                    None,
                    Value::Null,
                )
            })
            .collect()
    }
}

/// Paperspace's machine endpoints as [`Operation`]s (under `/v1`).
fn classify(method: &str, path: &str, _body: &[u8]) -> Option<(Operation, Vec<String>)> {
    match (method, path.trim_end_matches('/')) {
        ("POST", "/v1/machines") => Some((Operation::Launch, Vec::new())),
        ("GET", "/v1/machines") => Some((Operation::List, Vec::new())),
        ("GET", _) => id_after(path, "/v1/machines/").map(|id| (Operation::Status, vec![id.to_string()])),
        ("DELETE", _) => id_after(path, "/v1/machines/").map(|id| (Operation::Destroy, vec![id.to_string()])),
        _ => None,
    }
}

impl FakeProvider for PaperspaceFake {
    fn url(&self) -> String {
        self.server.url()
    }

    fn control(&self) -> &FakeControl {
        &self.server.control
    }

    /// Turns a `ready` machine off as a console user would: `stopping`, then `off`, with a
    /// `stop` event.
    fn interrupt(&self, machine_id: &str) -> bool {
        let now = Instant::now();
        let delays = self.shared.delays();
        let mut world = self.shared.world();
        let Some(m) = world.machines.get_mut(machine_id) else {
            return false;
        };
        if m.deleted.is_some() || state::state_of(m, now, delays) != "ready" {
            return false;
        }
        m.phase = Phase::Stopping { since: now };
        let id = machine_id.to_string();
        routes::push_event(&mut world, &id, "stop", now + delays.stop, None);
        true
    }

    /// No capacity: availability answers no, and creates end `off` with the capacity error in
    /// their event (Paperspace reports capacity failures asynchronously).
    fn set_no_capacity(&self, none: bool) {
        self.shared.world().no_capacity = none;
    }

    fn live_machines(&self) -> Vec<String> {
        let world = self.shared.world();
        world.machines.values().filter(|m| m.deleted.is_none()).map(|m| m.id.clone()).collect()
    }

    /// `items` of a `GET /v1/machines` page.
    fn list_pointer(&self) -> &'static str {
        "/items"
    }

    /// Deleted outside tgp: not listed, and `GET /v1/machines/{id}` answers 404 `NOT_FOUND`.
    fn vanish(&self, machine_id: &str) -> bool {
        let mut world = self.shared.world();
        match world.machines.get_mut(machine_id).filter(|m| m.deleted.is_none()) {
            Some(m) => {
                m.deleted = Some(chrono::Utc::now());
                true
            }
            None => false,
        }
    }
}
