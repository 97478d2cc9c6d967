//! Counters and the route-latency histogram, updated from many threads without a global lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use hdrhistogram::Histogram;
use parking_lot::{Mutex, RwLock};

/// Histogram shards: a recording thread locks one of these, picked by thread, so 32 routing
/// threads rarely meet on the same lock.
const HIST_SHARDS: usize = 16;
/// Money is accumulated in nano-dollars so that sums are exact integers.
const NANO: f64 = 1e9;

pub fn to_nano(usd: f64) -> u64 {
    (usd * NANO).round() as u64
}

#[derive(Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub exact_hits: AtomicU64,
    pub semantic_hits: AtomicU64,
    pub misses: AtomicU64,
    pub bypassed: AtomicU64,
    pub best_effort: AtomicU64,
    pub errors: AtomicU64,
    pub records: AtomicU64,
    pub failed_calls: AtomicU64,
    pub input_tokens: AtomicU64,
    pub output_tokens: AtomicU64,
    pub cost_nano: AtomicU64,
    pub avoided_nano: AtomicU64,
}

pub struct Stats {
    pub counters: Counters,
    decisions: RwLock<HashMap<(Arc<str>, Arc<str>), AtomicU64>>,
    hist: Box<[Mutex<Histogram<u64>>]>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
    pub mean_ns: f64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

impl Stats {
    pub fn new() -> Stats {
        let hist = (0..HIST_SHARDS)
            // 1 ns .. 60 s at 3 significant digits.
            .map(|_| Mutex::new(Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")))
            .collect();
        Stats { counters: Counters::default(), decisions: RwLock::new(HashMap::new()), hist }
    }

    pub fn record_latency(&self, ns: u64) {
        let shard = thread_shard() % HIST_SHARDS;
        let _ = self.hist[shard].lock().record(ns.max(1));
    }

    pub fn count_decision(&self, model: &Arc<str>, tier: &Arc<str>) {
        let key = (model.clone(), tier.clone());
        if let Some(c) = self.decisions.read().get(&key) {
            c.fetch_add(1, Relaxed);
            return;
        }
        self.decisions.write().entry(key).or_default().fetch_add(1, Relaxed);
    }

    pub fn decisions(&self) -> Vec<(String, String, u64)> {
        let mut v: Vec<_> = self.decisions.read().iter().map(|((m, t), c)| (m.to_string(), t.to_string(), c.load(Relaxed))).collect();
        v.sort();
        v
    }

    /// Cumulative counts of route latencies ≤ each bound (ns), the sum (ns) and the count: a
    /// Prometheus histogram read at scrape time from the same shards.
    pub fn latency_buckets(&self, bounds_ns: &[u64]) -> (Vec<u64>, f64, u64) {
        let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds");
        for h in self.hist.iter() {
            all.add(&*h.lock()).expect("same bounds");
        }
        let counts = bounds_ns.iter().map(|&b| if b == 0 { 0 } else { all.count_between(0, b.min(all.high())) }).collect();
        let n = all.len();
        (counts, if n == 0 { 0.0 } else { all.mean() * n as f64 }, n)
    }

    pub fn latency(&self) -> LatencySummary {
        let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds");
        for h in self.hist.iter() {
            all.add(&*h.lock()).expect("same bounds");
        }
        LatencySummary {
            count: all.len(),
            p50_ns: all.value_at_quantile(0.5),
            p90_ns: all.value_at_quantile(0.9),
            p99_ns: all.value_at_quantile(0.99),
            max_ns: all.max(),
            mean_ns: if all.is_empty() { 0.0 } else { all.mean() },
        }
    }
}

pub(crate) fn thread_shard() -> usize {
    use std::cell::Cell;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    thread_local!(static SHARD: Cell<usize> = const { Cell::new(usize::MAX) });
    SHARD.with(|s| {
        if s.get() == usize::MAX {
            s.set(NEXT.fetch_add(1, Relaxed) as usize);
        }
        s.get()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_merges_threads() {
        let s = Arc::new(Stats::new());
        let hs: Vec<_> = (0..8)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 1..=1000u64 {
                        s.record_latency(i * 1000 + t);
                        s.count_decision(&Arc::from("m"), &Arc::from(if i % 2 == 0 { "a" } else { "b" }));
                    }
                })
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
        let l = s.latency();
        assert_eq!(l.count, 8000);
        assert!((495_000..=505_000).contains(&l.p50_ns), "{l:?}");
        assert_eq!(s.decisions(), vec![("m".into(), "a".into(), 4000), ("m".into(), "b".into(), 4000)]);
    }
}
