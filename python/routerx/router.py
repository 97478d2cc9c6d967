"""The in-process router: ``Router.route()`` → ``Decision``, ``Router.record()`` after the call."""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

from . import _core
from ._core import Decision
from .accounting.store import AccountingStore, default_db_path, row_to_dict
from .config import BUDGET_ACTIONS, Budget, Config, ConfigInput, load_config
from .errors import ConfigError, InvalidConstraintError, InvalidRequestError, SnapshotError
from .policy.catalog import Catalog
from .policy.policy import compile_accounting, compile_policy

log = logging.getLogger("routerx")

#: The exact cache's file inside a snapshot directory.
EXACT_SNAPSHOT_FILE = "exact-cache.rxsnap"
#: The semantic cache's file (entries and vectors; the faiss index is rebuilt from them).
SEMANTIC_SNAPSHOT_FILE = "semantic-cache.rxsnap"

Message = Mapping[str, Any]
Prompt = Union[str, bytes, Sequence[Message]]
_Extras = Tuple[str, int, str, Optional[int]]
_Labels = Tuple[str, str, str]


class _Default:
    def __repr__(self) -> str:
        return "<default>"


#: ``Router(db=DEFAULT_DB)``: the config's ``[accounting] db``, else ``$ROUTERX_DB``, else the default file.
DEFAULT_DB: Any = _Default()


class Recorded(NamedTuple):
    cost_usd: float
    stored: bool


@dataclass(frozen=True)
class CachedAnswer:
    """What ``lookup()`` finds in the exact cache."""

    cached_response: str
    entry_id: str
    entry_age_s: float
    tenant: str
    model: str
    provider: str
    tier: str
    category: str
    cost_avoided_usd: float


class Router:
    """Chooses a model and hardware tier per request, answers repeats from cache, accounts usage.

    Thread-safe: share one instance. Every method crosses into the core once, with the GIL released.
    """

    def __init__(self, config: ConfigInput = None, *, catalog: Optional[Catalog] = None, db: Union[None, str, Path, Any] = DEFAULT_DB, restore: bool = True) -> None:
        """``config``: a TOML path, a dict of the same shape, or None for the embedded defaults.
        ``db``: the accounting database (a path; None or ":memory:" for none); by default the
        config's ``[accounting] db``, else ``$ROUTERX_DB``, else ``~/.local/state/routerx/accounting.db``.
        ``restore``: fill the cache from ``[cache] snapshot_dir`` when it holds a snapshot."""
        self.config: Config = load_config(config)
        self.catalog: Catalog = catalog or Catalog.load(self.config.catalog_files, include_default=self.config.include_default_catalog)
        classifier_json = None
        if self.config.classifier is not None:
            try:
                classifier_json = Path(self.config.classifier).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise ConfigError(f"{self.config.classifier}: cannot read classifier model: {e}", file=str(self.config.classifier)) from e
        models, candidates, settings = compile_policy(self.catalog, self.config.policy)
        energy, baseline = compile_accounting(self.catalog, self.config.policy, self.config.baseline_model, self.config.baseline_tier)
        self._core = _core.Core(
            models,
            candidates,
            settings,
            classifier_json=classifier_json,
            classifier_source=str(self.config.classifier or "<embedded>"),
            max_prompt_bytes=self.config.max_prompt_bytes,
            cache_max_entries=self.config.cache_max_entries,
            cache_max_bytes=self.config.cache_max_bytes,
            cache_ttl_s=self.config.cache_ttl_s,
            energy=energy,
            baseline=baseline,
            semantic_max_entries=self.config.semantic.max_entries,
            semantic_max_bytes=self.config.semantic.max_bytes,
            single_flight_s=self.config.single_flight_timeout_s,
        )
        self._core.set_reservation_ttl(self.config.reservation_ttl_s)
        self._tenant = self.config.default_tenant
        self._default = self._constraints(None, None, None, None, None, False, False, None)
        self._allowed_cache: Dict[Tuple[str, ...], List[int]] = {}
        self._lock = threading.Lock()
        if db is DEFAULT_DB:
            db = self.config.accounting_db if self.config.accounting_db is not None else default_db_path()
        self.db_path: Optional[str] = None if db is None or str(db) in ("", ":memory:") else str(db)
        self._store: Optional[AccountingStore] = None
        if self.db_path is not None:
            self._store = AccountingStore(self.db_path, self._core.drain_deltas, self.config.flush_interval_ms / 1000.0)
        for b in self.config.budgets:
            self._apply_budget(b)
        #: The semantic layer (embedder + micro-batcher in the core, faiss index here), when enabled.
        self._semantic: Optional[_core.Semantic] = None
        self.semantic_index: Optional[Any] = None
        if self.config.semantic.enabled:
            self._start_semantic()
        #: The learned router's artefact, when ``[quality] model`` is set.
        self.quality_model: Optional[_core.QualityModel] = None
        self._feedback_log: Optional[FeedbackLog] = None
        if self.config.quality.model is not None or self.config.quality.builtin:
            self._start_quality()
        self.snapshot_dir: Optional[Path] = self.config.cache_snapshot_dir
        if restore and self.snapshot_dir is not None and (self.snapshot_dir / EXACT_SNAPSHOT_FILE).exists():
            try:
                self.restore(self.snapshot_dir)
            except SnapshotError as e:
                # A bad snapshot must not keep the router from starting: start empty, say why.
                log.error("cache snapshot not restored, starting with an empty cache: %s", e)

    # -- routing -------------------------------------------------------------------------------

    def route(
        self,
        prompt: Prompt,
        *,
        tenant: Optional[str] = None,
        latency_budget_ms: Optional[float] = None,
        max_cost_usd: Optional[float] = None,
        min_quality: Optional[float] = None,
        models: Optional[Sequence[str]] = None,
        strict: Optional[bool] = None,
        no_cache: bool = False,
        no_store: bool = False,
        ttl_s: Optional[float] = None,
        tools: Optional[Sequence[Mapping[str, Any]]] = None,
        params: Optional[Mapping[str, Any]] = None,
        agent: Optional[str] = None,
        workflow: Optional[str] = None,
        step: Optional[str] = None,
        min_similarity: Optional[float] = None,
        flight_caller: Optional[int] = None,
        verifier_threshold: Optional[float] = None,
        willingness_to_pay: Optional[float] = None,
    ) -> Decision:
        """Decides who answers ``prompt`` (a string or a list of ``{"role", "content"}`` messages).

        Constraints: ``latency_budget_ms`` (default from config; ``math.inf`` for none),
        ``max_cost_usd``, ``min_quality`` (0–1, overrides the complexity-derived requirement),
        ``models`` (allowed model names). ``tools`` and ``params`` (sampling parameters) are part of
        the cache key. Cache controls: ``no_cache`` (do not read), ``no_store`` (do not write the
        recorded answer), ``ttl_s``. Labels ``agent``, ``workflow`` and ``step`` attribute the
        request's spend in the ledger and select its budgets; they are not part of the cache key.
        Raises ``BudgetExceededError`` when a ``reject`` budget has no room for it.
        With the semantic cache enabled, ``min_similarity`` (a cosine in (0, 1]) overrides the
        configured threshold for this request; a semantic hit has ``cache == "semantic"`` and
        ``similarity`` set. ``flight_caller`` (single flight): who is asking, default the calling
        thread; a caller never waits for its own call in flight. ``verifier_threshold`` (a score
        in (0, 1)) overrides the learned verifier's acceptance score for this request.
        ``willingness_to_pay`` (USD per unit quality): pick the candidate with the most expected
        value ``wtp × quality − cost`` (quality predicted per request by the learned router when
        ``[quality] model`` is set) instead of the cheapest one meeting the required quality.
        """
        if (
            latency_budget_ms is None
            and max_cost_usd is None
            and min_quality is None
            and models is None
            and strict is None
            and not no_cache
            and not no_store
            and ttl_s is None
            and willingness_to_pay is None
        ):
            c = self._default
        else:
            c = self._constraints(latency_budget_ms, max_cost_usd, min_quality, models, strict, no_cache, no_store, ttl_s, willingness_to_pay)
        extras = None if tools is None and params is None else _extras(tools, params)
        labels = None if agent is None and workflow is None and step is None else _labels(agent, workflow, step)
        if min_similarity is not None:
            min_similarity = _similarity(min_similarity)
        # Single flight happens in the core: while another thread's call for this exact request
        # is in flight, this one waits (GIL released) for its answer.
        return self._core.route(prompt, tenant if tenant is not None else self._tenant, c, extras, labels, self._semantic, min_similarity, flight_caller, verifier_threshold)

    def _start_semantic(self) -> None:
        from .embed import load_minilm, load_static
        from .semantic import SemanticIndex

        sc = self.config.semantic
        emb = load_minilm(sc.model_dir)
        if sc.embedder == "static":
            emb = load_static(emb)
        self.embedder = emb
        self.semantic_index = SemanticIndex(emb.dim, ivf_threshold=sc.ivf_threshold, ivf_nprobe=sc.ivf_nprobe, ivf_dim=sc.ivf_dim, hnsw_threshold=sc.hnsw_threshold, hnsw_m=sc.hnsw_m, ef_search=sc.hnsw_ef_search, hnsw_ef_construction=sc.hnsw_ef_construction, huge_pages=sc.huge_pages, threads=sc.faiss_threads, live=self._core.semantic_vectors, background=True)
        verifier: Any = None
        if sc.verifier is not None:
            # A .safetensors file is a cross-encoder (reads both texts); anything else the
            # verifier over the pair's vectors.
            load = _core.CrossEncoder.load if sc.verifier.suffix == ".safetensors" else _core.Verifier.load
            verifier = load(str(sc.verifier))
        self._semantic = _core.Semantic(emb._inner, self.semantic_index.search, sc.min_similarity, sc.top_k, sc.max_batch, sc.max_wait_us, dict(sc.category_min_similarity), verifier, sc.verifier_threshold, sc.verifier_trust_names)

    def _sync_index(self, added: Optional[Tuple[int, int, bytes]]) -> None:
        """Applies the core's semantic inserts and removals to the faiss index."""
        idx = self.semantic_index
        if idx is None:
            return
        if added is not None:
            entry_id, scope, vector = added
            idx.add(scope, entry_id, vector)
        removed = self._core.semantic_drain_removed()
        if removed:
            idx.remove(removed)

    def route_many(self, requests: Sequence[Union[Prompt, Mapping[str, Any]]], **constraints: Any) -> List[Decision]:
        """Routes a batch in one call into the core.

        Each item is a prompt, or a dict ``{"prompt": ..., **per-request options}`` whose options
        override the shared ``constraints``. A bad item fails the batch, naming its index. The
        items the exact cache does not answer go to the semantic cache as one submission, which
        its micro-batcher embeds and searches in batches.
        """
        items: List[Tuple[Prompt, str, _core.Constraints, Optional[_Extras], Optional[_Labels]]] = []
        for i, r in enumerate(requests):
            opts = dict(constraints)
            if isinstance(r, Mapping):
                if "prompt" not in r:
                    raise InvalidRequestError(f"requests[{i}]: a dict item needs a 'prompt' key", f"requests[{i}].prompt")
                opts.update({k: v for k, v in r.items() if k != "prompt"})
                prompt = r["prompt"]
            else:
                prompt = r
            tenant = opts.pop("tenant", None)
            tools, params = opts.pop("tools", None), opts.pop("params", None)
            agent, workflow, step = opts.pop("agent", None), opts.pop("workflow", None), opts.pop("step", None)
            try:
                c = self._constraints(
                    opts.pop("latency_budget_ms", None),
                    opts.pop("max_cost_usd", None),
                    opts.pop("min_quality", None),
                    opts.pop("models", None),
                    opts.pop("strict", None),
                    bool(opts.pop("no_cache", False)),
                    bool(opts.pop("no_store", False)),
                    opts.pop("ttl_s", None),
                    opts.pop("willingness_to_pay", None),
                )
                if opts:
                    raise InvalidRequestError(f"unknown options {sorted(opts)}", "options")
                extras = None if tools is None and params is None else _extras(tools, params)
                labels = None if agent is None and workflow is None and step is None else _labels(agent, workflow, step)
            except InvalidRequestError as e:
                raise type(e)(f"requests[{i}]: {e}", e.field) from None
            items.append((prompt, tenant if tenant is not None else self._tenant, c, extras, labels))
        return self._core.route_many(items, self._semantic)

    def _constraints(
        self,
        latency_budget_ms: Optional[float],
        max_cost_usd: Optional[float],
        min_quality: Optional[float],
        models: Optional[Sequence[str]],
        strict: Optional[bool],
        no_cache: bool,
        no_store: bool,
        ttl_s: Optional[float],
        willingness_to_pay: Optional[float] = None,
    ) -> _core.Constraints:
        allowed = self._allowed(models) if models is not None else None
        lat = self.config.default_latency_budget_ms if latency_budget_ms is None else latency_budget_ms
        try:
            return _core.Constraints(
                latency_budget_ms=None if lat == math.inf else lat,
                max_cost_usd=max_cost_usd,
                min_quality=min_quality,
                allowed_models=allowed,
                strict=self.config.strict if strict is None else strict,
                no_cache=no_cache,
                no_store=no_store,
                ttl_s=ttl_s,
                willingness_to_pay=willingness_to_pay,
            )
        except TypeError as e:
            raise InvalidConstraintError(f"constraints: {e}", "constraints") from None

    def _allowed(self, models: Sequence[str]) -> List[int]:
        if isinstance(models, str):
            models = (models,)
        key = tuple(models)
        hit = self._allowed_cache.get(key)
        if hit is None:
            if not key:
                raise InvalidConstraintError("models: the list of allowed models is empty", "models")
            hit = [self.catalog.index(m) for m in key]
            with self._lock:
                if len(self._allowed_cache) < 1024:
                    self._allowed_cache[key] = hit
        return hit

    # -- after the model call ------------------------------------------------------------------

    def _start_quality(self) -> None:
        from .quality import load_quality_model, quality_embedder

        q = self.config.quality
        self.quality_model = load_quality_model("builtin" if q.builtin else q.model)
        self._core.set_quality(
            self.quality_model,
            quality_embedder(self.quality_model, getattr(self, "embedder", None)),
            dict(q.models),
            q.willingness_to_pay,
            q.max_offset,
            q.prior_labels,
            q.min_labels,
            q.max_tenants,
        )
        if q.feedback_log is not None:
            self._feedback_log = FeedbackLog(q.feedback_log)
            # Online corrections live in memory: rebuild them from the log they were written to.
            rows, bad = self._feedback_log.read()
            learned = self._core.quality_replay(rows) if rows else 0
            if rows or bad:
                log.info("feedback log %s: %d labels replayed (%d learned from), %d unreadable lines skipped", q.feedback_log, len(rows), learned, bad)

    def record(
        self,
        decision: Decision,
        response_text: Union[str, bytes],
        input_tokens: int,
        output_tokens: int,
        latency_ms: float,
        ok: bool = True,
        outcome: Union[None, bool, float] = None,
    ) -> Recorded:
        """Accounts the model call made for ``decision`` and caches its answer (unless it failed,
        was itself a cache hit, or the request said ``no_store``). ``outcome``: how good the
        answer was — True/False (thumbs, task success) or a score in [0, 1] (e.g. a judge's
        score / 10); it updates the learned router online (see :meth:`feedback`)."""
        label = None if outcome is None else _outcome(outcome)
        cost, stored, semantic = self._core.record(decision, response_text, input_tokens, output_tokens, latency_ms, ok)
        if self.semantic_index is not None:
            self._sync_index(semantic)
        if label is not None:
            self._feedback(decision, label)
        return Recorded(cost, stored)

    def feedback(self, decision: Decision, outcome: Union[bool, float]) -> bool:
        """A label for the answer behind ``decision`` (True/False or a score in [0, 1]) given after
        :meth:`record`. The learned router corrects this tenant's predictions for that model, by
        a bounded amount; other tenants see only the median correction across tenants. Returns
        whether it was learned from (only decisions the learned router made are). Appended to
        ``[quality] feedback_log`` when set."""
        return self._feedback(decision, _outcome(outcome))

    def _feedback(self, decision: Decision, label: float) -> bool:
        learned = self._core.feedback(decision, label)
        if self._feedback_log is not None and decision.quality_text is not None:
            self._feedback_log.append(decision.quality_text, decision.model, label, decision.tenant, decision.step)
        return learned

    # -- budgets and accounting ------------------------------------------------------------------

    def set_budget(
        self,
        scope: str,
        *,
        usd_per_hour: Optional[float] = None,
        usd_per_day: Optional[float] = None,
        usd_per_month: Optional[float] = None,
        tokens_per_hour: Optional[float] = None,
        tokens_per_day: Optional[float] = None,
        tokens_per_month: Optional[float] = None,
        action: str = "warn",
    ) -> List[Budget]:
        """Adds or replaces limits for ``scope`` (``tenant:NAME``, ``agent:NAME``, ``workflow:NAME``).

        ``action``: ``warn`` (serve, ``decision.budget_action == "warn"``), ``downgrade`` (route to
        the cheapest candidate that meets the request's minimum quality), ``reject`` (raise
        ``BudgetExceededError``). What was already spent in the current window — read from the
        accounting database when there is one — counts. Returns the limits set."""
        given = {
            ("usd", "hour"): usd_per_hour, ("usd", "day"): usd_per_day, ("usd", "month"): usd_per_month,
            ("tokens", "hour"): tokens_per_hour, ("tokens", "day"): tokens_per_day, ("tokens", "month"): tokens_per_month,
        }  # fmt: skip
        out = [Budget(scope, w, m, v, action) for (m, w), v in given.items() if v is not None]
        if not out:
            raise InvalidConstraintError("set_budget: give at least one limit (usd_per_day=50, tokens_per_hour=2e6, ...)", "limit")
        for b in out:
            try:
                b.validate("set_budget")
            except ConfigError as e:
                raise InvalidConstraintError(str(e), e.field) from None
        for b in out:
            self._apply_budget(b)
        return out

    def _apply_budget(self, b: Budget) -> None:
        if b.action not in BUDGET_ACTIONS:
            raise InvalidConstraintError(f"action must be one of {BUDGET_ACTIONS}, got {b.action!r}", "action")
        spent: Optional[float] = None
        if self._store is not None:
            usd, tokens = self._store.spent(b.scope, _window_start(b.window))
            spent = usd if b.metric == "usd" else float(tokens)
        self._core.set_budget(b.scope, b.window, b.metric, float(b.limit), b.action, spent)

    def remove_budget(self, scope: str, window: Optional[str] = None, metric: Optional[str] = None) -> int:
        """Removes the limits of ``scope`` (all, or those of one window and/or metric). Returns how many."""
        return self._core.remove_budget(scope, window, metric)

    def budgets(self) -> List[Dict[str, Any]]:
        """Every limit with its state in the current window: spent, reserved, and how many requests
        it warned, downgraded and rejected."""
        return self._core.budgets()

    def ledger(self) -> List[Dict[str, Any]]:
        """Cumulative accounting since this router started, one dict per (tenant, agent, workflow,
        step, model, tier). For all-time totals read the database (``routerx stats``)."""
        return [row_to_dict(r) for r in self._core.ledger()]

    def flush(self) -> int:
        """Writes pending accounting to the database now (the background thread does it every
        flush interval). Returns how many rows were written."""
        return self._store.flush() if self._store is not None else 0

    def snapshot(self, directory: Union[str, "os.PathLike[str]", None] = None) -> Dict[str, Any]:
        """Writes the cache's live entries to ``directory`` (default: ``[cache] snapshot_dir``),
        atomically (write, fsync, rename): a crash leaves the previous snapshot or this one.
        Lookups and inserts go on meanwhile. Returns ``{"entries", "bytes", "file"}``."""
        path = self._snapshot_path(directory)
        n, size = self._core.snapshot_cache(path)
        log.info("cache snapshot: %d entries, %d bytes -> %s", n, size, path)
        out: Dict[str, Any] = {"entries": n, "bytes": size, "file": str(path)}
        if self._semantic is not None:
            sp = path.with_name(SEMANTIC_SNAPSHOT_FILE)
            sn, ssize = self._core.snapshot_semantic(sp, self._semantic.model_id)
            log.info("semantic cache snapshot: %d entries, %d bytes -> %s", sn, ssize, sp)
            out["semantic"] = {"entries": sn, "bytes": ssize, "file": str(sp)}
        return out

    def restore(self, directory: Union[str, "os.PathLike[str]", None] = None) -> Dict[str, Any]:
        """Adds the live entries of a snapshot in ``directory`` (default: ``[cache] snapshot_dir``).
        A missing, truncated, corrupt or other-version file raises :class:`SnapshotError` naming
        it, and the cache is left as it was. Entries are dropped, not served, if the catalog's models
        changed since the snapshot. Returns ``{"restored", "expired", "dropped", "file"}``."""
        path = self._snapshot_path(directory)
        restored, expired, dropped = self._core.restore_cache(path)
        log.info("cache restored from %s: %d entries (%d expired, %d dropped)", path, restored, expired, dropped)
        out: Dict[str, Any] = {"restored": restored, "expired": expired, "dropped": dropped, "file": str(path)}
        sp = path.with_name(SEMANTIC_SNAPSHOT_FILE)
        if self._semantic is not None and self.semantic_index is not None and sp.exists():
            sr, se, sd = self._core.restore_semantic(sp, self._semantic.model_id)
            self._core.semantic_drain_removed()  # the index is rebuilt from what is live now
            self.semantic_index.add_vectors(*self._core.semantic_vectors())
            log.info("semantic cache restored from %s: %d entries (%d expired, %d dropped)", sp, sr, se, sd)
            out["semantic"] = {"restored": sr, "expired": se, "dropped": sd, "file": str(sp)}
        return out

    def _snapshot_path(self, directory: Union[str, "os.PathLike[str]", None]) -> Path:
        if directory is None:
            if self.snapshot_dir is None:
                raise SnapshotError("no snapshot directory: pass one or set [cache] snapshot_dir in the config")
            directory = self.snapshot_dir
        return Path(os.fspath(directory)) / EXACT_SNAPSHOT_FILE

    def close(self, snapshot: bool = True) -> None:
        """Snapshots the cache (when ``[cache] snapshot_dir`` is set and ``snapshot``), then flushes
        and closes the accounting database. The router still routes afterwards."""
        if snapshot and self.snapshot_dir is not None:
            try:
                self.snapshot()
            except SnapshotError as e:
                log.error("cache snapshot failed: %s", e)
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> "Router":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- inspection and maintenance -------------------------------------------------------------

    def stats(self) -> Dict[str, Any]:
        s: Dict[str, Any] = self._core.stats()
        s["classifier"] = self._core.classifier_name()
        if self._semantic is not None and self.semantic_index is not None:
            s["semantic"].update(self._semantic.stats(), index=self.semantic_index.stats(), model_id=self._semantic.model_id, min_similarity=self._semantic.min_similarity)
        s["semantic"]["enabled"] = self._semantic is not None
        q = self._core.quality_stats()
        if q is not None:
            q["mapped"], q["shared_offset"] = dict(q["mapped"]), dict(q["shared_offset"])
        s["quality"] = q
        return s

    def predict_quality(self, prompt: str, tenant: Optional[str] = None, step: Optional[str] = None) -> Optional[Dict[str, Optional[float]]]:
        """The learned router's p̂ per catalog model for ``prompt`` in workflow ``step`` (None without
        ``[quality] model``; a model the artefact does not know maps to None and keeps its catalog
        quality). An artefact trained ``--by-group`` adds the step's learned offsets."""
        p = self._core.predict_quality(prompt, tenant if tenant is not None else self._tenant, step or "")
        return None if p is None else dict(p)

    def count_tokens(self, text: Union[str, bytes]) -> int:
        """Exact o200k_base token count."""
        return self._core.count_tokens(text)

    def features(self, prompt: Prompt) -> Dict[str, float]:
        """The named features the classifier sees for ``prompt``."""
        return dict(self._core.features(prompt))

    def lookup(
        self,
        prompt: Prompt,
        *,
        tenant: Optional[str] = None,
        models: Optional[Sequence[str]] = None,
        tools: Optional[Sequence[Mapping[str, Any]]] = None,
        params: Optional[Mapping[str, Any]] = None,
        min_quality: Optional[float] = None,
    ) -> Optional[CachedAnswer]:
        """The exact cache's answer for this request (the key ``route()`` uses: tenant, models,
        tools, params), or None. Nothing is routed: no semantic lookup, budget or single-flight
        wait, and a miss is not counted (a hit is, as a cached request). ``min_quality``: only an
        answer from a model good enough for it. Bad input raises as ``route()`` does."""
        c = self._default if models is None and min_quality is None else self._constraints(None, None, min_quality, models, None, False, False, None, None)
        extras = None if tools is None and params is None else _extras(tools, params)
        d = self._core.lookup(prompt, tenant if tenant is not None else self._tenant, c, extras)
        if d is None or d.cached_response is None:
            return None
        return CachedAnswer(d.cached_response, d.entry_id, d.entry_age_s or 0.0, d.tenant, d.model, d.provider, d.tier, d.category, d.cost_avoided_usd)

    def invalidate(self, tenant: Optional[str] = None) -> int:
        """Drops cached answers (exact and semantic), of one tenant or all; returns how many."""
        n = self._core.invalidate(tenant)
        self._sync_index(None)
        return n

    def savings_baseline(self, decision: Decision) -> float:
        """Predicted cost of sending ``decision``'s request to the reference (strongest) model
        at its standard real-time tier: what routing is measured against."""
        ref = self.catalog.model(self.config.policy.reference_model or self.catalog.strongest().name)
        tier = next((t for t in ref.tiers if t.name == "gpu-standard"), ref.tiers[0])
        return (decision.input_tokens * tier.price_in + decision.predicted_output_tokens * tier.price_out) / 1e6


def _window_start(window: str) -> float:
    """Unix seconds at which the current UTC hour, day or month started."""
    import datetime as _dt

    now = _dt.datetime.now(_dt.timezone.utc)
    if window == "hour":
        start = now.replace(minute=0, second=0, microsecond=0)
    elif window == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start.timestamp()


def _labels(agent: Optional[str], workflow: Optional[str], step: Optional[str]) -> _Labels:
    out = []
    for name, v in (("agent", agent), ("workflow", workflow), ("step", step)):
        if v is None:
            out.append("")
        elif not isinstance(v, str):
            raise InvalidRequestError(f"{name}: must be a string, got {type(v).__name__}", name)
        else:
            out.append(v)
    return out[0], out[1], out[2]


def _extras(tools: Optional[Sequence[Mapping[str, Any]]], params: Optional[Mapping[str, Any]]) -> _Extras:
    """Canonical (sorted-key) JSON of tools and sampling params, so equal requests share a key."""
    try:
        tools_json = json.dumps(list(tools), sort_keys=True, separators=(",", ":"), allow_nan=False) if tools else ""
    except (TypeError, ValueError) as e:
        raise InvalidRequestError(f"tools: must be a list of JSON objects: {e}", "tools") from None
    max_tokens = None
    params_json = ""
    if params:
        if not isinstance(params, Mapping):
            raise InvalidRequestError("params: must be a dict of sampling parameters", "params")
        mt = params.get("max_tokens")
        if mt is not None:
            if not isinstance(mt, int) or isinstance(mt, bool) or not 0 < mt < 2**32:
                raise InvalidRequestError(f"params.max_tokens: must be a positive integer, got {mt!r}", "params.max_tokens")
            max_tokens = mt
        try:
            params_json = json.dumps(dict(params), sort_keys=True, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as e:
            raise InvalidRequestError(f"params: must be JSON values: {e}", "params") from None
    return tools_json, len(tools) if tools else 0, params_json, max_tokens


DECISION_FIELDS = (
    "model", "provider", "tier", "cache", "cached_response", "entry_id", "entry_age_s", "tenant",
    "category", "complexity", "confidence", "language", "input_tokens", "predicted_output_tokens",
    "predicted_cost_usd", "predicted_latency_ms", "cost_avoided_usd", "required_quality",
    "within_budget", "violations", "fallbacks", "reason", "route_ns",
    "agent", "workflow", "step", "budget_action",
)  # fmt: skip


def _outcome(v: Union[bool, float]) -> float:
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if not isinstance(v, (int, float)) or not (0.0 <= float(v) <= 1.0):
        raise InvalidRequestError(f"outcome: must be True/False or a number in [0, 1], got {v!r}", "outcome")
    return float(v)


class FeedbackLog:
    """Labelled decisions, one JSON object per line (prompt, model, score, tenant, ts, and step when
    the request had one): the long format ``routerx train --data`` reads (``--group-column step
    --by-group`` learns per-step offsets from it). Appends are serialised and flushed per label; a torn
    last line (a crash mid-append) costs that label only."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def read(self) -> Tuple[List[Tuple[str, str, str, str, float]], int]:
        """(tenant, model, prompt, step, score) rows, and how many lines could not be read (a crash
        can leave a torn last line; it is skipped, the rest kept)."""
        rows: List[Tuple[str, str, str, str, float]] = []
        bad = 0
        if not self.path.exists():
            return rows, bad
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    r = json.loads(line)
                    score = float(r["score"])
                    if not 0.0 <= score <= 1.0:
                        raise ValueError(score)
                    rows.append((str(r["tenant"]), str(r["model"]), str(r["prompt"]), str(r.get("step") or ""), score))
                except (ValueError, KeyError, TypeError):
                    bad += 1
        return rows, bad

    def append(self, prompt: str, model: str, score: float, tenant: str, step: Optional[str] = None) -> None:
        row: Dict[str, Any] = {"prompt": prompt, "model": model, "score": score, "tenant": tenant, "ts": round(time.time(), 3)}
        if step:
            row["step"] = step
        line = json.dumps(row, ensure_ascii=False)
        with self._lock, open(self.path, "ab") as f:
            # A crash mid-append leaves a torn last line: end it first, so this label starts a line
            # of its own instead of being glued to (and lost with) the torn one.
            if f.tell() > 0 and not self._ends_with_newline():
                f.write(b"\n")
            f.write(line.encode("utf-8") + b"\n")

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as r:
            r.seek(-1, os.SEEK_END)
            return r.read(1) == b"\n"


def decision_to_dict(d: Decision) -> Dict[str, Any]:
    """A JSON-ready dict of every field of a decision."""
    return {f: getattr(d, f) for f in DECISION_FIELDS}


def _similarity(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v <= 1):
        raise InvalidConstraintError(f"min_similarity: must be a cosine in (0, 1], got {v!r}", "min_similarity")
    return float(v)
