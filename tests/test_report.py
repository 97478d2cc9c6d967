"""`routerx report`: HTML page and PNG plots from the accounting database."""

from __future__ import annotations

from pathlib import Path

import pytest

import routerx
from routerx import cli
from routerx.report import PLOTS, build_report


def _db_with_traffic(path: Path) -> Path:
    with routerx.Router(db=path) as r:
        for i in range(30):
            d = r.route(f"Question {i % 12}: explain item {i % 12} of the invoice", agent=("billing", "support")[i % 2], workflow="wf", step=f"s{i % 3}")
            if d.cache != "exact":
                r.record(d, "answer", d.input_tokens, 80, 400.0)
    return path


def test_report_writes_html_and_readable_pngs(tmp_path: Path) -> None:
    mpimg = pytest.importorskip("matplotlib.image")
    db = _db_with_traffic(tmp_path / "r.db")
    out = tmp_path / "report"
    assert cli.main(["report", "--db", str(db), "--out", str(out)]) == 0
    page = (out / "index.html").read_text()
    assert page.count("data:image/png;base64,") == len(PLOTS)
    for name in ("By agent", "billing", "support", "By model and tier", "tokens_per_joule"):
        assert name in page
    for name, _ in PLOTS:
        img = mpimg.imread(out / name)
        h, w = img.shape[:2]
        assert (h, w) == (400, 800), name
        assert img.std() > 0.01, f"{name} is blank"


def test_report_of_empty_and_multi_hour_data(tmp_path: Path) -> None:
    mpimg = pytest.importorskip("matplotlib.image")
    assert build_report([], tmp_path / "empty").exists()
    assert mpimg.imread(tmp_path / "empty" / "savings.png").shape[:2] == (400, 800)
    row = dict(tenant="t", agent="a", workflow="w", step="s", model="m", tier="gpu-standard", calls=2, cache_hits=1, errors=0,
               input_tokens=10, output_tokens=20, cost_nano=1000, avoided_cache_nano=500, avoided_routing_nano=3000,
               energy_mj=40_000, latency_us_sum=100, latency_buckets=[0] * 12)  # fmt: skip
    rows = [dict(row, hour=1_700_000_000 // 3600 * 3600 + 3600 * h) for h in range(5)]
    index = build_report(rows, tmp_path / "multi")
    assert "<td>10</td>" in index.read_text(), "5 hours × 2 calls in the totals"
    for name, _ in PLOTS:
        assert mpimg.imread(tmp_path / "multi" / name).shape[:2] == (400, 800)
