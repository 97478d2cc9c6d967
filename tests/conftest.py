from __future__ import annotations

from pathlib import Path
from typing import Optional

import pytest

import routerx

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
