"""Prometheus metrics of a router, read at scrape time.

:class:`RouterCollector` is a custom collector: it reads ``router.stats()``, the accounting ledger
and the budgets when Prometheus scrapes, so routing and ``record()`` pay nothing for metrics.
:func:`start_metrics_server` serves ``/metrics`` (Prometheus text format) and ``/stats`` (JSON:
ledger rows, budgets and counters, which ``routerx stats --server URL`` reads) from a daemon
thread, alongside ``routerx serve`` or any in-process router.
"""

from __future__ import annotations

import json
import threading
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Union
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from . import _core

if TYPE_CHECKING:
    from .router import Router

#: A router, or a callable returning the one serving now.
RouterSource = Union["Router", Callable[[], "Router"]]

#: Route-latency histogram buckets, seconds (the core's own time per request: microseconds).
ROUTE_LATENCY_BUCKETS_S: Tuple[float, ...] = (5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 0.1)
_LEDGER_LABELS = ["tenant", "agent", "workflow", "step", "model", "tier"]


class RouterCollector(Collector):
    """Every routerx metric of one router, computed at collection time."""

    def __init__(self, router: "RouterSource") -> None:
        self._router = router

    @property
    def router(self) -> "Router":
        return self._router() if callable(self._router) else self._router

    def collect(self) -> Iterator[Metric]:
        r = self.router
        s = r.stats()
        yield CounterMetricFamily("routerx_requests", "Requests routed (cache hits included).", value=s["requests"])
        yield CounterMetricFamily("routerx_route_errors", "route() calls that raised (bad input, budget rejections, strict no-route).", value=s["errors"])
        yield CounterMetricFamily("routerx_best_effort", "Decisions that break a constraint because nothing fitted.", value=s["best_effort"])
        cache = CounterMetricFamily("routerx_cache_lookups", "Exact-cache outcomes of routed requests.", labels=["outcome"])
        for outcome, key in (("hit", "exact_hits"), ("miss", "misses"), ("bypass", "bypassed")):
            cache.add_metric([outcome], s[key])
        yield cache
        g = GaugeMetricFamily("routerx_cache_entries", "Entries in the exact cache.", value=s["cache"]["entries"])
        yield g
        dec = CounterMetricFamily("routerx_decisions", "Routing decisions (cache misses) per model and tier.", labels=["model", "tier"])
        for mt, n in sorted(s["decisions"].items()):
            m, _, t = mt.partition("/")
            dec.add_metric([m, t], n)
        yield dec

        counts, total_s, n = r._core.route_latency_buckets(list(ROUTE_LATENCY_BUCKETS_S))
        buckets = [(_fmt(b), float(c)) for b, c in zip(ROUTE_LATENCY_BUCKETS_S, counts)] + [("+Inf", float(n))]
        yield HistogramMetricFamily("routerx_route_latency_seconds", "Time routerx spends deciding one request.", buckets=buckets, sum_value=total_s)

        yield from self._ledger(r.ledger())
        yield from self._budgets(r.budgets())

    def _ledger(self, rows: List[Dict[str, Any]]) -> Iterator[Metric]:
        def fam(kind: Callable[..., Any], name: str, doc: str, extra: Optional[List[str]] = None) -> Any:
            return kind(name, doc, labels=_LEDGER_LABELS + (extra or []))

        calls = fam(CounterMetricFamily, "routerx_calls", "Model calls recorded, by tenant, agent, workflow, step, model and tier.")
        hits = fam(CounterMetricFamily, "routerx_cache_hits", "Requests answered from the cache, by labels and the model that produced the answer.")
        errs = fam(CounterMetricFamily, "routerx_call_errors", "Recorded model calls that failed (errors by model).")
        tokens = fam(CounterMetricFamily, "routerx_tokens", "Tokens of recorded calls.", ["direction"])
        cost = fam(CounterMetricFamily, "routerx_cost_usd", "Actual cost of recorded calls, USD.")
        avoided = fam(CounterMetricFamily, "routerx_cost_avoided_usd", "Cost avoided by cache hits (the calls that did not happen), USD.", ["reason"])
        baseline = fam(CounterMetricFamily, "routerx_baseline_cost_usd", "What the recorded calls would have cost on the baseline model, USD.")
        routing = fam(GaugeMetricFamily, "routerx_cost_avoided_routing_usd", "Baseline cost minus actual cost of recorded calls, USD (negative when routing chose dearer).")
        energy = fam(CounterMetricFamily, "routerx_energy_joules", "Estimated energy of recorded calls (catalog joules per output token).")
        # Call latency: one histogram per (model, tier), summed over the other labels.
        lat: Dict[Tuple[str, str], Tuple[List[int], float]] = {}
        for row in rows:
            labels = [row[k] for k in _LEDGER_LABELS]
            calls.add_metric(labels, row["calls"])
            hits.add_metric(labels, row["cache_hits"])
            errs.add_metric(labels, row["errors"])
            tokens.add_metric(labels + ["input"], row["input_tokens"])
            tokens.add_metric(labels + ["output"], row["output_tokens"])
            cost.add_metric(labels, row["cost_nano"] / 1e9)
            avoided.add_metric(labels + ["cache"], row["avoided_cache_nano"] / 1e9)
            baseline.add_metric(labels, (row["cost_nano"] + row["avoided_routing_nano"]) / 1e9)
            routing.add_metric(labels, row["avoided_routing_nano"] / 1e9)
            energy.add_metric(labels, row["energy_mj"] / 1e3)
            key = (row["model"], row["tier"])
            b, sm = lat.get(key, ([0] * len(row["latency_buckets"]), 0.0))
            lat[key] = ([x + y for x, y in zip(b, row["latency_buckets"])], sm + row["latency_us_sum"] / 1e6)
        yield from (calls, hits, errs, tokens, cost, avoided, baseline, routing, energy)
        h = HistogramMetricFamily("routerx_call_latency_seconds", "Latency of recorded model calls, per model and tier.", labels=["model", "tier"])
        bounds = _core.latency_buckets_ms()
        for (m, t), (b, sm) in sorted(lat.items()):
            cum, acc = [], 0
            for bound, c in zip(bounds, b):
                acc += c
                cum.append((_fmt(bound / 1e3), float(acc)))
            cum.append(("+Inf", float(sum(b))))
            h.add_metric([m, t], cum, sum_value=sm)
        yield h

    def _budgets(self, budgets: List[Dict[str, Any]]) -> Iterator[Metric]:
        labels = ["scope", "window", "metric", "action"]
        limit = GaugeMetricFamily("routerx_budget_limit", "Budget limit (USD or tokens per window).", labels=labels)
        spent = GaugeMetricFamily("routerx_budget_spent", "Spent in the budget's current window.", labels=labels)
        reserved = GaugeMetricFamily("routerx_budget_reserved", "Reserved by decisions not yet recorded.", labels=labels)
        used = GaugeMetricFamily("routerx_budget_used_ratio", "(spent + reserved) / limit.", labels=labels)
        actions = CounterMetricFamily("routerx_budget_actions", "Requests a budget warned, downgraded or rejected.", labels=labels + ["taken"])
        for b in budgets:
            lv = [b["scope"], b["window"], b["metric"], b["action"]]
            limit.add_metric(lv, b["limit"])
            spent.add_metric(lv, b["spent"])
            reserved.add_metric(lv, b["reserved"])
            used.add_metric(lv, (b["spent"] + b["reserved"]) / b["limit"] if b["limit"] else 0.0)
            for taken in ("warned", "downgraded", "rejected"):
                actions.add_metric(lv + [taken], b[taken])
        yield from (limit, spent, reserved, used, actions)


def _fmt(v: float) -> str:
    return repr(float(v))


def registry_for(router: "RouterSource") -> CollectorRegistry:
    """A registry holding only this router's collector (no process/platform collectors)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(RouterCollector(router))
    return reg


def stats_json(router: "Router") -> Dict[str, Any]:
    """What ``/stats`` serves: counters, ledger rows and budgets."""
    s = router.stats()
    return {"stats": s, "ledger": router.ledger(), "budgets": router.budgets(), "db": router.db_path}


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


class MetricsServer:
    """A running metrics endpoint: ``url``, ``port``, ``shutdown()``."""

    def __init__(self, httpd: _Server, thread: threading.Thread) -> None:
        self._httpd = httpd
        self.thread = thread
        addr = httpd.server_address
        self.host: str = addr[0] if isinstance(addr[0], str) else addr[0].decode()
        self.port: int = int(addr[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def shutdown(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self.thread.join(timeout=5)


def start_metrics_server(router: "RouterSource", host: str = "127.0.0.1", port: int = 9464) -> MetricsServer:
    """Serves ``/metrics`` (Prometheus) and ``/stats`` (JSON) for ``router`` from a daemon thread.
    ``router`` may be a callable returning the router serving now (the gRPC server's, which
    ReloadConfig replaces). ``port=0`` picks a free port (see ``.port``)."""
    collector = RouterCollector(router)
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    metrics_app = make_wsgi_app(reg)

    def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") in ("/stats", "/stats.json"):
            body = json.dumps(stats_json(collector.router)).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        return metrics_app(environ, start_response)  # type: ignore[no-any-return]

    httpd = make_server(host, port, app, server_class=_Server, handler_class=_Quiet)
    t = threading.Thread(target=httpd.serve_forever, name="routerx-metrics", daemon=True)
    t.start()
    return MetricsServer(httpd, t)
