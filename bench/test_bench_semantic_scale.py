"""Semantic lookup latency at 10k and 100k entries, both embedders, embedding excluded and included.

Entries are real Quora questions (``qqp_dev.json``, 112k distinct): the first 10k or 100k in file
order. Queries are 500 questions from past the first 100k (never stored; many are duplicates of
stored ones, as in the file's pairs). Vectors:

- static: the static embedder's vectors of every entry and query;
- minilm: all-MiniLM-L6-v2's vectors of the first 10k entries and of the queries (cached in
  ``~/.cache/routerx/qqp-embed/``: ~15 ms a text, computed once); at 100k, entries 10k–100k carry
  the static embedder's vectors of their text (distilled from MiniLM, same space, lower quality),
  because embedding 90k more texts with MiniLM takes over 20 minutes here.

"excluded": one ``SemanticIndex.search`` of a precomputed query vector, and recall@1 against
exact search after the core's exact re-scoring of the top 4 (the faiss search of one
scope, as the core's batcher calls it; exact below ``ivf_threshold`` = 5k, an inverted file (float16 vectors, ~√n cells, 8 searched) above it, as the Router builds it), 1
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
#: Cosine levels at which the share of queries that find a neighbour is reported.
LEVELS = (0.8, 0.9, 0.95)

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
        "recall": {},
        "built": {},
    }


def _minilm(data: Dict[str, Any]) -> None:
    """MiniLM's vectors, on first use only (see test_route_text_to_answer)."""
    if "minilm" not in data:
        data["minilm"] = vectors(data["embedders"]["minilm"], data["texts"][:MINILM_ENTRIES])
        data["minilm_q"] = vectors(data["embedders"]["minilm"], data["queries"])


def _index(data: Dict[str, Any], embedder: str, size: int, **settings: Any) -> Any:
    """The index of (embedder, size, settings), built once; the previous one is dropped to bound memory."""
    key = (embedder, size, tuple(sorted(settings.items())))
    if key not in data["built"]:
        from routerx.semantic import SemanticIndex

        data["built"].clear()
        x = data["static"][:size].copy()
        if embedder == "minilm":
            x[:MINILM_ENTRIES] = data["minilm"]
        idx = SemanticIndex(384, threads=1, **settings)
        idx.add_many((SCOPE, i, x[i].tobytes()) for i in range(size))
        data["built"][key] = idx
        data["stored"] = x
    return data["built"][key]


def _recall(data: Dict[str, Any], idx: Any, qv: Any) -> Tuple[float, Dict[float, Tuple[float, int]]]:
    """recall@1 against exact search over every query, after the exact re-scoring of the top 4
    the core does (a different id of the same cosine counts as found); and, for cosine levels t
    a cache threshold could take, of the queries whose exact best reaches t, the share that finds
    a candidate at t (what decides a hit) and how many such queries there are."""
    x = data["stored"]
    ids, _ = idx.search(qv.tobytes(), [SCOPE] * len(qv), 4)
    ids = np.frombuffer(ids, dtype=np.int64).reshape(len(qv), 4)
    exact = qv @ x.T
    best = exact.max(axis=1)
    got = np.array([max((float(exact[r, i]) for i in row if i >= 0), default=-1.0) for r, row in enumerate(ids)])
    at = {t: (float((got[best >= t] >= t).mean()) if (best >= t).any() else float("nan"), int((best >= t).sum())) for t in LEVELS}
    return float((got >= best - 1e-6).mean()), at


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
    assert r.semantic_index.wait(120)  # index rebuilds run on their own thread: measure after them
    texts = itertools.cycle(data["queries"])
    outcomes: List[str] = []
    benchmark.pedantic(lambda: outcomes.append(r.route(next(texts), no_store=True).cache), rounds=ROUNDS, iterations=1, warmup_rounds=20)
    hits = outcomes.count("semantic")
    benchmark.extra_info["semantic_hits"] = hits
    _record(benchmark, data, ("static", f"{size // 1000}k", f"route ({hits}/{len(outcomes)} hits)"))
    r.close()


CASES = [(e, n, m) for e in ("static", "minilm") for n in (10_000, 100_000) for m in ("excluded", "included")]
#: The same search with HNSW in place of the inverted file (the index past ``hnsw_threshold``).
CASES.insert(4, ("static", 100_000, "excluded-hnsw"))


@pytest.mark.parametrize("embedder,size,mode", CASES, ids=[f"{e}-{n // 1000}k-{m}" for e, n, m in CASES])
def test_lookup(benchmark: Any, data: Dict[str, Any], embedder: str, size: int, mode: str) -> None:
    if embedder == "minilm":
        _minilm(data)
    hnsw = mode == "excluded-hnsw"
    idx = _index(data, embedder, size, **({"hnsw_threshold": 5_000} if hnsw else {}))
    assert idx._parts[SCOPE].kind == ("hnsw" if hnsw else "ivf" if size > idx.ivf_threshold else "flat")
    scopes = [SCOPE]
    if mode.startswith("excluded"):
        qv = data[f"{embedder}_q"]
        it = itertools.cycle([qv[i].tobytes() for i in range(len(qv))])
        fn = lambda: idx.search(next(it), scopes, 4)  # noqa: E731
    else:
        emb = data["embedders"][embedder]
        texts = itertools.cycle(data["queries"])

        def fn() -> Any:
            raw, _ = emb.embed_raw([next(texts)])
            return idx.search(raw, scopes, 4)

    rounds = ROUNDS if embedder == "static" or mode.startswith("excluded") else 200
    ids, _ = benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=20)
    assert np.frombuffer(ids, dtype=np.int64)[0] >= 0
    if mode.startswith("excluded"):
        r1, at = _recall(data, idx, data[f"{embedder}_q"])
        benchmark.extra_info.update(index=idx._parts[SCOPE].kind, recall_at_1=r1, found_at={str(t): v for t, v in at.items()})
        data["recall"][(embedder, f"{size // 1000}k", idx._parts[SCOPE].kind)] = (r1, at)
    _record(benchmark, data, (embedder, f"{size // 1000}k", mode))


def test_summary(benchmark: Any, data: Dict[str, Any]) -> None:
    """Prints the table of every figure above (run with -s); times nothing itself."""
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    print("\nsemantic lookup latency, 1 faiss thread (µs)")
    print(f"{'embedder':<9}{'entries':>8}  {'mode':<24}{'p50':>9}{'p99':>9}")
    for (e, n, m), (p50, p99) in data["results"].items():
        print(f"{e:<9}{n:>8}  {m:<24}{p50:>9.1f}{p99:>9.1f}")
    print(f"\n{'embedder':<9}{'entries':>8}  {'index':<6}{'recall@1':>10}" + "".join(f"{'found at ' + str(t):>20}" for t in LEVELS))
    for (e, n, kind), (r1, at) in data["recall"].items():
        print(f"{e:<9}{n:>8}  {kind:<6}{r1:>10.3f}" + "".join(f"{at[t][0]:>12.3f} of {at[t][1]:<5}" for t in LEVELS))
