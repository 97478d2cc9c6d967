//! The learned router's quality predictor: per request, the probability that each model answers well.
//!
//! A trained artefact (JSON, format [`FORMAT`], version [`VERSION`], written by `routerx train`)
//! holds one logistic regression per model over the prompt's sentence embedding:
//! p̂_m = σ(w_m · e + b_m + offset_m), where e embeds the last `tail_chars` characters of the last
//! user turn. The core evaluates it between classification and the policy table; the
//! predictions replace the catalog's per-category quality for the models the artefact knows.
//!
//! Version 2 adds per-group offsets: `groups` maps a label (the request's `step`, e.g. "plan" or
//! "extract" in an agent's workflow) to one logit per model, learned with the weights from a
//! group column of the training data. Steps of a workflow differ in difficulty in ways their
//! prompts' embeddings do not show; a request without a step, or with one the artefact never saw,
//! gets no group offset.
//!
//! `offset_m` is online feedback, in logit units, bounded by `max_offset`: labels recorded by a
//! tenant correct that tenant's predictions only. Tenants without enough labels of their own
//! get the median correction across the tenants that have enough, so a flood of labels from one
//! tenant moves everyone else's routing by at most one rank of that median.

use std::collections::HashMap;
use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::RwLock;
use serde::Deserialize;

use crate::error::{Error, Result};

pub const FORMAT: &str = "routerx-quality";
/// Labels between refreshes of the cross-tenant median, per qualified tenant and model.
const SHARED_REFRESH: u32 = 16;
/// Newest artefact version this core reads (1: no groups; 2: with `groups`).
pub const VERSION: u32 = 2;

#[derive(Deserialize)]
struct FileModel {
    name: String,
    bias: f32,
    weights: Vec<f32>,
}

#[derive(Deserialize)]
struct File {
    format: String,
    version: u32,
    embedder: String,
    embedder_id: String,
    dim: usize,
    tail_chars: usize,
    models: Vec<FileModel>,
    /// Version 2: group label → logit offset per model (in `models` order).
    #[serde(default)]
    groups: HashMap<String, Vec<f32>>,
}

/// A loaded artefact: weights row-major (models × dim).
#[derive(Clone, Debug, PartialEq)]
pub struct QualityModel {
    pub embedder: String,
    pub embedder_id: String,
    pub dim: usize,
    pub tail_chars: usize,
    pub names: Vec<String>,
    weights: Vec<f32>,
    bias: Vec<f32>,
    groups: HashMap<String, Vec<f32>>,
}

impl QualityModel {
    /// Parses and checks an artefact; `source` names it in errors.
    pub fn from_json(text: &str, source: &str) -> Result<QualityModel> {
        let bad = |m: String| Error::config(source, m);
        let probe: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(format!("not a routerx quality model: {e}")))?;
        match probe.get("format").and_then(|f| f.as_str()) {
            Some(FORMAT) => {}
            other => return Err(bad(format!("format is {other:?}, expected {FORMAT:?}"))),
        }
        match probe.get("version").and_then(|v| v.as_u64()) {
            Some(v) if (1..=VERSION as u64).contains(&v) => {}
            other => return Err(bad(format!("version {other:?} is not supported (this routerx reads versions 1 to {VERSION})"))),
        }
        let f: File = serde_json::from_value(probe).map_err(|e| bad(format!("malformed quality model: {e}")))?;
        debug_assert!(f.format == FORMAT && (1..=VERSION).contains(&f.version));
        if f.version < 2 && !f.groups.is_empty() {
            return Err(bad("groups need version 2".into()));
        }
        for (g, off) in &f.groups {
            if off.len() != f.models.len() {
                return Err(bad(format!("group {g:?}: {} offsets for {} models", off.len(), f.models.len())));
            }
            if off.iter().any(|o| !o.is_finite()) {
                return Err(bad(format!("group {g:?}: non-finite offset")));
            }
        }
        if f.dim == 0 || f.dim > 16_384 {
            return Err(bad(format!("dim {} is out of range", f.dim)));
        }
        if f.tail_chars == 0 {
            return Err(bad("tail_chars must be > 0".into()));
        }
        if f.models.is_empty() {
            return Err(bad("no models".into()));
        }
        let mut names = Vec::with_capacity(f.models.len());
        let mut weights = Vec::with_capacity(f.models.len() * f.dim);
        let mut bias = Vec::with_capacity(f.models.len());
        for m in f.models {
            if m.weights.len() != f.dim {
                return Err(bad(format!("model {:?}: {} weights for dim {}", m.name, m.weights.len(), f.dim)));
            }
            if !m.bias.is_finite() || m.weights.iter().any(|w| !w.is_finite()) {
                return Err(bad(format!("model {:?}: non-finite weight", m.name)));
            }
            if names.contains(&m.name) {
                return Err(bad(format!("model {:?} appears twice", m.name)));
            }
            names.push(m.name);
            weights.extend_from_slice(&m.weights);
            bias.push(m.bias);
        }
        Ok(QualityModel {
            embedder: f.embedder,
            embedder_id: f.embedder_id,
            dim: f.dim,
            tail_chars: f.tail_chars,
            names,
            weights,
            bias,
            groups: f.groups,
        })
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The part of a prompt the artefact was trained on: its last `tail_chars` characters.
    pub fn tail<'a>(&self, text: &'a str) -> &'a str {
        match text.char_indices().rev().nth(self.tail_chars.saturating_sub(1)) {
            Some((i, _)) if i > 0 => &text[i..],
            _ => text,
        }
    }

    /// The group labels the artefact has offsets for.
    pub fn groups(&self) -> impl Iterator<Item = &str> {
        self.groups.keys().map(String::as_str)
    }

    /// Logits w·e + b (+ the offsets of `group`, if the artefact has it) for every model into
    /// `out` (len = models).
    pub fn logits_into(&self, e: &[f32], group: &str, out: &mut [f32]) {
        assert_eq!(e.len(), self.dim, "embedding width");
        let offsets = if self.groups.is_empty() || group.is_empty() { None } else { self.groups.get(group) };
        for (j, o) in out.iter_mut().enumerate().take(self.len()) {
            let w = &self.weights[j * self.dim..(j + 1) * self.dim];
            // Four partial sums: lets the compiler vectorise without fast-math.
            let mut acc = [0f32; 4];
            let (wc, wr) = w.split_at(w.len() & !3);
            let (ec, er) = e.split_at(wc.len());
            for (a, b) in wc.chunks_exact(4).zip(ec.chunks_exact(4)) {
                for k in 0..4 {
                    acc[k] += a[k] * b[k];
                }
            }
            let tail: f32 = wr.iter().zip(er).map(|(a, b)| a * b).sum();
            *o = acc[0] + acc[1] + acc[2] + acc[3] + tail + self.bias[j] + offsets.map_or(0.0, |g| g[j]);
        }
    }

    /// σ(logits): per-model probabilities.
    pub fn predict(&self, e: &[f32], group: &str) -> Vec<f32> {
        let mut out = vec![0f32; self.len()];
        self.logits_into(e, group, &mut out);
        out.iter_mut().for_each(|z| *z = sigmoid(*z));
        out
    }
}

pub fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// Embeds one text for the predictor (the binding supplies the artefact's embedder).
pub type EmbedFn = Arc<dyn Fn(&str) -> Result<Vec<f32>> + Send + Sync>;

/// Online-feedback settings.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedbackConfig {
    /// Largest correction, in logit units (1.0 moves p̂ = 0.5 to 0.73 at most).
    pub max_offset: f32,
    /// Pseudo-labels at zero correction: a tenant's first labels move its correction slowly.
    pub prior_labels: f32,
    /// Labels a tenant needs (per model) before its own correction applies and it counts in the
    /// cross-tenant median.
    pub min_labels: u32,
    /// Tenants tracked at most; labels from further tenants are counted but not learned from.
    pub max_tenants: usize,
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        FeedbackConfig { max_offset: 1.0, prior_labels: 20.0, min_labels: 20, max_tenants: 10_000 }
    }
}

#[derive(Clone, Debug, Default)]
struct TenantLabels {
    /// Per artefact model: labels seen and the sum of (label − raw p̂).
    n: Vec<u32>,
    residual: Vec<f64>,
}

impl TenantLabels {
    fn offset(&self, j: usize, cfg: &FeedbackConfig) -> f32 {
        // A residual in probability is ~4× that in logits near p = 0.5 (σ' = 1/4 there).
        let shrunk = self.residual[j] / (self.n[j] as f64 + cfg.prior_labels as f64);
        (4.0 * shrunk as f32).clamp(-cfg.max_offset, cfg.max_offset)
    }
}

/// Result of [`QualityRouter::predict`]: p̂ per catalog model (None where the artefact has no such
/// model) and the raw p̂ before feedback, for recording labels against.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    pub quality: Vec<Option<f32>>,
    pub raw: Vec<Option<f32>>,
}

/// Labels recorded so far.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FeedbackStats {
    pub labels: u64,
    pub ignored: u64,
    pub tenants: usize,
    /// Requests routed on the catalog's quality because the prediction failed (the embedder).
    pub fallbacks: u64,
    /// Cross-tenant median correction per artefact model (logits).
    pub shared_offset: Vec<(String, f32)>,
}

/// The predictor as the core uses it: artefact, embedder, catalog mapping and feedback.
pub struct QualityRouter {
    pub model: QualityModel,
    /// Default willingness to pay (USD per unit quality) for requests that give none; None keeps
    /// the required-quality rule.
    pub willingness_to_pay: Option<f64>,
    embed: EmbedFn,
    /// Catalog model index → artefact model index.
    map: Vec<Option<usize>>,
    catalog: Vec<String>,
    cfg: FeedbackConfig,
    tenants: DashMap<Arc<str>, TenantLabels>,
    shared: RwLock<Vec<f32>>,
    labels: std::sync::atomic::AtomicU64,
    ignored: std::sync::atomic::AtomicU64,
    fallbacks: std::sync::atomic::AtomicU64,
    /// Tenants in `tenants`, counted on insertion (the map's `len` would lock every shard).
    tenant_count: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for QualityRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QualityRouter").field("models", &self.model.names).field("map", &self.map).finish()
    }
}

impl QualityRouter {
    /// `catalog`: the policy table's model names in order; `aliases`: catalog name → artefact
    /// name where they differ. At least one catalog model must be covered.
    pub fn new(
        model: QualityModel,
        embed: EmbedFn,
        catalog: &[String],
        aliases: &HashMap<String, String>,
        cfg: FeedbackConfig,
    ) -> Result<QualityRouter> {
        for (cat, art) in aliases {
            if !catalog.contains(cat) {
                return Err(Error::config("quality.models", format!("{cat:?} is not a catalog model")));
            }
            if !model.names.contains(art) {
                return Err(Error::config(
                    "quality.models",
                    format!("{art:?} is not a model of the quality artefact (it has {})", model.names.join(", ")),
                ));
            }
        }
        let map: Vec<Option<usize>> = catalog
            .iter()
            .map(|c| {
                let name = aliases.get(c).unwrap_or(c);
                model.names.iter().position(|n| n == name)
            })
            .collect();
        if map.iter().all(|m| m.is_none()) {
            return Err(Error::config(
                "quality.models",
                format!("the quality artefact's models ({}) match no catalog model: map them with [quality.models] catalog-name = \"artefact-name\"", model.names.join(", ")),
            ));
        }
        if !(cfg.max_offset.is_finite() && cfg.max_offset >= 0.0 && cfg.prior_labels.is_finite() && cfg.prior_labels >= 0.0) {
            return Err(Error::config("quality.feedback", "max_offset and prior_labels must be finite numbers ≥ 0"));
        }
        let m = model.len();
        Ok(QualityRouter {
            model,
            willingness_to_pay: None,
            embed,
            map,
            catalog: catalog.to_vec(),
            cfg,
            tenants: DashMap::new(),
            shared: RwLock::new(vec![0.0; m]),
            labels: Default::default(),
            ignored: Default::default(),
            fallbacks: Default::default(),
            tenant_count: Default::default(),
        })
    }

    /// The catalog the mapping was built for; a different policy needs a new router.
    pub fn catalog(&self) -> &[String] {
        &self.catalog
    }

    /// Catalog index → artefact model name, where mapped.
    pub fn mapped(&self, catalog_index: usize) -> Option<&str> {
        self.map.get(catalog_index).copied().flatten().map(|j| self.model.names[j].as_str())
    }

    /// p̂ per catalog model for `text` (the last user turn) in workflow step `step` ("" for none)
    /// as `tenant` sees it.
    pub fn predict(&self, text: &str, step: &str, tenant: &str) -> Result<Prediction> {
        self.predict_tail(self.model.tail(text), step, tenant)
    }

    /// As [`QualityRouter::predict`], for text already cut with [`QualityModel::tail`].
    pub fn predict_tail(&self, tail: &str, step: &str, tenant: &str) -> Result<Prediction> {
        let e = (self.embed)(tail)?;
        if e.len() != self.model.dim {
            return Err(Error::config(
                "quality",
                format!("the embedder gives {} dimensions, the artefact expects {}", e.len(), self.model.dim),
            ));
        }
        Ok(self.predict_vector(&e, step, tenant))
    }

    /// Counts a request the core routed on the catalog's quality because
    /// [`QualityRouter::predict_tail`] failed.
    pub fn note_fallback(&self) {
        self.fallbacks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// As [`QualityRouter::predict`], for an embedding computed by the caller.
    pub fn predict_vector(&self, e: &[f32], step: &str, tenant: &str) -> Prediction {
        let mut z = vec![0f32; self.model.len()];
        self.model.logits_into(e, step, &mut z);
        let own = self.tenants.get(tenant);
        let shared = self.shared.read();
        let mut quality = Vec::with_capacity(self.map.len());
        let mut raw = Vec::with_capacity(self.map.len());
        for m in &self.map {
            match *m {
                None => {
                    quality.push(None);
                    raw.push(None);
                }
                Some(j) => {
                    let off = match &own {
                        Some(t) if t.n[j] >= self.cfg.min_labels => t.offset(j, &self.cfg),
                        _ => shared[j],
                    };
                    raw.push(Some(sigmoid(z[j])));
                    quality.push(Some(sigmoid(z[j] + off)));
                }
            }
        }
        Prediction { quality, raw }
    }

    /// A label in [0, 1] for catalog model `catalog_index`'s answer, whose raw p̂ was `raw`.
    /// Returns false when not learned from (unmapped model, invalid label, tenant table full).
    pub fn feedback(&self, tenant: &str, catalog_index: usize, raw: f32, label: f32) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(j) = self.map.get(catalog_index).copied().flatten() else {
            self.ignored.fetch_add(1, Relaxed);
            return false;
        };
        if !(label.is_finite() && (0.0..=1.0).contains(&label) && raw.is_finite()) {
            self.ignored.fetch_add(1, Relaxed);
            return false;
        }
        let m = self.model.len();
        let crossed = {
            let mut t = match self.tenants.get_mut(tenant) {
                Some(t) => t,
                None => match self.tenants.entry(Arc::from(tenant)) {
                    dashmap::Entry::Occupied(o) => o.into_ref(),
                    // The shard's write lock is held here, so a slot is reserved exactly once per
                    // new tenant; threads racing on different new tenants cannot overshoot the cap.
                    dashmap::Entry::Vacant(v) => {
                        if self.tenant_count.fetch_add(1, Relaxed) >= self.cfg.max_tenants {
                            self.tenant_count.fetch_sub(1, Relaxed);
                            self.ignored.fetch_add(1, Relaxed);
                            return false;
                        }
                        v.insert(TenantLabels { n: vec![0; m], residual: vec![0.0; m] })
                    }
                },
            };
            t.n[j] = t.n[j].saturating_add(1);
            t.residual[j] += (label - raw) as f64;
            // The cross-tenant median costs a pass over every tenant: refresh it when a tenant
            // qualifies and then every SHARED_REFRESH of its labels, not on each label (a flood
            // from one tenant would otherwise make every label O(tenants)).
            t.n[j] >= self.cfg.min_labels && (t.n[j] == self.cfg.min_labels || t.n[j] % SHARED_REFRESH == 0)
        };
        self.labels.fetch_add(1, Relaxed);
        if crossed {
            self.update_shared(j);
        }
        true
    }

    fn update_shared(&self, j: usize) {
        let mut offs: Vec<f32> = self.tenants.iter().filter(|t| t.n[j] >= self.cfg.min_labels).map(|t| t.offset(j, &self.cfg)).collect();
        let med = if offs.is_empty() {
            0.0
        } else {
            offs.sort_by(f32::total_cmp);
            let k = offs.len();
            if k % 2 == 1 {
                offs[k / 2]
            } else {
                0.5 * (offs[k / 2 - 1] + offs[k / 2])
            }
        };
        self.shared.write()[j] = med;
    }

    /// Re-applies a logged label: (tenant, catalog model name, the text the decision embedded,
    /// its step, label). The raw p̂ is recomputed from the artefact, so replaying a log rebuilds
    /// the state it recorded. Returns whether it was learned from.
    pub fn replay(&self, tenant: &str, model: &str, text: &str, step: &str, label: f32) -> Result<bool> {
        let Some(i) = self.catalog.iter().position(|c| c == model) else { return Ok(false) };
        let p = self.predict(text, step, tenant)?;
        Ok(match p.raw[i] {
            Some(raw) => self.feedback(tenant, i, raw, label),
            None => false,
        })
    }

    pub fn feedback_stats(&self) -> FeedbackStats {
        use std::sync::atomic::Ordering::Relaxed;
        let shared = self.shared.read();
        FeedbackStats {
            labels: self.labels.load(Relaxed),
            ignored: self.ignored.load(Relaxed),
            tenants: self.tenants.len(),
            fallbacks: self.fallbacks.load(Relaxed),
            shared_offset: self.model.names.iter().cloned().zip(shared.iter().copied()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn artefact(dim: usize) -> String {
        // Model "a" likes the first axis, "b" the second.
        let w = |k: usize| (0..dim).map(|i| if i == k { 4.0 } else { 0.0 }).collect::<Vec<f32>>();
        serde_json::json!({
            "format": FORMAT, "version": VERSION, "embedder": "test", "embedder_id": "test@1", "dim": dim, "tail_chars": 8,
            "models": [{"name": "a", "bias": -2.0, "weights": w(0)}, {"name": "b", "bias": -2.0, "weights": w(1)}],
            "groups": {"plan": [1.0, -1.0]}
        })
        .to_string()
    }

    fn axis_embedder() -> EmbedFn {
        // "x…" points along axis 0, anything else along axis 1.
        Arc::new(|t: &str| {
            let mut v = vec![0f32; 4];
            v[if t.starts_with('x') { 0 } else { 1 }] = 1.0;
            Ok(v)
        })
    }

    #[test]
    fn loads_and_predicts() {
        let m = QualityModel::from_json(&artefact(4), "t").unwrap();
        let p = m.predict(&[1.0, 0.0, 0.0, 0.0], "");
        assert!((p[0] - sigmoid(2.0)).abs() < 1e-6 && (p[1] - sigmoid(-2.0)).abs() < 1e-6);
        // Odd widths take the scalar tail.
        let m5 = QualityModel::from_json(&artefact(5), "t").unwrap();
        assert!((m5.predict(&[0.0, 1.0, 0.0, 0.0, 0.0], "")[1] - sigmoid(2.0)).abs() < 1e-6);
    }

    /// Version 2: a step's offsets move its predictions; other steps, no step, and version-1 files
    /// predict as before.
    #[test]
    fn group_offsets_apply_to_their_step_only() {
        let mut v: serde_json::Value = serde_json::from_str(&artefact(4)).unwrap();
        v["version"] = 2.into();
        v["groups"] = serde_json::json!({"plan": [3.0, -1.0], "extract": [0.0, 0.5]});
        let m = QualityModel::from_json(&v.to_string(), "t").unwrap();
        let e = [1.0, 0.0, 0.0, 0.0];
        let plain = m.predict(&e, "");
        assert_eq!(m.predict(&e, "unknown-step"), plain);
        let plan = m.predict(&e, "plan");
        assert!((plan[0] - sigmoid(5.0)).abs() < 1e-6 && (plan[1] - sigmoid(-3.0)).abs() < 1e-6, "{plan:?}");
        let mut g: Vec<&str> = m.groups().collect();
        g.sort();
        assert_eq!(g, ["extract", "plan"]);
        let r = QualityRouter::new(m, axis_embedder(), &["a".into(), "b".into()], &HashMap::new(), FeedbackConfig::default()).unwrap();
        assert!(r.predict("x", "plan", "t").unwrap().quality[0].unwrap() > r.predict("x", "", "t").unwrap().quality[0].unwrap());
        for (groups, version, needle) in [
            (serde_json::json!({"plan": [1.0]}), 2, "1 offsets for 2 models"),
            (serde_json::json!({"plan": [1.0, null]}), 2, "malformed"),
            (serde_json::json!({"plan": [1.0, 2.0]}), 1, "groups need version 2"),
            (serde_json::json!({"plan": [1.0, 1e39]}), 2, "non-finite"),
        ] {
            let mut bad = v.clone();
            bad["groups"] = groups;
            bad["version"] = version.into();
            let e = QualityModel::from_json(&bad.to_string(), "m.json").unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn tail_is_the_last_characters() {
        let m = QualityModel::from_json(&artefact(4), "t").unwrap();
        assert_eq!(m.tail("short"), "short");
        assert_eq!(m.tail("0123456789"), "23456789");
        assert_eq!(m.tail("ééééééééé"), "éééééééé");
        assert_eq!(m.tail(""), "");
    }

    #[test]
    fn rejects_bad_files() {
        for (text, needle) in [
            ("{", "not a routerx quality model"),
            (r#"{"format":"other","version":1}"#, "format"),
            (r#"{"format":"routerx-quality","version":9}"#, "version"),
            (r#"{"format":"routerx-quality","version":1,"dim":4}"#, "malformed"),
        ] {
            let e = QualityModel::from_json(text, "m.json").unwrap_err().to_string();
            assert!(e.starts_with("m.json: ") && e.contains(needle), "{e}");
        }
        let short = artefact(4).replace("[4.0,0.0,0.0,0.0]", "[4.0]");
        assert!(QualityModel::from_json(&short, "m").unwrap_err().to_string().contains("1 weights for dim 4"));
        let dup = artefact(4).replace("\"name\":\"b\"", "\"name\":\"a\"");
        assert!(QualityModel::from_json(&dup, "m").unwrap_err().to_string().contains("twice"));
    }

    fn router(cfg: FeedbackConfig) -> QualityRouter {
        let m = QualityModel::from_json(&artefact(4), "t").unwrap();
        let catalog = vec!["big".to_string(), "a".to_string(), "other".to_string()];
        let aliases = HashMap::from([("big".to_string(), "b".to_string())]);
        QualityRouter::new(m, axis_embedder(), &catalog, &aliases, cfg).unwrap()
    }

    #[test]
    fn maps_catalog_models() {
        let r = router(FeedbackConfig::default());
        let p = r.predict("x marks", "", "t").unwrap();
        assert_eq!(p.quality.len(), 3);
        assert!(p.quality[1].unwrap() > 0.8 && p.quality[0].unwrap() < 0.2 && p.quality[2].is_none());
        let m = QualityModel::from_json(&artefact(4), "t").unwrap();
        let none = QualityRouter::new(m.clone(), axis_embedder(), &["z".into()], &HashMap::new(), FeedbackConfig::default()).unwrap_err();
        assert!(none.to_string().contains("match no catalog model"), "{none}");
        let bad =
            QualityRouter::new(m, axis_embedder(), &["z".into()], &HashMap::from([("z".into(), "nope".into())]), FeedbackConfig::default())
                .unwrap_err();
        assert!(bad.to_string().contains("not a model of the quality artefact"), "{bad}");
    }

    #[test]
    fn feedback_is_bounded_and_per_tenant() {
        let cfg = FeedbackConfig { min_labels: 5, ..Default::default() };
        let r = router(cfg.clone());
        let before = r.predict("x", "", "victim").unwrap().quality[1].unwrap();
        // A flood of thumbs-down from one tenant for model "a".
        for _ in 0..100_000 {
            let raw = r.predict("x", "", "flood").unwrap().raw[1].unwrap();
            assert!(r.feedback("flood", 1, raw, 0.0));
        }
        let flooded = r.predict("x", "", "flood").unwrap();
        let lo = sigmoid(2.0 - cfg.max_offset);
        assert!((flooded.quality[1].unwrap() - lo).abs() < 1e-4, "bounded by max_offset: {flooded:?}");
        // With one tenant past min_labels the shared median is that tenant's: everyone else moves
        // at most max_offset; a second and third tenant with the opposite view outvote it.
        for t in ["t2", "t3"] {
            for _ in 0..50 {
                r.feedback(t, 1, sigmoid(2.0), 1.0);
            }
        }
        let after = r.predict("x", "", "victim").unwrap().quality[1].unwrap();
        assert!(after >= before - 1e-6, "median of (-max, +, +) is positive: {before} → {after}");
        assert!(!r.feedback("t", 2, 0.5, 1.0), "unmapped catalog model");
        assert!(!r.feedback("t", 1, 0.5, f32::NAN) && !r.feedback("t", 1, 0.5, 1.5));
        let s = r.feedback_stats();
        assert_eq!(s.labels, 100_100);
        assert_eq!(s.ignored, 3);
    }

    #[test]
    fn feedback_from_many_threads() {
        let r = Arc::new(router(FeedbackConfig { min_labels: 1, max_tenants: 8, ..Default::default() }));
        std::thread::scope(|s| {
            for t in 0..16 {
                let r = r.clone();
                s.spawn(move || {
                    let tenant = format!("t{t}");
                    for i in 0..2_000 {
                        let step = if i % 4 < 2 { "plan" } else { "" };
                        let p = r.predict(if i % 2 == 0 { "x" } else { "y" }, step, &tenant).unwrap();
                        assert!(p.quality.iter().flatten().all(|q| (0.0..=1.0).contains(q)));
                        r.feedback(&tenant, 1, p.raw[1].unwrap(), (i % 3 == 0) as u8 as f32);
                    }
                });
            }
        });
        let s = r.feedback_stats();
        assert_eq!(s.tenants, 8, "max_tenants caps the table");
        assert_eq!(s.labels + s.ignored, 16 * 2_000);
        assert!(s.shared_offset.iter().all(|(_, o)| o.abs() <= 1.0));
    }
}
