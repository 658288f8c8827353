//! The machine-shape flags `tgp launch` and `tgp offers` share, so an offers listing can be asked
//! exactly what a launch will ask.

use clap::Args;
use rust_decimal::Decimal;
use tgp_events::{Needs, ProviderName};

/// The help heading of these flags (per flag, so it does not carry over to later options).
const HEADING: &str = "Machine shape";

/// Disk, CPU, host and provider flags.
#[derive(Args, Clone, Debug, Default)]
pub struct NeedsArgs {
    /// Disk for the machine in GB, priced in where the provider bills it (Vast's storage);
    /// default each provider's own (Vast 40, RunPod 50, Paperspace 100; Lambda's is fixed per type).
    #[arg(long, value_name = "GB", help_heading = HEADING)]
    pub disk_gb: Option<u32>,
    /// At least this much CPU RAM in GB; offers that do not say are left out.
    #[arg(long, value_name = "GB", help_heading = HEADING)]
    pub min_cpu_ram_gb: Option<u32>,
    /// At least this many vCPUs; offers that do not say are left out.
    #[arg(long, value_name = "N", help_heading = HEADING)]
    pub min_vcpus: Option<u32>,
    /// Only these providers, by configured name (repeat or comma-separate).
    #[arg(long = "provider", value_delimiter = ',', value_name = "NAME", help_heading = HEADING)]
    pub providers: Vec<ProviderName>,
    /// Never these providers (repeat or comma-separate).
    #[arg(long = "exclude-provider", value_delimiter = ',', value_name = "NAME", help_heading = HEADING)]
    pub exclude_providers: Vec<ProviderName>,
    /// At least this host reliability, 0 to 1 (only Vast gives a score, so this leaves only Vast).
    #[arg(long, value_name = "SCORE", help_heading = HEADING)]
    pub min_reliability: Option<Decimal>,
    /// Only secure hosts: RunPod's secure cloud, Vast's datacenter hosts, Lambda and Paperspace.
    #[arg(long, help_heading = HEADING)]
    pub secure_only: bool,
}

impl NeedsArgs {
    /// The flags as the requirements a launch or an offers request carries, checked.
    pub fn needs(&self) -> anyhow::Result<Needs> {
        let needs = Needs {
            disk_gb: self.disk_gb,
            min_cpu_ram_gb: self.min_cpu_ram_gb,
            min_vcpus: self.min_vcpus,
            providers: self.providers.clone(),
            exclude_providers: self.exclude_providers.clone(),
            min_reliability: self.min_reliability,
            secure_only: self.secure_only,
        };
        needs.validate().map_err(anyhow::Error::msg)?;
        Ok(needs)
    }
}
