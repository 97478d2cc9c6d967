"""Single flight: identical requests in flight at once make one model call."""

from __future__ import annotations

import threading
import time
from typing import Any, List

import pytest

import routerx

PROMPT = "Single flight: summarise the plot of Hamlet in two sentences."


def race(r: routerx.Router, n: int, record_after_s: float, ok: bool = True, **kw: Any) -> List[Any]:
    """n threads route PROMPT at once; whoever gets a miss 'calls the model' and records."""
    barrier = threading.Barrier(n)
    out: List[Any] = []
    lock = threading.Lock()

    def work() -> None:
        barrier.wait()
        d = r.route(PROMPT, **kw)
        if d.cache == "miss":
            time.sleep(record_after_s)
            r.record(d, "Hamlet avenges his father; almost everyone dies.", 20, 12, record_after_s * 1000, ok=ok)
        with lock:
            out.append(d)

    threads = [threading.Thread(target=work) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


ON = {"cache": {"single_flight_timeout_s": 10}}


def test_concurrent_identical_requests_make_one_call() -> None:
    r = routerx.Router(ON, db=None)
    ds = race(r, 16, 0.3)
    assert len(ds) == 16
    assert [d.cache for d in ds].count("miss") == 1, [d.cache for d in ds]
    assert all(d.cached_response == "Hamlet avenges his father; almost everyone dies." for d in ds if d.cache == "exact")
    assert r.stats()["records"] == 1
    s = r.stats()
    assert (s["requests"], s["misses"], s["exact_hits"]) == (16, 1, 15), "each request counted once"


def test_single_flight_over_the_wire() -> None:
    from routerx.server import serve

    srv = serve({"cache": {"single_flight_timeout_s": 10}, "accounting": {"db": ""}}, port=0, block=False, workers=12)
    try:
        c = routerx.Client(srv.target, timeout=30)
        barrier = threading.Barrier(8)
        out: List[Any] = []

        def work() -> None:
            barrier.wait()
            d = c.route(PROMPT, tenant="wire")
            if d.cache == "miss":
                time.sleep(0.3)
                c.record(d, "one answer", 10, 3, 300.0)
            out.append(d.cache)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(out) == ["exact"] * 7 + ["miss"], out
        c.close()
    finally:
        srv.stop(0)


def test_a_leader_that_never_records_delays_the_others_only_until_the_timeout() -> None:
    r = routerx.Router({"cache": {"single_flight_timeout_s": 0.3}}, db=None)
    leader = r.route(PROMPT)
    assert leader.cache == "miss"
    t0 = time.monotonic()
    out: List[Any] = []
    th = threading.Thread(target=lambda: out.append(r.route(PROMPT)))
    th.start()
    th.join(10)
    assert out[0].cache == "miss" and 0.25 <= time.monotonic() - t0 < 5


def test_the_same_thread_and_uncacheable_requests_never_wait() -> None:
    r = routerx.Router({"cache": {"single_flight_timeout_s": 30}}, db=None)
    t0 = time.monotonic()
    assert r.route(PROMPT).cache == "miss" and r.route(PROMPT).cache == "miss"
    ds = race(r, 4, 0.2, no_store=True)
    assert [d.cache for d in ds].count("miss") == 4
    off = routerx.Router(db=None)  # off by default
    assert [d.cache for d in race(off, 4, 0.2)].count("miss") == 4
    assert time.monotonic() - t0 < 10


def test_a_failed_call_releases_the_waiters() -> None:
    r = routerx.Router(ON, db=None)
    t0 = time.monotonic()
    ds = race(r, 6, 0.2, ok=False)
    assert len(ds) == 6 and time.monotonic() - t0 < 8
    assert all(d.cache == "miss" for d in ds)  # nothing was cached: each routed for itself


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "1"])
def test_bad_timeout_is_a_config_error(bad: Any) -> None:
    with pytest.raises(routerx.ConfigError) as ei:
        routerx.Router({"cache": {"single_flight_timeout_s": bad}}, db=None)
    assert "single_flight_timeout_s" in str(ei.value)


def test_a_lookup_never_waits_on_a_flight() -> None:
    """Lookup reads the exact cache only: with the same request in flight it answers None at
    once, in-process and over the wire, instead of joining the flight (it used to route, and so
    wait up to the flight timeout), and it counts no request."""
    from routerx.server import serve

    srv = serve({"cache": {"single_flight_timeout_s": 10}, "accounting": {"db": ""}}, port=0, block=False, workers=4)
    try:
        r = srv.router
        c = routerx.Client(srv.target, timeout=30)
        leader = c.route(PROMPT, tenant="lk")  # in flight until recorded
        assert leader.cache == "miss"
        before = r.stats()["requests"]
        t0 = time.monotonic()
        assert c.lookup(PROMPT, tenant="lk") is None
        assert r.lookup(PROMPT, tenant="lk") is None
        assert time.monotonic() - t0 < 2.0
        assert r.stats()["requests"] == before, "a miss is not a request"
        c.record(leader, "one answer", 10, 3, 300.0)
        got = c.lookup(PROMPT, tenant="lk")
        assert got is not None and got.cached_response == "one answer" and got.entry_id == leader.entry_id
        c.close()
    finally:
        srv.stop(0)
