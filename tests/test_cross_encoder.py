"""The cross-encoder pair verifier: the core's scores against a numpy BERT written here, its file
checks, its place in Router.route(), and many threads scoring at once."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

import routerx
from routerx import _core
from routerx.cross_encoder import base_files, read_safetensors, write_cross_encoder
from routerx.embed import INSTALL_COMMAND, minilm_dir
from routerx.errors import MissingDependencyError, SnapshotError

from conftest import run_threads

np = pytest.importorskip("numpy")
pytest.importorskip("faiss")
if minilm_dir() is None:
    pytest.skip(f"embedding model not installed: {INSTALL_COMMAND}", allow_module_level=True)

STORED = "how do i reset my password"
SAME = "how can i reset my password"
OTHER = "how do i change my email address"


@pytest.fixture(scope="module")
def base() -> Tuple[Dict[str, Any], Dict[str, Any], str, str]:
    return base_files()


def make(path: Path, base: Any, head_w: Any = None, head_b: float = 0.0, threshold: float = 0.5, calibration: Any = None, name_threshold: Any = None) -> Path:
    tensors, config, tok, model_id = base
    h = config["hidden_size"]
    t = dict(tensors)
    t["head.weight"] = np.zeros((1, h), np.float32) if head_w is None else np.asarray(head_w, np.float32).reshape(1, h)
    t["head.bias"] = np.array([head_b], np.float32)
    write_cross_encoder(
        path, t, config=config, tokenizer=tok, threshold=threshold, name_threshold=name_threshold, base=model_id, report={"made": "by the test"}, calibration=calibration
    )
    return path


# -- a numpy BERT, for the core's scores to be checked against --------------------------------

_erf = np.frompyfunc(math.erf, 1, 1)


def _norm(x: Any, w: Any, b: Any, eps: float) -> Any:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def reference_logit(t: Dict[str, Any], config: Dict[str, Any], ids: List[int], types: List[int]) -> float:
    """Hugging Face BERT, written out: the last hidden states' mean through the head."""
    eps, nh = config["layer_norm_eps"], config["num_attention_heads"]
    f = lambda n: t[n].astype(np.float64)  # noqa: E731
    x = f("embeddings.word_embeddings.weight")[ids] + f("embeddings.token_type_embeddings.weight")[types] + f("embeddings.position_embeddings.weight")[: len(ids)]
    x = _norm(x, f("embeddings.LayerNorm.weight"), f("embeddings.LayerNorm.bias"), eps)
    n, h = x.shape
    d = h // nh
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        lin = lambda z, name: z @ f(p + name + ".weight").T + f(p + name + ".bias")  # noqa: E731
        q, k, v = (lin(x, f"attention.self.{w}").reshape(n, nh, d).transpose(1, 0, 2) for w in ("query", "key", "value"))
        s = q @ k.transpose(0, 2, 1) / math.sqrt(d)
        s = np.exp(s - s.max(-1, keepdims=True))
        ctx = ((s / s.sum(-1, keepdims=True)) @ v).transpose(1, 0, 2).reshape(n, h)
        x = _norm(x + lin(ctx, "attention.output.dense"), f(p + "attention.output.LayerNorm.weight"), f(p + "attention.output.LayerNorm.bias"), eps)
        z = lin(x, "intermediate.dense")
        z = 0.5 * z * (1 + _erf(z / math.sqrt(2)).astype(np.float64))
        x = _norm(x + lin(z, "output.dense"), f(p + "output.LayerNorm.weight"), f(p + "output.LayerNorm.bias"), eps)
    return float(x.mean(0) @ f("head.weight")[0] + f("head.bias")[0])


def pair_ids(vocab: Dict[str, int], a: str, b: str) -> Tuple[List[int], List[int]]:
    """[CLS] a [SEP] b [SEP] with BERT's segment ids, for texts of whole vocabulary words."""
    wa, wb = [vocab[w] for w in a.split()], [vocab[w] for w in b.split()]
    ids = [vocab["[CLS]"], *wa, vocab["[SEP]"], *wb, vocab["[SEP]"]]
    return ids, [0] * (len(wa) + 2) + [1] * (len(wb) + 1)


def test_core_scores_match_a_reference_bert(tmp_path: Path, base: Any) -> None:
    tensors, config, tok, _ = base
    rng = np.random.default_rng(7)
    head = rng.normal(0, 0.2, config["hidden_size"])
    path = make(tmp_path / "v.safetensors", base, head, head_b=0.1)
    written, _ = read_safetensors(path)
    vocab = json.loads(tok)["model"]["vocab"]
    x = _core.CrossEncoder.load(str(path))
    pairs = [(STORED, SAME), (STORED, OTHER), ("what is the capital of australia", "which city is the capital of australia")]
    got = x.score([a for a, _ in pairs], [b for _, b in pairs])
    for (a, b), g in zip(pairs, got):
        la = reference_logit(written, config, *pair_ids(vocab, a, b))
        lb = reference_logit(written, config, *pair_ids(vocab, b, a))
        want = 1 / (1 + math.exp(-(la + lb) / 2))
        assert abs(g - want) < 1e-4, (a, b, g, want)
    # Symmetric, and independent of what else is in the batch.
    assert x.score([SAME], [STORED])[0] == pytest.approx(got[0], abs=1e-6)
    assert x.score([STORED], [SAME])[0] == pytest.approx(got[0], abs=1e-6)
    assert x.threshold == 0.5 and json.loads(x.report) == {"made": "by the test"} and x.max_tokens == 128
    assert x.score([], []) == []
    with pytest.raises(routerx.InvalidRequestError):
        x.score([STORED], [])


def test_long_and_odd_pairs_are_scored(tmp_path: Path, base: Any) -> None:
    x = _core.CrossEncoder.load(str(make(tmp_path / "v.safetensors", base, head_b=0.0)))
    s = x.score(["word " * 5000, "", "日本語の質問はありますか 🙂"], ["short", "", "\x00 control \u200b"])
    # A head of zeros gives logit 0 whatever the input: every score is exactly 0.5.
    assert s == pytest.approx([0.5, 0.5, 0.5], abs=1e-6)


def test_bad_files_are_refused_with_their_name(tmp_path: Path, base: Any) -> None:
    path = make(tmp_path / "v.safetensors", base)
    good = path.read_bytes()
    for name, data, words in [
        ("truncated", good[: len(good) - 1000], "checksum"),
        ("flipped", good[:-5000] + bytes([good[-5000] ^ 1]) + good[-4999:], "checksum"),
        ("empty", b"", "truncated"),
        ("header", good[:100], "truncated"),
    ]:
        bad = tmp_path / f"{name}.safetensors"
        bad.write_bytes(data)
        with pytest.raises(SnapshotError) as e:
            _core.CrossEncoder.load(str(bad))
        assert str(bad) in str(e.value) and words in str(e.value), (name, str(e.value))
    # A name threshold outside (0, 1), written past write_cross_encoder's check.
    n = int.from_bytes(good[:8], "little")
    header = json.loads(good[8 : 8 + n])
    for value in ("2", "nan", "high"):
        header["__metadata__"]["name_threshold"] = value
        h = json.dumps(header).encode()
        h += b" " * (-len(h) % 8)
        bad = tmp_path / "name_threshold.safetensors"
        bad.write_bytes(len(h).to_bytes(8, "little") + h + good[8 + n :])
        with pytest.raises(SnapshotError, match="name_threshold"):
            _core.CrossEncoder.load(str(bad))
    # A plain model file (no routerx metadata) is not a cross-encoder.
    with pytest.raises(SnapshotError, match="not a routerx cross-encoder"):
        _core.CrossEncoder.load(str(Path(minilm_dir()) / "model.safetensors"))  # type: ignore[arg-type]
    with pytest.raises(SnapshotError, match="missing.safetensors"):
        _core.CrossEncoder.load(str(tmp_path / "missing.safetensors"))
    with pytest.raises(routerx.ConfigError):
        write_cross_encoder(tmp_path / "x.safetensors", {"head.bias": np.array([math.nan])}, config={}, tokenizer="", threshold=0.5)
    with pytest.raises(routerx.ConfigError):
        make(tmp_path / "x.safetensors", base, threshold=1.0)
    with pytest.raises(routerx.ConfigError, match="name_threshold"):
        make(tmp_path / "x.safetensors", base, name_threshold=math.nan)
    # The good file is untouched by the failed writes.
    assert path.read_bytes() == good


def routed(verifier: Path, stored: str = STORED, same: str = SAME, trust_names: bool = True, **route: Any) -> Tuple[str, Dict[str, Any]]:
    r = routerx.Router({"semantic": {"enabled": True, "min_similarity": 0.5, "verifier": str(verifier), "verifier_trust_names": trust_names}}, db=None)
    d = r.route(stored, tenant="t")
    assert d.cache == "miss"
    r.record(d, "Settings, then Security.", input_tokens=20, output_tokens=5, latency_ms=100)
    return r.route(same, tenant="t", **route).cache, r.stats()["semantic"]


def test_route_obeys_the_cross_encoder(tmp_path: Path, base: Any) -> None:
    accept = make(tmp_path / "accept.safetensors", base, head_b=8.0)
    refuse = make(tmp_path / "refuse.safetensors", base, head_b=-8.0)
    even = make(tmp_path / "even.safetensors", base, head_b=0.0)  # every pair scores 0.5
    cache, stats = routed(accept)
    assert cache == "semantic" and stats["verifier_refusals"] == 0
    cache, stats = routed(refuse)
    assert cache == "miss" and stats["verifier_refusals"] == 1
    assert routed(even, verifier_threshold=0.4)[0] == "semantic"
    assert routed(even, verifier_threshold=0.6)[0] == "miss"
    with pytest.raises(routerx.InvalidRequestError, match="verifier_threshold"):
        routed(even, verifier_threshold=math.nan)


def test_a_trusted_score_overrules_a_name_difference_only(tmp_path: Path, base: Any) -> None:
    """A head bias of 2 scores every pair 0.88: over a name threshold of 0.8 the guard's "names
    differ" gives way; under 0.9 it does not, nor ever does any other difference."""
    trump = ("What does Donald Trump think about Mexico?", "What does Trump think about Mexico?")
    assert _core.guard_check(*trump) == "names differ: donald vs none"
    trusting = make(tmp_path / "trusting.safetensors", base, head_b=2.0, name_threshold=0.8)
    assert _core.CrossEncoder.load(str(trusting)).name_threshold == pytest.approx(0.8)
    cache, stats = routed(trusting, *trump)
    assert cache == "semantic" and stats["guard_overruled"] == 1 and stats["guard_rejections"] == 0
    assert stats["verifier_name_threshold"] == pytest.approx(0.8)
    # The per-request threshold comes first: a score under it is refused before the guard.
    assert routed(trusting, *trump, verifier_threshold=0.95)[0] == "miss"
    for path in (make(tmp_path / "wary.safetensors", base, head_b=2.0, name_threshold=0.9), make(tmp_path / "old.safetensors", base, head_b=2.0)):
        cache, stats = routed(path, *trump)
        assert cache == "miss" and stats["guard_overruled"] == 0 and stats["guard_rejections"] == 1
    assert _core.CrossEncoder.load(str(tmp_path / "old.safetensors")).name_threshold is None
    # The configuration may refuse to trust it.
    cache, stats = routed(trusting, *trump, trust_names=False)
    assert cache == "miss" and stats["guard_overruled"] == 0 and stats["verifier_name_threshold"] is None
    with pytest.raises(routerx.ConfigError, match="verifier_trust_names"):
        routerx.Router({"semantic": {"enabled": True, "verifier": str(trusting), "verifier_trust_names": "yes"}}, db=None)
    # Numbers differ as well as names: never overruled.
    cache, stats = routed(trusting, "What did Donald Trump say in 2016?", "What did Trump say in 2017?")
    assert cache == "miss" and stats["guard_overruled"] == 0


def test_a_verifier_that_trusts_every_pair_overrules_only_name_differences(tmp_path: Path, base: Any) -> None:
    """Whatever the model, of the project's near-miss pairs the cache can serve only those the
    guard refuses for names alone: a file that scores every pair 0.9997, trusted from 0.5, serves
    exactly those (where the cosine reaches the similarity threshold) and no other."""
    trusting = make(tmp_path / "trusting.safetensors", base, head_b=8.0, name_threshold=0.5)
    r = routerx.Router({"semantic": {"enabled": True, "min_similarity": 0.3, "verifier": str(trusting)}}, db=None)
    served, names = set(), set()
    for k, (a, b) in enumerate(_core.near_misses()):
        if (_core.guard_check(a, b) or "").startswith("names differ"):
            names.add(k)
        d = r.route(b, tenant=f"t{k}")
        r.record(d, "the answer to b", input_tokens=5, output_tokens=5, latency_ms=10)
        if r.route(a, tenant=f"t{k}").cache != "miss":
            served.add(k)
    assert served and served <= names, [_core.near_misses()[k] for k in served - names]
    assert r.stats()["semantic"]["guard_overruled"] == len(served)


def test_a_calibration_weighs_the_cosine_the_cache_computed(tmp_path: Path, base: Any) -> None:
    """A head of zeros gives logit 0, so the score is sigmoid(20·cosine + bias): the cache must hand
    the cross-encoder the candidate's own cosine for the hit to turn on the bias."""
    from routerx.embed import load_minilm

    emb = load_minilm()
    c = emb.similarity(STORED, SAME)
    cal = lambda bias: {"logit": 1.0, "cosine": 20.0, "bias": bias, "embedder": emb.model_id}  # noqa: E731
    above, below = make(tmp_path / "above.safetensors", base, calibration=cal(1 - 20 * c)), make(tmp_path / "below.safetensors", base, calibration=cal(-1 - 20 * c))
    x = _core.CrossEncoder.load(str(above))
    assert x.calibration == pytest.approx((1.0, 20.0, 1 - 20 * c)) and x.calibration_embedder == emb.model_id
    assert x.score([STORED], [SAME], [0.5])[0] == pytest.approx(1 / (1 + math.exp(-(10 + 1 - 20 * c))), rel=1e-4)
    assert x.logits([STORED], [SAME]) == [0.0]
    with pytest.raises(routerx.InvalidRequestError, match="cosines"):
        x.score([STORED], [SAME])
    with pytest.raises(routerx.InvalidRequestError, match="cosines"):
        x.score([STORED], [SAME], [0.5, 0.5])
    assert routed(above)[0] == "semantic"
    cache, stats = routed(below)
    assert cache == "miss" and stats["verifier_refusals"] == 1
    # Cosines of another embedder would not be the ones it was calibrated on.
    with pytest.raises(routerx.RouterxError, match="calibrated on cosines"):
        routerx.Router({"semantic": {"enabled": True, "embedder": "static", "min_similarity": 0.5, "verifier": str(above)}}, db=None)
    for bad in ({"logit": 1.0, "cosine": 2.0, "bias": 0.0}, {"logit": 1.0, "cosine": 0.0, "bias": math.inf}):
        with pytest.raises(SnapshotError, match="calibration"):
            _core.CrossEncoder.load(str(make(tmp_path / "bad.safetensors", base, calibration=bad)))


def test_many_threads_score_at_once(tmp_path: Path, base: Any) -> None:
    rng = np.random.default_rng(3)
    x = _core.CrossEncoder.load(str(make(tmp_path / "v.safetensors", base, rng.normal(0, 0.2, base[1]["hidden_size"]))))
    texts = [STORED, SAME, OTHER, "what is the capital of australia", "how long is shipping to canada", "is it going to rain today"]
    pairs = [(texts[i], texts[j]) for i in range(len(texts)) for j in range(len(texts))]
    want = x.score([a for a, _ in pairs], [b for _, b in pairs])
    errors: List[str] = []

    def work(k: int) -> None:
        for r in range(6):
            i = (k * 7 + r) % len(pairs)
            got = x.score([pairs[i][0]], [pairs[i][1]])[0]
            if abs(got - want[i]) > 1e-5:
                errors.append(f"pair {i}: {got} != {want[i]}")

    run_threads(16, work)
    assert not errors, errors[:3]


def test_training_without_torch_names_the_install_command(monkeypatch: Any, tmp_path: Path) -> None:
    from routerx.calibrate import Pair
    from routerx.cross_encoder import train_cross_encoder

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingDependencyError, match="pip install torch") as e:
        train_cross_encoder([Pair("a", "b", 1)], tmp_path / "v.safetensors")
    assert isinstance(e.value, ImportError) and isinstance(e.value, routerx.RouterxError)
    assert not (tmp_path / "v.safetensors").exists()


def test_cli_refuses_a_cross_encoder_file_name_it_cannot_load(tmp_path: Path, capsys: Any) -> None:
    from routerx.cli import main

    pairs = tmp_path / "p.json"
    pairs.write_text(json.dumps([{"text_a": STORED, "text_b": SAME, "label": 1}]))
    assert main(["train-verifier", "--cross-encoder", "--pairs", str(pairs), "--out", str(tmp_path / "v.rxsnap")]) == 2
    assert ".safetensors" in capsys.readouterr().err


PAIRS = [
    ("how do i reset my password", "how can i reset my password", 1),
    ("how do i reset my password", "how do i change my email address", 0),
    ("what is the capital of australia", "which city is the capital of australia", 1),
    ("what is the capital of australia", "what is the largest city in australia", 0),
    ("how long is shipping to canada", "how many days does shipping to canada take", 1),
    ("how long is shipping to canada", "how much does shipping to canada cost", 0),
]


@pytest.mark.parametrize("extra", [{"transitive": 0}, {"transitive": 2}], ids=["given", "with-transitive"])
def test_training_writes_a_file_the_core_scores_as_trained(tmp_path: Path, extra: dict) -> None:
    pytest.importorskip("torch", reason="training a cross-encoder needs PyTorch (pip install torch)")
    pytest.importorskip("tokenizers")
    from routerx.calibrate import Pair
    from routerx.cross_encoder import train_cross_encoder

    # Distinct texts per copy, so the text-disjoint split has groups to put on each side.
    pairs = [Pair(f"{a} {k}", f"{b} {k}", y) for k in range(40) for a, b, y in PAIRS]
    # Labelled duplicates the cache's guard refuses (polarity): never counted as hits.
    pairs += [Pair(f"how do i turn on the heating {k}", f"how do i turn off the heating {k}", 1) for k in range(40)]
    # Duplicates that differ only in a name (the guard refuses them unless the score is trusted).
    pairs += [Pair(f"what does Donald Trump think about Mexico {k}", f"what does Trump think about Mexico {k}", 1) for k in range(20)]
    out = tmp_path / "v.safetensors"
    # One chain of three duplicates, so that transitivity has a pair to imply.
    pairs += [Pair("how do i renew my passport", "how can i renew a passport", 1), Pair("how can i renew a passport", "passport renewal steps", 1)]
    x, rep = train_cross_encoder(pairs, out, epochs=2, lr=1e-4, batch=16, eval_every=4, seed=0, threads=1, log=lambda m: None, **extra)
    # train_cross_encoder checks the core's scores of the file against the trained network itself.
    assert out.is_file() and 0 < x.threshold < 1 and json.loads(x.report)["test_pairs"] == rep["test_pairs"] > 0
    st, yt = rep["_scores"]["test"], rep["_scores"]["test_labels"]
    assert st[yt == 1].mean() > st[yt == 0].mean(), "it learned nothing"
    assert rep["test_auc"] > 0.5 and 0 <= rep["test_balanced_best_at_0.90"]["recall"] <= 1
    assert rep["transitive_pairs"] <= (1 if extra["transitive"] else 0), "the passport chain implies one pair at most"
    assert rep["pairs"] == len(pairs), "the report counts the pairs given, not the implied ones"
    nt = rep["name_threshold"]
    assert x.name_threshold == (None if nt is None else pytest.approx(nt)) and (nt is None or rep["threshold"] <= nt < 1)
    assert rep["near_misses"] == len(_core.near_misses()) and isinstance(rep["near_misses_served"], list)
    refused = rep["test_guard_refuses"]["duplicates"]
    assert refused >= 1 and rep["test_balanced_at_threshold"]["recall"] <= 1 - refused / rep["test_positives"] + 1e-9
    spread = rep["test_balanced_interval"]
    assert spread["recall"][0] <= rep["test_balanced_at_threshold"]["recall"] <= spread["recall"][2]


def test_auc_counts_ordered_pairs() -> None:
    import numpy as np

    from routerx.calibrate import roc_auc as _auc

    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 200).astype(float)  # many ties
    y = rng.integers(0, 2, 200)
    pos, neg = s[y == 1], s[y == 0]
    brute = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    assert _auc(s, y) == pytest.approx(brute)
    assert _auc(np.array([0.9, 0.1]), np.array([1, 0])) == 1.0
    assert math.isnan(_auc(np.array([0.3]), np.array([1])))
