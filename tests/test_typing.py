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
    p = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--ignore-missing-imports", "--exclude", "_proto", str(pkg / "__init__.py"), str(pkg / "router.py"), str(pkg / "config.py"), str(pkg / "errors.py"), str(pkg / "policy"), str(pkg / "demo.py"), str(pkg / "cli.py")], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
