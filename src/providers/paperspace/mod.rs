//! Paperspace (DigitalOcean) machines through the public v1 API (`https://api.paperspace.com/v1`,
//! `Authorization: Bearer <key>`); the settings URL is the host root and `/v1/...` is appended.
//!
//! What makes Paperspace different, and why this client looks as it does:
//! - **No preemptible machines.** Every offer is on demand; a spot launch is `invalid_request`.
//! - **No price API** and no machine-type listing. Offers are the rows of a dated price table
//!   shipped with tgp ([`prices`]), checked against `GET /machine-availability`. The table's date
//!   is in every offer id (`A100-80G/NY2/prices-2026-11-27`) and logged when the client starts.
//! - Machines are VMs: the launch image chooses an OS template; SSH key and environment go into a
//!   run-once startup script ([`launch`]).
//! - An interruption is a machine turned `off` (or `stopping`) outside tgp.
//!
//! Options (`[paperspace] options` in tgp's configuration): `template_id` (the OS template for
//! `ubuntu:` images), `price_table` (a path replacing the shipped table), `disk_size` (GB,
//! default 100).

pub mod launch;
pub mod prices;
pub mod wire;

mod client;
mod machines;

pub use client::PaperspaceClient;
