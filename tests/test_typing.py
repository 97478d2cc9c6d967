"""The hand-written stubs describe the compiled module."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_stubtest_core() -> None:
    pytest.importorskip("mypy")
    p = subprocess.run([sys.executable, "-m", "mypy.stubtest", "routerx._core", "--ignore-missing-stub"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr


def test_package_type_checks() -> None:
    pytest.importorskip("mypy")
    from pathlib import Path

    pkg = Path(__file__).resolve().parents[1] / "python/routerx"
    root = pkg.parents[1]
    p = subprocess.run([sys.executable, "-m", "mypy"], cwd=root, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
