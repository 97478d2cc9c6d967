//! Task category and complexity from request features.
//!
//! The parameters live in a versioned JSON model file (see `models/classifier-v1.json`): lexicons
//! (term lists matched in one Aho-Corasick pass), a linear score per category over named features,
//! a logistic complexity score, and output-length priors. Weights are keyed by feature name, so a
//! trainer can emit the same format and a model file is readable on its own.

use std::collections::BTreeMap;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::features::{Features, LengthHint};
use crate::request::Request;

pub const MODEL_FORMAT: &str = "routerx-classifier";
pub const MODEL_VERSION: u32 = 1;
/// The default model, compiled in so that a fresh install routes without any file.
pub const DEFAULT_MODEL_JSON: &str = include_str!("../models/classifier-v1.json");

/// The fixed task taxonomy. Catalog quality scores and output priors are keyed by these names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Category {
    Chat = 0,
    Extraction,
    Summarization,
    Translation,
    Code,
    Math,
    Reasoning,
    Creative,
    ToolUse,
}

pub const N_CATEGORIES: usize = 9;

impl Category {
    pub const ALL: [Category; N_CATEGORIES] = [
        Category::Chat,
        Category::Extraction,
        Category::Summarization,
        Category::Translation,
        Category::Code,
        Category::Math,
        Category::Reasoning,
        Category::Creative,
        Category::ToolUse,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Category::Chat => "chat",
            Category::Extraction => "extraction",
            Category::Summarization => "summarization",
            Category::Translation => "translation",
            Category::Code => "code",
            Category::Math => "math",
            Category::Reasoning => "reasoning",
            Category::Creative => "creative",
            Category::ToolUse => "tool-use",
        }
    }
    pub fn parse(s: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.name() == s)
    }
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Dense features the model files may weight, by name. `lex:<group>` names are added per lexicon.
pub const BASE_FEATURES: [&str; 13] = [
    "log_tokens",
    "log_last_tokens",
    "turns",
    "has_system",
    "code_blocks",
    "code_density",
    "math_density",
    "numbers",
    "questions",
    "tools",
    "non_latin",
    "requested_words",
    "bias",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelFile {
    format: String,
    version: u32,
    name: String,
    #[serde(default)]
    #[allow(dead_code)]
    description: String,
    lexicons: BTreeMap<String, Vec<String>>,
    categories: BTreeMap<String, LinearSpec>,
    complexity: ComplexitySpec,
    output_tokens: OutputSpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinearSpec {
    #[serde(default)]
    weights: BTreeMap<String, f32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ComplexitySpec {
    weights: BTreeMap<String, f32>,
    #[serde(default)]
    category_offset: BTreeMap<String, f32>,
}

#[derive(Deserialize, Clone, Copy, Debug)]
#[serde(deny_unknown_fields)]
pub struct OutputPrior {
    /// Output tokens expected regardless of input.
    pub base: f32,
    /// Extra output tokens per input token of the last turn (translation ≈ 1).
    #[serde(default)]
    pub per_input_token: f32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputSpec {
    categories: BTreeMap<String, OutputPrior>,
    hint_short: f32,
    hint_long: f32,
    tokens_per_word: f32,
}

/// What the classifier says of one request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Classification {
    pub category: Category,
    /// Softmax probability of `category` among all categories.
    pub confidence: f32,
    /// 0 (trivial) … 1 (needs the strongest model).
    pub complexity: f32,
    pub hint: LengthHint,
    /// Predicted output tokens before any `max_tokens` cap.
    pub output_tokens: u32,
}

pub struct Classifier {
    name: String,
    matcher: AhoCorasick,
    /// Lexicon group of each pattern, and whether it may be followed by more letters (`term*`).
    pattern_group: Vec<(u16, bool)>,
    n_features: usize,
    lex_offset: usize,
    hint_groups: (Option<usize>, Option<usize>),
    category_w: Vec<[f32; N_CATEGORIES]>,
    complexity_w: Vec<f32>,
    complexity_offset: [f32; N_CATEGORIES],
    output: [OutputPrior; N_CATEGORIES],
    hint_tokens: (f32, f32),
    tokens_per_word: f32,
    feature_names: Vec<String>,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Classifier {
    pub fn default_model() -> Classifier {
        Classifier::from_json(DEFAULT_MODEL_JSON, "<embedded classifier-v1.json>").expect("embedded model is valid")
    }

    /// Parses and checks a model file; `source` names it in every error.
    pub fn from_json(text: &str, source: &str) -> Result<Classifier> {
        let m: ModelFile =
            serde_json::from_str(text).map_err(|e| Error::config(source, format!("line {}, column {}: {e}", e.line(), e.column())))?;
        if m.format != MODEL_FORMAT {
            return Err(Error::config(source, format!("format is {:?}, expected {MODEL_FORMAT:?}", m.format)));
        }
        if m.version != MODEL_VERSION {
            return Err(Error::config(
                source,
                format!("version {} is not supported (this build reads version {MODEL_VERSION})", m.version),
            ));
        }
        let mut names: Vec<String> = BASE_FEATURES.iter().map(|s| s.to_string()).collect();
        let lex_offset = names.len();
        let mut patterns = Vec::new();
        let mut pattern_group = Vec::new();
        for (gi, (group, terms)) in m.lexicons.iter().enumerate() {
            names.push(format!("lex:{group}"));
            for t in terms {
                let (term, prefix) = match t.strip_suffix('*') {
                    Some(p) => (p, true),
                    None => (t.as_str(), false),
                };
                if term.trim().is_empty() {
                    return Err(Error::config(source, format!("lexicons.{group}: empty term")));
                }
                patterns.push(term.to_string());
                pattern_group.push((gi as u16, prefix));
            }
        }
        let matcher = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .map_err(|e| Error::config(source, format!("lexicons: {e}")))?;
        let index_of = |field: &str, name: &str| -> Result<usize> {
            names.iter().position(|n| n == name).ok_or_else(|| Error::config(source, format!("{field}: unknown feature {name:?}")))
        };
        let category_of = |field: &str, name: &str| -> Result<Category> {
            Category::parse(name).ok_or_else(|| Error::config(source, format!("{field}: unknown category {name:?}")))
        };
        let n = names.len();
        let mut category_w = vec![[0f32; N_CATEGORIES]; n];
        for c in Category::ALL {
            if !m.categories.contains_key(c.name()) {
                return Err(Error::config(source, format!("categories: missing {:?}", c.name())));
            }
        }
        for (cname, spec) in &m.categories {
            let c = category_of("categories", cname)?;
            for (f, w) in &spec.weights {
                category_w[index_of(&format!("categories.{cname}.weights"), f)?][c.index()] = *w;
            }
        }
        let mut complexity_w = vec![0f32; n];
        for (f, w) in &m.complexity.weights {
            complexity_w[index_of("complexity.weights", f)?] = *w;
        }
        let mut complexity_offset = [0f32; N_CATEGORIES];
        for (cname, w) in &m.complexity.category_offset {
            complexity_offset[category_of("complexity.category_offset", cname)?.index()] = *w;
        }
        let mut output = [OutputPrior { base: 0.0, per_input_token: 0.0 }; N_CATEGORIES];
        for c in Category::ALL {
            output[c.index()] = *m
                .output_tokens
                .categories
                .get(c.name())
                .ok_or_else(|| Error::config(source, format!("output_tokens.categories: missing {:?}", c.name())))?;
        }
        for cname in m.output_tokens.categories.keys() {
            category_of("output_tokens.categories", cname)?;
        }
        let group = |g: &str| m.lexicons.keys().position(|k| k == g);
        Ok(Classifier {
            name: m.name,
            matcher,
            pattern_group,
            n_features: n,
            lex_offset,
            hint_groups: (group("hint_short"), group("hint_long")),
            category_w,
            complexity_w,
            complexity_offset,
            output,
            hint_tokens: (m.output_tokens.hint_short, m.output_tokens.hint_long),
            tokens_per_word: m.output_tokens.tokens_per_word,
            feature_names: names,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn feature_names(&self) -> &[String] {
        &self.feature_names
    }

    /// Dense feature vector in `feature_names()` order; what a trainer fits against.
    pub fn vectorize(&self, req: &Request, f: &Features) -> Vec<f32> {
        let mut x = vec![0f32; self.n_features];
        x[0] = (1.0 + f.input_tokens as f32).ln();
        x[1] = (1.0 + f.last_tokens as f32).ln();
        x[2] = (f.turns as f32).min(20.0);
        x[3] = f.has_system as u8 as f32;
        x[4] = (f.code_blocks as f32).min(5.0);
        x[5] = f.code_density;
        x[6] = f.math_density;
        x[7] = (1.0 + f.numbers as f32).ln();
        x[8] = (f.questions as f32).min(5.0);
        x[9] = (1.0 + f.tools as f32).ln();
        x[10] = f.non_latin as u8 as f32;
        x[11] = f.requested_words.map_or(0.0, |w| (1.0 + w as f32).ln());
        x[12] = 1.0;
        let text = req.last_user();
        let bytes = text.as_bytes();
        let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        for m in self.matcher.find_iter(text) {
            let (g, prefix) = self.pattern_group[m.pattern().as_usize()];
            let starts = m.start() == 0 || !is_word(bytes[m.start() - 1]);
            let ends = prefix || m.end() == bytes.len() || !is_word(bytes[m.end()]);
            if starts && ends {
                x[self.lex_offset + g as usize] += 1.0;
            }
        }
        for v in &mut x[self.lex_offset..] {
            *v = v.ln_1p();
        }
        x
    }

    pub fn classify(&self, req: &Request, f: &Features) -> Classification {
        let x = self.vectorize(req, f);
        let mut scores = [0f32; N_CATEGORIES];
        let mut cx = 0f32;
        for (i, &v) in x.iter().enumerate() {
            if v != 0.0 {
                let w = &self.category_w[i];
                for c in 0..N_CATEGORIES {
                    scores[c] += w[c] * v;
                }
                cx += self.complexity_w[i] * v;
            }
        }
        let (best, top) = scores.iter().enumerate().fold((0, f32::NEG_INFINITY), |acc, (i, &s)| if s > acc.1 { (i, s) } else { acc });
        let z: f32 = scores.iter().map(|s| (s - top).exp()).sum();
        let category = Category::ALL[best];
        let complexity = 1.0 / (1.0 + (-(cx + self.complexity_offset[best])).exp());
        let lex = |g: Option<usize>| g.is_some_and(|g| x[self.lex_offset + g] > 0.0);
        let hint = if lex(self.hint_groups.0) {
            LengthHint::Short
        } else if lex(self.hint_groups.1) {
            LengthHint::Long
        } else {
            LengthHint::None
        };
        let output_tokens = match (f.requested_words, hint) {
            (Some(w), _) => w as f32 * self.tokens_per_word,
            (None, LengthHint::Short) => self.hint_tokens.0,
            (None, LengthHint::Long) => self.hint_tokens.1,
            (None, LengthHint::None) => {
                let p = self.output[best];
                p.base + p.per_input_token * f.last_tokens as f32
            }
        };
        Classification { category, confidence: 1.0 / z, complexity, hint, output_tokens: output_tokens.round().max(1.0) as u32 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(text: &str) -> Classification {
        let c = Classifier::default_model();
        let req = Request::from_prompt("t", text);
        c.classify(&req, &Features::extract(&req))
    }

    #[test]
    fn default_model_separates_the_taxonomy() {
        let cases = [
            ("hi there, how are you doing today?", Category::Chat),
            ("Write a Python function that parses an ISO 8601 date and returns a datetime.", Category::Code),
            ("Translate into German: The meeting has been moved to Thursday.", Category::Translation),
            ("Summarize the following article in three bullet points: The city council voted on Tuesday to expand the bike lane network after months of debate.", Category::Summarization),
            ("Extract all email addresses and phone numbers from this text as JSON: Contact Ann at ann@example.com or 555-0100.", Category::Extraction),
            ("Solve for x: 3x^2 - 12x + 9 = 0. Show the steps.", Category::Math),
            ("Write a short poem about autumn rain in the style of a haiku sequence.", Category::Creative),
            ("If all bloops are razzies and some razzies are lazzies, must some bloops be lazzies? Explain your reasoning.", Category::Reasoning),
            ("Call the get_weather tool for Paris and then book a table using the reservation API function.", Category::ToolUse),
        ];
        for (text, want) in cases {
            let got = classify(text);
            assert_eq!(got.category, want, "{text:?} -> {got:?}");
        }
    }

    #[test]
    fn complexity_orders_easy_below_hard() {
        let easy = classify("What is the capital of France?");
        let hard = classify("Prove that there are infinitely many primes p such that p+2 is also prime is an open problem; explain rigorously why the Bombieri–Vinogradov theorem falls short and analyze the trade-offs of sieve methods step by step.");
        assert!(easy.complexity < 0.35, "{easy:?}");
        assert!(hard.complexity > 0.6, "{hard:?}");
        assert!((0.0..=1.0).contains(&easy.complexity));
    }

    #[test]
    fn length_hints_drive_output_tokens() {
        assert!(classify("Is water wet? Answer in one word.").output_tokens <= 20);
        assert!(classify("Write a detailed essay on the history of Rome.").output_tokens >= 800);
        assert_eq!(classify("Write a 200-word story about a cat.").output_tokens, 270);
    }

    #[test]
    fn bad_model_files_name_the_problem() {
        let e = Classifier::from_json("{", "m.json").unwrap_err().to_string();
        assert!(e.starts_with("m.json: line 1"), "{e}");
        let mut v: serde_json::Value = serde_json::from_str(DEFAULT_MODEL_JSON).unwrap();
        v["version"] = 99.into();
        let e = Classifier::from_json(&v.to_string(), "m.json").unwrap_err().to_string();
        assert!(e.contains("version 99"), "{e}");
        let mut v: serde_json::Value = serde_json::from_str(DEFAULT_MODEL_JSON).unwrap();
        v["complexity"]["weights"]["no_such_feature"] = 1.0.into();
        let e = Classifier::from_json(&v.to_string(), "m.json").unwrap_err().to_string();
        assert!(e.contains("complexity.weights: unknown feature \"no_such_feature\""), "{e}");
        let mut v: serde_json::Value = serde_json::from_str(DEFAULT_MODEL_JSON).unwrap();
        v["categories"].as_object_mut().unwrap().remove("math");
        assert!(Classifier::from_json(&v.to_string(), "m.json").unwrap_err().to_string().contains("missing \"math\""));
    }
}
