"""The gRPC servicer: ``routerx.v1.Router`` over one shared, thread-safe ``routerx.Router``.

Decisions are in-process Rust objects, so ``Record`` cannot receive one over the wire: every
routed decision is held in a bounded, expiring map under a random ``decision_id`` that the
client sends back (:class:`DecisionStore`).

Every method goes through :func:`_rpc` (or :func:`_stream_rpc`), which gives it a request id,
checks its API key when keys are configured, maps routerx exceptions to status codes (with the
offending field in trailing metadata, so the client can raise the same exception the in-process
router would), hides unexpected errors behind INTERNAL, and logs one line per request.

Authentication runs there, in the handler thread, rather than in a ``grpc.ServerInterceptor``:
grpcio runs interceptors on its single polling thread, where hashing a key per call would
serialise every request.

What ``ReloadConfig`` replaces (the router, the API keys, the per-tenant bookkeeping) is one
:class:`ServerState`, swapped by a single reference assignment: a call reads it once and works
on one consistent state from start to end.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import re
import struct
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Dict, Final, Iterator, List, Optional, Tuple, TypeVar, Union

import grpc

from ..config import ConfigInput
from ..errors import BudgetExceededError, ConfigError, InvalidRequestError, NoRouteError
from ..router import Recorded, Router
from . import tenants as tc
from ._proto.routerx.v1 import router_pb2 as pb
from ._proto.routerx.v1 import router_pb2_grpc as pb_grpc
from .auth import AUTHORIZATION_KEY, Principal, ServerSettings, server_settings

log = logging.getLogger("routerx.server")

SERVICE_NAME = "routerx.v1.Router"
#: Trailing-metadata keys of an error: the Python exception class, the offending field, and
#: for BudgetExceededError the budget's scope.
ERROR_KEY = "routerx-error"
FIELD_KEY = "routerx-field"
SCOPE_KEY = "routerx-scope"
REQUEST_ID_KEY = "x-request-id"

_CACHE_OUTCOME = {"exact": pb.CACHE_OUTCOME_EXACT, "miss": pb.CACHE_OUTCOME_MISS, "bypass": pb.CACHE_OUTCOME_BYPASS}
_CACHE_COUNTER = {"exact": tc.EXACT_HITS, "semantic": tc.SEMANTIC_HITS, "miss": tc.MISSES, "bypass": tc.BYPASSED}
_SEMANTIC_STATS = ("entries", "bytes", "inserts", "evictions", "expirations", "hits", "below_threshold", "guard_rejections", "guard_overruled", "stale_candidates")
_COUNTERS = tc.COUNTERS
_LATENCY = ("count", "p50_us", "p90_us", "p99_us", "max_us", "mean_us")
_CACHE_STATS = ("entries", "bytes", "inserts", "evictions", "expirations")
_ENTRY_ID = re.compile(r"[0-9a-f]{32}")
#: Old routers kept open after reloads, for Records of the decisions they made; older ones are closed.
RETIRED_ROUTERS = 4

Req = TypeVar("Req")
Resp = TypeVar("Resp")


class RpcStatusError(Exception):
    """A status the service answers with directly (NOT_FOUND, ABORTED, ...), not a routerx error.
    ``quiet``: an expected answer (a Lookup miss), logged at DEBUG instead of WARNING."""

    def __init__(self, code: grpc.StatusCode, message: str, field: Optional[str] = None, quiet: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.quiet = quiet


# -- what a reload replaces ------------------------------------------------------------------------


class ServerState:
    """The router and everything tied to it. Never mutated after construction except for the
    thread-safe bookkeeping objects it holds."""

    __slots__ = ("router", "settings", "counters", "entries", "owned", "gen", "fast")
    _gens = itertools.count(1)

    def __init__(self, router: Router, settings: ServerSettings, owned: bool) -> None:
        #: Names this state in held decisions (an int keeps them untracked by the GC, see _Held).
        self.gen = next(ServerState._gens)
        self.router = router
        self.settings = settings
        #: Per-tenant request counters and stored entries (the core counts server-wide only).
        self.counters = tc.TenantCounters()
        self.entries = tc.EntryIndex(router.config.cache_max_entries)
        #: Whether the server built this router (and so closes it when done).
        self.owned = owned
        #: What Route's exact-hit fast path calls: the core's route_hit_wire, the router's default
        #: constraints and tenant. None when a subclass overrides route(), which must see every call.
        core = getattr(router, "_core", None)
        fast = getattr(core, "route_hit_wire", None)
        self.fast: Optional[Tuple[Callable[..., Any], Any, str]] = (fast, router._default, router._tenant) if fast is not None and type(router).route is Router.route else None


class Call:
    """One call as a handler sees it: the state it runs on, who made it, and its log fields."""

    __slots__ = ("state", "principal", "info")

    def __init__(self, state: ServerState, info: Dict[str, Any]) -> None:
        self.state = state
        self.principal: Optional[Principal] = None
        self.info = info

    def tenant(self, requested: Optional[str]) -> Optional[str]:
        """The tenant a request acts for. Without API keys: the one it names (None: the router's
        default). A tenant key: its own, and naming another is PERMISSION_DENIED. An admin key:
        the one named, else the key's own tenant, else the default."""
        p = self.principal
        if p is None:
            return requested
        if p.admin:
            return requested if requested is not None else p.tenant
        if requested is not None and requested != p.tenant:
            raise RpcStatusError(grpc.StatusCode.PERMISSION_DENIED, f"tenant: this API key may only act for its own tenant, not {requested!r}", "tenant")
        return p.tenant

    def sees_all(self) -> bool:
        """Whether the caller may act on every tenant (no keys configured, or an admin key)."""
        return self.principal is None or self.principal.admin


# -- decisions awaiting Record -------------------------------------------------------------------


#: A held decision: (decision, tenant, expires, result, busy). A plain tuple, not an object
#: with attributes: the cycle collector untracks an exact tuple of untracked values (the Rust
#: Decision, strings, numbers), so a full collection does not walk up to 100,000 held
#: decisions (~40 ms: a latency spike for every call in flight). Updates replace the tuple.
_Held = Tuple[Any, Optional[str], float, Optional[Recorded], bool]
_DECISION: Final = 0
_TENANT: Final = 1
_EXPIRES: Final = 2
_RESULT: Final = 3
_BUSY: Final = 4


class DecisionStore:
    """decision_id → Decision, bounded in count and age.

    One TTL for all entries makes insertion order the expiry order, so expiring is popping
    from the front of an OrderedDict: O(1) amortised per insert, no timer thread. When full,
    the oldest entry is evicted (its Record will get NOT_FOUND). A recorded entry keeps only
    its result until it expires, so a retried Record is answered without counting twice.
    Entries are immutable tuples, replaced on update (see _Held).
    """

    def __init__(self, max_entries: int = 100_000, ttl_s: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1 or not ttl_s > 0:
            raise ValueError("DecisionStore needs max_entries ≥ 1 and ttl_s > 0")
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._clock = clock
        self._d: "OrderedDict[str, _Held]" = OrderedDict()
        self._lock = threading.Lock()
        self._puts = 0
        self.expired = 0
        self.evicted = 0

    def __len__(self) -> int:
        """Live decisions (expired ones are swept first)."""
        with self._lock:
            self._purge(self._clock())
            return len(self._d)

    def _purge(self, now: float) -> None:
        d = self._d
        while d:
            first = next(iter(d.values()))
            if first[_EXPIRES] > now:
                break
            d.popitem(last=False)
            self.expired += 1

    def put(self, decision: Any, tenant: Optional[str] = None) -> str:
        """Holds ``decision`` (keep it free of objects the cycle collector tracks, see _Held)."""
        # 128 random bits: ids are capabilities (whoever has one can record against that
        # tenant's cache), so they must not be guessable.
        did = os.urandom(16).hex()
        self.put_id(did, decision, tenant)
        return did

    def put_id(self, did: str, decision: Any, tenant: Optional[str] = None) -> None:
        """:meth:`put` under an id the caller drew as put() does (16 bytes from the OS's CSPRNG)."""
        now = self._clock()
        with self._lock:
            # Expired entries are invisible to claim() anyway; sweeping every 32nd put keeps
            # the memory bounded at a fraction of the per-call cost.
            self._puts += 1
            if not self._puts & 31:
                self._purge(now)
            self._d[did] = (decision, tenant, now + self.ttl_s, None, False)
            if len(self._d) > self.max_entries:
                self._purge(now)  # expired ones go first; only live ones count as evicted
                if len(self._d) > self.max_entries:
                    self._d.popitem(last=False)
                    self.evicted += 1

    def claim(self, did: str, tenant: Optional[str] = None) -> Union[Any, Recorded]:
        """The decision to record (marking it in flight), or the result of an earlier Record.
        With ``tenant``, another tenant's decision is NOT_FOUND, exactly like an unknown one."""
        with self._lock:
            h = self._held(did, tenant)
            if h[_RESULT] is not None:
                return h[_RESULT]
            if h[_BUSY]:
                raise RpcStatusError(grpc.StatusCode.ABORTED, f"decision_id: a Record for {did!r} is in flight; retry", "decision_id")
            self._d[did] = (h[_DECISION], h[_TENANT], h[_EXPIRES], None, True)
            return h[_DECISION]

    def finish(self, did: str, result: Optional[Recorded], keep: bool = False) -> None:
        """Ends a claim: with the result on success, or ``None`` to make it recordable again.
        Once recorded, the decision is dropped (freeing the Rust object) unless ``keep`` (a
        later Feedback can still reach it); the result stays either way."""
        with self._lock:
            h = self._d.get(did)
            if h is None:  # evicted meanwhile; the caller still gets its result
                return
            if result is None:
                self._d[did] = (h[_DECISION], h[_TENANT], h[_EXPIRES], None, False)
            else:
                self._d[did] = (h[_DECISION] if keep else None, h[_TENANT], h[_EXPIRES], result, False)

    def decision(self, did: str, tenant: Optional[str] = None) -> Optional[Any]:
        """The decision held under ``did`` whether recorded or not (None: recorded and dropped);
        NOT_FOUND as :meth:`claim` says it."""
        with self._lock:
            return self._held(did, tenant)[_DECISION]

    def _held(self, did: str, tenant: Optional[str]) -> _Held:
        """The live entry under ``did`` (held lock); NOT_FOUND when unknown, expired or, with
        ``tenant``, another tenant's."""
        h = self._d.get(did)
        if h is None or h[_EXPIRES] <= self._clock() or (tenant is not None and h[_TENANT] != tenant):
            raise RpcStatusError(grpc.StatusCode.NOT_FOUND, f"decision_id: no decision {did!r} (unknown, expired or evicted)", "decision_id")
        return h


# -- conversions -----------------------------------------------------------------------------------


def _decision_id(request: Union[pb.RecordRequest, pb.FeedbackRequest], call: "Call") -> Tuple[str, Optional[str]]:
    """(decision_id, the tenant whose decisions this call may reach: None for all). A tenant key
    reaches only its own tenant's decisions; another's look unknown."""
    did = request.decision_id
    call.info["decision_id"] = did
    if not did:
        raise InvalidRequestError("decision_id: is empty; pass the decision_id of a Route answer", "decision_id")
    return did, None if call.sees_all() else call.tenant(None)


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


def _prompt(r: Union[pb.RouteRequest, pb.LookupRequest]) -> Any:
    if r.messages:
        if r.prompt:
            raise InvalidRequestError("prompt: give either prompt or messages, not both", "prompt")
        return [{"role": m.role, "content": m.content} for m in r.messages]
    return r.prompt


def _extras(r: Union[pb.RouteRequest, pb.LookupRequest], kw: Dict[str, Any]) -> None:
    tools, params = _json_arg(r.tools_json, "tools"), _json_arg(r.params_json, "params")
    if tools is not None:
        kw["tools"] = tools
    if params is not None:
        kw["params"] = params


def route_args(r: pb.RouteRequest) -> Tuple[Any, Dict[str, Any]]:
    """(prompt, keyword arguments of Router.route) from a RouteRequest; absent fields stay absent
    so the router applies its own defaults."""
    prompt = _prompt(r)
    kw: Dict[str, Any] = {}
    if r.HasField("tenant"):
        kw["tenant"] = r.tenant
    if r.HasField("constraints"):  # the common request has none: skip the field-by-field checks
        c = r.constraints
        for name in ("latency_budget_ms", "max_cost_usd", "min_quality", "strict", "willingness_to_pay"):
            if c.HasField(name):
                kw[name] = getattr(c, name)
        if c.HasField("models"):
            kw["models"] = list(c.models.names)
    if r.HasField("cache"):
        cc = r.cache
        if cc.no_cache:
            kw["no_cache"] = True
        if cc.no_store:
            kw["no_store"] = True
        if cc.HasField("ttl_s"):
            kw["ttl_s"] = cc.ttl_s
        if cc.HasField("min_similarity"):
            kw["min_similarity"] = cc.min_similarity
        if cc.HasField("verifier_threshold"):
            kw["verifier_threshold"] = cc.verifier_threshold
    if r.tools_json or r.params_json:
        _extras(r, kw)
    # Accounting and budget labels, as in-process callers pass them (not part of the cache key).
    if r.agent:
        kw["agent"] = r.agent
    if r.workflow:
        kw["workflow"] = r.workflow
    if r.step:
        kw["step"] = r.step
    return prompt, kw


def lookup_args(r: pb.LookupRequest) -> Tuple[Any, Dict[str, Any]]:
    """(prompt, keyword arguments of Router.route) for the cache key a LookupRequest names."""
    prompt = _prompt(r)
    kw: Dict[str, Any] = {}
    if r.HasField("tenant"):
        kw["tenant"] = r.tenant
    if r.HasField("models"):
        kw["models"] = list(r.models.names)
    if r.HasField("min_quality"):
        kw["min_quality"] = r.min_quality
    _extras(r, kw)
    return prompt, kw


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def batch_wire(decisions: List[bytes]) -> bytes:
    """``RouteBatchResponse`` bytes from encoded Decisions (field 1, repeated, length-delimited)."""
    return b"".join(b"\x0a" + _varint(len(d)) + d for d in decisions)


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
        semantic=pb.SemanticStats(enabled=s["semantic"]["enabled"], **{k: s["semantic"][k] for k in _SEMANTIC_STATS}),
        quality=None if s.get("quality") is None else pb.QualityStats(**s["quality"]),
    )


def tenant_stats_pb(st: ServerState, tenant: str) -> pb.StatsResponse:
    """One tenant's figures: the server's counters for it and its stored entries; nothing
    server-wide (latency, cache size), which would tell a tenant about the others' traffic."""
    counts, cost, avoided, decisions = st.counters.snapshot(tenant)
    r = pb.StatsResponse(
        cost_usd=cost,
        cost_avoided_usd=avoided,
        decisions=decisions,
        route_latency=pb.RouteLatency(),
        cache=pb.CacheStats(entries=st.entries.count(tenant)),
        classifier=st.router.stats()["classifier"],
        server=pb.ServerStats(),
        tenant=tenant,
    )
    for k, v in counts.items():
        setattr(r, k, v)
    return r


def lookup_pb(d: Any) -> pb.LookupResponse:
    return pb.LookupResponse(
        cached_response=d.cached_response,
        entry_id=d.entry_id,
        entry_age_s=d.entry_age_s,
        tenant=d.tenant,
        model=d.model,
        provider=d.provider,
        tier=d.tier,
        category=d.category,
        cost_avoided_usd=d.cost_avoided_usd,
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


#: Handlers that serve a method under another name, and the methods registered with raw request bytes.
_RPC_NAMES = {"_route_request": "Route"}
_RAW_REQUEST = frozenset({"Route"})
_OVERHEAD_KEY = b"\xc9\x01"  # Decision.overhead_us: field 25, 64-bit
_DOUBLE = struct.Struct("<d")

#: Server-made request ids: unique per process and run, cheap (no syscall per call).
_RID_PREFIX = os.urandom(4).hex()
_rid_seq = itertools.count(1)
_flight_callers = itertools.count(1)


def _new_rid() -> str:
    return f"{_RID_PREFIX}-{next(_rid_seq):x}"


def _metadata(context: grpc.ServicerContext) -> Tuple[str, Optional[str]]:
    """(request id, authorization value) from the call's metadata, read in one pass."""
    rid: Optional[str] = None
    authz: Optional[str] = None
    for k, v in context.invocation_metadata() or ():
        if k == REQUEST_ID_KEY and rid is None and isinstance(v, str) and 0 < len(v) <= 128:
            rid = _ascii(v)
        elif k == AUTHORIZATION_KEY and authz is None and isinstance(v, str):
            authz = v
    return rid or _new_rid(), authz


class _RouteLog:
    """A Route call's log fields, read from the request and the decision only when a line is
    actually logged: at the default level a successful Route logs nothing, so it pays nothing."""

    __slots__ = ("request", "decision", "cache")

    def __init__(self, request: pb.RouteRequest) -> None:
        self.request = request
        self.decision: Any = None
        self.cache: Optional[str] = None

    def fields(self) -> Dict[str, Any]:
        r, d = self.request, self.decision
        if d is None:
            return {"tenant": r.tenant if r.HasField("tenant") else None, "agent": r.agent, "workflow": r.workflow}
        return {"tenant": d.tenant, "agent": r.agent, "workflow": r.workflow, "model": f"{d.model}/{d.tier}", "cache": self.cache, "route_us": d.route_ns / 1e3}


def _kv(fields: Dict[str, Any]) -> str:
    """logfmt (key=value, quoted when needed), so a line parses without a schema."""
    out = []
    items = list(fields.items())
    for k, v in fields.items():
        if isinstance(v, _RouteLog):
            items.remove((k, v))
            items.extend(v.fields().items())
    for k, v in items:
        if v is None or v == "":
            continue
        s = f"{v:.6g}" if isinstance(v, float) else str(v)
        if not s.isprintable() or any(c in s for c in ' ="'):  # also keeps a tenant from forging lines
            s = json.dumps(s, ensure_ascii=False)
        out.append(f"{k}={s}")
    return " ".join(out)


def _start(service: "RouterService", name: str, context: grpc.ServicerContext) -> Call:
    """Request id and authentication: raises RpcStatusError(UNAUTHENTICATED) without a valid key."""
    rid, authz = _metadata(context)
    call = Call(service.state, {"rid": rid, "rpc": name})
    settings = call.state.settings
    if settings.auth_required:
        p = settings.authenticate(authz)
        if p is None:
            # Which part was wrong is not said: that would help guessing. The key is never logged.
            raise RpcStatusError(grpc.StatusCode.UNAUTHENTICATED, "authorization: missing or unknown API key (send `authorization: Bearer <key>`)", "authorization")
        call.principal = p
        call.info["key"] = p.name
    return call


def _fail(e: BaseException, call: Call, context: grpc.ServicerContext, t0: int) -> None:
    """Answers with the status ``e`` maps to (context.abort raises)."""
    field: Optional[str] = None
    error_type = ""
    extra: List[Tuple[str, str]] = []
    quiet = False
    info = call.info
    if isinstance(e, InvalidRequestError):  # includes InvalidConstraintError and UnknownModelError
        code, message, field, error_type = grpc.StatusCode.INVALID_ARGUMENT, str(e), e.field, type(e).__name__
    elif isinstance(e, (NoRouteError, ConfigError)):
        code, message, error_type = grpc.StatusCode.FAILED_PRECONDITION, str(e), type(e).__name__
        field = getattr(e, "field", None)
    elif isinstance(e, BudgetExceededError):
        code, message, error_type = grpc.StatusCode.RESOURCE_EXHAUSTED, str(e), type(e).__name__
        if e.scope:
            extra.append((SCOPE_KEY, _ascii(e.scope)))
    elif isinstance(e, RpcStatusError):
        code, message, field, quiet = e.code, e.message, e.field, e.quiet
    else:
        # A bug: the caller learns only that it happened and the id to quote.
        log.error("%s status=INTERNAL", _kv(info), exc_info=e)
        code, message = grpc.StatusCode.INTERNAL, f"internal error (request id {info['rid']})"
    us = (time.perf_counter_ns() - t0) / 1e3
    md: List[Tuple[str, str]] = [(REQUEST_ID_KEY, info["rid"]), *extra]
    if field and field not in message:
        message = f"{field}: {message}"  # the status text alone must name the field
    if error_type:
        md.append((ERROR_KEY, error_type))
    if field:
        md.append((FIELD_KEY, _ascii(field)))
    if code is not grpc.StatusCode.INTERNAL:
        level = logging.DEBUG if quiet else logging.WARNING
        if log.isEnabledFor(level):
            log.log(level, "%s status=%s field=%s us=%.1f error=%s", _kv(info), code.name, field or "-", us, json.dumps(message, ensure_ascii=False)[:500])
    context.set_trailing_metadata(tuple(md))
    context.abort(code, message)
    raise AssertionError("unreachable: context.abort raises")


def _ok(call: Call, context: grpc.ServicerContext, t0: int) -> None:
    context.set_trailing_metadata(((REQUEST_ID_KEY, call.info["rid"]),))
    if log.isEnabledFor(logging.DEBUG):
        log.debug("%s status=OK us=%.1f", _kv(call.info), (time.perf_counter_ns() - t0) / 1e3)


def _rpc(fn: Callable[["RouterService", Req, grpc.ServicerContext, Call], Resp]) -> Callable[["RouterService", Req, grpc.ServicerContext], Resp]:
    """Request id, authentication, status mapping and one log line for a unary method.

    A handler gets a :class:`Call` (its state, principal, and ``info`` dict of log fields to add
    to); it raises routerx exceptions or :class:`RpcStatusError` and never calls ``context.abort``.
    The method's name in the log is the handler's (``_route_request`` logs as Route).
    """
    name = _RPC_NAMES.get(fn.__name__, fn.__name__)

    @functools.wraps(fn)
    def wrapper(self: "RouterService", request: Req, context: grpc.ServicerContext) -> Resp:
        t0 = time.perf_counter_ns()
        call: Optional[Call] = None
        try:
            call = _start(self, name, context)
            response = fn(self, request, context, call)
        except Exception as e:
            _fail(e, call or Call(self.state, {"rid": _metadata(context)[0], "rpc": name}), context, t0)
            raise AssertionError("unreachable") from None
        _ok(call, context, t0)
        return response

    return wrapper


def _stream_rpc(fn: Callable[["RouterService", Iterator[Req], grpc.ServicerContext, Call], Iterator[Resp]]) -> Callable[["RouterService", Iterator[Req], grpc.ServicerContext], Iterator[Resp]]:
    """:func:`_rpc` for a streaming method: one log line per stream, errors end the stream."""
    name = fn.__name__

    @functools.wraps(fn)
    def wrapper(self: "RouterService", requests: Iterator[Req], context: grpc.ServicerContext) -> Iterator[Resp]:
        t0 = time.perf_counter_ns()
        call: Optional[Call] = None
        try:
            call = _start(self, name, context)
            yield from fn(self, requests, context, call)
        except Exception as e:
            _fail(e, call or Call(self.state, {"rid": _metadata(context)[0], "rpc": name}), context, t0)
        else:
            _ok(call, context, t0)

    return wrapper


# -- the service ---------------------------------------------------------------------------------------


class RouterService:
    """routerx.v1.Router. Thread-safe: the router is, the decision store locks, and the state a
    reload replaces is swapped whole.

    It implements every method, so it does not inherit the generated RouterServicer (whose
    only job is answering UNIMPLEMENTED) and stays fully typed.

    ``config``: what ReloadConfig re-reads (a path, a dict, or None for the embedded default),
    when ``reloadable`` (the server built the router from it). ``owned``: the service closes
    the router when it is done with it.
    """

    def __init__(
        self,
        router: Router,
        *,
        settings: Optional[ServerSettings] = None,
        config: ConfigInput = None,
        reloadable: bool = False,
        owned: bool = False,
        max_decisions: int = 100_000,
        decision_ttl_s: float = 3600.0,
        max_batch: int = 10_000,
        max_streams: int = 4,
    ) -> None:
        if settings is None:
            settings = server_settings(router.config.server, router.config.source)
        self.state = ServerState(router, settings, owned)
        #: The current state and those retired by reloads, by generation: Records find the
        #: router that made their decision here.
        self._states: Dict[int, ServerState] = {self.state.gen: self.state}
        self.decisions = DecisionStore(max_decisions, decision_ttl_s)
        self.max_batch = max_batch
        self._config = config
        self._reloadable = reloadable
        self._reload_lock = threading.Lock()
        self._retired: List[ServerState] = []
        # Each open stream holds a handler thread for its whole life: cap them below the pool
        # size so that streams can never starve unary calls.
        self._streams = threading.BoundedSemaphore(max(1, max_streams))

    @property
    def router(self) -> Router:
        return self.state.router

    @router.setter
    def router(self, router: Router) -> None:
        """Serves ``router`` from now on (same API keys; fresh per-tenant bookkeeping)."""
        st = ServerState(router, self.state.settings, owned=False)
        self._states[st.gen] = st
        self.state = st

    # -- config reload ------------------------------------------------------------------------------

    def reload(self) -> Tuple[ServerState, ServerState]:
        """Builds a router from the config again and swaps it in; returns (old, new) states.

        The exact cache lives in a Router's core, so the new router starts empty: answers cached
        under the old config are not carried over (they may come from models or tiers the new
        config no longer allows), and its counters start at zero. Calls in flight finish on the
        old router, and Records of its decisions still reach it (it stays open, up to
        RETIRED_ROUTERS reloads back, so its accounting is flushed when it closes).
        """
        if not self._reloadable:
            raise RpcStatusError(grpc.StatusCode.FAILED_PRECONDITION, "this server was given a Router object, not a config: there is nothing to reload")
        with self._reload_lock:
            # Flush first, so that the new router's budgets start from what the old one spent.
            self.state.router.flush()
            # A ConfigError changes nothing. The new router starts empty: restoring the snapshot on
            # disk would bring back answers invalidated since it was taken.
            router = Router(self._config, restore=False)
            try:
                settings = server_settings(router.config.server, router.config.source)
            except ConfigError:
                router.close()
                raise
            old = self.state
            new = ServerState(router, settings, owned=True)
            self._states[new.gen] = new
            self.state = new
            self._retired.append(old)
            while len(self._retired) > RETIRED_ROUTERS:
                gone = self._retired.pop(0)
                del self._states[gone.gen]  # its decisions can no longer be recorded
                if gone.owned:
                    gone.router.close(snapshot=False)
        log.info("config reloaded from %s: classifier=%s models=%d api_keys=%d", router.config.source, router.stats()["classifier"], len(router.catalog.models), len(settings.api_keys))
        return old, new

    def close(self) -> None:
        """Closes the routers the server built (flushing their accounting). After the server stopped."""
        with self._reload_lock:
            for st in self._retired:
                if st.owned:
                    st.router.close(snapshot=False)
            # The serving router last: its cache is the one snapshotted (when configured).
            if self.state.owned:
                self.state.router.close()
            self._retired.clear()

    # -- routing ------------------------------------------------------------------------------------

    def _route(self, call: Call, prompt: Any, kw: Dict[str, Any]) -> Tuple[Any, str]:
        """Routes one request for ``call``'s tenant and counts it for that tenant; returns the
        decision and its cache outcome."""
        st = call.state
        tenant = call.tenant(kw.pop("tenant", None))
        if tenant is not None:
            kw["tenant"] = tenant
        # Each call is its own single-flight caller: worker threads serve many clients.
        kw["flight_caller"] = next(_flight_callers)
        try:
            d = st.router.route(prompt, **kw)
        except Exception:
            st.counters.of(tenant if tenant is not None else st.router.config.default_tenant).n[tc.ERRORS] += 1
            raise
        return self._settle(st, d, prompt, kw)

    @staticmethod
    def _settle(st: ServerState, d: Any, prompt: Any, kw: Dict[str, Any]) -> Tuple[Any, str]:
        """Applies entry invalidations to a routed decision and counts it for its tenant."""
        cache = d.cache
        hit = cache in ("exact", "semantic")
        if hit:
            # A semantic hit's entry_id is the cached answer's: an invalidated answer is not served either way.
            if st.entries.has_tombstones and st.entries.invalidated(d.entry_id, time.time() - (d.entry_age_s or 0.0)):
                # Invalidated by id (the core cannot drop one entry yet): route it afresh. Its
                # recorded answer replaces the entry and clears the tombstone.
                d, cache = st.router.route(prompt, **{**kw, "no_cache": True}), "miss"
        elif cache == "miss" and st.entries.has_entries:
            st.entries.missed(d.entry_id)
        c = st.counters.of(d.tenant)
        c.n[tc.REQUESTS] += 1
        c.n[_CACHE_COUNTER[cache]] += 1
        if cache != "miss" and cache != "bypass":
            c.cost_avoided_usd += d.cost_avoided_usd
        else:
            if not d.within_budget:
                c.n[tc.BEST_EFFORT] += 1
            k = f"{d.model}/{d.tier}"
            c.decisions[k] = c.decisions.get(k, 0) + 1
        return d, cache

    def _hold(self, call: Call, d: Any) -> str:
        return self.decisions.put((d, call.state.gen), d.tenant)

    def Route(self, data: bytes, context: grpc.ServicerContext) -> bytes:
        """Registered with the raw request bytes. A plain request answered from the exact cache
        (the common case under load) costs one call into the core, which decodes the request,
        looks it up and encodes the answer; the Python left is the bookkeeping the general path
        does for a hit (decision held for Record, tenant counters, request-id trailer). Anything
        else (a miss, constraints, tombstones, debug logging, an invalid request) is decoded
        here and takes the general path, which answers exactly as before."""
        t0 = time.perf_counter_ns()
        st = self.state
        fast = st.fast
        if fast is not None and not st.entries.has_tombstones and not log.isEnabledFor(logging.DEBUG):
            rid, authz = _metadata(context)
            tenant, forced = fast[2], None
            settings = st.settings
            p: Optional[Principal] = None
            if settings.api_keys:
                p = settings.authenticate(authz)
                if p is None:
                    fast = None  # the general path answers UNAUTHENTICATED
                elif p.admin:
                    tenant = p.tenant if p.tenant is not None else tenant
                else:
                    forced = p.tenant
            hit = None
            if fast is not None:
                try:
                    hit = fast[0](data, fast[1], tenant, forced)
                except Exception as e:  # the request was validated first: not expected
                    _fail(e, Call(st, {"rid": rid, "rpc": "Route"}), context, t0)
                    raise AssertionError("unreachable") from None
            if hit is not None:
                d, did, body, tenant, avoided = hit
                self.decisions.put_id(did, (d, st.gen), tenant)
                c = st.counters.of(tenant)
                n = c.n
                n[tc.REQUESTS] += 1
                n[tc.EXACT_HITS] += 1
                c.cost_avoided_usd += avoided
                context.set_trailing_metadata(((REQUEST_ID_KEY, rid),))
                # overhead_us is the Decision's last field on a hit: appended once it is known.
                out: bytes = body + _OVERHEAD_KEY + _DOUBLE.pack((time.perf_counter_ns() - t0) / 1e3)
                return out
        try:
            request = pb.RouteRequest.FromString(data)
        except Exception as e:  # what grpc answers when a registered deserializer fails
            log.error("rpc=Route status=INTERNAL error=%s", json.dumps(f"undecodable request: {e}"))
            context.abort(grpc.StatusCode.INTERNAL, "Exception deserializing request!")
            raise AssertionError("unreachable: context.abort raises") from None
        return self._route_request(request, context)

    @_rpc
    def _route_request(self, request: pb.RouteRequest, context: grpc.ServicerContext, call: Call) -> bytes:
        t0 = time.perf_counter_ns()
        fields = call.info["route"] = _RouteLog(request)
        prompt, kw = route_args(request)
        d, cache = self._route(call, prompt, kw)
        fields.decision, fields.cache = d, cache
        # Encoded in the core (Decision.wire): the reply is bytes, passed through by add_to_server.
        out: bytes = d.wire(self._hold(call, d), (time.perf_counter_ns() - t0) / 1e3, request.detect_language, cache)
        return out

    @_rpc
    def RouteBatch(self, request: pb.RouteBatchRequest, context: grpc.ServicerContext, call: Call) -> bytes:
        t0 = time.perf_counter_ns()
        n = len(request.requests)
        call.info["n"] = n
        if n > self.max_batch:
            raise InvalidRequestError(f"requests: {n} requests in one batch; the limit is {self.max_batch}", "requests")
        items: List[Dict[str, Any]] = []
        for i, r in enumerate(request.requests):
            try:
                prompt, kw = route_args(r)
                tenant = call.tenant(kw.pop("tenant", None))
            except (InvalidRequestError, RpcStatusError) as e:
                raise _at_index(e, i) from None
            if tenant is not None:
                kw["tenant"] = tenant
            kw["prompt"] = prompt
            items.append(kw)
        st = call.state
        ds = st.router.route_many(items)
        settled = [self._settle(st, d, kw.pop("prompt"), kw) for d, kw in zip(ds, items)]
        us = (time.perf_counter_ns() - t0) / 1e3  # the whole batch's: per-item time is not separable
        call.info["route_us"] = sum(d.route_ns for d in ds) / 1e3
        return batch_wire([d.wire(self._hold(call, d), us, r.detect_language, cache) for (d, cache), r in zip(settled, request.requests)])

    @_stream_rpc
    def RouteStream(self, requests: Iterator[pb.RouteRequest], context: grpc.ServicerContext, call: Call) -> Iterator[bytes]:
        if not self._streams.acquire(blocking=False):
            raise RpcStatusError(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many open RouteStream calls; retry later or use RouteBatch")
        n = 0
        try:
            for i, r in enumerate(requests):
                t0 = time.perf_counter_ns()
                try:
                    prompt, kw = route_args(r)
                    d, cache = self._route(call, prompt, kw)
                except (InvalidRequestError, RpcStatusError) as e:
                    raise _at_index(e, i) from None
                n = i + 1
                yield d.wire(self._hold(call, d), (time.perf_counter_ns() - t0) / 1e3, r.detect_language, cache)
        finally:
            self._streams.release()
            call.info["n"] = n

    # -- after the model call -------------------------------------------------------------------------

    @_rpc
    def Record(self, request: pb.RecordRequest, context: grpc.ServicerContext, call: Call) -> pb.RecordResponse:
        did, tenant = _decision_id(request, call)
        held = self.decisions.claim(did, tenant)
        if isinstance(held, Recorded):
            call.info["replayed"] = True
            return pb.RecordResponse(cost_usd=held.cost_usd, stored=held.stored, replayed=True)
        d, gen = held
        st = self._states.get(gen)
        if st is None:
            self.decisions.finish(did, None)
            raise RpcStatusError(grpc.StatusCode.NOT_FOUND, f"decision_id: {did!r} was made before config reloads whose router is gone", "decision_id")
        ok = request.ok if request.HasField("ok") else True
        outcome = request.outcome if request.HasField("outcome") else None
        result: Optional[Recorded] = None
        try:
            # The router that made the decision records it, even after a reload.
            result = st.router.record(d, request.response_text, request.input_tokens, request.output_tokens, request.latency_ms, ok, outcome=outcome)
        finally:
            # On failure the decision stays recordable. One the learned router made is kept
            # after its Record, for a Feedback that comes later.
            self.decisions.finish(did, result, keep=d.quality_text is not None)
        c = st.counters.of(d.tenant)
        c.n[tc.RECORDS] += 1
        if d.cache != "exact":
            c.n[tc.INPUT_TOKENS] += request.input_tokens
            c.n[tc.OUTPUT_TOKENS] += request.output_tokens
            c.cost_usd += result.cost_usd
            if not ok:
                c.n[tc.FAILED_CALLS] += 1
        if result.stored:
            st.entries.stored(d.entry_id, d.tenant)
        call.info.update(tenant=d.tenant, model=f"{d.model}/{d.tier}", stored=result.stored, cost_usd=result.cost_usd)
        return pb.RecordResponse(cost_usd=result.cost_usd, stored=result.stored)

    @_rpc
    def Feedback(self, request: pb.FeedbackRequest, context: grpc.ServicerContext, call: Call) -> pb.FeedbackResponse:
        did, tenant = _decision_id(request, call)
        held = self.decisions.decision(did, tenant)
        if held is None:
            # Recorded and dropped: only the learned router's decisions are kept for labels, and
            # in-process feedback on any other decision learns nothing either.
            return pb.FeedbackResponse(learned=False)
        d, gen = held
        st = self._states.get(gen)
        if st is None:
            raise RpcStatusError(grpc.StatusCode.NOT_FOUND, f"decision_id: {did!r} was made before config reloads whose router is gone", "decision_id")
        learned = st.router.feedback(d, request.outcome)
        call.info.update(tenant=d.tenant, model=f"{d.model}/{d.tier}", learned=learned)
        return pb.FeedbackResponse(learned=learned)

    # -- the cache ------------------------------------------------------------------------------------

    @_rpc
    def Lookup(self, request: pb.LookupRequest, context: grpc.ServicerContext, call: Call) -> pb.LookupResponse:
        st = call.state
        prompt, kw = lookup_args(request)
        tenant = call.tenant(kw.pop("tenant", None))
        if tenant is not None:
            kw["tenant"] = tenant
        call.info["tenant"] = tenant
        # The core's exact lookup: nothing is routed, reserved or waited for, and a miss is not
        # counted (a hit counts in the server-wide stats, not the tenant's).
        d = st.router.lookup(prompt, **kw)
        if d is None or st.entries.invalidated(d.entry_id, time.time() - d.entry_age_s):
            call.info["found"] = False
            raise RpcStatusError(grpc.StatusCode.NOT_FOUND, "no cached answer for this request", quiet=True)
        call.info.update(tenant=d.tenant, found=True, entry_id=d.entry_id)
        return lookup_pb(d)

    @_rpc
    def Invalidate(self, request: pb.InvalidateRequest, context: grpc.ServicerContext, call: Call) -> pb.InvalidateResponse:
        st = call.state
        requested = request.tenant if request.HasField("tenant") else None
        if request.entry_id:
            eid = request.entry_id.lower()
            if requested is not None:
                raise InvalidRequestError("entry_id: give entry_id or tenant, not both", "entry_id")
            if not _ENTRY_ID.fullmatch(eid):
                raise InvalidRequestError(f"entry_id: must be 32 hex digits (a Decision's entry_id), got {request.entry_id[:64]!r}", "entry_id")
            # A tenant key drops only its own tenant's entries; another's is "not found" (0).
            owner = None if call.sees_all() else call.tenant(None)
            n = st.entries.invalidate(eid, owner)
            core = getattr(st.router, "invalidate_entry", None)  # the core's, once it has one
            if core is not None:
                n = int(core(eid, owner))
            call.info.update(entry_id=eid, removed=n)
            return pb.InvalidateResponse(removed=n)
        # A tenant key without a tenant means its own tenant, never "all".
        tenant = call.tenant(requested)
        n = st.router.invalidate(tenant)
        st.entries.invalidate_tenant(tenant)
        call.info.update(tenant=tenant or "*", removed=n)
        return pb.InvalidateResponse(removed=n)

    # -- inspection and administration -----------------------------------------------------------------

    @_rpc
    def Stats(self, request: pb.StatsRequest, context: grpc.ServicerContext, call: Call) -> pb.StatsResponse:
        tenant = call.tenant(request.tenant if request.HasField("tenant") else None)
        if tenant is not None and (request.HasField("tenant") or not call.sees_all()):
            call.info["tenant"] = tenant
            return tenant_stats_pb(call.state, tenant)
        return stats_pb(call.state.router.stats(), self.decisions)

    @_rpc
    def GetCatalog(self, request: pb.GetCatalogRequest, context: grpc.ServicerContext, call: Call) -> pb.Catalog:
        return catalog_pb(call.state.router)

    @_rpc
    def ReloadConfig(self, request: pb.ReloadConfigRequest, context: grpc.ServicerContext, call: Call) -> pb.ReloadConfigResponse:
        if not call.sees_all():
            raise RpcStatusError(grpc.StatusCode.PERMISSION_DENIED, "ReloadConfig needs an admin API key")
        old, new = self.reload()
        r = new.router
        dropped = old.router.stats()["cache"]["entries"]
        call.info.update(source=r.config.source, dropped=dropped)
        return pb.ReloadConfigResponse(source=r.config.source, classifier=r.stats()["classifier"], models=len(r.catalog.models), api_keys=len(new.settings.api_keys), cache_entries_dropped=dropped)


def _at_index(e: Union[InvalidRequestError, RpcStatusError], i: int) -> Exception:
    """The same error, located at requests[i] of a batch or stream."""
    if isinstance(e, RpcStatusError):
        return RpcStatusError(e.code, f"requests[{i}]: {e.message}", e.field, e.quiet)
    return type(e)(f"requests[{i}]: {e}", e.field)


def _serialize(message: Any) -> bytes:
    """Responses already encoded (Decision.wire) go out as they are; messages are serialised."""
    out: bytes = message if type(message) is bytes else message.SerializeToString()
    return out


def add_to_server(service: RouterService, server: grpc.Server) -> None:
    """Registers every method of ``routerx.v1.Router`` from the proto's descriptor, with a response
    serialiser that passes pre-encoded bytes through."""
    handlers: Dict[str, grpc.RpcMethodHandler] = {}
    for m in pb.DESCRIPTOR.services_by_name["Router"].methods:
        fn = getattr(service, m.name)
        deserialize = None if m.name in _RAW_REQUEST else getattr(pb, m.input_type.name).FromString
        if m.client_streaming and m.server_streaming:
            handlers[m.name] = grpc.stream_stream_rpc_method_handler(fn, request_deserializer=deserialize, response_serializer=_serialize)
        elif not m.client_streaming and not m.server_streaming:
            handlers[m.name] = grpc.unary_unary_rpc_method_handler(fn, request_deserializer=deserialize, response_serializer=_serialize)
        else:  # pragma: no cover - the proto has no such method
            raise AssertionError(f"{m.name}: unsupported streaming shape")
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


__all__ = ["RouterService", "ServerState", "Call", "DecisionStore", "RpcStatusError", "SERVICE_NAME", "ERROR_KEY", "FIELD_KEY", "SCOPE_KEY", "REQUEST_ID_KEY", "add_to_server", "route_args", "lookup_args", "batch_wire"]
