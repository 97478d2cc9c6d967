//! `routerx._core`: the Python face of `routerx-core`.
//!
//! This crate only converts Python values into owned core values, releases the GIL around the
//! core's work (one helper, [`without_gil`]), and maps core errors to the exceptions of
//! `routerx.errors`. Routing logic lives in the core; policy and catalog in Python.

use std::sync::Arc;

mod wire;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use routerx_core::accounting::{LedgerKey, Totals, LATENCY_BUCKETS_MS};
use routerx_core::batcher::{Batcher, BatcherConfig};
use routerx_core::budgets::{Action, LimitSpec, Metric, Scope, Window};
use routerx_core::cache::CacheConfig;
use routerx_core::classifier::{Category, Classifier, N_CATEGORIES};
use routerx_core::embed::{CrossEncoder, Embedder, MiniLm, StaticTable};
use routerx_core::policy::{Candidate, ModelInfo, PolicyTable, Scored};
use routerx_core::quality;
use routerx_core::request::{CacheControl, Constraints, Message, Request, Role};
use routerx_core::router::{unix_now, AccountingTable, Core, CoreConfig, RouteOutcome, Served};
use routerx_core::semantic;
use routerx_core::stats::to_nano;
use routerx_core::Error;

mod exc {
    pyo3::import_exception!(routerx.errors, InvalidRequestError);
    pyo3::import_exception!(routerx.errors, InvalidConstraintError);
    pyo3::import_exception!(routerx.errors, UnknownModelError);
    pyo3::import_exception!(routerx.errors, NoRouteError);
    pyo3::import_exception!(routerx.errors, ConfigError);
    pyo3::import_exception!(routerx.errors, BudgetExceededError);
    pyo3::import_exception!(routerx.errors, ModelNotFoundError);
    pyo3::import_exception!(routerx.errors, SnapshotError);
}

fn to_py_err(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::InvalidRequest { field, .. } => exc::InvalidRequestError::new_err((msg, field)),
        Error::InvalidConstraint { field, .. } => exc::InvalidConstraintError::new_err((msg, field)),
        Error::UnknownModel { .. } => exc::UnknownModelError::new_err((msg, "models")),
        Error::NoRoute { .. } => exc::NoRouteError::new_err(msg),
        Error::Config { file, .. } => exc::ConfigError::new_err((msg, file)),
        Error::BudgetExceeded { scope, .. } => exc::BudgetExceededError::new_err((msg, scope)),
        Error::Model { file, missing: true, .. } => exc::ModelNotFoundError::new_err((msg, file)),
        Error::Model { file, .. } => exc::ConfigError::new_err((msg, file)),
        Error::Snapshot { file, .. } => exc::SnapshotError::new_err((msg, file)),
    }
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> PyErr {
    to_py_err(Error::invalid_request(field, message))
}

/// Runs core work with the GIL released. Callers copy their inputs into owned values first.
fn without_gil<T: Send>(py: Python<'_>, f: impl FnOnce() -> T + Send) -> T {
    py.detach(f)
}

/// Lowercase hex, two digits a byte (what Python's `bytes.hex()` gives), without the
/// formatting machinery: ids are made on every call.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes.iter().flat_map(|&b| [DIGITS[(b >> 4) as usize] as char, DIGITS[(b & 15) as usize] as char]).collect()
}

fn owned_str(obj: &Bound<'_, PyAny>, field: &str) -> PyResult<String> {
    if let Ok(s) = obj.cast::<PyString>() {
        return s.to_str().map(str::to_owned).map_err(|_| invalid(field, "is not valid UTF-8 (it contains a lone surrogate)"));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return String::from_utf8(b.as_bytes().to_vec()).map_err(|e| invalid(field, format!("is not valid UTF-8: {e}")));
    }
    Err(invalid(field, format!("must be a string, got {}", obj.get_type().name()?)))
}

/// Message content: a string, or a list of `{"type": "text", "text": ...}` parts (OpenAI style).
fn content_of(obj: &Bound<'_, PyAny>, field: &str) -> PyResult<String> {
    if obj.is_none() {
        return Ok(String::new());
    }
    if let Ok(parts) = obj.cast::<PyList>() {
        let mut out = String::new();
        for (j, part) in parts.iter().enumerate() {
            let pf = format!("{field}[{j}]");
            let d = part.cast::<PyDict>().map_err(|_| invalid(&pf, "must be a {\"type\": \"text\", \"text\": ...} part"))?;
            let text = d.get_item("text")?.ok_or_else(|| invalid(&pf, "only text parts are supported"))?;
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&owned_str(&text, &format!("{pf}.text"))?);
        }
        return Ok(out);
    }
    owned_str(obj, field)
}

fn messages_of(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Message>> {
    if obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyBytes>() {
        return Ok(vec![Message::user(owned_str(obj, "prompt")?)]);
    }
    let items: Vec<Bound<'_, PyAny>> = if let Ok(l) = obj.cast::<PyList>() {
        l.iter().collect()
    } else if let Ok(t) = obj.cast::<PyTuple>() {
        t.iter().collect()
    } else {
        return Err(invalid("prompt", format!("must be a string or a list of {{role, content}} messages, got {}", obj.get_type().name()?)));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = format!("messages[{i}]");
        let d = item.cast::<PyDict>().map_err(|_| invalid(&field, "must be a dict with \"role\" and \"content\""))?;
        let role_obj = d.get_item("role")?.ok_or_else(|| invalid(format!("{field}.role"), "is missing"))?;
        let role_s = owned_str(&role_obj, &format!("{field}.role"))?;
        let role = Role::parse(&role_s)
            .ok_or_else(|| invalid(format!("{field}.role"), format!("{role_s:?} is not one of system, user, assistant, tool")))?;
        let content = match d.get_item("content")? {
            Some(c) => content_of(&c, &format!("{field}.content"))?,
            None => return Err(invalid(format!("{field}.content"), "is missing")),
        };
        out.push(Message { role, content });
    }
    Ok(out)
}

/// Optional per-request parts that change the cache key: canonical tool JSON and sampling params.
/// `(tools_json, tool_count, params_json, max_tokens)`.
#[derive(FromPyObject)]
struct Extras(String, u32, String, Option<u32>);

/// Accounting and budget labels: `(agent, workflow, step)`, empty strings for none.
type Labels = (String, String, String);

fn request_of(prompt: &Bound<'_, PyAny>, tenant: String, extras: Option<Extras>, labels: Option<Labels>) -> PyResult<Request> {
    let messages = messages_of(prompt)?;
    let mut r = Request { tenant, messages, ..Default::default() };
    if let Some((agent, workflow, step)) = labels {
        r.agent = agent;
        r.workflow = workflow;
        r.step = step;
    }
    if let Some(Extras(tools, tool_count, params, max_tokens)) = extras {
        r.tools = tools;
        r.tool_count = tool_count;
        r.params = params;
        r.max_output_tokens = max_tokens;
    }
    Ok(r)
}

/// Validated routing constraints; build once and reuse.
#[pyclass(frozen, name = "Constraints", module = "routerx._core")]
struct PyConstraints(Constraints);

#[pymethods]
impl PyConstraints {
    #[new]
    #[pyo3(signature = (*, latency_budget_ms=None, max_cost_usd=None, min_quality=None, allowed_models=None, strict=false, no_cache=false, no_store=false, ttl_s=None, willingness_to_pay=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        latency_budget_ms: Option<f64>,
        max_cost_usd: Option<f64>,
        min_quality: Option<f64>,
        allowed_models: Option<Vec<u32>>,
        strict: bool,
        no_cache: bool,
        no_store: bool,
        ttl_s: Option<f64>,
        willingness_to_pay: Option<f64>,
    ) -> PyResult<Self> {
        let allowed_models = allowed_models.map(|mut v| {
            v.sort_unstable();
            v.dedup();
            v
        });
        let c = Constraints {
            latency_budget_ms: latency_budget_ms.unwrap_or(f64::INFINITY),
            max_cost_usd: max_cost_usd.unwrap_or(f64::INFINITY),
            min_quality,
            willingness_to_pay,
            allowed_models,
            strict,
            cache: CacheControl { no_cache, no_store, ttl_s },
        };
        c.validate().map_err(to_py_err)?;
        Ok(PyConstraints(c))
    }

    fn __repr__(&self) -> String {
        format!("Constraints({:?})", self.0)
    }
}

fn scored_dict<'py>(py: Python<'py>, o: &RouteOutcome, s: &Scored) -> PyResult<Bound<'py, PyDict>> {
    let (m, p, t) = o.candidate_names(s);
    let d = PyDict::new(py);
    d.set_item("model", &**m)?;
    d.set_item("provider", &**p)?;
    d.set_item("tier", &**t)?;
    d.set_item("predicted_cost_usd", s.cost_usd)?;
    d.set_item("predicted_latency_ms", s.latency_ms)?;
    d.set_item("quality", (s.quality as f64 * 1e4).round() / 1e4)?;
    Ok(d)
}

/// The routing decision for one request. Immutable; pass it back to `record()`.
#[pyclass(frozen, name = "Decision", module = "routerx._core")]
struct PyDecision(Arc<RouteOutcome>);

#[pymethods]
impl PyDecision {
    #[getter]
    fn model(&self) -> &str {
        self.0.names().0
    }
    #[getter]
    fn provider(&self) -> &str {
        self.0.names().1
    }
    #[getter]
    fn tier(&self) -> &str {
        self.0.names().2
    }
    /// "exact", "miss" or "bypass".
    #[getter]
    fn cache(&self) -> &'static str {
        self.0.cache_state.as_str()
    }
    #[getter]
    fn cached_response(&self) -> Option<&str> {
        match &self.0.served {
            Served::Hit(e) => Some(&e.response),
            Served::Routed(_) => None,
        }
    }
    #[getter]
    fn entry_id(&self) -> String {
        hex(&self.0.key.to_be_bytes())
    }
    #[getter]
    fn entry_age_s(&self) -> Option<f64> {
        match &self.0.served {
            Served::Hit(e) => Some((self.0.routed_at - e.created).max(0.0)),
            Served::Routed(_) => None,
        }
    }
    #[getter]
    fn tenant(&self) -> &str {
        &self.0.tenant
    }
    #[getter]
    fn agent(&self) -> Option<&str> {
        Some(&*self.0.agent).filter(|s| !s.is_empty())
    }
    #[getter]
    fn workflow(&self) -> Option<&str> {
        Some(&*self.0.workflow).filter(|s| !s.is_empty())
    }
    #[getter]
    fn step(&self) -> Option<&str> {
        Some(&*self.0.step).filter(|s| !s.is_empty())
    }
    /// What a budget did to this decision: None, "warn" or "downgrade" (a "reject" raises).
    #[getter]
    fn budget_action(&self) -> Option<&'static str> {
        self.0.budget.as_ref().map(|b| b.action.as_str())
    }
    #[getter]
    fn category(&self) -> &'static str {
        match &self.0.served {
            Served::Hit(e) => e.category.name(),
            Served::Routed(r) => r.class.category.name(),
        }
    }
    #[getter]
    fn complexity(&self) -> f32 {
        match &self.0.served {
            Served::Hit(e) => e.complexity,
            Served::Routed(r) => r.class.complexity,
        }
    }
    #[getter]
    fn confidence(&self) -> Option<f32> {
        match &self.0.served {
            Served::Hit(_) => None,
            Served::Routed(r) => Some(r.class.confidence),
        }
    }
    /// ISO 639-3 code of the last user turn ("und" when unsure); detected on first access.
    #[getter]
    fn language(&self, py: Python<'_>) -> Option<&'static str> {
        let o = &self.0;
        without_gil(py, || o.language())
    }
    #[getter]
    fn input_tokens(&self) -> u32 {
        match &self.0.served {
            Served::Hit(e) => e.input_tokens,
            Served::Routed(r) => r.input_tokens,
        }
    }
    #[getter]
    fn predicted_output_tokens(&self) -> u32 {
        match &self.0.served {
            Served::Hit(e) => e.output_tokens,
            Served::Routed(r) => r.output_tokens,
        }
    }
    /// Cost of this decision: 0 for a cache hit.
    #[getter]
    fn predicted_cost_usd(&self) -> f64 {
        match &self.0.served {
            Served::Hit(_) => 0.0,
            Served::Routed(r) => r.choice.chosen.cost_usd,
        }
    }
    #[getter]
    fn predicted_latency_ms(&self) -> f64 {
        match &self.0.served {
            Served::Hit(_) => 0.0,
            Served::Routed(r) => r.choice.chosen.latency_ms,
        }
    }
    /// What a cache hit saved: the recorded cost of the call that produced the answer.
    #[getter]
    fn cost_avoided_usd(&self) -> f64 {
        match &self.0.served {
            Served::Hit(e) => e.cost_usd,
            Served::Routed(_) => 0.0,
        }
    }
    #[getter]
    fn required_quality(&self) -> Option<f32> {
        match &self.0.served {
            Served::Hit(_) => None,
            Served::Routed(r) => Some(r.choice.required_quality),
        }
    }
    /// The learned router's p̂ for the chosen model (None when the catalog's quality decided).
    #[getter]
    fn predicted_quality(&self) -> Option<f32> {
        match &self.0.served {
            Served::Routed(r) if r.choice.predicted => Some(r.choice.chosen.quality),
            _ => None,
        }
    }
    /// The willingness to pay (USD per unit quality) the choice maximised value at, if any.
    #[getter]
    fn willingness_to_pay(&self) -> Option<f64> {
        match &self.0.served {
            Served::Routed(r) => r.choice.willingness_to_pay,
            Served::Hit(_) => None,
        }
    }
    /// The text the learned router embedded (the last user turn's tail), for feedback logs.
    #[getter]
    fn quality_text(&self) -> Option<&str> {
        match &self.0.served {
            Served::Routed(r) => r.learned.as_ref().map(|l| &*l.text),
            Served::Hit(_) => None,
        }
    }
    /// False when no candidate met every constraint and this is a best-effort choice.
    #[getter]
    fn within_budget(&self) -> bool {
        self.0.violation_names().is_empty()
    }
    #[getter]
    fn violations(&self) -> Vec<&'static str> {
        self.0.violation_names()
    }
    #[getter]
    fn fallbacks<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        match &self.0.served {
            Served::Hit(_) => Ok(Vec::new()),
            Served::Routed(r) => r.choice.fallbacks.iter().map(|s| scored_dict(py, &self.0, s)).collect(),
        }
    }
    #[getter]
    fn reason(&self) -> String {
        self.0.reason()
    }
    /// Nanoseconds spent in the core for this request.
    #[getter]
    fn route_ns(&self) -> u64 {
        self.0.route_ns
    }
    /// Cosine similarity of a semantic hit's cached request to this one (None otherwise).
    #[getter]
    fn similarity(&self) -> Option<f32> {
        self.0.semantic.map(|(_, s)| s)
    }
    /// The semantic cache entry that answered (None unless a semantic hit).
    #[getter]
    fn semantic_entry(&self) -> Option<u64> {
        self.0.semantic.map(|(id, _)| id)
    }

    /// This decision as `routerx.v1.Decision` protobuf bytes (what the gRPC server sends).
    /// `cache` overrides the outcome name; `language` fills the detected language (costly).
    #[pyo3(signature = (decision_id, overhead_us, language=false, cache=None))]
    fn wire<'py>(&self, py: Python<'py>, decision_id: &str, overhead_us: f64, language: bool, cache: Option<&str>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.encode(py, decision_id, overhead_us, language, cache))
    }

    fn __repr__(&self) -> String {
        let (m, _, t) = self.0.names();
        format!(
            "Decision(model={m:?}, tier={t:?}, cache={:?}, category={:?}, cost=${:.6})",
            self.cache(),
            self.category(),
            self.predicted_cost_usd()
        )
    }
}

impl PyDecision {
    /// `routerx.v1.Decision` bytes; `overhead_us == 0.0` leaves that field out.
    fn encode(&self, py: Python<'_>, decision_id: &str, overhead_us: f64, language: bool, cache: Option<&str>) -> Vec<u8> {
        let o = &self.0;
        let (model, provider, tier) = o.names();
        let fallbacks = match &o.served {
            Served::Hit(_) => Vec::new(),
            Served::Routed(r) => r
                .choice
                .fallbacks
                .iter()
                .map(|s| {
                    let (m, p, t) = o.candidate_names(s);
                    wire::Fallback {
                        model: m.to_string(),
                        provider: p.to_string(),
                        tier: t.to_string(),
                        predicted_cost_usd: s.cost_usd,
                        predicted_latency_ms: s.latency_ms,
                        quality: (s.quality as f64 * 1e4).round() / 1e4,
                    }
                })
                .collect(),
        };
        let msg = wire::Decision {
            decision_id: decision_id.to_owned(),
            model: model.to_string(),
            provider: provider.to_string(),
            tier: tier.to_string(),
            cache: wire::cache_outcome(cache.unwrap_or(self.cache())),
            cached_response: self.cached_response().map(str::to_owned),
            entry_id: self.entry_id(),
            entry_age_s: self.entry_age_s(),
            tenant: o.tenant.to_string(),
            category: self.category().to_owned(),
            complexity: self.complexity(),
            confidence: self.confidence(),
            language: if language { without_gil(py, || o.language()).map(str::to_owned) } else { None },
            input_tokens: self.input_tokens(),
            predicted_output_tokens: self.predicted_output_tokens(),
            predicted_cost_usd: self.predicted_cost_usd(),
            predicted_latency_ms: self.predicted_latency_ms(),
            cost_avoided_usd: self.cost_avoided_usd(),
            required_quality: self.required_quality(),
            within_budget: self.within_budget(),
            violations: self.violations().into_iter().map(str::to_owned).collect(),
            fallbacks,
            reason: self.reason(),
            route_ns: o.route_ns,
            overhead_us,
            similarity: self.similarity(),
            semantic_entry: self.semantic_entry(),
            predicted_quality: self.predicted_quality(),
            willingness_to_pay: self.willingness_to_pay(),
            agent: self.agent().map(str::to_owned),
            workflow: self.workflow().map(str::to_owned),
            step: self.step().map(str::to_owned),
            budget_action: self.budget_action().map(str::to_owned),
        };
        msg.to_bytes()
    }
}

fn policy_table(
    models: Vec<(String, String, u32, Vec<f32>)>,
    candidates: Vec<(u32, String, f64, f64, f64, f64, f64)>,
    settings: (f32, f32, usize, u32),
) -> PyResult<PolicyTable> {
    let models = models
        .into_iter()
        .map(|(name, provider, context_window, q)| {
            let quality: [f32; N_CATEGORIES] = q
                .try_into()
                .map_err(|_| to_py_err(Error::config("policy", format!("model {name}: quality needs {N_CATEGORIES} values"))))?;
            Ok(ModelInfo { name, provider, context_window, quality })
        })
        .collect::<PyResult<Vec<_>>>()?;
    let candidates = candidates
        .into_iter()
        .map(|(model, tier, price_in, price_out, ttft_ms, prefill_tps, decode_tps)| Candidate {
            model,
            tier,
            price_in,
            price_out,
            ttft_ms,
            prefill_tps,
            decode_tps,
        })
        .collect();
    let (quality_floor, quality_span, max_fallbacks, reference_model) = settings;
    Ok(PolicyTable { models, candidates, quality_floor, quality_span, max_fallbacks, reference_model })
}

/// The router core. Thread-safe: share one per process.
#[pyclass(frozen, name = "Core", module = "routerx._core")]
struct PyCore(Arc<Core>);

#[pymethods]
impl PyCore {
    #[new]
    #[pyo3(signature = (models, candidates, settings, classifier_json=None, classifier_source="<embedded>".to_owned(), max_prompt_bytes=4<<20, cache_max_entries=100_000, cache_max_bytes=256<<20, cache_ttl_s=86_400.0, energy=None, baseline=None, semantic_max_entries=100_000, semantic_max_bytes=512<<20, single_flight_s=10.0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        models: Vec<(String, String, u32, Vec<f32>)>,
        candidates: Vec<(u32, String, f64, f64, f64, f64, f64)>,
        settings: (f32, f32, usize, u32),
        classifier_json: Option<String>,
        classifier_source: String,
        max_prompt_bytes: usize,
        cache_max_entries: usize,
        cache_max_bytes: usize,
        cache_ttl_s: f64,
        energy: Option<Vec<f64>>,
        baseline: Option<(f64, f64)>,
        semantic_max_entries: usize,
        semantic_max_bytes: usize,
        single_flight_s: f64,
    ) -> PyResult<Self> {
        if !(single_flight_s.is_finite() && single_flight_s >= 0.0) {
            return Err(to_py_err(routerx_core::Error::config(
                "cache",
                format!("single_flight_timeout_s must be ≥ 0, got {single_flight_s}"),
            )));
        }
        let table = policy_table(models, candidates, settings)?;
        let acct = AccountingTable { energy_j_per_token: energy.unwrap_or_default(), baseline_price: baseline };
        let cfg = CoreConfig {
            max_prompt_bytes,
            cache: CacheConfig {
                max_entries: cache_max_entries,
                max_bytes: cache_max_bytes,
                default_ttl_s: cache_ttl_s,
                ..Default::default()
            },
            semantic: routerx_core::semantic::SemanticConfig { max_entries: semantic_max_entries, max_bytes: semantic_max_bytes },
            single_flight: std::time::Duration::from_secs_f64(single_flight_s),
        };
        let core = without_gil(py, move || {
            let classifier = match classifier_json {
                Some(text) => Classifier::from_json(&text, &classifier_source)?,
                None => Classifier::default_model(),
            };
            let core = Core::new(cfg, classifier, table.clone())?;
            core.set_policy_with_accounting(table, acct)?;
            Ok(core)
        })
        .map_err(to_py_err)?;
        Ok(PyCore(Arc::new(core)))
    }

    /// Routes one request (`prompt`: a string or a list of chat messages): the exact cache, then
    /// (with `semantic`) the semantic cache, then the policy.
    #[pyo3(signature = (prompt, tenant, constraints, extras=None, labels=None, semantic=None, min_similarity=None, caller=None, verifier_threshold=None))]
    #[allow(clippy::too_many_arguments)]
    fn route(
        &self,
        py: Python<'_>,
        prompt: &Bound<'_, PyAny>,
        tenant: String,
        constraints: &Bound<'_, PyConstraints>,
        extras: Option<Extras>,
        labels: Option<Labels>,
        semantic: Option<&Bound<'_, PySemantic>>,
        min_similarity: Option<f32>,
        caller: Option<u64>,
        verifier_threshold: Option<f32>,
    ) -> PyResult<PyDecision> {
        let mut req = request_of(prompt, tenant, extras, labels)?;
        req.caller = caller;
        let c = &constraints.get().0;
        let core = &self.0;
        // An exact hit is a hash and a shard read lock (~1 µs): cheaper than giving up the GIL,
        // which under contention can cost a whole switch interval to get back. The GIL is
        // released for real work only.
        if let Some(hit) = core.route_if_cached(&req, c).map_err(to_py_err)? {
            return Ok(PyDecision(Arc::new(hit)));
        }
        // `core.route` looks the exact cache up again, on purpose: an answer recorded while the
        // GIL was being given up is found there, just before the request joins a flight, instead
        // of paying for a second model call.
        let Some(sem) = semantic.map(Bound::get).filter(|_| !c.cache.no_cache) else {
            let out = without_gil(py, || core.route(&req, c)).map_err(to_py_err)?;
            return Ok(PyDecision(Arc::new(out)));
        };
        let scope = semantic::scope_of(&req, c.allowed_models.as_deref().unwrap_or(&[]), sem.embedder.model_id());
        let query: Arc<str> = Arc::from(semantic::query_of(&req));
        // An explicit per-request threshold applies to every category; else the configured ones.
        let thresholds = min_similarity.map(|m| [m; N_CATEGORIES]).unwrap_or(sem.thresholds);
        if let Some(t) = verifier_threshold {
            probability("verifier_threshold", t)?;
        }
        let verify = sem.verifier.as_ref().map(|(v, t)| (v, verifier_threshold.unwrap_or(*t)));
        let out = without_gil(py, || {
            // The batcher and the decision share the query: a refcount, not a copy of the prompt.
            let looked = sem.batcher.submit((scope, query.clone()));
            semantic_outcome(core, sem, &req, c, scope, query, looked, &thresholds, verify)
        })
        .map_err(to_py_err)?;
        Ok(PyDecision(Arc::new(out)))
    }

    /// The gRPC server's Route on an exact hit, in one call: `data` is a serialized
    /// `routerx.v1.RouteRequest`. A plain request (prompt or messages, optional tenant, no
    /// constraints, cache controls, tools or params) answered from the exact cache returns
    /// `(decision, decision_id, Decision bytes without overhead_us, tenant, cost_avoided_usd)`,
    /// the hit counted exactly as `route` counts it; `decision_id` is 128 bits from the OS's
    /// CSPRNG, in hex. Anything else (undecodable, not plain, invalid, a miss) returns None with
    /// nothing counted: the caller takes the general path, which answers it as before.
    ///
    /// `tenant` is the tenant when the request names none; `forced_tenant` (an API key bound to
    /// one tenant) is the only tenant the request may name.
    #[pyo3(signature = (data, constraints, tenant, forced_tenant=None))]
    #[allow(clippy::type_complexity)]
    fn route_hit_wire<'py>(
        &self,
        py: Python<'py>,
        data: &[u8],
        constraints: &Bound<'py, PyConstraints>,
        tenant: &str,
        forced_tenant: Option<&str>,
    ) -> PyResult<Option<(PyDecision, String, Bound<'py, PyBytes>, String, f64)>> {
        use prost::Message as _;
        let Ok(r) = wire::RouteRequest::decode(data) else { return Ok(None) };
        if r.constraints.is_some()
            || !r.tools_json.is_empty()
            || !r.params_json.is_empty()
            || r.cache.as_ref().is_some_and(|c| !c.is_default())
        {
            return Ok(None);
        }
        let tenant = match forced_tenant {
            Some(f) if r.tenant.as_deref().is_some_and(|t| t != f) => return Ok(None),
            Some(f) => f.to_owned(),
            None => r.tenant.unwrap_or_else(|| tenant.to_owned()),
        };
        let messages = if r.messages.is_empty() {
            vec![Message::user(r.prompt)]
        } else if !r.prompt.is_empty() {
            return Ok(None);
        } else {
            let mut out = Vec::with_capacity(r.messages.len());
            for m in r.messages {
                let Some(role) = Role::parse(&m.role) else { return Ok(None) };
                out.push(Message { role, content: m.content });
            }
            out
        };
        // Labels are accounting, not cache key: a labelled hit is counted under its labels.
        let req = Request { tenant, messages, agent: r.agent, workflow: r.workflow, step: r.step, ..Default::default() };
        let core = &self.0;
        let c = &constraints.get().0;
        // Invalid requests go the general way, which reports them (and counts them once).
        if c.validate().is_err() || req.validate(core.config().max_prompt_bytes).is_err() {
            return Ok(None);
        }
        let Some(hit) = core.route_if_cached(&req, c).map_err(to_py_err)? else { return Ok(None) };
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|e| pyo3::exceptions::PyOSError::new_err(format!("no random decision id: {e}")))?;
        let did = hex(&id);
        let d = PyDecision(Arc::new(hit));
        let body = PyBytes::new(py, &d.encode(py, &did, 0.0, r.detect_language, None));
        let (tenant, avoided) = (d.0.tenant.to_string(), d.cost_avoided_usd());
        Ok(Some((d, did, body, tenant, avoided)))
    }

    /// The exact cache's answer for a request, without routing it: None when there is none (and
    /// nothing is counted; a hit is counted as `route` counts one). No semantic lookup, budget
    /// reservation or single flight: it never waits. About a microsecond, so the GIL is kept.
    #[pyo3(signature = (prompt, tenant, constraints, extras=None))]
    fn lookup(
        &self,
        prompt: &Bound<'_, PyAny>,
        tenant: String,
        constraints: &Bound<'_, PyConstraints>,
        extras: Option<Extras>,
    ) -> PyResult<Option<PyDecision>> {
        let req = request_of(prompt, tenant, extras, None)?;
        Ok(self.0.route_if_cached(&req, &constraints.get().0).map_err(to_py_err)?.map(|o| PyDecision(Arc::new(o))))
    }

    /// Routes many requests in one call. Every request is checked before any is routed, so a bad
    /// one fails the batch (naming its index) without routing the rest.
    #[allow(clippy::type_complexity)]
    #[pyo3(signature = (items, semantic=None))]
    fn route_many(
        &self,
        py: Python<'_>,
        items: Vec<(Bound<'_, PyAny>, String, Bound<'_, PyConstraints>, Option<Extras>, Option<Labels>)>,
        semantic: Option<&Bound<'_, PySemantic>>,
    ) -> PyResult<Vec<PyDecision>> {
        let mut batch = Vec::with_capacity(items.len());
        for (i, (prompt, tenant, c, extras, labels)) in items.into_iter().enumerate() {
            let req = request_of(&prompt, tenant, extras, labels).map_err(|e| prefix_err(py, e, i))?;
            batch.push((req, c.get().0.clone()));
        }
        let core = &self.0;
        let sem = semantic.map(Bound::get);
        let max = core.config().max_prompt_bytes;
        let out: Result<Vec<RouteOutcome>, (usize, Error)> = without_gil(py, || {
            for (i, (r, c)) in batch.iter().enumerate() {
                c.validate().and_then(|_| r.validate(max)).map_err(|e| (i, e))?;
            }
            let Some(sem) = sem else {
                return batch.iter().enumerate().map(|(i, (r, c))| core.route(r, c).map_err(|e| (i, e))).collect();
            };
            // Exact hits first; the rest go to the semantic layer as one submission, which the
            // batcher cuts into micro-batches (one embedding pass and one search each).
            let mut out: Vec<Option<RouteOutcome>> = Vec::with_capacity(batch.len());
            let mut pending: Vec<(usize, u64, Arc<str>)> = Vec::new();
            for (i, (r, c)) in batch.iter().enumerate() {
                let hit = core.route_if_cached(r, c).map_err(|e| (i, e))?;
                if hit.is_none() && !c.cache.no_cache {
                    let scope = semantic::scope_of(r, c.allowed_models.as_deref().unwrap_or(&[]), sem.embedder.model_id());
                    pending.push((i, scope, Arc::from(semantic::query_of(r))));
                }
                out.push(hit);
            }
            let looked = sem.batcher.submit_many(pending.iter().map(|(_, scope, q)| (*scope, q.clone())).collect());
            let verify = sem.verifier.as_ref().map(|(v, t)| (v, *t));
            for ((i, scope, query), l) in pending.into_iter().zip(looked) {
                let (r, c) = &batch[i];
                out[i] = Some(semantic_outcome(core, sem, r, c, scope, query, l, &sem.thresholds, verify).map_err(|e| (i, e))?);
            }
            batch.iter().zip(out).enumerate().map(|(i, ((r, c), o))| o.map_or_else(|| core.route(r, c).map_err(|e| (i, e)), Ok)).collect()
        });
        match out {
            Ok(v) => Ok(v.into_iter().map(|o| PyDecision(Arc::new(o))).collect()),
            Err((i, e)) => Err(prefix_err(py, to_py_err(e), i)),
        }
    }

    /// Accounts a finished model call; stores the answer unless the call failed or the decision
    /// said no-store. Returns (actual cost in USD, stored).
    #[pyo3(signature = (decision, response, input_tokens, output_tokens, latency_ms, ok=true))]
    /// `(cost_usd, stored, semantic)`: `semantic` is `(entry id, scope, vector bytes)` when the
    /// answer was also stored in the semantic cache (the index must add the vector under the id).
    #[allow(clippy::type_complexity)]
    fn record<'py>(
        &self,
        py: Python<'py>,
        decision: &Bound<'py, PyAny>,
        response: &Bound<'py, PyAny>,
        input_tokens: &Bound<'py, PyAny>,
        output_tokens: &Bound<'py, PyAny>,
        latency_ms: f64,
        ok: bool,
    ) -> PyResult<(f64, bool, Option<(u64, u64, Bound<'py, PyBytes>)>)> {
        let d = decision.cast::<PyDecision>().map_err(|_| invalid("decision", "must be a Decision returned by route()"))?;
        let outcome = d.get().0.clone();
        let response = owned_str(response, "response")?;
        let count = |v: &Bound<'_, PyAny>, field: &str| -> PyResult<u32> {
            v.extract::<u32>().map_err(|_| invalid(field, format!("must be an integer in [0, 2^32), got {v}")))
        };
        let (i, o) = (count(input_tokens, "input_tokens")?, count(output_tokens, "output_tokens")?);
        let core = &self.0;
        let r = without_gil(py, || core.record(&outcome, response, i, o, latency_ms, ok)).map_err(to_py_err)?;
        let sem = match (r.semantic_id, outcome.pending.get()) {
            (Some(id), Some((scope, _, vector))) => Some((id, *scope, f32_bytes(py, vector))),
            _ => None,
        };
        Ok((r.cost_usd, r.stored, sem))
    }

    /// Exact o200k token count.
    fn count_tokens(&self, py: Python<'_>, text: &Bound<'_, PyAny>) -> PyResult<usize> {
        let t = owned_str(text, "text")?;
        Ok(without_gil(py, || routerx_core::features::count_tokens(&t)))
    }

    /// Named feature vector of a request, in the classifier's order (for inspection and training).
    fn features<'py>(&self, py: Python<'py>, prompt: &Bound<'py, PyAny>) -> PyResult<Vec<(String, f32)>> {
        let req = request_of(prompt, "features".into(), None, None)?;
        let c = self.0.classifier();
        let x = without_gil(py, || c.vectorize(&req, &routerx_core::features::Features::extract(&req)));
        Ok(c.feature_names().iter().cloned().zip(x).collect())
    }

    #[pyo3(signature = (models, candidates, settings, energy=None, baseline=None))]
    #[allow(clippy::type_complexity)]
    fn set_policy(
        &self,
        py: Python<'_>,
        models: Vec<(String, String, u32, Vec<f32>)>,
        candidates: Vec<(u32, String, f64, f64, f64, f64, f64)>,
        settings: (f32, f32, usize, u32),
        energy: Option<Vec<f64>>,
        baseline: Option<(f64, f64)>,
    ) -> PyResult<()> {
        let t = policy_table(models, candidates, settings)?;
        let acct = AccountingTable { energy_j_per_token: energy.unwrap_or_default(), baseline_price: baseline };
        without_gil(py, || self.0.set_policy_with_accounting(t, acct)).map_err(to_py_err)
    }

    /// Cumulative ledger rows since this core started: `(tenant, agent, workflow, step, model, tier, totals)`.
    fn ledger<'py>(&self, py: Python<'py>) -> PyResult<Vec<LedgerRow<'py>>> {
        let core = &self.0;
        let rows = without_gil(py, || core.ledger().snapshot());
        rows.into_iter().map(|(k, t)| ledger_row(py, k, t)).collect()
    }

    /// What changed in the ledger since the previous drain (same row shape as `ledger()`).
    fn drain_deltas<'py>(&self, py: Python<'py>) -> PyResult<Vec<LedgerRow<'py>>> {
        let core = &self.0;
        let rows = without_gil(py, || core.ledger().drain_deltas());
        rows.into_iter().map(|(k, t)| ledger_row(py, k, t)).collect()
    }

    /// Adds or replaces the limit for (scope, window, metric). `limit` is USD or tokens;
    /// `spent` (same unit) seeds the current window, e.g. from the accounting database.
    #[pyo3(signature = (scope, window, metric, limit, action, spent=None))]
    fn set_budget(&self, scope: &str, window: &str, metric: &str, limit: f64, action: &str, spent: Option<f64>) -> PyResult<()> {
        let scope = Scope::parse(scope).map_err(to_py_err)?;
        let window = Window::parse(window).map_err(to_py_err)?;
        let action = Action::parse(action).map_err(to_py_err)?;
        let (metric, scale) = match metric {
            "usd" => (Metric::Usd, 1e9),
            "tokens" => (Metric::Tokens, 1.0),
            _ => return Err(to_py_err(Error::invalid_constraint("metric", format!("{metric:?}: expected usd or tokens")))),
        };
        if !(limit.is_finite() && limit > 0.0) {
            return Err(to_py_err(Error::invalid_constraint("limit", format!("must be a positive number, got {limit}"))));
        }
        if let Some(s) = spent {
            if !(s.is_finite() && s >= 0.0) {
                return Err(to_py_err(Error::invalid_constraint("spent", format!("must be a number ≥ 0, got {s}"))));
            }
        }
        let spec = LimitSpec { scope, window, metric, limit: (limit * scale).round().max(1.0) as u64, action };
        self.0.budgets().set(spec, spent.map(|s| (s * scale).round() as u64), unix_now()).map_err(to_py_err)
    }

    /// Removes a scope's limits (all, or of one window / metric). Returns how many.
    #[pyo3(signature = (scope, window=None, metric=None))]
    fn remove_budget(&self, scope: &str, window: Option<&str>, metric: Option<&str>) -> PyResult<usize> {
        let scope = Scope::parse(scope).map_err(to_py_err)?;
        let window = window.map(Window::parse).transpose().map_err(to_py_err)?;
        let metric = match metric {
            None => None,
            Some("usd") => Some(Metric::Usd),
            Some("tokens") => Some(Metric::Tokens),
            Some(m) => return Err(to_py_err(Error::invalid_constraint("metric", format!("{m:?}: expected usd or tokens")))),
        };
        Ok(self.0.budgets().remove(&scope, window, metric))
    }

    /// State of every limit in its current window (amounts in USD or tokens).
    fn budgets<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let states = self.0.budgets().states(unix_now());
        states
            .into_iter()
            .map(|s| {
                let scale = match s.spec.metric {
                    Metric::Usd => 1e9,
                    Metric::Tokens => 1.0,
                };
                let d = PyDict::new(py);
                d.set_item("scope", s.spec.scope.to_string())?;
                d.set_item("window", s.spec.window.as_str())?;
                d.set_item("metric", s.spec.metric.as_str())?;
                d.set_item("limit", s.spec.limit as f64 / scale)?;
                d.set_item("action", s.spec.action.as_str())?;
                d.set_item("window_start", s.window_start)?;
                d.set_item("spent", s.spent as f64 / scale)?;
                d.set_item("reserved", s.reserved as f64 / scale)?;
                d.set_item("warned", s.warned)?;
                d.set_item("downgraded", s.downgraded)?;
                d.set_item("rejected", s.rejected)?;
                Ok(d)
            })
            .collect()
    }

    /// Seconds after which the reservation of a decision never recorded is released.
    fn set_reservation_ttl(&self, seconds: f64) -> PyResult<()> {
        if !(seconds.is_finite() && seconds >= 0.0) {
            return Err(to_py_err(Error::invalid_constraint("reservation_ttl_s", format!("must be a number ≥ 0, got {seconds}"))));
        }
        self.0.budgets().set_reservation_ttl(seconds);
        Ok(())
    }

    /// Releases expired reservations now; returns how many.
    fn sweep_reservations(&self) -> usize {
        self.0.budgets().sweep(unix_now())
    }

    /// Cumulative route-latency counts ≤ each bound (seconds), the sum (seconds) and the count.
    fn route_latency_buckets(&self, bounds_s: Vec<f64>) -> (Vec<u64>, f64, u64) {
        let b: Vec<u64> = bounds_s.iter().map(|s| (s * 1e9).clamp(0.0, 6e10) as u64).collect();
        let (c, sum, n) = self.0.stats().latency_buckets(&b);
        (c, sum / 1e9, n)
    }

    /// Installs the learned router (`model` None removes it). `aliases`: catalog model name →
    /// artefact model name; `embedder` must be the one the artefact was trained with.
    #[pyo3(signature = (model, embedder=None, aliases=None, willingness_to_pay=None, max_offset=1.0, prior_labels=20.0, min_labels=20, max_tenants=10_000))]
    #[allow(clippy::too_many_arguments)]
    fn set_quality(
        &self,
        py: Python<'_>,
        model: Option<&PyQualityModel>,
        embedder: Option<&PyEmbedder>,
        aliases: Option<std::collections::HashMap<String, String>>,
        willingness_to_pay: Option<f64>,
        max_offset: f32,
        prior_labels: f32,
        min_labels: u32,
        max_tenants: usize,
    ) -> PyResult<()> {
        let Some(model) = model else {
            self.0.set_quality(None);
            return Ok(());
        };
        let embedder = embedder.ok_or_else(|| invalid("embedder", "a quality model needs the embedder it was trained with"))?;
        if embedder.inner.model_id() != model.0.embedder_id {
            return Err(to_py_err(Error::config(
                "quality",
                format!("the artefact was trained on {} vectors, the embedder is {}", model.0.embedder_id, embedder.inner.model_id()),
            )));
        }
        if let Some(w) = willingness_to_pay {
            if !(w.is_finite() && w >= 0.0) {
                return Err(to_py_err(Error::config("quality.willingness_to_pay", format!("must be a finite number of USD ≥ 0, got {w}"))));
            }
        }
        let catalog: Vec<String> = self.0.policy().table.models.iter().map(|m| m.name.clone()).collect();
        let e = embedder.inner.clone();
        let embed: quality::EmbedFn = Arc::new(move |t: &str| e.embed(&[t]).map(|v| v.vectors));
        let cfg = quality::FeedbackConfig { max_offset, prior_labels, min_labels, max_tenants };
        let m = model.0.as_ref().clone();
        let core = &self.0;
        without_gil(py, move || {
            let mut q = quality::QualityRouter::new(m, embed, &catalog, &aliases.unwrap_or_default(), cfg)?;
            q.willingness_to_pay = willingness_to_pay;
            core.set_quality(Some(Arc::new(q)));
            Ok(())
        })
        .map_err(to_py_err)
    }

    /// A label in [0, 1] for the answer behind `decision`; True when the learned router learned from it.
    fn feedback(&self, py: Python<'_>, decision: &PyDecision, label: f64) -> PyResult<bool> {
        let o = decision.0.clone();
        without_gil(py, || self.0.feedback(&o, label)).map_err(to_py_err)
    }

    /// p̂ per catalog model for a prompt in workflow step `step` ("" for none) as `tenant` sees it
    /// (None: no learned router, or the artefact has no such model); the embedding and prediction
    /// run without the GIL.
    #[pyo3(signature = (text, tenant, step=String::new()))]
    fn predict_quality(
        &self,
        py: Python<'_>,
        text: &Bound<'_, PyAny>,
        tenant: &str,
        step: String,
    ) -> PyResult<Option<Vec<(String, Option<f32>)>>> {
        let text = owned_str(text, "prompt")?;
        let Some(q) = self.0.quality() else { return Ok(None) };
        let p = without_gil(py, || q.predict(&text, &step, tenant)).map_err(to_py_err)?;
        Ok(Some(q.catalog().iter().cloned().zip(p.quality).collect()))
    }

    /// Replays logged labels (tenant, model, text, step, label) into the learned router; returns
    /// how many were learned from. One call for the whole log, without the GIL.
    fn quality_replay(&self, py: Python<'_>, rows: Vec<(String, String, String, String, f32)>) -> PyResult<usize> {
        let Some(q) = self.0.quality() else { return Ok(0) };
        without_gil(py, || {
            let mut n = 0;
            for (tenant, model, text, step, label) in &rows {
                n += q.replay(tenant, model, text, step, *label)? as usize;
            }
            Ok(n)
        })
        .map_err(to_py_err)
    }

    fn quality_stats<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(q) = self.0.quality() else { return Ok(None) };
        let s = q.feedback_stats();
        let d = PyDict::new(py);
        d.set_item("models", q.model.names.clone())?;
        d.set_item(
            "mapped",
            (0..q.catalog().len()).filter_map(|i| q.mapped(i).map(|a| (q.catalog()[i].clone(), a.to_owned()))).collect::<Vec<_>>(),
        )?;
        d.set_item("willingness_to_pay", q.willingness_to_pay)?;
        d.set_item("labels", s.labels)?;
        d.set_item("ignored_labels", s.ignored)?;
        d.set_item("tenants", s.tenants)?;
        d.set_item("fallbacks", s.fallbacks)?;
        d.set_item("shared_offset", s.shared_offset)?;
        Ok(Some(d))
    }

    #[pyo3(signature = (text, source="<classifier>".to_owned()))]
    fn set_classifier(&self, py: Python<'_>, text: String, source: String) -> PyResult<()> {
        let c = without_gil(py, || Classifier::from_json(&text, &source)).map_err(to_py_err)?;
        self.0.set_classifier(c);
        Ok(())
    }

    fn classifier_name(&self) -> String {
        self.0.classifier().name().to_owned()
    }

    /// Removes cached answers: all, or one tenant's. Returns how many.
    #[pyo3(signature = (tenant=None))]
    fn invalidate(&self, py: Python<'_>, tenant: Option<String>) -> usize {
        let (cache, sem) = (self.0.cache(), self.0.semantic());
        without_gil(py, || match tenant {
            Some(t) => cache.remove_where(|e| *e.tenant == *t) + sem.remove_where(|e| *e.entry.tenant == *t),
            None => cache.clear() + sem.remove_where(|_| true),
        })
    }

    /// Writes the exact cache to `path` (atomic, versioned, checksummed); returns (entries, bytes).
    fn snapshot_cache(&self, py: Python<'_>, path: std::path::PathBuf) -> PyResult<(usize, u64)> {
        without_gil(py, || self.0.snapshot_cache(&path)).map_err(to_py_err)
    }

    /// Adds a snapshot's live entries; returns (restored, expired, dropped). On error nothing changes.
    fn restore_cache(&self, py: Python<'_>, path: std::path::PathBuf) -> PyResult<(usize, usize, usize)> {
        let r = without_gil(py, || self.0.restore_cache(&path)).map_err(to_py_err)?;
        Ok((r.restored, r.expired, r.dropped))
    }

    /// Writes the semantic cache (entries and vectors) to `path`; returns (entries, bytes).
    fn snapshot_semantic(&self, py: Python<'_>, path: std::path::PathBuf, embedder_id: String) -> PyResult<(usize, u64)> {
        without_gil(py, || self.0.snapshot_semantic(&path, &embedder_id)).map_err(to_py_err)
    }

    /// Adds a semantic snapshot's live entries; returns (restored, expired, dropped).
    fn restore_semantic(&self, py: Python<'_>, path: std::path::PathBuf, embedder_id: String) -> PyResult<(usize, usize, usize)> {
        let r = without_gil(py, || self.0.restore_semantic(&path, &embedder_id)).map_err(to_py_err)?;
        Ok((r.restored, r.expired, r.dropped))
    }

    /// Semantic entry ids removed since the last call (the index drops them).
    fn semantic_drain_removed(&self) -> Vec<u64> {
        self.0.semantic().drain_removed()
    }

    /// Live semantic vectors as `(scopes u64, ids u64, vectors f32)` bytes, in id order: what an
    /// index is built from, one contiguous copy instead of an object per entry. `scope` keeps one
    /// scope; `ids` fetches only those.
    #[pyo3(signature = (scope=None, ids=None))]
    fn semantic_vectors<'py>(
        &self,
        py: Python<'py>,
        scope: Option<u64>,
        ids: Option<Vec<u64>>,
    ) -> (Bound<'py, PyBytes>, Bound<'py, PyBytes>, Bound<'py, PyBytes>) {
        let v = without_gil(py, || self.0.semantic().live_vectors(unix_now(), scope, ids.as_deref()));
        (ne_bytes(py, &v.scopes, |x| x.to_ne_bytes()), ne_bytes(py, &v.ids, |x| x.to_ne_bytes()), f32_bytes(py, &v.vectors))
    }

    /// Removes one semantic entry by id; whether it was there.
    fn semantic_remove(&self, id: u64) -> bool {
        self.0.semantic().remove(id)
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        use std::sync::atomic::Ordering::Relaxed;
        let core = &self.0;
        let (lat, cache, decisions) = without_gil(py, || (core.latency(), core.cache_stats(), core.stats().decisions()));
        let k = &core.stats().counters;
        let d = PyDict::new(py);
        for (name, v) in [
            ("requests", &k.requests),
            ("exact_hits", &k.exact_hits),
            ("semantic_hits", &k.semantic_hits),
            ("misses", &k.misses),
            ("bypassed", &k.bypassed),
            ("best_effort", &k.best_effort),
            ("errors", &k.errors),
            ("records", &k.records),
            ("failed_calls", &k.failed_calls),
            ("input_tokens", &k.input_tokens),
            ("output_tokens", &k.output_tokens),
        ] {
            d.set_item(name, v.load(Relaxed))?;
        }
        d.set_item("cost_usd", k.cost_nano.load(Relaxed) as f64 / 1e9)?;
        d.set_item("cost_avoided_usd", k.avoided_nano.load(Relaxed) as f64 / 1e9)?;
        let dec = PyDict::new(py);
        for (m, t, n) in decisions {
            dec.set_item(format!("{m}/{t}"), n)?;
        }
        d.set_item("decisions", dec)?;
        let l = PyDict::new(py);
        l.set_item("count", lat.count)?;
        l.set_item("p50_us", lat.p50_ns as f64 / 1e3)?;
        l.set_item("p90_us", lat.p90_ns as f64 / 1e3)?;
        l.set_item("p99_us", lat.p99_ns as f64 / 1e3)?;
        l.set_item("max_us", lat.max_ns as f64 / 1e3)?;
        l.set_item("mean_us", lat.mean_ns / 1e3)?;
        d.set_item("route_latency", l)?;
        let c = PyDict::new(py);
        c.set_item("entries", cache.entries)?;
        c.set_item("bytes", cache.bytes)?;
        c.set_item("inserts", cache.inserts)?;
        c.set_item("evictions", cache.evictions)?;
        c.set_item("expirations", cache.expirations)?;
        d.set_item("cache", c)?;
        let st = core.semantic().stats();
        let sc = PyDict::new(py);
        for (name, v) in [
            ("entries", st.entries),
            ("bytes", st.bytes),
            ("inserts", st.inserts),
            ("evictions", st.evictions),
            ("expirations", st.expirations),
            ("hits", st.hits),
            ("below_threshold", st.below_threshold),
            ("guard_rejections", st.guard_rejections),
            ("guard_overruled", st.guard_overruled),
            ("stale_candidates", st.stale_candidates),
        ] {
            sc.set_item(name, v)?;
        }
        d.set_item("semantic", sc)?;
        Ok(d)
    }
}

fn f32_bytes<'py>(py: Python<'py>, v: &[f32]) -> Bound<'py, PyBytes> {
    ne_bytes(py, v, |x| x.to_ne_bytes())
}

/// `v` in native byte order, written straight into a new `bytes` (no intermediate buffer).
fn ne_bytes<'py, T, const N: usize>(py: Python<'py>, v: &[T], word: impl Fn(&T) -> [u8; N]) -> Bound<'py, PyBytes> {
    PyBytes::new_with(py, v.len() * N, |buf| {
        for (b, x) in buf.chunks_exact_mut(N).zip(v) {
            b.copy_from_slice(&word(x));
        }
        Ok(())
    })
    .expect("filling bytes cannot fail")
}

/// What one lookup gets back from a micro-batch: the query's vector and the index's candidates.
type Looked = Result<(Vec<f32>, Vec<(u64, f32)>), String>;

/// The semantic layer's lookup path: concurrent lookups are coalesced by the core's micro-batcher
/// into one embedding pass and one call of the Python `search(vectors, scopes, k)` (faiss), so the
/// GIL is taken once per batch. `search` gets float32 row-major bytes and a list of scopes and
/// returns `(ids, sims)`: int64 and float32 bytes of len(scopes) × k, best first, id -1 for none.
#[pyclass(frozen, name = "Semantic", module = "routerx._core")]
struct PySemantic {
    embedder: Arc<dyn Embedder>,
    batcher: Batcher<(u64, Arc<str>), Looked>,
    min_similarity: f32,
    /// By task category of the cached answer: its own threshold, else `min_similarity`.
    thresholds: [f32; N_CATEGORIES],
    failures: std::sync::atomic::AtomicU64,
    /// The learned pair verifier every candidate must also pass, with its acceptance threshold.
    verifier: Option<(PairVerifier, f32)>,
    /// A cross-encoder's score at or above which the guard's name difference is overruled
    /// (None: never, or `trust_names = false`).
    name_threshold: Option<f32>,
    verifier_refusals: std::sync::atomic::AtomicU64,
}

#[pymethods]
impl PySemantic {
    #[new]
    #[pyo3(signature = (embedder, search, min_similarity, top_k=4, max_batch=32, max_wait_us=200, category_min_similarity=None, verifier=None, verifier_threshold=None, trust_names=true))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        embedder: &Bound<'_, PyEmbedder>,
        search: Py<PyAny>,
        min_similarity: f32,
        top_k: usize,
        max_batch: usize,
        max_wait_us: u64,
        category_min_similarity: Option<std::collections::HashMap<String, f32>>,
        verifier: Option<&Bound<'_, PyAny>>,
        verifier_threshold: Option<f32>,
        trust_names: bool,
    ) -> PyResult<Self> {
        let cosine = |field: String, v: f32| -> PyResult<f32> {
            if v > 0.0 && v <= 1.0 {
                Ok(v)
            } else {
                Err(to_py_err(routerx_core::Error::invalid_constraint(field, format!("must be a cosine in (0, 1], got {v}"))))
            }
        };
        cosine("min_similarity".into(), min_similarity)?;
        let mut thresholds = [min_similarity; N_CATEGORIES];
        for (name, v) in category_min_similarity.unwrap_or_default() {
            let cat = Category::ALL
                .iter()
                .find(|c| c.name() == name)
                .ok_or_else(|| invalid(format!("category_min_similarity.{name}"), "is not a task category"))?;
            thresholds[cat.index()] = cosine(format!("category_min_similarity.{name}"), v)?;
        }
        if !(1..=256).contains(&top_k) {
            return Err(to_py_err(routerx_core::Error::invalid_constraint("top_k", format!("must be in 1..=256, got {top_k}"))));
        }
        let model = embedder.get().inner.clone();
        let m = model.clone();
        let cfg = BatcherConfig { max_batch, max_wait: std::time::Duration::from_micros(max_wait_us), ..BatcherConfig::default() };
        let batcher = Batcher::new(cfg, move |items: Vec<(u64, Arc<str>)>| search_batch(&m, &search, top_k, items)).map_err(to_py_err)?;
        let mut name_threshold = None;
        let verifier = match verifier {
            Some(obj) => {
                let (v, default) = if let Ok(v) = obj.cast::<PyVerifier>() {
                    let v = v.get().0.clone();
                    if v.embedder != model.model_id() || v.dim as usize != model.dim() {
                        return Err(invalid(
                            "semantic.verifier",
                            format!("was trained on vectors of {} (width {}), the embedder is {}", v.embedder, v.dim, model.model_id()),
                        ));
                    }
                    let t = v.threshold;
                    (PairVerifier::Vectors(v), t)
                } else if let Ok(x) = obj.cast::<PyCrossEncoder>() {
                    // It reads the texts; only a calibration that weighs the cosine needs the
                    // embedder it was calibrated with.
                    let x = x.get().0.clone();
                    let c = &x.calibration;
                    if c.uses_cosine() && c.embedder != model.model_id() {
                        return Err(invalid(
                            "semantic.verifier",
                            format!("was calibrated on cosines of {}, the embedder is {}", c.embedder, model.model_id()),
                        ));
                    }
                    let t = x.threshold;
                    name_threshold = x.name_threshold.filter(|_| trust_names);
                    (PairVerifier::Cross(x), t)
                } else {
                    return Err(invalid("semantic.verifier", "must be a Verifier or a CrossEncoder"));
                };
                let t = verifier_threshold.unwrap_or(default);
                probability("semantic.verifier_threshold", t)?;
                Some((v, t))
            }
            None => None,
        };
        Ok(PySemantic {
            embedder: model,
            batcher,
            min_similarity,
            thresholds,
            failures: Default::default(),
            verifier,
            name_threshold,
            verifier_refusals: Default::default(),
        })
    }

    #[getter]
    fn min_similarity(&self) -> f32 {
        self.min_similarity
    }

    #[getter]
    fn model_id(&self) -> &str {
        self.embedder.model_id()
    }

    /// Batches, items, largest batch and failures so far.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.batcher.stats();
        let d = PyDict::new(py);
        d.set_item("batches", s.batches)?;
        d.set_item("items", s.items)?;
        d.set_item("largest_batch", s.largest_batch)?;
        d.set_item("rejected_full", s.rejected_full)?;
        d.set_item("failures", self.failures.load(std::sync::atomic::Ordering::Relaxed))?;
        d.set_item("verifier_refusals", self.verifier_refusals.load(std::sync::atomic::Ordering::Relaxed))?;
        d.set_item("verifier_threshold", self.verifier.as_ref().map(|(_, t)| *t))?;
        d.set_item("verifier_name_threshold", self.name_threshold)?;
        Ok(d)
    }
}

/// One micro-batch: embed every query in one pass (no GIL), then one `search` call (GIL once).
fn search_batch(model: &Arc<dyn Embedder>, search: &Py<PyAny>, k: usize, items: Vec<(u64, Arc<str>)>) -> Vec<Looked> {
    let n = items.len();
    let texts: Vec<&str> = items.iter().map(|(_, q)| &**q).collect();
    let emb = match model.embed(&texts) {
        Ok(e) => e,
        Err(e) => return vec![Err(e.to_string()); n],
    };
    let scopes: Vec<u64> = items.iter().map(|(s, _)| *s).collect();
    let found = Python::attach(|py| -> PyResult<(Vec<i64>, Vec<f32>)> {
        let out = search.call1(py, (f32_bytes(py, &emb.vectors), scopes, k))?;
        let (ids, sims): (Bound<'_, PyBytes>, Bound<'_, PyBytes>) = out.extract(py)?;
        let ids: Vec<i64> = ids.as_bytes().chunks_exact(8).map(|c| i64::from_ne_bytes(c.try_into().expect("8 bytes"))).collect();
        let sims: Vec<f32> = sims.as_bytes().chunks_exact(4).map(|c| f32::from_ne_bytes(c.try_into().expect("4 bytes"))).collect();
        Ok((ids, sims))
    });
    let (ids, sims) = match found {
        Ok(x) if x.0.len() == n * k && x.1.len() == n * k => x,
        Ok(_) => return vec![Err("search returned arrays of the wrong size".into()); n],
        Err(e) => return vec![Err(format!("search failed: {e}")); n],
    };
    (0..n)
        .map(|i| {
            let cands = (0..k).filter_map(|j| {
                let id = ids[i * k + j];
                (id >= 0).then(|| (id as u64, sims[i * k + j]))
            });
            Ok((emb.row(i).to_vec(), cands.collect()))
        })
        .collect()
}

/// The outcome of a request the exact cache did not answer, from its semantic lookup: a
/// semantic hit, else a routed decision carrying the lookup's vector for `record` to store.
/// The semantic layer failing (a full queue, a search error) never fails the request: it is
/// routed, and the failure counted.
#[allow(clippy::too_many_arguments)]
fn semantic_outcome(
    core: &Core,
    sem: &PySemantic,
    req: &Request,
    c: &Constraints,
    scope: u64,
    query: Arc<str>,
    looked: Result<Looked, routerx_core::batcher::BatchError>,
    thresholds: &[f32; N_CATEGORIES],
    verify: Option<(&PairVerifier, f32)>,
) -> Result<RouteOutcome, routerx_core::Error> {
    let Ok(Ok((vector, mut candidates))) = looked else {
        sem.failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return core.route(req, c);
    };
    core.semantic().rescore(&vector, &mut candidates);
    let mut trusted = Vec::new();
    if let Some((v, t)) = verify {
        let (kept, refused) = match v {
            PairVerifier::Vectors(v) => {
                semantic::verifier::filter(core.semantic(), v, t, &semantic::guard::Signature::of(&query), &vector, &candidates)
            }
            PairVerifier::Cross(x) => {
                let floor = thresholds.iter().copied().fold(1.0f32, f32::min);
                let f = routerx_core::embed::cross::filter(core.semantic(), x, t, sem.name_threshold, &query, &candidates, floor);
                trusted = f.trusted;
                (f.kept, f.refused)
            }
        };
        sem.verifier_refusals.fetch_add(refused, std::sync::atomic::Ordering::Relaxed);
        candidates = kept;
    }
    if let Some(hit) = core.route_semantic(req, c, scope, &candidates, thresholds, &trusted)? {
        return Ok(hit);
    }
    let out = core.route(req, c)?;
    core.attach_semantic(&out, scope, query, vector);
    Ok(out)
}

/// What a semantic candidate must also pass: a verifier over the pair's vectors, or a
/// cross-encoder reading both texts.
#[derive(Clone)]
enum PairVerifier {
    Vectors(Arc<semantic::Verifier>),
    Cross(Arc<CrossEncoder>),
}

/// A sentence embedder (all-MiniLM-L6-v2) loaded from a local model directory.
#[pyclass(frozen, name = "Embedder", module = "routerx._core")]
struct PyEmbedder {
    inner: Arc<dyn Embedder>,
    /// The sentence model itself (None for a static table), to distill from.
    base: Option<Arc<MiniLm>>,
    table: Option<Arc<StaticTable>>,
}

#[pymethods]
impl PyEmbedder {
    /// Loads config.json, tokenizer.json and model.safetensors from `dir`.
    #[staticmethod]
    fn load(py: Python<'_>, dir: std::path::PathBuf) -> PyResult<Self> {
        let m = Arc::new(without_gil(py, || MiniLm::load(&dir)).map_err(to_py_err)?);
        Ok(Self { inner: m.clone(), base: Some(m), table: None })
    }

    /// The static embedder distilled from this sentence model (every vocabulary token through it once).
    fn distill_static(&self, py: Python<'_>) -> PyResult<Self> {
        let base = self.base.clone().ok_or_else(|| invalid("embedder", "only a sentence model can be distilled"))?;
        let t = Arc::new(without_gil(py, || StaticTable::distill(&base)).map_err(to_py_err)?);
        Ok(Self { inner: t.clone(), base: None, table: Some(t) })
    }

    /// Saves a static table (atomic, versioned, checksummed); returns the bytes written.
    fn save_static(&self, py: Python<'_>, path: std::path::PathBuf) -> PyResult<u64> {
        let t = self.table.clone().ok_or_else(|| invalid("embedder", "not a static embedder"))?;
        without_gil(py, || t.save(&path)).map_err(to_py_err)
    }

    /// Loads a static table distilled from this sentence model.
    fn load_static(&self, py: Python<'_>, path: std::path::PathBuf) -> PyResult<Self> {
        let base = self.base.clone().ok_or_else(|| invalid("embedder", "load a static table through its sentence model"))?;
        let t = Arc::new(without_gil(py, || StaticTable::load(&path, &base)).map_err(to_py_err)?);
        Ok(Self { inner: t.clone(), base: None, table: Some(t) })
    }

    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    #[getter]
    fn max_tokens(&self) -> usize {
        self.inner.max_tokens()
    }

    #[getter]
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }

    /// `(vectors, truncated)`: float32 row-major bytes (len(texts) × dim, native byte order) and
    /// per text whether it was cut to `max_tokens`. The GIL is released for the whole batch.
    fn embed<'py>(&self, py: Python<'py>, texts: &Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyBytes>, Vec<bool>)> {
        if texts.is_instance_of::<PyString>() {
            return Err(invalid("texts", "must be a list of strings, got one string"));
        }
        let mut owned = Vec::new();
        for (i, t) in texts.try_iter().map_err(|_| invalid("texts", "must be a list of strings"))?.enumerate() {
            owned.push(owned_str(&t?, &format!("texts[{i}]"))?);
        }
        let m = &self.inner;
        let e = without_gil(py, || m.embed(&owned.iter().map(String::as_str).collect::<Vec<_>>())).map_err(to_py_err)?;
        let bytes = PyBytes::new_with(py, e.vectors.len() * 4, |buf| {
            for (b, v) in buf.chunks_exact_mut(4).zip(&e.vectors) {
                b.copy_from_slice(&v.to_ne_bytes());
            }
            Ok(())
        })?;
        Ok((bytes, e.truncated))
    }

    fn __repr__(&self) -> String {
        format!("Embedder(model_id={:?}, dim={}, max_tokens={})", self.inner.model_id(), self.inner.dim(), self.inner.max_tokens())
    }
}

/// Names the batch index in an error message, keeping the exception type.
fn prefix_err(py: Python<'_>, e: PyErr, i: usize) -> PyErr {
    let v = e.value(py);
    if let Ok(args) = v.getattr("args") {
        if let Ok(args) = args.cast::<PyTuple>() {
            if let Some(first) = args.iter().next() {
                let mut new: Vec<Bound<'_, PyAny>> = vec![PyString::new(py, &format!("requests[{i}]: {first}")).into_any()];
                new.extend(args.iter().skip(1));
                if let Ok(t) = PyTuple::new(py, new) {
                    if let Ok(new_exc) = v.get_type().call1(t) {
                        return PyErr::from_value(new_exc);
                    }
                }
            }
        }
    }
    e
}

/// `(tenant, agent, workflow, step, model, tier, calls, cache_hits, errors, input_tokens,
/// output_tokens, cost_nano, avoided_cache_nano, avoided_routing_nano, energy_mj, latency_us_sum,
/// latency_buckets)`.
type LedgerRow<'py> = Bound<'py, PyTuple>;

fn ledger_row<'py>(py: Python<'py>, k: LedgerKey, t: Totals) -> PyResult<LedgerRow<'py>> {
    let items: Vec<Bound<'py, PyAny>> = vec![
        PyString::new(py, &k.tenant).into_any(),
        PyString::new(py, &k.agent).into_any(),
        PyString::new(py, &k.workflow).into_any(),
        PyString::new(py, &k.step).into_any(),
        PyString::new(py, &k.model).into_any(),
        PyString::new(py, &k.tier).into_any(),
        t.calls.into_pyobject(py)?.into_any(),
        t.cache_hits.into_pyobject(py)?.into_any(),
        t.errors.into_pyobject(py)?.into_any(),
        t.input_tokens.into_pyobject(py)?.into_any(),
        t.output_tokens.into_pyobject(py)?.into_any(),
        t.cost_nano.into_pyobject(py)?.into_any(),
        t.avoided_cache_nano.into_pyobject(py)?.into_any(),
        t.avoided_routing_nano.into_pyobject(py)?.into_any(),
        t.energy_mj.into_pyobject(py)?.into_any(),
        t.latency_us_sum.into_pyobject(py)?.into_any(),
        PyList::new(py, t.latency_buckets)?.into_any(),
    ];
    PyTuple::new(py, items)
}

/// Upper bounds (ms) of the call-latency buckets of ledger rows (one more bucket takes the rest).
#[pyfunction]
fn latency_buckets_ms() -> Vec<f64> {
    LATENCY_BUCKETS_MS.to_vec()
}

/// Nano-dollar rounding, exposed so Python totals use the same arithmetic as the counters.
#[pyfunction]
fn round_usd(usd: f64) -> f64 {
    to_nano(usd) as f64 / 1e9
}

#[pyfunction]
fn categories() -> Vec<&'static str> {
    Category::ALL.iter().map(|c| c.name()).collect()
}

#[pyfunction]
fn default_classifier_json() -> &'static str {
    routerx_core::classifier::DEFAULT_MODEL_JSON
}

fn probability(field: &str, v: f32) -> PyResult<()> {
    if v > 0.0 && v < 1.0 {
        Ok(())
    } else {
        Err(invalid(field, format!("must be a score in (0, 1), got {v}")))
    }
}

fn f32_rows(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_ne_bytes(c.try_into().expect("4 bytes"))).collect()
}

/// The verifier's features of pairs (a[i], b[i]) with unit vectors va, vb (float32 bytes, n × dim):
/// float32 bytes, n × (1 + 14 + 2·dim), as the cache computes them at lookup.
#[pyfunction]
fn verifier_features<'py>(
    py: Python<'py>,
    a: Vec<String>,
    b: Vec<String>,
    va: &[u8],
    vb: &[u8],
    dim: usize,
) -> PyResult<Bound<'py, PyBytes>> {
    let n = a.len();
    if b.len() != n || dim == 0 || va.len() != n * dim * 4 || vb.len() != n * dim * 4 {
        return Err(invalid("verifier_features", format!("{n} / {} texts need {}-byte vector arrays", b.len(), n * dim * 4)));
    }
    let (u, v) = (f32_rows(va), f32_rows(vb));
    let out = without_gil(py, || {
        let mut out = Vec::with_capacity(n * semantic::verifier::n_features(dim));
        let mut x = Vec::new();
        for i in 0..n {
            let (sa, sb) = (semantic::guard::Signature::of(&a[i]), semantic::guard::Signature::of(&b[i]));
            semantic::verifier::features_into(&sa, &sb, &u[i * dim..(i + 1) * dim], &v[i * dim..(i + 1) * dim], &mut x);
            out.extend_from_slice(&x);
        }
        out
    });
    Ok(f32_bytes(py, &out))
}

/// A learned semantic-cache pair verifier (see routerx.calibrate.train_verifier).
/// A trained quality artefact (`routerx train`): per-model logistic regressions over embeddings.
#[pyclass(frozen, name = "QualityModel", module = "routerx._core")]
struct PyQualityModel(Arc<quality::QualityModel>);

#[pymethods]
impl PyQualityModel {
    /// Parses an artefact's JSON text; `source` names it in errors (ConfigError).
    #[staticmethod]
    #[pyo3(signature = (text, source="<quality model>".to_owned()))]
    fn from_json(py: Python<'_>, text: String, source: String) -> PyResult<Self> {
        Ok(PyQualityModel(Arc::new(without_gil(py, || quality::QualityModel::from_json(&text, &source)).map_err(to_py_err)?)))
    }

    /// p̂ for rows of float32 bytes (n × dim), each in its group (`groups`: one label per row, or
    /// None for none): float32 bytes n × models, row-major.
    #[pyo3(signature = (vectors, groups=None))]
    fn predict<'py>(&self, py: Python<'py>, vectors: &[u8], groups: Option<Vec<String>>) -> PyResult<Bound<'py, PyBytes>> {
        let m = &self.0;
        let x = f32_rows(vectors);
        if x.len() % m.dim != 0 {
            return Err(invalid("vectors", format!("rows of {} float32 expected, got {} bytes", m.dim, vectors.len())));
        }
        let n = x.len() / m.dim;
        if let Some(g) = &groups {
            if g.len() != n {
                return Err(invalid("groups", format!("{} group labels for {n} rows", g.len())));
            }
        }
        let group = |i: usize| groups.as_ref().map_or("", |g| g[i].as_str());
        let out: Vec<f32> = without_gil(py, || x.chunks_exact(m.dim).enumerate().flat_map(|(i, r)| m.predict(r, group(i))).collect());
        Ok(f32_bytes(py, &out))
    }

    /// The group labels the artefact has offsets for (version 2), sorted.
    #[getter]
    fn groups(&self) -> Vec<String> {
        let mut g: Vec<String> = self.0.groups().map(str::to_owned).collect();
        g.sort();
        g
    }

    /// The part of `text` the model reads (its last `tail_chars` characters).
    fn tail(&self, text: &str) -> String {
        self.0.tail(text).to_owned()
    }

    #[getter]
    fn names(&self) -> Vec<String> {
        self.0.names.clone()
    }
    #[getter]
    fn embedder(&self) -> &str {
        &self.0.embedder
    }
    #[getter]
    fn embedder_id(&self) -> &str {
        &self.0.embedder_id
    }
    #[getter]
    fn dim(&self) -> usize {
        self.0.dim
    }
    #[getter]
    fn tail_chars(&self) -> usize {
        self.0.tail_chars
    }
    fn __repr__(&self) -> String {
        format!("QualityModel(embedder={:?}, models={:?})", self.0.embedder, self.0.names)
    }
}

#[pyclass(frozen, name = "Verifier", module = "routerx._core")]
struct PyVerifier(Arc<semantic::Verifier>);

#[pymethods]
impl PyVerifier {
    /// Builds one from trained parameters: `layers` is a list of (inputs, outputs, weights, bias)
    /// with float32 bytes (weights row-major outputs × inputs).
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(
        embedder: String,
        dim: u32,
        mean: &[u8],
        scale: &[u8],
        layers: Vec<(u32, u32, Vec<u8>, Vec<u8>)>,
        threshold: f32,
        report: String,
    ) -> PyResult<Self> {
        let layers = layers
            .into_iter()
            .map(|(inp, out, w, b)| semantic::verifier::Dense { inp, out, weights: f32_rows(&w), bias: f32_rows(&b) })
            .collect();
        let v = semantic::Verifier { embedder, dim, mean: f32_rows(mean), scale: f32_rows(scale), layers, threshold, report };
        // The same checks as loading a file.
        v.check(std::path::Path::new("<trained parameters>")).map_err(to_py_err)?;
        Ok(PyVerifier(Arc::new(v)))
    }

    /// Reads a verifier file; a missing, truncated or corrupt file raises SnapshotError naming it.
    #[staticmethod]
    fn load(py: Python<'_>, path: std::path::PathBuf) -> PyResult<Self> {
        Ok(PyVerifier(Arc::new(without_gil(py, || semantic::Verifier::load(&path)).map_err(to_py_err)?)))
    }

    /// Writes it atomically; returns the bytes written.
    fn save(&self, py: Python<'_>, path: std::path::PathBuf) -> PyResult<u64> {
        without_gil(py, || self.0.save(&path)).map_err(to_py_err)
    }

    /// Scores of feature rows (float32 bytes, n × features).
    fn score_features(&self, py: Python<'_>, x: &[u8]) -> PyResult<Vec<f32>> {
        let n = semantic::verifier::n_features(self.0.dim as usize);
        let x = f32_rows(x);
        if x.len() % n != 0 {
            return Err(invalid("features", format!("rows of {n} float32 expected")));
        }
        Ok(without_gil(py, || x.chunks_exact(n).map(|r| self.0.score_features(r)).collect()))
    }

    #[getter]
    fn embedder(&self) -> &str {
        &self.0.embedder
    }
    #[getter]
    fn dim(&self) -> u32 {
        self.0.dim
    }
    #[getter]
    fn threshold(&self) -> f32 {
        self.0.threshold
    }
    #[getter]
    fn report(&self) -> &str {
        &self.0.report
    }
}

/// A cross-encoder pair verifier (`routerx train-verifier --cross-encoder`).
#[pyclass(frozen, name = "CrossEncoder", module = "routerx._core")]
struct PyCrossEncoder(Arc<CrossEncoder>);

#[pymethods]
impl PyCrossEncoder {
    /// Reads a cross-encoder file; a missing, truncated or corrupt one raises SnapshotError naming it.
    #[staticmethod]
    fn load(py: Python<'_>, path: std::path::PathBuf) -> PyResult<Self> {
        Ok(PyCrossEncoder(Arc::new(without_gil(py, || CrossEncoder::load(&path)).map_err(to_py_err)?)))
    }

    /// Duplicate probability of each (a[i], b[i]) pair, in one batch, without the GIL;
    /// `cosines[i]` is the pair's cosine under `calibration_embedder` (needed when the
    /// calibration weighs it).
    #[pyo3(signature = (a, b, cosines=None))]
    fn score(&self, py: Python<'_>, a: Vec<String>, b: Vec<String>, cosines: Option<Vec<f32>>) -> PyResult<Vec<f32>> {
        let pairs = text_pairs(&a, &b)?;
        without_gil(py, || self.0.score(&pairs, cosines.as_deref())).map_err(to_py_err)
    }

    /// The network's logit of each pair, before calibration.
    fn logits(&self, py: Python<'_>, a: Vec<String>, b: Vec<String>) -> PyResult<Vec<f32>> {
        let pairs = text_pairs(&a, &b)?;
        without_gil(py, || self.0.logits(&pairs)).map_err(to_py_err)
    }

    /// `(logit weight, cosine weight, bias)`: score = sigmoid(logit·w + cosine·v + bias).
    #[getter]
    fn calibration(&self) -> (f32, f32, f32) {
        let c = &self.0.calibration;
        (c.logit, c.cosine, c.bias)
    }
    /// The embedder whose cosines the calibration weighs ("" when it weighs none).
    #[getter]
    fn calibration_embedder(&self) -> &str {
        &self.0.calibration.embedder
    }

    #[getter]
    fn threshold(&self) -> f32 {
        self.0.threshold
    }
    /// Score at or above which a difference in names alone is overruled (None: never).
    #[getter]
    fn name_threshold(&self) -> Option<f32> {
        self.0.name_threshold
    }
    #[getter]
    fn max_tokens(&self) -> usize {
        self.0.max_tokens
    }
    #[getter]
    fn base(&self) -> &str {
        &self.0.base
    }
    #[getter]
    fn report(&self) -> &str {
        &self.0.report
    }
}

/// (a[i], b[i]) pairs, borrowed; a length mismatch is an error naming both counts.
fn text_pairs<'a>(a: &'a [String], b: &'a [String]) -> PyResult<Vec<(&'a str, &'a str)>> {
    if a.len() != b.len() {
        return Err(invalid("pairs", format!("{} first texts and {} second texts", a.len(), b.len())));
    }
    Ok(a.iter().map(String::as_str).zip(b.iter().map(String::as_str)).collect())
}

/// The project's near-miss pairs (each one a request whose answer the other must not get).
#[pyfunction]
fn near_misses() -> Vec<(&'static str, &'static str)> {
    semantic::guard::NEAR_MISSES.to_vec()
}

/// Why the semantic cache's near-miss guard refuses to serve `b`'s answer for `a` (None: it would).
#[pyfunction]
fn guard_check(a: &str, b: &str) -> Option<String> {
    semantic::guard::compatible(a, b).err().map(|m| m.to_string())
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCore>()?;
    m.add_class::<PyDecision>()?;
    m.add_class::<PyConstraints>()?;
    m.add_class::<PyEmbedder>()?;
    m.add_class::<PySemantic>()?;
    m.add_class::<PyVerifier>()?;
    m.add_class::<PyCrossEncoder>()?;
    m.add_class::<PyQualityModel>()?;
    m.add_function(wrap_pyfunction!(verifier_features, m)?)?;
    m.add_function(wrap_pyfunction!(near_misses, m)?)?;
    m.add_function(wrap_pyfunction!(categories, m)?)?;
    m.add_function(wrap_pyfunction!(guard_check, m)?)?;
    m.add_function(wrap_pyfunction!(default_classifier_json, m)?)?;
    m.add_function(wrap_pyfunction!(round_usd, m)?)?;
    m.add_function(wrap_pyfunction!(latency_buckets_ms, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
