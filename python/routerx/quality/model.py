"""Training the learned router: per-model logistic regression over prompt embeddings.

For each catalog model m, p̂_m(x) = σ(w_m · e(x) + b_m) estimates the probability that m answers
the prompt well, where e(x) is the unit embedding of the prompt's last ``tail_chars`` characters
(the question sits at the end of few-shot and chat prompts). Scores in [0, 1] (judge scores,
thumbs) are fitted as soft labels with the same cross-entropy. Fitting is Newton's method with an
L2 penalty: a convex problem with one optimum, so training is deterministic (the seed only orders
cross-validation folds) and takes seconds.

With ``by_group``, the regression also reads a one-hot of the prompt's group (the data's group
column): each (group, model) gets a logit offset, stored in the artefact's ``groups`` (version 2),
which the core adds for requests whose ``step`` label is that group. Steps of an agent's workflow
differ in difficulty in ways an embedding of their prompt does not show.

The artefact is a JSON document (format ``routerx-quality``, version 1, or 2 with groups) that the
Rust core loads and evaluates on the hot path; see ``rust/routerx-core/src/quality.rs``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
import threading
from typing import Any, BinaryIO, Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import ConfigError
from .data import OutcomeSet, _np

__all__ = ["FORMAT", "VERSION", "EMBEDDERS", "DEFAULT_EMBEDDER", "DEFAULT_TAIL_CHARS", "atomic_write", "embed_prompts", "fit", "group_columns", "group_names", "train", "save_artefact", "tail"]

FORMAT = "routerx-quality"
#: Written without groups (read by every routerx core); with groups, ``GROUPS_VERSION``.
VERSION = 1
GROUPS_VERSION = 2
EMBEDDERS = ("static", "minilm")
DEFAULT_EMBEDDER = "static"
DEFAULT_TAIL_CHARS = 256
DEFAULT_L2 = 1e-3


def tail(text: str, chars: int) -> str:
    """The last ``chars`` characters (the core cuts at the same character boundary)."""
    return text if len(text) <= chars else text[-chars:]


def _embedder(name: str) -> Any:
    from ..embed import load_minilm, load_static

    if name == "minilm":
        return load_minilm()
    if name == "static":
        return load_static()
    raise ConfigError(f"unknown embedder {name!r} (use one of {', '.join(EMBEDDERS)})", field="embedder")


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "routerx" / "quality-embed"


def embed_prompts(prompts: Sequence[str], embedder: str = DEFAULT_EMBEDDER, tail_chars: int = DEFAULT_TAIL_CHARS, cache: bool = True) -> Tuple[Any, str]:
    """(n, dim) float32 unit rows and the embedder's model id. MiniLM costs ~15 ms a prompt, so
    vectors are kept in the user's cache directory, keyed by the model id and the exact inputs."""
    np = _np()
    emb = _embedder(embedder)
    texts = [tail(p, tail_chars) for p in prompts]
    h = hashlib.sha256(emb.model_id.encode())
    for t in texts:
        h.update(hashlib.sha256(t.encode("utf-8", "surrogatepass")).digest())
    path = _cache_dir() / f"{embedder}-{h.hexdigest()[:24]}.npy"
    if cache and path.is_file():
        try:
            x = np.load(path)
            if x.shape == (len(texts), emb.dim):
                return x, emb.model_id
        except (OSError, ValueError):
            pass  # recompute and replace below
    out = []
    for i in range(0, len(texts), 256):
        out.append(emb.embed(texts[i : i + 256]))
    x = np.concatenate(out).astype(np.float32) if out else np.zeros((0, emb.dim), np.float32)
    if cache:
        atomic_write(path, lambda f: np.save(f, x))
    return x, emb.model_id


def fit(x: Any, q: Any, l2: float = DEFAULT_L2, iters: int = 25) -> Tuple[Any, Any]:
    """Weights (m, d) and biases (m,) of one L2-penalised logistic regression per column of ``q``
    (NaN entries are skipped). Newton steps on the penalised mean cross-entropy."""
    np = _np()
    n, d = x.shape
    m = q.shape[1]
    w = np.zeros((m, d))
    b = np.zeros(m)
    xa = np.hstack([x.astype(np.float64), np.ones((n, 1))])
    reg = np.full(d + 1, l2)
    reg[-1] = 1e-9  # the bias is not shrunk
    for j in range(m):
        keep = ~np.isnan(q[:, j])
        a, y = xa[keep], q[keep, j]
        if len(y) == 0:
            continue
        mean = float(np.clip(y.mean(), 1e-4, 1 - 1e-4))
        theta = np.zeros(d + 1)
        theta[-1] = np.log(mean / (1 - mean))
        for _ in range(iters):
            p = 1.0 / (1.0 + np.exp(-(a @ theta)))
            grad = a.T @ (p - y) / len(y) + reg * theta
            hess = (a * (p * (1 - p))[:, None]).T @ a / len(y) + np.diag(reg)
            step = np.linalg.solve(hess, grad)
            theta -= step
            if float(np.abs(step).max()) < 1e-7:
                break
        w[j], b[j] = theta[:-1], theta[-1]
    return w, b


def group_names(groups: Sequence[str]) -> List[str]:
    """The groups that get offsets: every non-empty one, unless all rows share a single group
    (then its offset would only restate the bias). Rows without a group (traffic without a step)
    get none, as such requests do at run time."""
    names = sorted(set(groups) - {""})
    return [] if len(names) == 1 and "" not in groups else names


def group_columns(groups: Sequence[str], names: Sequence[str]) -> Any:
    """One-hot (n, len(names)) of each row's group among ``names`` (all zero for another group)."""
    np = _np()
    col = {g: i for i, g in enumerate(names)}
    out = np.zeros((len(groups), len(names)))
    for r, g in enumerate(groups):
        if g in col:
            out[r, col[g]] = 1.0
    return out


def predict(x: Any, w: Any, b: Any) -> Any:
    np = _np()
    return 1.0 / (1.0 + np.exp(-(x.astype(np.float64) @ w.T + b)))


def train(data: OutcomeSet, embedder: str = DEFAULT_EMBEDDER, l2: float = DEFAULT_L2, tail_chars: int = DEFAULT_TAIL_CHARS, seed: int = 0, by_group: bool = False) -> Dict[str, Any]:
    """The artefact (a JSON-able dict) trained on all of ``data`` (with ``by_group``, and on its
    groups: see the module's doc)."""
    np = _np()
    if len(data) < 2:
        raise ConfigError(f"{data.source}: {len(data)} labelled prompt(s): too few to train on", file=data.source)
    if not (l2 > 0 and np.isfinite(l2)):
        raise ConfigError(f"l2 must be a finite number > 0, got {l2!r}", field="l2")
    x, model_id = embed_prompts(data.prompts, embedder, tail_chars)
    names = group_names(data.groups) if by_group else []
    if by_group and not names:
        raise ConfigError(f"{data.source}: --by-group needs a group column that splits the prompts (rows without a group are allowed; they get no offset)", field="by_group")
    dim = x.shape[1]
    w, b = fit(np.hstack([x, group_columns(data.groups, names)]) if names else x, data.quality, l2)
    labelled = (~np.isnan(data.quality)).sum(0)
    groups = {g: [float(v) for v in w[:, dim + i].astype(np.float32)] for i, g in enumerate(names)}
    w = w[:, :dim]
    return {
        "format": FORMAT,
        "version": GROUPS_VERSION if groups else VERSION,
        "embedder": embedder,
        "embedder_id": model_id,
        "dim": int(x.shape[1]),
        "tail_chars": int(tail_chars),
        "models": [
            {"name": name, "bias": float(b[j]), "weights": [float(v) for v in w[j].astype(np.float32)], "labelled": int(labelled[j]), "mean_quality": float(np.nanmean(data.quality[:, j])) if labelled[j] else None}
            for j, name in enumerate(data.models)
        ],
        **({"groups": groups} if groups else {}),
        "training": {"data": data.source, "prompts": len(data), "l2": l2, "seed": seed, "by_group": bool(groups), "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    }


def atomic_write(path: "os.PathLike[str] | str", write: Callable[[BinaryIO], Any]) -> Path:
    """``write(file)`` into a temporary file beside ``path``, fsync, rename over ``path``, fsync the
    folder: a crash leaves the old file or the new one, never a torn one."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    try:
        fd = os.open(p.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    return p


def save_artefact(artefact: Dict[str, Any], path: "os.PathLike[str] | str") -> Path:
    """Written atomically (see :func:`atomic_write`)."""
    text = json.dumps(artefact, separators=(",", ":")) + "\n"
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))
