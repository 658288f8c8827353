//! The fake Lambda's account: instances and their state machine, SSH keys, capacity, and what
//! the client sent. Held in a std `Mutex`, never across an await.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::LambdaFakeConfig;
use super::catalog::{self, CatalogType};

/// One instance. Status is kept as Lambda's raw text, so tests can set values the fake does
/// not model (an unknown status) as well as the real ones.
#[derive(Clone, Debug)]
pub struct FakeInstance {
    /// 32 hex digits.
    pub id: String,
    /// The name the client gave (tgp: the attempt id).
    pub name: Option<String>,
    /// What it was launched as.
    pub instance_type: CatalogType,
    /// Region code.
    pub region: String,
    /// The one key it was launched with.
    pub ssh_key_names: Vec<String>,
    /// Tags as sent.
    pub tags: Vec<Value>,
    /// cloud-init user data as sent.
    pub user_data: Option<String>,
    /// Raw status.
    pub status: String,
    /// Public address, shown once booted.
    pub ip: String,
    /// Private address, shown once booted.
    pub private_ip: String,
    /// When booting ends.
    pub ready_at: Instant,
    /// When the status last changed (drives tear-down and linger).
    pub changed_at: Instant,
}

/// One SSH key.
#[derive(Clone, Debug)]
pub struct FakeKey {
    /// Lambda's id.
    pub id: String,
    /// What launches refer to.
    pub name: String,
    /// The public half.
    pub public_key: String,
}

/// Everything the fake account holds.
pub struct State {
    /// How it behaves.
    pub config: LambdaFakeConfig,
    /// The catalogue by type name.
    pub types: BTreeMap<String, CatalogType>,
    /// (type, region) pairs listed with capacity.
    pub capacity: BTreeSet<(String, String)>,
    /// Launches fail for capacity whatever the listing says.
    pub no_capacity: bool,
    /// Instances by id (gone ones removed).
    pub instances: BTreeMap<String, FakeInstance>,
    /// Registered SSH keys.
    pub keys: Vec<FakeKey>,
    /// Every launch body received.
    pub launches: Vec<Value>,
    /// When the launches admitted in the last minute came (the launch rate limits).
    pub admitted_launches: std::collections::VecDeque<Instant>,
    /// The last request admitted (general rate limit).
    pub last_request: Option<Instant>,
    rng: SmallRng,
    next_host: u32,
}

impl State {
    /// A fresh account for `config`, its catalogue seeded.
    pub fn new(config: LambdaFakeConfig) -> Self {
        let (types, capacity) = catalog::seeded(config.seed);
        State {
            rng: SmallRng::seed_from_u64(config.seed.wrapping_add(7)),
            config,
            types,
            capacity,
            no_capacity: false,
            instances: BTreeMap::new(),
            keys: Vec::new(),
            launches: Vec::new(),
            admitted_launches: Default::default(),
            last_request: None,
            next_host: 2,
        }
    }

    /// A new 32-hex-digit id.
    pub fn new_id(&mut self) -> String {
        (0..4).map(|_| format!("{:08x}", self.rng.random::<u32>())).collect()
    }

    /// Moves every instance along its state machine: booting → active after the boot delay,
    /// terminating → terminated after the tear-down delay, terminated → gone after the linger.
    pub fn refresh(&mut self, now: Instant) {
        let c = &self.config;
        let (teardown, linger) = (c.terminating_delay, c.terminated_linger);
        let mut gone = Vec::new();
        for i in self.instances.values_mut() {
            let since = now.saturating_duration_since(i.changed_at);
            match i.status.as_str() {
                "booting" if now >= i.ready_at => set(i, "active", now),
                "terminating" if since >= teardown => set(i, "terminated", now),
                "terminated" if since >= linger => gone.push(i.id.clone()),
                _ => {}
            }
        }
        for id in gone {
            self.instances.remove(&id);
        }
    }

    /// Launches one instance (the route has checked the request).
    pub fn launch(&mut self, t: CatalogType, region: &str, body: &Value, now: Instant) -> String {
        let id = self.new_id();
        let host = self.next_host;
        self.next_host += 1;
        let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
        let strings = |k: &str| -> Vec<String> {
            body.get(k)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                .unwrap_or_default()
        };
        let instance = FakeInstance {
            id: id.clone(),
            name: text("name"),
            instance_type: t,
            region: region.to_string(),
            ssh_key_names: strings("ssh_key_names"),
            tags: body.get("tags").and_then(Value::as_array).cloned().unwrap_or_default(),
            user_data: text("user_data"),
            status: "booting".into(),
            ip: format!("198.51.100.{}", host % 250 + 2),
            private_ip: format!("10.0.{}.{}", host / 250, host % 250 + 2),
            ready_at: now + self.config.boot_delay,
            changed_at: now,
        };
        self.instances.insert(id.clone(), instance);
        id
    }

    /// An instance as Lambda's `Instance` object.
    pub fn instance_json(&self, i: &FakeInstance) -> Value {
        let terminating = matches!(i.status.as_str(), "terminating" | "terminated");
        let booting = i.status == "booting";
        let mut v = json!({
            "id": i.id,
            "status": i.status,
            "ssh_key_names": i.ssh_key_names,
            "file_system_names": [],
            "region": catalog::region_json(&i.region),
            "instance_type": i.instance_type.json(),
            "jupyter_token": format!("{}{}", &i.id[..16], &i.id[..16]),
            "jupyter_url": format!("https://jupyter-{}.lambdaspaces.com/?token=x", i.id),
            "is_reserved": false,
            "actions": {
                "migrate": {"available": false, "reason_code": "vm-has-not-launched"},
                "rebuild": {"available": !terminating},
                "restart": {"available": !terminating && !booting},
                "cold_reboot": {"available": !terminating && !booting},
                "terminate": if terminating {
                    json!({"available": false, "reason_code": "vm-is-terminating"})
                } else {
                    json!({"available": true})
                },
            },
            "tags": i.tags,
            "firewall_rulesets": [],
        });
        if let Some(name) = &i.name {
            v["name"] = json!(name);
        }
        if !booting {
            v["ip"] = json!(i.ip);
            v["private_ip"] = json!(i.private_ip);
            v["hostname"] = json!(i.ip.replace('.', "-"));
        }
        if self.config.extra_fields {
            v["workspace_id"] = json!("8c5e0f2a7b3d4e19a6f1c0d2b4e6a8f0");
            v["cluster"] = json!({"id": null, "future": true});
        }
        v
    }

    /// An SSH key as Lambda's `SSHKey` object.
    pub fn key_json(&self, k: &FakeKey) -> Value {
        let mut v = json!({"id": k.id, "name": k.name, "public_key": k.public_key});
        if self.config.extra_fields {
            v["workspace_id"] = json!("8c5e0f2a7b3d4e19a6f1c0d2b4e6a8f0");
        }
        v
    }

    /// `GET /instance-types` data: every type, with its regions that have capacity.
    pub fn instance_types_json(&self) -> Value {
        let mut data = serde_json::Map::new();
        for (name, t) in &self.types {
            let regions: Vec<Value> =
                self.capacity.iter().filter(|(n, _)| n == name).map(|(_, r)| catalog::region_json(r)).collect();
            let mut it = t.json();
            if self.config.extra_fields {
                it["architecture"] = json!("x86_64");
            }
            data.insert(name.clone(), json!({"instance_type": it, "regions_with_capacity_available": regions}));
        }
        Value::Object(data)
    }
}

/// Changes an instance's status now.
pub fn set(i: &mut FakeInstance, status: &str, now: Instant) {
    i.status = status.to_string();
    i.changed_at = now;
}

/// How many seconds until another launch is allowed under "one per `interval`" and "`per_minute`
/// in any minute", if one is not allowed now. Admitted launches older than a minute are dropped.
pub fn launch_too_soon(
    admitted: &mut std::collections::VecDeque<Instant>,
    interval: Option<Duration>,
    per_minute: Option<u32>,
    now: Instant,
) -> Option<u64> {
    const MINUTE: Duration = Duration::from_secs(60);
    while admitted.front().is_some_and(|t| now.duration_since(*t) >= MINUTE) {
        admitted.pop_front();
    }
    let spaced = too_soon(admitted.back().copied(), interval, now);
    let counted = per_minute
        .filter(|n| *n > 0 && admitted.len() >= *n as usize)
        .and_then(|n| admitted.get(admitted.len() - n as usize))
        .map(|oldest| (*oldest + MINUTE).duration_since(now).as_secs().max(1));
    spaced.max(counted)
}

/// How long until `last + interval`, if that is still ahead.
pub fn too_soon(last: Option<Instant>, interval: Option<Duration>, now: Instant) -> Option<u64> {
    let (last, interval) = (last?, interval?);
    let free = last + interval;
    (now < free).then(|| free.duration_since(now).as_secs().max(1))
}
