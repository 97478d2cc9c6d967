"""The `routerx` command as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import shared_data


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "routerx.cli", *args], capture_output=True, text=True, input=stdin, timeout=120)


def test_route_json() -> None:
    p = run("route", "Translate into Spanish: where is the station?", "--latency-budget-ms", "3000", "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["category"] == "translation"
    assert d["predicted_latency_ms"] <= 3000
    assert d["cache"] == "miss" and d["reason"]


def test_route_text_and_stdin() -> None:
    p = run("route", "-", stdin="Write a SQL query that counts orders per customer.")
    assert p.returncode == 0, p.stderr
    assert "category code" in p.stdout and "fallback 1:" in p.stdout


def test_route_errors_exit_2_with_a_message() -> None:
    p = run("route", "   ")
    assert p.returncode == 2 and "the prompt is empty" in p.stderr
    p = run("route", "hi", "--models", "nope")
    assert p.returncode == 2 and "unknown model 'nope'" in p.stderr
    p = run("route", "hi", "--latency-budget-ms", "nan")
    assert p.returncode == 2 and "latency_budget_ms" in p.stderr


def test_bad_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[router\n")
    p = run("--config", str(cfg), "catalog")
    assert p.returncode == 2 and f"{cfg}:1" in p.stderr


def test_catalog_table_and_json() -> None:
    p = run("catalog")
    assert p.returncode == 0, p.stderr
    for tier in ("gpu-standard", "lpu-premium", "batch", "cpu-edge"):
        assert tier in p.stdout
    rows = json.loads(run("catalog", "--json").stdout)
    assert {"model", "tier", "price_in_per_1m", "decode_tps"} <= set(rows[0])
    lpu = [r for r in rows if r["tier"] == "lpu-premium"]
    gpu = {r["model"]: r for r in rows if r["tier"] == "gpu-standard"}
    assert lpu and all(r["decode_tps"] > gpu[r["model"]]["decode_tps"] and r["price_out_per_1m"] > gpu[r["model"]]["price_out_per_1m"] for r in lpu)


def test_demo_on_bundled_prompts() -> None:
    p = run("demo", "--bundled", "--json")
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert rep["prompts"] >= 100
    assert set(rep["categories"]) >= {"chat", "code", "math", "translation", "extraction", "summarization", "creative", "reasoning", "tool-use"}
    assert 0 < rep["predicted_cost_usd"] < rep["baseline_cost_usd"]
    assert rep["savings_pct"] == pytest.approx(100 * (1 - rep["predicted_cost_usd"] / rep["baseline_cost_usd"]))
    assert rep["second_pass_exact_hits"] == rep["prompts"] and rep["second_pass_cost_usd"] == 0
    assert rep["label_agreement"] > 0.6
    assert "lpu-premium" in rep["tiers"]


def test_demo_on_shared_data() -> None:
    data = shared_data("routellm-evals")
    p = run("demo", "--data", str(data.parent))
    assert p.returncode == 0, p.stderr
    assert "Routed 120 prompts" in p.stdout and "% saved" in p.stdout
