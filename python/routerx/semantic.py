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
embedder returns) while small; past ``ivf_threshold`` vectors it moves to an inverted file
(``IndexIVFScalarQuantizer``: about √n k-means cells, ``ivf_nprobe`` or a 32nd of them searched, float16
vectors projected on their top ``ivf_dim`` principal directions), retrained with twice the cells
each time the partition grows fourfold; past ``hnsw_threshold`` it moves to HNSW
(``IndexHNSWSQ``, float16), whose vectors and links are backed with 2 MiB pages on Linux. On real question vectors at 10k-100k the inverted file finds a
neighbour above a cache threshold as often as HNSW (efSearch 64) at a third of the cost or less;
HNSW keeps a higher recall@1 for far neighbours, which no threshold serves, and wins on the
near-duplicate-heavy million. The core re-scores every candidate exactly from its own float32
vectors, so thresholds and reported similarities never see the rounding or the projection. A new
index is built from a copy, off the lookup path, and swapped in by one reference assignment, so
lookups never wait for it.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

from .errors import ConfigError

__all__ = ["SemanticIndex", "FAISS_INSTALL", "import_faiss"]

FAISS_INSTALL = "pip install faiss-cpu"
log = logging.getLogger(__name__)


def import_faiss() -> Any:
    try:
        import faiss
    except ImportError as e:  # a dependency of routerx; missing only in a broken environment
        raise ConfigError(f"the semantic cache needs faiss: run `{FAISS_INSTALL}` ({e})", file="faiss") from None
    return faiss


_HUGE_PAGE = 2 << 20
_MADV_HUGEPAGE, _MADV_COLLAPSE = 14, 25
_madvise: Optional[Callable[[int, int, int], int]] = None


def back_with_huge_pages(regions: Iterable[Tuple[int, int]]) -> int:
    """Asks Linux to back the whole 2 MiB pages inside each (address, bytes) region with huge
    pages, now where the kernel can (``MADV_COLLAPSE``, 6.1+), else as it finds time
    (``MADV_HUGEPAGE``). Returns the bytes collapsed now. Advice only: contents never change, so
    a region freed or reused meanwhile is harmless. A graph search is a chain of random reads
    across the whole array, and with 4 KiB pages nearly every one also misses the TLB."""
    global _madvise
    if not sys.platform.startswith("linux"):
        return 0
    if _madvise is None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        _madvise = libc.madvise
    done = 0
    for addr, size in regions:
        lo = -(-addr // _HUGE_PAGE) * _HUGE_PAGE
        hi = (addr + size) // _HUGE_PAGE * _HUGE_PAGE
        if hi <= lo:
            continue
        if _madvise(lo, hi - lo, _MADV_COLLAPSE) == 0:
            done += hi - lo
        else:
            _madvise(lo, hi - lo, _MADV_HUGEPAGE)
    return done


class _Partition:
    """One scope's vectors: a faiss index with our ids, and how many of them are dead."""

    __slots__ = ("index", "ids", "dead", "kind", "built_for", "arrays", "huge_at", "huge_bytes", "lock")

    def __init__(self, index: Any, kind: str, built_for: int = 0) -> None:
        #: Held for every use of the index: faiss indexes are not safe for a write racing anything.
        self.lock = threading.Lock()
        self.index = index
        self.ids: Set[int] = set()
        self.dead = 0
        self.kind = kind
        #: Vectors the index was built (an inverted file: trained) for.
        self.built_for = built_for
        #: An HNSW graph's arrays (vectors, links, their offsets) and where its vectors were
        #: when last backed with huge pages: a growing array moves, and the copy has small pages.
        self.arrays: List[Tuple[Any, int]] = []
        self.huge_at = 0
        self.huge_bytes = 0


class SemanticIndex:
    """Thread-safe: mutations and searches of one partition never run at once (faiss indexes
    are not safe for concurrent writes), and faiss releases the GIL while it computes.

    Two levels of lock: ``_lock`` guards the scope → partition map only, and each partition's own
    lock guards its index, so a slow write to one scope (an HNSW insert is ~1 ms at 1M vectors)
    never holds up a search of another. Order: ``_lock`` before a partition's lock, never the
    reverse. A rebuild swaps a partition while holding both; a writer re-checks under the
    partition's lock that its partition is still the scope's, and moves to the new one if not."""

    def __init__(
        self,
        dim: int,
        ivf_threshold: int = 5_000,
        hnsw_threshold: int = 250_000,
        hnsw_m: int = 32,
        ef_search: int = 64,
        hnsw_ef_construction: int = 160,
        ivf_nprobe: int = 8,
        ivf_dim: int = 128,
        threads: int = 0,
        huge_pages: bool = True,
        live: Optional[Callable[[Optional[int], Optional[List[int]]], Tuple[bytes, bytes, bytes]]] = None,
        background: bool = False,
    ) -> None:
        self.faiss = import_faiss()
        if threads > 0:
            # Process-wide in faiss. A micro-batch is a handful of queries: OpenMP fan-out costs
            # more than it saves there, and on a loaded machine it stalls on busy cores.
            self.faiss.omp_set_num_threads(threads)
        import numpy as np

        self.np = np
        self.dim = dim
        self.ivf_threshold = ivf_threshold
        self.ivf_nprobe = ivf_nprobe
        self.ivf_dim = ivf_dim
        self.hnsw_threshold = hnsw_threshold
        self.hnsw_m = hnsw_m
        self.hnsw_ef_construction = hnsw_ef_construction
        self.ef_search = ef_search
        self.huge_pages = huge_pages
        self._parts: Dict[int, _Partition] = {}
        self._where: Dict[int, int] = {}
        self._lock = threading.Lock()
        self._live = live
        # Rebuilds on a thread of their own (the Router's choice): the add that crosses a size
        # boundary returns at once instead of paying for k-means or a graph build (1.5 s at 80k
        # vectors, a minute at 250k). Otherwise they run in the caller, as a bench wants them.
        self._background = background
        self._queued: List[int] = []
        self._pending: Set[int] = set()
        self._cv = threading.Condition()
        self._worker: Optional[threading.Thread] = None
        self.searches = 0
        self.rebuilds = 0

    # -- building ---------------------------------------------------------------------------------

    def kind_for(self, n: int) -> str:
        """The index a partition of ``n`` vectors gets."""
        if n > self.hnsw_threshold:
            return "hnsw"
        return "ivf" if n > self.ivf_threshold else "flat"

    @staticmethod
    def ivf_cells(n: int) -> int:
        """Cells of an inverted file built for ``n`` vectors: the power of two at or above √n
        (128 at 10k, 512 at 100k), fewer where k-means would have under 39 points a cell."""
        cells = 1 << (max(1, math.isqrt(n)) - 1).bit_length()
        while cells > 1 and cells * 39 > n:
            cells //= 2
        return cells

    def _build(self, kind: str, x: Any, ids: Any) -> _Partition:
        """A partition of ``kind`` holding rows ``x`` under ``ids`` (an inverted file is trained
        on them first)."""
        faiss = self.faiss
        if kind == "flat":
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        elif kind == "hnsw":
            # float16 storage: half the bytes per visited vector, and a graph search is bound by
            # fetching them.
            inner = faiss.IndexHNSWSQ(self.dim, faiss.ScalarQuantizer.QT_fp16, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efSearch = self.ef_search
            # A build-time breadth of 160 (faiss's default is 40) makes a graph that reaches
            # recall@1 0.95 at 1M with efSearch 192 instead of 256 at twice the links.
            inner.hnsw.efConstruction = self.hnsw_ef_construction
            index = faiss.IndexIDMap2(inner)
        else:
            index = self._ivf(x)
        if len(x):
            index.add_with_ids(x, ids)
        p = _Partition(index, kind, len(x))
        p.ids = set(ids.tolist())
        if kind == "hnsw" and self.huge_pages:
            # (array, bytes per element): float16 vectors, int32 links, uint64 offsets.
            p.arrays = [(faiss.downcast_index(inner.storage).codes, 1), (inner.hnsw.neighbors, 4), (inner.hnsw.offsets, 8)]
            self._collapse(p, self._moved(p))
        return p

    @staticmethod
    def _moved(p: _Partition) -> List[Tuple[int, int]]:
        """An HNSW partition's arrays as (address, bytes) if its vectors moved since they were
        last backed with huge pages, else nothing. Read under the lock (an add may move them)."""
        if not p.arrays or int(p.arrays[0][0].data()) == p.huge_at:
            return []
        p.huge_at = int(p.arrays[0][0].data())
        return [(int(a.data()), a.size() * width) for a, width in p.arrays]

    @staticmethod
    def _collapse(p: _Partition, regions: List[Tuple[int, int]]) -> None:
        """Backs ``regions`` with huge pages, outside the lock: a second at 1M vectors, which
        lookups must not wait for (stale addresses are harmless, see back_with_huge_pages)."""
        if regions:
            p.huge_bytes = back_with_huge_pages(regions)

    def _ivf(self, x: Any) -> Any:
        """An inverted file trained on ``x``: cells by k-means, searched over the top
        ``ivf_dim`` principal directions of the vectors (uncentred, so an inner product there is
        the inner product of the vectors' projections): a third of the bytes a scan reads, and the
        core re-scores the few candidates at full width."""
        faiss, np = self.faiss, self.np
        cells = self.ivf_cells(len(x))
        width = self.ivf_dim if 0 < self.ivf_dim < self.dim else self.dim
        ivf = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(width), width, cells, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.niter = 10  # cells only route the search; the scan inside them is exact up to float16
        ivf.cp.min_points_per_centroid = 1
        ivf.cp.max_points_per_centroid = 64
        # Ids are ours (no id map); a hash map from id to slot lets removal find a vector
        # without scanning every cell.
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        # A fixed share of the cells holds recall as they multiply (8 of 128 at 10k, 16 of 512 at
        # 100k: at 8 of 512 one in fifty queries with a neighbour at cosine 0.9 missed it).
        ivf.nprobe = min(cells, max(self.ivf_nprobe, cells // 32))
        if width == self.dim:
            ivf.train(x)
            return ivf
        sample = x[:: max(1, len(x) // 50_000)].astype(np.float64)
        _, vecs = np.linalg.eigh(sample.T @ sample)
        proj = faiss.LinearTransform(self.dim, width, False)
        faiss.copy_array_to_vector(np.ascontiguousarray(vecs[:, ::-1][:, :width].T, dtype=np.float32).ravel(), proj.A)
        faiss.copy_array_to_vector(np.zeros(width, dtype=np.float32), proj.b)
        proj.is_trained = True
        index = faiss.IndexPreTransform(proj, ivf)
        index.train(x)
        return index

    def _outgrown(self, p: _Partition) -> bool:
        n = len(p.ids)
        if p.kind == "flat":
            return n > self.ivf_threshold or n > self.hnsw_threshold
        if p.kind == "ivf":
            return n > self.hnsw_threshold or n > 4 * p.built_for
        return False

    def add(self, scope: int, entry_id: int, vector: bytes) -> None:
        x = self.np.frombuffer(vector, dtype=self.np.float32).reshape(1, self.dim)
        ids = self.np.array([entry_id], dtype=self.np.int64)
        while True:
            with self._lock:
                p = self._parts.get(scope)
                if p is None:
                    p = self._parts[scope] = self._build("flat", x[:0], ids[:0])
                self._where[entry_id] = scope
            with p.lock:
                if self._parts.get(scope) is not p:
                    continue  # rebuilt or emptied since: write to the scope's partition now
                p.index.add_with_ids(x, ids)
                p.ids.add(entry_id)
                moved = self._moved(p)
                grow = self._outgrown(p)
            break
        self._collapse(p, moved)
        if grow:
            self._schedule(scope)

    def add_many(self, rows: Iterable[Tuple[int, int, bytes]]) -> int:
        """Adds (scope, id, vector) rows, one faiss call per scope."""
        rows = list(rows)
        np = self.np
        scopes = np.array([s for s, _, _ in rows], dtype=np.uint64)
        ids = np.array([i for _, i, _ in rows], dtype=np.uint64)
        return self.add_vectors(scopes.tobytes(), ids.tobytes(), b"".join(v for _, _, v in rows))

    def add_vectors(self, scopes: bytes, ids: bytes, vectors: bytes) -> int:
        """Adds rows given as the columns the core's ``semantic_vectors`` returns (uint64 scopes,
        uint64 ids, float32 vectors), one faiss call per scope: a restore. Ids already held are
        skipped."""
        np = self.np
        sc = np.frombuffer(scopes, dtype=np.uint64)
        allids = np.frombuffer(ids, dtype=np.uint64).view(np.int64)
        x = np.frombuffer(vectors, dtype=np.float32).reshape(len(allids), self.dim)
        # Rows grouped by scope in one sort (a restore may hold thousands of scopes).
        order = np.argsort(sc, kind="stable")
        keys, starts = np.unique(sc[order], return_index=True)
        grow: List[int] = []
        collapse: List[Tuple[_Partition, List[Tuple[int, int]]]] = []
        with self._lock:
            for scope, rows in zip(keys.tolist(), np.split(order, starts[1:])):
                rows = rows[np.fromiter((i not in self._where for i in allids[rows].tolist()), dtype=bool, count=len(rows))]
                if not len(rows):
                    continue
                sid, sx = allids[rows], x[rows]
                p = self._parts.get(scope)
                if p is None:
                    p = self._parts[scope] = self._build(self.kind_for(len(sid)), sx, sid)
                else:
                    with p.lock:
                        p.index.add_with_ids(sx, sid)
                        p.ids.update(sid.tolist())
                        collapse.append((p, self._moved(p)))
                for i in sid.tolist():
                    self._where[i] = scope
                if self._outgrown(p):
                    grow.append(scope)
        for p, regions in collapse:
            self._collapse(p, regions)
        for scope in grow:
            self._schedule(scope)
        return len(allids)

    def remove(self, ids: Iterable[int]) -> int:
        """Drops ids the core no longer holds. Flat and inverted-file partitions remove at once;
        HNSW cannot remove, so its dead ids count toward a rebuild (never served meanwhile)."""
        doomed: Dict[int, List[int]] = {}
        with self._lock:
            for i in ids:
                scope = self._where.pop(i, None)
                if scope is not None:
                    doomed.setdefault(scope, []).append(i)
        rebuild: List[int] = []
        for scope, lst in doomed.items():
            while True:
                with self._lock:
                    p = self._parts.get(scope)
                if p is None:
                    break
                with p.lock:
                    if self._parts.get(scope) is not p:
                        continue
                    self._drop(p, lst)
                    if p.kind == "hnsw" and p.dead * 4 > len(p.ids) + p.dead:
                        rebuild.append(scope)
                    empty = not p.ids
                if empty:
                    with self._lock, p.lock:
                        if self._parts.get(scope) is p and not p.ids:
                            del self._parts[scope]
                break
        for scope in rebuild:
            self._schedule(scope)
        return sum(len(v) for v in doomed.values())

    def _schedule(self, scope: int) -> None:
        """Rebuilds ``scope`` now, or queues it once for the rebuild thread."""
        if not self._background:
            self._rebuild(scope)
            return
        with self._cv:
            if scope in self._pending:
                return
            self._pending.add(scope)
            self._queued.append(scope)
            if self._worker is None:
                self._worker = threading.Thread(target=self._rebuilder, name="routerx-index-rebuild", daemon=True)
                self._worker.start()
            self._cv.notify_all()

    def _rebuilder(self) -> None:
        while True:
            with self._cv:
                while not self._queued:
                    self._cv.wait()
                scope = self._queued.pop(0)
            try:
                self._rebuild(scope)
            except Exception:  # noqa: BLE001 - the old partition keeps serving; the next growth retries
                log.exception("rebuilding the semantic index of scope %d failed", scope)
            finally:
                # Adds that crossed another boundary while this rebuild ran found it pending and
                # queued nothing: look again.
                with self._lock:
                    p = self._parts.get(scope)
                    again = p is not None and self._outgrown(p)
                with self._cv:
                    if again:
                        self._queued.append(scope)
                    else:
                        self._pending.discard(scope)
                    self._cv.notify_all()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Waits until no rebuild is queued or running; False if ``timeout`` ran out first."""
        with self._cv:
            return self._cv.wait_for(lambda: not self._pending, timeout)

    def _drop(self, p: _Partition, lst: List[int]) -> None:
        """Removes ``lst`` from ``p`` (HNSW cannot: they count as dead until a rebuild)."""
        p.ids.difference_update(lst)
        if p.kind == "hnsw":
            p.dead += len(lst)
            return
        gone = self.np.array(lst, dtype=self.np.int64)
        # An inverted file's id hash map removes only by an explicit id array.
        p.index.remove_ids(self.faiss.IDSelectorArray(len(gone), self.faiss.swig_ptr(gone)))

    def _rebuild(self, scope: int) -> None:
        """Builds the scope's partition anew from the core's live vectors (dropping dead ones,
        choosing the index by size) and swaps it in; lookups use the old one meanwhile."""
        if self._live is None:
            return
        np = self.np
        _, ib, vb = self._live(scope, None)
        ids = np.frombuffer(ib, dtype=np.uint64).view(np.int64)
        p = self._build(self.kind_for(len(ids)), np.frombuffer(vb, dtype=np.float32).reshape(len(ids), self.dim), ids)
        while True:
            with self._lock:
                old = self._parts.get(scope)
                if old is None:
                    return  # emptied (and dropped) meanwhile
                # The old partition's lock too: a writer that found it current finishes first.
                with old.lock:
                    late = [i for i in old.ids if i not in p.ids]
                    if not late:
                        # Ids removed since the copy was taken: drop them from the new index too.
                        gone = p.ids - old.ids
                        if gone:
                            self._drop(p, list(gone))
                        self._parts[scope] = p
                        self.rebuilds += 1
                        return
            # Ids added since the copy was taken are in the old partition only: add them (from the
            # core, which holds them at full width), then look again.
            _, ib, vb = self._live(scope, late)
            got = np.frombuffer(ib, dtype=np.uint64).view(np.int64)
            if len(got):
                p.index.add_with_ids(np.frombuffer(vb, dtype=np.float32).reshape(len(got), self.dim), got)
            p.ids.update(late)  # any the core no longer holds are dropped on the next pass

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
            if p is None:
                continue
            # A partition swapped out meanwhile still answers for everything added before this
            # search began (a rebuild moves late additions in before it swaps).
            with p.lock:
                if not p.ids:
                    continue
                d, i = p.index.search(x[rs] if len(rs) < n else x, k)
            ids[rs] = i
            sims[rs] = d
        self.searches += 1
        return ids.tobytes(), sims.tobytes()

    def stats(self) -> Dict[str, Any]:
        with self._lock:
            parts = list(self._parts.values())
        with self._cv:
            pending = len(self._pending)
        return {
            "partitions": len(parts),
            "vectors": sum(len(p.ids) for p in parts),
            "ivf_partitions": sum(p.kind == "ivf" for p in parts),
            "hnsw_partitions": sum(p.kind == "hnsw" for p in parts),
            "dead_vectors": sum(p.dead for p in parts),
            "huge_page_bytes": sum(p.huge_bytes for p in parts),
            "searches": self.searches,
            "rebuilds": self.rebuilds,
            # Scopes queued for, or in, a background rebuild (served by their old partition).
            "rebuilds_pending": pending,
        }
