from __future__ import annotations

import platform
from typing import Any, Dict

import pytest

# One ~200-token prompt (o200k) shared by every route benchmark; it mirrors `prompt_200()` in
# rust/routerx-core/benches/core.rs so the two levels measure the same request.
PROMPT_200 = (
    "Our team is migrating a billing service from a monolith to separate services. "
    "The current system writes invoices, applies discounts, and sends reminder emails every night. "
    "We want to keep the invoice numbering strictly sequential per customer and avoid double charges "
    "when a job is retried after a crash. "
) * 3 + "What design would you recommend, and what are the main risks to watch during the cut-over?"


def pytest_benchmark_update_machine_info(config: Any, machine_info: Dict[str, Any]) -> None:
    import os

    machine_info["cpu_count"] = os.cpu_count()
    machine_info["platform"] = platform.platform()


@pytest.fixture(scope="session")
def prompt_200() -> str:
    return PROMPT_200
