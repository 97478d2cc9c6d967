"""In-process routing cost: `route()` on a miss and on an exact hit, `route_many` per item.

Run: `make bench` (or `pytest bench/ --benchmark-only`). Targets on the 2-core dev machine:
miss p50 ≤ 30 µs, exact hit p50 ≤ 10 µs. Times include the Python call and the Decision object.
"""

from __future__ import annotations

from typing import Any

import pytest

from routerx import Router

pytestmark = pytest.mark.benchmark(group="route", min_rounds=2000, warmup=True)


def test_route_miss_200_tokens(benchmark: Any, prompt_200: str) -> None:
    # A cache that stores nothing: every call looks up, misses, and routes.
    router = Router({"cache": {"max_entries": 0}})
    assert 180 <= router.count_tokens(prompt_200) <= 230
    d = benchmark(router.route, prompt_200)
    assert d.cache == "miss"


def test_route_exact_hit_200_tokens(benchmark: Any, prompt_200: str) -> None:
    router = Router()
    d = router.route(prompt_200)
    router.record(d, "Use an outbox table and idempotency keys.", d.input_tokens, 200, 900.0)
    hit = benchmark(router.route, prompt_200)
    assert hit.cache == "exact"


def test_route_many_per_item(benchmark: Any, prompt_200: str) -> None:
    router = Router({"cache": {"max_entries": 0}})
    batch = [f"{prompt_200} (case {i})" for i in range(100)]
    ds = benchmark.pedantic(router.route_many, args=(batch,), rounds=200, warmup_rounds=5)
    assert len(ds) == 100
    benchmark.extra_info["items_per_call"] = 100
