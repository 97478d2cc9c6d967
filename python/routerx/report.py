"""``routerx report``: one self-contained HTML page with PNG plots of the accounting database.

Plots (matplotlib, Agg backend, also written as PNG files next to the page): spend over time,
spend by agent, spend by workflow step, model/tier mix, cache hit rate over time, and savings
versus the baseline. The HTML embeds the PNGs (base64), so the page alone can be mailed around.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .accounting import load_usage, summarize  # noqa: E402

PLOTS: Tuple[Tuple[str, str], ...] = (
    ("spend_over_time.png", "Spend over time"),
    ("spend_by_agent.png", "Spend by agent"),
    ("spend_by_step.png", "Spend by workflow step"),
    ("model_tier_mix.png", "Model / tier mix"),
    ("cache_hit_rate.png", "Cache hit rate"),
    ("savings.png", "Savings versus the baseline"),
)


def _hours(rows: Sequence[Dict[str, Any]]) -> List[int]:
    return sorted({r["hour"] for r in rows})


def _by_hour(rows: Sequence[Dict[str, Any]], f: Callable[[Dict[str, Any]], float]) -> Dict[int, float]:
    out: Dict[int, float] = defaultdict(float)
    for r in rows:
        out[r["hour"]] += f(r)
    return out


def _times(hours: Sequence[int]) -> List[dt.datetime]:
    return [dt.datetime.fromtimestamp(h, tz=dt.timezone.utc) for h in hours]


def _empty(ax: Any) -> None:
    ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes, color="gray")


def _barh(ax: Any, labels: List[str], values: List[float], xlabel: str) -> None:
    if not labels:
        _empty(ax)
        return
    ax.barh(labels[::-1], values[::-1], color="#4c72b0")
    ax.set_xlabel(xlabel)


def _plot_spend_over_time(ax: Any, rows: Sequence[Dict[str, Any]]) -> None:
    hours = _hours(rows)
    if not hours:
        return _empty(ax)
    cost = _by_hour(rows, lambda r: r["cost_nano"] / 1e9)
    t = _times(hours)
    ax.plot(t, [cost[h] for h in hours], marker="o", label="actual spend")
    ax.set_ylabel("USD per hour")
    ax.legend()
    ax.figure.autofmt_xdate()


def _plot_group(ax: Any, rows: Sequence[Dict[str, Any]], label: Callable[[Dict[str, Any]], str], top: int = 15) -> None:
    spend: Dict[str, float] = defaultdict(float)
    for r in rows:
        spend[label(r)] += r["cost_nano"] / 1e9
    items = sorted(spend.items(), key=lambda kv: -kv[1])[:top]
    _barh(ax, [k for k, _ in items], [v for _, v in items], "USD")


def _plot_mix(ax: Any, rows: Sequence[Dict[str, Any]]) -> None:
    n: Dict[str, float] = defaultdict(float)
    for r in rows:
        n[f"{r['model']} / {r['tier']}"] += r["calls"] + r["cache_hits"]
    items = sorted(n.items(), key=lambda kv: -kv[1])[:15]
    _barh(ax, [k for k, _ in items], [v for _, v in items], "requests (calls + cache hits)")


def _plot_hit_rate(ax: Any, rows: Sequence[Dict[str, Any]]) -> None:
    hours = _hours(rows)
    if not hours:
        return _empty(ax)
    hits = _by_hour(rows, lambda r: r["cache_hits"])
    req = _by_hour(rows, lambda r: r["calls"] + r["cache_hits"])
    ax.plot(_times(hours), [100.0 * hits[h] / req[h] if req[h] else 0.0 for h in hours], marker="o", color="#55a868")
    ax.set_ylabel("% of requests answered from cache")
    ax.set_ylim(0, 100)
    ax.figure.autofmt_xdate()


def _plot_savings(ax: Any, rows: Sequence[Dict[str, Any]]) -> None:
    hours = _hours(rows)
    if not hours:
        return _empty(ax)
    actual = _by_hour(rows, lambda r: r["cost_nano"] / 1e9)
    cache = _by_hour(rows, lambda r: r["avoided_cache_nano"] / 1e9)
    routing = _by_hour(rows, lambda r: r["avoided_routing_nano"] / 1e9)
    t = _times(hours)

    def cum(d: Dict[int, float]) -> List[float]:
        out, acc = [], 0.0
        for h in hours:
            acc += d[h]
            out.append(acc)
        return out

    a, c, r = cum(actual), cum(cache), cum(routing)
    ax.plot(t, [x + y + z for x, y, z in zip(a, c, r)], label="baseline model, no cache", color="#c44e52")
    ax.plot(t, [x + z for x, z in zip(a, r)], label="baseline model, with cache hits", color="#dd8452", linestyle="--")
    ax.plot(t, a, label="routerx (actual)", color="#4c72b0")
    ax.set_ylabel("cumulative USD")
    ax.legend()
    ax.figure.autofmt_xdate()


def _render(draw: Callable[[Any], None], title: str, path: Path) -> bytes:
    fig: Figure = plt.figure(figsize=(8, 4), dpi=100)
    try:
        ax = fig.add_subplot(1, 1, 1)
        draw(ax)
        ax.set_title(title)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    data = buf.getvalue()
    path.write_bytes(data)
    return data


def _table(rows: List[Dict[str, Any]], cols: Sequence[str]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.6f}" if abs(v) < 1 else f"{v:,.2f}"
        return html.escape("(none)" if v == "" else str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def build_report(rows: Sequence[Dict[str, Any]], out_dir: Union[str, Path], title: str = "routerx report", source: str = "") -> Path:
    """Writes ``index.html`` and the PNG plots of ``rows`` (usage rows with ``hour``) to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    drawers: Dict[str, Callable[[Any], None]] = {
        "spend_over_time.png": lambda ax: _plot_spend_over_time(ax, rows),
        "spend_by_agent.png": lambda ax: _plot_group(ax, rows, lambda r: r["agent"] or "(no agent)"),
        "spend_by_step.png": lambda ax: _plot_group(ax, rows, lambda r: f"{r['workflow'] or '(no workflow)'} / {r['step'] or '(no step)'}"),
        "model_tier_mix.png": lambda ax: _plot_mix(ax, rows),
        "cache_hit_rate.png": lambda ax: _plot_hit_rate(ax, rows),
        "savings.png": lambda ax: _plot_savings(ax, rows),
    }
    imgs = []
    for name, label in PLOTS:
        data = _render(drawers[name], label, out / name)
        imgs.append(f'<h2>{html.escape(label)}</h2><img alt="{html.escape(label)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">')
    total = summarize(rows, ())
    t = total[0] if total else {}
    cols = ["requests", "calls", "cache_hits", "errors", "input_tokens", "output_tokens", "cost_usd", "avoided_cache_usd", "avoided_routing_usd", "energy_j", "tokens_per_usd", "tokens_per_joule"]
    sections = [
        "<h2>Totals</h2>" + _table([t] if t else [], cols),
        "<h2>By tenant</h2>" + _table(summarize(rows, ("tenant",)), ["tenant"] + cols),
        "<h2>By agent</h2>" + _table(summarize(rows, ("tenant", "agent")), ["tenant", "agent"] + cols),
        "<h2>By workflow step</h2>" + _table(summarize(rows, ("tenant", "workflow", "step")), ["tenant", "workflow", "step"] + cols),
        "<h2>By model and tier</h2>" + _table(summarize(rows, ("model", "tier")), ["model", "tier"] + cols + ["mean_latency_ms"]),
    ]
    hours = _hours(rows)
    span = f"{_times(hours)[0]:%Y-%m-%d %H:00} to {_times(hours)[-1]:%Y-%m-%d %H:59} UTC" if hours else "no data"
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse;margin-bottom:1em;font-size:90%}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}th{{background:#f3f3f3}}img{{max-width:100%}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>{html.escape(source)} — {html.escape(span)}. Cost avoided by cache = the recorded cost of each answer served again;
by routing = the baseline model's cost for the same tokens minus the actual cost. Energy is estimated from the
catalog's joules per output token; tokens per joule counts output tokens.</p>
{"".join(sections)}
{"".join(imgs)}
</body></html>
"""
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def report_from_db(db: Union[str, Path], out_dir: Union[str, Path], since: Optional[float] = None) -> Path:
    """Reads an accounting database (read-only) and writes the report; returns the HTML path."""
    return build_report(load_usage(str(db), since), out_dir, source=f"accounting database {db}")
