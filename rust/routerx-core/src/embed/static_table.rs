//! A static embedder distilled from the sentence model: the fast path of the semantic cache.
//!
//! all-MiniLM-L6-v2 costs ~10–20 ms per short text on one CPU core: more than an exact-cache miss
//! is worth on a hot path. Distillation (as model2vec does) runs every vocabulary token through the
//! model once and keeps its sentence vector; a text is then embedded as the normalised mean of its
//! tokens' rows, with a weight that favours rare tokens — microseconds, no matrix multiply. The
//! table is made locally from the installed model (nothing downloaded), saved as a versioned,
//! checksummed snapshot file, and named by the base model's id so its vectors are never compared
//! with another model's.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use super::{Embedder, Embeddings, MiniLm};
use crate::{snapshot, Error, Result};

const SNAPSHOT_KIND: &str = "static-embeddings";
const SNAPSHOT_VERSION: u32 = 1;
/// Texts longer than this many tokens are truncated (as the base model truncates at 256).
const MAX_TOKENS: usize = 512;

/// Ids below this are padding, unused and special tokens in BERT's vocabulary.
const FIRST_WORD_PIECE: usize = 999;
/// Principal directions removed from the table (see `remove_common_directions`).
const COMMON_DIRECTIONS: usize = 2;

/// Every lone-token sentence vector shares [CLS] and [SEP], so the raw rows share a large common
/// component that swamps what distinguishes tokens (all cosines come out high). Centring the rows
/// and projecting out the top principal directions ("all-but-the-top", Mu & Viswanath 2018; what
/// model2vec's PCA step achieves) leaves the distinguishing part; rows are then re-normalised.
fn remove_common_directions(table: &mut [f32], dim: usize, first: usize, k: usize) {
    let rows = table.len() / dim;
    if rows <= first {
        return;
    }
    let n = (rows - first) as f32;
    let mut mean = vec![0f32; dim];
    for r in table[first * dim..].chunks_exact(dim) {
        mean.iter_mut().zip(r).for_each(|(m, x)| *m += x / n);
    }
    for r in table[first * dim..].chunks_exact_mut(dim) {
        r.iter_mut().zip(&mean).for_each(|(x, m)| *x -= m);
    }
    for c in 0..k {
        // Power iteration on the covariance (rows × dim, never formed): 30 steps suffice for the
        // dominant direction of such a skewed spectrum.
        let mut v: Vec<f32> = (0..dim).map(|i| ((i * 7 + c * 13) % 11) as f32 - 5.0).collect();
        for _ in 0..30 {
            let mut next = vec![0f32; dim];
            for r in table[first * dim..].chunks_exact(dim) {
                let p: f32 = r.iter().zip(&v).map(|(a, b)| a * b).sum();
                next.iter_mut().zip(r).for_each(|(o, x)| *o += p * x);
            }
            let norm = next.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
            v = next.into_iter().map(|x| x / norm).collect();
        }
        for r in table[first * dim..].chunks_exact_mut(dim) {
            let p: f32 = r.iter().zip(&v).map(|(a, b)| a * b).sum();
            r.iter_mut().zip(&v).for_each(|(x, u)| *x -= p * u);
        }
    }
    for r in table[first * dim..].chunks_exact_mut(dim) {
        let norm = r.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            r.iter_mut().for_each(|x| *x /= norm);
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Saved {
    base_model: String,
    dim: u32,
    /// f16 would halve the file; f32 keeps the format trivial and the load a memcpy.
    table: Vec<f32>,
    weights: Vec<f32>,
}

pub struct StaticTable {
    tokenizer: Tokenizer,
    table: Vec<f32>,
    /// Per token: how much it counts in a text's mean (low for the most common word pieces).
    weights: Vec<f32>,
    dim: usize,
    model_id: String,
}

impl StaticTable {
    /// Runs every vocabulary token through `model` (about a minute on two cores, once).
    pub fn distill(model: &MiniLm) -> Result<StaticTable> {
        let mut table = model.token_table()?;
        let dim = model.dim();
        let vocab = table.len() / dim;
        remove_common_directions(&mut table, dim, FIRST_WORD_PIECE, COMMON_DIRECTIONS);
        // BERT's vocabulary is ordered roughly by frequency after the special and unused slots, so
        // the id is a usable frequency rank: a Zipf-style weight log(2 + rank) down-weights the
        // commonest pieces ("the", "of", "##s") without a corpus.
        let weights = (0..vocab).map(|t| if t < FIRST_WORD_PIECE { 0.0 } else { ((2 + t - FIRST_WORD_PIECE) as f32).ln() }).collect();
        Ok(StaticTable { tokenizer: plain(model.tokenizer())?, table, weights, dim, model_id: format!("static-{}", model.model_id()) })
    }

    pub fn save(&self, path: &Path) -> Result<u64> {
        let base = self.model_id.trim_start_matches("static-").to_owned();
        snapshot::write(
            path,
            SNAPSHOT_KIND,
            SNAPSHOT_VERSION,
            &Saved { base_model: base, dim: self.dim as u32, table: self.table.clone(), weights: self.weights.clone() },
        )
    }

    /// Loads a table saved by [`StaticTable::save`]; it must come from `model` (same weights).
    pub fn load(path: &Path, model: &MiniLm) -> Result<StaticTable> {
        let s: Saved = snapshot::read(path, SNAPSHOT_KIND, SNAPSHOT_VERSION)?;
        if s.base_model != model.model_id() {
            return Err(Error::Snapshot {
                file: path.display().to_string(),
                message: format!("distilled from {}, not {}", s.base_model, model.model_id()),
            });
        }
        let dim = s.dim as usize;
        if dim != model.dim() || s.table.len() != s.weights.len() * dim {
            return Err(Error::Snapshot { file: path.display().to_string(), message: "table shape does not match the model".into() });
        }
        Ok(StaticTable {
            tokenizer: plain(model.tokenizer())?,
            table: s.table,
            weights: s.weights,
            dim,
            model_id: format!("static-{}", s.base_model),
        })
    }
}

/// The base tokenizer without truncation or special tokens' effect on the mean.
fn plain(t: &Tokenizer) -> Result<Tokenizer> {
    let mut t = t.clone();
    t.with_truncation(None).map_err(|e| Error::model("tokenizer.json", e.to_string()))?;
    t.with_padding(None);
    Ok(t)
}

impl Embedder for StaticTable {
    fn dim(&self) -> usize {
        self.dim
    }

    fn max_tokens(&self) -> usize {
        MAX_TOKENS
    }

    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn embed(&self, texts: &[&str]) -> Result<Embeddings> {
        let d = self.dim;
        let mut vectors = vec![0f32; texts.len() * d];
        let mut truncated = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            let enc = self.tokenizer.encode_fast(*text, false).map_err(|e| Error::model("tokenizer.json", format!("tokenizer: {e}")))?;
            let ids = enc.get_ids();
            truncated.push(ids.len() > MAX_TOKENS);
            let row = &mut vectors[i * d..(i + 1) * d];
            let mut total = 0f32;
            for &t in ids.iter().take(MAX_TOKENS) {
                let t = t as usize;
                let (Some(w), Some(v)) = (self.weights.get(t), self.table.get(t * d..(t + 1) * d)) else { continue };
                total += w;
                row.iter_mut().zip(v).for_each(|(o, x)| *o += w * x);
            }
            if total == 0.0 {
                // Empty, or only the commonest pieces: fall back to the unweighted mean.
                for &t in ids.iter().take(MAX_TOKENS) {
                    if let Some(v) = self.table.get(t as usize * d..(t as usize + 1) * d) {
                        row.iter_mut().zip(v).for_each(|(o, x)| *o += x);
                    }
                }
            }
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            if norm > 0.0 {
                row.iter_mut().for_each(|x| *x /= norm);
            } else {
                row[0] = 1.0; // the empty text: one fixed unit vector, like the base model's
            }
        }
        Ok(Embeddings { dim: d, vectors, truncated })
    }
}
