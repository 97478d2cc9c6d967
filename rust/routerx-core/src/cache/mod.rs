//! Answer caches. `exact` answers byte-identical requests (same fingerprint).
pub mod exact;

pub use exact::{CacheConfig, CacheStats, Entry, ExactCache};
