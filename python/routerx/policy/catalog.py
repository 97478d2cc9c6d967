"""The model catalog: models, prices, quality per task category, and hardware tiers.

A catalog is a TOML file (see the embedded ``catalog.toml`` for the schema and sources). Users
add or replace models with their own files; an entry replaces a default model of the same name.
Every error names the file, the line and the field.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .. import _core
from ..errors import ConfigError, UnknownModelError

CATALOG_FORMAT = "routerx-catalog"
CATALOG_VERSION = 1
CATEGORIES: Tuple[str, ...] = tuple(_core.categories())
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
_TIER_FIELDS = ("price_in", "price_out", "ttft_ms", "prefill_tps", "decode_tps", "energy_j_per_token")


@dataclass(frozen=True)
class Tier:
    """One way to serve a model: where it runs, what it costs, how fast it is."""

    name: str
    price_in: float  # USD per 1M input tokens
    price_out: float  # USD per 1M output tokens
    ttft_ms: float
    prefill_tps: float
    decode_tps: float
    energy_j_per_token: float = 0.0


@dataclass(frozen=True)
class Model:
    name: str
    provider: str
    context_window: int
    quality: Mapping[str, float]
    tiers: Tuple[Tier, ...]
    source: str = ""

    def mean_quality(self) -> float:
        return sum(self.quality.values()) / len(self.quality)


@dataclass(frozen=True)
class Catalog:
    models: Tuple[Model, ...]
    files: Tuple[str, ...] = field(default=())

    @classmethod
    def load(cls, files: Iterable[Union[str, Path]] = (), *, include_default: bool = True) -> "Catalog":
        """The default catalog (unless excluded) overlaid with ``files`` in order."""
        merged: Dict[str, Model] = {}
        names: List[str] = []
        sources: List[Tuple[str, str]] = []
        if include_default:
            sources.append(("<default catalog.toml>", default_catalog_text()))
        for f in files:
            p = Path(f)
            try:
                sources.append((str(p), p.read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError) as e:
                raise ConfigError(f"{p}: cannot read catalog: {e}", file=str(p)) from e
        for src, text in sources:
            for m in parse_catalog(text, src):
                merged[m.name] = m
            names.append(src)
        if not merged:
            raise ConfigError("the catalog has no models", file=names[-1] if names else None)
        return cls(tuple(merged.values()), tuple(names))

    def model(self, name: str) -> Model:
        for m in self.models:
            if m.name == name:
                return m
        raise UnknownModelError(f"unknown model {name!r}; the catalog has {', '.join(m.name for m in self.models)}", "models")

    def index(self, name: str) -> int:
        for i, m in enumerate(self.models):
            if m.name == name:
                return i
        self.model(name)  # raises with the list of known names
        raise AssertionError("unreachable")

    def strongest(self) -> Model:
        """The model with the highest mean quality: the baseline for savings figures."""
        return max(self.models, key=lambda m: (m.mean_quality(), m.name))


def default_catalog_text() -> str:
    return resources.files("routerx.policy").joinpath("catalog.toml").read_text(encoding="utf-8")


def _lines_of(text: str, header: str) -> List[int]:
    """1-based line numbers of each ``[[header]]`` table, to locate field errors."""
    pat = re.compile(r"^\s*\[\[\s*" + re.escape(header) + r"\s*\]\]")
    return [i + 1 for i, line in enumerate(text.splitlines()) if pat.match(line)]


def load_toml(text: str, source: str) -> Dict[str, Any]:
    """Parses TOML; a syntax error becomes a ConfigError naming ``source`` and the line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        line = int(m.group(1)) if m else None
        raise ConfigError(f"{source}:{line or '?'}: invalid TOML: {e}", file=source, line=line) from e


def parse_catalog(text: str, source: str) -> List[Model]:
    doc = load_toml(text, source)
    model_lines = _lines_of(text, "models")
    tier_lines = _lines_of(text, "models.tiers")

    def fail(msg: str, fld: str, line: Optional[int]) -> ConfigError:
        return ConfigError(f"{source}:{line or '?'}: {fld}: {msg}", file=source, line=line, field=fld)

    if doc.get("format") != CATALOG_FORMAT:
        raise fail(f"must be {CATALOG_FORMAT!r}", "format", 1)
    if doc.get("version") != CATALOG_VERSION:
        raise fail(f"version {doc.get('version')!r} is not supported (this build reads {CATALOG_VERSION})", "version", 1)
    raw_models = doc.get("models")
    if not isinstance(raw_models, list):
        raise fail("must be an array of [[models]] tables", "models", None)
    out: List[Model] = []
    seen: Dict[str, int] = {}
    tier_no = 0
    for i, m in enumerate(raw_models):
        line = model_lines[i] if i < len(model_lines) else None
        where = f"models[{i}]"
        if not isinstance(m, dict):
            raise fail("must be a table", where, line)
        name = m.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise fail(f"must be a lowercase name of [a-z0-9._-], got {name!r}", f"{where}.name", line)
        where = f"models[{i}] ({name})"
        if name in seen:
            raise fail(f"duplicate model name (first at models[{seen[name]}])", f"{where}.name", line)
        seen[name] = i
        unknown = set(m) - {"name", "provider", "context_window", "quality", "tiers", "source"}
        if unknown:
            raise fail(f"unknown keys {sorted(unknown)}", where, line)
        provider = m.get("provider")
        if not isinstance(provider, str) or not provider:
            raise fail("must be a non-empty string", f"{where}.provider", line)
        ctx = m.get("context_window")
        if not isinstance(ctx, int) or isinstance(ctx, bool) or not 0 < ctx < 2**32:
            raise fail(f"must be a positive integer, got {ctx!r}", f"{where}.context_window", line)
        q = m.get("quality")
        if not isinstance(q, dict):
            raise fail("must be a table of quality per category", f"{where}.quality", line)
        missing = [c for c in CATEGORIES if c not in q]
        extra = [k for k in q if k not in CATEGORIES]
        if missing or extra:
            raise fail(f"needs exactly the categories {list(CATEGORIES)} (missing {missing}, unknown {extra})", f"{where}.quality", line)
        quality: Dict[str, float] = {}
        for c in CATEGORIES:
            v = q[c]
            if not _is_number(v) or not 0.0 <= float(v) <= 1.0:
                raise fail(f"must be a number in [0, 1], got {v!r}", f"{where}.quality.{c}", line)
            quality[c] = float(v)
        raw_tiers = m.get("tiers")
        if not isinstance(raw_tiers, list) or not raw_tiers:
            raise fail("needs at least one [[models.tiers]] table", f"{where}.tiers", line)
        tiers: List[Tier] = []
        for j, t in enumerate(raw_tiers):
            tline = tier_lines[tier_no] if tier_no < len(tier_lines) else line
            tier_no += 1
            tw = f"{where}.tiers[{j}]"
            if not isinstance(t, dict):
                raise fail("must be a table", tw, tline)
            tname = t.get("name")
            if not isinstance(tname, str) or not _NAME.match(tname):
                raise fail(f"must be a lowercase tier name, got {tname!r}", f"{tw}.name", tline)
            if any(x.name == tname for x in tiers):
                raise fail(f"duplicate tier {tname!r}", f"{tw}.name", tline)
            unknown = set(t) - {"name", *_TIER_FIELDS}
            if unknown:
                raise fail(f"unknown keys {sorted(unknown)}", tw, tline)
            vals: Dict[str, float] = {}
            for f in _TIER_FIELDS:
                if f not in t:
                    if f == "energy_j_per_token":
                        vals[f] = 0.0
                        continue
                    raise fail("is missing", f"{tw}.{f}", tline)
                v = t[f]
                positive = f in ("prefill_tps", "decode_tps")
                if not _is_number(v) or not math.isfinite(float(v)) or float(v) < 0 or (positive and float(v) == 0):
                    need = "a positive number" if positive else "a number ≥ 0"
                    raise fail(f"must be {need}, got {v!r}", f"{tw}.{f}", tline)
                vals[f] = float(v)
            tiers.append(Tier(name=tname, **vals))
        src = m.get("source", "")
        out.append(Model(name, provider, ctx, quality, tuple(tiers), src if isinstance(src, str) else ""))
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def table_rows(catalog: Catalog) -> Sequence[Tuple[str, str, str, float, float, float, float, int, float]]:
    """(model, provider, tier, $/1M in, $/1M out, ttft ms, decode tok/s, context, mean quality) rows."""
    return [
        (m.name, m.provider, t.name, t.price_in, t.price_out, t.ttft_ms, t.decode_tps, m.context_window, m.mean_quality())
        for m in catalog.models
        for t in m.tiers
    ]
