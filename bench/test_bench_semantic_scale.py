"""Semantic lookup latency at 10k and 100k entries, both embedders, embedding excluded and included.

Entries are real Quora questions (``qqp_dev.json``, 112k distinct): the first 10k or 100k in file
order. Queries are 500 questions from past the first 100k (never stored; many are duplicates of
stored ones, as in the file's pairs). Vectors:

- static: the static embedder's vectors of every entry and query;
- minilm: all-MiniLM-L6-v2's vectors of the first 10k entries and of the queries (cached in
  ``~/.cache/routerx/qqp-embed/``: ~15 ms a text, computed once); at 100k, entries 10k–100k carry
  the static embedder's vectors of their text (distilled from MiniLM, same space, lower quality),
  because embedding 90k more texts with MiniLM takes over 20 minutes here.

"excluded": one ``SemanticIndex.search`` of a precomputed query vector (the faiss search of one
scope, as the core's batcher calls it; exact below ``hnsw_threshold`` = 5k, HNSW (float16 vectors) above it, as the Router builds it), 1
faiss thread. "included": query text → embedding → search. "route": ``Router.route`` from text to
answer (exact check, classification, embedding, search, entry fetch, guard), static embedder,
``max_wait_us = 0``, 10k entries put with ``record`` like real answers.

Run: ``pytest bench/test_bench_semantic_scale.py --benchmark-only -s`` (a few minutes the first
time, for MiniLM's vectors).
"""

from __future__ import annotations

import itertools
from typing import Any, Dict, List, Tuple

import pytest

from _qqp import percentiles, questions, vectors

np = pytest.importorskip("numpy")
pytest.importorskip("faiss")

import routerx  # noqa: E402
from routerx.embed import INSTALL_COMMAND, minilm_dir  # noqa: E402

if minilm_dir() is None:
    pytest.skip(f"embedding model not installed: {INSTALL_COMMAND}", allow_module_level=True)

MINILM_ENTRIES = 10_000
QUERIES = 500
ROUNDS = 1000
SCOPE = 7

pytestmark = pytest.mark.benchmark(group="semantic-scale")


@pytest.fixture(scope="module")
def data() -> Dict[str, Any]:
    from routerx.embed import load_minilm, load_static

    qs = questions()
    if len(qs) < 100_000 + QUERIES:
        pytest.skip(f"need {100_000 + QUERIES} distinct questions, the QQP file has {len(qs)}")
    minilm = load_minilm()
    static = load_static(minilm)
    queries = qs[100_000 : 100_000 + QUERIES]
    return {
        "texts": qs[:100_000],
        "queries": queries,
        "embedders": {"static": static, "minilm": minilm},
        "static": vectors(static, qs[:100_000]),
        "static_q": vectors(static, queries),
        "results": {},
        "built": {},
    }


def _minilm(data: Dict[str, Any]) -> None:
    """MiniLM's vectors, on first use only (see test_route_text_to_answer)."""
    if "minilm" not in data:
        data["minilm"] = vectors(data["embedders"]["minilm"], data["texts"][:MINILM_ENTRIES])
        data["minilm_q"] = vectors(data["embedders"]["minilm"], data["queries"])


def _index(data: Dict[str, Any], embedder: str, size: int) -> Any:
    """The index of (embedder, size), built once; the previous one is dropped to bound memory."""
    key = (embedder, size)
    if key not in data["built"]:
        from routerx.semantic import SemanticIndex

        data["built"].clear()
        x = data["static"][:size].copy()
        if embedder == "minilm":
            x[:MINILM_ENTRIES] = data["minilm"]
        idx = SemanticIndex(384, threads=1)
        idx.add_many((SCOPE, i, x[i].tobytes()) for i in range(size))
        data["built"][key] = idx
    return data["built"][key]


def _record(benchmark: Any, data: Dict[str, Any], key: Tuple[str, ...]) -> None:
    p50, p99 = percentiles(benchmark.stats.stats.data)
    data["results"][key] = (p50, p99)
    benchmark.extra_info.update(p50_us=round(p50, 1), p99_us=round(p99, 1))


def test_route_text_to_answer(benchmark: Any, data: Dict[str, Any]) -> None:
    """10k entries only: filling a router goes through ``route`` + ``record`` one question at a
    time (each a lookup), minutes per 100k here. Runs first: once MiniLM has embedded in this
    process, the same lookups measured ~10x slower on a loaded machine (1.2 ms -> 12 ms p50 at 10k)."""
    data["built"].clear()
    size = 10_000
    r = routerx.Router({"semantic": {"enabled": True, "embedder": "static", "max_wait_us": 0, "max_entries": 2 * size}}, db=None)
    for i, q in enumerate(data["texts"][:size]):
        # min_similarity 1: a question close to one already stored is stored too.
        r.record(r.route(q, min_similarity=1.0), f"answer {i}", 20, 60, 300.0)
    assert r.stats()["semantic"]["entries"] >= 0.995 * size
    texts = itertools.cycle(data["queries"])
    outcomes: List[str] = []
    benchmark.pedantic(lambda: outcomes.append(r.route(next(texts), no_store=True).cache), rounds=ROUNDS, iterations=1, warmup_rounds=20)
    hits = outcomes.count("semantic")
    benchmark.extra_info["semantic_hits"] = hits
    _record(benchmark, data, ("static", f"{size // 1000}k", f"route ({hits}/{len(outcomes)} hits)"))
    r.close()


CASES = [(e, n, m) for e in ("static", "minilm") for n in (10_000, 100_000) for m in ("excluded", "included")]


@pytest.mark.parametrize("embedder,size,mode", CASES, ids=[f"{e}-{n // 1000}k-{m}" for e, n, m in CASES])
def test_lookup(benchmark: Any, data: Dict[str, Any], embedder: str, size: int, mode: str) -> None:
    if embedder == "minilm":
        _minilm(data)
    idx = _index(data, embedder, size)
    assert idx.stats()["hnsw_partitions"] == (1 if size > idx.hnsw_threshold else 0)
    scopes = [SCOPE]
    if mode == "excluded":
        qv = data[f"{embedder}_q"]
        it = itertools.cycle([qv[i].tobytes() for i in range(len(qv))])
        fn = lambda: idx.search(next(it), scopes, 4)  # noqa: E731
    else:
        emb = data["embedders"][embedder]
        texts = itertools.cycle(data["queries"])

        def fn() -> Any:
            raw, _ = emb.embed_raw([next(texts)])
            return idx.search(raw, scopes, 4)

    rounds = ROUNDS if embedder == "static" or mode == "excluded" else 200
    ids, _ = benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=20)
    assert np.frombuffer(ids, dtype=np.int64)[0] >= 0
    _record(benchmark, data, (embedder, f"{size // 1000}k", mode))


def test_summary(benchmark: Any, data: Dict[str, Any]) -> None:
    """Prints the table of every figure above (run with -s); times nothing itself."""
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    print("\nsemantic lookup latency, 1 faiss thread (µs)")
    print(f"{'embedder':<9}{'entries':>8}  {'mode':<24}{'p50':>9}{'p99':>9}")
    for (e, n, m), (p50, p99) in data["results"].items():
        print(f"{e:<9}{n:>8}  {m:<24}{p50:>9.1f}{p99:>9.1f}")
