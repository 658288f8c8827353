//! The fake Lambda's seeded catalogue: instance types (SkyPilot's 2026 catalogue, the seed of
//! `shared/providers/lambda.md` §7.1) with prices moved a little by the seed, the regions (§7.2),
//! and which (type, region) pairs have capacity.

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// One instance type as the fake sells it.
#[derive(Clone, Debug)]
pub struct CatalogType {
    /// `gpu_1x_h100_pcie`.
    pub name: &'static str,
    /// `1x H100 (80 GB PCIe)`.
    pub description: String,
    /// `H100 (80 GB PCIe)`.
    pub gpu_description: &'static str,
    /// Whole machine, cents per hour.
    pub price_cents: i64,
    /// vCPUs, RAM GiB, disk GiB, GPUs.
    pub specs: (u32, u32, u32, u32),
}

impl CatalogType {
    /// The `instance_type` object as Lambda sends it.
    pub fn json(&self) -> Value {
        let (vcpus, memory_gib, storage_gib, gpus) = self.specs;
        json!({
            "name": self.name,
            "description": self.description,
            "gpu_description": self.gpu_description,
            "price_cents_per_hour": self.price_cents,
            "specs": {"vcpus": vcpus, "memory_gib": memory_gib, "storage_gib": storage_gib, "gpus": gpus},
        })
    }
}

/// (name, GPU description, vCPUs, RAM GiB, disk GiB, GPUs, list cents per hour).
const TYPES: [(&str, &str, u32, u32, u32, u32, i64); 22] = [
    ("gpu_1x_a10", "A10 (24 GB PCIe)", 30, 200, 1400, 1, 129),
    ("gpu_1x_a100_sxm4", "A100 (40 GB SXM4)", 30, 200, 512, 1, 199),
    ("gpu_2x_a100", "A100 (40 GB PCIe)", 60, 400, 1024, 2, 398),
    ("gpu_4x_a100", "A100 (40 GB PCIe)", 120, 800, 2048, 4, 796),
    ("gpu_8x_a100", "A100 (40 GB SXM4)", 124, 1800, 6144, 8, 1592),
    ("gpu_8x_a100_80gb_sxm4", "A100 (80 GB SXM4)", 240, 1800, 19456, 8, 2232),
    ("gpu_1x_h100_pcie", "H100 (80 GB PCIe)", 26, 200, 1024, 1, 329),
    ("gpu_1x_h100_sxm5", "H100 (80 GB SXM5)", 26, 225, 2764, 1, 429),
    ("gpu_2x_h100_sxm5", "H100 (80 GB SXM5)", 52, 450, 5528, 2, 838),
    ("gpu_4x_h100_sxm5", "H100 (80 GB SXM5)", 104, 900, 11056, 4, 1636),
    ("gpu_8x_h100_sxm5", "H100 (80 GB SXM5)", 208, 1800, 22528, 8, 3192),
    ("gpu_1x_gh200", "GH200 (96 GB)", 64, 432, 4096, 1, 229),
    ("gpu_1x_b200_sxm6", "B200 (180 GB SXM6)", 26, 360, 2816, 1, 699),
    ("gpu_2x_b200_sxm6", "B200 (180 GB SXM6)", 52, 720, 5632, 2, 1378),
    ("gpu_8x_b200_sxm6", "B200 (180 GB SXM6)", 208, 2900, 22528, 8, 5352),
    ("gpu_1x_a6000", "A6000 (48 GB)", 14, 100, 512, 1, 109),
    ("gpu_2x_a6000", "A6000 (48 GB)", 28, 200, 1024, 2, 218),
    ("gpu_4x_a6000", "A6000 (48 GB)", 56, 400, 2048, 4, 436),
    ("gpu_1x_rtx6000", "RTX 6000 (24 GB)", 14, 46, 512, 1, 69),
    ("gpu_8x_v100", "Tesla V100 (16 GB)", 92, 448, 5836, 8, 632),
    ("gpu_8x_v100_n", "Tesla V100 (16 GB)", 88, 448, 5836, 8, 632),
    ("cpu_4x_general", "", 4, 16, 100, 0, 20),
];

/// Region codes and descriptions.
pub const REGIONS: [(&str, &str); 17] = [
    ("us-west-1", "California, USA"),
    ("us-west-2", "Arizona, USA"),
    ("us-west-3", "Utah, USA"),
    ("us-south-1", "Texas, USA"),
    ("us-south-2", "North Texas, USA"),
    ("us-south-3", "Central Texas, USA"),
    ("us-east-1", "Virginia, USA"),
    ("us-east-2", "Washington D.C., USA"),
    ("us-east-3", "Washington D.C., USA"),
    ("us-midwest-1", "Illinois, USA"),
    ("europe-central-1", "Germany"),
    ("europe-south-1", "Italy"),
    ("me-west-1", "Israel"),
    ("asia-south-1", "India"),
    ("asia-northeast-1", "Osaka, Japan"),
    ("asia-northeast-2", "Tokyo, Japan"),
    ("australia-east-1", "Sydney, Australia"),
];

/// A region's `{name, description}` object.
pub fn region_json(code: &str) -> Value {
    let description = REGIONS.iter().find(|(c, _)| *c == code).map(|(_, d)| *d).unwrap_or("");
    json!({"name": code, "description": description})
}

/// The catalogue for `seed`: types by name (prices within ±5% of the list price, to the cent),
/// and the (type, region) pairs with capacity (each type in 0 to 4 regions).
pub fn seeded(seed: u64) -> (BTreeMap<String, CatalogType>, BTreeSet<(String, String)>) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut types = BTreeMap::new();
    let mut capacity = BTreeSet::new();
    for (name, gpu, vcpus, mem, disk, gpus, cents) in TYPES {
        let price_cents = cents * rng.random_range(95..=105) / 100;
        let description =
            if gpus == 0 { format!("{vcpus}x CPU General ({mem} GiB)") } else { format!("{gpus}x {gpu}") };
        types.insert(
            name.to_string(),
            CatalogType { name, description, gpu_description: gpu, price_cents, specs: (vcpus, mem, disk, gpus) },
        );
        for _ in 0..rng.random_range(0..=4) {
            let (region, _) = REGIONS[rng.random_range(0..REGIONS.len())];
            capacity.insert((name.to_string(), region.to_string()));
        }
    }
    (types, capacity)
}
