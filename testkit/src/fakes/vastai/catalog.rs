//! The fake's seeded market: Vast offers (asks) with their real field names and units, including the
//! bad data real hosts publish (null `cpu_cores`, `", US"` or null geolocations, trailing
//! whitespace, GPU names tgp has no standard for), and the search semantics of
//! `POST /api/v0/bundles/`: `{field: {op: value}}` filters, `order`, `limit`, `type`,
//! `allocated_storage`.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

/// GPU models: Vast name, MB per GPU, cents per GPU-hour, compute capability.
const MODELS: &[(&str, u64, u64, u32)] = &[
    ("H100 SXM", 81559, 185, 900),
    ("RTX 4090", 24564, 35, 890),
    ("A100 SXM4", 81920, 110, 800),
    ("A100 PCIE", 40960, 70, 800),
    ("L40S", 46068, 75, 890),
    ("RTX A6000", 49140, 45, 860),
    ("H200", 143771, 260, 900),
    ("RTX 3090", 24576, 20, 860),
    ("A40", 46068, 40, 860),
    ("RTX 5090", 32607, 60, 1200),
    ("B200", 183359, 380, 1000),
    ("H100 PCIE", 81559, 165, 900),
    ("Tesla V100", 16384, 15, 700),
    ("L4", 23034, 30, 890),
    ("RTX 6000Ada", 49140, 80, 890),
    ("H100 NVL", 95830, 200, 900),
];

/// Where hosts say their machines are; the first four are well-formed US places.
const PLACES: &[Option<&str>] = &[
    Some("Texas, US"),
    Some("California, US"),
    Some("Virginia, US"),
    Some("Illinois, US"),
    Some("Quebec, CA"),
    Some("Sweden, SE"),
    Some("France, FR"),
    Some("Germany, DE"),
    Some("Hong Kong, HK"),
    Some("Yutakachō, Shinagawa District, Tokyo, JP"),
    Some("Australia, AU"),
    Some(", US"),
    None,
    Some("California, United States"),
    Some("Nairobi, KE "),
];

/// One offer of the fake market.
#[derive(Clone, Debug)]
pub struct FakeOffer {
    /// Ask id.
    pub id: u64,
    /// Machine id.
    pub machine_id: u64,
    /// GPUs.
    pub num_gpus: u32,
    /// Vast GPU name, as the host's machine reports it (maybe with trailing whitespace).
    pub gpu_name: String,
    /// MB per GPU.
    pub gpu_ram: u64,
    /// Compute capability × 100.
    pub compute_cap: u32,
    /// Machine vCPUs; `None` for hosts that report none.
    pub cpu_cores: Option<u32>,
    /// $/h compute for the whole offer.
    pub dph_base: f64,
    /// $/h minimum bid for the whole offer.
    pub min_bid: f64,
    /// $/GB/month.
    pub storage_cost: f64,
    /// 0..1.
    pub reliability: f64,
    /// Host-written place.
    pub geolocation: Option<String>,
    /// `verified`, `unverified`.
    pub verification: &'static str,
    /// Rented (by the fake's own account); rented offers leave default searches.
    pub rented: bool,
    /// 0 for a community host, 1 for a datacenter.
    pub hosting_type: u8,
    /// GB of disk the host can allocate.
    pub disk_space: f64,
    /// The host's RAM in MB (the renter gets `cpu_cores_effective / cpu_cores` of it).
    pub cpu_ram: u64,
}

/// One JSON object from several (`json!` has a recursion limit a full Vast object exceeds).
pub fn merge<const N: usize>(parts: [Value; N]) -> Value {
    let mut out = Map::new();
    for part in parts {
        if let Value::Object(map) = part {
            out.extend(map);
        }
    }
    Value::Object(out)
}

fn round(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

/// The seeded market: the same seed gives the same offers. The first offers are one clean,
/// verified 1-GPU offer per model in a US state; then a mix with the real-world oddities.
pub fn seed_offers(seed: u64, count: usize) -> Vec<FakeOffer> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..count)
        .map(|i| {
            let (name, ram, cents, cap) = MODELS[i % MODELS.len()];
            let first_round = i < MODELS.len();
            let num_gpus = if first_round { 1 } else { [1, 1, 2, 4, 8][rng.random_range(0..5)] };
            let place = if first_round { PLACES[i % 4] } else { PLACES[rng.random_range(0..PLACES.len())] };
            let per_gpu = cents as f64 * rng.random_range(80..=120) as f64 / 10_000.0;
            let dph_base = round(per_gpu * num_gpus as f64, 3);
            let min_bid = round(dph_base * rng.random_range(35..=60) as f64 / 100.0, 3);
            FakeOffer {
                id: 27_384_100 + i as u64,
                machine_id: 41_000 + (seed % 1000) * 100 + i as u64,
                num_gpus,
                gpu_name: if !first_round && i % 5 == 0 { format!("{name} ") } else { name.to_string() },
                gpu_ram: ram,
                compute_cap: cap,
                cpu_cores: (first_round || i % 7 != 0).then_some(16 * num_gpus),
                dph_base,
                min_bid,
                storage_cost: [0.1, 0.15, 0.2][rng.random_range(0..3)],
                reliability: round(rng.random_range(0.9..0.9999), 4),
                geolocation: place.map(str::to_string),
                verification: if !first_round && i % 11 == 0 { "unverified" } else { "verified" },
                rented: false,
                // Community hosts, small disks and lean RAM among the later offers, without
                // drawing from the seeded sequence (so the prices stay what they were).
                hosting_type: if !first_round && i % 3 == 0 { 0 } else { 1 },
                disk_space: if first_round { 812.5 } else { [812.5, 120.0, 2048.0][i % 3] },
                cpu_ram: if !first_round && i % 4 == 1 { 16_000 } else { 64_000 } * u64::from(num_gpus),
            }
        })
        .collect()
}

impl FakeOffer {
    /// The offer as `/bundles/` shows it, priced for `allocated_storage` GB as on demand or bid.
    pub fn to_json(&self, bid: bool, allocated_storage: f64) -> Value {
        let storage_total = round(allocated_storage * self.storage_cost / 720.0, 6);
        let compute = if bid { self.min_bid } else { self.dph_base };
        let total = round(compute + storage_total, 6);
        let cores = self.cpu_cores;
        merge([
            json!({
                "id": self.id, "ask_contract_id": self.id, "bundle_id": 600_000_000 + self.id % 1_000_000,
                "machine_id": self.machine_id, "host_id": 100_000 + self.machine_id % 977,
                "num_gpus": self.num_gpus, "gpu_name": self.gpu_name, "gpu_ram": self.gpu_ram,
                "gpu_total_ram": self.gpu_ram * u64::from(self.num_gpus), "gpu_frac": 1.0 / 8.0 * f64::from(self.num_gpus),
                "gpu_arch": "nvidia", "compute_cap": self.compute_cap, "cuda_max_good": 12.8,
                "driver_version": "570.124.04", "cpu_name": "AMD EPYC 9654 96-Core Processor",
            }),
            json!({
                "cpu_cores": cores, "cpu_cores_effective": cores.map(|c| f64::from(c) / 2.0),
                "cpu_ram": self.cpu_ram, "cpu_arch": "amd64",
                "disk_space": self.disk_space, "disk_bw": 3120.4, "inet_up": 2843.1, "inet_down": 4120.7,
                "inet_up_cost": 0.004, "inet_down_cost": 0.004, "direct_port_count": 240,
            }),
            json!({
                "dph_base": self.dph_base, "dph_total": total, "min_bid": self.min_bid,
                "storage_cost": self.storage_cost, "storage_total_cost": storage_total,
                "reliability": self.reliability, "reliability2": self.reliability,
                "verification": self.verification, "vericode": u8::from(self.verification == "verified"),
            }),
            json!({
                "rentable": !self.rented, "rented": self.rented, "is_bid": bid, "external": false,
                "hosting_type": self.hosting_type, "geolocation": self.geolocation, "static_ip": true,
                "public_ipaddr": format!("203.0.113.{}", self.machine_id % 250 + 1),
                "score": round(400.0 - compute * 10.0, 1), "dlperf": 171.2,
                "duration": 2_591_234.5, "end_date": 1_787_591_234.0,
                "search": {"gpuCostPerHour": compute, "diskHour": storage_total, "totalHour": total,
                           "discountTotalHour": 0, "discountedTotalPerHour": total},
            }),
        ])
    }
}

/// The country code the server matches `geolocation` filters on: the last part of the string.
fn country(geolocation: &str) -> Option<String> {
    let last = geolocation.rsplit(',').next()?.trim();
    match last.to_ascii_lowercase().as_str() {
        "united states" | "usa" => Some("US".into()),
        _ if last.len() == 2 => Some(last.to_ascii_uppercase()),
        _ => None,
    }
}

fn same(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        // GPU names: Vast's CLI users type `RTX_4090`; a lenient server normalises it.
        (Value::String(a), Value::String(b)) => {
            a.trim().replace('_', " ").eq_ignore_ascii_case(&b.trim().replace('_', " "))
        }
        (a, b) => a == b,
    }
}

/// One `{op: value}` test; a missing value fails every test but `neq`/`notin`.
pub fn test(actual: Option<&Value>, op: &str, expected: &Value) -> bool {
    let actual = actual.filter(|v| !v.is_null());
    let number = |v: &Value| v.as_f64();
    let listed = || expected.as_array().is_some_and(|list| actual.is_some_and(|a| list.iter().any(|e| same(a, e))));
    let order = |f: fn(f64, f64) -> bool| match (actual.and_then(number), number(expected)) {
        (Some(a), Some(b)) => f(a, b),
        _ => false,
    };
    match op {
        "eq" => actual.is_some_and(|a| same(a, expected)),
        "neq" => !actual.is_some_and(|a| same(a, expected)),
        "in" => listed(),
        "notin" | "nin" => !listed(),
        "gt" => order(|a, b| a > b),
        "gte" => order(|a, b| a >= b),
        "lt" => order(|a, b| a < b),
        "lte" => order(|a, b| a <= b),
        _ => true,
    }
}

/// Keys of a search body that are not filters.
const NOT_FILTERS: &[&str] =
    &["order", "limit", "type", "allocated_storage", "disable_bundling", "georegion", "chunked"];

/// Does an offer (as JSON) pass a search body's filters?
pub fn passes(offer: &Value, query: &Map<String, Value>) -> bool {
    query.iter().filter(|(field, _)| !NOT_FILTERS.contains(&field.as_str())).all(|(field, condition)| {
        let Some(ops) = condition.as_object() else {
            return true;
        };
        let actual = match field.as_str() {
            "verified" => Some(json!(offer["verification"] == "verified")),
            "datacenter" => Some(json!(offer["hosting_type"].as_u64().unwrap_or(0) >= 1)),
            "geolocation" => offer["geolocation"].as_str().and_then(country).map(Value::from),
            other => offer.get(other).cloned(),
        };
        ops.iter().all(|(op, expected)| test(actual.as_ref(), op, expected))
    })
}

/// Sorts offers by a search body's `order` (`[[field, "asc"|"desc"], ...]`).
pub fn sort(offers: &mut [Value], order: Option<&Value>) {
    let keys: Vec<(String, bool)> = order
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|pair| {
                    let field = pair.get(0)?.as_str()?.to_string();
                    let desc = pair.get(1).and_then(Value::as_str) == Some("desc");
                    Some((field, desc))
                })
                .collect()
        })
        .unwrap_or_default();
    offers.sort_by(|a, b| {
        for (field, desc) in &keys {
            let x = a.get(field).and_then(Value::as_f64).unwrap_or(f64::MAX);
            let y = b.get(field).and_then(Value::as_f64).unwrap_or(f64::MAX);
            let o = x.total_cmp(&y);
            if o.is_ne() {
                return if *desc { o.reverse() } else { o };
            }
        }
        a["id"].as_u64().cmp(&b["id"].as_u64())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_market() {
        let a = seed_offers(7, 40);
        let b = seed_offers(7, 40);
        let c = seed_offers(8, 40);
        let prices = |o: &[FakeOffer]| o.iter().map(|o| (o.dph_base, o.min_bid)).collect::<Vec<_>>();
        assert_eq!(prices(&a), prices(&b));
        assert_ne!(prices(&a), prices(&c));
        assert!(a.iter().all(|o| o.min_bid < o.dph_base && o.min_bid > 0.0));
        assert!(a.iter().any(|o| o.cpu_cores.is_none()));
        assert!(a.iter().any(|o| o.geolocation.is_none()));
    }

    #[test]
    fn search_filters_work_like_vasts() {
        let offer = seed_offers(1, 1).remove(0).to_json(false, 40.0);
        let q = |v: Value| passes(&offer, v.as_object().unwrap());
        assert!(q(json!({"gpu_name": {"in": ["H100_SXM"]}, "num_gpus": {"gte": 1, "lte": 8}})));
        assert!(q(json!({"geolocation": {"in": ["US", "CA"]}, "verified": {"eq": true}})));
        assert!(!q(json!({"geolocation": {"notin": ["US"]}})));
        assert!(!q(json!({"dph_total": {"lt": 0.01}})));
        assert!(q(json!({"order": [["dph_total", "asc"]], "type": "bid", "limit": 3})));
    }
}
