"""`routerx calibrate` and how sure its figures are: bootstrap intervals at a fixed threshold, and
the threshold rule's figures on pairs it did not choose from."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from routerx.calibrate import curve, interval, out_of_sample
from routerx.cli import main


def _calibrated(n: int, seed: int) -> Any:
    """Scores uniform in [0, 1] with P(duplicate | score) = score: the pairs scoring ≥ t have
    precision (1 + t) / 2 and recall 1 - t²."""
    rng = np.random.default_rng(seed)
    s = rng.random(n)
    return s, (rng.random(n) < s).astype(int)


def test_interval_spreads_as_the_binomial_does() -> None:
    # 1,000 accepted of 10,000 pairs, 900 of them duplicates; 4,000 duplicates in all.
    acc = np.zeros(10_000, dtype=bool)
    acc[:1000] = True
    y = np.zeros(10_000, dtype=int)
    y[:900] = 1
    y[1000:4100] = 1
    got = interval(acc, y)
    p, r = got["precision"], got["recall"]
    assert p[0] < 0.9 < p[2] and abs(p[1] - 0.9) < 0.003
    half = 1.96 * math.sqrt(0.9 * 0.1 / 1000)
    assert 0.7 * half < (p[2] - p[0]) / 2 < 1.3 * half
    assert r[0] < 900 / 4000 < r[2]
    # Balanced precision is the curve's: each non-duplicate counts positives/negatives times.
    bal = curve(acc.astype(float), y.tolist(), balanced=True).at_precision(0.0)
    assert bal is not None
    b = interval(acc, y, balanced=True)["precision"]
    want = 900 / (900 + 100 * 4000 / 6000)
    assert abs(b[1] - want) < 0.003 and b[0] < want < b[2]
    # More pairs, a narrower interval; the same seed, the same answer.
    wide = interval(acc[::10], y[::10])["precision"]
    assert wide[2] - wide[0] > 2 * (p[2] - p[0])
    assert interval(acc, y) == got


def test_out_of_sample_tells_what_new_pairs_show() -> None:
    s, y = _calibrated(20_000, 1)
    chosen = curve(s.tolist(), y.tolist()).at_precision(0.9)
    assert chosen is not None and chosen["precision"] >= 0.9
    o = out_of_sample(s, y, 0.9)
    assert o is not None and o["resamples"] == 200 and 190 <= o["found"] <= 200
    # The truth at precision 0.9: threshold 0.8, recall 0.36.
    assert abs(o["precision"][1] - 0.9) < 0.01 and o["precision"][0] < 0.9 < o["precision"][2]
    assert abs(o["recall"][1] - 0.36) < 0.03
    # The chosen threshold on a fresh sample of the same traffic lands inside the spread.
    fs, fy = _calibrated(20_000, 2)
    acc = fs >= chosen["threshold"]
    fresh = fy[acc].mean()
    assert o["precision"][0] <= fresh <= o["precision"][2]
    assert 0.0 < o["met_target"] < 1.0


def test_out_of_sample_keeps_refusals_and_says_when_nothing_reaches_the_target() -> None:
    s, y = _calibrated(5_000, 3)
    refused = np.where(np.arange(5_000) % 2 == 0, -math.inf, s)
    o = out_of_sample(refused, y, 0.9)
    assert o is not None and o["recall"][1] < 0.25  # half the duplicates are never accepted
    rng = np.random.default_rng(4)
    assert out_of_sample(rng.random(2_000), rng.integers(0, 2, 2_000), 0.99) is None


def _pairs(tmp_path: Path) -> Path:
    things = ["a python list", "a git branch", "my laptop battery", "a sourdough starter", "a bike chain", "a wool sweater", "an oven", "a leather jacket"]
    verbs = ["clean", "fix", "store", "sort"]
    rows = []
    for verb, thing in itertools.product(verbs, things):
        rows.append({"text_a": f"How do I {verb} {thing}?", "text_b": f"What is the best way to {verb} {thing}?", "label": 1})
        rows.append({"text_a": f"How can I {verb} {thing}?", "text_b": f"How should I {verb} {thing}?", "label": 1})
    for (v1, t1), (v2, t2) in zip(itertools.product(verbs, things), itertools.product(verbs[1:] + verbs[:1], things[3:] + things[:3])):
        rows.append({"text_a": f"How do I {v1} {t1}?", "text_b": f"How do I {v2} {t2}?", "label": 0})
        rows.append({"text_a": f"Why would I {v1} {t1}?", "text_b": f"Where can I buy {t2}?", "label": 0})
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def test_cli_calibrate_writes_its_threshold_and_how_sure_it_is(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "cal"
    assert main(["calibrate", "--pairs", str(_pairs(tmp_path)), "--target-precision", "0.9", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "128 pairs (64 positive); target precision 0.9" in text
    assert "on pairs not chosen from: precision" in text and "of resamples" in text
    rep = json.loads((out / "calibration.json").read_text(encoding="utf-8"))
    chosen, o = rep["cosine_and_guard"], rep["out_of_sample"]["cosine_and_guard"]
    assert chosen["precision"] >= 0.9 and o["found"] <= o["resamples"] == 200
    assert all(0.0 <= v <= 1.0 for v in o["precision"] + o["recall"]) and o["precision"] == sorted(o["precision"])
    cats = [c for c in rep["categories"].values() if c["threshold"] is not None]
    assert cats and all(c["out_of_sample"]["resamples"] == 200 for c in cats)
    assert "precision on pairs not chosen from" in text.split("guard rejected")[1]
    toml = (out / "semantic.toml").read_text(encoding="utf-8")
    assert f"min_similarity = {chosen['threshold']:.4f}" in toml
    assert (out / "pr_curve.png").stat().st_size > 1000


def test_a_category_loosens_the_threshold_only_where_that_holds_up(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Scores are given (not embedded), so the categories' truths are known: "chat" is calibrated
    (P(dup | s) = s), "code" is a duplicate 86% of the time whatever its score (no threshold truly
    reaches 0.9; a lucky one may), "math" needs more similarity than the file for the same
    precision."""
    import types

    from routerx import calibrate as cal

    rng = np.random.default_rng(7)
    rows: list = []
    for cat, n, p_dup in (("chat", 6000, lambda s: s), ("code", 400, lambda s: 0.86 + 0 * s), ("math", 3000, lambda s: s**4)):
        s = rng.uniform(0.5, 1.0, n) if cat != "chat" else rng.random(n)
        rows += [(cat, float(x), int(rng.random() < p_dup(x))) for x in s]
    pairs = [cal.Pair(f"{cat} {i}", "other", y) for i, (cat, _, y) in enumerate(rows)]
    scores = [s for _, s, _ in rows]
    monkeypatch.setattr(cal, "score_pairs", lambda router, ps: (scores, scores))
    router = types.SimpleNamespace(route=lambda text, **_: types.SimpleNamespace(category=text.split()[0]))
    rep = cal.calibrate(router, pairs, 0.9, str(tmp_path))
    glob, cats = rep["cosine_and_guard"]["threshold"], rep["categories"]
    assert cats["math"]["threshold"] > glob and cats["math"]["written"], "a stricter threshold is always written"
    code, chat = cats["code"], cats["chat"]
    assert code["threshold"] < glob and code["out_of_sample"]["precision"][1] < 0.9 - cal.CATEGORY_TOLERANCE
    assert not code["written"]
    # Chat's own threshold is right (the truth: 0.8) and looser than the file's: it is written.
    assert abs(chat["threshold"] - 0.8) < 0.03 and chat["threshold"] < glob and chat["written"]
    toml = (tmp_path / "semantic.toml").read_text(encoding="utf-8")
    assert '"math" = ' in toml and '"chat" = ' in toml and '"code"' not in toml
