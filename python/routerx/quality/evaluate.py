"""Cost–quality evaluation of a learned router against single models, random mixing and the oracle.

The knob is the one the router exposes: a willingness to pay w (USD per unit quality). For each
prompt the router takes the model with the most expected value w × p̂ − cost (the rule of
``PolicyTable::choose_with``). Sweeping w from 0 (always the cheapest) upwards traces the router's
curve. The alternative rule, a quality target t (the cheapest model whose p̂ ≥ t, else the highest
p̂), is available as ``rule="target"``; it traces a worse curve on every data set measured.

Metrics, as their authors define them:

- two models (RouteLLM): PGR(x) = (q(x) − q_weak) / (q_strong − q_weak) at a share x of calls to
  the strong model; APGR is its area over x ∈ [0, 1] (the curve linearly interpolated between the
  sweep's points, whose ends are all-weak and all-strong); CPT(p) is the smallest strong share with
  PGR ≥ p.
- N models (RouterBench): AIQ is the area under the non-decreasing concave envelope of the
  router's (cost, quality) points — any two points can be mixed at random, so the envelope is
  reachable — over the cost range of the single models, divided by that range. The same number for
  the single models' points is the "single-model hull" a router must beat. Cost to reach the best
  single model's quality is read off the sweep's actual points, not the envelope.

The router chooses on what it could know before the call: an ex-ante cost per (prompt, model), by
default :func:`cross_val_cost` (per model, a line in the prompt's tokens fitted on the other folds —
what a catalog price × tokens plus a typical answer length gives), and is charged the call's
realized cost. Choosing on the realized cost would leak the outcome: a model that rambles through
a wrong answer costs more, so the router would avoid exactly the calls that fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import ConfigError
from .data import OutcomeSet, _np

__all__ = ["Point", "Report", "choose", "sweep", "folds", "evaluate_predictions", "cross_val_cost", "cold_start_predictions", "prediction_auc", "by_group_quality", "concave_envelope", "area"]

#: Slope of the cold-start probability in quality units: σ(8 × 0.1) = 0.69, so a model 0.1 above
#: the required quality is judged fairly likely, not certain, to answer well.
COLD_START_STEEPNESS = 8.0


@dataclass
class Point:
    knob: float
    quality: float
    cost: float
    shares: List[float]


@dataclass
class Report:
    data: str
    models: List[str]
    prompts: int
    router: List[Point]
    singles: List[Point]
    oracle: Point
    metrics: Dict[str, Any] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)
    #: The cold-start router's curve (no learned model: the classifier's complexity), if evaluated.
    cold_start: List[Point] = field(default_factory=list)


def choose(p: Any, cost: Any, target: float) -> Any:
    """Per prompt, the cheapest model with p̂ ≥ target, else the highest p̂ (ties: cheaper)."""
    np = _np()
    ok = p >= target
    big = np.where(ok, cost, np.inf)
    cheapest = big.argmin(axis=1)
    # Best effort: highest p̂, cheaper first on ties (lexsort's last key is the primary one).
    best = np.lexsort((cost, -p), axis=1)[:, 0] if len(p) else np.zeros(0, int)
    return np.where(ok.any(axis=1), cheapest, best)


def _point(knob: float, pick: Any, q: Any, c: Any) -> Point:
    np = _np()
    rows = np.arange(len(pick))
    m = q.shape[1]
    shares = np.bincount(pick, minlength=m) / max(1, len(pick))
    return Point(float(knob), float(q[rows, pick].mean()), float(c[rows, pick].mean()), [float(s) for s in shares])


def choose_value(p: Any, cost: Any, wtp: float) -> Any:
    """Per prompt, the model with the most expected value wtp × p̂ − cost (ties: cheaper)."""
    np = _np()
    v = wtp * p - cost
    best = v.max(axis=1, keepdims=True)
    return np.where(v >= best - 1e-15, cost, np.inf).argmin(axis=1)


#: Knob rules: "wtp" (willingness to pay, the router's default knob) and "target" (min quality).
RULES = ("wtp", "target")


def sweep(p: Any, q: Any, c: Any, steps: int = 201, rule: str = "wtp", choice_cost: Any = None) -> List[Point]:
    """The router's points along its knob: willingness to pay from 0 to far beyond every price
    difference, or quality targets spread by the quantiles of p̂ (so each step moves calls).
    The router chooses on ``choice_cost`` (default: ``c``) and is charged ``c``."""
    np = _np()
    e = c if choice_cost is None else choice_cost
    if rule == "wtp":
        scale = float(e.mean(axis=0).max()) or 1.0
        knobs = np.concatenate([[0.0], scale * np.geomspace(1e-3, 1e5, steps)])
        return [_point(k, choose_value(p, e, k), q, c) for k in knobs]
    if rule == "target":
        qs = np.unique(np.quantile(p, np.linspace(0, 1, steps)))
        targets = np.concatenate([[0.0], qs, [1.0 + 1e-9]])
        return [_point(t, choose(p, e, t), q, c) for t in targets]
    raise ConfigError(f"unknown rule {rule!r} (one of {', '.join(RULES)})", field="rule")


def folds(n: int, k: int, seed: int, groups: Optional[Sequence[str]] = None) -> List[Any]:
    """k disjoint test folds, stratified by group, deterministic for a seed."""
    np = _np()
    if not 2 <= k <= n:
        raise ConfigError(f"folds must be in [2, {n}], got {k}", field="folds")
    rng = np.random.default_rng(seed)
    order: List[int] = []
    labels = list(groups) if groups is not None else ["all"] * n
    for g in sorted(set(labels)):
        idx = np.array([i for i, x in enumerate(labels) if x == g])
        order += list(rng.permutation(idx))
    out: List[List[int]] = [[] for _ in range(k)]
    for j, i in enumerate(order):
        out[j % k].append(int(i))
    return [np.array(sorted(f)) for f in out]


def concave_envelope(points: Sequence[Tuple[float, float]]) -> List[Tuple[float, float]]:
    """Upper concave, non-decreasing envelope of (cost, quality) points, by cost."""
    pts = sorted(set(points))
    hull: List[Tuple[float, float]] = []
    for x, y in pts:
        if hull and y <= hull[-1][1]:
            continue  # costs more, no better: never on a non-decreasing envelope
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1) >= 0:  # hull[-1] is under the chord
                hull.pop()
            else:
                break
        hull.append((x, y))
    return hull


def by_group_quality(data: OutcomeSet, budget: float) -> float:
    """Best mean quality a router that knows each prompt's group (task) and nothing else can
    reach at mean cost ``budget``: per group, the concave envelope of the models' (mean cost, mean
    quality), the budget spent on the steepest envelope segments first (mixing at random within a
    group). In-sample and fractional, so an upper bound on routing by task alone."""
    np = _np()
    q, c = data.quality, data.cost
    groups = np.array(data.groups)
    n = len(groups)
    spent = got = 0.0
    steps: List[Tuple[float, float, float]] = []  # (slope, extra cost, extra quality), weighted by share
    for g in sorted(set(data.groups)):
        m = groups == g
        w = m.sum() / n
        hull = concave_envelope([(float(c[m, j].mean()), float(q[m, j].mean())) for j in range(q.shape[1])])
        spent += w * hull[0][0]
        got += w * hull[0][1]
        steps += [((y1 - y0) / (x1 - x0), w * (x1 - x0), w * (y1 - y0)) for (x0, y0), (x1, y1) in zip(hull, hull[1:])]
    left = budget - spent
    if left < 0:
        return float("nan")  # below the cheapest model of every group
    for _, dc, dq in sorted(steps, reverse=True):
        take = min(1.0, left / dc)
        got += take * dq
        left -= take * dc
        if left <= 0:
            break
    return got


def area(hull: Sequence[Tuple[float, float]], lo: float, hi: float) -> float:
    """Mean of the envelope over [lo, hi]: flat after its last point, 0 before its first."""
    np = _np()
    xs = np.array([h[0] for h in hull])
    ys = np.array([h[1] for h in hull])
    grid = np.linspace(lo, hi, 4001)
    vals = np.where(grid < xs[0], 0.0, np.interp(grid, xs, ys))
    return float(_trapz(np, vals, grid) / (hi - lo)) if hi > lo else float(ys[-1])


def _interp_share(points: List[Point], strong: int, xs: Any) -> Any:
    np = _np()
    pairs = sorted({(pt.shares[strong], pt.quality) for pt in points})
    sx = np.array([a for a, _ in pairs])
    sy = np.array([b for _, b in pairs])
    # Several targets can give one share: keep the best quality at each share.
    ux = np.unique(sx)
    uy = np.array([sy[sx == u].max() for u in ux])
    return np.interp(xs, ux, uy)


def evaluate_predictions(data: OutcomeSet, p: Any, steps: int = 201, rule: str = "wtp", choice_cost: Any = None) -> Report:
    """Sweeps the knob over out-of-sample predictions ``p`` (n, m) for ``data``. The router
    chooses on ``choice_cost`` (n, m), ex-ante costs such as :func:`cross_val_cost`'s (None: the
    realized costs, which leak the outcome), and is charged the realized ones."""
    np = _np()
    if not data.complete():
        raise ConfigError(f"{data.source}: evaluation needs every model's outcome on every prompt", file=data.source)
    q, c = data.quality, data.cost
    n, m = q.shape
    if not (c > 0).any(axis=0).all():
        free = [name for j, name in enumerate(data.models) if not (c[:, j] > 0).any()]
        raise ConfigError(f"{data.source}: no cost for {', '.join(free)}: a cost–quality curve needs them (give --cost-column, or --price MODEL=USD)", file=data.source)
    if choice_cost is not None and np.shape(choice_cost) != (n, m):
        raise ConfigError(f"choice costs have shape {np.shape(choice_cost)}, the data ({n}, {m})", field="choice_cost")
    router = sweep(p, q, c, steps, rule, choice_cost)
    singles = [_point(j, np.full(n, j), q, c) for j in range(m)]
    # Oracle: per prompt the best quality, and the cheapest model that reaches it.
    best = q.max(axis=1, keepdims=True)
    oracle = _point(float("nan"), np.where(q >= best - 1e-12, c, np.inf).argmin(axis=1), q, c)
    rep = Report(data.source, list(data.models), n, router, singles, oracle)
    top = max(range(m), key=lambda j: (singles[j].quality, -singles[j].cost))
    lo, hi = min(s.cost for s in singles), max(s.cost for s in singles)
    r_env = concave_envelope([(pt.cost, pt.quality) for pt in router] + [(singles[int(np.argmin([s.cost for s in singles]))].cost, min(s.quality for s in singles))])
    s_env = concave_envelope([(s.cost, s.quality) for s in singles])
    reach = [pt for pt in router if pt.quality >= singles[top].quality - 1e-12]
    met = {
        "best_single": data.models[top],
        "best_single_quality": singles[top].quality,
        "best_single_cost": singles[top].cost,
        "aiq": area(r_env, lo, hi),
        "aiq_single_hull": area(s_env, lo, hi),
        "oracle_quality": oracle.quality,
        "oracle_cost": oracle.cost,
        "max_quality": max(pt.quality for pt in router),
        "cost_to_best_single": (min(pt.cost for pt in reach) / singles[top].cost) if reach else None,
    }
    auc = prediction_auc(data, p)
    if auc is not None:
        met["prediction_auc"] = auc
    # Quality the router keeps at fractions of the best model's cost.
    for frac in (0.2, 0.4, 0.6, 0.8):
        under = [pt.quality for pt in router if pt.cost <= frac * singles[top].cost]
        met[f"quality_at_{int(frac * 100)}pct_cost"] = max(under) if under else None
        if len(set(data.groups)) > 1:
            met[f"by_group_bound_at_{int(frac * 100)}pct_cost"] = by_group_quality(data, frac * singles[top].cost)
    if m == 2:
        strong = top
        weak = 1 - strong
        qs, qw = singles[strong].quality, singles[weak].quality
        xs = np.linspace(0, 1, 1001)
        pgr = (_interp_share(router, strong, xs) - qw) / (qs - qw) if qs != qw else np.zeros_like(xs)
        met["strong"], met["weak"] = data.models[strong], data.models[weak]
        met["apgr"] = float(_trapz(np, pgr, xs))
        for target in (0.5, 0.8):
            hit = np.nonzero(pgr >= target)[0]
            met[f"cpt{int(target * 100)}"] = float(xs[hit[0]]) if len(hit) else None
        met["random_apgr"] = 0.5
    rep.metrics = met
    return rep


def cross_val_predict(data: OutcomeSet, x: Any, k: int = 5, seed: int = 0, l2: Optional[float] = None, by_group: bool = False) -> Any:
    """Out-of-fold p̂ (n, m): each prompt predicted by a model trained without its fold (with
    ``by_group``, on the embedding and the prompt's group, as ``routerx train --by-group``)."""
    np = _np()
    from .model import DEFAULT_L2, fit, group_columns, group_names, predict

    if by_group:
        x = np.hstack([x, group_columns(data.groups, group_names(data.groups))])
    p = np.zeros(data.quality.shape)
    for test in folds(len(data), k, seed, data.groups):
        train = np.setdiff1d(np.arange(len(data)), test)
        w, b = fit(x[train], data.quality[train], DEFAULT_L2 if l2 is None else l2)
        p[test] = predict(x[test], w, b)
    return p


def prediction_auc(data: OutcomeSet, p: Any) -> Optional[Dict[str, Dict[str, float]]]:
    """Per model, how well p̂ ranks its right answers above its wrong ones (ROC AUC) over all
    prompts, and within each group (task) on average. The within-group figure is what the router
    knows about a prompt beyond its task: near 0.5, all it can do is route by task. None unless
    every outcome is 0 or 1."""
    np = _np()
    from ..calibrate import roc_auc

    q = data.quality
    if not np.isin(q, (0.0, 1.0)).all():
        return None
    groups = np.array(data.groups)
    out: Dict[str, Dict[str, float]] = {}
    for j, name in enumerate(data.models):
        within = [roc_auc(p[groups == g, j], q[groups == g, j]) for g in sorted(set(data.groups))]
        within = [a for a in within if a == a]  # groups where the model is always right or wrong: no ranking
        out[name] = {"all": roc_auc(p[:, j], q[:, j]), "within_group": float(np.mean(within)) if within else float("nan")}
    return out


def cold_start_predictions(data: OutcomeSet, complexity: Sequence[float], floor: float, span: float, k: int = 5, seed: int = 0, steepness: float = COLD_START_STEEPNESS) -> Any:
    """Out-of-fold p̂ (n, m) of the router with no learned model, for comparison with the learned one.

    The policy's own rule, that a model fits a prompt when its quality reaches ``floor + span ×
    complexity``, made a probability: σ(steepness × (μ_m − required(x))), where the complexity is
    the core classifier's and μ_m is model m's mean quality on the other folds, standing in for the
    catalog's quality score, which outcome data does not carry. The per-prompt signal is the
    classifier's alone: nothing is fitted to the outcomes but one mean per model."""
    np = _np()
    cx = np.asarray(complexity, dtype=np.float64)
    n = len(data)
    if cx.shape != (n,) or not np.isfinite(cx).all():
        raise ConfigError(f"{len(cx)} complexities for {n} prompts (all finite)", field="complexity")
    required = floor + span * cx
    p = np.zeros(data.quality.shape)
    for test in folds(n, min(k, n), seed, data.groups):
        train = np.setdiff1d(np.arange(n), test)
        mu = np.nanmean(data.quality[train], axis=0)
        p[test] = 1.0 / (1.0 + np.exp(-steepness * (mu[None, :] - required[test, None])))
    return p


def cross_val_cost(data: OutcomeSet, tokens: Sequence[int], k: int = 5, seed: int = 0) -> Any:
    """Out-of-fold ex-ante cost (n, m) of each (prompt, model): per model, a + b × the prompt's
    ``tokens``, fitted by least squares on the other folds' realized costs (the folds of
    :func:`cross_val_predict` for the same seed). That is what a router knows before the call —
    the price of the input and of a typical answer — and not how long this answer turned out."""
    np = _np()
    n, m = data.cost.shape
    t = np.asarray(tokens, dtype=np.float64)
    if t.shape != (n,):
        raise ConfigError(f"{len(t)} token counts for {n} prompts", field="tokens")
    out = np.zeros((n, m))
    parts = folds(n, min(k, n), seed, data.groups) if n >= 2 else [np.arange(n)]
    for test in parts:
        train = np.setdiff1d(np.arange(n), test) if n >= 2 else test
        a = np.column_stack([np.ones(len(train)), t[train]])
        coef, *_ = np.linalg.lstsq(a, data.cost[train], rcond=None)
        out[test] = np.column_stack([np.ones(len(test)), t[test]]) @ coef
    # A line can dip below zero for a prompt shorter than any seen: no call is free of charge.
    return np.maximum(out, 0.0)


def _trapz(np: Any, y: Any, x: Any) -> float:
    # numpy 2 renamed trapz to trapezoid; both exist across the versions routerx supports.
    f = getattr(np, "trapezoid", None) or getattr(np, "trapz")
    return float(f(y, x))
