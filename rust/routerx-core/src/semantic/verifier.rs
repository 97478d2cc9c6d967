//! A learned pair verifier: may a semantic-cache candidate answer this query?
//!
//! Cosine similarity alone cannot separate paraphrases from same-topic questions with a
//! different intent. The verifier is a small MLP trained on labelled pairs (``routerx
//! train-verifier``) over [cosine, the guard's pair features, u⊙v, |u−v|], where u and v are the
//! two unit vectors the cache already holds. It is a versioned, checksummed snapshot file, so a
//! file trained for another embedder, truncated or corrupt is refused with an error naming it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::guard::{pair_features, Signature, PAIR_FEATURES};
use crate::{snapshot, Error, Result};

pub const VERIFIER_KIND: &str = "semantic-verifier";
pub const VERIFIER_VERSION: u32 = 1;

/// One fully connected layer, row-major `out × inp` weights.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Dense {
    pub inp: u32,
    pub out: u32,
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Verifier {
    /// The embedder whose vectors it was trained on (vectors of others are not comparable).
    pub embedder: String,
    pub dim: u32,
    /// Input standardisation: (x − mean) × scale, per feature.
    pub mean: Vec<f32>,
    pub scale: Vec<f32>,
    /// ReLU between layers; the last has one output, a logit.
    pub layers: Vec<Dense>,
    /// Score in (0, 1) at or above which a candidate is accepted, chosen at training time.
    pub threshold: f32,
    /// What it was trained on and what it reached (JSON), for people.
    pub report: String,
}

/// Width of the feature vector for vectors of `dim`.
pub fn n_features(dim: usize) -> usize {
    1 + PAIR_FEATURES + 2 * dim
}

/// [cosine, pair features, u⊙v, |u−v|] of a (query, candidate) pair; symmetric in the pair.
pub fn features_into(a: &Signature, b: &Signature, u: &[f32], v: &[f32], out: &mut Vec<f32>) {
    out.clear();
    let cos: f32 = u.iter().zip(v).map(|(x, y)| x * y).sum();
    out.push(cos);
    out.extend_from_slice(&pair_features(a, b));
    out.extend(u.iter().zip(v).map(|(x, y)| x * y));
    out.extend(u.iter().zip(v).map(|(x, y)| (x - y).abs()));
}

impl Verifier {
    /// Shapes, finiteness and threshold; errors name `file` (the source of the parameters).
    pub fn check(&self, file: &Path) -> Result<()> {
        let bad = |m: String| Error::Snapshot { file: file.display().to_string(), message: m };
        let n = n_features(self.dim as usize);
        if self.mean.len() != n || self.scale.len() != n {
            return Err(bad(format!("standardisation has {} / {} values, {} features expected", self.mean.len(), self.scale.len(), n)));
        }
        let mut width = n as u32;
        for (i, l) in self.layers.iter().enumerate() {
            if l.inp != width || l.weights.len() != (l.inp * l.out) as usize || l.bias.len() != l.out as usize {
                return Err(bad(format!("layer {i} has the wrong shape")));
            }
            width = l.out;
        }
        if self.layers.is_empty() || width != 1 {
            return Err(bad("the last layer must have one output".into()));
        }
        let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
        if !finite(&self.mean) || !finite(&self.scale) || !self.layers.iter().all(|l| finite(&l.weights) && finite(&l.bias)) {
            return Err(bad("non-finite parameters".into()));
        }
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            return Err(bad(format!("threshold {} is not in (0, 1)", self.threshold)));
        }
        Ok(())
    }

    /// Reads and validates a verifier file.
    pub fn load(path: &Path) -> Result<Verifier> {
        let v: Verifier = snapshot::read(path, VERIFIER_KIND, VERIFIER_VERSION)?;
        v.check(path)?;
        Ok(v)
    }

    /// Validates and writes atomically; returns the bytes written.
    pub fn save(&self, path: &Path) -> Result<u64> {
        self.check(path)?;
        snapshot::write(path, VERIFIER_KIND, VERIFIER_VERSION, self)
    }

    /// Probability that the pair is a duplicate, from a feature vector of [`features_into`].
    pub fn score_features(&self, x: &[f32]) -> f32 {
        let mut h: Vec<f32> = x.iter().zip(&self.mean).zip(&self.scale).map(|((x, m), s)| (x - m) * s).collect();
        let last = self.layers.len() - 1;
        for (i, l) in self.layers.iter().enumerate() {
            let inp = l.inp as usize;
            let mut next: Vec<f32> =
                l.weights.chunks_exact(inp).zip(&l.bias).map(|(w, b)| b + w.iter().zip(&h).map(|(a, c)| a * c).sum::<f32>()).collect();
            if i < last {
                next.iter_mut().for_each(|z| *z = z.max(0.0));
            }
            h = next;
        }
        1.0 / (1.0 + (-h[0]).exp())
    }

    /// Score of a (query, candidate) pair; vectors must have the verifier's width.
    pub fn score(&self, a: &Signature, b: &Signature, u: &[f32], v: &[f32]) -> Result<f32> {
        if u.len() != self.dim as usize || v.len() != self.dim as usize {
            return Err(Error::invalid_constraint(
                "verifier",
                format!("vectors of width {} / {}, the verifier takes {}", u.len(), v.len(), self.dim),
            ));
        }
        let mut x = Vec::with_capacity(n_features(u.len()));
        features_into(a, b, u, v, &mut x);
        Ok(self.score_features(&x))
    }
}

/// The candidates `verifier` accepts for `query` (live ones scoring at least `threshold`; ids no
/// longer in `store` are kept for the store to refuse as stale), and how many it refused.
pub fn filter(
    store: &super::SemanticStore,
    verifier: &Verifier,
    threshold: f32,
    query: &Signature,
    vector: &[f32],
    candidates: &[(u64, f32)],
) -> (Vec<(u64, f32)>, u64) {
    let mut refused = 0;
    let kept = candidates
        .iter()
        .copied()
        .filter(|&(id, _)| match store.get(id) {
            Some(e) => {
                let ok = verifier.score(query, &e.signature, vector, &e.vector).map(|s| s >= threshold).unwrap_or(false);
                refused += u64::from(!ok);
                ok
            }
            None => true,
        })
        .collect();
    (kept, refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A verifier that accepts exactly when the cosine is above 0.5 and the guard passes.
    fn hand_made(dim: u32) -> Verifier {
        let n = n_features(dim as usize);
        let mut w = vec![0.0; n];
        w[0] = 40.0; // cosine
        w[1 + 12] = -100.0; // guard rejects
        Verifier {
            embedder: "e".into(),
            dim,
            mean: vec![0.0; n],
            scale: vec![1.0; n],
            layers: vec![
                Dense { inp: n as u32, out: 2, weights: [w.clone(), vec![0.0; n]].concat(), bias: vec![-20.0, 0.0] },
                Dense { inp: 2, out: 1, weights: vec![1.0, 0.0], bias: vec![0.0] },
            ],
            threshold: 0.5,
            report: "{}".into(),
        }
    }

    #[test]
    fn scores_by_what_it_was_given() {
        let v = hand_made(2);
        let (a, b, off) =
            (Signature::of("turn on the lights"), Signature::of("please turn on the lights"), Signature::of("turn off the lights"));
        let s_same = v.score(&a, &b, &[1.0, 0.0], &[0.8, 0.6]).unwrap();
        let s_far = v.score(&a, &b, &[1.0, 0.0], &[0.0, 1.0]).unwrap();
        let s_off = v.score(&a, &off, &[1.0, 0.0], &[0.8, 0.6]).unwrap();
        // ReLU: hidden = max(0, 40·cos − 20), so cos 0.8 gives 12, cos 0 gives 0 (score 0.5).
        assert!((s_same - 1.0 / (1.0 + (-12.0f32).exp())).abs() < 1e-6, "{s_same}");
        assert!((s_far - 0.5).abs() < 1e-6, "{s_far}");
        assert!((s_off - 0.5).abs() < 1e-6, "guard mismatch zeroes the hidden unit: {s_off}");
        assert!(v.score(&a, &b, &[1.0], &[1.0]).is_err());
    }

    #[test]
    fn round_trip_and_bad_files_are_named() {
        let dir = std::env::temp_dir().join(format!("routerx-verifier-{}", std::process::id()));
        let p = dir.join("verifier.rxsnap");
        let v = hand_made(3);
        v.save(&p).unwrap();
        assert_eq!(Verifier::load(&p).unwrap(), v);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 5]).unwrap();
        let e = Verifier::load(&p).unwrap_err().to_string();
        assert!(e.contains("verifier.rxsnap") && e.contains("truncated"), "{e}");
        let mut flipped = bytes.clone();
        flipped[bytes.len() / 2] ^= 1;
        std::fs::write(&p, &flipped).unwrap();
        assert!(Verifier::load(&p).unwrap_err().to_string().contains("checksum"));
        let mut wrong = v.clone();
        wrong.layers[1].inp = 5;
        let e = wrong.save(&p).unwrap_err().to_string();
        assert!(e.contains("verifier.rxsnap") && e.contains("layer 1"), "{e}");
        let mut nan = v.clone();
        nan.mean[0] = f32::NAN;
        assert!(nan.save(&p).unwrap_err().to_string().contains("non-finite"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
