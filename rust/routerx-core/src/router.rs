//! The core router: one call per request, from owned request values to a complete outcome.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

use crate::cache::{CacheConfig, CacheStats, Entry, ExactCache};
use crate::classifier::{Classification, Classifier};
use crate::error::{Error, Result};
use crate::features::Features;
use crate::fingerprint::{fingerprint, Key};
use crate::policy::{violation, Choice, PolicyTable, Scored};
use crate::request::{CacheControl, Constraints, Request};
use crate::stats::{to_nano, LatencySummary, Stats};

pub fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

#[derive(Clone, Debug, PartialEq)]
pub struct CoreConfig {
    /// Larger prompts are rejected before any work is done.
    pub max_prompt_bytes: usize,
    pub cache: CacheConfig,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig { max_prompt_bytes: 4 << 20, cache: CacheConfig::default() }
    }
}

/// A policy table with the names each candidate resolves to, shared by every outcome made with it.
#[derive(Debug)]
pub struct Compiled {
    pub table: PolicyTable,
    /// (model, provider, tier) of each candidate, as shared strings for cache entries and counters.
    pub names: Vec<(Arc<str>, Arc<str>, Arc<str>)>,
}

impl Compiled {
    fn new(table: PolicyTable) -> Result<Compiled> {
        table.validate()?;
        let models: Vec<(Arc<str>, Arc<str>)> = table.models.iter().map(|m| (Arc::from(m.name.as_str()), Arc::from(m.provider.as_str()))).collect();
        let names = table
            .candidates
            .iter()
            .map(|c| {
                let (m, p) = &models[c.model as usize];
                (m.clone(), p.clone(), Arc::from(c.tier.as_str()))
            })
            .collect();
        Ok(Compiled { table, names })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheState {
    /// Answered from the exact cache.
    Exact,
    /// Looked up, not found.
    Miss,
    /// The caller asked not to read the cache.
    Bypass,
}

impl CacheState {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheState::Exact => "exact",
            CacheState::Miss => "miss",
            CacheState::Bypass => "bypass",
        }
    }
}

#[derive(Debug)]
pub struct Routed {
    pub input_tokens: u32,
    /// The start of the last user turn, kept for on-demand language detection.
    pub sample: String,
    pub class: Classification,
    /// Predicted output tokens after the caller's `max_tokens` cap.
    pub output_tokens: u32,
    pub choice: Choice,
}

#[derive(Debug)]
pub enum Served {
    Hit(Arc<Entry>),
    Routed(Routed),
}

/// Everything a decision needs, including what `record()` will need later.
#[derive(Debug)]
pub struct RouteOutcome {
    pub core_id: u64,
    pub key: Key,
    pub tenant: Arc<str>,
    pub policy: Arc<Compiled>,
    pub cache_state: CacheState,
    pub cache_control: CacheControl,
    pub served: Served,
    pub routed_at: f64,
    /// Time spent in the core for this request.
    pub route_ns: u64,
}

impl RouteOutcome {
    /// (model, provider, tier) of the answer: the cached entry's, or the chosen candidate's.
    pub fn names(&self) -> (&Arc<str>, &Arc<str>, &Arc<str>) {
        match &self.served {
            Served::Hit(e) => (&e.model, &e.provider, &e.tier),
            Served::Routed(r) => {
                let n = &self.policy.names[r.choice.chosen.candidate as usize];
                (&n.0, &n.1, &n.2)
            }
        }
    }

    pub fn candidate_names(&self, s: &Scored) -> (&Arc<str>, &Arc<str>, &Arc<str>) {
        let n = &self.policy.names[s.candidate as usize];
        (&n.0, &n.1, &n.2)
    }

    /// ISO 639-3 language of the last user turn; computed on demand (it costs more than routing).
    pub fn language(&self) -> Option<&'static str> {
        match &self.served {
            Served::Hit(_) => None,
            Served::Routed(r) => Some(crate::features::detect_language(&r.sample)),
        }
    }

    pub fn violation_names(&self) -> Vec<&'static str> {
        match &self.served {
            Served::Hit(_) => Vec::new(),
            Served::Routed(r) => violation::NAMES.iter().filter(|(b, _)| r.choice.violations & b != 0).map(|(_, n)| *n).collect(),
        }
    }

    /// One sentence a person can read in a log line.
    pub fn reason(&self) -> String {
        let (model, _, tier) = self.names();
        match &self.served {
            Served::Hit(e) => format!(
                "exact cache hit: answered by {model}/{tier} {:.0} s ago; saves ${:.6} and the model call",
                (self.routed_at - e.created).max(0.0),
                e.cost_usd
            ),
            Served::Routed(r) => {
                let ch = &r.choice;
                let head = format!(
                    "{} request (complexity {:.2}, {} input / ~{} output tokens) needs quality ≥ {:.2}",
                    r.class.category.name(),
                    r.class.complexity,
                    r.input_tokens,
                    r.output_tokens,
                    ch.required_quality
                );
                if ch.within_budget() {
                    format!(
                        "{head}: {model}/{tier} is the cheapest of {} fitting candidates at ${:.6}, ~{:.0} ms",
                        ch.feasible, ch.chosen.cost_usd, ch.chosen.latency_ms
                    )
                } else {
                    format!(
                        "{head}: best effort, no candidate meets {}; {model}/{tier} comes closest at ${:.6}, ~{:.0} ms (quality {:.2})",
                        self.violation_names().join(" + "),
                        ch.chosen.cost_usd,
                        ch.chosen.latency_ms,
                        ch.chosen.quality
                    )
                }
            }
        }
    }
}

fn prefix(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// What `record()` did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Recorded {
    pub cost_usd: f64,
    pub stored: bool,
}

static NEXT_CORE_ID: AtomicU64 = AtomicU64::new(1);

pub struct Core {
    id: u64,
    classifier: ArcSwap<Classifier>,
    policy: ArcSwap<Compiled>,
    cache: ExactCache,
    stats: Stats,
    cfg: CoreConfig,
}

impl Core {
    pub fn new(cfg: CoreConfig, classifier: Classifier, table: PolicyTable) -> Result<Core> {
        if !(cfg.cache.default_ttl_s > 0.0) {
            return Err(Error::config("cache", "default_ttl_s must be positive"));
        }
        crate::features::warm_up();
        Ok(Core {
            id: NEXT_CORE_ID.fetch_add(1, Relaxed),
            classifier: ArcSwap::from_pointee(classifier),
            policy: ArcSwap::from_pointee(Compiled::new(table)?),
            cache: ExactCache::new(cfg.cache.clone()),
            stats: Stats::new(),
            cfg,
        })
    }

    pub fn id(&self) -> u64 {
        self.id
    }
    pub fn policy(&self) -> Arc<Compiled> {
        self.policy.load_full()
    }
    pub fn classifier(&self) -> Arc<Classifier> {
        self.classifier.load_full()
    }
    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    /// Swaps the policy table; routes in flight finish on the table they started with.
    pub fn set_policy(&self, table: PolicyTable) -> Result<()> {
        self.policy.store(Arc::new(Compiled::new(table)?));
        Ok(())
    }

    pub fn set_classifier(&self, c: Classifier) {
        self.classifier.store(Arc::new(c));
    }

    pub fn route(&self, req: &Request, c: &Constraints) -> Result<RouteOutcome> {
        let t0 = Instant::now();
        self.stats.counters.requests.fetch_add(1, Relaxed);
        let out = self.route_inner(req, c, t0);
        let ns = t0.elapsed().as_nanos() as u64;
        self.stats.record_latency(ns);
        let k = &self.stats.counters;
        match &out {
            Err(_) => {
                k.errors.fetch_add(1, Relaxed);
            }
            Ok(o) => {
                match o.cache_state {
                    CacheState::Exact => k.exact_hits.fetch_add(1, Relaxed),
                    CacheState::Miss => k.misses.fetch_add(1, Relaxed),
                    CacheState::Bypass => k.bypassed.fetch_add(1, Relaxed),
                };
                match &o.served {
                    Served::Hit(e) => {
                        k.avoided_nano.fetch_add(to_nano(e.cost_usd), Relaxed);
                    }
                    Served::Routed(r) => {
                        if !r.choice.within_budget() {
                            k.best_effort.fetch_add(1, Relaxed);
                        }
                        let (m, _, t) = o.names();
                        self.stats.count_decision(m, t);
                    }
                }
            }
        }
        out.map(|mut o| {
            o.route_ns = ns;
            o
        })
    }

    fn route_inner(&self, req: &Request, c: &Constraints, _t0: Instant) -> Result<RouteOutcome> {
        c.validate()?;
        req.validate(self.cfg.max_prompt_bytes)?;
        let policy = self.policy.load_full();
        if let Some(allowed) = &c.allowed_models {
            if let Some(bad) = allowed.iter().find(|&&m| m as usize >= policy.table.models.len()) {
                return Err(Error::invalid_constraint("models", format!("model index {bad} is not in the catalog")));
            }
        }
        let scope = c.allowed_models.as_deref().unwrap_or(&[]);
        let key = fingerprint(req, scope);
        let now = unix_now();
        let tenant: Arc<str> = Arc::from(req.tenant.as_str());
        let outcome = |cache_state, served| RouteOutcome {
            core_id: self.id,
            key,
            tenant: tenant.clone(),
            policy: policy.clone(),
            cache_state,
            cache_control: c.cache,
            served,
            routed_at: now,
            route_ns: 0,
        };
        let cache_state = if c.cache.no_cache {
            CacheState::Bypass
        } else {
            if let Some(e) = self.cache.get(key, now) {
                if self.hit_meets_quality(&policy, &e, c) {
                    return Ok(outcome(CacheState::Exact, Served::Hit(e)));
                }
            }
            CacheState::Miss
        };
        let f = Features::extract(req);
        let class = self.classifier.load().classify(req, &f);
        let output_tokens = class.output_tokens.min(req.max_output_tokens.unwrap_or(u32::MAX)).max(1);
        let choice = policy.table.choose(class.category, class.complexity, f.input_tokens, output_tokens, c)?;
        Ok(outcome(cache_state, Served::Routed(Routed { input_tokens: f.input_tokens, sample: prefix(req.last_user(), 256).to_owned(), class, output_tokens, choice })))
    }

    /// A cached answer from a model the caller would now consider too weak is not a hit.
    fn hit_meets_quality(&self, policy: &Compiled, e: &Entry, c: &Constraints) -> bool {
        match c.min_quality {
            None => true,
            Some(q) => policy.table.model_index(&e.model).is_some_and(|m| policy.table.models[m as usize].quality[e.category.index()] as f64 >= q),
        }
    }

    /// Accounts a finished model call and stores its answer for later hits.
    pub fn record(&self, o: &RouteOutcome, response: String, input_tokens: u32, output_tokens: u32, latency_ms: f64, ok: bool) -> Result<Recorded> {
        if o.core_id != self.id {
            return Err(Error::invalid_request("decision", "was made by another Router"));
        }
        if !(latency_ms.is_finite() && latency_ms >= 0.0) {
            return Err(Error::invalid_request("latency_ms", format!("must be a finite number ≥ 0, got {latency_ms}")));
        }
        let k = &self.stats.counters;
        k.records.fetch_add(1, Relaxed);
        let Served::Routed(r) = &o.served else {
            // Answered from the cache: no model call happened, nothing to account or store.
            return Ok(Recorded { cost_usd: 0.0, stored: false });
        };
        let cand = &o.policy.table.candidates[r.choice.chosen.candidate as usize];
        let cost = cand.cost(input_tokens, output_tokens);
        k.input_tokens.fetch_add(input_tokens as u64, Relaxed);
        k.output_tokens.fetch_add(output_tokens as u64, Relaxed);
        k.cost_nano.fetch_add(to_nano(cost), Relaxed);
        if !ok {
            k.failed_calls.fetch_add(1, Relaxed);
            return Ok(Recorded { cost_usd: cost, stored: false });
        }
        if o.cache_control.no_store {
            return Ok(Recorded { cost_usd: cost, stored: false });
        }
        let now = unix_now();
        let ttl = o.cache_control.ttl_s.unwrap_or(self.cfg.cache.default_ttl_s);
        let (model, provider, tier) = o.names();
        let entry = Entry::new(
            o.key,
            o.tenant.clone(),
            response,
            model.clone(),
            provider.clone(),
            tier.clone(),
            r.class.category,
            r.class.complexity,
            input_tokens,
            output_tokens,
            cost,
            now,
            now + ttl,
        );
        self.cache.insert(entry, now);
        Ok(Recorded { cost_usd: cost, stored: true })
    }

    pub fn cache(&self) -> &ExactCache {
        &self.cache
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn latency(&self) -> LatencySummary {
        self.stats.latency()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::tests::table;

    fn core() -> Core {
        Core::new(CoreConfig::default(), Classifier::default_model(), table()).unwrap()
    }

    #[test]
    fn miss_then_record_then_exact_hit() {
        let core = core();
        let req = Request::from_prompt("acme", "What is the capital of France?");
        let c = Constraints::default();
        let o = core.route(&req, &c).unwrap();
        assert_eq!(o.cache_state, CacheState::Miss);
        let Served::Routed(r) = &o.served else { panic!() };
        assert!(r.input_tokens > 5);
        let rec = core.record(&o, "Paris.".into(), 14, 3, 120.0, true).unwrap();
        assert!(rec.stored && rec.cost_usd > 0.0);
        let hit = core.route(&req, &c).unwrap();
        assert_eq!(hit.cache_state, CacheState::Exact);
        let Served::Hit(e) = &hit.served else { panic!() };
        assert_eq!(e.response, "Paris.");
        assert!(hit.reason().starts_with("exact cache hit"), "{}", hit.reason());
        // Another tenant never sees it.
        let other = core.route(&Request::from_prompt("globex", "What is the capital of France?"), &c).unwrap();
        assert_eq!(other.cache_state, CacheState::Miss);
        // no_cache bypasses; a narrower model scope is a different key.
        let bypass = Constraints { cache: CacheControl { no_cache: true, ..Default::default() }, ..Default::default() };
        assert_eq!(core.route(&req, &bypass).unwrap().cache_state, CacheState::Bypass);
        let scoped = Constraints { allowed_models: Some(vec![2]), ..Default::default() };
        assert_eq!(core.route(&req, &scoped).unwrap().cache_state, CacheState::Miss);
        let k = &core.stats().counters;
        assert_eq!((k.requests.load(Relaxed), k.exact_hits.load(Relaxed), k.misses.load(Relaxed), k.bypassed.load(Relaxed)), (5, 1, 3, 1));
        assert_eq!(k.avoided_nano.load(Relaxed), to_nano(rec.cost_usd));
        assert_eq!(core.latency().count, 5);
    }

    #[test]
    fn min_quality_rejects_a_weak_cached_answer() {
        let core = core();
        let req = Request::from_prompt("t", "hello there");
        let o = core.route(&req, &Constraints::default()).unwrap();
        assert_eq!(&**o.names().0, "small");
        core.record(&o, "hi".into(), 5, 2, 10.0, true).unwrap();
        let strong = Constraints { min_quality: Some(0.9), ..Default::default() };
        let o2 = core.route(&req, &strong).unwrap();
        assert_eq!(o2.cache_state, CacheState::Miss);
        assert_eq!(&**o2.names().0, "big");
    }

    #[test]
    fn failures_and_no_store_are_not_cached() {
        let core = core();
        let req = Request::from_prompt("t", "hello there");
        let o = core.route(&req, &Constraints::default()).unwrap();
        assert!(!core.record(&o, "oops".into(), 5, 2, 10.0, false).unwrap().stored);
        let ns = Constraints { cache: CacheControl { no_store: true, ..Default::default() }, ..Default::default() };
        let o = core.route(&req, &ns).unwrap();
        assert!(!core.record(&o, "x".into(), 5, 2, 10.0, true).unwrap().stored);
        assert_eq!(core.route(&req, &Constraints::default()).unwrap().cache_state, CacheState::Miss);
        assert!(core.record(&o, "x".into(), 5, 2, f64::NAN, true).is_err());
        let other = super::Core::new(CoreConfig::default(), Classifier::default_model(), table()).unwrap();
        assert!(other.record(&o, "x".into(), 5, 2, 1.0, true).is_err());
    }

    #[test]
    fn errors_leave_state_intact() {
        let core = core();
        let bad = Constraints { latency_budget_ms: f64::NAN, ..Default::default() };
        assert!(core.route(&Request::from_prompt("t", "hi"), &bad).is_err());
        assert!(core.route(&Request::from_prompt("t", ""), &Constraints::default()).is_err());
        let c = Constraints { allowed_models: Some(vec![7]), ..Default::default() };
        assert!(core.route(&Request::from_prompt("t", "hi"), &c).is_err());
        let k = &core.stats().counters;
        assert_eq!((k.requests.load(Relaxed), k.errors.load(Relaxed)), (3, 3));
        assert_eq!(core.cache_stats().entries, 0);
    }

    #[test]
    fn hammer_from_many_threads() {
        let core = Arc::new(core());
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let core = core.clone();
                std::thread::spawn(move || {
                    for i in 0..300 {
                        let prompt = format!("question number {} from the shared pool", i % 50);
                        let tenant = format!("tenant-{}", t % 4);
                        let o = core.route(&Request::from_prompt(&tenant, prompt.clone()), &Constraints::default()).unwrap();
                        match &o.served {
                            Served::Hit(e) => {
                                assert_eq!(e.response, format!("{tenant}: {prompt}"));
                                assert_eq!(&*e.tenant, tenant);
                            }
                            Served::Routed(_) => {
                                core.record(&o, format!("{tenant}: {prompt}"), 10, 10, 5.0, true).unwrap();
                            }
                        }
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let k = &core.stats().counters;
        let (req, hits, miss) = (k.requests.load(Relaxed), k.exact_hits.load(Relaxed), k.misses.load(Relaxed));
        assert_eq!(req, 16 * 300);
        assert_eq!(hits + miss, req);
        assert_eq!(k.records.load(Relaxed), miss);
        assert!(hits >= 16 * 300 - 4 * 50 * 4, "at most each thread misses each of its tenant's prompts once: {hits}");
    }
}
