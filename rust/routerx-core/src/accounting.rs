//! The accounting ledger: who spent what, and what routerx saved.
//!
//! Every recorded model call and every cache hit is attributed to a [`LedgerKey`] — the request's
//! labels (tenant, agent, workflow, step) and the (model, tier) that answered — and added to that
//! key's atomic counters. The map is a sharded concurrent map, so two threads recording under
//! different keys never meet on a lock, and two under the same key only share a shard's read lock
//! and a few relaxed atomic adds. Nothing here blocks on I/O: persistence is a separate consumer
//! that calls [`Ledger::drain_deltas`] every flush interval and writes what changed.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::*};
use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::Mutex;

/// Upper bounds (ms) of the model-call latency histogram buckets; one more bucket takes the rest.
pub const LATENCY_BUCKETS_MS: [f64; 11] = [50.0, 100.0, 250.0, 500.0, 1_000.0, 2_500.0, 5_000.0, 10_000.0, 30_000.0, 60_000.0, 120_000.0];
pub const N_BUCKETS: usize = LATENCY_BUCKETS_MS.len() + 1;

/// Who asked, and which (model, tier) answered. Empty labels mean "not given".
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LedgerKey {
    pub tenant: Arc<str>,
    pub agent: Arc<str>,
    pub workflow: Arc<str>,
    pub step: Arc<str>,
    pub model: Arc<str>,
    pub tier: Arc<str>,
}

/// Totals of one key (or the difference between two snapshots of it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Model calls recorded with `record()`.
    pub calls: u64,
    /// Requests answered from the exact cache (no model call).
    pub cache_hits: u64,
    /// Recorded calls that failed (`ok=false`): errors by model.
    pub errors: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Actual cost, nano-USD.
    pub cost_nano: u64,
    /// What cache hits saved: the recorded cost of each answer served again, nano-USD.
    pub avoided_cache_nano: u64,
    /// Baseline model's cost for the same tokens minus the actual cost, nano-USD (negative when the
    /// routed choice was dearer than the baseline, e.g. a premium tier for a tight latency budget).
    pub avoided_routing_nano: i64,
    /// Estimated energy, millijoules (catalog joules per output token × output tokens).
    pub energy_mj: u64,
    /// Sum of recorded call latencies, microseconds.
    pub latency_us_sum: u64,
    /// Call latency histogram: counts per bucket of [`LATENCY_BUCKETS_MS`] (not cumulative).
    pub latency_buckets: [u64; N_BUCKETS],
}

impl Totals {
    pub fn requests(&self) -> u64 {
        self.calls + self.cache_hits
    }
    pub fn is_zero(&self) -> bool {
        *self == Totals::default()
    }
    fn minus(&self, b: &Totals) -> Totals {
        let mut lat = [0u64; N_BUCKETS];
        for (i, l) in lat.iter_mut().enumerate() {
            *l = self.latency_buckets[i].wrapping_sub(b.latency_buckets[i]);
        }
        Totals {
            calls: self.calls.wrapping_sub(b.calls),
            cache_hits: self.cache_hits.wrapping_sub(b.cache_hits),
            errors: self.errors.wrapping_sub(b.errors),
            input_tokens: self.input_tokens.wrapping_sub(b.input_tokens),
            output_tokens: self.output_tokens.wrapping_sub(b.output_tokens),
            cost_nano: self.cost_nano.wrapping_sub(b.cost_nano),
            avoided_cache_nano: self.avoided_cache_nano.wrapping_sub(b.avoided_cache_nano),
            avoided_routing_nano: self.avoided_routing_nano.wrapping_sub(b.avoided_routing_nano),
            energy_mj: self.energy_mj.wrapping_sub(b.energy_mj),
            latency_us_sum: self.latency_us_sum.wrapping_sub(b.latency_us_sum),
            latency_buckets: lat,
        }
    }
    pub fn add(&mut self, b: &Totals) {
        self.calls += b.calls;
        self.cache_hits += b.cache_hits;
        self.errors += b.errors;
        self.input_tokens += b.input_tokens;
        self.output_tokens += b.output_tokens;
        self.cost_nano += b.cost_nano;
        self.avoided_cache_nano += b.avoided_cache_nano;
        self.avoided_routing_nano += b.avoided_routing_nano;
        self.energy_mj += b.energy_mj;
        self.latency_us_sum += b.latency_us_sum;
        for i in 0..N_BUCKETS {
            self.latency_buckets[i] += b.latency_buckets[i];
        }
    }
}

/// One finished model call, as `record()` accounts it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Call {
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub cost_nano: u64,
    pub avoided_routing_nano: i64,
    pub energy_mj: u64,
    pub latency_ms: f64,
    pub ok: bool,
}

#[derive(Default)]
struct Cell {
    calls: AtomicU64,
    cache_hits: AtomicU64,
    errors: AtomicU64,
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
    cost_nano: AtomicU64,
    avoided_cache_nano: AtomicU64,
    avoided_routing_nano: AtomicI64,
    energy_mj: AtomicU64,
    latency_us_sum: AtomicU64,
    latency_buckets: [AtomicU64; N_BUCKETS],
    /// Set (after the counters) by every update; cleared by a drain before it reads them.
    dirty: AtomicBool,
    /// What the last drain returned up to; touched only by drains (under the drain lock).
    drained: Mutex<Totals>,
}

impl Cell {
    fn load(&self) -> Totals {
        let mut lat = [0u64; N_BUCKETS];
        for (i, l) in lat.iter_mut().enumerate() {
            *l = self.latency_buckets[i].load(Relaxed);
        }
        Totals {
            calls: self.calls.load(Relaxed),
            cache_hits: self.cache_hits.load(Relaxed),
            errors: self.errors.load(Relaxed),
            input_tokens: self.input_tokens.load(Relaxed),
            output_tokens: self.output_tokens.load(Relaxed),
            cost_nano: self.cost_nano.load(Relaxed),
            avoided_cache_nano: self.avoided_cache_nano.load(Relaxed),
            avoided_routing_nano: self.avoided_routing_nano.load(Relaxed),
            energy_mj: self.energy_mj.load(Relaxed),
            latency_us_sum: self.latency_us_sum.load(Relaxed),
            latency_buckets: lat,
        }
    }
}

pub fn latency_bucket(ms: f64) -> usize {
    LATENCY_BUCKETS_MS.iter().position(|&b| ms <= b).unwrap_or(N_BUCKETS - 1)
}

/// The concurrent ledger. Share one per router.
#[derive(Default)]
pub struct Ledger {
    cells: DashMap<LedgerKey, Arc<Cell>>,
    drain_lock: Mutex<()>,
}

impl Ledger {
    pub fn new() -> Ledger {
        Ledger::default()
    }

    fn with_cell(&self, key: &LedgerKey, f: impl FnOnce(&Cell)) {
        // Fast path: the key exists, take the shard's read lock only.
        if let Some(c) = self.cells.get(key) {
            f(&c);
            c.dirty.store(true, Release);
            return;
        }
        let c = self.cells.entry(key.clone()).or_default().clone();
        f(&c);
        c.dirty.store(true, Release);
    }

    /// Accounts one model call.
    pub fn record_call(&self, key: &LedgerKey, call: &Call) {
        self.with_cell(key, |c| {
            c.calls.fetch_add(1, Relaxed);
            if !call.ok {
                c.errors.fetch_add(1, Relaxed);
            }
            c.input_tokens.fetch_add(call.input_tokens as u64, Relaxed);
            c.output_tokens.fetch_add(call.output_tokens as u64, Relaxed);
            c.cost_nano.fetch_add(call.cost_nano, Relaxed);
            c.avoided_routing_nano.fetch_add(call.avoided_routing_nano, Relaxed);
            c.energy_mj.fetch_add(call.energy_mj, Relaxed);
            c.latency_us_sum.fetch_add((call.latency_ms * 1e3).round() as u64, Relaxed);
            c.latency_buckets[latency_bucket(call.latency_ms)].fetch_add(1, Relaxed);
        });
    }

    /// Accounts one request answered from the cache: `avoided_nano` is the cost of the call that did not happen.
    pub fn record_hit(&self, key: &LedgerKey, avoided_nano: u64) {
        self.with_cell(key, |c| {
            c.cache_hits.fetch_add(1, Relaxed);
            c.avoided_cache_nano.fetch_add(avoided_nano, Relaxed);
        });
    }

    /// Cumulative totals of every key since the ledger was created, sorted by key.
    pub fn snapshot(&self) -> Vec<(LedgerKey, Totals)> {
        let mut v: Vec<_> = self.cells.iter().map(|e| (e.key().clone(), e.value().load())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Sum over every key.
    pub fn total(&self) -> Totals {
        let mut t = Totals::default();
        for e in self.cells.iter() {
            t.add(&e.value().load());
        }
        t
    }

    /// What changed since the previous drain, per key (keys with no change are left out).
    /// Drains are serialised; recorders are never blocked by one. An update racing with a drain
    /// is either wholly or partly in this drain's delta and the rest in the next: the deltas of
    /// successive drains always add up to the cumulative totals, so nothing is lost or counted twice.
    pub fn drain_deltas(&self) -> Vec<(LedgerKey, Totals)> {
        let _g = self.drain_lock.lock();
        let cells: Vec<(LedgerKey, Arc<Cell>)> =
            self.cells.iter().filter(|e| e.value().dirty.load(Acquire)).map(|e| (e.key().clone(), e.value().clone())).collect();
        let mut out = Vec::with_capacity(cells.len());
        for (k, c) in cells {
            c.dirty.store(false, Release);
            let now = c.load();
            let mut last = c.drained.lock();
            let d = now.minus(&last);
            *last = now;
            if !d.is_zero() {
                out.push((k, d));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    pub fn len(&self) -> usize {
        self.cells.len()
    }
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tenant: &str, agent: &str, model: &str) -> LedgerKey {
        let a = |s: &str| Arc::<str>::from(s);
        LedgerKey { tenant: a(tenant), agent: a(agent), workflow: a(""), step: a(""), model: a(model), tier: a("gpu-standard") }
    }

    #[test]
    fn arithmetic_and_buckets() {
        let l = Ledger::new();
        let k = key("acme", "bot", "m");
        l.record_call(
            &k,
            &Call {
                input_tokens: 10,
                output_tokens: 5,
                cost_nano: 1_000,
                avoided_routing_nano: -20,
                energy_mj: 7,
                latency_ms: 75.0,
                ok: true,
            },
        );
        l.record_call(
            &k,
            &Call { input_tokens: 1, output_tokens: 2, cost_nano: 3, avoided_routing_nano: 50, energy_mj: 1, latency_ms: 1e9, ok: false },
        );
        l.record_hit(&k, 1_000);
        let t = l.total();
        assert_eq!((t.calls, t.cache_hits, t.errors, t.requests()), (2, 1, 1, 3));
        assert_eq!(
            (t.input_tokens, t.output_tokens, t.cost_nano, t.avoided_cache_nano, t.avoided_routing_nano, t.energy_mj),
            (11, 7, 1_003, 1_000, 30, 8)
        );
        assert_eq!(t.latency_buckets[1], 1);
        assert_eq!(t.latency_buckets[N_BUCKETS - 1], 1);
        assert_eq!(t.latency_us_sum, 75_000 + 1_000_000_000_000);
        assert_eq!(latency_bucket(50.0), 0);
        assert_eq!(latency_bucket(50.1), 1);
    }

    #[test]
    fn drains_add_up_to_totals() {
        let l = Ledger::new();
        let k = key("a", "", "m");
        l.record_hit(&k, 5);
        let d1 = l.drain_deltas();
        assert_eq!(d1.len(), 1);
        assert_eq!(d1[0].1.cache_hits, 1);
        assert!(l.drain_deltas().is_empty(), "nothing changed");
        l.record_hit(&k, 5);
        l.record_hit(&key("b", "", "m"), 1);
        let d2 = l.drain_deltas();
        assert_eq!(d2.iter().map(|d| d.1.cache_hits).sum::<u64>(), 2);
        assert_eq!(d2[0].1.avoided_cache_nano, 5);
    }

    #[test]
    fn hammer_with_concurrent_drains() {
        let l = Arc::new(Ledger::new());
        let stop = Arc::new(AtomicBool::new(false));
        let drainer = {
            let (l, stop) = (l.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut sum = Totals::default();
                while !stop.load(Acquire) {
                    for (_, d) in l.drain_deltas() {
                        sum.add(&d);
                    }
                }
                for (_, d) in l.drain_deltas() {
                    sum.add(&d);
                }
                sum
            })
        };
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let l = l.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000u64 {
                        let k = key(&format!("t{}", t % 3), &format!("a{}", i % 5), "m");
                        if i % 4 == 0 {
                            l.record_hit(&k, 3);
                        } else {
                            l.record_call(
                                &k,
                                &Call {
                                    input_tokens: 2,
                                    output_tokens: 1,
                                    cost_nano: 7,
                                    avoided_routing_nano: 1,
                                    energy_mj: 1,
                                    latency_ms: 10.0,
                                    ok: i % 10 != 1,
                                },
                            );
                        }
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        stop.store(true, Release);
        let drained = drainer.join().unwrap();
        let total = l.total();
        assert_eq!(drained, total, "drained deltas add up to the totals");
        assert_eq!(total.cache_hits, 8 * 5_000);
        assert_eq!(total.calls, 8 * 15_000);
        assert_eq!(total.cost_nano, 8 * 15_000 * 7);
        assert_eq!(total.errors, 8 * 2_000);
        assert_eq!(l.len(), 15);
    }
}
