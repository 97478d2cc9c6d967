"""Accounting: the ledger's SQLite store, and totals grouped by tenant, agent, workflow or model.

Row dicts (from ``Router.ledger()`` or :func:`load_usage`) carry the labels ``tenant, agent,
workflow, step, model, tier``, the counters ``calls, cache_hits, errors, input_tokens,
output_tokens, cost_nano, avoided_cache_nano, avoided_routing_nano, energy_mj, latency_us_sum``
and ``latency_buckets`` (counts per bucket of ``routerx._core.latency_buckets_ms()``).
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Sequence, Tuple

from .store import COUNTERS, LABELS, SCHEMA, SCHEMA_VERSION, AccountingStore, default_db_path, load_usage, row_to_dict

__all__ = [
    "AccountingStore",
    "COUNTERS",
    "LABELS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "GROUPS",
    "default_db_path",
    "load_usage",
    "row_to_dict",
    "summarize",
]

#: What `summarize` can group by.
GROUPS: Dict[str, Tuple[str, ...]] = {
    "tenant": ("tenant",),
    "agent": ("tenant", "agent"),
    "workflow": ("tenant", "workflow"),
    "step": ("tenant", "workflow", "step"),
    "model": ("model", "tier"),
    "all": (),
}


def summarize(rows: Iterable[Dict[str, Any]], by: Sequence[str] = ("tenant",)) -> List[Dict[str, Any]]:
    """Sums rows per distinct value of the ``by`` labels, with derived figures: requests (calls +
    cache hits), USD amounts, cache hit rate, tokens per USD and per joule, mean call latency.
    Sorted by cost, highest first."""
    groups: Dict[Tuple[Any, ...], Dict[str, Any]] = {}
    for r in rows:
        key = tuple(r[k] for k in by)
        g = groups.get(key)
        if g is None:
            g = groups[key] = {k: v for k, v in zip(by, key)}
            for c in COUNTERS:
                g[c] = 0
        for c in COUNTERS:
            g[c] += r[c]
    out = []
    for g in groups.values():
        tokens = g["input_tokens"] + g["output_tokens"]
        cost = g["cost_nano"] / 1e9
        energy_j = g["energy_mj"] / 1e3
        requests = g["calls"] + g["cache_hits"]
        row = {k: g[k] for k in by}
        row.update(
            requests=requests,
            calls=g["calls"],
            cache_hits=g["cache_hits"],
            errors=g["errors"],
            input_tokens=g["input_tokens"],
            output_tokens=g["output_tokens"],
            cost_usd=cost,
            avoided_cache_usd=g["avoided_cache_nano"] / 1e9,
            avoided_routing_usd=g["avoided_routing_nano"] / 1e9,
            energy_j=energy_j,
            cache_hit_rate=g["cache_hits"] / requests if requests else 0.0,
            tokens_per_usd=tokens / cost if cost > 0 else None,
            tokens_per_joule=g["output_tokens"] / energy_j if energy_j > 0 else None,
            mean_latency_ms=g["latency_us_sum"] / 1e3 / g["calls"] if g["calls"] else None,
        )
        out.append(row)
    out.sort(key=lambda r: (-r["cost_usd"], tuple(str(r[k]) for k in by)))
    return out
