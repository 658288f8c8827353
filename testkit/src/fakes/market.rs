//! The fake market: the four providers' fakes on loopback, with the real clients pointed at them.
//! It is what `tgp-dev demo` runs on, and what `tgp-dev run --market fakes` gives a user who wants to try
//! tgp end to end without accounts: the same clients that would talk to Vast.ai, Lambda, RunPod and
//! Paperspace, speaking the same wire formats, to servers on this machine.

use std::collections::BTreeMap;
use std::time::Duration;

use super::FakeProvider;
pub use super::lambda::DEMO_SSH_KEY_NAME;
use super::lambda::{LambdaFake, LambdaFakeConfig};
use super::paperspace::{PaperspaceFake, PaperspaceFakeConfig};
use super::runpod::{RunPodFake, RunPodFakeConfig};
use super::vastai::{VastAiFake, VastAiFakeConfig};
use crate::cues::MarketCues;
use tgp::providers::config::{ApiKey, ProviderKind, ProviderSettings};

/// The key every fake accepts.
pub const FAKE_KEY: &str = "test-key";

/// The four fakes.
pub struct FakeMarket {
    /// Vast.ai.
    pub vastai: VastAiFake,
    /// Lambda.
    pub lambda: LambdaFake,
    /// RunPod.
    pub runpod: RunPodFake,
    /// Paperspace.
    pub paperspace: PaperspaceFake,
}

impl FakeMarket {
    /// Starts the four fakes with one seed and one boot delay.
    pub async fn start(seed: u64, boot_delay: Duration) -> std::io::Result<Self> {
        let lambda = LambdaFake::start(LambdaFakeConfig { seed, boot_delay, ..Default::default() }).await?;
        lambda.add_demo_ssh_key();
        Ok(FakeMarket {
            vastai: VastAiFake::start(VastAiFakeConfig { seed, boot_delay, ..Default::default() }).await?,
            lambda,
            runpod: RunPodFake::start(RunPodFakeConfig { seed, boot_delay, ..Default::default() }).await?,
            paperspace: PaperspaceFake::start(PaperspaceFakeConfig { seed, boot_delay, ..Default::default() }).await?,
        })
    }

    fn fakes(&self) -> [(&dyn FakeProvider, ProviderKind); 4] {
        [
            (&self.vastai, ProviderKind::VastAi),
            (&self.lambda, ProviderKind::Lambda),
            (&self.runpod, ProviderKind::RunPod),
            (&self.paperspace, ProviderKind::Paperspace),
        ]
    }

    /// Settings that point each real client at its fake.
    pub fn settings(&self) -> Vec<ProviderSettings> {
        self.fakes().into_iter().map(|(fake, kind)| client_settings(fake, kind)).collect()
    }
}

/// Settings that point the real client of `kind` at `fake`: the fakes' key, and for Lambda no
/// launch spacing and the demo SSH key ([`LambdaFake::add_demo_ssh_key`] registers it).
pub fn client_settings(fake: &dyn FakeProvider, kind: ProviderKind) -> ProviderSettings {
    let mut options = BTreeMap::new();
    if kind == ProviderKind::Lambda {
        options.insert("ssh_key_name".to_string(), DEMO_SSH_KEY_NAME.to_string());
        options.insert("launch_interval_ms".to_string(), "0".to_string());
        options.insert("launches_per_minute".to_string(), "0".to_string());
    }
    ProviderSettings { kind, url: fake.url(), key: Some(ApiKey::new(FAKE_KEY)), options, disabled: None }
}

impl MarketCues for FakeMarket {
    fn interrupt(&self, machine_id: &str) -> bool {
        self.fakes().into_iter().any(|(fake, _)| fake.interrupt(machine_id))
    }

    fn live_machines(&self) -> Vec<String> {
        self.fakes().into_iter().flat_map(|(fake, _)| fake.live_machines()).collect()
    }

    fn cue(&self, _: &crate::market::MarketCue) -> Result<(), String> {
        Err("the fake providers take their cues per provider, in their own wire format (testkit/src/fakes); \
             market cues are the simulated market's"
            .into())
    }
}
