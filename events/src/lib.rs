//! # tgp-events: the wire contract of tgp
//!
//! ## Layout
//! - [`money`] (`money.rs`): exact decimal US dollars (never a float).
//! - [`ids`] (`ids.rs`): instance, attempt and provider identifiers, and the idempotency-key rule.
//! - [`gpu`] (`gpu.rs`): the standard GPU types and their parsing.
//! - [`region`] (`region.rs`): the standard regions each provider client translates to its own.
//! - [`span`] (`span.rs`): spans of time as people write them (`90s`, `1h30m`), in whole seconds.
//! - [`policy`] (`policy.rs`): spot policy, relaunch policy and billing granularity.
//! - [`commands`] (`commands.rs`): the launch and terminate commands, and their validation.
//! - [`needs`] (`needs.rs`): what a machine must have beyond its GPUs (disk, RAM, vCPUs, hosts).
//! - [`sealed`] (`sealed.rs`): env values as plain secrets (memory only) and sealed (the journal).
//! - [`limits`] (`limits.rs`): the largest value each command field may hold, and how refusals quote.
//! - [`ssh_key`] (`ssh_key.rs`): the one form of SSH public key a launch accepts.
//! - [`events`] (`events.rs`): the instance lifecycle events and their schema version.
//! - [`commit`] (`commit.rs`): the journal's bytes: one commit to a message body and back.
//! - [`provider_events`] (`provider_events.rs`): what happens to providers (circuit, rate limits, API changes).
//! - [`controller_events`] (`controller_events.rs`): what happens to tgp itself (a consumer recovered).
//! - [`api`] (`api.rs`): request/reply bodies of the `tgp.api.*` service.
//! - [`subjects`] (`subjects.rs`): subjects, streams, buckets and headers.
//!
//! Everything another program needs to talk to tgp over NATS, and nothing that does I/O:
//! the commands it accepts, the events it journals, the value types both are made of, and the
//! NATS subject, stream and header names. Depend on this crate instead of copying strings.
#![forbid(unsafe_code)]

pub mod api;
pub mod commands;
pub mod commit;
pub mod controller_events;
pub mod events;
pub mod gpu;
pub mod ids;
pub mod limits;
pub mod money;
pub mod needs;
pub mod policy;
pub mod provider_events;
pub mod region;
pub mod sealed;
pub mod span;
pub mod ssh_key;
pub mod subjects;

pub use commands::{LaunchCommand, LaunchRequest, TerminateCommand};
pub use events::InstanceEvent;
pub use gpu::GpuType;
pub use ids::{AttemptId, InstanceId, ProviderName};
pub use money::Money;
pub use needs::Needs;
pub use policy::{BillingGranularity, BillingUnit, RelaunchPolicy, SpotPolicy};
pub use region::Region;
pub use span::Span;
