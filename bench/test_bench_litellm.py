"""The baseline routerx replaces, in the same run: LiteLLM's in-process Router choosing a deployment.

LiteLLM is optional (`pip install -e '.[bench]'`); without it these benchmarks are skipped.
Compare the medians of the `route` group (bench/test_bench_route.py) with this group's.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

# Use the cost map shipped in the wheel instead of fetching it from the network at import.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
litellm = pytest.importorskip("litellm")

pytestmark = pytest.mark.benchmark(group="baseline-litellm", min_rounds=200, warmup=True)

MODELS = ["openai/gpt-4o-mini", "openai/gpt-4o", "openai/gpt-4.1-mini", "anthropic/claude-3-5-haiku-20241022", "gemini/gemini-2.0-flash"]


def _router(strategy: str) -> Any:
    model_list = [
        {"model_name": "default", "litellm_params": {"model": m, "api_key": "unused", "api_base": "http://127.0.0.1:9"}, "model_info": {"id": str(i)}}
        for i, m in enumerate(MODELS)
    ]
    return litellm.Router(model_list=model_list, routing_strategy=strategy)


@pytest.mark.parametrize("strategy", ["simple-shuffle", "usage-based-routing-v2", "latency-based-routing"])
def test_litellm_get_available_deployment(benchmark: Any, prompt_200: str, strategy: str) -> None:
    router = _router(strategy)
    messages = [{"role": "user", "content": prompt_200}]
    d = benchmark(router.get_available_deployment, model="default", messages=messages)
    assert d["litellm_params"]["model"] in MODELS
