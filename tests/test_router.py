"""The in-process API: decisions, the exact cache, counters, batches."""

from __future__ import annotations

import math
import random
import time

import pytest

import routerx
from routerx import Router

from reference_policy import near_threshold, reference_choice

PROMPTS = [
    "hi there, how are you doing today?",
    "Write a Python function that parses an ISO 8601 date and returns a datetime.",
    "Translate into German: The meeting has been moved to Thursday.",
    "Summarize the following article in three bullet points: The city council voted on Tuesday to expand the bike lane network.",
    "Extract all email addresses from this text as JSON: Contact Ann at ann@example.com or bob@example.org.",
    "Solve for x: 3x^2 - 12x + 9 = 0. Show the steps.",
    "Write a short poem about autumn rain.",
    "If all bloops are razzies and some razzies are lazzies, must some bloops be lazzies? Explain your reasoning.",
    "Prove rigorously that the square root of 2 is irrational, step by step, and analyze where the proof uses unique factorization.",
    "Write a detailed essay on the economic history of the Roman Empire.",
]


def test_decision_is_complete_and_priced_from_the_catalog(router: Router) -> None:
    d = router.route("Write a Python function that merges two sorted lists.")
    m = router.catalog.model(d.model)
    tier = next(t for t in m.tiers if t.name == d.tier)
    assert d.provider == m.provider
    assert d.category == "code"
    assert 0.0 <= d.complexity <= 1.0
    assert d.cache == "miss" and d.cached_response is None
    assert d.input_tokens == router.count_tokens("Write a Python function that merges two sorted lists.") + 3 + 3
    cost = (d.input_tokens * tier.price_in + d.predicted_output_tokens * tier.price_out) / 1e6
    lat = tier.ttft_ms + 1000 * d.input_tokens / tier.prefill_tps + 1000 * d.predicted_output_tokens / tier.decode_tps
    assert d.predicted_cost_usd == pytest.approx(cost, rel=1e-9)
    assert d.predicted_latency_ms == pytest.approx(lat, rel=1e-9)
    assert d.within_budget and d.violations == []
    assert m.quality["code"] >= d.required_quality - 1e-6
    assert d.model in d.reason and d.tier in d.reason
    assert 1 <= len(d.fallbacks) <= 3
    assert all(f["model"] != d.model for f in d.fallbacks)
    assert len({f["model"] for f in d.fallbacks}) == len(d.fallbacks)
    assert d.language == "eng"
    assert d.route_ns > 0
    assert len(d.entry_id) == 32
    assert routerx.router.decision_to_dict(d)["model"] == d.model


def test_choices_match_the_rule_on_many_requests(router: Router) -> None:
    """The core's choice equals a plain-Python statement of the rule, on random constraints."""
    rng = random.Random(7)
    checked = 0
    for i in range(300):
        prompt = rng.choice(PROMPTS) + f" (variant {i})"
        kw = {}
        if rng.random() < 0.5:
            kw["latency_budget_ms"] = rng.choice([300.0, 800.0, 1500.0, 3000.0, 10_000.0])
        if rng.random() < 0.3:
            kw["max_cost_usd"] = rng.choice([1e-5, 1e-4, 1e-3])
        if rng.random() < 0.3:
            kw["min_quality"] = rng.choice([0.5, 0.7, 0.85, 0.9])
        if rng.random() < 0.2:
            kw["models"] = rng.sample([m.name for m in router.catalog.models], 3)
        d = router.route(prompt, **kw)
        if near_threshold(router, d.category, d.complexity, kw.get("min_quality")):
            continue
        lat = kw.get("latency_budget_ms", router.config.default_latency_budget_ms)
        want = reference_choice(
            router, d.category, d.complexity, d.input_tokens, d.predicted_output_tokens,
            latency_budget_ms=lat, max_cost_usd=kw.get("max_cost_usd", math.inf),
            min_quality=kw.get("min_quality"), models=kw.get("models"),
        )  # fmt: skip
        if want is None:
            assert not d.within_budget, (prompt, kw, d.reason)
        else:
            assert d.within_budget, (prompt, kw, d.reason)
            assert (d.model, d.tier) == want[:2], (prompt, kw, d.reason, want)
            checked += 1
    assert checked > 150


def test_latency_budget_moves_to_the_fast_tier(router: Router) -> None:
    text = "Explain in detail how a B-tree stays balanced on insert."
    slow = router.route(text, latency_budget_ms=math.inf, models=["llama-3.3-70b"])
    fast = router.route(text, latency_budget_ms=2500, models=["llama-3.3-70b"])
    assert slow.tier == "gpu-standard"
    assert fast.tier == "lpu-premium"
    assert fast.predicted_latency_ms <= 2500 < slow.predicted_latency_ms
    assert fast.predicted_cost_usd > slow.predicted_cost_usd


def test_batch_tier_only_without_latency_budget(router: Router) -> None:
    d = router.route("Summarize this quarterly report in one paragraph: revenue grew 4%.", latency_budget_ms=math.inf, models=["gpt-4o"])
    assert d.tier == "batch"
    d = router.route("Summarize this quarterly report in one paragraph: revenue grew 4%.", models=["gpt-4o"])
    assert d.tier == "gpu-standard", "the default latency budget keeps interactive traffic off batch"


def test_best_effort_and_strict(router: Router) -> None:
    d = router.route("Write a haiku about the sea.", latency_budget_ms=1)
    assert not d.within_budget and d.violations == ["latency"]
    assert "best effort" in d.reason
    with pytest.raises(routerx.NoRouteError, match="latency"):
        router.route("Write a haiku about the sea.", latency_budget_ms=1, strict=True)
    d = router.route("Write a haiku about the sea.", min_quality=0.99)
    assert "quality" in d.violations
    strict_router = Router({"router": {"strict": True}})
    with pytest.raises(routerx.NoRouteError):
        strict_router.route("Write a haiku about the sea.", max_cost_usd=1e-12)


def test_min_quality_and_allowed_models(router: Router) -> None:
    d = router.route("What is 2 + 2?", min_quality=0.9)
    assert router.catalog.model(d.model).quality[d.category] >= 0.9
    d = router.route("What is 2 + 2?", models=["gpt-4o-mini"])
    assert d.model == "gpt-4o-mini" and d.fallbacks == []
    with pytest.raises(routerx.UnknownModelError) as e:
        router.route("What is 2 + 2?", models=["gpt-17"])
    assert isinstance(e.value, LookupError) and isinstance(e.value, ValueError)
    assert "gpt-17" in str(e.value) and e.value.field == "models"


def test_record_then_exact_hit(router: Router) -> None:
    d = router.route("What is the capital of Australia?")
    rec = router.record(d, "Canberra.", 14, 3, 250.0)
    assert rec.stored
    m = router.catalog.model(d.model)
    tier = next(t for t in m.tiers if t.name == d.tier)
    assert rec.cost_usd == pytest.approx((14 * tier.price_in + 3 * tier.price_out) / 1e6)
    hit = router.route("What is the capital of Australia?")
    assert hit.cache == "exact"
    assert hit.cached_response == "Canberra."
    assert hit.entry_id == d.entry_id
    assert (hit.model, hit.tier, hit.category) == (d.model, d.tier, d.category)
    assert hit.predicted_cost_usd == 0.0 and hit.cost_avoided_usd == pytest.approx(rec.cost_usd)
    assert 0.0 <= hit.entry_age_s < 5
    assert hit.reason.startswith("exact cache hit")
    # Recording a hit neither stores nor charges.
    assert router.record(hit, "x", 1, 1, 1.0) == routerx.Recorded(0.0, False)
    s = router.stats()
    assert (s["requests"], s["exact_hits"], s["misses"], s["records"]) == (2, 1, 1, 2)
    assert s["cost_usd"] == pytest.approx(rec.cost_usd)
    assert s["cost_avoided_usd"] == pytest.approx(rec.cost_usd)
    assert s["cache"]["entries"] == 1
    assert s["decisions"] == {f"{d.model}/{d.tier}": 1}
    assert s["route_latency"]["count"] == 2 and s["route_latency"]["p50_us"] > 0


def test_cache_key_covers_everything_that_changes_the_answer(router: Router) -> None:
    msgs = [{"role": "system", "content": "Answer tersely."}, {"role": "user", "content": "Name a prime."}]
    d = router.route(msgs, tenant="a")
    router.record(d, "7", 10, 1, 100.0)
    assert router.route(msgs, tenant="a").cache == "exact"
    assert router.route(msgs, tenant="b").cache == "miss", "tenants never share answers"
    other_sys = [{"role": "system", "content": "Answer verbosely."}, msgs[1]]
    assert router.route(other_sys, tenant="a").cache == "miss"
    assert router.route(msgs[1:], tenant="a").cache == "miss"
    assert router.route(msgs, tenant="a", params={"temperature": 0.9}).cache == "miss"
    assert router.route(msgs, tenant="a", tools=[{"name": "f"}]).cache == "miss"
    assert router.route(msgs, tenant="a", models=["gpt-4o"]).cache == "miss"
    # Sampling params in another key order are the same request.
    d = router.route(msgs, tenant="a", params={"temperature": 0, "top_p": 1})
    router.record(d, "11", 10, 1, 100.0)
    assert router.route(msgs, tenant="a", params={"top_p": 1, "temperature": 0}).cache == "exact"


def test_cache_controls(router: Router) -> None:
    d = router.route("no store please", no_store=True)
    assert router.record(d, "x", 3, 1, 5.0).stored is False
    assert router.route("no store please").cache == "miss"
    d = router.route("short lived", ttl_s=0.2)
    router.record(d, "x", 3, 1, 5.0)
    assert router.route("short lived").cache == "exact"
    assert router.route("short lived", no_cache=True).cache == "bypass"
    time.sleep(0.25)
    assert router.route("short lived").cache == "miss"
    d = router.route("failed call")
    assert router.record(d, "partial", 3, 1, 5.0, ok=False).stored is False
    assert router.route("failed call").cache == "miss"
    assert router.stats()["failed_calls"] == 1


def test_invalidate(router: Router) -> None:
    for t in ("a", "b"):
        for i in range(3):
            d = router.route(f"q{i}", tenant=t)
            router.record(d, "x", 1, 1, 1.0)
    assert router.invalidate("a") == 3
    assert router.route("q0", tenant="a").cache == "miss"
    assert router.route("q0", tenant="b").cache == "exact"
    assert router.invalidate() == 3
    assert router.stats()["cache"]["entries"] == 0


def test_messages_and_parts(router: Router) -> None:
    conv = [
        {"role": "system", "content": "You are a math tutor."},
        {"role": "user", "content": "What is a derivative?"},
        {"role": "assistant", "content": "The rate of change of a function."},
        {"role": "user", "content": [{"type": "text", "text": "Differentiate x^3 + 2x."}]},
    ]
    d = router.route(conv)
    assert d.category == "math"
    parts = sum(router.count_tokens(m["content"] if isinstance(m["content"], str) else m["content"][0]["text"]) for m in conv)
    assert d.input_tokens == parts + 4 * 3 + 3
    f = router.features(conv)
    assert f["turns"] == 2 and f["has_system"] == 1.0


def test_route_many_matches_route(router: Router) -> None:
    other = Router()
    batch = router.route_many(PROMPTS + [{"prompt": PROMPTS[0], "latency_budget_ms": 1}])
    assert len(batch) == len(PROMPTS) + 1
    for p, d in zip(PROMPTS, batch):
        one = other.route(p)
        assert (d.model, d.tier, d.category, d.predicted_cost_usd) == (one.model, one.tier, one.category, one.predicted_cost_usd)
    assert not batch[-1].within_budget
    assert router.stats()["requests"] == len(PROMPTS) + 1


def test_route_many_rejects_a_bad_item_without_routing_any(router: Router) -> None:
    with pytest.raises(routerx.InvalidRequestError, match=r"requests\[2\]"):
        router.route_many(["ok", "fine", "   "])
    with pytest.raises(routerx.InvalidConstraintError, match=r"requests\[1\]"):
        router.route_many(["ok", {"prompt": "x", "latency_budget_ms": float("nan")}])
    with pytest.raises(routerx.InvalidRequestError, match=r"requests\[0\]"):
        router.route_many([{"prompt": "x", "colour": "red"}])
    assert router.stats()["requests"] == 0


def test_lookup_in_process_reads_the_exact_cache_only() -> None:
    r = routerx.Router({"semantic": {"enabled": True, "embedder": "static"}}, db=None)
    prompt = "Translate into Italian: see you tomorrow."
    assert r.lookup(prompt, tenant="lk") is None
    d = r.route(prompt, tenant="lk", tools=[{"name": "t"}])
    r.record(d, "A domani.", 9, 3, 80.0)
    before = r.stats()["requests"]
    got = r.lookup(prompt, tenant="lk", tools=[{"name": "t"}])
    assert isinstance(got, routerx.CachedAnswer) and got.cached_response == "A domani." and got.entry_id == d.entry_id
    assert (got.model, got.tier, got.tenant) == (d.model, d.tier, "lk") and got.cost_avoided_usd > 0
    assert r.stats()["requests"] == before + 1, "a hit counts as a cached request"
    # The key: tools, params, allowed models, tenant; and never a paraphrase (no semantic lookup).
    for kw in ({}, {"params": {"temperature": 0}}, {"tenant": "other"}, {"models": [d.model]}):
        args = {"tenant": "lk", "tools": [{"name": "t"}], **kw}
        if kw == {}:
            args.pop("tools")
        assert r.lookup(prompt, **args) is None, kw
    assert r.lookup("Translate into Italian: see you tomorrow!", tenant="lk", tools=[{"name": "t"}]) is None
    assert r.stats()["requests"] == before + 1, "misses are not counted"
    with pytest.raises(routerx.InvalidRequestError):
        r.lookup("", tenant="lk")
    with pytest.raises(routerx.UnknownModelError):
        r.lookup(prompt, models=["gpt-17"])
