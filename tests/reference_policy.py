"""An independent, plain-Python statement of the routing rule, used to check the core's choices."""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import routerx


def near_threshold(router: routerx.Router, category: str, complexity: float, min_quality: Optional[float] = None) -> bool:
    """True when some model's quality is within float32 rounding of the requirement (ambiguous)."""
    s = router.config.policy
    required = min_quality if min_quality is not None else min(1.0, s.quality_floor + s.quality_span * complexity)
    return any(abs(m.quality[category] - required) < 1e-4 for m in router.catalog.models)


def reference_choice(
    router: routerx.Router,
    category: str,
    complexity: float,
    input_tokens: int,
    output_tokens: int,
    latency_budget_ms: float = math.inf,
    max_cost_usd: float = math.inf,
    min_quality: Optional[float] = None,
    models: Optional[Sequence[str]] = None,
) -> Optional[Tuple[str, str, float, float]]:
    """(model, tier, cost, latency) of the cheapest fitting candidate (fastest on a tie), or None."""
    s = router.config.policy
    required = min_quality if min_quality is not None else min(1.0, s.quality_floor + s.quality_span * complexity)
    best: List[Tuple[float, float, int, str, str]] = []
    idx = 0
    for m in router.catalog.models:
        for t in m.tiers:
            if t.name in s.excluded_tiers:
                continue
            i = idx
            idx += 1
            if models is not None and m.name not in models:
                continue
            if input_tokens + output_tokens > m.context_window:
                continue
            if m.quality[category] < required:
                continue
            cost = input_tokens * t.price_in / 1e6 + output_tokens * t.price_out / 1e6
            lat = t.ttft_ms + 1000 * input_tokens / t.prefill_tps + 1000 * output_tokens / t.decode_tps
            if lat > latency_budget_ms or cost > max_cost_usd:
                continue
            best.append((cost, lat, i, m.name, t.name))
    if not best:
        return None
    cost, lat, _, model, tier = min(best)
    return model, tier, cost, lat
