"""The gRPC service end to end: a real server on 127.0.0.1, port 0, in this process (and one
in a subprocess for signals), driven through routerx.Client and the raw stubs."""

from __future__ import annotations

import difflib
import json
import logging
import math
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

grpc = pytest.importorskip("grpc")
pytest.importorskip("grpc_health")
pytest.importorskip("grpc_reflection")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import routerx  # noqa: E402
from routerx.client import Client, RemoteDecision, RemoteError, UnknownDecisionError  # noqa: E402
from routerx.server import serve  # noqa: E402
from routerx.server import gen_protos  # noqa: E402
from routerx.server._proto.routerx.v1 import router_pb2 as pb  # noqa: E402
from routerx.server._proto.routerx.v1 import router_pb2_grpc as pb_grpc  # noqa: E402
from routerx.server.app import RunningServer  # noqa: E402
from routerx.server.service import DecisionStore, RpcStatusError  # noqa: E402

from conftest import run_threads  # noqa: E402

PROMPTS: List[str] = [
    json.loads(line)["prompt"]
    for line in resources.files("routerx").joinpath("data/demo_prompts.jsonl").read_text(encoding="utf-8").splitlines()
    if line.strip()
]
PARITY = PROMPTS[::4][:30]  # 30 prompts across all categories


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    srv = serve(port=0, block=False, workers=8)
    yield srv
    srv.stop(0)


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[Client]:
    with Client(server.target, timeout=10) as c:
        c.wait_ready(5)
        yield c


@pytest.fixture(scope="module")
def channel(server: RunningServer) -> Iterator[Any]:
    ch = grpc.insecure_channel(server.target)
    yield ch
    ch.close()


@pytest.fixture(scope="module")
def stub(channel: Any) -> Any:
    return pb_grpc.RouterStub(channel)


@pytest.fixture(scope="module")
def local() -> routerx.Router:
    """In-process router with the same (default) config as the server."""
    return routerx.Router()


def assert_alive(client: Client, local: routerx.Router) -> None:
    """The server still answers, and correctly."""
    want = local.route("What is the capital of France?", tenant="alive", no_cache=True)
    got = client.route("What is the capital of France?", tenant="alive", no_cache=True)
    assert (got.model, got.tier, got.category) == (want.model, want.tier, want.category)


def rpc_error(fn: Any, *args: Any, **kw: Any) -> Any:
    with pytest.raises(grpc.RpcError) as ei:
        fn(*args, **kw)
    return ei.value


def trailing(e: Any) -> Dict[str, str]:
    return {k: v for k, v in (e.trailing_metadata() or ())}


# -- infrastructure: health, reflection, generated code ---------------------------------------------


def test_health_serving(channel: Any) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    h = health_pb2_grpc.HealthStub(channel)
    for service in ("", "routerx.v1.Router"):
        assert h.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_service(channel: Any) -> None:
    from google.protobuf import descriptor_pool
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    db = ProtoReflectionDescriptorDatabase(channel)
    assert {"routerx.v1.Router", "grpc.health.v1.Health"} <= set(db.get_services())
    svc = descriptor_pool.DescriptorPool(db).FindServiceByName("routerx.v1.Router")
    assert {m.name for m in svc.methods} == {"Route", "RouteBatch", "RouteStream", "Record", "Feedback", "Lookup", "Invalidate", "Stats", "GetCatalog", "ReloadConfig"}


def test_generated_code_matches_the_proto(tmp_path: Path) -> None:
    """The checked-in descriptor is the proto's (whatever the grpcio-tools version), and with the
    recorded grpcio-tools version the files are byte-identical to a fresh generation."""
    pytest.importorskip("grpc_tools")
    from google.protobuf import descriptor_pb2
    from grpc_tools import protoc

    src = gen_protos.DEFAULT_PROTO_ROOT / gen_protos.PROTO
    if not src.exists():
        pytest.skip("protos/ not present (installed package, not a checkout)")
    ds = tmp_path / "ds.pb"
    assert protoc.main(["protoc", f"-I{gen_protos.DEFAULT_PROTO_ROOT}", f"--descriptor_set_out={ds}", str(src)]) == 0
    fresh = descriptor_pb2.FileDescriptorSet.FromString(ds.read_bytes()).file[0]

    def strip_json_names(msgs: Any) -> None:  # protoc adds them to descriptor sets, not to gencode
        for m in msgs:
            for f in m.field:
                f.ClearField("json_name")
            strip_json_names(m.nested_type)

    strip_json_names(fresh.message_type)
    checked_in = descriptor_pb2.FileDescriptorProto.FromString(pb.DESCRIPTOR.serialized_pb)
    assert fresh == checked_in, "protos/routerx/v1/router.proto changed: run `python -m routerx.server.gen_protos`"

    header = (gen_protos.DEFAULT_OUT / "__init__.py").read_text(encoding="utf-8")
    recorded = re.search(r"grpcio-tools ([\w.]+)", header)
    if recorded is None or recorded.group(1) != gen_protos.tools_version():
        pytest.skip(f"checked-in code is from grpcio-tools {recorded and recorded.group(1)}, this is {gen_protos.tools_version()}")
    out = tmp_path / "gen"
    gen_protos.generate(out)
    for name in (*gen_protos.INIT_FILES, *gen_protos.GENERATED):
        want, got = (gen_protos.DEFAULT_OUT / name).read_text(encoding="utf-8"), (out / name).read_text(encoding="utf-8")
        diff = "".join(list(difflib.unified_diff(want.splitlines(True), got.splitlines(True), f"checked-in/{name}", f"fresh/{name}"))[:40])
        assert want == got, f"{name} is stale: run `python -m routerx.server.gen_protos`\n{diff}"


# -- parity with the in-process router ---------------------------------------------------------------


def _expected_fields(d: Any, did: str, overhead: float) -> Dict[str, Any]:
    """What a Decision message must hold for in-process decision ``d``, field by field."""
    return {
        "decision_id": did,
        "model": d.model,
        "provider": d.provider,
        "tier": d.tier,
        "cache": {"exact": pb.CACHE_OUTCOME_EXACT, "miss": pb.CACHE_OUTCOME_MISS, "bypass": pb.CACHE_OUTCOME_BYPASS}[d.cache],
        "cached_response": d.cached_response,
        "entry_id": d.entry_id,
        "entry_age_s": d.entry_age_s,
        "tenant": d.tenant,
        "category": d.category,
        "complexity": d.complexity,
        "confidence": d.confidence,
        "language": None,
        "input_tokens": d.input_tokens,
        "predicted_output_tokens": d.predicted_output_tokens,
        "predicted_cost_usd": d.predicted_cost_usd,
        "predicted_latency_ms": d.predicted_latency_ms,
        "cost_avoided_usd": d.cost_avoided_usd,
        "required_quality": d.required_quality,
        "within_budget": d.within_budget,
        "violations": d.violations,
        "fallbacks": [dict(f) for f in d.fallbacks],
        "reason": d.reason,
        "route_ns": d.route_ns,
        "overhead_us": overhead,
        "similarity": d.similarity,
        "semantic_entry": d.semantic_entry,
        "predicted_quality": d.predicted_quality,
        "willingness_to_pay": d.willingness_to_pay,
        "agent": d.agent,
        "workflow": d.workflow,
        "step": d.step,
        "budget_action": d.budget_action,
    }


def _fields_of(m: Any) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for f in pb.Decision.DESCRIPTOR.fields:
        if f.name == "fallbacks":
            out[f.name] = [{k.name: getattr(x, k.name) for k in pb.Fallback.DESCRIPTOR.fields} for x in m.fallbacks]
        elif f.name == "violations":
            out[f.name] = list(m.violations)
        elif f.has_presence and not m.HasField(f.name):
            out[f.name] = None
        else:
            out[f.name] = getattr(m, f.name)
    return out


def test_wire_encoding_matches_the_decision_field_by_field(local: routerx.Router) -> None:
    """Route answers are encoded in Rust (Decision.wire): decoded with the generated code, every
    field equals the in-process Decision's, for hits, misses, bypasses and best-effort choices."""
    import numpy as np  # float32 fields compare at float32 precision

    r = routerx.Router(db=None)
    d = r.route("wire check: what is the capital of Peru?", tenant="w")
    r.record(d, "Lima. ünïcödé ✓", 10, 3, 5.0)
    cases = [
        d,
        r.route("wire check: what is the capital of Peru?", tenant="w"),  # exact hit
        r.route("wire check: what is the capital of Peru?", tenant="w", no_cache=True),
        r.route("Prove the Riemann hypothesis in full detail.", latency_budget_ms=1, max_cost_usd=1e-9),  # best effort
        r.route([{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Write a SQL query counting orders per customer."}]),
    ]
    # Labels, and a budget that only warns.
    r.set_budget("agent:wire-bot", tokens_per_hour=10, action="warn")
    cases.append(r.route("Summarize the meeting notes in three bullet points.", agent="wire-bot", workflow="triage", step="summarize"))
    assert (cases[-1].step, cases[-1].budget_action) == ("summarize", "warn")
    assert {c.cache for c in cases} == {"miss", "exact", "bypass"} and not cases[3].within_budget and cases[0].fallbacks
    for i, c in enumerate(cases):
        m = pb.Decision.FromString(c.wire(f"id-{i}", 12.5))
        got, want = _fields_of(m), _expected_fields(c, f"id-{i}", 12.5)
        for k in ("complexity", "confidence", "required_quality"):
            if want[k] is not None:
                want[k] = float(np.float32(want[k]))
        assert got == want, i
    # The cache override and the language on request.
    m = pb.Decision.FromString(cases[1].wire("x", 0.0, cache="miss"))
    assert m.cache == pb.CACHE_OUTCOME_MISS
    m = pb.Decision.FromString(cases[0].wire("x", 0.0, language=True))
    assert m.language == cases[0].language
    # A batch is the concatenation of length-delimited Decisions.
    from routerx.server.service import batch_wire

    big = cases[0].wire("y" * 300, 1.0)  # over 127 bytes: a multi-byte length
    b = pb.RouteBatchResponse.FromString(batch_wire([c.wire(str(i), 1.0) for i, c in enumerate(cases)] + [big]))
    assert [x.decision_id for x in b.decisions] == ["0", "1", "2", "3", "4", "5", "y" * 300]
    # The client's decision carries every attribute of the in-process one.
    import dataclasses

    from routerx.router import DECISION_FIELDS

    remote = RemoteDecision.from_pb(pb.Decision.FromString(cases[-1].wire("z", 1.0, language=True)))
    assert set(DECISION_FIELDS) <= {f.name for f in dataclasses.fields(RemoteDecision)}
    for f in DECISION_FIELDS:
        want = getattr(cases[-1], f)
        if f in ("complexity", "confidence", "required_quality") and want is not None:
            want = float(np.float32(want))  # float on the wire
        assert getattr(remote, f) == (list(map(dict, want)) if f == "fallbacks" else want), f
    assert (remote.agent, remote.workflow, remote.step, remote.budget_action) == ("wire-bot", "triage", "summarize", "warn")


def test_route_parity_with_in_process(client: Client, local: routerx.Router) -> None:
    keys = ("model", "provider", "tier", "category", "complexity", "confidence", "required_quality", "input_tokens", "predicted_output_tokens", "predicted_cost_usd", "predicted_latency_ms", "within_budget", "violations", "fallbacks", "reason", "cache", "tenant")
    for p in PARITY:
        want, got = local.route(p, tenant="parity"), client.route(p, tenant="parity")
        assert isinstance(got, RemoteDecision) and got.decision_id
        for k in keys:
            assert getattr(got, k) == getattr(want, k), (p, k)
        assert got.language is None  # only on request
    # Batches, chat messages, constraints and language too.
    batch = [{"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": p}], "latency_budget_ms": 2000} for p in PARITY[:10]]
    wants = local.route_many(batch, tenant="parity-batch", max_cost_usd=0.01)
    gots = client.route_many(batch, tenant="parity-batch", max_cost_usd=0.01)
    assert [(g.model, g.tier, g.category, g.complexity, g.predicted_cost_usd) for g in gots] == [(w.model, w.tier, w.category, w.complexity, w.predicted_cost_usd) for w in wants]
    assert len({g.decision_id for g in gots}) == len(gots)
    got = client.route(PARITY[3], tenant="parity", detect_language=True, no_cache=True)
    assert got.language == local.route(PARITY[3], tenant="parity", no_cache=True).language is not None


def test_stats_and_catalog_have_the_in_process_shape(client: Client, local: routerx.Router) -> None:
    remote, mine = client.stats(), local.stats()
    assert set(remote) - {"server", "tenant"} == set(mine) and remote["tenant"] is None
    for k in ("route_latency", "cache"):
        assert set(remote[k]) == set(mine[k])
    assert remote["classifier"] == mine["classifier"]
    assert set(remote["server"]) == {"decisions_held", "decisions_expired", "decisions_evicted"}
    assert client.catalog() == local.catalog


# -- cache behaviour over the wire ---------------------------------------------------------------------


def test_record_then_exact_hit_carries_the_answer(client: Client) -> None:
    prompt = "Translate into German: the train leaves at nine from platform four."
    before = client.stats()
    d = client.route(prompt, tenant="t-hit")
    assert d.cache == "miss" and d.cached_response is None
    rec = client.record(d, "Der Zug fährt um neun von Gleis vier ab.", input_tokens=20, output_tokens=12, latency_ms=350.0)
    assert rec.stored and rec.cost_usd >= 0
    assert client.record(d, "ignored", 1, 1, 1.0) == rec  # a retry is answered, not counted twice
    hit = client.route(prompt, tenant="t-hit")
    assert hit.cache == "exact" and hit.cached_response == "Der Zug fährt um neun von Gleis vier ab."
    assert hit.entry_id == d.entry_id and hit.entry_age_s is not None and hit.entry_age_s >= 0
    assert hit.predicted_cost_usd == 0 and hit.cost_avoided_usd == pytest.approx(rec.cost_usd)
    assert hit.confidence is None and hit.required_quality is None and hit.fallbacks == []
    after = client.stats()
    assert after["records"] == before["records"] + 1
    assert after["exact_hits"] == before["exact_hits"] + 1
    # no_cache bypasses the entry; no_store keeps a recorded answer out of the cache.
    assert client.route(prompt, tenant="t-hit", no_cache=True).cache == "bypass"
    d2 = client.route(prompt + " Please.", tenant="t-hit", no_store=True)
    assert client.record(d2, "x", 1, 1, 1.0).stored is False


def test_exact_hit_fast_path_answers_as_the_general_path(server: RunningServer, client: Client, stub: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain request answered from the exact cache takes Route's one-call fast path: the same
    Decision as the general path, a fresh random decision_id that Record accepts, the tenant's
    counters, the caller's x-request-id in the trailer, and the handler's overhead."""
    prompt, tenant = "Translate into Italian: the meeting is cancelled.", "t-fast"
    d = client.route(prompt, tenant=tenant)
    client.record(d, "La riunione è annullata.", 10, 6, 200.0)
    state = server.service.state
    assert state.fast is not None  # the default Router does not override route()
    before, everything = client.stats(tenant=tenant), client.stats()
    req = pb.RouteRequest(prompt=prompt, tenant=tenant, cache=pb.CacheControl())  # an empty CacheControl is still plain
    fast, call = stub.Route.with_call(req, timeout=5, metadata=(("x-request-id", "rid-fast-1"),))
    assert dict(call.trailing_metadata())["x-request-id"] == "rid-fast-1"
    monkeypatch.setattr(state, "fast", None)
    general, call = stub.Route.with_call(req, timeout=5)
    monkeypatch.undo()
    assert dict(call.trailing_metadata())["x-request-id"] not in ("", "rid-fast-1")
    assert fast.cache == pb.CACHE_OUTCOME_EXACT and fast.cached_response == "La riunione è annullata." and fast.tenant == tenant
    assert re.fullmatch(r"[0-9a-f]{32}", fast.decision_id) and fast.decision_id != general.decision_id
    assert fast.overhead_us > 0 and fast.route_ns > 0
    did = fast.decision_id
    for m in (fast, general):
        m.decision_id, m.overhead_us, m.route_ns, m.entry_age_s = "", 0, 0, 0
    assert fast == general
    # Messages instead of a prompt, and the default tenant, take the fast path too.
    msgs = [pb.ChatMessage(role="user", content="Translate into Italian: the invoice is paid.")]
    d2 = client.route([{"role": "user", "content": "Translate into Italian: the invoice is paid."}])
    client.record(d2, "La fattura è pagata.", 9, 5, 150.0)
    hit2 = stub.Route(pb.RouteRequest(messages=msgs), timeout=5)
    assert hit2.cache == pb.CACHE_OUTCOME_EXACT and hit2.tenant == "default" and hit2.cached_response == "La fattura è pagata."
    # The held decision records like any other: once, then replayed.
    rec = stub.Record(pb.RecordRequest(decision_id=did, response_text="ignored", input_tokens=3, output_tokens=2, latency_ms=1.0), timeout=5)
    assert not rec.stored and not rec.replayed
    assert stub.Record(pb.RecordRequest(decision_id=did, response_text="ignored"), timeout=5).replayed
    after = client.stats(tenant=tenant)
    for k, n in (("requests", 2), ("exact_hits", 2), ("records", 1), ("misses", 0), ("input_tokens", 0)):
        assert after[k] == before[k] + n, k
    assert after["cost_avoided_usd"] == pytest.approx(before["cost_avoided_usd"] + 2 * fast.cost_avoided_usd)
    assert client.stats()["exact_hits"] == everything["exact_hits"] + 3
    # What is not a plain hit still gets the general path's answers.
    assert stub.Route(pb.RouteRequest(prompt=prompt, tenant=tenant, cache=pb.CacheControl(no_cache=True)), timeout=5).cache == pb.CACHE_OUTCOME_BYPASS
    e = rpc_error(stub.Route, pb.RouteRequest(prompt=prompt, messages=msgs, tenant=tenant), timeout=5)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "prompt" in e.details() and trailing(e)["routerx-field"] == "prompt"
    e = rpc_error(stub.Route, pb.RouteRequest(prompt=prompt, tenant=""), timeout=5)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and trailing(e)["routerx-field"] == "tenant"
    raw = server_channel_route(server)
    e = rpc_error(raw, b"\x0a\x02\xff\xfe", timeout=5)  # a prompt that is not UTF-8
    assert e.code() == grpc.StatusCode.INTERNAL and "deserializ" in e.details().lower()


def test_labels_reach_the_ledger_on_every_path(server: RunningServer, client: Client, stub: Any) -> None:
    """agent, workflow and step count a request under its labels over the wire as in-process: a
    miss through the general path and an exact hit through the fast path alike."""
    prompt, tenant = "Summarise the release notes of version 4.2 in one line.", "t-labels"
    d = client.route(prompt, tenant=tenant, agent="writer", workflow="release", step="summary")
    client.record(d, "4.2: faster startup.", 12, 6, 120.0)
    hit = stub.Route(pb.RouteRequest(prompt=prompt, tenant=tenant, agent="writer", workflow="release", step="summary"), timeout=5)
    assert hit.cache == pb.CACHE_OUTCOME_EXACT
    rows = [r for r in server.service.state.router.ledger() if r["tenant"] == tenant]
    assert rows and all((r["agent"], r["workflow"], r["step"]) == ("writer", "release", "summary") for r in rows), rows
    assert sum(r["calls"] for r in rows) == 1 and sum(r["cache_hits"] for r in rows) == 1, rows


def server_channel_route(server: RunningServer) -> Any:
    ch = grpc.insecure_channel(server.target)
    return ch.unary_unary("/routerx.v1.Router/Route", request_serializer=None, response_deserializer=None)


def test_the_client_takes_what_the_router_takes() -> None:
    """A keyword the in-process Router accepts and the Client does not is behaviour a served
    deployment cannot reach (as step and verifier_threshold once were)."""
    import inspect

    in_process_only = {"route": {"flight_caller"}}  # the server's own single-flight bookkeeping
    for name in ("route", "route_many", "record", "feedback", "invalidate", "stats"):
        mine = set(inspect.signature(getattr(routerx.Router, name)).parameters)
        theirs = set(inspect.signature(getattr(Client, name)).parameters)
        assert mine - theirs <= in_process_only.get(name, set()), (name, mine - theirs)


def test_tenant_isolation_and_invalidate(client: Client) -> None:
    prompt = "Summarize: the committee met on Tuesday and postponed the vote to next month."
    d = client.route(prompt, tenant="tenant-a")
    client.record(d, "Vote postponed.", 15, 3, 200.0)
    assert client.route(prompt, tenant="tenant-b").cache == "miss"
    assert client.route(prompt, tenant="tenant-a").cached_response == "Vote postponed."
    assert client.invalidate("tenant-b") == 0
    assert client.invalidate("tenant-a") == 1
    assert client.route(prompt, tenant="tenant-a").cache == "miss"


# -- bad input ------------------------------------------------------------------------------------------

BAD_ROUTES = [
    # (prompt, kwargs, exception, field)
    ("", {}, routerx.InvalidRequestError, "messages"),
    ("   ", {}, routerx.InvalidRequestError, "messages"),
    ([{"role": "wizard", "content": "hi"}], {}, routerx.InvalidRequestError, "messages[0].role"),
    ("hi", {"latency_budget_ms": math.nan}, routerx.InvalidConstraintError, "latency_budget_ms"),
    ("hi", {"max_cost_usd": -1.0}, routerx.InvalidConstraintError, "max_cost_usd"),
    ("hi", {"min_quality": 1.5}, routerx.InvalidConstraintError, "min_quality"),
    ("hi", {"ttl_s": 0.0}, routerx.InvalidConstraintError, "ttl_s"),
    ("hi", {"models": ["gpt-17"]}, routerx.UnknownModelError, "models"),
    ("hi", {"models": []}, routerx.InvalidConstraintError, "models"),
    ("hi", {"tenant": ""}, routerx.InvalidRequestError, "tenant"),
    ("a\ud800b", {}, routerx.InvalidRequestError, "prompt"),
    ("hi", {"params": {"max_tokens": 0}}, routerx.InvalidRequestError, "params.max_tokens"),
    ("hi", {"params": {"temperature": math.nan}}, routerx.InvalidRequestError, "params"),
]


@pytest.mark.parametrize("prompt,kw,exc,field", BAD_ROUTES)
def test_bad_route_raises_what_in_process_raises(client: Client, local: routerx.Router, prompt: Any, kw: Dict[str, Any], exc: type, field: str) -> None:
    with pytest.raises(exc) as want:
        local.route(prompt, **kw)
    with pytest.raises(exc) as got:
        client.route(prompt, **kw)
    assert type(got.value) is type(want.value)
    assert got.value.field == want.value.field == field  # type: ignore[attr-defined]
    assert field in str(got.value)
    assert_alive(client, local)


def test_bad_wire_requests_name_the_field(stub: Any, client: Client, local: routerx.Router) -> None:
    cases: List[Tuple[str, Any, Any, str]] = [
        ("Route", pb.RouteRequest(), grpc.StatusCode.INVALID_ARGUMENT, "messages"),
        ("Route", pb.RouteRequest(prompt="hi", messages=[pb.ChatMessage(role="user", content="hi")]), grpc.StatusCode.INVALID_ARGUMENT, "prompt"),
        ("Route", pb.RouteRequest(messages=[pb.ChatMessage(role="", content="hi")]), grpc.StatusCode.INVALID_ARGUMENT, "messages[0].role"),
        ("Route", pb.RouteRequest(prompt="hi", constraints=pb.Constraints(latency_budget_ms=math.nan)), grpc.StatusCode.INVALID_ARGUMENT, "latency_budget_ms"),
        ("Route", pb.RouteRequest(prompt="hi", tools_json="[{"), grpc.StatusCode.INVALID_ARGUMENT, "tools"),
        ("Route", pb.RouteRequest(prompt="hi", tools_json='{"a": 1}'), grpc.StatusCode.INVALID_ARGUMENT, "tools"),
        ("Route", pb.RouteRequest(prompt="hi", params_json="[1]"), grpc.StatusCode.INVALID_ARGUMENT, "params"),
        ("Route", pb.RouteRequest(prompt="hi", constraints=pb.Constraints(strict=True, latency_budget_ms=0.001)), grpc.StatusCode.FAILED_PRECONDITION, ""),
        ("RouteBatch", pb.RouteBatchRequest(requests=[pb.RouteRequest(prompt="ok"), pb.RouteRequest(prompt="x", params_json="{")]), grpc.StatusCode.INVALID_ARGUMENT, "params"),
        ("Record", pb.RecordRequest(decision_id="0" * 32, input_tokens=1, output_tokens=1, latency_ms=1), grpc.StatusCode.NOT_FOUND, "decision_id"),
        ("Record", pb.RecordRequest(), grpc.StatusCode.INVALID_ARGUMENT, "decision_id"),
    ]
    for method, req, code, field in cases:
        e = rpc_error(getattr(stub, method), req, timeout=5, metadata=(("x-request-id", f"bad-{method}"),))
        md = trailing(e)
        assert e.code() == code, (req, e.details())
        assert md.get("routerx-field", "") == field, (req, md)
        assert md["x-request-id"] == f"bad-{method}"
        if field:
            assert field in e.details()
    e = rpc_error(stub.RouteBatch, pb.RouteBatchRequest(requests=[pb.RouteRequest(prompt="ok"), pb.RouteRequest(prompt="x", params_json="{")]), timeout=5)
    assert "requests[1]" in e.details()
    assert_alive(client, local)


def test_bad_record_arguments(client: Client, local: routerx.Router, stub: Any) -> None:
    d = client.route("Record me, then record me wrongly.", tenant="t-rec", no_store=True)
    for kw, field in [({"input_tokens": -1}, "input_tokens"), ({"output_tokens": 2**40}, "output_tokens"), ({"latency_ms": math.nan}, "latency_ms"), ({"input_tokens": 1.5}, "input_tokens")]:
        args = {"input_tokens": 10, "output_tokens": 5, "latency_ms": 100.0, **kw}
        with pytest.raises(routerx.InvalidRequestError) as ei:
            client.record(d, "answer", **args)
        assert ei.value.field == field
    e = rpc_error(stub.Record, pb.RecordRequest(decision_id=d.decision_id, input_tokens=-5, output_tokens=1, latency_ms=1.0), timeout=5)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and trailing(e)["routerx-field"] == "input_tokens"
    # A rejected Record does not consume the decision.
    assert client.record(d, "answer", 10, 5, 100.0).stored is False
    with pytest.raises(UnknownDecisionError) as nf:
        client.record("f" * 32, "answer", 1, 1, 1.0)
    assert nf.value.field == "decision_id" and isinstance(nf.value, LookupError)
    assert_alive(client, local)


def test_unexpected_errors_are_internal_and_not_leaked(server: RunningServer, client: Client, local: routerx.Router, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def route(self, *a: Any, **k: Any) -> Any:
            raise RuntimeError("secret: database password is hunter2")

    monkeypatch.setattr(server.service.state, "router", Broken())
    with caplog.at_level(logging.ERROR, logger="routerx.server"):
        with pytest.raises(RemoteError) as ei:
            client.route("hi", tenant="t-broken")
    assert ei.value.code == grpc.StatusCode.INTERNAL and "hunter2" not in str(ei.value) and ei.value.request_id
    assert any("hunter2" in (r.exc_text or "") and ei.value.request_id in r.getMessage() for r in caplog.records)
    monkeypatch.undo()
    assert_alive(client, local)


def test_one_debug_line_per_request(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    c = Client(client.target, timeout=5, metadata=(("x-request-id", "rid-debug-1"),))
    with caplog.at_level(logging.DEBUG, logger="routerx.server"):
        c.route("Write a haiku about logging.", tenant="t-log", agent="poet", workflow="wf 1")
        deadline = time.time() + 2
        while time.time() < deadline and not any("rid-debug-1" in r.getMessage() for r in caplog.records):
            time.sleep(0.01)
    lines = [r.getMessage() for r in caplog.records if "rid=rid-debug-1" in r.getMessage()]
    c.close()
    assert len(lines) == 1, lines
    for part in ("rpc=Route", "tenant=t-log", "agent=poet", 'workflow="wf 1"', "model=", "cache=miss", "route_us=", "status=OK"):
        assert part in lines[0], (part, lines[0])


# -- load ---------------------------------------------------------------------------------------------------


def test_200_concurrent_clients(client: Client, local: routerx.Router, server: RunningServer) -> None:
    """200 threads at once, half with a channel of their own and half sharing one, each checking
    every answer: parity with in-process routing, its own recorded answer on the hit."""
    expected = {p: (w.model, w.tier) for p in PARITY for w in [local.route(p, tenant="load", no_cache=True)]}
    errors: List[BaseException] = []
    n = 200
    start = threading.Barrier(n)
    own = [Client(server.target, timeout=30) for _ in range(n // 2)]

    def worker(t: int) -> None:
        c = own[t // 2] if t % 2 else client
        try:
            start.wait(30)  # all 200 in flight together
            for i in range(2):
                p = PARITY[(t + i) % len(PARITY)]
                d = c.route(p, tenant="load", no_cache=True)
                assert (d.model, d.tier) == expected[p]
                q = f"client {t} iteration {i}: what is {t} times {i}?"
                d = c.route(q, tenant=f"load-{t}")
                assert d.cache == "miss"
                c.record(d, f"{t * i}", 12, 2, 50.0)
                hit = c.route(q, tenant=f"load-{t}")
                assert hit.cache == "exact" and hit.cached_response == f"{t * i}"
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    before = client.stats()["records"]
    run_threads(n, worker)
    for c in own:
        c.close()
    assert not errors, errors[:3]
    assert client.stats()["records"] == before + 2 * n


# -- fuzzing ----------------------------------------------------------------------------------------------

_floats = st.none() | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, 0.5, 1.0, 250.0, 1e9])
_text = st.text(max_size=120)
_messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "tool", "bogus", ""]), "content": _text}), max_size=3)
_json_value = st.recursive(st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | _text, lambda ch: st.lists(ch, max_size=3) | st.dictionaries(_text, ch, max_size=3), max_leaves=6)


@st.composite
def route_kwargs(draw: Any, models: List[str]) -> Dict[str, Any]:
    kw: Dict[str, Any] = {"tenant": draw(st.sampled_from(["hyp-a", "hyp-b", "", "x" * 300]))}
    for k in ("latency_budget_ms", "max_cost_usd", "min_quality", "ttl_s"):
        v = draw(_floats)
        if v is not None:
            kw[k] = v
    if draw(st.booleans()):
        kw["models"] = draw(st.lists(st.sampled_from([*models, "nope", ""]), max_size=3))
    kw["strict"] = draw(st.none() | st.booleans())
    kw["no_cache"], kw["no_store"] = draw(st.booleans()), draw(st.booleans())
    if draw(st.booleans()):
        kw["tools"] = draw(st.lists(st.dictionaries(st.sampled_from(["name", "description", "parameters"]), _json_value, max_size=3), max_size=2))
    if draw(st.booleans()):
        kw["params"] = draw(st.dictionaries(st.sampled_from(["max_tokens", "temperature", "top_p"]), st.integers(-3, 2**33) | st.floats() | st.booleans() | st.none(), max_size=3))
    return kw


def _outcome(fn: Any, *a: Any, **k: Any) -> Any:
    try:
        r = fn(*a, **k)
    except routerx.RouterxError as e:
        return ("error", type(e).__name__, getattr(e, "field", None))
    if isinstance(r, routerx.Recorded):
        return ("ok", r.cost_usd, r.stored)
    return ("ok", r.model, r.tier, r.category, r.complexity, r.cache, r.predicted_cost_usd)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_random_requests_match_in_process(client: Client, local: routerx.Router, data: Any) -> None:
    """Random, often invalid, requests: the client raises what the in-process router raises
    (type and field) or gets the same decision; records too; and the server keeps answering."""
    models = [m.name for m in local.catalog.models]
    prompt = data.draw(_text | _messages, label="prompt")
    kw = data.draw(route_kwargs(models), label="kwargs")
    assert _outcome(client.route, prompt, **kw) == _outcome(local.route, prompt, **kw)
    rec = data.draw(st.tuples(st.integers(-(2**34), 2**34), st.integers(-5, 2**33), _floats.filter(lambda v: v is not None), st.booleans()), label="record")
    dl, dr = local.route("fuzz the record path", tenant="hyp-rec", no_store=True), client.route("fuzz the record path", tenant="hyp-rec", no_store=True)
    assert _outcome(client.record, dr, "answer", *rec) == _outcome(local.record, dl, "answer", *rec)
    assert_alive(client, local)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(method=st.sampled_from(["Route", "RouteBatch", "Record", "Lookup", "Invalidate", "Stats", "GetCatalog"]), body=st.binary(max_size=200))
def test_garbage_bytes_do_not_hurt_the_server(channel: Any, client: Client, local: routerx.Router, method: str, body: bytes) -> None:
    call = channel.unary_unary(f"/routerx.v1.Router/{method}", request_serializer=None, response_deserializer=None)
    try:
        call(body, timeout=5)
    except grpc.RpcError as e:
        assert e.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INTERNAL), e
        if e.code() == grpc.StatusCode.INTERNAL:  # only an undecodable message, never a handler bug
            assert "deserializ" in (e.details() or "").lower(), e.details()
    assert_alive(client, local)


# -- admission and shutdown ---------------------------------------------------------------------------------


class SlowRouter(routerx.Router):
    """Slows route/record down so calls are surely in flight when the test acts."""

    def __init__(self, route_s: float = 0.0, record_s: float = 0.0) -> None:
        super().__init__()
        self.route_s, self.record_s = route_s, record_s
        self.recording = threading.Semaphore(0)

    def route(self, *a: Any, **k: Any) -> Any:
        time.sleep(self.route_s)
        return super().route(*a, **k)

    def record(self, *a: Any, **k: Any) -> Any:
        self.recording.release()
        time.sleep(self.record_s)
        return super().record(*a, **k)


def test_saturation_answers_resource_exhausted() -> None:
    srv = serve(port=0, block=False, workers=2, max_concurrent_rpcs=2, router=SlowRouter(route_s=0.4))
    try:
        c = Client(srv.target, timeout=10)
        c.wait_ready(5)
        start = threading.Barrier(6)
        out: "queue.Queue[Any]" = queue.Queue()

        def call() -> None:
            start.wait()
            try:
                out.put(c.route("hello", tenant="sat").model)
            except Exception as e:  # noqa: BLE001
                out.put(e)

        threads = [threading.Thread(target=call) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        results = [out.get_nowait() for _ in range(6)]
        refused = [r for r in results if isinstance(r, RemoteError)]
        assert refused and all(r.code == grpc.StatusCode.RESOURCE_EXHAUSTED for r in refused), results
        assert len(refused) < 6 and all(isinstance(r, (str, RemoteError)) for r in results), results
        assert c.route("after the burst", tenant="sat").model  # admission recovers
        c.close()
    finally:
        srv.stop(0)


def test_graceful_stop_loses_no_record() -> None:
    n = 12
    router = SlowRouter(record_s=0.4)
    srv = serve(port=0, block=False, workers=n + 2, router=router)
    c = Client(srv.target, timeout=10)
    decisions = [c.route(f"graceful stop {i}", tenant="grace") for i in range(n)]
    out: "queue.Queue[Any]" = queue.Queue()

    def rec(d: RemoteDecision) -> None:
        try:
            out.put(c.record(d, "answer", 10, 5, 100.0))
        except Exception as e:  # noqa: BLE001
            out.put(e)

    threads = [threading.Thread(target=rec, args=(d,)) for d in decisions]
    for t in threads:
        t.start()
    for _ in range(n):  # every Record is inside the router before we stop
        assert router.recording.acquire(timeout=5)
    t0 = time.monotonic()
    srv.stop(grace=5)
    assert time.monotonic() - t0 < 4  # it waited for the calls, not the whole grace period
    for t in threads:
        t.join(5)
    results = [out.get_nowait() for _ in range(n)]
    assert all(isinstance(r, routerx.Recorded) and r.stored for r in results), results
    assert router.stats()["records"] == n and router.stats()["cache"]["entries"] == n
    with pytest.raises(RemoteError) as ei:
        c.route("too late", tenant="grace")
    assert ei.value.code == grpc.StatusCode.UNAVAILABLE
    c.close()


@pytest.mark.parametrize("sig,at_once", [(signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGINT, True)])
def test_subprocess_exits_0_on_signal(sig: int, at_once: bool) -> None:
    """A signal drains and stops the server cleanly, also one sent the moment it says it is
    listening (while it is still finishing its start-up)."""
    p = subprocess.Popen([sys.executable, "-m", "routerx.server", "--port", "0", "--grace", "2"], stderr=subprocess.PIPE, text=True)
    lines: "queue.Queue[str]" = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in p.stderr or ()], daemon=True)
    reader.start()
    log: List[str] = []
    try:
        port: Optional[int] = None
        deadline = time.monotonic() + 20
        while port is None and time.monotonic() < deadline:
            try:
                log.append(lines.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
            m = re.search(r"listening on \S+:(\d+)", log[-1])
            port = int(m.group(1)) if m else None
        assert port, "".join(log)
        if not at_once:
            with Client(f"127.0.0.1:{port}", timeout=5) as c:
                d = c.route("Are you there?", tenant="sub")
                assert c.record(d, "yes", 3, 1, 10.0).stored
        p.send_signal(sig)
        assert p.wait(10) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    reader.join(5)
    while not lines.empty():
        log.append(lines.get_nowait())
    assert "draining" in "".join(log) and "stopped" in "".join(log), "".join(log)


def test_main_exit_codes(server: RunningServer, tmp_path: Path) -> None:
    from routerx.server import main

    bad = tmp_path / "bad.toml"
    bad.write_text("[router]\nstrict = 3\n")
    assert main(["--config", str(bad), "--port", "0"]) == 2
    assert main(["--port", str(server.port)]) == 1  # in use: no silent SO_REUSEPORT sharing


# -- the decision store ---------------------------------------------------------------------------------------


def test_decision_store_expiry_eviction_and_claims() -> None:
    now = [0.0]
    s = DecisionStore(max_entries=3, ttl_s=10.0, clock=lambda: now[0])
    a, b = s.put("A"), s.put("B")
    assert a != b and len(a) == 32
    assert s.claim(a) == "A"
    with pytest.raises(RpcStatusError) as busy:
        s.claim(a)
    assert busy.value.code == grpc.StatusCode.ABORTED
    s.finish(a, None)  # failed record: claimable again
    assert s.claim(a) == "A"
    s.finish(a, routerx.Recorded(0.5, True))
    assert s.claim(a) == routerx.Recorded(0.5, True)  # replay
    s.put("C"), s.put("D")  # over capacity: the oldest (a) goes
    assert s.evicted == 1
    with pytest.raises(RpcStatusError) as gone:
        s.claim(a)
    assert gone.value.code == grpc.StatusCode.NOT_FOUND and gone.value.field == "decision_id"
    now[0] = 10.0
    with pytest.raises(RpcStatusError):
        s.claim(b)  # expired
    s.put("E")
    assert len(s) == 1 and s.expired == 3
