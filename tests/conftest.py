from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable, Optional

import pytest

# No test writes to the user's accounting database (~/.local/state/routerx/accounting.db), and no
# budget sees spend left there by an earlier run: tests that want a database pass db= explicitly.
os.environ["ROUTERX_DB"] = ":memory:"

import routerx  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / "../shared/data").resolve()


def shared_data(sub: str) -> Path:
    """A folder of ../shared/data, or skip the test saying why."""
    p = DATA / sub
    if not p.exists():
        pytest.skip(f"shared data not found at {p}; tests that need real data run where ../shared/data exists")
    return p


@pytest.fixture
def router() -> routerx.Router:
    return routerx.Router()


@pytest.fixture(scope="session")
def shared_router() -> routerx.Router:
    return routerx.Router()


def run_threads(n: int, target: Callable[[int], object], timeout: float = 60.0) -> None:
    """Runs ``target(0)`` … ``target(n - 1)`` on n threads at once and waits for all of them; a
    thread still running after ``timeout`` seconds fails the test (a hang, not a pass)."""
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    hung = [t.name for t in threads if t.is_alive()]
    assert not hung, f"{len(hung)} of {n} threads still running after {timeout} s"
