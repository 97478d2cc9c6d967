//! Answer caches. `exact` answers byte-identical requests (same fingerprint).
pub mod exact;

pub use exact::{CacheConfig, CacheStats, Entry, ExactCache};

/// Random candidates examined per eviction.
pub(crate) const EVICTION_SAMPLE: usize = 8;

/// The GreedyDual-Size-Frequency victim among a random sample of `keys` (never `keep`): the
/// lowest `(priority, expired)` by `score`, expired entries first. Returns the key, its priority
/// (−∞ when expired) and whether it had expired. Shared by the exact and the semantic cache.
pub(crate) fn sample_victim<K: Copy + PartialEq>(keys: &[K], keep: K, score: impl Fn(K) -> (f64, bool)) -> Option<(K, f64, bool)> {
    let n = keys.len();
    if n == 0 {
        return None;
    }
    let start = fastrand::usize(..n);
    let mut victim: Option<(K, f64, bool)> = None;
    for i in 0..EVICTION_SAMPLE.min(n) {
        // A random start and a coprime stride sample without repeats.
        let k = keys[(start + i * 7919) % n];
        if k == keep {
            continue;
        }
        let (p, expired) = score(k);
        let p = if expired { f64::NEG_INFINITY } else { p };
        if victim.is_none_or(|(_, vp, _)| p < vp) {
            victim = Some((k, p, expired));
        }
    }
    victim
}
