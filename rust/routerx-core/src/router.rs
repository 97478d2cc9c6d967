//! The core router: one call per request, from owned request values to a complete outcome.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

use crate::accounting::{Call, Ledger, LedgerKey};
use crate::budgets::{Action, Budgets, Labels, Reservation};
use crate::cache::{CacheConfig, CacheStats, Entry, ExactCache};
use crate::classifier::{Classification, Classifier};
use crate::error::{Error, Result};
use crate::features::Features;
use crate::fingerprint::{fingerprint, Key};
use crate::policy::{violation, Choice, PolicyTable, Scored};
use crate::request::{CacheControl, Constraints, Request};
use crate::semantic::guard::Signature;
use crate::semantic::{SemanticConfig, SemanticStore};
use crate::stats::{to_nano, LatencySummary, Stats};

pub fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

#[derive(Clone, Debug, PartialEq)]
pub struct CoreConfig {
    /// Larger prompts are rejected before any work is done.
    pub max_prompt_bytes: usize,
    pub cache: CacheConfig,
    pub semantic: SemanticConfig,
    /// How long identical requests wait for an in-flight call's answer (zero: no single flight).
    pub single_flight: std::time::Duration,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            max_prompt_bytes: 4 << 20,
            cache: CacheConfig::default(),
            semantic: SemanticConfig::default(),
            single_flight: std::time::Duration::from_secs(10),
        }
    }
}

/// What accounting needs beside the policy table: energy per candidate and the savings baseline.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AccountingTable {
    /// Estimated joules per output token of each candidate (same order as the table's candidates).
    pub energy_j_per_token: Vec<f64>,
    /// USD per (input, output) token of the baseline the user would otherwise have called; `None`
    /// uses the reference model's gpu-standard (or first) candidate.
    pub baseline_price: Option<(f64, f64)>,
}

/// A policy table with the names each candidate resolves to, shared by every outcome made with it.
#[derive(Debug)]
pub struct Compiled {
    pub table: PolicyTable,
    /// (model, provider, tier) of each candidate, as shared strings for cache entries and counters.
    pub names: Vec<(Arc<str>, Arc<str>, Arc<str>)>,
    /// Joules per output token of each candidate (0 when unknown).
    pub energy: Vec<f64>,
    /// USD per (input, output) token of the savings baseline.
    pub baseline: (f64, f64),
}

impl Compiled {
    fn new(table: PolicyTable) -> Result<Compiled> {
        Compiled::with_accounting(table, AccountingTable::default())
    }

    fn with_accounting(table: PolicyTable, acct: AccountingTable) -> Result<Compiled> {
        table.validate()?;
        let n = table.candidates.len();
        if !acct.energy_j_per_token.is_empty() && acct.energy_j_per_token.len() != n {
            return Err(Error::config("accounting", format!("{} energy figures for {n} candidates", acct.energy_j_per_token.len())));
        }
        if acct.energy_j_per_token.iter().any(|e| !(e.is_finite() && *e >= 0.0)) {
            return Err(Error::config("accounting", "energy per token must be a finite number ≥ 0"));
        }
        let energy = if acct.energy_j_per_token.is_empty() { vec![0.0; n] } else { acct.energy_j_per_token };
        let baseline = match acct.baseline_price {
            Some((pi, po)) if pi.is_finite() && po.is_finite() && pi >= 0.0 && po >= 0.0 => (pi, po),
            Some(_) => return Err(Error::config("accounting", "baseline prices must be finite numbers ≥ 0")),
            None => {
                let refm = table.reference_model;
                let of_ref = || table.candidates.iter().filter(|c| c.model == refm);
                of_ref()
                    .find(|c| c.tier == "gpu-standard")
                    .or_else(|| of_ref().next())
                    .map(|c| (c.price_in, c.price_out))
                    .unwrap_or((0.0, 0.0))
            }
        };
        let models: Vec<(Arc<str>, Arc<str>)> =
            table.models.iter().map(|m| (Arc::from(m.name.as_str()), Arc::from(m.provider.as_str()))).collect();
        let names = table
            .candidates
            .iter()
            .map(|c| {
                let (m, p) = &models[c.model as usize];
                (m.clone(), p.clone(), Arc::from(c.tier.as_str()))
            })
            .collect();
        Ok(Compiled { table, names, energy, baseline })
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
    /// Answered from the semantic cache (an equivalent earlier request).
    Semantic,
}

impl CacheState {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheState::Exact => "exact",
            CacheState::Miss => "miss",
            CacheState::Bypass => "bypass",
            CacheState::Semantic => "semantic",
        }
    }
}

/// What a routing decision is made from: the request, the policy in force, the request's
/// classification and token estimates, and the caller's constraints.
#[derive(Clone, Copy)]
struct RouteCtx<'a> {
    req: &'a Request,
    policy: &'a Compiled,
    class: &'a Classification,
    input_tokens: u32,
    output_tokens: u32,
    c: &'a Constraints,
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
    /// The learned router's prediction, for labels recorded against this decision. None when the
    /// catalog decided.
    pub learned: Option<Learned>,
}

/// What a learned decision keeps for its feedback.
#[derive(Debug)]
pub struct Learned {
    /// Raw p̂ (before feedback) per catalog model: a budget downgrade may change the model after
    /// prediction, and a label belongs to the model that answered.
    pub raw: Vec<Option<f32>>,
    /// The text that was embedded (the last user turn's tail), for feedback logs.
    pub text: Arc<str>,
}

#[derive(Debug)]
pub enum Served {
    Hit(Arc<Entry>),
    Routed(Routed),
}

/// What a budget did to a decision.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetNote {
    pub action: Action,
    /// The limit, described (`tenant:acme $50.0000 per day`).
    pub limit: String,
    /// (model, tier) the request would have had without the downgrade.
    pub downgraded_from: Option<(Arc<str>, Arc<str>)>,
}

/// Everything a decision needs, including what `record()` will need later.
pub struct RouteOutcome {
    pub core_id: u64,
    pub key: Key,
    pub tenant: Arc<str>,
    pub agent: Arc<str>,
    pub workflow: Arc<str>,
    pub step: Arc<str>,
    /// Amounts held against the request's budgets until `record()` settles them.
    pub reservation: Option<Arc<Reservation>>,
    pub budget: Option<BudgetNote>,
    pub policy: Arc<Compiled>,
    pub cache_state: CacheState,
    pub cache_control: CacheControl,
    pub served: Served,
    pub routed_at: f64,
    /// Time spent in the core for this request.
    pub route_ns: u64,
    /// A semantic hit: the matched entry's id and its cosine similarity to the request.
    pub semantic: Option<(u64, f32)>,
    /// For a routed request looked up semantically: (scope, query, vector), so `record()` can
    /// store the answer in the semantic cache too.
    pub pending: OnceLock<(u64, Arc<str>, Vec<f32>)>,
    /// The leader of a single flight: landed by `record()`, or when this outcome is dropped.
    pub flight: Option<crate::flight::FlightGuard>,
}

impl std::fmt::Debug for RouteOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (m, _, t) = self.names();
        f.debug_struct("RouteOutcome")
            .field("model", m)
            .field("tier", t)
            .field("cache_state", &self.cache_state)
            .field("tenant", &self.tenant)
            .field("budget", &self.budget)
            .finish()
    }
}

impl RouteOutcome {
    /// The ledger key of this decision's answer.
    pub fn ledger_key(&self) -> LedgerKey {
        let (m, _, t) = self.names();
        LedgerKey {
            tenant: self.tenant.clone(),
            agent: self.agent.clone(),
            workflow: self.workflow.clone(),
            step: self.step.clone(),
            model: m.clone(),
            tier: t.clone(),
        }
    }

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
        let base = self.base_reason();
        match &self.budget {
            None => base,
            Some(b) => match (&b.action, &b.downgraded_from) {
                (Action::Downgrade, Some((m, t))) => format!(
                    "{base}; budget downgrade: {} has no room for {m}/{t}, so the cheapest candidate meeting the minimum quality answers",
                    b.limit
                ),
                (Action::Downgrade, None) => format!("{base}; budget downgrade: {} has no room", b.limit),
                _ => format!("{base}; budget warning: this request goes over {}", b.limit),
            },
        }
    }

    fn base_reason(&self) -> String {
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
                let source = if ch.predicted { "predicted by the learned router" } else { "catalog" };
                if let (true, Some(w)) = (ch.within_budget(), ch.willingness_to_pay) {
                    format!(
                        "{} request (complexity {:.2}, {} input / ~{} output tokens) at a willingness to pay of ${w} per unit quality: {model}/{tier} has the most expected value of {} fitting candidates (quality {:.2}, {source}; ${:.6}, ~{:.0} ms)",
                        r.class.category.name(),
                        r.class.complexity,
                        r.input_tokens,
                        r.output_tokens,
                        ch.feasible,
                        ch.chosen.quality,
                        ch.chosen.cost_usd,
                        ch.chosen.latency_ms
                    )
                } else if ch.within_budget() && ch.predicted {
                    format!(
                        "{head}: {model}/{tier} is the cheapest of {} fitting candidates at ${:.6}, ~{:.0} ms (quality {:.2}, {source})",
                        ch.feasible, ch.chosen.cost_usd, ch.chosen.latency_ms, ch.chosen.quality
                    )
                } else if ch.within_budget() {
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
    /// The semantic entry stored for this answer (its vector goes into the index under this id).
    pub semantic_id: Option<u64>,
    pub cost_usd: f64,
    pub stored: bool,
}

static NEXT_CORE_ID: AtomicU64 = AtomicU64::new(1);

pub struct Core {
    id: u64,
    classifier: ArcSwap<Classifier>,
    policy: ArcSwap<Compiled>,
    cache: ExactCache,
    flights: crate::flight::Flights,
    semantic: SemanticStore,
    stats: Stats,
    ledger: Ledger,
    budgets: Budgets,
    quality: arc_swap::ArcSwapOption<crate::quality::QualityRouter>,
    empty: Arc<str>,
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
            flights: Default::default(),
            semantic: SemanticStore::new(cfg.semantic.clone()),
            stats: Stats::new(),
            ledger: Ledger::new(),
            budgets: Budgets::new(),
            quality: Default::default(),
            empty: Arc::from(""),
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

    /// Swaps the policy table together with its accounting figures (energy, savings baseline).
    pub fn set_policy_with_accounting(&self, table: PolicyTable, acct: AccountingTable) -> Result<()> {
        self.policy.store(Arc::new(Compiled::with_accounting(table, acct)?));
        Ok(())
    }

    /// Keeps the policy table, replaces its accounting figures.
    pub fn set_accounting(&self, acct: AccountingTable) -> Result<()> {
        let cur = self.policy.load_full();
        self.set_policy_with_accounting(cur.table.clone(), acct)
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn budgets(&self) -> &Budgets {
        &self.budgets
    }

    fn label(&self, s: &str) -> Arc<str> {
        if s.is_empty() {
            self.empty.clone()
        } else {
            Arc::from(s)
        }
    }

    /// Installs (or, with None, removes) the learned quality predictor. Its catalog must be the
    /// current policy's; after a policy change without a new predictor, the catalog decides.
    pub fn set_quality(&self, q: Option<Arc<crate::quality::QualityRouter>>) {
        self.quality.store(q);
    }

    pub fn quality(&self) -> Option<Arc<crate::quality::QualityRouter>> {
        self.quality.load_full()
    }

    /// A label in [0, 1] for the answer behind `o` (thumbs, judge score, task success). Learned
    /// from only when the learned router made that decision; returns whether it was.
    pub fn feedback(&self, o: &RouteOutcome, label: f64) -> Result<bool> {
        if o.core_id != self.id {
            return Err(Error::invalid_request("decision", "was made by another Router"));
        }
        if !(label.is_finite() && (0.0..=1.0).contains(&label)) {
            return Err(Error::invalid_request("outcome", format!("must be a number in [0, 1] (or a boolean), got {label}")));
        }
        let (Served::Routed(r), Some(q)) = (&o.served, self.quality.load_full()) else { return Ok(false) };
        let Some(l) = &r.learned else { return Ok(false) };
        let policy = self.policy.load();
        let model = policy.table.candidates[r.choice.chosen.candidate as usize].model as usize;
        let Some(raw) = l.raw.get(model).copied().flatten() else { return Ok(false) };
        Ok(q.feedback(&o.tenant, model, raw, label as f32))
    }

    pub fn set_classifier(&self, c: Classifier) {
        self.classifier.store(Arc::new(c));
    }

    pub fn route(&self, req: &Request, c: &Constraints) -> Result<RouteOutcome> {
        let t0 = Instant::now();
        let out = self.route_inner(req, c, false).map(|o| o.expect("a full route always decides"));
        self.finish(out, t0)
    }

    /// The exact-cache answer alone: `Ok(Some)` on a hit (counted exactly as [`Core::route`]
    /// counts it), `Ok(None)` when the request needs routing (nothing counted), errors as
    /// `route`. About a microsecond: callers holding a lock that is expensive to give up (the
    /// Python GIL) try this first and release it only for a full route.
    pub fn route_if_cached(&self, req: &Request, c: &Constraints) -> Result<Option<RouteOutcome>> {
        let t0 = Instant::now();
        match self.route_inner(req, c, true) {
            Ok(None) => Ok(None),
            Ok(Some(o)) => self.finish(Ok(o), t0).map(Some),
            Err(e) => self.finish(Err(e), t0).map(Some),
        }
    }

    /// A semantic hit for `req`: the best of `candidates` ((id, cosine) from the index, best first)
    /// that is in `scope`, at least its category's threshold, compatible by the near-miss guard and good
    /// enough for the request's `min_quality`; `trusted` as in [`SemanticStore::resolve`].
    /// `Ok(None)`: not served (nothing counted; the caller routes the request). Never called for
    /// `no_cache` requests.
    pub fn route_semantic(
        &self,
        req: &Request,
        c: &Constraints,
        scope: u64,
        candidates: &[(u64, f32)],
        thresholds: &[f32; crate::classifier::N_CATEGORIES],
        trusted: &[u64],
    ) -> Result<Option<RouteOutcome>> {
        let t0 = Instant::now();
        // Best first: when the best is under every threshold nothing can be served, and the
        // query's guard signature need not be built.
        let floor = thresholds.iter().copied().fold(f32::INFINITY, f32::min);
        if c.cache.no_cache || !candidates.first().is_some_and(|&(_, sim)| sim >= floor) {
            return Ok(None);
        }
        let sig = Signature::of(crate::semantic::query_of(req));
        let now = unix_now();
        let policy = self.policy.load_full();
        let acc = match self.semantic.resolve(scope, &sig, candidates, thresholds, now, trusted) {
            Ok(a) if self.hit_meets_quality(&policy, &a.entry.entry, c) => a,
            _ => return Ok(None),
        };
        let e = acc.entry.entry.clone();
        let o = RouteOutcome {
            core_id: self.id,
            key: e.key,
            tenant: Arc::from(req.tenant.as_str()),
            agent: self.label(&req.agent),
            workflow: self.label(&req.workflow),
            step: self.label(&req.step),
            reservation: None,
            budget: None,
            policy,
            cache_state: CacheState::Semantic,
            cache_control: c.cache,
            served: Served::Hit(e),
            routed_at: now,
            route_ns: 0,
            semantic: Some((acc.entry.id, acc.similarity)),
            pending: OnceLock::new(),
            flight: None,
        };
        self.finish(Ok(o), t0).map(Some)
    }

    /// Remembers what `record()` needs to store `o`'s answer in the semantic cache.
    pub fn attach_semantic(&self, o: &RouteOutcome, scope: u64, query: Arc<str>, vector: Vec<f32>) {
        if matches!(o.served, Served::Routed(_)) && !o.cache_control.no_store {
            let _ = o.pending.set((scope, query, vector));
        }
    }

    pub fn semantic(&self) -> &SemanticStore {
        &self.semantic
    }

    /// Counts a finished route: requests, outcome, latency, avoided cost, decisions.
    fn finish(&self, out: Result<RouteOutcome>, t0: Instant) -> Result<RouteOutcome> {
        self.stats.counters.requests.fetch_add(1, Relaxed);
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
                    CacheState::Semantic => k.semantic_hits.fetch_add(1, Relaxed),
                };
                match &o.served {
                    Served::Hit(e) => {
                        let avoided = to_nano(e.cost_usd);
                        k.avoided_nano.fetch_add(avoided, Relaxed);
                        self.ledger.record_hit(&o.ledger_key(), avoided);
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

    /// `hit_only`: stop after the cache lookup (`Ok(None)` on a miss).
    fn route_inner(&self, req: &Request, c: &Constraints, hit_only: bool) -> Result<Option<RouteOutcome>> {
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
        let (agent, workflow, step) = (self.label(&req.agent), self.label(&req.workflow), self.label(&req.step));
        let outcome = |cache_state, served, reservation, budget| RouteOutcome {
            core_id: self.id,
            key,
            tenant: tenant.clone(),
            agent: agent.clone(),
            workflow: workflow.clone(),
            step: step.clone(),
            reservation,
            budget,
            policy: policy.clone(),
            cache_state,
            cache_control: c.cache,
            served,
            routed_at: now,
            route_ns: 0,
            semantic: None,
            pending: OnceLock::new(),
            flight: None,
        };
        let cache_state = if c.cache.no_cache {
            CacheState::Bypass
        } else {
            if let Some(e) = self.cache.get(key, now) {
                if self.hit_meets_quality(&policy, &e, c) {
                    return Ok(Some(outcome(CacheState::Exact, Served::Hit(e), None, None)));
                }
            }
            CacheState::Miss
        };
        if hit_only {
            return Ok(None);
        }
        let mut flight = None;
        if cache_state == CacheState::Miss && !c.cache.no_store && !self.cfg.single_flight.is_zero() && self.cfg.cache.max_entries > 0 {
            match self.flights.join(key, self.cfg.single_flight, req.caller.unwrap_or_else(crate::flight::thread_caller)) {
                crate::flight::Role::Lead(g) => flight = Some(g),
                crate::flight::Role::Wait(f) => {
                    // Another thread is calling the model for this very request: its answer is ours.
                    if f.wait_until(Instant::now() + self.cfg.single_flight) {
                        if let Some(e) = self.cache.get(key, unix_now()) {
                            if self.hit_meets_quality(&policy, &e, c) {
                                return Ok(Some(outcome(CacheState::Exact, Served::Hit(e), None, None)));
                            }
                        }
                    }
                }
                crate::flight::Role::Alone => {}
            }
        }
        let f = Features::extract(req);
        let class = self.classifier.load().classify(req, &f);
        let output_tokens = class.output_tokens.min(req.max_output_tokens.unwrap_or(u32::MAX)).max(1);
        let ctx = RouteCtx { req, policy: &policy, class: &class, input_tokens: f.input_tokens, output_tokens, c };
        let (mut choice, predicted) = self.choose(ctx)?;
        let quality = predicted.as_ref().map(|(p, _)| p.quality.as_slice());
        let (reservation, budget) = self.apply_budgets(ctx, quality, &mut choice, now)?;
        let learned = predicted.map(|(p, text)| Learned { raw: p.raw, text });
        let mut o = outcome(
            cache_state,
            Served::Routed(Routed {
                input_tokens: f.input_tokens,
                sample: prefix(req.last_user(), 256).to_owned(),
                class,
                output_tokens,
                choice,
                learned,
            }),
            reservation,
            budget,
        );
        o.flight = flight;
        Ok(Some(o))
    }

    /// The policy's pick, with the learned router's per-request quality where one is installed for
    /// this catalog; without one (or when its embedder fails) the catalog's per-category quality
    /// decides (cold start).
    fn choose(&self, ctx: RouteCtx<'_>) -> Result<(Choice, Option<(crate::quality::Prediction, Arc<str>)>)> {
        let RouteCtx { req, policy, class, input_tokens, output_tokens, c } = ctx;
        let q = self.quality.load();
        let pred = match q.as_ref() {
            Some(q) if q.catalog().len() == policy.table.models.len() => {
                let text = q.model.tail(req.last_user());
                match q.predict_tail(text, &req.step, &req.tenant) {
                    Ok(p) => Some((q, p, text)),
                    Err(_) => {
                        q.note_fallback();
                        None
                    }
                }
            }
            _ => None,
        };
        let Some((q, p, text)) = pred else {
            return Ok((policy.table.choose(class.category, class.complexity, input_tokens, output_tokens, c)?, None));
        };
        let wtp = c.willingness_to_pay.or(q.willingness_to_pay);
        let choice = policy.table.choose_with(class.category, class.complexity, input_tokens, output_tokens, c, Some(&p.quality), wtp)?;
        Ok((choice, Some((p, Arc::from(text)))))
    }

    /// Reserves the decision's predicted cost and tokens against the request's budgets; on a
    /// limit with no room: reject, downgrade (re-choose at the minimum quality only), or warn.
    fn apply_budgets(
        &self,
        ctx: RouteCtx<'_>,
        predicted: Option<&[Option<f32>]>,
        choice: &mut Choice,
        now: f64,
    ) -> Result<(Option<Arc<Reservation>>, Option<BudgetNote>)> {
        let RouteCtx { req, policy, class, input_tokens, output_tokens, c } = ctx;
        if self.budgets.is_empty() {
            return Ok((None, None));
        }
        let limits = self.budgets.applicable(&Labels { tenant: &req.tenant, agent: &req.agent, workflow: &req.workflow });
        if limits.is_empty() {
            return Ok((None, None));
        }
        let tokens = input_tokens as u64 + output_tokens as u64;
        let ex = match self.budgets.try_reserve(&limits, to_nano(choice.chosen.cost_usd), tokens, now) {
            Ok(r) => return Ok((Some(r), None)),
            Err(ex) => ex,
        };
        let limit = ex.limit.spec.describe();
        match ex.action {
            Action::Reject => {
                ex.limit.rejected.fetch_add(1, Relaxed);
                Err(Error::BudgetExceeded {
                    scope: ex.limit.spec.scope.to_string(),
                    message: format!(
                        "{limit}: no room for this request's predicted {} (${:.6}, {tokens} tokens)",
                        {
                            let n = &policy.names[choice.chosen.candidate as usize];
                            format!("{}/{}", n.0, n.2)
                        },
                        choice.chosen.cost_usd
                    ),
                })
            }
            Action::Warn => {
                ex.limit.warned.fetch_add(1, Relaxed);
                let r = self.budgets.force_reserve(&limits, to_nano(choice.chosen.cost_usd), tokens, now);
                Ok((Some(r), Some(BudgetNote { action: Action::Warn, limit, downgraded_from: None })))
            }
            Action::Downgrade => {
                ex.limit.downgraded.fetch_add(1, Relaxed);
                let from = {
                    let n = &policy.names[choice.chosen.candidate as usize];
                    (n.0.clone(), n.2.clone())
                };
                // The minimum quality only: the caller's min_quality, else the floor (complexity 0).
                let floor = Constraints { strict: false, ..c.clone() };
                // The learned router's predictions still stand in for the catalog's quality.
                let cheaper = policy.table.choose_with(class.category, 0.0, input_tokens, output_tokens, &floor, predicted, None)?;
                *choice = cheaper;
                let usd = to_nano(choice.chosen.cost_usd);
                let r = match self.budgets.try_reserve(&limits, usd, tokens, now) {
                    Ok(r) => r,
                    Err(_) => self.budgets.force_reserve(&limits, usd, tokens, now),
                };
                let changed = policy.names[choice.chosen.candidate as usize].0 != from.0
                    || policy.names[choice.chosen.candidate as usize].2 != from.1;
                Ok((
                    Some(r),
                    Some(BudgetNote { action: Action::Downgrade, limit, downgraded_from: if changed { Some(from) } else { None } }),
                ))
            }
        }
    }

    /// A cached answer from a model the caller would now consider too weak is not a hit.
    fn hit_meets_quality(&self, policy: &Compiled, e: &Entry, c: &Constraints) -> bool {
        match c.min_quality {
            None => true,
            Some(q) => {
                policy.table.model_index(&e.model).is_some_and(|m| policy.table.models[m as usize].quality[e.category.index()] as f64 >= q)
            }
        }
    }

    /// Accounts a finished model call and stores its answer for later hits.
    pub fn record(
        &self,
        o: &RouteOutcome,
        response: String,
        input_tokens: u32,
        output_tokens: u32,
        latency_ms: f64,
        ok: bool,
    ) -> Result<Recorded> {
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
            return Ok(Recorded { cost_usd: 0.0, stored: false, semantic_id: None });
        };
        let ci = r.choice.chosen.candidate as usize;
        let cand = &o.policy.table.candidates[ci];
        let cost = cand.cost(input_tokens, output_tokens);
        let cost_nano = to_nano(cost);
        let now = unix_now();
        if let Some(res) = &o.reservation {
            res.settle(cost_nano, input_tokens as u64 + output_tokens as u64, now);
        }
        let (bi, bo) = o.policy.baseline;
        let baseline_nano = to_nano(input_tokens as f64 * bi + output_tokens as f64 * bo);
        self.ledger.record_call(
            &o.ledger_key(),
            &Call {
                input_tokens,
                output_tokens,
                cost_nano,
                avoided_routing_nano: baseline_nano as i64 - cost_nano as i64,
                energy_mj: (o.policy.energy[ci] * output_tokens as f64 * 1e3).round() as u64,
                latency_ms,
                ok,
            },
        );
        k.input_tokens.fetch_add(input_tokens as u64, Relaxed);
        k.output_tokens.fetch_add(output_tokens as u64, Relaxed);
        k.cost_nano.fetch_add(to_nano(cost), Relaxed);
        if !ok || o.cache_control.no_store {
            if !ok {
                k.failed_calls.fetch_add(1, Relaxed);
            }
            if let Some(g) = &o.flight {
                g.land(); // nothing will be cached: waiters route for themselves
            }
            return Ok(Recorded { cost_usd: cost, stored: false, semantic_id: None });
        }
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
        let entry = Arc::new(entry);
        self.cache.insert_arc(entry.clone(), now);
        if let Some(g) = &o.flight {
            g.land(); // the answer is cached: waiters can take it
        }
        // The same answer under its semantic key, when the request was looked up semantically.
        let semantic_id =
            o.pending.get().and_then(|(scope, query, vector)| self.semantic.insert(*scope, query.clone(), vector.clone(), entry, now));
        Ok(Recorded { cost_usd: cost, stored: true, semantic_id })
    }

    pub fn cache(&self) -> &ExactCache {
        &self.cache
    }

    /// The model names whose indices the cache keys' model scopes refer to.
    fn catalog_names(&self) -> Vec<String> {
        self.policy.load().table.models.iter().map(|m| m.name.to_string()).collect()
    }

    /// Writes the exact cache's live entries to `path` atomically; returns (entries, bytes).
    pub fn snapshot_cache(&self, path: &std::path::Path) -> Result<(usize, u64)> {
        self.cache.snapshot(path, &self.catalog_names(), unix_now())
    }

    /// Adds a snapshot's live entries to the exact cache (all dropped if the catalog's models
    /// changed, since model scopes in the keys are catalog indices). On error nothing changes.
    pub fn restore_cache(&self, path: &std::path::Path) -> Result<crate::cache::exact::Restored> {
        self.cache.restore(path, &self.catalog_names(), unix_now())
    }

    /// Writes the semantic cache's live entries (with their vectors) to `path` atomically.
    pub fn snapshot_semantic(&self, path: &std::path::Path, embedder_id: &str) -> Result<(usize, u64)> {
        self.semantic.snapshot(path, &self.catalog_names(), embedder_id, unix_now())
    }

    /// Adds a semantic snapshot's live entries (dropped if the catalog or embedder changed).
    pub fn restore_semantic(&self, path: &std::path::Path, embedder_id: &str) -> Result<crate::cache::exact::Restored> {
        self.semantic.restore(path, &self.catalog_names(), embedder_id, unix_now())
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
    use std::collections::HashMap;

    fn core() -> Core {
        Core::new(CoreConfig::default(), Classifier::default_model(), table()).unwrap()
    }

    #[test]
    fn learned_quality_replaces_the_catalog_and_feedback_is_counted() {
        use crate::quality::{EmbedFn, FeedbackConfig, QualityModel, QualityRouter};
        let core = core();
        // "small" is predicted excellent on prompts that start with "easy", useless otherwise.
        let w = |k: usize| (0..2).map(|i| if i == k { 8.0 } else { -8.0 }).collect::<Vec<f32>>();
        let doc = serde_json::json!({"format": "routerx-quality", "version": 1, "embedder": "t", "embedder_id": "t@1", "dim": 2, "tail_chars": 64,
            "models": [{"name": "small", "bias": 0.0, "weights": w(0)}, {"name": "big", "bias": 6.0, "weights": [0.0, 0.0]}]}).to_string();
        let embed: EmbedFn = Arc::new(|t: &str| Ok(if t.starts_with("easy") { vec![1.0, 0.0] } else { vec![0.0, 1.0] }));
        let names: Vec<String> = core.policy().table.models.iter().map(|m| m.name.clone()).collect();
        let mut q =
            QualityRouter::new(QualityModel::from_json(&doc, "t").unwrap(), embed, &names, &HashMap::new(), FeedbackConfig::default())
                .unwrap();
        q.willingness_to_pay = Some(1.0);
        core.set_quality(Some(Arc::new(q)));
        let c = Constraints { cache: CacheControl { no_cache: true, ..Default::default() }, ..Default::default() };
        let easy = core.route(&Request::from_prompt("t", "easy: what is 2+2?"), &c).unwrap();
        let hard = core.route(&Request::from_prompt("t", "prove the Riemann hypothesis"), &c).unwrap();
        assert_eq!(easy.names().0.as_ref(), "small");
        assert_ne!(hard.names().0.as_ref(), "small", "{}", hard.reason());
        assert!(easy.reason().contains("learned router") && easy.reason().contains("willingness to pay"), "{}", easy.reason());
        assert!(core.feedback(&easy, 1.0).unwrap());
        assert!(core.feedback(&easy, 2.0).is_err());
        assert_eq!(core.quality().unwrap().feedback_stats().labels, 1);
        // Removing it: the catalog decides again (cold start).
        core.set_quality(None);
        let cold = core.route(&Request::from_prompt("t", "easy: what is 2+2?"), &c).unwrap();
        let Served::Routed(r) = &cold.served else { panic!() };
        assert!(!r.choice.predicted && r.learned.is_none());
        let Served::Routed(r) = &easy.served else { panic!() };
        assert_eq!(r.learned.as_ref().unwrap().text.as_ref(), "easy: what is 2+2?");
        assert!(!core.feedback(&cold, 1.0).unwrap());
    }

    #[test]
    fn a_failing_quality_embedder_falls_back_to_the_catalog_and_is_counted() {
        use crate::quality::{EmbedFn, FeedbackConfig, QualityModel, QualityRouter};
        let core = core();
        let doc = serde_json::json!({"format": "routerx-quality", "version": 1, "embedder": "t", "embedder_id": "t@1", "dim": 2, "tail_chars": 64,
            "models": [{"name": "small", "bias": 0.0, "weights": [1.0, 0.0]}]}).to_string();
        let embed: EmbedFn =
            Arc::new(|t: &str| if t.contains("boom") { Err(Error::config("embedder", "failed")) } else { Ok(vec![1.0, 0.0]) });
        let names: Vec<String> = core.policy().table.models.iter().map(|m| m.name.clone()).collect();
        let q = QualityRouter::new(QualityModel::from_json(&doc, "t").unwrap(), embed, &names, &HashMap::new(), FeedbackConfig::default())
            .unwrap();
        core.set_quality(Some(Arc::new(q)));
        let c = Constraints { cache: CacheControl { no_cache: true, ..Default::default() }, ..Default::default() };
        let ok = core.route(&Request::from_prompt("t", "a plain question"), &c).unwrap();
        let Served::Routed(r) = &ok.served else { panic!() };
        assert!(r.learned.is_some());
        assert_eq!(core.quality().unwrap().feedback_stats().fallbacks, 0);
        let failed = core.route(&Request::from_prompt("t", "boom: a question the embedder fails on"), &c).unwrap();
        let Served::Routed(r) = &failed.served else { panic!() };
        assert!(r.learned.is_none() && !r.choice.predicted, "the catalog decides");
        assert_eq!(core.quality().unwrap().feedback_stats().fallbacks, 1);
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
    fn route_if_cached_answers_hits_only_and_counts_like_route() {
        let core = core();
        let req = Request::from_prompt("acme", "What is the capital of Chile?");
        let c = Constraints::default();
        assert!(core.route_if_cached(&req, &c).unwrap().is_none(), "a miss needs routing");
        assert_eq!(core.stats().counters.requests.load(Relaxed), 0, "nothing counted for a miss");
        let o = core.route(&req, &c).unwrap();
        core.record(&o, "Santiago.".into(), 12, 3, 80.0, true).unwrap();
        let hit = core.route_if_cached(&req, &c).unwrap().expect("a hit");
        assert_eq!(hit.cache_state, CacheState::Exact);
        let Served::Hit(e) = &hit.served else { panic!() };
        assert_eq!(e.response, "Santiago.");
        let bypass = Constraints { cache: CacheControl { no_cache: true, ..Default::default() }, ..Default::default() };
        assert!(core.route_if_cached(&req, &bypass).unwrap().is_none());
        let bad = Request::from_prompt("acme", "");
        assert!(core.route_if_cached(&bad, &c).is_err());
        let k = &core.stats().counters;
        assert_eq!((k.requests.load(Relaxed), k.exact_hits.load(Relaxed), k.misses.load(Relaxed), k.errors.load(Relaxed)), (3, 1, 1, 1));
        assert_eq!(core.latency().count, 3);
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

    fn labelled(tenant: &str, agent: &str, workflow: &str, prompt: &str) -> Request {
        Request { agent: agent.into(), workflow: workflow.into(), step: "s1".into(), ..Request::from_prompt(tenant, prompt) }
    }

    #[test]
    fn ledger_attributes_calls_and_hits() {
        let core = core();
        core.set_accounting(AccountingTable { energy_j_per_token: vec![0.5, 1.0, 1.0, 2.0, 2.0], baseline_price: None }).unwrap();
        let req = labelled("acme", "bot", "etl", "hello there");
        let o = core.route(&req, &Constraints::default()).unwrap();
        assert_eq!(&**o.names().0, "small");
        let rec = core.record(&o, "hi".into(), 100, 40, 80.0, true).unwrap();
        // small/gpu-standard: $0.1/M in and out; baseline big/gpu-standard: $3/M in, $15/M out.
        assert_eq!(to_nano(rec.cost_usd), 14_000);
        let hit = core.route(&labelled("acme", "other-agent", "etl", "hello there"), &Constraints::default()).unwrap();
        assert_eq!(hit.cache_state, CacheState::Exact, "labels are not part of the cache key");
        let snap = core.ledger().snapshot();
        assert_eq!(snap.len(), 2);
        let (k0, t0) = &snap[0];
        assert_eq!(
            (&*k0.tenant, &*k0.agent, &*k0.workflow, &*k0.step, &*k0.model, &*k0.tier),
            ("acme", "bot", "etl", "s1", "small", "gpu-standard")
        );
        assert_eq!((t0.calls, t0.cache_hits, t0.input_tokens, t0.output_tokens, t0.cost_nano), (1, 0, 100, 40, 14_000));
        assert_eq!(t0.avoided_routing_nano, 300_000 + 600_000 - 14_000);
        assert_eq!(t0.energy_mj, 20_000);
        let (k1, t1) = &snap[1];
        assert_eq!(&*k1.agent, "other-agent");
        assert_eq!((t1.calls, t1.cache_hits, t1.avoided_cache_nano), (0, 1, 14_000));
        // Recording a hit accounts nothing more.
        core.record(&hit, "x".into(), 1, 1, 1.0, true).unwrap();
        assert_eq!(core.ledger().total().requests(), 2);
        assert!(core.set_accounting(AccountingTable { energy_j_per_token: vec![1.0], baseline_price: None }).is_err());
    }

    fn budget(core: &Core, scope: &str, metric: crate::budgets::Metric, limit: u64, action: Action) {
        use crate::budgets::{LimitSpec, Scope, Window};
        core.budgets()
            .set(LimitSpec { scope: Scope::parse(scope).unwrap(), window: Window::Day, metric, limit, action }, None, unix_now())
            .unwrap();
    }

    #[test]
    fn budgets_reject_downgrade_warn() {
        use crate::budgets::Metric;
        let core = core();
        let hard = Constraints { min_quality: None, ..Default::default() };
        let prompt = "Prove that there are infinitely many primes, step by step, with a rigorous argument.";
        // Reject: a token budget too small for any request.
        budget(&core, "tenant:r", Metric::Tokens, 5, Action::Reject);
        let e = core.route(&Request::from_prompt("r", prompt), &hard).unwrap_err();
        assert!(matches!(&e, Error::BudgetExceeded { scope, .. } if scope == "tenant:r"), "{e}");
        assert_eq!(core.budgets().states(unix_now())[0].rejected, 1);
        // Other tenants are not subject to it.
        assert!(core.route(&Request::from_prompt("free", prompt), &hard).is_ok());
        // Downgrade: the workflow's budget has no room for the strong model.
        let strong = Constraints { min_quality: Some(0.9), ..Default::default() };
        let o = core.route(&Request::from_prompt("d", prompt), &strong).unwrap();
        assert_eq!(&**o.names().0, "big");
        budget(&core, "workflow:w", Metric::Usd, 1, Action::Downgrade);
        let o = core.route(&labelled("d", "", "w", prompt), &Constraints::default()).unwrap();
        let b = o.budget.clone().unwrap();
        assert_eq!(b.action, Action::Downgrade);
        assert_eq!(&**o.names().0, "small", "the floor (0.4) only needs the small model");
        assert!(o.reason().contains("budget downgrade"), "{}", o.reason());
        // Warn: served as routed, with a note; the spend is charged at record().
        budget(&core, "agent:a", Metric::Usd, 1, Action::Warn);
        let o = core
            .route(
                &labelled("x", "a", "", prompt),
                &Constraints { cache: CacheControl { no_cache: true, ..Default::default() }, ..Default::default() },
            )
            .unwrap();
        assert_eq!(o.budget.as_ref().unwrap().action, Action::Warn);
        core.record(&o, "ok".into(), 1000, 1000, 5.0, true).unwrap();
        let st = core.budgets().states(unix_now());
        let a = st.iter().find(|s| s.spec.scope.to_string() == "agent:a").unwrap();
        assert_eq!((a.reserved, a.warned), (0, 1));
        assert!(a.spent > 1);
    }

    #[test]
    fn unrecorded_decisions_release_their_reservation() {
        use crate::budgets::Metric;
        let core = core();
        budget(&core, "tenant:t", Metric::Tokens, 1_000_000, Action::Reject);
        let o = core.route(&Request::from_prompt("t", "hello there"), &Constraints::default()).unwrap();
        assert!(core.budgets().states(unix_now())[0].reserved > 0);
        drop(o);
        assert_eq!(core.budgets().states(unix_now())[0].reserved, 0);
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
