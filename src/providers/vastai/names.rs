//! Vast.ai's names and tgp's, both ways, in one place (shared/providers/vastai.md section 7).
//!
//! GPUs: Vast's `gpu_name` values (`"H100 SXM"`, `"RTX A6000"`); the A100's 40 and 80 GB cards share
//! one name, so `gpu_ram` (MB, a little under nominal) tells them apart. Regions: Vast has none, only
//! a host-written `geolocation` (`"Texas, US"`); the last two-letter country code is dependable, and
//! for the United States the state picks the standard region. A name with no translation gives
//! `None`: the offer is kept (marked), never dropped.

use tgp_events::{GpuType, Region};

/// Vast `gpu_name` values per standard type. The first is what `translate_gpu` answers.
const GPUS: &[(GpuType, &[&str])] = &[
    (GpuType::B200, &["B200"]),
    (GpuType::H200, &["H200", "H200 NVL"]),
    (GpuType::H100, &["H100 SXM", "H100 PCIE"]),
    (GpuType::A100_80GB, &["A100 SXM4", "A100 PCIE"]),
    (GpuType::A100_40GB, &["A100 SXM4", "A100 PCIE"]),
    (GpuType::L40S, &["L40S"]),
    (GpuType::L40, &["L40"]),
    (GpuType::A6000, &["RTX A6000"]),
    (GpuType::A40, &["A40"]),
    (GpuType::A10, &["A10"]),
    (GpuType::L4, &["L4"]),
    (GpuType::V100, &["Tesla V100"]),
    (GpuType::RTX5090, &["RTX 5090"]),
    (GpuType::RTX4090, &["RTX 4090"]),
    (GpuType::RTX3090, &["RTX 3090"]),
];

/// Below this many MB of `gpu_ram`, an A100 is the 40 GB card (40960 vs 81920 seen).
const A100_80GB_MIN_MB: u64 = 60_000;

/// US states (full names and postal codes) per standard region.
const US_STATES: &[(&str, &[&str])] = &[
    (
        "us-east",
        &[
            "Maine",
            "ME",
            "New Hampshire",
            "NH",
            "Vermont",
            "VT",
            "Massachusetts",
            "MA",
            "Rhode Island",
            "RI",
            "Connecticut",
            "CT",
            "New York",
            "NY",
            "New Jersey",
            "NJ",
            "Pennsylvania",
            "PA",
            "Delaware",
            "DE",
            "Maryland",
            "MD",
            "District of Columbia",
            "DC",
            "Virginia",
            "VA",
            "West Virginia",
            "WV",
            "Ohio",
            "OH",
            "North Carolina",
            "NC",
            "South Carolina",
            "SC",
            "Georgia",
            "GA",
            "Florida",
            "FL",
        ],
    ),
    (
        "us-central",
        &[
            "North Dakota",
            "ND",
            "South Dakota",
            "SD",
            "Nebraska",
            "NE",
            "Kansas",
            "KS",
            "Minnesota",
            "MN",
            "Iowa",
            "IA",
            "Missouri",
            "MO",
            "Wisconsin",
            "WI",
            "Illinois",
            "IL",
            "Indiana",
            "IN",
            "Michigan",
            "MI",
        ],
    ),
    (
        "us-south",
        &[
            "Texas",
            "TX",
            "Oklahoma",
            "OK",
            "Arkansas",
            "AR",
            "Louisiana",
            "LA",
            "Mississippi",
            "MS",
            "Alabama",
            "AL",
            "Tennessee",
            "TN",
            "Kentucky",
            "KY",
            "New Mexico",
            "NM",
        ],
    ),
    (
        "us-west",
        &[
            "Washington",
            "WA",
            "Oregon",
            "OR",
            "California",
            "CA",
            "Nevada",
            "NV",
            "Idaho",
            "ID",
            "Montana",
            "MT",
            "Wyoming",
            "WY",
            "Utah",
            "UT",
            "Colorado",
            "CO",
            "Arizona",
            "AZ",
            "Alaska",
            "AK",
            "Hawaii",
            "HI",
        ],
    ),
];

/// Country codes per standard region (outside the United States). Countries not listed (Mexico,
/// Africa, the Middle East, ...) have no standard region: their offers are kept, marked.
const COUNTRIES: &[(&str, &[&str])] = &[
    ("canada", &["CA"]),
    ("eu-west", &["GB", "UK", "IE", "FR", "NL", "BE", "LU", "ES", "PT"]),
    ("eu-central", &["DE", "AT", "CH", "IT", "PL", "CZ", "SK", "HU", "SI", "HR", "RO", "BG", "RS", "GR", "UA", "MD"]),
    ("eu-north", &["SE", "NO", "FI", "DK", "IS", "EE", "LV", "LT"]),
    ("asia-east", &["JP", "KR", "TW", "HK", "CN", "MO", "MN"]),
    ("asia-south", &["IN", "SG", "TH", "VN", "MY", "ID", "PH", "BD", "PK", "LK", "NP"]),
    ("oceania", &["AU", "NZ"]),
    ("south-america", &["BR", "AR", "CL", "CO", "PE", "UY", "PY", "BO", "EC", "VE"]),
];

/// Countries that hosts sometimes spell out instead of giving the code.
const COUNTRY_NAMES: &[(&str, &str)] = &[
    ("united states", "US"),
    ("usa", "US"),
    ("canada", "CA"),
    ("united kingdom", "GB"),
    ("germany", "DE"),
    ("france", "FR"),
    ("netherlands", "NL"),
    ("sweden", "SE"),
    ("japan", "JP"),
    ("australia", "AU"),
    ("brazil", "BR"),
    ("india", "IN"),
];

/// Continent suffixes SkyPilot's `georegion=true` appends (`"Texas, US, NA"`).
const CONTINENT_SUFFIXES: &[&str] = &["NA", "SA", "EU", "AS", "OC", "AF"];

/// The Vast names of a standard GPU type, first the one to show.
pub fn vast_gpu_names(gpu: GpuType) -> &'static [&'static str] {
    GPUS.iter().find(|(g, _)| *g == gpu).map(|(_, names)| *names).unwrap_or(&[])
}

/// The `gpu_ram` bounds (MB) a standard type needs besides its name: only the A100 halves.
pub fn gpu_ram_bounds(gpu: GpuType) -> (Option<u64>, Option<u64>) {
    match gpu {
        GpuType::A100_80GB => (Some(A100_80GB_MIN_MB), None),
        GpuType::A100_40GB => (None, Some(A100_80GB_MIN_MB)),
        _ => (None, None),
    }
}

/// The standard type of a Vast `gpu_name` (trimmed, case ignored); `gpu_ram` in MB decides the
/// A100 size, and an A100 without it has no standard type.
pub fn gpu_type(vast_name: &str, gpu_ram_mb: Option<u64>) -> Option<GpuType> {
    let name = vast_name.trim();
    let mut candidates =
        GPUS.iter().filter(|(_, names)| names.iter().any(|n| n.eq_ignore_ascii_case(name))).map(|(g, _)| *g);
    let first = candidates.next()?;
    match first {
        GpuType::A100_80GB | GpuType::A100_40GB => match gpu_ram_mb? {
            mb if mb >= A100_80GB_MIN_MB => Some(GpuType::A100_80GB),
            _ => Some(GpuType::A100_40GB),
        },
        other => Some(other),
    }
}

/// The country codes a standard region covers: what the server-side `geolocation` filter takes.
pub fn region_countries(region: &Region) -> Vec<&'static str> {
    if region.as_str().starts_with("us-") {
        return vec!["US"];
    }
    COUNTRIES.iter().find(|(r, _)| *r == region.as_str()).map(|(_, ccs)| ccs.to_vec()).unwrap_or_default()
}

/// The country code of a `geolocation` string: its last part when that is two letters (a
/// continent suffix skipped), or a spelled-out country name.
pub fn country_code(geolocation: &str) -> Option<String> {
    let parts: Vec<&str> = geolocation.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
    let mut last = *parts.last()?;
    if parts.len() >= 3 && CONTINENT_SUFFIXES.contains(&last) {
        last = parts.get(parts.len() - 2).copied().unwrap_or(last);
    }
    if last.len() == 2 && last.chars().all(|c| c.is_ascii_alphabetic()) {
        return Some(last.to_ascii_uppercase());
    }
    let lower = last.to_lowercase();
    COUNTRY_NAMES.iter().find(|(name, _)| *name == lower).map(|(_, cc)| cc.to_string())
}

/// The standard region of a `geolocation` string: by country, and for the United States by state
/// (`", US"`, a state-less US location, has none).
pub fn region(geolocation: &str) -> Option<Region> {
    let cc = country_code(geolocation)?;
    let name = if cc == "US" {
        let place_parts: Vec<&str> = geolocation.split(',').map(str::trim).collect();
        US_STATES
            .iter()
            .find(|(_, states)| {
                place_parts.iter().rev().skip(1).any(|p| states.iter().any(|s| s.eq_ignore_ascii_case(p)))
            })
            .map(|(r, _)| *r)?
    } else {
        COUNTRIES.iter().find(|(_, ccs)| ccs.contains(&cc.as_str())).map(|(r, _)| *r)?
    };
    name.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::{gpu_ram_bounds, gpu_type, region, region_countries, vast_gpu_names};
    use tgp_events::{GpuType, Region};

    #[test]
    fn gpu_names_translate_both_ways() {
        assert_eq!(gpu_type("H100 SXM", Some(81559)), Some(GpuType::H100));
        assert_eq!(gpu_type(" rtx 4090 ", None), Some(GpuType::RTX4090));
        assert_eq!(gpu_type("A100 PCIE", Some(40960)), Some(GpuType::A100_40GB));
        assert_eq!(gpu_type("A100 SXM4", Some(81920)), Some(GpuType::A100_80GB));
        assert_eq!(gpu_type("A100 SXM4", None), None);
        assert_eq!(gpu_type("H100 NVL", Some(95830)), None);
        assert_eq!(gpu_type("RTX 6000Ada", None), None);
        for gpu in GpuType::ALL {
            let name = vast_gpu_names(gpu)[0];
            let (low, _) = gpu_ram_bounds(gpu);
            let ram = low.map(|l| l + 1).unwrap_or(40960);
            assert_eq!(gpu_type(name, Some(ram)), Some(gpu), "{name}");
        }
    }

    #[test]
    fn geolocations_translate() {
        let r = |s: &str| region(s).map(|r| r.to_string());
        assert_eq!(r("Texas, US").as_deref(), Some("us-south"));
        assert_eq!(r("California, United States").as_deref(), Some("us-west"));
        assert_eq!(r("Virginia, US, NA").as_deref(), Some("us-east"));
        assert_eq!(r("Quebec, CA").as_deref(), Some("canada"));
        assert_eq!(r("Sweden, SE").as_deref(), Some("eu-north"));
        assert_eq!(r("Yutakachō, Shinagawa District, Tokyo, JP").as_deref(), Some("asia-east"));
        assert_eq!(r(", US"), None);
        assert_eq!(r("Nairobi, KE"), None);
        assert_eq!(r(""), None);
        for name in tgp_events::region::STANDARD_REGIONS {
            let region: Region = name.parse().unwrap();
            assert!(!region_countries(&region).is_empty(), "{name}");
        }
    }
}
