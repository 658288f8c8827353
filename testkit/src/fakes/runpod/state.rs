//! The RunPod fake's world: a seeded catalog (GPU types, prices per GPU, stock per data center
//! and cloud), pods with a state machine driven by time, and how both look on REST v2 and GraphQL.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Value, json};

/// One GPU type the fake sells.
#[derive(Clone, Debug)]
pub struct FakeGpu {
    /// `gpuTypeId`.
    pub id: &'static str,
    /// Display name.
    pub name: &'static str,
    /// VRAM GB.
    pub memory: u32,
    /// Secure / community on-demand price per GPU-hour.
    pub secure_price: Option<Decimal>,
    /// Community on-demand price per GPU-hour.
    pub community_price: Option<Decimal>,
    /// Spot prices per GPU-hour (null when none).
    pub secure_spot: Option<Decimal>,
    /// Community spot price.
    pub community_spot: Option<Decimal>,
    /// Most GPUs in one pod.
    pub max_count: u32,
}

/// Data centers of each cloud. `AF-ZA-1` has no standard region on purpose.
pub const SECURE_DCS: [(&str, &str); 5] = [
    ("US-TX-3", "US Texas 3"),
    ("US-KS-2", "US Kansas 2"),
    ("EU-RO-1", "EU Romania 1"),
    ("CA-MTL-1", "CA Montreal 1"),
    ("AF-ZA-1", "Africa South 1"),
];
/// Community-cloud places.
pub const COMMUNITY_DCS: [(&str, &str); 2] = [("US-CA-2", "US California 2"), ("EU-CZ-1", "EU Czechia 1")];

const BASE: [(&str, &str, u32, i64, u32); 6] = [
    ("NVIDIA H100 80GB HBM3", "H100 SXM", 80, 269, 8),
    ("NVIDIA A100 80GB PCIe", "A100 PCIe", 80, 164, 8),
    ("NVIDIA RTX A6000", "RTX A6000", 48, 49, 8),
    ("NVIDIA GeForce RTX 4090", "RTX 4090", 24, 44, 8),
    ("NVIDIA L40S", "L40S", 48, 86, 8),
    // No standard name: kept and shown, never selected.
    ("NVIDIA RTX 6000 Ada Generation", "RTX 6000 Ada", 48, 77, 4),
];

/// Levels the catalog uses.
pub const LEVELS: [&str; 4] = ["NONE", "LOW", "MEDIUM", "HIGH"];

/// The seeded catalog: prices within ±15% of the base, spot at 40–60% of on demand, stock per
/// (GPU, place) from the seed. Community cloud is cheaper; the 6000 Ada is secure only.
pub fn catalog(seed: u64) -> (Vec<FakeGpu>, BTreeMap<(String, String), usize>) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let cents = |c: i64| Decimal::new(c, 2);
    let mut gpus = Vec::new();
    let mut stock = BTreeMap::new();
    for (id, name, memory, base, max_count) in BASE {
        let secure = base * rng.random_range(85..=115) / 100;
        let community = secure * rng.random_range(65..=85) / 100;
        let spot = secure * rng.random_range(40..=60) / 100;
        let ada = id.contains("Ada");
        gpus.push(FakeGpu {
            id,
            name,
            memory,
            secure_price: Some(cents(secure)),
            community_price: (!ada).then(|| cents(community)),
            secure_spot: Some(cents(spot)),
            community_spot: (!ada).then(|| cents(spot * 80 / 100)),
            max_count,
        });
        for (dc, _) in SECURE_DCS.iter().chain(COMMUNITY_DCS.iter()) {
            // Mostly in stock, so tests find offers; some NONE and LOW.
            let level = [1, 2, 3, 3, 3, 0][rng.random_range(0..6usize)];
            stock.insert((id.to_string(), dc.to_string()), level);
        }
    }
    (gpus, stock)
}

/// One pod the fake holds, with everything the client sent.
#[derive(Clone, Debug, PartialEq)]
pub struct FakePod {
    /// Pod id (14 lowercase alphanumerics, as RunPod's).
    pub id: String,
    /// Name as sent.
    pub name: String,
    /// Image as sent.
    pub image: String,
    /// Environment as sent.
    pub env: BTreeMap<String, String>,
    /// `gpuTypeId`.
    pub gpu: String,
    /// GPUs.
    pub gpu_count: u32,
    /// `SECURE` or `COMMUNITY`.
    pub cloud: String,
    /// Data center or country.
    pub location: String,
    /// Exposed ports as sent.
    pub ports: Vec<String>,
    /// `startSsh` as sent.
    pub start_ssh: bool,
    /// Container disk GB as sent.
    pub disk: u32,
    /// Spot (rented through `podRentInterruptable`)?
    pub spot: bool,
    /// The bid per GPU, for spot.
    pub bid_per_gpu: Option<Decimal>,
    /// What it bills per hour: price (or bid) × GPUs.
    pub cost: Decimal,
    /// How it was created: `rest-v2` or `graphql`.
    pub via: &'static str,
    /// When.
    pub created: Instant,
    /// Stopped (EXITED): by RunPod (interruption) or by the user.
    pub exited: Option<&'static str>,
    /// Unrecoverable (ERROR).
    pub error: bool,
    /// SSH port number on the host.
    pub ssh_port: u16,
    /// Host number in 203.0.113.0/24 (TEST-NET-3).
    pub host: u8,
}

/// Where a pod is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Being placed.
    Provisioning,
    /// Image pull / container start.
    Starting,
    /// Up with ports.
    Running,
    /// Stopped.
    Exited,
    /// Failed.
    Error,
}

impl FakePod {
    /// The phase now, from the boot delay (first half provisioning, second half starting).
    pub fn phase(&self, boot: Duration, never_ready: bool) -> Phase {
        let age = self.created.elapsed();
        if self.error {
            Phase::Error
        } else if self.exited.is_some() {
            Phase::Exited
        } else if age < boot / 2 {
            Phase::Provisioning
        } else if age < boot || never_ready {
            Phase::Starting
        } else {
            Phase::Running
        }
    }

    fn ip(&self) -> String {
        format!("203.0.113.{}", self.host)
    }

    fn price(d: Decimal) -> Value {
        json!(d.to_f64().unwrap_or_default())
    }

    /// The pod as REST v2 shows it.
    pub fn v2(&self, phase: Phase) -> Value {
        let status = match phase {
            Phase::Provisioning => "PROVISIONING",
            Phase::Starting => "STARTING",
            Phase::Running => "RUNNING",
            Phase::Exited => "EXITED",
            Phase::Error => "ERROR",
        };
        let actions = match phase {
            Phase::Running => json!(["stop", "restart", "terminate"]),
            Phase::Exited | Phase::Error => json!(["start", "terminate"]),
            _ => json!(["stop", "terminate"]),
        };
        let running = phase == Phase::Running;
        let host_id = format!("{}-64411eb2", self.id);
        json!({
            "id": self.id, "name": self.name, "image": self.image, "args": "", "disk": self.disk,
            "ports": self.ports, "env": self.env, "registry": null, "status": status, "actions": actions,
            "mounts": {}, "gpu": {"id": self.gpu, "count": self.gpu_count}, "cloud": self.cloud,
            "dataCenterId": self.location, "cudaVersion": "12.8",
            "ssh": {
                "proxy": (phase != Phase::Provisioning).then(|| json!({"host": "ssh.runpod.io", "port": 22, "username": host_id, "command": format!("ssh {host_id}@ssh.runpod.io")})),
                "direct": running.then(|| json!({"host": self.ip(), "port": self.ssh_port, "username": "root", "command": format!("ssh root@{} -p {}", self.ip(), self.ssh_port)})),
            },
            "template": null,
            "cost": if matches!(phase, Phase::Exited | Phase::Error) { json!(0.0) } else { Self::price(self.cost) },
            "locked": false, "globalNetworking": {"enabled": false},
            "runtime": running.then(|| json!({"uptime": self.created.elapsed().as_secs(), "ports": [{"private": 22, "public": self.ssh_port, "type": "tcp", "ip": self.ip()}]})),
            "createdAt": "2026-06-01T12:00:00Z", "startedAt": running.then_some("2026-06-01T12:02:00Z"),
        })
    }

    /// The pod as GraphQL shows it (every field a selection may ask for).
    pub fn graphql(&self, phase: Phase) -> Value {
        let desired = match phase {
            Phase::Exited => "EXITED",
            Phase::Error => "DEAD",
            _ => "RUNNING",
        };
        let running = phase == Phase::Running;
        let last = match self.exited {
            Some(by) => format!("Exited by {by}: Fri Jun 19 2026 03:36:49 GMT+0000"),
            None => "Rented by User: Fri Jun 19 2026 03:30:00 GMT+0000".to_string(),
        };
        json!({
            "id": self.id, "name": self.name, "desiredStatus": desired,
            "podType": if self.spot { "INTERRUPTABLE" } else { "RESERVED" },
            "imageName": self.image, "gpuCount": self.gpu_count, "vcpuCount": 8, "memoryInGb": 50,
            "costPerHr": Self::price(self.cost), "adjustedCostPerHr": Self::price(self.cost),
            "containerDiskInGb": self.disk, "volumeInGb": 0, "volumeMountPath": "/workspace",
            "lastStatusChange": last, "uptimeSeconds": if running { self.created.elapsed().as_secs() } else { 0 },
            "machineId": "hpvdausak8xb", "ports": self.ports.join(","), "dockerArgs": "",
            "env": self.env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            "lowestBidPriceToResume": self.bid_per_gpu.map(Self::price),
            "runtime": running.then(|| json!({
                "uptimeInSeconds": self.created.elapsed().as_secs(),
                "ports": [{"ip": self.ip(), "isIpPublic": true, "privatePort": 22, "publicPort": self.ssh_port, "type": "tcp"}],
                "gpus": [{"id": "GPU-e0488b7e-6932-795b-a125-4472c16ea72c", "gpuUtilPercent": 0, "memoryUtilPercent": 0}],
                "container": {"cpuPercent": 0, "memoryPercent": 0},
            })),
            "machine": {"gpuDisplayName": self.gpu, "podHostId": format!("{}-64410065", self.id),
                        "location": self.location, "dataCenterId": self.location, "gpuTypeId": self.gpu},
        })
    }
}
