//! One actix actor per provider: it owns the provider's client, rate limiter, circuit breaker and
//! caches, and nothing else calls the provider. The rest of tgp talks to it through
//! [`ProviderHandle`], which implements the same `ProviderClient` trait, so the instance actors and
//! selection do not change when limits, breakers and caches are put in front of a provider.
//!
//! # What every call goes through
//! 1. Disabled providers refuse new work (offers, launches); status and terminate still go.
//! 2. Offers: a fresh cached answer for the same filter is returned; a call already in flight for
//!    it is joined (single flight). Offerings marked unavailable (capacity errors, interruptions)
//!    are removed from answers until their TTL passes.
//! 3. The circuit breaker admits the call, lets it through as the half-open probe, or fails it fast.
//! 4. Each attempt takes a token; when tokens are scarce the attempt queues and they go to
//!    terminate, then launch, then status, then offers. A 429 pauses the provider (its
//!    `Retry-After`, or backoff with jitter) and halves the rate, which climbs back to the
//!    configured one within a minute of the last 429 (`limiter.rs`); the configured budget is
//!    never exceeded.
//!    A launch on a provider with launch spacing (`RateLimits::launches`) first waits for its
//!    launch slot (`spacing.rs`).
//! 5. Idempotent calls (offers, status, list, terminate) are retried with capped exponential
//!    backoff and jitter on rate limits and outages; a launch is never blindly retried (an
//!    uncertain launch is settled by the lifecycle's attempt reconciliation).
//!
//! # The fast path (docs/decisions/0006-provider-fast-path.md)
//! The books (limiter, breaker, token queue, caches) are shared, behind one short-held lock,
//! between the actor and its handles. When the breaker is closed, a token is free now and nobody
//! is queued for one, the handle makes the HTTP call on the caller's own task and books an outcome
//! that changes nothing but counters itself (a success, or a refusal of that one request, with the
//! limiter at its configured rate and the breaker staying closed): the common call never crosses
//! the actor's thread. Everything else goes through
//! the actor: the breaker when it is not closed (open, the half-open probe), the token queue (the
//! actor grants queued tokens by priority and wakes on the limiter's clock), every outcome that
//! changes state (429s adapt the limiter, outages feed the breaker, health changes),
//! and every provider event, which only the actor journals.
//!
//! # Files
//! - `actor.rs`: the actor, its configuration, messages and event sink, and the offers summary.
//! - `handle.rs`: [`ProviderHandle`], the `ProviderClient` the rest of tgp calls; the fast path.
//! - `flight.rs`: the operations, their token priority, and a call's attempts and retries.
//! - `books.rs`: the books shared by the actor and its handles; taking tokens, booking outcomes.
//! - `cache.rs`: the offers cache, single flight, and offerings left out while unavailable.
//! - `limiter.rs`: the adaptive rate limiter.
//! - `spacing.rs`: launch slots, for a provider whose launches have a limit of their own.
//! - `breaker.rs`: the circuit breaker.

mod actor;
mod books;
pub mod breaker;
mod cache;
mod flight;
mod handle;
pub mod limiter;
mod spacing;

pub use actor::{
    Call, MarkUnavailable, ProviderActor, ProviderActorConfig, ProviderEventSink, SetEnabled, market_lines,
};
pub use flight::{Operation, Output, Priority};
pub use handle::ProviderHandle;
