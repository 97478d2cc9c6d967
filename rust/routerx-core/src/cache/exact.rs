//! Exact-match answer cache: sharded, bounded by entries and bytes, TTL, cost-aware eviction.
//!
//! Concurrency: keys are spread over shards, each behind a `RwLock`. A lookup takes one shard's
//! read lock and bumps the entry's atomics, so concurrent hits never serialise; inserts take one
//! shard's write lock.
//!
//! Eviction is GreedyDual-Size-Frequency (Cherkasova 1998), the classic cost-aware policy: an
//! entry's priority is `L + (1 + hits) × cost_usd / size_bytes`, where `L` is the shard's clock,
//! raised to each evicted entry's priority so that entries not used for a long time age out. The
//! entry evicted is the lowest-priority one of a random sample (as Redis does), so eviction is
//! O(1) and lock-local. What stays is what saves the most money per byte: an expensive frontier
//! answer outlives a free edge-model answer of the same size, and frequently hit entries outlive
//! one-offs. Expired entries are never returned and are evicted first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::classifier::Category;
use crate::fingerprint::Key;
use crate::{snapshot, Result};

/// Bytes charged per entry on top of its strings: the map slot, the `Arc` and the metadata.
const ENTRY_OVERHEAD: usize = 192;

#[derive(Clone, Debug, PartialEq)]
pub struct CacheConfig {
    pub max_entries: usize,
    pub max_bytes: usize,
    /// Default time to live in seconds; infinite keeps entries until evicted.
    pub default_ttl_s: f64,
    pub shards: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig { max_entries: 100_000, max_bytes: 256 << 20, default_ttl_s: 86_400.0, shards: 64 }
    }
}

/// A cached answer and what it cost to produce.
#[derive(Debug)]
pub struct Entry {
    pub key: Key,
    pub tenant: Arc<str>,
    pub response: String,
    pub model: Arc<str>,
    pub provider: Arc<str>,
    pub tier: Arc<str>,
    pub category: Category,
    pub complexity: f32,
    pub input_tokens: u32,
    pub output_tokens: u32,
    /// What the model call cost: what each hit saves.
    pub cost_usd: f64,
    /// Unix seconds.
    pub created: f64,
    pub expires: f64,
    pub hits: AtomicU64,
    /// GDSF clock value at the last access (f64 bits).
    clock: AtomicU64,
}

impl Entry {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        key: Key,
        tenant: Arc<str>,
        response: String,
        model: Arc<str>,
        provider: Arc<str>,
        tier: Arc<str>,
        category: Category,
        complexity: f32,
        input_tokens: u32,
        output_tokens: u32,
        cost_usd: f64,
        created: f64,
        expires: f64,
    ) -> Entry {
        Entry {
            key,
            tenant,
            response,
            model,
            provider,
            tier,
            category,
            complexity,
            input_tokens,
            output_tokens,
            cost_usd,
            created,
            expires,
            hits: AtomicU64::new(0),
            clock: AtomicU64::new(0f64.to_bits()),
        }
    }

    pub fn size(&self) -> usize {
        ENTRY_OVERHEAD + self.response.len() + self.tenant.len()
    }

    fn priority(&self) -> f64 {
        let hits = self.hits.load(Relaxed) as f64;
        f64::from_bits(self.clock.load(Relaxed)) + (1.0 + hits) * self.cost_usd / self.size() as f64
    }
}

#[derive(Default)]
struct Shard {
    map: HashMap<Key, (Arc<Entry>, usize)>,
    /// Dense list of keys for O(1) random sampling; `map` holds each key's position.
    keys: Vec<Key>,
    clock: f64,
}

impl Shard {
    fn remove(&mut self, key: Key) -> Option<Arc<Entry>> {
        let (entry, pos) = self.map.remove(&key)?;
        self.keys.swap_remove(pos);
        if let Some(&moved) = self.keys.get(pos) {
            self.map.get_mut(&moved).expect("dense key list matches the map").1 = pos;
        }
        Some(entry)
    }
}

/// Snapshot file kind and format version of the exact cache.
pub const SNAPSHOT_KIND: &str = "exact-cache";
pub const SNAPSHOT_VERSION: u32 = 1;

/// An entry as a snapshot stores it (shared with the semantic cache's snapshots).
#[derive(Serialize, Deserialize)]
pub(crate) struct SavedEntry {
    key: Key,
    tenant: String,
    response: String,
    model: String,
    provider: String,
    tier: String,
    category: u8,
    complexity: f32,
    input_tokens: u32,
    output_tokens: u32,
    cost_usd: f64,
    created: f64,
    pub(crate) expires: f64,
    hits: u64,
}

impl SavedEntry {
    pub(crate) fn of(e: &Entry) -> SavedEntry {
        SavedEntry {
            key: e.key,
            tenant: e.tenant.to_string(),
            response: e.response.clone(),
            model: e.model.to_string(),
            provider: e.provider.to_string(),
            tier: e.tier.to_string(),
            category: e.category as u8,
            complexity: e.complexity,
            input_tokens: e.input_tokens,
            output_tokens: e.output_tokens,
            cost_usd: e.cost_usd,
            created: e.created,
            expires: e.expires,
            hits: e.hits.load(Relaxed),
        }
    }

    /// The entry again, its names shared through `intern`; None for an unknown category.
    pub(crate) fn into_entry(self, intern: &mut impl FnMut(String) -> Arc<str>) -> Option<Entry> {
        let category = *Category::ALL.get(self.category as usize)?;
        let e = Entry::new(
            self.key,
            intern(self.tenant),
            self.response,
            intern(self.model),
            intern(self.provider),
            intern(self.tier),
            category,
            self.complexity,
            self.input_tokens,
            self.output_tokens,
            self.cost_usd,
            self.created,
            self.expires,
        );
        e.hits.store(self.hits, Relaxed);
        Some(e)
    }

    pub(crate) fn size(&self) -> usize {
        ENTRY_OVERHEAD + self.response.len() + self.tenant.len()
    }

    pub(crate) fn value(&self) -> f64 {
        (1 + self.hits) as f64 * self.cost_usd / (self.response.len() + 1) as f64
    }
}

/// Interns names while restoring, so entries share their model/tier/tenant strings.
pub(crate) fn interner() -> impl FnMut(String) -> Arc<str> {
    let mut names: HashMap<String, Arc<str>> = HashMap::new();
    move |s: String| names.entry(s).or_insert_with_key(|k| Arc::from(k.as_str())).clone()
}

#[derive(Serialize, Deserialize)]
struct SavedCache {
    /// What the keys were computed against (model scopes are catalog indices): a snapshot is only
    /// restored into a router whose catalog lists the same models in the same order.
    catalog: Vec<String>,
    entries: Vec<SavedEntry>,
}

/// What a restore did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    pub restored: usize,
    /// Expired since the snapshot was taken.
    pub expired: usize,
    /// Dropped because the catalog changed (all of them) or the cache is smaller now.
    pub dropped: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub entries: u64,
    pub bytes: u64,
    pub inserts: u64,
    pub evictions: u64,
    pub expirations: u64,
}

pub struct ExactCache {
    shards: Box<[RwLock<Shard>]>,
    cfg: CacheConfig,
    entries: AtomicUsize,
    bytes: AtomicUsize,
    inserts: AtomicU64,
    evictions: AtomicU64,
    expirations: AtomicU64,
}

impl ExactCache {
    pub fn new(cfg: CacheConfig) -> ExactCache {
        let n = cfg.shards.clamp(1, 1024).next_power_of_two();
        ExactCache {
            shards: (0..n).map(|_| RwLock::new(Shard::default())).collect(),
            cfg,
            entries: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            inserts: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            expirations: AtomicU64::new(0),
        }
    }

    pub fn config(&self) -> &CacheConfig {
        &self.cfg
    }

    fn shard_of(&self, key: Key) -> usize {
        // The key is already a uniform hash: its top bits pick the shard.
        ((key >> 64) as usize) & (self.shards.len() - 1)
    }

    /// The live entry for `key`, counting the hit. Expired entries are removed, not returned.
    pub fn get(&self, key: Key, now: f64) -> Option<Arc<Entry>> {
        let s = self.shard_of(key);
        {
            let shard = self.shards[s].read();
            let (entry, _) = shard.map.get(&key)?;
            if entry.expires > now {
                entry.hits.fetch_add(1, Relaxed);
                entry.clock.store(shard.clock.to_bits(), Relaxed);
                return Some(entry.clone());
            }
        }
        let mut shard = self.shards[s].write();
        if shard.map.get(&key).is_some_and(|(e, _)| e.expires <= now) {
            let e = shard.remove(key).expect("present");
            self.account_removal(&e);
            self.expirations.fetch_add(1, Relaxed);
        }
        None
    }

    /// The entry for `key` without counting a hit (inspection, tests).
    pub fn peek(&self, key: Key) -> Option<Arc<Entry>> {
        self.shards[self.shard_of(key)].read().map.get(&key).map(|(e, _)| e.clone())
    }

    /// Inserts or replaces; returns how many entries were evicted to make room. An entry larger
    /// than the whole byte budget is not stored.
    pub fn insert(&self, entry: Entry, now: f64) -> usize {
        self.insert_arc(Arc::new(entry), now)
    }

    /// As [`ExactCache::insert`], for an entry shared with the semantic cache.
    pub fn insert_arc(&self, entry: Arc<Entry>, now: f64) -> usize {
        let size = entry.size();
        if size > self.cfg.max_bytes || self.cfg.max_entries == 0 {
            return 0;
        }
        let key = entry.key;
        let s = self.shard_of(key);
        {
            let mut shard = self.shards[s].write();
            entry.clock.store(shard.clock.to_bits(), Relaxed);
            if let Some(old) = shard.remove(key) {
                self.account_removal(&old);
            }
            let pos = shard.keys.len();
            shard.keys.push(key);
            shard.map.insert(key, (entry, pos));
            self.entries.fetch_add(1, Relaxed);
            self.bytes.fetch_add(size, Relaxed);
        }
        self.inserts.fetch_add(1, Relaxed);
        let mut evicted = 0;
        let mut probe = s;
        let mut empty_in_a_row = 0;
        while self.over_budget() && empty_in_a_row < self.shards.len() {
            if self.evict_one(probe, now, key) {
                evicted += 1;
                empty_in_a_row = 0;
            } else {
                probe = (probe + 1) & (self.shards.len() - 1);
                empty_in_a_row += 1;
            }
        }
        evicted
    }

    fn over_budget(&self) -> bool {
        self.entries.load(Relaxed) > self.cfg.max_entries || self.bytes.load(Relaxed) > self.cfg.max_bytes
    }

    /// Evicts the lowest-priority sampled entry of shard `s` (never `keep`, the entry just
    /// inserted). Returns false when the shard has nothing to evict.
    fn evict_one(&self, s: usize, now: f64, keep: Key) -> bool {
        let mut shard = self.shards[s].write();
        let n = shard.keys.len();
        if n == 0 || (n == 1 && shard.keys[0] == keep) {
            return false;
        }
        let victim = super::sample_victim(&shard.keys, keep, |k| {
            let e = &shard.map[&k].0;
            (e.priority(), e.expires <= now)
        });
        let Some((k, p, expired)) = victim else { return false };
        let e = shard.remove(k).expect("sampled key is present");
        if p.is_finite() {
            shard.clock = shard.clock.max(p);
        }
        drop(shard);
        self.account_removal(&e);
        if expired {
            self.expirations.fetch_add(1, Relaxed);
        } else {
            self.evictions.fetch_add(1, Relaxed);
        }
        true
    }

    fn account_removal(&self, e: &Entry) {
        self.entries.fetch_sub(1, Relaxed);
        self.bytes.fetch_sub(e.size(), Relaxed);
    }

    pub fn remove(&self, key: Key) -> bool {
        let removed = self.shards[self.shard_of(key)].write().remove(key);
        removed.map(|e| self.account_removal(&e)).is_some()
    }

    /// Removes every entry matching `pred`; returns how many.
    pub fn remove_where(&self, pred: impl Fn(&Entry) -> bool) -> usize {
        let mut n = 0;
        for lock in self.shards.iter() {
            let mut shard = lock.write();
            let doomed: Vec<Key> = shard.map.values().filter(|(e, _)| pred(e)).map(|(e, _)| e.key).collect();
            for k in doomed {
                let e = shard.remove(k).expect("present");
                self.account_removal(&e);
                n += 1;
            }
        }
        n
    }

    pub fn clear(&self) -> usize {
        self.remove_where(|_| true)
    }

    /// Writes every live entry to `path` (see [`crate::snapshot`]); returns (entries, bytes).
    /// Shards are copied one at a time, so lookups and inserts carry on meanwhile.
    pub fn snapshot(&self, path: &std::path::Path, catalog: &[String], now: f64) -> Result<(usize, u64)> {
        let mut entries = Vec::with_capacity(self.entries.load(Relaxed));
        for lock in self.shards.iter() {
            let shard = lock.read();
            entries.extend(shard.map.values().filter(|(e, _)| e.expires > now).map(|(e, _)| SavedEntry::of(e)));
        }
        let n = entries.len();
        let bytes = snapshot::write(path, SNAPSHOT_KIND, SNAPSHOT_VERSION, &SavedCache { catalog: catalog.to_vec(), entries })?;
        Ok((n, bytes))
    }

    /// Adds the live entries of a snapshot. The file is verified whole first: on any error the
    /// cache is left exactly as it was.
    pub fn restore(&self, path: &std::path::Path, catalog: &[String], now: f64) -> Result<Restored> {
        let saved: SavedCache = snapshot::read(path, SNAPSHOT_KIND, SNAPSHOT_VERSION)?;
        let mut out = Restored::default();
        if saved.catalog != catalog {
            out.dropped = saved.entries.len();
            return Ok(out);
        }
        let mut intern = interner();
        // Most valuable first, so a smaller cache keeps what saves the most.
        let mut entries = saved.entries;
        entries.sort_by(|a, b| b.value().total_cmp(&a.value()));
        let total = entries.len();
        let mut keys = Vec::with_capacity(total);
        for s in entries {
            if s.expires <= now {
                out.expired += 1;
                continue;
            }
            // Once the cache is full, the rest would only displace better ones.
            if self.entries.load(Relaxed) >= self.cfg.max_entries || self.bytes.load(Relaxed) + s.size() > self.cfg.max_bytes {
                continue;
            }
            let key = s.key;
            let Some(e) = s.into_entry(&mut intern) else { continue };
            keys.push(key);
            self.insert(e, now);
        }
        // What a smaller cache evicted (or never stored) is counted as dropped.
        out.restored = keys.iter().filter(|&&k| self.peek(k).is_some()).count();
        out.dropped = total - out.expired - out.restored;
        Ok(out)
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.entries.load(Relaxed) as u64,
            bytes: self.bytes.load(Relaxed) as u64,
            inserts: self.inserts.load(Relaxed),
            evictions: self.evictions.load(Relaxed),
            expirations: self.expirations.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: Key, cost: f64, response_len: usize, expires: f64) -> Entry {
        let s: Arc<str> = Arc::from("x");
        Entry::new(key, s.clone(), "r".repeat(response_len), s.clone(), s.clone(), s, Category::Chat, 0.5, 10, 10, cost, 0.0, expires)
    }

    fn key(i: u64) -> Key {
        xxhash_rust::xxh3::xxh3_128(&i.to_le_bytes())
    }

    #[test]
    fn get_insert_replace_remove() {
        let c = ExactCache::new(CacheConfig::default());
        assert!(c.get(key(1), 0.0).is_none());
        c.insert(entry(key(1), 0.01, 10, 100.0), 0.0);
        let e = c.get(key(1), 1.0).unwrap();
        assert_eq!(e.hits.load(Relaxed), 1);
        c.insert(entry(key(1), 0.02, 20, 100.0), 0.0);
        assert_eq!(c.stats().entries, 1);
        assert_eq!(c.get(key(1), 1.0).unwrap().cost_usd, 0.02);
        assert_eq!(c.stats().bytes as usize, ENTRY_OVERHEAD + 20 + 1);
        assert!(c.remove(key(1)));
        assert_eq!(c.stats(), CacheStats { inserts: 2, ..Default::default() });
    }

    #[test]
    fn ttl_hides_and_removes_expired() {
        let c = ExactCache::new(CacheConfig::default());
        c.insert(entry(key(1), 0.01, 10, 5.0), 0.0);
        assert!(c.get(key(1), 4.9).is_some());
        assert!(c.get(key(1), 5.0).is_none());
        assert_eq!(c.stats().entries, 0);
        assert_eq!(c.stats().expirations, 1);
    }

    #[test]
    fn bounded_by_entries_and_bytes() {
        let c = ExactCache::new(CacheConfig { max_entries: 100, max_bytes: usize::MAX, default_ttl_s: 1e9, shards: 8 });
        for i in 0..1000 {
            c.insert(entry(key(i), 0.001, 10, 1e9), 0.0);
        }
        assert_eq!(c.stats().entries, 100);
        assert_eq!(c.stats().evictions, 900);
        let c = ExactCache::new(CacheConfig { max_entries: usize::MAX, max_bytes: 50_000, default_ttl_s: 1e9, shards: 8 });
        for i in 0..1000 {
            c.insert(entry(key(i), 0.001, 300, 1e9), 0.0);
        }
        assert!(c.stats().bytes <= 50_000);
        assert!(c.stats().entries >= 50_000 / (ENTRY_OVERHEAD as u64 + 301) - 1);
        // Larger than the whole budget: not stored.
        assert_eq!(c.insert(entry(key(5000), 1.0, 60_000, 1e9), 0.0), 0);
        assert!(c.peek(key(5000)).is_none());
    }

    #[test]
    fn eviction_keeps_what_saves_the_most() {
        // Half the entries are expensive answers, half are free: under pressure the free ones go.
        let c = ExactCache::new(CacheConfig { max_entries: 500, max_bytes: usize::MAX, default_ttl_s: 1e9, shards: 4 });
        for i in 0..1000 {
            let cost = if i % 2 == 0 { 0.05 } else { 0.0 };
            c.insert(entry(key(i), cost, 100, 1e9), 0.0);
        }
        let expensive_kept = (0..1000).step_by(2).filter(|&i| c.peek(key(i)).is_some()).count();
        // Random eviction would keep about 250; aging lets some newer free entries outrank old ones.
        assert!(expensive_kept > 330, "kept {expensive_kept} of 500 expensive entries");
        // And hits protect an entry: hit a cheap one often, then flood.
        let c = ExactCache::new(CacheConfig { max_entries: 200, max_bytes: usize::MAX, default_ttl_s: 1e9, shards: 1 });
        c.insert(entry(key(0), 0.001, 100, 1e9), 0.0);
        for _ in 0..1000 {
            c.get(key(0), 0.0);
        }
        for i in 1..2000 {
            c.insert(entry(key(i), 0.001, 100, 1e9), 0.0);
        }
        assert!(c.peek(key(0)).is_some(), "a frequently hit entry survives a flood of one-offs");
    }

    #[test]
    fn snapshot_round_trip_keeps_entries_hits_and_checks_the_catalog() {
        let dir = std::env::temp_dir().join(format!("routerx-exact-snap-{}", std::process::id()));
        let path = dir.join("exact.rxsnap");
        let catalog = vec!["a".to_string(), "b".to_string()];
        let c = ExactCache::new(CacheConfig::default());
        for i in 0..100_000u64 {
            let expires = if i % 10 == 0 { 50.0 } else { 1e9 };
            c.insert(entry(key(i), 0.001 * (i % 7) as f64, (i % 40) as usize, expires), 0.0);
        }
        for _ in 0..3 {
            c.get(key(1), 0.0);
        }
        let (n, bytes) = c.snapshot(&path, &catalog, 0.0).unwrap();
        assert_eq!(n, 100_000);
        assert!(bytes > 1_000_000);

        let r = ExactCache::new(CacheConfig::default());
        let got = r.restore(&path, &catalog, 100.0).unwrap();
        assert_eq!(got, Restored { restored: 90_000, expired: 10_000, dropped: 0 });
        let e = r.peek(key(1)).unwrap();
        assert_eq!((e.hits.load(Relaxed), e.response.len(), e.cost_usd), (3, 1, 0.001));
        assert!(r.peek(key(10)).is_none(), "expired since the snapshot");
        assert_eq!(r.stats().entries, 90_000);

        // Another catalog: model scopes in the keys would mean other models, so nothing is served.
        let other = ExactCache::new(CacheConfig::default());
        let got = other.restore(&path, &["b".to_string(), "a".to_string()], 100.0).unwrap();
        assert_eq!((got.restored, got.dropped, other.stats().entries), (0, 100_000, 0));

        // A smaller cache keeps the most valuable entries.
        let small = ExactCache::new(CacheConfig { max_entries: 1000, ..CacheConfig::default() });
        let got = small.restore(&path, &catalog, 100.0).unwrap();
        assert_eq!((got.restored, got.restored + got.dropped + got.expired), (1000, 100_000));
        assert!((0..100_000).filter_map(|i| small.peek(key(i))).all(|e| e.cost_usd > 0.0));

        // Corrupt file: an error naming it, and the cache unchanged.
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = r.restore(&path, &catalog, 100.0).unwrap_err();
        assert!(err.to_string().contains("exact.rxsnap") && err.to_string().contains("checksum"), "{err}");
        assert_eq!(r.stats().entries, 90_000);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn concurrent_hammer_keeps_accounting_exact() {
        let c = Arc::new(ExactCache::new(CacheConfig { max_entries: 300, max_bytes: usize::MAX, default_ttl_s: 1e9, shards: 16 }));
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for i in 0..5_000u64 {
                        let k = key((t * 7 + i) % 1_000);
                        if i % 3 == 0 {
                            c.insert(entry(k, 0.001 * (i % 5) as f64, (i % 50) as usize, 1e9), 0.0);
                        } else if let Some(e) = c.get(k, 0.0) {
                            assert_eq!(e.key, k, "a lookup never returns another key's entry");
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let st = c.stats();
        assert!(st.entries <= 300, "{st:?}");
        let (mut n, mut bytes) = (0u64, 0u64);
        for s in c.shards.iter() {
            let s = s.read();
            assert_eq!(s.map.len(), s.keys.len());
            n += s.map.len() as u64;
            bytes += s.map.values().map(|(e, _)| e.size() as u64).sum::<u64>();
        }
        assert_eq!((n, bytes), (st.entries, st.bytes));
    }
}
