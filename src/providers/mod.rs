//! The real provider clients, each behind `tgp_actors::provider::ProviderClient`, and what they
//! share: HTTP plumbing with one error taxonomy ([`http`]), API-change reporting
//! ([`api_change`]), configuration with redacted keys ([`config`]), and the one way a client reads
//! its key, options and timeout ([`options`]).
//!
//! One folder per provider ([`vastai`], [`lambda`], [`runpod`], [`paperspace`]), all laid out the
//! same way: `mod.rs` holds the module doc (the API and the options), the client type, its
//! `from_settings` and its `ProviderClient` impl; `wire.rs` the provider's JSON shapes and its
//! error-body parser; `names.rs` the translation tables, GPU and region names both ways, where
//! they are more than a few lines (Paperspace's few are in `wire.rs`); and one file per further
//! concern, named for it: `offers.rs`, `launch.rs`, RunPod's `graphql.rs`, Paperspace's
//! `prices.rs` (its dated price table) and `machines.rs` (the calls that launch and terminate).
//! Files import what they use by name, never `use super::*`.

pub mod api_change;
pub mod config;
pub mod http;
pub mod lambda;
pub mod options;
pub mod paperspace;
pub mod runpod;
pub mod vastai;

use std::sync::Arc;

use tgp_actors::provider::ProviderClient;
use tgp_events::api::ProviderAnswer;

use self::api_change::ApiChangeReporter;
use self::config::{ProviderKind, ProviderSettings};

/// Whole GB (10^9 bytes, what a launch asks in) in `gib` GiB (2^30 bytes, what Lambda's specs and
/// Paperspace's spec table give), rounded down so an offer never claims more than it has.
pub fn gib_to_gb(gib: u32) -> Option<u32> {
    u32::try_from(u64::from(gib) * 1_073_741_824 / 1_000_000_000).ok()
}

/// A client for every enabled provider, and an answer for each one left out (no key, disabled,
/// or a configuration its client refuses), so `tgp offers` can say why.
pub fn build(
    settings: &[ProviderSettings],
    reporter: &ApiChangeReporter,
) -> (Vec<Arc<dyn ProviderClient>>, Vec<ProviderAnswer>) {
    let mut clients: Vec<Arc<dyn ProviderClient>> = Vec::new();
    let mut skipped = Vec::new();
    for s in settings {
        let name = s.kind.name().to_string();
        if let Some(why) = &s.disabled {
            let status = if s.key.is_none() { "no_key" } else { "disabled" };
            skipped.push(ProviderAnswer { provider: name, status: status.into(), message: why.clone() });
            continue;
        }
        let reporter = reporter.clone();
        let built: Result<Arc<dyn ProviderClient>, _> = match s.kind {
            ProviderKind::VastAi => vastai::VastAiClient::from_settings(s, reporter).map(|c| Arc::new(c) as _),
            ProviderKind::Lambda => lambda::LambdaClient::from_settings(s, reporter).map(|c| Arc::new(c) as _),
            ProviderKind::RunPod => runpod::RunPodClient::from_settings(s, reporter).map(|c| Arc::new(c) as _),
            ProviderKind::Paperspace => {
                paperspace::PaperspaceClient::from_settings(s, reporter).map(|c| Arc::new(c) as _)
            }
        };
        match built {
            Ok(client) => clients.push(client),
            Err(e) => skipped.push(ProviderAnswer { provider: name, status: "error".into(), message: e.to_string() }),
        }
    }
    (clients, skipped)
}
