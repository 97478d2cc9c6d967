//! routerx core: everything on the per-request hot path, in plain Rust.
//!
//! The Python package drives this crate through `routerx-py`; nothing here knows about Python,
//! so every piece is tested with `cargo test` and benched with criterion.
//!
//! Flow of one request ([`router::Core::route`]): fingerprint → exact cache → features →
//! classifier → policy table → [`router::RouteOutcome`].

pub mod accounting;
pub mod batcher;
pub mod budgets;
pub mod cache;
pub mod classifier;
#[cfg(feature = "embed")]
pub mod embed;
pub mod error;
pub mod features;
pub mod fingerprint;
pub mod flight;
pub mod policy;
pub mod quality;
pub mod request;
pub mod router;
pub mod semantic;
pub mod snapshot;
pub mod stats;
pub mod tokens;

pub use error::{Error, Result};
