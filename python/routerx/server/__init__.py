"""routerx over gRPC: ``serve()`` runs the ``routerx.v1.Router`` service; ``main()`` is
``routerx serve``. The client is :class:`routerx.client.Client`.

Needs the ``grpc`` extra (grpcio, grpcio-health-checking, grpcio-reflection, protobuf).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

from ..errors import ConfigError
from .app import RunningServer, serve
from .service import SERVICE_NAME, RouterService

__all__ = ["serve", "main", "RunningServer", "RouterService", "SERVICE_NAME"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``routerx serve [--config PATH] [--host H] [--port P] [--workers N] ...``: serves until
    SIGTERM/SIGINT, then drains and returns 0. A bad config returns 2, a port in use 1.

    SIGHUP is not used for reloading: call ReloadConfig (with an admin key when keys are set)."""
    ap = argparse.ArgumentParser(prog="routerx serve", description="Serve routerx.v1.Router over gRPC (with health and reflection).")
    ap.add_argument("--config", metavar="PATH", help="router config TOML (default: the embedded one)")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 or :: for all)")
    ap.add_argument("--port", type=int, default=50051, help="port (0: any free port; the log says which)")
    ap.add_argument("--workers", type=int, default=8, help="handler threads (default 8)")
    ap.add_argument("--max-concurrent-rpcs", type=int, default=None, metavar="N", help="calls admitted at once before RESOURCE_EXHAUSTED (default 32 × workers)")
    ap.add_argument("--grace", type=float, default=5.0, metavar="S", help="seconds calls in flight get to finish on SIGTERM (default 5)")
    ap.add_argument("--decision-ttl", type=float, default=3600.0, metavar="S", help="how long a decision can be recorded (default 3600)")
    ap.add_argument("--reuse-port", action="store_true", help="share the port with other server processes (SO_REUSEPORT; the kernel spreads connections): one process per core scales past the GIL")
    ap.add_argument("--metrics-port", type=int, default=None, metavar="P", help="also serve Prometheus /metrics and JSON /stats over HTTP on this port (same host; 0 picks one)")
    ap.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="DEBUG logs one line per request")
    a = ap.parse_args(argv)
    if a.workers < 1 or not 0 <= a.port < 65536:
        ap.error("--workers must be ≥ 1 and --port in [0, 65535]")
    logging.basicConfig(level=a.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        serve(a.config, a.host, a.port, a.workers, a.max_concurrent_rpcs, block=True, grace=a.grace, decision_ttl_s=a.decision_ttl, reuse_port=a.reuse_port, metrics_port=a.metrics_port)
    except ConfigError as e:
        print(f"routerx serve: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"routerx serve: {e}", file=sys.stderr)
        return 1
    return 0
