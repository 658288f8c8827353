//! A fake Lambda Cloud: the v1 API as `LambdaClient` uses it (`/api/v1/instance-types`,
//! `/instances`, `/instances/{id}`, `/instance-operations/launch` and `/terminate`, `/ssh-keys`),
//! with a seeded catalogue, instances that boot after a delay, and Lambda's own ways to fail:
//! `preempted` on [`FakeProvider::interrupt`], 400 `insufficient-capacity`, 401
//! `global/invalid-api-key`, `global/unknown` on a second terminate, 429 (JSON or HTML) past the
//! launch and request limits, extra undocumented fields, `Deprecation` on the old host.
//!
//! Auth: `Authorization: Bearer <key>` (or Basic with the key as user name) where the key is
//! [`LambdaFakeConfig::api_key`], `test-key` by default; with `api_key: None` any non-empty
//! Bearer key is accepted.

mod catalog;
mod routes;
mod state;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{FakeControl, FakeProvider, FakeServer, Operation, id_after, ids_in_body};
use routes::Account;
use state::State;

/// The SSH key name the fake market's settings name, registered at the Lambda fake so launches
/// without a key of their own work.
pub const DEMO_SSH_KEY_NAME: &str = "tgp-demo";

/// How the fake behaves.
#[derive(Clone, Debug)]
pub struct LambdaFakeConfig {
    /// Seeds prices (±5% of list) and which regions have capacity.
    pub seed: u64,
    /// `booting` → `active` after this long.
    pub boot_delay: Duration,
    /// `terminating` → `terminated` after this long.
    pub terminating_delay: Duration,
    /// A `terminated` instance still answers for this long, then is gone (404).
    pub terminated_linger: Duration,
    /// The accepted key; `None` accepts any non-empty Bearer key.
    pub api_key: Option<String>,
    /// Add undocumented fields (`workspace_id`, `architecture`, ...) as Lambda has done.
    pub extra_fields: bool,
    /// Launches closer together than this get 429 (Lambda: one per 12 s); `None`: no limit.
    pub launch_interval: Option<Duration>,
    /// A launch after this many in the last minute gets 429 (Lambda: five); `None`: no limit.
    pub launches_per_minute: Option<u32>,
    /// Any two requests closer together than this get 429 (Lambda: about 1 per s); `None`: none.
    pub request_interval: Option<Duration>,
    /// Send 429 as a proxy's HTML page instead of Lambda's JSON envelope.
    pub rate_limit_html: bool,
}

impl Default for LambdaFakeConfig {
    fn default() -> Self {
        LambdaFakeConfig {
            seed: 1,
            boot_delay: Duration::from_millis(100),
            terminating_delay: Duration::from_millis(100),
            terminated_linger: Duration::from_secs(2),
            api_key: Some("test-key".into()),
            extra_fields: false,
            launch_interval: None,
            launches_per_minute: None,
            request_interval: None,
            rate_limit_html: false,
        }
    }
}

/// A running fake Lambda.
pub struct LambdaFake {
    server: FakeServer,
    account: Account,
}

impl LambdaFake {
    /// Starts the fake on a free loopback port.
    pub async fn start(config: LambdaFakeConfig) -> std::io::Result<Self> {
        let account: Account = Arc::new(Mutex::new(State::new(config)));
        let server = FakeServer::start(routes::router(account.clone()), FakeControl::classified(classify)).await?;
        Ok(LambdaFake { server, account })
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut s = self.account.lock().unwrap_or_else(|p| p.into_inner());
        s.refresh(Instant::now());
        f(&mut s)
    }

    /// Gives or takes capacity for a type in a region (the listing follows).
    pub fn set_capacity(&self, instance_type: &str, region: &str, available: bool) {
        self.with(|s| {
            let pair = (instance_type.to_string(), region.to_string());
            if available {
                s.capacity.insert(pair);
            } else {
                s.capacity.remove(&pair);
            }
        })
    }

    /// Takes all capacity away from every region (the listing unchanged: Lambda's race between
    /// `/instance-types` and launch).
    pub fn clear_capacity(&self) {
        self.with(|s| s.capacity.clear())
    }

    /// The price of an instance type, in cents per hour.
    pub fn price_cents(&self, instance_type: &str) -> Option<i64> {
        self.with(|s| s.types.get(instance_type).map(|t| t.price_cents))
    }

    /// Sets an instance's raw status (any text, also values Lambda has not documented); the
    /// state machine goes on from there (`booting` boots again for the boot delay).
    pub fn set_status(&self, id: &str, status: &str) -> bool {
        self.with(|s| {
            let boot = s.config.boot_delay;
            match s.instances.get_mut(id) {
                Some(i) => {
                    let now = Instant::now();
                    state::set(i, status, now);
                    i.ready_at = now + boot;
                    true
                }
                None => false,
            }
        })
    }

    /// The launch bodies received, in order, as sent.
    pub fn launch_requests(&self) -> Vec<Value> {
        self.with(|s| s.launches.clone())
    }

    /// The SSH keys registered: (name, public key).
    pub fn ssh_keys(&self) -> Vec<(String, String)> {
        self.with(|s| s.keys.iter().map(|k| (k.name.clone(), k.public_key.clone())).collect())
    }

    /// Registers an SSH key, as a user would in Lambda's console.
    pub fn add_ssh_key(&self, name: &str, public_key: &str) {
        self.with(|s| {
            let id = s.new_id();
            s.keys.push(state::FakeKey { id, name: name.into(), public_key: public_key.into() });
        })
    }

    /// Registers the key the fake market's settings name ([`DEMO_SSH_KEY_NAME`]), so
    /// launches that bring no key of their own work.
    pub fn add_demo_ssh_key(&self) {
        self.add_ssh_key(
            DEMO_SSH_KEY_NAME,
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRncC1kZW1vLWtleS1mb3ItdGhlLWZha2U tgp-demo",
        );
    }

    /// The instance as Lambda would show it, if it exists.
    pub fn instance(&self, id: &str) -> Option<Value> {
        self.with(|s| s.instances.get(id).map(|i| s.instance_json(i)))
    }

    /// The user data an instance was launched with.
    pub fn user_data(&self, id: &str) -> Option<String> {
        self.with(|s| s.instances.get(id).and_then(|i| i.user_data.clone()))
    }
}

/// Lambda's endpoints as [`Operation`]s; a terminate names its machines in the body.
fn classify(method: &str, path: &str, body: &[u8]) -> Option<(Operation, Vec<String>)> {
    match (method, path.trim_end_matches('/')) {
        ("POST", "/api/v1/instance-operations/launch") => Some((Operation::Launch, Vec::new())),
        ("POST", "/api/v1/instance-operations/terminate") => {
            Some((Operation::Destroy, ids_in_body(body, "instance_ids")))
        }
        ("GET", "/api/v1/instances") => Some((Operation::List, Vec::new())),
        ("GET", _) => id_after(path, "/api/v1/instances/").map(|id| (Operation::Status, vec![id.to_string()])),
        _ => None,
    }
}

impl FakeProvider for LambdaFake {
    fn url(&self) -> String {
        self.server.url()
    }

    fn control(&self) -> &FakeControl {
        &self.server.control
    }

    /// Lambda's way: the status becomes `preempted` (v1.10.0), for an `active` instance.
    fn interrupt(&self, machine_id: &str) -> bool {
        self.with(|s| match s.instances.get_mut(machine_id) {
            Some(i) if i.status == "active" => {
                state::set(i, "preempted", Instant::now());
                true
            }
            _ => false,
        })
    }

    /// Launches fail with `instance-operations/launch/insufficient-capacity` while the listing
    /// still shows capacity (the race SkyPilot guards against).
    fn set_no_capacity(&self, none: bool) {
        self.with(|s| s.no_capacity = none)
    }

    fn live_machines(&self) -> Vec<String> {
        self.with(|s| {
            s.instances
                .values()
                .filter(|i| !matches!(i.status.as_str(), "terminating" | "terminated"))
                .map(|i| i.id.clone())
                .collect()
        })
    }

    /// `data` of `GET /api/v1/instances`.
    fn list_pointer(&self) -> &'static str {
        "/data"
    }

    /// Gone at once, without the `terminated` linger: listings leave it out and
    /// `GET /instances/{id}` answers 404 `global/object-does-not-exist`.
    fn vanish(&self, machine_id: &str) -> bool {
        self.with(|s| s.instances.remove(machine_id).is_some())
    }
}
