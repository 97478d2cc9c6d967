"""The classifier and token counter on real prompts from ../shared/data."""

from __future__ import annotations

import ast
import csv
import json
from collections import Counter

from routerx import Router

from conftest import shared_data


def test_mbpp_prompts_are_code(shared_router: Router) -> None:
    path = shared_data("routerbench-routerdc-subset") / "mbpp_train.csv"
    csv.field_size_limit(1 << 30)
    with path.open(encoding="utf-8", newline="") as f:
        prompts = [ast.literal_eval(r["prompt"])[0] for r in csv.DictReader(f)]
    cats = Counter(d.category for d in shared_router.route_many(prompts, no_cache=True))
    assert len(prompts) > 250
    assert cats["code"] / len(prompts) > 0.8, cats


def test_mt_bench_categories(shared_router: Router) -> None:
    qs = [json.loads(l) for l in (shared_data("routellm-evals") / "mt_bench/question.jsonl").read_text().splitlines()]
    want = {"coding": "code", "math": "math", "extraction": "extraction", "writing": "creative"}
    for src, cat in want.items():
        ds = shared_router.route_many([q["turns"][0] for q in qs if q["category"] == src], no_cache=True)
        share = sum(d.category == cat for d in ds) / len(ds)
        assert share >= 0.6, (src, [d.category for d in ds])


def test_complexity_tracks_gpt4_vs_mixtral_difficulty(shared_router: Router) -> None:
    """Questions only GPT-4 answers (Mixtral fails) score more complex on average than ones both answer."""
    d = shared_data("routellm-evals") / "mmlu"
    both, only_strong = [], []
    for f in sorted(d.glob("mmlu_*.csv"))[:57]:
        with f.open(encoding="utf-8", newline="") as fh:
            for r in csv.DictReader(fh):
                weak, strong = r["mistralai/Mixtral-8x7B-Instruct-v0.1"] == "True", r["gpt-4-1106-preview"] == "True"
                (both if weak and strong else only_strong if strong else []).append(r["prompt"])
    cx = lambda ps: sum(x.complexity for x in shared_router.route_many(ps[:1500], no_cache=True)) / min(len(ps), 1500)  # noqa: E731
    assert cx(only_strong) > cx(both)
