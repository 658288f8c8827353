//! The standard GPU types. Every provider names its GPUs differently (`H100 SXM`, `gpu_1x_h100_pcie`,
//! `NVIDIA H100 80GB HBM3`); commands and events use only these names, and each provider client
//! translates both ways.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A GPU model as users ask for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum GpuType {
    /// NVIDIA B200 (192 GB).
    B200,
    /// NVIDIA H200 (141 GB).
    H200,
    /// NVIDIA H100 (80 GB), SXM or PCIe.
    H100,
    /// NVIDIA A100 80 GB.
    A100_80GB,
    /// NVIDIA A100 40 GB.
    A100_40GB,
    /// NVIDIA L40S (48 GB).
    L40S,
    /// NVIDIA L40 (48 GB).
    L40,
    /// NVIDIA RTX A6000 (48 GB).
    A6000,
    /// NVIDIA A40 (48 GB).
    A40,
    /// NVIDIA A10 (24 GB).
    A10,
    /// NVIDIA L4 (24 GB).
    L4,
    /// NVIDIA V100 (16 or 32 GB).
    V100,
    /// NVIDIA GeForce RTX 5090 (32 GB).
    RTX5090,
    /// NVIDIA GeForce RTX 4090 (24 GB).
    RTX4090,
    /// NVIDIA GeForce RTX 3090 (24 GB).
    RTX3090,
}

/// The name is not one of the standard GPU types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown GPU type {input:?}; known types: {}", GpuType::ALL.iter().map(|g| g.name()).collect::<Vec<_>>().join(", "))]
pub struct UnknownGpuType {
    /// The rejected name.
    pub input: String,
}

impl GpuType {
    /// Every standard type, for help texts and error messages.
    pub const ALL: [GpuType; 15] = [
        GpuType::B200,
        GpuType::H200,
        GpuType::H100,
        GpuType::A100_80GB,
        GpuType::A100_40GB,
        GpuType::L40S,
        GpuType::L40,
        GpuType::A6000,
        GpuType::A40,
        GpuType::A10,
        GpuType::L4,
        GpuType::V100,
        GpuType::RTX5090,
        GpuType::RTX4090,
        GpuType::RTX3090,
    ];

    /// The canonical name used on the wire (`A100-80GB`, `RTX4090`).
    pub fn name(self) -> &'static str {
        match self {
            GpuType::B200 => "B200",
            GpuType::H200 => "H200",
            GpuType::H100 => "H100",
            GpuType::A100_80GB => "A100-80GB",
            GpuType::A100_40GB => "A100-40GB",
            GpuType::L40S => "L40S",
            GpuType::L40 => "L40",
            GpuType::A6000 => "A6000",
            GpuType::A40 => "A40",
            GpuType::A10 => "A10",
            GpuType::L4 => "L4",
            GpuType::V100 => "V100",
            GpuType::RTX5090 => "RTX5090",
            GpuType::RTX4090 => "RTX4090",
            GpuType::RTX3090 => "RTX3090",
        }
    }

    /// Memory of one GPU in GB, for offers whose provider does not say.
    pub fn memory_gb(self) -> u32 {
        match self {
            GpuType::B200 => 192,
            GpuType::H200 => 141,
            GpuType::H100 | GpuType::A100_80GB => 80,
            GpuType::L40S | GpuType::L40 | GpuType::A6000 | GpuType::A40 => 48,
            GpuType::A100_40GB => 40,
            GpuType::RTX5090 => 32,
            GpuType::A10 | GpuType::L4 | GpuType::RTX4090 | GpuType::RTX3090 => 24,
            GpuType::V100 => 16,
        }
    }
}

impl FromStr for GpuType {
    type Err = UnknownGpuType;
    /// Case-insensitive; `-`, `_` and spaces are ignored, so `a100-80gb`, `A100_80GB` and
    /// `rtx 4090` all parse.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key: String = s.chars().filter(|c| !matches!(c, '-' | '_' | ' ')).map(|c| c.to_ascii_uppercase()).collect();
        GpuType::ALL
            .into_iter()
            .find(|g| g.name().replace('-', "") == key)
            .ok_or_else(|| UnknownGpuType { input: s.to_string() })
    }
}

impl TryFrom<String> for GpuType {
    type Error = UnknownGpuType;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<GpuType> for String {
    fn from(g: GpuType) -> String {
        g.name().to_string()
    }
}

impl fmt::Display for GpuType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips() {
        for g in GpuType::ALL {
            assert_eq!(g.name().parse::<GpuType>(), Ok(g));
        }
        assert_eq!("a100_80gb".parse(), Ok(GpuType::A100_80GB));
        assert_eq!("rtx 4090".parse(), Ok(GpuType::RTX4090));
    }

    #[test]
    fn unknown_names_say_what_is_known() {
        let err = "H1000".parse::<GpuType>().unwrap_err().to_string();
        assert!(err.contains("\"H1000\"") && err.contains("A100-80GB"), "{err}");
    }
}
