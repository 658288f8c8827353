//! # tgp: the concrete parts
//!
//! Where every wire, disk and network detail lives; the domain is in `tgp-actors`, the contract in
//! `tgp-events`. Only what runs in production is here: the fake providers, the simulated markets,
//! the simulation and the benchmarks are in the `tgp-testkit` crate (`testkit/`).
//!
//! ## Layout
//! - [`journal`]: the JetStream journal (tgp-actors' `Journal`), its reader, the quarantine of
//!   messages that do not decode, the NATS layout, and the guard that notices a stream changed
//!   under a running tgp.
//! - [`nats_server`]: starting a private `nats-server` for `tgp run`, `tgp-dev demo`, tests and benches.
//! - [`connect`]: connecting to NATS with credentials and TLS, redacting URLs, checking the
//!   server version.
//! - [`secrets`]: the secrets key files, and env values kept out of dead letters.
//! - [`intake`]: the durable command stream and the dead letters.
//! - [`consumers`]: how tgp's own NATS consumers heal after an outage or a deleted consumer.
//! - [`controller_events`]: journaling what happens to tgp itself.
//! - [`projections`]: folds of the journal: cost, prices paid, Prometheus metrics, the index of
//!   unfinished chains, and their runtime.
//! - [`audit`]: `tgp audit`'s replay of a time range; [`chart`]: its SVG chart.
//! - [`provider_events`]: provider events (circuit, limits, API changes) into the journal.
//! - [`offers`]: offers across providers, cheapest first, with how each provider answered.
//! - [`api`]: the `tgp.api.*` request/reply service.
//! - [`empty_journal`]: refusing to start over an empty journal while tgp's machines run.
//! - [`leader`]: the lease that makes one of several `tgp run` processes the leader, renewed on a
//!   thread of its own ([`leader::renewal`]).
//! - [`who_leads`]: `tgp.api.leader`, answered by leader and standbys alike.
//! - [`readiness`]: whether this process could act at once (leader, or warm standby), and its
//!   HTTP probe.
//! - [`controller`]: everything above assembled into a running controller.
//! - [`providers`]: the four providers' HTTP clients, their configuration and how their answers
//!   are checked.
//! - [`render`]: one-line descriptions of events for the CLI.
//! - [`task`]: a spawned task that ends with its owner.
//! - [`cli`]: the `tgp` command line (`src/main.rs` is its edge).
#![forbid(unsafe_code)]

pub mod api;
pub mod audit;
pub mod chart;
pub mod cli;
pub mod connect;
pub mod consumers;
pub mod controller;
pub mod controller_events;
pub mod empty_journal;
pub mod intake;
pub mod journal;
pub mod leader;
pub mod nats_server;
pub mod offers;
pub mod projections;
pub mod provider_events;
pub mod providers;
pub mod readiness;
pub mod render;
pub mod secrets;
pub mod task;
pub mod who_leads;
