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
pub mod paperspace;
pub mod runpod;
pub mod vastai;
