"""A cross-encoder pair verifier for the semantic cache: the sentence model fine-tuned to read a
query and a cached question *together* and say whether one answer serves both.

A verifier over two pooled vectors cannot tell "how do I learn Python?" from "how do I learn
Java?" with much confidence: the vectors are nearly the same. Attention across the two texts
can. Scoring runs in the Rust core (``_core.CrossEncoder``, GIL released, both orders of the pair
in one batch) on the candidates above the similarity threshold only, so it costs one small BERT
pass on a would-be hit and nothing on a miss.

The guard stays in front of it, but where names alone differ ("Donald Trump" / "Trump": names
have aliases a lexical check cannot know), a score at or above the file's name threshold, chosen
on validation pairs with the acceptance threshold, overrules it. Nothing else is ever overruled.

Training needs PyTorch, which routerx does not depend on (``pip install torch``); the file it
writes is a plain safetensors file that the core reads without it.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, List, Optional, Sequence, Tuple

from . import _core
from .calibrate import interval, roc_auc
from .errors import ConfigError, MissingDependencyError

KIND = "routerx-cross-encoder"
VERSION = 1
#: Token limit of a (query, candidate) pair: QQP questions are ~15 tokens; longer pairs are cut
#: longest-first.
MAX_TOKENS = 128
#: On QQP (42,884 training pairs) a second epoch lifted held-out recall at balanced precision 0.95,
#: guard applied, from 0.17 to 0.21, and AUC from 0.908 to 0.912; the best step on validation
#: pairs is kept either way.
EPOCHS = 2.0
LR = 5e-5
BATCH = 32
#: Duplicates implied by transitivity among the training pairs, per text of each cluster. On QQP's
#: random split of pairs, 2 (8,191 pairs more) lifted held-out recall at balanced precision 0.95
#: from 0.337 to 0.381 with the guard and from 0.403 to 0.466 without, and AUC from 0.932 to 0.933.
#: (Averaging the weights of the last 40% of the steps instead of keeping the best checkpoint did
#: not help: 0.350 and 0.429, against 0.362 and 0.464 for the last step of that run. Adding the
#: non-duplicates transitivity implies too (a ~ b, b !~ c: a !~ c; 6,524 pairs at the same cap)
#: made it worse: 0.333 at precision 0.948 with the validation-chosen thresholds against 0.419, AUC
#: 0.928 against 0.933. QQP's non-duplicate labels are the noisy ones, and implication copies a
#: wrong one across two clusters. Four per text (12,791 pairs), with checkpoints compared on every
#: validation pair and names served, gave AUC 0.935 and recall at 0.90 0.66, but at 0.95 only 0.40
#: at best against 0.42, and the validation-chosen thresholds missed the precision: 0.946 at recall 0.443.)
TRANSITIVE = 2

_DTYPES = {"F32": "<f4", "F16": "<f2", "I64": "<i8"}


def read_safetensors(path: "os.PathLike[str] | str") -> Tuple[Dict[str, Any], Dict[str, str]]:
    """The tensors (numpy arrays) and string metadata of a safetensors file."""
    import numpy as np

    b = Path(path).read_bytes()
    n = int.from_bytes(b[:8], "little")
    header = json.loads(b[8 : 8 + n])
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for name, t in header.items():
        if t["dtype"] not in _DTYPES:
            raise ConfigError(f"{path}: tensor {name} has dtype {t['dtype']}, not one of {sorted(_DTYPES)}", field=str(path))
        s, e = t["data_offsets"]
        out[name] = np.frombuffer(b, dtype=_DTYPES[t["dtype"]], count=(e - s) // np.dtype(_DTYPES[t["dtype"]]).itemsize, offset=8 + n + s).reshape(t["shape"])
    return out, meta


def write_cross_encoder(
    path: "os.PathLike[str] | str",
    tensors: Dict[str, Any],
    *,
    config: Dict[str, Any],
    tokenizer: str,
    threshold: float,
    name_threshold: Optional[float] = None,
    max_tokens: int = MAX_TOKENS,
    base: str = "",
    report: Optional[Dict[str, Any]] = None,
    calibration: Optional[Dict[str, Any]] = None,
) -> Path:
    """Writes a cross-encoder file atomically (write, fsync, rename): BERT ``tensors`` under
    Hugging Face's names plus ``head.weight`` (1 × hidden) and ``head.bias`` (1), as float32,
    with a SHA-256 of the tensor bytes the core checks on load. ``calibration``: ``{"logit",
    "cosine", "bias", "embedder"}`` (score = sigmoid(logit·w + cosine·v + bias)); None: the
    network's own probability. ``name_threshold``: the score at or above which the cache
    overrules the guard's refusal when only names differ (None: never)."""
    import numpy as np

    from .quality.model import atomic_write

    if not 0 < threshold < 1:
        raise ConfigError(f"threshold must be in (0, 1), got {threshold}", field="threshold")
    if name_threshold is not None and not 0 < name_threshold < 1:
        raise ConfigError(f"name_threshold must be in (0, 1), got {name_threshold}", field="name_threshold")
    header: Dict[str, Any] = {}
    blobs: List[bytes] = []
    off = 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype="<f4")
        if not np.isfinite(a).all():
            raise ConfigError(f"tensor {name} has non-finite values", field=name)
        raw = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    data = b"".join(blobs)
    header["__metadata__"] = {
        "kind": KIND,
        "version": str(VERSION),
        "config": json.dumps(config),
        "tokenizer": tokenizer,
        "threshold": repr(float(threshold)),
        **({"name_threshold": repr(float(name_threshold))} if name_threshold is not None else {}),
        "max_tokens": str(int(max_tokens)),
        "base": base,
        "report": json.dumps(report or {}),
        **({"calibration": json.dumps(calibration)} if calibration else {}),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)  # tensor data 8-byte aligned

    def write(f: BinaryIO) -> None:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        f.write(data)

    return atomic_write(path, write)


def base_files(model_dir: "os.PathLike[str] | str | None" = None) -> Tuple[Dict[str, Any], Dict[str, Any], str, str]:
    """(tensors, BERT config, tokenizer JSON, model id) of the sentence model a cross-encoder
    starts from: the installed all-MiniLM-L6-v2 unless ``model_dir`` names another."""
    from .embed import load_minilm, minilm_dir

    emb = load_minilm(model_dir)  # the clear error when the model is not installed
    d = Path(model_dir) if model_dir is not None else minilm_dir()
    assert d is not None
    tensors, _ = read_safetensors(d / "model.safetensors")
    tensors = {k.removeprefix("bert."): v for k, v in tensors.items() if not k.startswith("pooler.") and "position_ids" not in k}
    config = json.loads((d / "config.json").read_text())
    return tensors, config, (d / "tokenizer.json").read_text(), emb.model_id


def _torch() -> Any:
    try:
        # Imported by name: torch is optional, and has no stubs where it is absent.
        torch = importlib.import_module("torch")
    except ImportError as e:
        raise MissingDependencyError("training a cross-encoder needs PyTorch, which routerx does not install: run `pip install torch`", package="torch") from e
    return torch


def _model(torch: Any, config: Dict[str, Any], tensors: Dict[str, Any]) -> Any:
    """A BERT with a linear head over its mean-pooled output, in torch, from numpy ``tensors``
    under Hugging Face's names; ``params()`` gives them back under the same names."""
    nn, F = torch.nn, torch.nn.functional
    H, NH, eps = config["hidden_size"], config["num_attention_heads"], config.get("layer_norm_eps", 1e-12)

    class Layer(nn.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.q, self.k, self.v, self.o = (nn.Linear(H, H) for _ in range(4))
            self.n1 = nn.LayerNorm(H, eps=eps)
            self.fi, self.fo = nn.Linear(H, config["intermediate_size"]), nn.Linear(config["intermediate_size"], H)
            self.n2 = nn.LayerNorm(H, eps=eps)

        def forward(self, x: Any, mask: Any) -> Any:
            b, t, _ = x.shape
            q, k, v = (z.view(b, t, NH, H // NH).transpose(1, 2) for z in (self.q(x), self.k(x), self.v(x)))
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            x = self.n1(x + self.o(a.transpose(1, 2).reshape(b, t, H)))
            return self.n2(x + self.fo(F.gelu(self.fi(x))))

    class Cross(nn.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.we = nn.Embedding(config["vocab_size"], H)
            self.pe = nn.Embedding(config["max_position_embeddings"], H)
            self.te = nn.Embedding(config["type_vocab_size"], H)
            self.en = nn.LayerNorm(H, eps=eps)
            self.layers = nn.ModuleList(Layer() for _ in range(config["num_hidden_layers"]))
            self.head = nn.Linear(H, 1)

        def forward(self, ids: Any, types: Any, keep: Any) -> Any:
            x = self.en(self.we(ids) + self.te(types) + self.pe(torch.arange(ids.shape[1])[None]))
            mask = torch.zeros(keep.shape, dtype=x.dtype).masked_fill(~keep, float("-inf"))[:, None, None, :]
            for layer in self.layers:
                x = layer(x, mask)
            m = keep[..., None].to(x.dtype)
            return self.head((x * m).sum(1) / m.sum(1)).squeeze(-1)

    names = {"we.weight": "embeddings.word_embeddings.weight", "pe.weight": "embeddings.position_embeddings.weight", "te.weight": "embeddings.token_type_embeddings.weight", "en.weight": "embeddings.LayerNorm.weight", "en.bias": "embeddings.LayerNorm.bias", "head.weight": "head.weight", "head.bias": "head.bias"}
    parts = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value", "o": "attention.output.dense", "n1": "attention.output.LayerNorm", "fi": "intermediate.dense", "fo": "output.dense", "n2": "output.LayerNorm"}
    for i in range(config["num_hidden_layers"]):
        for ours, theirs in parts.items():
            for p in ("weight", "bias"):
                names[f"layers.{i}.{ours}.{p}"] = f"encoder.layer.{i}.{theirs}.{p}"
    m = Cross()
    state = {ours: torch.tensor(tensors[theirs], dtype=torch.float32) if theirs in tensors else None for ours, theirs in names.items()}
    state["head.weight"] = torch.zeros(1, H) if state["head.weight"] is None else state["head.weight"]
    state["head.bias"] = torch.zeros(1) if state["head.bias"] is None else state["head.bias"]
    missing = [names[k] for k, v in state.items() if v is None]
    if missing:
        raise ConfigError(f"the base model lacks {missing[:3]}", field="model")
    m.load_state_dict(state)
    m.params = lambda: {names[k]: v.detach().numpy().copy() for k, v in m.state_dict().items()}
    return m


def _recall_at(scores: Any, y: Any, target: float) -> Tuple[float, float]:
    """(recall, threshold) of the lowest threshold whose balanced precision is ≥ ``target``."""
    import numpy as np

    o = np.argsort(-scores, kind="stable")
    ys = y[o]
    pos, neg = int(ys.sum()), int(len(ys) - ys.sum())
    if pos == 0 or neg == 0:
        return 0.0, 1.0
    tp = np.cumsum(ys)
    fp = np.cumsum(1 - ys) * pos / neg
    ok = np.nonzero(tp / (tp + fp) >= target)[0]
    if len(ok) == 0:
        return 0.0, 1.0
    k = ok[-1]
    return float(tp[k] / pos), float(scores[o][k])


def train_cross_encoder(
    pairs: Sequence[Any],
    out: "os.PathLike[str] | str",
    *,
    model_dir: "os.PathLike[str] | str | None" = None,
    target_precision: float = 0.95,
    test_fraction: float = 0.2,
    epochs: float = EPOCHS,
    lr: float = LR,
    batch: int = BATCH,
    max_tokens: int = MAX_TOKENS,
    max_train_pairs: Optional[int] = None,
    cosine: bool = True,
    eval_every: int = 400,
    seed: int = 0,
    split: str = "text",
    transitive: int = TRANSITIVE,
    threads: Optional[int] = None,
    log: Callable[[str], None] = print,
) -> Tuple[Any, Dict[str, Any]]:
    """Fine-tunes the sentence model as a cross-encoder on labelled ``pairs`` and writes it to
    ``out``. The split is the pair verifier's (``split``: by text, none on both sides of
    train/test, or a random sample of pairs; a validation part, split the same way, picks the
    checkpoint and the acceptance threshold); the held-out figures are the core's own scores of
    the written file. With ``cosine``, the score is calibrated on the validation pairs over the
    network's logit and the pair's cosine under the sentence model (which the cache's embedder
    must then be); otherwise over the logit alone. ``transitive``: duplicates implied by
    transitivity among the training pairs are added, up to that many per text of each cluster
    (:func:`calibrate.transitive_pairs`; 0: none). Seeded. Returns (``_core.CrossEncoder``,
    report)."""
    import numpy as np

    from .calibrate import split_pairs, transitive_pairs

    torch = _torch()
    if not 0 < target_precision < 1:
        raise ConfigError(f"target precision must be in (0, 1), got {target_precision}", field="target_precision")
    if not (epochs > 0 and math.isfinite(epochs)) or batch < 1 or not lr > 0:
        raise ConfigError("epochs, lr and batch must be positive", field="epochs")
    if transitive < 0:
        raise ConfigError(f"transitive must be >= 0, got {transitive}", field="transitive")
    pairs = list(pairs)
    n_given = len(pairs)
    y = np.array([p.label for p in pairs], dtype=np.int64)
    train, test = split_pairs(pairs, test_fraction, seed, split)
    fit_i, val_i = split_pairs([pairs[i] for i in train], 0.15, seed + 1, split)
    fit = [train[i] for i in fit_i][: max_train_pairs or None]
    val = [train[i] for i in val_i]
    n_labelled = len(fit)
    # Also measured on QQP's random split of pairs and not kept (one run each): training only on
    # the pairs the cache would score (the guard lets them through or refuses names alone: 35,900
    # of 52,143) gave AUC 0.927 and recall 0.39 at best at balanced precision 0.95; adding 20,000
    # unlabelled neighbour pairs (cosine 0.70-0.985) labelled by the mean logit of two trained
    # files (distillation, 1.5 epochs) gave AUC 0.933 and 0.43 at best, and its validation-chosen
    # thresholds held-out precision 0.939 at recall 0.496: validation flattered it. Leaving out the
    # eighth of each batch with the highest loss in the second epoch (against QQP's label noise)
    # gave AUC 0.922 and 0.23 at best: the pairs it drops are the hard non-duplicates that
    # precision at the top depends on.
    if transitive:
        implied = transitive_pairs(pairs, fit, val + test, transitive, seed + 2)
        fit += range(len(pairs), len(pairs) + len(implied))
        pairs += implied
        y = np.array([p.label for p in pairs], dtype=np.int64)
        log(f"{len(implied)} duplicates implied by transitivity added to {n_labelled} training pairs")
    if min(y[fit].sum(), len(fit) - y[fit].sum(), y[test].sum(), len(test) - y[test].sum(), y[val].sum()) < 1:
        raise ConfigError("the pairs need duplicates and non-duplicates on every side of the split", field="pairs")

    tensors, config, tok_json, base = base_files(model_dir)
    try:
        tokenizers = importlib.import_module("tokenizers")
    except ImportError as e:
        raise MissingDependencyError("training a cross-encoder needs the tokenizers package: run `pip install tokenizers`", package="tokenizers") from e
    tok = tokenizers.Tokenizer.from_str(tok_json)
    tok.no_padding()
    tok.enable_truncation(max_tokens)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = _model(torch, config, tensors)

    def encode(prs: List[Tuple[str, str]]) -> Tuple[Any, Any, Any]:
        enc = tok.encode_batch(prs)
        t = max(len(e.ids) for e in enc)
        ids = torch.zeros(len(enc), t, dtype=torch.long)
        types = torch.zeros_like(ids)
        keep = torch.zeros(len(enc), t, dtype=torch.bool)
        for r, e in enumerate(enc):
            ids[r, : len(e.ids)] = torch.tensor(e.ids)
            types[r, : len(e.ids)] = torch.tensor(e.type_ids)
            keep[r, : len(e.ids)] = True
        return ids, types, keep

    def torch_scores(idx: Sequence[int]) -> Any:
        model.eval()
        s = np.zeros(len(idx), dtype=np.float32)
        with torch.inference_mode():
            for k in range(0, len(idx), 128):
                part = idx[k : k + 128]
                a = model(*encode([(pairs[i].a, pairs[i].b) for i in part]))
                b = model(*encode([(pairs[i].b, pairs[i].a) for i in part]))
                s[k : k + len(part)] = ((a + b) / 2).numpy()
        return s

    vsub = rng.sample(val, min(len(val), 2000))
    kinds = {i: _guard_kind(_core.guard_check(pairs[i].a, pairs[i].b)) for i in val + test}

    def guarded(scores: Any, idx: Sequence[int]) -> Any:
        """The scores with every pair the guard refuses at -inf (names never overruled)."""
        return _served_scores(scores, [kinds[i] for i in idx], None)

    steps = max(1, int(math.ceil(len(fit) / batch) * epochs))
    warm = max(1, steps // 10)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min((k + 1) / warm, max(0.0, (steps - k) / max(1, steps - warm))))
    best: Tuple[float, int, Optional[Dict[str, Any]]] = (-1.0, 0, None)
    step, t0 = 0, time.time()
    while step < steps:
        order = fit[:]
        rng.shuffle(order)
        # Similar lengths share a batch (less padding), batches in random order.
        batches: List[List[int]] = []
        for w in range(0, len(order), batch * 50):
            chunk = sorted(order[w : w + batch * 50], key=lambda i: len(pairs[i].a) + len(pairs[i].b))
            batches += [chunk[k : k + batch] for k in range(0, len(chunk), batch)]
        rng.shuffle(batches)
        for b in batches:
            if step >= steps:
                break
            model.train()
            # Both orders seen in training: the score is meant to be symmetric.
            prs = [(pairs[i].a, pairs[i].b) if rng.random() < 0.5 else (pairs[i].b, pairs[i].a) for i in b]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(*encode(prs)), torch.tensor(y[b], dtype=torch.float32))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            if step % eval_every == 0 or step == steps:
                r, _ = _recall_at(guarded(torch_scores(vsub), vsub), y[vsub], target_precision)
                log(f"step {step}/{steps} ({time.time() - t0:.0f} s): validation recall {r:.3f} at precision {target_precision}")
                if r > best[0]:
                    best = (r, step, {k: v.clone() for k, v in model.state_dict().items()})
    assert best[2] is not None
    model.load_state_dict(best[2])
    params = model.params()
    write_cross_encoder(out, params, config=config, tokenizer=tok_json, threshold=0.5, max_tokens=max_tokens, base=base)

    # Threshold and figures from the core's own scores of the written file, which must be those
    # of the network just trained.
    core = _core.CrossEncoder.load(os.fspath(out))
    check = vsub[:64]
    want = 1 / (1 + np.exp(-torch_scores(check)))
    got = np.array(core.score([pairs[i].a for i in check], [pairs[i].b for i in check]))
    if not np.allclose(got, want, atol=1e-3):
        raise RuntimeError(f"the core scores the written file differently from the trained network (max difference {np.abs(got - want).max():.2e})")
    lv = np.array(core.logits([pairs[i].a for i in val], [pairs[i].b for i in val]))
    lt = np.array(core.logits([pairs[i].a for i in test], [pairs[i].b for i in test]))
    calibration, sv, st, cos_t, calibrated = _calibrate(lv, lt, y[val], [kinds[i] == "ok" for i in val], [pairs[i] for i in val + test] if cosine else None, model_dir, seed)
    # The thresholds and the headline figures are the cache's: a pair the guard refuses is never
    # a hit, whatever its score, unless only names differ and the score reaches the name threshold.
    # On QQP the guard refuses about a quarter of the duplicates (their numbers, negation or names
    # differ: "lose 30 pounds" / "lose 15 kilos", "Donald Trump" / "Trump").
    kv, kt = [kinds[i] for i in val], [kinds[i] for i in test]
    val_recall, threshold, name_threshold = _thresholds(sv, kv, y[val], target_precision)
    yt = y[test]
    gt = _served_scores(st, kt, name_threshold)
    acc = gt >= threshold
    tp, fp = int((acc & (yt == 1)).sum()), int((acc & (yt == 0)).sum())
    pos, neg = int(yt.sum()), int(len(yt) - yt.sum())
    refused = np.isneginf(gt)
    overruled = acc & (np.array(kt) == "name")
    strict = guarded(st, test)
    near = _near_misses_served(core, calibrated, threshold, name_threshold)
    report: Dict[str, Any] = {
        "kind": "cross-encoder",
        "base": base,
        "pairs": n_given,
        "train_pairs": n_labelled,
        "validation_pairs": len(val),
        "test_pairs": len(test),
        "test_positives": pos,
        "test_negatives": neg,
        "epochs": epochs,
        "step_chosen": best[1],
        "transitive_pairs": len(pairs) - n_given,
        "steps": steps,
        "lr": lr,
        "batch": batch,
        "max_tokens": max_tokens,
        "seed": seed,
        "split": split,
        "target_precision": target_precision,
        "target_on": "balanced pairs",
        "threshold": threshold,
        "name_threshold": name_threshold,
        "validation_balanced_recall": val_recall,
        "test_balanced_at_threshold": {"precision": tp / (tp + fp * pos / neg) if tp + fp else 1.0, "recall": tp / pos, "false_hits": fp},
        # [2.5%, median, 97.5%] over resamples of the held-out pairs: how sure the figures are.
        "test_balanced_interval": interval(acc, yt, balanced=True, seed=seed),
        "guard": "applied, as in the cache",
        "test_guard_refuses": {"duplicates": int((refused & (yt == 1)).sum()), "non_duplicates": int((refused & (yt == 0)).sum())},
        "test_name_difference_overruled": {"duplicates": int((overruled & (yt == 1)).sum()), "non_duplicates": int((overruled & (yt == 0)).sum())},
        # Of the project's near-miss pairs, those the cache would serve with this file (each one a
        # false hit): only name differences can be overruled.
        "near_misses": len(_core.near_misses()),
        "near_misses_served": near,
        # Best recall any main threshold reaches on the held-out pairs (the name threshold kept):
        # with the guard (the cache), with the guard never overruled, and of the scores alone.
        "test_balanced_best_at_target": {
            "recall": _recall_at(gt, yt, target_precision)[0],
            "recall_guard_never_overruled": _recall_at(strict, yt, target_precision)[0],
            "recall_without_guard": _recall_at(st, yt, target_precision)[0],
        },
        "test_balanced_best_at_0.90": {"recall": _recall_at(gt, yt, 0.90)[0], "recall_without_guard": _recall_at(st, yt, 0.90)[0]},
        "test_auc": roc_auc(st, yt),
        "test_auc_uncalibrated": roc_auc(lt, yt),
        "calibration": calibration,
        "test_at_threshold": {"precision": tp / (tp + fp) if tp + fp else 1.0, "recall": tp / pos},
        "train_seconds": round(time.time() - t0, 1),
    }
    write_cross_encoder(
        out, params, config=config, tokenizer=tok_json, threshold=threshold, name_threshold=name_threshold, max_tokens=max_tokens, base=base, report=report, calibration=calibration
    )
    if near:
        log(f"warning: the cache would serve {len(near)} of the project's near-miss pairs with this file: {near[:3]}")
    x = _core.CrossEncoder.load(os.fspath(out))
    # The core's calibrated scores of the final file must be those reported.
    check = test[:64]
    cos = None if cos_t is None else [float(c) for c in cos_t[: len(check)]]
    got = np.array(x.score([pairs[i].a for i in check], [pairs[i].b for i in check], cos))
    if not np.allclose(got, st[: len(check)], atol=1e-3):
        raise RuntimeError(f"the core's calibrated scores differ from the reported ones (max difference {np.abs(got - st[: len(check)]).max():.2e})")
    report["_scores"] = {"test": st, "test_labels": yt}
    return x, report


def _guard_kind(reason: Optional[str]) -> str:
    """"ok" (the guard passes), "name" (only names differ: a trusted score overrules it) or
    "other"."""
    if reason is None:
        return "ok"
    return "name" if reason.startswith("names differ") else "other"


def _served_scores(scores: Any, kinds: Sequence[str], name_threshold: Optional[float]) -> Any:
    """The scores as the cache acts on them: -inf where the guard refuses and is not overruled."""
    import numpy as np

    k = np.asarray(kinds)
    nt = np.inf if name_threshold is None else name_threshold
    refused = (k == "other") | ((k == "name") & (scores < nt))
    return np.where(refused, -np.inf, scores)


def _thresholds(scores: Any, kinds: Sequence[str], y: Any, target: float) -> Tuple[float, float, Optional[float]]:
    """(recall, threshold, name threshold) on validation pairs: the pair of thresholds with the
    most recall at balanced precision ``target``, the name threshold never below the other (the
    cache scores a candidate against the threshold first). None: overruling names never helps."""
    import numpy as np

    names = np.asarray(kinds) == "name"
    grid = np.unique(np.quantile(scores[names], np.linspace(0.5, 1, 101))) if names.any() else np.array([])
    r0, t0 = _recall_at(_served_scores(scores, kinds, None), y, target)
    best: Tuple[float, float, Optional[float]] = (r0, t0, None)
    for nt in grid:
        r, t = _recall_at(_served_scores(scores, kinds, float(nt)), y, target)
        if r > best[0]:
            best = (r, t, float(nt))
    r, t, nt = best
    t = min(max(t, 1e-3), 0.999)
    return r, t, None if nt is None else min(max(nt, t), 0.999)


def _near_misses_served(core: Any, calibrated: Callable[[Any, Sequence[Tuple[str, str]]], Any], threshold: float, name_threshold: Optional[float]) -> List[Tuple[str, str]]:
    """The project's near-miss pairs the cache would serve: the guard refuses each, so only a
    name difference trusted at ``name_threshold`` can be. ``calibrated``: as :func:`_calibrate`
    returns it."""
    if name_threshold is None:
        return []
    cand = [(a, b) for a, b in _core.near_misses() if _guard_kind(_core.guard_check(a, b)) == "name"]
    if not cand:
        return []
    s = calibrated(core.logits([a for a, _ in cand], [b for _, b in cand]), cand)
    return [p for p, x in zip(cand, s) if x >= max(threshold, name_threshold)]


def _calibrate(
    lv: Any, lt: Any, yv: Any, served: Sequence[bool], cos_pairs: Optional[Sequence[Any]], model_dir: Any, seed: int
) -> Tuple[Dict[str, Any], Any, Any, Any, Callable[[Any, Sequence[Tuple[str, str]]], Any]]:
    """Logistic calibration of validation logits ``lv`` (and, with ``cos_pairs`` (the validation
    pairs, then the test ones), of their cosines under the sentence model), fitted on the
    validation pairs the guard lets through (those the cache would score). Returns (calibration,
    validation scores, test scores, test cosines or None, and a function giving the calibrated
    scores of other (a, b) pairs from their logits, with the same embedder)."""
    import numpy as np

    from .calibrate import fit_mlp
    from .embed import load_minilm

    xv, xt = lv[:, None], lt[:, None]
    embedder = ""
    cos_t = None
    emb = None
    if cos_pairs is not None:
        emb = load_minilm(model_dir)
        va = emb.embed([p.a for p in cos_pairs])
        vb = emb.embed([p.b for p in cos_pairs])
        c = (va * vb).sum(axis=1)
        xv, xt = np.column_stack([lv, c[: len(lv)]]), np.column_stack([lt, c[len(lv) :]])
        embedder, cos_t = emb.model_id, c[len(lv) :]
    keep = np.asarray(served, dtype=bool)
    m = fit_mlp(xv[keep].astype(np.float32), yv[keep], hidden=0, epochs=30, l2=1e-3, seed=seed)
    (w, b) = m["layers"][0]
    w = (w[0] * m["scale"]).astype(np.float64)
    bias = float(b[0] - (w * m["mean"]).sum())
    cal: Dict[str, Any] = {"logit": float(w[0]), "cosine": float(w[1]) if len(w) > 1 else 0.0, "bias": bias, "embedder": embedder}

    def sig(x: Any) -> Any:
        return 1 / (1 + np.exp(-(x @ w + bias)))

    def calibrated(logits: Any, prs: Sequence[Tuple[str, str]]) -> Any:
        x = np.asarray(logits, dtype=np.float64)[:, None]
        if emb is not None:
            c = (emb.embed([a for a, _ in prs]) * emb.embed([b for _, b in prs])).sum(axis=1)
            x = np.column_stack([x, c])
        return sig(x)

    return cal, sig(xv), sig(xt), cos_t, calibrated
