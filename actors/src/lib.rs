//! # tgp-actors: who decides
//!
//! ## Layout
//! - [`provider`] (`provider.rs`): the `ProviderClient` trait, and the normalized offer, machine and error shapes.
//! - [`provider_actor`] (`provider_actor/`): one actor per provider; its files are listed in its own doc.
//! - [`selection`] (`selection.rs`): choosing the cheapest fitting offer, with a verdict for every candidate.
//! - [`shortfall`] (`shortfall.rs`): where an offer falls short of a launch's disk, CPU, host and provider needs.
//! - [`evidence`] (`evidence.rs`): what listings, status answers and unclear launch answers prove, and not.
//! - [`keyring`] (`keyring.rs`): sealing a launch's env values for the journal, and opening them to launch.
//! - [`clock`] (`clock.rs`): where the lifecycle's time comes from (the wall clock, or tokio's in `tgp-dev sim`).
//! - [`aggregate`] (`aggregate.rs`): the instance aggregate, the rules of one chain's life (cqrs-es).
//! - [`journal`] (`journal.rs`): the [`journal::Journal`] trait, and committing one decision to it.
//! - [`fence`] (`fence.rs`): what stops a controller whose lease is lost from reaching providers.
//! - [`instance_actor`] (`instance_actor.rs`): one actix actor per live instance: decides, journals, acts.
//! - [`supervisor`] (`supervisor.rs`): routes commands by instance id, rebuilds from the journal, polls.
//! - [`system`] (`system.rs`): the one way to assemble providers, their actors and the supervisor.
//! - `aggregate_tests.rs`: given/when/then tests of every transition and refusal of the aggregate.
//! - `evidence_tests.rs`: the evidence rules, one by one, on hand-built chains and listings.
//! - `limit_tests.rs`: tests of the launch limits (lifetime, budget) and of the relaunch backoff.
//!
//! The domain of tgp and its actors. Knows no concrete provider and no NATS: providers come in
//! through [`provider::ProviderClient`], the journal through [`journal::Journal`].
#![forbid(unsafe_code)]

pub mod aggregate;
pub mod clock;
pub mod evidence;
pub mod fence;
pub mod instance_actor;
pub mod journal;
pub mod keyring;
pub mod provider;
pub mod provider_actor;
pub mod selection;
pub mod shortfall;
pub mod supervisor;
pub mod system;

#[cfg(test)]
mod aggregate_tests;
#[cfg(test)]
mod evidence_tests;
#[cfg(test)]
mod limit_tests;
