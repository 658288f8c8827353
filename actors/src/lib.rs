//! # tgp-actors: who decides
//!
//! The domain of tgp and its actors. Knows no concrete provider and no NATS: providers come in
//! through [`provider::ProviderClient`], the journal through cqrs-es's `PersistedEventRepository`.
//!
//! ## Layout
//! - [`provider`]: the `ProviderClient` trait every provider implements, and the normalized offer,
//!   machine and error shapes.
//! - [`provider_actor`]: one actor per provider: rate limiter, circuit breaker, retries, caches.
//! - [`selection`]: choosing the cheapest fitting offer, with a verdict for every candidate.
//! - [`evidence`]: what listings, status answers and unclear launch answers prove, and what they
//!   do not.
//! - [`keyring`]: sealing a launch's env values for the journal, and opening them to launch.
//! - [`aggregate`]: the instance aggregate, the rules of one chain's life (cqrs-es `Aggregate`).
//! - [`journal`]: committing an aggregate's decisions through any cqrs-es repository.
//! - [`instance_actor`]: one actix actor per live instance: decides, journals, then acts.
//! - [`supervisor`]: routes commands by instance id, rebuilds from the journal, polls status.
#![forbid(unsafe_code)]

pub mod aggregate;
pub mod clock;
pub mod evidence;
pub mod instance_actor;
pub mod journal;
pub mod keyring;
pub mod provider;
pub mod provider_actor;
pub mod selection;
pub mod supervisor;

#[cfg(test)]
mod aggregate_tests;
#[cfg(test)]
mod evidence_tests;
#[cfg(test)]
mod limit_tests;
