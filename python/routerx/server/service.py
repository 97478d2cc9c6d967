"""The gRPC servicer: ``routerx.v1.Router`` over one shared, thread-safe ``routerx.Router``.

Decisions are in-process Rust objects, so ``Record`` cannot receive one over the wire: every
routed decision is held in a bounded, expiring map under a random ``decision_id`` that the
client sends back (:class:`DecisionStore`).

Every method goes through :func:`_rpc`, which gives it a request id, maps routerx exceptions
to status codes (with the offending field in trailing metadata, so the client can raise the
same exception the in-process router would), hides unexpected errors behind INTERNAL, and
logs one line per request.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar, Union

import grpc

from ..errors import ConfigError, InvalidRequestError, NoRouteError
from ..router import Recorded, Router
from ._proto.routerx.v1 import router_pb2 as pb
from ._proto.routerx.v1 import router_pb2_grpc as pb_grpc

log = logging.getLogger("routerx.server")

SERVICE_NAME = "routerx.v1.Router"
#: Trailing-metadata keys of an error: the Python exception class and the offending field.
ERROR_KEY = "routerx-error"
FIELD_KEY = "routerx-field"
REQUEST_ID_KEY = "x-request-id"

_CACHE_OUTCOME = {"exact": pb.CACHE_OUTCOME_EXACT, "miss": pb.CACHE_OUTCOME_MISS, "bypass": pb.CACHE_OUTCOME_BYPASS}
_COUNTERS = ("requests", "exact_hits", "misses", "bypassed", "best_effort", "errors", "records", "failed_calls", "input_tokens", "output_tokens")
_LATENCY = ("count", "p50_us", "p90_us", "p99_us", "max_us", "mean_us")
_CACHE_STATS = ("entries", "bytes", "inserts", "evictions", "expirations")

Info = Dict[str, Any]
Req = TypeVar("Req")
Resp = TypeVar("Resp")


class RpcStatusError(Exception):
    """A status the service answers with directly (NOT_FOUND, ABORTED, ...), not a routerx error."""

    def __init__(self, code: grpc.StatusCode, message: str, field: Optional[str] = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


# -- decisions awaiting Record -------------------------------------------------------------------


class _Held:
    __slots__ = ("decision", "expires", "result", "busy")

    def __init__(self, decision: Any, expires: float) -> None:
        self.decision = decision  # dropped once recorded, to free the Rust object
        self.expires = expires
        self.result: Optional[Recorded] = None
        self.busy = False


class DecisionStore:
    """decision_id → Decision, bounded in count and age.

    One TTL for all entries makes insertion order the expiry order, so expiring is popping
    from the front of an OrderedDict: O(1) amortised per insert, no timer thread. When full,
    the oldest entry is evicted (its Record will get NOT_FOUND). A recorded entry keeps only
    its result until it expires, so a retried Record is answered without counting twice.
    """

    def __init__(self, max_entries: int = 100_000, ttl_s: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1 or not ttl_s > 0:
            raise ValueError("DecisionStore needs max_entries ≥ 1 and ttl_s > 0")
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._clock = clock
        self._d: "OrderedDict[str, _Held]" = OrderedDict()
        self._lock = threading.Lock()
        self.expired = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._d)

    def _purge(self, now: float) -> None:
        d = self._d
        while d:
            first = next(iter(d.values()))
            if first.expires > now:
                break
            d.popitem(last=False)
            self.expired += 1

    def put(self, decision: Any) -> str:
        # 128 random bits: ids are capabilities (whoever has one can record against that
        # tenant's cache), so they must not be guessable.
        did = os.urandom(16).hex()
        now = self._clock()
        with self._lock:
            self._purge(now)
            self._d[did] = _Held(decision, now + self.ttl_s)
            if len(self._d) > self.max_entries:
                self._d.popitem(last=False)
                self.evicted += 1
        return did

    def claim(self, did: str) -> Union[Any, Recorded]:
        """The decision to record (marking it in flight), or the result of an earlier Record."""
        with self._lock:
            h = self._d.get(did)
            if h is None or h.expires <= self._clock():
                raise RpcStatusError(grpc.StatusCode.NOT_FOUND, f"decision_id: no decision {did!r} (unknown, expired or evicted)", "decision_id")
            if h.result is not None:
                return h.result
            if h.busy:
                raise RpcStatusError(grpc.StatusCode.ABORTED, f"decision_id: a Record for {did!r} is in flight; retry", "decision_id")
            h.busy = True
            return h.decision

    def finish(self, did: str, result: Optional[Recorded]) -> None:
        """Ends a claim: with the result on success, or ``None`` to make it recordable again."""
        with self._lock:
            h = self._d.get(did)
            if h is None:  # evicted meanwhile; the caller still gets its result
                return
            h.busy = False
            if result is not None:
                h.result, h.decision = result, None


# -- conversions -----------------------------------------------------------------------------------


def _json_arg(text: str, name: str) -> Any:
    """Parses tools_json / params_json. Shape errors are left to the router (same messages as
    in-process), except a non-array tools value, which Python's list() would silently accept."""
    if not text:
        return None
    try:
        v = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise InvalidRequestError(f"{name}: invalid JSON: {e}", name) from None
    if name == "tools" and v is not None and not isinstance(v, list):
        raise InvalidRequestError("tools: must be a JSON array of tool objects", "tools")
    return v


def route_args(r: pb.RouteRequest) -> Tuple[Any, Dict[str, Any]]:
    """(prompt, keyword arguments of Router.route) from a RouteRequest; absent fields stay absent
    so the router applies its own defaults."""
    prompt: Any
    if r.messages:
        if r.prompt:
            raise InvalidRequestError("prompt: give either prompt or messages, not both", "prompt")
        prompt = [{"role": m.role, "content": m.content} for m in r.messages]
    else:
        prompt = r.prompt
    kw: Dict[str, Any] = {}
    if r.HasField("tenant"):
        kw["tenant"] = r.tenant
    c = r.constraints
    for name in ("latency_budget_ms", "max_cost_usd", "min_quality", "strict"):
        if c.HasField(name):
            kw[name] = getattr(c, name)
    if c.HasField("models"):
        kw["models"] = list(c.models.names)
    if r.cache.no_cache:
        kw["no_cache"] = True
    if r.cache.no_store:
        kw["no_store"] = True
    if r.cache.HasField("ttl_s"):
        kw["ttl_s"] = r.cache.ttl_s
    tools, params = _json_arg(r.tools_json, "tools"), _json_arg(r.params_json, "params")
    if tools is not None:
        kw["tools"] = tools
    if params is not None:
        kw["params"] = params
    return prompt, kw


def decision_pb(d: Any, decision_id: str, overhead_us: float, language: bool = False) -> pb.Decision:
    return pb.Decision(
        decision_id=decision_id,
        model=d.model,
        provider=d.provider,
        tier=d.tier,
        cache=_CACHE_OUTCOME.get(d.cache, pb.CACHE_OUTCOME_UNSPECIFIED),
        cached_response=d.cached_response,
        entry_id=d.entry_id,
        entry_age_s=d.entry_age_s,
        tenant=d.tenant,
        category=d.category,
        complexity=d.complexity,
        confidence=d.confidence,
        language=d.language if language else None,  # costly: only on request
        input_tokens=d.input_tokens,
        predicted_output_tokens=d.predicted_output_tokens,
        predicted_cost_usd=d.predicted_cost_usd,
        predicted_latency_ms=d.predicted_latency_ms,
        cost_avoided_usd=d.cost_avoided_usd,
        required_quality=d.required_quality,
        within_budget=d.within_budget,
        violations=d.violations,
        fallbacks=[
            pb.Fallback(
                model=f["model"],
                provider=f["provider"],
                tier=f["tier"],
                predicted_cost_usd=f["predicted_cost_usd"],
                predicted_latency_ms=f["predicted_latency_ms"],
                quality=f["quality"],
            )
            for f in d.fallbacks
        ],
        reason=d.reason,
        route_ns=d.route_ns,
        overhead_us=overhead_us,
    )


def stats_pb(s: Dict[str, Any], store: DecisionStore) -> pb.StatsResponse:
    return pb.StatsResponse(
        **{k: s[k] for k in _COUNTERS},
        cost_usd=s["cost_usd"],
        cost_avoided_usd=s["cost_avoided_usd"],
        decisions=s["decisions"],
        route_latency=pb.RouteLatency(**{k: s["route_latency"][k] for k in _LATENCY}),
        cache=pb.CacheStats(**{k: s["cache"][k] for k in _CACHE_STATS}),
        classifier=s["classifier"],
        server=pb.ServerStats(decisions_held=len(store), decisions_expired=store.expired, decisions_evicted=store.evicted),
    )


def catalog_pb(router: Router) -> pb.Catalog:
    from ..policy.catalog import CATEGORIES

    cat = router.catalog
    return pb.Catalog(
        models=[
            pb.Model(
                name=m.name,
                provider=m.provider,
                context_window=m.context_window,
                quality=dict(m.quality),
                tiers=[
                    pb.Tier(
                        name=t.name,
                        price_in=t.price_in,
                        price_out=t.price_out,
                        ttft_ms=t.ttft_ms,
                        prefill_tps=t.prefill_tps,
                        decode_tps=t.decode_tps,
                        energy_j_per_token=t.energy_j_per_token,
                    )
                    for t in m.tiers
                ],
                source=m.source,
            )
            for m in cat.models
        ],
        files=list(cat.files),
        categories=list(CATEGORIES),
    )


# -- the uniform wrapper -----------------------------------------------------------------------------


def _ascii(v: str, limit: int = 200) -> str:
    """Metadata values must be printable ASCII."""
    return "".join(ch if " " <= ch <= "~" else "?" for ch in v[:limit])


def _request_id(context: grpc.ServicerContext) -> str:
    for k, v in context.invocation_metadata() or ():
        if k == REQUEST_ID_KEY and isinstance(v, str) and 0 < len(v) <= 128:
            return _ascii(v)
    return os.urandom(8).hex()


def _kv(fields: Info) -> str:
    """logfmt (key=value, quoted when needed), so a line parses without a schema."""
    out = []
    for k, v in fields.items():
        if v is None or v == "":
            continue
        s = f"{v:.6g}" if isinstance(v, float) else str(v)
        if not s.isprintable() or any(c in s for c in ' ="'):  # also keeps a tenant from forging lines
            s = json.dumps(s, ensure_ascii=False)
        out.append(f"{k}={s}")
    return " ".join(out)


def _rpc(fn: Callable[["RouterService", Req, grpc.ServicerContext, Info], Resp]) -> Callable[["RouterService", Req, grpc.ServicerContext], Resp]:
    """Request id, status mapping and one log line for a servicer method.

    A handler gets an ``info`` dict to add log fields to (tenant, model, ...); it raises routerx
    exceptions or :class:`RpcStatusError` and never calls ``context.abort`` itself.
    """
    name = fn.__name__

    @functools.wraps(fn)
    def wrapper(self: "RouterService", request: Req, context: grpc.ServicerContext) -> Resp:
        t0 = time.perf_counter_ns()
        rid = _request_id(context)
        info: Info = {"rid": rid, "rpc": name}
        code: Optional[grpc.StatusCode] = None
        field: Optional[str] = None
        error_type = ""
        try:
            response = fn(self, request, context, info)
        except InvalidRequestError as e:  # includes InvalidConstraintError and UnknownModelError
            code, message, field, error_type = grpc.StatusCode.INVALID_ARGUMENT, str(e), e.field, type(e).__name__
        except (NoRouteError, ConfigError) as e:
            code, message, error_type = grpc.StatusCode.FAILED_PRECONDITION, str(e), type(e).__name__
            field = getattr(e, "field", None)
        except RpcStatusError as e:
            code, message, field = e.code, e.message, e.field
        except Exception:
            # A bug: the caller learns only that it happened and the id to quote.
            log.exception("%s status=INTERNAL", _kv(info))
            code, message = grpc.StatusCode.INTERNAL, f"internal error (request id {rid})"
        us = (time.perf_counter_ns() - t0) / 1e3
        md: List[Tuple[str, str]] = [(REQUEST_ID_KEY, rid)]
        if code is None:
            context.set_trailing_metadata(tuple(md))
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s status=OK us=%.1f", _kv(info), us)
            return response
        if field and field not in message:
            message = f"{field}: {message}"  # the status text alone must name the field
        if error_type:
            md.append((ERROR_KEY, error_type))
        if field:
            md.append((FIELD_KEY, _ascii(field)))
        if code is not grpc.StatusCode.INTERNAL:
            log.warning("%s status=%s field=%s us=%.1f error=%s", _kv(info), code.name, field or "-", us, json.dumps(message, ensure_ascii=False)[:500])
        context.set_trailing_metadata(tuple(md))
        context.abort(code, message)
        raise AssertionError("unreachable: context.abort raises")

    return wrapper


# -- the service ---------------------------------------------------------------------------------------


class RouterService:
    """routerx.v1.Router. Thread-safe: the router is, and the decision store locks.

    It implements every method, so it does not inherit the generated RouterServicer (whose
    only job is answering UNIMPLEMENTED) and stays fully typed."""

    def __init__(self, router: Router, *, max_decisions: int = 100_000, decision_ttl_s: float = 3600.0, max_batch: int = 10_000) -> None:
        self.router = router
        self.decisions = DecisionStore(max_decisions, decision_ttl_s)
        self.max_batch = max_batch

    @_rpc
    def Route(self, request: pb.RouteRequest, context: grpc.ServicerContext, info: Info) -> pb.Decision:
        t0 = time.perf_counter_ns()
        info.update(tenant=request.tenant if request.HasField("tenant") else None, agent=request.agent, workflow=request.workflow)
        prompt, kw = route_args(request)
        d = self.router.route(prompt, **kw)
        info.update(tenant=d.tenant, model=f"{d.model}/{d.tier}", cache=d.cache, route_us=d.route_ns / 1e3)
        did = self.decisions.put(d)
        return decision_pb(d, did, (time.perf_counter_ns() - t0) / 1e3, request.detect_language)

    @_rpc
    def RouteBatch(self, request: pb.RouteBatchRequest, context: grpc.ServicerContext, info: Info) -> pb.RouteBatchResponse:
        t0 = time.perf_counter_ns()
        n = len(request.requests)
        info["n"] = n
        if n > self.max_batch:
            raise InvalidRequestError(f"requests: {n} requests in one batch; the limit is {self.max_batch}", "requests")
        items: List[Dict[str, Any]] = []
        for i, r in enumerate(request.requests):
            try:
                prompt, kw = route_args(r)
            except InvalidRequestError as e:
                raise type(e)(f"requests[{i}]: {e}", e.field) from None
            kw["prompt"] = prompt
            items.append(kw)
        ds = self.router.route_many(items)
        us = (time.perf_counter_ns() - t0) / 1e3  # the whole batch's: per-item time is not separable
        info["route_us"] = sum(d.route_ns for d in ds) / 1e3
        return pb.RouteBatchResponse(decisions=[decision_pb(d, self.decisions.put(d), us, r.detect_language) for d, r in zip(ds, request.requests)])

    @_rpc
    def Record(self, request: pb.RecordRequest, context: grpc.ServicerContext, info: Info) -> pb.RecordResponse:
        did = request.decision_id
        info["decision_id"] = did
        if not did:
            raise InvalidRequestError("decision_id: is empty; pass the decision_id of a Route answer", "decision_id")
        held = self.decisions.claim(did)
        if isinstance(held, Recorded):
            info["replayed"] = True
            return pb.RecordResponse(cost_usd=held.cost_usd, stored=held.stored, replayed=True)
        result: Optional[Recorded] = None
        try:
            result = self.router.record(
                held,
                request.response_text,
                request.input_tokens,
                request.output_tokens,
                request.latency_ms,
                request.ok if request.HasField("ok") else True,
            )
        finally:
            self.decisions.finish(did, result)  # on failure the decision stays recordable
        info.update(tenant=held.tenant, model=f"{held.model}/{held.tier}", stored=result.stored, cost_usd=result.cost_usd)
        return pb.RecordResponse(cost_usd=result.cost_usd, stored=result.stored)

    @_rpc
    def Invalidate(self, request: pb.InvalidateRequest, context: grpc.ServicerContext, info: Info) -> pb.InvalidateResponse:
        tenant = request.tenant if request.HasField("tenant") else None
        n = self.router.invalidate(tenant)
        info.update(tenant=tenant or "*", removed=n)
        return pb.InvalidateResponse(removed=n)

    @_rpc
    def Stats(self, request: pb.StatsRequest, context: grpc.ServicerContext, info: Info) -> pb.StatsResponse:
        return stats_pb(self.router.stats(), self.decisions)

    @_rpc
    def GetCatalog(self, request: pb.GetCatalogRequest, context: grpc.ServicerContext, info: Info) -> pb.Catalog:
        return catalog_pb(self.router)


def add_to_server(service: RouterService, server: grpc.Server) -> None:
    register: Any = pb_grpc.add_RouterServicer_to_server  # generated code is untyped
    register(service, server)


__all__ = ["RouterService", "DecisionStore", "RpcStatusError", "SERVICE_NAME", "ERROR_KEY", "FIELD_KEY", "REQUEST_ID_KEY", "add_to_server", "route_args", "decision_pb"]
