//! # tgp-testkit: everything that is not the product
//!
//! The fake provider servers, the simulated markets, the simulation and the benchmarks, and the
//! `tgp-dev` binary that runs them beside `tgp`. The product crate (`tgp`) depends on none of it;
//! its integration tests do (a dev-dependency), and so do `scripts/demo` and the benchmarks.
//!
//! ## Layout
//! - [`fakes`]: the four providers' fake HTTP servers, speaking their real wire formats, with
//!   seeded offers, machines that boot and stop, and misbehaviour on cue; [`fakes::market`] starts
//!   all four as one market.
//! - [`market`]: the in-memory market behind the `ProviderClient` trait: a seeded catalog,
//!   machines, a clock, a misbehaviour schedule and cues. `tgp-dev run --market simulated` runs on
//!   it quiet (its machines can be kept in a file so they survive a controller's restart), and
//!   `tgp-dev sim` with every misfortune on.
//! - [`cues`]: the `tgp.sim.*` subjects a `tgp-dev run` serves, to take machines away on cue.
//! - [`sim`]: `tgp-dev sim`, many instances over simulated hours on a paused clock, on three
//!   in-memory markets, and its checks.
//! - [`dev`]: the `tgp-dev` command line: `run` and `offers` on the local markets, `demo`, `sim`
//!   and `bench` (`src/main.rs` is its edge).
#![forbid(unsafe_code)]

pub mod cues;
pub mod dev;
pub mod fakes;
pub mod market;
pub mod sim;
