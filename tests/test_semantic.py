"""The semantic cache end to end: paraphrase hits, scope isolation, the near-miss guard, controls,
bad input, eviction churn and 64 threads through the micro-batcher."""

from __future__ import annotations

import math
import threading
from typing import Any, Dict, List

import pytest

import routerx
from routerx.embed import INSTALL_COMMAND, minilm_dir

from conftest import run_threads

pytest.importorskip("faiss")
pytest.importorskip("numpy")
if minilm_dir() is None:
    pytest.skip(f"embedding model not installed: {INSTALL_COMMAND}", allow_module_level=True)


def make(**semantic: Any) -> routerx.Router:
    return routerx.Router({"semantic": {"enabled": True, **semantic}}, db=None)


@pytest.fixture(scope="module")
def router() -> routerx.Router:
    return make()


def remember(r: routerx.Router, prompt: Any, answer: str, **kw: Any) -> None:
    d = r.route(prompt, **kw)
    assert d.cache == "miss", d
    r.record(d, answer, input_tokens=20, output_tokens=5, latency_ms=100)


def test_a_paraphrase_is_answered_from_the_semantic_cache(router: routerx.Router) -> None:
    remember(router, "How do I reset my password?", "Settings → Security → Reset password.", tenant="p1")
    d = router.route("How can I reset my password?", tenant="p1")
    assert d.cache == "semantic" and d.cached_response == "Settings → Security → Reset password."
    assert d.similarity is not None and 0.9 <= d.similarity <= 1.0
    assert d.semantic_entry is not None and d.entry_age_s is not None and d.entry_age_s >= 0
    assert d.predicted_cost_usd == 0 and d.cost_avoided_usd > 0
    # The exact request is still an exact hit.
    assert router.route("How do I reset my password?", tenant="p1").cache == "exact"
    # Recording a hit changes nothing.
    assert router.record(d, "other", 1, 1, 1.0) == routerx.Recorded(0.0, False)
    s = router.stats()
    assert s["semantic_hits"] >= 1 and s["semantic"]["hits"] >= 1 and s["semantic"]["enabled"]
    assert s["semantic"]["index"]["vectors"] >= 1 and s["semantic"]["model_id"].startswith("all-MiniLM-L6-v2@")


def test_scope_tenant_system_prompt_turns_and_models(router: routerx.Router) -> None:
    remember(router, "What is the capital of Australia?", "Canberra.", tenant="s1")
    assert router.route("What's the capital city of Australia?", tenant="s1").cache == "semantic"
    assert router.route("What's the capital city of Australia?", tenant="s2").cache == "miss"
    sys_a = [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "What is the capital of Australia?"}]
    assert router.route(sys_a[:1] + [{"role": "user", "content": "What's the capital city of Australia?"}], tenant="s1").cache == "miss"
    turns = [
        {"role": "user", "content": "Tell me about Peru."},
        {"role": "assistant", "content": "Peru is in South America."},
        {"role": "user", "content": "What is its capital?"},
    ]
    remember(router, turns, "Lima.", tenant="s1")
    other = [dict(m) for m in turns]
    other[0]["content"] = "Tell me about Chile."
    other[1]["content"] = "Chile is in South America."
    assert router.route(other, tenant="s1").cache == "miss", "earlier turns are part of the scope"
    same = [dict(m) for m in turns]
    same[2]["content"] = "What is the capital?"
    d = router.route(same, tenant="s1")
    assert d.cache in ("semantic", "miss")
    if d.cache == "semantic":
        assert d.cached_response == "Lima."
    assert router.route("What's the capital city of Australia?", tenant="s1", models=["gpt-4o"]).cache == "miss", "model scope"


@pytest.mark.parametrize(
    "stored,asked",
    [
        ("Turn on the living room lights", "Turn off the living room lights"),
        ("Write a Python function that returns the first 10 prime numbers", "Write a Python function that returns the first 20 prime numbers"),
        ("Is it safe to run rm -rf on the build folder?", "Is it not safe to run rm -rf on the build folder?"),
        ("Convert 5 miles to kilometers", "Convert 50 miles to kilometers"),
        ("Summarize report_2023.pdf", "Summarize report_2024.pdf"),
        ("Should I run git push --force here?", "Should I run git push --dry-run here?"),
        ("How do I enable two-factor authentication?", "How do I disable two-factor authentication?"),
        ("What is the best PDF to HTML converter?", "What is the best HTML to PDF converter?"),
    ],
)
def test_near_misses_are_never_served(router: routerx.Router, stored: str, asked: str) -> None:
    tenant = f"nm-{abs(hash(stored)) % 10**8}"
    remember(router, stored, f"answer to: {stored}", tenant=tenant)
    d = router.route(asked, tenant=tenant, min_similarity=0.5)  # even with a permissive threshold
    assert d.cache == "miss", (stored, asked, d.similarity)


def test_controls_and_thresholds(router: routerx.Router) -> None:
    remember(router, "Explain what a hash map is.", "A key-value structure.", tenant="c1")
    q = "Can you explain what a hash map is?"
    assert router.route(q, tenant="c1", no_cache=True).cache == "bypass"
    assert router.route(q, tenant="c1", min_similarity=1.0).cache == "miss"
    assert router.route(q, tenant="c1").cache == "semantic"
    d = router.route("Explain what a linked list is.", tenant="c1", no_store=True)
    router.record(d, "Nodes and pointers.", 10, 3, 50.0)
    assert router.route("Explain what a linked list is, please.", tenant="c1").cache == "miss", "no_store stores nothing"
    for bad in (0, 0.0, -0.1, 1.01, math.nan, math.inf, "0.9", True):
        with pytest.raises(routerx.InvalidConstraintError) as ei:
            router.route(q, tenant="c1", min_similarity=bad)
        assert ei.value.field == "min_similarity"
    for bad_cfg in ({"min_similarity": 0}, {"min_similarity": 1.5}, {"top_k": 0}, {"max_batch": 0}, {"enabled": "yes"}, {"faiss_threads": -1}, {"faiss_threads": "2"}):
        with pytest.raises(routerx.ConfigError):
            routerx.Router({"semantic": {"enabled": True, **bad_cfg}}, db=None)


def test_per_category_thresholds() -> None:
    r = make(category_min_similarity={"chat": 1.0})
    remember(r, "How do I reset my password?", "Settings.", tenant="cat")
    cat = r.route("How do I reset my password?", tenant="cat").category
    assert cat == "chat"
    assert r.route("How can I reset my password?", tenant="cat").cache == "miss", "chat answers need cosine 1.0"
    assert r.route("How can I reset my password?", tenant="cat", min_similarity=0.9).cache == "semantic", "an explicit threshold applies to all"
    loose = make(min_similarity=0.999, category_min_similarity={"chat": 0.9})
    remember(loose, "How do I reset my password?", "Settings.", tenant="cat")
    assert loose.route("How can I reset my password?", tenant="cat").cache == "semantic"
    for bad in ({"nonsense": 0.9}, {"chat": 0}, {"chat": 1.5}, {"chat": "high"}):
        with pytest.raises(routerx.ConfigError) as ei:
            make(category_min_similarity=bad)
        assert "category_min_similarity" in str(ei.value)


def test_invalidate_drops_semantic_entries_from_core_and_index() -> None:
    r = make()
    remember(r, "How long does shipping to Canada take?", "5-7 days.", tenant="i1")
    remember(r, "How long does shipping to Canada take?", "4 days.", tenant="i2")
    assert r.route("How long is shipping to Canada?", tenant="i1").cache == "semantic"
    before = r.stats()["semantic"]["index"]["vectors"]
    r.invalidate("i1")
    assert r.route("How long is shipping to Canada?", tenant="i1").cache == "miss"
    assert r.route("How long is shipping to Canada?", tenant="i2").cached_response == "4 days."
    assert r.stats()["semantic"]["index"]["vectors"] == before - 1


def test_memory_stays_bounded_under_insert_evict_churn() -> None:
    r = make(max_entries=50)
    for i in range(300):
        remember(r, f"Question {i}: what is the population of city number {i}?", f"{i * 1000}", tenant="churn")
        s = r.stats()["semantic"]
        assert s["entries"] <= 50 and s["index"]["vectors"] <= 50
    s = r.stats()["semantic"]
    assert s["evictions"] + s["expirations"] >= 250


def test_faiss_threads_setting_reaches_faiss() -> None:
    import faiss

    before = faiss.omp_get_max_threads()
    try:
        faiss.omp_set_num_threads(2)
        make(faiss_threads=1)
        assert faiss.omp_get_max_threads() == 1
        make(faiss_threads=0)
        assert faiss.omp_get_max_threads() == 1, "0 leaves faiss's setting alone"
    finally:
        faiss.omp_set_num_threads(before)


def test_static_embedder_setting_serves_from_its_own_vectors() -> None:
    r = make(embedder="static")
    assert r.stats()["semantic"]["model_id"].startswith("static-")
    remember(r, "How do I reset my password?", "Settings, then Security.", tenant="s1")
    d = r.route("how do i reset my password", tenant="s1")
    assert d.cache == "semantic" and d.cached_response == "Settings, then Security.", d
    with pytest.raises(routerx.ConfigError) as ei:
        make(embedder="word2vec")
    assert "embedder" in str(ei.value)


def test_hnsw_settings_reach_the_index() -> None:
    r = make(hnsw_m=16, hnsw_ef_search=200, hnsw_ef_construction=100, hnsw_threshold=8)
    assert (r.semantic_index.hnsw_m, r.semantic_index.ef_search, r.semantic_index.hnsw_ef_construction) == (16, 200, 100)
    for i in range(12):
        remember(r, f"What is the opening time of shop number {i} on Sunday?", f"shop {i}", tenant="h")
    assert r.semantic_index.wait(30)  # the Router rebuilds on the index's own thread
    assert r.semantic_index.stats()["hnsw_partitions"] == 1
    import faiss

    graph = faiss.downcast_index(next(iter(r.semantic_index._parts.values())).index.index).hnsw
    assert (graph.efSearch, graph.efConstruction) == (200, 100)
    asked = "What is the opening time of shop number 3 on Sunday, please?"
    d = r.route(asked, tenant="h")
    assert d.cache == "semantic" and d.cached_response == "shop 3", d
    # HNSW partitions hold float16 vectors; the similarity served is still the exact cosine.
    from routerx.embed import load_minilm

    emb = load_minilm()
    exact = float(emb.embed([asked])[0] @ emb.embed(["What is the opening time of shop number 3 on Sunday?"])[0])
    assert d.similarity == pytest.approx(exact, abs=2e-6)
    with pytest.raises(routerx.ConfigError) as ei:
        make(hnsw_ef_search=0)
    assert "hnsw_ef_search" in str(ei.value)


def test_inverted_file_settings_reach_the_index() -> None:
    r = make(embedder="static", ivf_threshold=8, ivf_nprobe=2)
    assert (r.semantic_index.ivf_threshold, r.semantic_index.ivf_nprobe, r.semantic_index.ivf_dim, r.semantic_index.hnsw_threshold) == (8, 2, 128, 250_000)
    for i in range(160):
        remember(r, f"What is the opening time of shop number {i} on Sunday?", f"shop {i}", tenant="v")
    assert r.semantic_index.wait(30)
    assert r.semantic_index.stats()["ivf_partitions"] == 1
    d = r.route("what is the opening time of shop number 42 on sunday", tenant="v")
    assert d.cache == "semantic" and d.cached_response == "shop 42", d
    # The inverted file drops invalidated entries at once (no dead vectors left to rebuild away).
    r.invalidate("v")
    assert r.route("what is the opening time of shop number 42 on sunday", tenant="v").cache == "miss"
    assert r.semantic_index.stats()["vectors"] == 0 and r.semantic_index.stats()["dead_vectors"] == 0
    with pytest.raises(routerx.ConfigError) as ei:
        make(ivf_nprobe=0)
    assert "ivf_nprobe" in str(ei.value)


def test_core_hands_the_index_contiguous_vectors_by_scope_and_id() -> None:
    """What index rebuilds read: one copy of a scope's vectors (or of given ids) as columns."""
    import numpy as np

    r = make(embedder="static")
    for t in ("a", "b"):
        for i in range(3):
            remember(r, f"How many moons does planet {i} of tenant {t} have?", f"{t}{i}", tenant=t)
    sb, ib, vb = r._core.semantic_vectors()
    scopes, ids = np.frombuffer(sb, dtype=np.uint64), np.frombuffer(ib, dtype=np.uint64)
    x = np.frombuffer(vb, dtype=np.float32).reshape(len(ids), -1)
    assert len(ids) == 6 and len(set(scopes.tolist())) == 2 and (np.diff(ids.astype(np.int64)) > 0).all()
    assert np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
    one = int(scopes[0])
    s1, i1, v1 = r._core.semantic_vectors(one)
    mine = scopes == one
    assert np.frombuffer(i1, dtype=np.uint64).tolist() == ids[mine].tolist() and v1 == x[mine].tobytes()
    pick = [int(ids[mine][-1]), 10**12, int(ids[~mine][0])]
    _, i2, v2 = r._core.semantic_vectors(one, pick)
    assert np.frombuffer(i2, dtype=np.uint64).tolist() == [pick[0]] and v2 == x[ids == pick[0]].tobytes()
    assert r._core.semantic_vectors(one, []) == (b"", b"", b"")


def test_model_missing_names_the_install_command(tmp_path: Any) -> None:
    with pytest.raises(routerx.ConfigError) as ei:
        routerx.Router({"semantic": {"enabled": True, "model_dir": str(tmp_path / "nope")}}, db=None)
    assert "nope" in str(ei.value)


def test_64_threads_get_their_own_answers_through_the_batcher() -> None:
    r = make(max_batch=16, max_wait_us=2000)
    n = 64
    for t in range(n):
        remember(r, f"What time does store number {t} open?", f"store {t} opens at {t % 12 + 1}", tenant=f"t{t}")
    results: Dict[int, List[Any]] = {}
    barrier = threading.Barrier(n)
    errors: List[BaseException] = []

    def work(t: int) -> None:
        try:
            barrier.wait()
            out = []
            for _ in range(5):
                d = r.route(f"At what time does store number {t} open?", tenant=f"t{t}")
                out.append((d.cache, d.cached_response, d.tenant))
            results[t] = out
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    run_threads(n, work)
    assert not errors, errors[:3]
    for t in range(n):
        for cache, resp, tenant in results[t]:
            assert tenant == f"t{t}"
            if cache == "semantic":
                assert resp == f"store {t} opens at {t % 12 + 1}", (t, resp)
    hits = sum(c == "semantic" for v in results.values() for c, _, _ in v)
    assert hits >= n * 5 * 0.9, hits
    b = r.stats()["semantic"]
    assert b["largest_batch"] > 1 and b["largest_batch"] <= 16 and b["failures"] == 0


def test_route_many_goes_through_the_semantic_cache() -> None:
    r = make(max_batch=8)
    remember(r, "How do I reset my password?", "Settings, then Security.", tenant="m")
    remember(r, "What is the capital of Australia?", "Canberra.", tenant="m")
    ds = r.route_many(
        [
            "How can I reset my password?",
            "What is the capital of Australia?",
            "What's the capital city of Australia?",
            {"prompt": "How can I reset my password?", "no_cache": True},
            {"prompt": "How can I reset my password?", "tenant": "other"},
            "How many moons does Jupiter have?",
        ],
        tenant="m",
    )
    assert [d.cache for d in ds] == ["semantic", "exact", "semantic", "bypass", "miss", "miss"]
    assert ds[0].cached_response == "Settings, then Security." and ds[2].cached_response == "Canberra."
    assert ds[4].tenant == "other" and ds[4].cached_response is None
    # A miss from the batch is stored in both layers when recorded, as route()'s misses are.
    r.record(ds[5], "95 known moons.", 10, 5, 100)
    d = r.route("How many moons does Jupiter have in total?", tenant="m")
    assert d.cache == "semantic" and d.cached_response == "95 known moons.", d


def test_threads_calling_route_many_get_their_own_answers() -> None:
    r = make(embedder="static", max_batch=16)
    n = 16
    for t in range(n):
        remember(r, f"What time does store number {t} open on weekdays?", f"store {t}", tenant=f"t{t}")
    errors: List[BaseException] = []
    results: Dict[int, List[Any]] = {}
    barrier = threading.Barrier(8)

    def work(w: int) -> None:
        try:
            barrier.wait()
            out = []
            for rep in range(10):
                ts = [(w * 7 + rep + j) % n for j in range(12)]
                items = [{"prompt": f"what time does store number {t} open on weekdays", "tenant": f"t{t}"} for t in ts]
                out += [(t, d.cache, d.cached_response, d.tenant) for t, d in zip(ts, r.route_many(items))]
            results[w] = out
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    run_threads(8, work)
    assert not errors, errors[:3]
    got = [x for v in results.values() for x in v]
    assert len(got) == 8 * 10 * 12
    for t, cache, resp, tenant in got:
        assert tenant == f"t{t}" and cache == "semantic" and resp == f"store {t}", (t, cache, resp, tenant)
    assert r.stats()["semantic"]["largest_batch"] > 1 and r.stats()["semantic"]["failures"] == 0


def test_snapshot_round_trip_rebuilds_the_index(tmp_path: Any) -> None:
    from routerx.router import SEMANTIC_SNAPSHOT_FILE

    cfg = {"semantic": {"enabled": True}, "cache": {"snapshot_dir": str(tmp_path)}}
    r = routerx.Router(cfg, db=None)
    questions = [f"What is the boiling point of {x} at sea level?" for x in ("water", "ethanol", "acetone", "mercury", "benzene")]
    for q in questions:
        remember(r, q, f"answer for {q}", tenant="snap")
    r.close()
    assert (tmp_path / SEMANTIC_SNAPSHOT_FILE).is_file()
    r2 = routerx.Router(cfg, db=None)
    assert r2.stats()["semantic"]["entries"] == 5 and r2.stats()["semantic"]["index"]["vectors"] == 5
    d = r2.route("At sea level, what is the boiling point of ethanol?", tenant="snap")
    assert d.cache == "semantic" and d.cached_response == f"answer for {questions[1]}"
    # A corrupt semantic snapshot: a named error, nothing half-restored.
    f = tmp_path / SEMANTIC_SNAPSHOT_FILE
    f.write_bytes(f.read_bytes()[:-10])
    r3 = routerx.Router({"semantic": {"enabled": True}}, db=None)
    with pytest.raises(routerx.SnapshotError) as ei:
        r3.restore(tmp_path)
    assert SEMANTIC_SNAPSHOT_FILE in str(ei.value)
    assert r3.stats()["semantic"]["entries"] == 0
