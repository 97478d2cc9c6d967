"""Outcome data for training and evaluating the learned router: prompts × models → quality.

One in-memory shape, :class:`OutcomeSet`, from three kinds of file:

- wide CSV/JSONL, one row per prompt, a column per model (``--model-columns``) holding a score in
  [0, 1] (booleans count as 0/1) and, optionally, a cost column per model (``--cost-column``
  template, e.g. ``{model}|total_cost``);
- long CSV/JSONL, one row per (prompt, model, outcome): routerx's own feedback log
  (``[quality] feedback_log``) has this shape;
- the public sets under ``../shared/data`` by name: ``routerbench`` (RouterBench's ARC /
  MBPP / Winogrande subset, 11 models), ``mmlu`` and ``mt-bench`` (RouteLLM's GPT-4 vs Mixtral
  outcomes), read from their own folders.

Scores are normalised to [0, 1]; a prompt a model has no score for is a gap (NaN) that training
skips and evaluation refuses.
"""

from __future__ import annotations

import ast
import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

from ..errors import ConfigError

__all__ = ["OutcomeSet", "ColumnMap", "load", "load_named", "NAMED", "DATA_ROOT_ENV"]

DATA_ROOT_ENV = "ROUTERX_DATA"
#: Public outcome sets known by name (folder under the data root, loader).
NAMED = ("routerbench", "mmlu", "mt-bench")

# RouteLLM's list prices (USD per 1M tokens, blended) for its two models; the evals give no cost.
ROUTELLM_PRICES = {"gpt-4-1106-preview": 24.7, "mistralai/Mixtral-8x7B-Instruct-v0.1": 0.24}
ROUTELLM_OUTPUT_TOKENS = 256
csv.field_size_limit(1 << 30)


@dataclass
class OutcomeSet:
    """Prompts, the models they were tried on, per-(prompt, model) quality in [0, 1] and cost in USD."""

    prompts: List[str]
    models: List[str]
    quality: Any  # (n, m) float64, NaN where unknown
    cost: Any  # (n, m) float64 USD per call
    #: Task or source label per prompt (for stratified folds and per-group tables).
    groups: List[str] = field(default_factory=list)
    source: str = ""

    def __post_init__(self) -> None:
        np = _np()
        n, m = len(self.prompts), len(self.models)
        self.quality = np.asarray(self.quality, dtype=np.float64).reshape(n, m)
        self.cost = np.asarray(self.cost, dtype=np.float64).reshape(n, m)
        if not self.groups:
            self.groups = [self.source or "all"] * n
        if len(self.groups) != n:
            raise ConfigError(f"{self.source}: {len(self.groups)} group labels for {n} prompts", file=self.source)
        if len(set(self.models)) != m:
            raise ConfigError(f"{self.source}: duplicate model names in {self.models}", file=self.source)

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, idx: Sequence[int]) -> "OutcomeSet":
        return OutcomeSet([self.prompts[i] for i in idx], list(self.models), self.quality[idx], self.cost[idx], [self.groups[i] for i in idx], self.source)

    def complete(self) -> bool:
        return not bool(_np().isnan(self.quality).any())

    @staticmethod
    def concat(sets: Sequence["OutcomeSet"]) -> "OutcomeSet":
        """Union of several sets over the union of their models (gaps where a set lacks a model)."""
        np = _np()
        models: List[str] = []
        for s in sets:
            models += [m for m in s.models if m not in models]
        n = sum(len(s) for s in sets)
        q = np.full((n, len(models)), np.nan)
        c = np.full((n, len(models)), np.nan)
        row = 0
        for s in sets:
            cols = [models.index(m) for m in s.models]
            q[row : row + len(s), cols] = s.quality
            c[row : row + len(s), cols] = s.cost
            row += len(s)
        return OutcomeSet([p for s in sets for p in s.prompts], models, q, c, [g for s in sets for g in s.groups], "+".join(s.source for s in sets))


@dataclass(frozen=True)
class ColumnMap:
    """Where the fields are in a CSV/JSONL file. Wide files: ``model_columns`` (and
    ``cost_column``, a template with ``{model}``); long files: ``model`` and ``score``."""

    prompt: str = "prompt"
    model_columns: Tuple[str, ...] = ()
    cost_column: Optional[str] = None
    model: str = "model"
    score: str = "score"
    group: Optional[str] = None
    #: Scores are divided by this (e.g. 10 for 1–10 judge scores).
    score_scale: float = 1.0


def _np() -> Any:
    try:
        import numpy as np
    except ImportError:  # an extra of routerx: `pip install routerx[train]`
        raise ConfigError("training and evaluating the learned router needs numpy: run `pip install numpy`", file="numpy") from None
    return np


def data_root() -> Path:
    """The public data sets: $ROUTERX_DATA, else the first ``shared/data`` found beside the working
    directory or beside the checkout routerx runs from."""
    env = os.environ.get(DATA_ROOT_ENV)
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for base in (Path.cwd(), Path.cwd().parent, *here.parents[2:5]):
        if (base / "shared" / "data").is_dir():
            return base / "shared" / "data"
    return Path.cwd().parent / "shared" / "data"


def _score(v: Any, where: str, scale: float) -> float:
    if v is None or v == "":
        return math.nan
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, str):
        s = v.strip().lower()
        if s in ("true", "yes", "up", "thumbs_up", "👍"):
            return 1.0
        if s in ("false", "no", "down", "thumbs_down", "👎"):
            return 0.0
        if s in ("nan", "none", "null"):
            return math.nan
        try:
            v = float(s)
        except ValueError:
            raise ConfigError(f"{where}: score {v!r} is not a number or a boolean", file=where.split(':')[0]) from None
    x = float(v) / scale
    if math.isnan(x):
        return x
    if not (0.0 <= x <= 1.0) or math.isinf(x):
        raise ConfigError(f"{where}: score {v!r} is outside [0, {scale:g}] (set the score scale)", file=where.split(':')[0])
    return x


def _rows(path: Path) -> Iterator[Tuple[int, Mapping[str, Any]]]:
    if not path.is_file():
        raise ConfigError(f"{path}: no such data file (named public sets: {', '.join(NAMED)})", file=str(path))
    suffix = path.suffix.lower()
    try:
        with open(path, encoding="utf-8", newline="") as f:
            if suffix in (".jsonl", ".ndjson"):
                for i, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            row = json.loads(line)
                        except json.JSONDecodeError as e:
                            raise ConfigError(f"{path}:{i}: not JSON ({e.msg})", file=str(path)) from None
                        if not isinstance(row, dict):
                            raise ConfigError(f"{path}:{i}: each line must be a JSON object", file=str(path))
                        yield i, row
            elif suffix == ".csv":
                for i, row in enumerate(csv.DictReader(f), 2):
                    yield i, row
            else:
                raise ConfigError(f"{path}: unknown data format {suffix!r} (use .csv or .jsonl)", file=str(path))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})", file=str(path)) from None


def _prompt(v: Any, where: str) -> str:
    if isinstance(v, list):  # chat turns or a list of prompt strings
        v = "\n".join(str(t.get("content", "")) if isinstance(t, dict) else str(t) for t in v)
    if not isinstance(v, str) or not v.strip():
        raise ConfigError(f"{where}: empty or missing prompt", file=where.split(':')[0])
    return v


def load(path: "os.PathLike[str] | str", cols: ColumnMap = ColumnMap(), prices: Optional[Mapping[str, float]] = None) -> OutcomeSet:
    """Reads a wide file (``cols.model_columns`` given) or a long file (otherwise).

    Costs come from the file's cost columns, else from ``prices`` (USD per call per model), else 0.
    """
    np = _np()
    p = Path(path)
    if cols.model_columns:
        prompts, groups, q, c = [], [], [], []
        for i, row in _rows(p):
            where = f"{p}:{i}"
            missing = [k for k in (cols.prompt, *cols.model_columns) if k not in row]
            if missing:
                raise ConfigError(f"{where}: missing column(s) {missing} (have {sorted(row)[:12]})", file=str(p))
            prompts.append(_prompt(row[cols.prompt], where))
            groups.append(str(row.get(cols.group, "")) if cols.group else p.stem)
            q.append([_score(row[m], where, cols.score_scale) for m in cols.model_columns])
            if cols.cost_column:
                c.append([_cost(row.get(cols.cost_column.format(model=m)), where, (prices or {}).get(m)) for m in cols.model_columns])
            else:
                c.append([float((prices or {}).get(m, 0.0)) for m in cols.model_columns])
        if not prompts:
            raise ConfigError(f"{p}: no rows", file=str(p))
        return OutcomeSet(prompts, list(cols.model_columns), np.array(q), np.array(c), groups, p.name)
    # Long format: average repeated labels of one (prompt, model).
    index: Dict[str, int] = {}
    models: List[str] = []
    sums: Dict[Tuple[int, int], List[float]] = {}
    groups = []
    for i, row in _rows(p):
        where = f"{p}:{i}"
        for k in (cols.prompt, cols.model, cols.score):
            if k not in row:
                raise ConfigError(f"{where}: missing column {k!r} (long format: prompt, model, score; or give --model-columns)", file=str(p))
        text = _prompt(row[cols.prompt], where)
        s = _score(row[cols.score], where, cols.score_scale)
        if math.isnan(s):
            continue
        model = str(row[cols.model])
        if model not in models:
            models.append(model)
        if text not in index:
            index[text] = len(index)
            groups.append(str(row.get(cols.group, "")) if cols.group else p.stem)
        acc = sums.setdefault((index[text], models.index(model)), [0.0, 0.0])
        acc[0] += s
        acc[1] += 1
    if not index:
        raise ConfigError(f"{p}: no labelled rows", file=str(p))
    q = np.full((len(index), len(models)), np.nan)
    for (r, j), (total, count) in sums.items():
        q[r, j] = total / count
    c = np.array([[float((prices or {}).get(name, 0.0)) for name in models]] * len(index))
    return OutcomeSet(list(index), models, q, c, groups, p.name)


def _cost(v: Any, where: str, default: Optional[float]) -> float:
    if v in (None, ""):
        if default is None:
            raise ConfigError(f"{where}: missing cost", file=where.split(':')[0])
        return float(default)
    x = float(v)
    if not (math.isfinite(x) and x >= 0):
        raise ConfigError(f"{where}: cost {v!r} must be a finite number ≥ 0", file=where.split(':')[0])
    return x


def prompt_tokens(texts: Iterable[str]) -> List[int]:
    from ..router import Router

    r = Router(db=None)
    try:
        return [r.count_tokens(t) for t in texts]
    finally:
        r.close(snapshot=False)


def load_named(name: str, root: Optional[Path] = None) -> OutcomeSet:
    """One of :data:`NAMED`, from its folder under ``root`` (default: :func:`data_root`)."""
    np = _np()
    root = root or data_root()
    if name == "routerbench":
        models: List[str] = []
        prompts, groups, q, c = [], [], [], []
        for where, row, models in routerbench_rows(root):
            parts = ast.literal_eval(row["prompt"])
            prompts.append("\n".join(parts) if isinstance(parts, list) else str(parts))
            groups.append(row["eval_name"])
            q.append([_score(row[m], where, 1.0) for m in models])
            c.append([float(row[f"{m}|total_cost"]) for m in models])
        return OutcomeSet(prompts, models, np.array(q), np.array(c), groups, "routerbench")
    if name == "mmlu":
        d = root / "routellm-evals" / "mmlu"
        files = sorted(d.glob("mmlu_*.csv"))
        if not files:
            raise ConfigError(f"{d}: RouteLLM MMLU CSVs not found (set ${DATA_ROOT_ENV})", file=str(d))
        bad = _contaminated(d / "contaminated_prompts.jsonl")
        models = list(ROUTELLM_PRICES)
        prompts, groups, q = [], [], []
        for f in files:
            for i, row in _rows(f):
                if row["prompt"] in bad:
                    continue
                prompts.append(row["prompt"])
                groups.append(f.stem[5:])
                q.append([_score(row[m], f"{f}:{i}", 1.0) for m in models])
        return OutcomeSet(prompts, models, np.array(q), _list_price_costs(prompts, models), groups, "mmlu")
    if name == "mt-bench":
        d = root / "routellm-evals" / "mt_bench"
        if not (d / "question.jsonl").is_file():
            raise ConfigError(f"{d}: RouteLLM MT-Bench files not found (set ${DATA_ROOT_ENV})", file=str(d))
        bad = _contaminated(d / "contaminated_prompts.jsonl")
        questions = {r["question_id"]: r for _, r in _rows(d / "question.jsonl")}
        models = list(ROUTELLM_PRICES)
        scores: Dict[Tuple[int, str], List[float]] = {}
        for _, r in _rows(d / "judgements.jsonl"):
            if r["model"] in models and r.get("score", -1) >= 0:
                scores.setdefault((r["question_id"], r["model"]), []).append(float(r["score"]))
        prompts, groups, q = [], [], []
        for qid, qrow in sorted(questions.items()):
            text = qrow["turns"][0]
            if text in bad or not all((qid, m) in scores for m in models):
                continue
            prompts.append(text)
            groups.append(qrow["category"])
            # RouteLLM: a question's score per model is the mean over its turns, on the judge's 1–10 scale.
            q.append([sum(scores[(qid, m)]) / len(scores[(qid, m)]) / 10.0 for m in models])
        return OutcomeSet(prompts, models, np.array(q), _list_price_costs(prompts, models), groups, "mt-bench")
    raise ConfigError(f"unknown data set {name!r} (known: {', '.join(NAMED)}; or give a .csv/.jsonl path)", file=name)


def routerbench_rows(root: Optional[Path] = None) -> Iterator[Tuple[str, Mapping[str, Any], List[str]]]:
    """The RouterBench subset's rows as ``load_named("routerbench")`` keeps them, in its order:
    (where, row, model columns), duplicates and score-less rows dropped. For readers that need
    more of a row than the outcome set holds (the models' answers)."""
    d = (root or data_root()) / "routerbench-routerdc-subset"
    files = sorted(d.glob("*_train.csv"))
    if not files:
        raise ConfigError(f"{d}: RouterBench CSVs not found (set ${DATA_ROOT_ENV})", file=str(d))
    seen: set[str] = set()
    models: List[str] = []
    for f in files:
        for i, row in _rows(f):
            if not models:
                models = [k for k in row if k and f"{k}|total_cost" in row]
            if row.get(models[0], "") in ("", "nan") or row["sample_id"] in seen:
                continue  # SOURCE.md: rows without scores duplicate a scored row
            seen.add(row["sample_id"])
            yield f"{f}:{i}", row, models


def _contaminated(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    return {r["eval_prompt"] for _, r in _rows(path)}


def _list_price_costs(prompts: Sequence[str], models: Sequence[str]) -> Any:
    np = _np()
    toks = np.array(prompt_tokens(prompts), dtype=np.float64) + ROUTELLM_OUTPUT_TOKENS
    return np.stack([toks * ROUTELLM_PRICES[m] / 1e6 for m in models], axis=1)
