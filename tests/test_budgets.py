"""Budgets: atomic enforcement under a race, the three actions, reservations, config and errors."""

from __future__ import annotations

import gc
import threading
import time
from typing import Any, List

import pytest

import routerx

PROMPT = "Summarize in two sentences why sequential invoice numbers matter for a billing system."
HARD = "Prove rigorously that the square root of 2 is irrational, then generalize the argument to every non-square integer."


def test_100_concurrent_requests_never_overspend() -> None:
    r = routerx.Router(db=None)
    probe = r.route(PROMPT, tenant="race", no_cache=True)
    p = probe.predicted_cost_usd
    assert p > 0
    del probe
    # Almost spent: a limit with room for 3.5 predicted requests beyond what is already spent.
    already = 1000 * p
    limit = already + 3.5 * p
    r._core.set_budget("tenant:race", "day", "usd", limit, "reject", already)
    start = threading.Barrier(100)
    ok: List[Any] = []
    rejected: List[Exception] = []
    lock = threading.Lock()

    def one() -> None:
        start.wait()
        try:
            d = r.route(PROMPT, tenant="race", no_cache=True)
        except routerx.BudgetExceededError as e:
            with lock:
                rejected.append(e)
            return
        r.record(d, "answer", d.input_tokens, d.predicted_output_tokens, 100.0)  # actual = predicted
        with lock:
            ok.append(d)

    threads = [threading.Thread(target=one) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    st = r.budgets()[0]
    assert len(ok) + len(rejected) == 100
    assert len(ok) == 3, "exactly the requests that fit"
    assert st["rejected"] == 97
    assert st["reserved"] == 0
    assert st["spent"] + st["reserved"] <= limit + p + 1e-12
    assert st["spent"] == pytest.approx(already + 3 * p, rel=1e-6)
    e = rejected[0]
    assert isinstance(e, routerx.RouterxError) and isinstance(e, RuntimeError)
    assert e.scope == "tenant:race" and "tenant:race" in str(e)


def test_downgrade_routes_to_the_cheapest_acceptable() -> None:
    r = routerx.Router(db=None)
    normal = r.route(HARD, workflow="etl", no_cache=True)
    assert normal.budget_action is None
    r.set_budget("workflow:etl", usd_per_day=normal.predicted_cost_usd / 10, action="downgrade")
    d = r.route(HARD, workflow="etl", no_cache=True)
    assert d.budget_action == "downgrade"
    assert d.predicted_cost_usd < normal.predicted_cost_usd
    assert "budget downgrade" in d.reason and "workflow:etl" in d.reason
    floor = r.config.policy.quality_floor
    assert d.required_quality == pytest.approx(floor, abs=1e-6)
    # With min_quality the downgrade keeps the caller's floor.
    d2 = r.route(HARD, workflow="etl", no_cache=True, min_quality=0.8)
    assert d2.budget_action == "downgrade" and d2.required_quality == pytest.approx(0.8, abs=1e-6)
    # Other workflows are untouched.
    assert r.route(HARD, workflow="other", no_cache=True).budget_action is None
    assert r.budgets()[0]["downgraded"] == 2


def test_warn_serves_and_flags() -> None:
    r = routerx.Router(db=None)
    r.set_budget("agent:bot", tokens_per_hour=10, action="warn")
    d = r.route(PROMPT, agent="bot")
    assert d.budget_action == "warn" and "budget warning" in d.reason
    r.record(d, "ok", 100, 50, 10.0)
    st = r.budgets()[0]
    assert (st["spent"], st["reserved"], st["warned"]) == (150, 0, 1)
    # Cache hits cost nothing and are never refused.
    r.set_budget("agent:bot", tokens_per_hour=10, action="reject")
    assert r.route(PROMPT, agent="bot").cache == "exact"
    with pytest.raises(routerx.BudgetExceededError):
        r.route(PROMPT, agent="bot", no_cache=True)


def test_reservations_are_released_when_unrecorded() -> None:
    r = routerx.Router(db=None)
    r.set_budget("tenant:t", usd_per_day=10, action="reject")
    d = r.route(PROMPT, tenant="t")
    assert r.budgets()[0]["reserved"] == pytest.approx(d.predicted_cost_usd, rel=1e-6)
    del d
    gc.collect()
    assert r.budgets()[0]["reserved"] == 0, "a dropped decision releases its reservation"
    kept = r.route(PROMPT + " (kept)", tenant="t")
    r._core.set_reservation_ttl(0.0)
    time.sleep(0.01)
    assert r._core.sweep_reservations() == 1, "a decision kept but never recorded expires after the TTL"
    assert r.budgets()[0]["reserved"] == 0
    # Recording it later still charges the actual cost, once.
    r.record(kept, "x", 10, 10, 1.0)
    r.record(kept, "x", 10, 10, 1.0)
    assert r.budgets()[0]["spent"] > 0


def test_budget_config_and_validation() -> None:
    cfg = {"budgets": [{"scope": "tenant:acme", "usd_per_day": 50, "tokens_per_hour": 2e6, "action": "downgrade"}]}
    r = routerx.Router(cfg, db=None)
    got = sorted((b["scope"], b["window"], b["metric"], b["limit"], b["action"]) for b in r.budgets())
    assert got == [("tenant:acme", "day", "usd", 50.0, "downgrade"), ("tenant:acme", "hour", "tokens", 2e6, "downgrade")]
    assert r.remove_budget("tenant:acme", window="hour") == 1
    assert len(r.budgets()) == 1
    for bad in (
        {"budgets": [{"scope": "team:x", "usd_per_day": 1}]},
        {"budgets": [{"scope": "tenant:x", "usd_per_week": 1}]},
        {"budgets": [{"scope": "tenant:x", "usd_per_day": -1}]},
        {"budgets": [{"scope": "tenant:x", "usd_per_day": 1, "action": "explode"}]},
        {"budgets": [{"scope": "tenant:x"}]},
        {"budgets": {"scope": "tenant:x"}},
    ):
        with pytest.raises(routerx.ConfigError):
            routerx.load_config(bad)
    with pytest.raises(routerx.InvalidConstraintError):
        r.set_budget("tenant:x")
    with pytest.raises(routerx.InvalidConstraintError):
        r.set_budget("tenant:x", usd_per_day=float("nan"))
    with pytest.raises(routerx.InvalidConstraintError):
        r.set_budget("nobody", usd_per_day=1)
    with pytest.raises(routerx.InvalidConstraintError):
        r.set_budget("tenant:x", usd_per_day=1, action="maybe")
