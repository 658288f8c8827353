//! The Paperspace fake's world: its catalog (machine types, regions, OS templates), machines with
//! their state machine, machine events and startup scripts. Pure data; the routes are in `mod.rs`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// The capacity failure text Paperspace puts in a failed create/start event (legacy docs, §9).
pub const CAPACITY_ERROR: &str = "Uh oh. This machine type can't start due to insufficient capacity or higher than normal demand. Please try again later.";

/// Machine types the fake sells: label, regions, `usageRate` (the note's fixture prices, USD/h).
pub const CATALOG: [(&str, &[&str], &str); 23] = [
    ("H100", &[NY2], "5.95"),
    ("H100x8", &[NY2], "47.60"),
    ("A100-80G", &[NY2], "3.18"),
    ("A100-80Gx2", &[NY2], "6.36"),
    ("A100-80Gx4", &[NY2], "12.72"),
    ("A100-80Gx8", &[NY2], "25.44"),
    ("A100", &[NY2], "3.09"),
    ("A100x4", &[NY2], "12.36"),
    ("V100-32G", &[NY2], "2.30"),
    ("V100-32Gx2", &[NY2], "4.60"),
    ("V100-32Gx4", &[NY2], "9.20"),
    ("V100", &[NY2, AMS1], "2.29"),
    ("A6000", &[NY2, CA1], "1.89"),
    ("A5000", &[NY2, CA1], "1.38"),
    ("A4000", &[NY2, AMS1, CA1], "0.76"),
    ("A4000x2", &[NY2], "1.52"),
    ("A4000x4", &[NY2], "3.04"),
    ("P4000", &[NY2, AMS1, CA1], "0.51"),
    ("P4000x2", &[NY2], "1.02"),
    ("P5000", &[NY2, AMS1, CA1], "0.78"),
    ("RTX4000", &[NY2, AMS1, CA1], "0.56"),
    ("GPU+", &[NY2, AMS1], "0.45"),
    ("C5", &[NY2, AMS1, CA1], "0.08"),
];

/// Region strings as the API spells them.
pub const NY2: &str = "East Coast (NY2)";
/// West coast.
pub const CA1: &str = "West Coast (CA1)";
/// Europe.
pub const AMS1: &str = "Europe (AMS1)";

/// OS templates: id, name, OS label, machine types (`None`: every type but the H100 ones).
pub const TEMPLATES: [(&str, &str, &str, Option<&str>); 4] = [
    ("tkni3aa4", "Ubuntu 22.04 Server", "Ubuntu 22.04", None),
    ("t0nspur5", "Ubuntu 20.04 Server", "Ubuntu 20.04", None),
    ("tiq8mhti", "ML-in-a-Box H100", "Ubuntu 22.04", Some("H100")),
    ("tvimtol9", "ML-in-a-Box H100x8", "Ubuntu 22.04", Some("H100x8")),
];

/// Whether a template boots a machine type.
pub fn template_boots(template: &str, machine_type: &str) -> Option<bool> {
    let (_, _, _, only) = TEMPLATES.iter().find(|t| t.0 == template)?;
    Some(match only {
        Some(t) => *t == machine_type,
        None => !machine_type.starts_with("H100"),
    })
}

/// Where a machine is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Created or started at `since`; `fails`: ends `off` with the event in `error` (capacity).
    Booting {
        /// When.
        since: Instant,
        /// Ends off.
        fails: bool,
    },
    /// Stop asked at `since` (by a user, or on cue).
    Stopping {
        /// When.
        since: Instant,
    },
    /// A state set by a test, reported as is (any string, known or not).
    Raw(String),
}

/// One machine.
#[derive(Clone, Debug)]
pub struct FakeMachine {
    /// `ps` + 7.
    pub id: String,
    /// As the client sent it.
    pub name: String,
    /// Label.
    pub machine_type: String,
    /// API region string.
    pub region: String,
    /// Template booted.
    pub template_id: String,
    /// Startup script attached.
    pub startup_script_id: Option<String>,
    /// Disk GB.
    pub disk_size: u64,
    /// Attached when the machine is `ready`.
    pub public_ip: String,
    /// Private address.
    pub private_ip: String,
    /// Its life.
    pub phase: Phase,
    /// Creation time (wire and list order).
    pub created: DateTime<Utc>,
    /// Order of creation.
    pub seq: u64,
    /// Deleted (not listed, 404 on get).
    pub deleted: Option<DateTime<Utc>>,
    /// The create request body as received.
    pub request: Value,
}

/// One machine event (async operation handle).
#[derive(Clone, Debug)]
pub struct FakeEvent {
    /// UUID-like id.
    pub id: String,
    /// Which machine.
    pub machine_id: String,
    /// `create`, `start`, `stop`, `deactivate`.
    pub name: String,
    /// When it ends (`done`, or `error` when `error` is set).
    pub resolves_at: Instant,
    /// Error text when it ends in error.
    pub error: Option<String>,
    /// Creation time.
    pub created: DateTime<Utc>,
}

/// A startup script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeScript {
    /// `s` + 7.
    pub id: String,
    /// Name.
    pub name: String,
    /// Text.
    pub script: String,
    /// Run once.
    pub is_run_once: bool,
}

/// Everything behind the fake's mutex.
pub struct World {
    /// By id.
    pub machines: BTreeMap<String, FakeMachine>,
    /// In creation order.
    pub events: Vec<FakeEvent>,
    /// By id.
    pub scripts: BTreeMap<String, FakeScript>,
    /// Seeded capacity per (machine type, region).
    pub available: BTreeMap<(String, String), bool>,
    /// Every launch fails for capacity (availability says no; creates end `off`).
    pub no_capacity: bool,
    /// Creates end `off` for capacity while availability still says yes (quirk: availability is
    /// not success).
    pub silent_capacity_failure: bool,
    /// Request times per key for the rate limit.
    pub recent: Vec<Instant>,
    rng: SmallRng,
    seq: u64,
}

impl World {
    /// A world from a seed: ~85% of (type, region) pairs have capacity.
    pub fn new(seed: u64) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut available = BTreeMap::new();
        for (label, regions, _) in CATALOG {
            for region in regions {
                available.insert((label.to_string(), region.to_string()), rng.random_range(0..100) < 85);
            }
        }
        World {
            machines: BTreeMap::new(),
            events: Vec::new(),
            scripts: BTreeMap::new(),
            available,
            no_capacity: false,
            silent_capacity_failure: false,
            recent: Vec::new(),
            rng,
            seq: 0,
        }
    }

    /// A fresh id: prefix plus `n` lowercase alphanumerics.
    pub fn token(&mut self, prefix: &str, n: usize) -> String {
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut out = prefix.to_string();
        for _ in 0..n {
            let i = self.rng.random_range(0..CHARS.len());
            out.push(char::from(CHARS.get(i).copied().unwrap_or(b'a')));
        }
        out
    }

    /// The next creation sequence number.
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// A seeded address octet.
    pub fn octet(&mut self) -> u8 {
        self.rng.random_range(2..254)
    }

    /// Whether a type has capacity in a region now.
    pub fn is_available(&self, machine_type: &str, region: &str) -> bool {
        !self.no_capacity
            && self.available.get(&(machine_type.to_string(), region.to_string())).copied().unwrap_or(false)
    }
}

/// Timing the state machine follows.
#[derive(Clone, Copy, Debug)]
pub struct Delays {
    /// Create/start to `ready` (thirds: provisioning, starting, serviceready).
    pub boot: Duration,
    /// `stopping` to `off`.
    pub stop: Duration,
}

/// The machine's `state` now.
pub fn state_of(m: &FakeMachine, now: Instant, delays: Delays) -> String {
    match &m.phase {
        Phase::Raw(s) => s.clone(),
        Phase::Stopping { since } if now.duration_since(*since) < delays.stop => "stopping".into(),
        Phase::Stopping { .. } => "off".into(),
        Phase::Booting { since, fails } => {
            let elapsed = now.duration_since(*since);
            if elapsed >= delays.boot {
                if *fails { "off" } else { "ready" }.into()
            } else if *fails || elapsed < delays.boot / 3 {
                "provisioning".into()
            } else if elapsed < delays.boot * 2 / 3 {
                "starting".into()
            } else {
                "serviceready".into()
            }
        }
    }
}

/// The machine as the v1 API shows it.
pub fn machine_json(m: &FakeMachine, state: &str, usage_rate: Value) -> Value {
    let cpus = 8;
    let ip = (state == "ready").then(|| m.public_ip.clone());
    json!({
        "id": m.id, "name": m.name, "state": state, "machineType": m.machine_type,
        "region": m.region, "agentType": "LinuxHeadless", "os": "Ubuntu 22.04",
        "cpus": cpus, "ram": 34359738368u64,
        "accelerators": [{"name": m.machine_type, "count": 1, "memory": null}],
        "storageTotal": m.disk_size * 1_073_741_824, "storageUsed": 0, "storageRate": 7,
        "usageRate": usage_rate, "publicIp": ip, "publicIpType": "dynamic",
        "privateIp": m.private_ip, "networkId": null, "autoShutdownEnabled": false,
        "autoShutdownForce": null, "autoShutdownTimeout": null, "autoSnapshotEnabled": false,
        "autoSnapshotFrequency": null, "autoSnapshotSaveCount": null,
        "restorePointEnabled": false, "restorePointFrequency": null,
        "restorePointSnapshotId": null, "updatesPending": false, "reservation": null,
        "dtCreated": m.created.to_rfc3339(), "dtModified": m.created.to_rfc3339(),
        "dtDeleted": m.deleted.map(|d| d.to_rfc3339()),
    })
}

/// The event as the v1 API shows it.
pub fn event_json(e: &FakeEvent, now: Instant) -> Value {
    let done = now >= e.resolves_at;
    let state = match (done, &e.error) {
        (false, _) => "in progress",
        (true, None) => "done",
        (true, Some(_)) => "error",
    };
    json!({
        "id": e.id, "machineId": e.machine_id, "name": e.name, "state": state,
        "error": if done { e.error.clone() } else { None },
        "dtCreated": e.created.to_rfc3339(), "dtStarted": e.created.to_rfc3339(),
        "dtFinished": if done { Some(Utc::now().to_rfc3339()) } else { None },
    })
}

/// The catalog's `usageRate` for a type, as the JSON number the API sends.
pub fn usage_rate(machine_type: &str) -> Value {
    CATALOG.iter().find(|c| c.0 == machine_type).and_then(|c| serde_json::from_str(c.2).ok()).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(phase: Phase) -> FakeMachine {
        FakeMachine {
            id: "psabcdefg".into(),
            name: "tgp-i-1-1".into(),
            machine_type: "A4000".into(),
            region: NY2.into(),
            template_id: "tkni3aa4".into(),
            startup_script_id: None,
            disk_size: 100,
            public_ip: "198.51.100.7".into(),
            private_ip: "10.64.0.7".into(),
            phase,
            created: Utc::now(),
            seq: 1,
            deleted: None,
            request: Value::Null,
        }
    }

    #[test]
    fn machines_boot_through_every_state_and_capacity_failures_end_off() {
        let delays = Delays { boot: Duration::from_secs(9), stop: Duration::from_secs(3) };
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let ok = machine(Phase::Booting { since: t0, fails: false });
        let seen: Vec<_> = [0, 4, 7, 9].map(|s| state_of(&ok, at(s), delays)).into();
        assert_eq!(seen, ["provisioning", "starting", "serviceready", "ready"]);
        assert_eq!(machine_json(&ok, "ready", Value::Null)["publicIp"], "198.51.100.7");
        assert_eq!(machine_json(&ok, "starting", Value::Null)["publicIp"], Value::Null);
        let failing = machine(Phase::Booting { since: t0, fails: true });
        assert_eq!(state_of(&failing, at(5), delays), "provisioning");
        assert_eq!(state_of(&failing, at(9), delays), "off");
        let stopping = machine(Phase::Stopping { since: t0 });
        assert_eq!(state_of(&stopping, at(1), delays), "stopping");
        assert_eq!(state_of(&stopping, at(3), delays), "off");
        assert_eq!(template_boots("tiq8mhti", "H100"), Some(true));
        assert_eq!(template_boots("tkni3aa4", "H100"), Some(false));
        assert_eq!(template_boots("tnope", "A4000"), None);
    }
}
