//! The semantic cache's entries: id → answer, scope, query signature and vector.
//!
//! faiss holds the vectors for search and returns candidate ids; this store decides what a
//! candidate means. An id that is unknown here (evicted, expired, invalidated) is never served,
//! whatever the index still holds, so removal takes effect at once; the ids removed are queued
//! for the index to drop in batches ([`SemanticStore::drain_removed`]), and the vectors kept
//! here let it rebuild (compact) an index from the live entries alone.
//!
//! A candidate is served only if it is in the request's scope (tenant, model scope, system prompt,
//! tools, sampling parameters, earlier turns and the embedder's model id: see [`scope_of`]), live,
//! at least as similar as asked, and passes the near-miss guard. Bounded by entries and bytes
//! (the vector and the guard signature count), with the exact cache's cost-aware eviction.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use super::guard::{self, Mismatch, Signature};
use crate::cache::exact::{interner, Restored, SavedEntry};
use crate::cache::Entry;
use crate::classifier::N_CATEGORIES;
use crate::request::Request;
use crate::{snapshot, Result};

/// Snapshot file kind and format version of the semantic cache.
pub const SNAPSHOT_KIND: &str = "semantic-cache";
pub const SNAPSHOT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct SavedSem {
    scope: u64,
    query: String,
    vector: Vec<f32>,
    entry: SavedEntry,
}

#[derive(Serialize, Deserialize)]
struct SavedSemantic {
    /// Model scopes in the scopes are catalog indices, and vectors are only comparable under the
    /// same embedder: a snapshot restores only into the same catalog and embedder.
    catalog: Vec<String>,
    embedder: String,
    entries: Vec<SavedSem>,
}

/// Bytes charged per entry on top of its strings and vector.
const ENTRY_OVERHEAD: usize = 256;
const SHARDS: usize = 32;

#[derive(Clone, Debug, PartialEq)]
pub struct SemanticConfig {
    pub max_entries: usize,
    pub max_bytes: usize,
}

impl Default for SemanticConfig {
    fn default() -> Self {
        SemanticConfig { max_entries: 100_000, max_bytes: 512 << 20 }
    }
}

/// Live entries' vectors in columns, one row per entry (see [`SemanticStore::live_vectors`]).
#[derive(Debug, Default)]
pub struct LiveVectors {
    pub scopes: Vec<u64>,
    pub ids: Vec<u64>,
    pub vectors: Vec<f32>,
}

/// One cached answer of the semantic layer.
pub struct SemEntry {
    pub id: u64,
    pub scope: u64,
    /// The text that was embedded (the last user turn), shared with the decision that stored it.
    pub query: Arc<str>,
    pub signature: Signature,
    pub vector: Vec<f32>,
    /// Answer and metadata, shared with the exact cache's entry type.
    pub entry: Arc<Entry>,
    /// Its shard's GDSF clock at the last insert or hit (f64 bits): what lets unused entries age
    /// out. Kept here, not in `entry`, whose clock is the exact cache's.
    clock: AtomicU64,
}

impl SemEntry {
    fn size(&self) -> usize {
        ENTRY_OVERHEAD + self.query.len() + self.signature.size_bytes() + 4 * self.vector.len() + self.entry.size()
    }
}

/// The scope a semantic hit must share with the request: everything that changes the answer
/// except the wording of the last user turn.
pub fn scope_of(req: &Request, model_scope: &[u32], embedder_id: &str) -> u64 {
    let mut h = Xxh3::new();
    let mut put = |bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    put(b"routerx-semantic-scope-v1");
    put(embedder_id.as_bytes());
    put(req.tenant.as_bytes());
    let scope: Vec<u8> = model_scope.iter().flat_map(|m| m.to_le_bytes()).collect();
    put(&scope);
    put(req.tools.as_bytes());
    put(req.params.as_bytes());
    let last = req.last_user_index();
    for (i, m) in req.messages.iter().enumerate() {
        if Some(i) == last {
            put(b"<query>");
            continue;
        }
        put(&[m.role as u8]);
        put(m.content.as_bytes());
    }
    h.digest()
}

/// The text a request is embedded by: its last user turn (the whole conversation is in the scope).
pub fn query_of(req: &Request) -> &str {
    req.last_user()
}

/// Why the best candidates were not served (counted in [`SemanticStats`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Rejection {
    /// No candidate at or above the similarity threshold.
    BelowThreshold,
    /// The index returned an id that is no longer live (removal not yet applied to the index).
    Stale,
    /// Another scope's entry (only if the index partitioning was bypassed: never served).
    OtherScope,
    /// The near-miss guard found a decisive difference.
    Guard(Mismatch),
}

/// A candidate accepted for serving.
pub struct Accepted {
    pub entry: Arc<SemEntry>,
    pub similarity: f32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SemanticStats {
    pub entries: u64,
    pub bytes: u64,
    pub inserts: u64,
    pub evictions: u64,
    pub expirations: u64,
    pub hits: u64,
    pub below_threshold: u64,
    pub guard_rejections: u64,
    /// Hits served although the guard saw a name difference, because the verifier trusted them.
    pub guard_overruled: u64,
    pub stale_candidates: u64,
}

#[derive(Default)]
struct Shard {
    map: HashMap<u64, Arc<SemEntry>>,
    keys: Vec<u64>,
    pos: HashMap<u64, usize>,
    clock: f64,
}

impl Shard {
    fn remove(&mut self, id: u64) -> Option<Arc<SemEntry>> {
        let e = self.map.remove(&id)?;
        let p = self.pos.remove(&id).expect("dense key list matches the map");
        self.keys.swap_remove(p);
        if let Some(&moved) = self.keys.get(p) {
            self.pos.insert(moved, p);
        }
        Some(e)
    }
}

pub struct SemanticStore {
    cfg: SemanticConfig,
    shards: Box<[RwLock<Shard>]>,
    next_id: AtomicU64,
    entries: AtomicUsize,
    bytes: AtomicUsize,
    /// Ids removed since the index last drained them.
    removed: Mutex<Vec<u64>>,
    inserts: AtomicU64,
    evictions: AtomicU64,
    expirations: AtomicU64,
    hits: AtomicU64,
    below: AtomicU64,
    guarded: AtomicU64,
    overruled: AtomicU64,
    stale: AtomicU64,
}

impl SemanticStore {
    pub fn new(cfg: SemanticConfig) -> Self {
        SemanticStore {
            cfg,
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect(),
            next_id: AtomicU64::new(1),
            entries: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            removed: Mutex::new(Vec::new()),
            inserts: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            expirations: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            below: AtomicU64::new(0),
            guarded: AtomicU64::new(0),
            overruled: AtomicU64::new(0),
            stale: AtomicU64::new(0),
        }
    }

    pub fn config(&self) -> &SemanticConfig {
        &self.cfg
    }

    fn shard(&self, id: u64) -> &RwLock<Shard> {
        // Ids are sequential: a multiplicative hash spreads neighbours over the shards.
        &self.shards[(id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 59) as usize % SHARDS]
    }

    /// Stores an answer; returns its id (what the index must hold for `vector`), or None when it
    /// is larger than the whole byte budget. Evictions made to fit it are queued for the index.
    pub fn insert(&self, scope: u64, query: impl Into<Arc<str>>, vector: Vec<f32>, entry: Arc<Entry>, now: f64) -> Option<u64> {
        if self.cfg.max_entries == 0 {
            return None;
        }
        let query = query.into();
        let id = self.next_id.fetch_add(1, Relaxed);
        let signature = Signature::of(&query);
        let e = Arc::new(SemEntry { id, scope, query, signature, vector, entry, clock: AtomicU64::new(0) });
        let size = e.size();
        if size > self.cfg.max_bytes {
            return None;
        }
        {
            let mut s = self.shard(id).write();
            e.clock.store(s.clock.to_bits(), Relaxed);
            let p = s.keys.len();
            s.keys.push(id);
            s.pos.insert(id, p);
            s.map.insert(id, e);
        }
        self.entries.fetch_add(1, Relaxed);
        self.bytes.fetch_add(size, Relaxed);
        self.inserts.fetch_add(1, Relaxed);
        let mut probe = fastrand::usize(..SHARDS);
        let mut empty = 0;
        while self.over_budget() && empty < SHARDS {
            if self.evict_one(probe, now, id) {
                empty = 0;
            } else {
                probe = (probe + 1) % SHARDS;
                empty += 1;
            }
        }
        Some(id)
    }

    fn over_budget(&self) -> bool {
        self.entries.load(Relaxed) > self.cfg.max_entries || self.bytes.load(Relaxed) > self.cfg.max_bytes
    }

    fn evict_one(&self, s: usize, now: f64, keep: u64) -> bool {
        let mut shard = self.shards[s].write();
        let n = shard.keys.len();
        if n == 0 || (n == 1 && shard.keys[0] == keep) {
            return false;
        }
        let victim = crate::cache::sample_victim(&shard.keys, keep, |id| {
            let e = &shard.map[&id];
            let hits = e.entry.hits.load(Relaxed) as f64;
            (f64::from_bits(e.clock.load(Relaxed)) + (1.0 + hits) * e.entry.cost_usd / e.size() as f64, e.entry.expires <= now)
        });
        let Some((id, p, expired)) = victim else { return false };
        let e = shard.remove(id).expect("sampled id is present");
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

    fn account_removal(&self, e: &SemEntry) {
        self.entries.fetch_sub(1, Relaxed);
        self.bytes.fetch_sub(e.size(), Relaxed);
        self.removed.lock().push(e.id);
    }

    pub fn get(&self, id: u64) -> Option<Arc<SemEntry>> {
        self.shard(id).read().map.get(&id).cloned()
    }

    /// The best candidate that may be served: in `scope`, live, at least as similar as the
    /// threshold of the cached answer's task category (`thresholds`, by category index), and
    /// compatible with `query` by the guard. `candidates` are (id, cosine) from the index, best
    /// first. `trusted`: ids a cross-encoder scored at or above its name threshold, for which a
    /// guard difference in names alone ([`Mismatch::Name`]) is overruled. Err says why the best
    /// one (by similarity) was refused.
    pub fn resolve(
        &self,
        scope: u64,
        query: &Signature,
        candidates: &[(u64, f32)],
        thresholds: &[f32; N_CATEGORIES],
        now: f64,
        trusted: &[u64],
    ) -> Result<Accepted, Rejection> {
        let floor = thresholds.iter().copied().fold(f32::INFINITY, f32::min);
        let mut first_refusal: Option<Rejection> = None;
        for &(id, sim) in candidates {
            if !(sim >= floor) {
                break; // best first: the rest are lower still
            }
            let Some(e) = self.get(id) else {
                self.stale.fetch_add(1, Relaxed);
                first_refusal.get_or_insert(Rejection::Stale);
                continue;
            };
            if e.scope != scope {
                first_refusal.get_or_insert(Rejection::OtherScope);
                continue;
            }
            if !(sim >= thresholds[e.entry.category.index()]) {
                continue; // below its category's threshold: counted as below threshold if none is served
            }
            if e.entry.expires <= now {
                self.remove(id);
                self.expirations.fetch_add(1, Relaxed);
                first_refusal.get_or_insert(Rejection::Stale);
                continue;
            }
            match guard::check(query, &e.signature) {
                Ok(()) => {}
                Err(Mismatch::Name(_)) if trusted.contains(&id) => {
                    self.overruled.fetch_add(1, Relaxed);
                }
                Err(m) => {
                    self.guarded.fetch_add(1, Relaxed);
                    first_refusal.get_or_insert(Rejection::Guard(m));
                    continue;
                }
            }
            e.entry.hits.fetch_add(1, Relaxed);
            e.clock.store(self.shard(id).read().clock.to_bits(), Relaxed);
            self.hits.fetch_add(1, Relaxed);
            return Ok(Accepted { entry: e, similarity: sim.min(1.0) });
        }
        let r = first_refusal.unwrap_or(Rejection::BelowThreshold);
        if r == Rejection::BelowThreshold {
            self.below.fetch_add(1, Relaxed);
        }
        Err(r)
    }

    /// Replaces the index's scores of `candidates` by the exact cosine with the entries' own
    /// vectors and re-sorts them best first. The index may store vectors compressed (HNSW
    /// partitions hold float16): thresholds and the reported similarity are always exact. Ids no
    /// longer held keep their score (`resolve` refuses them as stale).
    pub fn rescore(&self, query: &[f32], candidates: &mut [(u64, f32)]) {
        for (id, sim) in candidates.iter_mut() {
            if let Some(e) = self.get(*id) {
                if e.vector.len() == query.len() {
                    *sim = e.vector.iter().zip(query).map(|(a, b)| a * b).sum();
                }
            }
        }
        candidates.sort_by(|a, b| b.1.total_cmp(&a.1));
    }

    pub fn remove(&self, id: u64) -> bool {
        let removed = self.shard(id).write().remove(id);
        removed.map(|e| self.account_removal(&e)).is_some()
    }

    /// Removes every entry matching `pred`; returns how many.
    pub fn remove_where(&self, pred: impl Fn(&SemEntry) -> bool) -> usize {
        let mut n = 0;
        for lock in self.shards.iter() {
            let mut s = lock.write();
            let doomed: Vec<u64> = s.map.values().filter(|e| pred(e)).map(|e| e.id).collect();
            for id in doomed {
                let e = s.remove(id).expect("present");
                self.account_removal(&e);
                n += 1;
            }
        }
        n
    }

    /// Ids removed since the last call: the index drops them (they are already never served).
    pub fn drain_removed(&self) -> Vec<u64> {
        std::mem::take(&mut *self.removed.lock())
    }

    /// Live entries of every scope, for rebuilding an index: (scope, id, vector) in id order.
    pub fn live(&self, now: f64) -> Vec<Arc<SemEntry>> {
        let mut out: Vec<Arc<SemEntry>> = Vec::with_capacity(self.entries.load(Relaxed));
        for lock in self.shards.iter() {
            out.extend(lock.read().map.values().filter(|e| e.entry.expires > now).cloned());
        }
        out.sort_unstable_by_key(|e| e.id);
        out
    }

    /// Live vectors as contiguous columns (scopes, ids, row-major vectors of `dim`), in id order:
    /// what an index is built from. `scope` keeps one scope; `ids` looks those ids up instead of
    /// scanning every shard (absent or expired ones are skipped).
    pub fn live_vectors(&self, now: f64, scope: Option<u64>, ids: Option<&[u64]>) -> LiveVectors {
        let keep = |e: &Arc<SemEntry>| e.entry.expires > now && scope.is_none_or(|s| e.scope == s);
        let mut rows: Vec<Arc<SemEntry>> = match ids {
            Some(ids) => ids.iter().filter_map(|&id| self.get(id)).filter(keep).collect(),
            // One pass over the shards keeping only this scope's (not a copy of every entry).
            None => self.shards.iter().flat_map(|lock| lock.read().map.values().filter(|e| keep(e)).cloned().collect::<Vec<_>>()).collect(),
        };
        rows.sort_unstable_by_key(|e| e.id);
        rows.dedup_by_key(|e| e.id);
        let mut out = LiveVectors {
            scopes: Vec::with_capacity(rows.len()),
            ids: Vec::with_capacity(rows.len()),
            vectors: Vec::with_capacity(rows.len() * rows.first().map_or(0, |e| e.vector.len())),
        };
        for e in &rows {
            out.scopes.push(e.scope);
            out.ids.push(e.id);
            out.vectors.extend_from_slice(&e.vector);
        }
        out
    }

    /// Writes the live entries (vectors included: the index is rebuilt from them) to `path`.
    pub fn snapshot(&self, path: &std::path::Path, catalog: &[String], embedder: &str, now: f64) -> Result<(usize, u64)> {
        let entries: Vec<SavedSem> = self
            .live(now)
            .iter()
            .map(|e| SavedSem { scope: e.scope, query: e.query.to_string(), vector: e.vector.clone(), entry: SavedEntry::of(&e.entry) })
            .collect();
        let n = entries.len();
        let saved = SavedSemantic { catalog: catalog.to_vec(), embedder: embedder.to_owned(), entries };
        let bytes = snapshot::write(path, SNAPSHOT_KIND, SNAPSHOT_VERSION, &saved)?;
        Ok((n, bytes))
    }

    /// Adds a snapshot's live entries under new ids (the caller then rebuilds its index from
    /// [`SemanticStore::live`]). Verified whole first: on error nothing changes. Everything is
    /// dropped when the catalog or the embedder differ.
    pub fn restore(&self, path: &std::path::Path, catalog: &[String], embedder: &str, now: f64) -> Result<Restored> {
        let saved: SavedSemantic = snapshot::read(path, SNAPSHOT_KIND, SNAPSHOT_VERSION)?;
        let mut out = Restored::default();
        if saved.catalog != catalog || saved.embedder != embedder {
            out.dropped = saved.entries.len();
            return Ok(out);
        }
        let mut intern = interner();
        let mut entries = saved.entries;
        entries.sort_by(|a, b| b.entry.value().total_cmp(&a.entry.value()));
        let total = entries.len();
        let mut ids = Vec::with_capacity(total);
        for s in entries {
            if s.entry.expires <= now {
                out.expired += 1;
                continue;
            }
            if self.entries.load(Relaxed) >= self.cfg.max_entries {
                continue;
            }
            let Some(e) = s.entry.into_entry(&mut intern) else { continue };
            if let Some(id) = self.insert(s.scope, s.query, s.vector, Arc::new(e), now) {
                ids.push(id);
            }
        }
        out.restored = ids.iter().filter(|&&id| self.get(id).is_some()).count();
        out.dropped = total - out.expired - out.restored;
        Ok(out)
    }

    pub fn stats(&self) -> SemanticStats {
        SemanticStats {
            entries: self.entries.load(Relaxed) as u64,
            bytes: self.bytes.load(Relaxed) as u64,
            inserts: self.inserts.load(Relaxed),
            evictions: self.evictions.load(Relaxed),
            expirations: self.expirations.load(Relaxed),
            hits: self.hits.load(Relaxed),
            below_threshold: self.below.load(Relaxed),
            guard_rejections: self.guarded.load(Relaxed),
            guard_overruled: self.overruled.load(Relaxed),
            stale_candidates: self.stale.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classifier::Category;
    use crate::request::{Message, Role};

    fn entry(response: &str, cost: f64, expires: f64) -> Arc<Entry> {
        let s: Arc<str> = Arc::from("m");
        Arc::new(Entry::new(0, Arc::from("t"), response.into(), s.clone(), s.clone(), s, Category::Chat, 0.3, 10, 5, cost, 0.0, expires))
    }

    #[test]
    fn scope_covers_context_but_not_the_query_wording() {
        let mut a = Request::from_prompt("acme", "How do I reset my password?");
        let b = Request::from_prompt("acme", "I forgot my password, how can I reset it?");
        assert_eq!(scope_of(&a, &[], "e"), scope_of(&b, &[], "e"));
        assert_ne!(scope_of(&a, &[], "e"), scope_of(&a, &[], "e2"), "embedder id");
        assert_ne!(scope_of(&a, &[], "e"), scope_of(&a, &[1], "e"), "model scope");
        assert_ne!(scope_of(&a, &[], "e"), scope_of(&Request::from_prompt("globex", "How do I reset my password?"), &[], "e"));
        let base = scope_of(&a, &[], "e");
        a.messages.insert(0, Message { role: Role::System, content: "You are terse.".into() });
        assert_ne!(base, scope_of(&a, &[], "e"), "system prompt");
        let mut turns = Request::from_prompt("acme", "and in Spanish?");
        turns.messages.insert(0, Message { role: Role::User, content: "Say hello in French".into() });
        turns.messages.insert(1, Message { role: Role::Assistant, content: "Bonjour".into() });
        let mut other = turns.clone();
        other.messages[0].content = "Say goodbye in French".into();
        assert_ne!(scope_of(&turns, &[], "e"), scope_of(&other, &[], "e"), "earlier turns");
        let mut t = b.clone();
        t.tools = "[{\"name\":\"x\"}]".into();
        assert_ne!(scope_of(&b, &[], "e"), scope_of(&t, &[], "e"), "tools");
        assert_eq!(query_of(&turns), "and in Spanish?");
    }

    #[test]
    fn resolve_checks_scope_threshold_liveness_and_guard() {
        let s = SemanticStore::new(SemanticConfig::default());
        let id = s.insert(7, "turn on the kitchen lights", vec![1.0, 0.0], entry("done", 0.01, 100.0), 0.0).unwrap();
        let q_same = Signature::of("please turn on the kitchen lights");
        let q_off = Signature::of("turn off the kitchen lights");
        assert_eq!(s.resolve(7, &q_same, &[(id, 0.97)], &[0.9; N_CATEGORIES], 1.0, &[]).unwrap().entry.id, id);
        assert!(matches!(s.resolve(7, &q_same, &[(id, 0.85)], &[0.9; N_CATEGORIES], 1.0, &[]), Err(Rejection::BelowThreshold)));
        assert!(matches!(s.resolve(8, &q_same, &[(id, 0.97)], &[0.9; N_CATEGORIES], 1.0, &[]), Err(Rejection::OtherScope)));
        assert!(matches!(s.resolve(7, &q_off, &[(id, 0.99)], &[0.9; N_CATEGORIES], 1.0, &[]), Err(Rejection::Guard(_))));
        assert!(matches!(s.resolve(7, &q_same, &[(999, 0.99)], &[0.9; N_CATEGORIES], 1.0, &[]), Err(Rejection::Stale)));
        // A later candidate is served when the best one is refused.
        let id2 = s.insert(7, "switch on the kitchen lights", vec![0.0, 1.0], entry("ok", 0.01, 100.0), 0.0).unwrap();
        assert_eq!(s.resolve(7, &q_same, &[(999, 0.99), (id2, 0.95)], &[0.9; N_CATEGORIES], 1.0, &[]).unwrap().entry.id, id2);
        // Expired: refused and removed, and the index is told.
        assert!(s.resolve(7, &q_same, &[(id, 0.99)], &[0.9; N_CATEGORIES], 200.0, &[]).is_err());
        assert!(s.get(id).is_none());
        assert!(s.drain_removed().contains(&id));
        // Per-category thresholds: the cached answer's category (chat here) decides.
        let mut strict = [0.5; N_CATEGORIES];
        strict[Category::Chat.index()] = 0.99;
        assert!(matches!(s.resolve(7, &q_same, &[(id2, 0.97)], &strict, 1.0, &[]), Err(Rejection::BelowThreshold)));
        let mut loose = [0.99; N_CATEGORIES];
        loose[Category::Chat.index()] = 0.9;
        assert!(s.resolve(7, &q_same, &[(id2, 0.95)], &loose, 1.0, &[]).is_ok());
        let st = s.stats();
        assert_eq!((st.hits, st.guard_rejections, st.below_threshold), (3, 1, 2));
    }

    #[test]
    fn trusted_candidates_overrule_a_name_difference_only() {
        let s = SemanticStore::new(SemanticConfig::default());
        let trump = s.insert(1, "What does Donald Trump think about Mexico?", vec![1.0, 0.0], entry("a", 0.01, 100.0), 0.0).unwrap();
        let five = s.insert(1, "What does Donald Trump think about 5 countries?", vec![0.0, 1.0], entry("b", 0.01, 100.0), 0.0).unwrap();
        let q = Signature::of("What does Trump think about Mexico?");
        let t = [0.9; N_CATEGORIES];
        // Untrusted: the name difference refuses it.
        assert!(matches!(s.resolve(1, &q, &[(trump, 0.97)], &t, 1.0, &[]), Err(Rejection::Guard(Mismatch::Name(_)))));
        assert_eq!(s.resolve(1, &q, &[(trump, 0.97)], &t, 1.0, &[trump]).unwrap().entry.id, trump);
        // Trusted, but a number differs too: the guard's other checks are never overruled.
        let q5 = Signature::of("What does Trump think about 6 countries?");
        assert!(matches!(s.resolve(1, &q5, &[(five, 0.97)], &t, 1.0, &[five]), Err(Rejection::Guard(Mismatch::Number(_)))));
        // Trust is per candidate.
        assert!(s.resolve(1, &q, &[(trump, 0.97)], &t, 1.0, &[five]).is_err());
        let st = s.stats();
        assert_eq!((st.hits, st.guard_overruled, st.guard_rejections), (1, 1, 3));
    }

    #[test]
    fn rescore_uses_the_entries_exact_vectors() {
        let s = SemanticStore::new(SemanticConfig::default());
        let a = s.insert(1, "a", vec![0.6, 0.8], entry("a", 0.01, 100.0), 0.0).unwrap();
        let b = s.insert(1, "b", vec![1.0, 0.0], entry("b", 0.01, 100.0), 0.0).unwrap();
        // Approximate scores (as a compressed index returns them), in the wrong order, and a stale id.
        let mut c = vec![(a, 0.999), (999, 0.7), (b, 0.5)];
        s.rescore(&[1.0, 0.0], &mut c);
        assert_eq!(c, vec![(b, 1.0), (999, 0.7), (a, 0.6)]);
    }

    #[test]
    fn eviction_ages_out_unused_entries_and_keeps_hit_ones() {
        // Large enough that every shard holds many entries (eviction samples within one shard).
        let s = SemanticStore::new(SemanticConfig { max_entries: 3_200, max_bytes: usize::MAX });
        let q = Signature::of("what are the opening hours");
        let kept = s.insert(1, "what are the opening hours", vec![0.0; 4], entry("9-5", 0.001, 1e9), 0.0).unwrap();
        // An answer worth 4x a one-off but never used again must age out under a long flood,
        // while a cheap one that keeps being hit stays.
        let stale = s.insert(2, "old expensive question", vec![0.0; 4], entry("x", 0.004, 1e9), 0.0).unwrap();
        for i in 0..40_000u64 {
            s.insert(3, format!("one-off {i}"), vec![0.0; 4], entry("y", 0.001, 1e9), 0.0);
            if i % 100 == 0 {
                assert!(s.resolve(1, &q, &[(kept, 0.99)], &[0.9; N_CATEGORIES], 0.0, &[]).is_ok(), "hit entry evicted at {i}");
            }
        }
        assert!(s.get(stale).is_none(), "an unused entry ages out");
    }

    #[test]
    fn bounded_in_bytes_under_long_churn() {
        let cfg = SemanticConfig { max_entries: usize::MAX, max_bytes: 2_000_000 };
        let s = SemanticStore::new(cfg);
        let mut removed = 0;
        for i in 0..50_000u64 {
            s.insert(i % 5, format!("question number {i}"), vec![0.5; 384], entry(&"x".repeat((i % 300) as usize), 0.001, 1e9), 0.0);
            if i % 1000 == 0 {
                removed += s.drain_removed().len();
            }
            assert!(s.stats().bytes <= 2_000_000);
        }
        removed += s.drain_removed().len();
        let st = s.stats();
        assert_eq!(st.entries as usize + removed, 50_000, "every removal reaches the index");
        assert!(st.entries > 500, "{st:?}");
        let live = s.live(0.0);
        assert_eq!(live.len() as u64, st.entries);
        let bytes: usize = live.iter().map(|e| e.size()).sum();
        assert_eq!(bytes as u64, st.bytes);
    }

    #[test]
    fn live_vectors_by_scope_and_by_id() {
        let s = SemanticStore::new(SemanticConfig::default());
        let ids: Vec<u64> = (0..10u64)
            .map(|i| {
                s.insert(i % 2, format!("q{i}"), vec![i as f32, -(i as f32)], entry("a", 0.0, if i == 4 { 5.0 } else { 1e9 }), 0.0).unwrap()
            })
            .collect();
        let all = s.live_vectors(10.0, None, None);
        assert_eq!(all.ids.len(), 9, "the expired one is left out");
        assert_eq!(all.vectors.len(), 18);
        let even = s.live_vectors(10.0, Some(0), None);
        let want: Vec<u64> = [0, 2, 6, 8].iter().map(|&i| ids[i]).collect();
        assert_eq!(even.ids, want);
        assert!(even.scopes.iter().all(|&sc| sc == 0));
        assert_eq!(even.vectors[2..4], [2.0, -2.0]);
        // By id: unknown, expired, other-scope and repeated ids are skipped; id order.
        let some = s.live_vectors(10.0, Some(1), Some(&[ids[7], 999_999, ids[4], ids[1], ids[2], ids[7]]));
        assert_eq!(some.ids, vec![ids[1], ids[7]]);
        assert_eq!(some.vectors, vec![1.0, -1.0, 7.0, -7.0]);
    }

    #[test]
    fn snapshot_round_trip_with_100k_entries() {
        let dir = std::env::temp_dir().join(format!("routerx-sem-snap-{}", std::process::id()));
        let path = dir.join("semantic.rxsnap");
        let catalog = vec!["m".to_string()];
        let s = SemanticStore::new(SemanticConfig { max_entries: 200_000, max_bytes: usize::MAX });
        for i in 0..100_000u64 {
            let expires = if i % 50 == 0 { 10.0 } else { 1e9 };
            s.insert(i % 97, format!("question {i}"), vec![i as f32, 1.0, -1.0, 0.5], entry(&format!("answer {i}"), 0.001, expires), 0.0)
                .unwrap();
        }
        let (n, _) = s.snapshot(&path, &catalog, "emb", 0.0).unwrap();
        assert_eq!(n, 100_000);
        let r = SemanticStore::new(SemanticConfig { max_entries: 200_000, max_bytes: usize::MAX });
        let got = r.restore(&path, &catalog, "emb", 20.0).unwrap();
        assert_eq!((got.restored, got.expired, got.dropped), (98_000, 2_000, 0));
        let live = r.live(20.0);
        assert_eq!(live.len(), 98_000);
        for e in live.iter().step_by(997) {
            let i: u64 = e.query.trim_start_matches("question ").parse().unwrap();
            assert_eq!((e.scope, e.vector[0], e.entry.response.as_str()), (i % 97, i as f32, format!("answer {i}").as_str()));
        }
        // Another embedder's or catalog's vectors are never restored.
        let other = SemanticStore::new(SemanticConfig::default());
        assert_eq!(other.restore(&path, &catalog, "emb2", 20.0).unwrap().dropped, 100_000);
        assert_eq!(other.restore(&path, &["x".to_string()], "emb", 20.0).unwrap().restored, 0);
        // A truncated file: an error naming it, nothing restored.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let err = other.restore(&path, &catalog, "emb", 20.0).unwrap_err();
        assert!(err.to_string().contains("semantic.rxsnap"), "{err}");
        assert_eq!(other.stats().entries, 0);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn concurrent_inserts_and_lookups_never_cross_scopes() {
        let s = Arc::new(SemanticStore::new(SemanticConfig { max_entries: 2_000, max_bytes: usize::MAX }));
        let threads: Vec<_> = (0..16u64)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    let q = Signature::of("what is the status of my order");
                    let mut mine = Vec::new();
                    for i in 0..2_000u64 {
                        if i % 2 == 0 {
                            if let Some(id) =
                                s.insert(t, "what is the status of my order", vec![0.0; 8], entry(&format!("{t}"), 0.001, 1e9), 0.0)
                            {
                                mine.push(id);
                            }
                        } else if let Some(&id) = mine.last() {
                            // Another thread's id in our scope is never served.
                            let other = id.wrapping_add(1);
                            if let Ok(a) = s.resolve(t, &q, &[(other, 0.99), (id, 0.98)], &[0.9; N_CATEGORIES], 0.0, &[]) {
                                assert_eq!(a.entry.scope, t);
                                assert_eq!(a.entry.entry.response, format!("{t}"));
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let st = s.stats();
        assert!(st.entries <= 2_000);
        assert_eq!(st.entries as usize, s.live(0.0).len());
    }
}
