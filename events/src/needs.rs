//! What a machine must have beyond its GPUs: disk, CPU RAM, vCPUs, host standing, and which
//! providers may supply it. A launch and an offers request carry the same fields (flat in their
//! JSON, as SkyPilot's and dstack's resource specs are); [`Needs`] gathers them so that selection,
//! the offers listing and each provider client read one value.
//!
//! Every field is optional and the default asks nothing, so a launch journaled before these
//! fields existed reads back unchanged.

use rust_decimal::Decimal;

use crate::ids::ProviderName;

/// The largest disk a launch may ask for, in GB (no provider offers more on one machine).
pub const MAX_DISK_GB: u32 = 65_536;

/// The most CPU RAM a launch may ask for, in GB.
pub const MAX_CPU_RAM_GB: u32 = 16_384;

/// The most vCPUs a launch may ask for.
pub const MAX_VCPUS: u32 = 4_096;

/// The most providers an allow list or a deny list may name.
pub const MAX_PROVIDER_NAMES: usize = 16;

/// A machine's requirements beyond GPU type, count, region and price.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// Disk for the machine, in GB. Priced in where the provider bills it (Vast's storage), and
    /// asked of the provider at launch; `None` leaves each provider's own default.
    pub disk_gb: Option<u32>,
    /// At least this much CPU RAM for the machine (the renter's share on a shared host), in GB.
    pub min_cpu_ram_gb: Option<u32>,
    /// At least this many vCPUs for the machine (the renter's share on a shared host).
    pub min_vcpus: Option<u32>,
    /// Only these providers (empty: all configured ones).
    pub providers: Vec<ProviderName>,
    /// Never these providers.
    pub exclude_providers: Vec<ProviderName>,
    /// At least this host reliability score, from 0 to 1 (Vast's `reliability2`); offers whose
    /// provider gives no score are excluded.
    pub min_reliability: Option<Decimal>,
    /// Only secure hosts: RunPod's secure cloud, Vast's datacenter hosts, and the providers that
    /// run their own datacenters (Lambda, Paperspace).
    pub secure_only: bool,
}

impl Needs {
    /// Whether the needs let this provider supply the machine at all.
    pub fn allows(&self, provider: &ProviderName) -> bool {
        (self.providers.is_empty() || self.providers.contains(provider)) && !self.exclude_providers.contains(provider)
    }

    /// Checks the values the types alone cannot, with a message meant for the person who wrote
    /// them.
    pub fn validate(&self) -> Result<(), String> {
        let bounded = |what: &str, value: Option<u32>, max: u32| match value {
            Some(v) if v == 0 || v > max => Err(format!("{what} must be 1 to {max}, got {v}")),
            _ => Ok(()),
        };
        bounded("disk_gb", self.disk_gb, MAX_DISK_GB)?;
        bounded("min_cpu_ram_gb", self.min_cpu_ram_gb, MAX_CPU_RAM_GB)?;
        bounded("min_vcpus", self.min_vcpus, MAX_VCPUS)?;
        if let Some(r) = self.min_reliability
            && (r < Decimal::ZERO || r > Decimal::ONE)
        {
            return Err(format!("min_reliability must be from 0 to 1, got {r}"));
        }
        for (what, list) in [("providers", &self.providers), ("exclude_providers", &self.exclude_providers)] {
            if list.len() > MAX_PROVIDER_NAMES {
                return Err(format!("{what} lists {}, at most {MAX_PROVIDER_NAMES}", list.len()));
            }
        }
        if let Some(both) = self.providers.iter().find(|p| self.exclude_providers.contains(p)) {
            return Err(format!("provider {both} is both in providers and in exclude_providers"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ProviderName {
        s.parse().unwrap()
    }

    #[test]
    fn the_default_asks_nothing_and_allows_every_provider() {
        let needs = Needs::default();
        assert!(needs.validate().is_ok());
        assert!(needs.allows(&name("vastai")));
    }

    #[test]
    fn lists_and_bounds_are_checked() {
        let allow = Needs { providers: vec![name("lambda")], ..Needs::default() };
        assert!(allow.allows(&name("lambda")) && !allow.allows(&name("vastai")));
        let deny = Needs { exclude_providers: vec![name("vastai")], ..Needs::default() };
        assert!(!deny.allows(&name("vastai")) && deny.allows(&name("lambda")));
        let both =
            Needs { providers: vec![name("vastai")], exclude_providers: vec![name("vastai")], ..Needs::default() };
        assert!(both.validate().unwrap_err().contains("both"));
        let zero_disk = Needs { disk_gb: Some(0), ..Needs::default() };
        assert!(zero_disk.validate().unwrap_err().contains("disk_gb must be 1 to"));
        let over = Needs { min_reliability: Some(Decimal::new(15, 1)), ..Needs::default() };
        assert!(over.validate().unwrap_err().contains("min_reliability"));
    }
}
