"""Building and running the gRPC server: options, health, reflection, signals, graceful stop."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import threading
from concurrent import futures
from typing import TYPE_CHECKING, Any, Iterator, List, Optional, Tuple

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ..config import ConfigInput
from ..errors import ConfigError
from ..router import Router

if TYPE_CHECKING:
    from ..metrics import MetricsServer
from .service import SERVICE_NAME, RouterService, add_to_server

log = logging.getLogger("routerx.server")

MAX_MESSAGE_BYTES = 16 << 20  # 4× the default max prompt, room for batches
DEFAULT_GRACE_S = 5.0


class RunningServer:
    """A started server. ``stop(grace)`` drains it: health turns NOT_SERVING (so load balancers
    stop sending), new calls are refused, calls in flight get ``grace`` seconds to finish, then
    the routers the server built are closed (their accounting flushed)."""

    def __init__(self, server: grpc.Server, port: int, host: str, service: RouterService, health: health.HealthServicer, pools: List[futures.ThreadPoolExecutor]) -> None:
        self.server = server
        self.port = port
        self.host = host
        self.service = service
        self.health = health
        self._pools = pools
        self._stopped = threading.Event()
        #: The HTTP metrics endpoint, when serve() was given a metrics_port.
        self.metrics: Optional["MetricsServer"] = None

    @property
    def router(self) -> Router:
        """The router serving now (ReloadConfig replaces it)."""
        return self.service.router

    @property
    def target(self) -> str:
        return f"{_host(self.host)}:{self.port}"

    def stop(self, grace: Optional[float] = DEFAULT_GRACE_S) -> None:
        """Blocks until the server has stopped (at most ``grace`` seconds after the call)."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        self._finished()

    def _finished(self) -> None:
        # grpc does not own the executors it was given: release their threads.
        for p in self._pools:
            p.shutdown(wait=False)
        # No call is running any more: close the routers the server built, which flushes their
        # accounting and snapshots the cache when [cache] snapshot_dir is set.
        self.service.close()
        if self.metrics is not None:
            self.metrics.shutdown()
        self._stopped.set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """True once the server has terminated (grpc's wait_for_termination returns "timed out")."""
        return not self.server.wait_for_termination(timeout)

    def __enter__(self) -> "RunningServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self._stopped.is_set():
            self.stop(0)


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def server_options(max_message_bytes: int = MAX_MESSAGE_BYTES, reuse_port: bool = False) -> List[Tuple[str, Any]]:
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        # gRPC enables SO_REUSEPORT by default: a second server on the same port would then bind
        # silently and steal half the connections. Fail the bind instead, unless asked to share
        # the port (several server processes, one per core, the kernel spreading connections).
        ("grpc.so_reuseport", 1 if reuse_port else 0),
        # Let clients keep idle connections alive with pings, but not flood the server with them.
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ]


def serve(
    config: ConfigInput = None,
    host: str = "127.0.0.1",
    port: int = 50051,
    workers: int = 8,
    max_concurrent_rpcs: Optional[int] = None,
    block: bool = True,
    *,
    router: Optional[Router] = None,
    grace: float = DEFAULT_GRACE_S,
    max_decisions: int = 100_000,
    decision_ttl_s: float = 3600.0,
    max_batch: int = 10_000,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    reuse_port: bool = False,
    max_streams: Optional[int] = None,
    metrics_port: Optional[int] = None,
) -> RunningServer:
    """Serves ``routerx.v1.Router`` (plus grpc.health.v1 and reflection) on ``host:port``.

    ``port=0`` binds a free port (see ``.port`` of the result). ``workers`` threads handle
    calls; the router releases the GIL in its core, so they run in parallel there.
    ``max_concurrent_rpcs`` (default 32 × workers) bounds calls admitted at once, running or
    queued: beyond it gRPC answers RESOURCE_EXHAUSTED at once instead of queueing without
    limit. ``router`` shares an existing Router (``config`` is then ignored).

    ``block=True`` runs until SIGTERM/SIGINT (from the main thread), drains for ``grace``
    seconds (a second signal stops at once) and returns. ``block=False`` returns the running
    server; call ``.stop(grace)``.

    ``max_decisions`` / ``decision_ttl_s`` bound the decisions held for Record: a Record later
    than the TTL (or after ``max_decisions`` newer decisions) gets NOT_FOUND, so the TTL must
    cover the slowest model call (hours for batch tiers).

    The config's ``[server]`` section holds the API keys (see :mod:`routerx.server.auth`);
    ReloadConfig re-reads ``config``. ``reuse_port`` lets several server processes listen on
    one port (SO_REUSEPORT). ``max_streams`` (default workers / 2) bounds open RouteStream
    calls, each of which holds a worker thread while open. ``metrics_port`` also serves
    Prometheus ``/metrics`` and JSON ``/stats`` of the serving router over HTTP.
    """
    if workers < 1:
        raise ValueError("workers must be ≥ 1")
    owned = router is None
    router = router if router is not None else Router(config)
    try:
        service = RouterService(
            router,
            config=config,
            reloadable=owned,
            owned=owned,
            max_decisions=max_decisions,
            decision_ttl_s=decision_ttl_s,
            max_batch=max_batch,
            max_streams=max_streams if max_streams is not None else max(1, workers // 2),
        )
    except ConfigError:
        if owned:
            router.close()
        raise
    limit = max_concurrent_rpcs if max_concurrent_rpcs is not None else 32 * workers
    pools = [futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="routerx-rpc"), futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="routerx-health")]
    server = grpc.server(
        pools[0],
        options=server_options(max_message_bytes, reuse_port),
        maximum_concurrent_rpcs=limit,
    )
    add_to_server(service, server)
    # The health service's Watch streams run on their own small pool, so they hold no worker.
    hs = health.HealthServicer(experimental_non_blocking=True, experimental_thread_pool=pools[1])
    health_pb2_grpc.add_HealthServicer_to_server(hs, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    address = f"{_host(host)}:{port}"
    try:
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError as e:  # grpcio ≥ 1.50 raises; older versions return 0
            raise OSError(f"cannot listen on {address}: {e}") from None
        if not bound:
            raise OSError(f"cannot listen on {address}")
    except OSError:
        for p in pools:
            p.shutdown(wait=False)
        service.close()
        raise
    # With block, SIGTERM/SIGINT are caught from before the port opens: a signal that arrives
    # while the server finishes starting drains it like any other, instead of killing it.
    with _signal_flags(block) as signals:
        server.start()
        for name in ("", SERVICE_NAME):
            hs.set(name, health_pb2.HealthCheckResponse.SERVING)
        running = RunningServer(server, bound, host, service, hs, pools)
        if metrics_port is not None:
            from ..metrics import start_metrics_server

            try:
                running.metrics = start_metrics_server(lambda: service.router, host, metrics_port)
            except OSError:
                running.stop(0)
                raise
            log.info("metrics on %s/metrics", running.metrics.url)
        keys = service.state.settings.api_keys
        log.info(
            "routerx gRPC server listening on %s:%d (workers=%d, max_concurrent_rpcs=%d, classifier=%s, auth=%s%s, pid=%d)",
            _host(host), bound, workers, limit, router.stats()["classifier"],
            f"{len(keys)} API keys" if keys else "off", ", SO_REUSEPORT" if reuse_port else "", os.getpid(),
        )  # fmt: skip
        if block:
            # This process is the server's: move everything built so far (modules, the router, the
            # catalog) out of the cycle collector's reach. Full collections then walk only what
            # requests create, instead of pausing every call in flight for ~10 ms now and then.
            gc.collect()
            gc.freeze()
            _run_until_signalled(running, grace, signals)
    return running


@contextlib.contextmanager
def _signal_flags(install: bool) -> Iterator[List[int]]:
    """Records SIGTERM/SIGINT in the list it yields (with ``install``, on the main thread), and
    puts the previous handlers back on exit. The handlers only append: they run between
    bytecodes of the main thread, where taking a lock could deadlock."""
    signals: List[int] = []
    previous = {}
    if install and threading.current_thread() is threading.main_thread():
        for s in (signal.SIGTERM, signal.SIGINT):
            previous[s] = signal.signal(s, lambda signum, frame: signals.append(signum))
    try:
        yield signals
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _run_until_signalled(running: RunningServer, grace: float, signals: List[int]) -> None:
    """Waits for a signal in ``signals`` (or a stop from elsewhere), then drains."""
    while not signals and not running.wait(0.25):
        pass
    if signals:
        log.info("signal %s: draining for up to %.1f s", signal.Signals(signals[0]).name, grace)
    running.health.enter_graceful_shutdown()
    done = running.server.stop(grace)
    n = len(signals)
    while not done.wait(0.1):
        if len(signals) > n:  # a second signal: do not wait for the grace period
            log.warning("second signal: stopping now")
            running.server.stop(0)
            n = len(signals)
    running._finished()
    log.info("routerx gRPC server stopped")
