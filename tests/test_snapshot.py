"""Cache snapshots: round trip, restart, corrupt files, and the server's graceful stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict

import pytest

import routerx
from routerx import Router, SnapshotError
from routerx.router import EXACT_SNAPSHOT_FILE


def config(tmp_path: Path, **cache: Any) -> Dict[str, Any]:
    return {"cache": {"snapshot_dir": str(tmp_path / "snap"), **cache}}


def fill(router: Router, n: int, tenant: str = "acme") -> None:
    for i in range(n):
        d = router.route(f"snapshot question {i}: what is {i} squared?", tenant=tenant)
        router.record(d, f"{i * i}", input_tokens=20, output_tokens=3, latency_ms=10)


def test_round_trip_through_close_and_start(tmp_path: Path) -> None:
    r = Router(config(tmp_path), db=None)
    fill(r, 200)
    fill(r, 5, tenant="globex")
    r.close()
    f = tmp_path / "snap" / EXACT_SNAPSHOT_FILE
    assert f.is_file() and not [p for p in f.parent.iterdir() if p.name != EXACT_SNAPSHOT_FILE]

    r2 = Router(config(tmp_path), db=None)
    assert r2.stats()["cache"]["entries"] == 205
    hit = r2.route("snapshot question 7: what is 7 squared?", tenant="acme")
    assert (hit.cache, hit.cached_response) == ("exact", "49")
    assert hit.entry_age_s is not None and hit.entry_age_s >= 0
    # Tenants stay apart after a restore.
    assert r2.route("snapshot question 7: what is 7 squared?", tenant="globex").cache == "miss"
    assert r2.route("snapshot question 3: what is 3 squared?", tenant="globex").cached_response == "9"


def test_explicit_snapshot_and_restore(tmp_path: Path) -> None:
    r = Router(db=None)
    fill(r, 50)
    out = r.snapshot(tmp_path / "x")
    assert out["entries"] == 50 and out["bytes"] > 0 and out["file"].endswith(EXACT_SNAPSHOT_FILE)
    r2 = Router(db=None)
    got = r2.restore(tmp_path / "x")
    assert (got["restored"], got["expired"], got["dropped"]) == (50, 0, 0)
    with pytest.raises(SnapshotError, match="no snapshot directory"):
        r2.snapshot()
    with pytest.raises(SnapshotError) as ei:
        r2.restore(tmp_path / "absent")
    assert "absent" in str(ei.value) and isinstance(ei.value, OSError) and isinstance(ei.value, routerx.RouterxError)


def test_expired_entries_are_not_restored(tmp_path: Path) -> None:
    r = Router(db=None)
    d = r.route("short lived answer", tenant="t")
    r.record(d, "soon gone", input_tokens=5, output_tokens=2, latency_ms=1)
    d = r.route("long lived answer", tenant="t", ttl_s=0.2)
    r.record(d, "gone", input_tokens=5, output_tokens=2, latency_ms=1)
    r.snapshot(tmp_path)
    time.sleep(0.3)
    got = Router(db=None).restore(tmp_path)
    assert (got["restored"], got["expired"]) == (1, 1)


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "garbage", "version"])
def test_corrupt_snapshot_names_the_file_and_changes_nothing(tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    r = Router(db=None)
    fill(r, 30)
    r.snapshot(tmp_path)
    f = tmp_path / EXACT_SNAPSHOT_FILE
    data = bytearray(f.read_bytes())
    if damage == "truncate":
        data = data[: len(data) - 100]
    elif damage == "flip":
        data[len(data) // 2] ^= 0xFF
    elif damage == "empty":
        data = bytearray()
    elif damage == "garbage":
        data = bytearray(os.urandom(4096))
    else:  # a future format version
        k = data[8]
        data[9 + k] = 99
    f.write_bytes(bytes(data))

    other = Router(db=None)
    fill(other, 3, tenant="keep")
    with pytest.raises(SnapshotError) as ei:
        other.restore(tmp_path)
    assert ei.value.file is not None and EXACT_SNAPSHOT_FILE in ei.value.file and EXACT_SNAPSHOT_FILE in str(ei.value)
    assert other.stats()["cache"]["entries"] == 3

    # At start a bad snapshot is reported and the router starts empty instead of failing.
    cfg = {"cache": {"snapshot_dir": str(tmp_path)}}
    with caplog.at_level("ERROR", logger="routerx"):
        fresh = Router(cfg, db=None)
    assert fresh.stats()["cache"]["entries"] == 0
    assert any(EXACT_SNAPSHOT_FILE in rec.getMessage() for rec in caplog.records)


def test_a_changed_catalog_drops_the_entries(tmp_path: Path) -> None:
    r = Router(db=None)
    fill(r, 10)
    r.snapshot(tmp_path)
    cfg = {"router": {"excluded_tiers": []}}  # same models: still fine
    assert Router(cfg, db=None).restore(tmp_path)["restored"] == 10
    mine = tmp_path / "mine.toml"
    quality = "\n".join(f'"{c}" = 0.5' for c in routerx.CATEGORIES)
    mine.write_text(
        'format = "routerx-catalog"\nversion = 1\n[[models]]\nname = "my-local-model"\nprovider = "self"\n'
        f'context_window = 8192\n[models.quality]\n{quality}\n'
        '[[models.tiers]]\nname = "gpu-standard"\nprice_in = 0.1\nprice_out = 0.1\nttft_ms = 100\n'
        'prefill_tps = 5000\ndecode_tps = 100\nenergy_j_per_token = 0.5\n'
    )
    changed = Router({"catalog": {"files": [str(mine)]}}, db=None)
    got = changed.restore(tmp_path)
    assert (got["restored"], got["dropped"]) == (0, 10)
    assert changed.stats()["cache"]["entries"] == 0


def test_snapshot_while_threads_route_and_record(tmp_path: Path) -> None:
    r = Router(db=None)
    stop = threading.Event()
    errors: list = []

    def work(t: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                d = r.route(f"busy {t} {i}", tenant=f"t{t % 3}")
                r.record(d, f"answer {t} {i}", input_tokens=10, output_tokens=2, latency_ms=1)
            except Exception as e:  # noqa: BLE001
                errors.append(e)
            i += 1

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    sizes = [r.snapshot(tmp_path / str(k))["entries"] for k in range(5)]
    stop.set()
    for t in threads:
        t.join()
    assert not errors and sizes == sorted(sizes) and sizes[-1] > 0
    last = Router(db=None)
    got = last.restore(tmp_path / "4")
    assert got["restored"] == sizes[-1]
    # Restored entries answer with their own responses.
    hit = None
    for t in range(8):
        d = last.route(f"busy {t} 0", tenant=f"t{t % 3}")
        if d.cache == "exact":
            hit = d
            assert d.cached_response == f"answer {t} 0"
    assert hit is not None


def test_serve_snapshots_on_sigterm_and_restores_on_start(tmp_path: Path) -> None:
    cfg = tmp_path / "routerx.toml"
    cfg.write_text('[cache]\nsnapshot_dir = "snap"\n[accounting]\ndb = ""\n')
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def start() -> "tuple[subprocess.Popen[str], str]":
        p = subprocess.Popen([sys.executable, "-m", "routerx.server", "--config", str(cfg), "--port", "0"], stderr=subprocess.PIPE, text=True, env=env)
        assert p.stderr is not None
        for line in p.stderr:
            if "listening on" in line:
                # Keep draining so the server never blocks on a full pipe.
                threading.Thread(target=p.stderr.read, daemon=True).start()
                return p, line.split("listening on ")[1].split(" ")[0]
        raise AssertionError(f"server did not start (exit {p.wait()})")

    p, target = start()
    c = routerx.Client(target, timeout=10)
    for i in range(20):
        d = c.route(f"served question {i}", tenant="acme")
        c.record(d, f"served answer {i}", 10, 3, 50.0)
    c.close()
    p.send_signal(signal.SIGTERM)
    assert p.wait(20) == 0
    assert (tmp_path / "snap" / EXACT_SNAPSHOT_FILE).is_file()

    p, target = start()
    try:
        c = routerx.Client(target, timeout=10)
        d = c.route("served question 11", tenant="acme")
        assert (d.cache, d.cached_response) == ("exact", "served answer 11")
        c.close()
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(20) == 0
