"""The semantic cache's similarity index: faiss, one partition per scope.

The Rust core owns the entries (answer, scope, guard signature, vector) and decides whether a
candidate may be served; this module holds the vectors for search. Lookups arrive in micro-batches
from the core's batcher thread (:class:`routerx._core.Semantic`): one :meth:`SemanticIndex.search`
call per batch with a contiguous float32 array, so the GIL is taken once per batch.

Scope is applied inside the search, never after it: each scope (tenant, model scope, system prompt,
tools, parameters, earlier turns, embedder id) has its own index, and a query searches its own
scope's index only. Removals (eviction, expiry, invalidation) are immediate in the core, which never
serves an id it no longer holds; the index drops those ids in batches, and a partition is rebuilt
from the core's live vectors when more than a quarter of it is dead.

A partition is exact inner-product search (``IndexFlatIP``: cosine, for the unit vectors the
embedder returns) while small, and moves to HNSW (``IndexHNSWSQ``, inner product, vectors held as
float16; the core re-scores candidates exactly) past ``hnsw_threshold`` vectors. The new index is
built from a copy, off the lookup path, and swapped in by one reference assignment, so lookups
never wait for it.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

from .errors import ConfigError

__all__ = ["SemanticIndex", "FAISS_INSTALL", "import_faiss"]

FAISS_INSTALL = "pip install faiss-cpu"


def import_faiss() -> Any:
    try:
        import faiss
    except ImportError as e:  # a dependency of routerx; missing only in a broken environment
        raise ConfigError(f"the semantic cache needs faiss: run `{FAISS_INSTALL}` ({e})", file="faiss") from None
    return faiss


class _Partition:
    """One scope's vectors: a faiss index with our ids, and how many of them are dead."""

    __slots__ = ("index", "ids", "dead", "kind")

    def __init__(self, index: Any, kind: str) -> None:
        self.index = index
        self.ids: Set[int] = set()
        self.dead = 0
        self.kind = kind


class SemanticIndex:
    """Thread-safe: mutations and searches of one partition never run at once (faiss indexes
    are not safe for concurrent writes), and faiss releases the GIL while it computes."""

    def __init__(self, dim: int, hnsw_threshold: int = 5_000, hnsw_m: int = 32, ef_search: int = 64, threads: int = 0, live: Optional[Callable[[], List[Tuple[int, int, bytes]]]] = None) -> None:
        self.faiss = import_faiss()
        if threads > 0:
            # Process-wide in faiss. A micro-batch is a handful of queries: OpenMP fan-out costs
            # more than it saves there, and on a loaded machine it stalls on busy cores.
            self.faiss.omp_set_num_threads(threads)
        import numpy as np

        self.np = np
        self.dim = dim
        self.hnsw_threshold = hnsw_threshold
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self._parts: Dict[int, _Partition] = {}
        self._where: Dict[int, int] = {}
        self._lock = threading.Lock()
        self._live = live
        self.searches = 0
        self.rebuilds = 0

    # -- building ---------------------------------------------------------------------------------

    def _flat(self) -> Any:
        return self.faiss.IndexIDMap2(self.faiss.IndexFlatIP(self.dim))

    def _hnsw(self) -> Any:
        # float16 storage: half the bytes per visited vector, and a graph search is bound by
        # fetching them. The core re-scores the few candidates from its own float32 vectors, so
        # thresholds and reported similarities stay exact.
        idx = self.faiss.IndexHNSWSQ(self.dim, self.faiss.ScalarQuantizer.QT_fp16, self.hnsw_m, self.faiss.METRIC_INNER_PRODUCT)
        idx.hnsw.efSearch = self.ef_search
        return self.faiss.IndexIDMap2(idx)

    def add(self, scope: int, entry_id: int, vector: bytes) -> None:
        x = self.np.frombuffer(vector, dtype=self.np.float32).reshape(1, self.dim)
        ids = self.np.array([entry_id], dtype=self.np.int64)
        with self._lock:
            p = self._parts.get(scope)
            if p is None:
                p = self._parts[scope] = _Partition(self._flat(), "flat")
            p.index.add_with_ids(x, ids)
            p.ids.add(entry_id)
            self._where[entry_id] = scope
            grow = p.kind == "flat" and len(p.ids) > self.hnsw_threshold
        if grow:
            self._rebuild(scope)

    def add_many(self, rows: Iterable[Tuple[int, int, bytes]]) -> int:
        """Adds (scope, id, vector) rows, one faiss call per scope (a restore or a rebuild)."""
        by_scope: Dict[int, List[Tuple[int, bytes]]] = {}
        for scope, entry_id, vec in rows:
            by_scope.setdefault(scope, []).append((entry_id, vec))
        grow: List[int] = []
        with self._lock:
            for scope, items in by_scope.items():
                items = [(i, v) for i, v in items if i not in self._where]
                if not items:
                    continue
                x = self.np.frombuffer(b"".join(v for _, v in items), dtype=self.np.float32).reshape(len(items), self.dim)
                ids = self.np.array([i for i, _ in items], dtype=self.np.int64)
                p = self._parts.get(scope)
                if p is None:
                    big = len(items) > self.hnsw_threshold
                    p = self._parts[scope] = _Partition(self._hnsw() if big else self._flat(), "hnsw" if big else "flat")
                p.index.add_with_ids(x, ids)
                p.ids.update(ids.tolist())
                for i in ids.tolist():
                    self._where[i] = scope
                if p.kind == "flat" and len(p.ids) > self.hnsw_threshold:
                    grow.append(scope)
        for scope in grow:
            self._rebuild(scope)
        return sum(len(v) for v in by_scope.values())

    def remove(self, ids: Iterable[int]) -> int:
        """Drops ids the core no longer holds. Flat partitions remove at once; HNSW cannot remove,
        so its dead ids count toward a rebuild (they are never served meanwhile)."""
        doomed: Dict[int, List[int]] = {}
        with self._lock:
            for i in ids:
                scope = self._where.pop(i, None)
                if scope is not None:
                    doomed.setdefault(scope, []).append(i)
        rebuild: List[int] = []
        for scope, lst in doomed.items():
            with self._lock:
                p = self._parts.get(scope)
                if p is None:
                    continue
                p.ids.difference_update(lst)
                if p.kind == "flat":
                    p.index.remove_ids(self.np.array(lst, dtype=self.np.int64))
                else:
                    p.dead += len(lst)
                    if p.dead * 4 > len(p.ids) + p.dead:
                        rebuild.append(scope)
                if not p.ids:
                    del self._parts[scope]
        for scope in rebuild:
            self._rebuild(scope)
        return sum(len(v) for v in doomed.values())

    def _rebuild(self, scope: int) -> None:
        """Builds the scope's partition anew from the core's live vectors (dropping dead ones,
        choosing flat or HNSW by size) and swaps it in; lookups use the old one meanwhile."""
        if self._live is None:
            return
        rows = [(i, v) for s, i, v in self._live() if s == scope]
        kind = "hnsw" if len(rows) > self.hnsw_threshold else "flat"
        index = self._hnsw() if kind == "hnsw" else self._flat()
        if rows:
            x = self.np.frombuffer(b"".join(v for _, v in rows), dtype=self.np.float32).reshape(len(rows), self.dim)
            index.add_with_ids(x, self.np.array([i for i, _ in rows], dtype=self.np.int64))
        with self._lock:
            old = self._parts.get(scope)
            p = _Partition(index, kind)
            p.ids = {i for i, _ in rows}
            # Ids added since the copy was taken are in the old partition only: carry them over.
            if old is not None:
                late = [i for i in old.ids if i not in p.ids]
                if late:
                    vecs = self.np.vstack([old.index.reconstruct(int(i)) for i in late]).astype(self.np.float32)
                    index.add_with_ids(vecs, self.np.array(late, dtype=self.np.int64))
                    p.ids.update(late)
            self._parts[scope] = p
            self.rebuilds += 1

    # -- searching --------------------------------------------------------------------------------

    def search(self, vectors: bytes, scopes: List[int], k: int) -> Tuple[bytes, bytes]:
        """One micro-batch: ``vectors`` float32 (len(scopes) × dim). Returns int64 ids and float32
        cosines, len(scopes) × k, best first; -1 where a scope has fewer than k vectors."""
        np = self.np
        n = len(scopes)
        x = np.frombuffer(vectors, dtype=np.float32).reshape(n, self.dim)
        ids = np.full((n, k), -1, dtype=np.int64)
        sims = np.zeros((n, k), dtype=np.float32)
        rows: Dict[int, List[int]] = {}
        for r, s in enumerate(scopes):
            rows.setdefault(s, []).append(r)
        for scope, rs in rows.items():
            with self._lock:
                p = self._parts.get(scope)
                if p is None or not p.ids:
                    continue
                d, i = p.index.search(x[rs] if len(rs) < n else x, k)
            ids[rs] = i
            sims[rs] = d
        self.searches += 1
        return ids.tobytes(), sims.tobytes()

    def stats(self) -> Dict[str, Any]:
        with self._lock:
            parts = list(self._parts.values())
        return {
            "partitions": len(parts),
            "vectors": sum(len(p.ids) for p in parts),
            "hnsw_partitions": sum(p.kind == "hnsw" for p in parts),
            "dead_vectors": sum(p.dead for p in parts),
            "searches": self.searches,
            "rebuilds": self.rebuilds,
        }
