"""``routerx.Client``: the ``Router`` API over gRPC (``routerx serve``).

Same method names, keyword arguments and exceptions as the in-process :class:`routerx.Router`;
decisions come back as :class:`RemoteDecision` (the attributes of ``Decision``, plus
``decision_id`` and ``overhead_us``), which ``record()`` accepts.

    >>> client = routerx.Client("127.0.0.1:50051")
    >>> d = client.route("Translate into French: good morning", tenant="acme")
    >>> client.record(d, "Bonjour", input_tokens=12, output_tokens=3, latency_ms=420)

Differences from in-process: recording the same decision twice counts it once (the second
call returns the first result, so retries are safe); a decision can be recorded only while the
server holds it (``--decision-ttl``), after which ``record()`` raises UnknownDecisionError.

When the server has API keys, pass yours: ``Client(target, api_key=...)``. Its tenant is then
the tenant of every call (naming another raises AccessDeniedError), and ``stats()`` and
``invalidate()`` see only that tenant's entries and counters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Type, Union

import grpc

from .errors import BudgetExceededError, ConfigError, InvalidConstraintError, InvalidRequestError, NoRouteError, RouterxError, UnknownModelError
from .policy.catalog import Catalog, Model, Tier
from .router import CachedAnswer, Prompt, Recorded
from .server._proto.routerx.v1 import router_pb2 as pb
from .server._proto.routerx.v1 import router_pb2_grpc as pb_grpc

__all__ = ["Client", "RemoteDecision", "CachedAnswer", "RemoteError", "AccessDeniedError", "UnknownDecisionError"]

MAX_MESSAGE_BYTES = 16 << 20
_CACHE_NAME = {pb.CACHE_OUTCOME_EXACT: "exact", pb.CACHE_OUTCOME_MISS: "miss", pb.CACHE_OUTCOME_BYPASS: "bypass", pb.CACHE_OUTCOME_SEMANTIC: "semantic"}
_CONSTRAINT_FIELDS = {"latency_budget_ms", "max_cost_usd", "min_quality", "models", "strict", "ttl_s", "constraints", "min_similarity", "willingness_to_pay"}
_ROUTE_OPTIONS = ("tenant", "latency_budget_ms", "max_cost_usd", "min_quality", "models", "strict", "no_cache", "no_store", "ttl_s", "tools", "params", "agent", "workflow", "step", "detect_language", "min_similarity", "verifier_threshold", "willingness_to_pay")
_ERRORS: Dict[str, Type[InvalidRequestError]] = {c.__name__: c for c in (InvalidRequestError, InvalidConstraintError, UnknownModelError)}


class UnknownDecisionError(InvalidRequestError, LookupError):
    """``record()`` of a decision the server no longer holds (expired, evicted, or another server's)."""


class RemoteError(RouterxError, RuntimeError):
    """The call failed for a reason that is not the request's fault: the server is unreachable
    (UNAVAILABLE), saturated (RESOURCE_EXHAUSTED), too slow for the timeout (DEADLINE_EXCEEDED),
    or failed (INTERNAL; quote ``request_id`` to find it in the server log)."""

    def __init__(self, code: grpc.StatusCode, details: str, request_id: Optional[str] = None) -> None:
        super().__init__(f"{code.name}: {details}" + (f" (request id {request_id})" if request_id else ""))
        self.code = code
        self.details = details
        self.request_id = request_id


class AccessDeniedError(RemoteError, PermissionError):
    """UNAUTHENTICATED (no valid API key) or PERMISSION_DENIED (the key's tenant may not do this)."""


@dataclass(frozen=True)
class RemoteDecision:
    """A routing decision made by the server: the attributes of ``routerx.Decision``."""

    decision_id: str
    model: str
    provider: str
    tier: str
    cache: str
    cached_response: Optional[str]
    entry_id: str
    entry_age_s: Optional[float]
    tenant: str
    category: str
    complexity: float
    confidence: Optional[float]
    language: Optional[str]
    input_tokens: int
    predicted_output_tokens: int
    predicted_cost_usd: float
    predicted_latency_ms: float
    cost_avoided_usd: float
    required_quality: Optional[float]
    within_budget: bool
    violations: List[str] = field(repr=False)
    fallbacks: List[Dict[str, Any]] = field(repr=False)
    reason: str = field(repr=False)
    #: Time in the server's routing core, and in its handler (for a batch: the whole batch's).
    route_ns: int = field(repr=False)
    overhead_us: float = field(repr=False)
    #: A semantic hit: cosine similarity to the cached request, and the semantic entry's id.
    similarity: Optional[float] = None
    semantic_entry: Optional[int] = field(default=None, repr=False)
    #: The learned router's p̂ for the chosen model, and the willingness to pay it maximised value at.
    predicted_quality: Optional[float] = None
    willingness_to_pay: Optional[float] = field(default=None, repr=False)
    #: The request's labels, and what a budget did to the decision ("downgrade", "warn").
    agent: Optional[str] = field(default=None, repr=False)
    workflow: Optional[str] = field(default=None, repr=False)
    step: Optional[str] = field(default=None, repr=False)
    budget_action: Optional[str] = None

    @classmethod
    def from_pb(cls, m: pb.Decision) -> "RemoteDecision":
        def opt(name: str) -> Any:
            return getattr(m, name) if m.HasField(name) else None

        return cls(
            decision_id=m.decision_id,
            model=m.model,
            provider=m.provider,
            tier=m.tier,
            cache=_CACHE_NAME.get(m.cache, "unknown"),
            cached_response=opt("cached_response"),
            entry_id=m.entry_id,
            entry_age_s=opt("entry_age_s"),
            tenant=m.tenant,
            category=m.category,
            complexity=m.complexity,
            confidence=opt("confidence"),
            language=opt("language"),
            input_tokens=m.input_tokens,
            predicted_output_tokens=m.predicted_output_tokens,
            predicted_cost_usd=m.predicted_cost_usd,
            predicted_latency_ms=m.predicted_latency_ms,
            cost_avoided_usd=m.cost_avoided_usd,
            required_quality=opt("required_quality"),
            within_budget=m.within_budget,
            violations=list(m.violations),
            fallbacks=[
                {
                    "model": f.model,
                    "provider": f.provider,
                    "tier": f.tier,
                    "predicted_cost_usd": f.predicted_cost_usd,
                    "predicted_latency_ms": f.predicted_latency_ms,
                    "quality": f.quality,
                }
                for f in m.fallbacks
            ],
            reason=m.reason,
            route_ns=m.route_ns,
            overhead_us=m.overhead_us,
            similarity=opt("similarity"),
            semantic_entry=opt("semantic_entry"),
            predicted_quality=opt("predicted_quality"),
            willingness_to_pay=opt("willingness_to_pay"),
            agent=opt("agent"),
            workflow=opt("workflow"),
            step=opt("step"),
            budget_action=opt("budget_action"),
        )


# -- request building (mirrors the in-process checks, with the same fields) --------------------------


def _text(v: Any, where: str) -> str:
    if isinstance(v, str):
        if not v.isascii():  # protobuf cannot serialise lone surrogates: fail here, by field
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidRequestError(f"{where}: is not valid UTF-8 (it contains a lone surrogate)", where) from None
        return v
    if isinstance(v, bytes):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InvalidRequestError(f"{where}: is not valid UTF-8: {e}", where) from None
    raise InvalidRequestError(f"{where}: must be a string, got {type(v).__name__}", where)


def _content(v: Any, where: str) -> str:
    """A string, None, or a list of {"type": "text", "text": ...} parts joined by newlines, as the core does."""
    if v is None:
        return ""
    if isinstance(v, list):
        parts = []
        for j, part in enumerate(v):
            pw = f"{where}[{j}]"
            if not isinstance(part, Mapping):
                raise InvalidRequestError(f'{pw}: must be a {{"type": "text", "text": ...}} part', pw)
            if "text" not in part:
                raise InvalidRequestError(f"{pw}: only text parts are supported", pw)
            parts.append(_text(part["text"], f"{pw}.text"))
        return "\n".join(parts)
    return _text(v, where)


def _fill_prompt(r: pb.RouteRequest, prompt: Any) -> None:
    if isinstance(prompt, (str, bytes)):
        r.prompt = _text(prompt, "prompt")
        return
    if not isinstance(prompt, (list, tuple)):
        raise InvalidRequestError(f"prompt: must be a string or a list of {{role, content}} messages, got {type(prompt).__name__}", "prompt")
    for i, m in enumerate(prompt):
        where = f"messages[{i}]"
        if not isinstance(m, Mapping):
            raise InvalidRequestError(f'{where}: must be a dict with "role" and "content"', where)
        if "role" not in m:
            raise InvalidRequestError(f"{where}.role: is missing", f"{where}.role")
        if "content" not in m:
            raise InvalidRequestError(f"{where}.content: is missing", f"{where}.content")
        r.messages.add(role=_text(m["role"], f"{where}.role"), content=_content(m["content"], f"{where}.content"))


def _route_request(
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
    detect_language: bool = False,
    min_similarity: Optional[float] = None,
    verifier_threshold: Optional[float] = None,
    willingness_to_pay: Optional[float] = None,
) -> pb.RouteRequest:
    r = pb.RouteRequest(detect_language=bool(detect_language))
    c = r.constraints
    try:
        for name, v in (("latency_budget_ms", latency_budget_ms), ("max_cost_usd", max_cost_usd), ("min_quality", min_quality), ("strict", strict), ("willingness_to_pay", willingness_to_pay)):
            if v is not None:
                setattr(c, name, v)
        if models is not None:
            c.models.SetInParent()  # present even when empty: the server rejects an empty list
            c.models.names.extend((models,) if isinstance(models, str) else models)
        if ttl_s is not None:
            r.cache.ttl_s = ttl_s
        if min_similarity is not None:
            if isinstance(min_similarity, bool) or not isinstance(min_similarity, (int, float)):
                raise TypeError(f"min_similarity must be a number, got {min_similarity!r}")
            r.cache.min_similarity = min_similarity
        if verifier_threshold is not None:
            if isinstance(verifier_threshold, bool) or not isinstance(verifier_threshold, (int, float)):
                raise TypeError(f"verifier_threshold must be a number, got {verifier_threshold!r}")
            r.cache.verifier_threshold = verifier_threshold
    except (TypeError, ValueError) as e:
        raise InvalidConstraintError(f"constraints: {e}", "constraints") from None
    r.cache.no_cache, r.cache.no_store = bool(no_cache), bool(no_store)
    if tenant is not None:
        r.tenant = _text(tenant, "tenant")
    if agent:
        r.agent = _text(agent, "agent")
    if workflow:
        r.workflow = _text(workflow, "workflow")
    if step:
        r.step = _text(step, "step")
    # NaN is sent as the JSON literal so that the server rejects it with the in-process message.
    if tools:
        try:
            r.tools_json = json.dumps(list(tools), allow_nan=True)
        except (TypeError, ValueError) as e:
            raise InvalidRequestError(f"tools: must be a list of JSON objects: {e}", "tools") from None
    if params:
        if not isinstance(params, Mapping):
            raise InvalidRequestError("params: must be a dict of sampling parameters", "params")
        try:
            r.params_json = json.dumps(dict(params), allow_nan=True)
        except (TypeError, ValueError) as e:
            raise InvalidRequestError(f"params: must be JSON values: {e}", "params") from None
    _fill_prompt(r, prompt)
    return r


def _catalog(m: pb.Catalog) -> Catalog:
    return Catalog(
        tuple(
            Model(
                name=x.name,
                provider=x.provider,
                context_window=x.context_window,
                quality={c: x.quality[c] for c in m.categories if c in x.quality},
                tiers=tuple(Tier(t.name, t.price_in, t.price_out, t.ttft_ms, t.prefill_tps, t.decode_tps, t.energy_j_per_token) for t in x.tiers),
                source=x.source,
            )
            for x in m.models
        ),
        tuple(m.files),
    )


def _stats(m: pb.StatsResponse) -> Dict[str, Any]:
    """The dict of Router.stats(), plus "server": what the server holds for Record, and
    "tenant": whose figures they are (None: the whole server's)."""
    s: Dict[str, Any] = {k: getattr(m, k) for k in ("requests", "exact_hits", "misses", "bypassed", "best_effort", "errors", "records", "failed_calls", "input_tokens", "output_tokens", "cost_usd", "cost_avoided_usd")}
    s["decisions"] = dict(m.decisions)
    s["route_latency"] = {k: getattr(m.route_latency, k) for k in ("count", "p50_us", "p90_us", "p99_us", "max_us", "mean_us")}
    s["cache"] = {k: getattr(m.cache, k) for k in ("entries", "bytes", "inserts", "evictions", "expirations")}
    s["classifier"] = m.classifier
    s["server"] = {k: getattr(m.server, k) for k in ("decisions_held", "decisions_expired", "decisions_evicted")}
    s["tenant"] = m.tenant or None
    s["semantic_hits"] = m.semantic_hits
    s["semantic"] = {k: getattr(m.semantic, k) for k in ("enabled", "entries", "bytes", "inserts", "evictions", "expirations", "hits", "below_threshold", "guard_rejections", "guard_overruled", "stale_candidates")}
    q = m.quality
    s["quality"] = (
        {
            "models": list(q.models),
            "mapped": dict(q.mapped),
            "willingness_to_pay": q.willingness_to_pay if q.HasField("willingness_to_pay") else None,
            "labels": q.labels,
            "ignored_labels": q.ignored_labels,
            "tenants": q.tenants,
            "fallbacks": q.fallbacks,
            "shared_offset": dict(q.shared_offset),
        }
        if m.HasField("quality")
        else None
    )
    return s


def _error(e: grpc.RpcError) -> Exception:
    """The routerx exception the in-process router would have raised for this status."""
    code: grpc.StatusCode = e.code()
    details: str = e.details() or ""
    md = {k: v for k, v in (e.trailing_metadata() or ()) if isinstance(v, str)}
    kind, fld = md.get("routerx-error", ""), md.get("routerx-field") or None
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        cls = _ERRORS.get(kind) or (InvalidConstraintError if fld in _CONSTRAINT_FIELDS else InvalidRequestError)
        return cls(details, fld)
    if code is grpc.StatusCode.NOT_FOUND and fld == "decision_id":
        return UnknownDecisionError(details, fld)
    if code is grpc.StatusCode.FAILED_PRECONDITION:
        return NoRouteError(details) if kind == "NoRouteError" else ConfigError(details, field=fld)
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED and kind == "BudgetExceededError":
        return BudgetExceededError(details, md.get("routerx-scope"))
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return AccessDeniedError(code, details, md.get("x-request-id"))
    return RemoteError(code, details, md.get("x-request-id"))


# -- the client -----------------------------------------------------------------------------------------


class Client:
    """The Router API against a ``routerx serve`` at ``target`` ("host:port").

    Thread-safe: share one (it holds one HTTP/2 channel). ``timeout`` (seconds) applies to every
    call; None waits as long as it takes. ``api_key`` is sent as ``authorization: Bearer <key>``
    (use TLS, ``credentials=grpc.ssl_channel_credentials()``, beyond localhost). Calls fail fast
    with RemoteError(UNAVAILABLE) while the server is down; use ``wait_ready()`` at start-up.
    """

    def __init__(
        self,
        target: str,
        timeout: Optional[float] = None,
        *,
        credentials: Optional[grpc.ChannelCredentials] = None,
        options: Sequence[Tuple[str, Any]] = (),
        metadata: Sequence[Tuple[str, str]] = (),
        api_key: Optional[str] = None,
    ) -> None:
        opts = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES), ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES), *options]
        self.target = target
        self.timeout = timeout
        auth = ((("authorization", f"Bearer {api_key}"),) if api_key is not None else ())
        self._metadata = (*tuple(metadata), *auth) or None
        self._channel = grpc.secure_channel(target, credentials, opts) if credentials is not None else grpc.insecure_channel(target, opts)
        stub: Any = pb_grpc.RouterStub  # generated code is untyped
        self._stub = stub(self._channel)

    def _call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise _error(e) from None

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Blocks until the channel is connected; RemoteError(UNAVAILABLE) after ``timeout``."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise RemoteError(grpc.StatusCode.UNAVAILABLE, f"no server at {self.target} after {timeout} s") from None

    # -- the Router API ---------------------------------------------------------------------------

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
        detect_language: bool = False,
        min_similarity: Optional[float] = None,
        verifier_threshold: Optional[float] = None,
        willingness_to_pay: Optional[float] = None,
    ) -> RemoteDecision:
        """As ``Router.route``: ``agent``, ``workflow`` and ``step`` count the spend in the
        server's ledger and select its budgets.
        ``language`` is None unless ``detect_language`` (it costs the server several times the
        routing; in-process it is computed on first access instead)."""
        r = _route_request(
            prompt,
            tenant=tenant,
            latency_budget_ms=latency_budget_ms,
            max_cost_usd=max_cost_usd,
            min_quality=min_quality,
            models=models,
            strict=strict,
            no_cache=no_cache,
            no_store=no_store,
            ttl_s=ttl_s,
            tools=tools,
            params=params,
            agent=agent,
            workflow=workflow,
            step=step,
            detect_language=detect_language,
            min_similarity=min_similarity,
            verifier_threshold=verifier_threshold,
            willingness_to_pay=willingness_to_pay,
        )
        return RemoteDecision.from_pb(self._call("Route", r))

    def route_many(self, requests: Sequence[Union[Prompt, Mapping[str, Any]]], **constraints: Any) -> List[RemoteDecision]:
        """As ``Router.route_many``: one call for the batch; a bad item fails it, naming its index."""
        batch = pb.RouteBatchRequest()
        for i, item in enumerate(requests):
            opts = dict(constraints)
            if isinstance(item, Mapping):
                if "prompt" not in item:
                    raise InvalidRequestError(f"requests[{i}]: a dict item needs a 'prompt' key", f"requests[{i}].prompt")
                opts.update({k: v for k, v in item.items() if k != "prompt"})
                prompt = item["prompt"]
            else:
                prompt = item
            unknown = sorted(set(opts) - set(_ROUTE_OPTIONS))
            try:
                if unknown:
                    raise InvalidRequestError(f"unknown options {unknown}", "options")
                batch.requests.append(_route_request(prompt, **opts))
            except InvalidRequestError as e:
                raise type(e)(f"requests[{i}]: {e}", e.field) from None
        return [RemoteDecision.from_pb(d) for d in self._call("RouteBatch", batch).decisions]

    def route_stream(self, requests: Iterable[Union[Prompt, Mapping[str, Any]]], **constraints: Any) -> Iterator[RemoteDecision]:
        """Routes requests over one streaming call, yielding each decision as it comes: the
        requests are sent as the iterable produces them. Items as in ``route_many``. A bad item
        ends the stream with its error, naming its index."""

        def messages() -> Iterator[pb.RouteRequest]:
            for i, item in enumerate(requests):
                opts = dict(constraints)
                prompt: Any = item
                if isinstance(item, Mapping):
                    if "prompt" not in item:
                        raise InvalidRequestError(f"requests[{i}]: a dict item needs a 'prompt' key", f"requests[{i}].prompt")
                    opts.update({k: v for k, v in item.items() if k != "prompt"})
                    prompt = item["prompt"]
                unknown = sorted(set(opts) - set(_ROUTE_OPTIONS))
                try:
                    if unknown:
                        raise InvalidRequestError(f"unknown options {unknown}", "options")
                    yield _route_request(prompt, **opts)
                except InvalidRequestError as e:
                    # Raised in grpc's sending thread it would only cancel the call: keep it
                    # for the caller, and end the stream.
                    bad.append(type(e)(f"requests[{i}]: {e}", e.field))
                    return

        bad: List[InvalidRequestError] = []
        try:
            for d in self._stub.RouteStream(messages(), timeout=self.timeout, metadata=self._metadata):
                yield RemoteDecision.from_pb(d)
        except grpc.RpcError as e:
            raise _error(e) from None
        if bad:
            raise bad[0]

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
        """The cached answer for this request (same key as ``route()``: tenant, models, tools,
        params), or None. Nothing is routed."""
        r = _route_request(prompt, tenant=tenant, models=models, tools=tools, params=params, min_quality=min_quality)
        q = pb.LookupRequest(prompt=r.prompt, messages=r.messages, tools_json=r.tools_json, params_json=r.params_json)
        if r.HasField("tenant"):
            q.tenant = r.tenant
        if r.constraints.HasField("models"):
            q.models.CopyFrom(r.constraints.models)
        if r.constraints.HasField("min_quality"):
            q.min_quality = r.constraints.min_quality
        try:
            m = self._stub.Lookup(q, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            if e.code() is grpc.StatusCode.NOT_FOUND:
                return None
            raise _error(e) from None
        return CachedAnswer(m.cached_response, m.entry_id, m.entry_age_s, m.tenant, m.model, m.provider, m.tier, m.category, m.cost_avoided_usd)

    def record(
        self,
        decision: Union[RemoteDecision, str],
        response_text: Union[str, bytes],
        input_tokens: int,
        output_tokens: int,
        latency_ms: float,
        ok: bool = True,
        outcome: Union[None, bool, float] = None,
    ) -> Recorded:
        """As ``Router.record``; ``decision`` is a RemoteDecision or its ``decision_id``."""
        did = decision.decision_id if isinstance(decision, RemoteDecision) else decision
        if not isinstance(did, str):
            raise InvalidRequestError("decision: must be a RemoteDecision returned by route() or its decision_id", "decision")
        r = pb.RecordRequest(decision_id=did, response_text=_text(response_text, "response"), ok=bool(ok))
        if outcome is not None:
            # Range errors come back from the server, named as in-process.
            if not isinstance(outcome, (bool, int, float)):
                raise InvalidRequestError(f"outcome: must be True/False or a number in [0, 1], got {outcome!r}", "outcome")
            r.outcome = float(outcome)
        for name, v in (("input_tokens", input_tokens), ("output_tokens", output_tokens)):
            # Out-of-range counts go to the server, which rejects them like the in-process router.
            if not isinstance(v, int) or isinstance(v, bool):
                raise InvalidRequestError(f"{name}: must be an integer in [0, 2^32), got {v!r}", name)
            setattr(r, name, max(min(v, 2**63 - 1), -(2**63)))
        try:
            r.latency_ms = latency_ms
        except TypeError:
            raise InvalidRequestError(f"latency_ms: must be a finite number ≥ 0, got {latency_ms!r}", "latency_ms") from None
        m = self._call("Record", r)
        return Recorded(m.cost_usd, m.stored)

    def feedback(self, decision: Union[RemoteDecision, str], outcome: Union[bool, float]) -> bool:
        """As ``Router.feedback``: a label for the answer behind ``decision`` (a RemoteDecision or
        its ``decision_id``) given after :meth:`record`. Returns whether the learned router
        learned from it."""
        did = decision.decision_id if isinstance(decision, RemoteDecision) else decision
        if not isinstance(did, str):
            raise InvalidRequestError("decision: must be a RemoteDecision returned by route() or its decision_id", "decision")
        if not isinstance(outcome, (bool, int, float)):
            raise InvalidRequestError(f"outcome: must be True/False or a number in [0, 1], got {outcome!r}", "outcome")
        return bool(self._call("Feedback", pb.FeedbackRequest(decision_id=did, outcome=float(outcome))).learned)

    def stats(self, tenant: Optional[str] = None) -> Dict[str, Any]:
        """As ``Router.stats()``; with ``tenant``, that tenant's counters and entries only (what a
        tenant API key always gets)."""
        r = pb.StatsRequest()
        if tenant is not None:
            r.tenant = _text(tenant, "tenant")
        return _stats(self._call("Stats", r))

    def invalidate(self, tenant: Optional[str] = None, *, entry_id: Optional[str] = None) -> int:
        """Drops cached answers: one entry (a decision's ``entry_id``), one tenant's, or all (a
        tenant API key: its own tenant's); returns how many."""
        r = pb.InvalidateRequest()
        if tenant is not None:
            r.tenant = _text(tenant, "tenant")
        if entry_id is not None:
            r.entry_id = _text(entry_id, "entry_id")
        return int(self._call("Invalidate", r).removed)

    def reload_config(self) -> Dict[str, Any]:
        """Makes the server re-read its config file (admin key when keys are configured). The new
        router starts with an empty cache. Returns source, classifier, models, api_keys and
        cache_entries_dropped."""
        m = self._call("ReloadConfig", pb.ReloadConfigRequest())
        return {k: getattr(m, k) for k in ("source", "classifier", "models", "api_keys", "cache_entries_dropped")}

    def catalog(self) -> Catalog:
        """The server's model catalog (as ``Router.catalog``)."""
        return _catalog(self._call("GetCatalog", pb.GetCatalogRequest()))

    # -- lifetime -----------------------------------------------------------------------------------

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.target!r}, timeout={self.timeout!r})"

