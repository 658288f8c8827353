//! Lambda's names and tgp's, both ways, in one place: GPU models (from instance-type names),
//! regions, and instance status values.

use tgp_actors::provider::MachineStatus;
use tgp_events::events::InterruptionReason;
use tgp_events::{GpuType, Region};

/// GPU model tokens as they appear in instance-type names (`gpu_<N>x_<model>[_<variant>]`),
/// with the standard type. A100 is special: its memory decides (see [`gpu_type`]).
/// `gh200` (96 GB, arm64) and `rtx6000` (Quadro RTX 6000, Turing) have no standard name: their
/// offers are kept with `gpu_type: None`.
const GPU_MODELS: [(&str, GpuType); 12] = [
    ("b200", GpuType::B200),
    ("h200", GpuType::H200),
    ("h100", GpuType::H100),
    ("a100_80gb", GpuType::A100_80GB),
    ("a100", GpuType::A100_40GB),
    ("l40s", GpuType::L40S),
    ("l40", GpuType::L40),
    ("a6000", GpuType::A6000),
    ("a40", GpuType::A40),
    ("a10", GpuType::A10),
    ("l4", GpuType::L4),
    ("v100", GpuType::V100),
];

/// Region families (the code without its trailing `-<n>`), the standard region, and the code
/// `translate_region` answers with. Families not listed stay untranslated (`europe-south`:
/// Italy, `me-west`: Israel; tgp has no standard region for either).
const REGIONS: [(&str, &str, &str); 11] = [
    ("us-east", "us-east", "us-east-1"),
    ("us-west", "us-west", "us-west-1"),
    ("us-south", "us-south", "us-south-1"),
    ("us-midwest", "us-central", "us-midwest-1"),
    ("europe-central", "eu-central", "europe-central-1"),
    ("asia-south", "asia-south", "asia-south-1"),
    ("asia-northeast", "asia-east", "asia-northeast-1"),
    ("australia-east", "oceania", "australia-east-1"),
    // Seen only in third-party code or old docs; translated, never answered.
    ("us-southeast", "us-east", "us-southeast-1"),
    ("us-tx", "us-south", "us-tx-1"),
    ("australia-southeast", "oceania", "australia-southeast-1"),
];

/// The standard GPU type of an instance type, from its name (`gpu_8x_a100_80gb_sxm4`) and, for
/// A100s, its GPU description (`A100 (80 GB SXM4)`). `None` for CPU types and unknown models.
pub fn gpu_type(type_name: &str, gpu_description: &str) -> Option<GpuType> {
    let rest = type_name.strip_prefix("gpu_")?;
    let (_count, model) = rest.split_once("x_")?;
    let token = model.split('_').next()?;
    if token == "a100" {
        let eighty = model.contains("80gb") || gpu_description.contains("80 GB");
        return Some(if eighty { GpuType::A100_80GB } else { GpuType::A100_40GB });
    }
    GPU_MODELS.iter().find(|(name, _)| *name == token).map(|(_, gpu)| *gpu)
}

/// Lambda's model token for a standard GPU type (what follows `gpu_<N>x_` in a type name).
pub fn gpu_name(gpu: GpuType) -> Option<&'static str> {
    GPU_MODELS.iter().find(|(_, g)| *g == gpu).map(|(name, _)| *name)
}

/// The standard region of a Lambda region code (`us-east-1` → `us-east`).
pub fn region(code: &str) -> Option<Region> {
    let family = match code.rsplit_once('-') {
        Some((family, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => family,
        _ => code,
    };
    REGIONS.iter().find(|(f, _, _)| *f == family).and_then(|(_, standard, _)| standard.parse().ok())
}

/// A Lambda region code for a standard region.
pub fn region_code(region: &Region) -> Option<&'static str> {
    REGIONS.iter().find(|(_, standard, _)| *standard == region.as_str()).map(|(_, _, code)| *code)
}

/// Maps a status value; `None` for a value this table does not know (the caller reports it).
///
/// - `booting` → Starting.
/// - `active` → Running.
/// - `unhealthy` → Starting: the machine exists and bills but failed health checks, and may
///   recover (`active ⇄ unhealthy`); SkyPilot treats it as pending too. Starting leaves a running
///   chain as it is and keeps a booting one waiting, with no relaunch while it may recover.
/// - `terminating`, `terminated` → Terminated (gone or being destroyed).
/// - `preempted` → Interrupted(Preempted): Lambda took the machine back.
pub fn status(raw: &str) -> Option<MachineStatus> {
    Some(match raw {
        "booting" | "unhealthy" => MachineStatus::Starting,
        "active" => MachineStatus::Running,
        "terminating" | "terminated" => MachineStatus::Terminated,
        "preempted" => MachineStatus::Interrupted(InterruptionReason::Preempted),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::{REGIONS, gpu_name, gpu_type, region, region_code};
    use tgp_events::{GpuType, Region};

    #[test]
    fn gpu_names_both_ways() {
        assert_eq!(gpu_type("gpu_1x_h100_pcie", ""), Some(GpuType::H100));
        assert_eq!(gpu_type("gpu_8x_h100_sxm5gdr", ""), Some(GpuType::H100));
        assert_eq!(gpu_type("gpu_8x_a100_80gb_sxm4", ""), Some(GpuType::A100_80GB));
        assert_eq!(gpu_type("gpu_1x_a100_sxm4", "A100 (40 GB SXM4)"), Some(GpuType::A100_40GB));
        assert_eq!(gpu_type("gpu_1x_a10", ""), Some(GpuType::A10));
        assert_eq!(gpu_type("gpu_2x_a6000", ""), Some(GpuType::A6000));
        assert_eq!(gpu_type("gpu_1x_gh200", ""), None);
        assert_eq!(gpu_type("gpu_1x_rtx6000", ""), None);
        assert_eq!(gpu_type("cpu_4x_general", ""), None);
        for gpu in GpuType::ALL {
            if let Some(name) = gpu_name(gpu) {
                let type_name = format!("gpu_1x_{name}");
                assert_eq!(gpu_type(&type_name, ""), Some(gpu), "{type_name}");
            }
        }
        assert_eq!(gpu_name(GpuType::RTX4090), None);
    }

    #[test]
    fn regions_both_ways() {
        let r = |s: &str| s.parse::<Region>().unwrap();
        assert_eq!(region("us-east-1"), Some(r("us-east")));
        assert_eq!(region("us-midwest-1"), Some(r("us-central")));
        assert_eq!(region("asia-northeast-2"), Some(r("asia-east")));
        assert_eq!(region("europe-south-1"), None);
        assert_eq!(region("me-west-1"), None);
        for (_, standard, code) in REGIONS {
            assert_eq!(region(code), Some(r(standard)));
        }
        assert_eq!(region_code(&r("eu-central")), Some("europe-central-1"));
        assert_eq!(region_code(&r("canada")), None);
    }
}
