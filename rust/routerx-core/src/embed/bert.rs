//! A BERT encoder, forward pass only, on candle's CPU backend.
//!
//! Our own ~200 lines instead of `candle-transformers`' `BertModel`, for speed and build time:
//! - GELU (exact, erf-based, as BERT defines it) runs as one vectorised kernel ([`gelu_erf`]);
//!   candle's `gelu_erf` calls scalar `libm::erff` per element and took ~25% of the forward pass.
//! - sequences are packed without padding for everything but attention, which alone sees a
//!   padded, masked layout (batches of texts of different lengths waste no matmul work);
//! - Q, K and V are one matmul (weights concatenated at load) and one layout copy, and the
//!   1/√d attention scale is folded into the Q weights;
//! - softmax and layer norm use candle-nn's fused CPU kernels;
//! - no dependency on `candle-transformers` (hundreds of models, minutes of compile time).
//!
//! Weight names follow Hugging Face's `BertModel` (`embeddings.*`, `encoder.layer.N.*`), with or
//! without a `bert.` prefix.

use std::collections::HashMap;

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Module, Shape, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear};
use serde::Deserialize;

/// The fields of a Hugging Face `config.json` this encoder uses.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

fn default_eps() -> f64 {
    1e-12
}

impl BertConfig {
    /// What this encoder cannot run, if anything.
    pub fn unsupported(&self) -> Option<String> {
        if self.hidden_act != "gelu" {
            return Some(format!("hidden_act {:?} is not supported (only \"gelu\")", self.hidden_act));
        }
        if let Some(p) = &self.position_embedding_type {
            if p != "absolute" {
                return Some(format!("position_embedding_type {p:?} is not supported (only \"absolute\")"));
            }
        }
        if self.num_attention_heads == 0 || self.hidden_size % self.num_attention_heads != 0 {
            return Some(format!("hidden_size {} is not a multiple of num_attention_heads {}", self.hidden_size, self.num_attention_heads));
        }
        None
    }
}

struct Layer {
    /// Q, K and V stacked: (3 × hidden, hidden); the Q rows are pre-scaled by 1/√head_dim.
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    ff_in: Linear,
    ff_out: Linear,
    ff_norm: LayerNorm,
}

pub struct Bert {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    hidden: usize,
}

/// Weight lookup with the tensor's name in the error.
struct Weights<'a> {
    map: &'a HashMap<String, Tensor>,
    prefix: &'static str,
}

impl Weights<'_> {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor, String> {
        let full = format!("{}{name}", self.prefix);
        let t = self.map.get(&full).ok_or_else(|| format!("tensor {full} is missing"))?;
        if t.dims() != shape {
            return Err(format!("tensor {full} has shape {:?}, expected {shape:?}", t.dims()));
        }
        t.to_dtype(DType::F32).map_err(|e| format!("tensor {full}: {e}"))
    }
    fn linear(&self, name: &str, out: usize, inp: usize) -> Result<Linear, String> {
        Ok(Linear::new(self.get(&format!("{name}.weight"), &[out, inp])?, Some(self.get(&format!("{name}.bias"), &[out])?)))
    }
    fn norm(&self, name: &str, size: usize, eps: f64) -> Result<LayerNorm, String> {
        Ok(LayerNorm::new(self.get(&format!("{name}.weight"), &[size])?, self.get(&format!("{name}.bias"), &[size])?, eps))
    }
}

impl Bert {
    /// Builds the encoder from the tensors of a safetensors file. Errors are plain messages; the
    /// caller attaches the file name.
    pub fn load(map: &HashMap<String, Tensor>, c: &BertConfig) -> Result<Self, String> {
        if let Some(why) = c.unsupported() {
            return Err(why);
        }
        let prefix = if map.contains_key("embeddings.word_embeddings.weight") { "" } else { "bert." };
        let w = Weights { map, prefix };
        let h = c.hidden_size;
        let emb = |name: &str, rows: usize| -> Result<Embedding, String> {
            Ok(Embedding::new(w.get(&format!("embeddings.{name}.weight"), &[rows, h])?, h))
        };
        let scale = 1.0 / ((h / c.num_attention_heads) as f64).sqrt();
        let err = |e: candle_core::Error| e.to_string();
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            let (wshape, bshape) = ([h, h], [h]);
            let part = |n: &str, what: &str| {
                let shape: &[usize] = if what == "weight" { &wshape } else { &bshape };
                w.get(&format!("{p}.attention.self.{n}.{what}"), shape)
            };
            let qkv_w =
                Tensor::cat(&[(part("query", "weight")? * scale).map_err(err)?, part("key", "weight")?, part("value", "weight")?], 0)
                    .map_err(err)?;
            let qkv_b = Tensor::cat(&[(part("query", "bias")? * scale).map_err(err)?, part("key", "bias")?, part("value", "bias")?], 0)
                .map_err(err)?;
            layers.push(Layer {
                qkv: Linear::new(qkv_w, Some(qkv_b)),
                attn_out: w.linear(&format!("{p}.attention.output.dense"), h, h)?,
                attn_norm: w.norm(&format!("{p}.attention.output.LayerNorm"), h, c.layer_norm_eps)?,
                ff_in: w.linear(&format!("{p}.intermediate.dense"), c.intermediate_size, h)?,
                ff_out: w.linear(&format!("{p}.output.dense"), h, c.intermediate_size)?,
                ff_norm: w.norm(&format!("{p}.output.LayerNorm"), h, c.layer_norm_eps)?,
            });
        }
        Ok(Self {
            word: emb("word_embeddings", c.vocab_size)?,
            position: emb("position_embeddings", c.max_position_embeddings)?,
            token_type: emb("token_type_embeddings", c.type_vocab_size)?,
            embed_norm: w.norm("embeddings.LayerNorm", h, c.layer_norm_eps)?,
            layers,
            heads: c.num_attention_heads,
            hidden: h,
        })
    }

    /// Last hidden states of a batch of token sequences, packed: (total tokens, hidden), the rows
    /// of sequence 0 first. `ids`/`type_ids` are the concatenated sequences (u32, total tokens),
    /// `lengths` their lengths.
    ///
    /// Everything but attention runs on the packed rows, so no work is spent on padding; attention
    /// alone sees a padded (batch, heads, longest, longest) layout with padding masked out.
    pub fn forward(&self, ids: &Tensor, type_ids: &Tensor, lengths: &[usize]) -> candle_core::Result<Tensor> {
        let dev = ids.device();
        let (b, s) = (lengths.len(), lengths.iter().copied().max().unwrap_or(0));
        let (h, nh) = (self.hidden, self.heads);
        let hd = h / nh;
        let total: usize = lengths.iter().sum();
        if ids.dims1()? != total {
            candle_core::bail!("{} token ids for sequences of {total} tokens", ids.dims1()?);
        }
        let positions: Vec<u32> = lengths.iter().flat_map(|&n| 0..n as u32).collect();
        let positions = Tensor::from_vec(positions, total, dev)?;
        let x = ((self.word.forward(ids)? + self.token_type.forward(type_ids)?)? + self.position.forward(&positions)?)?;
        let mut x = self.embed_norm.forward(&x)?;

        // Packed row ↔ padded slot maps (skipped when every sequence has the same length).
        let ragged = lengths.iter().any(|&n| n != s);
        let (to_padded, to_packed) = if ragged {
            let (mut pad, mut pack) = (vec![0u32; b * s], Vec::with_capacity(total));
            let mut off = 0;
            for (r, &n) in lengths.iter().enumerate() {
                for t in 0..n {
                    pad[r * s + t] = (off + t) as u32;
                    pack.push((r * s + t) as u32);
                }
                off += n;
            }
            (Some(Tensor::from_vec(pad, b * s, dev)?), Some(Tensor::from_vec(pack, total, dev)?))
        } else {
            (None, None)
        };
        // Additive mask, (b, 1, 1, s): 0 for tokens, the lowest f32 for padding (as transformers).
        let additive = if ragged {
            let m: Vec<f32> = lengths.iter().flat_map(|&n| (0..s).map(move |t| if t < n { 0.0 } else { f32::MIN })).collect();
            Some(Tensor::from_vec(m, (b, 1, 1, s), dev)?)
        } else {
            None
        };
        for l in &self.layers {
            let qkv = l.qkv.forward(&x)?; // (total, 3h)
            let qkv = match &to_padded {
                Some(idx) => qkv.index_select(idx, 0)?,
                None => qkv,
            };
            // (b·s, 3h) → (3, b, heads, s, hd) in one copy; q, k, v are contiguous slices of it.
            let qkv = qkv.reshape((b, s, 3, nh, hd))?.permute((2, 0, 3, 1, 4))?.contiguous()?;
            let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
            let mut scores = q.matmul(&k.t()?)?;
            if let Some(m) = &additive {
                scores = scores.broadcast_add(m)?;
            }
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((b * s, h))?;
            let ctx = match &to_packed {
                Some(idx) => ctx.index_select(idx, 0)?,
                None => ctx,
            };
            x = l.attn_norm.forward(&(l.attn_out.forward(&ctx)? + &x)?)?;
            let ff = l.ff_in.forward(&x)?;
            // Unoptimised (debug/test) builds of this crate would make our kernel the slowest part
            // of a test run; candle's scalar op (an optimised dependency) computes the same function.
            // Release builds, and so the Python extension, always run ours; the unit test below
            // compares the two.
            let ff = if cfg!(debug_assertions) { ff.gelu_erf()? } else { ff.apply_op1_no_bwd(&GeluErf)? };
            x = l.ff_norm.forward(&(l.ff_out.forward(&ff)? + &x)?)?;
        }
        Ok(x)
    }
}

/// Exact (erf) GELU as a candle op: `x · (1 + erf(x/√2)) / 2`.
struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "routerx-gelu-erf"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(v) = storage else { candle_core::bail!("gelu_erf: f32 input expected") };
        let Some((lo, hi)) = layout.contiguous_offsets() else { candle_core::bail!("gelu_erf: contiguous input expected") };
        let mut out = v[lo..hi].to_vec();
        gelu_erf(&mut out);
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// GELU in place, with AVX2+FMA when the CPU has them (checked at run time, so the wheel needs
/// no `target-cpu`), portable code otherwise.
pub fn gelu_erf(xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features this function is compiled for.
            unsafe { gelu_erf_avx2(xs) };
            return;
        }
    }
    gelu_loop::<false>(xs);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_erf_avx2(xs: &mut [f32]) {
    gelu_loop::<true>(xs);
}

#[inline(always)]
fn gelu_loop<const FMA: bool>(xs: &mut [f32]) {
    for x in xs.iter_mut() {
        *x = gelu1::<FMA>(*x);
    }
}

#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// erf as a rational function on [-4, 4] (Eigen's `generic_fast_erf_float`; error within a few
/// ulp of f32). Branch-free (clamp and select), so the loop vectorises.
#[inline(always)]
fn gelu1<const FMA: bool>(x: f32) -> f32 {
    let z = (x * std::f32::consts::FRAC_1_SQRT_2).clamp(-4.0, 4.0);
    let z2 = z * z;
    let mut p = madd::<FMA>(z2, -2.726_142_3e-10, 2.770_681_4e-8);
    p = madd::<FMA>(z2, p, -2.101_024e-6);
    p = madd::<FMA>(z2, p, -5.692_506_4e-5);
    p = madd::<FMA>(z2, p, -7.349_906_3e-4);
    p = madd::<FMA>(z2, p, -2.954_600_1e-3);
    p = madd::<FMA>(z2, p, -1.609_603_3e-2);
    let mut q = madd::<FMA>(z2, -1.456_607_2e-5, -2.133_740_6e-4);
    q = madd::<FMA>(z2, q, -1.682_827e-3);
    q = madd::<FMA>(z2, q, -7.373_329e-3);
    q = madd::<FMA>(z2, q, -1.426_474e-2);
    // Past |z| = 3.9, erf rounds to ±1 in f32; say so exactly, so GELU of a large negative input
    // is 0 (as torch's) rather than a tiny multiple of it.
    let erf = if z.abs() >= 3.9 { 1f32.copysign(z) } else { z * p / q };
    0.5 * x * (1.0 + erf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_matches_candles_exact_gelu() {
        let xs: Vec<f32> = (-4000..=4000).map(|i| i as f32 * 0.0025).chain([-30.0, -9.0, 9.0, 30.0, 0.0]).collect();
        let reference = Tensor::new(&xs[..], &candle_core::Device::Cpu).unwrap().gelu_erf().unwrap().to_vec1::<f32>().unwrap();
        let mut ours = xs.clone();
        gelu_erf(&mut ours);
        let mut portable = xs.clone();
        gelu_loop::<false>(&mut portable);
        for ((x, r), (a, b)) in xs.iter().zip(&reference).zip(ours.iter().zip(&portable)) {
            assert!((a - r).abs() <= 1e-6 * (1.0 + r.abs()), "gelu({x}) = {a}, reference {r}");
            assert!((b - r).abs() <= 1e-6 * (1.0 + r.abs()), "portable gelu({x}) = {b}, reference {r}");
        }
    }
}
