"""`routerx train` and `routerx eval`: the learned router from outcome files to a curve."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from ..errors import ConfigError
from .data import NAMED, ColumnMap, OutcomeSet, load, load_named, prompt_tokens
from .evaluate import RULES, Report, cold_start_predictions, cross_val_cost, cross_val_predict, evaluate_predictions
from .model import DEFAULT_EMBEDDER, DEFAULT_L2, DEFAULT_TAIL_CHARS, EMBEDDERS, atomic_write, embed_prompts, save_artefact, train

__all__ = ["add_data_arguments", "add_parsers", "cmd_train", "cmd_eval", "load_data", "write_report"]


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", nargs="+", required=True, help=f"outcome files (.csv/.jsonl) or public sets by name ({', '.join(NAMED)})")
    p.add_argument("--prompt-column", default="prompt")
    p.add_argument("--model-columns", help="wide files: comma-separated columns, one score per model (default: long format)")
    p.add_argument("--cost-column", help="wide files: cost column template, e.g. '{model}|total_cost'")
    p.add_argument("--model-column", default="model", help="long files: the model's column")
    p.add_argument("--score-column", default="score", help="long files: the outcome's column")
    p.add_argument("--group-column", help="task or source label (stratifies folds)")
    p.add_argument("--score-scale", type=float, default=1.0, help="scores are divided by this (10 for 1–10 judge scores)")
    p.add_argument("--price", action="append", default=[], metavar="MODEL=USD", help="cost per call of a model without cost columns (repeatable)")
    p.add_argument("--by-group", action="store_true", help="also learn a logit offset per group and model (the group column; at run time the request's step label selects it)")


def add_parsers(sub: Any) -> None:
    t = sub.add_parser("train", help="train the learned router from prompt/per-model-outcome files")
    add_data_arguments(t)
    t.add_argument("--out", required=True, help="artefact to write ([quality] model = this path)")
    t.add_argument("--embedder", choices=EMBEDDERS, default=DEFAULT_EMBEDDER)
    t.add_argument("--l2", type=float, default=DEFAULT_L2)
    t.add_argument("--tail-chars", type=int, default=DEFAULT_TAIL_CHARS)
    t.add_argument("--seed", type=int, default=0)
    e = sub.add_parser("eval", help="cost–quality curve and routing metrics of the learned router")
    add_data_arguments(e)
    e.add_argument("--model", help="evaluate this artefact (default: train and cross-validate on --data)")
    e.add_argument("--alias", action="append", default=[], metavar="DATA_MODEL=ARTEFACT_MODEL", help="with --model: read a data model's predictions from an artefact model of another name (repeatable)")
    e.add_argument("--folds", type=int, default=5)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--embedder", choices=EMBEDDERS, default=DEFAULT_EMBEDDER, help="for cross-validation")
    e.add_argument("--l2", type=float, default=DEFAULT_L2, help="for cross-validation")
    e.add_argument("--tail-chars", type=int, default=DEFAULT_TAIL_CHARS, help="for cross-validation")
    e.add_argument("--rule", choices=RULES, default="wtp", help="the knob swept: willingness to pay (default) or quality target")
    e.add_argument("--cost-basis", choices=("estimated", "realized"), default="estimated", help="what the router chooses on: ex-ante costs, per model a line in prompt tokens fitted on the other folds (default), or each call's realized cost, which leaks the outcome (for comparison); it is always charged the realized cost")
    e.add_argument("--out-dir", help="write curve.png, table.csv and report.json here")
    e.add_argument("--json", action="store_true")


def _prices(specs: Sequence[str]) -> Dict[str, float]:
    out = {}
    for s in specs:
        name, sep, v = s.rpartition("=")
        try:
            out[name] = float(v)
        except ValueError:
            name = ""
        if not sep or not name or not out[name] >= 0:
            raise ConfigError(f"--price {s!r}: expected MODEL=USD with USD ≥ 0", field="price")
    return out


def load_data(args: argparse.Namespace) -> OutcomeSet:
    cols = ColumnMap(
        prompt=args.prompt_column,
        model_columns=tuple(m.strip() for m in args.model_columns.split(",") if m.strip()) if args.model_columns else (),
        cost_column=args.cost_column,
        model=args.model_column,
        score=args.score_column,
        group=args.group_column,
        score_scale=args.score_scale,
    )
    if not (args.score_scale > 0):
        raise ConfigError(f"--score-scale must be > 0, got {args.score_scale}", field="score_scale")
    prices = _prices(args.price)
    sets = [load_named(d) if d in NAMED else load(d, cols, prices) for d in args.data]
    return sets[0] if len(sets) == 1 else OutcomeSet.concat(sets)


def cmd_train(args: argparse.Namespace) -> int:
    data = load_data(args)
    art = train(data, args.embedder, args.l2, args.tail_chars, args.seed, by_group=args.by_group)
    p = save_artefact(art, args.out)
    print(f"trained on {len(data)} prompts × {len(data.models)} models ({data.source}), embedder {art['embedder_id']}")
    for m in art["models"]:
        print(f"  {m['name']:<44} labelled {m['labelled']:>6}  mean quality {m['mean_quality'] if m['mean_quality'] is None else round(m['mean_quality'], 3)}")
    print(f"wrote {p} ({p.stat().st_size:,} bytes)")
    return 0


def _aliases(specs: Sequence[str]) -> Dict[str, str]:
    out = {}
    for s in specs:
        a, sep, b = s.partition("=")
        if not sep or not a or not b:
            raise ConfigError(f"--alias {s!r}: expected DATA_MODEL=ARTEFACT_MODEL", field="alias")
        out[a] = b
    return out


def _predict_with(model_path: str, data: OutcomeSet, aliases: Optional[Dict[str, str]] = None) -> Any:
    """p̂ from a saved artefact, through the core's own evaluation (routerx._core.QualityModel)."""
    import numpy as np

    from . import load_quality_model

    m = load_quality_model(model_path)
    x, model_id = embed_prompts(data.prompts, m.embedder, m.tail_chars)
    if model_id != m.embedder_id:
        raise ConfigError(f"{model_path}: trained on {m.embedder_id} vectors, this embedder is {model_id}", file=model_path)
    groups = list(data.groups) if m.groups else None
    raw = np.frombuffer(m.predict(np.ascontiguousarray(x, dtype=np.float32).tobytes(), groups), dtype=np.float32).reshape(len(data), len(m.names))
    wanted = [(aliases or {}).get(name, name) for name in data.models]
    missing = [name for name in wanted if name not in m.names]
    if missing:
        raise ConfigError(f"{model_path}: the artefact has no model {missing[0]!r} (it has {', '.join(m.names)}; map names with --alias)", file=model_path)
    return raw[:, [m.names.index(name) for name in wanted]].astype(np.float64)


def cmd_eval(args: argparse.Namespace) -> int:
    import numpy as np

    data = load_data(args)
    keep = ~np.isnan(data.quality).any(axis=1)
    notes = []
    if not keep.all():
        notes.append(f"{int((~keep).sum())} prompts without every model's outcome were left out")
        data = data.subset([int(i) for i in np.nonzero(keep)[0]])
    if args.model:
        p = _predict_with(args.model, data, _aliases(args.alias))
        how = f"artefact {args.model}"
    else:
        x, _ = embed_prompts(data.prompts, args.embedder, args.tail_chars)
        p = cross_val_predict(data, x, args.folds, args.seed, args.l2, by_group=args.by_group)
        how = f"{args.folds}-fold cross-validation (seed {args.seed}, embedder {args.embedder}, l2 {args.l2}{', by group' if args.by_group else ''})"
    if args.cost_basis == "estimated":
        choice = cross_val_cost(data, prompt_tokens(data.prompts), args.folds, args.seed)
        notes.append(f"the router chooses on ex-ante costs ({min(args.folds, len(data))}-fold, a line in prompt tokens per model) and is charged realized ones")
    else:
        choice = None
        notes.append("the router chooses on each call's realized cost (leaks the outcome)")
    rep = evaluate_predictions(data, p, rule=args.rule, choice_cost=choice)
    cold = _cold_start(data, args, choice, notes)
    if cold is not None:
        rep.cold_start = cold.router
        rep.metrics["cold_start"] = {k: v for k, v in cold.metrics.items() if k in COLD_START_METRICS}
    rep.notes = [how, *notes]
    files = write_report(rep, Path(args.out_dir)) if args.out_dir else []
    if args.json:
        print(json.dumps(report_dict(rep), indent=2))
    else:
        print(format_report(rep))
        for f in files:
            print(f"wrote {f}")
    return 0


#: The cold-start figures a report carries beside the learned router's.
COLD_START_METRICS = ("aiq", "max_quality", "cost_to_best_single", "quality_at_20pct_cost", "quality_at_40pct_cost", "quality_at_60pct_cost", "quality_at_80pct_cost", "apgr", "cpt50", "cpt80")


def _cold_start(data: OutcomeSet, args: argparse.Namespace, choice: Any, notes: List[str]) -> Optional[Report]:
    """The same sweep for the router with no learned model (the core classifier's complexity under
    the default config's quality floor and span): what training bought, on this data."""
    from ..errors import RouterxError
    from ..router import Router

    r = Router(db=None)
    try:
        decisions = r.route_many([{"prompt": p, "no_cache": True, "no_store": True} for p in data.prompts])
        settings = r.config.policy
    except RouterxError as e:
        notes.append(f"no cold-start baseline: {e}")
        return None
    finally:
        r.close(snapshot=False)
    p = cold_start_predictions(data, [d.complexity for d in decisions], settings.quality_floor, settings.quality_span, args.folds, args.seed)
    return evaluate_predictions(data, p, rule=args.rule, choice_cost=choice)


def report_dict(rep: Report) -> Dict[str, Any]:
    return {
        "data": rep.data,
        "prompts": rep.prompts,
        "models": rep.models,
        "notes": rep.notes,
        "metrics": rep.metrics,
        "singles": [{"model": m, "quality": s.quality, "cost": s.cost} for m, s in zip(rep.models, rep.singles)],
        "oracle": {"quality": rep.oracle.quality, "cost": rep.oracle.cost},
        "router": [_point_dict(rep, pt) for pt in rep.router],
        "cold_start": [_point_dict(rep, pt) for pt in rep.cold_start],
    }


def _point_dict(rep: Report, pt: Any) -> Dict[str, Any]:
    return {"knob": pt.knob, "quality": pt.quality, "cost": pt.cost, "shares": dict(zip(rep.models, pt.shares))}


def _table_points(rep: Report) -> List[Any]:
    """About eight points spread along the curve's cost range, for the printed table."""
    pts = sorted(rep.router, key=lambda pt: pt.cost)
    lo, hi = pts[0].cost, pts[-1].cost
    out: List[Any] = []
    for frac in (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0):
        target = lo + frac * (hi - lo)
        pt = min(pts, key=lambda p: abs(p.cost - target))
        if pt not in out:
            out.append(pt)
    return out


def format_report(rep: Report) -> str:
    m = rep.metrics
    short = [name.split("/")[-1][:14] for name in rep.models]
    lines = [f"{rep.data}: {rep.prompts} prompts × {len(rep.models)} models; {'; '.join(rep.notes)}", ""]
    lines.append(f"{'':<22}{'quality':>9}{'cost $':>12}{'vs best':>9}  shares")
    best_cost = m["best_single_cost"]
    for name, s in zip(rep.models, rep.singles):
        lines.append(f"{'single ' + name.split('/')[-1][:15]:<22}{s.quality:>9.4f}{s.cost:>12.6f}{s.cost / best_cost:>8.0%}")
    lines.append(f"{'oracle':<22}{rep.oracle.quality:>9.4f}{rep.oracle.cost:>12.6f}{rep.oracle.cost / best_cost:>8.0%}")
    for pt in _table_points(rep):
        share = ", ".join(f"{n} {v:.0%}" for n, v in zip(short, pt.shares) if v >= 0.005)
        lines.append(f"{'router knob ' + format(pt.knob, '.3g'):<22}{pt.quality:>9.4f}{pt.cost:>12.6f}{pt.cost / best_cost:>8.0%}  {share}")
    lines.append("")
    ctb = m["cost_to_best_single"]
    lines.append(f"best single model: {m['best_single']} (quality {m['best_single_quality']:.4f}, ${best_cost:.6f}/prompt)")
    lines.append(f"router reaches its quality at {'never' if ctb is None else format(ctb, '.1%')} of its cost; max router quality {m['max_quality']:.4f}")
    lines.append(f"AIQ {m['aiq']:.4f} vs single-model hull {m['aiq_single_hull']:.4f} (random mixing of single models)")
    for frac in (20, 40, 60, 80):
        v = m.get(f"quality_at_{frac}pct_cost")
        bound = m.get(f"by_group_bound_at_{frac}pct_cost")
        tail = "" if bound is None else f" (routing by task alone, in-sample bound: {bound:.4f})"
        lines.append(f"quality at ≤{frac}% of the best model's cost: {'-' if v is None else format(v, '.4f')}{tail}")
    if "prediction_auc" in m:
        aucs = ", ".join(f"{n.split('/')[-1][:14]} {a['all']:.2f} ({a['within_group']:.2f})" for n, a in m["prediction_auc"].items())
        lines.append(f"prediction AUC per model, all prompts (within a task): {aucs}")
    if "apgr" in m:
        c50, c80 = m["cpt50"], m["cpt80"]
        lines.append(f"APGR {m['apgr']:.3f} (random {m['random_apgr']:.3f}); CPT(50%) {_pct(c50)}, CPT(80%) {_pct(c80)} of calls to {m['strong']}")
    if "cold_start" in m:
        cs = m["cold_start"]
        two = f"; APGR {cs['apgr']:.3f}, CPT(50%) {_pct(cs['cpt50'])}" if "apgr" in cs else ""
        q40 = cs.get("quality_at_40pct_cost")
        lines.append(f"cold start (no learned model: the classifier's complexity): AIQ {cs['aiq']:.4f}; quality at ≤40% of the best model's cost {'-' if q40 is None else format(q40, '.4f')}{two}")
    return "\n".join(lines)


def _pct(v: Optional[float]) -> str:
    return "-" if v is None else format(v, ".1%")


def write_report(rep: Report, out: Path) -> List[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = []
    j = out / "report.json"
    j.write_text(json.dumps(report_dict(rep), indent=2), encoding="utf-8")
    files.append(j)
    t = out / "table.csv"
    with open(t, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["curve", "knob", "quality", "cost_usd", *[f"share:{m}" for m in rep.models]])
        for name, s in zip(rep.models, rep.singles):
            w.writerow([f"single:{name}", "", f"{s.quality:.6f}", f"{s.cost:.8f}", *[f"{v:.4f}" for v in s.shares]])
        w.writerow(["oracle", "", f"{rep.oracle.quality:.6f}", f"{rep.oracle.cost:.8f}", *[f"{v:.4f}" for v in rep.oracle.shares]])
        for curve, pts in (("router", rep.router), ("cold_start", rep.cold_start)):
            for pt in pts:
                w.writerow([curve, f"{pt.knob:.6g}", f"{pt.quality:.6f}", f"{pt.cost:.8f}", *[f"{v:.4f}" for v in pt.shares]])
    files.append(t)
    files.append(plot(rep, out / "curve.png"))
    return files


def plot(rep: Report, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .evaluate import concave_envelope

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    pts = sorted(rep.router, key=lambda p: p.cost)
    ax.plot([p.cost for p in pts], [p.quality for p in pts], "-", color="C0", lw=2, label="routerx learned router (knob sweep)")
    if rep.cold_start:
        cold = sorted(rep.cold_start, key=lambda p: p.cost)
        ax.plot([p.cost for p in cold], [p.quality for p in cold], ":", color="C3", lw=1.5, label="cold start: the classifier's complexity, nothing learned")
    env = concave_envelope([(s.cost, s.quality) for s in rep.singles])
    ax.plot([e[0] for e in env], [e[1] for e in env], "--", color="0.5", label="random mixing of single models (hull)")
    for name, s in zip(rep.models, rep.singles):
        ax.plot(s.cost, s.quality, "o", color="C1")
        ax.annotate(name.split("/")[-1], (s.cost, s.quality), fontsize=7, xytext=(3, -9), textcoords="offset points")
    ax.plot(rep.oracle.cost, rep.oracle.quality, "*", color="C2", ms=12, label="oracle")
    ax.set_xscale("log")
    ax.set_xlabel("mean cost per prompt (USD, log scale)")
    ax.set_ylabel("mean quality")
    m = rep.metrics
    ax.set_title(f"{rep.data}: AIQ {m['aiq']:.3f} vs hull {m['aiq_single_hull']:.3f}" + (f"; APGR {m['apgr']:.3f}" if "apgr" in m else ""))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    try:
        return atomic_write(path, lambda f: fig.savefig(f, format="png"))
    finally:
        plt.close(fig)
