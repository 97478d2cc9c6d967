"""The `routerx` command: route, catalog, demo, serve, stats, report, calibrate, train, eval."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, Dict, List, Optional, Sequence

from .calibrate import SPLITS
from .demo import find_data_dir, format_report, load_prompts, run_demo, table
from .errors import ConfigError, RouterxError
from .policy.catalog import table_rows
from .router import Router, decision_to_dict


def _router(args: argparse.Namespace) -> Router:
    # route/catalog/demo make no real model calls: keep them out of the accounting database.
    return Router(args.config, db=None)


def cmd_route(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.text == "-" else args.text
    router = _router(args)
    kw: Dict[str, Any] = {}
    if args.latency_budget_ms is not None:
        kw["latency_budget_ms"] = args.latency_budget_ms
    if args.max_cost_usd is not None:
        kw["max_cost_usd"] = args.max_cost_usd
    if args.min_quality is not None:
        kw["min_quality"] = args.min_quality
    if args.willingness_to_pay is not None:
        kw["willingness_to_pay"] = args.willingness_to_pay
    if args.models:
        kw["models"] = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.strict:
        kw["strict"] = True
    d = router.route(text, tenant=args.tenant, **kw)
    if args.json:
        print(json.dumps(decision_to_dict(d), indent=2, ensure_ascii=False))
        return 0
    print(f"{d.model} on {d.tier} ({d.provider})")
    print(f"  {d.reason}")
    print(f"  category {d.category}, complexity {d.complexity:.2f}, language {d.language}")
    print(f"  predicted ${d.predicted_cost_usd:.6f}, ~{d.predicted_latency_ms:.0f} ms, {d.input_tokens} in / ~{d.predicted_output_tokens} out tokens")
    for i, f in enumerate(d.fallbacks, 1):
        print(f"  fallback {i}: {f['model']} on {f['tier']} (${f['predicted_cost_usd']:.6f}, ~{f['predicted_latency_ms']:.0f} ms)")
    return 0


def cmd_catalog(args: argparse.Namespace) -> int:
    router = _router(args)
    rows = table_rows(router.catalog)
    if args.json:
        keys = ("model", "provider", "tier", "price_in_per_1m", "price_out_per_1m", "ttft_ms", "decode_tps", "context_window", "mean_quality")
        print(json.dumps([dict(zip(keys, r)) for r in rows], indent=2))
        return 0
    head = ("model", "provider", "tier", "$/1M in", "$/1M out", "TTFT ms", "decode tok/s", "context", "quality")
    body = [(m, p, t, f"{pi:.2f}", f"{po:.2f}", f"{ttft:,.0f}", f"{dec:,.0f}", f"{ctx:,}", f"{q:.2f}") for m, p, t, pi, po, ttft, dec, ctx, q in rows]
    print("\n".join(table(head, body)))
    print(f"\n{len(router.catalog.models)} models, {len(rows)} (model, tier) candidates; catalog files: {', '.join(router.catalog.files)}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    data = None if args.bundled else find_data_dir(args.data)
    prompts, source = load_prompts(data, args.limit)
    rep = run_demo(_router(args), prompts)
    print(json.dumps(rep, indent=2) if args.json else format_report(rep, source))
    return 0


def _db_path(args: argparse.Namespace) -> str:
    from .accounting import default_db_path
    from .config import load_config

    if args.db:
        return str(args.db)
    cfg = load_config(args.config)
    db = cfg.accounting_db if cfg.accounting_db is not None else default_db_path()
    if not db:
        raise RouterxError("no accounting database: give --db PATH (or set [accounting] db / $ROUTERX_DB)")
    return db


def cmd_stats(args: argparse.Namespace) -> int:
    from .accounting import GROUPS, load_usage, summarize

    if args.server:
        import urllib.request

        url = args.server.rstrip("/") + "/stats"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                rows: List[Dict[str, Any]] = json.loads(resp.read())["ledger"]
        except (OSError, ValueError, KeyError) as e:
            raise RouterxError(f"{url}: cannot read stats: {e}") from None
        source = f"server {args.server} (since it started)"
    else:
        db = _db_path(args)
        since = None if args.since_hours is None else __import__("time").time() - args.since_hours * 3600
        rows = load_usage(db, since)
        source = f"database {db}"
    by = GROUPS[args.by]
    out = summarize(rows, by)
    if args.json:
        print(json.dumps({"source": source, "by": list(by), "rows": out}, indent=2))
        return 0
    head = (*by, "requests", "calls", "cache hits", "errors", "tokens in", "tokens out", "cost $", "avoided cache $", "avoided routing $", "tokens/$", "tokens/J")

    def n(v: Optional[float], fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    body = [
        (
            *(str(r[k]) or "-" for k in by),
            f"{r['requests']:,}", f"{r['calls']:,}", f"{r['cache_hits']:,}", f"{r['errors']:,}",
            f"{r['input_tokens']:,}", f"{r['output_tokens']:,}", f"{r['cost_usd']:.6f}",
            f"{r['avoided_cache_usd']:.6f}", f"{r['avoided_routing_usd']:.6f}",
            n(r["tokens_per_usd"], ",.0f"), n(r["tokens_per_joule"], ".3f"),
        )
        for r in out
    ]  # fmt: skip
    print(f"routerx accounting by {args.by}, from {source}")
    print("\n".join(table(head, body)) if body else "(no traffic recorded)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import report_from_db

    db = _db_path(args)
    since = None if args.since_hours is None else __import__("time").time() - args.since_hours * 3600
    index = report_from_db(db, args.out, since)
    print(f"wrote {index}")
    return 0


def cmd_serve(args: argparse.Namespace, rest: List[str]) -> int:
    from .server import main as serve_main

    argv = list(rest)
    if args.config:
        argv = ["--config", args.config, *argv]
    return int(serve_main(argv) or 0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="routerx", description="Route LLM requests to the cheapest model and hardware tier that meets them.")
    p.add_argument("--config", help="router config TOML (default: the embedded config)")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("route", help="route one prompt and explain the decision")
    r.add_argument("text", help="the prompt ('-' reads standard input)")
    r.add_argument("--latency-budget-ms", type=float)
    r.add_argument("--max-cost-usd", type=float)
    r.add_argument("--min-quality", type=float)
    r.add_argument("--willingness-to-pay", type=float, help="USD per unit quality: the most expected value wins")
    r.add_argument("--models", help="comma-separated allowed models")
    r.add_argument("--tenant")
    r.add_argument("--strict", action="store_true", help="fail instead of a best-effort choice")
    r.add_argument("--json", action="store_true")
    c = sub.add_parser("catalog", help="the models × tiers table")
    c.add_argument("--json", action="store_true")
    d = sub.add_parser("demo", help="route a batch of real prompts; show choices and savings")
    d.add_argument("--data", help="shared data folder (default: $ROUTERX_DATA or ../shared/data)")
    d.add_argument("--bundled", action="store_true", help="use the bundled prompt sample")
    d.add_argument("--limit", type=int, default=120)
    d.add_argument("--json", action="store_true")
    sub.add_parser("serve", help="run the gRPC service (see `routerx serve --help`)", add_help=False)
    st = sub.add_parser("stats", help="spend, savings and tokens by tenant, agent, workflow or model")
    st.add_argument("--db", help="accounting database (default: the config's, $ROUTERX_DB, or ~/.local/state/routerx/accounting.db)")
    st.add_argument("--server", help="read a running router's metrics endpoint instead, e.g. http://127.0.0.1:9464")
    st.add_argument("--by", choices=["tenant", "agent", "workflow", "step", "model", "all"], default="tenant")
    st.add_argument("--since-hours", type=float, help="only the last N hours (database only)")
    st.add_argument("--json", action="store_true")
    rp = sub.add_parser("report", help="write an HTML report with PNG plots of the accounting database")
    rp.add_argument("--db", help="accounting database (default as for stats)")
    rp.add_argument("--out", required=True, help="output directory (index.html and the PNGs)")
    rp.add_argument("--since-hours", type=float, help="only the last N hours")
    cal = sub.add_parser("calibrate", help="choose the semantic cache's similarity threshold from labelled pairs")
    cal.add_argument("--pairs", required=True, help="labelled pairs: JSON array, JSON lines or CSV (text_a, text_b, label)")
    cal.add_argument("--target-precision", type=float, default=0.95)
    cal.add_argument("--sample", type=int, help="use a random sample of this many pairs (seeded)")
    cal.add_argument("--seed", type=int, default=0)
    cal.add_argument("--out", help="write pr_curve.png, semantic.toml and calibration.json here")
    cal.add_argument("--a", default="text_a", help="column of the first text")
    cal.add_argument("--b", default="text_b", help="column of the second text")
    cal.add_argument("--label", default="label", help="0/1 column: 1 when one answer serves both")
    cal.add_argument("--json", action="store_true")
    from .quality.commands import add_parsers as add_quality_parsers

    add_quality_parsers(sub)
    tv = sub.add_parser("train-verifier", help="train the semantic cache's pair verifier from labelled pairs")
    tv.add_argument("--pairs", required=True, help="labelled pairs, as for calibrate")
    tv.add_argument("--out", required=True, help="verifier file to write ([semantic] verifier = this path)")
    tv.add_argument("--target-precision", type=float, default=0.95)
    tv.add_argument("--hidden", default=None, help="hidden layer widths, comma-separated (0: logistic regression; default: the trainer's)")
    tv.add_argument("--epochs", type=float, default=None, help="most epochs (the best on validation pairs is kept)")
    tv.add_argument("--cross-encoder", action="store_true", help="fine-tune the sentence model as a cross-encoder that reads both texts (needs PyTorch; write a .safetensors file)")
    tv.add_argument("--max-train-pairs", type=int, default=None, help="cross-encoder: train on at most this many pairs")
    tv.add_argument("--lr", type=float, default=None, help="cross-encoder: peak learning rate")
    tv.add_argument("--transitive", type=int, default=None, metavar="N", help="cross-encoder: duplicates implied by transitivity among the training pairs to add, up to N per text of each cluster (0: none; default: the trainer's)")
    tv.add_argument("--no-cosine", action="store_true", help="cross-encoder: calibrate on its own logit only (for a cache on an embedder other than all-MiniLM-L6-v2)")
    tv.add_argument("--l2", type=float, default=None, help="weight decay")
    tv.add_argument("--natural-mix", action="store_true", help="target precision on the pairs' own mix, not on balanced pairs")
    tv.add_argument("--seed", type=int, default=0)
    tv.add_argument("--split", choices=SPLITS, default="text", help="held-out pairs: none sharing a text with training pairs (default), or a random sample of pairs (texts may recur, as in traffic)")
    tv.add_argument("--a", default="text_a")
    tv.add_argument("--b", default="text_b")
    tv.add_argument("--label", default="label")
    return p


def cmd_train_verifier(args: argparse.Namespace) -> int:
    from .calibrate import load_pairs, train_verifier
    from .embed import load_minilm

    pairs = load_pairs(args.pairs, args.a, args.b, args.label)
    if args.cross_encoder:
        return _train_cross_encoder(args, pairs)
    emb = load_minilm()
    va = emb.embed([p.a for p in pairs])
    vb = emb.embed([p.b for p in pairs])
    kw: Dict[str, Any] = {}
    if args.hidden is not None:
        kw["hidden"] = [int(w) for w in str(args.hidden).split(",") if w.strip()]
    if args.epochs is not None:
        kw["epochs"] = int(args.epochs)
    if args.l2 is not None:
        kw["l2"] = args.l2
    v, rep = train_verifier(pairs, va, vb, emb.model_id, args.target_precision, seed=args.seed, balanced=not args.natural_mix, split=args.split, **kw)
    v.save(args.out)
    rep.pop("_curves", None)
    print(json.dumps(rep, indent=2))
    print(f"wrote {args.out}")
    return 0


def _train_cross_encoder(args: argparse.Namespace, pairs: Any) -> int:
    from .cross_encoder import train_cross_encoder

    if not str(args.out).endswith(".safetensors"):
        raise ConfigError(f"a cross-encoder is written as a .safetensors file, got --out {args.out}", field="out")
    kw: Dict[str, Any] = {}
    if args.epochs is not None:
        kw["epochs"] = args.epochs
    if args.lr is not None:
        kw["lr"] = args.lr
    if args.transitive is not None:
        kw["transitive"] = args.transitive
    _, rep = train_cross_encoder(pairs, args.out, target_precision=args.target_precision, seed=args.seed, split=args.split, max_train_pairs=args.max_train_pairs, cosine=not args.no_cosine, log=lambda m: print(m, file=sys.stderr, flush=True), **kw)
    rep.pop("_scores", None)
    print(json.dumps(rep, indent=2))
    print(f"wrote {args.out}")
    return 0


def _show_spread(x: Sequence[float]) -> str:
    """A [2.5%, median, 97.5%] spread as "median (low-high)"."""
    return f"{x[1]:.3f} ({x[0]:.3f}-{x[2]:.3f})"


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibrate import calibrate, load_pairs
    from .router import Router

    pairs = load_pairs(args.pairs, args.a, args.b, args.label)
    router = Router(args.config, db=None) if args.config else Router({"semantic": {"enabled": True}}, db=None)
    if router._semantic is None:
        router = Router({"semantic": {"enabled": True}}, db=None)
    rep = calibrate(router, pairs, args.target_precision, args.out, args.sample, args.seed)
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    print(f"{rep['pairs']} pairs ({rep['positives']} positive); target precision {rep['target_precision']}")
    for name in ("cosine_only", "cosine_and_guard"):
        c = rep[name]
        if c is None:
            print(f"  {name:<18} no threshold reaches the target")
        else:
            print(f"  {name:<18} threshold {c['threshold']:.4f}  precision {c['precision']:.3f}  recall {c['recall']:.3f}  false-hit rate {c['false_hit_rate']:.4f}")
        o = rep["out_of_sample"][name]
        if o is not None:
            print(f"  {'':<18} on pairs not chosen from: precision {_show_spread(o['precision'])}  recall {_show_spread(o['recall'])}  target met in {o['met_target']:.0%} of resamples")
    print(f"  guard rejected {rep['guard_rejected_negatives']} negative and {rep['guard_rejected_positives']} positive pairs")
    for cat, c in rep["categories"].items():
        t = "-" if c["threshold"] is None else f"{c['threshold']:.4f}"
        o = c.get("out_of_sample")
        note = f"  precision on pairs not chosen from {_show_spread(o['precision'])}, target met in {o['met_target']:.0%}" if o else ""
        if c["threshold"] is not None and not c.get("written"):
            note += "; not written (looser than the file's and not sure out of sample: the file's applies)"
        print(f"  {cat:<14} pairs {c['pairs']:>6}  threshold {t}{note}")
    for f in rep.get("files", []):
        print(f"wrote {f}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .quality.commands import cmd_train as run

    return run(args)


def cmd_eval(args: argparse.Namespace) -> int:
    from .quality.commands import cmd_eval as run

    return run(args)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args, rest = build_parser().parse_known_args(argv)
    try:
        if args.command == "serve":
            return cmd_serve(args, rest)
        if rest:
            build_parser().error(f"unrecognized arguments: {' '.join(rest)}")
        return {"route": cmd_route, "catalog": cmd_catalog, "demo": cmd_demo, "stats": cmd_stats, "report": cmd_report, "calibrate": cmd_calibrate, "train-verifier": cmd_train_verifier, "train": cmd_train, "eval": cmd_eval}[args.command](args)
    except RouterxError as e:
        print(f"routerx: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
