"""Persistence of the accounting ledger: an embedded SQLite database, written off the hot path.

The Rust core keeps the ledger in memory (atomic counters per tenant/agent/workflow/step/model/
tier). A background thread of :class:`AccountingStore` wakes every flush interval, drains what
changed since its previous drain, and adds it to the database in one transaction. The database
is in WAL mode with ``synchronous=NORMAL``: a committed flush survives a crash of the process
(even ``kill -9``), so a crash loses at most what was recorded since the last flush — one flush
interval. (A power loss may also lose the last committed flushes; that is the price of not
syncing the disk on every flush.) Several processes may share one database: writes add to the
totals, they never overwrite them.

Schema ``routerx_accounting`` version 1 (in the ``meta`` table): one ``usage`` row per UTC hour
and (tenant, agent, workflow, step, model, tier), each column a sum over that hour. Empty labels
are stored as ``''``.
"""

from __future__ import annotations

import atexit
import os
import sqlite3
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import ConfigError

SCHEMA = "routerx_accounting"
SCHEMA_VERSION = 1
LABELS: Tuple[str, ...] = ("tenant", "agent", "workflow", "step", "model", "tier")
COUNTERS: Tuple[str, ...] = (
    "calls", "cache_hits", "errors", "input_tokens", "output_tokens", "cost_nano",
    "avoided_cache_nano", "avoided_routing_nano", "energy_mj", "latency_us_sum",
)  # fmt: skip
N_LATENCY_BUCKETS = 12
LATENCY_COLUMNS: Tuple[str, ...] = tuple(f"latency_b{i}" for i in range(N_LATENCY_BUCKETS))

LedgerRow = Tuple[Any, ...]  # LABELS..., COUNTERS..., [latency bucket counts]


def default_db_path() -> Optional[str]:
    """Where accounting goes when neither the config nor the caller says: ``$ROUTERX_DB`` if set
    ("" or ":memory:" there means no database), else ``$XDG_STATE_HOME/routerx/accounting.db``
    (``~/.local/state/routerx/accounting.db``)."""
    env = os.environ.get("ROUTERX_DB")
    if env is not None:
        return None if env in ("", ":memory:") else env
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(state) / "routerx" / "accounting.db")


def row_to_dict(row: Sequence[Any]) -> Dict[str, Any]:
    """A ledger row from the core (``Router.ledger()`` / ``drain_deltas()``) as a dict."""
    d: Dict[str, Any] = dict(zip(LABELS, row[:6]))
    d.update(zip(COUNTERS, row[6:16]))
    d["latency_buckets"] = list(row[16])
    return d


_DDL = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS usage (
    hour INTEGER NOT NULL,
    {", ".join(f"{c} TEXT NOT NULL" for c in LABELS)},
    {", ".join(f"{c} INTEGER NOT NULL DEFAULT 0" for c in COUNTERS + LATENCY_COLUMNS)},
    PRIMARY KEY (hour, {", ".join(LABELS)})
);
CREATE INDEX IF NOT EXISTS usage_tenant ON usage (tenant, hour);
CREATE INDEX IF NOT EXISTS usage_agent ON usage (agent, hour);
CREATE INDEX IF NOT EXISTS usage_workflow ON usage (workflow, hour);
"""

_ALL = LABELS + COUNTERS + LATENCY_COLUMNS
_UPSERT = (
    f"INSERT INTO usage (hour, {', '.join(_ALL)}) VALUES ({', '.join('?' * (len(_ALL) + 1))}) "
    f"ON CONFLICT (hour, {', '.join(LABELS)}) DO UPDATE SET "
    + ", ".join(f"{c} = {c} + excluded.{c}" for c in COUNTERS + LATENCY_COLUMNS)
)


def connect(path: str, *, readonly: bool = False) -> sqlite3.Connection:
    """Opens (creating unless ``readonly``) an accounting database and checks its schema."""
    try:
        if readonly:
            if not Path(path).exists():
                raise ConfigError(f"{path}: no accounting database there", file=path)
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10, check_same_thread=False)
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=10, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_DDL)
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?), ('version', ?)", (SCHEMA, str(SCHEMA_VERSION)))
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.Error as e:
        raise ConfigError(f"{path}: cannot open the accounting database: {e}", file=path) from e
    if meta.get("schema") != SCHEMA or meta.get("version") != str(SCHEMA_VERSION):
        conn.close()
        raise ConfigError(f"{path}: not a {SCHEMA} v{SCHEMA_VERSION} database (meta: {meta})", file=path)
    return conn


class AccountingStore:
    """Flushes a ledger's deltas to SQLite every ``flush_interval_s`` from a daemon thread."""

    def __init__(self, path: str, drain: Callable[[], List[LedgerRow]], flush_interval_s: float = 1.0) -> None:
        self.path = str(path)
        self.flush_interval_s = flush_interval_s
        self._drain = drain
        self._conn: Optional[sqlite3.Connection] = connect(self.path)
        self._lock = threading.Lock()
        self._pending: List[Tuple[int, LedgerRow]] = []
        self._stop = threading.Event()
        self.flushes = 0
        self.last_error: Optional[str] = None
        ref = weakref.ref(self)
        self._thread = threading.Thread(target=_flush_loop, args=(ref, self._stop, flush_interval_s), name="routerx-accounting-flush", daemon=True)
        self._thread.start()
        atexit.register(_close_at_exit, ref)

    def flush(self) -> int:
        """Writes what changed since the last flush in one transaction; returns how many rows.
        On a database error the deltas are kept and retried at the next flush."""
        with self._lock:
            if self._conn is None:
                return 0
            hour = int(time.time()) // 3600 * 3600
            batch = self._pending + [(hour, r) for r in self._drain()]
            self._pending = []
            if not batch:
                return 0
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.executemany(_UPSERT, [(h, *r[:16], *r[16]) for h, r in batch])
                self._conn.execute("COMMIT")
            except sqlite3.Error as e:
                try:
                    self._conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                self._pending = batch
                self.last_error = str(e)
                return 0
            self.flushes += 1
            return len(batch)

    def spent(self, scope: str, since: float) -> Tuple[float, int]:
        """(USD, tokens) recorded in the database for ``scope`` (``tenant:x``, ``agent:x``,
        ``workflow:x``) from the hour holding ``since`` on."""
        kind, _, name = scope.partition(":")
        if kind not in ("tenant", "agent", "workflow"):
            raise ConfigError(f"scope: expected tenant:NAME, agent:NAME or workflow:NAME, got {scope!r}")
        self.flush()
        with self._lock:
            if self._conn is None:
                return 0.0, 0
            row = self._conn.execute(
                f"SELECT COALESCE(SUM(cost_nano), 0), COALESCE(SUM(input_tokens + output_tokens), 0) FROM usage WHERE {kind} = ? AND hour >= ?",
                (name, int(since) // 3600 * 3600),
            ).fetchone()
        return row[0] / 1e9, int(row[1])

    def close(self) -> None:
        """Stops the thread and writes what is left."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self.flush()
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter teardown
            pass


def _flush_loop(ref: "weakref.ref[AccountingStore]", stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        store = ref()
        if store is None:
            return
        try:
            store.flush()
        except Exception as e:  # noqa: BLE001 - the flusher must outlive a bad flush
            store.last_error = str(e)
        del store


def _close_at_exit(ref: "weakref.ref[AccountingStore]") -> None:
    store = ref()
    if store is not None:
        store.close()


def load_usage(path: str, since: Optional[float] = None) -> List[Dict[str, Any]]:
    """Every ``usage`` row of a database (read-only), as dicts with ``hour`` and ``latency_buckets``."""
    conn = connect(path, readonly=True)
    try:
        q = f"SELECT hour, {', '.join(_ALL)} FROM usage"
        args: Tuple[Any, ...] = ()
        if since is not None:
            q += " WHERE hour >= ?"
            args = (int(since) // 3600 * 3600,)
        rows = conn.execute(q + " ORDER BY hour", args).fetchall()
    finally:
        conn.close()
    out = []
    for r in rows:
        d: Dict[str, Any] = {"hour": r[0]}
        d.update(zip(LABELS + COUNTERS, r[1 : 1 + len(LABELS) + len(COUNTERS)]))
        d["latency_buckets"] = list(r[1 + len(LABELS) + len(COUNTERS) :])
        out.append(d)
    return out
