"""route() and record() release the GIL: hammer them from many threads and check everything."""

from __future__ import annotations

import threading
from collections import Counter

from routerx import Router

from conftest import run_threads

THREADS = 32
PER_THREAD = 200


def test_32_threads_route_and_record() -> None:
    router = Router()
    results: list = []
    errors: list = []
    barrier = threading.Barrier(THREADS)

    def work(t: int) -> None:
        tenant = f"tenant-{t % 4}"
        out = []
        barrier.wait()
        try:
            for i in range(PER_THREAD):
                prompt = f"Question {i % 25}: what is {i % 25} squared?"
                d = router.route(prompt, tenant=tenant)
                if d.cache == "exact":
                    # An answer only ever comes back to the tenant and prompt that produced it.
                    assert d.cached_response == f"{tenant}|{prompt}", (d.cached_response, tenant, prompt)
                    assert d.tenant == tenant
                    out.append(("hit", 0.0))
                else:
                    assert d.cache == "miss" and d.category and d.model
                    rec = router.record(d, f"{tenant}|{prompt}", d.input_tokens, 7, 10.0)
                    assert rec.stored
                    out.append(("miss", rec.cost_usd))
        except BaseException as e:  # surfaced below
            errors.append(e)
        results.append(out)

    run_threads(THREADS, work)
    assert not errors, errors[:3]
    flat = [x for r in results for x in r]
    kinds = Counter(k for k, _ in flat)
    s = router.stats()
    assert len(flat) == THREADS * PER_THREAD
    assert s["requests"] == THREADS * PER_THREAD
    assert s["exact_hits"] == kinds["hit"] and s["misses"] == kinds["miss"]
    assert s["records"] == kinds["miss"]
    assert s["errors"] == 0
    assert abs(s["cost_usd"] - sum(c for _, c in flat)) < 1e-6
    assert sum(s["decisions"].values()) == kinds["miss"]
    assert s["route_latency"]["count"] == THREADS * PER_THREAD
    # 4 tenants × 25 prompts: each may miss a few times while racing, but the cache holds them all.
    assert s["cache"]["entries"] == 100
    assert kinds["hit"] > THREADS * PER_THREAD * 0.8


def test_route_many_from_threads_returns_each_callers_answers() -> None:
    router = Router()
    errors: list = []

    def work(t: int) -> None:
        try:
            for _ in range(20):
                prompts = [f"thread {t} item {i}: translate 'cat' into French" for i in range(16)]
                ds = router.route_many(prompts, tenant=f"t{t}")
                assert [d.tenant for d in ds] == [f"t{t}"] * 16
                assert all(d.category == "translation" for d in ds)
        except BaseException as e:
            errors.append(e)

    run_threads(16, work)
    assert not errors, errors[:3]
    assert router.stats()["requests"] == 16 * 20 * 16
