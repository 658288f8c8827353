//! RunPod's names for GPUs and places, and the standard names, both ways, in one place.
//!
//! GPU ids are RunPod's exact `gpuTypeId` strings (never derived from display names, which change).
//! Places are secure-cloud data-center ids (`US-TX-3`: translated by their `<area>-<state or
//! country>` prefix, so a new `US-TX-7` needs no change) or community-cloud ISO country codes.
//! A name missing here is not an error: the offer keeps RunPod's name and has no standard one.

use tgp_events::{GpuType, Region};

/// RunPod `gpuTypeId` → standard type. The first id of each standard type is what a launch of
/// that type asks for. Left out on purpose (different parts, kept unmarked): H100 NVL (94 GB),
/// H200 NVL, B300, A30, the RTX Ada and RTX PRO cards, MI300X. RunPod has no A10 and no A100 40 GB.
const GPUS: &[(&str, GpuType)] = &[
    ("NVIDIA H100 80GB HBM3", GpuType::H100),
    ("NVIDIA H100 PCIe", GpuType::H100),
    ("NVIDIA H200", GpuType::H200),
    ("NVIDIA B200", GpuType::B200),
    ("NVIDIA A100-SXM4-80GB", GpuType::A100_80GB),
    ("NVIDIA A100 80GB PCIe", GpuType::A100_80GB),
    ("NVIDIA L40S", GpuType::L40S),
    ("NVIDIA L40", GpuType::L40),
    ("NVIDIA L4", GpuType::L4),
    ("NVIDIA RTX A6000", GpuType::A6000),
    ("NVIDIA A40", GpuType::A40),
    ("Tesla V100-SXM2-32GB", GpuType::V100),
    ("Tesla V100-SXM2-16GB", GpuType::V100),
    ("Tesla V100-PCIE-32GB", GpuType::V100),
    ("Tesla V100-PCIE-16GB", GpuType::V100),
    ("Tesla V100-FHHL-16GB", GpuType::V100),
    ("NVIDIA GeForce RTX 5090", GpuType::RTX5090),
    ("NVIDIA GeForce RTX 4090", GpuType::RTX4090),
    ("NVIDIA GeForce RTX 3090", GpuType::RTX3090),
];

/// Secure-cloud data-center prefix (the id without its `-<n>`) → standard region.
const DATA_CENTERS: &[(&str, &str)] = &[
    ("US-GA", "us-east"),
    ("US-NC", "us-east"),
    ("US-MD", "us-east"),
    ("US-PA", "us-east"),
    ("US-DE", "us-east"),
    ("US-IL", "us-central"),
    ("US-KS", "us-central"),
    ("US-MO", "us-central"),
    ("US-NE", "us-central"),
    ("US-TX", "us-south"),
    ("US-CA", "us-west"),
    ("US-OR", "us-west"),
    ("US-WA", "us-west"),
    ("CA-MTL", "canada"),
    ("EU-NL", "eu-west"),
    ("EU-FR", "eu-west"),
    ("EU-RO", "eu-central"),
    ("EU-CZ", "eu-central"),
    ("EU-SE", "eu-north"),
    ("EU-DK", "eu-north"),
    ("EUR-IS", "eu-north"),
    ("EUR-NO", "eu-north"),
    ("AP-JP", "asia-east"),
    ("AP-IN", "asia-south"),
    ("SEA-SG", "asia-south"),
    ("OC-AU", "oceania"),
];

/// Community-cloud country code → standard region. `US` has none: it spans four regions.
const COUNTRIES: &[(&str, &str)] = &[
    ("CA", "canada"),
    ("GB", "eu-west"),
    ("FR", "eu-west"),
    ("NL", "eu-west"),
    ("BE", "eu-west"),
    ("IE", "eu-west"),
    ("ES", "eu-west"),
    ("DE", "eu-central"),
    ("CZ", "eu-central"),
    ("PL", "eu-central"),
    ("RO", "eu-central"),
    ("NO", "eu-north"),
    ("SE", "eu-north"),
    ("FI", "eu-north"),
    ("IS", "eu-north"),
    ("DK", "eu-north"),
    ("JP", "asia-east"),
    ("KR", "asia-east"),
    ("TW", "asia-east"),
    ("IN", "asia-south"),
    ("SG", "asia-south"),
    ("AU", "oceania"),
    ("NZ", "oceania"),
    ("BR", "south-america"),
];

/// The data center a launch "in region X" is sent to when no offer names one.
const REPRESENTATIVE: &[(&str, &str)] = &[
    ("us-east", "US-GA-1"),
    ("us-central", "US-KS-2"),
    ("us-west", "US-CA-2"),
    ("us-south", "US-TX-3"),
    ("canada", "CA-MTL-1"),
    ("eu-west", "EU-NL-1"),
    ("eu-central", "EU-RO-1"),
    ("eu-north", "EU-SE-1"),
    ("asia-east", "AP-JP-1"),
    ("asia-south", "AP-IN-1"),
    ("oceania", "OC-AU-1"),
];

/// The standard type of a RunPod `gpuTypeId`, if it has one.
pub fn standard_gpu(gpu_type_id: &str) -> Option<GpuType> {
    GPUS.iter().find(|(id, _)| *id == gpu_type_id).map(|(_, g)| *g)
}

/// RunPod's preferred `gpuTypeId` for a standard type.
pub fn runpod_gpu(gpu: GpuType) -> Option<&'static str> {
    GPUS.iter().find(|(_, g)| *g == gpu).map(|(id, _)| *id)
}

/// The standard region of a data-center id (`EU-RO-1`) or community country code (`CZ`).
pub fn standard_region(location: &str) -> Option<Region> {
    let name = if location.contains('-') {
        let (prefix, _) = location.rsplit_once('-')?;
        DATA_CENTERS.iter().find(|(p, _)| *p == prefix)?.1
    } else {
        COUNTRIES.iter().find(|(c, _)| *c == location)?.1
    };
    name.parse().ok()
}

/// A RunPod data center in a standard region.
pub fn runpod_region(region: &Region) -> Option<&'static str> {
    REPRESENTATIVE.iter().find(|(r, _)| *r == region.as_str()).map(|(_, dc)| *dc)
}

/// True for a secure-cloud data-center id, false for a community country code (dstack's rule).
pub fn is_data_center(location: &str) -> bool {
    location.contains('-')
}

#[cfg(test)]
mod tests {
    use super::{GPUS, REPRESENTATIVE, runpod_gpu, runpod_region, standard_gpu, standard_region};
    use tgp_events::Region;

    #[test]
    fn names_translate_both_ways() {
        for (id, gpu) in GPUS {
            assert_eq!(standard_gpu(id), Some(*gpu));
            assert!(standard_gpu(runpod_gpu(*gpu).unwrap()) == Some(*gpu));
        }
        assert_eq!(standard_gpu("NVIDIA H100 NVL"), None);
        assert_eq!(standard_region("US-TX-7").unwrap().as_str(), "us-south");
        assert_eq!(standard_region("CZ").unwrap().as_str(), "eu-central");
        assert_eq!(standard_region("US"), None);
        assert_eq!(standard_region("AF-ZA-1"), None);
        for (region, dc) in REPRESENTATIVE {
            let r: Region = region.parse().unwrap();
            assert_eq!(runpod_region(&r), Some(*dc));
            assert_eq!(standard_region(dc), Some(r));
        }
    }
}
