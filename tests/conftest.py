from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

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
