"""``routerx calibrate``: the semantic cache's threshold for a target precision, from labelled pairs.

A pair file holds (text_a, text_b, label) rows, label 1 when an answer to one is a right answer to
the other: a JSON array of objects (``text_a``/``text_b``/``label``, as GPTCache's QQP benchmark data,
or ``origin``/``similar``, all positives), JSON lines, or CSV with a header; ``--a``, ``--b`` and
``--label`` name other columns. Both texts are embedded by the router's embedder (the Rust core,
in batches); each pair's score is its cosine, and a pair the near-miss guard rejects is never a hit
whatever its cosine (that is what the cache does). For the whole file and per task category (of
text_a, by the router's classifier), the lowest threshold whose precision reaches the target is
chosen, and precision, recall and false-hit rate there are reported, with the PR curve as a PNG,
and what the same rule gives on pairs it did not choose from (bootstrap, :func:`out_of_sample`).
"""

from __future__ import annotations

import csv
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from .errors import ConfigError

__all__ = ["Pair", "load_pairs", "Curve", "curve", "calibrate", "interval", "out_of_sample", "roc_auc"]

#: Fewer positives than this in a category: its threshold is not estimated (the global one applies).
MIN_CATEGORY_POSITIVES = 50
#: A threshold must accept at least this many duplicates, so that one lucky pair does not decide.
MIN_ACCEPTED_POSITIVES = 20
#: A category's own threshold may loosen the file's only where its precision on pairs it was not
#: chosen from (median over resamples, :func:`out_of_sample`) is within this of the target: a
#: small category's lowest qualifying threshold is mostly its noise. A stricter one is always
#: written. (A threshold chosen right sits near the target out of sample; QQP's small categories
#: sit 0.02-0.04 under it.)
CATEGORY_TOLERANCE = 0.01


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    label: int


def load_pairs(path: str, a: str = "text_a", b: str = "text_b", label: str = "label") -> List[Pair]:
    """Reads labelled pairs; errors name the file and the row."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read pairs: {e}", file=path) from None
    rows: List[Dict[str, Any]]
    stripped = text.lstrip()
    if p.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
    elif stripped.startswith("["):
        try:
            rows = json.loads(text)
        except ValueError as e:
            raise ConfigError(f"{path}: invalid JSON: {e}", file=path) from None
    else:
        rows = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as e:
                    raise ConfigError(f"{path}:{i}: invalid JSON line: {e}", file=path, line=i) from None
    out: List[Pair] = []
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise ConfigError(f"{path}: row {i}: must be an object", file=path)
        if "origin" in r and "similar" in r and a not in r:
            out.append(Pair(str(r["origin"]), str(r["similar"]), 1))
            continue
        try:
            lab = int(float(r[label]))
            ta, tb = r[a], r[b]
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{path}: row {i}: needs string columns {a!r} and {b!r} and a 0/1 column {label!r}", file=path, field=label) from None
        if lab not in (0, 1) or not isinstance(ta, str) or not isinstance(tb, str):
            raise ConfigError(f"{path}: row {i}: label must be 0 or 1 and texts strings", file=path, field=label)
        out.append(Pair(ta, tb, lab))
    if not out:
        raise ConfigError(f"{path}: no pairs", file=path)
    return out


@dataclass
class Curve:
    """Precision/recall by threshold for one set of pairs."""

    thresholds: List[float]
    precision: List[float]
    recall: List[float]
    false_hit_rate: List[float]
    positives: int
    negatives: int

    def at_precision(self, target: float) -> Optional[Dict[str, float]]:
        """The lowest threshold (most recall) whose precision reaches ``target``, accepting at least
        :data:`MIN_ACCEPTED_POSITIVES` duplicates."""
        # Thresholds ascend: the first that qualifies is the lowest (a later one would only be a
        # higher threshold with less recall).
        for t, p, r, f in zip(self.thresholds, self.precision, self.recall, self.false_hit_rate):
            if p >= target and r * self.positives >= MIN_ACCEPTED_POSITIVES:
                return {"threshold": t, "precision": p, "recall": r, "false_hit_rate": f}
        return None


def curve(scores: Sequence[float], labels: Sequence[int], steps: int = 400, balanced: bool = False) -> Curve:
    """Scores are cosines (−inf for a guard rejection); thresholds from 1 down to 0.

    ``balanced``: precision as on a set with as many non-duplicates as duplicates (each accepted
    non-duplicate counts positives/negatives times), the usual way duplicate-detection precision is
    quoted; recall and false-hit rate do not depend on it."""
    pos = sum(labels)
    neg = len(labels) - pos
    w = pos / neg if balanced and neg else 1.0
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    ts = [1.0 - i / steps for i in range(steps + 1)]
    prec, rec, fhr = [], [], []
    tp = fp = 0
    j = 0
    for t in ts:
        while j < len(order) and scores[order[j]] >= t:
            if labels[order[j]]:
                tp += 1
            else:
                fp += 1
            j += 1
        prec.append(tp / (tp + w * fp) if tp + fp else 1.0)
        rec.append(tp / pos if pos else 0.0)
        fhr.append(fp / neg if neg else 0.0)
    # Ascending thresholds, so at_precision keeps the lowest one that qualifies last.
    return Curve(ts[::-1], prec[::-1], rec[::-1], fhr[::-1], pos, neg)


def _rates(tp: Any, fp: Any, pos: Any, neg: Any, balanced: bool) -> Tuple[Any, Any]:
    """(precision, recall) from counts (arrays), as :func:`curve` defines them."""
    import numpy as np

    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(neg > 0, pos / np.maximum(neg, 1), 1.0) if balanced else 1.0
        prec = np.where(tp + fp > 0, tp / (tp + w * fp), 1.0)
        rec = np.where(pos > 0, tp / np.maximum(pos, 1), 0.0)
    return prec, rec


def _spread(x: Any) -> List[float]:
    """[2.5th percentile, median, 97.5th percentile], to 4 places."""
    import numpy as np

    return [round(float(v), 4) for v in np.percentile(x, [2.5, 50, 97.5])]


def interval(accepted: Any, labels: Any, balanced: bool = False, reps: int = 2000, seed: int = 0) -> Dict[str, List[float]]:
    """How far precision and recall at a fixed acceptance could move on another sample of as many
    pairs: [2.5%, median, 97.5%] over bootstrap resamples. A resample only moves four counts
    (accepted or not, duplicate or not), so they are drawn from one multinomial."""
    import numpy as np

    acc, y = np.asarray(accepted, dtype=bool), np.asarray(labels) == 1
    cells = np.array([(acc & y).sum(), (acc & ~y).sum(), (~acc & y).sum(), (~acc & ~y).sum()], dtype=np.float64)
    n = int(cells.sum())
    if n == 0:
        raise ConfigError("an interval needs pairs", field="pairs")
    tp, fp, fn, tn = np.random.default_rng(seed).multinomial(n, cells / n, size=reps).T.astype(np.float64)
    prec, rec = _rates(tp, fp, tp + fn, fp + tn, balanced)
    return {"precision": _spread(prec), "recall": _spread(rec)}


def out_of_sample(
    scores: Sequence[float], labels: Sequence[int], target: float, balanced: bool = False, reps: int = 200, steps: int = 400, seed: int = 0
) -> Optional[Dict[str, Any]]:
    """What the threshold rule gives on pairs it did not choose from. Chosen on all the pairs, the
    lowest threshold reaching the target is the one where their noise favours it most, so on new
    pairs its precision is lower on average. Per bootstrap resample the threshold is chosen as
    :meth:`Curve.at_precision` does and applied to the pairs the resample left out (about 37%);
    returns [2.5%, median, 97.5%] of their precision and recall over the ``found`` resamples where a
    threshold reaches the target at all, and ``met_target``: the share of all resamples where one
    did and the left-out precision reached the target too. None if none does."""
    import numpy as np

    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels) == 1
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    ts = 1.0 - np.arange(steps + 1) / steps
    # Pairs at or above each threshold: a prefix of the sorted scores (-inf never is).
    upto = np.searchsorted(-s, -ts, side="right")
    rng = np.random.default_rng(seed)
    prec, rec = [], []
    for _ in range(reps):
        w = np.bincount(rng.integers(0, len(s), len(s)), minlength=len(s)).astype(np.float64)
        ctp = np.concatenate([[0.0], np.cumsum(w * y)])
        cfp = np.concatenate([[0.0], np.cumsum(w * ~y)])
        tp, fp = ctp[upto], cfp[upto]
        p, r = _rates(tp, fp, ctp[-1], cfp[-1], balanced)
        ok = np.nonzero((p >= target) & (tp >= MIN_ACCEPTED_POSITIVES))[0]
        if not len(ok):
            continue
        k = upto[ok[-1]]  # the lowest qualifying threshold accepts the first k sorted pairs
        out = w == 0  # the pairs this resample left out
        op, orec = _rates((out[:k] & y[:k]).sum(), (out[:k] & ~y[:k]).sum(), (out & y).sum(), (out & ~y).sum(), balanced)
        prec.append(float(op))
        rec.append(float(orec))
    if not prec:
        return None
    return {"precision": _spread(prec), "recall": _spread(rec), "met_target": round(float(np.sum(np.array(prec) >= target)) / reps, 3), "found": len(prec), "resamples": reps}


def score_pairs(router: Any, pairs: Sequence[Pair], batch: int = 256) -> Tuple[List[float], List[float]]:
    """(cosine, cosine with guard rejections at −inf) per pair."""
    import numpy as np

    from . import _core

    emb = router.embedder
    cos: List[float] = []
    for i in range(0, len(pairs), batch):
        chunk = pairs[i : i + batch]
        va = emb.embed([p.a for p in chunk])
        vb = emb.embed([p.b for p in chunk])
        cos.extend(float(x) for x in np.einsum("ij,ij->i", va, vb))
    guarded = [c if _core.guard_check(p.a, p.b) is None else -math.inf for c, p in zip(cos, pairs)]
    return cos, guarded


def calibrate(
    router: Any,
    pairs: Sequence[Pair],
    target_precision: float = 0.95,
    out_dir: Optional[str] = None,
    sample: Optional[int] = None,
    seed: int = 0,
) -> Dict[str, Any]:
    """Chooses thresholds; writes ``pr_curve.png`` and ``semantic.toml`` to ``out_dir`` when given."""
    if not 0 < target_precision < 1:
        raise ConfigError(f"target precision must be in (0, 1), got {target_precision}", field="target_precision")
    pairs = list(pairs)
    if sample is not None and sample < len(pairs):
        pairs = random.Random(seed).sample(pairs, sample)
    cos, guarded = score_pairs(router, pairs)
    labels = [p.label for p in pairs]
    plain, with_guard = curve(cos, labels), curve(guarded, labels)
    chosen = {"cosine_only": plain.at_precision(target_precision), "cosine_and_guard": with_guard.at_precision(target_precision)}
    report: Dict[str, Any] = {
        "pairs": len(pairs),
        "positives": sum(labels),
        "target_precision": target_precision,
        **chosen,
        # The figures above are on the pairs the thresholds were chosen from; these are the rule's
        # on pairs it did not see (bootstrap), what a new sample of traffic would show.
        "out_of_sample": {k: out_of_sample(s, labels, target_precision, seed=seed) if chosen[k] else None for k, s in (("cosine_only", cos), ("cosine_and_guard", guarded))},
        "guard_rejected_positives": sum(1 for g, l in zip(guarded, labels) if l and g == -math.inf),
        "guard_rejected_negatives": sum(1 for g, l in zip(guarded, labels) if not l and g == -math.inf),
    }
    cats: Dict[str, List[int]] = {}
    for i, p in enumerate(pairs):
        cats.setdefault(router.route(p.a, no_cache=True, no_store=True).category, []).append(i)
    per: Dict[str, Any] = {}
    for cat, idx in sorted(cats.items()):
        lab = [labels[i] for i in idx]
        if sum(lab) < MIN_CATEGORY_POSITIVES:
            per[cat] = {"pairs": len(idx), "positives": sum(lab), "threshold": None}
            continue
        g = [guarded[i] for i in idx]
        c = curve(g, lab).at_precision(target_precision)
        per[cat] = {"pairs": len(idx), "positives": sum(lab), **(c or {"threshold": None})}
        if c:
            o = per[cat]["out_of_sample"] = out_of_sample(g, lab, target_precision, seed=seed)
            glob = report["cosine_and_guard"]
            held = o is not None and o["precision"][1] >= target_precision - CATEGORY_TOLERANCE
            per[cat]["written"] = (glob is not None and c["threshold"] >= glob["threshold"]) or held
    report["categories"] = per
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        _plot(out / "pr_curve.png", plain, with_guard, report, target_precision)
        chosen = report["cosine_and_guard"]
        lines = ["[semantic]", f"# calibrated on {len(pairs)} pairs for precision >= {target_precision}"]
        lines.append(f"min_similarity = {chosen['threshold']:.4f}" if chosen else "# no threshold reaches the target precision")
        cats = {c: v["threshold"] for c, v in per.items() if v.get("written")}
        if cats:
            lines.append("category_min_similarity = { " + ", ".join(f'"{c}" = {t:.4f}' for c, t in sorted(cats.items())) + " }")
        (out / "semantic.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (out / "calibration.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        report["files"] = [str(out / "pr_curve.png"), str(out / "semantic.toml"), str(out / "calibration.json")]
    return report


def _plot(path: Path, plain: Curve, guarded: Curve, report: Dict[str, Any], target: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=110)
    ax.plot(plain.recall, plain.precision, label="cosine")
    ax.plot(guarded.recall, guarded.precision, label="cosine + near-miss guard")
    ax.axhline(target, color="grey", linestyle=":", label=f"target precision {target:.2f}")
    chosen = report["cosine_and_guard"]
    if chosen:
        ax.scatter([chosen["recall"]], [chosen["precision"]], color="black", zorder=3, label=f"chosen: cos ≥ {chosen['threshold']:.3f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0.4, 1.0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    ax.set_title(f"semantic cache hits on {report['pairs']} labelled pairs")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# -- the learned pair verifier ------------------------------------------------------------------


#: Verifier defaults: one hidden layer of 64, weight decay 1e-2, at most 25 epochs with the epoch
#: chosen on validation pairs (stopping after 5 without improvement). QQP (MiniLM) validation
#: recall at balanced precision 0.90: 0.42 here, 0.37 for the former 16 units x 3 epochs; 128 units
#: 0.42 at 5x the training time; two layers (128, 32) 0.39; decay 1e-3 0.31, 3e-2 0.35. Recall at
#: balanced precision 0.95 rests on few false hits and swings by ±0.05-0.1 between splits.
HIDDEN = 64
EPOCHS = 25
L2 = 1e-2
PATIENCE = 5


def _linked(pairs: Sequence[Pair]) -> Callable[[str], str]:
    """Union-find over the texts of ``pairs``: the returned function maps a text to its group's root
    (texts linked by pairs, transitively, share one)."""
    parent: Dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for p in pairs:
        ra, rb = find(p.a), find(p.b)
        if ra != rb:
            parent[ra] = rb
    return find


def group_split(pairs: Sequence[Pair], test_fraction: float, seed: int) -> Tuple[List[int], List[int]]:
    """Train and test pair indices such that no text appears on both sides: pairs sharing a text
    (transitively) form one group, and whole groups go to one side."""
    find = _linked(pairs)
    roots = sorted({find(p.a) for p in pairs})
    rng = random.Random(seed)
    test_roots = {r for r in roots if rng.random() < test_fraction}
    train: List[int] = []
    test: List[int] = []
    for i, p in enumerate(pairs):
        (test if find(p.a) in test_roots else train).append(i)
    return train, test


SPLITS = ("text", "pairs")


def split_pairs(pairs: Sequence[Pair], test_fraction: float, seed: int, by: str = "text") -> Tuple[List[int], List[int]]:
    """Train and test pair indices. ``by="text"``: no text on both sides (:func:`group_split`), the
    strict measure of questions never seen. ``by="pairs"``: a seeded random sample of pairs, so a
    held-out pair may share one text with training pairs, as new traffic shares questions with
    labelled traffic (in a random fourth of QQP's dev pairs, 46% of the duplicates share a text
    with the other pairs)."""
    if by == "text":
        return group_split(pairs, test_fraction, seed)
    if by != "pairs":
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {by!r}", field="split")
    rng = random.Random(seed)
    train: List[int] = []
    test: List[int] = []
    for i in range(len(pairs)):
        (test if rng.random() < test_fraction else train).append(i)
    return train, test


#: Clusters up to this size have every implied pair listed, then sampled (QQP's largest has 90
#: texts); larger ones have pairs drawn at random: listing a cluster of n texts holds n²/2 pairs.
EXACT_CLUSTER = 200


def transitive_pairs(pairs: Sequence[Pair], fit: Sequence[int], held: Sequence[int], per_text: int, seed: int) -> List[Pair]:
    """Duplicates that transitivity implies among the ``fit`` pairs (a ~ b and b ~ c, so a ~ c): up
    to ``per_text`` times the size of each cluster of duplicates, drawn at random (seeded), none
    equal to a pair of ``fit`` or ``held`` in either order, so no held-out pair is ever trained on."""
    dups = [pairs[i] for i in fit if pairs[i].label]
    root = _linked(dups)
    clusters: Dict[str, List[str]] = {}
    for t in sorted({t for p in dups for t in (p.a, p.b)}):
        clusters.setdefault(root(t), []).append(t)
    known = {frozenset((pairs[i].a, pairs[i].b)) for i in (*fit, *held)}
    rng = random.Random(seed)
    out: List[Pair] = []
    for members in clusters.values():
        want = per_text * len(members)
        if len(members) > EXACT_CLUSTER:
            out += _draw_pairs(members, want, known, rng)
            continue
        implied = [(a, b) for k, a in enumerate(members) for b in members[k + 1 :] if frozenset((a, b)) not in known]
        rng.shuffle(implied)
        out += [Pair(a, b, 1) for a, b in implied[:want]]
    return out


def _draw_pairs(members: Sequence[str], want: int, known: "set[frozenset[str]]", rng: random.Random) -> List[Pair]:
    """Up to ``want`` distinct pairs of ``members`` drawn at random, none in ``known``, which
    gains each pair drawn."""
    out: List[Pair] = []
    for _ in range(20 * want):
        if len(out) >= want:
            break
        i, j = rng.sample(range(len(members)), 2)
        key = frozenset((members[i], members[j]))
        if key not in known:
            known.add(key)
            out.append(Pair(members[i], members[j], 1))
    return out


def pair_matrix(pairs: Sequence[Pair], va: Any, vb: Any) -> Any:
    """The verifier's feature rows of ``pairs`` (unit vectors ``va``/``vb``), computed by the core
    exactly as at lookup time."""
    import numpy as np

    from . import _core

    va = np.ascontiguousarray(va, dtype=np.float32)
    vb = np.ascontiguousarray(vb, dtype=np.float32)
    dim = va.shape[1]
    raw = _core.verifier_features([p.a for p in pairs], [p.b for p in pairs], va.tobytes(), vb.tobytes(), dim)
    return np.frombuffer(raw, dtype=np.float32).reshape(len(pairs), -1)


def fit_mlp(
    x: Any,
    y: Any,
    hidden: Union[int, Sequence[int]] = 64,
    epochs: int = 8,
    seed: int = 0,
    lr: float = 1e-3,
    l2: float = 1e-4,
    batch: int = 256,
    pos_weight: float = 1.0,
    val: Optional[Tuple[Any, Any]] = None,
    val_score: Optional[Callable[[Any, Any], float]] = None,
    patience: int = 0,
) -> Dict[str, Any]:
    """A ReLU network (``hidden``: the hidden layers' widths, an int for one layer; 0 or empty:
    logistic regression) trained with Adam on the logistic loss, positives weighted by
    ``pos_weight``; deterministic for a seed. Returns standardisation and layers.

    With ``val`` = (x, y), the network is scored on it after every epoch (``val_score(scores, y)``,
    higher is better; default: minus the log-loss) and the best epoch's weights are returned;
    ``patience`` > 0 stops after that many epochs without improvement."""
    import numpy as np

    widths = [hidden] if isinstance(hidden, int) else list(hidden)
    widths = [w for w in widths if w]
    rng = np.random.default_rng(seed)
    mean = x.mean(axis=0)
    scale = 1.0 / np.maximum(x.std(axis=0), 1e-6)
    xs = ((x - mean) * scale).astype(np.float32)
    n, d = xs.shape
    dims = [d] + widths + [1]
    params: List[Any] = []
    for i, o in zip(dims[:-1], dims[1:]):
        params += [(rng.standard_normal((o, i)) * np.sqrt(2.0 / i)).astype(np.float32), np.zeros(o, np.float32)]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    step = 0
    yf = y.astype(np.float32)
    nl = len(params) // 2

    def model_of(ps: List[Any]) -> Dict[str, Any]:
        layers = [(ps[k].copy(), ps[k + 1].copy()) for k in range(0, len(ps), 2)]
        return {"mean": mean.astype(np.float32), "scale": scale.astype(np.float32), "layers": layers}

    def default_score(s: Any, t: Any) -> float:
        s = np.clip(s, 1e-7, 1 - 1e-7)
        return float(np.mean(t * np.log(s) + (1 - t) * np.log(1 - s)))

    score_of = val_score or default_score
    best: Optional[Dict[str, Any]] = None
    best_score = -np.inf
    since = 0
    for epoch in range(epochs):
        order = rng.permutation(n)
        for s in range(0, n, batch):
            b = order[s : s + batch]
            acts = [xs[b]]
            for k in range(nl):
                z = acts[-1] @ params[2 * k].T + params[2 * k + 1]
                acts.append(np.maximum(z, 0) if k < nl - 1 else z)
            yb = yf[b]
            wb = np.where(yb > 0.5, np.float32(pos_weight), np.float32(1.0))
            g = ((1 / (1 + np.exp(-acts[-1][:, 0])) - yb) * wb)[:, None] / len(b)
            grads: List[Any] = [None] * len(params)
            for k in range(nl - 1, -1, -1):
                w = params[2 * k]
                grads[2 * k] = g.T @ acts[k] + l2 * w
                grads[2 * k + 1] = g.sum(0)
                if k:
                    g = (g @ w) * (acts[k] > 0)
            step += 1
            for k, (p, gk) in enumerate(zip(params, grads)):
                m[k] = 0.9 * m[k] + 0.1 * gk
                v[k] = 0.999 * v[k] + 0.001 * gk * gk
                p -= lr * (m[k] / (1 - 0.9**step)) / (np.sqrt(v[k] / (1 - 0.999**step)) + 1e-8)
        if val is not None:
            cur = model_of(params)
            sc = score_of(mlp_scores(cur, val[0]), val[1])
            if sc > best_score:
                best, best_score, since = cur, sc, 0
                best["epoch"] = epoch + 1
            else:
                since += 1
                if patience and since >= patience:
                    break
    return best if best is not None else model_of(params)


def mlp_scores(model: Dict[str, Any], x: Any) -> Any:
    import numpy as np

    h = (x - model["mean"]) * model["scale"]
    for i, (w, b) in enumerate(model["layers"]):
        h = h @ w.T + b
        if i < len(model["layers"]) - 1:
            h = np.maximum(h, 0)
    return 1 / (1 + np.exp(-h[:, 0]))


def as_verifier(model: Dict[str, Any], embedder_id: str, dim: int, threshold: float, report: Dict[str, Any]) -> Any:
    import numpy as np

    from . import _core

    layers = [(w.shape[1], w.shape[0], np.ascontiguousarray(w, np.float32).tobytes(), np.ascontiguousarray(b, np.float32).tobytes()) for w, b in model["layers"]]
    return _core.Verifier(embedder_id, dim, model["mean"].tobytes(), model["scale"].tobytes(), layers, float(threshold), json.dumps(report))


def train_verifier(
    pairs: Sequence[Pair],
    va: Any,
    vb: Any,
    embedder_id: str,
    target_precision: float = 0.95,
    test_fraction: float = 0.2,
    hidden: Union[int, Sequence[int]] = HIDDEN,
    epochs: int = EPOCHS,
    l2: float = L2,
    seed: int = 0,
    guard: bool = True,
    balanced: bool = True,
    split: str = "text",
) -> Tuple[Any, Dict[str, Any]]:
    """Trains a pair verifier on ``pairs`` (unit vectors ``va``/``vb`` of their texts) and reports
    it on held-out pairs: by default pairs that share no text with the training pairs
    (``split="pairs"``: a random sample of pairs, see :func:`split_pairs`).

    A validation part of the training pairs (split the same way) picks the epoch (early stopping:
    the one with the most recall at the target precision) and the acceptance threshold, so the
    held-out figures are those of the shipped threshold. ``balanced``: the target precision is that
    on balanced pairs (as many duplicates as non-duplicates, how duplicate-detection precision is
    usually quoted); otherwise on the pairs' own mix. The report holds both either way. With
    ``guard``, a pair the near-miss guard rejects is never a hit (as in the cache). Returns
    (``_core.Verifier``, report).
    """
    import numpy as np

    if not 0 < target_precision < 1:
        raise ConfigError(f"target precision must be in (0, 1), got {target_precision}", field="target_precision")
    pairs = list(pairs)
    x = pair_matrix(pairs, va, vb)
    y = np.array([p.label for p in pairs], dtype=np.int64)
    train, test = split_pairs(pairs, test_fraction, seed, split)
    fit_i, val_i = split_pairs([pairs[i] for i in train], 0.15, seed + 1, split)
    fit_i = [train[i] for i in fit_i]
    val_i = [train[i] for i in val_i]
    if min(y[fit_i].sum(), len(fit_i) - y[fit_i].sum(), y[test].sum()) < 1:
        raise ConfigError("the pairs need duplicates and non-duplicates on both sides of the split", field="pairs")
    # Column 13 of the features (after the cosine) is "the guard rejects".
    rejected = x[:, 1 + 12] > 0.5

    def guarded(s: Any, idx: Any) -> Any:
        return np.where(rejected[idx], -np.inf, s) if guard else s

    def report_of(s: Any, idx: Any, bal: bool) -> Curve:
        # Fine steps: trained scores crowd near 1, where a coarse grid hides the usable thresholds.
        return curve(guarded(s, idx).tolist(), y[idx].tolist(), steps=20000, balanced=bal)

    def val_score(s: Any, yv: Any) -> float:
        hit = report_of(s, val_i, balanced).at_precision(target_precision)
        return hit["recall"] if hit else 0.0

    # Weight decay, and the epoch chosen on validation pairs: longer-trained networks memorise the
    # training pairs and do worse on held-out ones.
    model = fit_mlp(x[fit_i], y[fit_i], hidden=hidden, epochs=epochs, seed=seed, l2=l2, val=(x[val_i], y[val_i]) if val_i else None, val_score=val_score, patience=PATIENCE)
    scores = mlp_scores(model, x)
    chosen = report_of(scores[val_i], val_i, balanced).at_precision(target_precision) if val_i else None
    threshold = chosen["threshold"] if chosen else 0.999
    threshold = min(max(threshold, 1e-3), 0.999)
    te = np.array(test)
    acc = guarded(scores[te], te) >= threshold
    tp = int((acc & (y[te] == 1)).sum())
    fp = int((acc & (y[te] == 0)).sum())
    pos = int(y[te].sum())
    neg = len(te) - pos
    widths = [hidden] if isinstance(hidden, int) else list(hidden)
    curves = {
        "verifier": report_of(scores[te], te, False),
        "cosine": report_of(x[te, 0], te, False),
        "verifier_balanced": report_of(scores[te], te, True),
        "cosine_balanced": report_of(x[te, 0], te, True),
    }
    report: Dict[str, Any] = {
        "pairs": len(pairs),
        "train_pairs": len(fit_i),
        "validation_pairs": len(val_i),
        "test_pairs": len(test),
        "test_positives": pos,
        "test_negatives": neg,
        "hidden": [w for w in widths if w],
        "l2": l2,
        "epochs": epochs,
        "epoch_chosen": model.get("epoch", epochs),
        "seed": seed,
        "split": split,
        "guard": guard,
        "target_precision": target_precision,
        "target_on": "balanced pairs" if balanced else "the pairs' own mix",
        "threshold": threshold,
        # The pairs' own mix (QQP: ~37% duplicates).
        "test_at_threshold": {"precision": tp / (tp + fp) if tp + fp else 1.0, "recall": tp / max(pos, 1), "false_hits": fp},
        "test_best_at_target": curves["verifier"].at_precision(target_precision),
        "test_cosine_at_target": curves["cosine"].at_precision(target_precision),
        # Balanced: each accepted non-duplicate counts positives/negatives times (as if the
        # non-duplicates were subsampled to the number of duplicates).
        "test_balanced_at_threshold": {"precision": tp / (tp + fp * pos / neg) if tp + fp and neg else 1.0, "recall": tp / max(pos, 1)},
        # [2.5%, median, 97.5%] over resamples of the held-out pairs: how sure the figures are.
        "test_balanced_interval": interval(acc, y[te], balanced=True, seed=seed),
        "test_balanced_best_at_target": curves["verifier_balanced"].at_precision(target_precision),
        "test_balanced_cosine_at_target": curves["cosine_balanced"].at_precision(target_precision),
    }
    report["_curves"] = curves
    dim = int(np.asarray(va).shape[1])
    public = {k: v for k, v in report.items() if not k.startswith("_")}
    return as_verifier(model, embedder_id, dim, threshold, public), report


def roc_auc(scores: Any, y: Any) -> float:
    """Area under the ROC curve: the chance a positive (``y == 1``) outscores a negative (ties
    count half); NaN without both."""
    import numpy as np

    s = np.asarray(scores, dtype=np.float64)
    pos, neg = s[y == 1], np.sort(s[y == 0])
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    below = np.searchsorted(neg, pos, side="left")
    ties = np.searchsorted(neg, pos, side="right") - below
    return float((below + ties / 2).sum() / (len(pos) * len(neg)))
