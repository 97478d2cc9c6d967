"""Accounting: attribution by labels, hand-computed totals, persistence, restart, crash, metrics, stats."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, List

import pytest

import routerx
from routerx import cli
from routerx.accounting import load_usage, summarize
from routerx.accounting.store import SCHEMA, connect

BASELINE = "claude-sonnet-4"


def _price(router: routerx.Router, model: str, tier: str) -> Any:
    return next(t for t in router.catalog.model(model).tiers if t.name == tier)


def test_hand_computed_totals() -> None:
    r = routerx.Router({"accounting": {"baseline_model": BASELINE}}, db=None)
    base = _price(r, BASELINE, "gpu-standard")
    traffic = [
        # prompt, agent, workflow, step, input, output, latency, ok
        ("Translate into French: the invoice is overdue.", "support", "tickets", "translate", 31, 12, 420.0, True),
        ("Write a SQL query that counts orders per customer.", "analyst", "nightly-etl", "sql", 40, 150, 1800.0, True),
        ("Summarize: the meeting moved to Tuesday at noon.", "support", "tickets", "summarize", 25, 30, 90.0, False),
    ]
    expect: Dict[str, Dict[str, float]] = {}
    decisions = []
    for prompt, agent, wf, step, i, o, lat, ok in traffic:
        d = r.route(prompt, tenant="acme", agent=agent, workflow=wf, step=step)
        assert (d.agent, d.workflow, d.step) == (agent, wf, step)
        rec = r.record(d, "answer", i, o, lat, ok=ok)
        t = _price(r, d.model, d.tier)
        cost = (i * t.price_in + o * t.price_out) / 1e6
        assert rec.cost_usd == pytest.approx(cost, abs=1e-9)
        e = expect.setdefault(agent, {"cost": 0.0, "routing": 0.0, "energy": 0.0, "calls": 0, "errors": 0, "in": 0, "out": 0})
        e["cost"] += cost
        e["routing"] += (i * base.price_in + o * base.price_out) / 1e6 - cost
        e["energy"] += o * t.energy_j_per_token
        e["calls"] += 1
        e["errors"] += 0 if ok else 1
        e["in"] += i
        e["out"] += o
        decisions.append((d, cost, ok))
    # Two cache hits on the first (successful, stored) answer, from another agent: labels are not
    # part of the cache key, and each hit avoids the recorded cost of that answer.
    for _ in range(2):
        hit = r.route(traffic[0][0], tenant="acme", agent="reviewer")
        assert hit.cache == "exact" and hit.agent == "reviewer"
    rows = summarize(r.ledger(), ("tenant", "agent"))
    got = {x["agent"]: x for x in rows}
    assert set(got) == {"support", "analyst", "reviewer"}
    for agent, e in expect.items():
        g = got[agent]
        assert g["calls"] == e["calls"] and g["errors"] == e["errors"] and g["cache_hits"] == 0
        assert (g["input_tokens"], g["output_tokens"]) == (e["in"], e["out"])
        assert g["cost_usd"] == pytest.approx(e["cost"], abs=2e-9)
        assert g["avoided_routing_usd"] == pytest.approx(e["routing"], abs=4e-9)
        assert g["energy_j"] == pytest.approx(e["energy"], abs=1e-3)
    rv = got["reviewer"]
    assert (rv["cache_hits"], rv["calls"], rv["requests"]) == (2, 0, 2)
    assert rv["avoided_cache_usd"] == pytest.approx(2 * decisions[0][1], abs=2e-9)
    total = summarize(r.ledger(), ())[0]
    assert total["requests"] == 5 and total["cache_hit_rate"] == pytest.approx(0.4)
    assert total["cost_usd"] == pytest.approx(sum(c for _, c, _ in decisions), abs=3e-9)
    # The step label splits rows: support has two steps.
    assert len([x for x in r.ledger() if x["agent"] == "support"]) == 2
    # Latency histogram: 420 ms and 90 ms calls of support.
    sup = [x for x in r.ledger() if x["agent"] == "support"]
    assert sum(sum(x["latency_buckets"]) for x in sup) == 2
    assert sum(x["latency_us_sum"] for x in sup) == 510_000


def test_route_many_labels_and_bad_labels() -> None:
    r = routerx.Router(db=None)
    ds = r.route_many([{"prompt": "hello there", "agent": "a1"}, "good morning"], workflow="wf", step="s")
    assert [(d.agent, d.workflow, d.step) for d in ds] == [("a1", "wf", "s"), (None, "wf", "s")]
    with pytest.raises(routerx.InvalidRequestError):
        r.route("hi", agent=3)  # type: ignore[arg-type]
    with pytest.raises(routerx.InvalidRequestError):
        r.route("hi", agent="x" * 300)
    assert routerx.router.decision_to_dict(ds[0])["agent"] == "a1"


def _traffic(r: routerx.Router, n: int, tenant: str = "acme") -> float:
    spent = 0.0
    for i in range(n):
        d = r.route(f"Question {i}: what is the capital of country number {i}?", tenant=tenant, agent="bot", workflow="wf", step="s1")
        spent += r.record(d, "answer", 20, 10, 100.0).cost_usd
    return spent


def test_restart_sees_totals_and_budgets_resume(tmp_path: Path) -> None:
    db = tmp_path / "acct.db"
    r1 = routerx.Router(db=db)
    spent = _traffic(r1, 10)
    r1.close()
    rows = load_usage(str(db))
    tot = summarize(rows, ())[0]
    assert tot["calls"] == 10 and tot["cost_usd"] == pytest.approx(spent, abs=1e-8)
    conn = connect(str(db), readonly=True)
    assert dict(conn.execute("SELECT key, value FROM meta").fetchall()) == {"schema": SCHEMA, "version": "1"}
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    # A new router on the same database adds to it, and a budget counts what was already spent.
    r2 = routerx.Router(db=db)
    b = r2.set_budget("tenant:acme", usd_per_day=1.0, tokens_per_month=10_000, action="reject")
    assert len(b) == 2
    st = {x["metric"]: x for x in r2.budgets()}
    assert st["usd"]["spent"] == pytest.approx(spent, abs=1e-8)
    assert st["tokens"]["spent"] == 300
    spent2 = _traffic(r2, 5)
    assert r2.flush() >= 1
    r2.close()
    tot = summarize(load_usage(str(db)), ())[0]
    assert tot["calls"] == 15 and tot["cost_usd"] == pytest.approx(spent + spent2, abs=1e-8)
    # Config-file budgets are seeded the same way.
    cfg = tmp_path / "routerx.toml"
    cfg.write_text('[accounting]\ndb = "acct.db"\n\n[[budgets]]\nscope = "workflow:wf"\ntokens_per_day = 100000\naction = "warn"\n')
    r3 = routerx.Router(cfg)
    assert r3.db_path == str(db)
    assert r3.budgets()[0]["spent"] == 450
    r3.close()


CHILD = textwrap.dedent(
    """
    import sys, time
    import routerx
    r = routerx.Router({"accounting": {"flush_interval_ms": %(ms)d}}, db=sys.argv[1])
    def calls(n, start):
        for i in range(start, start + n):
            d = r.route(f"Question {i}: name a prime larger than {i}", tenant="crash", no_cache=True)
            r.record(d, "answer", 20, 10, 50.0)
    calls(50, 0)
    time.sleep(%(ms)d * 5 / 1000)   # several flush intervals: the first 50 are on disk
    calls(50, 50)
    print("flushed-50", flush=True)
    time.sleep(%(ms)d * 5 / 1000)
    print("flushed-100", flush=True)
    calls(50, 100)
    print("recorded-150", flush=True)
    time.sleep(60)
    """
)


def test_crash_loses_at_most_the_last_flush_interval(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    script = tmp_path / "child.py"
    script.write_text(CHILD % {"ms": 100})
    env = dict(os.environ, ROUTERX_DB=":memory:")
    p = subprocess.Popen([sys.executable, str(script), str(db)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert p.stdout is not None
        lines = []
        for line in p.stdout:
            lines.append(line.strip())
            if line.strip() == "recorded-150":
                break
        assert lines[-1] == "recorded-150", lines
        p.send_signal(signal.SIGKILL)  # no atexit, no final flush
        p.wait(10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    calls = summarize(load_usage(str(db)), ())[0]["calls"]
    # Everything recorded at least one flush interval before the kill survived; only the last
    # batch (recorded within the final interval) may be lost, in whole or in part.
    assert 100 <= calls <= 150, calls


def test_metrics_endpoint_and_stats_from_server(capsys: pytest.CaptureFixture[str]) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from routerx.metrics import start_metrics_server

    r = routerx.Router(db=None)
    r.set_budget("tenant:acme", usd_per_day=5, action="warn")
    spent = _traffic(r, 3)
    r.route("Question 0: what is the capital of country number 0?", tenant="acme", agent="bot2")  # a hit
    srv = start_metrics_server(r, port=0)
    try:
        text = urllib.request.urlopen(srv.url + "/metrics", timeout=5).read().decode()
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        val = lambda name, **lb: sum(s.value for s in fams[name].samples if all(s.labels.get(k) == v for k, v in lb.items()) and s.name == name + "_total")  # noqa: E731
        assert val("routerx_requests") == 4
        assert val("routerx_cache_lookups", outcome="hit") == 1
        assert val("routerx_calls", agent="bot") == 3
        assert val("routerx_cost_usd", tenant="acme") == pytest.approx(spent, abs=1e-8)
        assert val("routerx_cost_avoided_usd", reason="cache", agent="bot2") > 0
        assert sum(s.value for s in fams["routerx_decisions"].samples) == 3
        lat = [s for s in fams["routerx_route_latency_seconds"].samples if s.name.endswith("_count")]
        assert lat[0].value == 4
        b = [s for s in fams["routerx_budget_spent"].samples]
        assert b[0].labels["scope"] == "tenant:acme" and b[0].value == pytest.approx(spent, abs=1e-8)
        assert "routerx_call_latency_seconds" in fams and "routerx_energy_joules" in fams
        assert cli.main(["stats", "--server", srv.url, "--by", "agent", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert {x["agent"]: x["requests"] for x in out["rows"]} == {"bot": 3, "bot2": 1}
    finally:
        srv.shutdown()


def test_serve_exposes_metrics_of_the_serving_router(tmp_path: Path) -> None:
    from routerx.server import serve

    cfg = tmp_path / "routerx.toml"
    cfg.write_text('[accounting]\ndb = ""\n')
    srv = serve(str(cfg), port=0, block=False, metrics_port=0)
    try:
        assert srv.metrics is not None
        c = routerx.Client(srv.target, timeout=5)
        for i in range(3):
            c.route(f"metrics over the wire {i}", tenant="acme")

        def requests() -> float:
            text = urllib.request.urlopen(srv.metrics.url + "/metrics", timeout=5).read().decode()  # type: ignore[union-attr]
            line = next(x for x in text.splitlines() if x.startswith("routerx_requests_total"))
            return float(line.split()[-1])

        assert requests() == 3
        # After ReloadConfig the endpoint follows the new router.
        c.reload_config()
        c.route("after reload", tenant="acme")
        assert requests() == 1
        c.close()
    finally:
        srv.stop(0)
    with pytest.raises(OSError):
        urllib.request.urlopen(srv.metrics.url + "/metrics", timeout=2)


def test_cli_stats_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "s.db"
    with routerx.Router(db=db) as r:
        _traffic(r, 4, tenant="t1")
        _traffic(r, 2, tenant="t2")
    assert cli.main(["stats", "--db", str(db), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(x["tenant"], x["calls"]) for x in out["rows"]] == [("t1", 4), ("t2", 2)]
    assert cli.main(["stats", "--db", str(db), "--by", "model"]) == 0
    text = capsys.readouterr().out
    assert "tokens/$" in text and "gpu-standard" in text
    assert cli.main(["stats", "--db", str(tmp_path / "missing.db")]) == 2
    assert "no accounting database" in capsys.readouterr().err
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(routerx.ConfigError):
        routerx.Router(db=bad)


def test_config_accounting_section_errors() -> None:
    with pytest.raises(routerx.ConfigError, match="flush_interval_ms"):
        routerx.load_config({"accounting": {"flush_interval_ms": 0}})
    with pytest.raises(routerx.ConfigError, match="unknown key"):
        routerx.load_config({"accounting": {"dbb": "x"}})
    with pytest.raises(routerx.UnknownModelError):
        routerx.Router({"accounting": {"baseline_model": "nope"}}, db=None)
