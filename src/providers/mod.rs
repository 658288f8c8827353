//! The real provider clients, each behind `tgp_actors::provider::ProviderClient`, and what they
//! share: HTTP plumbing with one error taxonomy ([`http`]), API-change reporting
//! ([`api_change`]), and configuration with redacted keys ([`config`]).
//!
//! One file per provider, each with its translation tables (GPU and region names, both ways) in
//! one place: [`vastai`], [`lambda`], [`runpod`], [`paperspace`].

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
