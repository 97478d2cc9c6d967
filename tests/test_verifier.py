"""The learned pair verifier in the semantic lookup path: trained here on a few labelled pairs,
loaded by the core from its file, and obeyed by Router.route()."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Tuple

import pytest

import routerx
from routerx import _core
from routerx.calibrate import Pair, as_verifier, curve, fit_mlp, mlp_scores, pair_matrix
from routerx.embed import INSTALL_COMMAND, load_minilm, minilm_dir
from routerx.errors import RouterxError, SnapshotError

np = pytest.importorskip("numpy")
pytest.importorskip("faiss")
if minilm_dir() is None:
    pytest.skip(f"embedding model not installed: {INSTALL_COMMAND}", allow_module_level=True)

STORED = "How do I reset my password?"
SAME = "How can I reset my password?"
#: Same topic, close in cosine, another intent: what the verifier is taught to refuse.
OTHER = "How do I change my password?"

PAIRS: List[Tuple[str, str, int]] = [
    (STORED, SAME, 1),
    (STORED, "What is the way to reset my password?", 1),
    ("How do I change my password?", "How can I change my password?", 1),
    ("What is the capital of Australia?", "Which city is the capital of Australia?", 1),
    ("How long does shipping to Canada take?", "How many days is shipping to Canada?", 1),
    (STORED, OTHER, 0),
    (SAME, OTHER, 0),
    ("What is the capital of Australia?", "What is the largest city of Australia?", 0),
    ("How long does shipping to Canada take?", "How much does shipping to Canada cost?", 0),
    ("How do I change my password?", "How do I change my username?", 0),
]


@pytest.fixture(scope="module")
def verifier_file(tmp_path_factory: Any) -> Path:
    emb = load_minilm()
    pairs = [Pair(a, b, y) for a, b, y in PAIRS]
    va, vb = emb.embed([p.a for p in pairs]), emb.embed([p.b for p in pairs])
    x = pair_matrix(pairs, va, vb)
    y = np.array([p.label for p in pairs])
    # Both orders: the lookup scores (query, cached) and the pair file need not say which is which.
    xb = pair_matrix([Pair(p.b, p.a, p.label) for p in pairs], vb, va)
    model = fit_mlp(np.vstack([x, xb]), np.concatenate([y, y]), hidden=8, epochs=400, seed=3, lr=3e-3, batch=8)
    v = as_verifier(model, emb.model_id, emb.dim, 0.5, {"pairs": len(pairs)})
    path = tmp_path_factory.mktemp("verifier") / "verifier.rxsnap"
    assert v.save(str(path)) > 0
    return path


def cached(r: routerx.Router, tenant: str) -> None:
    d = r.route(STORED, tenant=tenant, min_similarity=0.5)
    assert d.cache == "miss"
    r.record(d, "Settings → Security → Reset password.", input_tokens=20, output_tokens=5, latency_ms=100)


def test_features_match_between_training_and_lookup(verifier_file: Path) -> None:
    v = _core.Verifier.load(str(verifier_file))
    emb = load_minilm()
    u, w = emb.embed([STORED, OTHER])
    x = pair_matrix([Pair(STORED, OTHER, 0)], u[None], w[None])
    assert x.shape == (1, 1 + 14 + 2 * emb.dim)
    assert abs(float(x[0, 0]) - float(u @ w)) < 1e-5
    assert json.loads(v.report) == {"pairs": len(PAIRS)} and v.embedder == emb.model_id


def test_route_accepts_and_rejects_as_trained(verifier_file: Path) -> None:
    plain = routerx.Router({"semantic": {"enabled": True, "min_similarity": 0.5}}, db=None)
    cached(plain, "p")
    assert plain.route(OTHER, tenant="p").cache == "semantic", "cosine alone serves the other intent"

    r = routerx.Router({"semantic": {"enabled": True, "min_similarity": 0.5, "verifier": str(verifier_file)}}, db=None)
    cached(r, "v")
    hit = r.route(SAME, tenant="v")
    assert hit.cache == "semantic" and hit.cached_response == "Settings → Security → Reset password."
    assert r.route(OTHER, tenant="v").cache == "miss"
    s = r.stats()["semantic"]
    assert s["verifier_refusals"] >= 1 and s["verifier_threshold"] == pytest.approx(0.5)
    # The per-request knob: a near-zero acceptance score lets the verifier pass it.
    assert r.route(OTHER, tenant="v", verifier_threshold=1e-6).cache == "semantic"
    with pytest.raises(RouterxError, match="verifier_threshold"):
        r.route(OTHER, tenant="v", verifier_threshold=1.5)


def test_the_per_request_threshold_crosses_the_wire(verifier_file: Path) -> None:
    """``verifier_threshold`` over gRPC decides as it does in-process, and a bad one is refused
    (INVALID_ARGUMENT on the wire) naming it."""
    from routerx.client import Client
    from routerx.server import serve

    r = routerx.Router({"semantic": {"enabled": True, "min_similarity": 0.5, "verifier": str(verifier_file)}}, db=None)
    srv = serve(port=0, block=False, workers=2, router=r)
    try:
        with Client(srv.target, timeout=10) as c:
            c.wait_ready(5)
            d = c.route(STORED, tenant="w")
            c.record(d, "Settings → Security → Reset password.", 20, 5, 100.0)
            assert c.route(OTHER, tenant="w").cache == "miss"
            assert c.route(OTHER, tenant="w", verifier_threshold=1e-6).cache == "semantic"
            # The in-process exception, as every INVALID_ARGUMENT maps back to.
            with pytest.raises(routerx.InvalidRequestError, match="verifier_threshold"):
                c.route(OTHER, tenant="w", verifier_threshold=1.5)
            with pytest.raises(RouterxError, match="verifier_threshold"):
                c.route(OTHER, tenant="w", verifier_threshold="high")  # type: ignore[arg-type]
    finally:
        srv.stop(0)
        r.close(snapshot=False)


def test_near_misses_stay_refused_with_a_verifier(verifier_file: Path) -> None:
    # A verifier that accepts everything: the near-miss guard still decides.
    r = routerx.Router({"semantic": {"enabled": True, "verifier": str(verifier_file), "verifier_threshold": 1e-6}}, db=None)
    for stored, asked in [("turn on the kitchen lights", "turn off the kitchen lights"), ("list the first 10 primes", "list the first 20 primes")]:
        d = r.route(stored, tenant="n")
        r.record(d, f"answer to {stored}", input_tokens=10, output_tokens=5, latency_ms=50)
        assert r.route(asked, tenant="n").cache == "miss", asked


def test_bad_verifier_files_are_named(verifier_file: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.rxsnap"
    bad.write_bytes(verifier_file.read_bytes()[:-7])
    with pytest.raises(SnapshotError, match="broken.rxsnap"):
        routerx.Router({"semantic": {"enabled": True, "verifier": str(bad)}}, db=None)
    with pytest.raises(SnapshotError, match="absent.rxsnap"):
        _core.Verifier.load(str(tmp_path / "absent.rxsnap"))
    with pytest.raises(RouterxError, match="verifier_threshold"):
        routerx.Router({"semantic": {"enabled": True, "verifier": str(verifier_file), "verifier_threshold": 1.0}}, db=None)
    # Trained on another embedder's vectors: refused, not silently misapplied.
    v = _core.Verifier.load(str(verifier_file))
    mean = np.zeros(1 + 14 + 2 * v.dim, np.float32)
    w = np.zeros((1, mean.size), np.float32)
    other = _core.Verifier("another-embedder@0", v.dim, mean.tobytes(), (mean + 1).tobytes(), [(mean.size, 1, w.tobytes(), b"\0\0\0\0")], 0.5, "{}")
    path = tmp_path / "other.rxsnap"
    other.save(str(path))
    with pytest.raises(RouterxError, match="another-embedder"):
        routerx.Router({"semantic": {"enabled": True, "verifier": str(path)}}, db=None)


def test_balanced_precision_counts_negatives_as_if_as_many_as_positives() -> None:
    # One duplicate, three non-duplicates; at threshold 0.8 one of each is accepted.
    scores, labels = [0.9, 0.8, 0.7, 0.6], [1, 0, 0, 0]
    i = curve(scores, labels, steps=10).thresholds.index(0.8)
    assert curve(scores, labels, steps=10).precision[i] == pytest.approx(0.5)
    assert curve(scores, labels, steps=10, balanced=True).precision[i] == pytest.approx(1 / (1 + 1 / 3))


def test_two_hidden_layers_learn_and_early_stopping_keeps_the_best_epoch() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 5)).astype(np.float32)
    y = ((x[:, 0] * x[:, 1]) > 0).astype(np.int64)  # XOR-like: not linearly separable
    model = fit_mlp(x, y, hidden=[16, 8], epochs=60, seed=1, lr=1e-2, batch=32, val=(x, y))
    assert [w.shape for w, _ in model["layers"]] == [(16, 5), (8, 16), (1, 8)]
    assert ((mlp_scores(model, x) > 0.5) == y).mean() > 0.9
    assert 1 <= model["epoch"] <= 60


def _template_pairs() -> List[Pair]:
    """Pairs whose texts recur across pairs, as QQP's do: each question is paired with a
    paraphrase and with a question about another action on the same thing."""
    verbs = ["reset", "change", "delete", "recover", "update", "share"]
    things = ["password", "email address", "account", "profile photo", "phone number", "username"]
    out: List[Pair] = []
    for i, v in enumerate(verbs):
        for t in things:
            q = f"How do I {v} my {t}?"
            out.append(Pair(q, f"How can I {v} my {t}?", 1))
            out.append(Pair(q, f"What is the way to {v} my {t}?", 1))
            out.append(Pair(q, f"How do I {verbs[(i + 1) % len(verbs)]} my {t}?", 0))
            out.append(Pair(f"How can I {v} my {t}?", f"How do I {verbs[(i + 2) % len(verbs)]} my {t}?", 0))
    return out


def test_splits_by_text_keep_texts_apart_and_by_pairs_sample_pairs() -> None:
    from routerx.calibrate import split_pairs
    from routerx.errors import ConfigError

    pairs = _template_pairs()

    def texts(idx: List[int]) -> set:
        return {t for i in idx for t in (pairs[i].a, pairs[i].b)}

    tr, te = split_pairs(pairs, 0.3, 0, "text")
    assert sorted(tr + te) == list(range(len(pairs))) and te
    assert not texts(tr) & texts(te)
    tr, te = split_pairs(pairs, 0.3, 0, "pairs")
    assert sorted(tr + te) == list(range(len(pairs)))
    assert 0.15 < len(te) / len(pairs) < 0.45
    assert texts(tr) & texts(te), "a random sample of pairs shares texts with the rest"
    assert (tr, te) == split_pairs(pairs, 0.3, 0, "pairs"), "seeded"
    assert te != split_pairs(pairs, 0.3, 1, "pairs")[1]
    with pytest.raises(ConfigError, match="split must be one of text, pairs"):
        split_pairs(pairs, 0.3, 0, "random")


def test_transitive_pairs_follow_clusters_and_never_a_held_out_pair() -> None:
    from routerx.calibrate import Pair, transitive_pairs

    pairs = [Pair("a", "b", 1), Pair("b", "c", 1), Pair("c", "d", 1), Pair("a", "x", 0), Pair("x", "y", 1), Pair("a", "d", 1)]
    fit, held = [0, 1, 2, 3, 4], [5]
    got = transitive_pairs(pairs, fit, held, 10, 0)
    # a-b-c-d is one cluster: a~c, b~d are implied; a~d is held out; x~y has nothing to imply, and
    # a non-duplicate never links clusters.
    assert sorted(tuple(sorted((p.a, p.b))) for p in got) == [("a", "c"), ("b", "d")]
    assert all(p.label == 1 for p in got)
    assert len(transitive_pairs(pairs, fit, [], 10, 0)) == 3
    many = [Pair(f"q{k}", f"q{k + 1}", 1) for k in range(20)]  # a chain of 21 texts: 190 implied
    capped = transitive_pairs(many, range(20), [], 2, 0)
    assert len(capped) == 2 * 21
    assert capped == transitive_pairs(many, range(20), [], 2, 0), "seeded"
    assert transitive_pairs(many, range(20), [], 0, 0) == []


def test_transitive_pairs_of_a_huge_cluster_are_drawn_not_listed() -> None:
    from routerx.calibrate import EXACT_CLUSTER, Pair, transitive_pairs

    n = 20 * EXACT_CLUSTER  # a star of 4,000 texts: 8 million implied pairs, were they listed
    star = [Pair("hub", f"spoke {k}", 1) for k in range(n - 1)]
    held = [Pair("spoke 0", "spoke 1", 1)]
    got = transitive_pairs(star + held, range(n - 1), [n - 1], 2, 0)
    keys = {frozenset((p.a, p.b)) for p in got}
    assert len(got) == len(keys) == 2 * n and all(p.label == 1 for p in got)
    assert frozenset(("spoke 0", "spoke 1")) not in keys and not any("hub" in k for k in keys), "never a given or held-out pair"
    assert got == transitive_pairs(star + held, range(n - 1), [n - 1], 2, 0), "seeded"


@pytest.mark.parametrize("split", ["text", "pairs"])
def test_train_verifier_reports_its_split_and_loads_in_the_core(split: str, tmp_path: Path) -> None:
    from routerx.calibrate import train_verifier

    emb = load_minilm()
    pairs = _template_pairs()
    va, vb = emb.embed([p.a for p in pairs]), emb.embed([p.b for p in pairs])
    v, rep = train_verifier(pairs, va, vb, emb.model_id, 0.9, test_fraction=0.3, hidden=8, epochs=30, split=split)
    assert rep["split"] == split
    assert rep["train_pairs"] + rep["validation_pairs"] + rep["test_pairs"] == len(pairs)
    assert 0 < rep["threshold"] < 1
    # The interval is of the held-out figures at the chosen threshold: it holds them.
    at, spread = rep["test_balanced_at_threshold"], rep["test_balanced_interval"]
    assert spread["precision"][0] <= at["precision"] <= spread["precision"][2]
    assert spread["recall"][0] <= at["recall"] <= spread["recall"][2]
    path = tmp_path / "v.rxsnap"
    assert v.save(str(path)) > 0
    r = routerx.Router({"semantic": {"enabled": True, "verifier": str(path)}}, db=None)
    assert r.route("How do I reset my password?").cache == "miss"


def test_cli_trains_on_a_split_of_pairs(tmp_path: Path, capsys: Any) -> None:
    from routerx.cli import main

    src = tmp_path / "pairs.json"
    src.write_text(json.dumps([{"text_a": p.a, "text_b": p.b, "label": p.label} for p in _template_pairs()]))
    out = tmp_path / "v.rxsnap"
    assert main(["train-verifier", "--pairs", str(src), "--out", str(out), "--split", "pairs", "--epochs", "20", "--hidden", "8", "--target-precision", "0.9"]) == 0
    text = capsys.readouterr().out
    assert json.loads(text[: text.rindex("}") + 1])["split"] == "pairs"
    assert out.is_file()
    with pytest.raises(SystemExit):
        main(["train-verifier", "--pairs", str(src), "--out", str(out), "--split", "random"])
