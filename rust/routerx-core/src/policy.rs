//! Evaluation of the policy table: which (model, tier) answers a classified request.
//!
//! The Python policy layer owns the catalog and its rules and compiles them into a
//! [`PolicyTable`]; this module is the per-request arithmetic over that table, so a route is one
//! call into the core rather than a Python loop over every candidate.
//!
//! Rule: among candidates that are allowed, fit the context window, reach the required quality
//! for the task category, and fit the latency and cost budgets, take the cheapest; on equal cost
//! the fastest. Fallbacks are the next-best feasible candidates on other models. When nothing
//! fits, the best-effort choice is the candidate closest to the required quality, then to the latency and cost budgets.

use crate::classifier::{Category, N_CATEGORIES};
use crate::error::{Error, Result};
use crate::request::Constraints;

#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    pub name: String,
    pub provider: String,
    pub context_window: u32,
    pub quality: [f32; N_CATEGORIES],
}

/// One (model, tier) with its per-token prices and speed.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub model: u32,
    pub tier: String,
    /// USD per input token.
    pub price_in: f64,
    /// USD per output token.
    pub price_out: f64,
    pub ttft_ms: f64,
    pub prefill_tps: f64,
    pub decode_tps: f64,
}

impl Candidate {
    pub fn cost(&self, input_tokens: u32, output_tokens: u32) -> f64 {
        input_tokens as f64 * self.price_in + output_tokens as f64 * self.price_out
    }
    pub fn latency_ms(&self, input_tokens: u32, output_tokens: u32) -> f64 {
        self.ttft_ms + 1000.0 * input_tokens as f64 / self.prefill_tps + 1000.0 * output_tokens as f64 / self.decode_tps
    }
}

/// Compiled catalog plus the policy's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyTable {
    pub models: Vec<ModelInfo>,
    pub candidates: Vec<Candidate>,
    /// Required quality = floor + span × complexity, unless the caller gives `min_quality`.
    pub quality_floor: f32,
    pub quality_span: f32,
    pub max_fallbacks: usize,
    /// The model index treated as "the strongest": the baseline for savings figures.
    pub reference_model: u32,
}

/// Bits of [`Choice::violations`].
pub mod violation {
    pub const QUALITY: u8 = 1;
    pub const LATENCY: u8 = 2;
    pub const COST: u8 = 4;
    pub const CONTEXT: u8 = 8;
    pub const NAMES: [(u8, &str); 4] = [(QUALITY, "quality"), (LATENCY, "latency"), (COST, "cost"), (CONTEXT, "context")];
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored {
    pub candidate: u32,
    pub cost_usd: f64,
    pub latency_ms: f64,
    pub quality: f32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    pub chosen: Scored,
    pub fallbacks: Vec<Scored>,
    pub required_quality: f32,
    /// Feasible candidates considered (before picking).
    pub feasible: u32,
    /// Which constraints the chosen candidate breaks (0 when it fits).
    pub violations: u8,
    /// Set when the pick maximised `wtp × quality − cost` (the caller's willingness to pay).
    pub willingness_to_pay: Option<f64>,
    /// Whether per-request predicted qualities (the learned router) replaced the catalog's.
    pub predicted: bool,
}

impl Choice {
    pub fn within_budget(&self) -> bool {
        self.violations == 0
    }
}

impl PolicyTable {
    /// Checks what the Python layer cannot express wrongly by accident but a hand-built table could.
    pub fn validate(&self) -> Result<()> {
        if self.candidates.is_empty() {
            return Err(Error::config("policy", "the catalog has no (model, tier) candidates"));
        }
        for (i, c) in self.candidates.iter().enumerate() {
            if c.model as usize >= self.models.len() {
                return Err(Error::config("policy", format!("candidate {i} names model index {}", c.model)));
            }
            let ok = |v: f64| v.is_finite() && v >= 0.0;
            if !(ok(c.price_in) && ok(c.price_out) && ok(c.ttft_ms) && c.prefill_tps > 0.0 && c.decode_tps > 0.0) {
                return Err(Error::config("policy", format!("candidate {i} ({}) has a negative or non-finite price or speed", c.tier)));
            }
        }
        if self.reference_model as usize >= self.models.len() {
            return Err(Error::config("policy", "reference model index out of range"));
        }
        Ok(())
    }

    pub fn model_index(&self, name: &str) -> Option<u32> {
        self.models.iter().position(|m| m.name == name).map(|i| i as u32)
    }

    pub fn required_quality(&self, complexity: f32, c: &Constraints) -> f32 {
        match c.min_quality {
            Some(q) => q as f32,
            None => (self.quality_floor + self.quality_span * complexity).min(1.0),
        }
    }

    pub fn choose(&self, category: Category, complexity: f32, input_tokens: u32, output_tokens: u32, c: &Constraints) -> Result<Choice> {
        self.choose_with(category, complexity, input_tokens, output_tokens, c, None, c.willingness_to_pay)
    }

    /// As [`PolicyTable::choose`], with `predicted` quality per model (index = model; None keeps
    /// the catalog's) and an optional willingness to pay. With `wtp`, quality is a constraint
    /// only when the caller gives `min_quality`; among fitting candidates the most expected
    /// value `wtp × quality − cost` wins (then the cheaper, then the faster).
    #[allow(clippy::too_many_arguments)]
    pub fn choose_with(
        &self,
        category: Category,
        complexity: f32,
        input_tokens: u32,
        output_tokens: u32,
        c: &Constraints,
        predicted: Option<&[Option<f32>]>,
        wtp: Option<f64>,
    ) -> Result<Choice> {
        let required = match wtp {
            Some(_) => c.min_quality.unwrap_or(0.0) as f32,
            None => self.required_quality(complexity, c),
        };
        let ci = category.index();
        // (scored, violations, relative violation) for every allowed candidate.
        let mut scored: Vec<(Scored, u8, f64)> = Vec::with_capacity(self.candidates.len());
        for (i, cand) in self.candidates.iter().enumerate() {
            if let Some(allowed) = &c.allowed_models {
                if allowed.binary_search(&cand.model).is_err() {
                    continue;
                }
            }
            let m = &self.models[cand.model as usize];
            let s = Scored {
                candidate: i as u32,
                cost_usd: cand.cost(input_tokens, output_tokens),
                latency_ms: cand.latency_ms(input_tokens, output_tokens),
                quality: predicted.and_then(|p| p.get(cand.model as usize).copied().flatten()).unwrap_or(m.quality[ci]),
            };
            let mut v = 0u8;
            let mut excess = 0.0;
            if (input_tokens as u64 + output_tokens as u64) > m.context_window as u64 {
                v |= violation::CONTEXT;
                excess += 1e6;
            }
            if s.quality < required {
                v |= violation::QUALITY;
            }
            if s.latency_ms > c.latency_budget_ms {
                v |= violation::LATENCY;
                excess += (s.latency_ms - c.latency_budget_ms) / c.latency_budget_ms;
            }
            if s.cost_usd > c.max_cost_usd {
                v |= violation::COST;
                excess += (s.cost_usd - c.max_cost_usd) / c.max_cost_usd;
            }
            scored.push((s, v, excess));
        }
        let by_cost = |a: &Scored, b: &Scored| {
            a.cost_usd.total_cmp(&b.cost_usd).then(a.latency_ms.total_cmp(&b.latency_ms)).then(a.candidate.cmp(&b.candidate))
        };
        let feasible = scored.iter().filter(|s| s.1 == 0).count() as u32;
        let value = |s: &Scored| wtp.unwrap_or(0.0) * s.quality as f64 - s.cost_usd;
        let pick = if feasible > 0 && wtp.is_some() {
            scored.iter().filter(|s| s.1 == 0).min_by(|a, b| value(&b.0).total_cmp(&value(&a.0)).then(by_cost(&a.0, &b.0)))
        } else if feasible > 0 {
            scored.iter().filter(|s| s.1 == 0).min_by(|a, b| by_cost(&a.0, &b.0))
        } else {
            // Best effort keeps quality first (a cheap wrong answer is no saving), then comes as
            // close as it can to the latency and cost budgets.
            let shortfall = |s: &Scored| (required - s.quality).max(0.0);
            scored
                .iter()
                .filter(|s| s.1 & violation::CONTEXT == 0)
                .min_by(|a, b| shortfall(&a.0).total_cmp(&shortfall(&b.0)).then(a.2.total_cmp(&b.2)).then(by_cost(&a.0, &b.0)))
        };
        let Some(&(chosen, violations, _)) = pick else {
            return Err(Error::NoRoute {
                reason: format!(
                    "the request needs {} tokens, more than the context window of every allowed model",
                    input_tokens as u64 + output_tokens as u64
                ),
            });
        };
        if violations != 0 && c.strict {
            return Err(Error::NoRoute { reason: self.explain_infeasible(violations, required, category, c) });
        }
        // Fallbacks: other models that fit (or, best effort, that fit the context), cheapest first,
        // one per model so that a provider outage does not take out every fallback at once.
        let mut rest: Vec<&(Scored, u8, f64)> = scored
            .iter()
            .filter(|s| {
                let m = self.candidates[s.0.candidate as usize].model;
                m != self.candidates[chosen.candidate as usize].model && (s.1 == 0 || (violations != 0 && s.1 & violation::CONTEXT == 0))
            })
            .collect();
        rest.sort_by(|a, b| a.1.cmp(&b.1).then(by_cost(&a.0, &b.0)));
        let mut fallbacks: Vec<Scored> = Vec::with_capacity(self.max_fallbacks);
        for s in rest {
            if fallbacks.len() == self.max_fallbacks {
                break;
            }
            let m = self.candidates[s.0.candidate as usize].model;
            if fallbacks.iter().all(|f| self.candidates[f.candidate as usize].model != m) {
                fallbacks.push(s.0);
            }
        }
        Ok(Choice {
            chosen,
            fallbacks,
            required_quality: required,
            feasible,
            violations,
            willingness_to_pay: wtp,
            predicted: predicted.is_some(),
        })
    }

    fn explain_infeasible(&self, violations: u8, required: f32, category: Category, c: &Constraints) -> String {
        let mut parts = Vec::new();
        if violations & violation::QUALITY != 0 {
            parts.push(format!("quality ≥ {required:.2} for {}", category.name()));
        }
        if violations & violation::LATENCY != 0 {
            parts.push(format!("latency ≤ {} ms", c.latency_budget_ms));
        }
        if violations & violation::COST != 0 {
            parts.push(format!("cost ≤ ${}", c.max_cost_usd));
        }
        format!("no allowed (model, tier) meets {} at once", parts.join(" and "))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn table() -> PolicyTable {
        let q = |v: f32| [v; N_CATEGORIES];
        let models = vec![
            ModelInfo { name: "small".into(), provider: "p1".into(), context_window: 8_000, quality: q(0.5) },
            ModelInfo { name: "mid".into(), provider: "p2".into(), context_window: 128_000, quality: q(0.75) },
            ModelInfo { name: "big".into(), provider: "p3".into(), context_window: 200_000, quality: q(0.95) },
        ];
        let cand = |model: u32, tier: &str, pin: f64, pout: f64, ttft: f64, decode: f64| Candidate {
            model,
            tier: tier.into(),
            price_in: pin / 1e6,
            price_out: pout / 1e6,
            ttft_ms: ttft,
            prefill_tps: 5000.0,
            decode_tps: decode,
        };
        PolicyTable {
            models,
            candidates: vec![
                cand(0, "gpu-standard", 0.1, 0.1, 200.0, 150.0),
                cand(1, "gpu-standard", 0.5, 1.5, 300.0, 80.0),
                cand(1, "lpu-premium", 0.8, 2.0, 150.0, 800.0),
                cand(2, "gpu-standard", 3.0, 15.0, 500.0, 60.0),
                cand(2, "batch", 1.5, 7.5, 3_600_000.0, 60.0),
            ],
            quality_floor: 0.4,
            quality_span: 0.55,
            max_fallbacks: 3,
            reference_model: 2,
        }
    }

    #[test]
    fn cheapest_that_meets_quality() {
        let t = table();
        let c = Constraints::default();
        // Easy: the small model is enough.
        let ch = t.choose(Category::Chat, 0.1, 100, 100, &c).unwrap();
        assert_eq!(ch.chosen.candidate, 0);
        assert!(ch.within_budget());
        // Hard: only the big model's quality is enough; batch is cheapest with no latency budget.
        let ch = t.choose(Category::Code, 0.95, 100, 100, &c).unwrap();
        assert_eq!(ch.chosen.candidate, 4);
        // A latency budget rules out batch.
        let c = Constraints { latency_budget_ms: 10_000.0, ..Default::default() };
        let ch = t.choose(Category::Code, 0.95, 100, 100, &c).unwrap();
        assert_eq!(ch.chosen.candidate, 3);
    }

    #[test]
    fn latency_budget_picks_the_fast_tier() {
        let t = table();
        let c = Constraints { latency_budget_ms: 1_500.0, min_quality: Some(0.7), ..Default::default() };
        let ch = t.choose(Category::Chat, 0.5, 200, 400, &c).unwrap();
        assert_eq!(t.candidates[ch.chosen.candidate as usize].tier, "lpu-premium");
        let expect = t.candidates[2].latency_ms(200, 400);
        assert!((ch.chosen.latency_ms - expect).abs() < 1e-9 && expect < 1_500.0);
    }

    #[test]
    fn fallbacks_are_other_models_in_cost_order() {
        let t = table();
        let ch = t.choose(Category::Chat, 0.0, 100, 100, &Constraints::default()).unwrap();
        let models: Vec<u32> = ch.fallbacks.iter().map(|f| t.candidates[f.candidate as usize].model).collect();
        assert_eq!(models, vec![1, 2]);
        assert!(ch.fallbacks.windows(2).all(|w| w[0].cost_usd <= w[1].cost_usd));
    }

    #[test]
    fn best_effort_and_strict() {
        let t = table();
        let c = Constraints { latency_budget_ms: 50.0, ..Default::default() };
        let ch = t.choose(Category::Chat, 0.1, 100, 100, &c).unwrap();
        assert!(!ch.within_budget());
        assert_eq!(ch.violations, violation::LATENCY);
        assert_eq!(ch.chosen.candidate, 2, "the fastest is closest to the budget");
        let strict = Constraints { strict: true, ..c };
        let e = t.choose(Category::Chat, 0.1, 100, 100, &strict).unwrap_err();
        assert!(e.to_string().contains("latency ≤ 50 ms"), "{e}");
    }

    #[test]
    fn allowed_models_and_context() {
        let t = table();
        let c = Constraints { allowed_models: Some(vec![1]), ..Default::default() };
        let ch = t.choose(Category::Chat, 0.0, 100, 100, &c).unwrap();
        assert_eq!(t.candidates[ch.chosen.candidate as usize].model, 1);
        assert!(ch.fallbacks.is_empty());
        // Too long for the small model: skip it even though it is cheapest.
        let ch = t.choose(Category::Chat, 0.0, 9_000, 100, &Constraints::default()).unwrap();
        assert_eq!(t.candidates[ch.chosen.candidate as usize].model, 1);
        let e = t.choose(Category::Chat, 0.0, 300_000, 100, &Constraints::default()).unwrap_err();
        assert!(matches!(e, Error::NoRoute { .. }));
    }
}
