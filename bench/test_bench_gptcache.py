"""routerx's semantic cache against GPTCache (sqlite + faiss), same vectors, same run.

Both caches hold the same 10,000 real Quora questions (``qqp_dev.json``) with the same answers, and
both search the static embedder's vectors of them. GPTCache's ``embedding_func`` returns those
vectors precomputed (a dict lookup); routerx embeds the text inside ``Router.route`` with the same
static embedder (~25 µs), so routerx's figures include an embedding GPTCache is spared, and the
routing decision besides. Hits are QQP duplicate pairs: one question stored, its duplicate asked,
kept where routerx serves it (cosine ≥ 0.95 and past the near-miss guard); misses are questions
whose nearest stored neighbour is below cosine 0.9. GPTCache's threshold is set to the same cosine:
its score is 4 − ‖a − b‖² for unit vectors, so cosine 0.95 is a similarity_threshold of 0.975.

routerx runs with the default config (``max_wait_us = 0``: a lookup never waits for others to
join its micro-batch; ``ivf_threshold = 5000``: an inverted file of 128 cells at 10k entries, 8
searched), with HNSW instead (``hnsw_threshold = 5000``: the previous default), with exact search
(both thresholds 50000), and with exact search and ``max_wait_us = 200``. GPTCache's faiss index is exact search (``IDMap,Flat``, L2): at 10k entries one query
scans 15 MB of vectors, which bounds the ratio for routerx's exact partitions too.

Needs ``pip install gptcache sqlalchemy`` (GPTCache installs sqlalchemy itself at run time when it
is missing: the bench skips instead), the embedding model and the QQP file.
Run: ``pytest bench/test_bench_gptcache.py --benchmark-only -s``.
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import tempfile
from typing import Any, Callable, Dict, List

import pytest

from _qqp import pairs, percentiles, questions, vectors

np = pytest.importorskip("numpy")
pytest.importorskip("faiss")
pytest.importorskip("sqlalchemy", reason="GPTCache's sqlite store needs sqlalchemy, which it would pip-install at run time: `pip install sqlalchemy`")
pytest.importorskip("gptcache", reason="GPTCache not installed: `pip install gptcache`")

import routerx  # noqa: E402
from routerx.embed import INSTALL_COMMAND, minilm_dir  # noqa: E402

if minilm_dir() is None:
    pytest.skip(f"embedding model not installed: {INSTALL_COMMAND}", allow_module_level=True)

N = 10_000
MIN_SIM = 0.95
ROUNDS_ROUTERX = 2000
ROUNDS_GPTCACHE = 300


def _answer(i: int) -> str:
    return f"Answer {i}: " + "a cached model answer of a few sentences. " * 8


@pytest.fixture(scope="module")
def world() -> Dict[str, Any]:
    from routerx.embed import load_static

    static = load_static()
    qs = questions()
    dup = [(p["text_a"].strip(), p["text_b"].strip()) for p in pairs() if p["label"] == 1]
    dup = [(a, b) for a, b in dup[:8000] if a.lower() != b.lower() and len(a) <= 1000 and len(b) <= 1000]
    va = vectors(static, [a for a, _ in dup])
    vb = vectors(static, [b for _, b in dup])
    close = [dup[i] for i in np.nonzero((va * vb).sum(1) >= MIN_SIM + 0.005)[0][:1500]]
    asked = {b for _, b in close}
    stored = list(dict.fromkeys([a for a, _ in close if a not in asked] + [q for q in qs if q not in asked]))[:N]
    stored_set = set(stored)
    spare = [q for q in qs[::-1] if q not in stored_set and q not in asked][:6000]
    vs = vectors(static, stored)
    vp = vectors(static, spare)
    nearest = (vp @ vs.T).max(1)
    misses = [q for q, s in zip(spare, nearest) if s < 0.9][:1000]
    puts = [q for q, s in zip(spare, nearest) if s < 0.9][1000:3000]
    return {"static": static, "stored": stored, "vs": vs, "hits": [b for _, b in close], "misses": misses, "puts": puts}


def _routerx(world: Dict[str, Any], **settings: int) -> Any:
    sem = {"enabled": True, "embedder": "static", "max_entries": 4 * N, **settings}
    r = routerx.Router({"semantic": sem}, db=None)
    for i, q in enumerate(world["stored"]):
        # min_similarity 1: a question close to one already stored is stored too, as in GPTCache.
        r.record(r.route(q, min_similarity=1.0), _answer(i), 20, 60, 300.0)
    assert r.stats()["semantic"]["entries"] >= 0.995 * N
    assert r.semantic_index.wait(120)  # index rebuilds run on their own thread: measure after them
    return r


def _gptcache(world: Dict[str, Any], tmp: str) -> Any:
    from gptcache import Cache, Config
    from gptcache.manager import CacheBase, VectorBase, get_data_manager
    from gptcache.processor.pre import get_prompt
    from gptcache.similarity_evaluation import SearchDistanceEvaluation

    texts = world["stored"] + world["hits"] + world["misses"] + world["puts"]
    vecs = np.vstack([world["vs"], vectors(world["static"], texts[N:])])
    table = {t: vecs[i] for i, t in enumerate(texts)}

    def embed(text: str, **_: Any) -> Any:
        return table[text]

    dm = get_data_manager(
        CacheBase("sqlite", sql_url=f"sqlite:///{os.path.join(tmp, 'gptcache.db')}"),
        VectorBase("faiss", dimension=384, index_path=os.path.join(tmp, "faiss.index")),
        max_size=4 * N,
    )
    dm.import_data(world["stored"], [_answer(i) for i in range(N)], [table[q] for q in world["stored"]], [None] * N)
    c = Cache()
    c.init(pre_embedding_func=get_prompt, embedding_func=embed, data_manager=dm, similarity_evaluation=SearchDistanceEvaluation(), config=Config(similarity_threshold=(1 + MIN_SIM) / 2))
    return c


@pytest.fixture(scope="module")
def systems(world: Dict[str, Any]) -> Any:
    import faiss

    from gptcache.adapter.api import get, put

    # GPTCache writes its faiss index at interpreter exit: remove the folder after that (atexit
    # runs last-registered first, and GPTCache registers when its cache is created below).
    tmp = tempfile.mkdtemp(prefix="routerx-gptcache-")
    atexit.register(shutil.rmtree, tmp, True)
    rh = _routerx(world)
    rhnsw = _routerx(world, hnsw_threshold=5_000)
    r0 = _routerx(world, ivf_threshold=50_000, hnsw_threshold=50_000)
    r200 = _routerx(world, ivf_threshold=50_000, hnsw_threshold=50_000, max_wait_us=200)
    assert rh.semantic_index.stats()["ivf_partitions"] == 1 and rhnsw.semantic_index.stats()["hnsw_partitions"] == 1
    assert r0.semantic_index.stats()["ivf_partitions"] + r0.semantic_index.stats()["hnsw_partitions"] == 0
    faiss.omp_set_num_threads(1)  # routerx's default; both libraries share faiss's setting
    gc = _gptcache(world, tmp)
    # Keep the hit queries that routerx serves from its semantic layer, then check GPTCache agrees.
    # How many of the close duplicates each index serves: exact search is the reference.
    served = {name: [r.route(q, no_store=True).cache == "semantic" for q in world["hits"]] for name, r in (("routerx", rh), ("routerx_hnsw", rhnsw), ("routerx_exact", r0))}
    hits = [q for j, q in enumerate(world["hits"]) if all(v[j] for v in served.values())][:500]
    assert sum(served["routerx"]) >= 0.99 * sum(served["routerx_exact"]), {k: sum(v) for k, v in served.items()}
    assert len(hits) >= 200, f"only {len(hits)} semantic hits among {len(world['hits'])} close duplicates"
    gc_hits = sum(get(q, cache_obj=gc) is not None for q in hits)
    assert gc_hits >= 0.9 * len(hits), f"GPTCache served {gc_hits} of routerx's {len(hits)} hits"
    misses = world["misses"][:500]
    assert all(r.route(q, no_store=True).cache == "miss" for q in misses for r in (r0, rh, rhnsw))
    assert all(get(q, cache_obj=gc) is None for q in misses)
    return {"world": world, "hits": hits, "misses": misses, "get": get, "put": put, "gptcache": gc, "routerx": rh, "routerx_hnsw": rhnsw, "routerx_exact": r0, "routerx_wait200": r200, "results": {}, "served": {k: sum(v) for k, v in served.items()}}


def _cycle(items: List[str]) -> Callable[[], str]:
    it = itertools.cycle(items)
    return lambda: next(it)


def _run(benchmark: Any, systems: Dict[str, Any], key: str, fn: Callable[[], Any], rounds: int) -> None:
    benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=min(50, rounds // 10))
    _record(benchmark, systems, key)


def _record(benchmark: Any, systems: Dict[str, Any], key: str) -> None:
    p50, p99 = percentiles(benchmark.stats.stats.data)
    systems["results"][key] = (p50, p99)
    benchmark.extra_info.update(p50_us=round(p50, 1), p99_us=round(p99, 1))
    if len(systems["results"]) == 2 * len(GETS) + 2:
        _summary(systems)


GETS = ["gptcache", "routerx", "routerx_hnsw", "routerx_exact", "routerx_wait200"]


@pytest.mark.benchmark(group="semantic-vs-gptcache")
@pytest.mark.parametrize("system", GETS)
@pytest.mark.parametrize("kind", ["hit", "miss"])
def test_get(benchmark: Any, systems: Dict[str, Any], system: str, kind: str) -> None:
    nxt = _cycle(systems["hits" if kind == "hit" else "misses"])
    if system == "gptcache":
        get, c = systems["get"], systems["gptcache"]
        want_none = kind == "miss"

        def one() -> None:
            assert (get(nxt(), cache_obj=c) is None) == want_none

        _run(benchmark, systems, f"{system} get {kind}", one, ROUNDS_GPTCACHE)
    else:
        r = systems[system]
        want = "semantic" if kind == "hit" else "miss"

        def one() -> None:
            assert r.route(nxt(), no_store=True).cache == want

        _run(benchmark, systems, f"{system} get {kind}", one, ROUNDS_ROUTERX)


@pytest.mark.benchmark(group="semantic-vs-gptcache")
@pytest.mark.parametrize("system", ["gptcache", "routerx"])
def test_put(benchmark: Any, systems: Dict[str, Any], system: str) -> None:
    """A new entry: GPTCache's ``put`` against routerx's ``record`` of a decision routed beforehand
    (the route is the miss that precedes every real insert; it is outside the timing)."""
    puts = systems["world"]["puts"]
    if system == "gptcache":
        put, c = systems["put"], systems["gptcache"]
        nxt = _cycle(puts[:1000])
        _run(benchmark, systems, "gptcache put", lambda: put(nxt(), _answer(0), cache_obj=c), ROUNDS_GPTCACHE)
    else:
        r = systems["routerx"]
        it = iter(puts[1000:])

        def setup() -> Any:
            return (r.route(next(it)),), {}

        benchmark.pedantic(lambda d: r.record(d, _answer(1), 20, 60, 300.0), setup=setup, rounds=900, iterations=1)
        _record(benchmark, systems, "routerx put")


def _summary(systems: Dict[str, Any]) -> None:
    """Printed (run with -s) once every get and put above has been measured."""
    res = systems["results"]
    print(f"\n{N} entries, {len(systems['hits'])} hit / {len(systems['misses'])} miss queries, faiss threads 1")
    print("close duplicates served: " + ", ".join(f"{k} {v} of {len(systems['world']['hits'])}" for k, v in systems["served"].items()))
    print(f"{'':<28}{'p50 µs':>10}{'p99 µs':>10}")
    for k, (p50, p99) in sorted(res.items()):
        print(f"{k:<28}{p50:>10.1f}{p99:>10.1f}")
    for kind in ("hit", "miss"):
        g = res[f"gptcache get {kind}"]
        for s in GETS[1:]:
            x = res[f"{s} get {kind}"]
            print(f"get {kind}: gptcache / {s:<15} = {g[0] / x[0]:6.1f}x at p50, {g[1] / x[1]:6.1f}x at p99")
    g, x = res["gptcache put"], res["routerx put"]
    print(f"put: gptcache / routerx = {g[0] / x[0]:.1f}x at p50, {g[1] / x[1]:.1f}x at p99")
