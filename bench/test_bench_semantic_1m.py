"""The semantic index at 1M entries: HNSW search latency (1 faiss thread) and recall@1 against
exact search. Opt-in (``ROUTERX_BENCH_1M=1``): 7.2 GB of memory at the peak and one HNSW build of
7-10 minutes on two cores.

Vectors are real-like: the static embedder's vectors of 111k real Quora questions
(``qqp_dev.json``), repeated to 1M with Gaussian noise of norm ``NOISE`` (cosine ≈ 0.98 to the
original, every vector distinct) and normalised. Queries are the vectors of 1,531 further questions,
none of them indexed. Random Gaussian vectors, HNSW's worst case, are not measured: one build is
kept to one kind of vectors.

The index is the one routerx builds: ``SemanticIndex.add_many`` past ``hnsw_threshold`` makes one
HNSW partition (``hnsw_m``, ``hnsw_ef_construction``). ``efSearch`` is swept on that
build, since it is a search-time setting. recall@1: the share of queries whose HNSW top-1 is
exact search's top-1 (``IndexFlatIP``), a different id of the same cosine counting as found.

Run: ``ROUTERX_BENCH_1M=1 pytest bench/test_bench_semantic_1m.py --benchmark-only -s``
(``ROUTERX_BENCH_1M_M=64`` builds with another HNSW M).
"""

from __future__ import annotations

import os
import time
from typing import Any, Dict, List

import pytest

if os.environ.get("ROUTERX_BENCH_1M") != "1":
    pytest.skip("1M-entry index bench: opt-in with ROUTERX_BENCH_1M=1 (~7 GB of memory, 7-10 minutes of HNSW build)", allow_module_level=True)

from _qqp import percentiles, questions, vectors  # noqa: E402

np = pytest.importorskip("numpy")
faiss = pytest.importorskip("faiss")

from routerx.embed import INSTALL_COMMAND, minilm_dir  # noqa: E402

if minilm_dir() is None:
    pytest.skip(f"embedding model not installed: {INSTALL_COMMAND}", allow_module_level=True)

N = 1_000_000
BASES = 111_000
NOISE = 0.2
SCOPE = 7
EF_SWEEP = [32, 64, 96, 128, 160, 192, 208, 224, 256, 512]
#: The efSearch whose recall@1 is held to 0.95 (with huge pages, p99 0.92 ms on the 2-core VM).
TARGET_EF = 208
#: HNSW M of the build (default: SemanticIndex's); one build per run, so another M is another run.
HNSW_M = int(os.environ.get("ROUTERX_BENCH_1M_M", "0"))
BUILD_THREADS = 2


def _partition_hnsw(idx: Any) -> Any:
    """The faiss HNSW index under the scope's id map, to change efSearch on the built index."""
    return faiss.downcast_index(idx._parts[SCOPE].index.index)


@pytest.fixture(scope="module")
def world() -> Dict[str, Any]:
    from routerx.embed import load_static
    from routerx.semantic import SemanticIndex

    qs = questions()
    if len(qs) < BASES + 1000:
        pytest.skip(f"need {BASES + 1000} distinct questions, the QQP file has {len(qs)}")
    static = load_static()
    base = vectors(static, qs[:BASES])
    xq = np.ascontiguousarray(vectors(static, qs[BASES:]))
    rng = np.random.default_rng(1)
    x = np.empty((N, base.shape[1]), dtype=np.float32)
    for lo in range(0, N, 100_000):
        hi = min(N, lo + 100_000)
        x[lo:hi] = base[np.arange(lo, hi) % BASES]
        noisy = np.arange(lo, hi) >= BASES  # the first copy of each question is its real vector
        g = rng.standard_normal((int(noisy.sum()), base.shape[1])).astype(np.float32)
        g *= NOISE / np.linalg.norm(g, axis=1, keepdims=True)
        x[lo:hi][noisy] += g
    x /= np.linalg.norm(x, axis=1, keepdims=True)

    faiss.omp_set_num_threads(BUILD_THREADS)
    exact = faiss.IndexFlatIP(x.shape[1])
    exact.add(x)
    t0 = time.perf_counter()
    true_sim, true_id = exact.search(xq, 1)
    exact_s = time.perf_counter() - t0
    del exact

    idx = SemanticIndex(x.shape[1], threads=BUILD_THREADS, **({"hnsw_m": HNSW_M} if HNSW_M else {}))
    t0 = time.perf_counter()
    idx.add_many((SCOPE, i, x[i].tobytes()) for i in range(N))
    build_s = time.perf_counter() - t0
    assert idx.stats()["hnsw_partitions"] == 1 and idx.stats()["vectors"] == N
    faiss.omp_set_num_threads(1)
    print(f"\n1M vectors ({BASES} real + noise {NOISE}), HNSW M={idx.hnsw_m} efConstruction={idx.hnsw_ef_construction} build {build_s:.0f} s on {BUILD_THREADS} threads; exact search of {len(xq)} queries {exact_s:.1f} s")
    return {"idx": idx, "xq": xq, "true_id": true_id[:, 0], "true_sim": true_sim[:, 0], "build_s": build_s, "sweep": {}}


def _measure(world: Dict[str, Any], ef: int) -> Dict[str, float]:
    idx, xq = world["idx"], world["xq"]
    _partition_hnsw(idx).hnsw.efSearch = ef
    found = 0
    gaps: List[float] = []
    lat: List[float] = []
    for i in range(len(xq)):
        q = xq[i].tobytes()
        t0 = time.perf_counter()
        ids, sims = idx.search(q, [SCOPE], 1)
        lat.append(time.perf_counter() - t0)
        got_id = int(np.frombuffer(ids, dtype=np.int64)[0])
        got_sim = float(np.frombuffer(sims, dtype=np.float32)[0])
        hit = got_id == world["true_id"][i] or got_sim >= world["true_sim"][i] - 1e-6
        found += hit
        if not hit:
            gaps.append(float(world["true_sim"][i]) - got_sim)
    p50, p99 = percentiles(lat)
    # How far below the true best the missed top-1s are: near-copies of one question differ by little.
    gap = sorted(gaps)[len(gaps) // 2] if gaps else 0.0
    return {"ef_search": ef, "recall_at_1": found / len(xq), "p50_us": p50, "p99_us": p99, "miss_cos_gap_p50": gap}


@pytest.mark.benchmark(group="semantic-1m")
def test_hnsw_1m_search(benchmark: Any, world: Dict[str, Any]) -> None:
    """One query's search at the configured defaults (``SemanticIndex.ef_search``), then recall@1
    and latency per efSearch on the same build (printed; run with -s)."""
    idx, xq = world["idx"], world["xq"]
    _partition_hnsw(idx).hnsw.efSearch = idx.ef_search
    qs = [xq[i].tobytes() for i in range(len(xq))]
    it = iter(qs * 3)
    benchmark.pedantic(lambda: idx.search(next(it), [SCOPE], 1), rounds=len(qs) * 2, iterations=1, warmup_rounds=len(qs) // 2)
    p50, p99 = percentiles(benchmark.stats.stats.data)
    m = _measure(world, idx.ef_search)
    benchmark.extra_info.update(p50_us=round(p50, 1), p99_us=round(p99, 1), recall_at_1=m["recall_at_1"], ef_search=idx.ef_search, hnsw_m=idx.hnsw_m, build_s=round(world["build_s"], 1))
    print(f"\ndefaults M={idx.hnsw_m} efSearch={idx.ef_search}: p50 {p50:.0f} µs, p99 {p99:.0f} µs, recall@1 {m['recall_at_1']:.4f}")
    print(f"{'efSearch':>9}{'recall@1':>10}{'p50 µs':>9}{'p99 µs':>9}{'miss gap':>10}")
    for ef in EF_SWEEP:
        _measure(world, ef)  # warm the pages this setting visits
        s = _measure(world, ef)
        world["sweep"][ef] = s
        print(f"{ef:>9}{s['recall_at_1']:>10.4f}{s['p50_us']:>9.0f}{s['p99_us']:>9.0f}{s['miss_cos_gap_p50']:>10.4f}")
    benchmark.extra_info["sweep"] = list(world["sweep"].values())
    # The default efSearch (64) is a cache's: thresholds need a neighbour above them, not the
    # nearest one. recall@1 0.95 is the setting a user asks for with hnsw_ef_search = TARGET_EF.
    t = world["sweep"][TARGET_EF]
    assert t["recall_at_1"] >= 0.95, f"recall@1 {t['recall_at_1']:.4f} at efSearch {TARGET_EF}"
