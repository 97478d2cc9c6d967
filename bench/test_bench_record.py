"""Accounting cost: `record()` per call, and `route()` with and without accounting and budgets.

Run: `make bench` (or `pytest bench/test_bench_record.py --benchmark-only`). Target on the 2-core dev
machine: record() p50 ≤ 5 µs in-process (ledger update + budget settlement; the SQLite flush runs
on its own thread every flush interval and is not on this path). Times include the Python call.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from routerx import Router

pytestmark = pytest.mark.benchmark(group="accounting", min_rounds=2000, warmup=True)


def test_record_per_call(benchmark: Any, prompt_200: str, tmp_path: Path) -> None:
    # A real database with its flusher running, as in production. no_store keeps the cache insert
    # out of the measurement: what is left is the cost computation, the ledger and the budget.
    router = Router(db=tmp_path / "bench.db")
    d = router.route(prompt_200, agent="bench", workflow="wf", step="s1", no_store=True)
    rec = benchmark(router.record, d, "answer", 200, 120, 850.0)
    assert rec.cost_usd > 0
    router.close()


def test_record_per_call_with_budget(benchmark: Any, prompt_200: str) -> None:
    router = Router(db=None)
    router.set_budget("tenant:default", usd_per_day=1e9, tokens_per_hour=1e15, action="reject")
    d = router.route(prompt_200, agent="bench", no_store=True)
    benchmark(router.record, d, "answer", 200, 120, 850.0)


def test_route_miss_plain(benchmark: Any, prompt_200: str) -> None:
    router = Router({"cache": {"max_entries": 0}}, db=None)
    benchmark(router.route, prompt_200)


def test_route_miss_labels_and_budgets(benchmark: Any, prompt_200: str) -> None:
    # Two budgets apply (tenant and workflow): each route reserves against both.
    router = Router({"cache": {"max_entries": 0}}, db=None)
    router.set_budget("tenant:default", usd_per_day=1e9, action="reject")
    router.set_budget("workflow:wf", tokens_per_hour=1e15, action="downgrade")
    d = benchmark(router.route, prompt_200, agent="bench", workflow="wf", step="s1")
    assert d.budget_action is None


def test_route_and_record_cycle(benchmark: Any, prompt_200: str, tmp_path: Path) -> None:
    # The full accounted cycle on distinct prompts (misses), with a database and a budget.
    router = Router(db=tmp_path / "cycle.db")
    router.set_budget("tenant:default", usd_per_day=1e9, action="reject")
    n = itertools.count()

    def cycle() -> None:
        d = router.route(f"{prompt_200} ({next(n)})", agent="bench", workflow="wf", no_store=True)
        router.record(d, "answer", d.input_tokens, 120, 850.0)

    benchmark(cycle)
    router.close()
