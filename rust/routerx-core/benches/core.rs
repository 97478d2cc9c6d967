//! Criterion benches of the hot path, mirroring `bench/test_bench_route.py` at the Python level.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use routerx_core::cache::CacheConfig;
use routerx_core::classifier::Classifier;
use routerx_core::features::{count_tokens, Features};
use routerx_core::policy::{Candidate, ModelInfo, PolicyTable};
use routerx_core::request::{Constraints, Request};
use routerx_core::router::{Core, CoreConfig};

/// About 200 o200k tokens of ordinary prose with a question.
pub fn prompt_200() -> String {
    let base = "Our team is migrating a billing service from a monolith to separate services. \
        The current system writes invoices, applies discounts, and sends reminder emails every night. \
        We want to keep the invoice numbering strictly sequential per customer and avoid double charges \
        when a job is retried after a crash. ";
    let mut s = base.repeat(3);
    s.push_str("What design would you recommend, and what are the main risks to watch during the cut-over?");
    s
}

fn table() -> PolicyTable {
    let models: Vec<ModelInfo> = (0..12)
        .map(|i| ModelInfo {
            name: format!("model-{i}"),
            provider: "p".into(),
            context_window: 128_000,
            quality: [0.4 + 0.05 * i as f32; 9],
        })
        .collect();
    let candidates = (0..12u32)
        .flat_map(|m| {
            ["gpu-standard", "batch", "lpu-premium"].into_iter().enumerate().map(move |(t, tier)| Candidate {
                model: m,
                tier: tier.into(),
                price_in: (0.1 + m as f64) / 1e6,
                price_out: (0.4 + 4.0 * m as f64) / 1e6,
                ttft_ms: [300.0, 3.6e6, 150.0][t],
                prefill_tps: 5000.0,
                decode_tps: [80.0, 80.0, 900.0][t],
            })
        })
        .collect();
    PolicyTable { models, candidates, quality_floor: 0.45, quality_span: 0.5, max_fallbacks: 3, reference_model: 11 }
}

fn benches(c: &mut Criterion) {
    let text = prompt_200();
    assert!((180..=230).contains(&count_tokens(&text)), "{}", count_tokens(&text));
    let core = Core::new(CoreConfig { cache: CacheConfig::default(), ..Default::default() }, Classifier::default_model(), table()).unwrap();
    let req = Request::from_prompt("bench", text.clone());
    let cons = Constraints::default();
    c.bench_function("count_tokens_200", |b| b.iter(|| count_tokens(black_box(&text))));
    c.bench_function("count_tokens_200_regex", |b| b.iter(|| bpe_openai::o200k_base().count(black_box(text.as_str()))));
    c.bench_function("features_200", |b| b.iter(|| Features::extract(black_box(&req))));
    let miss = Constraints { cache: routerx_core::request::CacheControl { no_cache: true, ..Default::default() }, ..Default::default() };
    c.bench_function("route_miss_200", |b| b.iter(|| core.route(black_box(&req), &miss).unwrap()));
    let o = core.route(&req, &cons).unwrap();
    core.record(&o, "answer".into(), 200, 300, 1000.0, true).unwrap();
    c.bench_function("route_exact_hit_200", |b| b.iter(|| core.route(black_box(&req), &cons).unwrap()));

    // The learned router's prediction: 11 models × 384 weights (mirrors bench/test_bench_quality.py).
    let models: Vec<serde_json::Value> = (0..11)
        .map(|j| serde_json::json!({"name": format!("model-{j}"), "bias": 0.1 * j as f32, "weights": (0..384).map(|i| ((i * 7 + j * 13) % 17) as f32 / 17.0 - 0.5).collect::<Vec<f32>>()}))
        .collect();
    let doc = serde_json::json!({"format": "routerx-quality", "version": 1, "embedder": "bench", "embedder_id": "bench@0", "dim": 384, "tail_chars": 1024, "models": models}).to_string();
    let qm = routerx_core::quality::QualityModel::from_json(&doc, "bench").unwrap();
    let v: Vec<f32> = (0..384).map(|i| ((i % 11) as f32 - 5.0) / 40.0).collect();
    c.bench_function("quality_predict_11x384", |b| b.iter(|| qm.predict(black_box(&v), "")));
    let embed: routerx_core::quality::EmbedFn = {
        let v = v.clone();
        std::sync::Arc::new(move |_: &str| Ok(v.clone()))
    };
    let names: Vec<String> = (0..12).map(|i| format!("model-{i}")).collect();
    let mut qr = routerx_core::quality::QualityRouter::new(qm, embed, &names, &Default::default(), Default::default()).unwrap();
    qr.willingness_to_pay = Some(0.01);
    core.set_quality(Some(std::sync::Arc::new(qr)));
    c.bench_function("route_miss_200_learned_precomputed_vector", |b| b.iter(|| core.route(black_box(&req), &miss).unwrap()));

    // The semantic cache's near-miss guard: a query's signature (once per lookup and per stored
    // answer) and the check of a candidate against it.
    use routerx_core::semantic::guard::{check, Signature};
    let q = "How do I convert a PDF to an HTML page and keep the formatting of its tables?";
    let cached = Signature::of("What is the best way to convert PDF files to HTML pages and keep the tables?");
    c.bench_function("guard_signature_question", |b| b.iter(|| Signature::of(black_box(q))));
    let sq = Signature::of(q);
    c.bench_function("guard_check_pair", |b| b.iter(|| check(black_box(&sq), black_box(&cached))));
}

criterion_group!(core_benches, benches);
criterion_main!(core_benches);
