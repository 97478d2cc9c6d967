"""The faiss side of the semantic cache: exact, inverted-file and HNSW partitions, growth between
them, removal, and searches racing rebuilds."""

from __future__ import annotations

import threading
from typing import Any, List, Optional, Tuple

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("faiss")

from routerx.semantic import SemanticIndex  # noqa: E402

DIM = 32


def unit_rows(n: int, seed: int = 0) -> Any:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class Live:
    """What the core would hand back as its live vectors."""

    def __init__(self) -> None:
        self.rows: List[Tuple[int, int, bytes]] = []
        self.lock = threading.Lock()
        self.calls: List[Tuple[Optional[int], Optional[int]]] = []

    def __call__(self, scope: Optional[int] = None, ids: Optional[List[int]] = None) -> Tuple[bytes, bytes, bytes]:
        """The columns ``Core.semantic_vectors`` returns, filtered the same way."""
        want = None if ids is None else set(ids)
        with self.lock:
            rows = sorted((r for r in self.rows if (scope is None or r[0] == scope) and (want is None or r[1] in want)), key=lambda r: r[1])
        self.calls.append((scope, None if ids is None else len(ids)))
        return (np.array([r[0] for r in rows], dtype=np.uint64).tobytes(), np.array([r[1] for r in rows], dtype=np.uint64).tobytes(), b"".join(r[2] for r in rows))

    def add(self, idx: SemanticIndex, scope: int, i: int, v: Any) -> None:
        with self.lock:
            self.rows.append((scope, i, v.tobytes()))
        idx.add(scope, i, v.tobytes())


def top(idx: SemanticIndex, scope: int, q: Any, k: int = 4) -> Tuple[Any, Any]:
    ids, sims = idx.search(q.tobytes(), [scope] * len(q), k)
    return np.frombuffer(ids, dtype=np.int64).reshape(len(q), k), np.frombuffer(sims, dtype=np.float32).reshape(len(q), k)


def test_cells_follow_the_size() -> None:
    assert [SemanticIndex.ivf_cells(n) for n in (1, 2, 100, 5_001, 10_000, 100_000, 250_000)] == [1, 1, 2, 128, 128, 512, 512]


def test_partitions_move_from_exact_to_inverted_file_to_hnsw_by_size() -> None:
    x = unit_rows(1_200)
    live = Live()
    idx = SemanticIndex(DIM, ivf_threshold=100, hnsw_threshold=1_000, ivf_nprobe=4, live=live)
    kinds, built = [], []
    for i in range(len(x)):
        live.add(idx, 5, i, x[i])
        kinds.append(idx._parts[5].kind)
        built.append(idx._parts[5].built_for)
    assert kinds[99] == "flat" and kinds[100] == "ivf" and kinds[999] == "ivf" and kinds[1000] == "hnsw"
    # Exact to an inverted file at 101 vectors, retrained for 405 (four times 101), HNSW at 1,001.
    assert (built[100], built[403], built[404], built[999]) == (101, 101, 405, 405)
    assert idx.stats()["rebuilds"] == 3 and idx.stats()["hnsw_partitions"] == 1
    ids, sims = top(idx, 5, x[:50])
    assert (ids[:, 0] == np.arange(50)).all() and np.allclose(sims[:, 0], 1, atol=1e-3)


def test_inverted_file_finds_every_stored_vector_and_drops_removed_ones_at_once() -> None:
    x = unit_rows(3_000, seed=1)
    idx = SemanticIndex(DIM, ivf_threshold=100, hnsw_threshold=10**6, ivf_nprobe=1, ivf_dim=0)
    idx.add_many((9, i, x[i].tobytes()) for i in range(len(x)))
    p = idx._parts[9]
    # ivf_nprobe or a 32nd of the cells, whichever is more.
    assert p.kind == "ivf" and p.index.nlist == 64 and p.index.nprobe == 2
    # A vector sits in its nearest cell, so the first probe finds it.
    ids, _ = top(idx, 9, x)
    assert (ids[:, 0] == np.arange(len(x))).all()
    gone = list(range(0, 3_000, 3))
    assert idx.remove(gone) == len(gone)
    ids, _ = top(idx, 9, x[gone])
    assert not set(ids.ravel().tolist()) & set(gone)
    assert idx.stats()["vectors"] == 2_000 and idx.stats()["dead_vectors"] == 0
    # Another scope sees none of it.
    ids, _ = top(idx, 10, x[:5])
    assert (ids == -1).all()


def test_projected_inverted_file_keeps_the_neighbours_of_low_rank_vectors() -> None:
    """Vectors with most of their energy in a few directions (as sentence embeddings have) keep
    their neighbours when the search runs over the top principal directions."""
    rng = np.random.default_rng(3)
    basis = np.linalg.qr(rng.standard_normal((DIM, DIM)))[0]
    scale = np.r_[np.ones(8), np.full(DIM - 8, 0.05)]
    x = (rng.standard_normal((4_000, DIM)) * scale) @ basis.T
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    idx = SemanticIndex(DIM, ivf_threshold=100, ivf_nprobe=4, ivf_dim=8)
    idx.add_many((2, i, x[i].tobytes()) for i in range(len(x)))
    assert idx._parts[2].index.d_out == 8 if hasattr(idx._parts[2].index, "d_out") else idx._parts[2].index.chain.at(0).d_out == 8
    ids, sims = top(idx, 2, x[:500])
    assert (ids[:, 0] == np.arange(500)).mean() >= 0.99
    # Scores are over the projections (the core re-scores exactly): at most 1, near 1 for itself.
    assert sims.max() <= 1 + 1e-3 and np.median(sims[:, 0]) > 0.95
    assert idx.remove([0, 1, 2]) == 3
    ids, _ = top(idx, 2, x[:3])
    assert not {0, 1, 2} & set(ids.ravel().tolist())


def test_background_rebuilds_leave_the_adding_thread_and_lose_nothing() -> None:
    """With ``background=True`` an add that crosses a size boundary returns before the rebuild,
    lookups go on against the old partition, and after ``wait()`` every vector is in the new one."""
    x = unit_rows(3_000, seed=4)
    live = Live()
    idx = SemanticIndex(DIM, ivf_threshold=200, hnsw_threshold=10**6, ivf_nprobe=64, ivf_dim=0, live=live, background=True)
    for i in range(len(x)):
        live.add(idx, 3, i, x[i])
        if i % 97 == 0:
            ids, _ = top(idx, 3, x[i : i + 1])
            assert ids[0, 0] == i  # found at once, whichever partition is current
    assert idx.wait(30)
    p = idx._parts[3]
    assert p.kind == "ivf" and len(p.ids) == len(x) and p.index.ntotal == len(x)
    assert 4 * p.built_for >= len(x)  # boundaries crossed during a rebuild are rebuilt for afterwards
    ids, _ = top(idx, 3, x)
    assert (ids[:, 0] == np.arange(len(x))).all()
    assert idx.stats()["rebuilds"] >= 1  # one per boundary crossed, or fewer when a late rebuild covers more
    assert live.calls and all(scope == 3 for scope, _ in live.calls)  # a rebuild copies its own scope only


def test_stats_count_rebuilds_queued_or_running() -> None:
    """A scope whose rebuild is queued or running shows in ``rebuilds_pending`` until it is swapped in."""
    x = unit_rows(300, seed=5)
    gate = threading.Event()
    live = Live()

    def held(scope: Optional[int] = None, ids: Optional[List[int]] = None) -> Tuple[bytes, bytes, bytes]:
        gate.wait(30)
        return live(scope, ids)

    idx = SemanticIndex(DIM, ivf_threshold=200, hnsw_threshold=10**6, ivf_nprobe=64, ivf_dim=0, live=held, background=True)
    for i in range(len(x)):
        live.add(idx, 3, i, x[i])
    live.add(idx, 4, 10_000, x[0])
    assert idx.stats()["rebuilds_pending"] == 1  # scope 3 crossed into an inverted file; 4 did not
    assert not idx.wait(0.05)
    gate.set()
    assert idx.wait(30)
    s = idx.stats()
    assert s["rebuilds_pending"] == 0 and s["rebuilds"] >= 1 and s["ivf_partitions"] == 1


def test_searches_racing_inserts_and_rebuilds_always_find_what_was_added() -> None:
    """4 writers cross every size boundary while 4 readers check that each vector added before
    their search is found first, through every swap of a rebuilt partition."""
    n_per, writers = 600, 4
    x = unit_rows(n_per * writers, seed=2)
    live = Live()
    idx = SemanticIndex(DIM, ivf_threshold=64, hnsw_threshold=2_000, ivf_nprobe=2, ivf_dim=0, live=live)
    added: List[int] = []
    added_lock = threading.Lock()
    errors: List[str] = []
    done = threading.Event()

    def write(w: int) -> None:
        for i in range(w, n_per * writers, writers):
            live.add(idx, 1, i, x[i])
            with added_lock:
                added.append(i)

    def read(seed: int) -> None:
        rng = np.random.default_rng(seed)
        while not done.is_set() or rng.random() < 0.5:
            with added_lock:
                known = list(added)
            if not known:
                continue
            pick = rng.choice(known, size=min(8, len(known)), replace=False)
            ids, _ = top(idx, 1, x[pick])
            for want, got in zip(pick, ids[:, 0]):
                if got != want:
                    errors.append(f"vector {want} found as {got}")

    ws = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    rs = [threading.Thread(target=read, args=(r,)) for r in range(4)]
    for t in rs + ws:
        t.start()
    for t in ws:
        t.join()
    done.set()
    for t in rs:
        t.join()
    assert not errors, errors[:5]
    assert idx.stats()["vectors"] == n_per * writers and idx.stats()["hnsw_partitions"] == 1


def test_a_write_to_one_scope_never_holds_up_another_scope() -> None:
    """While a write to scope 2 is stuck inside faiss (its index is held here until the test lets
    go), searches and writes of scope 1 go on; the stuck write then lands, and a search of scope 2
    waits for it rather than racing it."""
    x = unit_rows(64, seed=4)
    idx = SemanticIndex(DIM)
    idx.add(1, 0, x[0].tobytes())
    idx.add(2, 1, x[1].tobytes())
    inside, release = threading.Event(), threading.Event()
    part = idx._parts[2]

    class Stuck:
        """Scope 2's index, with an add that blocks until released."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def add_with_ids(self, v: Any, ids: Any) -> None:
            inside.set()
            assert release.wait(30)
            self.inner.add_with_ids(v, ids)

        def search(self, q: Any, k: int) -> Any:
            return self.inner.search(q, k)

    part.index = Stuck(part.index)
    writer = threading.Thread(target=idx.add, args=(2, 2, x[2].tobytes()))
    writer.start()
    assert inside.wait(30)
    # Scope 1 is served, and written to, while scope 2's write is stuck.
    for i in range(3, 20):
        idx.add(1, i, x[i].tobytes())
    ids, _ = top(idx, 1, x[3:20], 1)
    assert ids[:, 0].tolist() == list(range(3, 20))
    # A search of scope 2 waits for its write.
    found: List[int] = []
    reader = threading.Thread(target=lambda: found.extend(top(idx, 2, x[2:3], 1)[0][:, 0].tolist()))
    reader.start()
    reader.join(0.2)
    assert reader.is_alive() and not found, "a search of a scope ran while its index was being written"
    release.set()
    writer.join(30)
    reader.join(30)
    assert found == [2]
    assert idx.stats()["vectors"] == 20


def _huge_kib(addr: int, size: int) -> int:
    """AnonHugePages of the mappings overlapping [addr, addr + size) in /proc/self/smaps (advice
    splits a mapping at the advised range)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and ":" not in head:
                lo, hi = (int(v, 16) for v in head.split("-"))
                inside = lo < addr + size and addr < hi
            elif inside and head == "AnonHugePages:":
                total += int(line.split()[1])
    return total


def test_hnsw_partitions_are_backed_with_huge_pages_and_again_after_they_grow() -> None:
    import sys
    from pathlib import Path

    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not sys.platform.startswith("linux") or not thp.is_file() or "[never]" in thp.read_text():
        pytest.skip("transparent huge pages are not available here")
    dim = 256  # float16: 512 bytes a vector, so 24k vectors span several 2 MiB pages
    x = np.random.default_rng(5).standard_normal((24_000, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    idx = SemanticIndex(dim, ivf_threshold=10, hnsw_threshold=100, hnsw_m=8, hnsw_ef_construction=16, ef_search=256)
    idx.add_many((4, i, x[i].tobytes()) for i in range(20_000))
    p = idx._parts[4]
    assert p.kind == "hnsw"
    if idx.stats()["huge_page_bytes"] == 0:
        pytest.skip("this kernel cannot collapse pages on request (MADV_COLLAPSE needs Linux 6.1)")
    codes = p.arrays[0][0]
    assert idx.stats()["huge_page_bytes"] >= 2 << 20
    assert _huge_kib(int(codes.data()), codes.size()) >= 2048
    # Growing moves the vectors to a new allocation: it is backed again.
    moved_from = p.huge_at
    for i in range(20_000, 24_000):
        idx.add(4, i, x[i].tobytes())
    assert p.huge_at == int(codes.data()) != moved_from and _huge_kib(p.huge_at, codes.size()) >= 2048
    ids, _ = top(idx, 4, x[::997])
    assert (ids[:, 0] == np.arange(0, 24_000, 997)).mean() >= 0.9  # searches are unchanged by it
    off = SemanticIndex(dim, ivf_threshold=10, hnsw_threshold=100, hnsw_m=8, hnsw_ef_construction=16, huge_pages=False)
    off.add_many((4, i, x[i].tobytes()) for i in range(2_000))
    assert off.stats()["huge_page_bytes"] == 0
