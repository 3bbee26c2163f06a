//! Sans-IO core of Whis.
//!
//! Everything here is plain state and rules: swarms and their membership, the
//! tracker (who holds which resource), the signaling rules (a token is one peer,
//! a peer posts only as itself and only inside its swarm), heartbeat expiry,
//! resource manifests and their caching policy, request-path safety and the
//! worker-browser lifecycle.
//!
//! # Design
//! Nothing in this crate reads a clock, a socket, a file or a random source.
//! Time (`Instant`) and fresh identifiers are arguments; what should happen next
//! (events to deliver, peers dropped) comes back as return values. The `whis`
//! binary owns one [`hub::Hub`] behind a lock and turns those values into SSE
//! frames; the tests drive the same `Hub` with many simulated peers on a virtual
//! clock. Cargo enforces the boundary: this crate depends on no async runtime.

pub mod error;
pub mod event;
pub mod hub;
pub mod manifest;
pub mod manifest_cache;
pub mod pages;
pub mod path;
pub mod stun;
pub mod supervisor;
pub mod token;
pub mod ttl;
pub mod turn;

pub use error::CoreError;
