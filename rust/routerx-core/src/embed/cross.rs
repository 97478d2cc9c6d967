//! A cross-encoder pair verifier: the query and a cache candidate read *together* by one BERT,
//! fine-tuned from the sentence embedder on labelled pairs (`routerx train-verifier
//! --cross-encoder`). Attention across the two texts sees what two separately pooled vectors
//! cannot ("learn Python" / "learn Java" share almost all of their mean vector), which is why it
//! reaches precisions a verifier over the vectors does not.
//!
//! The network's logit is a linear head over the mean of the last hidden states, averaged over
//! both orders of the pair (so the score is symmetric, like the duplicate relation). The score is
//! the sigmoid of a calibration over that logit and, optionally, the pair's cosine under the
//! cache's embedder: the two disagree on different pairs, and the cosine is free at lookup time
//! (the index has just computed it).
//!
//! The file is one safetensors file: BERT weights under Hugging Face's names, `head.weight`
//! (1 × hidden) and `head.bias` (1), and in its metadata the kind and version, the BERT config,
//! the tokenizer, the acceptance threshold, the calibration (absent: the network's own
//! probability), the training report, and a SHA-256 of the tensor bytes, so a truncated or
//! corrupt file is refused with an error naming it.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use sha2::{Digest, Sha256};
use tokenizers::{EncodeInput, Encoding, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::bert::{Bert, BertConfig};
use crate::{Error, Result};

pub const CROSS_KIND: &str = "routerx-cross-encoder";
pub const CROSS_VERSION: u32 = 1;

/// Pairs are scored in chunks of at most this many tokens (attention scores stay small).
const MAX_CHUNK_TOKENS: usize = 4096;

pub struct CrossEncoder {
    bert: Bert,
    head: Vec<f32>,
    head_bias: f32,
    tokenizer: Tokenizer,
    device: Device,
    hidden: usize,
    /// Score in (0, 1) at or above which a candidate is accepted, chosen at training time.
    pub threshold: f32,
    /// Score at or above which the guard's name difference ("Donald Trump" / "Trump") is
    /// overruled, chosen on validation pairs with `threshold`; None: never (older files).
    pub name_threshold: Option<f32>,
    /// How the network's logit (and the pair's cosine) become the score.
    pub calibration: Calibration,
    /// Token limit of one (query, candidate) pair, special tokens included.
    pub max_tokens: usize,
    /// The sentence model it was fine-tuned from.
    pub base: String,
    /// What it was trained on and what it reached (JSON), for people.
    pub report: String,
}

/// score = sigmoid(logit × `logit` + cosine × `cosine` + `bias`).
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
pub struct Calibration {
    pub logit: f32,
    pub cosine: f32,
    pub bias: f32,
    /// The embedder whose cosines `cosine` weighs (the cache's must be the same).
    #[serde(default)]
    pub embedder: String,
}

impl Calibration {
    pub const IDENTITY: Calibration = Calibration { logit: 1.0, cosine: 0.0, bias: 0.0, embedder: String::new() };

    pub fn uses_cosine(&self) -> bool {
        self.cosine != 0.0
    }
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CrossEncoder>();
};

impl CrossEncoder {
    /// Reads and validates a cross-encoder file.
    pub fn load(path: &Path) -> Result<Self> {
        let bad = |m: String| Error::Snapshot { file: path.display().to_string(), message: m };
        let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot read: {e}")))?;
        let meta = header_metadata(&bytes).map_err(&bad)?;
        let get = |k: &str| meta.get(k).ok_or_else(|| bad(format!("not a routerx cross-encoder: metadata {k:?} is missing")));
        if get("kind")? != CROSS_KIND {
            return Err(bad(format!("not a routerx cross-encoder (kind {:?})", meta["kind"])));
        }
        let version: u32 = get("version")?.parse().map_err(|_| bad("unreadable version".into()))?;
        if version != CROSS_VERSION {
            return Err(bad(format!("format version {version}, this build reads {CROSS_VERSION}")));
        }
        let header_len = 8 + u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes checked")) as usize;
        let digest = format!("{:x}", Sha256::digest(&bytes[header_len..]));
        if &digest != get("sha256")? {
            return Err(bad("checksum mismatch: the file is truncated or corrupt".into()));
        }
        let config: BertConfig = serde_json::from_str(get("config")?).map_err(|e| bad(format!("not a BERT config: {e}")))?;
        let threshold: f32 = get("threshold")?.parse().map_err(|_| bad("unreadable threshold".into()))?;
        if !(threshold > 0.0 && threshold < 1.0) {
            return Err(bad(format!("threshold {threshold} is not in (0, 1)")));
        }
        let name_threshold = match meta.get("name_threshold") {
            None => None,
            Some(t) => match t.parse::<f32>() {
                Ok(t) if t > 0.0 && t < 1.0 => Some(t),
                _ => return Err(bad(format!("name_threshold {t:?} is not a number in (0, 1)"))),
            },
        };
        let calibration = match meta.get("calibration") {
            None => Calibration::IDENTITY,
            Some(c) => serde_json::from_str::<Calibration>(c).map_err(|e| bad(format!("unreadable calibration: {e}")))?,
        };
        if ![calibration.logit, calibration.cosine, calibration.bias].iter().all(|x| x.is_finite())
            || (calibration.uses_cosine() && calibration.embedder.is_empty())
        {
            return Err(bad(format!("invalid calibration {calibration:?}: finite weights, and the embedder its cosine comes from")));
        }
        let max_tokens: usize = get("max_tokens")?.parse().map_err(|_| bad("unreadable max_tokens".into()))?;
        if max_tokens < 3 || max_tokens > config.max_position_embeddings {
            return Err(bad(format!("max_tokens {max_tokens} outside 3..={}", config.max_position_embeddings)));
        }
        let mut tokenizer: Tokenizer = get("tokenizer")?.parse().map_err(|e| bad(format!("invalid tokenizer: {e}")))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| bad(e.to_string()))?;
        tokenizer.with_padding(None);

        let device = Device::Cpu;
        let tensors = candle_core::safetensors::load_buffer(&bytes, &device).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        drop(bytes);
        let bert = Bert::load(&tensors, &config).map_err(&bad)?;
        let h = config.hidden_size;
        let vec_of = |name: &str, n: usize| -> Result<Vec<f32>> {
            let t = tensors.get(name).ok_or_else(|| bad(format!("tensor {name} is missing")))?;
            let v = t
                .flatten_all()
                .and_then(|t| t.to_dtype(candle_core::DType::F32))
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| bad(format!("tensor {name}: {e}")))?;
            if v.len() != n || !v.iter().all(|x| x.is_finite()) {
                return Err(bad(format!("tensor {name} must hold {n} finite values")));
            }
            Ok(v)
        };
        let head = vec_of("head.weight", h)?;
        let head_bias = vec_of("head.bias", 1)?[0];
        Ok(Self {
            bert,
            head,
            head_bias,
            tokenizer,
            device,
            hidden: h,
            threshold,
            name_threshold,
            calibration,
            max_tokens,
            base: meta.get("base").cloned().unwrap_or_default(),
            report: meta.get("report").cloned().unwrap_or_else(|| "{}".into()),
        })
    }

    /// Duplicate probability of each (a, b) pair, in input order; symmetric in each pair.
    /// `cosines`: each pair's cosine under the calibration's embedder, which a calibration that
    /// weighs it needs.
    pub fn score(&self, pairs: &[(&str, &str)], cosines: Option<&[f32]>) -> Result<Vec<f32>> {
        let c = &self.calibration;
        let cos = match cosines {
            Some(v) if v.len() != pairs.len() => {
                return Err(Error::invalid_request("cosines", format!("{} cosines for {} pairs", v.len(), pairs.len())))
            }
            Some(v) => v,
            None if c.uses_cosine() => {
                return Err(Error::invalid_request(
                    "cosines",
                    format!("this cross-encoder weighs the pair's cosine under {}: pass the cosines", c.embedder),
                ))
            }
            None => &[],
        };
        let logits = self.logits(pairs)?;
        Ok(logits
            .iter()
            .enumerate()
            .map(|(i, l)| 1.0 / (1.0 + (-(l * c.logit + cos.get(i).map_or(0.0, |x| x * c.cosine) + c.bias)).exp()))
            .collect())
    }

    /// The network's logit of each pair (mean over both orders), before calibration.
    pub fn logits(&self, pairs: &[(&str, &str)]) -> Result<Vec<f32>> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let inputs: Vec<EncodeInput> = pairs.iter().flat_map(|&(a, b)| [(a, b).into(), (b, a).into()]).collect();
        let enc = self.tokenizer.encode_batch_fast(inputs, true).map_err(|e| Error::model("tokenizer", format!("tokenizer: {e}")))?;
        let mut logits = vec![0f32; enc.len()];
        let mut order: Vec<usize> = (0..enc.len()).collect();
        order.sort_by_key(|&i| enc[i].len());
        let mut start = 0;
        while start < order.len() {
            let mut end = start + 1;
            while end < order.len() && (end + 1 - start) * enc[order[end]].len() <= MAX_CHUNK_TOKENS {
                end += 1;
            }
            self.forward(&enc, &order[start..end], &mut logits)
                .map_err(|e| Error::model("cross-encoder", format!("forward pass failed: {e}")))?;
            start = end;
        }
        Ok(logits.chunks_exact(2).map(|l| (l[0] + l[1]) / 2.0).collect())
    }

    /// One forward pass over the encodings `chunk`, writing each one's logit.
    fn forward(&self, enc: &[Encoding], chunk: &[usize], out: &mut [f32]) -> candle_core::Result<()> {
        let lengths: Vec<usize> = chunk.iter().map(|&i| enc[i].len()).collect();
        let ids: Vec<u32> = chunk.iter().flat_map(|&i| enc[i].get_ids().iter().copied()).collect();
        let types: Vec<u32> = chunk.iter().flat_map(|&i| enc[i].get_type_ids().iter().copied()).collect();
        let total = ids.len();
        let hidden = self
            .bert
            .forward(&Tensor::from_vec(ids, total, &self.device)?, &Tensor::from_vec(types, total, &self.device)?, &lengths)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let h = self.hidden;
        let mut row = 0;
        for (&i, &n) in chunk.iter().zip(&lengths) {
            let mut dot = 0f32;
            for t in hidden[row * h..(row + n) * h].chunks_exact(h) {
                dot += t.iter().zip(&self.head).map(|(x, w)| x * w).sum::<f32>();
            }
            out[i] = dot / n as f32 + self.head_bias;
            row += n;
        }
        Ok(())
    }
}

/// What [`filter`] kept of the candidates.
#[derive(Debug, Default, PartialEq)]
pub struct Filtered {
    /// The candidates accepted or not scored, in their order.
    pub kept: Vec<(u64, f32)>,
    /// How many were scored below the threshold.
    pub refused: u64,
    /// Ids scored at or above `name_threshold` (and `threshold`): the store overrules the
    /// guard's name difference for them.
    pub trusted: Vec<u64>,
}

/// The candidates `verifier` accepts for `query` (scored in one batch); `name_threshold`
/// (usually the file's own) marks the trusted ones, None: none. Candidates below
/// `floor` (the lowest similarity threshold: the store refuses them anyway) and ids no longer in
/// `store` (the store refuses them as stale) are kept unscored. A failed forward pass refuses: a
/// miss is always safe.
pub fn filter(
    store: &crate::semantic::SemanticStore,
    verifier: &CrossEncoder,
    threshold: f32,
    name_threshold: Option<f32>,
    query: &str,
    candidates: &[(u64, f32)],
    floor: f32,
) -> Filtered {
    let entries: Vec<_> = candidates.iter().map(|&(id, sim)| if sim >= floor { store.get(id) } else { None }).collect();
    let pairs: Vec<(&str, &str)> = entries.iter().flatten().map(|e| (query, &*e.query)).collect();
    if pairs.is_empty() {
        return Filtered { kept: candidates.to_vec(), ..Filtered::default() };
    }
    let cosines: Vec<f32> = candidates.iter().zip(&entries).filter(|(_, e)| e.is_some()).map(|(c, _)| c.1).collect();
    let mut scores = verifier.score(&pairs, Some(&cosines)).unwrap_or_default().into_iter();
    let trust_at = name_threshold.map(|t| t.max(threshold));
    let mut out = Filtered { kept: Vec::with_capacity(candidates.len()), ..Filtered::default() };
    for (c, e) in candidates.iter().zip(&entries) {
        if e.is_none() {
            out.kept.push(*c);
            continue;
        }
        match scores.next() {
            Some(s) if s >= threshold => {
                out.kept.push(*c);
                if trust_at.is_some_and(|t| s >= t) {
                    out.trusted.push(c.0);
                }
            }
            _ => out.refused += 1,
        }
    }
    out
}

/// The string metadata of a safetensors file (`__metadata__` in its JSON header).
fn header_metadata(bytes: &[u8]) -> std::result::Result<HashMap<String, String>, String> {
    if bytes.len() < 8 {
        return Err("truncated: no safetensors header".into());
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header = bytes.get(8..8usize.saturating_add(n)).ok_or("truncated: the safetensors header runs past the end of the file")?;
    let v: serde_json::Value = serde_json::from_slice(header).map_err(|e| format!("not a safetensors file: {e}"))?;
    let meta = v.get("__metadata__").and_then(|m| m.as_object()).ok_or("not a routerx cross-encoder: no metadata")?;
    Ok(meta.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string()))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("routerx-cross-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join("v.safetensors")
    }

    #[test]
    fn missing_and_foreign_files_are_named() {
        let e = CrossEncoder::load(Path::new("/nonexistent/v.safetensors")).err().unwrap();
        assert!(matches!(&e, Error::Snapshot { file, .. } if file.contains("/nonexistent/v.safetensors")), "{e:?}");
        let p = tmp("foreign");
        std::fs::write(&p, b"abc").unwrap();
        assert!(CrossEncoder::load(&p).err().unwrap().to_string().contains("truncated"));
        let header = br#"{"__metadata__":{"kind":"something-else"}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        std::fs::write(&p, &bytes).unwrap();
        let e = CrossEncoder::load(&p).err().unwrap().to_string();
        assert!(e.contains("v.safetensors") && e.contains("not a routerx cross-encoder"), "{e}");
        std::fs::remove_dir_all(p.parent().unwrap()).ok();
    }
}
