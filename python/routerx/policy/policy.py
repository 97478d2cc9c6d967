"""Routing rules, compiled for the core.

The rule: required quality for a request is ``quality_floor + quality_span × complexity`` (or the
caller's ``min_quality``); among the (model, tier) candidates that are allowed, fit the context
window, reach that quality for the request's category, and fit the latency and cost budgets, the
cheapest wins, the faster on equal cost. Predicted latency = TTFT + input / prefill rate +
predicted output / decode rate; predicted cost = tokens × list prices. The core evaluates this
over the compiled table in one call per request; this module decides what goes in the table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

from ..errors import ConfigError
from .catalog import CATEGORIES, Catalog

ModelRow = Tuple[str, str, int, List[float]]
CandidateRow = Tuple[int, str, float, float, float, float, float]
Settings = Tuple[float, float, int, int]


@dataclass(frozen=True)
class PolicySettings:
    quality_floor: float = 0.45
    quality_span: float = 0.45
    max_fallbacks: int = 3
    #: The model savings are measured against; default: the catalog's strongest.
    reference_model: Optional[str] = None
    #: Tiers never chosen unless the caller allows them by name (e.g. "batch" for interactive traffic).
    excluded_tiers: Tuple[str, ...] = ()

    def validate(self, source: str = "config") -> None:
        for name in ("quality_floor", "quality_span"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or not 0 <= v <= 1:
                raise ConfigError(f"{source}: router.{name}: must be a number in [0, 1], got {v!r}", file=source, field=f"router.{name}")
        if not isinstance(self.max_fallbacks, int) or isinstance(self.max_fallbacks, bool) or not 0 <= self.max_fallbacks <= 16:
            raise ConfigError(f"{source}: router.max_fallbacks: must be an integer in [0, 16]", file=source, field="router.max_fallbacks")


def compile_policy(catalog: Catalog, settings: PolicySettings) -> Tuple[List[ModelRow], List[CandidateRow], Settings]:
    """The flat table the core evaluates: prices per token, one row per (model, tier)."""
    models: List[ModelRow] = [(m.name, m.provider, m.context_window, [m.quality[c] for c in CATEGORIES]) for m in catalog.models]
    candidates: List[CandidateRow] = [
        (i, t.name, t.price_in / 1e6, t.price_out / 1e6, t.ttft_ms, t.prefill_tps, t.decode_tps)
        for i, m in enumerate(catalog.models)
        for t in m.tiers
        if t.name not in settings.excluded_tiers
    ]
    if not candidates:
        raise ConfigError("every tier of every model is excluded: nothing to route to", field="router.excluded_tiers")
    ref = catalog.index(settings.reference_model) if settings.reference_model else catalog.index(catalog.strongest().name)
    return models, candidates, (settings.quality_floor, settings.quality_span, settings.max_fallbacks, ref)


def compile_accounting(
    catalog: Catalog, settings: PolicySettings, baseline_model: Optional[str] = None, baseline_tier: str = "gpu-standard"
) -> Tuple[List[float], Tuple[float, float]]:
    """Energy per candidate (joules per output token, in ``compile_policy``'s candidate order) and the
    baseline's USD per (input, output) token: the model the user would otherwise have called —
    ``baseline_model`` (default: the reference, else the strongest model) at ``baseline_tier``
    (or its first tier)."""
    energy = [t.energy_j_per_token for m in catalog.models for t in m.tiers if t.name not in settings.excluded_tiers]
    name = baseline_model or settings.reference_model or catalog.strongest().name
    ref = catalog.model(name)
    tier = next((t for t in ref.tiers if t.name == baseline_tier), ref.tiers[0])
    return energy, (tier.price_in / 1e6, tier.price_out / 1e6)
