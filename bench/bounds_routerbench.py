"""Upper bounds for routing on the RouterBench subset: how much quality any router of a given kind
could buy at a share of GPT-4's cost, fitted in-sample (so no cross-validated router can beat them).

    python bench/bounds_routerbench.py [--budget 0.4]

Three kinds of router, each knowing more than the last:

- **single models**: the concave hull of the 11 models' (mean cost, mean quality), mixing at random;
- **task only**: knows each prompt's task and nothing else (``by_group_quality``);
- **task + cascade**: as above, and may also call two or three cheap models first, answer with
  their majority when enough of them agree on the multiple-choice letter, and escalate to a strong
  model otherwise (FrugalGPT/AutoMix-style answer reading; MBPP's free-form code has no letter to
  agree on, so it keeps the single models).

Every cascade (subset of the models under $0.001 a prompt, agreement count, escalation model) is a
pseudo-model whose per-prompt quality and cost are what that cascade would have got and paid; the
bound then picks, per task, the best mixture. This reads the models' recorded answers from the
CSVs, which a router choosing before the call never sees.
"""

from __future__ import annotations

import argparse
import ast
import itertools
import re
from collections import Counter
from typing import Dict, List, Optional

import numpy as np

from routerx.quality.data import OutcomeSet, load_named, routerbench_rows
from routerx.quality.evaluate import by_group_quality, concave_envelope

STRONG = "gpt-4-1106-preview"
ESCALATE = (STRONG, "claude-v1")
CHEAP_USD = 1e-3


def _letter(text: str) -> Optional[str]:
    m = re.match(r"^\(?([A-E])\b", text.strip())
    return m.group(1) if m else None


def _load() -> tuple[OutcomeSet, List[Dict[str, Optional[str]]]]:
    """The outcome set as ``routerx eval`` reads it (prompts missing a model's score left out) and,
    row for row, each model's multiple-choice letter."""
    data = load_named("routerbench")
    answers = [{m: _letter(ast.literal_eval(row[f"{m}|model_response"])[0] or "") for m in models} for _, row, models in routerbench_rows()]
    keep = [i for i in range(len(data)) if not np.isnan(data.quality[i]).any()]
    return data.subset(keep), [answers[i] for i in keep]


def _cascades(data: OutcomeSet, answers: List[Dict[str, Optional[str]]]) -> OutcomeSet:
    """``data`` plus one pseudo-model per cascade (multiple-choice tasks only; elsewhere a cascade
    is charged as its escalation model alone, so it never wins there)."""
    q, c = data.quality, data.cost
    col = {m: j for j, m in enumerate(data.models)}
    cheap = [m for m in data.models if c[:, col[m]].mean() < CHEAP_USD]
    mc = np.array([g != "mbpp" for g in data.groups])
    names, qs, cs = list(data.models), [q], [c]
    for k in (2, 3):
        for team in itertools.combinations(cheap, k):
            first = c[:, [col[m] for m in team]].sum(axis=1)
            for need in range(2, k + 1):
                agreed = np.zeros(len(data), dtype=bool)
                got = np.zeros(len(data))
                for i, a in enumerate(answers):
                    votes = Counter(a[m] for m in team if a[m])
                    if votes and votes.most_common(1)[0][1] >= need:
                        letter = votes.most_common(1)[0][0]
                        agreed[i] = True
                        got[i] = q[i, col[next(m for m in team if a[m] == letter)]]
                for esc in ESCALATE:
                    e = col[esc]
                    qs.append(np.where(mc & agreed, got, q[:, e])[:, None])
                    cs.append(np.where(mc, first, 0.0)[:, None] + np.where(mc & agreed, 0.0, c[:, e])[:, None])
                    names.append(f"{'+'.join(team)} (≥{need} agree, else {esc})")
    return OutcomeSet(data.prompts, names, np.hstack(qs), np.hstack(cs), data.groups, "routerbench+cascades")


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=float, default=0.4, help="share of the strongest model's mean cost (default 0.4)")
    args = ap.parse_args(argv)
    data, answers = _load()
    s = data.models.index(STRONG)
    target_q, budget = data.quality[:, s].mean(), args.budget * data.cost[:, s].mean()
    hull = concave_envelope([(float(data.cost[:, j].mean()), float(data.quality[:, j].mean())) for j in range(len(data.models))])
    singles = float(np.interp(budget, [h[0] for h in hull], [h[1] for h in hull]))
    print(f"{len(data)} prompts; {STRONG}: quality {target_q:.4f} at ${data.cost[:, s].mean():.2e} a prompt")
    print(f"quality reachable at {args.budget:.0%} of its cost (in-sample upper bounds):")
    print(f"  single models, mixed at random  {singles:.4f}")
    wide = _cascades(data, answers)
    for name, d in (("task only", data), ("task + answer-reading cascades", wide)):
        print(f"  {name:<31} {by_group_quality(d, budget):.4f}   (matches {STRONG} at {_share_to_match(d, target_q, s):.0%} of its cost)")
    return 0


def _share_to_match(d: OutcomeSet, target: float, strong: int) -> float:
    """Smallest share of the strong model's cost at which ``by_group_quality`` reaches ``target``."""
    unit = d.cost[:, strong].mean()
    lo, hi = 0.0, 2.0
    for _ in range(40):
        mid = (lo + hi) / 2
        got = by_group_quality(d, mid * unit)
        lo, hi = (lo, mid) if got == got and got >= target - 1e-12 else (mid, hi)
    return hi


if __name__ == "__main__":
    raise SystemExit(main())
