//! Sentence embeddings (cargo feature `embed`): the first piece of the semantic cache.
//!
//! [`MiniLm`] runs sentence-transformers' all-MiniLM-L6-v2 (or another BERT checkpoint in the same
//! layout) on the CPU from local files: BERT forward pass, mean pooling over the real tokens, L2
//! normalisation, exactly as sentence-transformers computes it (cosine ≥ 0.9999 against its output).
//! Nothing is ever downloaded.
//!
//! [`Embedder`] is what the cache will hold, so it can be tested with a stand-in.

mod bert;
pub mod cross;
mod minilm;
mod static_table;

pub use bert::gelu_erf;
pub use cross::CrossEncoder;
pub use minilm::MiniLm;
pub use static_table::StaticTable;

use crate::Result;

/// Row-major, L2-normalised vectors: `vectors.len() == truncated.len() * dim`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Embeddings {
    pub dim: usize,
    pub vectors: Vec<f32>,
    /// Per text: whether it was cut to the model's token limit before embedding.
    pub truncated: Vec<bool>,
}

impl Embeddings {
    pub fn len(&self) -> usize {
        self.truncated.len()
    }
    pub fn is_empty(&self) -> bool {
        self.truncated.is_empty()
    }
    /// Vector of text `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.vectors[i * self.dim..(i + 1) * self.dim]
    }
}

/// A sentence embedder shared across threads.
pub trait Embedder: Send + Sync {
    /// Vector width.
    fn dim(&self) -> usize;
    /// Token limit per text, special tokens included; longer texts are truncated.
    fn max_tokens(&self) -> usize;
    /// Names the model and its exact weights, e.g. `all-MiniLM-L6-v2@53aa51172d14`: vectors of
    /// different ids are not comparable (the id will be part of the cache scope).
    fn model_id(&self) -> &str;
    /// Embeds a batch; results are in input order and do not depend on how texts are batched
    /// (up to float rounding).
    fn embed(&self, texts: &[&str]) -> Result<Embeddings>;
}

/// Cosine similarity (the dot product, for the unit vectors embedders return).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb).max(f32::MIN_POSITIVE)
}
