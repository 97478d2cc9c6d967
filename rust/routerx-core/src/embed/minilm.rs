//! all-MiniLM-L6-v2 sentence embeddings in pure Rust (candle + tokenizers, CPU only).
//!
//! Reproduces what sentence-transformers computes for this model: BERT forward pass, mean
//! pooling over the non-padding tokens, then L2 normalisation. Inputs are truncated to the
//! model's `max_seq_length` (256 tokens, counting [CLS] and [SEP]).
//!
//! Loading is strictly local: files are read from the given directory and nothing is ever
//! fetched from the network (the `tokenizers` crate is built without `http`).

use std::path::Path;

use candle_core::{Device, Tensor};
use sha2::{Digest, Sha256};
use tokenizers::{Encoding, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::bert::{Bert, BertConfig};
use super::{Embedder, Embeddings};
use crate::{Error, Result};

/// Files the model directory must contain.
const CONFIG_FILE: &str = "config.json";
const TOKENIZER_FILE: &str = "tokenizer.json";
const WEIGHTS_FILE: &str = "model.safetensors";
/// Optional: sentence-transformers' own settings, the source of `max_seq_length`.
const ST_CONFIG_FILE: &str = "sentence_bert_config.json";
/// Optional: sentence-transformers' pooling settings; only mean pooling is implemented.
const POOLING_FILE: &str = "1_Pooling/config.json";

/// The `max_seq_length` all-MiniLM-L6-v2 ships with; used when `sentence_bert_config.json`
/// is absent. `tokenizer.json` itself says 128, which is *not* what sentence-transformers uses,
/// so the limit never comes from there.
const DEFAULT_MAX_TOKENS: usize = 256;

/// Weights we know by SHA-256, for a readable model id. Anything else is named by its shape.
const KNOWN_WEIGHTS: &[(&str, &str)] = &[("53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db", "all-MiniLM-L6-v2")];

/// Texts are sorted by token count and run in chunks of at most this many tokens counted at the
/// chunk's longest length (and [`MAX_CHUNK_TEXTS`] texts): the attention scores of a chunk stay
/// small (≤ 2048 × 256 × heads floats) and short texts share chunks with short texts. The matmuls
/// see no padding at all (see `bert::Bert::forward`).
const MAX_CHUNK_TOKENS: usize = 2048;
const MAX_CHUNK_TEXTS: usize = 128;

pub struct MiniLm {
    bert: Bert,
    tokenizer: Tokenizer,
    device: Device,
    dim: usize,
    max_tokens: usize,
    model_id: String,
}

// The model is shared across worker threads behind an `Arc`; fail the build if a dependency
// upgrade ever makes that impossible.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<MiniLm>();
};

fn model_err(path: &Path, message: impl Into<String>) -> Error {
    Error::model(path.display().to_string(), message)
}

fn missing(path: &Path, message: impl Into<String>) -> Error {
    Error::Model { file: path.display().to_string(), message: message.into(), missing: true }
}

impl MiniLm {
    /// Loads the model from a local sentence-transformers model directory (config.json,
    /// tokenizer.json, model.safetensors, optionally sentence_bert_config.json).
    pub fn load(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(missing(dir, "model directory not found"));
        }
        // Check every required file first so the error names the first missing one.
        let config_path = dir.join(CONFIG_FILE);
        let tokenizer_path = dir.join(TOKENIZER_FILE);
        let weights_path = dir.join(WEIGHTS_FILE);
        for p in [&config_path, &tokenizer_path, &weights_path] {
            if !p.is_file() {
                return Err(missing(p, "model file not found"));
            }
        }

        let config: BertConfig =
            serde_json::from_value(read_json(&config_path)?).map_err(|e| model_err(&config_path, format!("not a BERT config: {e}")))?;
        if let Some(why) = config.unsupported() {
            return Err(model_err(&config_path, why));
        }
        let max_tokens = read_max_tokens(dir)?;
        if max_tokens < 2 || max_tokens > config.max_position_embeddings {
            return Err(model_err(
                &dir.join(ST_CONFIG_FILE),
                format!("max_seq_length {max_tokens} outside 2..={}", config.max_position_embeddings),
            ));
        }
        check_pooling(dir)?;

        let mut tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|e| model_err(&tokenizer_path, format!("invalid tokenizer: {e}")))?;
        // tokenizer.json carries truncation at 128 and fixed padding to 128: truncate at
        // max_seq_length as sentence-transformers does, and pad ourselves per chunk.
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| model_err(&tokenizer_path, e.to_string()))?;
        tokenizer.with_padding(None);

        // Read the weights into memory rather than mmap them: no `unsafe`, no undefined behaviour
        // if the file changes underneath us; it is ~90 MB. The same bytes give the model id.
        let bytes = std::fs::read(&weights_path).map_err(|e| model_err(&weights_path, format!("cannot read: {e}")))?;
        let sha = format!("{:x}", Sha256::digest(&bytes));
        let name = KNOWN_WEIGHTS
            .iter()
            .find(|(s, _)| *s == sha)
            .map(|(_, n)| (*n).to_string())
            .unwrap_or_else(|| format!("bert-L{}-H{}", config.num_hidden_layers, config.hidden_size));
        let model_id = format!("{name}@{}", &sha[..12]);

        let device = Device::Cpu;
        let tensors = candle_core::safetensors::load_buffer(&bytes, &device)
            .map_err(|e| model_err(&weights_path, format!("not a safetensors file: {e}")))?;
        drop(bytes);
        let bert = Bert::load(&tensors, &config).map_err(|e| model_err(&weights_path, e))?;

        Ok(Self { bert, tokenizer, device, dim: config.hidden_size, max_tokens, model_id })
    }

    /// Embeds the texts `chunk` (indices into `enc`) in one forward pass and writes their unit
    /// vectors into rows of `out`.
    fn embed_chunk(&self, enc: &[Encoding], chunk: &[usize], out: &mut [f32]) -> candle_core::Result<()> {
        let rows: Vec<(usize, &[u32], &[u32])> = chunk.iter().map(|&i| (i, enc[i].get_ids(), enc[i].get_type_ids())).collect();
        self.embed_rows(&rows, out)
    }

    /// One forward pass over `rows` (output row, token ids, type ids), writing unit vectors.
    fn embed_rows(&self, rows: &[(usize, &[u32], &[u32])], out: &mut [f32]) -> candle_core::Result<()> {
        let lengths: Vec<usize> = rows.iter().map(|r| r.1.len()).collect();
        let ids: Vec<u32> = rows.iter().flat_map(|r| r.1.iter().copied()).collect();
        let type_ids: Vec<u32> = rows.iter().flat_map(|r| r.2.iter().copied()).collect();
        let total = ids.len();
        let ids = Tensor::from_vec(ids, total, &self.device)?;
        let type_ids = Tensor::from_vec(type_ids, total, &self.device)?;
        // Packed rows: padding never enters pooling, and attention masks it, so a text's vector
        // does not depend on the other texts of its chunk.
        let hidden = self.bert.forward(&ids, &type_ids, &lengths)?.flatten_all()?.to_vec1::<f32>()?;

        let d = self.dim;
        let mut row_start = 0;
        for (&(i, _, _), &n) in rows.iter().zip(&lengths) {
            let row = &mut out[i * d..(i + 1) * d];
            row.fill(0.0);
            for h in hidden[row_start * d..(row_start + n) * d].chunks_exact(d) {
                row.iter_mut().zip(h).for_each(|(o, x)| *o += x);
            }
            row_start += n;
            // Every text has at least [CLS][SEP]; the clamps mirror sentence-transformers and
            // torch.nn.functional.normalize.
            let count = (n as f32).max(1e-9);
            row.iter_mut().for_each(|x| *x /= count);
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            row.iter_mut().for_each(|x| *x /= norm);
        }
        Ok(())
    }
}

impl MiniLm {
    /// The sentence vector of every vocabulary token alone (`[CLS] token [SEP]`), row-major
    /// (vocabulary size × dim): the table a static embedder averages (see `StaticTable`).
    pub fn token_table(&self) -> Result<Vec<f32>> {
        let vocab = self.tokenizer.get_vocab_size(true);
        let (cls, sep) = (self.special("[CLS]")?, self.special("[SEP]")?);
        let seqs: Vec<[u32; 3]> = (0..vocab as u32).map(|t| [cls, t, sep]).collect();
        let zeros = [0u32; 3];
        let mut out = vec![0f32; vocab * self.dim];
        for (c, chunk) in seqs.chunks(MAX_CHUNK_TOKENS / 3).enumerate() {
            let base = c * (MAX_CHUNK_TOKENS / 3);
            let rows: Vec<(usize, &[u32], &[u32])> = chunk.iter().enumerate().map(|(j, s)| (base + j, &s[..], &zeros[..])).collect();
            self.embed_rows(&rows, &mut out).map_err(|e| Error::model(WEIGHTS_FILE, format!("forward pass failed: {e}")))?;
        }
        Ok(out)
    }

    fn special(&self, token: &str) -> Result<u32> {
        self.tokenizer.token_to_id(token).ok_or_else(|| Error::model(TOKENIZER_FILE, format!("no {token} token")))
    }

    /// The model's tokenizer (shared by the static embedder distilled from it).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }
}

impl Embedder for MiniLm {
    fn dim(&self) -> usize {
        self.dim
    }

    fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn embed(&self, texts: &[&str]) -> Result<Embeddings> {
        let d = self.dim;
        if texts.is_empty() {
            return Ok(Embeddings { dim: d, ..Default::default() });
        }
        let tok_err = |e: tokenizers::Error| Error::model(TOKENIZER_FILE, format!("tokenizer: {e}"));
        let enc: Vec<Encoding> = if texts.len() == 1 {
            vec![self.tokenizer.encode_fast(texts[0], true).map_err(tok_err)?]
        } else {
            self.tokenizer.encode_batch_fast(texts.to_vec(), true).map_err(tok_err)?
        };
        // With stride 0 everything past the limit goes to `overflowing`: non-empty = truncated.
        let truncated: Vec<bool> = enc.iter().map(|e| !e.get_overflowing().is_empty()).collect();

        let mut order: Vec<usize> = (0..enc.len()).collect();
        order.sort_by_key(|&i| enc[i].len());
        let mut vectors = vec![0f32; texts.len() * d];
        let mut start = 0;
        while start < order.len() {
            let mut end = start + 1;
            // Sorted ascending, so the chunk's padded size is (texts) × (length of the last one).
            while end < order.len() && end - start < MAX_CHUNK_TEXTS && (end + 1 - start) * enc[order[end]].len() <= MAX_CHUNK_TOKENS {
                end += 1;
            }
            self.embed_chunk(&enc, &order[start..end], &mut vectors)
                .map_err(|e| Error::model(WEIGHTS_FILE, format!("forward pass failed: {e}")))?;
            start = end;
        }
        Ok(Embeddings { dim: d, vectors, truncated })
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| model_err(path, format!("cannot read: {e}")))?;
    serde_json::from_str(&text).map_err(|e| model_err(path, format!("invalid JSON: {e}")))
}

/// `max_seq_length` from sentence_bert_config.json, or the model's known default.
fn read_max_tokens(dir: &Path) -> Result<usize> {
    let path = dir.join(ST_CONFIG_FILE);
    if !path.is_file() {
        return Ok(DEFAULT_MAX_TOKENS);
    }
    match read_json(&path)?.get("max_seq_length") {
        None => Ok(DEFAULT_MAX_TOKENS),
        Some(x) => x.as_u64().map(|n| n as usize).ok_or_else(|| model_err(&path, format!("max_seq_length is not a positive integer: {x}"))),
    }
}

/// Refuses checkpoints whose sentence-transformers pooling is not plain mean pooling.
fn check_pooling(dir: &Path) -> Result<()> {
    let path = dir.join(POOLING_FILE);
    if !path.is_file() {
        return Ok(());
    }
    let v = read_json(&path)?;
    let on = |k: &str| v.get(k).and_then(serde_json::Value::as_bool).unwrap_or(false);
    let others = [
        "pooling_mode_cls_token",
        "pooling_mode_max_tokens",
        "pooling_mode_mean_sqrt_len_tokens",
        "pooling_mode_weightedmean_tokens",
        "pooling_mode_lasttoken",
    ];
    if !on("pooling_mode_mean_tokens") || others.iter().any(|k| on(k)) {
        return Err(model_err(&path, "only mean pooling (pooling_mode_mean_tokens alone) is supported"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_dir_is_reported_as_missing() {
        let err = MiniLm::load(Path::new("/nonexistent/minilm")).err().expect("must fail");
        assert!(matches!(&err, Error::Model { missing: true, file, .. } if file.contains("/nonexistent/minilm")), "{err:?}");
    }

    #[test]
    fn missing_file_names_the_file() {
        let dir = std::env::temp_dir().join(format!("routerx-minilm-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = MiniLm::load(&dir).err().expect("must fail");
        std::fs::remove_dir_all(&dir).ok();
        assert!(matches!(&err, Error::Model { missing: true, .. }), "{err:?}");
        assert!(err.to_string().contains("config.json"), "{err}");
    }

    #[test]
    fn bad_config_is_not_missing() {
        let dir = std::env::temp_dir().join(format!("routerx-minilm-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in [CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE] {
            std::fs::write(dir.join(f), "{").unwrap();
        }
        let err = MiniLm::load(&dir).err().expect("must fail");
        std::fs::remove_dir_all(&dir).ok();
        assert!(matches!(&err, Error::Model { missing: false, file, .. } if file.ends_with("config.json")), "{err:?}");
    }
}
