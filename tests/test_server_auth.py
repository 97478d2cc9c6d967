"""The gRPC service's API keys and tenant isolation, Lookup, Invalidate by entry, RouteStream
and ReloadConfig: real servers on 127.0.0.1, port 0, in this process."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

grpc = pytest.importorskip("grpc")
pytest.importorskip("grpc_health")

import routerx  # noqa: E402
from routerx.client import AccessDeniedError, Client, UnknownDecisionError  # noqa: E402
from routerx.server import serve  # noqa: E402
from routerx.server._proto.routerx.v1 import router_pb2 as pb  # noqa: E402
from routerx.server._proto.routerx.v1 import router_pb2_grpc as pb_grpc  # noqa: E402
from routerx.server.app import RunningServer  # noqa: E402
from routerx.server.auth import server_settings  # noqa: E402

from conftest import run_threads  # noqa: E402

KEY_A = "acme-key-0123456789abcdef"
KEY_B = "globex-key-0123456789abcdef"  # configured by its SHA-256 only
KEY_ADMIN = "admin-key-0123456789abcdef"


def sha(k: str) -> str:
    return hashlib.sha256(k.encode()).hexdigest()


def keys_toml(*extra: str) -> str:
    return "\n".join(
        [
            "[[server.api_keys]]",
            f'key = "{KEY_A}"',
            'tenant = "acme"',
            'name = "acme-prod"',
            "[[server.api_keys]]",
            f'key_sha256 = "{sha(KEY_B)}"',
            'tenant = "globex"',
            "[[server.api_keys]]",
            f'key_sha256 = "{sha(KEY_ADMIN)}"',
            "admin = true",
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    cfg = tmp_path_factory.mktemp("auth") / "routerx.toml"
    cfg.write_text(keys_toml())
    srv = serve(str(cfg), port=0, block=False, workers=8)
    yield srv
    srv.stop(0)


@pytest.fixture(scope="module")
def a(server: RunningServer) -> Iterator[Client]:
    with Client(server.target, timeout=10, api_key=KEY_A) as c:
        yield c


@pytest.fixture(scope="module")
def b(server: RunningServer) -> Iterator[Client]:
    with Client(server.target, timeout=10, api_key=KEY_B) as c:
        yield c


@pytest.fixture(scope="module")
def admin(server: RunningServer) -> Iterator[Client]:
    with Client(server.target, timeout=10, api_key=KEY_ADMIN) as c:
        yield c


def denied(fn: Any, *args: Any, **kw: Any) -> AccessDeniedError:
    with pytest.raises(AccessDeniedError) as ei:
        fn(*args, **kw)
    return ei.value


# -- config -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "table,field",
    [
        ({"api_keys": [{"tenant": "x"}]}, "server.api_keys[0]"),
        ({"api_keys": [{"key": "short", "tenant": "x"}]}, "server.api_keys[0].key"),
        ({"api_keys": [{"key_sha256": "abc", "tenant": "x"}]}, "server.api_keys[0].key_sha256"),
        ({"api_keys": [{"key": KEY_A, "key_sha256": sha(KEY_A), "tenant": "x"}]}, "server.api_keys[0]"),
        ({"api_keys": [{"key": KEY_A}]}, "server.api_keys[0].tenant"),
        ({"api_keys": [{"key": KEY_A, "tenant": "x", "admin": "yes"}]}, "server.api_keys[0].admin"),
        ({"api_keys": [{"key": KEY_A, "tenant": "x", "role": "owner"}]}, "server.api_keys[0].role"),
        ({"api_keys": [{"key": KEY_A, "tenant": "x"}, {"key_sha256": sha(KEY_A), "tenant": "y"}]}, "server.api_keys[1]"),
        ({"keys": []}, "server.keys"),
    ],
)
def test_bad_server_config_names_the_field_and_never_the_key(table: Dict[str, Any], field: str) -> None:
    with pytest.raises(routerx.ConfigError) as ei:
        server_settings(table, "t.toml")
    assert ei.value.field == field and field in str(ei.value)
    assert KEY_A not in str(ei.value)


def test_serve_refuses_a_bad_server_section(tmp_path: Path) -> None:
    from routerx.server import main

    bad = tmp_path / "bad.toml"
    bad.write_text('[[server.api_keys]]\nkey = "x"\ntenant = "a"\n')
    assert main(["--config", str(bad), "--port", "0"]) == 2


def test_authenticate_compares_digests() -> None:
    s = server_settings({"api_keys": [{"key": KEY_A, "tenant": "acme"}, {"key_sha256": sha(KEY_B).upper(), "tenant": "globex"}]})
    assert s.authenticate(f"Bearer {KEY_A}").tenant == "acme"  # type: ignore[union-attr]
    assert s.authenticate(f"bearer   {KEY_B} ").tenant == "globex"  # type: ignore[union-attr]
    for bad in (None, "", KEY_A, f"Basic {KEY_A}", "Bearer ", f"Bearer {KEY_A}x", f"Bearer {KEY_A[:-1]}"):
        assert s.authenticate(bad) is None, bad


# -- authentication ------------------------------------------------------------------------------------


def test_every_routerx_call_needs_a_key_but_health_and_reflection_do_not(server: RunningServer) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    ch = grpc.insecure_channel(server.target)
    stub = pb_grpc.RouterStub(ch)
    calls = [
        (stub.Route, pb.RouteRequest(prompt="hi")),
        (stub.RouteBatch, pb.RouteBatchRequest(requests=[pb.RouteRequest(prompt="hi")])),
        (stub.Record, pb.RecordRequest(decision_id="0" * 32)),
        (stub.Feedback, pb.FeedbackRequest(decision_id="0" * 32, outcome=1.0)),
        (stub.Lookup, pb.LookupRequest(prompt="hi")),
        (stub.Invalidate, pb.InvalidateRequest()),
        (stub.Stats, pb.StatsRequest()),
        (stub.GetCatalog, pb.GetCatalogRequest()),
        (stub.ReloadConfig, pb.ReloadConfigRequest()),
    ]
    for md in [None, (("authorization", "Bearer wrong-key-0123456789"),), (("authorization", KEY_A),), (("authorization", "Basic " + KEY_A),)]:
        for fn, req in calls:
            with pytest.raises(grpc.RpcError) as ei:
                fn(req, timeout=5, metadata=md)
            assert ei.value.code() == grpc.StatusCode.UNAUTHENTICATED, (fn, md, ei.value)
        with pytest.raises(grpc.RpcError) as es:
            list(stub.RouteStream(iter([pb.RouteRequest(prompt="hi")]), timeout=5, metadata=md))
        assert es.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # Load balancers and tools still work without a key.
    assert health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
    assert "routerx.v1.Router" in set(ProtoReflectionDescriptorDatabase(ch).get_services())
    ch.close()
    with Client(server.target, timeout=5) as anonymous:
        e = denied(anonymous.route, "hi")
    assert e.code == grpc.StatusCode.UNAUTHENTICATED and isinstance(e, PermissionError)


def test_keys_are_never_logged(server: RunningServer, a: Client, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="routerx.server"):
        a.route("Log me, not my key.")
        with Client(server.target, timeout=5, api_key="not-a-real-key-0123456789") as bad:
            denied(bad.route, "hi")
        with Client(server.target, timeout=5, metadata=(("x-request-id", "rid-auth-log"),), api_key=KEY_A) as c:
            c.route("hello", tenant="acme")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "key=acme-prod" in text and "status=UNAUTHENTICATED" in text and "rid-auth-log" in text
    for secret in (KEY_A, "not-a-real-key-0123456789", sha(KEY_A)):
        assert secret not in text


# -- tenants --------------------------------------------------------------------------------------------


def test_the_key_decides_the_tenant(a: Client, b: Client, admin: Client) -> None:
    assert a.route("Which tenant am I?").tenant == "acme"
    assert a.route("Which tenant am I?", tenant="acme").tenant == "acme"
    e = denied(a.route, "Which tenant am I?", tenant="globex")
    assert e.code == grpc.StatusCode.PERMISSION_DENIED and "tenant" in str(e)
    denied(a.route_many, ["x", {"prompt": "y", "tenant": "globex"}])
    denied(a.lookup, "x", tenant="globex")
    denied(a.stats, tenant="globex")
    denied(a.invalidate, "globex")
    denied(a.reload_config)
    # Another tenant's decision is unknown to a tenant key, for a label as for a Record.
    theirs = b.route("Which tenant am I?", no_cache=True)
    with pytest.raises(UnknownDecisionError):
        a.feedback(theirs.decision_id, 1.0)
    assert b.feedback(theirs, 1.0) is False  # no learned router here
    assert b.route("Which tenant am I?").tenant == "globex"
    # An admin key names any tenant; without one it gets the router's default.
    assert admin.route("Which tenant am I?", tenant="acme").tenant == "acme"
    assert admin.route("Which tenant am I?").tenant == "default"


def test_the_key_decides_the_tenant_on_exact_hits(server: RunningServer, a: Client, admin: Client) -> None:
    """Route's exact-hit fast path applies the same key rules as the general path."""
    prompt = "Translate into Spanish: the key decides the tenant."
    d = a.route(prompt)
    a.record(d, "La clave decide el inquilino.", 9, 6, 100.0)
    assert server.service.state.fast is not None
    hit = a.route(prompt)
    assert hit.cache == "exact" and hit.tenant == "acme" and a.route(prompt, tenant="acme").cache == "exact"
    e = denied(a.route, prompt, tenant="globex")
    assert e.code == grpc.StatusCode.PERMISSION_DENIED and "tenant" in str(e)
    assert admin.route(prompt, tenant="acme").cache == "exact"
    assert admin.route(prompt).tenant == "default"  # an admin key without a tenant: the default, a miss
    with Client(server.target, timeout=5) as anonymous:
        assert denied(anonymous.route, prompt, tenant="acme").code == grpc.StatusCode.UNAUTHENTICATED
    with Client(server.target, timeout=5, api_key="wrong-key-0123456789") as wrong:
        assert denied(wrong.route, prompt, tenant="acme").code == grpc.StatusCode.UNAUTHENTICATED
    assert a.stats()["exact_hits"] >= 2


def test_tenants_see_only_their_own_entries_and_stats(a: Client, b: Client, admin: Client) -> None:
    prompt = "Summarize: the board approved the merger after a four-hour meeting."
    da = a.route(prompt)
    assert a.record(da, "Merger approved (acme).", 14, 4, 120.0).stored
    db = b.route(prompt)
    assert db.cache == "miss" and db.entry_id != da.entry_id  # the tenant is part of the key
    # B can neither record A's decision, nor read, nor drop A's entry.
    with pytest.raises(UnknownDecisionError):
        b.record(da.decision_id, "hijacked", 1, 1, 1.0)
    assert b.lookup(prompt) is None
    assert b.invalidate(entry_id=da.entry_id) == 0
    assert b.invalidate() == 0  # its own tenant only: A's entry stays
    hit = a.route(prompt)
    assert hit.cache == "exact" and hit.cached_response == "Merger approved (acme)."
    found = a.lookup(prompt)
    assert found is not None and found.cached_response == "Merger approved (acme)." and found.entry_id == da.entry_id
    # Stats: A's own figures, B's own, the admin's whole-server view.
    sa, sb, everything = a.stats(), b.stats(), admin.stats()
    assert sa["tenant"] == "acme" and sb["tenant"] == "globex" and everything["tenant"] is None
    assert sa["exact_hits"] >= 1 and sa["records"] >= 1 and sa["cache"]["entries"] >= 1
    assert sb["exact_hits"] == 0 and sb["records"] == 0 and sb["cache"]["entries"] == 0
    assert sa["route_latency"]["count"] == 0 and sa["cache"]["bytes"] == 0  # nothing server-wide
    assert everything["requests"] >= sa["requests"] + sb["requests"]
    assert admin.stats(tenant="acme")["records"] == sa["records"]
    assert sum(sa["decisions"].values()) == sa["misses"] + sa["bypassed"]


def test_isolation_under_concurrency(server: RunningServer) -> None:
    """Two tenants route, record and hit the same prompts from many threads at once: every hit
    carries the caller's own tenant's answer."""
    prompts = [f"Concurrency check {i}: what is {i} squared?" for i in range(10)]
    errors: List[BaseException] = []
    clients = {"acme": Client(server.target, timeout=20, api_key=KEY_A), "globex": Client(server.target, timeout=20, api_key=KEY_B)}

    def worker(t: int) -> None:
        tenant = "acme" if t % 2 else "globex"
        c = clients[tenant]
        try:
            for i in range(len(prompts)):
                p = prompts[(t + i) % len(prompts)]
                d = c.route(p)
                assert d.tenant == tenant
                if d.cache == "miss":
                    c.record(d, f"{tenant}:{p}", 10, 3, 50.0)
                elif d.cache == "exact":
                    assert d.cached_response == f"{tenant}:{p}", (tenant, d.cached_response)
                found = c.lookup(p)
                assert found is None or found.cached_response == f"{tenant}:{p}"
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    run_threads(24, worker)
    for c in clients.values():
        c.close()
    assert not errors, errors[:3]


# -- Lookup and Invalidate by entry ---------------------------------------------------------------------


def test_lookup_finds_only_the_exact_key(admin: Client) -> None:
    prompt = "Translate into Italian: see you tomorrow."
    assert admin.lookup(prompt, tenant="lk") is None
    before = admin.stats(tenant="lk")
    d = admin.route(prompt, tenant="lk", tools=[{"name": "t"}])
    admin.record(d, "A domani.", 9, 3, 80.0)
    got = admin.lookup(prompt, tenant="lk", tools=[{"name": "t"}])
    assert got is not None and got.cached_response == "A domani." and got.entry_id == d.entry_id
    assert (got.model, got.tier, got.tenant) == (d.model, d.tier, "lk") and got.entry_age_s >= 0 and got.cost_avoided_usd > 0
    # The key includes tools, params, allowed models and tenant.
    assert admin.lookup(prompt, tenant="lk") is None
    assert admin.lookup(prompt, tenant="lk", tools=[{"name": "t"}], params={"temperature": 0}) is None
    assert admin.lookup(prompt, tenant="other", tools=[{"name": "t"}]) is None
    assert admin.lookup(prompt, tenant="lk", tools=[{"name": "t"}], models=[d.model]) is None
    # A lookup is not a routing request of the tenant.
    after = admin.stats(tenant="lk")
    assert after["requests"] == before["requests"] + 1
    with pytest.raises(routerx.InvalidRequestError) as ei:
        admin.lookup("", tenant="lk")
    assert ei.value.field == "messages"


def test_invalidate_one_entry(a: Client, admin: Client, server: RunningServer) -> None:
    p1, p2 = "Invalidate me: capital of Peru?", "Keep me: capital of Chile?"
    d1, d2 = a.route(p1), a.route(p2)
    a.record(d1, "Lima", 8, 1, 50.0)
    a.record(d2, "Santiago", 8, 1, 50.0)
    entries = a.stats()["cache"]["entries"]
    assert a.invalidate(entry_id=d1.entry_id) == 1
    assert a.invalidate(entry_id=d1.entry_id) == 0  # already gone
    assert a.stats()["cache"]["entries"] == entries - 1
    assert [d.cache for d in a.route_many([p1, p2])] == ["miss", "exact"]
    again = a.route(p1)
    assert again.cache == "miss" and again.cached_response is None
    assert a.lookup(p1) is None
    assert a.route(p2).cached_response == "Santiago"
    # A new answer for the same request is cached again, under the same entry id.
    a.record(again, "Lima, Peru", 8, 2, 50.0)
    hit = a.route(p1)
    assert hit.cache == "exact" and hit.cached_response == "Lima, Peru" and hit.entry_id == d1.entry_id
    # The admin may drop any tenant's entry.
    assert admin.invalidate(entry_id=d2.entry_id) == 1
    assert a.route(p2).cache == "miss"
    stub = pb_grpc.RouterStub(grpc.insecure_channel(server.target))
    md = (("authorization", f"Bearer {KEY_ADMIN}"),)
    for req, field in [(pb.InvalidateRequest(entry_id="xyz"), "entry_id"), (pb.InvalidateRequest(entry_id=d1.entry_id, tenant="acme"), "entry_id")]:
        with pytest.raises(grpc.RpcError) as ei:
            stub.Invalidate(req, timeout=5, metadata=md)
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert dict(ei.value.trailing_metadata())["routerx-field"] == field


# -- RouteStream ------------------------------------------------------------------------------------------


def test_route_stream_matches_route_many(admin: Client) -> None:
    items: List[Any] = [f"Stream item {i}: name a prime above {i * 10}." for i in range(20)]
    items.append({"prompt": [{"role": "user", "content": "Write a limerick."}], "latency_budget_ms": 3000})
    want = admin.route_many(items, tenant="stream", no_cache=True)
    got = list(admin.route_stream(iter(items), tenant="stream", no_cache=True))
    assert [(g.model, g.tier, g.category, g.complexity, g.cache) for g in got] == [(w.model, w.tier, w.category, w.complexity, w.cache) for w in want]
    assert len({g.decision_id for g in got}) == len(got)
    admin.record(got[0], "recorded from a stream", 5, 5, 10.0)
    # A bad item ends the stream, naming its index; what came before it was answered.
    seen: List[Any] = []
    with pytest.raises(routerx.InvalidConstraintError) as ei:
        for d in admin.route_stream(["fine", "also fine", {"prompt": "bad", "max_cost_usd": -1.0}, "never"], tenant="stream"):
            seen.append(d)
    assert len(seen) == 2 and "requests[2]" in str(ei.value) and ei.value.field == "max_cost_usd"


def test_route_stream_tenant_key(a: Client) -> None:
    assert {d.tenant for d in a.route_stream(["one", "two"])} == {"acme"}
    with pytest.raises(AccessDeniedError):
        list(a.route_stream(["one", {"prompt": "two", "tenant": "globex"}]))


# -- ReloadConfig -----------------------------------------------------------------------------------------


def test_reload_config_swaps_router_and_keys(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = tmp_path / "routerx.toml"
    cfg.write_text(keys_toml())
    srv = serve(str(cfg), port=0, block=False, workers=4)
    try:
        a = Client(srv.target, timeout=10, api_key=KEY_A)
        admin = Client(srv.target, timeout=10, api_key=KEY_ADMIN)
        d = a.route("Before the reload: 1 + 1?")
        a.record(d, "2", 6, 1, 10.0)
        pending = a.route("Recorded after the reload")
        denied(a.reload_config)
        # A broken file changes nothing.
        cfg.write_text(keys_toml("[router]", "strict = 3"))
        with pytest.raises(routerx.ConfigError) as ei:
            admin.reload_config()
        assert "strict" in str(ei.value)
        assert a.route("Before the reload: 1 + 1?").cache == "exact"
        # The new file: A's key is gone, a new tenant key appears, a new default latency budget.
        new_key = "initech-key-0123456789abcdef"
        text = keys_toml().replace(f'key = "{KEY_A}"', f'key = "{new_key}"').replace('tenant = "acme"', 'tenant = "initech"')
        cfg.write_text(text + "\n[router]\ndefault_tenant = \"fresh\"\n")
        old_router = srv.router
        out = admin.reload_config()
        assert out == {"source": str(cfg), "classifier": "default-v1", "models": len(old_router.catalog.models), "api_keys": 3, "cache_entries_dropped": 1}
        assert srv.router is not old_router and srv.router.config.default_tenant == "fresh"
        assert denied(a.route, "hi").code == grpc.StatusCode.UNAUTHENTICATED
        with Client(srv.target, timeout=10, api_key=new_key) as n:
            assert n.route("Before the reload: 1 + 1?").tenant == "initech"
        assert admin.route("Before the reload: 1 + 1?", tenant="acme").cache == "miss"  # empty cache
        assert admin.route("anyone?").tenant == "fresh"
        # A decision made before the reload is still recorded, by the router that made it.
        assert admin.record(pending, "late answer", 5, 2, 30.0).stored
        assert old_router.stats()["records"] == 2 and srv.router.stats()["records"] == 0
        a.close()
        admin.close()
    finally:
        srv.stop(0)


def test_reload_needs_a_config() -> None:
    srv = serve(port=0, block=False, workers=2, router=routerx.Router())
    try:
        with Client(srv.target, timeout=5) as c:
            with pytest.raises(routerx.ConfigError) as ei:
                c.reload_config()
        assert "nothing to reload" in str(ei.value)
    finally:
        srv.stop(0)


def test_budget_rejection_is_resource_exhausted() -> None:
    srv = serve({"budgets": [{"scope": "tenant:tight", "tokens_per_hour": 1, "action": "reject"}]}, port=0, block=False, workers=2)
    try:
        with Client(srv.target, timeout=5) as c:
            with pytest.raises(routerx.BudgetExceededError) as ei:
                c.route("This request does not fit a one-token budget.", tenant="tight")
            assert ei.value.scope == "tenant:tight"
            assert c.route("Other tenants are not limited.", tenant="loose").model
    finally:
        srv.stop(0)


def test_entry_index_bounds_and_tombstones() -> None:
    from routerx.server.tenants import OVERFLOW_TENANT, EntryIndex, TenantCounters

    now = [100.0]
    ix = EntryIndex(max_entries=3, clock=lambda: now[0])
    for i, t in enumerate("aab"):
        ix.stored(f"e{i}", t)
    assert (ix.count("a"), ix.count("b")) == (2, 1)
    ix.stored("e3", "b")  # over the bound: the oldest (e0) is forgotten
    assert (ix.count("a"), ix.count("b")) == (1, 2)
    assert ix.invalidate("e1", "b") == 0 and ix.invalidate("e1", "a") == 1 and ix.count("a") == 0
    assert ix.invalidated("e1", 99.0) and ix.invalidated("e1", 100.0) and not ix.invalidated("e1", 100.5)
    ix.stored("e1", "a")  # a new answer clears the tombstone
    assert not ix.invalidated("e1", 50.0) and ix.count("a") == 1
    ix.missed("e1")
    assert ix.count("a") == 0
    ix.invalidate_tenant(None)
    assert ix.count("b") == 0
    tc = TenantCounters(max_tenants=2)
    for t in ("x", "y", "z", "w"):
        tc.of(t).n[0] += 1
    assert tc.snapshot("x")[0]["requests"] == 1 and tc.snapshot(OVERFLOW_TENANT)[0]["requests"] == 2
