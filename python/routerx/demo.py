"""`routerx demo`: route a batch of real prompts and show what routing and caching save."""

from __future__ import annotations

import csv
import json
import os
from collections import Counter, defaultdict
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .router import Router

# MT-Bench's own categories, mapped onto routerx's taxonomy, to show how often the classifier agrees.
INTERACTIVE_BUDGET_MS = 1200.0

MT_BENCH_CATEGORIES = {
    "writing": "creative",
    "roleplay": "creative",
    "reasoning": "reasoning",
    "math": "math",
    "coding": "code",
    "extraction": "extraction",
    "stem": "chat",
    "humanities": "chat",
}


@dataclass(frozen=True)
class Prompt:
    text: str
    source: str
    label: Optional[str] = None  # a category from the source, when it has one


def find_data_dir(explicit: Optional[str] = None) -> Optional[Path]:
    """The shared evaluation data: --data, $ROUTERX_DATA, or ../shared/data near cwd or the repo."""
    candidates = [explicit, os.environ.get("ROUTERX_DATA")]
    here = Path(__file__).resolve()
    candidates += [str(Path.cwd() / "../shared/data")] + [str(p / "../shared/data") for p in here.parents[:4]]
    for c in candidates:
        if c and (Path(c) / "routellm-evals").is_dir():
            return Path(c).resolve()
    return None


def load_prompts(data_dir: Optional[Path], limit: int = 120) -> Tuple[List[Prompt], str]:
    """Real prompts from the shared data when present, else the bundled sample."""
    if data_dir is not None:
        prompts: List[Prompt] = []
        for line in (data_dir / "routellm-evals/mt_bench/question.jsonl").read_text(encoding="utf-8").splitlines():
            q = json.loads(line)
            prompts.append(Prompt(q["turns"][0], "mt-bench", MT_BENCH_CATEGORIES.get(q["category"])))
        for f in sorted((data_dir / "routellm-evals/mmlu").glob("mmlu_*.csv")):
            with f.open(encoding="utf-8", newline="") as fh:
                row = next(csv.DictReader(fh), None)
            if row:
                prompts.append(Prompt(row["prompt"], "mmlu"))
        return prompts[:limit], f"{data_dir} (MT-Bench questions and one MMLU question per subject)"
    text = resources.files("routerx").joinpath("data/demo_prompts.jsonl").read_text(encoding="utf-8")
    prompts = [Prompt(d["prompt"], "bundled", d["category"]) for d in map(json.loads, text.splitlines()) if d]
    return prompts[:limit], "the bundled sample (python/routerx/data/demo_prompts.jsonl)"


def run_demo(router: Router, prompts: Sequence[Prompt]) -> Dict[str, Any]:
    """Routes every prompt, records a stand-in answer, then routes them again (all cache hits).

    Every third request is interactive, with a 1.2 s latency budget, to show the tier choice."""
    decisions = router.route_many(
        [{"prompt": p.text, "latency_budget_ms": INTERACTIVE_BUDGET_MS} if i % 3 == 0 else p.text for i, p in enumerate(prompts)]
    )
    tiers: Counter[str] = Counter(d.tier for d in decisions)
    rows: Dict[str, Dict[str, Any]] = defaultdict(lambda: {"n": 0, "choices": Counter(), "complexity": 0.0, "cost": 0.0, "baseline": 0.0})
    agree = labelled = 0
    for p, d in zip(prompts, decisions):
        r = rows[d.category]
        r["n"] += 1
        r["choices"][f"{d.model}/{d.tier}"] += 1
        r["complexity"] += d.complexity
        r["cost"] += d.predicted_cost_usd
        r["baseline"] += router.savings_baseline(d)
        if p.label:
            labelled += 1
            agree += p.label == d.category
        router.record(d, f"(answer to: {p.text[:40]})", d.input_tokens, d.predicted_output_tokens, d.predicted_latency_ms)
    again = router.route_many([p.text for p in prompts])
    cost = sum(r["cost"] for r in rows.values())
    baseline = sum(r["baseline"] for r in rows.values())
    return {
        "prompts": len(prompts),
        "reference_model": router.config.policy.reference_model or router.catalog.strongest().name,
        "categories": {
            c: {
                "n": r["n"],
                "top_choice": r["choices"].most_common(1)[0][0],
                "top_share": r["choices"].most_common(1)[0][1] / r["n"],
                "mean_complexity": r["complexity"] / r["n"],
                "predicted_cost_usd": r["cost"],
                "baseline_cost_usd": r["baseline"],
            }
            for c, r in sorted(rows.items())
        },
        "predicted_cost_usd": cost,
        "baseline_cost_usd": baseline,
        "savings_pct": 100.0 * (1 - cost / baseline) if baseline else 0.0,
        "label_agreement": (agree / labelled) if labelled else None,
        "tiers": dict(tiers.most_common()),
        "second_pass_exact_hits": sum(d.cache == "exact" for d in again),
        "second_pass_cost_usd": sum(d.predicted_cost_usd for d in again),
        "cost_avoided_usd": router.stats()["cost_avoided_usd"],
    }


def format_report(rep: Dict[str, Any], source: str) -> str:
    lines = [f"Routed {rep['prompts']} prompts from {source}.", ""]
    head = ("category", "n", "most chosen model/tier", "share", "complexity", "cost $", f"all-{rep['reference_model']} $")
    body = [
        (c, str(r["n"]), r["top_choice"], f"{100 * r['top_share']:.0f}%", f"{r['mean_complexity']:.2f}", f"{r['predicted_cost_usd']:.4f}", f"{r['baseline_cost_usd']:.4f}")
        for c, r in rep["categories"].items()
    ]
    lines += table(head, body)
    lines += [
        "",
        f"Predicted spend: ${rep['predicted_cost_usd']:.4f} routed vs ${rep['baseline_cost_usd']:.4f} sending everything to "
        f"{rep['reference_model']}: {rep['savings_pct']:.1f}% saved.",
    ]
    lines.append("Tiers chosen: " + ", ".join(f"{t} {n}" for t, n in rep["tiers"].items()) + f" (every third request has a {INTERACTIVE_BUDGET_MS / 1000:g} s latency budget).")
    if rep["label_agreement"] is not None:
        lines.append(f"Classifier agrees with the source's own category on {100 * rep['label_agreement']:.0f}% of labelled prompts.")
    lines.append(
        f"Second pass over the same prompts: {rep['second_pass_exact_hits']}/{rep['prompts']} exact cache hits, "
        f"${rep['second_pass_cost_usd']:.4f} spend, ${rep['cost_avoided_usd']:.4f} avoided."
    )
    return "\n".join(lines)


def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*r) for r in rows]
    return out
