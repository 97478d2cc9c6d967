"""What the server tracks per tenant, because the core does not (yet): counters, and the cache
entries stored through this server (for per-tenant entry counts and dropping one entry).

When the router gains ``invalidate_entry(entry_id, tenant=None)`` the service uses it instead
of the tombstones here; per-tenant counters and entry counts in the core would replace the rest.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable, Dict, List, Optional, Tuple

#: Counters per tenant, in the order of StatsResponse's fields of the same names.
COUNTERS = ("requests", "exact_hits", "misses", "bypassed", "best_effort", "errors", "records", "failed_calls", "input_tokens", "output_tokens", "semantic_hits")
REQUESTS, EXACT_HITS, MISSES, BYPASSED, BEST_EFFORT, ERRORS, RECORDS, FAILED_CALLS, INPUT_TOKENS, OUTPUT_TOKENS, SEMANTIC_HITS = range(len(COUNTERS))
OVERFLOW_TENANT = "(other tenants)"


class _Counts:
    __slots__ = ("n", "cost_usd", "cost_avoided_usd", "decisions")

    def __init__(self) -> None:
        self.n = [0] * len(COUNTERS)
        self.cost_usd = 0.0
        self.cost_avoided_usd = 0.0
        self.decisions: Dict[str, int] = {}


class TenantCounters:
    """Request counters per tenant without a lock on the hot path.

    Each handler thread writes only its own shard (a dict tenant → counts, registered once per
    thread); a reader sums the shards. Reads may miss increments in flight, never lose them.
    A shard tracks at most ``max_tenants`` tenants; the rest are counted together under
    OVERFLOW_TENANT, so arbitrary tenant names cannot grow memory without bound.
    """

    def __init__(self, max_tenants: int = 10_000) -> None:
        self.max_tenants = max_tenants
        self._local = threading.local()
        self._shards: List[Dict[str, _Counts]] = []
        self._lock = threading.Lock()  # guards _shards (registration only)

    def of(self, tenant: str) -> _Counts:
        """The calling thread's counts for ``tenant``, to increment."""
        shard: Optional[Dict[str, _Counts]] = getattr(self._local, "shard", None)
        if shard is None:
            shard = self._local.shard = {}
            with self._lock:
                self._shards.append(shard)
        c = shard.get(tenant)
        if c is None:
            if len(shard) >= self.max_tenants:
                tenant = OVERFLOW_TENANT
                c = shard.get(tenant)
            if c is None:
                c = shard[tenant] = _Counts()
        return c

    def snapshot(self, tenant: str) -> Tuple[Dict[str, int], float, float, Dict[str, int]]:
        """(counters, cost_usd, cost_avoided_usd, decisions) summed over the shards."""
        with self._lock:
            shards = list(self._shards)
        n = [0] * len(COUNTERS)
        cost = avoided = 0.0
        decisions: Dict[str, int] = {}
        for s in shards:
            c = s.get(tenant)
            if c is None:
                continue
            for i, v in enumerate(c.n):
                n[i] += v
            cost += c.cost_usd
            avoided += c.cost_avoided_usd
            for k, v in list(c.decisions.items()):
                decisions[k] = decisions.get(k, 0) + v
        return dict(zip(COUNTERS, n)), cost, avoided, decisions


class EntryIndex:
    """entry_id → tenant of the answers stored through this server, and invalidated entry ids.

    Bounded to ``max_entries`` (the cache's own bound), oldest first. It cannot see the core
    evict an entry, so a tenant's count is an upper bound; a Route that misses an indexed
    entry removes it. Invalidating one entry leaves a tombstone: a hit on an entry created before
    it is treated as a miss (the service routes again), and a new answer recorded for the same
    request replaces the entry and clears the tombstone.
    """

    def __init__(self, max_entries: int = 100_000, clock: Callable[[], float] = time.time) -> None:
        self.max_entries = max(1, max_entries)
        self._clock = clock
        self._entries: "OrderedDict[str, str]" = OrderedDict()
        self._tombstones: "OrderedDict[str, Tuple[str, float]]" = OrderedDict()
        self._per_tenant: Dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def has_tombstones(self) -> bool:
        return bool(self._tombstones)

    @property
    def has_entries(self) -> bool:
        return bool(self._entries)

    def _drop(self, entry_id: str) -> Optional[str]:
        tenant = self._entries.pop(entry_id, None)
        if tenant is not None:
            left = self._per_tenant[tenant] - 1
            if left:
                self._per_tenant[tenant] = left
            else:
                del self._per_tenant[tenant]
        return tenant

    def stored(self, entry_id: str, tenant: str) -> None:
        with self._lock:
            self._tombstones.pop(entry_id, None)
            if self._drop(entry_id) is None and len(self._entries) >= self.max_entries:
                self._drop(next(iter(self._entries)))
            self._entries[entry_id] = tenant
            self._per_tenant[tenant] = self._per_tenant.get(tenant, 0) + 1

    def missed(self, entry_id: str) -> None:
        """A Route found no entry for ``entry_id``: it was evicted or expired."""
        if entry_id in self._entries:  # unlocked peek: misses of unindexed entries cost no lock
            with self._lock:
                self._drop(entry_id)

    def invalidated(self, entry_id: str, created_unix: float) -> bool:
        """Whether a hit on ``entry_id`` (an entry created at ``created_unix``) must be ignored."""
        t = self._tombstones.get(entry_id)
        return t is not None and created_unix <= t[1]

    def invalidate(self, entry_id: str, tenant: Optional[str]) -> int:
        """Drops one entry if it is indexed (and ``tenant``'s, when given); returns 0 or 1."""
        with self._lock:
            owner = self._entries.get(entry_id)
            if owner is None or (tenant is not None and owner != tenant):
                return 0
            self._drop(entry_id)
            self._tombstones[entry_id] = (owner, self._clock())
            while len(self._tombstones) > self.max_entries:
                self._tombstones.popitem(last=False)
            return 1

    def invalidate_tenant(self, tenant: Optional[str]) -> None:
        """Forgets a tenant's entries and tombstones (all, for None) once the router dropped them."""
        with self._lock:
            if tenant is None:
                self._entries.clear()
                self._per_tenant.clear()
                self._tombstones.clear()
                return
            for eid in [e for e, t in self._entries.items() if t == tenant]:
                self._drop(eid)
            for eid in [e for e, (t, _) in self._tombstones.items() if t == tenant]:
                del self._tombstones[eid]

    def count(self, tenant: str) -> int:
        return self._per_tenant.get(tenant, 0)


__all__ = ["COUNTERS", "TenantCounters", "EntryIndex", "OVERFLOW_TENANT"]
