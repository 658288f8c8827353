//! The fake's instances (contracts): what a rent creates, the state machine Vast shows through
//! `actual_status` / `intended_status` / `cur_state` / `next_state`, and the instance JSON of
//! `GET /api/v0/instances/{id}/` with its quirks (trailing whitespace in `public_ipaddr`, a
//! space-separated `local_ipaddrs`, string `HostPort`s, `ports` only while running).

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::catalog::{FakeOffer, merge};

/// How new instances boot (tests script the ways real ones fail to).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BootOutcome {
    /// `null` → `loading` → `running` after the boot delay.
    #[default]
    Running,
    /// `null` → `loading`, and it stays loading.
    StuckLoading,
    /// `null` → `loading` → `exited` (the container's process died).
    Exits,
    /// `created` with an `OCI runtime create failed` message in `status_msg`.
    OciError,
}

/// The four state fields, set rather than derived from the boot clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pinned {
    /// `actual_status` (`None` is JSON null).
    pub actual: Option<String>,
    /// `intended_status`.
    pub intended: String,
    /// `cur_state`.
    pub cur: String,
    /// `next_state`.
    pub next: String,
    /// `status_msg`.
    pub status_msg: Option<String>,
}

impl Pinned {
    /// All four fields at one value (`stopped` is how an outbid instance looks).
    pub fn all(state: &str) -> Self {
        Pinned {
            actual: Some(state.into()),
            intended: state.into(),
            cur: state.into(),
            next: state.into(),
            status_msg: None,
        }
    }
}

/// One instance of the fake account.
#[derive(Clone, Debug)]
pub struct FakeInstance {
    /// Contract id (`new_contract`).
    pub id: u64,
    /// The offer it was rented from.
    pub offer: FakeOffer,
    /// The create body as received.
    pub request: Map<String, Value>,
    /// `label`.
    pub label: Option<String>,
    /// Interruptible?
    pub is_bid: bool,
    /// The bid, for interruptible.
    pub bid: Option<f64>,
    /// Disk GB.
    pub disk: f64,
    /// When it was created.
    pub created: Instant,
    /// How it boots.
    pub outcome: BootOutcome,
    /// Set state, overriding the boot clock.
    pub pinned: Option<Pinned>,
    /// Running but with no direct ports (only Vast's SSH proxy works).
    pub proxy_only: bool,
}

impl FakeInstance {
    /// The state fields now.
    pub fn state(&self, boot_delay: Duration) -> Pinned {
        if let Some(p) = &self.pinned {
            return p.clone();
        }
        let elapsed = self.created.elapsed();
        let booting = |actual: Option<&str>| Pinned { actual: actual.map(str::to_string), ..Pinned::all("running") };
        if self.outcome == BootOutcome::OciError {
            return Pinned {
                status_msg: Some(
                    "Error response from daemon: failed to create task for container: OCI runtime create failed: runc create failed: unable to start container process".into(),
                ),
                ..booting(Some("created"))
            };
        }
        if elapsed < boot_delay / 2 {
            return booting(None);
        }
        if elapsed < boot_delay {
            return booting(Some("loading"));
        }
        match self.outcome {
            BootOutcome::StuckLoading => booting(Some("loading")),
            BootOutcome::Exits => booting(Some("exited")),
            _ => Pinned {
                status_msg: Some("success, running pytorch/pytorch_latest/ssh".into()),
                ..Pinned::all("running")
            },
        }
    }

    /// Running now?
    pub fn running(&self, boot_delay: Duration) -> bool {
        self.state(boot_delay).actual.as_deref() == Some("running")
    }

    /// The instance JSON Vast returns.
    pub fn to_json(&self, boot_delay: Duration) -> Value {
        let state = self.state(boot_delay);
        let n = self.id % 200 + 20;
        let running = state.actual.as_deref() == Some("running");
        let ports = (running && !self.proxy_only).then(|| {
            json!({"22/tcp": [{"HostIp": "0.0.0.0", "HostPort": format!("{}", 40_000 + n * 2)}],
                   "8080/tcp": [{"HostIp": "0.0.0.0", "HostPort": format!("{}", 40_001 + n * 2)}]})
        });
        let storage = self.disk * self.offer.storage_cost / 720.0;
        let compute = self.bid.unwrap_or(self.offer.dph_base);
        let extra_env: Vec<Value> = self
            .request
            .get("env")
            .and_then(Value::as_object)
            .map(|env| env.iter().map(|(k, v)| json!([k, v])).collect())
            .unwrap_or_default();
        let started = 1_785_000_000.0 + self.id as f64;
        merge([
            json!({
                "id": self.id, "machine_id": self.offer.machine_id, "host_id": 100_000 + self.offer.machine_id % 977,
                "bundle_id": 600_000_000 + self.offer.id % 1_000_000, "label": self.label,
                "actual_status": state.actual, "intended_status": state.intended,
                "cur_state": state.cur, "next_state": state.next, "status_msg": state.status_msg,
            }),
            json!({
                "is_bid": self.is_bid, "min_bid": self.offer.min_bid, "dph_base": compute,
                "dph_total": ((compute + storage) * 1e6).round() / 1e6, "storage_cost": self.offer.storage_cost,
                "storage_total_cost": (storage * 1e6).round() / 1e6, "num_gpus": self.offer.num_gpus,
                "gpu_name": self.offer.gpu_name, "gpu_ram": self.offer.gpu_ram,
                "gpu_totalram": self.offer.gpu_ram * u64::from(self.offer.num_gpus), "gpu_util": 0.0,
                "cpu_cores_effective": self.offer.cpu_cores.map(|c| f64::from(c) / 2.0),
                "disk_space": self.disk, "geolocation": self.offer.geolocation,
                "verification": self.offer.verification, "reliability2": self.offer.reliability,
            }),
            json!({
                "public_ipaddr": format!("203.0.113.{n} "), "local_ipaddrs": "10.0.0.5 172.17.0.2 \n",
                "ssh_host": format!("ssh{}.vast.ai", self.id % 9 + 1), "ssh_idx": format!("{}", self.id % 9 + 1),
                "ssh_port": 20_000 + self.id % 10_000, "direct_port_start": 40_000, "direct_port_end": 40_499,
                "ports": ports, "image_uuid": self.request.get("image"),
            }),
            json!({
                "image_runtype": self.request.get("runtype"), "image_args": [], "extra_env": extra_env,
                "onstart": self.request.get("onstart"), "jupyter_token": format!("{:x}", self.id * 7919),
                "start_date": started, "end_date": started + 2_592_000.0, "duration": 86_400.0,
                "uptime_mins": self.created.elapsed().as_secs_f64() / 60.0,
                "time_remaining": "", "time_remaining_isbid": "",
            }),
        ])
    }
}
